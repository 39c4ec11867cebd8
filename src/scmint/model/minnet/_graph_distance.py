"""Shortest-path distances between sampled cell pairs on a kNN graph (MINNET's margin).

MINNET's contrastive loss uses the margin ``m_ij = M (d_ij + C 1[types differ])`` where
``d_ij`` is the shortest-path distance between cells ``i`` and ``j`` on a kNN graph of
the RNA modality with edge weights ``1.01 - connectivity``. The published code stores
the dense ``N x N`` all-pairs matrix (6.3 GB for 28k cells). Here only the distances
of the pairs actually sampled are computed, with memory linear in the number of cells:

* :func:`build_distance_graph` builds the weighted graph (sparse, ``k`` to ``2 k`` edges a cell);
* :class:`GraphDistances` answers ``d(sources[k], targets[k])`` for arrays of pairs,
  exactly, optionally capped at a cut-off (see its docstring for the algorithms).
"""

from __future__ import annotations

import warnings
from typing import Literal

import numba
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp
from anndata import AnnData
from numpy.typing import ArrayLike
from scipy.sparse.csgraph import connected_components, dijkstra

from scmint.data._validation import check_counts
from scmint.pp._neighbors import knn_graph
from scmint.pp._transforms import LogNormPCA, _clamp_n_comps, _size_factor_target
from scmint.pp._utils import get_matrix, to_csr

#: offset of MINNET's edge weights: ``weight = EDGE_OFFSET - connectivity``
EDGE_OFFSET = 1.01

_MiB = 2**20


# --------------------------------------------------------------------------- graph
def build_distance_graph(
    adata: AnnData,
    batch_key: str | None = None,
    n_top_genes: int = 2000,
    n_comps: int = 50,
    n_neighbors: int = 20,
    layer: str | None = None,
    random_state: int = 0,
    knn_method: Literal["auto", "exact", "pynndescent"] = "auto",
) -> sp.csr_matrix:
    """MINNET's weighted kNN graph of the RNA modality (edge weight ``1.01 - connectivity``).

    Pipeline: library-size normalisation to 1e4 counts and ``log1p``; highly variable
    genes (scanpy ``"seurat"`` flavour, batch-aware when ``batch_key`` is given);
    ComBat (:func:`scanpy.pp.combat`) on the selected genes when ``batch_key`` is
    given; scaling to unit variance clipped at 10; PCA; kNN graph with UMAP
    connectivities (:func:`scmint.pp.knn_graph`); edge weight
    ``1.01 - connectivity``, so strongly connected neighbours are close (0.01) and
    weak ones far (up to 1.01).

    Without ``batch_key`` this is exactly :class:`scmint.pp.LogNormPCA` followed by
    the graph. With ``batch_key``, ComBat runs on the log-normalised values of the
    highly variable genes only: MINNET applied ComBat to its feature-selected matrix,
    and ComBat's output is dense, so correcting only the selected genes keeps the
    dense intermediate at ``cells x n_top_genes`` (as the scaling step) instead of
    ``cells x all genes``. Highly variable genes are then chosen per batch
    (``batch_key`` passed to :func:`scanpy.pp.highly_variable_genes`) so that genes
    driven by the batch effect are not favoured.

    Parameters
    ----------
    adata
        Cells x genes RNA raw counts (in ``X`` or ``layer``). Not modified.
    batch_key
        Obs column with the batch of each cell; ``None`` skips ComBat.
    n_top_genes
        Number of highly variable genes (all genes if at least the number of genes).
    n_comps
        Number of principal components.
    n_neighbors
        Neighbours per cell (MINNET: 20).
    layer
        Layer holding the counts; ``None`` reads ``X``.
    random_state
        Seed of the PCA solver, the neighbour search and the UMAP weights.
    knn_method
        Neighbour search, see :func:`scmint.pp.knn_indices`.

    Returns
    -------
    Symmetric ``n_cells x n_cells`` CSR float64 matrix of positive edge weights (no
    diagonal); about ``n_neighbors`` to ``2 n_neighbors`` entries a row.
    """
    if batch_key is None:
        Z = LogNormPCA(
            n_comps=n_comps,
            n_top_genes=n_top_genes,
            hvg_flavor="seurat",
            random_state=random_state,
        ).fit_transform(adata, layer=layer)
    else:
        Z = _combat_pca(adata, batch_key, n_top_genes, n_comps, layer, random_state)
    _, conn = knn_graph(
        Z,
        n_neighbors=n_neighbors,
        random_state=random_state,
        method=knn_method,
        connectivity="umap",
    )
    return connectivity_to_distance_graph(conn)


