"""Method registry: each method maps a :class:`Split` to per-modality embeddings."""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
from scipy import sparse

from ._progress import quiet_progress
from ._protocols import Split
from ._result import MethodResult, Translator

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
        The split (see :func:`~harness.make_split`).
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
Closed form: no epochs. No translation.
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
`modality="expression"` or `"accessibility"`, the posterior mean). Training time
includes `setup_mudata` and building the model. Translation, from the same one-modality
MuData (MULTIVI then uses that modality's encoder): ATAC from RNA is
`get_normalized_accessibility(normalize_regions=True)` (accessibility probabilities times
the region factors: the expected peak profile up to the cell's library factor), RNA from
ATAC is `get_normalized_expression()` (frequencies); both are normalised and logged like
the measured counts. The decoders get the cell's batch (P2: its batch of the target
modality).
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
    t0 = time.perf_counter()
    scvi.model.MULTIVI.setup_mudata(
        train, batch_key="_batch", modalities={"rna_layer": rna, "atac_layer": atac}
    )
    model = scvi.model.MULTIVI(train, **model_kwargs)
    model.train(
        max_epochs=max_epochs or 500,
        batch_size=batch_size,
        early_stopping=early_stopping,
        **quiet_progress("multivi"),
    )
    t1 = time.perf_counter()
    latent_key = {rna: "expression", atac: "accessibility"}

    def alone(m: str, batch: np.ndarray) -> md.MuData:
        obs = pd.DataFrame({"_batch": batch}, index=split.query[m].obs_names)
        q = _alone(split, m, var, obs)
        q.obs["_batch"] = pd.Categorical(q.obs["_batch"])
        return q

    emb = {
        m: model.get_latent_representation(alone(m, query_batch(m)), modality=latent_key[m])
        for m in split.modalities
    }
    t2 = time.perf_counter()

    def translate(source: str, target: str) -> tuple[np.ndarray, str]:
        # the decoders get the cell's batch; in P2 the batch of the *target* modality,
        # the one whose decoder was trained on that modality's data
        batch = query_batch(source)
        if split.protocol != "P1":
            batch = _batch_labels(split.query[source], batch_key) + "|" + target
        q = alone(source, batch)
        if target == atac:
            pred = model.get_normalized_accessibility(q, normalize_regions=True, return_numpy=True)
        else:
            pred = model.get_normalized_expression(q, return_numpy=True)
        return np.asarray(pred, dtype=np.float32), "counts"

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
        translate=translate,
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
used outside its design", not as its paired-data quality. Training time includes
`setup_mudata` and building the model. Translation, from the same one-modality input:
`get_normalized_expression(include_protein_background=True)`; protein from RNA is the
decoded protein mean with background (foreground and background rates mixed by the
background probability: the expected measured count), RNA from protein the decoded
frequencies; both are normalised and logged like the measured counts.
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
    t0 = time.perf_counter()
    scvi.model.TOTALVI.setup_mudata(
        train, batch_key="_batch", modalities={"rna_layer": rna, "protein_layer": adt}
    )
    model = scvi.model.TOTALVI(train, **model_kwargs)
    model.train(
        max_epochs=max_epochs,
        batch_size=batch_size,
        early_stopping=early_stopping,
        **quiet_progress("totalvi"),
    )
    t1 = time.perf_counter()
    queries = {}
    for m in split.modalities:
        obs = pd.DataFrame(
            {"_batch": _batch_labels(split.query[m], split.batch_key)},
            index=split.query[m].obs_names,
        )
        q = _alone(split, m, var, obs, dense=(adt,))
        q.obs["_batch"] = pd.Categorical(q.obs["_batch"])
        queries[m] = q
    emb = {m: model.get_latent_representation(queries[m]) for m in split.modalities}
    t2 = time.perf_counter()

    def translate(source: str, target: str) -> tuple[np.ndarray, str]:
        # the decoded means of the cell encoded with its `source` profile alone (the
        # other modality all zeros, as for the embedding): RNA frequencies, and the
        # protein mean with background (the expected measured protein count)
        rna_pred, protein_pred = model.get_normalized_expression(
            queries[source], include_protein_background=True, return_numpy=True
        )
        pred = protein_pred if target == adt else rna_pred
        return np.asarray(pred, dtype=np.float32), "counts"

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
        translate=translate,
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
    model_inputs: dict | None = None,
    **model_kwargs,
) -> MethodResult:
    """Train an scmint model on a split through the common scmint API.

    ``pad_mudata(split.train)`` -> ``Model.setup_mudata(...)`` -> ``Model(mdata,
    **model_kwargs).train(max_epochs=...)`` -> ``get_latent_representation(
    split.query[m], modality=m)`` for each modality (one modality alone per call).
    Models with a ``translate`` method whose output space is known (the model's
    ``translation_space``, see :func:`translation_space`) also get a translator:
    ``translate(split.query[source], source=..., target=...)``. The training time
    includes building the model (input transforms, priors) and training.

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
    model_inputs
        Keyword arguments of the model that are data rather than hyperparameters
        (e.g. SCCROSS's ``gene_matrices``): passed on, not recorded in ``params``.
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
    t0 = time.perf_counter()
    net = cls(mdata, **model_kwargs, **(model_inputs or {}))
    kw = quiet_progress(cls.__name__.lower(), train_kwargs)
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
        translate=scmint_translator(net, split),
    )


def translation_space(net, target: str) -> str | None:
    """Space of ``net.translate(..., target=target)``'s output, from the model itself.

    The model's ``translation_space_of(target)`` where it has one (CONAAE: the space
    depends on the target's normalisation), else its class attribute
    ``translation_space`` (``"counts"`` or ``"lognorm"``, see
    :class:`~harness.MethodResult`); ``None``: not comparable, or not declared.
    """
    space_of = getattr(net, "translation_space_of", None)
    if callable(space_of):
        return space_of(target)
    return getattr(type(net), "translation_space", None)


def scmint_translator(net, split: Split) -> Translator | None:
    """Translator of a trained scmint model on ``split.query`` (``None`` if it cannot).

    Parameters
    ----------
    net
        A trained scmint model with ``translate(mdata, source=, target=)``.
    split
        The split whose query cells are translated.

    Returns
    -------
    Translator or None
        ``translate(source, target) -> (prediction, space)`` (``None`` for a direction
        whose output space is not comparable, see :func:`translation_space`); ``None``
        for a model without ``translate`` or without a ``translation_space``.
    """
    if not hasattr(net, "translate") or getattr(type(net), "translation_space", None) is None:
        return None

    def translate(source: str, target: str) -> tuple[Any, str] | None:
        space = translation_space(net, target)
        if space is None:
            return None
        out = net.translate(split.query[source], source=source, target=target)
        return out.X, space

    return translate


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
modality at a time. Translation (no decoder): `translate`, the mean measured target
counts of the 10 reference cells nearest in the embedding, normalised and logged like
the measured counts.
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
module; trained on the padded training MuData for 200 epochs (no early stopping: the
validation objective does not track the alignment; rows run before this default stopped
on a 10 % validation split, patience 20) unless the row's params say otherwise. P2: the
pairing is hidden and not used. P1: the reference cells are paired, so the anchor loss
(weight 0.1, MSE between the two embeddings of each reference cell) is switched on.
P3: the mosaic data as stored (paired and single-modality cells, no anchor loss).
Query cells are encoded one modality at a time by that modality's encoder. Translation:
`translate` (source encoder, target decoder) returns `log1p(x / library * 1e4)` of the
target (the standardisation undone), compared as it is (with `normalization="log"`, the
default; other normalisations are not scored).
""",
)(_fit_conaae)


