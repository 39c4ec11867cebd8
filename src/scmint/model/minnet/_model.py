"""MINNET: MinNet's supervised Siamese network as a scvi-tools model."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import torch
from scipy import sparse
from scvi import REGISTRY_KEYS, settings
from scvi.model.base import BaseModelClass

from scmint.data import MuDataSetupMixin, indicator_key
from scmint.data._backed import OnDiskRows
from scmint.model._base import (
    Cells,
    MultiModalMixin,
    Normalization,
    check_positive_int,
    fit_subsample,
    keep_torch_threads,
    loading_saved_model,
    resolve_normalization,
    saved_attribute,
)
from scmint.model._query_update import QueryUpdateMixin, reference_attributes
from scmint.pp import neighbour_mean
from scmint.train import QuietTrainRunner

from ._module import Activation, MINNETModule
from ._task import (
    STRATEGIES,
    SiameseDataModule,
    SiamesePairDataset,
    SiameseTrainingPlan,
    split_cells,
)

logger = logging.getLogger(__name__)


class MINNET(QueryUpdateMixin, MultiModalMixin, MuDataSetupMixin, BaseModelClass):
    """MinNet: a Siamese network with a kNN-graph flexible-margin contrastive loss.

    The model of Tang et al. (MinNet) for two modalities measured in the same cells
    (RNA + ATAC gene activity, RNA + peaks, RNA + protein, ...). It trains on paired,
    labelled reference cells and embeds cells of either modality alone into one
    32-d space at single-cell resolution: new unpaired query cells, label transfer,
    cross-modal translation by nearest neighbours, in-silico perturbation.

    Network (:class:`~scmint.model.minnet._module.MINNETModule`): per modality
    ``Linear(G_m -> 768) -> Tanh (or Sigmoid) -> BatchNorm1d``, then two heads shared by
    both modalities: ``Linear(768 -> 32)``, the co-embedding, and ``Linear(768 ->
    n_cell_types)``, a classifier. Loss: cross-entropy of both modalities plus
    ``contrastive_weight`` times a contrastive loss whose margin for two different cells
    is ``margin_scale * (d_ij + type_margin * 1[cell types differ])``, ``d_ij`` their
    shortest-path distance on a kNN graph of one modality (only the sampled pairs' are
    computed, never an N x N matrix). Pairs are redrawn every epoch (see
    :mod:`scmint.model.minnet`).

    Inputs: each modality is library-size normalised and log-transformed (or CLR, or
    used as is), then scaled per feature to zero mean and unit variance and clipped at
    ``max_value``; the :class:`~scmint.pp.FeatureScaler` of each modality is fitted on
    the training cells and stored in ``scalers_``, so new and perturbed cells are
    transformed exactly like the training cells.

    Translation (:meth:`translate`) averages the registered target values of the nearest
    reference cells in the embedding, so it returns counts for count data:
    ``translation_space = "counts"``.

    Batches: with ``batch_key`` the graph distances are computed after ComBat (as
    published) and, with batch centring (our addition, the default: MINNET always has
    labels), each batch's centre is taken off both modalities' scaled inputs, so the
    per-feature shifts between batches do not reach the encoders. The centres are
    corrected for each batch's cell-type composition with the training labels (plain
    batch means would also take off composition differences). ``benchmarks/batch.csv``:
    simulator with a strong batch effect (``batch_effect=1.0``), other-batch share of
    15 nearest neighbours 0.00 -> 0.41 / 0.37 (RNA / ATAC); ``pbmc_mosaic_paired`` iLISI
    0.83 / 0.80 against TOTALVI's 0.76. Cells embedded later (queries, perturbed cells)
    need their batch, one of the registered batches.

    New batches: MINNET has no trained batch parameters; :meth:`load_query_data`
    (scvi-tools' name) adds the query's new batches with their own cells' centres and
    returns a model that is ready at once (nothing is trained; the reference's
    embedding is unchanged). Without batch centring query cells of any batch are
    embedded directly (:meth:`get_latent_representation`, :meth:`predict`).

    Data on disk: from a padded MuData read with ``backed=True`` MINNET trains on at
    most :data:`~scmint.model._base.ON_DISK_FIT_CELLS` (50,000) of the paired, labelled
    cells, drawn at random (seeded by ``scvi.settings.seed``) and read into memory once:
    its kNN graph and its pairs span the training cells, and a Siamese reference of
    50,000 cells is far larger than the published ones. Everything else reads the file
    chunk by chunk: embeddings and predictions of every cell; :meth:`translate`
    averages the profiles of those training cells. Their rows are ``training_cells_``,
    saved with the model, so a loaded model uses the same cells.

    Parameters
    ----------
    mdata
        Padded MuData registered with :meth:`setup_mudata` (``labels_key`` is required,
        two modalities), in memory or read with ``backed=True`` (see above). Cells
        measured in both modalities and labelled are the training cells; the registered
        values must be raw counts (or non-negative normalised values) unless
        ``normalization="none"``.
    n_hidden
        Width of each modality's layer (768).
    n_latent
        Dimension of the co-embedding (32).
    activation
        ``"tanh"`` (MinNet's multiome model), ``"sigmoid"`` (its CITE-seq model) or
        ``"relu"``; one for both modalities or ``{modality: activation}``.
    margin_scale
        ``M``, the scale of the flexible margin (10).
    contrastive_weight
        ``lambda``, weight of the contrastive loss against the classification loss (0.5).
    type_margin
        ``C``, added to the graph distance of pairs of different cell types (3).
    strategy
        Negative pairs ``"between"`` modalities (MinNet's choice for RNA + ATAC) or
        ``"within"`` one modality (its choice for RNA + protein).
    positive_fraction
        Probability that a drawn pair is the same cell (0.25: ~3 negatives per positive).
    distance
        ``"graph"``: ``d_ij`` is the shortest-path distance on a kNN graph of
        ``distance_modality``; ``"constant"``: ``d_ij = 1`` (a classic fixed margin).
    distance_modality
        Modality of the kNN graph; default ``"rna"`` if present, else the first one.
    graph_kwargs
        Passed to :func:`scmint.model.minnet.build_distance_graph`
        (``n_top_genes``, ``n_comps``, ``n_neighbors``); the registered ``batch_key``
        is used for ComBat batch correction.
    distance_cutoff
        ``None`` (default): exact shortest-path distances, as published; the pairs of
        all epochs are drawn up front so that their distances cost about one
        shortest-path search per training cell in all (minutes for tens of thousands
        of cells). A number caps distances there; ``"auto"`` picks the cap from random
        pairs (:meth:`GraphDistances.default_cutoff
        <scmint.model.minnet.GraphDistances.default_cutoff>`), which enables a
        fast half-ball index: pairs closer than the cap are exact, farther ones get it.
    normalization
        Per-cell input transform before scaling: ``"log"`` (normalise to ``target_sum``
        then ``log1p``), ``"clr"`` (per-feature CLR, for proteins) or ``"none"`` (values
        already normalised); one for both modalities or ``{modality: ...}``.
    target_sum
        Counts per cell after normalisation for ``"log"``.
    max_value
        Clip scaled inputs to ``[-max_value, max_value]`` (10).
    center_batches
        Take each batch's centre off the inputs (see Batches above): True, False, or
        ``None`` (default) for "when cell-type labels are registered" (always, for a
        reference); used when two or more batches are registered.

    Examples
    --------
    >>> mdata = scmint.data.pad_mudata(mdata)
    >>> scmint.model.MINNET.setup_mudata(mdata, labels_key="cell_type")
    >>> model = scmint.model.MINNET(mdata)
    >>> model.train(max_epochs=50)
    >>> z_atac = model.get_latent_representation(query_atac, modality="atac")
    """

    _labels_required = True
    _reads_from_disk = True
    _latent_key = "X_minnet"
    #: Space of :meth:`translate`'s output: ``"counts"``, counts or count-scale means
    #: (compared after ``log1p(x / rowsum * 1e4)``); ``"lognorm"`` would be that already.
    translation_space = "counts"
    _module_cls = MINNETModule
    _training_plan_cls = SiameseTrainingPlan
    _data_module_cls = SiameseDataModule
    _train_runner_cls = QuietTrainRunner

    def __init__(
        self,
        mdata: md.MuData,
        n_hidden: int = 768,
        n_latent: int = 32,
        activation: Activation | Mapping[str, Activation] = "tanh",
        margin_scale: float = 10.0,
        contrastive_weight: float = 0.5,
        type_margin: float = 3.0,
        strategy: Literal["between", "within"] = "between",
        positive_fraction: float = 0.25,
        distance: Literal["graph", "constant"] = "graph",
        distance_modality: str | None = None,
        graph_kwargs: dict | None = None,
        distance_cutoff: float | Literal["auto"] | None = None,
        normalization: Normalization | Mapping[str, Normalization] = "log",
        target_sum: float = 1e4,
        max_value: float = 10.0,
        center_batches: bool | None = None,
    ) -> None:
        super().__init__(mdata)
        mods = self.modalities
        if len(mods) != 2:
            raise ValueError(
                f"MINNET integrates exactly two modalities, got {mods}; choose two with "
                "setup_mudata(mdata, modalities=[...], ...)."
            )
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}.")
        if distance not in ("graph", "constant"):
            raise ValueError(f"distance must be 'graph' or 'constant', got {distance!r}.")
        if not 0.0 < positive_fraction < 1.0:
            raise ValueError(f"positive_fraction must be in (0, 1), got {positive_fraction}.")
        if distance_modality is None:
            distance_modality = "rna" if "rna" in mods else mods[0]
        if distance_modality not in mods:
            raise KeyError(f"distance_modality '{distance_modality}' is not one of {mods}.")
        norms = resolve_normalization(mods, normalization)

        self.strategy = strategy
        self.positive_fraction = float(positive_fraction)
        self.distance = distance
        self.distance_modality = distance_modality
        self.graph_kwargs = dict(graph_kwargs or {})
        numeric = isinstance(distance_cutoff, int | float) and not isinstance(distance_cutoff, bool)
        if not (distance_cutoff in (None, "auto") or (numeric and distance_cutoff > 0)):
            raise ValueError(
                f"distance_cutoff must be None, 'auto' or positive, got {distance_cutoff!r}."
            )
        self.distance_cutoff = distance_cutoff
        self.normalization = norms

        reference = reference_attributes()
        self._pool_data: dict[str, Any] = {}
        if reference is None:
            self._pool, self._pool_labels = self._training_pool()
            # loading: the scalers and centres come from the file, nothing is read
            pool_data = None if loading_saved_model() else self._pool_matrices()
            self.scalers_ = self._fit_scalers(
                norms, target_sum, max_value, rows=dict.fromkeys(mods, self._pool), data=pool_data
            )
        else:  # a query update: the reference's cell types and scalers, nothing to train
            self._pool = np.zeros(0, dtype=np.int64)
            self._pool_labels = np.zeros(0, dtype=np.int64)
            pool_data = None
            self.cell_types_ = np.asarray(reference["cell_types_"], dtype=object)
            self.scalers_ = reference["scalers_"]
        self.module = self._module_cls(
            modalities=mods,
            n_input=[self.adata.mod[m].n_vars for m in mods],
            n_labels=len(self.cell_types_),
            n_hidden=n_hidden,
            n_latent=n_latent,
            activation=activation,
            margin_scale=margin_scale,
            type_margin=type_margin,
            contrastive_weight=contrastive_weight,
            normalization=norms,
            target_sum=target_sum,
            max_value=max_value,
            n_batch=self.summary_stats.n_batch,
            center_batches=self._resolve_center_batches(center_batches),
        )
        for m in mods:
            self.module.scalers[m].set_statistics(self.scalers_[m])
        with keep_torch_threads():
            self._fit_input_centers(rows=dict.fromkeys(mods, self._pool), data=pool_data)
        self._distances = None
        self._reference_cache: dict[str, tuple[np.ndarray, Any]] = {}
        self._model_summary_string = (
            f"MINNET: {mods[0]} ({self.module.n_input[0]} features) + {mods[1]} "
            f"({self.module.n_input[1]} features), {len(self._pool)} paired labelled "
            f"training cells, {len(self.cell_types_)} cell types, n_hidden={n_hidden}, "
            f"n_latent={n_latent}, margin_scale={margin_scale}, "
            f"contrastive_weight={contrastive_weight}, type_margin={type_margin}, "
            f"strategy='{strategy}', distance='{distance}'."
        )
        self.init_params_ = self._get_init_params(locals())

    # ------------------------------------------------------------------ setup
    def _training_pool(self) -> tuple[np.ndarray, np.ndarray]:
        """Indices of the paired, labelled cells and their cell-type codes."""
        state = self.adata_manager.get_state_registry(REGISTRY_KEYS.LABELS_KEY)
        mapping = np.asarray(state.categorical_mapping).astype(str)
        unlabeled = str(state.get("unlabeled_category", "Unknown"))
        codes = np.asarray(self.adata_manager.get_from_registry(REGISTRY_KEYS.LABELS_KEY))
        labels = mapping[codes.ravel().astype(np.int64)]
        paired = np.logical_and.reduce([self._registered_mask(m) for m in self.modalities])
        labelled = labels != unlabeled
        if not paired.any():
            raise ValueError(
                f"MINNET trains on cells measured in both modalities {self.modalities}, but "
                "no cell is: the indicator columns "
                f"{[indicator_key(m) for m in self.modalities]} are never both 1. Train on "
                "a paired (or mosaic) reference and embed unpaired cells as queries with "
                "get_latent_representation(query, modality=...)."
            )
        pool = np.flatnonzero(paired & labelled)
        if self._on_disk():  # the training cells are read into memory
            saved = saved_attribute("training_cells_")
            usable = saved is not None and np.isin(saved, pool).all()
            pool = np.asarray(saved, dtype=np.int64) if usable else fit_subsample(pool)
        self.training_cells_ = pool  # saved: a loaded model reads the same cells
        if len(pool) < 2:
            raise ValueError(
                f"MINNET trains on paired, labelled cells; {int(paired.sum())} cells are "
                f"paired but only {len(pool)} of them have a label other than "
                f"'{unlabeled}'. Label the paired cells (labels_key) before setup."
            )
        present = [str(c) for c in mapping if c != unlabeled and c in set(labels[pool])]
        self.cell_types_ = np.asarray(present, dtype=object)
        lookup = {c: i for i, c in enumerate(present)}
        return pool, np.array([lookup[c] for c in labels[pool]], dtype=np.int64)

    def _pool_matrix(self, modality: str):
        """The registered rows of the training cells in ``modality``, in memory.

        From disk they are read once and kept (at most ``ON_DISK_FIT_CELLS`` cells).
        """
        if modality in self._pool_data:
            return self._pool_data[modality]
        x = self._registered(modality)[self._pool]
        if isinstance(x, OnDiskRows):
            x = self._pool_data[modality] = x.to_memory()
        return x

    def _pool_matrices(self) -> dict[str, Any] | None:
        """The training cells' rows of every modality when read from disk, else None."""
        if not self._on_disk() or not len(self._pool):
            return None
        return {m: self._pool_matrix(m) for m in self.modalities}

    # ------------------------------------------------------------------ training
    def _graph_distances(self):
        """Graph-distance look-up over the training pool (built once, not saved)."""
        if self._distances is None:
            from ._graph_distance import GraphDistances, build_distance_graph

            m = self.distance_modality
            batch_key = self.adata_manager.registry["setup_args"].get("batch_key")
            obs = pd.DataFrame(index=self.adata.obs_names[self._pool].copy())
            if batch_key is not None:
                obs[batch_key] = self.adata.obs[batch_key].to_numpy()[self._pool].astype(str)
            adata = ad.AnnData(
                X=self._pool_matrix(m),
                obs=obs,
                var=pd.DataFrame(index=self.adata.mod[m].var_names.copy()),
            )
            graph = build_distance_graph(adata, batch_key=batch_key, **self.graph_kwargs)
            self._distances = GraphDistances(graph)
        return self._distances

    def _distance_fn(self):
        if self.distance == "constant":
            return None
        distances = self._graph_distances()
        cutoff = self.distance_cutoff
        if cutoff == "auto":
            cutoff = distances.default_cutoff()

        def lookup(sources: np.ndarray, targets: np.ndarray) -> np.ndarray:
            return distances.pairs(sources, targets, cutoff=cutoff)

        return lookup

    def train(
        self,
        max_epochs: int = 100,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        train_size: float = 0.8,
        validation_size: float | None = None,
        shuffle_set_split: bool = True,
        batch_size: int = 128,
        early_stopping: bool = False,
        datasplitter_kwargs: dict | None = None,
        plan_kwargs: dict | None = None,
        **trainer_kwargs: Any,
    ) -> None:
        """Train on the paired, labelled cells with Siamese pairs redrawn every epoch.

        Uses scvi-tools' :class:`~scvi.train.TrainRunner` and
        :class:`~scvi.train.Trainer`, so progress bar, early stopping, accelerators and
        ``model.history`` work as for any scvi-tools model.

        Parameters
        ----------
        max_epochs
            Number of epochs (MinNet trains 100 and keeps epoch 35).
        accelerator
            Lightning accelerator (``"auto"``, ``"cpu"``, ``"gpu"``, ...).
        devices
            Lightning devices.
        train_size
            Fraction of the training cells used for training; the rest (default 20%) is
            the validation set, paired only among themselves.
        validation_size
            Fraction for validation; default ``1 - train_size``.
        shuffle_set_split
            Split a random permutation of the cells (seeded by ``scvi.settings.seed``).
        batch_size
            Cell pairs per minibatch (each epoch has two pairs per training cell).
        early_stopping
            Stop when ``validation_loss`` stops improving (more options, such as
            ``early_stopping_patience``, through ``**trainer_kwargs``).
        datasplitter_kwargs
            Passed to :class:`~scmint.model.minnet.SiameseDataModule` (e.g. ``prefetch_epochs``).
        plan_kwargs
            Passed to :class:`~scmint.model.minnet.SiameseTrainingPlan` (``lr`` 1e-4,
            ``weight_decay`` 1e-6 by default, ...).
        **trainer_kwargs
            Passed to :class:`~scvi.train.Trainer`.
        """
        if not len(self._pool):
            raise RuntimeError(
                "This MINNET was built by load_query_data: its new batches' centres are "
                "fitted and it is ready to embed the query; there is nothing to train."
            )
        seed = settings.seed if settings.seed is not None else 0
        train_cells, val_cells = split_cells(
            len(self._pool), train_size, validation_size, shuffle=shuffle_set_split, seed=seed
        )
        if early_stopping and len(val_cells) < 2:
            raise ValueError(
                "early_stopping watches the validation loss, which needs at least 2 validation "
                f"cells; train_size={train_size} leaves {len(val_cells)}."
            )
        with keep_torch_threads():
            distance_fn = self._distance_fn()
        # exact graph distances: one look-up for all epochs (~1 search per cell in all)
        exact = distance_fn is not None and self.distance_cutoff is None
        max_pairs = 20_000_000  # ~0.5 GB of prefetched pairs at most
        prefetch = max(1, min(max_epochs, max_pairs // (2 * len(train_cells)))) if exact else 1
        dataset = SiamesePairDataset(
            [self._pool_matrix(m) for m in self.modalities],
            self._pool_labels,
            self.modalities,
            batches=self._cell_batch_codes(self.adata.obs)[self._pool],
        )
        datamodule = self._data_module_cls(
            dataset,
            train_cells,
            val_cells,
            self._pool,
            batch_size=batch_size,
            positive_fraction=self.positive_fraction,
            strategy=self.strategy,
            distance_fn=distance_fn,
            seed=seed,
            **{"prefetch_epochs": prefetch, **(datasplitter_kwargs or {})},
        )
        training_plan = self._training_plan_cls(self.module, **(plan_kwargs or {}))
        trainer_kwargs.setdefault("early_stopping", early_stopping)
        trainer_kwargs.setdefault("log_every_n_steps", min(10, len(datamodule.train_sampler)))
        if trainer_kwargs["early_stopping"]:
            trainer_kwargs.setdefault("early_stopping_monitor", "validation_loss")
        self._reference_cache = {}
        self.module.train()
        runner = self._train_runner_cls(
            self,
            training_plan=training_plan,
            data_splitter=datamodule,
            max_epochs=max_epochs,
            accelerator=accelerator,
            devices=devices,
            **trainer_kwargs,
        )
        out = runner()
        self._reference_cache = {}
        return out

    # ------------------------------------------------------------------ forward passes
    @torch.inference_mode()
    def _forward_matrix(
        self,
        x,
        modality: str,
        head: Literal["z", "logits"],
        batch_size: int | None = None,
        batch: np.ndarray | None = None,
    ) -> np.ndarray:
        """Embedding (or logits) of the rows of ``x`` (batch codes ``batch``), in minibatches."""
        width = self.module.n_latent if head == "z" else self.module.n_labels
        layer = self.module.embedding_head if head == "z" else self.module.classifier_head
        return self._forward_rows(
            x,
            lambda b, codes=None: layer(self.module.hidden(b, modality, codes)),
            width,
            batch_size,
            batch,
        )

    def _embed_matrix(
        self, x, modality: str, batch_size: int | None = None, batch: np.ndarray | None = None
    ) -> np.ndarray:
        return self._forward_matrix(x, modality, "z", batch_size, batch)

    def _logits_matrix(
        self, x, modality: str, batch_size: int | None = None, batch: np.ndarray | None = None
    ) -> np.ndarray:
        return self._forward_matrix(x, modality, "logits", batch_size, batch)

    # ------------------------------------------------------------------ public API hooks
    _translation_options = ("k",)

    def _classifier_classes(self) -> np.ndarray:
        return self.cell_types_

    def _check_translation(self, target: str, k: int = 10, **_: Any) -> None:
        check_positive_int(k=k)

    def _translate_latent(
        self, z: np.ndarray, target: str, cells: Cells, batch_size: int | None, k: int = 10
    ):
        """Mean ``target`` profile of the ``k`` reference cells nearest to each of ``z``."""
        return self._neighbour_mean(z, target, k, batch_size)

    def _reference(self, target: str, batch_size: int | None = None) -> tuple[np.ndarray, Any]:
        """Embedding (from ``target``) and ``target`` profiles of the reference cells."""
        if target not in self._reference_cache:
            if self._on_disk():  # the training cells, held in memory
                rows, x = self._pool, self._pool_matrix(target)
            else:
                rows = np.flatnonzero(self._registered_mask(target))
                x = self._registered(target)[rows]
            codes = self._cell_batch_codes(self.adata.obs)[rows] if self._encodes_batch else None
            self._reference_cache[target] = (
                self._forward_matrix(x, target, "z", batch_size, codes),
                x,
            )
        return self._reference_cache[target]

    def _neighbour_mean(self, z: np.ndarray, target: str, k: int, batch_size: int | None):
        """Mean ``target`` profile of each row's ``k`` nearest reference cells."""
        z_ref, x_ref = self._reference(target, batch_size)
        check_positive_int(k=k)
        out = neighbour_mean(z, z_ref, x_ref, min(int(k), z_ref.shape[0]))
        return sparse.csr_matrix(out, dtype=np.float32) if sparse.issparse(out) else out