def connectivity_to_distance_graph(connectivities: sp.spmatrix) -> sp.csr_matrix:
    """Turn symmetric connectivities in ``(0, 1]`` into MINNET edge lengths ``1.01 - c``.

    Parameters
    ----------
    connectivities
        Sparse symmetric cells x cells connectivities (e.g. ``obsp['connectivities']``).

    Returns
    -------
    CSR float64 matrix with the same sparsity pattern (diagonal and zeros removed).
    """
    C = _drop_diagonal(sp.csr_matrix(connectivities, dtype=np.float64, copy=True))
    C.data = EDGE_OFFSET - C.data
    if C.nnz and C.data.min() <= 0:
        raise ValueError("connectivities above 1.01 give non-positive edge lengths")
    return C


def _drop_diagonal(G: sp.csr_matrix) -> sp.csr_matrix:
    """CSR copy without diagonal entries or stored zeros, indices sorted."""
    coo = G.tocoo()
    keep = (coo.row != coo.col) & (coo.data != 0)
    out = sp.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=G.shape)
    out.sum_duplicates()
    out.sort_indices()
    return out


def _combat_pca(
    adata: AnnData,
    batch_key: str,
    n_top_genes: int,
    n_comps: int,
    layer: str | None,
    random_state: int,
) -> np.ndarray:
    """Log-normalise, batch-aware HVG, ComBat on the HVGs, scale, PCA (on copies)."""
    if batch_key not in adata.obs:
        raise KeyError(f"batch_key {batch_key!r} not found in obs")
    X = to_csr(get_matrix(adata, layer), np.float64)
    check_counts(X, what="build_distance_graph input", fractional="warn")
    batches = adata.obs[batch_key].astype(str).to_numpy()
    obs = pd.DataFrame({batch_key: batches}, index=[str(i) for i in range(X.shape[0])])
    tmp = AnnData(X.copy(), obs=obs)
    sc.pp.normalize_total(tmp, target_sum=_size_factor_target(X, 1e4))
    sc.pp.log1p(tmp)
    if n_top_genes < tmp.n_vars:
        hvg = sc.pp.highly_variable_genes(
            tmp, flavor="seurat", n_top_genes=n_top_genes, batch_key=batch_key, inplace=False
        )
        keep = np.flatnonzero(np.asarray(hvg["highly_variable"], dtype=bool))
        tmp = tmp[:, keep].copy()
    tmp.X = tmp.X.toarray()
    if len(np.unique(batches)) > 1:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            corrected = sc.pp.combat(tmp, key=batch_key, inplace=False)
        # genes constant within a batch give NaN in ComBat: leave them uncorrected
        bad = ~np.isfinite(corrected)
        corrected = np.where(bad, tmp.X, corrected)
        tmp.X = corrected
    sc.pp.scale(tmp, max_value=10.0)
    n_comps = _clamp_n_comps(n_comps, tmp.shape, "build_distance_graph")
    # the exact PCA through the eigendecomposition of the genes x genes covariance: the
    # same components as ARPACK (distances equal to float precision), 6x faster on
    # SNARE-seq's 10k cells x 1.7k genes (1.7 s instead of 9.7 s on one core)
    sc.pp.pca(tmp, n_comps=n_comps, svd_solver="covariance_eigh", random_state=random_state)
    return np.asarray(tmp.obsm["X_pca"], dtype=np.float32)


# --------------------------------------------------------------------------- numba kernels
@numba.njit(cache=True, nogil=True)
def _heap_push(keys, vals, size, key, val):  # pragma: no cover - numba
    i = size
    keys[i] = key
    vals[i] = val
    while i > 0:
        parent = (i - 1) >> 1
        if keys[parent] <= keys[i]:
            break
        keys[parent], keys[i] = keys[i], keys[parent]
        vals[parent], vals[i] = vals[i], vals[parent]
        i = parent
    return size + 1


