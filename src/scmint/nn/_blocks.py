"""Layers shared by scmint modules: safe batch norm, MLPs, discriminators, input scaling."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

InputNormalization = Literal["log", "clr", "none"]
INPUT_NORMALIZATIONS: tuple[str, ...] = ("log", "clr", "none")


class SafeBatchNorm1d(nn.BatchNorm1d):
    """:class:`torch.nn.BatchNorm1d` that accepts minibatches of fewer than two rows.

    In a padded MuData a minibatch can hold a single cell (or none) of one modality;
    plain batch norm cannot estimate batch statistics from one row and raises. Here such
    a minibatch is normalised with the running statistics (which are not updated), as in
    evaluation mode; larger minibatches behave exactly like :class:`~torch.nn.BatchNorm1d`.
    The parameters and buffers are those of :class:`~torch.nn.BatchNorm1d`, so state
    dicts are interchangeable.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] < 2:
            return F.batch_norm(
                x,
                self.running_mean,
                self.running_var,
                self.weight,
                self.bias,
                training=False,
                eps=self.eps,
            )
        return super().forward(x)


@contextmanager
def frozen_batch_norm_stats(module: nn.Module) -> Iterator[nn.Module]:
    """Run ``module`` without updating the running statistics of its batch-norm layers.

    Inside the context, batch-norm layers in training mode still normalise with the
    minibatch's statistics (gradients are unchanged) but leave ``running_mean`` and
    ``running_var`` as they are. For passes whose inputs are not the data the layer
    sees at inference, e.g. re-encoding decoded profiles in a cycle-consistency loss.
    """
    tracked = [
        m
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in tracked]
    for m in tracked:
        m.momentum = 0.0
    try:
        yield module
    finally:
        for m, (momentum, count) in zip(tracked, saved, strict=True):
            m.momentum = momentum
            m.num_batches_tracked.copy_(count)


class MLP(nn.Module):
    """Feed-forward network: hidden layers ``Linear -> LeakyReLU -> BatchNorm``, linear output.

    The block of Con-AAE's encoders and decoders (and a general one for other modules):
    every hidden layer is ``Linear -> LeakyReLU -> BatchNorm1d`` (optionally followed by
    dropout), the last layer is a plain ``Linear`` so outputs are unbounded (latent codes,
    standardised expression). Minibatches with a single row use the batch-norm running
    statistics (:class:`SafeBatchNorm1d`); an empty minibatch gives an empty output.

    Parameters
    ----------
    n_input
        Input width.
    n_output
        Output width.
    n_hidden
        Widths of the hidden layers, in order (may be empty: one linear layer).
    negative_slope
        Slope of LeakyReLU for negative inputs.
    batch_norm
        Add batch normalisation after each hidden activation.
    dropout
        Dropout rate after each hidden layer (0: none).
    """

    def __init__(
        self,
        n_input: int,
        n_output: int,
        n_hidden: Sequence[int] = (),
        negative_slope: float = 0.2,
        batch_norm: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        widths = [int(n_input), *(int(h) for h in n_hidden)]
        if min(widths + [int(n_output)]) < 1:
            raise ValueError(f"Layer widths must be positive, got {widths + [n_output]}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
        layers: list[nn.Module] = []
        for w_in, w_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Linear(w_in, w_out), nn.LeakyReLU(negative_slope)]
            if batch_norm:
                layers.append(SafeBatchNorm1d(w_out))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(widths[-1], int(n_output)))
        self.layers = nn.Sequential(*layers)
        self.n_input = int(n_input)
        self.n_output = int(n_output)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == 0:
            return x.new_zeros((0, self.n_output))
        return self.layers(x)


