"""Gaussian encoder heads: a latent code as a diagonal Normal distribution."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Normal

from ._blocks import MLP
from ._likelihoods import EPS


class GaussianLinear(nn.Module):
    """``x -> Normal(Linear(x), softplus(Linear(x)) + eps)``: scCross's aligner layer."""

    def __init__(self, n_input: int, n_output: int) -> None:
        super().__init__()
        self.loc = nn.Linear(n_input, n_output)
        self.std = nn.Linear(n_input, n_output)

    def forward(self, x: torch.Tensor) -> Normal:
        return Normal(self.loc(x), F.softplus(self.std(x)) + EPS)


class GaussianEncoder(nn.Module):
    """MLP (``Linear -> LeakyReLU -> BatchNorm -> Dropout`` blocks) with a Gaussian head."""

    def __init__(
        self, n_input: int, n_latent: int, n_hidden: int, n_layers: int, dropout: float
    ) -> None:
        super().__init__()
        self.n_latent = int(n_latent)
        self.body = MLP(
            n_input, 2 * n_latent, (n_hidden,) * n_layers, negative_slope=0.2, dropout=dropout
        )

    def forward(self, h: torch.Tensor) -> Normal:
        out = self.body(h)
        loc, std = out[:, : self.n_latent], out[:, self.n_latent :]
        return Normal(loc, F.softplus(std) + EPS)
