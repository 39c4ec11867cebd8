"""Model-based smoothing: average each cell with its nearest neighbours in an embedding.

Written for any model's embedding (a cells x d array or an ``obsm`` key), following the
smoothing step of MinNet's downstream analysis: a kNN graph in the co-embedding,
binarised, with the longest edges (beyond a percentile of all kNN distances) dropped.
"""

from __future__ import annotations

from typing import Literal, TypeVar

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

from ..data._validation import get_matrix
from ..pp._neighbors import knn_indices
from ..pp._utils import Matrix

X_T = TypeVar("X_T", np.ndarray, sp.spmatrix, sp.sparray, AnnData)


def _resolve_embedding(embedding: np.ndarray | str, adata: AnnData | None, n: int) -> np.ndarray:
    """The embedding as a dense ``n x d`` array (an ``obsm`` key needs ``adata``)."""
    if isinstance(embedding, str):
        if adata is None:
            raise TypeError("`embedding` may be an obsm key only when the data is an AnnData")
        if embedding not in adata.obsm:
            raise KeyError(
                f"obsm[{embedding!r}] not found; available keys: {list(adata.obsm.keys())}"
            )
        embedding = adata.obsm[embedding]
    if sp.issparse(embedding):
        embedding = embedding.toarray()
    z = np.asarray(embedding, dtype=np.float32)
    if z.ndim != 2:
        raise ValueError(f"embedding must be a cells x dimensions matrix, got shape {z.shape}")
    if z.shape[0] != n:
        raise ValueError(f"embedding has {z.shape[0]} rows for {n} cells")
    if not np.all(np.isfinite(z)):
        raise ValueError("embedding contains NaN or infinite values")
    return z


def smoothing_operator(
    embedding: Matrix,
    n_neighbors: int = 15,
    percentile: float | None = 95.0,
    symmetric: bool = False,
    aggregate: Literal["mean", "sum"] = "mean",
    metric: str = "euclidean",
    method: Literal["auto", "exact", "pynndescent"] = "auto",
    random_state: int | None = 0,
    dtype: type = np.float32,
) -> sp.csr_matrix:
    """Sparse cells x cells operator ``S`` such that ``S @ X`` smooths ``X`` over neighbours.

    Each cell is linked to itself and to those of its ``n_neighbors`` nearest cells in
    ``embedding`` (:func:`scmint.pp.knn_indices`) whose distance is at most the
    ``percentile``-th percentile of all ``n_cells x n_neighbors`` kNN distances: the
    binarised connectivities of MinNet's smoothing, with the longest (least reliable)
    edges dropped. Memory is linear in the number of cells.

    Parameters
    ----------
    embedding
        Cells x dimensions, e.g. a model's latent representation.
    n_neighbors
        Neighbours per cell, the cell itself excluded.
    percentile
        Keep neighbour edges with distance ``<=`` this percentile (0-100) of all kNN
        distances; ``None`` (or 100) keeps every edge.
    symmetric
        If True, also link ``i`` to ``j`` whenever ``j`` kept ``i`` (the union graph, as
        binarised scanpy connectivities); a cell may then have more than
        ``n_neighbors`` neighbours. Default: directed kNN.
    aggregate
        ``"mean"``: rows are normalised to sum to 1 (each cell becomes the mean of itself
        and its kept neighbours); ``"sum"``: binary rows (the sum, as in the MinNet code).
    metric, method, random_state
        See :func:`scmint.pp.knn_indices`.
    dtype
        Data type of the operator.

    Returns
    -------
    CSR matrix ``n_cells x n_cells`` with the diagonal set; with ``aggregate="mean"``
    every row sums to 1.
    """
    z = np.asarray(embedding.toarray() if sp.issparse(embedding) else embedding)
    n = z.shape[0]
    if aggregate not in ("mean", "sum"):
        raise ValueError(f"aggregate must be 'mean' or 'sum', got {aggregate!r}")
    if percentile is not None and not 0 <= percentile <= 100:
        raise ValueError(f"percentile must lie in [0, 100], got {percentile}")
    idx, dist = knn_indices(z, n_neighbors, metric=metric, method=method, random_state=random_state)
    keep = np.ones(idx.shape, dtype=bool)
    if percentile is not None and percentile < 100:
        threshold = np.percentile(dist, percentile)
        keep = dist <= threshold
    rows = np.repeat(np.arange(n), n_neighbors)[keep.ravel()]
    cols = idx.ravel()[keep.ravel()]
    A = sp.csr_matrix((np.ones(rows.size, dtype=dtype), (rows, cols)), shape=(n, n))
    if symmetric:
        A = A.maximum(A.T).tocsr()
    A = (A + sp.eye(n, dtype=dtype, format="csr")).tocsr()
    A.sum_duplicates()
    A.data[:] = 1
    if aggregate == "mean":
        deg = np.asarray(A.sum(axis=1)).ravel()
        A = sp.csr_matrix(sp.diags((1.0 / deg).astype(dtype)) @ A)
    return A.astype(dtype)


