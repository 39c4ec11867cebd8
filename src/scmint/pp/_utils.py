"""Small helpers shared by the preprocessing modules."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

from ..data._validation import align_matrix, get_matrix

Matrix = np.ndarray | sp.spmatrix | sp.sparray


def as_float_matrix(X: Any, dtype: type = np.float64) -> Matrix:
    """Return ``X`` as a CSR matrix or a 2-d ndarray of ``dtype`` (copying only if needed)."""
    if sp.issparse(X):
        X = sp.csr_matrix(X)
        if X.dtype != dtype:
            X = X.astype(dtype)
        return X
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"expected a 2-d matrix, got an array of shape {X.shape}")
    return X.astype(dtype, copy=False)


def to_csr(X: Matrix, dtype: type = np.float64) -> sp.csr_matrix:
    """Return ``X`` as a CSR matrix of ``dtype``."""
    if sp.issparse(X):
        return as_float_matrix(X, dtype)
    return sp.csr_matrix(np.asarray(X, dtype=dtype))


def row_sums(X: Matrix) -> np.ndarray:
    """Row sums of a dense or sparse matrix as a flat float64 array."""
    return np.asarray(X.sum(axis=1), dtype=np.float64).ravel()


def scale_rows(X: Matrix, factors: np.ndarray) -> Matrix:
    """Multiply each row of ``X`` by ``factors`` (sparse stays sparse)."""
    if sp.issparse(X):
        return sp.csr_matrix(sp.diags(factors) @ X)
    return X * factors[:, None]


def scale_cols(X: Matrix, factors: np.ndarray) -> Matrix:
    """Multiply each column of ``X`` by ``factors`` (sparse stays sparse)."""
    if sp.issparse(X):
        return sp.csr_matrix(X @ sp.diags(factors))
    return X * factors[None, :]


def log1p(X: Matrix) -> Matrix:
    """``log(1 + X)`` keeping sparsity."""
    if sp.issparse(X):
        return X.log1p()
    return np.log1p(X)


def log_normalize_rows(X: Matrix, target_sum: float = 1e4, copy: bool = True) -> Matrix:
    """``log1p(x / rowsum * target_sum)`` per row, keeping sparsity (all-zero rows stay 0).

    The one library-size log-normalisation of scmint's transforms, metrics and tools
    (:func:`scanpy.pp.normalize_total` followed by :func:`scanpy.pp.log1p`, on a matrix).
    With ``copy=False`` a dense floating-point ``X`` is transformed in place (no
    temporaries, for memory-bound chunked loops) and returned.
    """
    if not copy and isinstance(X, np.ndarray) and np.issubdtype(X.dtype, np.floating):
        lib = X.sum(axis=1, keepdims=True)
        lib[lib == 0] = 1.0
        X *= target_sum / lib
        return np.log1p(X, out=X)
    return log1p(normalize_rows(X, target_sum))


def normalize_rows(X: Matrix, target_sum: float) -> Matrix:
    """Each row scaled to sum to ``target_sum`` (all-zero rows stay zero)."""
    lib = row_sums(X)
    lib[lib == 0] = 1.0
    return scale_rows(X, target_sum / lib)


def aligned_matrix(
    data: AnnData | Matrix,
    feature_names: Sequence[str],
    *,
    var_names: Sequence[str] | None = None,
    layer: str | None = None,
    allow_missing: bool = False,
) -> Matrix:
    """Return a matrix whose columns follow ``feature_names`` (for fitted transforms).

    The matrix counterpart of :func:`scmint.data.align_features` (which returns an
    AnnData); both match names with :func:`scmint.data._validation.align_matrix`.

    Parameters
    ----------
    data
        An AnnData (columns matched by ``var_names``) or a matrix. A matrix is matched
        by the names given in ``var_names``; without them it must already have
        ``len(feature_names)`` columns in that order.
    feature_names
        The reference feature order (e.g. the features a transform was fitted on).
    var_names
        Column names of a matrix ``data``; ignored for AnnData.
    layer
        Layer of an AnnData to read; ``None`` reads ``X``.
    allow_missing
        If ``False`` (default), reference features absent from the input raise an error.
        If ``True`` they are filled with zeros (with a warning saying how many).
        Input features that are not in the reference are always dropped.

    Returns
    -------
    The aligned matrix (sparse stays sparse), ``n_cells x len(feature_names)``.
    """
    if isinstance(data, AnnData):
        X, names = get_matrix(data, layer), data.var_names
    else:
        X = data if sp.issparse(data) else np.asarray(data)
        if X.ndim != 2:
            raise ValueError(f"expected a 2-d matrix, got an array of shape {X.shape}")
        if var_names is None:
            if X.shape[1] != len(feature_names):
                raise ValueError(
                    f"the matrix has {X.shape[1]} columns but {len(feature_names)} features "
                    "were expected (in the fitted order); pass an AnnData to match features "
                    "by name"
                )
            return X
        names = var_names
    return align_matrix(
        X,
        names,
        feature_names,
        modality="input",
        align=allow_missing,
        hint="pass allow_missing=True",
    )
