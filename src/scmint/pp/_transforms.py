"""Fitted, picklable preprocessing transforms (PCA, TF-IDF + LSI, feature scaling).

Models reduce each modality once at training time and must project new or perturbed
cells with exactly the same transform later, without refitting. Every transform here
stores what it learned (feature names, size-factor target, HVG selection, scaling
statistics, loadings) as plain numpy attributes ending in ``_`` so that it can be
pickled, or turned into a dict of arrays with :meth:`FittedTransform.to_dict`.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Sequence
from typing import Any, ClassVar, Literal, Self

import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp
from anndata import AnnData

from scmint._threads import keep_torch_threads
from scmint.data._validation import check_counts

from ._utils import (
    Matrix,
    aligned_matrix,
    as_float_matrix,
    get_matrix,
    log1p,
    log_normalize_rows,
    normalize_rows,
    row_sums,
    scale_cols,
    scale_rows,
    to_csr,
)

_REGISTRY: dict[str, type[FittedTransform]] = {}


class NotFittedError(RuntimeError):
    """Raised when a transform is used before :meth:`FittedTransform.fit`."""


class FittedTransform:
    """Base class of the fitted preprocessing transforms.

    Subclasses implement ``_fit(X, obs) -> training output`` and ``_transform(X)`` on a
    float64 matrix whose columns follow :attr:`feature_names_`. The base class handles
    reading layers, matching features by name, chunking and serialisation.

    Attributes
    ----------
    feature_names_
        Names of the input features the transform was fitted on (column order expected
        by :meth:`transform` for a bare matrix).
    layer_
        The layer read at fit time (``None`` for ``X``); :meth:`transform` reads the same
        layer by default.
    n_output_
        Number of output columns.
    """

    #: rows processed at once in :meth:`transform` (bounds the dense intermediates)
    chunk_size: ClassVar[int] = 20_000

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls

    # ----------------------------------------------------------------- parameters
    def get_params(self) -> dict[str, Any]:
        """Constructor parameters (as in scikit-learn)."""
        sig = inspect.signature(type(self).__init__)
        return {name: getattr(self, name) for name in sig.parameters if name != "self"}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        status = "" if self.is_fitted else ", unfitted"
        return f"{type(self).__name__}({params}{status})"

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` has been called."""
        return getattr(self, "feature_names_", None) is not None

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit() first")

    # ----------------------------------------------------------------- public API
    def fit(
        self,
        adata: AnnData | Matrix,
        layer: str | None = None,
        feature_names: Sequence[str] | None = None,
    ) -> Self:
        """Fit the transform.

        Parameters
        ----------
        adata
            Cells x features AnnData (raw counts in ``X`` or ``layer`` unless the class
            says otherwise) or a matrix.
        layer
            Layer to read; ``None`` reads ``X``.
        feature_names
            Column names when ``adata`` is a matrix (default ``"0"``, ``"1"``, ...).

        Returns
        -------
        The fitted transform (``self``).
        """
        self._fit_and_store(adata, layer, feature_names, return_output=False)
        return self

    def fit_transform(
        self,
        adata: AnnData | Matrix,
        layer: str | None = None,
        feature_names: Sequence[str] | None = None,
    ) -> np.ndarray:
        """Fit the transform and return the transformed training cells.

        Parameters
        ----------
        adata
            As in :meth:`fit`.
        layer
            As in :meth:`fit`.
        feature_names
            As in :meth:`fit`.

        Returns
        -------
        ``n_cells x n_output_`` float32 array; equal (to floating-point precision) to
        ``transform(adata)``.
        """
        return self._fit_and_store(adata, layer, feature_names)

    def transform(
        self,
        data: AnnData | Matrix,
        layer: str | None = None,
        allow_missing: bool = False,
    ) -> np.ndarray:
        """Apply the fitted transform to new (or the training, or perturbed) cells.

        Parameters
        ----------
        data
            An AnnData whose features are matched to :attr:`feature_names_` by name (any
            order; extra features are ignored), or a matrix whose columns already follow
            :attr:`feature_names_`.
        layer
            Layer of an AnnData to read. ``None`` (default) reads the layer used at fit
            time; ``"X"`` forces ``X``.
        allow_missing
            Fill fitted features absent from an AnnData with zeros (with a warning)
            instead of raising.

        Returns
        -------
        ``n_cells x n_output_`` float32 array.
        """
        X = self.prepare(data, layer=layer, allow_missing=allow_missing)
        n = X.shape[0]
        if n <= self.chunk_size:
            return self._transform(X).astype(np.float32, copy=False)
        out = np.empty((n, self.n_output_), dtype=np.float32)
        for start in range(0, n, self.chunk_size):
            stop = min(start + self.chunk_size, n)
            out[start:stop] = self._transform(X[start:stop])
        return out

    def prepare(
        self,
        data: AnnData | Matrix,
        layer: str | None = None,
        allow_missing: bool = False,
    ) -> Matrix:
        """Return the float64 input matrix in the fitted feature order (see :meth:`transform`).

        Parameters
        ----------
        data
            AnnData or matrix, as in :meth:`transform`.
        layer
            As in :meth:`transform`.
        allow_missing
            As in :meth:`transform`.

        Returns
        -------
        CSR matrix or ndarray, ``n_cells x len(feature_names_)``.
        """
        self._check_fitted()
        if isinstance(data, AnnData):
            layer = self.layer_ if layer is None else layer
        X = aligned_matrix(data, self.feature_names_, layer=layer, allow_missing=allow_missing)
        return as_float_matrix(X)

    # ----------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain-python/numpy description of the fitted transform.

        Returns
        -------
        ``{"class": name, "params": {...}, "state": {...}}``; the state holds only
        numpy arrays, numbers, strings and ``None``. Restore with :meth:`from_dict`.
        """
        state = {k: v for k, v in vars(self).items() if k.endswith("_")}
        return {"class": type(self).__name__, "params": self.get_params(), "state": state}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> FittedTransform:
        """Rebuild a transform written by :meth:`to_dict`.

        Parameters
        ----------
        d
            The dictionary.

        Returns
        -------
        The transform, of the class named in ``d["class"]``.
        """
        cls = _REGISTRY.get(d["class"])
        if cls is None:
            raise ValueError(f"unknown transform class {d['class']!r}")
        obj = cls(**d["params"])
        obj.__dict__.update(d["state"])
        return obj

    # ----------------------------------------------------------------- internals
    @keep_torch_threads()  # scanpy's numba kernels reset torch's thread count
    def _fit_and_store(
        self,
        adata: AnnData | Matrix,
        layer: str | None,
        feature_names: Sequence[str] | None,
        return_output: bool = True,
    ) -> np.ndarray | None:
        if isinstance(adata, AnnData):
            X = get_matrix(adata, layer)
            names = adata.var_names
            obs = adata.obs
        else:
            X = adata
            names = feature_names if feature_names is not None else range(X.shape[1])
            obs = None
            layer = None
        names = np.asarray(names).astype(str)
        if len(names) != X.shape[1]:
            raise ValueError(f"{len(names)} feature names for {X.shape[1]} columns")
        if len(pd.Index(names).unique()) != len(names):
            raise ValueError("feature names must be unique")
        X = as_float_matrix(X)
        out = self._fit(X, obs)
        n_output = X.shape[1] if out is None else out.shape[1]
        # set last so that a failed fit leaves the object unfitted
        self.layer_ = None if layer == "X" else layer
        self.feature_names_ = names
        self.n_output_ = int(n_output)
        if out is None and return_output:
            out = self._transform(X)
        return None if out is None else np.asarray(out, dtype=np.float32)

    def _fit(self, X: Matrix, obs: pd.DataFrame | None) -> np.ndarray | None:  # pragma: no cover
        """Fit on ``X``; return the training output, or ``None``.

        ``None`` means one output column per feature, computed by ``_transform`` only
        when the caller asks for the training output.
        """
        raise NotImplementedError

    def _transform(self, X: Matrix) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError


def _size_factor_target(X: Matrix, target_sum: float | None) -> float:
    if target_sum is not None:
        return float(target_sum)
    lib = row_sums(X)
    lib = lib[lib > 0]
    return float(np.median(lib)) if lib.size else 1.0


def _clip(X: np.ndarray, max_value: float | None) -> np.ndarray:
    if max_value is not None:
        np.clip(X, -max_value, max_value, out=X)
    return X


def _fit_scale(D: np.ndarray, max_value: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`scanpy.pp.scale` of dense ``D``: ``(scaled, mean, std)`` (float64 statistics)."""
    mean, std = _scale_statistics(D)
    return _apply_scale(D, mean, std, max_value), mean, std


