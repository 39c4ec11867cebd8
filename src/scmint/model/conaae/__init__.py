"""CONAAE: Con-AAE's contrastive cycle adversarial autoencoders.

Its losses, used by no other model, live here too: the batch-hard triplet loss
(:func:`batch_hard_triplet_loss`) and the RBF-kernel MMD (:func:`mmd_rbf`).
"""

from ._losses import batch_hard_triplet_loss, mmd_rbf
from ._model import CONAAE
from ._module import CONAAEModule

__all__ = ["CONAAE", "CONAAEModule", "batch_hard_triplet_loss", "mmd_rbf"]
