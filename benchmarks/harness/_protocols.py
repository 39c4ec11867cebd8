"""Benchmark protocols P1 (reference -> query), P2 (unpaired) and P3 (mosaic)."""

from __future__ import annotations

from dataclasses import dataclass, field

import anndata as ad
import mudata as md
import numpy as np

from scmint._quiet import quiet_libraries

from ._datasets import dataset_info, dataset_path, load_dataset

PROTOCOLS = ("P1", "P2", "P3")
REFERENCE_FRACTION = 0.8


@dataclass
class Split:
    """What a method sees, and what the scorer keeps to itself.

    Attributes
    ----------
    protocol
        ``"P1"``, ``"P2"`` or ``"P3"``.
    dataset
        Dataset name.
    modalities
        The two modalities scored, ``(a, b)``.
    kinds
        Feature kind of each modality: ``"rna"``, ``"atac"`` or ``"protein"``.
    labels_key, batch_key
        Columns of each modality's ``obs`` with cell types and batches.
    train
        MuData a method trains on: P1 the paired reference cells; P2 an unpaired
        MuData (modalities hold disjoint, renamed cells, modality ``b`` shuffled);
        P3 the mosaic dataset as stored.
    query
        Per modality, the cells to embed *from that modality alone*, as AnnData.
        P1: the query cells; P2: every (renamed) cell of the modality, in the order of
        ``train``; P3: the cells measured in that modality only.
    pairs
        Row indices ``(rows_a, rows_b)`` into ``query[a]`` / ``query[b]`` of the true
        pairs, or ``None`` when nothing is paired (P3). Used only for scoring.
    n_cells
        Number of cells of the dataset.
    extra
        Protocol-specific details (P1: ``reference_indices``, ``query_indices`` into
        the dataset's cells) and dataset side files a method may use
        (``gene_peak_links``: path of a genes x peaks links matrix).
    """

    protocol: str
    dataset: str
    modalities: tuple[str, str]
    kinds: dict[str, str]
    labels_key: str
    batch_key: str
    train: md.MuData
    query: dict[str, ad.AnnData]
    pairs: tuple[np.ndarray, np.ndarray] | None
    n_cells: int
    extra: dict = field(default_factory=dict)

    @property
    def n_train(self) -> int:
        """Number of cells (union over modalities) in the training MuData."""
        return int(self.train.n_obs)

    @property
    def n_query(self) -> int:
        """Number of scored profiles, summed over modalities."""
        return int(sum(a.n_obs for a in self.query.values()))


