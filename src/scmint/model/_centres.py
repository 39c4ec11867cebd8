"""Batch centres of model inputs, corrected for each batch's cell-type composition.

A batch's centre is the mean input of its cells, taken off those cells' inputs so that
per-feature shifts between batches do not reach the encoders. A plain batch mean also
holds the batch's cell-type composition: a donor rich in one type would be shifted away
from it. With labels, a batch's centre is instead the overall mean plus the batch's
effect in the two-way model ``x = alpha_type + beta_batch + noise`` (ComBat's location
model with the cell type as covariate), fitted by least squares from marginal sums
(:func:`additive_batch_effects`), so one pass over the data suffices.

Used by every model that centres batches: :meth:`MultiModalMixin._fit_input_centers
<scmint.model._base.MultiModalMixin._fit_input_centers>` (CLUE, CONAAE, MINNET; scaled
inputs in blocks) and SCCROSS (its reduced inputs and the MNN prior's scaled genes).
"""

from __future__ import annotations

import numpy as np
import torch

from scmint.data import row_batches
from scmint.nn._blocks import FeatureScalerLayer

#: Rows per block when the centres of a layer's scaled inputs are summed.
BLOCK_ROWS = 1024


class CentreSums:
    """Sums that batch centres are computed from, accumulated block by block.

    Parameters
    ----------
    n_batch
        Number of batches (codes ``0 .. n_batch - 1``).
    width
        Number of features.
    classes
        Cell-type class of every row that will be added (``-1``: unlabelled), in the
        order of the rows' positions; ``None``: plain batch means.
    device
        Where the sums live.
    """

    def __init__(
        self,
        n_batch: int,
        width: int,
        classes: np.ndarray | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        self.n_batch = int(n_batch)
        self.n_class = 0 if classes is None else int(np.max(classes, initial=-1)) + 1
        f64 = {"dtype": torch.float64, "device": device}
        self.total = torch.zeros(self.n_batch, width, **f64)
        self.counts = torch.zeros(self.n_batch, **f64)
        if self.n_class:
            self.classes = torch.as_tensor(np.asarray(classes, dtype=np.int64), device=device)
            self.by_class = torch.zeros(self.n_class, width, **f64)
            self.labelled_total = torch.zeros(self.n_batch, width, **f64)
            self.pairs = torch.zeros(self.n_batch, self.n_class, **f64)

    def add(self, values: torch.Tensor, batch: torch.Tensor, rows: slice | None = None) -> None:
        """Add the ``values`` and batch codes of the rows at ``rows`` (all rows if None)."""
        values = values.double()
        batch = batch.long()
        self.total.index_add_(0, batch, values)
        self.counts += torch.bincount(batch, minlength=self.n_batch).to(self.counts.dtype)
        if not self.n_class:
            return
        cls = self.classes if rows is None else self.classes[rows]
        keep = cls >= 0
        self.by_class.index_add_(0, cls[keep], values[keep])
        self.labelled_total.index_add_(0, batch[keep], values[keep])
        ones = torch.ones(int(keep.sum()), dtype=self.pairs.dtype, device=self.pairs.device)
        self.pairs.index_put_((batch[keep], cls[keep]), ones, accumulate=True)

    def centres(self) -> torch.Tensor:
        """``(n_batch, width)`` centres; a batch without rows gets the overall mean.

        With classes, a batch with labelled rows gets the overall mean plus its additive
        effect (:func:`additive_batch_effects`); one without labelled rows its plain mean.
        """
        overall = self.total.sum(0) / self.counts.sum().clamp(min=1.0)
        plain = self.total / self.counts.clamp(min=1.0)[:, None]
        centres = torch.where(self.counts[:, None] > 0, plain, overall)
        if not self.n_class:
            return centres
        shift = additive_batch_effects(self.by_class, self.labelled_total, self.pairs)
        return torch.where(self.pairs.sum(1, keepdim=True) > 0, overall + shift, centres)


def batch_centres(
    values: np.ndarray, batch: np.ndarray, n_batch: int, classes: np.ndarray | None = None
) -> np.ndarray:
    """``(n_batch, n_features)`` centres of the rows of a dense array (see the module).

    Parameters
    ----------
    values
        ``(n, n_features)`` rows.
    batch
        Batch code of each row.
    n_batch
        Number of batches.
    classes
        Cell-type class of each row (``-1``: unlabelled); ``None``: plain batch means.
    """
    sums = CentreSums(n_batch, values.shape[1], classes)
    sums.add(torch.as_tensor(np.asarray(values)), torch.as_tensor(np.asarray(batch)))
    return sums.centres().numpy()


def layer_batch_centres(
    layer: FeatureScalerLayer,
    x,
    batch: np.ndarray,
    n_batch: int,
    classes: np.ndarray | None = None,
) -> torch.Tensor:
    """``(n_batch, n_features)`` centres of the rows of ``x`` scaled by ``layer``.

    One pass over ``x`` (registered values, dense, sparse or on disk) in blocks.
    """
    device = layer.batch_center.device
    sums = CentreSums(n_batch, layer.batch_center.shape[1], classes, device)
    batch_t = torch.as_tensor(batch, device=device)
    for rows, block in row_batches(x, BLOCK_ROWS, device):
        sums.add(layer.scale(block), batch_t[rows], rows)
    return sums.centres()


def additive_batch_effects(
    class_sums: torch.Tensor,
    batch_sums: torch.Tensor,
    counts: torch.Tensor,
    max_iter: int = 500,
    tol: float = 1e-7,
) -> torch.Tensor:
    """Batch effects ``beta`` of the two-way model ``x = alpha_type + beta_batch + noise``.

    Least squares from the marginal sums alone (``class_sums`` ``(C, F)``,
    ``batch_sums`` ``(B, F)`` over the labelled cells) and the ``(B, C)`` cell counts,
    by alternating the normal equations ``alpha = (S_c - N^T beta) / N_c`` and
    ``beta = (L_b - N alpha) / N_b`` (Gauss-Seidel; ComBat's location model with the
    cell type as covariate). ``beta`` is centred to a zero mean over the labelled cells.
    """
    n_class = counts.sum(0).clamp(min=1.0)[:, None]
    n_batch = counts.sum(1).clamp(min=1.0)[:, None]
    beta = torch.zeros_like(batch_sums)
    for _ in range(max_iter):
        alpha = (class_sums - counts.T @ beta) / n_class
        new = (batch_sums - counts @ alpha) / n_batch
        done = bool((new - beta).abs().max() < tol)
        beta = new
        if done:
            break
    weights = counts.sum(1)
    return beta - (weights @ beta) / weights.sum().clamp(min=1.0)
