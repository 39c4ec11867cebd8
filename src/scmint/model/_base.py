"""Behaviour shared by scmint's models: registered data, query cells, embeddings, perturbation.

A model class mixes :class:`MultiModalMixin` in beside
:class:`~scmint.data.MuDataSetupMixin` and :class:`~scvi.model.base.BaseModelClass`,
and implements ``_embed_matrix`` (and ``_logits_matrix`` for a classifier head). The
mixin then provides the query handling of the common API: a padded MuData, a MuData
with some of the modalities, or an AnnData of one modality, with features matched by
name; per-modality and joint embeddings; class probabilities; and the skeleton of
in-silico perturbation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from math import ceil, floor
from pathlib import Path
from typing import Any, Literal

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import scvi
import torch
from scipy import sparse
from scvi import REGISTRY_KEYS
from scvi.model.base._constants import SAVE_KEYS
from scvi.model.base._save_load import _load_saved_files

from scmint._quiet import quiet_libraries
from scmint._threads import keep_torch_threads
from scmint.data import data_key, indicator_key, mask_key, prepare_query_mudata, row_batches
from scmint.data._backed import OnDiskRows, in_memory, is_on_disk
from scmint.data._padding import INDICATOR_PREFIX, PADDING_UNS_KEY
from scmint.data._validation import ValueKind, check_values, resolve_layers, value_kind
from scmint.model._centres import layer_batch_centres
from scmint.model._query_update import reference_attributes
from scmint.nn._blocks import INPUT_NORMALIZATIONS, FeatureScalerLayer, InputNormalization
from scmint.pp import FeatureScaler

Normalization = InputNormalization
NORMALIZATIONS: tuple[str, ...] = INPUT_NORMALIZATIONS
INFERENCE_BATCH = 1024

_LOADING: ContextVar[dict | None] = ContextVar("scmint_loading", default=None)
"""Set while :meth:`MultiModalMixin.load` builds a model: the saved attributes."""


def loading_saved_model() -> bool:
    """Whether the model being built is being loaded (its fitted state then comes from the file)."""
    return _LOADING.get() is not None


def saved_attribute(name: str) -> Any:
    """While :meth:`MultiModalMixin.load` builds a model, the saved value of ``name``, else None.

    What a model fits over its training cells in ``__init__`` (scalers, PCA / LSI, a
    prior, the training subsample) is taken from the file instead of being fitted again
    over the data passed to ``load`` (scvi-tools would then overwrite it anyway); None
    also for a file saved before the attribute existed, which is then fitted as before.
    """
    saved = _LOADING.get()
    return None if saved is None else saved.get(name)


ON_DISK_FIT_CELLS = 50_000
"""Most cells a per-feature transform is fitted on when the data stay on disk.

For a MuData read with ``backed=True`` the feature scalers (normalised means and
standard deviations, CLR geometric means) are fitted on a random subsample of this many
of the cells measured in each modality (seeded by ``scvi.settings.seed``); per-feature
statistics of 50,000 cells are within about 0.5 % of their standard deviation of the
all-cell values. Data in memory are fitted on every cell."""
"""Cells per forward pass at inference when no ``batch_size`` is given."""


def resolve_per_modality(
    name: str,
    value: Any,
    modalities: Sequence[str],
    allowed: Sequence[str],
    default: Mapping[str, str] | str,
) -> dict[str, str]:
    """Expand a per-modality option (one value or ``{modality: value}``) and check it.

    Parameters
    ----------
    name
        The option's name, for error messages.
    value
        One value for all modalities, or ``{modality: value}`` (modalities left out take
        ``default``).
    modalities
        The model's modalities.
    allowed
        Allowed values.
    default
        Value (or ``{modality: value}``) for modalities ``value`` does not name.

    Returns
    -------
    ``{modality: value}`` for every modality.
    """
    defaults = default if isinstance(default, Mapping) else dict.fromkeys(modalities, default)
    if isinstance(value, Mapping):
        unknown = [m for m in value if m not in modalities]
        if unknown:
            raise KeyError(
                f"{name} names modalities {unknown} that are not among {list(modalities)}."
            )
        out = {m: value.get(m, defaults[m]) for m in modalities}
    else:
        out = dict.fromkeys(modalities, value)
    bad = {m: v for m, v in out.items() if v not in allowed}
    if bad:
        raise ValueError(f"Unknown {name} {bad}; choose from {tuple(allowed)}.")
    return out


def resolve_normalization(
    modalities: Sequence[str],
    normalization: Normalization | Mapping[str, Normalization],
    default: Normalization = "log",
) -> dict[str, str]:
    """Expand ``normalization`` (one value or ``{modality: value}``) and check the values."""
    return resolve_per_modality("normalization", normalization, modalities, NORMALIZATIONS, default)


def fit_subsample(rows: np.ndarray, n: int | None = None) -> np.ndarray:
    """At most ``n`` (:data:`ON_DISK_FIT_CELLS`) of ``rows``, drawn at random, in file order.

    The cells an all-cell transform is fitted on when the data stay on disk; the draw
    is seeded by ``scvi.settings.seed``.
    """
    n = ON_DISK_FIT_CELLS if n is None else int(n)
    rows = np.asarray(rows)
    if len(rows) <= n:
        return rows
    rng = np.random.default_rng(scvi.settings.seed)
    return np.sort(rng.choice(rows, n, replace=False))


def check_positive_int(**values: Any) -> None:
    """Raise unless each named value is a positive integer (``bool`` is refused)."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")


