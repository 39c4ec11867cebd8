"""Training beyond scvi-tools' plans shared by models: alternating adversarial updates."""

from ._adversarial import GeneratorDiscriminatorPlan, detach_outputs
from ._best import RestoreBestWeights
from ._logging import LossLoggingMixin
from ._optim import make_optimizer
from ._runner import QuietTrainRunner, tolerant_strategy
from ._schedule import AUTO_EPOCH_CAP, progress_epochs

__all__ = [
    "AUTO_EPOCH_CAP",
    "GeneratorDiscriminatorPlan",
    "LossLoggingMixin",
    "QuietTrainRunner",
    "tolerant_strategy",
    "RestoreBestWeights",
    "detach_outputs",
    "make_optimizer",
    "progress_epochs",
]
