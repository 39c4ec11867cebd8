"""Downstream tools, written for any model's embedding."""

from ._cca import LinearCCA
from ._cis_regulatory import peak_gene_correlation
from ._embedding import stack_embeddings, umap
from ._label_transfer import transfer_labels
from ._minibulk import assign_minibulks, minibulk
from ._smoothing import smooth, smoothing_operator

__all__ = [
    "LinearCCA",
    "assign_minibulks",
    "minibulk",
    "peak_gene_correlation",
    "smooth",
    "smoothing_operator",
    "stack_embeddings",
    "transfer_labels",
    "umap",
]
