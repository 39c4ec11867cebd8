"""The data layer: padding, validation and registration of MuData, the data path, the simulator.

The data path holds the registered matrices once as tensors and cuts minibatches on the
device (:mod:`scmint.data._tensors`).
"""

from ._backed import OnDiskRows
from ._io import read_h5mu, write_h5mu
from ._padding import INDICATOR_PREFIX, check_padded, indicator_key, is_padded, pad_mudata
from ._query import prepare_query_mudata
from ._setup import MuDataSetupMixin, data_key, mask_key, mudata_fields, validate_mudata
from ._simulate import simulate_multiome
from ._tensors import (
    CSRRows,
    RegisteredDataSplitter,
    RegisteredTensors,
    TensorDataLoader,
    row_batches,
)
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
    "CSRRows",
    "OnDiskRows",
    "RegisteredDataSplitter",
    "RegisteredTensors",
    "TensorDataLoader",
    "row_batches",
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
    "read_h5mu",
    "write_h5mu",
    "simulate_multiome",
    "validate_mudata",
]
