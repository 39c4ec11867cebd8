"""Cross-modal translation quality: correlation of predicted with measured profiles.

A model that translates (predicts modality ``b`` of a cell from its modality ``a``)
is scored by comparing each prediction with the measured ``b`` profile of the same
cell, in one common space: ``log1p(x / rowsum * 1e4)`` of counts (or of a
count-scale prediction), or values that are already in that space. Two numbers
summarise it: the mean over features of the Pearson correlation across cells
(does the prediction rank cells right, feature by feature?) and the mean over cells
of the Pearson correlation across features (does each predicted profile look like
the cell's measured one?). Memory is linear: rows are processed in chunks, and
per-feature moments are merged chunk by chunk (Chan et al.'s pairwise update), so
neither a cells x cells nor a full dense copy of a sparse input is ever built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import sparse

from scmint.pp._utils import log_normalize_rows

Space = Literal["counts", "lognorm"]
_SPACES = ("counts", "lognorm")

#: Target size, in matrix entries, of one dense chunk (2**21 float64 = 16 MiB).
_CHUNK_ENTRIES = 2**21


@dataclass
class TranslationCorrelation:
    """Per-feature and per-cell Pearson correlations of predicted and measured profiles.

    Attributes
    ----------
    per_feature
        One value per feature: correlation across cells; NaN where the predicted or
        measured feature is constant over the cells (correlation undefined).
    per_cell
        One value per cell: correlation across features; NaN where the predicted or
        measured profile is constant.
    """

    per_feature: np.ndarray
    per_cell: np.ndarray

    @property
    def feature_corr(self) -> float:
        """Mean of the defined per-feature correlations (NaN when none is defined)."""
        return _nanmean(self.per_feature)

    @property
    def cell_corr(self) -> float:
        """Mean of the defined per-cell correlations (NaN when none is defined)."""
        return _nanmean(self.per_cell)


def _nanmean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


def _check_space(space: str, name: str) -> str:
    if space not in _SPACES:
        raise ValueError(f"{name} must be one of {_SPACES}, got {space!r}.")
    return space


def log_normalize(x: Any, target_sum: float = 1e4) -> np.ndarray:
    """``log1p(x / rowsum * target_sum)`` of a block of rows, as a dense float64 array.

    Parameters
    ----------
    x
        Cells x features, non-negative (dense or sparse); counts or count-scale means.
    target_sum
        Total each row is scaled to before ``log1p``.

    Returns
    -------
    numpy.ndarray
        The normalised rows; rows summing to zero stay all-zero.
    """
    return log_normalize_rows(_dense_rows(x), target_sum, copy=False)


def _dense_rows(x: Any) -> np.ndarray:
    """A float64 dense copy of a block of rows."""
    if sparse.issparse(x):
        return x.toarray().astype(np.float64, copy=False)
    return np.array(x, dtype=np.float64)


def _to_space(block: Any, space: str, target_sum: float) -> np.ndarray:
    return log_normalize(block, target_sum) if space == "counts" else _dense_rows(block)


def _as_rows(x: Any) -> Any:
    """Sparse input as CSR (fast row slicing); anything else as an array (no copy)."""
    if sparse.issparse(x):
        return sparse.csr_matrix(x)
    if hasattr(x, "to_numpy"):  # pandas DataFrame
        return x.to_numpy()
    return np.asarray(x)


def _row_index(rows: Any, n_rows: int, name: str) -> np.ndarray:
    if rows is None:
        return np.arange(n_rows)
    idx = np.asarray(rows)
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
        raise TypeError(f"{name} must be a 1-D array of integer row positions.")
    if idx.size and (idx.min() < -n_rows or idx.max() >= n_rows):
        raise IndexError(f"{name} has positions outside the {n_rows} rows.")
    return idx


def _chunk_rows(n_features: int, chunk_size: int | None) -> int:
    if chunk_size is None:
        return int(max(1, _CHUNK_ENTRIES // max(n_features, 1)))
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int | np.integer):
        raise TypeError(f"chunk_size must be a positive integer or None, got {chunk_size!r}.")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size}.")
    return int(chunk_size)


def _row_pearson(p: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of ``p`` with the same row of ``m`` (NaN if constant)."""
    constant = (p.max(axis=1) == p.min(axis=1)) | (m.max(axis=1) == m.min(axis=1))
    pc = p - p.mean(axis=1, keepdims=True)
    mc = m - m.mean(axis=1, keepdims=True)
    num = np.einsum("ij,ij->i", pc, mc)
    den = np.sqrt(np.einsum("ij,ij->i", pc, pc) * np.einsum("ij,ij->i", mc, mc))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = num / den
    r[constant | ~(den > 0)] = np.nan
    return np.clip(r, -1.0, 1.0)


