"""Preprocessing: fitted modality transforms, gene activity, gene-set scores, kNN graphs.

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
from ._gene_sets import GeneSetScorePCA, gene_set_scores, read_gmt
from ._graph_distance import GraphDistances, build_distance_graph, connectivity_to_distance_graph
from ._mnn import cross_knn, mnn_correct, mnn_pairs, mnn_prior
from ._neighbors import knn_graph, knn_indices
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
from ._utils import align_features

__all__ = [
    "FeatureScaler",
    "FittedTransform",
    "GraphDistances",
    "LogNormPCA",
    "NotFittedError",
    "TfidfLSI",
    "align_features",
    "build_distance_graph",
    "connectivity_to_distance_graph",
    "cross_knn",
    "gene_activity",
    "GeneSetScorePCA",
    "gene_set_scores",
    "highly_variable",
    "knn_graph",
    "knn_indices",
    "mnn_correct",
    "mnn_pairs",
    "mnn_prior",
    "normalize_log",
    "parse_peak_names",
    "pca",
    "peak_gene_links",
    "read_bed",
    "read_genes",
    "read_gmt",
    "read_gtf",
    "tfidf",
    "tfidf_lsi",
]