def sccross_gene_matrices(split: Split) -> dict | None:
    """ATAC gene activity for SCCROSS's MNN prior, from the dataset's gene-peak links.

    Parameters
    ----------
    split
        A split of an RNA + ATAC dataset; ``split.extra["gene_peak_links"]`` (set by
        :func:`~harness.make_split` when the dataset ships a genes x peaks
        matrix, e.g. SNARE-seq's ``gene_peak_prior.npz``) names the links file.

    Returns
    -------
    dict or None
        ``{atac: scmint.pp.gene_activity(train atac, links, rna genes)}`` for the
        training cells measured in ATAC, or ``None`` when the dataset has no links.
    """
    from scmint.pp import gene_activity

    links = split.extra.get("gene_peak_links")
    kinds = set(split.kinds.values())
    if links is None or not {"rna", "atac"} <= kinds:
        return None
    rna = _modality_of_kind(split, "rna")
    atac = _modality_of_kind(split, "atac")
    genes = split.train.mod[rna].var_names
    return {atac: gene_activity(split.train.mod[atac], links=links, gene_names=genes)}


def _fit_sccross(split: Split, *, gene_prior: bool = True, **kwargs) -> MethodResult:
    """SCCROSS through :func:`fit_scmint_model`, with the dataset's gene-peak prior."""
    matrices = sccross_gene_matrices(split) if gene_prior else None
    result = fit_scmint_model(
        split, model="SCCROSS", model_inputs={"gene_matrices": matrices}, **kwargs
    )
    links = split.extra.get("gene_peak_links")
    result.params["gene_prior"] = Path(links).name if matrices is not None else None
    if "pairing_weight" not in result.params:  # the model's default, recorded with the row
        from scmint.model import SCCROSS

        default = inspect.signature(SCCROSS).parameters["pairing_weight"].default
        result.params["pairing_weight"] = default
    return result


