"""scmint: single-cell multi-omics integration models for scvi-tools.

The subpackages (:mod:`scmint.data`, :mod:`scmint.model`, :mod:`scmint.pp`, ...) are
imported on first access (:pep:`562`), so ``import scmint`` stays fast and does not
import scvi-tools, torch or jax until a model or tool needs them.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # static analysers and IDEs see the subpackages as attributes
    from . import data, metrics, model, nn, pl, pp, tl, train

try:
    __version__ = version("scmint")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["data", "metrics", "model", "nn", "pl", "pp", "tl", "train", "__version__"]

_SUBPACKAGES = frozenset(__all__) - {"__version__"}


def __getattr__(name: str) -> Any:
    """Import a subpackage on first access (``scmint.model.CLUE`` works after ``import scmint``)."""
    if name in _SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")  # also sets it as an attribute
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names (the subpackages too, before their first import)."""
    return sorted({*__all__, *(k for k in globals() if k.startswith("__"))})
