"""SCCROSS's alignment losses: the Gram-matrix (MNN prior) term and the pairing term."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gram_alignment_loss(
    prior_a: torch.Tensor,
    prior_b: torch.Tensor,
    latent_a: torch.Tensor,
    latent_b: torch.Tensor,
    cosine: bool = True,
) -> torch.Tensor:
    """ScCross's MNN-prior loss: match the cross-modal similarity structure of a prior.

    ``mean_i sum_j (S^P_ij - S^Z_ij)^2`` with ``S^P = P_a P_b^T`` the similarities of the
    prior vectors (the common-gene MNN prior) of cells ``i`` of modality ``a`` and ``j``
    of modality ``b``, and ``S^Z`` the same for their latent codes. With ``cosine`` (the
    paper's description) rows are L2-normalised first, so every similarity lies in
    ``[-1, 1]`` whatever the scale of the prior; without it, raw dot products (the
    published code).

    Parameters
    ----------
    prior_a, prior_b
        Prior vectors of the cells of ``a`` (``n_a x d_p``) and ``b`` (``n_b x d_p``).
    latent_a, latent_b
        Latent codes of the same cells (``n_a x d``, ``n_b x d``).
    cosine
        Compare cosine similarities instead of dot products.

    Returns
    -------
    Scalar loss (0 when either side has no cells).
    """
    if prior_a.shape[0] == 0 or prior_b.shape[0] == 0:
        return latent_a.new_zeros(())
    if cosine:
        prior_a, prior_b = F.normalize(prior_a, dim=1), F.normalize(prior_b, dim=1)
        latent_a, latent_b = F.normalize(latent_a, dim=1), F.normalize(latent_b, dim=1)
    diff = prior_a @ prior_b.T - latent_a @ latent_b.T
    return diff.pow(2).sum(dim=1).mean()


def paired_distance_loss(z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
    """Mean squared distance between the codes of the same cells in two modalities.

    Parameters
    ----------
    z_a, z_b
        Codes of the same cells (rows paired), ``n x d``.

    Returns
    -------
    ``mean_i ||z_a_i - z_b_i||^2 / d`` (0 for no rows).
    """
    if z_a.shape[0] == 0:
        return z_a.new_zeros(())
    return (z_a - z_b).pow(2).mean()
