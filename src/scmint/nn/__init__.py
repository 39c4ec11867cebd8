"""Shared neural-network building blocks: layers and losses reused across scmint modules."""

from ._adversarial import (
    cross_entropy_gan_loss,
    least_squares_gan_loss,
    modality_adversarial_loss,
    modality_targets,
)
from ._blocks import (
    MLP,
    FeatureScalerLayer,
    ModalityDiscriminator,
    OptionalHeadsMixin,
    SafeBatchNorm1d,
    frozen_batch_norm_stats,
)
from ._gaussian import GaussianEncoder, GaussianLinear
from ._likelihoods import (
    LIKELIHOODS,
    BatchLikelihoodDecoder,
    ZeroInflatedLogNormal,
)
from ._losses import labelled_cross_entropy
from ._sparse import SparseInputLinear

__all__ = [
    "LIKELIHOODS",
    "MLP",
    "BatchLikelihoodDecoder",
    "ZeroInflatedLogNormal",
    "FeatureScalerLayer",
    "GaussianEncoder",
    "GaussianLinear",
    "ModalityDiscriminator",
    "OptionalHeadsMixin",
    "SafeBatchNorm1d",
    "SparseInputLinear",
    "cross_entropy_gan_loss",
    "labelled_cross_entropy",
    "frozen_batch_norm_stats",
    "least_squares_gan_loss",
    "modality_adversarial_loss",
    "modality_targets",
]
