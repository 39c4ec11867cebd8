"""MINNET: MinNet's supervised Siamese network (model, module, training plan, loss).

Everything only MINNET uses lives here: the flexible-margin contrastive loss
(:func:`flexible_margin_contrastive_loss`), the shortest-path distances on a kNN graph
that set its margins (:func:`build_distance_graph`, :class:`GraphDistances`) and the
Siamese training plan with its pair sampler (:class:`SiameseTrainingPlan`,
:class:`SiamesePairSampler`, :func:`draw_pairs`).
"""

from ._graph_distance import GraphDistances, build_distance_graph, connectivity_to_distance_graph
from ._losses import flexible_margin, flexible_margin_contrastive_loss
from ._model import MINNET
from ._module import MINNETModule
from ._task import (
    PairSet,
    SiameseDataModule,
    SiamesePairDataset,
    SiamesePairSampler,
    SiameseTrainingPlan,
    draw_pairs,
)

__all__ = [
    "MINNET",
    "GraphDistances",
    "MINNETModule",
    "PairSet",
    "SiameseDataModule",
    "SiamesePairDataset",
    "SiamesePairSampler",
    "SiameseTrainingPlan",
    "build_distance_graph",
    "connectivity_to_distance_graph",
    "draw_pairs",
    "flexible_margin",
    "flexible_margin_contrastive_loss",
]
