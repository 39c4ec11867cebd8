"""Con-AAE's coupled autoencoders, modality discriminator and losses as a scvi-tools module."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Literal

import torch
import torch.nn.functional as F
from scvi import REGISTRY_KEYS
from scvi.module.base import BaseModuleClass, LossOutput
from torch import nn

from scmint.data import data_key, mask_key
from scmint.nn import (
    MLP,
    FeatureScalerLayer,
    ModalityDiscriminator,
    OptionalHeadsMixin,
    frozen_batch_norm_stats,
    modality_adversarial_loss,
)
from scmint.nn._adversarial import ADVERSARIAL_LOSSES, AdversarialLoss

from ._losses import batch_hard_triplet_loss, mmd_rbf

ClassSource = Literal["labels", "batch"]


class CONAAEModule(OptionalHeadsMixin, BaseModuleClass):
    """Coupled deterministic autoencoders with an adversarially aligned latent space.

    Every modality ``m`` has an input layer (:class:`~scmint.nn.FeatureScalerLayer`:
    per-cell normalisation, then per-feature standardisation with statistics stored as
    buffers), an encoder ``MLP(G_m -> n_hidden[m] -> n_latent)`` and a decoder
    ``MLP(n_latent -> reversed(n_hidden[m]) -> G_m)`` (hidden layers ``Linear ->
    LeakyReLU -> BatchNorm``). Shared by all modalities: a linear classifier on the latent
    code and a modality discriminator (:class:`~scmint.nn.ModalityDiscriminator`).

    Each minibatch row is a cell of the padded MuData; a modality's terms use only the
    rows measured in it (``mask_<m>``), cross terms use rows measured in both. The
    generator objective (:meth:`loss`) is::

        w_rec    * sum_m MSE(decoder_m(z_m), x_m)      (standardised, batch-centred inputs)
      + w_adv    * LSGAN(D(z), flipped modality labels)             (fool the discriminator)
      + w_cycle  * sum_a mean_{b != a} MSE(encoder_b(decoder_b(z_a)), z_a)
      + w_triplet* batch-hard triplet(z of all modalities, classes; margin)
      + w_class  * mean_m CE(classifier(z_m), classes)
      + w_mmd    * mean_{a<b} MMD(z_a, z_b)                           (optional)
      + w_anchor * mean_{a<b} MSE(z_a, z_b) over cells measured in both  (optional)

    and the discriminator's (:meth:`discriminator_loss`) is the least-squares GAN loss
    with the true modality labels, so the pair is trained with
    :class:`scmint.train.GeneratorDiscriminatorPlan`.

    Parameters
    ----------
    modalities
        Modality names, in order; inputs are read from ``tensors[data_key(m)]`` and
        ``tensors[mask_key(m)]``.
    n_input
        Number of features of each modality.
    n_hidden
        Hidden widths of each modality's encoder (``{modality: widths}`` or one sequence
        for all); the decoder uses them reversed.
    n_latent
        Latent dimension (Con-AAE: 50).
    n_classes
        Number of classes of the classifier and triplet loss (0: none).
    class_of_code
        Class (``0 .. n_classes-1``) of each registered label (or batch) code, ``-1`` for
        codes that are not a class (unlabelled cells).
    class_source
        ``"labels"`` (cell types) or ``"batch"``: the registry key the classes come from.
    normalization
        ``"log"``, ``"clr"`` or ``"none"`` per modality (or one value for all).
    target_sum, max_value
        See :class:`~scmint.nn.FeatureScalerLayer`.
    reconstruction_weight, adversarial_weight, cycle_weight, triplet_weight,
    classifier_weight, mmd_weight, anchor_weight
        Weights of the terms; 0 switches a term off (an adversarial weight of 0 builds no
        discriminator).
    triplet_margin
        Margin of the triplet loss (0.3).
    cycle_detach
        ``True``: the cycle loss treats ``z_a`` as a constant and trains only the other
        modality's decoder and encoder (the purpose the paper gives it: make them
        consistent on the region of latent space that modality ``a`` occupies).
        ``False``: gradients also reach modality ``a``'s encoder through ``z_a``, the
        literal formula.
    adversarial_loss
        ``"least_squares"`` (Con-AAE; sigmoid discriminator outputs) or
        ``"cross_entropy"`` (logits).
    discriminator_hidden
        Hidden widths of the discriminator (Con-AAE: ``(50, 100)``).
    negative_slope
        LeakyReLU slope of all networks.
    n_batch
        Number of registered batches.
    center_batches
        Take each batch's mean off the standardised inputs (the input layers' batch
        centres, set by the model): encoders read, and decoders reconstruct, profiles
        without the per-feature shifts between batches. Needs ``n_batch >= 2``.
    """

    def __init__(
        self,
        modalities: Sequence[str],
        n_input: Sequence[int],
        n_hidden: Mapping[str, Sequence[int]] | Sequence[int] = (1024, 256),
        n_latent: int = 50,
        n_classes: int = 0,
        class_of_code: Sequence[int] | None = None,
        class_source: ClassSource = "labels",
        normalization: Mapping[str, str] | str = "log",
        target_sum: float = 1e4,
        max_value: float | None = 10.0,
        reconstruction_weight: float = 10.0,
        adversarial_weight: float = 10.0,
        cycle_weight: float = 10.0,
        triplet_weight: float = 10.0,
        classifier_weight: float = 1.0,
        mmd_weight: float = 0.0,
        anchor_weight: float = 0.0,
        triplet_margin: float = 0.3,
        cycle_detach: bool = True,
        adversarial_loss: AdversarialLoss = "least_squares",
        discriminator_hidden: Sequence[int] = (50, 100),
        negative_slope: float = 0.2,
        n_batch: int = 1,
        center_batches: bool = False,
    ) -> None:
        super().__init__()
        self.modalities = list(modalities)
        if len(self.modalities) < 2:
            raise ValueError(f"CONAAE needs two or more modalities, got {self.modalities}.")
        if len(n_input) != len(self.modalities):
            raise ValueError(
                f"n_input has {len(n_input)} entries for {len(self.modalities)} modalities."
            )
        if adversarial_loss not in ADVERSARIAL_LOSSES:
            raise ValueError(
                f"adversarial_loss must be one of {ADVERSARIAL_LOSSES}, got {adversarial_loss!r}."
            )
        if class_source not in ("labels", "batch"):
            raise ValueError(f"class_source must be 'labels' or 'batch', got {class_source!r}.")
        hidden = (
            {m: tuple(int(h) for h in n_hidden[m]) for m in self.modalities}
            if isinstance(n_hidden, Mapping)
            else dict.fromkeys(self.modalities, tuple(int(h) for h in n_hidden))
        )
        norms = (
            dict(normalization)
            if isinstance(normalization, Mapping)
            else dict.fromkeys(self.modalities, normalization)
        )
        self.n_input = [int(n) for n in n_input]
        self.n_hidden = hidden
        self.n_latent = int(n_latent)
        self.n_classes = int(n_classes)
        self.class_source = class_source
        self.reconstruction_weight = float(reconstruction_weight)
        self.adversarial_weight = float(adversarial_weight)
        self.cycle_weight = float(cycle_weight)
        self.triplet_weight = float(triplet_weight) if self.n_classes > 1 else 0.0
        self.classifier_weight = float(classifier_weight) if self.n_classes > 1 else 0.0
        self.mmd_weight = float(mmd_weight)
        self.anchor_weight = float(anchor_weight)
        self.triplet_margin = float(triplet_margin)
        self.cycle_detach = bool(cycle_detach)
        self.adversarial_loss = adversarial_loss

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
                m: MLP(n, self.n_latent, hidden[m], negative_slope=negative_slope)
                for m, n in zip(self.modalities, self.n_input, strict=True)
            }
        )
        self.decoders = nn.ModuleDict(
            {
                m: MLP(self.n_latent, n, hidden[m][::-1], negative_slope=negative_slope)
                for m, n in zip(self.modalities, self.n_input, strict=True)
            }
        )
        self.classifier = (
            nn.Linear(self.n_latent, self.n_classes) if self.classifier_weight > 0 else None
        )
        self.discriminator = (
            ModalityDiscriminator(
                self.n_latent,
                len(self.modalities),
                discriminator_hidden,
                negative_slope=negative_slope,
                output_activation="sigmoid" if adversarial_loss == "least_squares" else None,
            )
            if self.adversarial_weight > 0
            else None
        )
        codes = list(class_of_code) if class_of_code is not None else [-1]
        self.register_buffer("class_of_code", torch.as_tensor(codes, dtype=torch.long))

    # ------------------------------------------------------------------ networks
    def encode(
        self, x: torch.Tensor, modality: str, batch_index: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Latent codes of registered (e.g. count) values ``x`` of ``modality``.

        ``batch_index`` (the rows' batch codes) is required with ``center_batches``.
        """
        return self.encoders[modality](self.scalers[modality](x, batch_index))

    def input_layers(self) -> nn.ModuleDict:
        """Each modality's input layer (normalisation, standardisation, batch centres)."""
        return self.scalers

    def batch_parameters(self) -> dict[str, int]:
        """No parameter has a slice per batch (batch centres are fitted, not trained)."""
        return {}

    def decode(self, z: torch.Tensor, modality: str) -> torch.Tensor:
        """``modality``'s profile decoded from ``z``, in its standardised input space."""
        return self.decoders[modality](z)

    def unscale(self, x: torch.Tensor, modality: str) -> torch.Tensor:
        """Undo the standardisation of ``modality`` (back to e.g. log1p-normalised)."""
        return self.scalers[modality].inverse(x)

    # ------------------------------------------------------------------ scvi contract
    def _get_inference_input(self, tensors: dict[str, torch.Tensor], **kwargs) -> dict:
        return {
            "x": {m: tensors[data_key(m)] for m in self.modalities},
            "mask": {m: tensors[mask_key(m)] for m in self.modalities},
            "batch": tensors[REGISTRY_KEYS.BATCH_KEY],
        }

    def inference(
        self,
        x: Mapping[str, torch.Tensor],
        mask: Mapping[str, torch.Tensor],
        batch: torch.Tensor | None = None,
    ) -> dict[str, dict[str, torch.Tensor]]:
        """Standardised (batch-centred) inputs and latent codes of each modality's rows."""
        has, x_scaled, z = {}, {}, {}
        for m in self.modalities:
            has[m] = mask[m].view(-1) > 0.5
            b = None if batch is None else batch.view(-1)[has[m]]  # read by centring layers
            x_scaled[m] = self.scalers[m](x[m][has[m]], b)
            z[m] = self.encoders[m](x_scaled[m])
        return {"z": z, "x_scaled": x_scaled, "has": has}

    def _get_generative_input(self, tensors, inference_outputs, **kwargs) -> dict:
        return {"z": inference_outputs["z"]}

    def generative(self, z: Mapping[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
        """Each modality's reconstruction from its own latent codes."""
        return {"x_hat": {m: self.decoders[m](z[m]) for m in self.modalities}}

    # ------------------------------------------------------------------ losses
    def _stack(self, z: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent codes of all modalities stacked, and each row's modality index."""
        parts = [z[m] for m in self.modalities]
        index = torch.cat(
            [
                torch.full((p.shape[0],), i, dtype=torch.long, device=p.device)
                for i, p in enumerate(parts)
            ]
        )
        return torch.cat(parts, dim=0), index

    def _classes(self, tensors, has: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        key = REGISTRY_KEYS.LABELS_KEY if self.class_source == "labels" else REGISTRY_KEYS.BATCH_KEY
        codes = tensors[key].long().view(-1)
        classes = self.class_of_code[codes]
        return {m: classes[has[m]] for m in self.modalities}

    def _present(self, z: Mapping[str, torch.Tensor]) -> list[str]:
        return [m for m in self.modalities if z[m].shape[0] > 0]

    def loss(
        self,
        tensors: dict[str, torch.Tensor],
        inference_outputs: dict[str, dict[str, torch.Tensor]],
        generative_outputs: dict[str, dict[str, torch.Tensor]],
    ) -> LossOutput:
        """The generator objective and its parts (see the class docstring)."""
        z, xs, has = inference_outputs["z"], inference_outputs["x_scaled"], inference_outputs["has"]
        x_hat = generative_outputs["x_hat"]
        present = self._present(z)
        ref = z[self.modalities[0]]
        zero = ref.new_zeros(())
        metrics: dict[str, torch.Tensor] = {}
        total = zero

        rec = zero
        for m in present:
            rec_m = F.mse_loss(x_hat[m], xs[m])
            metrics[f"reconstruction_loss_{m}"] = rec_m.detach()
            rec = rec + rec_m
        metrics["reconstruction_loss"] = rec.detach()
        total = total + self.reconstruction_weight * rec

        if self.discriminator is not None and len(present) >= 2:
            z_all, index = self._stack(z)
            adv = modality_adversarial_loss(
                self.discriminator(z_all),
                index,
                len(self.modalities),
                loss=self.adversarial_loss,
                flip=True,
            )
            metrics["adversarial_loss"] = adv.detach()
            total = total + self.adversarial_weight * adv

        if self.cycle_weight > 0 and present:
            cycle = zero
            for a in present:
                per_b = [self._cycle(z[a], b) for b in self.modalities if b != a]
                cycle = cycle + torch.stack(per_b).mean()
            metrics["cycle_loss"] = cycle.detach()
            total = total + self.cycle_weight * cycle

        if self.triplet_weight > 0 or self.classifier_weight > 0:
            classes = self._classes(tensors, has)
            if self.triplet_weight > 0:
                z_all, _ = self._stack(z)
                c_all = torch.cat([classes[m] for m in self.modalities])
                triplet = batch_hard_triplet_loss(
                    z_all, c_all, margin=self.triplet_margin, valid=c_all >= 0
                )
                metrics["triplet_loss"] = triplet.detach()
                total = total + self.triplet_weight * triplet
            if self.classifier_weight > 0:
                ce, accuracy = self._classification(z, classes)
                if ce is not None:
                    metrics["classification_loss"] = ce.detach()
                    metrics["accuracy"] = accuracy
                    total = total + self.classifier_weight * ce

        if self.mmd_weight > 0 and len(present) >= 2:
            mmd = torch.stack([mmd_rbf(z[a], z[b]) for a, b in combinations(present, 2)]).mean()
            metrics["mmd_loss"] = mmd.detach()
            total = total + self.mmd_weight * mmd

        if self.anchor_weight > 0:
            anchor = self._anchor(z, has)
            if anchor is not None:
                metrics["anchor_loss"] = anchor.detach()
                total = total + self.anchor_weight * anchor

        n_obs = int(has[self.modalities[0]].shape[0])
        return LossOutput(loss=total, n_obs_minibatch=n_obs, extra_metrics=metrics)

    def _cycle(self, z_a: torch.Tensor, b: str) -> torch.Tensor:
        """``MSE(encoder_b(decoder_b(z_a)), z_a)``.

        With ``cycle_detach``, ``z_a`` enters without gradient, so the term trains only
        ``decoder_b`` and ``encoder_b``. The re-encoding leaves the batch-norm running
        statistics of ``encoder_b`` alone: at inference that encoder only sees measured
        ``b`` profiles, not decoded ones.
        """
        if self.cycle_detach:
            z_a = z_a.detach()
        decoded = self.decoders[b](z_a)
        with frozen_batch_norm_stats(self.encoders[b]):
            return F.mse_loss(self.encoders[b](decoded), z_a)

    def _classification(
        self, z: Mapping[str, torch.Tensor], classes: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Mean over modalities of the cross-entropy on labelled rows, and accuracy."""
        terms, n_correct, n_rows = [], 0.0, 0
        for m in self.modalities:
            labelled = classes[m] >= 0
            if not labelled.any():
                continue
            logits = self.classifier(z[m][labelled])
            target = classes[m][labelled]
            terms.append(F.cross_entropy(logits, target))
            n_correct += float((logits.argmax(dim=-1) == target).sum())
            n_rows += int(target.shape[0])
        if not terms:
            return None, None
        accuracy = torch.tensor(n_correct / n_rows, device=terms[0].device)
        return torch.stack(terms).mean(), accuracy

    def _anchor(
        self, z: Mapping[str, torch.Tensor], has: Mapping[str, torch.Tensor]
    ) -> torch.Tensor | None:
        """Mean over modality pairs of ``MSE(z_a, z_b)`` on cells measured in both."""
        terms = []
        for a, b in combinations(self.modalities, 2):
            both = has[a] & has[b]
            if not both.any():
                continue
            pos_a = torch.cumsum(has[a].long(), 0) - 1
            pos_b = torch.cumsum(has[b].long(), 0) - 1
            terms.append(F.mse_loss(z[a][pos_a[both]], z[b][pos_b[both]]))
        return torch.stack(terms).mean() if terms else None

    def discriminator_loss(
        self,
        tensors: dict[str, torch.Tensor],
        inference_outputs: dict[str, dict[str, torch.Tensor]],
    ) -> torch.Tensor | None:
        """Least-squares GAN loss of the discriminator on (detached) latent codes.

        ``None`` without a discriminator or when the minibatch holds fewer than two
        modalities.
        """
        z = inference_outputs["z"]
        if self.discriminator is None or len(self._present(z)) < 2:
            return None
        z_all, index = self._stack(z)
        return modality_adversarial_loss(
            self.discriminator(z_all),
            index,
            len(self.modalities),
            loss=self.adversarial_loss,
            flip=False,
        )
