"""A first layer that reads sparse count minibatches without densifying them."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._blocks import FeatureScalerLayer


class SparseInputLinear(nn.Module):
    """``x W + b`` for dense or sparse-CSR ``x``; with a scaler, over the scaled ``x``.

    The first layer of an encoder over a wide count modality (25k peaks, 0.4 % of them
    non-zero in a SNARE-seq minibatch). A dense minibatch is multiplied as usual. A
    sparse CSR minibatch goes through :func:`torch.nn.functional.embedding_bag` (a
    weighted sum of the weight rows of each cell's non-zero features), so neither the
    cells x features block nor its product is formed: on one CPU core a training step
    (forward and weight gradient) of a 25.7k x 768 layer on 128 SNARE-seq cells takes
    52 ms instead of 130 ms, on 512 cells 75 ms instead of 360 ms
    (``benchmarks/first_layer.py``); with a centring scaler (below), whose zeros are not
    zero, 113 ms instead of 142 ms on 128 cells. Below about 10 % non-zeros or a few
    thousand features the dense product is as fast or faster.

    With a :class:`FeatureScalerLayer` ``s`` the layer computes ``s(x) W + b`` exactly
    for a sparse ``x`` too: every zero of feature ``j`` scales to the same value ``c_j``
    (:meth:`FeatureScalerLayer.zero_value`), so ``s(x) = c + D`` with ``D`` non-zero
    only where ``x`` is, and ``s(x) W + b = D W + (c W + b)``.

    The weight is stored ``(n_input, n_output)`` (the transpose of
    :class:`torch.nn.Linear`'s, so that a feature's weights are one contiguous row); a
    state dict holding a ``Linear``'s ``(n_output, n_input)`` weight loads transposed.

    Parameters
    ----------
    n_input
        Number of input features.
    n_output
        Number of output units.
    """

    def __init__(self, n_input: int, n_output: int) -> None:
        super().__init__()
        self.in_features = int(n_input)
        self.out_features = int(n_output)
        self.weight = nn.Parameter(torch.empty(self.in_features, self.out_features))
        self.bias = nn.Parameter(torch.empty(self.out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """:class:`torch.nn.Linear`'s initialisation (uniform in ``+-1/sqrt(n_input)``)."""
        bound = 1.0 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor, scaler: FeatureScalerLayer | None = None) -> torch.Tensor:
        """``s(x) W + b`` (``s`` the scaler, or the identity), ``x`` dense or sparse CSR."""
        if x.layout == torch.sparse_csr:
            crow = x.crow_indices()
            col = x.col_indices()
            values = x.values()
            bias = self.bias
            if scaler is not None:
                values = scaler.scale_nonzero(crow, col, values)
                zero = scaler.zero_value()
                values = values - zero[col]
                bias = bias + zero @ self.weight
            out = F.embedding_bag(
                col, self.weight, crow[:-1], mode="sum", per_sample_weights=values
            )
            return out + bias
        if scaler is not None:
            x = scaler(x)
        return torch.addmm(self.bias, x, self.weight)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "weight"
        w = state_dict.get(key)
        if w is not None and w.shape == (self.out_features, self.in_features) != self.weight.shape:
            state_dict[key] = w.t().contiguous()  # a torch.nn.Linear's layout
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"