@numba.njit(cache=True, nogil=True)
def _heap_pop(keys, vals, size):  # pragma: no cover - numba
    key = keys[0]
    val = vals[0]
    size -= 1
    keys[0] = keys[size]
    vals[0] = vals[size]
    i = 0
    while True:
        child = 2 * i + 1
        if child >= size:
            break
        if child + 1 < size and keys[child + 1] < keys[child]:
            child += 1
        if keys[i] <= keys[child]:
            break
        keys[child], keys[i] = keys[i], keys[child]
        vals[child], vals[i] = vals[i], vals[child]
        i = child
    return key, val, size


@numba.njit(cache=True, nogil=True)
def _half_balls(indptr, indices, data, radius, max_entries):  # pragma: no cover - numba
    """For every node, the nodes within ``radius`` and their distances, nearest first.

    Dijkstra from each node in turn with a binary heap, stopped at ``radius``; only
    the nodes touched are reset afterwards, so a search costs O(ball), not O(n).
    Returns ``(ptr, idx, dist, complete)``; ``complete`` is False (and the arrays
    partial) when more than ``max_entries`` entries would be needed.
    """
    n = indptr.size - 1
    dist = np.full(n, np.inf)
    settled = np.zeros(n, np.bool_)
    touched = np.empty(n, np.int64)
    hkeys = np.empty(64, np.float64)
    hvals = np.empty(64, np.int64)
    ptr = np.zeros(n + 1, np.int64)
    cap = min(max(16 * n, 16), max_entries)
    out_idx = np.empty(cap, np.int32)
    out_dist = np.empty(cap, np.float32)
    pos = 0
    for s in range(n):
        n_touched = 1
        touched[0] = s
        dist[s] = 0.0
        size = _heap_push(hkeys, hvals, 0, 0.0, s)
        while size > 0:
            d, u, size = _heap_pop(hkeys, hvals, size)
            if settled[u]:
                continue
            settled[u] = True
            if pos == out_idx.size:
                if pos >= max_entries:
                    return ptr, out_idx[:pos], out_dist[:pos], False
                new_cap = min(2 * out_idx.size, max_entries)
                grown_idx = np.empty(new_cap, np.int32)
                grown_idx[:pos] = out_idx
                out_idx = grown_idx
                grown_dist = np.empty(new_cap, np.float32)
                grown_dist[:pos] = out_dist
                out_dist = grown_dist
            out_idx[pos] = u
            out_dist[pos] = d
            pos += 1
            for e in range(indptr[u], indptr[u + 1]):
                v = indices[e]
                nd = d + data[e]
                if nd <= radius and nd < dist[v]:
                    if dist[v] == np.inf:
                        touched[n_touched] = v
                        n_touched += 1
                    dist[v] = nd
                    if size == hkeys.size:
                        hkeys = np.concatenate((hkeys, np.empty(size, np.float64)))
                        hvals = np.concatenate((hvals, np.empty(size, np.int64)))
                    size = _heap_push(hkeys, hvals, size, nd, v)
        for t in range(n_touched):
            dist[touched[t]] = np.inf
            settled[touched[t]] = False
        ptr[s + 1] = pos
    return ptr, out_idx[:pos].copy(), out_dist[:pos].copy(), True


@numba.njit(cache=True, nogil=True)
def _query_pairs(
    indptr, indices, data, bptr, bidx, bdist, sources, targets, cutoff, scan_radius
):  # pragma: no cover - numba
    """``min(d(s, t), cutoff)`` for each pair from balls of radius ``R >= cutoff / 2``.

    For a pair ``(a, b)`` the ball of ``b`` is scattered into ``mark`` and the part of
    the ball of ``a`` (the smaller one) within ``scan_radius >= cutoff - R`` is scanned
    with its edges: the answer is the smallest ``d(a, s) + w(s, v) + d(v, b)`` (or
    ``d(a, s) + d(s, b)``) over scanned ``s`` and ``v`` in the ball of ``b``. Ball
    entries are sorted by distance, so the scan stops at ``scan_radius`` or once
    ``d(a, s)`` reaches the best value found.
    """
    n = indptr.size - 1
    mark = np.full(n, np.inf)
    out = np.empty(sources.size, np.float32)
    for p in range(sources.size):
        a = sources[p]
        b = targets[p]
        if a == b:
            out[p] = 0.0
            continue
        if bptr[a + 1] - bptr[a] > bptr[b + 1] - bptr[b]:
            a, b = b, a
        for q in range(bptr[b], bptr[b + 1]):
            mark[bidx[q]] = bdist[q]
        best = cutoff
        for q in range(bptr[a], bptr[a + 1]):
            ds = np.float64(bdist[q])
            if ds >= best or ds > scan_radius:
                break
            s = bidx[q]
            cand = ds + mark[s]
            if cand < best:
                best = cand
            for e in range(indptr[s], indptr[s + 1]):
                cand = ds + data[e] + mark[indices[e]]
                if cand < best:
                    best = cand
        for q in range(bptr[b], bptr[b + 1]):
            mark[bidx[q]] = np.inf
        out[p] = best
    return out


