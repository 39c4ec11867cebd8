"""Metrics of multi-modal integration.

Cross-modal alignment of paired cells (:func:`foscttm`, :func:`matching_score`,
:func:`recall_at_k`), label transfer across modalities
(:func:`label_transfer_accuracy`), thin wrappers over scib-metrics
(:func:`celltype_asw`, :func:`modality_mixing_asw`, :func:`graph_connectivity`,
:func:`nmi_ari`; batch removal: :func:`ilisi`, :func:`batch_asw`), the standard table
row :func:`integration_scores`, and the
quality of cross-modal translation (:func:`translation_correlation`: per-feature and
per-cell Pearson correlation of predicted with measured profiles; :func:`mean_profile`
and :func:`knn_profiles` for the mean-profile and kNN baselines; :func:`log_normalize`).
"""

from ._cross_modal import (
    foscttm,
    foscttm_per_cell,
    label_transfer_accuracy,
    matching_matrix,
    matching_score,
    matching_score_from_matrix,
    recall_at_k,
)
from ._scib import (
    SCORE_KEYS,
    batch_asw,
    celltype_asw,
    graph_connectivity,
    ilisi,
    integration_scores,
    modality_mixing_asw,
    nmi_ari,
)
from ._translation import (
    TranslationCorrelation,
    knn_profiles,
    log_normalize,
    mean_profile,
    translation_correlation,
)

__all__ = [
    "SCORE_KEYS",
    "TranslationCorrelation",
    "batch_asw",
    "celltype_asw",
    "foscttm",
    "foscttm_per_cell",
    "graph_connectivity",
    "ilisi",
    "integration_scores",
    "knn_profiles",
    "label_transfer_accuracy",
    "log_normalize",
    "matching_matrix",
    "matching_score",
    "matching_score_from_matrix",
    "mean_profile",
    "modality_mixing_asw",
    "nmi_ari",
    "recall_at_k",
    "translation_correlation",
]
