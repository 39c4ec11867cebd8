"""Training beyond scvi-tools' plans: Siamese pair sampling and training plan."""

from ._siamese import (
    PAIR_KEYS,
    PairSet,
    SiameseDataModule,
    SiamesePairDataset,
    SiamesePairSampler,
    SiameseTrainingPlan,
    draw_pairs,
    labels_key,
    split_cells,
)

__all__ = [
    "PAIR_KEYS",
    "PairSet",
    "SiameseDataModule",
    "SiamesePairDataset",
    "SiamesePairSampler",
    "SiameseTrainingPlan",
    "draw_pairs",
    "labels_key",
    "split_cells",
]
