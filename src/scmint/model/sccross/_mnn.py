"""Mutual-nearest-neighbour (MNN) batch correction and scCross's common-gene MNN prior.

A vectorised MNN correction (Haghverdi et al. 2018, as in batchelor's ``mnnCorrect`` and
mnnpy) with approximate neighbours: memory and time grow linearly in the number of
cells (no cells x cells matrix). Maintained Python MNN packages (mnnpy, which
``scanpy.external.pp.mnn_correct`` wraps) do not build on Python 3.11, hence this one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from math import ceil
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from scmint.model._centres import batch_centres
from scmint.pp._neighbors import EXACT_MAX_CELLS
from scmint.pp._utils import (
    as_float_matrix,
    log_normalize_rows,
    to_csr,
)

Method = Literal["auto", "exact", "pynndescent"]


def cross_knn(
    index: np.ndarray,
    query: np.ndarray,
    n_neighbors: int,
    method: Method = "auto",
    random_state: int | None = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``n_neighbors`` nearest rows of ``index`` for each row of ``query`` (Euclidean).

    Parameters
    ----------
    index
        Reference points, ``n x d``.
    query
        Query points, ``m x d``.
    n_neighbors
        Neighbours per query point (at most ``n``).
    method
        ``"exact"`` (scikit-learn), ``"pynndescent"`` (approximate) or ``"auto"`` (exact up
        to ``EXACT_MAX_CELLS`` reference points).
    random_state
        Seed of pynndescent.

    Returns
    -------
    ``(indices, distances)``, both ``m x n_neighbors``, sorted by distance.
    """
    k = min(int(n_neighbors), index.shape[0])
    if k < 1:
        raise ValueError("cross_knn needs at least one reference point and n_neighbors >= 1.")
    if method == "auto":
        method = "exact" if index.shape[0] <= EXACT_MAX_CELLS else "pynndescent"
    if method == "exact":
        from sklearn.neighbors import NearestNeighbors

        dist, idx = NearestNeighbors(n_neighbors=k).fit(index).kneighbors(query)
    elif method == "pynndescent":
        from pynndescent import NNDescent

        nnd = NNDescent(index, n_neighbors=max(k, 15), random_state=random_state)
        idx, dist = nnd.query(query, k=k)
    else:
        raise ValueError(f"unknown method {method!r}")
    return idx.astype(np.int64), dist.astype(np.float32)


