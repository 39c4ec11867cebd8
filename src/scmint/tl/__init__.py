"""Downstream tools, written for any model's embedding."""

from ._cca import LinearCCA
from ._cis_regulatory import peak_gene_correlation
from ._embedding import stack_embeddings, store_embeddings, umap
from ._label_transfer import transfer_labels
from ._minibulk import assign_minibulks, minibulk
from ._perturbation import mean_cosine_distance, perturbation_screen
from ._smoothing import smooth, smoothing_operator

__all__ = [
    "LinearCCA",
    "assign_minibulks",
    "mean_cosine_distance",
    "minibulk",
    "perturbation_screen",
    "peak_gene_correlation",
    "smooth",
    "smoothing_operator",
    "stack_embeddings",
    "store_embeddings",
    "transfer_labels",
    "umap",
]
