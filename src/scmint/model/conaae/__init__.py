"""CONAAE: Con-AAE's contrastive cycle adversarial autoencoders."""

from ._model import CONAAE
from ._module import CONAAEModule

__all__ = ["CONAAE", "CONAAEModule"]
