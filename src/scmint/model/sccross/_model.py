"""SCCROSS: scCross's VAE-GAN with bidirectional aligners and an MNN prior as a scvi-tools model."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping, Sequence
from math import ceil
from pathlib import Path
from typing import Any, Literal

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import torch
from scipy import sparse
from scvi import REGISTRY_KEYS
from scvi.data.fields import MuDataNumericalObsField
from scvi.model.base import BaseModelClass, UnsupervisedTrainingMixin
from torch.distributions import Normal, kl_divergence

from scmint.data import MuDataSetupMixin, RegisteredDataSplitter, row_batches
from scmint.data._backed import OnDiskRows
from scmint.model._base import (
    INFERENCE_BATCH,
    Cells,
    MultiModalMixin,
    check_positive_int,
    fit_subsample,
    keep_torch_threads,
    loading_saved_model,
    resolve_per_modality,
    saved_attribute,
)
from scmint.model._centres import batch_centres
from scmint.model._generative import (
    EvidenceMixin,
    NormalizedExpressionMixin,
    SimulationMixin,
)
from scmint.model._query_update import QueryUpdateMixin, reference_attributes
from scmint.nn._likelihoods import COUNT_LIKELIHOODS, LIKELIHOODS
from scmint.pp import (
    FeatureScaler,
    FittedTransform,
    LogNormPCA,
    TfidfLSI,
    gene_activity,
    parse_peak_names,
    protein_gene_matrix,
    protein_gene_names,
)
from scmint.pp._protein_genes import ProteinTable
from scmint.tl import smoothing_operator
from scmint.train import GeneratorDiscriminatorPlan, QuietTrainRunner, progress_epochs

from ._gene_sets import GeneSetScorePCA
from ._mnn import common_gene_names, mnn_prior
from ._module import FINETUNE, PRETRAIN, SCCROSSModule

Representation = Literal["pca", "lsi", "scaled"]
REPRESENTATIONS: tuple[str, ...] = ("pca", "lsi", "scaled")
INDEX_COLUMN = "_scmint_index"
"""``mdata.obs`` column with each cell's row number (registered as scvi-tools' indices)."""
PEAK_NAMES = ("atac", "peaks", "peak", "chromatin", "accessibility")
PROTEIN_NAMES = ("adt", "protein", "proteins", "prot", "cite", "antibody", "antibodies")
MIN_SHARED_GENES = 50
"""Shared genes needed for the automatic MNN prior."""


def _merge_histories(first: dict | None, second: dict | None) -> dict:
    """Concatenate two stages' histories (keys of either; epochs renumbered)."""
    first, second = first or {}, second or {}
    n_first = max((len(v) for v in first.values()), default=0)
    out = {}
    for key in list(first) + [k for k in second if k not in first]:
        parts = []
        if key in first:
            parts.append(first[key])
        if key in second:
            df = second[key].copy()
            df.index = np.arange(n_first, n_first + len(df))
            parts.append(df)
        merged = pd.concat(parts)
        merged.index.name = "epoch"
        out[key] = merged
    return out