_SCALE_CHUNK = 2048  # rows densified at a time by FeatureScaler.transform


def _scale_statistics(X: Matrix) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and ``ddof=1`` standard deviation, as :func:`scanpy.pp.scale`.

    Zero deviations are replaced by 1; sparse ``X`` is never densified.
    """
    n = X.shape[0]
    if sp.issparse(X):
        mean = np.asarray(X.mean(axis=0), dtype=np.float64).ravel()
        mean_sq = np.asarray(X.multiply(X).mean(axis=0), dtype=np.float64).ravel()
        var = np.maximum(mean_sq - mean**2, 0.0)
    else:
        D = np.asarray(X, dtype=np.float64)
        mean = D.mean(axis=0)
        var = D.var(axis=0)
    if n > 1:
        var *= n / (n - 1)
    std = np.sqrt(var)
    std[std == 0] = 1.0
    return mean, std


def _apply_scale(
    D: np.ndarray, mean: np.ndarray, std: np.ndarray, max_value: float | None
) -> np.ndarray:
    """Replay :func:`_fit_scale` on new rows with the stored statistics."""
    return _clip((D - mean) / std, max_value)


def _densify(X: Matrix) -> np.ndarray:
    return X.toarray() if sp.issparse(X) else np.array(X, dtype=np.float64)


def _clamp_n_comps(n_comps: int, shape: tuple[int, int], name: str) -> int:
    limit = min(shape) - 1
    if n_comps > limit:
        warnings.warn(
            f"{name}: n_comps={n_comps} reduced to {limit} (data shape {shape})",
            UserWarning,
            stacklevel=4,
        )
        return max(limit, 1)
    return n_comps


class LogNormPCA(FittedTransform):
    """Library-size normalisation, log1p, HVG selection, scaling and PCA (RNA).

    Fitting runs scanpy's pipeline (:func:`scanpy.pp.normalize_total`,
    :func:`scanpy.pp.log1p`, :func:`scanpy.pp.highly_variable_genes`,
    :func:`scanpy.pp.scale`, :func:`scanpy.pp.pca`) on raw counts and stores everything
    needed to replay it on new cells.

    Parameters
    ----------
    n_comps
        Number of principal components.
    target_sum
        Counts per cell after normalisation; ``None`` uses the median library size of
        the training cells (stored in ``target_sum_``).
    n_top_genes
        Number of highly variable genes; ``None`` (or at least the number of genes)
        keeps all genes.
    hvg_flavor
        ``flavor`` of :func:`scanpy.pp.highly_variable_genes`; ``"seurat_v3"`` is run on
        the counts, the others on the log-normalised data.
    batch_key
        Obs column passed to HVG selection as ``batch_key`` (AnnData input only).
    scale
        Scale each gene to zero mean and unit variance (densifies the
        ``cells x n_top_genes`` matrix). If ``False`` PCA runs on the sparse log data.
    max_value
        Clip scaled values to ``[-max_value, max_value]`` (as :func:`scanpy.pp.scale`).
    random_state
        Seed of the PCA solver.

    Attributes
    ----------
    target_sum_
        Size-factor target used.
    hvg_names_, hvg_index_
        Selected genes and their positions in ``feature_names_``.
    mean_, std_
        Scaling statistics (``var['mean']``, ``var['std']`` of :func:`scanpy.pp.scale`).
    pca_mean_
        Centring vector of the PCA.
    components_
        ``n_comps x n_hvg`` loadings (``varm['PCs'].T``).
    variance_ratio_
        Explained variance ratio of each component.
    """

    def __init__(
        self,
        n_comps: int = 50,
        target_sum: float | None = 1e4,
        n_top_genes: int | None = 2000,
        hvg_flavor: Literal["seurat", "seurat_v3", "cell_ranger"] = "seurat",
        batch_key: str | None = None,
        scale: bool = True,
        max_value: float | None = 10.0,
        random_state: int = 0,
    ) -> None:
        self.n_comps = n_comps
        self.target_sum = target_sum
        self.n_top_genes = n_top_genes
        self.hvg_flavor = hvg_flavor
        self.batch_key = batch_key
        self.scale = scale
        self.max_value = max_value
        self.random_state = random_state

    def _fit(self, X: Matrix, obs: pd.DataFrame | None) -> np.ndarray:
        check_counts(X, what="LogNormPCA input", fractional="warn")
        X = to_csr(X)
        n_genes = X.shape[1]
        target = _size_factor_target(X, self.target_sum)
        obs_df = pd.DataFrame(index=pd.RangeIndex(X.shape[0]).astype(str))
        if self.batch_key is not None:
            if obs is None or self.batch_key not in obs:
                raise KeyError(f"batch_key {self.batch_key!r} not found in obs")
            obs_df[self.batch_key] = np.asarray(obs[self.batch_key].astype(str))
        tmp = AnnData(X.copy(), obs=obs_df)
        sc.pp.normalize_total(tmp, target_sum=target)
        sc.pp.log1p(tmp)

        if self.n_top_genes is not None and self.n_top_genes < n_genes:
            # seurat_v3 reads the counts, the other flavours the log-normalised data
            src = AnnData(X, obs=obs_df) if self.hvg_flavor == "seurat_v3" else tmp
            hvg = sc.pp.highly_variable_genes(
                src,
                flavor=self.hvg_flavor,
                n_top_genes=self.n_top_genes,
                batch_key=self.batch_key,
                inplace=False,
            )
            hvg_index = np.flatnonzero(np.asarray(hvg["highly_variable"], dtype=bool))
        else:
            hvg_index = np.arange(n_genes)

        Xh = tmp.X[:, hvg_index]
        if self.scale:
            M, mean, std = _fit_scale(Xh.toarray(), self.max_value)
        else:
            M = sp.csr_matrix(Xh)
            mean = std = None

        n_comps = _clamp_n_comps(self.n_comps, M.shape, "LogNormPCA")
        pca_ad = AnnData(M)
        sc.pp.pca(
            pca_ad,
            n_comps=n_comps,
            svd_solver=None if sp.issparse(M) else "arpack",
            random_state=self.random_state,
            dtype="float64",
        )
        self.target_sum_ = target
        self.hvg_index_ = hvg_index
        self.mean_ = mean
        self.std_ = std
        self.pca_mean_ = np.asarray(M.mean(axis=0), dtype=np.float64).ravel()
        self.components_ = np.asarray(pca_ad.varm["PCs"], dtype=np.float64).T.copy()
        self.variance_ratio_ = np.asarray(pca_ad.uns["pca"]["variance_ratio"])
        return np.asarray(pca_ad.obsm["X_pca"])

    @property
    def hvg_names_(self) -> np.ndarray:
        """Names of the selected (highly variable) genes."""
        self._check_fitted()
        return self.feature_names_[self.hvg_index_]

    def log_normalize(
        self, data: AnnData | Matrix, layer: str | None = None, allow_missing: bool = False
    ) -> sp.csr_matrix:
        """Normalised, log-transformed counts of all fitted genes (sparse).

        Parameters
        ----------
        data, layer, allow_missing
            As in :meth:`transform`.

        Returns
        -------
        CSR matrix ``n_cells x len(feature_names_)``.
        """
        return self._lognorm(self.prepare(data, layer, allow_missing))

    def scaled(
        self, data: AnnData | Matrix, layer: str | None = None, allow_missing: bool = False
    ) -> Matrix:
        """The PCA input: scaled (dense) or log-normalised (sparse) HVG matrix.

        Parameters
        ----------
        data, layer, allow_missing
            As in :meth:`transform`.

        Returns
        -------
        ``n_cells x n_hvg`` matrix.
        """
        return self._pca_input(self.prepare(data, layer, allow_missing))

    def _lognorm(self, X: Matrix) -> Matrix:
        return log_normalize_rows(to_csr(X), self.target_sum_)

    def _pca_input(self, X: Matrix) -> Matrix:
        Xh = self._lognorm(X)[:, self.hvg_index_]
        if not self.scale:
            return Xh
        return _apply_scale(Xh.toarray(), self.mean_, self.std_, self.max_value)

    def _transform(self, X: Matrix) -> np.ndarray:
        M = self._pca_input(X)
        if sp.issparse(M):
            return np.asarray(M @ self.components_.T) - self.pca_mean_ @ self.components_.T
        return (M - self.pca_mean_) @ self.components_.T


class TfidfLSI(FittedTransform):
    """TF-IDF (as :func:`muon.atac.pp.tfidf`) followed by LSI (truncated SVD) for peaks.

    TF is ``counts / total counts of the cell * scale_factor`` (log1p'd when
    ``log_tf``); IDF is ``n_cells / total counts of the peak`` over the training cells
    (log1p'd when ``log_idf``), exactly as muon computes it, and is stored in ``idf_``
    so new cells are weighted with the training IDF. The SVD is
    :class:`sklearn.decomposition.TruncatedSVD` (ARPACK, seeded) of the sparse TF-IDF
    matrix; cell embeddings are the left singular vectors ``U`` (as
    :func:`muon.atac.tl.lsi`), optionally standardised per component. Everything stays
    sparse up to the ``cells x n_comps`` output.

    Parameters
    ----------
    n_comps
        Number of SVD components computed.
    drop_component
        ``"first"`` drops the first component (usually sequencing depth, as in Signac),
        ``"depth"`` drops the component whose cell scores correlate most (in absolute
        value) with log total counts, ``None`` keeps all. The output has
        ``n_comps - 1`` columns unless ``None``.
    scale_embeddings
        Standardise each kept component to zero mean, unit variance over the training
        cells (muon's default).
    log_tf, log_idf, scale_factor
        As in :func:`muon.atac.pp.tfidf`.
    random_state
        Seed of the SVD's starting vector.

    Attributes
    ----------
    idf_
        IDF per peak (0 for peaks with no counts in the training cells; muon gives
        ``inf``, which only matters for new cells with counts there).
    components_
        ``n_comps x n_peaks`` right singular vectors (muon's ``varm['LSI'].T``).
    singular_values_
        Singular values.
    depth_correlation_
        Pearson correlation of each component with log1p total counts.
    kept_
        Indices of the components in the output.
    embedding_mean_, embedding_std_
        Standardisation of the kept components (when ``scale_embeddings``).
    """

    def __init__(
        self,
        n_comps: int = 50,
        drop_component: Literal["first", "depth"] | None = "first",
        scale_embeddings: bool = True,
        log_tf: bool = True,
        log_idf: bool = True,
        scale_factor: float = 1e4,
        random_state: int = 0,
    ) -> None:
        self.n_comps = n_comps
        self.drop_component = drop_component
        self.scale_embeddings = scale_embeddings
        self.log_tf = log_tf
        self.log_idf = log_idf
        self.scale_factor = scale_factor
        self.random_state = random_state

    def _fit(self, X: Matrix, obs: pd.DataFrame | None) -> np.ndarray:
        from sklearn.decomposition import TruncatedSVD

        if self.drop_component not in ("first", "depth", None):
            raise ValueError(f"unknown drop_component {self.drop_component!r}")
        check_counts(X, what="TfidfLSI input", fractional="warn")
        X = to_csr(X)
        colsum = np.asarray(X.sum(axis=0), dtype=np.float64).ravel()
        idf = np.zeros_like(colsum)
        nz = colsum > 0
        idf[nz] = X.shape[0] / colsum[nz]
        if self.log_idf:
            idf = np.log1p(idf)
        self.idf_ = idf
        T = self._tfidf(X)

        n_comps = _clamp_n_comps(self.n_comps, T.shape, "TfidfLSI")
        svd = TruncatedSVD(n_components=n_comps, algorithm="arpack", random_state=self.random_state)
        US = svd.fit_transform(T)
        svals = np.asarray(svd.singular_values_, dtype=np.float64)
        svals = np.where(svals > 0, svals, 1.0)
        U = US / svals
        depth = np.log1p(row_sums(X))
        corr = np.array([_pearson(U[:, j], depth) for j in range(U.shape[1])])
        if self.drop_component == "first":
            drop = 0
        elif self.drop_component == "depth":
            drop = int(np.nanargmax(np.abs(np.nan_to_num(corr))))
        else:
            drop = None
        kept = np.array([j for j in range(U.shape[1]) if j != drop], dtype=np.int64)
        if kept.size == 0:
            raise ValueError("no LSI component left after dropping one; increase n_comps")
        self.components_ = np.asarray(svd.components_, dtype=np.float64)
        self.singular_values_ = svals
        self.depth_correlation_ = corr
        self.kept_ = kept
        Uk = U[:, kept]
        if self.scale_embeddings:
            self.embedding_mean_ = Uk.mean(axis=0)
            std = Uk.std(axis=0)
            self.embedding_std_ = np.where(std > 0, std, 1.0)
        else:
            self.embedding_mean_ = self.embedding_std_ = None
        return self._embed(T)

    def tfidf(
        self, data: AnnData | Matrix, layer: str | None = None, allow_missing: bool = False
    ) -> sp.csr_matrix:
        """TF-IDF matrix of (new) cells with the training IDF; sparse.

        Parameters
        ----------
        data, layer, allow_missing
            As in :meth:`transform`.

        Returns
        -------
        CSR matrix ``n_cells x n_peaks``.
        """
        return self._tfidf(self.prepare(data, layer, allow_missing))

    def _tfidf(self, X: Matrix) -> sp.csr_matrix:
        X = to_csr(X)
        lib = row_sums(X)
        inv = np.zeros_like(lib)
        inv[lib > 0] = 1.0 / lib[lib > 0]
        factor = self.scale_factor if self.scale_factor not in (None, 0, 1) else 1.0
        tf = scale_rows(X, inv * factor)
        if self.log_tf:
            tf = tf.log1p()
        return sp.csr_matrix(tf @ sp.diags(self.idf_))

    def _embed(self, T: sp.csr_matrix) -> np.ndarray:
        U = np.asarray(T @ self.components_[self.kept_].T) / self.singular_values_[self.kept_]
        if self.scale_embeddings:
            U = (U - self.embedding_mean_) / self.embedding_std_
        return U

    def _transform(self, X: Matrix) -> np.ndarray:
        return self._embed(self._tfidf(X))


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else 0.0


class FeatureScaler(FittedTransform):
    """Per-feature standardisation with stored statistics (protein, MINNET inputs).

    Optional steps, in order: library-size normalisation (``target_sum``), ``log1p``
    or CLR (as :func:`muon.prot.pp.clr`, flavour ``"seurat"``), then zero mean / unit
    variance per feature (statistics as :func:`scanpy.pp.scale`) clipped at
    ``max_value``. The output is dense ``cells x features``.

    Parameters
    ----------
    max_value
        Clip scaled values to ``[-max_value, max_value]``; ``None`` disables clipping.
    log
        Apply ``log1p`` before scaling (after ``target_sum`` normalisation if given).
    target_sum
        If given, normalise each cell's total to this value first.
    clr
        ``"feature"``: CLR across cells per feature (muon's ``axis=0``, the Seurat
        default; the per-feature geometric means are stored). ``"cell"``: CLR per cell
        (``axis=1``). ``None``: no CLR. Not combinable with ``log``.
    scale
        Standardise features. ``False`` returns the normalised/log/CLR values.

    Attributes
    ----------
    clr_geometric_mean_
        ``exp(mean over training cells of log1p(x))`` per feature (``clr="feature"``).
    mean_, std_
        Scaling statistics (``std`` with ``ddof=1``, zeros replaced by 1).
    """

    def __init__(
        self,
        max_value: float | None = 10.0,
        log: bool = False,
        target_sum: float | None = None,
        clr: Literal["feature", "cell"] | None = None,
        scale: bool = True,
    ) -> None:
        self.max_value = max_value
        self.log = log
        self.target_sum = target_sum
        self.clr = clr
        self.scale = scale

    def _pre(self, X: Matrix, fit: bool) -> Matrix:
        if self.target_sum is not None:
            X = normalize_rows(X, float(self.target_sum))
        if self.log:
            X = log1p(X)
        if self.clr == "feature":
            if fit:
                logmean = np.asarray(log1p(X).mean(axis=0), dtype=np.float64).ravel()
                self.clr_geometric_mean_ = np.exp(logmean)
            X = log1p(scale_cols(X, 1.0 / self.clr_geometric_mean_))
        elif self.clr == "cell":
            logmean = np.asarray(log1p(X).mean(axis=1), dtype=np.float64).ravel()
            X = log1p(scale_rows(X, 1.0 / np.exp(logmean)))
        return X

    def _fit(self, X: Matrix, obs: pd.DataFrame | None) -> np.ndarray:
        if self.clr not in ("feature", "cell", None):
            raise ValueError(f"unknown clr {self.clr!r}")
        if self.clr is not None and self.log:
            raise ValueError("clr already log-transforms; use either log=True or clr")
        P = self._pre(X, fit=True)
        self.mean_ = self.std_ = None
        if self.scale:
            # the statistics of scanpy.pp.scale, from sparse input without densifying
            self.mean_, self.std_ = _scale_statistics(P)
        return None

    def _transform(self, X: Matrix) -> np.ndarray:
        # dense float32 output, built in row chunks so only one chunk is ever float64
        out = np.empty(X.shape, dtype=np.float32)
        for start in range(0, X.shape[0], _SCALE_CHUNK):
            D = _densify(self._pre(X[start : start + _SCALE_CHUNK], fit=False))
            if self.scale:
                D = _apply_scale(D, self.mean_, self.std_, self.max_value)
            out[start : start + _SCALE_CHUNK] = D
        return out


# --------------------------------------------------------------------- functional API
def normalize_log(
    adata: AnnData,
    target_sum: float | None = 1e4,
    layer: str | None = None,
    copy: bool = True,
) -> AnnData | None:
    """Library-size normalisation and ``log1p`` with scanpy, on a copy by default.

    Runs :func:`scanpy.pp.normalize_total` and :func:`scanpy.pp.log1p`.

    Parameters
    ----------
    adata
        Cells x genes raw counts.
    target_sum
        Counts per cell after normalisation; ``None``: median library size.
    layer
        Layer to normalise instead of ``X``.
    copy
        Return a normalised copy (default) instead of modifying ``adata`` in place.

    Returns
    -------
    The normalised copy if ``copy``, else ``None`` (``adata`` is modified).
    """
    if copy:
        adata = adata.copy()
    X = get_matrix(adata, layer)
    if not np.issubdtype(X.dtype, np.floating):
        X = X.astype(np.float32)
        if layer is None or layer == "X":
            adata.X = X
        else:
            adata.layers[layer] = X
    target = _size_factor_target(X, target_sum)
    lay = None if layer == "X" else layer
    sc.pp.normalize_total(adata, target_sum=target, layer=lay)
    sc.pp.log1p(adata, layer=lay)
    return adata if copy else None


def highly_variable(
    adata: AnnData,
    n_top_genes: int = 2000,
    flavor: Literal["seurat_v3", "seurat", "cell_ranger"] = "seurat_v3",
    layer: str | None = None,
    batch_key: str | None = None,
    target_sum: float | None = 1e4,
) -> pd.DataFrame:
    """Select highly variable genes from raw counts, without modifying ``adata``.

    ``"seurat_v3"`` runs :func:`scanpy.pp.highly_variable_genes` on the counts
    (needs scikit-misc); ``"seurat"`` and ``"cell_ranger"`` on a log-normalised copy.

    Parameters
    ----------
    adata
        Cells x genes raw counts (in ``X`` or ``layer``).
    n_top_genes
        Number of genes to select (capped at the number of genes).
    flavor
        HVG method.
    layer
        Layer holding the counts.
    batch_key
        Obs column for batch-aware selection.
    target_sum
        Normalisation target for the log-normalised flavours.

    Returns
    -------
    DataFrame indexed by ``adata.var_names`` with scanpy's columns, including the
    boolean ``highly_variable``.
    """
    X = get_matrix(adata, layer)
    obs = pd.DataFrame(index=adata.obs_names.copy())
    if batch_key is not None:
        obs[batch_key] = adata.obs[batch_key].astype(str).to_numpy()
    tmp = AnnData(as_float_matrix(X, np.float64), obs=obs)
    tmp.var_names = adata.var_names.copy()
    n_top = min(n_top_genes, adata.n_vars)
    if flavor != "seurat_v3":
        sc.pp.normalize_total(tmp, target_sum=_size_factor_target(tmp.X, target_sum))
        sc.pp.log1p(tmp)
    df = sc.pp.highly_variable_genes(
        tmp, flavor=flavor, n_top_genes=n_top, batch_key=batch_key, inplace=False
    )
    df.index = adata.var_names.copy()
    return df


def tfidf(
    adata: AnnData,
    layer: str | None = None,
    log_tf: bool = True,
    log_idf: bool = True,
    scale_factor: float = 1e4,
) -> sp.csr_matrix:
    """TF-IDF of a peak-count AnnData by :func:`muon.atac.pp.tfidf`, without modifying it.

    Parameters
    ----------
    adata
        Cells x peaks counts.
    layer
        Layer holding the counts.
    log_tf, log_idf, scale_factor
        As in :func:`muon.atac.pp.tfidf`.

    Returns
    -------
    Sparse CSR TF-IDF matrix (use :class:`TfidfLSI` to keep the IDF for new cells).
    """
    from muon import atac as mu_atac

    X = to_csr(get_matrix(adata, layer), np.float32)
    res = mu_atac.pp.tfidf(
        AnnData(X), log_tf=log_tf, log_idf=log_idf, scale_factor=scale_factor, inplace=False
    )
    return sp.csr_matrix(res)


def pca(
    adata: AnnData, n_comps: int = 50, layer: str | None = None, **kwargs: Any
) -> tuple[np.ndarray, LogNormPCA]:
    """Fit :class:`LogNormPCA` on raw counts and return the embedding and the transform.

    Parameters
    ----------
    adata
        Cells x genes raw counts (not modified).
    n_comps
        Number of components.
    layer
        Layer holding the counts.
    **kwargs
        Further :class:`LogNormPCA` parameters.

    Returns
    -------
    ``(embedding, transform)``: the ``n_cells x n_comps`` float32 embedding and the
    fitted transform (use ``transform.transform(new_cells)`` for new cells).
    """
    tr = LogNormPCA(n_comps=n_comps, **kwargs)
    return tr.fit_transform(adata, layer=layer), tr


def tfidf_lsi(
    adata: AnnData, n_comps: int = 50, layer: str | None = None, **kwargs: Any
) -> tuple[np.ndarray, TfidfLSI]:
    """Fit :class:`TfidfLSI` on peak counts and return the embedding and the transform.

    Parameters
    ----------
    adata
        Cells x peaks counts (not modified).
    n_comps
        Number of SVD components (one is dropped by default, see :class:`TfidfLSI`).
    layer
        Layer holding the counts.
    **kwargs
        Further :class:`TfidfLSI` parameters.

    Returns
    -------
    ``(embedding, transform)``.
    """
    tr = TfidfLSI(n_comps=n_comps, **kwargs)
    return tr.fit_transform(adata, layer=layer), tr