register_method(
    "sccross",
    protocols=("P1", "P2"),
    peer=False,
    notes="""
`scmint.model.SCCROSS` (scCross: per-modality VAEs on stored PCA / LSI inputs smoothed over
a kNN graph, batch-specific count decoders, aligners, modality and generated-vs-real
discriminators, MNN prior on common genes) with its defaults except the epochs: `max_epochs`
is used for both training stages (the published automatic count is far longer). The pairing
term is on (its default, `pairing_weight=1`, chosen by the ablation: it acts in P1 on the
paired reference cells; in P2 there are none, so the model trains as published). MNN prior:
RNA + ATAC rows with a gene-peak links file (`snare_mouse_cortex`: `gene_peak_prior.npz`)
give the prior an ATAC gene-activity matrix (`scmint.pp.gene_activity`: counts of the peaks
linked to each RNA gene, training cells only; params `gene_prior`); CITE-seq panels enter
the prior on the genes encoding their proteins (`scmint.pp.protein_gene_names`), which needs
50 of them among the RNA features: `pbmc_mosaic_paired` has 66, `bmmc_cite_starter` 8 of
its 134 among its 1,000 genes, and `bmmc_multiome_starter` has no links or gene
coordinates, so on the two starters the modalities align through the adversaries only (the ablation
table shows the scmint extension `classifier_weight=1.0`, a shared cell-type classifier on
the joint space, which aligns them with the labels; off here, as published). Training time
includes building the inputs and the prior. With the dataset's batches (`batch_key`), each
batch's mean is taken off the encoder inputs and the prior's genes (`center_batches=True`,
the default since 2026-12-07). Query cells are encoded one modality at a time.
Translation: `translate(query[source], source=, target=)`, the target decoder's
negative-binomial mean at the mean training library size and the first batch's decoder (the
published defaults), normalised and logged like the measured counts.
""",
    unsupported={"P3": "not run yet"},
)(_fit_sccross)


register_method(
    "clue",
    protocols=("P1", "P2", "P3"),
    peer=False,
    notes="""
`scmint.model.CLUE` (CLUE: K x K cross-encoder matrix, per-modality decoders with batch
covariates, self / joint-cross / real-cross ELBO, cosine alignment, annealed modality
discriminator; RMSprop lr 2e-3, batch 128) with the published defaults: negative binomial
for every modality (RNA, ATAC and protein counts), latent blocks of 50 (embedding K x 50,
L2-normalised), joint rule `mean` unless `joint` is given in params; the epochs follow
CLUE's progress schedule (72 units, capped at 1,000 epochs) with early stopping on the
validation objective unless `max_epochs` is given; at the end the weights of the best
validation epoch after the burn-in are restored (as scglue restores its best checkpoint;
rows before this change kept the last epoch's). Batch covariate = the split's batch;
no labels (the classifier is off), so label transfer is not trained for. Query cells are
embedded one modality at a time from that modality's row of the encoder matrix.
Translation: `translate(query[source], source=, target=)`, the target decoder's mean at
the mean training library size (first batch), normalised and logged like the measured
counts.
""",
)(functools.partial(fit_scmint_model, model="CLUE", use_labels=False))


def _scglue_clue(split: Split, **kwargs) -> MethodResult:
    from ._scglue_clue import fit_scglue_clue

    return fit_scglue_clue(split, **kwargs)


register_method(
    "scglue_clue",
    protocols=("P1", "P3"),
    peer=True,
    notes="""
The CLUE model as published in scglue (`scglue.models.SCCLUEModel`, scglue 0.4.1) with its
defaults: 50-d block per modality (100-d embedding), RMSprop lr 2e-3, batch 128, validation
0.1, all lambdas 0.02 except data and KL (1). Likelihoods: NB for RNA, protein and ATAC
counts (scglue 0.4.1's Bernoulli encoder has no library size and crashes beside an NB
modality). Each modality is configured with its batch column and `use_obs_names=True`:
P1 trains on the paired reference; P3 on the mosaic, cells with the same name paired and
single-modality cells unpaired. With max_epochs set, burn-in and patiences are scaled by
scglue's ratios (12/72, 9/72, 3/72); without it, scglue's automatic schedule (thousands of
epochs on the starters). Scored cells are embedded one modality at a time with
`encode_data`, the posterior mean of that modality's encoder output (all 100 dimensions),
L2-normalised as in the published CLUE matching code. Optional dependency: `pip install
scmint[peers]`.
""",
    unsupported={"P2": "CLUE pairs cells by name; P2 shares no cell names."},
)(_scglue_clue)
