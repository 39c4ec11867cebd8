"""Method registry: each method maps a :class:`Split` to per-modality embeddings."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
from scipy import sparse

from ._protocols import Split


@dataclass
class MethodResult:
    """Output of one method on one split.

    Attributes
    ----------
    embeddings
        Per modality, one row per cell of ``split.query[modality]``, each computed from
        that modality's profile alone.
    n_epochs
        Training epochs actually run (``None`` for closed-form methods).
    train_time_s, inference_time_s
        Wall time of training and of embedding the scored cells.
    params
        Hyperparameters worth recording (go into the results row as JSON).
    """

    embeddings: dict[str, np.ndarray]
    n_epochs: int | None
    train_time_s: float
    inference_time_s: float
    params: dict = field(default_factory=dict)


MethodFn = Callable[..., MethodResult]


@dataclass
class Method:
    """A registered method.

    Attributes
    ----------
    name
        Registry key (``--method`` of ``benchmarks/run.py``).
    fn
        ``fn(split, *, max_epochs=None, seed=0, **kwargs) -> MethodResult``.
    protocols
        Protocols the method can run.
    kinds
        Feature kinds the method needs among the split's two modalities (e.g.
        ``{"rna", "atac"}``), or ``None`` for any.
    peer
        ``True`` for the comparison methods (CCA, MULTIVI, TOTALVI, ...), ``False``
        for scmint's own models (ratio columns are scmint / peer).
    notes
        How the method is trained and how query cells are embedded; rendered into
        ``BENCHMARKS.md``.
    unsupported
        Protocol -> reason, for a clear error on protocols the method cannot run.
    """

    name: str
    fn: MethodFn
    protocols: tuple[str, ...]
    kinds: frozenset[str] | None = None
    peer: bool = True
    notes: str = ""
    unsupported: dict[str, str] = field(default_factory=dict)

    def check(self, split: Split) -> None:
        """Raise a clear error when the method cannot run on ``split``."""
        if split.protocol not in self.protocols:
            reason = self.unsupported.get(split.protocol, "")
            raise ValueError(
                f"Method {self.name!r} does not support protocol {split.protocol} "
                f"(supports {', '.join(self.protocols)}). {reason}".strip()
            )
        if self.kinds is not None and not self.kinds <= set(split.kinds.values()):
            raise ValueError(
                f"Method {self.name!r} needs modalities of kinds {sorted(self.kinds)}; "
                f"dataset {split.dataset!r} has {split.kinds}."
            )


METHODS: dict[str, Method] = {}


def register_method(
    name: str,
    *,
    protocols: tuple[str, ...],
    kinds: set[str] | None = None,
    peer: bool = True,
    notes: str = "",
    unsupported: dict[str, str] | None = None,
) -> Callable[[MethodFn], MethodFn]:
    """Register a benchmark method (decorator).

    Parameters
    ----------
    name
        Registry key.
    protocols
        Protocols it supports.
    kinds
        Feature kinds it needs (``"rna"``, ``"atac"``, ``"protein"``).
    peer
        Whether it is a comparison method rather than an scmint model.
    notes
        Description for ``BENCHMARKS.md``: training and query embedding.
    unsupported
        Protocol -> reason it cannot run.

    Returns
    -------
    Callable
        The decorator; it returns the function unchanged.

    Examples
    --------
    >>> @register_method("mymodel", protocols=("P1",), peer=False, notes="...")
    ... def _mymodel(split, *, max_epochs=None, seed=0):
    ...     ...
    """

    def deco(fn: MethodFn) -> MethodFn:
        METHODS[name] = Method(
            name=name,
            fn=fn,
            protocols=tuple(protocols),
            kinds=frozenset(kinds) if kinds else None,
            peer=peer,
            notes=notes.strip(),
            unsupported=dict(unsupported or {}),
        )
        return fn

    return deco


def get_method(name: str) -> Method:
    """Look up a registered method by name.

    Parameters
    ----------
    name
        Registry key, e.g. ``"cca"``, ``"multivi"``, ``"totalvi"``.

    Returns
    -------
    Method
        The registry entry.
    """
    if name not in METHODS:
        raise KeyError(f"Unknown method {name!r}; registered: {sorted(METHODS)}.")
    return METHODS[name]


def run_method(name: str, split: Split, **kwargs) -> MethodResult:
    """Check compatibility, run a method on a split and validate its output.

    Parameters
    ----------
    name
        Registry key.
    split
        The split (see :func:`~scmint.benchmark.make_split`).
    **kwargs
        Passed to the method (``max_epochs``, ``seed``, hyperparameters).

    Returns
    -------
    MethodResult
        Embeddings of ``split.query`` (one row per cell, finite), epochs and times.
    """
    method = get_method(name)
    method.check(split)
    result = method.fn(split, **kwargs)
    for m in split.modalities:
        z = np.asarray(result.embeddings[m])
        if z.ndim != 2 or z.shape[0] != split.query[m].n_obs:
            raise ValueError(
                f"{name}: embedding of {m!r} has shape {z.shape}; expected "
                f"({split.query[m].n_obs}, d)."
            )
        if not np.isfinite(z).all():
            raise ValueError(f"{name}: embedding of {m!r} has non-finite values.")
    return result


# --------------------------------------------------------------------------- helpers


def _modality_of_kind(split: Split, kind: str) -> str:
    for m in split.modalities:
        if split.kinds[m] == kind:
            return m
    raise ValueError(f"Dataset {split.dataset!r} has no modality of kind {kind!r}.")


def _alone(
    split: Split,
    modality: str,
    var: dict[str, pd.DataFrame],
    obs: pd.DataFrame,
    dense: tuple[str, ...] = (),
) -> md.MuData:
    """MuData of ``split.query[modality]`` with every other modality all-zero rows."""
    q = split.query[modality]
    mods = {}
    for m, v in var.items():
        if m == modality:
            x = sparse.csr_matrix(q[:, v.index].X, dtype=np.float32)
            x_obs = q.obs.copy()
        else:
            x = sparse.csr_matrix((q.n_obs, len(v)), dtype=np.float32)
            x_obs = pd.DataFrame(index=q.obs_names)
        mods[m] = ad.AnnData(X=x.toarray() if m in dense else x, obs=x_obs, var=v)
    mdata = md.MuData(mods)
    for col in obs.columns:
        mdata.obs[col] = obs[col].to_numpy()
    mdata.obs["_indices"] = np.arange(mdata.n_obs)
    return mdata


def _n_epochs(model) -> int | None:
    hist = getattr(model, "history_", None) or {}
    lengths = [len(v) for k, v in hist.items() if k.endswith("_train") or k.endswith("train")]
    if lengths:
        return int(max(lengths))
    trainer = getattr(getattr(model, "trainer", None), "current_epoch", None)
    return None if trainer is None else int(trainer)


def _batch_labels(adata: ad.AnnData, key: str) -> np.ndarray:
    if key in adata.obs:
        return adata.obs[key].astype(str).to_numpy()
    return np.full(adata.n_obs, "0", dtype=object)


# --------------------------------------------------------------------------- CCA


@register_method(
    "cca",
    protocols=("P1", "P3"),
    peer=True,
    notes="""
