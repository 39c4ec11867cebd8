"""scmint's models, each a scvi-tools model over a padded MuData."""

from .conaae import CONAAE
from .minnet import MINNET
from .sccross import SCCROSS

__all__ = ["CONAAE", "MINNET", "SCCROSS"]
