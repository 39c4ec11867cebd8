"""Metrics of multi-modal integration.

Cross-modal alignment of paired cells (:func:`foscttm`, :func:`matching_score`,
:func:`recall_at_k`), label transfer across modalities
(:func:`label_transfer_accuracy`), thin wrappers over scib-metrics
(:func:`celltype_asw`, :func:`modality_mixing_asw`, :func:`graph_connectivity`,
:func:`nmi_ari`) and the standard table row :func:`integration_scores`.
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
    celltype_asw,
    graph_connectivity,
    integration_scores,
    modality_mixing_asw,
    nmi_ari,
)

__all__ = [
    "SCORE_KEYS",
    "celltype_asw",
    "foscttm",
    "foscttm_per_cell",
    "graph_connectivity",
    "integration_scores",
    "label_transfer_accuracy",
    "matching_matrix",
    "matching_score",
    "matching_score_from_matrix",
    "modality_mixing_asw",
    "nmi_ari",
    "recall_at_k",
]
