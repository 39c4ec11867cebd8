"""Linear CCA integration baseline."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, Self

import anndata as ad
import mudata as md
import numpy as np

Kind = Literal["rna", "atac", "protein"]

_ATAC_HINTS = ("atac", "peak", "chrom", "access")
_PROTEIN_HINTS = ("adt", "prot", "cite", "antibod")


def infer_kind(modality: str) -> Kind:
    """Guess the feature kind of a modality from its name.

    Parameters
    ----------
    modality
        Modality name, e.g. ``"rna"``, ``"atac"``, ``"peaks"``, ``"adt"``, ``"protein"``.

    Returns
    -------
    str
        ``"atac"`` for names containing atac / peak / chrom / access, ``"protein"`` for
        adt / prot / cite / antibod, else ``"rna"``.
    """
    name = modality.lower()
    if any(h in name for h in _ATAC_HINTS):
        return "atac"
    if any(h in name for h in _PROTEIN_HINTS):
        return "protein"
    return "rna"


class _ProteinReducer:
    """CLR + per-feature scaling (:class:`scmint.pp.FeatureScaler`), then PCA."""

    def __init__(self, n_comps: int, random_state: int = 0) -> None:
        self.n_comps = n_comps
        self.random_state = random_state

    def fit_transform(self, adata: ad.AnnData, layer: str | None = None) -> np.ndarray:
        from sklearn.decomposition import PCA

        from scmint.pp import FeatureScaler

        self.scaler_ = FeatureScaler(clr="feature")
        x = self.scaler_.fit_transform(adata, layer=layer)
        n = min(self.n_comps, x.shape[1], x.shape[0] - 1)
        self.pca_ = PCA(n_components=n, random_state=self.random_state)
        return self.pca_.fit_transform(x).astype(np.float32)

    def transform(self, adata: ad.AnnData) -> np.ndarray:
        return self.pca_.transform(self.scaler_.transform(adata)).astype(np.float32)


def _make_reducer(kind: Kind, n_comps: int, random_state: int):
    from scmint.pp import LogNormPCA, TfidfLSI

    if kind == "rna":
        return LogNormPCA(n_comps=n_comps, random_state=random_state)
    if kind == "atac":
        # the first LSI component tracks depth and is dropped: ask for one more
        return TfidfLSI(n_comps=n_comps + 1, drop_component="first", random_state=random_state)
    if kind == "protein":
        return _ProteinReducer(n_comps=n_comps, random_state=random_state)
    raise ValueError(f"Unknown feature kind {kind!r}; use 'rna', 'atac' or 'protein'.")


class LinearCCA:
    """Linear canonical correlation analysis of two modalities.

    Each modality is reduced with transforms fitted on the training cells (RNA:
    :class:`scmint.pp.LogNormPCA`; ATAC: :class:`scmint.pp.TfidfLSI` without its first,
    depth-related component; protein: :class:`scmint.pp.FeatureScaler` with CLR, then
    PCA), standardised, and :class:`sklearn.cross_decomposition.CCA` is fitted on the
    paired cells. Any cell of either modality can then be embedded from that modality
    alone with the stored transforms: both modalities land in one shared space of
    canonical variates (each standardised to unit variance on the training cells).

    Parameters
    ----------
    n_components
        Number of canonical components (embedding dimension).
    n_comps
        Dimension of the per-modality reductions fed to CCA.
    kinds
        Feature kind per modality name (``"rna"``, ``"atac"``, ``"protein"``); names
        not given are guessed by :func:`infer_kind`.
    weight_by_correlation
        Multiply each canonical variate by its training canonical correlation, so
        weakly shared directions count less in distances.
    max_iter, tol
        Passed to :class:`~sklearn.cross_decomposition.CCA`.
    random_state
        Seed of the reductions.

    Attributes
    ----------
    modalities_
        The two modality names, in fit order.
    kinds_
        Feature kind of each modality.
    reducers_
        Fitted per-modality reductions.
    correlations_
        Canonical correlation of each component on the training cells.

    Examples
    --------
    >>> cca = LinearCCA(n_components=20).fit(mdata, modalities=["rna", "adt"])
    >>> z_rna = cca.transform(query_rna, modality="rna")
    >>> z_adt = cca.transform(query_adt, modality="adt")
    """

    def __init__(
        self,
        n_components: int = 20,
        n_comps: int = 50,
        kinds: Mapping[str, Kind] | None = None,
        weight_by_correlation: bool = False,
        max_iter: int = 1000,
        tol: float = 1e-6,
        random_state: int = 0,
    ) -> None:
        self.n_components = n_components
        self.n_comps = n_comps
        self.kinds = dict(kinds or {})
        self.weight_by_correlation = weight_by_correlation
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    def __repr__(self) -> str:
        fitted = "" if hasattr(self, "cca_") else ", unfitted"
        return (
            f"LinearCCA(n_components={self.n_components}, n_comps={self.n_comps}"
            f"{', modalities=' + str(self.modalities_) if fitted == '' else ''}{fitted})"
        )

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        data: md.MuData | Mapping[str, ad.AnnData],
        modalities: Sequence[str] | None = None,
        layers: Mapping[str, str | None] | None = None,
    ) -> Self:
        """Fit the reductions and the CCA.

        Parameters
        ----------
        data
            A MuData, or a mapping ``{modality: AnnData}``, with raw counts. Cells with
            the same ``obs_names`` in both modalities are the pairs CCA is fitted on;
            each reduction is fitted on all cells of its modality.
        modalities
            The two modalities to use; default: the first two of ``data``.
        layers
            Layer per modality (default ``X``).

        Returns
        -------
        LinearCCA
            ``self``, fitted.
        """
        from sklearn.cross_decomposition import CCA

        mods = dict(data.mod) if isinstance(data, md.MuData) else dict(data)
        names = list(modalities) if modalities is not None else list(mods)[:2]
        if len(names) != 2 or any(m not in mods for m in names):
            raise ValueError(
                f"LinearCCA needs exactly two modalities of the data ({list(mods)}); got {names}."
            )
        a, b = names
        shared = mods[a].obs_names.intersection(mods[b].obs_names, sort=False)
        if len(shared) < 3:
            raise ValueError(
                f"LinearCCA is fitted on paired cells (same obs_names in {a!r} and {b!r}); "
                f"found {len(shared)}."
            )
        layers = dict(layers or {})
        self.modalities_ = (a, b)
        self.kinds_ = {m: self.kinds.get(m) or infer_kind(m) for m in names}
        self.reducers_ = {}
        self._mean, self._std, reduced = {}, {}, {}
        for m in names:
            reducer = _make_reducer(self.kinds_[m], self.n_comps, self.random_state)
            x = np.asarray(reducer.fit_transform(mods[m], layer=layers.get(m)), np.float64)
            self.reducers_[m] = reducer
            self._mean[m] = x.mean(axis=0)
            self._std[m] = np.where(x.std(axis=0) > 0, x.std(axis=0), 1.0)
            rows = mods[m].obs_names.get_indexer(shared)
            reduced[m] = (x[rows] - self._mean[m]) / self._std[m]
        k = min(self.n_components, reduced[a].shape[1], reduced[b].shape[1], len(shared) - 1)
        self.cca_ = CCA(n_components=k, scale=False, max_iter=self.max_iter, tol=self.tol)
        self.cca_.fit(reduced[a], reduced[b])
        self._rot = {a: self.cca_.x_rotations_, b: self.cca_.y_rotations_}
        scores = {m: reduced[m] @ self._rot[m] for m in names}
        self._score_mean = {m: s.mean(axis=0) for m, s in scores.items()}
        self._score_std = {
            m: np.where(s.std(axis=0) > 0, s.std(axis=0), 1.0) for m, s in scores.items()
        }
        za, zb = ((scores[m] - self._score_mean[m]) / self._score_std[m] for m in names)
        self.correlations_ = np.array([np.corrcoef(za[:, i], zb[:, i])[0, 1] for i in range(k)])
        self.n_pairs_ = len(shared)
        return self

    # ------------------------------------------------------------------ embedding
    def _resolve(self, modality: str) -> str:
        if not hasattr(self, "cca_"):
            raise RuntimeError("LinearCCA is not fitted; call fit() first.")
        aliases = {"a": self.modalities_[0], "b": self.modalities_[1]}
        name = aliases.get(modality, modality)
        if name not in self.modalities_:
            raise ValueError(
                f"Unknown modality {modality!r}; fitted on {self.modalities_} (or 'a' / 'b')."
            )
        return name

    def transform(self, data: ad.AnnData | md.MuData, modality: str) -> np.ndarray:
        """Embed cells of one modality from that modality alone.

        Parameters
        ----------
        data
            AnnData of the modality (features matched by name to the training ones), or
            a MuData holding it.
        modality
            Modality name used at fit time (``"a"`` / ``"b"`` for the first / second).

        Returns
        -------
        numpy.ndarray
            ``n_cells x n_components`` float32 canonical variates.
        """
        m = self._resolve(modality)
        adata = data.mod[m] if isinstance(data, md.MuData) else data
        x = np.asarray(self.reducers_[m].transform(adata), dtype=np.float64)
        s = ((x - self._mean[m]) / self._std[m]) @ self._rot[m]
        z = (s - self._score_mean[m]) / self._score_std[m]
        if self.weight_by_correlation:
            z = z * np.clip(self.correlations_, 0.0, None)
        return z.astype(np.float32)

    def fit_transform(
        self,
        data: md.MuData | Mapping[str, ad.AnnData],
        modalities: Sequence[str] | None = None,
    ) -> dict[str, np.ndarray]:
        """Fit, then embed every cell of both modalities (each from itself alone).

        Parameters
        ----------
        data
            As in :meth:`fit`.
        modalities
            As in :meth:`fit`.

        Returns
        -------
        dict
            ``{modality: n_cells x n_components array}``.
        """
        self.fit(data, modalities=modalities)
        mods = dict(data.mod) if isinstance(data, md.MuData) else dict(data)
        return {m: self.transform(mods[m], modality=m) for m in self.modalities_}
