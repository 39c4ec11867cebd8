"""Cross-modal alignment metrics: FOSCTTM, matching score, recall@k, label transfer.

All functions take the embeddings of two modalities, ``z_a`` and ``z_b`` (cells x
dimensions, same dimensions). Paired metrics (FOSCTTM, matching score, recall@k)
assume that row ``i`` of ``z_a`` and row ``i`` of ``z_b`` were measured in the same
cell. Memory is linear in the number of cells: distances are computed in row
chunks and neighbourhoods are stored as sparse matrices, never as a dense
cells x cells matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import sparse

Direction = Literal["both", "a_to_b", "b_to_a"]
_DIRECTIONS = ("both", "a_to_b", "b_to_a")

#: Target size, in matrix entries, of one chunk of distances (2**23 float64 = 64 MiB).
_CHUNK_ENTRIES = 2**23


# --------------------------------------------------------------------------- validation


def _check_embedding(z: Any, name: str) -> np.ndarray:
    """Return ``z`` as a finite 2-D float64 array or raise a clear error."""
    if hasattr(z, "detach"):  # torch tensor
        z = z.detach().cpu().numpy()
    if sparse.issparse(z):
        raise TypeError(f"{name} must be a dense array (cells x dimensions), got a sparse matrix.")
    try:
        z = np.asarray(z, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a numeric array (cells x dimensions): {err}") from None
    if z.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array (cells x dimensions), got shape {z.shape}. "
            "Reshape a single dimension with z.reshape(-1, 1)."
        )
    if z.shape[0] == 0 or z.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {z.shape}).")
    bad = ~np.isfinite(z)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise ValueError(
            f"{name} contains NaN or infinite values in {rows.size} of {z.shape[0]} cells "
            f"(first rows: {rows[:5].tolist()})."
        )
    return z


def _check_pair(z_a: Any, z_b: Any, paired: bool) -> tuple[np.ndarray, np.ndarray]:
    """Validate two embeddings; with ``paired`` the rows must be true pairs."""
    z_a = _check_embedding(z_a, "z_a")
    z_b = _check_embedding(z_b, "z_b")
    if z_a.shape[1] != z_b.shape[1]:
        raise ValueError(
            "z_a and z_b must have the same number of columns (embedding dimensions): "
            f"got {z_a.shape[1]} and {z_b.shape[1]}."
        )
    if paired:
        if z_a.shape[0] != z_b.shape[0]:
            raise ValueError(
                "z_a and z_b must have the same number of rows for a paired metric "
                f"(row i of each is the same cell): got {z_a.shape[0]} and {z_b.shape[0]}."
            )
        if z_a.shape[0] < 2:
            raise ValueError(f"A paired metric needs at least 2 cells, got {z_a.shape[0]}.")
    return z_a, z_b


def _check_k(k: Any, n: int, what: str = "cells", name: str = "k") -> int:
    """``k`` must be an integer with ``1 <= k < n``."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise TypeError(f"{name} must be an integer, got {k!r}.")
    k = int(k)
    if k < 1 or k >= n:
        raise ValueError(
            f"{name} must be at least 1 and smaller than the number of {what} ({n}), got {k}."
        )
    return k


def _check_direction(direction: str) -> str:
    if direction not in _DIRECTIONS:
        raise ValueError(
            f"direction must be one of {', '.join(repr(d) for d in _DIRECTIONS)}, "
            f"got {direction!r}."
        )
    return direction


