"""Training beyond scvi-tools' plans: Siamese pairs, alternating adversarial updates."""

from ._adversarial import GeneratorDiscriminatorPlan, detach_outputs
from ._best import RestoreBestWeights
from ._logging import LossLoggingMixin
from ._schedule import AUTO_EPOCH_CAP, progress_epochs
from ._siamese import (
    PAIR_KEYS,
    PairSet,
    SiameseDataModule,
    SiamesePairDataset,
    SiamesePairSampler,
    SiameseTrainingPlan,
    draw_pairs,
    labels_key,
    split_cells,
)

__all__ = [
    "AUTO_EPOCH_CAP",
    "GeneratorDiscriminatorPlan",
    "LossLoggingMixin",
    "PAIR_KEYS",
    "PairSet",
    "RestoreBestWeights",
    "SiameseDataModule",
    "SiamesePairDataset",
    "SiamesePairSampler",
    "SiameseTrainingPlan",
    "detach_outputs",
    "draw_pairs",
    "labels_key",
    "progress_epochs",
    "split_cells",
]
