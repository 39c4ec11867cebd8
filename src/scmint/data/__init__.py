"""The data layer: padding, validation and registration of MuData, and the simulator."""

from ._padding import INDICATOR_PREFIX, check_padded, indicator_key, is_padded, pad_mudata
from ._query import prepare_query_mudata
from ._setup import MuDataSetupMixin, data_key, mask_key, mudata_fields, validate_mudata
from ._simulate import simulate_multiome
from ._validation import (
    align_features,
    check_counts,
    check_finite,
    check_labels,
    check_modalities,
    check_nonempty_cells,
    check_values,
)

__all__ = [
    "INDICATOR_PREFIX",
    "MuDataSetupMixin",
    "align_features",
    "check_counts",
    "check_finite",
    "check_labels",
    "check_modalities",
    "check_nonempty_cells",
    "check_values",
    "check_padded",
    "data_key",
    "indicator_key",
    "is_padded",
    "mask_key",
    "mudata_fields",
    "pad_mudata",
    "prepare_query_mudata",
    "simulate_multiome",
    "validate_mudata",
]
