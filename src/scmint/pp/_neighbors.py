"""k-nearest-neighbour graphs with memory linear in the number of cells."""

from __future__ import annotations

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
        ``"umap"``: fuzzy-simplicial-set weights (:func:`umap_connectivities`, the
        weights of :func:`scanpy.pp.neighbors`); ``"binary"``: 1 for every pair where either
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
        C = umap_connectivities(idx, dist)
    else:
        raise ValueError(f"unknown connectivity {connectivity!r}")
    return distances, C


SMOOTH_K_TOLERANCE = 1e-5
MIN_K_DIST_SCALE = 1e-3


def umap_connectivities(indices: np.ndarray, distances: np.ndarray) -> sp.csr_matrix:
    """UMAP's fuzzy-simplicial-set connectivities of a kNN graph (as scanpy computes them).

    The weights of :func:`umap.umap_.fuzzy_simplicial_set` (``local_connectivity=1``,
    ``set_op_mix_ratio=1``), which :func:`scanpy.pp.neighbors` uses, computed with numpy
    over all cells at once: UMAP's numba kernels compile for about 8 s in every new
    process, longer than the whole computation takes here for 100k cells. For each cell
    ``i`` with neighbour distances ``d_ij`` (itself excluded), ``rho_i`` is the distance
    to its nearest neighbour at a positive distance and ``sigma_i`` solves
    ``sum_j exp(-max(d_ij - rho_i, 0) / sigma_i) = log2(k + 1)`` by bisection (64 steps,
    tolerance 1e-5; at least 1e-3 times the mean distance); ``w_ij = exp(-max(d_ij -
    rho_i, 0) / sigma_i)`` and the symmetric ``C = W + W^T - W * W^T``. Equal to umap's
    output up to float32 rounding (tested).

    Parameters
    ----------
    indices, distances
        ``n_cells x k`` neighbour indices and distances, each row sorted by distance,
        the cell itself excluded (:func:`knn_indices`).

    Returns
    -------
    Symmetric CSR ``n_cells x n_cells`` float32 connectivities in ``(0, 1]``.
    """
    n, k = indices.shape
    d = np.asarray(distances, dtype=np.float64)
    target = np.log2(k + 1)
    positive = d > 0
    first = np.argmax(positive, axis=1)
    rho = np.where(positive.any(axis=1), d[np.arange(n), first], 0.0)
    excess = np.maximum(d - rho[:, None], 0.0)
    lo, hi, mid = np.zeros(n), np.full(n, np.inf), np.ones(n)
    active = np.ones(n, dtype=bool)
    for _ in range(64):
        psum = np.exp(-excess[active] / mid[active, None]).sum(axis=1)
        rows = np.flatnonzero(active)
        converged = np.abs(psum - target) < SMOOTH_K_TOLERANCE
        rows, psum = rows[~converged], psum[~converged]
        active[np.flatnonzero(active)[converged]] = False
        if rows.size == 0:
            break
        over = psum > target
        hi[rows[over]] = mid[rows[over]]
        lo[rows[~over]] = mid[rows[~over]]
        bounded = np.isfinite(hi[rows])
        mid[rows] = np.where(bounded, (lo[rows] + hi[rows]) / 2.0, mid[rows] * 2.0)
    # umap's floors: the mean distance of the cell's row (self at 0 included) when it has
    # a positive neighbour distance, else the mean over all rows
    mean_row = d.sum(axis=1) / (k + 1)
    floor = np.where(rho > 0, mean_row, d.sum() / (n * (k + 1))) * MIN_K_DIST_SCALE
    sigma = np.maximum(mid, floor)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where((excess <= 0) | (sigma[:, None] == 0), 1.0, np.exp(-excess / sigma[:, None]))
    W = sp.csr_matrix(
        (w.ravel().astype(np.float32), indices.ravel(), np.arange(0, n * k + 1, k)),
        shape=(n, n),
    )
    W.sum_duplicates()
    W.eliminate_zeros()
    Wt = W.T.tocsr()
    C = (W + Wt - W.multiply(Wt)).tocsr().astype(np.float32)
    C.eliminate_zeros()
    return C


def neighbour_mean(query: np.ndarray, reference: np.ndarray, values, n_neighbors: int):
    """Mean of ``values`` over each query row's ``n_neighbors`` nearest reference rows.

    Neighbours are found by Euclidean distance between ``query`` and ``reference``
    (cells x dimensions, e.g. embeddings); ``values`` holds one row per reference cell
    (dense or sparse). Used for kNN translation (MINNET's :meth:`translate
    <scmint.model.MINNET.translate>`, the benchmark's kNN baseline
    :func:`scmint.metrics.knn_profiles`).

    Returns
    -------
    Query rows x ``values`` columns: sparse (CSR) for sparse ``values``, else dense.
    """
    from sklearn.neighbors import NearestNeighbors

    n_ref = reference.shape[0]
    k = int(n_neighbors)
    if not 1 <= k <= n_ref:
        raise ValueError(f"n_neighbors must be in [1, {n_ref}] (the reference cells), got {k}.")
    idx = NearestNeighbors(n_neighbors=k).fit(reference).kneighbors(query, return_distance=False)
    weights = sp.csr_matrix(
        (np.full(idx.size, 1.0 / k), (np.repeat(np.arange(len(idx)), k), idx.ravel())),
        shape=(len(idx), n_ref),
    )
    return weights @ values