class SCCROSS(
    QueryUpdateMixin,
    UnsupervisedTrainingMixin,
    SimulationMixin,
    NormalizedExpressionMixin,
    EvidenceMixin,
    MultiModalMixin,
    MuDataSetupMixin,
    BaseModelClass,
):
    """scCross: per-modality VAEs, bidirectional aligners, GANs and a common-gene MNN prior.

    The model of Yang et al. (scCross) for two or more modalities measured in the same
    cells, in different cells, or a mosaic of both, with cross-modal generation,
    multi-omics simulation and in-silico perturbation. Each modality ``k`` has a VAE
    from a reduced input (PCA of log-normalised counts for RNA, LSI for ATAC, stored
    :mod:`scmint.pp` transforms, optionally smoothed over a kNN graph of the cells:
    the published "GCN") to its own latent space ``u_k``, with a decoder in the
    modality's original features (negative binomial by default; ZINB, zero-inflated
    log-normal, Normal, Bernoulli) using the library size from the counts and
    batch-specific scale, bias and dispersion. Linear Gaussian aligners map every
    ``u_k`` into one joint space ``z`` and back. A modality discriminator ``D_z`` on ``z``
    and per-modality discriminators of real versus generated profiles are trained
    against the VAEs; a common-gene MNN prior (cells of every modality on the genes they
    share, MNN-corrected onto each other and reduced by PCA:
    :func:`scmint.model.sccross.mnn_prior`) anchors the alignment through a Gram-matrix loss.
    See :class:`~scmint.model.sccross.SCCROSSModule` for the losses.

    Training runs scCross's two stages (:meth:`train`): the per-modality VAEs (with the
    prior), then everything with the aligners and adversaries (two discriminator updates
    per generator update), with RMSprop without momentum, on
    :class:`scmint.train.GeneratorDiscriminatorPlan`.

    **Known pairs.** The published model ignores them. Here ``pairing_weight`` (1 by
    default) pulls the joint embeddings of cells measured in several modalities together;
    it acts only on such cells, so unpaired data train exactly as published. The default
    follows the benchmark (``BENCHMARKS.md``, ablations): with paired reference cells
    FOSCTTM fell from 0.31 to 0.13 on the CITE-seq starter and from 0.50 to 0.48 on the
    Multiome starter. ``pairing_weight=0`` reproduces the published model.

    Translation (:meth:`translate`) returns the target decoder's mean, on the count scale
    for count likelihoods: ``translation_space = "counts"``.

    **Small populations.** Within the epochs a CPU allows, the decoders underfit small
    cell types: generated and simulated profiles of a type of a few percent of the cells
    come out close to the large types. On SNARE-seq, 13-18 % of 444 astrocytes simulated
    by :meth:`simulate` (20 + 20 epochs, three seeds) are typed as astrocytes in RNA,
    against 94 % of real ones, and none in ATAC; on the simulator a 2.7 % type, 1-2 %
    (``BENCHMARKS.md``, scCross's claims).
    Check simulated cells of small types against the real ones before using them.

    **Batches.** With ``batch_key``, the decoders have per-batch parameters (as
    published) and, with ``center_batches=True`` (default), each batch's mean is taken
    from the reduced encoder inputs of each modality (the PCA / LSI tables, before the
    kNN smoothing, which then also links cells across batches): a batch's shift of the
    expression of every gene, which the per-batch decoders model, no longer reaches the
    encoders, nor the MNN prior (computed on batch-centred genes). On the simulator with
    a strong batch effect this mixes the batches (see
    BENCHMARKS.md, batch removal). With ``labels_key`` the centres (of the encoder
    inputs and of the prior's genes) are corrected for each batch's cell-type
    composition, as in CLUE, CONAAE and MINNET (:mod:`scmint.model._centres`); without
    labels they are the batches' means, which assumes batches of similar composition
    (as ComBat without covariates). Query cells then need their batch in ``obs``.

    **New batches.** :meth:`load_query_data` (scArches, as for CLUE) adds the new
    batches' decoder parameters (per-batch scale, bias and dispersion, started at the
    reference batches' mean) and trains only those on the query cells, which go through
    the reference's PCA / LSI, centred on their own batch's mean; the MNN prior, fitted
    over the reference cells, is not used there. Then ``translate(..., batch=...)`` and
    ``get_normalized_expression(transform_batch=...)`` decode in a new batch. With
    ``center_batches=False`` the encoders embed query cells of any batch directly.

    **Data on disk.** From a padded MuData read with ``backed=True`` SCCROSS trains on
    every cell, reading minibatches from the file (:mod:`scmint.data._backed`). What
    needs cells in memory is fitted on at most
    :data:`~scmint.model._base.ON_DISK_FIT_CELLS` (50,000) cells of each modality, drawn
    at random (seeded by ``scvi.settings.seed``) and read once: the PCA / LSI (and
    gene-set) transforms and the MNN prior, whose Gram terms then act on those cells
    only. The reduced, smoothed encoder inputs of every cell (``cells x n_components``
    per modality) and the smoothing graph are computed chunk by chunk, in one pass over
    the file (shared by the batch centres and the training tables), and held in memory.

    Parameters
    ----------
    mdata
        Padded MuData registered with :meth:`setup_mudata` (two or more modalities,
        raw counts for count likelihoods), in memory or read with ``backed=True`` (see
        **Data on disk**).
    n_latent
        Dimension of ``u_k`` and ``z`` (50).
    n_hidden, n_layers, dropout
        Encoder blocks ``Linear -> LeakyReLU(0.2) -> BatchNorm -> Dropout`` (256, 2, 0.2).
    likelihood
        ``"nb"`` (default), ``"zinb"``, ``"ziln"``, ``"normal"`` or ``"bernoulli"``; one
        value or ``{modality: value}``. ``"nb"`` / ``"zinb"`` need integer counts.
    representation
        Encoder input per modality: ``"pca"`` (:class:`~scmint.pp.LogNormPCA`), ``"lsi"``
        (:class:`~scmint.pp.TfidfLSI`) or ``"scaled"`` (:class:`~scmint.pp.FeatureScaler`,
        standardised features). Default: ``"lsi"`` for modalities named like peaks
        (``atac``, ``peaks``, ...), ``"scaled"`` for non-count likelihoods, else ``"pca"``.
    n_components
        Components of the PCA / LSI (100, as published; fewer on small data).
    gene_sets
        ``{modality: gene sets}`` (a dict set name -> genes, or a GMT path) for count
        modalities whose features are genes: the encoder input of those modalities gets
        ``gene_set_components`` principal components of per-cell gene-set scores appended
        (:class:`~scmint.model.sccross.GeneSetScorePCA`, fitted on the training cells and
        stored), as scCross optionally does. Default: none.
    gene_set_components
        Principal components of the gene-set scores (5, as published).
    smoothing_neighbors
        Average each cell's reduced input with its ``k`` nearest neighbours (20, the
        published GCN; 0: off). New cells are smoothed over their own kNN graph.
    gene_matrices
        ``{modality: AnnData}`` of gene-centric counts (cells x genes; e.g. ATAC gene
        activity from :func:`scmint.pp.gene_activity`) for the MNN prior, with the
        modality's measured cells as ``obs_names``. They take precedence over what
        SCCROSS builds itself (below).
    gene_annotation
        Gene coordinates (DataFrame with ``chrom``, ``start``, ``end``, ``strand``, or a
        GTF / BED path, see :func:`scmint.pp.read_genes`) of the RNA genes: a peak
        modality (named ``atac``, ``peaks``, ...; peaks named ``chr-start-end``) then
        enters the prior as gene activity (:func:`scmint.pp.gene_activity`, gene body
        plus 2 kb upstream). Default: the coordinates stored with the RNA features
        (``var`` columns ``chrom`` / ``start`` / ``end``, or ``interval`` as 10x readers
        write it), when there are any.
    protein_genes
        Protein -> gene table (mapping, two-column DataFrame or CSV / TSV path) for a
        protein modality (named ``adt``, ``protein``, ...) whose proteins are not
        named after their genes. Without it, proteins are matched by name and through
        the built-in table of human CD antigens (:func:`scmint.pp.protein_gene_names`:
        ``CD56`` -> ``NCAM1``, ``HLA-DR`` -> ``HLA-DRA``), so a CITE-seq panel enters
        the prior on the genes encoding its proteins.

        **Which data get a prior.** The prior is built when two or more modalities
        have gene-centric counts sharing >= 50 genes: RNA with a CITE-seq panel (when
        >= 50 of the panel's genes are among the RNA features), RNA with ATAC given
        ``gene_annotation`` (or ``gene_matrices``), several RNA-like modalities.
        Otherwise SCCROSS warns at construction, naming what to pass, and aligns by
        its adversaries alone: fine with paired cells (``pairing_weight``) or labels
        (``classifier_weight``), but on unpaired data without a prior the published
        model is often no better than random (BENCHMARKS.md, SCCROSS notes).
    prior_components, prior_neighbors, prior_top_genes
        Dimension (50), MNN neighbours (20) and shared genes (2,000) of the prior.
    cells_per_metacell
        Compute the prior on k-means metacells of about this many cells (scCross's
        atlas mode); ``None`` (default): on cells.
    kl_weight
        Weight of ``KL(q(u) || N(0, I))`` (1).
    z_kl_weight
        Weight of ``KL(q(z | u_k) || q(u_k))`` in stage 2 (0.04, as published).
    gan_weight
        ``lambda_GAN`` (0.05): weight of the discriminators.
    mnn_weight
        ``lambda_MNN`` (0.04): weight of the Gram-matrix prior loss in stage 2.
    pretrain_mnn_weight
        Weight of the prior loss in stage 1 (0.04; the published code uses 1e-4 on raw
        dot products, here similarities are cosines).
    pairing_weight
        Weight of the distance between joint embeddings of known pairs (1; 0: off, as
        published).
    classifier_weight
        Weight of the cross-entropy of a linear cell-type classifier shared by all
        modalities on the joint embeddings ``z`` of the labelled cells (stage 2; cells in
        the unlabelled category take no part). 0 (default): off, as published (scCross is
        unsupervised). A scmint extension for unpaired data whose modalities share no
        genes for the MNN prior (e.g. RNA + ATAC without peak-gene links or gene
        coordinates): the adversaries alone do not find the correspondence, the labels
        do (1.0 is a good start). Needs ``labels_key`` in :meth:`setup_mudata`.
    modality_weights
        ``{modality: w_k}`` weights of the per-modality terms (default 1).
    center_batches
        Take each batch's mean from the reduced encoder inputs (default ``True``; acts
        only with two or more registered batches), see **Batches**.

    Examples
    --------
    >>> mdata = scmint.data.pad_mudata(mdata)
    >>> scmint.model.SCCROSS.setup_mudata(mdata, batch_key="batch")
    >>> model = scmint.model.SCCROSS(mdata, gene_matrices={"atac": activity})
    >>> model.train()
    >>> z = model.get_latent_representation(modality="joint")
    >>> atac = model.translate(source="rna", target="atac", indices=rna_cells)
    >>> sim = model.simulate("cell_type", "B cell", n_cells=500)
    """

    _module_cls = SCCROSSModule
    _per_cell_attributes = ("prior_", "prior_info_")
    _reads_from_disk = True
    _query_attributes = ("batch_centers_",)  # the reference's plus the new batches' own
    _training_plan_cls = GeneratorDiscriminatorPlan
    _data_splitter_cls = RegisteredDataSplitter
    _train_runner_cls = QuietTrainRunner
    _latent_key = "X_sccross"
    #: Space of :meth:`translate`'s output: ``"counts"``, counts or count-scale means
    #: (compared after ``log1p(x / rowsum * 1e4)``); ``"lognorm"`` would be that already.
    translation_space = "counts"
    _count_modalities_default = "all"

    def __init__(
        self,
        mdata: md.MuData,
        n_latent: int = 50,
        n_hidden: int = 256,
        n_layers: int = 2,
        dropout: float = 0.2,
        likelihood: str | Mapping[str, str] = "nb",
        representation: Representation | Mapping[str, Representation] | None = None,
        n_components: int = 100,
        smoothing_neighbors: int = 20,
        gene_sets: Mapping[str, Mapping[str, Sequence[str]] | str] | None = None,
        gene_set_components: int = 5,
        gene_matrices: Mapping[str, ad.AnnData] | None = None,
        gene_annotation: pd.DataFrame | str | Path | None = None,
        protein_genes: ProteinTable | None = None,
        prior_components: int = 50,
        prior_neighbors: int = 20,
        prior_top_genes: int = 2000,
        cells_per_metacell: int | None = None,
        kl_weight: float = 1.0,
        z_kl_weight: float = 0.04,
        gan_weight: float = 0.05,
        mnn_weight: float = 0.04,
        pretrain_mnn_weight: float = 0.04,
        pairing_weight: float = 1.0,
        classifier_weight: float = 0.0,
        modality_weights: Mapping[str, float] | None = None,
        center_batches: bool = True,
    ) -> None:
        super().__init__(mdata)
        mods = self.modalities
        check_positive_int(n_latent=n_latent, n_hidden=n_hidden, n_layers=n_layers)
        if isinstance(smoothing_neighbors, bool) or smoothing_neighbors < 0:
            raise ValueError(f"smoothing_neighbors must be >= 0, got {smoothing_neighbors!r}.")
        for name, value in (
            ("kl_weight", kl_weight),
            ("z_kl_weight", z_kl_weight),
            ("gan_weight", gan_weight),
            ("mnn_weight", mnn_weight),
            ("pretrain_mnn_weight", pretrain_mnn_weight),
            ("pairing_weight", pairing_weight),
            ("classifier_weight", classifier_weight),
        ):
            if isinstance(value, bool) or not np.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}.")
        likelihoods = resolve_per_modality("likelihood", likelihood, mods, LIKELIHOODS, "nb")
        counted = [m for m in mods if likelihoods[m] in COUNT_LIKELIHOODS]
        self._check_count_modalities(counted)
        reps = self._representations(representation, likelihoods)
        self.likelihoods_ = likelihoods
        self.representations_ = reps
        self.smoothing_neighbors = int(smoothing_neighbors)
        reference = reference_attributes()  # set while load_query_data builds a query model
        if reference is None and saved_attribute("transforms_") is not None:
            # load: the transforms and the prior come from the file, nothing is refitted
            self.transforms_ = saved_attribute("transforms_")
            self.gene_set_transforms_ = saved_attribute("gene_set_transforms_") or {}
            self.prior_ = saved_attribute("prior_")
            self.prior_info_ = saved_attribute("prior_info_") or {}
            self.batch_centers_ = None  # the file's (or none, for a file saved before them)
        elif reference is None:
            prior_kwargs = {
                "n_comps": prior_components,
                "n_neighbors": prior_neighbors,
                "n_top_genes": prior_top_genes,
                "cells_per_metacell": cells_per_metacell,
            }
            with self._reading_fit_rows_once():  # from disk: one read of the subsample
                self.transforms_ = self._fit_transforms(reps, int(n_components))
                self.gene_set_transforms_ = self._fit_gene_sets(
                    gene_sets, likelihoods, gene_set_components
                )
                self.prior_, self.prior_info_ = self._compute_prior(
                    gene_matrices, gene_annotation, protein_genes, prior_kwargs, center_batches
                )
            # on load the centres come from the file; one saved before they existed has none
            fit_centers = center_batches and not loading_saved_model()
            self.batch_centers_ = self._fit_batch_centers() if fit_centers else None
        else:  # the query cells go through the reference's transforms; the prior is its own
            self.transforms_ = reference["transforms_"]
            self.gene_set_transforms_ = reference["gene_set_transforms_"]
            self.prior_, self.prior_info_ = None, {"query_update": "no prior for query cells"}
            centers = reference.get("batch_centers_")
            self.batch_centers_ = None if centers is None else self._fit_batch_centers(centers)
        self.library_mean_ = self._library_means()
        classes, class_of_code = self._label_classes()
        self.classes_ = np.asarray(classes, dtype=object)
        if classifier_weight > 0 and len(classes) < 2:
            raise ValueError(
                f"classifier_weight={classifier_weight} needs cell-type labels with two or "
                f"more classes, but the MuData was set up with "
                f"{'no labels_key' if not classes else 'one class'}. Pass labels_key= to "
                "SCCROSS.setup_mudata, or set classifier_weight=0."
            )
        n_batch = self.summary_stats.n_batch
        self.module = self._module_cls(
            modalities=mods,
            n_input=[self._input_width(m) for m in mods],
            n_features=[self.adata.mod[m].n_vars for m in mods],
            likelihoods=likelihoods,
            n_batch=n_batch,
            n_latent=n_latent,
            n_hidden=n_hidden,
            n_layers=n_layers,
            dropout=dropout,
            n_prior=prior_components,
            kl_weight=kl_weight,
            z_kl_weight=z_kl_weight,
            gan_weight=gan_weight,
            mnn_weight=mnn_weight,
            pretrain_mnn_weight=pretrain_mnn_weight,
            pairing_weight=pairing_weight,
            n_classes=len(classes),
            class_of_code=class_of_code,
            classifier_weight=classifier_weight,
            modality_weights=modality_weights,
        )
        inputs = ", ".join(
            f"{m} ({self.adata.mod[m].n_vars} features, {reps[m]} "
            f"{self._input_width(m)}, {likelihoods[m]})"
            for m in mods
        )
        prior = "none" if self.prior_ is None else f"MNN prior {prior_components}-d"
        self._model_summary_string = (
            f"SCCROSS: {inputs}; n_latent={n_latent}, {n_batch} batches, {prior}; "
            f"lambda_GAN={gan_weight:g}, lambda_MNN={mnn_weight:g}, pairing={pairing_weight:g}, "
            f"classifier={classifier_weight:g}."
        )
        self.init_params_ = self._get_init_params(locals())
        # these only serve the prior (saved as prior_); keep them out of save files
        for name in ("gene_matrices", "gene_annotation", "protein_genes"):
            self.init_params_["non_kwargs"][name] = None

    # ------------------------------------------------------------------ setup
    @classmethod
    def _extra_fields(cls, mdata: md.MuData) -> list:
        """Register each cell's row number, to look up its reduced input and prior."""
        mdata.obs[INDEX_COLUMN] = np.arange(mdata.n_obs, dtype=np.int64)
        return [MuDataNumericalObsField(REGISTRY_KEYS.INDICES_KEY, INDEX_COLUMN, mod_key=None)]

    def _representations(self, representation, likelihoods: Mapping[str, str]) -> dict[str, str]:
        mods = self.modalities
        given = dict(representation) if isinstance(representation, Mapping) else {}
        unknown = [m for m in given if m not in mods]
        if unknown:
            raise KeyError(f"representation names modalities {unknown} not among {mods}.")
        reps = {}
        for m in mods:
            if isinstance(representation, str):
                reps[m] = representation
            elif m in given:
                reps[m] = given[m]
            elif likelihoods[m] not in COUNT_LIKELIHOODS:
                reps[m] = "scaled"
            elif m.lower() in PEAK_NAMES:
                reps[m] = "lsi"
            else:
                reps[m] = "pca"
        bad = {m: r for m, r in reps.items() if r not in REPRESENTATIONS}
        if bad:
            raise ValueError(f"Unknown representation {bad}; choose from {REPRESENTATIONS}.")
        wrong = [
            m for m in mods if reps[m] in ("pca", "lsi") and likelihoods[m] not in COUNT_LIKELIHOODS
        ]
        if wrong:
            raise ValueError(
                f"representation 'pca'/'lsi' reads counts, but modalities {wrong} have a "
                "non-count likelihood; use representation='scaled' for them."
            )
        return reps

    def _fit_transforms(
        self, reps: Mapping[str, str], n_components: int
    ) -> dict[str, FittedTransform]:
        transforms = {}
        with keep_torch_threads(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            for m in self.modalities:
                rows = np.flatnonzero(self._registered_mask(m))
                if reps[m] == "pca":
                    t = LogNormPCA(n_comps=n_components, n_top_genes=2000)
                elif reps[m] == "lsi":
                    t = TfidfLSI(n_comps=n_components + 1, drop_component="first")
                else:
                    t = FeatureScaler(max_value=10.0)
                transforms[m] = t.fit(
                    self._fit_rows(m, rows), feature_names=self.adata.mod[m].var_names
                )
        return transforms

    def _fit_gene_sets(
        self, gene_sets, likelihoods: Mapping[str, str], n_comps: int
    ) -> dict[str, GeneSetScorePCA]:
        """Fit the gene-set score PCA of each modality named in ``gene_sets``."""
        gene_sets = dict(gene_sets or {})
        unknown = sorted(set(gene_sets) - set(self.modalities))
        if unknown:
            raise KeyError(
                f"gene_sets names unknown modalities {unknown}; the model has {self.modalities}."
            )
        not_counts = [m for m in gene_sets if likelihoods[m] not in COUNT_LIKELIHOODS]
        if not_counts:
            raise ValueError(
                f"gene_sets need gene counts, but modalities {not_counts} have a non-count "
                "likelihood; drop them from gene_sets."
            )
        if isinstance(n_comps, bool) or int(n_comps) < 1:
            raise ValueError(f"gene_set_components must be a positive integer, got {n_comps!r}.")
        fitted = {}
        for m, sets in gene_sets.items():
            rows = np.flatnonzero(self._registered_mask(m))
            with keep_torch_threads():
                fitted[m] = GeneSetScorePCA(sets, n_comps=int(n_comps)).fit(
                    self._fit_rows(m, rows), feature_names=self.adata.mod[m].var_names
                )
        return fitted

    # ------------------------------------------------------------------ MNN prior
    def _compute_prior(
        self,
        gene_matrices: Mapping[str, ad.AnnData] | None,
        gene_annotation: pd.DataFrame | str | Path | None,
        protein_genes: ProteinTable | None,
        kwargs: dict,
        center_batches: bool = False,
    ) -> tuple[dict[str, np.ndarray] | None, dict]:
        mods = self.modalities
        given = dict(gene_matrices or {})
        unknown = [m for m in given if m not in mods]
        if unknown:
            raise KeyError(f"gene_matrices names modalities {unknown} not among {mods}.")
        # every measured cell; from disk a random subsample of them (the others get none)
        rows = {m: np.flatnonzero(self._registered_mask(m)) for m in mods}
        if self._on_disk():
            rows = {m: fit_subsample(r) for m, r in rows.items()}
        matrices, sources = self._gene_centric_matrices(given, gene_annotation, protein_genes, rows)
        usable = self._prior_modalities(matrices, explicit=bool(given))
        if usable is None:
            return None, {}
        batches = labels = None
        if center_batches and self.summary_stats.n_batch > 1:
            codes = self._cell_batch_codes(self.adata.obs)
            batches = {m: codes[rows[m]] for m in usable}
            classes = self._centering_classes()
            if classes is not None:
                labels = {m: classes[rows[m]] for m in usable}
        with keep_torch_threads():
            prior, info = mnn_prior(
                {m: matrices[m] for m in usable}, batches=batches, labels=labels, **kwargs
            )
        out = {}
        for m in mods:
            table = np.zeros((self.adata.n_obs, kwargs["n_comps"]), dtype=np.float32)
            if m in prior:
                table[self._registered_mask(m)] = np.nan  # measured, no prior (subsample)
                table[rows[m]] = prior[m]
            out[m] = table
        info["modalities"] = usable
        info["gene_sources"] = {m: sources[m] for m in usable}
        return out, info

    def _feature_kind(self, m: str) -> str:
        """``"peaks"``, ``"proteins"`` or ``"genes"``, from the modality's name."""
        if m.lower() in PEAK_NAMES:
            return "peaks"
        if m.lower() in PROTEIN_NAMES:
            return "proteins"
        return "genes"

    def _gene_feature_names(self) -> pd.Index:
        """Feature names of the gene modalities (not peaks, not proteins), united."""
        genes = pd.Index([])
        for m in self.modalities:
            if self._feature_kind(m) == "genes":
                genes = genes.append(self.adata.mod[m].var_names).unique()
        return genes

    def _gene_centric_matrices(
        self,
        given: Mapping[str, ad.AnnData],
        gene_annotation: pd.DataFrame | str | Path | None,
        protein_genes: ProteinTable | None,
        rows: Mapping[str, np.ndarray],
    ) -> tuple[dict[str, ad.AnnData], dict[str, str]]:
        """Cells x genes counts of each modality that has them, for the MNN prior.

        Over the registered cells ``rows[m]`` of each modality.

        In order: the user's ``gene_matrices``; gene activity of a peak modality from
        ``gene_annotation``; a protein modality's counts on the genes that encode its
        proteins (:func:`scmint.pp.protein_gene_names`); a gene modality's own counts.
        Returns the matrices and, per modality, which of these was used.
        """
        genes = self._gene_feature_names()
        coordinates, coordinates_from = gene_annotation, "gene_annotation"
        if coordinates is None:
            coordinates, coordinates_from = self._gene_coordinates()
        matrices, sources = {}, {}
        for m in self.modalities:
            names = self.adata.obs_names[rows[m]]
            kind = self._feature_kind(m)
            if m in given:
                g = given[m]
                if not isinstance(g, ad.AnnData):
                    raise TypeError(f"gene_matrices['{m}'] must be an AnnData (cells x genes).")
                pos = pd.Index(g.obs_names).get_indexer(names)
                if (pos < 0).any():
                    raise ValueError(
                        f"gene_matrices['{m}'] lacks {int((pos < 0).sum())} of the {len(names)} "
                        f"cells measured in '{m}' (matched by obs_names, e.g. "
                        f"{list(names[pos < 0][:3])})."
                    )
                matrices[m], source = g[pos], "gene_matrices"
            elif self.likelihoods_[m] not in COUNT_LIKELIHOODS:
                continue
            else:
                own = ad.AnnData(
                    X=sparse.csr_matrix(self._fit_rows(m, rows[m])),
                    obs=pd.DataFrame(index=names),
                    var=pd.DataFrame(index=self.adata.mod[m].var_names),
                )
                if kind == "peaks" and coordinates is not None and len(genes):
                    with warnings.catch_warnings():  # genes without peaks are expected here
                        warnings.simplefilter("ignore", UserWarning)
                        matrices[m] = gene_activity(own, genes=coordinates, gene_names=genes)
                    source = f"gene activity ({coordinates_from})"
                elif kind == "proteins" and len(genes):
                    matrices[m] = protein_gene_matrix(own, genes=genes, table=protein_genes)
                    source = "encoding genes of the proteins"
                elif kind == "genes":
                    matrices[m], source = own, "own features"
                else:
                    continue
            sources[m] = source
        return matrices, sources

    def _gene_coordinates(self) -> tuple[pd.DataFrame | None, str]:
        """Gene coordinates stored with a gene modality's features, if any.

        ``var`` columns ``chrom``, ``start``, ``end`` (``strand`` optional; scglue's
        convention) or ``interval`` (``chr1:100-200``, as 10x / muon readers store it).
        """
        for m in self.modalities:
            if self._feature_kind(m) != "genes":
                continue
            var = self.adata.mod[m].var
            if {"chrom", "start", "end"} <= set(var.columns):
                cols = ["chrom", "start", "end"] + (["strand"] if "strand" in var else [])
                table = var[cols].dropna()
            elif "interval" in var.columns:
                parsed = parse_peak_names(var["interval"].astype(str).to_numpy())
                parsed.index = var.index
                table = parsed.loc[parsed["parsed"].to_numpy(), ["chrom", "start", "end"]]
            else:
                continue
            if len(table):
                return table, f"gene coordinates in {m}.var"
        return None, ""

    def _prior_modalities(self, matrices: Mapping[str, ad.AnnData], explicit: bool) -> list | None:
        """Modalities whose gene-centric matrices share enough genes (or ``None``)."""
        names = list(matrices)
        shared = common_gene_names([matrices[m].var_names for m in names]) if names else []
        if len(names) >= 2 and len(shared) >= MIN_SHARED_GENES:
            return names
        if explicit:
            raise ValueError(
                f"The gene-centric matrices of {names} share {len(shared)} genes, fewer than "
                f"{MIN_SHARED_GENES}; the MNN prior needs the same gene names in every modality."
            )
        warnings.warn(self._no_prior_message(names, len(shared)), UserWarning, stacklevel=4)
        return None

    def _no_prior_message(self, names: list[str], n_shared: int) -> str:
        """Why there is no MNN prior, and what to pass for one."""
        genes = self._gene_feature_names()
        found = (
            f"the gene-centric forms of {names} share {n_shared} genes (< {MIN_SHARED_GENES})"
            if len(names) >= 2
            else "fewer than two modalities have genes to compare"
        )
        hints = []
        for m in self.modalities:
            kind = self._feature_kind(m)
            if kind == "peaks":
                hints.append(
                    f"gene_annotation= (gene coordinates as a DataFrame or GTF / BED path, "
                    f"for '{m}' gene activity) or gene_matrices={{'{m}': "
                    "scmint.pp.gene_activity(...)}"
                )
            elif kind == "proteins":
                matched = protein_gene_names(self.adata.mod[m].var_names, genes=genes)
                hints.append(
                    f"protein_genes= (a protein -> gene table for the '{m}' proteins: "
                    f"{int(matched.notna().sum())} of {len(matched)} were matched to genes, "
                    f"{int(matched.isin(genes).sum())} of them among the RNA features; see "
                    "scmint.pp.protein_gene_names)"
                )
        if not hints:
            hints.append("gene_matrices= ({modality: cells x genes AnnData})")
        return (
            f"SCCROSS builds no common-gene MNN prior: {found}. Without it the modalities "
            "align through the adversaries alone, which on unpaired data is often no better "
            "than random. For a prior pass " + "; or ".join(hints) + ". With paired cells, "
            "pairing_weight aligns them; with labels, classifier_weight."
        )

    # ------------------------------------------------------------------ encoder inputs
    def _smoothing_graph(self, rep: np.ndarray) -> sparse.csr_matrix | None:
        """Row-normalised kNN graph with self-loops (scCross's GCN smoothing).

        Each cell is the mean of itself and its ``smoothing_neighbors`` nearest cells in
        ``rep``: :func:`scmint.tl.smoothing_operator` keeping every kNN edge.
        """
        k = min(self.smoothing_neighbors, rep.shape[0] - 1)
        if k < 1:
            return None
        with keep_torch_threads():
            return smoothing_operator(rep, n_neighbors=k, percentile=None)

    def _reduce(self, x, modality: str, batch: np.ndarray | None = None) -> np.ndarray:
        """The stored training transforms of ``modality`` applied to rows ``x``.

        With the rows' batch codes ``batch`` and fitted batch centres, each row's batch
        mean is taken off (see **Batches** in the class docstring). Rows on disk are
        read and reduced chunk by chunk.
        """
        if isinstance(x, OnDiskRows):
            out = np.empty((len(x), self._input_width(modality)), dtype=np.float32)
            for pos, block in x.chunks():
                out[pos] = self._reduce(block, modality, None if batch is None else batch[pos])
            return out
        with keep_torch_threads():
            rep = self.transforms_[modality].transform(x)
            scores = self.gene_set_transforms_.get(modality)
            if scores is not None:
                rep = np.hstack([rep, scores.transform(x)])
        return self._centred(rep.astype(np.float32), modality, batch)

    def _centred(self, rep: np.ndarray, modality: str, batch: np.ndarray | None) -> np.ndarray:
        """Reduced rows ``rep`` less their batch's centre (with fitted centres and ``batch``)."""
        if batch is None or getattr(self, "batch_centers_", None) is None:
            return rep
        return rep - self.batch_centers_[modality][batch]

    def _fit_batch_centers(
        self, reference: Mapping[str, np.ndarray] | None = None
    ) -> dict[str, np.ndarray] | None:
        """Centre of the reduced encoder inputs of each batch in each modality.

        ``None`` with one batch. With cell-type labels the centres are corrected for each
        batch's composition (:mod:`scmint.model._centres`), else they are the batches'
        means; a batch without cells in a modality gets that modality's mean over all its
        cells. With ``reference`` (a query update), the reference's batches keep its
        centres and the new batches get their own cells' means.
        """
        n_batch = self.summary_stats.n_batch
        if n_batch < 2:
            return None
        all_codes = self._cell_batch_codes(self.adata.obs)
        classes = None if reference is not None else self._centering_classes()
        centers, reduced = {}, {}
        for m in self.modalities:
            rows = np.flatnonzero(self._registered_mask(m))
            reduced[m] = (rows, self._reduce(self._registered(m)[rows], m))
            table = batch_centres(
                reduced[m][1].astype(np.float64),
                all_codes[rows],
                n_batch,
                None if classes is None else classes[rows],
            )
            if reference is not None:
                n_ref = reference[m].shape[0]
                table[:n_ref] = reference[m]
            centers[m] = table.astype(np.float32)
        # kept for train (_install_tables), which would otherwise reduce every cell again
        self.__dict__["_uncentred_inputs"] = reduced
        return centers

    @property
    def _encodes_batch(self) -> bool:
        """The encoders read each cell's batch when its mean is taken off their input."""
        return getattr(self, "batch_centers_", None) is not None

    def _input_width(self, modality: str) -> int:
        """Width of the encoder input of ``modality`` (reduction plus gene-set PCs)."""
        scores = self.gene_set_transforms_.get(modality)
        return self.transforms_[modality].n_output_ + (0 if scores is None else scores.n_output_)

    def _encoder_inputs(
        self, x, modality: str, graph=None, batch: np.ndarray | None = None
    ) -> np.ndarray:
        """Reduced (batch-centred, smoothed) encoder inputs of the rows of ``x``."""
        return self._smoothed(self._reduce(x, modality, batch), graph)

    def _smoothed(self, rep: np.ndarray, graph=None) -> np.ndarray:
        """``rep`` averaged over each row's kNN (``graph``, default built from ``rep``)."""
        if self.smoothing_neighbors > 0:
            graph = self._smoothing_graph(rep) if graph is None else graph
            if graph is not None:
                rep = np.asarray(graph @ rep, dtype=np.float32)
        return rep

    def _install_tables(self) -> None:
        """Put the encoder inputs (and prior) of every registered cell on the module."""
        inputs = {}
        codes = self._cell_batch_codes(self.adata.obs) if self._encodes_batch else None
        kept = self.__dict__.pop("_uncentred_inputs", {})  # reduced when the centres were fitted
        for m in self.modalities:
            rows = np.flatnonzero(self._registered_mask(m))
            batch = None if codes is None else codes[rows]
            table = np.zeros((self.adata.n_obs, self._input_width(m)), dtype=np.float32)
            if m in kept and np.array_equal(kept[m][0], rows):
                rep = self._centred(kept[m][1], m, batch)
            else:
                rep = self._reduce(self._registered(m)[rows], m, batch)
            table[rows] = self._smoothed(rep)
            inputs[m] = table
        self.module.set_tables(inputs, self.prior_)

    # ------------------------------------------------------------------ training
    def train(
        self,
        max_epochs: int | None = None,
        pretrain_epochs: int | None = None,
        lr: float = 1e-3,
        batch_size: int = 128,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        train_size: float | None = None,
        validation_size: float | None = None,
        shuffle_set_split: bool = True,
        early_stopping: bool = True,
        early_stopping_patience: int | None = None,
        burnin_epochs: int | None = None,
        reduce_lr_on_plateau: bool = True,
        lr_patience: int | None = None,
        datasplitter_kwargs: dict | None = None,
        plan_kwargs: dict | None = None,
        **trainer_kwargs: Any,
    ):
        """Train in scCross's two stages: the VAEs, then aligners and adversaries.

        Stage 1 trains every modality's VAE (with the prior's Gram term); stage 2
        trains everything with the aligners, ``D_z`` and the data discriminators (two
        discriminator updates, then one generator update per minibatch). Both use
        RMSprop without momentum (:class:`scmint.train.GeneratorDiscriminatorPlan` with a
        custom optimiser), scvi-tools' data splitter, progress bar and early stopping.
        ``model.history`` holds both stages (stage 2 after stage 1's epochs).

        Parameters
        ----------
        max_epochs
            Epochs of stage 2. Default: scCross's ``max(ceil(48 / (lr * n_batches)), 48)``
            with ``n_batches`` minibatches per epoch, capped at 1,000.
        pretrain_epochs
            Epochs of stage 1 (default: as ``max_epochs``; 0 skips stage 1).
        lr
            RMSprop learning rate of both stages (1e-3).
        batch_size
            Cells per minibatch (128).
        accelerator, devices
            Lightning accelerator and devices.
        train_size, validation_size, shuffle_set_split
            As in scvi-tools (default 90% training cells).
        early_stopping
            Stop a stage when its validation objective (stage 1: ``validation_loss``;
            stage 2: ``vae_loss_validation``) stops improving.
        early_stopping_patience
            Default: scCross's ``max(ceil(4 / (lr * n_batches)), 4)`` for the automatic
            ``max_epochs``, else the same share of ``max_epochs`` (4 / 48), at least 4.
        burnin_epochs
            Stage-2 epochs over which the noise on ``D_z``'s input anneals to 0 (early
            stopping does not stop a stage-2 run before they end). Default: 8 / 48 of
            ``max_epochs``, as published; 0: no noise. In very short runs the noisy
            epochs cost alignment (on the demo's simulation, 10 + 10 epochs: held-out
            FOSCTTM 0.34 with, 0.30 without, mean of three seeds; 20 + 20 epochs, one
            seed: 0.336 and 0.337).
        reduce_lr_on_plateau
            Divide the learning rate by 10 when the stage's validation objective stops
            improving for ``lr_patience`` epochs (published: on).
        lr_patience
            Default: 2 / 48 of the stage's epochs, at least 2, as published.
        datasplitter_kwargs
            Passed to :class:`~scvi.dataloaders.DataSplitter`.
        plan_kwargs
            Passed to :class:`~scmint.train.GeneratorDiscriminatorPlan` (e.g.
            ``reduce_lr_on_plateau``, ``max_grad_norm``).
        **trainer_kwargs
            Passed to :class:`~scvi.train.Trainer`.
        """
        if not (np.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be a positive number, got {lr!r}.")
        n = self.adata.n_obs
        n_val = self._validation_cells(train_size, validation_size, early_stopping)
        n_batches = ceil((n - n_val) / batch_size)
        max_epochs = progress_epochs(48, lr, n_batches) if max_epochs is None else int(max_epochs)
        pretrain = max_epochs if pretrain_epochs is None else int(pretrain_epochs)
        if max_epochs < 0 or pretrain < 0:
            raise ValueError(
                f"max_epochs and pretrain_epochs must be >= 0, got {max_epochs}, {pretrain}."
            )

        def share(progress: int, epochs: int) -> int:
            """Epochs for scCross's progress units (of 48), as a share of ``epochs``."""
            return max(ceil(epochs * progress / 48), 1)

        burnin = share(8, max_epochs) if burnin_epochs is None else int(burnin_epochs)
        if burnin < 0:
            raise ValueError(f"burnin_epochs must be >= 0, got {burnin_epochs!r}.")
        self.module.burnin_epochs = burnin
        if n_val > 0:
            trainer_kwargs.setdefault("check_val_every_n_epoch", 1)
        self._install_tables()
        optimizer = functools.partial(torch.optim.RMSprop, lr=lr, momentum=0.0)

        def plan(epochs: int, monitor: str) -> dict:
            return {
                "optimizer": "Custom",
                "optimizer_creator": optimizer,
                "order": "discriminator_first",
                "reduce_lr_on_plateau": reduce_lr_on_plateau and n_val > 0,
                "lr_patience": max(share(2, epochs), 2) if lr_patience is None else lr_patience,
                "lr_factor": 0.1,
                "lr_scheduler_metric": monitor,
                **(plan_kwargs or {}),
            }

        def patience(epochs: int) -> int:
            if early_stopping_patience is not None:
                return int(early_stopping_patience)
            return max(share(4, epochs), 4)

        common = {
            "accelerator": accelerator,
            "devices": devices,
            "train_size": train_size,
            "validation_size": validation_size,
            "shuffle_set_split": shuffle_set_split,
            "batch_size": batch_size,
            "early_stopping": early_stopping,
            "datasplitter_kwargs": datasplitter_kwargs,
        }
        history = None
        if pretrain > 0:
            self.module.stage = PRETRAIN
            self.module.train()
            super().train(
                max_epochs=pretrain,
                plan_kwargs=plan(pretrain, "validation_loss"),
                early_stopping_monitor="validation_loss",
                early_stopping_patience=patience(pretrain),
                **common,
                **trainer_kwargs,
            )
            history = self.history_
            self.is_trained_ = False  # so that stage 2 starts a fresh history
        self.module.stage = FINETUNE
        if max_epochs > 0:
            self.module.train()
            stage2 = {"early_stopping_warmup_epochs": burnin, **trainer_kwargs}
            super().train(
                max_epochs=max_epochs,
                plan_kwargs={"n_discriminator_steps": 2, **plan(max_epochs, "vae_loss_validation")},
                early_stopping_monitor="vae_loss_validation",
                early_stopping_patience=patience(max_epochs),
                **common,
                **stage2,
            )
            self.history_ = _merge_histories(history, self.history_)
        self.is_trained_ = True
        self.module.eval()
        return None

    # ------------------------------------------------------------------ forward passes
    @torch.inference_mode()
    def _encode_inputs(
        self, h: np.ndarray, modality: str, batch_size: int | None, space: str = "z"
    ) -> tuple[np.ndarray, np.ndarray]:
        """Means and standard deviations of ``z`` (or ``u``) of encoder inputs ``h``."""
        self.module.eval()
        width = self.module.n_latent
        loc = np.empty((h.shape[0], width), dtype=np.float32)
        scale = np.empty_like(loc)
        for rows, block in row_batches(h, batch_size or INFERENCE_BATCH, self.device):
            qu = self.module.encode(block, modality)
            dist = qu if space == "u" else self.module.joint(qu.loc, modality)
            loc[rows] = dist.loc.float().cpu().numpy()
            scale[rows] = dist.scale.float().cpu().numpy()
        return loc, scale

    def _embed_matrix(
        self, x, modality: str, batch_size: int | None = None, batch: np.ndarray | None = None
    ) -> np.ndarray:
        h = self._encoder_inputs(x, modality, batch=batch)
        return self._encode_inputs(h, modality, batch_size)[0]

    @torch.inference_mode()
    def _logits_matrix(
        self, x, modality: str, batch_size: int | None = None, batch: np.ndarray | None = None
    ) -> np.ndarray:
        z = self._embed_matrix(x, modality, batch_size, batch)
        logits = self.module.classifier(torch.as_tensor(z, device=self.device))
        return logits.float().cpu().numpy()

    # ------------------------------------------------------------------ public API hooks
    _translation_options = ("sample", "library", "batch")

    def _classifier_classes(self) -> np.ndarray:
        if self.module.classifier is None:
            raise ValueError(
                "This SCCROSS has no classifier: it was trained with classifier_weight=0 "
                "(the default, as published). Set up with labels_key= and pass "
                "classifier_weight=1.0 to train one, or transfer labels through the "
                "embedding with scmint.tl.transfer_labels."
            )
        return self.classes_

    def _check_translation(self, target: str, batch: str | int | None = None, **_: Any) -> None:
        self._batch_code(batch)

    def _translate_latent(
        self,
        z: np.ndarray,
        target: str,
        cells: Cells,
        batch_size: int | None,
        sample: bool = False,
        library: str | float | np.ndarray = "mean",
        batch: str | int | None = None,
    ) -> np.ndarray:
        """``target`` profiles decoded from joint codes ``z`` through ``target``'s aligner."""
        return self._decode_z(z, target, sample, library, batch, batch_size)

    def _embed_pair(
        self,
        x,
        x_perturbed,
        modality: str,
        batch_size: int | None = None,
        batch: np.ndarray | None = None,
    ):
        rep = self._reduce(x, modality, batch)
        graph = self._smoothing_graph(rep) if self.smoothing_neighbors > 0 else None
        z0 = self._embed_matrix_with(rep, modality, graph, batch_size)
        z1 = self._embed_matrix_with(
            self._reduce(x_perturbed, modality, batch), modality, graph, batch_size
        )
        return z0, z1

    def _embed_matrix_with(self, rep, modality, graph, batch_size) -> np.ndarray:
        h = rep if graph is None else np.asarray(graph @ rep, dtype=np.float32)
        return self._encode_inputs(h, modality, batch_size)[0]

    @torch.inference_mode()
    def _decode_z(
        self,
        z: np.ndarray,
        target: str,
        sample: bool = False,
        library: str | float | np.ndarray = "mean",
        batch: str | int | None = None,
        batch_size: int | None = None,
        sample_aligner: bool = False,
    ) -> np.ndarray:
        """``target`` profiles decoded from joint codes ``z`` (means or samples)."""
        self.module.eval()
        n = z.shape[0]
        lib = self._library(library, target, n)
        code = self._batch_code(batch)
        bs = batch_size or INFERENCE_BATCH
        out = np.empty((n, self.adata.mod[target].n_vars), dtype=np.float32)
        for start in range(0, n, bs):
            stop = min(start + bs, n)
            zb = torch.as_tensor(z[start:stop], dtype=torch.float32, device=self.device)
            pu = self.module.unjoint(zb, target)
            u = pu.sample() if sample_aligner else pu.loc
            b = torch.full((stop - start,), code, dtype=torch.long, device=self.device)
            lb = torch.as_tensor(lib[start:stop, None], device=self.device)
            px = self.module.decode(u, target, b, lb)
            x = px.sample() if sample else px.mean
            out[start:stop] = x.float().cpu().numpy()
        return out

    @torch.inference_mode()
    def _elbo_terms(
        self, x, modality: str, batch_codes: np.ndarray, batch_size: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-cell NLL of ``x`` (posterior mean of ``u_k``) and KL of ``q(u_k | h_k)``."""
        self.module.eval()
        codes = batch_codes if self._encodes_batch else None
        h = self._encoder_inputs(x, modality, batch=codes)
        nll = np.empty(x.shape[0])
        kl = np.empty(x.shape[0])
        for rows, block in row_batches(x, batch_size or INFERENCE_BATCH, self.device):
            hb = torch.as_tensor(h[rows], device=self.device)
            q = self.module.encode(hb, modality)
            b = torch.as_tensor(batch_codes[rows], device=self.device)
            dist = self.module.decode(q.loc, modality, b, block.sum(1, keepdim=True))
            nll[rows] = -dist.log_prob(block).sum(1).double().cpu().numpy()
            prior = Normal(torch.zeros_like(q.loc), torch.ones_like(q.scale))
            kl[rows] = kl_divergence(q, prior).sum(1).double().cpu().numpy()
        return nll, kl

    def _state_codes(
        self, x, rows: np.ndarray, modality: str, batch_size: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """ScCross's state distribution: mean posterior mean and mean posterior std of ``z``.

        The inputs are those of all registered cells of ``modality`` (the smoothing
        graph spans them), of which the state's rows are encoded.
        """
        all_rows = np.flatnonzero(self._registered_mask(modality))
        codes = None
        if self._encodes_batch:
            codes = self._cell_batch_codes(self.adata.obs)[all_rows]
        h = self._encoder_inputs(x[all_rows], modality, batch=codes)
        h = h[np.searchsorted(all_rows, rows)]
        loc, scale = self._encode_inputs(h, modality, batch_size)
        return loc.mean(axis=0), scale.mean(axis=0)

    @classmethod
    def load(cls, dir_path: str, adata: md.MuData | None = None, **kwargs: Any) -> SCCROSS:
        """Load a saved model (see :meth:`scvi.model.base.BaseModelClass.load`).

        A model saved before batch centring existed loads without it, as it was trained.
        """
        model = super().load(dir_path, adata=adata, **kwargs)
        model.module.stage = FINETUNE
        return model