class _FeatureMoments:
    """Per-feature means, sums of squares and co-moments merged over row chunks."""

    def __init__(self, n_features: int) -> None:
        self.n = 0
        self.mean_p = np.zeros(n_features)
        self.mean_m = np.zeros(n_features)
        self.ss_p = np.zeros(n_features)
        self.ss_m = np.zeros(n_features)
        self.cross = np.zeros(n_features)
        self.lo_p = np.full(n_features, np.inf)
        self.hi_p = np.full(n_features, -np.inf)
        self.lo_m = np.full(n_features, np.inf)
        self.hi_m = np.full(n_features, -np.inf)

    def update(self, p: np.ndarray, m: np.ndarray) -> None:
        nb = p.shape[0]
        mp, mm = p.mean(axis=0), m.mean(axis=0)
        dp, dm = p - mp, m - mm
        ss_p, ss_m = np.einsum("ij,ij->j", dp, dp), np.einsum("ij,ij->j", dm, dm)
        cross = np.einsum("ij,ij->j", dp, dm)
        n_new = self.n + nb
        w = self.n * nb / n_new
        delta_p, delta_m = mp - self.mean_p, mm - self.mean_m
        self.ss_p += ss_p + delta_p**2 * w
        self.ss_m += ss_m + delta_m**2 * w
        self.cross += cross + delta_p * delta_m * w
        self.mean_p += delta_p * (nb / n_new)
        self.mean_m += delta_m * (nb / n_new)
        self.n = n_new
        np.minimum(self.lo_p, p.min(axis=0), out=self.lo_p)
        np.maximum(self.hi_p, p.max(axis=0), out=self.hi_p)
        np.minimum(self.lo_m, m.min(axis=0), out=self.lo_m)
        np.maximum(self.hi_m, m.max(axis=0), out=self.hi_m)

    def pearson(self) -> np.ndarray:
        constant = (self.lo_p == self.hi_p) | (self.lo_m == self.hi_m)
        den = np.sqrt(self.ss_p * self.ss_m)
        with np.errstate(invalid="ignore", divide="ignore"):
            r = self.cross / den
        r[constant | ~(den > 0)] = np.nan
        return np.clip(r, -1.0, 1.0)


def translation_correlation(
    predicted: Any,
    measured: Any,
    *,
    predicted_space: Space = "counts",
    measured_space: Space = "counts",
    rows_predicted: Any | None = None,
    rows_measured: Any | None = None,
    target_sum: float = 1e4,
    chunk_size: int | None = None,
) -> TranslationCorrelation:
    """Per-feature and per-cell Pearson correlation of predicted and measured profiles.

    Row ``rows_predicted[i]`` of ``predicted`` and row ``rows_measured[i]`` of
    ``measured`` must be the same cell; both are brought into the space
    ``log1p(x / rowsum * target_sum)`` first (``"counts"``: apply it; ``"lognorm"``:
    already there) and compared feature by feature (across cells) and cell by cell
    (across features).

    Parameters
    ----------
    predicted
        Cells x features predictions (dense, sparse or a read-only broadcast view such
        as ``numpy.broadcast_to(profile, shape)`` for a constant baseline).
    measured
        Cells x features measured profiles (typically sparse counts), same features in
        the same order.
    predicted_space, measured_space
        ``"counts"`` for counts or count-scale means (normalised and logged here),
        ``"lognorm"`` for values already equal to ``log1p(x / rowsum * target_sum)``.
    rows_predicted, rows_measured
        Row positions putting the two into true pairs (default: all rows, in order).
    target_sum
        Row total of the normalisation.
    chunk_size
        Rows densified at a time; ``None``: about 2**21 entries per chunk.

    Returns
    -------
    TranslationCorrelation
        ``per_feature`` (NaN for features constant in either input), ``per_cell``
        (NaN for constant profiles), and their means ``feature_corr`` / ``cell_corr``.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).poisson(2.0, size=(50, 30))
    >>> res = translation_correlation(x, x)
    >>> round(res.feature_corr, 6), round(res.cell_corr, 6)
    (1.0, 1.0)
    """
    _check_space(predicted_space, "predicted_space")
    _check_space(measured_space, "measured_space")
    pred, meas = _as_rows(predicted), _as_rows(measured)
    if pred.ndim != 2 or meas.ndim != 2:
        raise ValueError(
            f"predicted and measured must be 2-D (cells x features), got shapes "
            f"{pred.shape} and {meas.shape}."
        )
    if pred.shape[1] != meas.shape[1]:
        raise ValueError(
            f"predicted has {pred.shape[1]} features but measured has {meas.shape[1]}; "
            "they must be the same features in the same order."
        )
    rp = _row_index(rows_predicted, pred.shape[0], "rows_predicted")
    rm = _row_index(rows_measured, meas.shape[0], "rows_measured")
    if rp.size != rm.size:
        raise ValueError(
            f"{rp.size} predicted rows but {rm.size} measured rows; they must be true pairs."
        )
    if rp.size < 2:
        raise ValueError(f"Need at least 2 cells to correlate, got {rp.size}.")
    step = _chunk_rows(pred.shape[1], chunk_size)
    moments = _FeatureMoments(pred.shape[1])
    per_cell = np.empty(rp.size)
    for start in range(0, rp.size, step):
        stop = min(start + step, rp.size)
        p = _to_space(pred[rp[start:stop]], predicted_space, target_sum)
        m = _to_space(meas[rm[start:stop]], measured_space, target_sum)
        if not (np.isfinite(p).all() and np.isfinite(m).all()):
            raise ValueError(f"Non-finite values in rows {start}..{stop - 1} of the inputs.")
        moments.update(p, m)
        per_cell[start:stop] = _row_pearson(p, m)
    return TranslationCorrelation(per_feature=moments.pearson(), per_cell=per_cell)


