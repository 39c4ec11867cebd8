"""Shared neural-network building blocks: layers and losses reused across scmint modules."""

from ._adversarial import (
    cross_entropy_gan_loss,
    least_squares_gan_loss,
    modality_adversarial_loss,
    modality_targets,
)
from ._alignment import gram_alignment_loss, paired_distance_loss
from ._blocks import (
    MLP,
    FeatureScalerLayer,
    ModalityDiscriminator,
    SafeBatchNorm1d,
    frozen_batch_norm_stats,
)
from ._gaussian import GaussianEncoder, GaussianLinear
from ._likelihoods import (
    LIKELIHOODS,
    BatchLikelihoodDecoder,
    ZeroInflatedLogNormal,
)
from ._losses import flexible_margin, flexible_margin_contrastive_loss, labelled_cross_entropy
from ._metric_learning import batch_hard_triplet_loss, mmd_rbf

__all__ = [
    "LIKELIHOODS",
    "MLP",
    "BatchLikelihoodDecoder",
    "ZeroInflatedLogNormal",
    "gram_alignment_loss",
    "paired_distance_loss",
    "FeatureScalerLayer",
    "GaussianEncoder",
    "GaussianLinear",
    "ModalityDiscriminator",
    "SafeBatchNorm1d",
    "batch_hard_triplet_loss",
    "cross_entropy_gan_loss",
    "flexible_margin",
    "labelled_cross_entropy",
    "flexible_margin_contrastive_loss",
    "frozen_batch_norm_stats",
    "least_squares_gan_loss",
    "mmd_rbf",
    "modality_adversarial_loss",
    "modality_targets",
]
