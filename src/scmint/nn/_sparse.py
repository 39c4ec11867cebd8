"""A first layer that reads sparse count minibatches without densifying them."""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from ._blocks import FeatureScalerLayer


def is_sparse_csr(x: torch.Tensor) -> bool:
    """Whether ``x`` is a sparse CSR tensor (a minibatch the data path left sparse)."""
    return x.layout == torch.sparse_csr


def csr_row_of(x: torch.Tensor) -> torch.Tensor:
    """Row of every stored entry of a sparse CSR ``x``."""
    crow = x.crow_indices()
    counts = crow[1:] - crow[:-1]
    return torch.repeat_interleave(
        torch.arange(counts.numel(), device=crow.device), counts, output_size=x.values().numel()
    )


def row_sums(x: torch.Tensor) -> torch.Tensor:
    """``(n, 1)`` row sums of a dense or sparse CSR ``x`` (library sizes of counts)."""
    if not is_sparse_csr(x):
        return x.sum(1, keepdim=True)
    values = x.values()
    out = values.new_zeros(x.shape[0]).index_add_(0, csr_row_of(x), values)
    return out.view(-1, 1)


def csr_row_positions(
    crow: torch.Tensor, rows: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cut rows out of a CSR matrix given its row pointers ``crow``.

    Returns the new row pointers, the positions (in the matrix's column / value arrays)
    of the chosen rows' entries, and each entry's row in the cut.
    """
    rows = rows.to(crow.device, torch.int64)
    starts = crow[rows]
    counts = crow[rows + 1] - starts
    new_crow = torch.zeros(rows.numel() + 1, dtype=torch.int64, device=crow.device)
    torch.cumsum(counts, 0, out=new_crow[1:])
    total = int(new_crow[-1])
    row_of = torch.repeat_interleave(
        torch.arange(rows.numel(), device=crow.device), counts, output_size=total
    )
    position = torch.arange(total, device=crow.device) + (starts - new_crow[:-1])[row_of]
    return new_crow, position, row_of


def select_rows(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Rows of a dense or sparse CSR ``x`` picked by a boolean mask (or indices), same layout."""
    if not is_sparse_csr(x):
        return x[rows]
    if rows.dtype == torch.bool:
        if bool(rows.all()):
            return x
        rows = torch.nonzero(rows, as_tuple=True)[0]
    new_crow, position, _ = csr_row_positions(x.crow_indices(), rows)
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support", category=UserWarning)
        return torch.sparse_csr_tensor(
            new_crow,
            x.col_indices()[position],
            x.values()[position],
            size=(int(rows.numel()), x.shape[1]),
            check_invariants=False,
        )


def as_dense(x: torch.Tensor) -> torch.Tensor:
    """``x`` as a dense tensor (itself when already dense)."""
    return x.to_dense() if is_sparse_csr(x) else x


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

    def forward(
        self,
        x: torch.Tensor,
        scaler: FeatureScalerLayer | None = None,
        batch_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``s(x) W + b`` (``s`` the scaler, or the identity), ``x`` dense or sparse CSR.

        ``batch_index``: the rows' batch codes, for a scaler that centres batches (its
        centres ``C`` enter as ``-C[batch] W``, so a sparse ``x`` stays sparse).
        """
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
            out = out + bias
            shift = None if scaler is None else scaler.centered_bias(self.weight, batch_index)
            return out if shift is None else out + shift
        if scaler is not None:
            x = scaler(x, batch_index)
        return torch.addmm(self.bias, x, self.weight)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "weight"
        w = state_dict.get(key)
        if w is not None and w.shape == (self.out_features, self.in_features) != self.weight.shape:
            state_dict[key] = w.t().contiguous()  # a torch.nn.Linear's layout
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"
