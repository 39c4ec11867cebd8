"""Adversarial losses of a modality discriminator (least-squares GAN and cross-entropy)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

AdversarialLoss = Literal["least_squares", "cross_entropy"]
ADVERSARIAL_LOSSES: tuple[str, ...] = ("least_squares", "cross_entropy")


def modality_targets(
    modality_index: torch.Tensor, n_modalities: int, flip: bool = False
) -> torch.Tensor:
    """Targets of a modality discriminator.

    Parameters
    ----------
    modality_index
        Modality ``0 .. K-1`` of each row, shape ``(n,)``.
    n_modalities
        ``K``.
    flip
        ``False``: the true modality (what the discriminator learns). ``True``: the
        generator's targets, "any other modality": for ``K = 2`` the other label (Con-AAE's
        flipped labels), for ``K > 2`` probability ``1 / (K - 1)`` on each other modality.

    Returns
    -------
    ``(n, 1)`` targets in ``{0, 1}`` for ``K = 2`` (modality 1 is the positive class),
    else ``(n, K)`` one-hot (or flipped) rows.
    """
    index = modality_index.long().view(-1)
    if n_modalities == 2:
        target = index.to(torch.float32).unsqueeze(1)
        return 1.0 - target if flip else target
    onehot = F.one_hot(index, n_modalities).to(torch.float32)
    return (1.0 - onehot) / (n_modalities - 1) if flip else onehot


def _per_modality_mean(
    per_row: torch.Tensor, modality_index: torch.Tensor, n_modalities: int
) -> torch.Tensor:
    """Mean over modalities (present in the minibatch) of the per-modality row means."""
    index = modality_index.long().view(-1)
    counts = torch.bincount(index, minlength=n_modalities).to(per_row.dtype)
    sums = torch.zeros(n_modalities, dtype=per_row.dtype, device=per_row.device)
    sums = sums.index_add(0, index, per_row)
    present = counts > 0
    if not present.any():
        return per_row.sum()
    return (sums[present] / counts[present]).mean()


def _checked_targets(
    outputs: torch.Tensor,
    modality_index: torch.Tensor,
    n_modalities: int,
    flip: bool,
    what: str,
) -> torch.Tensor:
    """:func:`modality_targets` in the dtype of ``outputs``, whose shape must match."""
    target = modality_targets(modality_index, n_modalities, flip).to(outputs.dtype)
    if outputs.shape != target.shape:
        raise ValueError(
            f"{what} of shape {tuple(outputs.shape)} do not fit {n_modalities} modalities "
            f"(expected {tuple(target.shape)})."
        )
    return target


def least_squares_gan_loss(
    scores: torch.Tensor,
    modality_index: torch.Tensor,
    n_modalities: int,
    flip: bool = False,
) -> torch.Tensor:
    """Least-squares GAN loss (Mao et al.) of a modality discriminator.

    ``mean_k mean_{i in k} ||D(z_i) - t_i||^2`` over the modalities ``k`` present, with
    targets ``t`` from :func:`modality_targets`. For two modalities and scores in ``[0,
    1]`` this is Con-AAE's loss: the discriminator minimises ``0.5 [D(z_0)^2 + (D(z_1) -
    1)^2]`` (``flip=False``), the encoders ``0.5 [(D(z_0) - 1)^2 + D(z_1)^2]``
    (``flip=True``). For ``K > 2`` the targets are one-hot rows (discriminator) or
    uniform over the other modalities (encoders).

    Parameters
    ----------
    scores
        Discriminator outputs, ``(n, 1)`` for ``K = 2`` or ``(n, K)``.
    modality_index
        Modality of each row, ``(n,)``.
    n_modalities
        ``K``.
    flip
        Generator targets instead of the true modality.

    Returns
    -------
    Scalar loss.
    """
    target = _checked_targets(scores, modality_index, n_modalities, flip, "Scores")
    per_row = (scores - target).pow(2).sum(dim=1)
    return _per_modality_mean(per_row, modality_index, n_modalities)


def cross_entropy_gan_loss(
    logits: torch.Tensor,
    modality_index: torch.Tensor,
    n_modalities: int,
    flip: bool = False,
) -> torch.Tensor:
    """Cross-entropy loss of a modality discriminator that outputs logits.

    Binary cross-entropy for two modalities (one logit), softmax cross-entropy against
    the targets of :func:`modality_targets` for ``K > 2``; rows averaged within each
    modality, then over the modalities present.

    Parameters
    ----------
    logits
        Discriminator logits, ``(n, 1)`` for ``K = 2`` or ``(n, K)``.
    modality_index
        Modality of each row, ``(n,)``.
    n_modalities
        ``K``.
    flip
        Generator targets instead of the true modality.

    Returns
    -------
    Scalar loss.
    """
    target = _checked_targets(logits, modality_index, n_modalities, flip, "Logits")
    if n_modalities == 2:
        per_row = F.binary_cross_entropy_with_logits(logits, target, reduction="none").view(-1)
    else:
        per_row = -(target * F.log_softmax(logits, dim=1)).sum(dim=1)
    return _per_modality_mean(per_row, modality_index, n_modalities)


def modality_adversarial_loss(
    scores: torch.Tensor,
    modality_index: torch.Tensor,
    n_modalities: int,
    loss: AdversarialLoss = "least_squares",
    flip: bool = False,
) -> torch.Tensor:
    """Adversarial loss of a modality discriminator, least-squares or cross-entropy.

    Parameters
    ----------
    scores
        Outputs of :class:`scmint.nn.ModalityDiscriminator`: scores in ``[0, 1]``
        (``output_activation="sigmoid"``) for ``"least_squares"``, logits for
        ``"cross_entropy"``.
    modality_index
        Modality of each row, ``(n,)``.
    n_modalities
        ``K``.
    loss
        ``"least_squares"`` (:func:`least_squares_gan_loss`, Con-AAE) or
        ``"cross_entropy"`` (:func:`cross_entropy_gan_loss`).
    flip
        ``False`` for the discriminator's update, ``True`` for the encoders' (fool it).

    Returns
    -------
    Scalar loss.
    """
    if loss == "least_squares":
        return least_squares_gan_loss(scores, modality_index, n_modalities, flip)
    if loss == "cross_entropy":
        return cross_entropy_gan_loss(scores, modality_index, n_modalities, flip)
    raise ValueError(f"loss must be one of {ADVERSARIAL_LOSSES}, got {loss!r}.")