Linear CCA baseline (`scmint.tl.LinearCCA`, 20 canonical components): each modality is
reduced to 50 dimensions with transforms fitted on the training cells only (RNA:
`scmint.pp.LogNormPCA`; ATAC: `scmint.pp.TfidfLSI` without the first, depth-related
component; protein: CLR + `scmint.pp.FeatureScaler` + PCA), standardised, and
scikit-learn `CCA` is fitted on the paired training cells (P1: the reference; P3: the
mosaic's paired cells, reductions fitted on every cell of the modality). Scored cells
are projected one modality at a time with the stored transforms (nothing from the
other modality); each canonical variate is standardised on the training cells.
Closed form: no epochs.
""",
    unsupported={
        "P2": "CCA is fitted on paired cells; P2 hides the pairing, so there is nothing to fit.",
    },
)
def _cca(
    split: Split,
    *,
    max_epochs: int | None = None,
    seed: int = 0,
    n_components: int = 20,
    n_comps: int = 50,
) -> MethodResult:
    from scmint.tl._cca import LinearCCA

    t0 = time.perf_counter()
    model = LinearCCA(n_components=n_components, n_comps=n_comps, kinds=split.kinds)
    model.fit(split.train, modalities=split.modalities)
    t1 = time.perf_counter()
    emb = {m: model.transform(split.query[m], modality=m) for m in split.modalities}
    t2 = time.perf_counter()
    return MethodResult(
        embeddings=emb,
        n_epochs=None,
        train_time_s=t1 - t0,
        inference_time_s=t2 - t1,
        params={"n_components": n_components, "n_comps": n_comps},
    )


# --------------------------------------------------------------------------- MULTIVI


@register_method(
    "multivi",
    protocols=("P1", "P2"),
    kinds={"rna", "atac"},
    peer=True,
    notes="""
scvi-tools `MULTIVI` (RNA + ATAC; default architecture, `fully_paired=False`, batch
covariate = the dataset's batch; in P2 the batch covariate is batch x modality, the
MULTIVI tutorial's way of telling it which cells are single-modality). P2 trains on the
padded unpaired MuData (`scmint.data.pad_mudata`: all-zero rows where a modality is
missing, which is how MULTIVI marks missing data). Each scored cell is embedded from one
modality alone: a MuData holding that profile and all-zero rows for the other modality,
read through the modality-specific encoder (`get_latent_representation` with
`modality="expression"` or `"accessibility"`, the posterior mean).
""",
    unsupported={"P3": "The mosaic dataset is RNA + protein; MULTIVI here is RNA + ATAC."},
)
def _multivi(
    split: Split,
    *,
    max_epochs: int | None = None,
    seed: int = 0,
    batch_size: int = 128,
    early_stopping: bool = True,
    **model_kwargs,
) -> MethodResult:
    import scvi

    scvi.settings.seed = seed
    rna = _modality_of_kind(split, "rna")
    atac = _modality_of_kind(split, "atac")
    var = {rna: split.train.mod[rna].var[[]].copy(), atac: split.train.mod[atac].var[[]].copy()}
    batch_key = split.batch_key

    if split.protocol == "P1":
        train = md.MuData({m: split.train.mod[m] for m in (rna, atac)})
        train.obs["_batch"] = _batch_labels(split.train.mod[rna], batch_key)

        def query_batch(m: str) -> np.ndarray:
            return _batch_labels(split.query[m], batch_key)
    else:
        from scmint.data import pad_mudata

        train = pad_mudata(split.train, modalities=[rna, atac])
        cell_mod = np.where(train.obs[f"has_{rna}"].to_numpy() > 0, rna, atac)
        train.obs["_batch"] = train.obs[batch_key].astype(str).to_numpy() + "|" + cell_mod

        def query_batch(m: str) -> np.ndarray:
            return _batch_labels(split.query[m], batch_key) + "|" + m

    train.obs["_batch"] = pd.Categorical(train.obs["_batch"])
    scvi.model.MULTIVI.setup_mudata(
        train, batch_key="_batch", modalities={"rna_layer": rna, "atac_layer": atac}
    )
    model = scvi.model.MULTIVI(train, **model_kwargs)
    t0 = time.perf_counter()
    model.train(
        max_epochs=max_epochs or 500,
        batch_size=batch_size,
        early_stopping=early_stopping,
        enable_progress_bar=False,
    )
    t1 = time.perf_counter()
    latent_key = {rna: "expression", atac: "accessibility"}
    emb = {}
    for m in split.modalities:
        obs = pd.DataFrame({"_batch": query_batch(m)}, index=split.query[m].obs_names)
        q = _alone(split, m, var, obs)
        q.obs["_batch"] = pd.Categorical(q.obs["_batch"])
        emb[m] = model.get_latent_representation(q, modality=latent_key[m])
    t2 = time.perf_counter()
    return MethodResult(
        embeddings=emb,
        n_epochs=_n_epochs(model),
        train_time_s=t1 - t0,
        inference_time_s=t2 - t1,
        params={
            "max_epochs": max_epochs or 500,
            "batch_size": batch_size,
            "early_stopping": early_stopping,
            "n_latent": int(model.module.n_latent),
            **model_kwargs,
        },
    )


# --------------------------------------------------------------------------- TOTALVI


@register_method(
    "totalvi",
    protocols=("P1",),
    kinds={"rna", "protein"},
    peer=True,
    notes="""
scvi-tools `TOTALVI` (RNA + protein; default architecture, batch covariate = the
dataset's batch), trained on the paired reference cells. TOTALVI has one joint encoder
and no single-modality encoders, so a query cell embedded from one modality alone is fed
with the other modality set to all zeros (RNA-alone: proteins zero; protein-alone: RNA
zero) and its joint posterior mean is taken. This is out of distribution for TOTALVI,
especially protein-alone with no RNA, and its scores on P1 should be read as "TOTALVI
used outside its design", not as its paired-data quality.
""",
    unsupported={
        "P2": "TOTALVI needs RNA in every cell; P2 has protein-only cells.",
        "P3": "TOTALVI cannot encode protein-only cells (no RNA); not wired up.",
    },
)
def _totalvi(
    split: Split,
    *,
    max_epochs: int | None = None,
    seed: int = 0,
    batch_size: int = 256,
    early_stopping: bool = True,
    **model_kwargs,
) -> MethodResult:
    import scvi

    scvi.settings.seed = seed
    rna = _modality_of_kind(split, "rna")
    adt = _modality_of_kind(split, "protein")
    var = {rna: split.train.mod[rna].var[[]].copy(), adt: split.train.mod[adt].var[[]].copy()}
    # TOTALVI's protein prior (a GMM per protein) needs dense protein counts
    protein = split.train.mod[adt].copy()
    protein.X = np.asarray(protein.X.toarray() if sparse.issparse(protein.X) else protein.X)
    train = md.MuData({rna: split.train.mod[rna], adt: protein})
    train.obs["_batch"] = pd.Categorical(_batch_labels(split.train.mod[rna], split.batch_key))
    scvi.model.TOTALVI.setup_mudata(
        train, batch_key="_batch", modalities={"rna_layer": rna, "protein_layer": adt}
    )
    model = scvi.model.TOTALVI(train, **model_kwargs)
    t0 = time.perf_counter()
    model.train(
        max_epochs=max_epochs,
        batch_size=batch_size,
        early_stopping=early_stopping,
        enable_progress_bar=False,
    )
    t1 = time.perf_counter()
    emb = {}
    for m in split.modalities:
        obs = pd.DataFrame(
            {"_batch": _batch_labels(split.query[m], split.batch_key)},
            index=split.query[m].obs_names,
        )
        q = _alone(split, m, var, obs, dense=(adt,))
        q.obs["_batch"] = pd.Categorical(q.obs["_batch"])
        emb[m] = model.get_latent_representation(q)
    t2 = time.perf_counter()
    return MethodResult(
        embeddings=emb,
        n_epochs=_n_epochs(model),
        train_time_s=t1 - t0,
        inference_time_s=t2 - t1,
        params={
            "max_epochs": max_epochs,
            "batch_size": batch_size,
            "early_stopping": early_stopping,
            "n_latent": int(model.module.n_latent),
            **model_kwargs,
        },
    )


# --------------------------------------------------------------------------- scmint models


def fit_scmint_model(
    split: Split,
    model: str | type,
    *,
    max_epochs: int | None = None,
    seed: int = 0,
    use_labels: bool = True,
    use_batch: bool = True,
    train_kwargs: dict | None = None,
    **model_kwargs,
) -> MethodResult:
    """Train an scmint model on a split through the common scmint API.

    ``pad_mudata(split.train)`` -> ``Model.setup_mudata(...)`` -> ``Model(mdata,
    **model_kwargs).train(max_epochs=...)`` -> ``get_latent_representation(
    split.query[m], modality=m)`` for each modality (one modality alone per call).

    Parameters
    ----------
    split
        The benchmark split.
    model
        Class, or its name in :mod:`scmint.model` (``"CLUE"``, ``"MINNET"``, ...).
    max_epochs
        Passed to ``train`` (``None``: the model's default).
    seed
        ``scvi.settings.seed``.
    use_labels, use_batch
        Register ``split.labels_key`` / ``split.batch_key``.
    train_kwargs
        Extra keyword arguments of ``train``.
    **model_kwargs
        Hyperparameters of the model.

    Returns
    -------
    MethodResult
        Embeddings of the scored cells, epochs, times and parameters.

    Examples
    --------
    Registering a model takes two lines::

        register_method("clue", protocols=("P1", "P2", "P3"), peer=False, notes="...")(
            functools.partial(fit_scmint_model, model="CLUE")
        )
    """
    import scvi

    from scmint.data import pad_mudata

    if isinstance(model, str):
        import scmint.model

        cls = getattr(scmint.model, model)
    else:
        cls = model
    scvi.settings.seed = seed
    mdata = pad_mudata(split.train, modalities=list(split.modalities))
    cls.setup_mudata(
        mdata,
        modalities=list(split.modalities),
        labels_key=split.labels_key if use_labels else None,
        batch_key=split.batch_key if use_batch else None,
    )
    net = cls(mdata, **model_kwargs)
    t0 = time.perf_counter()
    kw = dict(train_kwargs or {})
    if max_epochs is not None:
        kw["max_epochs"] = max_epochs
    net.train(**kw)
    t1 = time.perf_counter()
    emb = {
        m: np.asarray(net.get_latent_representation(split.query[m], modality=m))
        for m in split.modalities
    }
    t2 = time.perf_counter()
    return MethodResult(
        embeddings=emb,
        n_epochs=_n_epochs(net),
        train_time_s=t1 - t0,
        inference_time_s=t2 - t1,
        params={
            "max_epochs": max_epochs,
            "use_labels": use_labels,
            "use_batch": use_batch,
            **(train_kwargs or {}),
            **model_kwargs,
        },
    )


register_method(
    "minnet",
    protocols=("P1",),
    peer=False,
    notes="""
`scmint.model.MINNET` (Siamese network, flexible-margin contrastive loss on RNA kNN-graph
distances + shared cell-type classifier) trained on the labelled paired reference cells
with its published defaults (768 hidden, 32-d embedding, M = 10, lambda = 0.5, C = 3,
Adam lr 1e-4) except where the row's params say otherwise; 20 % of the reference is held
out for the validation loss, and the run lasts max_epochs. Query cells are embedded one
modality at a time.
""",
    unsupported={
        "P2": "MINNET trains on paired, labelled cells; P2 hides the pairing.",
        "P3": "not run yet",
    },
)(functools.partial(fit_scmint_model, model="MINNET"))


def _fit_conaae(split: Split, **kwargs) -> MethodResult:
    """CONAAE through :func:`fit_scmint_model`; P1 adds the anchor loss on known pairs."""
    if split.protocol == "P1":
        kwargs.setdefault("anchor_weight", 0.1)
    return fit_scmint_model(split, model="CONAAE", **kwargs)


register_method(
    "conaae",
    protocols=("P1", "P2", "P3"),
    peer=False,
    notes="""
`scmint.model.CONAAE` (Con-AAE: one deterministic autoencoder per modality, least-squares
GAN modality discriminator, latent cycle consistency, batch-hard triplet loss on the cell
types with margin 0.3, linear cell-type classifier; alpha = 10, beta = 1, 50-d latent,
Adam lr 1e-4, betas (0.5, 0.999), weight decay 1e-4, hidden widths
`(min(G, 1024), min(G, 256), 100)`), inputs log-normalised and standardised inside the
module; trained on the padded training MuData with early stopping on a 10 % validation
split (patience 20, at most 200 epochs) unless the row's params say otherwise. P2: the
pairing is hidden and not used. P1: the reference cells are paired, so the anchor loss
(weight 0.1, MSE between the two embeddings of each reference cell) is switched on.
P3: the mosaic data as stored (paired and single-modality cells, no anchor loss).
Query cells are encoded one modality at a time by that modality's encoder.
""",
)(_fit_conaae)


register_method(
    "sccross",
    protocols=("P1", "P2"),
    peer=False,
    notes="""
`scmint.model.SCCROSS` (scCross: per-modality VAEs on stored PCA / LSI inputs smoothed over
a kNN graph, batch-specific count decoders, aligners, modality and generated-vs-real
discriminators, MNN prior on common genes where the modalities share gene names) with its
defaults except the epochs: `max_epochs` is used for both training stages (the published
automatic count is far longer). The pairing option is off (the published behaviour). Query
cells are encoded one modality at a time. Work in progress (issue 4): no prior is built for
ATAC without gene coordinates, so RNA + ATAC rows align through the adversaries only.
""",
    unsupported={"P3": "not run yet"},
)(functools.partial(fit_scmint_model, model="SCCROSS"))
