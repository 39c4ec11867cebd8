"""Generation from the shared space: simulated cells of a state, normalised expression.

Three mixins for the models with decoders, written once over the hooks of
:class:`~scmint.model._base.MultiModalMixin` (``_embed_matrix``, ``_translate_latent``,
``_translation_options``):

- :class:`SimulationMixin` (SCCROSS, CLUE, CONAAE): ``simulate`` draws codes of one cell
  state in the shared space and decodes every modality from the same code, so the cells
  come out paired.
- :class:`NormalizedExpressionMixin` (the models with count decoders, SCCROSS and
  CLUE): scvi-tools' ``get_normalized_expression``, the decoded mean at a chosen library
  size and decoder batch.
- :class:`EvidenceMixin` (the VAE models, SCCROSS and CLUE): scvi-tools'
  ``get_reconstruction_error`` and ``get_elbo``, per modality.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import torch
from scipy import sparse
from scvi import REGISTRY_KEYS

from scmint.nn._likelihoods import COUNT_LIKELIHOODS

from ._base import Cells, check_positive_int


class SimulationMixin:
    """``simulate``: matched multi-omics cells of one cell state, decoded from shared codes.

    Model hooks: ``_state_codes(x, rows, modality, batch_size) -> (mean, std)`` (default:
    the mean and the per-dimension standard deviation of the state's embeddings) and
    ``_finish_codes(z) -> z`` (default: unchanged; CLUE projects onto its unit sphere).
    """

    def _state_codes(
        self, x, rows: np.ndarray, modality: str, batch_size: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mean and spread of the codes of registered rows ``rows`` of ``modality``.

        Default: the mean and the per-dimension standard deviation of the cells'
        embeddings, so that the simulated codes spread as the state's cells do.
        """
        codes = None
        if self._encodes_batch:
            codes = self._cell_batch_codes(self.adata.obs, needed_by="encoder")[rows]
        z = self._embed_matrix(x[rows], modality, batch_size, codes)
        return z.mean(axis=0), z.std(axis=0)

    def _finish_codes(self, z: np.ndarray) -> np.ndarray:
        """Drawn codes as the decoders read them (default unchanged)."""
        return z

    def simulate(
        self,
        obs_key: str,
        value: Any,
        n_cells: int | None = None,
        fold: float = 1.0,
        modalities: Sequence[str] | None = None,
        seed: int = 0,
        batch_size: int | None = None,
        *,
        sample: bool | None = None,
        library: str | float | None = None,
        batch: str | int | None = None,
        scale: str | None = None,
    ) -> md.MuData:
        """Simulate matched multi-omics cells of one cell state.

        The registered cells with ``obs[obs_key] == value`` are embedded from every
        modality they were measured in; per modality the mean of their codes and their
        spread are taken (SCCROSS: the mean of the posterior means and of the posterior
        standard deviations, as scCross does; CLUE and CONAAE: the mean and the
        per-dimension standard deviation of the cells' embeddings), then averaged over
        the modalities. New codes are drawn from that Gaussian and every modality is
        decoded from the same code, so the simulated cells are paired. The options
        after ``batch_size`` are those of :meth:`translate` the model takes.

        Parameters
        ----------
        obs_key
            Column of the registered ``mdata.obs`` (e.g. ``"cell_type"``).
        value
            The state (a value of that column).
        n_cells
            Number of cells; default ``fold`` times the number of registered cells in
            the state.
        fold
            Multiple of the state's cell count when ``n_cells`` is not given (1).
        modalities
            Modalities to generate (default all).
        seed
            Seed of the codes, libraries and sampled counts.
        batch_size
            Cells per forward pass.
        sample
            SCCROSS, CLUE: draw counts from the likelihood (default True) instead of
            taking its mean.
        library
            SCCROSS, CLUE: ``"observed"`` (default: library sizes resampled from the
            state's cells of each modality), ``"mean"`` (the state's mean) or a number.
        batch
            SCCROSS, CLUE: batch (name or code) of the decoders (default as in
            :meth:`translate`).
        scale
            CONAAE: space of the output, as in :meth:`translate` (default
            ``"normalized"``).

        Returns
        -------
        Paired MuData (every modality holds every simulated cell, same ``obs_names``):
        counts (sparse) for count decoders, decoded values otherwise; with
        ``obs[obs_key] = value`` (and, for decoders with batches, the decoders' batch
        in the registered batch column), the codes in ``obsm`` (the model's latent key)
        and the settings in ``uns["<model>_simulation"]``.
        """
        options = self._options(
            "simulate", sample=sample, library=library, batch=batch, scale=scale
        )
        if "sample" in self._translation_options:
            options.setdefault("sample", True)
        if "library" in self._translation_options:
            options.setdefault("library", "observed")
        self._check_if_trained(warn=True)
        obs = self.adata.obs
        if obs_key not in obs.columns:
            raise KeyError(f"'{obs_key}' is not a column of the registered mdata.obs.")
        in_state = (obs[obs_key].astype(object) == value).to_numpy()
        if not in_state.any():
            values = pd.unique(obs[obs_key].astype(object))[:10].tolist()
            raise ValueError(f"No registered cell has {obs_key} == {value!r} (e.g. {values}).")
        mods = list(self.modalities if modalities is None else modalities)
        for m in mods:
            self._check_modality(m)
            self._check_translation(m, **options)
        n_cells = self._simulation_size(n_cells, fold, int(in_state.sum()))

        means, spreads, libraries = [], [], {}
        for m in self.modalities:
            rows = np.flatnonzero(in_state & self._registered_mask(m))
            if rows.size == 0:
                continue
            x = self._registered(m)
            mean, spread = self._state_codes(x, rows, m, batch_size)
            means.append(mean)
            spreads.append(spread)
            libraries[m] = np.asarray(x[rows].sum(axis=1), dtype=np.float64).ravel()
        mean, spread = np.mean(means, axis=0), np.mean(spreads, axis=0)
        rng = np.random.default_rng(seed)
        z = (mean + spread * rng.standard_normal((n_cells, mean.size))).astype(np.float32)
        z = self._finish_codes(z)
        torch.manual_seed(seed)

        names = pd.Index([f"sim{i:05d}" for i in range(n_cells)])
        obs_sim = pd.DataFrame({obs_key: pd.Categorical([value] * n_cells)}, index=names)
        batch_names = self._batch_names()
        if "batch" in self._translation_options and len(batch_names) > 1:
            # the decoders' batch, so that the cells can be embedded again in that batch
            registry = self.adata_manager.get_state_registry(REGISTRY_KEYS.BATCH_KEY)
            name = batch_names[self._batch_code(options.get("batch"))]
            obs_sim[registry.original_key] = pd.Categorical([name] * n_cells)
        cells = Cells(obs=obs_sim, matrices={}, has={})  # generated: nothing measured
        adatas = {}
        for m in mods:
            decode = dict(options)
            if "library" in decode:
                decode["library"] = self._simulated_library(
                    decode["library"], m, libraries.get(m), n_cells, rng
                )
            x = self._translate_latent(z, m, cells, batch_size, **decode)
            adatas[m] = ad.AnnData(
                X=sparse.csr_matrix(x) if self._decodes_counts(m) else x,
                obs=obs_sim.copy(),
                var=pd.DataFrame(index=self.adata.mod[m].var_names.copy()),
            )
        with md.set_options(pull_on_update=False):
            out = md.MuData(adatas)
            out.obs[obs_key] = obs_sim[obs_key].to_numpy()
        out.obsm[self._latent_key] = z
        key = self._latent_key.removeprefix("X_")
        out.uns[f"{key}_simulation"] = {
            "obs_key": obs_key,
            "value": str(value),
            "n_cells": n_cells,
            "n_reference_cells": int(in_state.sum()),
            "seed": seed,
            **{k: v for k, v in options.items() if isinstance(v, str | bool | int | float)},
        }
        return out

    @staticmethod
    def _simulation_size(n_cells: int | None, fold: float, n_state: int) -> int:
        if n_cells is None:
            if not (np.isfinite(fold) and fold > 0):
                raise ValueError(f"fold must be a positive number, got {fold!r}.")
            return max(1, round(fold * n_state))
        check_positive_int(n_cells=n_cells)
        return int(n_cells)

    def _decodes_counts(self, modality: str) -> bool:
        return getattr(self, "likelihoods_", {}).get(modality) in COUNT_LIKELIHOODS

    def _simulated_library(
        self,
        library: str | float,
        modality: str,
        observed: np.ndarray | None,
        n_cells: int,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """Library sizes of simulated cells (1 for decoders that take none)."""
        if not self._decodes_counts(modality):
            return np.ones(n_cells, dtype=np.float32)
        if observed is None:  # no cell of the state has the modality
            observed = np.asarray([self.library_mean_[modality]])
        if isinstance(library, str) and library == "observed":
            lib = rng.choice(observed, size=n_cells)
        elif isinstance(library, str) and library == "mean":
            lib = np.full(n_cells, observed.mean())
        elif isinstance(library, str):
            raise ValueError(f"library must be 'observed', 'mean' or a number, got {library!r}.")
        else:  # a number, checked like translate's
            lib = self._library(library, modality, n_cells)
        # a cell of the state without counts in the modality decodes like one count
        return np.maximum(lib, 1.0).astype(np.float32)


class NormalizedExpressionMixin:
    """scvi-tools' ``get_normalized_expression`` for models with count decoders."""

    def get_normalized_expression(
        self,
        mdata: md.MuData | ad.AnnData | None = None,
        modality: str | None = None,
        indices: Sequence[int] | np.ndarray | None = None,
        transform_batch: str | int | Sequence[str | int] | None = None,
        library_size: float = 1.0,
        source: str | None = None,
        batch_size: int | None = None,
        return_numpy: bool = False,
    ) -> pd.DataFrame | np.ndarray:
        """Decoded mean profile of ``modality`` at a fixed library size (denoised values).

        As scvi-tools' method of that name: each cell is embedded (from ``source``) and
        ``modality``'s decoder gives the mean of its likelihood with the library size
        set to ``library_size``, so ``library_size=1`` gives per-cell frequencies and
        ``1e4`` counts per 10k. For a modality whose likelihood takes no library size
        (Normal, Bernoulli) it is the decoded mean.

        Parameters
        ----------
        mdata
            As in :meth:`get_latent_representation`.
        modality
            The modality to decode.
        indices
            Positions of the cells (default all).
        transform_batch
            Batch (name or code) whose decoder parameters are used, or several whose
            results are averaged; default the batch :meth:`translate` uses.
        library_size
            Library size of the decoded means (default 1: frequencies).
        source
            What the cells are embedded from: a modality they were measured in, or
            ``"joint"`` (CLUE; default there). Default elsewhere: ``modality``.
        batch_size
            Cells per forward pass.
        return_numpy
            Return an array instead of a DataFrame.

        Returns
        -------
        Cells x features of ``modality``: a DataFrame (index the cells' names, columns
        the features) or an array.
        """
        if modality is None:
            raise ValueError(f"Name modality= (one of {self.modalities}).")
        self._check_modality(modality)
        if isinstance(library_size, bool) or not (
            isinstance(library_size, int | float | np.integer | np.floating)
            and np.isfinite(library_size)
            and library_size > 0
        ):
            raise ValueError(f"library_size must be a positive number, got {library_size!r}.")
        if source is None:
            source = "joint" if self._joint_translation else modality
        batches: list[str | int | None]
        if transform_batch is None or isinstance(transform_batch, str | int | np.integer):
            batches = [transform_batch]
        else:
            batches = list(transform_batch)
            if not batches:
                raise ValueError("transform_batch is an empty list; give a batch or None.")
        for b in batches:
            self._check_translation(modality, batch=b)
        total = None
        for b in batches:
            out = self.translate(
                mdata,
                source=source,
                target=modality,
                indices=indices,
                batch_size=batch_size,
                library=float(library_size),
                batch=b,
            )
            x = np.asarray(out.X, dtype=np.float64)
            total = x if total is None else total + x
        mean = (total / len(batches)).astype(np.float32)
        if return_numpy:
            return mean
        return pd.DataFrame(mean, index=out.obs_names.copy(), columns=out.var_names.copy())


class EvidenceMixin:
    """scvi-tools' ``get_reconstruction_error`` and ``get_elbo`` for the VAE models.

    Model hook: ``_elbo_terms(x, modality, batch_codes, batch_size) -> (nll, kl)``, per
    cell: the negative log-likelihood of the rows of ``x`` under ``modality``'s decoder,
    summed over features, at the posterior mean of the cell's code, and the KL
    divergence of the posterior from the standard Normal prior.
    """

    def _evidence(self, mdata, indices, batch_size) -> tuple[Any, dict, dict]:
        self._check_if_trained(warn=True)
        cells = self._cells(mdata, None, indices)
        codes = self._cell_batch_codes(cells.obs)
        nll, kl = {}, {}
        for m in self.modalities:
            rows = np.flatnonzero(cells.has[m])
            nll[m] = np.full(cells.n_obs, np.nan)
            kl[m] = np.full(cells.n_obs, np.nan)
            if rows.size:
                nll[m][rows], kl[m][rows] = self._elbo_terms(
                    cells.matrices[m][rows], m, codes[rows], batch_size
                )
        return cells, nll, kl

    def get_reconstruction_error(
        self,
        mdata: md.MuData | ad.AnnData | None = None,
        indices: Sequence[int] | np.ndarray | None = None,
        batch_size: int | None = None,
        return_mean: bool = True,
    ) -> dict[str, float | np.ndarray]:
        """Negative log-likelihood of each modality's profiles under its own decoder.

        Per cell and modality: ``-log p(x_k | u_k)`` summed over the features of ``k``,
        with ``u_k`` the posterior mean of the cell's code from ``x_k`` (deterministic)
        and the cell's own batch and library size.

        Parameters
        ----------
        mdata
            As in :meth:`get_latent_representation`; query cells need the registered
            batch column (one of the registered batches) unless set up without one.
        indices
            Positions of the cells (default all).
        batch_size
            Cells per forward pass.
        return_mean
            Mean over the cells measured in each modality (default), or one value per
            cell (NaN where a cell lacks the modality).

        Returns
        -------
        ``{"reconstruction_loss_<modality>": value}`` for every modality.
        """
        _, nll, _ = self._evidence(mdata, indices, batch_size)
        if not return_mean:
            return {f"reconstruction_loss_{m}": v for m, v in nll.items()}
        return {  # NaN for a modality none of the cells has
            f"reconstruction_loss_{m}": float(v[np.isfinite(v)].mean())
            if np.isfinite(v).any()
            else float("nan")
            for m, v in nll.items()
        }

    def get_elbo(
        self,
        mdata: md.MuData | ad.AnnData | None = None,
        indices: Sequence[int] | np.ndarray | None = None,
        batch_size: int | None = None,
        return_mean: bool = True,
    ) -> float | np.ndarray:
        """Evidence lower bound of each cell's measured profiles (higher is better).

        The sum over the modalities a cell was measured in of its per-modality bound
        ``log p(x_k | u_k) - KL(q(u_k | x_k) || N(0, I))``, the likelihood evaluated at
        the posterior mean (see :meth:`get_reconstruction_error`). As scvi-tools'
        ``get_elbo``, the bound itself (a log-probability, so negative for counts),
        not the loss.

        Parameters
        ----------
        mdata, indices, batch_size
            As in :meth:`get_reconstruction_error`.
        return_mean
            Mean over the cells (default), or one value per cell.

        Returns
        -------
        The mean bound, or one per cell.
        """
        _, nll, kl = self._evidence(mdata, indices, batch_size)
        per_cell = -np.nansum([nll[m] + kl[m] for m in self.modalities], axis=0)
        return float(per_cell.mean()) if return_mean else per_cell
