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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import torch
from scipy import sparse

from scmint._threads import keep_torch_threads
from scmint.data import check_finite, data_key, indicator_key, mask_key, prepare_query_mudata
from scmint.data._padding import INDICATOR_PREFIX, PADDING_UNS_KEY
from scmint.data._validation import resolve_layers
from scmint.nn._blocks import INPUT_NORMALIZATIONS, InputNormalization
from scmint.pp import FeatureScaler

Normalization = InputNormalization
NORMALIZATIONS: tuple[str, ...] = INPUT_NORMALIZATIONS
INFERENCE_BATCH = 1024
"""Cells per forward pass at inference when no ``batch_size`` is given."""


def resolve_normalization(
    modalities: Sequence[str],
    normalization: Normalization | Mapping[str, Normalization],
    default: Normalization = "log",
) -> dict[str, str]:
    """Expand ``normalization`` (one value or ``{modality: value}``) and check the values."""
    if isinstance(normalization, Mapping):
        unknown = [m for m in normalization if m not in modalities]
        if unknown:
            raise KeyError(
                f"normalization names modalities {unknown} that are not among {list(modalities)}."
            )
        norms = {m: normalization.get(m, default) for m in modalities}
    else:
        norms = dict.fromkeys(modalities, normalization)
    bad = {m: n for m, n in norms.items() if n not in NORMALIZATIONS}
    if bad:
        raise ValueError(f"Unknown normalization {bad}; choose from {NORMALIZATIONS}.")
    return norms


def make_feature_scaler(norm: str, target_sum: float, max_value: float | None) -> FeatureScaler:
    """The (unfitted) :class:`~scmint.pp.FeatureScaler` of a normalisation name."""
    if norm == "log":
        return FeatureScaler(max_value=max_value, log=True, target_sum=target_sum)
    if norm == "clr":
        return FeatureScaler(max_value=max_value, clr="feature")
    return FeatureScaler(max_value=max_value)


def as_dense_float32(x) -> np.ndarray:
    """A dense float32 copy of a (sparse or dense) matrix block."""
    return x.toarray().astype(np.float32) if sparse.issparse(x) else np.asarray(x, np.float32)


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
        """The registered data matrix of a modality (all cells of ``self.adata``)."""
        x = self.adata_manager.get_from_registry(data_key(modality))
        return sparse.csr_matrix(x) if sparse.issparse(x) else np.asarray(x)

    def _registered_mask(self, modality: str) -> np.ndarray:
        """Which registered cells were measured in ``modality``."""
        mask = self.adata_manager.get_from_registry(mask_key(modality))
        return np.asarray(mask).ravel() > 0.5

    def _registered_layers(self) -> dict[str, str | None]:
        return resolve_layers(self.modalities, self.adata_manager.registry["setup_args"]["layer"])

    def _check_nonnegative(self, modality: str, normalization: str) -> None:
        x = self._registered(modality)
        values = x.data if sparse.issparse(x) else x
        if values.size and values.min() < 0:
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
    ) -> dict[str, FeatureScaler]:
        """One fitted :class:`~scmint.pp.FeatureScaler` per modality.

        Fitted on ``rows[m]`` of the registered data (default: every cell measured in
        ``m``), after checking that normalised modalities hold no negative values.
        """
        for m in self.modalities:
            if normalization[m] != "none":
                self._check_nonnegative(m, normalization[m])
        scalers = {}
        with keep_torch_threads():
            for m in self.modalities:
                r = np.flatnonzero(self._registered_mask(m)) if rows is None else rows[m]
                scalers[m] = make_feature_scaler(normalization[m], target_sum, max_value).fit(
                    self._registered(m)[r], feature_names=self.adata.mod[m].var_names
                )
        return scalers

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
                check_finite(x, m)
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
    def _embed_matrix(self, x, modality: str, batch_size: int | None = None) -> np.ndarray:
        """Embedding of the rows of ``x`` (registered values of ``modality``)."""
        raise NotImplementedError

    def _embed_pair(
        self, x, x_perturbed, modality: str, batch_size: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings of the same cells before and after a perturbation.

        Two :meth:`_embed_matrix` calls; models whose encoder input depends on the other
        cells (e.g. kNN smoothing) override it to embed both with the same neighbours.
        """
        return (
            self._embed_matrix(x, modality, batch_size),
            self._embed_matrix(x_perturbed, modality, batch_size),
        )

    def _logits_matrix(self, x, modality: str, batch_size: int | None = None) -> np.ndarray:
        """Classifier logits of the rows of ``x`` (registered values of ``modality``)."""
        raise NotImplementedError

    @staticmethod
    def _per_modality(
        cells: Cells,
        modality: str,
        forward: Callable[[Any], np.ndarray],
        width: int,
    ) -> np.ndarray:
        """``forward`` of the cells having ``modality``; NaN rows for the others."""
        out = np.full((cells.n_obs, width), np.nan, dtype=np.float32)
        rows = np.flatnonzero(cells.has[modality])
        if rows.size:
            out[rows] = forward(cells.matrices[modality][rows])
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

        def embed(m: str) -> np.ndarray:
            return self._per_modality(
                cells, m, lambda x: self._embed_matrix(x, m, batch_size), width
            )

        if modality != "joint":
            if missing == "raise":
                self._require(cells, modality)
            return embed(modality)
        total = np.zeros((cells.n_obs, width), dtype=np.float64)
        count = np.zeros(cells.n_obs)
        for m in self.modalities:
            has = cells.has[m]
            if has.any():
                total[has] += embed(m)[has]
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
        for m in mods:
            has = cells.has[m]
            if not has.any():
                continue
            logits = self._per_modality(
                cells, m, lambda x, m=m: self._logits_matrix(x, m, batch_size), n_classes
            )
            p = torch.softmax(torch.as_tensor(logits[has], dtype=torch.float64), dim=-1).numpy()
            probs[has] += p
            count += has
        probs /= np.maximum(count, 1)[:, None]
        return cells, probs

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
        translate: Callable[[np.ndarray, str], Any],
        info: dict | None = None,
    ) -> ad.AnnData:
        """Scale features in count space, re-embed, and translate before and after.

        ``translate(z, target)`` maps embeddings to ``target`` profiles (the model's
        own cross-modal prediction). See the models' ``perturb`` for the output.
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
        x = cells.matrices[modality]
        scale = np.ones(x.shape[1])
        scale[cols] = factor
        if sparse.issparse(x):
            x_pert = sparse.csr_matrix(x @ sparse.diags(scale))
        else:
            x_pert = np.asarray(x, dtype=np.float64) * scale
        z0, z1 = self._embed_pair(x, x_pert, modality, batch_size)
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
            t0 = translate(z0, target)
            t1 = translate(z1, target)
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