def _label_array(labels: Any, n: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Labels as an object array plus a mask of missing (NaN/None) entries."""
    if isinstance(labels, str) or labels is None:
        raise TypeError(f"{name} must be an array-like of labels, got {labels!r}.")
    values = np.asarray(labels, dtype=object)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {values.shape}.")
    if values.shape[0] != n:
        raise ValueError(f"{name} has {values.shape[0]} entries but the embedding has {n} cells.")
    missing = np.asarray(pd.isna(values), dtype=bool)
    return values, missing


def _encode(*arrays: np.ndarray) -> list[np.ndarray]:
    """Integer-encode several label arrays jointly (same label -> same code)."""
    codes, _ = pd.factorize(np.concatenate(arrays))
    out, start = [], 0
    for arr in arrays:
        out.append(codes[start : start + arr.shape[0]])
        start += arr.shape[0]
    return out


# --------------------------------------------------------------------------- FOSCTTM


def _default_chunk(n: int, chunk_size: int | None) -> int:
    if chunk_size is None:
        return int(max(1, min(1024, _CHUNK_ENTRIES // max(n, 1))))
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int | np.integer):
        raise TypeError(f"chunk_size must be a positive integer or None, got {chunk_size!r}.")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size}.")
    return int(chunk_size)


def _closer_counts(query: np.ndarray, ref: np.ndarray, chunk_size: int) -> np.ndarray:
    """For each i, count j != i with ``||query_i - ref_j|| < ||query_i - ref_i||``.

    Distances are compared within a row only, so the squared norm of the query
    row (a constant per row) is dropped: the compared quantity is
    ``||ref_j||^2 - 2 <query_i, ref_j>``. Only ``chunk_size x n`` entries exist at
    any time. The true partner's own entry is never strictly smaller than itself,
    and exact duplicates of the partner tie with it and are not counted.
    """
    n = query.shape[0]
    chunk_size = min(chunk_size, n)
    ref_t = np.ascontiguousarray(ref.T)
    ref_sq = np.einsum("ij,ij->i", ref, ref)
    counts = np.empty(n, dtype=np.int64)
    # one distance buffer and one mask buffer, reused by every chunk
    buf = np.empty((chunk_size, n), dtype=np.float64)
    closer = np.empty((chunk_size, n), dtype=bool)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        d, mask = buf[: stop - start], closer[: stop - start]
        np.matmul(query[start:stop], ref_t, out=d)
        d *= -2.0
        d += ref_sq
        true_d = d[np.arange(stop - start), np.arange(start, stop)]
        np.less(d, true_d[:, None], out=mask)
        counts[start:stop] = np.count_nonzero(mask, axis=1)
    return counts


def _directional_counts(
    z_a: np.ndarray, z_b: np.ndarray, direction: str, chunk_size: int
) -> list[np.ndarray]:
    """:func:`_closer_counts` with A cells as queries and/or B cells, as ``direction`` asks."""
    counts = []
    if direction in ("both", "a_to_b"):
        counts.append(_closer_counts(z_a, z_b, chunk_size))
    if direction in ("both", "b_to_a"):
        counts.append(_closer_counts(z_b, z_a, chunk_size))
    return counts


def _foscttm_from_counts(counts: list[np.ndarray], n: int) -> float:
    """Mean over directions of the mean closer count, divided by ``n - 1``."""
    return float(np.mean([c.mean() / (n - 1) for c in counts]))


def _recall_from_counts(counts: list[np.ndarray], k: int) -> float:
    """Mean over directions of the fraction of cells with fewer than ``k`` closer cells."""
    return float(np.mean([np.mean(c < k) for c in counts]))


def foscttm_per_cell(
    z_a: Any, z_b: Any, chunk_size: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell fraction of samples closer than the true match (FOSCTTM).

    Parameters
    ----------
    z_a, z_b
        Embeddings of modality A and B, cells x dimensions; row ``i`` of both is
        the same cell.
    chunk_size
        Rows of distances computed at a time (``chunk_size x n_cells`` entries in
        memory). ``None`` picks at most 1024 rows and about 64 MiB.

    Returns
    -------
    a_to_b
        For each cell ``i`` of A, the fraction of the *other* B cells
        (``j != i``) that are strictly closer to ``z_a[i]`` than its partner
        ``z_b[i]``.
    b_to_a
        For each cell ``i`` of B, the fraction of the other A cells strictly
        closer to ``z_b[i]`` than ``z_a[i]``.

    Notes
    -----
    Euclidean distance. Counts are divided by ``N - 1`` (the number of cells other
    than the partner), as in SCOT (Demetci et al. 2022), so perfect alignment
    gives 0, the worst possible value is 1 and a random embedding gives 0.5 in
    expectation. Eq. 18 of the CLUE paper (and scglue) divide by ``N``; multiply
    by ``(N - 1) / N`` to get those values.
    """
    z_a, z_b = _check_pair(z_a, z_b, paired=True)
    n = z_a.shape[0]
    a_to_b, b_to_a = _directional_counts(z_a, z_b, "both", _default_chunk(n, chunk_size))
    return a_to_b / (n - 1), b_to_a / (n - 1)


def foscttm(
    z_a: Any, z_b: Any, direction: Direction = "both", chunk_size: int | None = None
) -> float:
    """Fraction of samples closer than the true match (FOSCTTM), lower is better.

    For each cell, the fraction of cells of the other modality that lie strictly
    closer (Euclidean) than its true partner, averaged over cells (eq. 18 of the
    CLUE paper, Tu et al. 2022).

    Parameters
    ----------
    z_a, z_b
        Embeddings of modality A and B, cells x dimensions; row ``i`` of both is
        the same cell.
    direction
        ``"a_to_b"``: A cells are the queries, B cells the candidates;
        ``"b_to_a"``: the reverse; ``"both"``: the mean of the two.
    chunk_size
        Rows of distances computed at a time; memory is linear in cells.

    Returns
    -------
    float
        0 for perfect alignment, about 0.5 for a random one, at most 1.

    Notes
    -----
    Normalised by ``N - 1`` (see :func:`foscttm_per_cell`).

    Examples
    --------
    >>> import numpy as np
    >>> z = np.random.default_rng(0).normal(size=(100, 5))
    >>> foscttm(z, z)
    0.0
    """
    _check_direction(direction)
    z_a, z_b = _check_pair(z_a, z_b, paired=True)
    n = z_a.shape[0]
    counts = _directional_counts(z_a, z_b, direction, _default_chunk(n, chunk_size))
    return _foscttm_from_counts(counts, n)


def recall_at_k(
    z_a: Any, z_b: Any, k: int = 10, direction: Direction = "both", chunk_size: int | None = None
) -> float:
    """Fraction of cells whose true partner is among their ``k`` nearest cross-modal neighbours.

    Parameters
    ----------
    z_a, z_b
        Embeddings of modality A and B, cells x dimensions; row ``i`` of both is
        the same cell.
    k
        Neighbours of the other modality searched (``1 <= k < n_cells``).
    direction
        ``"a_to_b"``: A cells search among B cells; ``"b_to_a"``: the reverse;
        ``"both"``: the mean of the two.
    chunk_size
        Rows of distances computed at a time; memory is linear in cells.

    Returns
    -------
    float
        In [0, 1], higher is better; 1 for perfect alignment, about ``k / n`` for
        a random one.

    Notes
    -----
    A partner counts as found when fewer than ``k`` other cells are strictly
    closer (Euclidean) than it, i.e. ties at the k-th place count in its favour.
    """
    _check_direction(direction)
    z_a, z_b = _check_pair(z_a, z_b, paired=True)
    n = z_a.shape[0]
    k = _check_k(k, n)
    counts = _directional_counts(z_a, z_b, direction, _default_chunk(n, chunk_size))
    return _recall_from_counts(counts, k)


# --------------------------------------------------------------------------- matching score


def _knn_indicator(query: np.ndarray, ref: np.ndarray, k: int) -> sparse.csr_matrix:
    """Sparse 0/1 matrix (queries x refs) marking each query's ``k`` nearest refs."""
    from sklearn.neighbors import NearestNeighbors

    idx = NearestNeighbors(n_neighbors=k).fit(ref).kneighbors(query, return_distance=False)
    n_q = query.shape[0]
    indptr = np.arange(0, n_q * k + 1, k)
    data = np.ones(n_q * k, dtype=np.float64)
    return sparse.csr_matrix((data, idx.ravel(), indptr), shape=(n_q, ref.shape[0]))


def matching_matrix(z_a: Any, z_b: Any, k: int = 10) -> sparse.csr_matrix:
    """Cross-modal Jaccard matching matrix of eq. 16 of the CLUE paper (sparse).

    ``M[i, j]`` between cell ``i`` of A and cell ``j`` of B is

    ``|(NN_iB & NN_jB) | (NN_jA & NN_iA)| / |(NN_iB | NN_jB) | (NN_jA | NN_iA)|``

    where ``NN_iB`` are the ``k`` nearest B cells of A cell ``i``, ``NN_jB`` the
    ``k`` nearest B cells of B cell ``j`` (itself included), ``NN_jA`` the ``k``
    nearest A cells of B cell ``j`` and ``NN_iA`` the ``k`` nearest A cells of A
    cell ``i`` (itself included).

    Parameters
    ----------
    z_a, z_b
        Embeddings of modality A and B, cells x dimensions (same dimensions).
    k
        Size of each neighbourhood (``1 <= k < n_cells`` of either modality).

    Returns
    -------
    scipy.sparse.csr_matrix
        ``n_a x n_b``, non-zero only where the neighbourhoods overlap.

    Notes
    -----
    The B-cell and A-cell parts are disjoint, so with intersection counts
    ``I_B = |NN_iB & NN_jB|`` and ``I_A = |NN_jA & NN_iA|`` and unions of
    ``2k - I`` each, ``M = (I_B + I_A) / (4k - I_B - I_A)``. Intersections are
    sparse products of kNN indicator matrices, so memory is linear in cells
    (times the average neighbourhood overlap).
    """
    z_a, z_b = _check_pair(z_a, z_b, paired=False)
    k = _check_k(k, min(z_a.shape[0], z_b.shape[0]), what="cells of the smaller modality")
    cross_ab = _knn_indicator(z_a, z_b, k)  # row i: NN_iB
    cross_ba = _knn_indicator(z_b, z_a, k)  # row j: NN_jA
    self_a = _knn_indicator(z_a, z_a, k)  # row i: NN_iA
    self_b = _knn_indicator(z_b, z_b, k)  # row j: NN_jB
    inter = (cross_ab @ self_b.T + self_a @ cross_ba.T).tocsr()
    inter.sum_duplicates()
    inter.eliminate_zeros()
    inter.data = inter.data / (4.0 * k - inter.data)
    return inter


def matching_score_from_matrix(matching_matrix: Any) -> float:
    """Matching score of a cells x cells matching matrix (NeurIPS 2021 competition).

    Each row is normalised to sum to 1; the score is the mean of the diagonal,
    i.e. the average confidence placed on the true partner (eq. 17 of the CLUE
    paper).

    Parameters
    ----------
    matching_matrix
        Square, non-negative matrix (dense array or scipy sparse): rows are cells
        of modality A, columns cells of modality B, and row ``i`` / column ``i``
        are the same cell.

    Returns
    -------
    float
        In [0, 1], higher is better. Rows that sum to 0 contribute 0.
    """
    m = matching_matrix
    if sparse.issparse(m):
        m = sparse.csr_matrix(m, dtype=np.float64)
        values = m.data
    else:
        m = np.asarray(m, dtype=np.float64)
        values = m
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(
            "The matching matrix must be square (cells of A x cells of B, row i and column i "
            f"the same cell), got shape {m.shape}."
        )
    if m.shape[0] == 0:
        raise ValueError("The matching matrix is empty.")
    if not np.all(np.isfinite(values)):
        raise ValueError("The matching matrix contains NaN or infinite values.")
    if np.any(values < 0):
        raise ValueError("The matching matrix must be non-negative.")
    row_sums = np.asarray(m.sum(axis=1)).ravel()
    diag = np.asarray(m.diagonal()).ravel()
    ratio = np.divide(diag, row_sums, out=np.zeros_like(diag), where=row_sums > 0)
    return float(ratio.mean())


def matching_score(z_a: Any, z_b: Any, k: int = 10) -> float:
    """Jaccard-kNN matching score (eqs. 16-17 of the CLUE paper; NeurIPS 2021).

    Builds the sparse matching matrix of :func:`matching_matrix`, normalises each
    row to sum to 1 and averages the entries of the true pairs (the diagonal).

    Parameters
    ----------
    z_a, z_b
        Embeddings of modality A and B, cells x dimensions; row ``i`` of both is
        the same cell.
    k
        Size of each nearest-neighbour set (``1 <= k < n_cells``).

    Returns
    -------
    float
        In [0, 1], higher is better; 1 only if every cell's matching row puts all
        its weight on the true partner, close to 0 for a random embedding.
    """
    z_a, z_b = _check_pair(z_a, z_b, paired=True)
    return matching_score_from_matrix(matching_matrix(z_a, z_b, k=k))


# --------------------------------------------------------------------------- label transfer


def _transfer(
    z_ref: np.ndarray,
    codes_ref: np.ndarray,
    z_query: np.ndarray,
    codes_query: np.ndarray,
    k: int,
    what: str,
) -> float:
    from sklearn.neighbors import KNeighborsClassifier

    fit = codes_ref >= 0
    target = codes_query >= 0
    n_fit = int(fit.sum())
    if not target.any():
        raise ValueError(f"No labelled target cells for {what}: all labels are missing.")
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise TypeError(f"k must be an integer, got {k!r}.")
    if k < 1 or k > n_fit:
        raise ValueError(
            f"k must be at least 1 and at most the number of labelled reference cells "
            f"for {what} ({n_fit}), got {k}."
        )
    clf = KNeighborsClassifier(n_neighbors=k).fit(z_ref[fit], codes_ref[fit])
    pred = clf.predict(z_query[target])
    return float(np.mean(pred == codes_query[target]))


def label_transfer_accuracy(
    z_a: Any,
    labels_a: Sequence[Any] | np.ndarray | pd.Series,
    z_b: Any,
    labels_b: Sequence[Any] | np.ndarray | pd.Series,
    k: int = 5,
    direction: Direction = "both",
) -> float:
    """Accuracy of a k-nearest-neighbour classifier transferring labels across modalities.

    A :class:`~sklearn.neighbors.KNeighborsClassifier` with ``k`` neighbours
    (uniform weights, Euclidean) is fit on one modality's embedding and labels
    and predicts the other modality's cells.

    Parameters
    ----------
    z_a, z_b
        Embeddings of modality A and B, cells x dimensions (same dimensions; the
        cells need not be paired and the counts may differ).
    labels_a, labels_b
        Cell labels (strings, categoricals, numbers) for the rows of ``z_a`` and
        ``z_b``. Cells whose label is NaN/None are neither used for fitting nor
        scored.
    k
        Neighbours of the classifier; at most the number of labelled reference
        cells.
    direction
        ``"a_to_b"``: fit on A, predict B; ``"b_to_a"``: fit on B, predict A;
        ``"both"``: the mean of the two accuracies.

    Returns
    -------
    float
        Fraction of labelled target cells predicted correctly. A target label
        absent from the reference is always wrong.
    """
    _check_direction(direction)
    z_a, z_b = _check_pair(z_a, z_b, paired=False)
    lab_a, miss_a = _label_array(labels_a, z_a.shape[0], "labels_a")
    lab_b, miss_b = _label_array(labels_b, z_b.shape[0], "labels_b")
    codes_a, codes_b = _encode(lab_a, lab_b)
    codes_a = np.where(miss_a, -1, codes_a)
    codes_b = np.where(miss_b, -1, codes_b)
    values = []
    if direction in ("both", "a_to_b"):
        values.append(_transfer(z_a, codes_a, z_b, codes_b, k, "a_to_b"))
    if direction in ("both", "b_to_a"):
        values.append(_transfer(z_b, codes_b, z_a, codes_a, k, "b_to_a"))
    return float(np.mean(values))
