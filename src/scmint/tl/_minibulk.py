"""Mini-bulks: cells clustered in an embedding within each cell type, counts aggregated.

Written for any model's embedding. MinNet's downstream analysis clusters all cells of
the co-embedding hierarchically and cuts the tree into ``N = 100`` mini-bulks that each
hold a single cell type; here each cell type is clustered on its own (ward linkage by
default, k-means for large types so memory stays linear) into a number of clusters
proportional to its size.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from ..data._validation import get_matrix
from ..pp._utils import Matrix
from ._smoothing import _resolve_embedding

#: types with more cells than this are clustered with k-means instead of ward linkage
MAX_HIERARCHICAL_CELLS = 5_000
#: k-means with fewer cells x clusters than this runs on one thread
_KMEANS_SINGLE_THREAD_MAX = 2_000_000


def _allocate(sizes: np.ndarray, n_bulks: int) -> np.ndarray:
    """Clusters per group: proportional to size (largest remainder), 1 <= k_g <= size_g."""
    sizes = np.asarray(sizes, dtype=np.int64)
    total = int(sizes.sum())
    n_bulks = min(int(n_bulks), total)
    target = n_bulks * sizes / total
    k = np.clip(np.floor(target).astype(np.int64), 1, sizes)
    while k.sum() < n_bulks:
        gap = np.where(k < sizes, target - k, -np.inf)
        k[int(np.argmax(gap))] += 1
    while k.sum() > n_bulks and np.any(k > 1):
        gap = np.where(k > 1, target - k, np.inf)
        k[int(np.argmin(gap))] -= 1
    return k


def _cluster(
    z: np.ndarray,
    k: int,
    method: str,
    linkage: str,
    max_hierarchical_cells: int,
    random_state: int | None,
) -> tuple[np.ndarray, str]:
    """Cluster labels (0..k-1, possibly fewer) of the rows of ``z`` and the method used."""
    n = z.shape[0]
    if k <= 1:
        return np.zeros(n, dtype=np.int64), "none"
    if k >= n:
        return np.arange(n, dtype=np.int64), "none"
    if method == "hierarchical" and n <= max_hierarchical_cells:
        from sklearn.cluster import AgglomerativeClustering

        labels = AgglomerativeClustering(n_clusters=k, linkage=linkage).fit_predict(z)
        used = "hierarchical"
    else:
        from sklearn.cluster import KMeans
        from threadpoolctl import threadpool_limits

        # small problems run far faster single-threaded: OpenMP threads spin-wait on busy
        # machines (70x slower measured for 1,300 cells on 2 loaded cores)
        n_threads = 1 if n * k < _KMEANS_SINGLE_THREAD_MAX else None
        with warnings.catch_warnings(), threadpool_limits(limits=n_threads, user_api="openmp"):
            # duplicated points may leave fewer distinct clusters than k
            warnings.simplefilter("ignore")
            labels = KMeans(n_clusters=k, n_init=3, random_state=random_state).fit_predict(z)
        used = "kmeans"
    # relabel 0..m-1 in order of first appearance (empty clusters dropped)
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(first.size)
    return rank[inverse], used


def _group_labels(groups: Sequence | pd.Series | np.ndarray | None, n: int) -> pd.Categorical:
    if groups is None:
        return pd.Categorical(np.full(n, "all"))
    cat = groups.values if isinstance(groups, pd.Series) else groups
    cat = pd.Categorical(cat)
    if len(cat) != n:
        raise ValueError(f"{len(cat)} group labels for {n} cells")
    return cat.remove_unused_categories()


def assign_minibulks(
    embedding: Matrix,
    groups: Sequence | pd.Series | np.ndarray | None,
    n_bulks: int = 100,
    method: Literal["hierarchical", "kmeans"] = "hierarchical",
    linkage: Literal["ward", "complete", "average", "single"] = "ward",
    max_hierarchical_cells: int = MAX_HIERARCHICAL_CELLS,
    random_state: int | None = 0,
) -> pd.Categorical:
    """Assign cells to mini-bulks: clusters in an embedding, each within one group.

    Group ``g`` with ``n_g`` of the ``N`` labelled cells gets about ``n_bulks * n_g / N``
    clusters (largest-remainder rounding, at least 1 and at most ``n_g``), found by
    clustering the group's cells in ``embedding`` with
    :class:`sklearn.cluster.AgglomerativeClustering` (``method="hierarchical"``) or
    :class:`sklearn.cluster.KMeans` (``method="kmeans"``). Hierarchical clustering needs
    memory quadratic in the group size, so groups larger than
    ``max_hierarchical_cells`` use k-means instead.

    Use this directly for unpaired modalities: assign the cells of both modalities
    together in their co-embedding, then aggregate each modality with
    ``minibulk(..., assignment=...)`` so that mini-bulk ``b`` of RNA and of ATAC hold
    the cells of the same cluster.

    Parameters
    ----------
    embedding
        Cells x dimensions embedding.
    groups
        Group (cell type) of each cell; cells with a missing label are not assigned.
        None: one group ``"all"``.
    n_bulks
        Total number of mini-bulks. If there are more groups than ``n_bulks`` each group
        still gets one (with a warning); if fewer cells, each cell is its own mini-bulk.
    method
        ``"hierarchical"`` or ``"kmeans"``.
    linkage
        Linkage of the hierarchical clustering.
    max_hierarchical_cells
        Groups with more cells are clustered with k-means.
    random_state
        Seed of k-means.

    Returns
    -------
    Categorical of mini-bulk names ``f"{group}_{j}"`` per cell (NaN for unlabelled
    cells); its categories list the mini-bulks, by group then cluster.
    """
    if method not in ("hierarchical", "kmeans"):
        raise ValueError(f"method must be 'hierarchical' or 'kmeans', got {method!r}")
    if n_bulks < 1:
        raise ValueError(f"n_bulks must be >= 1, got {n_bulks}")
    z = np.asarray(embedding.toarray() if sp.issparse(embedding) else embedding, dtype=np.float32)
    n = z.shape[0]
    cat = _group_labels(groups, n)
    codes = cat.codes
    sizes = np.bincount(codes[codes >= 0], minlength=len(cat.categories))
    if sizes.sum() == 0:
        raise ValueError("no cell has a group label")
    if len(sizes) > n_bulks:
        warnings.warn(
            f"{len(sizes)} groups but n_bulks={n_bulks}: one mini-bulk per group",
            UserWarning,
            stacklevel=2,
        )
    k = _allocate(sizes, n_bulks)
    names = np.full(n, "", dtype=object)
    categories: list[str] = []
    for g, group in enumerate(cat.categories):
        cells = np.flatnonzero(codes == g)
        labels, _ = _cluster(
            z[cells], int(k[g]), method, linkage, max_hierarchical_cells, random_state
        )
        bulk = np.array([f"{group}_{j}" for j in range(labels.max() + 1)], dtype=object)
        names[cells] = bulk[labels]
        categories.extend(bulk)
    out = pd.Categorical(names, categories=categories)
    return out


def minibulk(
    data: AnnData | Matrix,
    embedding: Matrix | str | None = None,
    groupby: str | Sequence | pd.Series | np.ndarray | None = None,
    n_bulks: int = 100,
    method: Literal["hierarchical", "kmeans"] = "hierarchical",
    aggregate: Literal["sum", "mean"] = "sum",
    layer: str | None = None,
    assignment: Sequence | pd.Categorical | pd.Series | np.ndarray | None = None,
    linkage: Literal["ward", "complete", "average", "single"] = "ward",
    max_hierarchical_cells: int = MAX_HIERARCHICAL_CELLS,
    random_state: int | None = 0,
) -> AnnData:
    """Aggregate cells into mini-bulks of one cell type each, clustered in an embedding.

    Cells are assigned with :func:`assign_minibulks` (or by a given ``assignment``) and
    the counts of the cells of each mini-bulk are summed (default, as scglue's
    ``aggregate_obs`` used by MinNet) or averaged. Apply to raw (optionally
    :func:`smooth`-ed) counts; :func:`peak_gene_correlation` normalises the
    mini-bulks by library size itself.

    Parameters
    ----------
    data
        AnnData (``X`` or ``layers[layer]``) or a cells x features matrix. Not modified.
    embedding
        Cells x dimensions embedding (or, with an AnnData, an ``obsm`` key). Not needed
        with ``assignment``.
    groupby
        Cell types: an ``obs`` column name (AnnData) or one label per cell. None: all
        cells form one group. Unlabelled (NaN) cells are left out.
    n_bulks
        Number of mini-bulks in total, allocated to cell types in proportion to their
        size, at least one each.
    method
        ``"hierarchical"`` (ward linkage, k-means for types larger than
        ``max_hierarchical_cells``) or ``"kmeans"``.
    aggregate
        ``"sum"`` (counts of the mini-bulk's cells summed) or ``"mean"``.
    layer
        Layer of an AnnData holding the counts.
    assignment
        Precomputed mini-bulk of each cell (e.g. a slice of :func:`assign_minibulks` of
        a joint embedding); NaN/empty entries are left out. Overrides clustering; with
        ``groupby`` every mini-bulk must lie within one group. Mini-bulks without cells
        here are dropped.
    linkage, max_hierarchical_cells, random_state
        See :func:`assign_minibulks`.

    Returns
    -------
    AnnData ``n_minibulks x n_features`` (sparse if the input is sparse), ``var`` copied,
    ``obs`` with the group column (named ``groupby`` if it is a string, else
    ``"group"``) and ``n_cells``; ``uns["minibulk"]["assignment"]`` holds each input
    cell's mini-bulk name (``""`` if left out) in input order, with the input
    ``obs_names`` (AnnData) in ``uns["minibulk"]["cell_names"]``.
    """
    is_adata = isinstance(data, AnnData)
    X = get_matrix(data, layer) if is_adata else data
    if not (sp.issparse(X) or isinstance(X, np.ndarray)):
        X = np.asarray(X)
    n = X.shape[0]
    if aggregate not in ("sum", "mean"):
        raise ValueError(f"aggregate must be 'sum' or 'mean', got {aggregate!r}")
    group_key = groupby if isinstance(groupby, str) else "group"
    if isinstance(groupby, str):
        if not is_adata:
            raise TypeError("groupby may be an obs column name only when data is an AnnData")
        if groupby not in data.obs:
            raise KeyError(f"obs column {groupby!r} not found; columns: {list(data.obs.columns)}")
        groups = data.obs[groupby]
    else:
        groups = groupby
    if assignment is None:
        if embedding is None:
            raise ValueError("give an embedding (or a precomputed assignment)")
        z = _resolve_embedding(embedding, data if is_adata else None, n)
        bulks = assign_minibulks(
            z, groups, n_bulks, method, linkage, max_hierarchical_cells, random_state
        )
    else:
        a = assignment.values if isinstance(assignment, pd.Series) else assignment
        if len(a) != n:
            raise ValueError(f"assignment has {len(a)} entries for {n} cells")
        a = pd.Categorical(a)
        if "" in a.categories:
            a = a.remove_categories("")
        bulks = a
    bulks = bulks.remove_unused_categories()
    codes = np.asarray(bulks.codes, dtype=np.int64)
    ok = np.flatnonzero(codes >= 0)
    n_b = len(bulks.categories)
    if n_b == 0:
        raise ValueError("no cell is assigned to a mini-bulk")
    M = sp.csr_matrix((np.ones(ok.size, dtype=np.float64), (codes[ok], ok)), shape=(n_b, n))
    n_cells = np.asarray(M.sum(axis=1)).ravel().astype(np.int64)
    if aggregate == "mean":
        M = sp.csr_matrix(sp.diags(1.0 / n_cells) @ M)
    if sp.issparse(X):
        Xb = sp.csr_matrix(M @ sp.csr_matrix(X, dtype=np.float64))
    else:
        Xb = np.asarray(M @ np.asarray(X, dtype=np.float64))
    obs = pd.DataFrame(index=pd.Index(np.asarray(bulks.categories, dtype=str)))
    if groups is not None:
        gcat = _group_labels(groups, n)
        gcodes = np.asarray(gcat.codes, dtype=np.int64)
        # group of each bulk: the group codes of its cells must all agree
        gmin = np.full(n_b, np.iinfo(np.int64).max)
        gmax = np.full(n_b, -1)
        np.minimum.at(gmin, codes[ok], gcodes[ok])
        np.maximum.at(gmax, codes[ok], gcodes[ok])
        mixed = gmin != gmax
        if np.any(mixed):
            raise ValueError(
                f"{int(mixed.sum())} mini-bulks hold cells of several groups (or unlabelled "
                f"cells), e.g. {list(obs.index[mixed][:3])}"
            )
        obs[group_key] = pd.Categorical.from_codes(gmin, categories=gcat.categories)
    obs["n_cells"] = n_cells
    var = data.var.copy() if is_adata else pd.DataFrame(index=pd.RangeIndex(X.shape[1]).astype(str))
    out = AnnData(X=Xb, obs=obs, var=var)
    assign_names = np.asarray(bulks.categories, dtype=object)[np.maximum(codes, 0)]
    assign_names[codes < 0] = ""
    out.uns["minibulk"] = {
        "assignment": assign_names.astype(str),
        "n_bulks": int(n_bulks),
        "method": method if assignment is None else "given",
        "aggregate": aggregate,
    }
    if is_adata:
        out.uns["minibulk"]["cell_names"] = np.asarray(data.obs_names, dtype=str)
    return out