def mnn_pairs(
    a: np.ndarray,
    b: np.ndarray,
    n_neighbors: int = 20,
    method: Method = "auto",
    random_state: int | None = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Mutual nearest neighbours between two sets of cells.

    Cell ``i`` of ``a`` and cell ``j`` of ``b`` are a pair when ``j`` is among the
    ``n_neighbors`` nearest ``b`` cells of ``i`` and ``i`` among the nearest ``a`` cells
    of ``j``.

    Parameters
    ----------
    a, b
        Cells x dimensions (same dimensions).
    n_neighbors
        Neighbours searched in each direction.
    method, random_state
        See :func:`cross_knn`.

    Returns
    -------
    ``(rows_a, rows_b)``: the pairs, as two integer arrays of equal length.
    """
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a has {a.shape[1]} dimensions and b {b.shape[1]}.")
    ab, _ = cross_knn(b, a, n_neighbors, method, random_state)  # b-neighbours of a cells
    ba, _ = cross_knn(a, b, n_neighbors, method, random_state)  # a-neighbours of b cells
    nb = b.shape[0]
    code_ab = (np.repeat(np.arange(a.shape[0]), ab.shape[1]) * nb + ab.ravel()).astype(np.int64)
    code_ba = (ba.ravel() * nb + np.repeat(np.arange(nb), ba.shape[1])).astype(np.int64)
    mutual = np.intersect1d(code_ab, code_ba)
    return mutual // nb, mutual % nb


def _cosine_normalize(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def _correct_one(
    ref: np.ndarray,
    new: np.ndarray,
    n_neighbors: int,
    sigma: float,
    n_smooth: int,
    method: Method,
    random_state: int | None,
) -> tuple[np.ndarray, int]:
    """``new`` moved onto ``ref`` by kernel-smoothed MNN correction vectors."""
    ia, ib = mnn_pairs(ref, new, n_neighbors, method, random_state)
    if ia.size == 0:
        return new.copy(), 0
    # average correction vector of each new cell that has MNN partners
    # (mean of its partners in ref) - itself, through a sparse averaging matrix: no
    # pairs x features block
    anchors, inverse = np.unique(ib, return_inverse=True)
    counts = np.bincount(inverse).astype(np.float64)
    average = sp.csr_matrix(
        (1.0 / counts[inverse], (inverse, ia)), shape=(anchors.size, ref.shape[0])
    )
    vectors = average @ ref - new[anchors]
    # every new cell: Gaussian-kernel average over its nearest anchor cells
    idx, dist = cross_knn(new[anchors], new, n_smooth, method, random_state)
    logw = -(dist.astype(np.float64) ** 2) / sigma
    logw -= logw.max(axis=1, keepdims=True)
    w = np.exp(logw)
    w /= w.sum(axis=1, keepdims=True)
    # the kernel as a sparse cells x anchors matrix: no cells x n_smooth x genes block
    rows = np.repeat(np.arange(new.shape[0]), idx.shape[1])
    kernel = sp.csr_matrix((w.ravel(), (rows, idx.ravel())), shape=(new.shape[0], anchors.size))
    return new + kernel @ vectors, int(ia.size)


def mnn_correct(
    *datas: np.ndarray,
    n_neighbors: int = 20,
    sigma: float = 1.0,
    n_smooth: int = 50,
    cos_norm: bool = True,
    method: Method = "auto",
    random_state: int | None = 0,
) -> tuple[list[np.ndarray], list[int]]:
    """Correct batches onto each other with mutual nearest neighbours.

    Haghverdi et al.'s MNN correction, vectorised: batches are merged in order (the
    first is the reference; each next one is corrected onto all cells merged so far).
    For each MNN pair the correction vector is ``ref_i - new_j``; the vectors of a new
    cell's pairs are averaged, and every new cell moves by the Gaussian-kernel weighted
    mean (``exp(-d^2 / sigma)``) of the vectors of its ``n_smooth`` nearest paired cells.
    Unlike the published all-pairs kernel, only the nearest paired cells count, so
    memory is linear in the number of cells.

    Parameters
    ----------
    *datas
        Two or more dense cells x features matrices with the same features.
    n_neighbors
        Neighbours per direction when finding pairs (20).
    sigma
        Bandwidth of the Gaussian kernel, on squared distances (1, for cosine-normalised
        data as in mnnpy).
    n_smooth
        Paired cells averaged per cell.
    cos_norm
        L2-normalise every cell first (mnnpy's ``cos_norm_in``; the output is then on
        that scale).
    method, random_state
        See :func:`cross_knn`.

    Returns
    -------
    The corrected matrices (float64, in the input order) and the number of MNN pairs
    found at each merge.
    """
    if len(datas) < 2:
        raise ValueError("mnn_correct needs two or more batches.")
    mats = [np.asarray(d, dtype=np.float64) for d in datas]
    if len({m.shape[1] for m in mats}) != 1:
        raise ValueError("All batches must have the same features (columns).")
    if any(m.shape[0] == 0 for m in mats):
        raise ValueError("Every batch needs at least one cell.")
    if cos_norm:
        mats = [_cosine_normalize(m) for m in mats]
    out = [mats[0]]
    merged = mats[0]
    n_pairs = []
    for new in mats[1:]:
        corrected, n = _correct_one(merged, new, n_neighbors, sigma, n_smooth, method, random_state)
        out.append(corrected)
        n_pairs.append(n)
        merged = np.vstack([merged, corrected])
    return out, n_pairs


def _scaled_blocks(x: sp.csr_matrix, genes: np.ndarray | None, max_value: float, block: int = 512):
    """Blocks of columns of ``x`` after normalize_total(1e4) -> log1p -> clipped z-score.

    Yields ``(columns, dense block)``; at most ``cells x block`` values are dense at a time.
    """
    y = sp.csc_matrix(log_normalize_rows(x, 1e4))
    genes = np.arange(y.shape[1]) if genes is None else np.asarray(genes)
    for start in range(0, genes.size, block):
        cols = slice(start, min(start + block, genes.size))
        d = y[:, genes[cols]].toarray()
        std = d.std(axis=0)
        d = (d - d.mean(axis=0)) / np.where(std > 0, std, 1.0)
        yield cols, np.clip(d, -max_value, max_value)


def _lognorm_scaled(
    x: sp.csr_matrix, max_value: float = 10.0, genes: np.ndarray | None = None
) -> np.ndarray:
    """normalize_total(1e4) -> log1p -> per-gene z-score clipped at ``max_value`` (dense).

    Only the columns ``genes`` (default all) are returned, computed block by block.
    """
    n_genes = x.shape[1] if genes is None else len(genes)
    out = np.empty((x.shape[0], n_genes))
    for cols, d in _scaled_blocks(x, genes, max_value):
        out[:, cols] = d
    return out


def _center_by_group(
    x: np.ndarray, groups: np.ndarray, classes: np.ndarray | None = None
) -> np.ndarray:
    """``x`` with each group's centre taken off its rows (in place).

    The centre is the group's mean, corrected for its composition in ``classes`` (cell
    types, ``-1``: unlabelled) when given (:func:`scmint.model._centres.batch_centres`).
    """
    codes, names = pd.factorize(groups)
    x -= batch_centres(x, codes, len(names), classes)[codes].astype(x.dtype)
    return x


def _scaled_variance(x: sp.csr_matrix, max_value: float = 10.0) -> np.ndarray:
    """Per-gene variance of :func:`_lognorm_scaled` (without the cells x genes matrix)."""
    out = np.empty(x.shape[1])
    for cols, d in _scaled_blocks(x, None, max_value):
        out[cols] = d.var(axis=0)
    return out


def _metacells(
    x: sp.csr_matrix, n_metacells: int, random_state: int | None
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Mean profiles of k-means clusters (on 30 PCs of the log-normalised data)."""
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.decomposition import TruncatedSVD

    y = _lognorm_scaled(x)
    n_comp = max(1, min(30, y.shape[1] - 1, y.shape[0] - 1))
    emb = TruncatedSVD(n_comp, random_state=random_state).fit_transform(y)
    labels = MiniBatchKMeans(
        n_clusters=n_metacells, random_state=random_state, n_init=3
    ).fit_predict(emb)
    onehot = sp.csr_matrix(
        (np.ones(x.shape[0]), (labels, np.arange(x.shape[0]))), shape=(n_metacells, x.shape[0])
    )
    sizes = np.asarray(onehot.sum(axis=1)).ravel()
    keep = sizes > 0
    remap = np.cumsum(keep) - 1
    means = sp.diags(1.0 / np.where(sizes > 0, sizes, 1.0)) @ onehot @ x
    return sp.csr_matrix(means)[keep], remap[labels]