def make_feature_scaler(norm: str, target_sum: float, max_value: float | None) -> FeatureScaler:
    """The (unfitted) :class:`~scmint.pp.FeatureScaler` of a normalisation name."""
    if norm == "log":
        return FeatureScaler(max_value=max_value, log=True, target_sum=target_sum)
    if norm == "clr":
        return FeatureScaler(max_value=max_value, clr="feature")
    return FeatureScaler(max_value=max_value)


@dataclass
class Cells:
    """Cells to work on: their names and obs, one matrix per modality, measured masks."""

    obs: pd.DataFrame
    matrices: dict[str, Any]
    has: dict[str, np.ndarray]

    @property
    def n_obs(self) -> int:
        """Number of cells."""
        return len(self.obs)


class MultiModalMixin:
    """Registered data, query cells and the shared parts of the common model API.

    Subclasses implement ``_embed_matrix(x, modality, batch_size) -> ndarray`` (cells x
    ``module.n_latent``) and, with a classifier head, ``_logits_matrix``.
    """

    _latent_key: str = "X_scmint"
    """Name of the ``obsm`` key (and ``uns`` prefix) for embeddings in returned AnnData."""

    # ------------------------------------------------------------------ registered data
    def _registered(self, modality: str):
        """The registered data matrix of a modality (all cells of ``self.adata``).

        For a MuData read with ``backed=True``, an :class:`~scmint.data.OnDiskRows`
        selection that reads the file chunk by chunk.
        """
        x = self.adata_manager.get_from_registry(data_key(modality))
        if is_on_disk(x):
            return OnDiskRows(x)
        return sparse.csr_matrix(x) if sparse.issparse(x) else np.asarray(x)

    def _on_disk(self) -> bool:
        """Whether the registered data stay on disk (a MuData read with ``backed=True``)."""
        return isinstance(self._registered(self.modalities[0]), OnDiskRows)

    def _fit_rows(self, modality: str, rows: np.ndarray):
        """Registered rows ``rows`` of ``modality`` in memory, to fit a transform on.

        All of them for data in memory; at most :data:`ON_DISK_FIT_CELLS`, drawn at
        random (:func:`fit_subsample`), when the data stay on disk. Inside
        :meth:`_reading_fit_rows_once` the rows read from disk are kept and handed out
        again to the next call for the same rows (treat them as read-only).
        """
        x = self._registered(modality)
        if not isinstance(x, OnDiskRows):
            return x[rows]
        chosen = fit_subsample(rows)
        kept = self.__dict__.get("_fit_rows_kept")
        if kept is not None and modality in kept and np.array_equal(kept[modality][0], chosen):
            return kept[modality][1]
        data = x[chosen].to_memory()
        if kept is not None:
            kept[modality] = (chosen, data)
        return data

    @contextmanager
    def _reading_fit_rows_once(self) -> Iterator[None]:
        """While open, :meth:`_fit_rows` reads each modality's subsample from disk once."""
        self.__dict__["_fit_rows_kept"] = {}
        try:
            yield
        finally:
            self.__dict__.pop("_fit_rows_kept", None)

    def _registered_mask(self, modality: str) -> np.ndarray:
        """Which registered cells were measured in ``modality``."""
        mask = self.adata_manager.get_from_registry(mask_key(modality))
        return np.asarray(mask).ravel() > 0.5

    def _reference_value_kind(self, modality: str) -> ValueKind:
        """What the registered data of ``modality`` hold: counts, non-negative or any values.

        Query cells must hold the same kind (:func:`~scmint.data.check_values`), so that
        log-normalised or scaled queries are refused by a model trained on counts.
        """
        kinds = self.__dict__.setdefault("_reference_value_kinds", {})
        if modality not in kinds:
            kinds[modality] = value_kind(self._registered(modality))
        return kinds[modality]

    def _registered_layers(self) -> dict[str, str | None]:
        return resolve_layers(self.modalities, self.adata_manager.registry["setup_args"]["layer"])

    def _check_nonnegative(self, modality: str, normalization: str) -> None:
        if self._reference_value_kind(modality) == "any":
            raise ValueError(
                f"Modality '{modality}' holds negative values, but normalization="
                f"'{normalization}' needs counts (or non-negative normalised "
                f"values). Register the counts layer, or pass normalization={{'{modality}': "
                "'none'} for data that are already normalised."
            )

    def _fit_scalers(
        self,
        normalization: Mapping[str, str],
        target_sum: float,
        max_value: float | None,
        rows: Mapping[str, np.ndarray] | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> dict[str, FeatureScaler]:
        """One fitted :class:`~scmint.pp.FeatureScaler` per modality.

        Fitted on ``rows[m]`` of the registered data (default: every cell measured in
        ``m``), after checking that normalised modalities hold no negative values; on
        at most :data:`ON_DISK_FIT_CELLS` of them, drawn at random, when the data stay
        on disk. ``data``: those rows already in memory (``{modality: matrix}``).
        """
        for m in self.modalities:
            if normalization[m] != "none":
                self._check_nonnegative(m, normalization[m])
        saved = saved_attribute("scalers_")
        if saved is not None:
            return saved
        scalers = {}
        with keep_torch_threads():
            for m in self.modalities:
                r = np.flatnonzero(self._registered_mask(m)) if rows is None else rows[m]
                x = data[m] if data is not None else self._fit_rows(m, r)
                scalers[m] = make_feature_scaler(normalization[m], target_sum, max_value).fit(
                    x, feature_names=self.adata.mod[m].var_names
                )
        return scalers

    def _library_means(self) -> dict[str, float]:
        """Mean library size (row sum) of each modality over the cells measured in it.

        NaN for a modality no registered cell was measured in (a query update's cells,
        whose model takes the reference's means).
        """
        out = {}
        for m in self.modalities:
            mask = self._registered_mask(m)
            sums = self._registered(m)[mask].sum(axis=1) if mask.any() else np.array([np.nan])
            out[m] = float(np.asarray(sums).mean())
        return out

    def _label_classes(self) -> tuple[list[str], list[int]]:
        """Cell-type classes of the registered labels and the class of each label code.

        Returns the class names (the registered categories without the unlabelled one)
        and, for each registry code, its class index or ``-1`` (unlabelled); no classes
        when the model was set up without ``labels_key``.
        """
        if self.adata_manager.registry["setup_args"].get("labels_key") is None:
            return [], [-1]
        state = self.adata_manager.get_state_registry(REGISTRY_KEYS.LABELS_KEY)
        mapping = np.asarray(state.categorical_mapping).astype(str)
        unlabeled = str(state.get("unlabeled_category", "Unknown"))
        classes = [c for c in mapping if c != unlabeled]
        lookup = {c: i for i, c in enumerate(classes)}
        return classes, [lookup.get(c, -1) for c in mapping]

    def _validation_cells(
        self, train_size: float | None, validation_size: float | None, early_stopping: bool
    ) -> int:
        """Number of validation cells scvi-tools' splitter will hold out; checks the sizes.

        Raises before training when ``train_size`` is out of range, or when early stopping
        is asked for but no validation cells remain.
        """
        n = self.adata.n_obs
        size = 0.9 if train_size is None else train_size
        if not 0.0 < size <= 1.0:
            raise ValueError(f"train_size must be in (0, 1], got {train_size}.")
        n_val = n - ceil(size * n) if validation_size is None else floor(validation_size * n)
        if early_stopping and n_val < 1:
            raise ValueError(
                "early_stopping watches the validation loss, which needs validation cells; "
                f"train_size={train_size} leaves none of the {n} cells. Lower train_size or "
                "pass early_stopping=False."
            )
        return n_val

    # ------------------------------------------------------------------ query cells
    def _check_modality(self, modality: str, joint: bool = False) -> None:
        allowed = self.modalities + (["joint"] if joint else [])
        if modality not in allowed:
            raise KeyError(f"Unknown modality '{modality}': choose one of {allowed}.")

    def _cells(
        self,
        mdata: md.MuData | ad.AnnData | None,
        modality: str | None = None,
        indices: Sequence[int] | np.ndarray | None = None,
    ) -> Cells:
        """The cells to work on, as matrices in the reference's features."""
        if mdata is None or mdata is self.adata:
            cells = Cells(
                obs=self.adata.obs,
                matrices={m: self._registered(m) for m in self.modalities},
                has={m: self._registered_mask(m) for m in self.modalities},
            )
        else:
            query = prepare_query_mudata(
                mdata,
                self._modality_var_names(),
                modality=modality if modality in self.modalities else None,
                layer=self._registered_layers(),
            )
            prefix = query.uns.get(PADDING_UNS_KEY, {}).get("indicator_prefix", INDICATOR_PREFIX)
            matrices, has = {}, {}
            for m in self.modalities:
                x = query.mod[m].X
                check_values(x, m, kind=self._reference_value_kind(m), context="query")
                matrices[m] = sparse.csr_matrix(x) if sparse.issparse(x) else np.asarray(x)
                has[m] = query.obs[indicator_key(m, prefix)].to_numpy().astype(bool)
            cells = Cells(obs=query.obs, matrices=matrices, has=has)
        if indices is None:
            return cells
        rows = np.asarray(indices)
        if rows.dtype == bool:
            if len(rows) != cells.n_obs:
                raise ValueError(f"Boolean indices of length {len(rows)} for {cells.n_obs} cells.")
            rows = np.flatnonzero(rows)
        rows = rows.astype(np.int64)
        if rows.size and (rows.min() < -cells.n_obs or rows.max() >= cells.n_obs):
            raise IndexError(f"indices out of range for {cells.n_obs} cells.")
        return Cells(
            obs=cells.obs.iloc[rows],
            matrices={m: x[rows] for m, x in cells.matrices.items()},
            has={m: h[rows] for m, h in cells.has.items()},
        )

    def _require(self, cells: Cells, modality: str) -> None:
        lacking = ~cells.has[modality]
        if lacking.any():
            names = cells.obs.index[lacking][:3].tolist()
            raise ValueError(
                f"{int(lacking.sum())} of {cells.n_obs} cells (e.g. {names}) were not measured "
                f"in '{modality}', so they have no '{modality}' embedding. Pass indices of "
                "cells that have it, use modality='joint', or missing='nan' for NaN rows."
            )

    # ------------------------------------------------------------------ forward passes
    @torch.inference_mode()
    def _forward_rows(
        self,
        x,
        forward: Callable[..., torch.Tensor],
        width: int,
        batch_size: int | None,
        batch: np.ndarray | None = None,
    ) -> np.ndarray:
        """``forward`` of the rows of ``x`` (dense or sparse), in minibatches.

        The rows reach the device through the shared data path
        (:func:`scmint.data.row_batches`: a sparse ``x`` is held once as CSR tensors and
        each block is cut there). With ``batch`` (registry batch codes of the rows, for
        encoders that read the batch) ``forward`` gets each block's codes too.
        """
        self.module.eval()
        out = np.empty((x.shape[0], width), dtype=np.float32)
        for rows, block in row_batches(x, batch_size or INFERENCE_BATCH, self.device):
            if batch is None:
                y = forward(block)
            else:
                y = forward(block, torch.as_tensor(batch[rows], device=self.device))
            out[rows] = y.float().cpu().numpy()
        return out

    def _cell_batch_codes(self, obs: pd.DataFrame, needed_by: str = "decoder") -> np.ndarray:
        """Registry batch codes of cells (registered, or a query with the batch column).

        ``needed_by`` names what needs the batch in the error messages (``"decoder"``,
        ``"encoder"``): query batches the model has no parameters for are refused.
        """
        if obs is self.adata.obs:
            codes = self.adata_manager.get_from_registry(REGISTRY_KEYS.BATCH_KEY)
            return np.asarray(codes).ravel().astype(np.int64)
        names = self._batch_names()
        key = self.adata_manager.get_state_registry(REGISTRY_KEYS.BATCH_KEY).original_key
        if key not in obs.columns:
            if len(names) == 1:  # set up without batch_key: one batch
                return np.zeros(len(obs), dtype=np.int64)
            raise ValueError(
                f"The query cells have no '{key}' column, so their {needed_by} batch is "
                f"unknown. Add obs['{key}'] with one of the registered batches {names}."
            )
        values = obs[key].astype(str).to_numpy()
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ValueError(
                f"Batches {unknown[:5]} of the query are not registered batches {names}; "
                f"the model has no {needed_by} parameters for them. Add them with "
                f"{type(self).__name__}.load_query_data(query, model) (scArches), which "
                "trains the new batches' parameters and leaves the reference unchanged."
            )
        return np.asarray([names.index(v) for v in values], dtype=np.int64)

    @property
    def _encodes_batch(self) -> bool:
        """Whether the encoders read each cell's batch.

        They do when their input layers take each batch's centre off
        (:meth:`_centered_input_layers`) and, in CLUE, with ``encode_batch=True``.
        """
        return bool(getattr(self.module, "encode_batch", False)) or bool(
            self._centered_input_layers()
        )

    def _centered_input_layers(self) -> dict[str, FeatureScalerLayer]:
        """The module's input layers that centre batches, per modality.

        Modules whose inputs go through :class:`~scmint.nn.FeatureScalerLayer` name them
        in ``input_layers()``; others have none.
        """
        layers = getattr(self.module, "input_layers", None)
        if layers is None:
            return {}
        return {m: layer for m, layer in layers().items() if layer.centers_batches}

    @torch.no_grad()
    def _fit_input_centers(
        self,
        rows: Mapping[str, np.ndarray] | None = None,
        first_batch: int = 0,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        """Set each batch's centre in the input layers that centre batches.

        Over ``rows[m]`` of the registered data (default: every cell measured in ``m``),
        scaled by the layer (:meth:`FeatureScalerLayer.scale`) and read in blocks, so
        memory stays linear in the cells. Without cell-type labels a batch's centre is
        its cells' mean. With labels (``labels_key``) the centre is corrected for the
        batch's cell-type composition: ``centre_b = mean + beta_b`` with ``beta_b`` the
        batch effect of the additive model ``x = alpha_type + beta_batch`` fitted by
        least squares on the labelled cells (:mod:`scmint.model._centres`), so a batch
        rich in one type is not shifted away from that type. A batch without labelled
        cells gets its cells' mean, one without cells the mean of all.
        Only batches from ``first_batch`` on are set (a query update keeps the
        reference's centres). While a query model is being built nothing is set: its
        centres are the reference's plus the new batches', fitted by
        :meth:`~scmint.model._query_update.QueryUpdateMixin.load_query_data` once the
        reference's state is loaded; nor while a saved model is loaded (:meth:`load`).
        ``data``: the registered ``rows`` already in memory (``{modality: matrix}``).
        """
        layers = self._centered_input_layers()
        if not layers or reference_attributes() is not None or loading_saved_model():
            return
        codes = self._cell_batch_codes(self.adata.obs)
        classes = self._centering_classes()
        n_batch = self.summary_stats.n_batch
        for m, layer in layers.items():
            r = np.flatnonzero(self._registered_mask(m)) if rows is None else np.asarray(rows[m])
            if len(r) == 0:
                continue
            centres = layer_batch_centres(
                layer,
                data[m] if data is not None else self._registered(m)[r],
                codes[r],
                n_batch,
                None if classes is None else classes[r],
            )
            layer.batch_center[first_batch:] = centres[first_batch:].to(layer.batch_center.dtype)

    def _resolve_center_batches(self, center_batches: bool | None) -> bool:
        """``center_batches`` of a model; ``None``: centre when cell-type labels are registered.

        Plain per-batch means also take off each batch's cell-type composition, which
        on real donors with different compositions separates the batches more
        (``benchmarks/batch.csv``); labels let the centres correct for it.
        """
        if center_batches is None:
            return self._centering_classes() is not None
        return bool(center_batches)

    def _centering_classes(self) -> np.ndarray | None:
        """Cell-type class of every registered cell (``-1``: unlabelled), None without labels."""
        names, class_of_code = self._label_classes()
        if len(names) < 2:
            return None
        codes = np.asarray(self.adata_manager.get_from_registry(REGISTRY_KEYS.LABELS_KEY))
        return np.asarray(class_of_code, dtype=np.int64)[codes.ravel().astype(np.int64)]

    def _encoder_batches(self, cells: Cells) -> np.ndarray | None:
        """Batch codes of ``cells`` for encoders that read the batch, else None."""
        if not self._encodes_batch:
            return None
        return self._cell_batch_codes(cells.obs, needed_by="encoder")

    def _batch_cells(self) -> dict[str, list[int]]:
        """Registered cells measured in each modality, per batch code."""
        codes = np.asarray(self.adata_manager.get_from_registry(REGISTRY_KEYS.BATCH_KEY)).ravel()
        n = self.summary_stats.n_batch
        return {
            m: np.bincount(codes[self._registered_mask(m)].astype(np.int64), minlength=n).tolist()
            for m in self.modalities
        }

    def _batch_names(self) -> list[str]:
        """Registered batch categories in code order (one, ``"0"``-like, without batch_key)."""
        state = self.adata_manager.get_state_registry(REGISTRY_KEYS.BATCH_KEY)
        return [str(c) for c in state.categorical_mapping]

    def _batch_code(self, batch: str | int | None) -> int:
        """Registry code of a batch given by name or code (``None``: the first batch)."""
        names = self._batch_names()
        if batch is None:
            return 0
        if isinstance(batch, int | np.integer) and not isinstance(batch, bool):
            if not 0 <= batch < len(names):
                raise IndexError(f"batch {batch} out of range for {len(names)} batches.")
            return int(batch)
        if str(batch) not in names:
            raise KeyError(f"Unknown batch {batch!r}; the registered batches are {names}.")
        return names.index(str(batch))

    def _library(self, library, target: str, n: int) -> np.ndarray:
        """Library sizes of ``n`` generated ``target`` profiles.

        ``library`` is ``"mean"`` (the training mean), a number, or one value per row.
        """
        if isinstance(library, str):
            if library != "mean":
                raise ValueError(f"library must be 'mean', a number or an array, got {library!r}.")
            return np.full(n, self.library_mean_[target], dtype=np.float32)
        lib = np.broadcast_to(np.asarray(library, dtype=np.float32), (n,)).copy()
        if not np.all(np.isfinite(lib)) or (lib <= 0).any():
            raise ValueError("library sizes must be positive and finite.")
        return lib

    def _embed_matrix(
        self, x, modality: str, batch_size: int | None = None, batch: np.ndarray | None = None
    ) -> np.ndarray:
        """Embedding of the rows of ``x`` (registered values of ``modality``).

        ``batch``: registry batch codes of the rows, for encoders that read the batch
        (:attr:`_encodes_batch`); other models ignore it.
        """
        raise NotImplementedError

    def _embed_pair(
        self,
        x,
        x_perturbed,
        modality: str,
        batch_size: int | None = None,
        batch: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings of the same cells before and after a perturbation.

        Two :meth:`_embed_matrix` calls; models whose encoder input depends on the other
        cells (e.g. kNN smoothing) override it to embed both with the same neighbours.
        """
        return (
            self._embed_matrix(x, modality, batch_size, batch),
            self._embed_matrix(x_perturbed, modality, batch_size, batch),
        )

    def _logits_matrix(
        self, x, modality: str, batch_size: int | None = None, batch: np.ndarray | None = None
    ) -> np.ndarray:
        """Classifier logits of the rows of ``x`` (registered values of ``modality``)."""
        raise NotImplementedError

    @staticmethod
    def _per_modality(
        cells: Cells,
        modality: str,
        forward: Callable[[Any, np.ndarray | None], np.ndarray],
        width: int,
        batch: np.ndarray | None = None,
    ) -> np.ndarray:
        """``forward(x, batch)`` of the cells having ``modality``; NaN rows for the others.

        ``batch``: the cells' batch codes (None when the encoders do not read them).
        """
        out = np.full((cells.n_obs, width), np.nan, dtype=np.float32)
        rows = np.flatnonzero(cells.has[modality])
        if rows.size:
            out[rows] = forward(cells.matrices[modality][rows], _rows_of(batch, rows))
        return out

    def _latent(
        self,
        mdata: md.MuData | ad.AnnData | None,
        modality: str,
        indices: Sequence[int] | np.ndarray | None,
        batch_size: int | None,
        missing: Literal["raise", "nan"],
    ) -> np.ndarray:
        """The body of ``get_latent_representation`` (see the models' docstrings)."""
        self._check_modality(modality, joint=True)
        if missing not in ("raise", "nan"):
            raise ValueError(f"missing must be 'raise' or 'nan', got {missing!r}.")
        self._check_if_trained(warn=True)
        cells = self._cells(mdata, modality, indices)
        width = self.module.n_latent
        codes = self._encoder_batches(cells)

        def embed(m: str) -> np.ndarray:
            return self._per_modality(
                cells, m, lambda x, b: self._embed_matrix(x, m, batch_size, b), width, codes
            )

        if modality != "joint":
            if missing == "raise":
                self._require(cells, modality)
            return embed(modality)
        return self._joint_embedding(cells, batch_size)

    def _joint_embedding(self, cells: Cells, batch_size: int | None) -> np.ndarray:
        """Joint embedding of ``cells``: the mean of the embeddings of the modalities each has.

        Models with another rule (e.g. CLUE's normalised mean or product of experts)
        override this.
        """
        total = np.zeros((cells.n_obs, self.module.n_latent), dtype=np.float64)
        count = np.zeros(cells.n_obs)
        codes = self._encoder_batches(cells)
        for m in self.modalities:
            has = cells.has[m]
            if has.any():
                total[has] += self._embed_matrix(
                    cells.matrices[m][has], m, batch_size, _rows_of(codes, has)
                )
            count += has
        return (total / np.maximum(count, 1)[:, None]).astype(np.float32)

    def _class_probabilities(
        self,
        mdata: md.MuData | ad.AnnData | None,
        modality: str,
        indices: Sequence[int] | np.ndarray | None,
        batch_size: int | None,
        n_classes: int,
    ) -> tuple[Cells, np.ndarray]:
        """Softmax of the classifier, averaged over the modalities each cell has."""
        self._check_modality(modality, joint=True)
        self._check_if_trained(warn=True)
        cells = self._cells(mdata, modality, indices)
        mods = self.modalities if modality == "joint" else [modality]
        if modality != "joint":
            self._require(cells, modality)
        probs = np.zeros((cells.n_obs, n_classes))
        count = np.zeros(cells.n_obs)
        codes = self._encoder_batches(cells)
        for m in mods:
            has = cells.has[m]
            if not has.any():
                continue
            logits = self._per_modality(
                cells,
                m,
                lambda x, b, m=m: self._logits_matrix(x, m, batch_size, b),
                n_classes,
                codes,
            )
            p = torch.softmax(torch.as_tensor(logits[has], dtype=torch.float64), dim=-1).numpy()
            probs[has] += p
            count += has
        probs /= np.maximum(count, 1)[:, None]
        return cells, probs

    # ------------------------------------------------------------------ public API
    _translation_options: tuple[str, ...] = ()
    """Options of :meth:`translate` and :meth:`perturb` the model supports (``k``,
    ``sample``, ``library``, ``batch``, ``scale``); its ``_translate_latent`` takes them."""

    _joint_translation: bool = False
    """Whether :meth:`translate` accepts ``source="joint"`` (a joint embedding to decode)."""

    @classmethod
    def load(cls, dir_path: str, adata: md.MuData | None = None, **kwargs: Any):
        """Load a saved model (see :meth:`scvi.model.base.BaseModelClass.load`).

        The data passed as ``adata`` are checked as at training; what the model fitted
        over its training cells (feature scalers, batch centres, SCCROSS's PCA / LSI and
        MNN prior, the training subsample of a model trained from disk) comes from the
        file, not from ``adata``: nothing is fitted again.
        """
        saved = {}
        prefix = kwargs.get("prefix")
        if (Path(dir_path) / f"{prefix or ''}{SAVE_KEYS.MODEL_FNAME}").exists():
            # else scvi-tools downloads it (backup_url) and the model refits
            with quiet_libraries():
                saved = _load_saved_files(dir_path, False, prefix, map_location="cpu")[0]
        token = _LOADING.set(saved)
        try:
            return super().load(dir_path, adata=adata, **kwargs)
        finally:
            _LOADING.reset(token)

    @classmethod
    def setup_anndata(cls, *args: Any, **kwargs: Any) -> None:
        """Not supported: scmint models read a padded MuData, see :meth:`setup_mudata`."""
        labels = ", labels_key=..." if getattr(cls, "_labels_required", False) else ""
        raise TypeError(
            f"{cls.__name__} integrates several modalities: register a padded MuData with "
            f"{cls.__name__}.setup_mudata(scmint.data.pad_mudata(mdata){labels})."
        )

    def get_latent_representation(
        self,
        mdata: md.MuData | ad.AnnData | None = None,
        modality: str = "joint",
        indices: Sequence[int] | np.ndarray | None = None,
        give_mean: bool = True,
        batch_size: int | None = None,
        missing: Literal["raise", "nan"] = "raise",
    ) -> np.ndarray:
        """Embedding of cells from one modality, or jointly from the modalities they have.

        Parameters
        ----------
        mdata
            None (the registered data), a padded MuData, a MuData holding some of the
            model's modalities, or an AnnData of one modality (``modality`` names it, or
            it is inferred when only one modality shares feature names with it; the
            ``"joint"`` embedding of such cells is that modality's). Features are matched
            to the reference by name (absent ones zero-filled
            with a warning) and values are checked as at training
            (:func:`~scmint.data.check_values`); new cells go through the transforms
            stored at training.
        modality
            A modality name: each cell embedded from that modality alone. ``"joint"``:
            the model's joint embedding of the modalities each cell was measured in (the
            mean of the per-modality embeddings unless the model's docstring says
            otherwise).
        indices
            Positions of the cells to embed (default all).
        give_mean
            Means of the embedding (the only option; accepted for scvi-tools
            compatibility).
        batch_size
            Cells per forward pass.
        missing
            For a modality some cells were not measured in: ``"raise"`` (default) or
            ``"nan"`` (NaN rows for them).

        Returns
        -------
        ``n_cells x n_latent`` float32 array.
        """
        return self._latent(mdata, modality, indices, batch_size, missing)

    def _classifier_classes(self) -> np.ndarray:
        """Class names of the model's classifier head; raises when it has none."""
        raise ValueError(f"{type(self).__name__} has no classifier head to predict with.")

    def predict(
        self,
        mdata: md.MuData | ad.AnnData | None = None,
        modality: str = "joint",
        indices: Sequence[int] | np.ndarray | None = None,
        soft: bool = False,
        batch_size: int | None = None,
    ) -> np.ndarray | pd.DataFrame:
        """Classes (cell types) predicted by the model's classifier head.

        Parameters
        ----------
        mdata
            As in :meth:`get_latent_representation`.
        modality
            A modality (cells must have it), or ``"joint"``: class probabilities
            averaged over the modalities each cell was measured in.
        indices
            Positions of the cells (default all).
        soft
            Return class probabilities instead of labels.
        batch_size
            Cells per forward pass.

        Returns
        -------
        Labels (object array), or with ``soft`` a DataFrame of probabilities (cells x
        classes).
        """
        classes = self._classifier_classes()
        cells, probs = self._class_probabilities(mdata, modality, indices, batch_size, len(classes))
        if soft:
            return pd.DataFrame(probs, index=cells.obs.index, columns=list(classes))
        return np.asarray(classes, dtype=object)[probs.argmax(axis=1)]

    def _options(self, method: str, **given: Any) -> dict[str, Any]:
        """The options given to ``method``; each must be one the model supports."""
        given = {k: v for k, v in given.items() if v is not None}
        unsupported = [k for k in given if k not in self._translation_options]
        if unsupported:
            supported = list(self._translation_options) or "none"
            raise TypeError(
                f"{type(self).__name__}.{method} does not take {unsupported}; its options "
                f"are {supported} (see the {type(self).__name__} docstring)."
            )
        return given

    def _translate_latent(
        self, z: np.ndarray, target: str, cells: Cells, batch_size: int | None, **options: Any
    ):
        """``target`` profiles predicted from embeddings ``z`` of ``cells`` (model hook)."""
        raise NotImplementedError

    def _check_translation(self, target: str, **options: Any) -> None:
        """Refuse bad translation options before any work (model hook; default none)."""

    def translate(
        self,
        mdata: md.MuData | ad.AnnData | None = None,
        source: str | None = None,
        target: str | None = None,
        indices: Sequence[int] | np.ndarray | None = None,
        batch_size: int | None = None,
        *,
        k: int | None = None,
        sample: bool | None = None,
        library: str | float | np.ndarray | None = None,
        batch: str | int | None = None,
        scale: str | None = None,
    ) -> ad.AnnData:
        """Predict the ``target`` profile of cells measured in ``source``.

        Each cell is embedded from ``source`` alone and the embedding is mapped to
        ``target``: by ``target``'s decoder (SCCROSS, CONAAE, CLUE) or, for MINNET,
        which has no decoder, as the mean ``target`` profile of the ``k`` nearest
        reference cells. The options after ``batch_size`` belong to some models only
        (named with each); passing one that a model does not take raises a TypeError.

        Parameters
        ----------
        mdata
            As in :meth:`get_latent_representation` (an AnnData is of ``source``).
        source
            Modality the cells are embedded from; they must have it. CLUE also accepts
            ``"joint"`` (its joint embedding of the modalities each cell has).
        target
            Modality to predict (``source`` itself gives the reconstruction).
        indices
            Positions of the cells (default all).
        batch_size
            Cells per forward pass.
        k
            MINNET: reference neighbours averaged (default 10).
        sample
            SCCROSS, CLUE: draw from the likelihood (counts for NB / ZINB) instead of
            taking its mean (default False).
        library
            SCCROSS, CLUE: library size of count predictions: ``"mean"`` (default, the
            training mean of ``target``), a number or one per cell; CLUE also takes
            ``"observed"`` (the cells' own ``target`` totals; they must have ``target``).
        batch
            SCCROSS, CLUE: batch (name or code) whose decoder parameters are used
            (default: SCCROSS the first batch, CLUE the batch with the most cells
            measured in ``target``).
        scale
            CONAAE: ``"normalized"`` (default: the decoder output with the per-feature
            standardisation undone, i.e. ``target``'s normalised space) or
            ``"standardized"`` (the z-scored space of the reconstruction loss).

        Returns
        -------
        AnnData of the cells (``obs`` of the query) in ``target``'s features, with the
        embeddings the prediction came from in ``obsm``; dense, or sparse where MINNET
        averages sparse reference profiles.
        """
        options = self._options(
            "translate", k=k, sample=sample, library=library, batch=batch, scale=scale
        )
        if source is None or target is None:
            raise ValueError(f"Name source= and target= modalities (of {self.modalities}).")
        self._check_modality(source, joint=self._joint_translation)
        self._check_modality(target)
        self._check_translation(target, **options)
        self._check_if_trained(warn=True)
        cells = self._cells(mdata, None if source == "joint" else source, indices)
        if source == "joint":
            z = self._joint_embedding(cells, batch_size)
        else:
            self._require(cells, source)
            z = self._embed_matrix(
                cells.matrices[source], source, batch_size, self._encoder_batches(cells)
            )
        x = self._translate_latent(z, target, cells, batch_size, **options)
        out = ad.AnnData(
            X=x,
            obs=cells.obs.copy(),
            var=pd.DataFrame(index=self.adata.mod[target].var_names.copy()),
        )
        out.obsm[self._latent_key] = z
        key = self._latent_key.removeprefix("X_")
        out.uns[f"{key}_translate"] = {"source": source, "target": target, **_plain(options)}
        return out

    def perturb(
        self,
        mdata: md.MuData | ad.AnnData | None = None,
        modality: str | None = None,
        features: Sequence[str] | str | None = None,
        factor: float = 1.5,
        target: str | None = None,
        indices: Sequence[int] | np.ndarray | None = None,
        batch_size: int | None = None,
        *,
        k: int | None = None,
        library: str | float | None = None,
        batch: str | int | None = None,
        scale: str | None = None,
    ) -> ad.AnnData:
        """In-silico perturbation: scale features in count space and re-embed.

        The registered values of ``features`` of ``modality`` are multiplied by
        ``factor``; the perturbed cells go through the transforms stored at training
        and the encoder again. With ``target``, the translated ``target`` profile (see
        :meth:`translate`, whose model-specific options ``k``, ``library``, ``batch`` and
        ``scale`` apply) is compared before and after.

        Parameters
        ----------
        mdata
            As in :meth:`get_latent_representation` (an AnnData is of ``modality``).
        modality
            Modality whose features are perturbed; the cells must have it.
        features
            Feature names (one or several) of ``modality``.
        factor
            Multiplier of the features' values (1.5 up, 0.5 down, 0 knock-out).
        target
            Optional modality whose translated profile is compared before and after.
        indices
            Positions of the cells (default all).
        batch_size
            Cells per forward pass.
        k, library, batch, scale
            As in :meth:`translate` (``library`` is ``"mean"`` or a number here).

        Returns
        -------
        AnnData of the cells with ``obs["shift_norm"]`` (length of each cell's latent
        shift) and the embeddings before and after in ``obsm`` (``X_<model>`` and
        ``X_<model>_perturbed``). Without ``target``, ``X`` is the latent shift (cells x
        latent dimensions); with ``target``, ``X`` is the change of the translated
        ``target`` profile (cells x target features), with ``layers["translated"]`` and
        ``layers["translated_perturbed"]``.
        """
        options = self._options("perturb", k=k, library=library, batch=batch, scale=scale)
        if target is not None:
            self._check_modality(target)
            self._check_translation(target, **options)
        return self._perturb(
            mdata,
            modality,
            features,
            factor,
            target,
            indices,
            batch_size,
            translate=lambda z, t, cells: self._translate_latent(
                z, t, cells, batch_size, **options
            ),
            info=_plain(options),
        )

    # ------------------------------------------------------------------ perturbation
    def _feature_columns(self, modality: str, features: Sequence[str] | str | None):
        """Feature names (as a list) and their column positions in ``modality``."""
        if features is None:
            raise ValueError("Name the features= to perturb.")
        features = [features] if isinstance(features, str) else list(features)
        cols = self.adata.mod[modality].var_names.get_indexer(features)
        if (cols < 0).any():
            unknown = [f for f, c in zip(features, cols, strict=True) if c < 0]
            raise KeyError(
                f"{len(unknown)} features are not among the model's '{modality}' features: "
                f"{unknown[:5]}."
            )
        return features, cols

    def _perturb(
        self,
        mdata: md.MuData | ad.AnnData | None,
        modality: str | None,
        features: Sequence[str] | str | None,
        factor: float,
        target: str | None,
        indices: Sequence[int] | np.ndarray | None,
        batch_size: int | None,
        translate: Callable[[np.ndarray, str, Cells], Any],
        info: dict | None = None,
    ) -> ad.AnnData:
        """Scale features in count space, re-embed, and translate before and after.

        ``translate(z, target, cells)`` maps embeddings of ``cells`` to ``target``
        profiles (the model's own cross-modal prediction). See :meth:`perturb`.
        """
        if modality is None:
            raise ValueError(f"Name the perturbed modality= (one of {self.modalities}).")
        self._check_modality(modality)
        if target is not None:
            self._check_modality(target)
        if features is None:
            raise ValueError("Name the features= to perturb.")
        if not np.isfinite(factor) or factor < 0:
            raise ValueError(f"factor must be a finite non-negative number, got {factor}.")
        features, cols = self._feature_columns(modality, features)
        self._check_if_trained(warn=True)
        cells = self._cells(mdata, modality, indices)
        self._require(cells, modality)
        x = in_memory(cells.matrices[modality])
        scale = np.ones(x.shape[1])
        scale[cols] = factor
        if sparse.issparse(x):
            x_pert = sparse.csr_matrix(x @ sparse.diags(scale))
        else:
            x_pert = np.asarray(x, dtype=np.float64) * scale
        z0, z1 = self._embed_pair(x, x_pert, modality, batch_size, self._encoder_batches(cells))
        shift = z1 - z0
        obs = cells.obs.copy()
        obs["shift_norm"] = np.linalg.norm(shift, axis=1)
        details = {"modality": modality, "features": features, "factor": float(factor)}
        if target is None:
            out = ad.AnnData(
                X=shift,
                obs=obs,
                var=pd.DataFrame(index=[f"latent_{i}" for i in range(shift.shape[1])]),
            )
        else:
            t0 = translate(z0, target, cells)
            t1 = translate(z1, target, cells)
            dense = (lambda a: a.toarray()) if sparse.issparse(t0) else np.asarray
            out = ad.AnnData(
                X=dense(t1) - dense(t0),
                obs=obs,
                var=pd.DataFrame(index=self.adata.mod[target].var_names.copy()),
                layers={"translated": t0, "translated_perturbed": t1},
            )
            details.update(target=target, **(info or {}))
        key = self._latent_key
        out.obsm[key] = z0
        out.obsm[f"{key}_perturbed"] = z1
        out.uns[f"{key.removeprefix('X_')}_perturb"] = details
        return out


def _rows_of(codes: np.ndarray | None, rows: np.ndarray) -> np.ndarray | None:
    """``codes[rows]``, or None when there are no codes."""
    return None if codes is None else codes[rows]


def _plain(options: Mapping[str, Any]) -> dict[str, Any]:
    """Options as plain values for ``uns`` (per-cell arrays summarised as "array")."""
    out = {}
    for key, value in options.items():
        if isinstance(value, np.ndarray | list | tuple):
            out[key] = "array"
        elif isinstance(value, np.generic):
            out[key] = value.item()
        else:
            out[key] = value
    return out