# --------------------------------------------------------------------------- distances
class GraphDistances:
    """Exact shortest-path distances of sampled cell pairs, memory linear in cells.

    Holds a symmetric weighted graph (e.g. from :func:`build_distance_graph`) and
    answers :meth:`pairs` queries ``d(sources[k], targets[k])``. Nothing quadratic in
    the number of cells is ever stored. Self pairs are 0 without any search.

    **With a cut-off** ``c`` (the fast path, :meth:`pairs` ``method="index"``): the
    values returned are ``min(d, c)``, exact for every pair closer than ``c``; pairs
    farther than ``c`` or unreachable get ``c``. A *half-ball index* is built once
    per graph (:meth:`prepare`): for every cell, the cells within ``R = c / 2`` and
    their distances, nearest first (a truncated Dijkstra from each cell, O(ball)
    each). A pair ``(i, j)`` is then resolved by meeting in the middle, with no
    search: take a shortest path from ``i`` to ``j`` of length ``d <= c``, its last
    node ``u`` with ``d(i, u) <= c - R`` and the next node ``v``; then
    ``d(v, j) < R``, so ``d = d(i, u) + w(u, v) + d(v, j)`` with ``u`` in the ball of
    ``i`` and ``v`` in the ball of ``j`` (or ``u = j``, ``d = d(i, j) + d(j, j)``). The
    ball of ``j`` is scattered into a length-``n`` array and the edges of the ball of
    ``i`` are scanned; every candidate is the length of a real path, so the minimum
    is exact. Memory: 8 bytes per ball entry (``n x mean ball size``, bounded by
    ``max_index_bytes``); time per pair: ``ball size x degree``. An index built for a
    larger cut-off (``prepare(c2)``, ``c2 > c``) also serves ``c``, and faster (only
    the cells within ``c - c2 / 2`` of ``i`` are scanned) at the price of memory.
    (Searching from each source with ``limit=c`` instead costs at least O(n) per
    source, as scipy initialises a full distance row: O(n^2) per epoch.)

    **Without a cut-off** (``cutoff=None``, or ``method="dijkstra"``):
    :func:`scipy.sparse.csgraph.dijkstra` runs from the unique search roots in
    batches of ``block_bytes // (8 n)`` rows, so at most a ``batch x n`` float64
    block exists at a time (never ``n x n``), with ``limit=cutoff`` when one is
    given. Each pair is searched from the endpoint that occurs in more pairs (the
    graph is symmetric), which reduces the number of roots; one call with many
    pairs (e.g. those of all epochs at once) costs at most ``n`` searches. Without a
    cut-off, unreachable pairs get :attr:`unreachable_distance`.

    The numba kernels release the GIL, so the distances of the next epoch can be
    computed in a background thread.

    Parameters
    ----------
    graph
        Symmetric ``n x n`` sparse matrix of positive edge lengths (stored entries are
        edges; the diagonal is ignored).
    block_bytes
        Largest dense ``batch x n`` float64 block held by the Dijkstra path.
    max_index_bytes
        Largest half-ball index; beyond it :meth:`pairs` warns and falls back to the
        Dijkstra path with ``limit=cutoff``. ``None``: 16 KiB a cell (at least
        256 MiB), four times what :meth:`default_cutoff` aims at.

    Notes
    -----
    Picklable; the half-ball index is not pickled (it is rebuilt on first use).
    """

    def __init__(
        self,
        graph: sp.spmatrix | sp.sparray,
        block_bytes: int = 64 * _MiB,
        max_index_bytes: int | None = None,
    ) -> None:
        G = sp.csr_matrix(graph, dtype=np.float64, copy=True)
        if G.shape[0] != G.shape[1]:
            raise ValueError(f"graph must be square, got shape {G.shape}")
        G = _drop_diagonal(G)
        if G.nnz and not (np.all(np.isfinite(G.data)) and G.data.min() > 0):
            raise ValueError("edge lengths must be finite and positive")
        asym = abs(G - G.T)
        if asym.nnz and asym.max() > 1e-9 * max(1.0, float(G.data.max())):
            raise ValueError("graph must be symmetric (an undirected graph)")
        self.graph = G
        self.block_bytes = int(block_bytes)
        if max_index_bytes is None:
            max_index_bytes = max(256 * _MiB, 16 * 1024 * G.shape[0])
        self.max_index_bytes = int(max_index_bytes)
        self._index: tuple[float, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._unreachable: float | None = None

    @classmethod
    def from_adata(cls, adata: AnnData, **kwargs) -> GraphDistances:
        """Build the graph with :func:`build_distance_graph` and wrap it.

        Parameters
        ----------
        adata
            RNA counts.
        **kwargs
            Arguments of :func:`build_distance_graph`.

        Returns
        -------
        The :class:`GraphDistances` of the graph.
        """
        return cls(build_distance_graph(adata, **kwargs))

    # ------------------------------------------------------------------ properties
    @property
    def n_cells(self) -> int:
        """Number of nodes."""
        return int(self.graph.shape[0])

    @property
    def index_radius(self) -> float | None:
        """Radius of the half-ball index built (``None`` if none)."""
        return None if self._index is None else self._index[0]

    @property
    def index_nbytes(self) -> int:
        """Memory held by the half-ball index, in bytes."""
        if self._index is None:
            return 0
        return int(sum(a.nbytes for a in self._index[1:]))

    @property
    def batch_rows(self) -> int:
        """Rows per Dijkstra block: ``block_bytes // (8 n_cells)``, at least 1."""
        return max(1, self.block_bytes // (8 * max(self.n_cells, 1)))

    @property
    def unreachable_distance(self) -> float:
        """Value given to unreachable pairs when no cut-off is used.

        Twice the largest eccentricity of one node of each connected component (one
        Dijkstra per component, computed once): an upper bound of every component's
        diameter, between 1 and 2 times the largest one, so an unreachable pair is
        never closer than a connected pair. 0 for a graph without edges.
        """
        if self._unreachable is None:
            self._unreachable = self._diameter_bound()
        return self._unreachable

    # ------------------------------------------------------------------ cut-off
    def default_cutoff(
        self,
        quantile: float = 0.5,
        max_ball_size: int | None = 512,
        n_sources: int = 64,
        n_targets: int = 2048,
        random_state: int = 0,
    ) -> float:
        """A cut-off from the distances of random pairs, bounded for speed and memory.

        Exact Dijkstra from ``n_sources`` random cells gives the distances to
        ``n_targets`` random other cells each. The cut-off is the ``quantile`` of
        these random-pair distances (so about ``1 - quantile`` of random pairs are
        capped), lowered if needed so that the half-balls of radius ``cutoff / 2``
        hold ``max_ball_size`` cells on average (index memory ``~8 x max_ball_size``
        bytes a cell, query time proportional to it).

        Parameters
        ----------
        quantile
            Quantile of random-pair distances, in ``(0, 1]``.
        max_ball_size
            Mean number of cells within ``cutoff / 2`` of a cell; ``None``: no bound.
        n_sources
            Number of random source cells searched exactly.
        n_targets
            Random targets kept per source.
        random_state
            Seed.

        Returns
        -------
        The cut-off (``> 0``; the largest sampled distance if the quantile is
        unreachable, 1.0 if nothing was reachable).
        """
        if not 0 < quantile <= 1:
            raise ValueError("quantile must be in (0, 1]")
        d = self.sample_distances(n_sources, n_targets, random_state)
        finite = np.sort(d[np.isfinite(d)])
        if finite.size == 0:
            return 1.0
        d = np.sort(d)
        cut = d[min(int(np.ceil(quantile * d.size)) - 1, d.size - 1)]
        if max_ball_size is not None and self.n_cells > 1:
            level = (max_ball_size - 1) / (self.n_cells - 1)
            if level < 1:
                k = max(int(np.floor(level * d.size)) - 1, 0)
                cut = min(cut, 2.0 * d[k])
        if not np.isfinite(cut):
            cut = finite[-1]
        if cut <= 0:
            cut = finite[finite > 0][0] if np.any(finite > 0) else 1.0
        return float(cut)

    def sample_distances(
        self, n_sources: int = 64, n_targets: int = 2048, random_state: int = 0
    ) -> np.ndarray:
        """Exact distances from random cells to random other cells (``inf``: unreachable).

        Parameters
        ----------
        n_sources
            Number of distinct random sources (at most ``n_cells``).
        n_targets
            Random other cells per source (with replacement; all other cells if
            ``n_targets >= n_cells - 1``).
        random_state
            Seed.

        Returns
        -------
        Flat float64 array of ``n_sources x n_targets`` distances.
        """
        n = self.n_cells
        if n < 2:
            return np.empty(0)
        rng = np.random.default_rng(random_state)
        roots = np.sort(rng.choice(n, size=min(n_sources, n), replace=False))
        out = []
        for start in range(0, roots.size, self.batch_rows):
            batch = roots[start : start + self.batch_rows]
            D = dijkstra(self.graph, directed=True, indices=batch)
            for row, root in zip(D, batch, strict=True):
                if n_targets >= n - 1:
                    out.append(np.delete(row, root))
                else:
                    t = rng.integers(0, n - 1, n_targets)
                    t[t >= root] += 1
                    out.append(row[t])
        return np.concatenate(out)

    def prepare(self, cutoff: float) -> bool:
        """Build (or keep) the half-ball index that serves cut-offs up to ``cutoff``.

        Parameters
        ----------
        cutoff
            Largest cut-off to serve; balls of radius ``cutoff / 2`` are computed.

        Returns
        -------
        Whether the index is available (``False`` if it would exceed
        ``max_index_bytes``; :meth:`pairs` then uses the Dijkstra path).
        """
        radius = float(cutoff) / 2.0
        if not radius > 0 or not np.isfinite(radius):
            raise ValueError("cutoff must be positive and finite")
        if self._index is not None and self._index[0] >= radius:
            return True
        max_entries = max(self.max_index_bytes - 8 * (self.n_cells + 1), 0) // 8
        ptr, idx, dist, complete = _half_balls(*self._csr_arrays(), radius, max_entries)
        if not complete:
            return False
        self._index = (radius, ptr, idx, dist)
        return True

    def _csr_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        G = self.graph
        return (
            G.indptr.astype(np.int64, copy=False),
            G.indices.astype(np.int32, copy=False),
            G.data.astype(np.float64, copy=False),
        )

    # ------------------------------------------------------------------ queries
    def pairs(
        self,
        sources: ArrayLike,
        targets: ArrayLike,
        cutoff: float | None = None,
        method: Literal["auto", "index", "dijkstra"] = "auto",
    ) -> np.ndarray:
        """Shortest-path distance of each pair ``(sources[k], targets[k])``.

        Parameters
        ----------
        sources, targets
            Integer node indices of equal shape.
        cutoff
            Cap: pairs farther than ``cutoff`` or unreachable get ``cutoff``; closer
            pairs are exact. ``None``: all distances exact, unreachable pairs get
            :attr:`unreachable_distance`. See :meth:`default_cutoff`.
        method
            ``"index"``: half-ball index (needs a cut-off; built on first use by
            :meth:`prepare`). ``"dijkstra"``: batched scipy Dijkstra from the unique
            roots (with ``limit=cutoff``). ``"auto"``: the index when a cut-off is
            given and the index fits in ``max_index_bytes``, else Dijkstra.

        Returns
        -------
        float32 array shaped like ``sources``; 0 for self pairs.
        """
        src = np.asarray(sources)
        tgt = np.asarray(targets)
        if src.shape != tgt.shape:
            raise ValueError(f"sources {src.shape} and targets {tgt.shape} differ in shape")
        shape = src.shape
        src = src.ravel().astype(np.int64, copy=False)
        tgt = tgt.ravel().astype(np.int64, copy=False)
        n = self.n_cells
        for name, a in (("sources", src), ("targets", tgt)):
            if a.size and (a.min() < 0 or a.max() >= n):
                raise IndexError(f"{name} out of range for a graph of {n} nodes")
        if cutoff is not None:
            cutoff = float(cutoff)
            if not cutoff > 0:
                raise ValueError("cutoff must be positive")
            if not np.isfinite(cutoff):
                cutoff = None
        if method not in ("auto", "index", "dijkstra"):
            raise ValueError(f"unknown method {method!r}")
        if method == "index" and cutoff is None:
            raise ValueError("method='index' needs a finite cutoff")
        if src.size == 0:
            return np.zeros(shape, dtype=np.float32)

        use_index = False
        if cutoff is not None and method != "dijkstra":
            use_index = self.prepare(cutoff)
            if not use_index:
                msg = (
                    f"half-ball index for cutoff={cutoff:g} exceeds max_index_bytes="
                    f"{self.max_index_bytes}; "
                )
                if method == "index":
                    raise MemoryError(msg + "use a smaller cutoff")
                warnings.warn(msg + "using batched Dijkstra (slower)", UserWarning, stacklevel=2)
        if use_index:
            radius, bptr, bidx, bdist = self._index
            # any split of the cut-off is exact (see _query_pairs); the slack covers
            # the float32 rounding of the stored distances
            scan = max(cutoff - radius, 0.0) * (1 + 1e-6) + 1e-12
            out = _query_pairs(*self._csr_arrays(), bptr, bidx, bdist, src, tgt, cutoff, scan)
        else:
            out = self._pairs_dijkstra(src, tgt, cutoff)
        return out.reshape(shape)

    def _pairs_dijkstra(self, src: np.ndarray, tgt: np.ndarray, cutoff: float | None) -> np.ndarray:
        """Batched scipy Dijkstra from the unique roots (see the class docstring)."""
        n = self.n_cells
        out = np.zeros(src.size, dtype=np.float64)
        todo = np.flatnonzero(src != tgt)
        if todo.size == 0:
            return out.astype(np.float32)
        a, b = src[todo], tgt[todo]
        # search from the endpoint occurring in more pairs (fewer unique roots)
        counts = np.bincount(np.concatenate([a, b]), minlength=n)
        flip = (counts[b] > counts[a]) | ((counts[b] == counts[a]) & (b < a))
        root = np.where(flip, b, a)
        other = np.where(flip, a, b)
        roots, rank = np.unique(root, return_inverse=True)
        order = np.argsort(rank, kind="stable")
        rank_sorted = rank[order]
        rows = self.batch_rows
        limit = np.inf if cutoff is None else cutoff
        for start in range(0, roots.size, rows):
            lo, hi = np.searchsorted(rank_sorted, [start, start + rows])
            sel = order[lo:hi]
            D = dijkstra(
                self.graph, directed=True, indices=roots[start : start + rows], limit=limit
            )
            out[todo[sel]] = D[rank[sel] - start, other[sel]]
        far = ~np.isfinite(out)
        if cutoff is not None:
            np.minimum(out, cutoff, out=out)
            out[far] = cutoff
        elif far.any():
            out[far] = self.unreachable_distance
        return out.astype(np.float32)

    def _diameter_bound(self) -> float:
        n_comp, labels = connected_components(self.graph, directed=False)
        sizes = np.bincount(labels, minlength=n_comp)
        comps = np.flatnonzero(sizes > 1)
        if comps.size == 0:
            return 0.0
        _, first_node = np.unique(labels, return_index=True)
        roots = first_node[comps]
        ecc = 0.0
        rows = self.batch_rows
        for start in range(0, roots.size, rows):
            D = dijkstra(self.graph, directed=True, indices=roots[start : start + rows])
            ecc = max(ecc, float(D[np.isfinite(D)].max()))
        return 2.0 * ecc

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_index"] = None
        return state

    def __repr__(self) -> str:
        idx = "" if self._index is None else f", index_radius={self.index_radius:g}"
        return f"GraphDistances(n_cells={self.n_cells}, n_edges={self.graph.nnz}{idx})"
