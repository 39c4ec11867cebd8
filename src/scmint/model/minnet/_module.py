"""MinNet's Siamese network as a scvi-tools module."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from scvi.module.base import BaseModuleClass, LossOutput
from torch import nn

from scmint.data import data_key
from scmint.nn import FeatureScalerLayer, SafeBatchNorm1d, SparseInputLinear
from scmint.nn._blocks import InputNormalization

from ._losses import flexible_margin, flexible_margin_contrastive_loss
from ._task import PAIR_KEYS, batches_key, labels_key

Activation = Literal["tanh", "sigmoid", "relu"]
_ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "relu": nn.ReLU}


class _ModalityEncoder(nn.Module):
    """``Linear(G -> H) -> activation -> BatchNorm1d(H)`` over the scaled inputs of a modality.

    The linear layer reads dense or sparse-CSR minibatches (:class:`~scmint.nn.SparseInputLinear`).
    """

    def __init__(self, n_input: int, n_hidden: int, activation: str) -> None:
        super().__init__()
        self.linear = SparseInputLinear(n_input, n_hidden)
        self.activation = _ACTIVATIONS[activation]()
        # a minibatch can hold a single cell of one modality: SafeBatchNorm1d then uses
        # the running statistics
        self.norm = SafeBatchNorm1d(n_hidden)

    def forward(
        self,
        x: torch.Tensor,
        scaler: FeatureScalerLayer,
        batch_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.norm(self.activation(self.linear(x, scaler, batch_index)))


class MINNETModule(BaseModuleClass):
    """Siamese network of MinNet: one encoder per modality, two heads shared by all.

    Each modality ``m`` has its own input layer (:class:`~scmint.nn.FeatureScalerLayer`:
    the normalisation and per-feature scaling fitted on the training cells, replayed on
    the device for every minibatch) and its own encoder ``Linear(G_m -> n_hidden) ->
    activation -> BatchNorm1d(n_hidden)``; a sparse modality's minibatches reach the
    linear layer sparse (:class:`~scmint.nn.SparseInputLinear`). Two heads read the
    ``n_hidden``-d layer and are shared by all modalities: ``Linear(n_hidden ->
    n_latent)`` (the co-embedding) and ``Linear(n_hidden -> n_labels)`` (the cell-type
    classifier). Weights are Xavier-uniform, biases standard normal, as in the reference
    implementation.

    The loss is ``sum_m CE_m + contrastive_weight * L_con`` where ``L_con`` is
    :func:`~scmint.model.minnet.flexible_margin_contrastive_loss` over the minibatch's cell pairs,
    with margin ``margin_scale * (d_ij + type_margin * 1[types differ])``.

    Parameters
    ----------
    modalities
        Modality names, in order; inputs are read from ``tensors[data_key(m)]``.
    n_input
        Number of input features of each modality, in the order of ``modalities``.
    n_labels
        Number of cell types of the classifier head.
    n_hidden
        Width of the per-modality layer (768 in MinNet).
    n_latent
        Dimension of the co-embedding (32 in MinNet).
    activation
        ``"tanh"`` (MinNet multiome), ``"sigmoid"`` (MinNet CITE-seq) or ``"relu"``; one
        for all modalities or ``{modality: activation}``.
    margin_scale
        The constant ``M`` multiplying the flexible margin (10).
    type_margin
        The constant ``C`` added to the margin of pairs of different cell types (3).
    contrastive_weight
        Weight ``lambda`` of the contrastive loss (0.5).
    distance_eps
        Added to squared embedding distances in the contrastive loss (1e-3).
    normalization
        Input normalisation of each modality (``"log"``, ``"clr"`` or ``"none"``; one
        for all or ``{modality: value}``), see :class:`~scmint.nn.FeatureScalerLayer`.
    target_sum
        Counts per cell after ``"log"`` normalisation.
    max_value
        Clip of the scaled inputs.
    n_batch
        Number of registered batches.
    center_batches
        Take each batch's mean off the scaled inputs (the input layers' batch centres,
        set by the model). Needs ``n_batch >= 2``.
    """

    def __init__(
        self,
        modalities: Sequence[str],
        n_input: Sequence[int],
        n_labels: int,
        n_hidden: int = 768,
        n_latent: int = 32,
        activation: Activation | Mapping[str, Activation] = "tanh",
        margin_scale: float = 10.0,
        type_margin: float = 3.0,
        contrastive_weight: float = 0.5,
        distance_eps: float = 1e-3,
        normalization: InputNormalization | Mapping[str, InputNormalization] = "log",
        target_sum: float = 1e4,
        max_value: float | None = 10.0,
        n_batch: int = 1,
        center_batches: bool = False,
    ) -> None:
        super().__init__()
        self.modalities = list(modalities)
        if len(n_input) != len(self.modalities):
            raise ValueError(
                f"n_input has {len(n_input)} entries for {len(self.modalities)} modalities."
            )
        if n_labels < 1:
            raise ValueError(f"n_labels must be at least 1, got {n_labels}.")
        activations = (
            {m: activation.get(m, "tanh") for m in self.modalities}
            if isinstance(activation, Mapping)
            else dict.fromkeys(self.modalities, activation)
        )
        bad = {m: a for m, a in activations.items() if a not in _ACTIVATIONS}
        if bad:
            raise ValueError(f"Unknown activation(s) {bad}; choose from {sorted(_ACTIVATIONS)}.")
        self.n_input = [int(n) for n in n_input]
        self.n_labels = int(n_labels)
        self.n_hidden = int(n_hidden)
        self.n_latent = int(n_latent)
        self.margin_scale = float(margin_scale)
        self.type_margin = float(type_margin)
        self.contrastive_weight = float(contrastive_weight)
        self.distance_eps = float(distance_eps)
        norms = (
            {m: normalization.get(m, "log") for m in self.modalities}
            if isinstance(normalization, Mapping)
            else dict.fromkeys(self.modalities, normalization)
        )
        self.n_batch = max(int(n_batch), 1)
        self.center_batches = bool(center_batches) and self.n_batch > 1
        n_centers = self.n_batch if self.center_batches else 0
        self.scalers = nn.ModuleDict(
            {
                m: FeatureScalerLayer(
                    n, norms[m], target_sum=target_sum, max_value=max_value, n_batch=n_centers
                )
                for m, n in zip(self.modalities, self.n_input, strict=True)
            }
        )
        self.encoders = nn.ModuleDict(
            {
                m: _ModalityEncoder(n, self.n_hidden, activations[m])
                for m, n in zip(self.modalities, self.n_input, strict=True)
            }
        )
        self.embedding_head = nn.Linear(self.n_hidden, self.n_latent)
        self.classifier_head = nn.Linear(self.n_hidden, self.n_labels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform weights and standard-normal biases of every linear layer."""
        for layer in self.modules():
            if isinstance(layer, nn.Linear | SparseInputLinear):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.normal_(layer.bias)

    # ------------------------------------------------------------------ network
    def hidden(
        self, x: torch.Tensor, modality: str, batch_index: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The ``n_hidden``-d representation of inputs (registered values) of one modality.

        ``x`` is a dense or a sparse-CSR minibatch (the scaling is folded into the first
        layer for a sparse one, see :class:`~scmint.nn.SparseInputLinear`);
        ``batch_index`` (the rows' batch codes) is required with ``center_batches``.
        """
        return self.encoders[modality](x, self.scalers[modality], batch_index)

    def embed(
        self, x: torch.Tensor, modality: str, batch_index: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Co-embedding of inputs ``x`` (cells x features, registered values) of ``modality``."""
        return self.embedding_head(self.hidden(x, modality, batch_index))

    def classify(
        self, x: torch.Tensor, modality: str, batch_index: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Cell-type logits of inputs ``x`` (registered values) of ``modality``."""
        return self.classifier_head(self.hidden(x, modality, batch_index))

    def input_layers(self) -> nn.ModuleDict:
        """Each modality's input layer (normalisation, scaling, batch centres)."""
        return self.scalers

    def batch_parameters(self) -> dict[str, int]:
        """No parameter has a slice per batch (batch centres are fitted, not trained)."""
        return {}

    # ------------------------------------------------------------------ scvi contract
    def _get_inference_input(self, tensors: dict[str, torch.Tensor], **kwargs) -> dict:
        present = [m for m in self.modalities if data_key(m) in tensors]
        return {
            "x": {m: tensors[data_key(m)] for m in present},
            "batch": {m: tensors.get(batches_key(m)) for m in present},
        }

    def inference(
        self,
        x: Mapping[str, torch.Tensor],
        batch: Mapping[str, torch.Tensor | None] | None = None,
    ) -> dict[str, dict[str, torch.Tensor]]:
        """Embeddings ``z`` and logits of each modality's rows in the minibatch."""
        z, logits = {}, {}
        for m, xm in x.items():
            if xm.shape[0] == 0:
                z[m] = torch.zeros((0, self.n_latent), device=xm.device)
                logits[m] = torch.zeros((0, self.n_labels), device=xm.device)
                continue
            h = self.hidden(xm, m, None if batch is None else batch.get(m))
            z[m] = self.embedding_head(h)
            logits[m] = self.classifier_head(h)
        return {"z": z, "logits": logits}

    def _get_generative_input(self, tensors, inference_outputs, **kwargs) -> dict:
        return {}

    def generative(self) -> dict:
        """MinNet has no decoder."""
        return {}

    def loss(
        self,
        tensors: dict[str, torch.Tensor],
        inference_outputs: dict[str, dict[str, torch.Tensor]],
        generative_outputs: dict,
    ) -> LossOutput:
        """Cross-entropy on every modality plus the weighted flexible-margin contrastive loss.

        ``tensors`` holds, besides each modality's inputs and labels, the minibatch's
        pairs: ``pair_first`` / ``pair_second`` (rows of the modalities' embeddings
        concatenated in module order), ``pair_same``, ``pair_distance`` and
        ``pair_type_differs``.
        """
        z, logits = inference_outputs["z"], inference_outputs["logits"]
        ce_total = torch.zeros((), device=self.device)
        n_correct, n_rows = 0.0, 0
        for m in self.modalities:
            if m not in logits or logits[m].shape[0] == 0:
                continue
            target = tensors[labels_key(m)].long().view(-1)
            ce_total = ce_total + F.cross_entropy(logits[m], target)
            n_correct += float((logits[m].argmax(dim=-1) == target).sum())
            n_rows += int(target.shape[0])
        z_all = torch.cat([z[m] for m in self.modalities if m in z], dim=0)
        first = tensors[PAIR_KEYS["first"]].long().view(-1)
        second = tensors[PAIR_KEYS["second"]].long().view(-1)
        margin = flexible_margin(
            tensors[PAIR_KEYS["distance"]].view(-1),
            tensors[PAIR_KEYS["type_differs"]].view(-1),
            self.type_margin,
        )
        same = tensors[PAIR_KEYS["same"]].view(-1)
        con = flexible_margin_contrastive_loss(
            z_all[first],
            z_all[second],
            same,
            margin,
            margin_scale=self.margin_scale,
            eps=self.distance_eps,
        )
        total = ce_total + self.contrastive_weight * con
        with torch.no_grad():
            d = (z_all[first] - z_all[second]).pow(2).sum(-1).sqrt()
            pos = same > 0.5
            pos_dist = d[pos].mean() if pos.any() else torch.zeros((), device=d.device)
            neg_dist = d[~pos].mean() if (~pos).any() else torch.zeros((), device=d.device)
        accuracy = torch.tensor(n_correct / max(n_rows, 1), device=total.device)
        return LossOutput(
            loss=total,
            n_obs_minibatch=int(first.shape[0]),
            extra_metrics={
                "classification_loss": ce_total.detach(),
                "contrastive_loss": con.detach(),
                "accuracy": accuracy,
                "positive_distance": pos_dist,
                "negative_distance": neg_dist,
            },
        )
