"""MINNET: MinNet's supervised Siamese network (model, module)."""

from ._model import MINNET
from ._module import MINNETModule

__all__ = ["MINNET", "MINNETModule"]