def p1_indices(n_cells: int, fraction: float = REFERENCE_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Reference and query cell indices of protocol P1.

    Parameters
    ----------
    n_cells
        Number of (paired) cells.
    fraction
        Fraction of cells in the reference.

    Returns
    -------
    tuple of numpy.ndarray
        ``(reference, query)``: the first ``int(fraction * n_cells)`` entries of
        ``numpy.random.default_rng(0).permutation(n_cells)``, and the rest.
    """
    perm = np.random.default_rng(0).permutation(n_cells)
    n_ref = int(fraction * n_cells)
    return perm[:n_ref], perm[n_ref:]


def _check_paired(mdata: md.MuData, mods: tuple[str, str], name: str) -> None:
    a, b = (mdata.mod[m] for m in mods)
    if a.n_obs != b.n_obs or not (a.obs_names == b.obs_names).all():
        raise ValueError(
            f"Dataset {name!r} is not fully paired in the same cell order; P1 and P2 need "
            "a paired dataset (use P3 for the mosaic one)."
        )


def make_p1(mdata: md.MuData, name: str, info: dict) -> Split:
    """Protocol P1: 80/20 reference/query split of a paired dataset."""
    mods = tuple(info["modalities"])
    _check_paired(mdata, mods, name)
    ref, qry = p1_indices(mdata.n_obs)
    train = md.MuData({m: mdata.mod[m][ref].copy() for m in mods})
    query = {m: mdata.mod[m][qry].copy() for m in mods}
    n_q = len(qry)
    return Split(
        protocol="P1",
        dataset=name,
        modalities=mods,
        kinds=dict(info["kinds"]),
        labels_key=info["labels_key"],
        batch_key=info["batch_key"],
        train=train,
        query=query,
        pairs=(np.arange(n_q), np.arange(n_q)),
        n_cells=int(mdata.n_obs),
        extra={"reference_indices": ref, "query_indices": qry},
    )


def make_p2(mdata: md.MuData, name: str, info: dict) -> Split:
    """Protocol P2: every cell becomes two unpaired cells with unrelated names.

    Modality ``a`` keeps the dataset's cell order and is renamed ``"<a>_<i>"``;
    modality ``b`` is shuffled with ``default_rng(1)`` and renamed ``"<b>_<j>"``, so
    neither names nor row order reveal the pairing. The true pairs are kept in
    :attr:`Split.pairs` for scoring only.
    """
    mods = tuple(info["modalities"])
    _check_paired(mdata, mods, name)
    a, b = mods
    n = mdata.n_obs
    perm_b = np.random.default_rng(1).permutation(n)
    ad_a = mdata.mod[a].copy()
    ad_a.obs_names = [f"{a}_{i}" for i in range(n)]
    ad_b = mdata.mod[b][perm_b].copy()
    ad_b.obs_names = [f"{b}_{j}" for j in range(n)]
    train = md.MuData({a: ad_a, b: ad_b})
    # cell i of `a` is row inv[i] of `b`
    inv = np.empty(n, dtype=int)
    inv[perm_b] = np.arange(n)
    return Split(
        protocol="P2",
        dataset=name,
        modalities=mods,
        kinds=dict(info["kinds"]),
        labels_key=info["labels_key"],
        batch_key=info["batch_key"],
        train=train,
        query={a: ad_a, b: ad_b},
        pairs=(np.arange(n), inv),
        n_cells=int(n),
    )


def make_p3(mdata: md.MuData, name: str, info: dict) -> Split:
    """Protocol P3: the mosaic dataset as stored; score single-modality cells."""
    mods = tuple(info["modalities"])
    a, b = mods
    names_a, names_b = mdata.mod[a].obs_names, mdata.mod[b].obs_names
    only_a = ~names_a.isin(names_b)
    only_b = ~names_b.isin(names_a)
    if not only_a.any() or not only_b.any():
        raise ValueError(
            f"P3 needs cells measured in {a!r} only and in {b!r} only; dataset {name!r} "
            "has none of one of them."
        )
    query = {a: mdata.mod[a][only_a].copy(), b: mdata.mod[b][only_b].copy()}
    return Split(
        protocol="P3",
        dataset=name,
        modalities=mods,
        kinds=dict(info["kinds"]),
        labels_key=info["labels_key"],
        batch_key=info["batch_key"],
        train=mdata,
        query=query,
        pairs=None,
        n_cells=int(mdata.n_obs),
    )


_BUILDERS = {"P1": make_p1, "P2": make_p2, "P3": make_p3}


@quiet_libraries()
def make_split(dataset: str | md.MuData, protocol: str, info: dict | None = None) -> Split:
    """Build the split of ``protocol`` for a dataset.

    Parameters
    ----------
    dataset
        Dataset name (read with :func:`~harness.load_dataset`), or a MuData
        together with ``info``.
    protocol
        ``"P1"``, ``"P2"`` or ``"P3"``.
    info
        Modalities / kinds / keys (see :data:`~harness.DATASETS`); needed
        only when ``dataset`` is a MuData.

    Returns
    -------
    Split
        The split.
    """
    if protocol not in _BUILDERS:
        raise ValueError(f"Unknown protocol {protocol!r}; choose one of {PROTOCOLS}.")
    if isinstance(dataset, str):
        name = dataset
        info = dataset_info(name) if info is None else info
        mdata = load_dataset(name)
    else:
        if info is None:
            raise ValueError("Pass `info` (modalities, kinds, labels_key, batch_key).")
        name, mdata = info.get("name", "custom"), dataset
    split = _BUILDERS[protocol](mdata, name, info)
    links = info.get("gene_peak_links")
    if links is not None:
        path = dataset_path(name).parent / links
        if path.exists():
            split.extra["gene_peak_links"] = str(path)
    return split


def scored_arrays(
    split: Split, embeddings: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
    """Embeddings and labels of the scored cells, rows put into true pairs.

    Parameters
    ----------
    split
        The split the embeddings were computed on.
    embeddings
        Per modality, one row per cell of ``split.query[modality]``.

    Returns
    -------
    tuple
        ``(z_a, z_b, labels_a, labels_b, paired)``; when ``paired``, row ``i`` of
        ``z_a`` and ``z_b`` is the same cell.
    """
    a, b = split.modalities
    z_a, z_b = np.asarray(embeddings[a]), np.asarray(embeddings[b])
    for m, z in ((a, z_a), (b, z_b)):
        if z.shape[0] != split.query[m].n_obs:
            raise ValueError(
                f"Embedding of {m!r} has {z.shape[0]} rows, expected {split.query[m].n_obs}."
            )
    lab_a = split.query[a].obs[split.labels_key].astype(str).to_numpy()
    lab_b = split.query[b].obs[split.labels_key].astype(str).to_numpy()
    if split.pairs is not None:
        ra, rb = split.pairs
        z_a, z_b, lab_a, lab_b = z_a[ra], z_b[rb], lab_a[ra], lab_b[rb]
    return z_a, z_b, lab_a, lab_b, split.pairs is not None


def score_split(split: Split, embeddings: dict[str, np.ndarray], k: int = 5) -> dict[str, float]:
    """Score the embeddings of a split's query cells.

    Parameters
    ----------
    split
        The split the embeddings were computed on.
    embeddings
        Per modality, one row per cell of ``split.query[modality]``.
    k
        Neighbours of the label-transfer classifier.

    Returns
    -------
    dict
        :func:`scmint.metrics.integration_scores` of the two modalities, rows
        reordered into true pairs when the split has them (see :func:`scored_arrays`).
    """
    from scmint.metrics import integration_scores

    z_a, z_b, lab_a, lab_b, paired = scored_arrays(split, embeddings)
    scores = integration_scores(z_a, z_b, labels_a=lab_a, labels_b=lab_b, paired=paired, k=k)
    return {key: float(val) for key, val in scores.items()}


#: Translation columns of a results row (``a`` / ``b``: the split's two modalities).
TRANSLATION_KEYS = (
    "translation_feature_corr_a_to_b",
    "translation_cell_corr_a_to_b",
    "translation_cell_corr_baseline_a_to_b",
    "translation_feature_corr_b_to_a",
    "translation_cell_corr_b_to_a",
    "translation_cell_corr_baseline_b_to_a",
)


def _translation_direction(
    split: Split, prediction, space: str, source: str, target: str
) -> dict[str, float]:
    """Correlations of one direction's prediction and of the mean-profile baseline."""
    from scmint.metrics import mean_profile, translation_correlation

    a, _ = split.modalities
    rows_a, rows_b = split.pairs
    rows_src, rows_tgt = (rows_a, rows_b) if source == a else (rows_b, rows_a)
    measured = split.query[target].X
    res = translation_correlation(
        prediction,
        measured,
        predicted_space=space,
        rows_predicted=rows_src,
        rows_measured=rows_tgt,
    )
    profile = mean_profile(split.train.mod[target].X)
    base = translation_correlation(
        np.broadcast_to(profile, (split.query[source].n_obs, profile.size)),
        measured,
        predicted_space="lognorm",
        rows_predicted=rows_src,
        rows_measured=rows_tgt,
    )
    return {"feature_corr": res.feature_corr, "cell_corr": res.cell_corr, "base": base.cell_corr}


def score_translation(split: Split, translate) -> tuple[dict[str, float], float]:
    """Score a method's cross-modal translations of the query cells against their pairs.

    For each direction (``a -> b``, then ``b -> a``) ``translate(source, target)``
    predicts the ``target`` profile of every cell of ``split.query[source]`` from its
    ``source`` profile alone; each prediction is compared with the measured ``target``
    profile of the same cell (:attr:`Split.pairs`), both in the space
    ``log1p(x / rowsum * 1e4)`` (:func:`scmint.metrics.translation_correlation`). The
    baseline predicts every cell as the mean (normalised, logged) ``target`` profile of
    the training cells (:func:`scmint.metrics.mean_profile`); only its per-cell
    correlation is defined.

    Parameters
    ----------
    split
        The split (needs true pairs: P1 or P2).
    translate
        ``translate(source, target) -> (prediction, space) | None`` (see
        :class:`~harness.MethodResult`), or ``None``.

    Returns
    -------
    tuple
        ``(scores, seconds)``: the :data:`TRANSLATION_KEYS` (NaN for a direction not
        translated) and the wall time of the ``translate`` calls alone.
    """
    import time

    scores = dict.fromkeys(TRANSLATION_KEYS, float("nan"))
    if translate is None or split.pairs is None:
        return scores, float("nan")
    a, b = split.modalities
    seconds = 0.0
    for tag, source, target in (("a_to_b", a, b), ("b_to_a", b, a)):
        t0 = time.perf_counter()
        out = translate(source, target)
        seconds += time.perf_counter() - t0
        if out is None:
            continue
        prediction, space = out
        n_feat = split.query[target].n_vars
        if prediction.shape != (split.query[source].n_obs, n_feat):
            raise ValueError(
                f"Translation {source} -> {target} has shape {prediction.shape}; expected "
                f"({split.query[source].n_obs}, {n_feat})."
            )
        res = _translation_direction(split, prediction, space, source, target)
        del prediction, out
        scores[f"translation_feature_corr_{tag}"] = res["feature_corr"]
        scores[f"translation_cell_corr_{tag}"] = res["cell_corr"]
        scores[f"translation_cell_corr_baseline_{tag}"] = res["base"]
    return scores, seconds


#: Columns of a kNN translation baseline row (``benchmarks/baselines.csv``).
KNN_BASELINE_KEYS = (
    "translation_feature_corr_a_to_b",
    "translation_cell_corr_a_to_b",
    "translation_feature_corr_b_to_a",
    "translation_cell_corr_b_to_a",
)


def knn_translation_baseline(split: Split, n_neighbors: int = 10) -> dict[str, float]:
    """Scores of the kNN translation baseline on a split with paired training cells (P1).

    Each query cell's ``target`` profile is predicted as the mean normalised, logged
    ``target`` profile of its ``n_neighbors`` nearest reference cells in the ``source``
    modality (:func:`scmint.metrics.knn_profiles`: PCA of log-normalised RNA or protein,
    LSI of peaks, fitted on the training cells) and scored as a method's translation
    (:func:`score_translation`).
    """
    from scmint.metrics import knn_profiles, translation_correlation

    if split.protocol != "P1":
        raise ValueError(
            f"The kNN baseline needs paired training cells (P1), not {split.protocol}."
        )
    a, b = split.modalities
    rows_a, rows_b = split.pairs
    scores = {}
    for tag, source, target in (("a_to_b", a, b), ("b_to_a", b, a)):
        prediction = knn_profiles(
            split.train.mod[source].X,
            split.train.mod[target].X,
            split.query[source].X,
            n_neighbors=n_neighbors,
            representation="lsi" if split.kinds[source] == "atac" else "pca",
        )
        rows_src, rows_tgt = (rows_a, rows_b) if source == a else (rows_b, rows_a)
        res = translation_correlation(
            prediction,
            split.query[target].X,
            predicted_space="lognorm",
            rows_predicted=rows_src,
            rows_measured=rows_tgt,
        )
        scores[f"translation_feature_corr_{tag}"] = float(res.feature_corr)
        scores[f"translation_cell_corr_{tag}"] = float(res.cell_corr)
    return scores
