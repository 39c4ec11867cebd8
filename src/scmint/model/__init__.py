"""scmint's models, each a scvi-tools model over a padded MuData."""

from .clue import CLUE
from .conaae import CONAAE
from .minnet import MINNET
from .sccross import SCCROSS

__all__ = ["CLUE", "CONAAE", "MINNET", "SCCROSS"]
