"""scmint: single-cell multi-omics integration models for scvi-tools."""

from importlib.metadata import PackageNotFoundError, version

from . import data, metrics, model, nn, pl, pp, tl, train

try:
    __version__ = version("scmint")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["data", "metrics", "model", "nn", "pl", "pp", "tl", "train", "__version__"]