def smooth(
    x: X_T,
    embedding: Matrix | str,
    n_neighbors: int = 15,
    percentile: float | None = 95.0,
    symmetric: bool = False,
    aggregate: Literal["mean", "sum"] = "mean",
    layer: str | None = None,
    metric: str = "euclidean",
    method: Literal["auto", "exact", "pynndescent"] = "auto",
    random_state: int | None = 0,
) -> X_T:
    """Smooth each cell's profile over its nearest neighbours in an embedding.

    Model-based smoothing (MinNet's downstream analysis, written for any model): each
    cell is replaced by the mean (or sum) of itself and of its kept kNN neighbours in
    ``embedding``, see :func:`smoothing_operator`. This fills in dropouts before
    mini-bulk aggregation (:func:`minibulk`) and peak-gene correlation. The operator is
    sparse (``n_cells x (n_neighbors + 1)`` entries at most) and sparse input stays
    sparse.

    Parameters
    ----------
    x
        Cells x features (ndarray or scipy sparse), or an AnnData whose ``X`` (or
        ``layers[layer]``) is smoothed. Not modified.
    embedding
        Cells x dimensions embedding of the same cells in the same order, or, with an
        AnnData ``x``, the key of ``x.obsm`` holding it.
    n_neighbors
        Neighbours per cell (the cell itself excluded).
    percentile
        Drop neighbour edges longer than this percentile of all kNN distances (None or
        100 keeps all).
    symmetric
        Use the union (symmetrised) kNN graph, see :func:`smoothing_operator`.
    aggregate
        ``"mean"`` (default) or ``"sum"`` over the cell and its kept neighbours.
    layer
        With an AnnData ``x``: the layer to smooth instead of ``X``.
    metric, method, random_state
        See :func:`scmint.pp.knn_indices`.

    Returns
    -------
    The smoothed matrix, of the same type as ``x`` (a sparse matrix keeps its format
    and class; float32 for float32/integer input, float64 otherwise). For an AnnData: a
    new AnnData with the smoothed matrix as ``X``, copies of ``obs``, ``var`` and
    ``obsm``, and the parameters in ``uns["smoothing"]``.

    Examples
    --------
    >>> import numpy as np
    >>> from scmint.tl._smoothing import smooth
    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(size=(100, 5))
    >>> x = rng.poisson(2.0, size=(100, 20)).astype(np.float32)
    >>> smooth(x, z, n_neighbors=10).shape
    (100, 20)
    """
    is_adata = isinstance(x, AnnData)
    X = get_matrix(x, layer) if is_adata else x
    if not (sp.issparse(X) or isinstance(X, np.ndarray)):
        X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"x must be a cells x features matrix, got shape {X.shape}")
    z = _resolve_embedding(embedding, x if is_adata else None, X.shape[0])
    dtype = np.float64 if X.dtype == np.float64 else np.float32
    S = smoothing_operator(
        z,
        n_neighbors=n_neighbors,
        percentile=percentile,
        symmetric=symmetric,
        aggregate=aggregate,
        metric=metric,
        method=method,
        random_state=random_state,
        dtype=dtype,
    )
    if sp.issparse(X):
        out = S @ sp.csr_matrix(X, dtype=dtype)
        out = type(X)(out) if not isinstance(out, type(X)) else out
    else:
        out = np.asarray(S @ np.asarray(X, dtype=dtype))
    if not is_adata:
        return out
    res = AnnData(X=out, obs=x.obs.copy(), var=x.var.copy())
    for key, val in x.obsm.items():
        res.obsm[key] = val.copy()
    res.uns["smoothing"] = {
        "n_neighbors": int(n_neighbors),
        "percentile": float(percentile) if percentile is not None else 100.0,
        "symmetric": bool(symmetric),
        "aggregate": aggregate,
        "embedding": embedding if isinstance(embedding, str) else "array",
        "layer": layer if layer is not None else "X",
        "mean_neighbors": float(S.getnnz(axis=1).mean() - 1),
    }
    return res
