"""CLUE: cross-linked unified embedding (model, module)."""

from ._model import CLUE
from ._module import CLUEModule

__all__ = ["CLUE", "CLUEModule"]