class ModalityDiscriminator(nn.Module):
    """Classifier of which modality a latent code came from, for adversarial alignment.

    ``n_input -> n_hidden[0] -> ... -> n_outputs`` with LeakyReLU between layers and no
    batch norm. For two modalities it has one output (modality 0 vs 1, as in Con-AAE's
    ``50 -> 50 -> 100 -> 1`` discriminator); for ``K > 2`` modalities one output per
    modality. Pair it with :func:`scmint.nn.modality_adversarial_loss`.

    Parameters
    ----------
    n_input
        Latent dimension.
    n_modalities
        Number of modalities ``K`` (at least 2).
    n_hidden
        Hidden widths (Con-AAE: ``(50, 100)``).
    negative_slope
        LeakyReLU slope.
    output_activation
        ``"sigmoid"`` (Con-AAE's least-squares GAN scores in ``[0, 1]``) or ``None`` (raw
        logits, for the cross-entropy loss).
    dropout
        Dropout rate after each hidden activation (0: none; GLUE / CLUE: 0.2).
    """

    def __init__(
        self,
        n_input: int,
        n_modalities: int = 2,
        n_hidden: Sequence[int] = (50, 100),
        negative_slope: float = 0.2,
        output_activation: Literal["sigmoid"] | None = "sigmoid",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
        if n_modalities < 2:
            raise ValueError(f"A modality discriminator needs 2+ modalities, got {n_modalities}.")
        if output_activation not in ("sigmoid", None):
            raise ValueError(
                f"output_activation must be 'sigmoid' or None, got {output_activation!r}."
            )
        self.n_modalities = int(n_modalities)
        self.n_outputs = 1 if n_modalities == 2 else int(n_modalities)
        self.output_activation = output_activation
        widths = [int(n_input), *(int(h) for h in n_hidden)]
        layers: list[nn.Module] = []
        for w_in, w_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Linear(w_in, w_out), nn.LeakyReLU(negative_slope)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(widths[-1], self.n_outputs))
        self.layers = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Scores ``(n, 1)`` for two modalities, ``(n, K)`` otherwise."""
        out = self.layers(z)
        return torch.sigmoid(out) if self.output_activation == "sigmoid" else out


class FeatureScalerLayer(nn.Module):
    """Torch replay of a fitted :class:`scmint.pp.FeatureScaler`, applied per minibatch.

    Keeps raw (e.g. count) data sparse outside a minibatch: each minibatch is normalised
    on the device, with per-feature statistics stored as buffers (so they travel with
    the module's state dict, to GPU and through save/load):

    - ``"log"``: ``log1p(x / rowsum(x) * target_sum)`` (all-zero rows stay zero);
    - ``"clr"``: ``log1p(x / g)`` with ``g`` the per-feature geometric mean over the
      training cells (CLR across cells, muon's ``clr(axis=0)``);
    - ``"none"``: values used as they are;

    then ``(x - mean) / std`` clipped to ``[-max_value, max_value]``; with ``n_batch``,
    finally minus the row's batch centre (``batch_center``, one row per batch: the mean
    scaled input of the batch's training cells, set by the model), so that per-feature
    batch shifts do not reach the encoder.

    Parameters
    ----------
    n_features
        Number of features.
    normalization
        ``"log"``, ``"clr"`` or ``"none"``.
    target_sum
        Counts per cell after normalisation for ``"log"``.
    max_value
        Clip scaled values (``None``: no clipping).
    n_batch
        Batches with a centre (0: no batch centring).
    """

    def __init__(
        self,
        n_features: int,
        normalization: InputNormalization = "log",
        target_sum: float = 1e4,
        max_value: float | None = 10.0,
        n_batch: int = 0,
    ) -> None:
        super().__init__()
        if normalization not in INPUT_NORMALIZATIONS:
            raise ValueError(
                f"Unknown normalization {normalization!r}; choose from {INPUT_NORMALIZATIONS}."
            )
        self.normalization = normalization
        self.target_sum = float(target_sum)
        self.max_value = None if max_value is None else float(max_value)
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        self.register_buffer("geometric_mean", torch.ones(n_features))
        self.register_buffer("batch_center", torch.zeros(int(n_batch), n_features))
        self._register_load_state_dict_pre_hook(_without_batch_center, with_module=True)

    @property
    def centers_batches(self) -> bool:
        """Whether each row's batch centre is taken off (the layer then needs batch codes)."""
        return self.batch_center.shape[0] > 0

    @classmethod
    def from_scaler(cls, scaler, normalization: InputNormalization) -> FeatureScalerLayer:
        """Build the layer from a fitted :class:`scmint.pp.FeatureScaler`.

        Parameters
        ----------
        scaler
            A fitted ``FeatureScaler`` (``scale=True``) whose steps match
            ``normalization`` (``log=True, target_sum=...`` for ``"log"``,
            ``clr="feature"`` for ``"clr"``, neither for ``"none"``).
        normalization
            The normalisation the scaler was fitted with.

        Returns
        -------
        The layer, with the scaler's statistics in its buffers.
        """
        layer = cls(
            len(scaler.feature_names_),
            normalization=normalization,
            target_sum=scaler.target_sum if scaler.target_sum is not None else 1e4,
            max_value=scaler.max_value,
        )
        layer.set_statistics(scaler)
        return layer

    def set_statistics(self, scaler) -> None:
        """Copy the statistics of a fitted :class:`scmint.pp.FeatureScaler` into the buffers."""
        if scaler.mean_ is None:
            raise ValueError("The FeatureScaler was fitted with scale=False; no statistics.")
        n = self.mean.shape[0]
        if len(scaler.mean_) != n:
            raise ValueError(f"Scaler has {len(scaler.mean_)} features, the layer {n}.")
        self.mean.copy_(torch.as_tensor(np.asarray(scaler.mean_), dtype=self.mean.dtype))
        self.std.copy_(torch.as_tensor(np.asarray(scaler.std_), dtype=self.std.dtype))
        gm = getattr(scaler, "clr_geometric_mean_", None)
        if gm is not None:
            self.geometric_mean.copy_(torch.as_tensor(np.asarray(gm), dtype=self.mean.dtype))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """The per-cell transform (``log`` / ``clr`` / ``none``) before standardisation."""
        if self.normalization == "log":
            lib = x.sum(dim=1, keepdim=True)
            lib = torch.where(lib > 0, lib, torch.ones_like(lib))
            return torch.log1p(x / lib * self.target_sum)
        if self.normalization == "clr":
            return torch.log1p(x / self.geometric_mean)
        return x

    def forward(self, x: torch.Tensor, batch_index: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised, standardised, clipped and (with batch centres) batch-centred ``x``.

        ``batch_index``: the rows' batch codes, required when :attr:`centers_batches`.
        """
        return self.center(self.scale(x), batch_index)

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised, standardised and clipped ``x`` (before batch centring)."""
        return self._standardize(self.normalize(x), self.mean, self.std)

    def center(self, v: torch.Tensor, batch_index: torch.Tensor | None) -> torch.Tensor:
        """Scaled rows ``v`` minus their batch centres (``v`` itself without centres)."""
        if not self.centers_batches:
            return v
        return v - self.batch_center.index_select(0, self._codes(batch_index))

    def centered_bias(
        self, weight: torch.Tensor, batch_index: torch.Tensor | None
    ) -> torch.Tensor | None:
        """``-(batch centre) @ weight`` per row: the centring folded into a linear layer.

        ``weight`` is ``(n_features, n_output)``; ``None`` without batch centres.
        """
        if not self.centers_batches:
            return None
        return -(self.batch_center @ weight).index_select(0, self._codes(batch_index))

    def _codes(self, batch_index: torch.Tensor | None) -> torch.Tensor:
        if batch_index is None:
            raise ValueError(
                "This input layer takes each batch's centre off its rows: pass batch_index."
            )
        return batch_index.long().view(-1).to(self.batch_center.device)

    def _standardize(self, v: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        out = (v - mean) / std
        if self.max_value is not None:
            out = out.clamp(-self.max_value, self.max_value)
        return out

    def zero_value(self) -> torch.Tensor:
        """What a zero input becomes in each feature, ``(n_features,)``.

        Every normalisation maps 0 to 0, so this is the standardised, clipped 0.
        """
        return self._standardize(torch.zeros_like(self.mean), self.mean, self.std)

    def scale_nonzero(
        self, crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor
    ) -> torch.Tensor:
        """:meth:`forward` at the stored entries of a CSR minibatch (``crow``, ``col``, ``values``).

        The library size of a row (``"log"``) is the sum of its stored values, as in the
        dense rows they stand for.
        """
        counts = crow[1:] - crow[:-1]
        row_of = torch.repeat_interleave(torch.arange(counts.numel(), device=crow.device), counts)
        if self.normalization == "log":
            lib = torch.zeros(counts.numel(), dtype=values.dtype, device=values.device)
            lib = lib.index_add(0, row_of, values)
            lib = torch.where(lib > 0, lib, torch.ones_like(lib))
            v = torch.log1p(values / lib[row_of] * self.target_sum)
        elif self.normalization == "clr":
            v = torch.log1p(values / self.geometric_mean[col])
        else:
            v = values
        return self._standardize(v, self.mean[col], self.std[col])

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        """Undo the standardisation: back to the normalised (e.g. log1p) scale.

        Batch-centred values come back as the average training cell's batch would hold
        them (the centres average to about 0 over the training cells).
        """
        return x * self.std + self.mean


def _without_batch_center(module: FeatureScalerLayer, state_dict, prefix, *args) -> None:
    """A state dict saved before batch centring existed loads as "no centring".

    Such a model was trained without centres, so its layer gets none (zero rows).
    """
    key = prefix + "batch_center"
    if key not in state_dict:
        module.batch_center = module.batch_center.new_zeros(0, module.mean.shape[0])
        state_dict[key] = module.batch_center.clone()


class OptionalHeadsMixin:
    """``classify`` and ``discriminator_parameters`` of a module with optional heads.

    For modules whose ``classifier`` (cell-type logits) and ``discriminator``
    (modality adversary) are ``None`` when their loss weight is 0.
    """

    classifier: nn.Module | None
    discriminator: nn.Module | None

    def classify(self, z: torch.Tensor) -> torch.Tensor:
        """Class logits of embeddings (needs a classifier)."""
        if self.classifier is None:
            raise RuntimeError("This module has no classifier (no classes, or weight 0).")
        return self.classifier(z)

    def discriminator_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the modality discriminator (none when adversarial is off)."""
        if self.discriminator is None:
            return iter(())
        return self.discriminator.parameters()