def mean_profile(
    x: Any,
    space: Space = "counts",
    *,
    target_sum: float = 1e4,
    chunk_size: int | None = None,
) -> np.ndarray:
    """Mean over cells of profiles in the ``log1p(x / rowsum * target_sum)`` space.

    The prediction of the mean-profile baseline: every cell gets the average
    (normalised, logged) profile of the training cells.

    Parameters
    ----------
    x
        Cells x features (dense or sparse).
    space
        ``"counts"`` (normalised and logged here) or ``"lognorm"`` (already).
    target_sum
        Row total of the normalisation.
    chunk_size
        Rows densified at a time; ``None``: about 2**21 entries per chunk.

    Returns
    -------
    numpy.ndarray
        One float64 value per feature, in the ``"lognorm"`` space.
    """
    _check_space(space, "space")
    rows = _as_rows(x)
    if rows.ndim != 2 or rows.shape[0] == 0:
        raise ValueError(f"x must be a non-empty 2-D array (cells x features), got {rows.shape}.")
    step = _chunk_rows(rows.shape[1], chunk_size)
    total = np.zeros(rows.shape[1])
    for start in range(0, rows.shape[0], step):
        total += _to_space(rows[start : start + step], space, target_sum).sum(axis=0)
    return total / rows.shape[0]


def knn_profiles(
    reference_source: Any,
    reference_target: Any,
    query_source: Any,
    *,
    n_neighbors: int = 10,
    representation: Literal["pca", "lsi"] = "pca",
    n_comps: int = 50,
    target_sum: float = 1e4,
) -> np.ndarray:
    """The kNN translation baseline: each query cell's ``k`` nearest reference cells' mean.

    The reference cells are measured in both modalities (row ``i`` of
    ``reference_source`` and of ``reference_target`` is the same cell). Each query cell
    is placed among the reference cells by its source profile alone, in a
    representation fitted on the reference: ``"pca"`` (:class:`scmint.pp.LogNormPCA`:
    library-size normalisation, log1p, scaling, PCA; RNA or protein) or ``"lsi"``
    (:class:`scmint.pp.TfidfLSI`, peaks); its prediction is the mean
    ``log1p(x / rowsum * target_sum)`` target profile of its ``n_neighbors`` nearest
    reference cells there (Euclidean). A translation model should beat it: it uses no
    model of either modality, only the reference's pairs.

    Parameters
    ----------
    reference_source, reference_target
        Reference cells x source features and x target features (counts; dense or
        sparse), rows paired.
    query_source
        Query cells x source features (counts), in the reference's feature order.
    n_neighbors
        Reference neighbours averaged (``k``).
    representation
        Source representation the neighbours are found in (see above).
    n_comps
        Dimensions of that representation.
    target_sum
        Row total of the normalisation of the target profiles.

    Returns
    -------
    numpy.ndarray
        Query cells x target features, float32, in the ``"lognorm"`` space of
        :func:`translation_correlation`.
    """
    from scmint.pp import LogNormPCA, TfidfLSI, neighbour_mean

    if reference_source.shape[0] != reference_target.shape[0]:
        raise ValueError(
            f"reference_source has {reference_source.shape[0]} cells and reference_target "
            f"{reference_target.shape[0]}; rows must be the same paired cells."
        )
    if query_source.shape[1] != reference_source.shape[1]:
        raise ValueError(
            f"query_source has {query_source.shape[1]} features, the reference "
            f"{reference_source.shape[1]}: give them in the same features."
        )
    if representation not in ("pca", "lsi"):
        raise ValueError(f"representation must be 'pca' or 'lsi', got {representation!r}.")
    n_ref = reference_source.shape[0]
    if not 1 <= int(n_neighbors) <= n_ref:
        raise ValueError(
            f"n_neighbors must be in [1, {n_ref}] (the reference cells), got {n_neighbors}."
        )
    n_comps = max(1, min(int(n_comps), n_ref - 1, reference_source.shape[1] - 1))
    if representation == "pca":
        transform = LogNormPCA(n_comps=n_comps)
    else:
        transform = TfidfLSI(n_comps=n_comps + 1)
    ref_rep = transform.fit_transform(reference_source)
    query_rep = transform.transform(query_source)
    target = sparse.csr_matrix(reference_target, dtype=np.float64)
    sums = np.asarray(target.sum(axis=1)).ravel()
    scale = np.divide(target_sum, sums, out=np.zeros_like(sums), where=sums > 0)
    target = (sparse.diags(scale) @ target).log1p()
    mean = neighbour_mean(query_rep, ref_rep, target, n_neighbors)
    return np.asarray(mean.todense(), dtype=np.float32)
