"""CONAAE's metric-learning losses within a minibatch: batch-hard triplet loss and RBF MMD."""

from __future__ import annotations

import torch


def _pairwise_sq_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances between the rows of ``a`` and ``b`` (non-negative)."""
    d2 = a.pow(2).sum(1, keepdim=True) + b.pow(2).sum(1).unsqueeze(0) - 2.0 * a @ b.T
    return d2.clamp_min(0.0)


def batch_hard_triplet_loss(
    z: torch.Tensor,
    labels: torch.Tensor,
    margin: float = 0.3,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Batch-hard triplet loss (Hermans et al.) over the rows of one minibatch.

    For every anchor row ``a``, the hardest positive ``p`` is the farthest row with the
    same label (the anchor itself counts, at distance 0, so an anchor without another
    row of its label still pushes its nearest negative beyond the margin), and the
    hardest negative ``n`` the nearest row with a different label::

        L = mean_a max(0, d(a, p) - d(a, n) + margin)

    with Euclidean distances. Con-AAE applies it to the stacked latent codes of all
    modalities with cell-type (or batch) labels, margin 0.3 (PyTorch's
    ``MarginRankingLoss``). Only the minibatch's ``n x n`` distances are formed.

    Parameters
    ----------
    z
        Embeddings, ``(n, d)``.
    labels
        Integer label of each row, ``(n,)``.
    margin
        Margin between positive and negative distances.
    valid
        Boolean ``(n,)``: rows that take part (e.g. labelled rows); default all.

    Returns
    -------
    Scalar loss (mean over anchors with at least one negative; 0, still attached to
    the graph, when there are none).
    """
    labels = labels.view(-1)
    if valid is not None:
        keep = valid.view(-1).bool()
        z, labels = z[keep], labels[keep]
    if z.shape[0] < 2:
        return z.sum() * 0.0
    d = _pairwise_sq_distances(z, z).clamp_min(1e-12).sqrt()
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    has_negative = (~same).any(dim=1)
    if not has_negative.any():
        return z.sum() * 0.0
    d_pos = torch.where(same, d, torch.zeros_like(d)).amax(dim=1)
    d_neg = torch.where(same, torch.full_like(d, float("inf")), d).amin(dim=1)
    loss = torch.relu(d_pos - d_neg + margin)
    return loss[has_negative].mean()


def mmd_rbf(
    x: torch.Tensor,
    y: torch.Tensor,
    n_kernels: int = 5,
    multiplier: float = 2.0,
    bandwidth: float | None = None,
) -> torch.Tensor:
    """Maximum mean discrepancy with a sum of Gaussian (RBF) kernels.

    ``MMD^2 = mean k(x, x') + mean k(y, y') - 2 mean k(x, y)`` (biased estimate, so ``x``
    and ``y`` may differ in size) with ``k = sum_i exp(-||u - v||^2 / (s * m^i))``,
    ``i = -(n_kernels // 2) .. n_kernels - 1 - n_kernels // 2``: ``n_kernels`` bandwidths
    spaced by ``multiplier`` around ``s``, the mean squared distance between distinct rows
    of the joint sample (not differentiated through), as in the multi-kernel MMD of Con-AAE
    (5 kernels, multiplier 2).

    Parameters
    ----------
    x, y
        Samples, ``(n_x, d)`` and ``(n_y, d)``; the ``(n_x + n_y)^2`` kernel matrix of the
        minibatch is formed.
    n_kernels
        Number of kernels.
    multiplier
        Ratio between consecutive bandwidths.
    bandwidth
        Fixed central bandwidth ``s`` instead of the data-driven one.

    Returns
    -------
    Scalar MMD^2 estimate (0 when either sample is empty).
    """
    if x.shape[0] == 0 or y.shape[0] == 0:
        return (x.sum() + y.sum()) * 0.0
    joint = torch.cat([x, y], dim=0)
    d2 = _pairwise_sq_distances(joint, joint)
    n = joint.shape[0]
    if bandwidth is None:
        s = d2.detach().sum() / max(n * n - n, 1)
        s = s.clamp_min(1e-12)
    else:
        s = torch.as_tensor(float(bandwidth), dtype=d2.dtype, device=d2.device)
    s = s / (multiplier ** (n_kernels // 2))
    kernel = sum(torch.exp(-d2 / (s * multiplier**i)) for i in range(n_kernels))
    nx = x.shape[0]
    k_xx = kernel[:nx, :nx].mean()
    k_yy = kernel[nx:, nx:].mean()
    k_xy = kernel[:nx, nx:].mean()
    return k_xx + k_yy - 2.0 * k_xy
