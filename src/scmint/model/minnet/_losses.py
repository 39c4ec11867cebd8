"""MINNET's loss: the Siamese contrastive loss with a per-pair (flexible) margin."""

from __future__ import annotations

from typing import Literal

import torch


def flexible_margin(
    graph_distance: torch.Tensor,
    type_differs: torch.Tensor | None = None,
    type_margin: float = 3.0,
) -> torch.Tensor:
    """MinNet's per-pair margin before scaling: ``m_ij = d_ij + C * 1[types differ]``.

    Parameters
    ----------
    graph_distance
        Shortest-path distance ``d_ij`` of each pair on a kNN graph, shape ``(n_pairs,)``.
    type_differs
        1 where the two cells have different cell types, else 0; None means all 0.
    type_margin
        The constant ``C`` added for pairs of different cell types.

    Returns
    -------
    ``(n_pairs,)`` tensor of margins.
    """
    margin = graph_distance.to(torch.float32)
    if type_differs is not None:
        margin = margin + type_margin * type_differs.to(margin.dtype)
    return margin


def flexible_margin_contrastive_loss(
    e_a: torch.Tensor,
    e_b: torch.Tensor,
    same: torch.Tensor,
    margin: torch.Tensor | float,
    margin_scale: float = 10.0,
    eps: float = 1e-3,
    reduction: Literal["mean", "sum", "none"] = "mean",
) -> torch.Tensor:
    """Contrastive loss of a Siamese network with a per-pair (flexible) margin.

    With ``d^2 = ||e_a - e_b||^2 + eps`` and ``y = same``::

        L = 0.5 * [y * d^2 + 2 * (1 - y) * max(0, M * m_ij - d)^2]

    as in MinNet (Tang et al.): positive pairs (the same cell measured in two
    modalities, ``y = 1``) are pulled together; negative pairs (two different cells)
    are pushed at least ``M * m_ij`` apart, where ``m_ij`` grows with how different the
    two cells are (see :func:`flexible_margin`).

    Parameters
    ----------
    e_a, e_b
        Embeddings of the two members of each pair, ``(n_pairs, n_latent)``.
    same
        1 for positive pairs, 0 for negative pairs, ``(n_pairs,)``.
    margin
        Per-pair margin ``m_ij`` (``(n_pairs,)``) or one constant for all pairs. Ignored
        for positive pairs.
    margin_scale
        The constant ``M`` multiplying the margin (MinNet default 10).
    eps
        Added to the squared distance so that its square root has a finite gradient.
    reduction
        ``"mean"`` (default), ``"sum"`` or ``"none"`` (per-pair losses).

    Returns
    -------
    The reduced loss (a scalar), or per-pair losses for ``reduction="none"``.
    """
    if e_a.shape != e_b.shape:
        raise ValueError(f"e_a and e_b must have the same shape, got {e_a.shape} and {e_b.shape}.")
    y = same.to(e_a.dtype)
    d2 = (e_a - e_b).pow(2).sum(dim=-1) + eps
    d = d2.sqrt()
    if not torch.is_tensor(margin):
        margin = torch.full_like(d, float(margin))
    hinge = torch.clamp(margin_scale * margin.to(d.dtype) - d, min=0.0)
    loss = 0.5 * (y * d2 + 2.0 * (1.0 - y) * hinge.pow(2))
    if reduction == "mean":
        return loss.mean() if loss.numel() else loss.sum()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}.")
