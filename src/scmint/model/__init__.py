"""scmint's models, each a scvi-tools model over a padded MuData."""

from .minnet import MINNET

__all__ = ["MINNET"]
