"""k-nearest-neighbour graphs with memory linear in the number of cells."""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import scipy.sparse as sp

from ._utils import Matrix

EXACT_MAX_CELLS = 30_000
"""Exact neighbour search up to this many cells: below it scikit-learn is faster than
pynndescent, whose first call in a process compiles for about a minute."""


def knn_indices(
    X: Matrix,
    n_neighbors: int = 15,
    metric: str = "euclidean",
    method: Literal["auto", "exact", "pynndescent"] = "auto",
    random_state: int | None = 0,
    n_jobs: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices and distances of each cell's ``n_neighbors`` nearest other cells.

    Parameters
    ----------
    X
        Cells x dimensions (dense or sparse), e.g. a PCA/LSI embedding.
    n_neighbors
        Neighbours per cell, the cell itself excluded.
    metric
        Distance metric (any supported by scikit-learn / pynndescent).
    method
        ``"exact"``: :class:`sklearn.neighbors.NearestNeighbors` (chunked, memory linear
        in cells); ``"pynndescent"``: approximate :class:`pynndescent.NNDescent`;
        ``"auto"``: exact up to ``EXACT_MAX_CELLS`` cells, approximate above.
    random_state
        Seed of pynndescent.
    n_jobs
        Parallel jobs.

    Returns
    -------
    ``(indices, distances)``, both ``n_cells x n_neighbors``, sorted by distance.
    """
    n = X.shape[0]
    if n_neighbors < 1:
        raise ValueError("n_neighbors must be >= 1")
    if n_neighbors >= n:
        raise ValueError(f"n_neighbors={n_neighbors} needs more than {n} cells")
    if method == "auto":
        method = "exact" if n <= EXACT_MAX_CELLS else "pynndescent"
    k = n_neighbors + 1
    if method == "exact":
        from sklearn.neighbors import NearestNeighbors

        nn = NearestNeighbors(n_neighbors=k, metric=metric, n_jobs=n_jobs).fit(X)
        dist, idx = nn.kneighbors(X)
    elif method == "pynndescent":
        from pynndescent import NNDescent

        index = NNDescent(
            X,
            n_neighbors=k,
            metric=metric,
            random_state=random_state,
            n_jobs=-1 if n_jobs is None else n_jobs,
        )
        idx, dist = index.neighbor_graph
    else:
        raise ValueError(f"unknown method {method!r}")
    # drop the cell itself (or, for exact duplicates found instead, the farthest one)
    self_mask = idx == np.arange(n)[:, None]
    no_self = ~self_mask.any(axis=1)
    self_mask[no_self, -1] = True
    first_self = np.argmax(self_mask, axis=1)
    keep = np.ones_like(self_mask)
    keep[np.arange(n), first_self] = False
    idx = idx[keep].reshape(n, n_neighbors)
    dist = dist[keep].reshape(n, n_neighbors)
    return idx.astype(np.int64), dist.astype(np.float32)


def knn_graph(
    X: Matrix,
    n_neighbors: int = 15,
    metric: str = "euclidean",
    random_state: int | None = 0,
    method: Literal["auto", "exact", "pynndescent"] = "auto",
    connectivity: Literal["umap", "binary"] = "umap",
    n_jobs: int | None = None,
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Nearest-neighbour graph as sparse distances and symmetric connectivities.

    Parameters
    ----------
    X
        Cells x dimensions (dense or sparse).
    n_neighbors
        Neighbours per cell (the cell itself excluded).
    metric
        Distance metric.
    random_state
        Seed (pynndescent and UMAP weights).
    method
        See :func:`knn_indices`.
    connectivity
        ``"umap"``: fuzzy-simplicial-set weights of :func:`umap.umap_.fuzzy_simplicial_set`
        (as :func:`scanpy.pp.neighbors`); ``"binary"``: 1 for every pair where either
        cell is among the other's neighbours.
    n_jobs
        Parallel jobs.

    Returns
    -------
    ``(distances, connectivities)``: CSR ``n_cells x n_cells``; ``distances`` has exactly
    ``n_neighbors`` stored entries per row (zero distances of duplicates kept
    explicitly), ``connectivities`` is symmetric with weights in ``(0, 1]``.
    """
    n = X.shape[0]
    idx, dist = knn_indices(X, n_neighbors, metric, method, random_state, n_jobs)
    indptr = np.arange(0, n * n_neighbors + 1, n_neighbors)
    distances = sp.csr_matrix((dist.ravel(), idx.ravel(), indptr), shape=(n, n))
    distances.has_sorted_indices = False
    if connectivity == "binary":
        A = sp.csr_matrix((np.ones(idx.size, dtype=np.float32), idx.ravel(), indptr), shape=(n, n))
        C = A.maximum(A.T).tocsr()
    elif connectivity == "umap":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from umap.umap_ import fuzzy_simplicial_set

            knn_i = np.hstack([np.arange(n)[:, None], idx])
            knn_d = np.hstack([np.zeros((n, 1), dtype=np.float32), dist])
            res = fuzzy_simplicial_set(
                sp.coo_matrix((n, 1)),
                n_neighbors + 1,
                random_state,
                metric,
                knn_indices=knn_i,
                knn_dists=knn_d,
            )
        C = (res[0] if isinstance(res, tuple) else res).tocsr().astype(np.float32)
        C.eliminate_zeros()
    else:
        raise ValueError(f"unknown connectivity {connectivity!r}")
    return distances, C