def mnn_prior(
    matrices: Mapping[str, AnnData],
    n_comps: int = 50,
    n_neighbors: int = 20,
    n_top_genes: int = 2000,
    cells_per_metacell: int | None = None,
    layer: str | Mapping[str, str | None] | None = None,
    random_state: int | None = 0,
    batches: Mapping[str, np.ndarray] | None = None,
    labels: Mapping[str, np.ndarray] | None = None,
) -> tuple[dict[str, np.ndarray], dict]:
    """ScCross's common-gene MNN prior: one ``n_comps``-d vector per cell of each modality.

    Each modality is given as a gene-centric cells x genes count matrix (RNA counts, ATAC
    gene activity, ...). On the genes all modalities share: library-size normalisation,
    ``log1p`` and per-gene scaling per modality, the ``n_top_genes`` most variable shared
    genes (summed variance ranks), MNN correction of the modalities onto each other
    (:func:`mnn_correct`), and PCA of all cells together.

    Parameters
    ----------
    matrices
        ``{modality: AnnData}`` of raw gene-centric counts (two or more).
    n_comps
        Dimension of the prior (50).
    n_neighbors
        Neighbours for the MNN pairs (20).
    n_top_genes
        Shared genes kept.
    cells_per_metacell
        For large data (scCross's atlas mode): aggregate each modality's cells into
        k-means metacells of about this many cells, compute the prior on the metacell
        mean profiles, and give each cell its metacell's prior. ``None``: every cell.
    layer
        Layer holding the counts (one name or ``{modality: name}``); ``None``: ``X``.
    random_state
        Seed of the neighbour search, metacells and PCA.
    batches
        ``{modality: batch label of each cell}``: each batch's mean is taken off the
        scaled genes within each modality before the MNN correction, so that the prior
        does not carry the batches' shifts (a scmint extension for ``batch_key``; not
        with metacells, whose profiles mix batches). ``None``: as published.
    labels
        With ``batches``: ``{modality: cell-type class code of each cell}`` (``-1``:
        unlabelled), so that the batch centres are corrected for each batch's
        cell-type composition (:mod:`scmint.model._centres`); ``None``: plain means.

    Returns
    -------
    ``{modality: cells x n_comps float32}`` in the order of each AnnData's cells, and a
    dict of diagnostics (shared genes, MNN pairs per merge, metacells).
    """
    from sklearn.decomposition import PCA

    names = list(matrices)
    if len(names) < 2:
        raise ValueError("The MNN prior needs gene-centric matrices of two or more modalities.")
    common = pd.Index(matrices[names[0]].var_names)
    for m in names[1:]:
        common = common.intersection(pd.Index(matrices[m].var_names), sort=False)
    if len(common) < 10:
        raise ValueError(
            f"The gene-centric matrices share {len(common)} genes; the MNN prior needs at "
            "least 10 (e.g. RNA genes and ATAC gene activity, see scmint.pp.gene_activity)."
        )
    layers = layer if isinstance(layer, Mapping) else dict.fromkeys(names, layer)
    counts, assign = {}, {}
    for m in names:
        a = matrices[m]
        x = a.layers[layers[m]] if layers.get(m) else a.X
        x = to_csr(as_float_matrix(x))[:, a.var_names.get_indexer(common)]
        if cells_per_metacell is not None and x.shape[0] > 2 * cells_per_metacell:
            x, assign[m] = _metacells(x, ceil(x.shape[0] / cells_per_metacell), random_state)
        else:
            assign[m] = np.arange(x.shape[0])
        counts[m] = x
    genes = None
    if len(common) > n_top_genes:
        rank = sum(
            pd.Series(_scaled_variance(counts[m])).rank(ascending=False).to_numpy() for m in names
        )
        genes = np.sort(np.argsort(rank, kind="stable")[:n_top_genes])
    scaled = {m: _lognorm_scaled(counts[m], genes=genes) for m in names}
    if batches is not None and cells_per_metacell is None:
        for m in names:
            classes = None if labels is None else np.asarray(labels[m])
            scaled[m] = _center_by_group(scaled[m], np.asarray(batches[m]), classes)
    corrected, n_pairs = mnn_correct(
        *(scaled[m] for m in names), n_neighbors=n_neighbors, random_state=random_state
    )
    stacked = np.vstack(corrected)
    n_comp = int(min(n_comps, stacked.shape[1], stacked.shape[0] - 1))
    emb = PCA(n_components=n_comp, random_state=random_state).fit_transform(stacked)
    if n_comp < n_comps:
        emb = np.hstack([emb, np.zeros((emb.shape[0], n_comps - n_comp))])
    out, start = {}, 0
    for m, c in zip(names, corrected, strict=True):
        out[m] = emb[start : start + c.shape[0]][assign[m]].astype(np.float32)
        start += c.shape[0]
    info = {
        "n_shared_genes": int(len(common)),
        "n_genes_used": int(stacked.shape[1]),
        "n_mnn_pairs": n_pairs,
        "n_units": {m: int(counts[m].shape[0]) for m in names},
    }
    return out, info


def common_gene_names(var_names: Sequence[pd.Index]) -> pd.Index:
    """Feature names shared by all the given indices (in the order of the first)."""
    common = pd.Index(var_names[0])
    for v in var_names[1:]:
        common = common.intersection(pd.Index(v), sort=False)
    return common
