"""Downstream tools, written for any model's embedding."""

from ._cca import LinearCCA
from ._embedding import stack_embeddings, umap

__all__ = ["LinearCCA", "stack_embeddings", "umap"]
