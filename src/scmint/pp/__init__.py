"""Preprocessing: fitted modality transforms, gene activity, kNN graphs.

Models reduce each modality at training time with a fitted transform
(:class:`LogNormPCA` for RNA, :class:`TfidfLSI` for peaks, :class:`FeatureScaler` for
proteins or pre-normalised inputs) and keep it, so new or perturbed cells are projected
with exactly the training transform (``transform.transform(new_cells)``), never refitted.
"""

from ._gene_activity import (
    gene_activity,
    parse_peak_names,
    peak_gene_links,
    read_bed,
    read_genes,
    read_gtf,
)
from ._neighbors import knn_graph, knn_indices, neighbour_mean, umap_connectivities
from ._protein_genes import protein_gene_matrix, protein_gene_names, read_protein_table
from ._transforms import (
    FeatureScaler,
    FittedTransform,
    LogNormPCA,
    NotFittedError,
    TfidfLSI,
    highly_variable,
    normalize_log,
    pca,
    tfidf,
    tfidf_lsi,
)

__all__ = [
    "FeatureScaler",
    "FittedTransform",
    "LogNormPCA",
    "NotFittedError",
    "TfidfLSI",
    "gene_activity",
    "highly_variable",
    "knn_graph",
    "knn_indices",
    "neighbour_mean",
    "umap_connectivities",
    "normalize_log",
    "parse_peak_names",
    "pca",
    "protein_gene_matrix",
    "protein_gene_names",
    "read_protein_table",
    "peak_gene_links",
    "read_bed",
    "read_genes",
    "read_gtf",
    "tfidf",
    "tfidf_lsi",
]
