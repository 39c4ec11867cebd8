"""scCross's per-modality VAEs, bidirectional aligners and discriminators as a scvi-tools module."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from itertools import pairwise

import torch
from scvi import REGISTRY_KEYS
from scvi.module.base import BaseModuleClass, LossOutput
from torch import nn
from torch.distributions import Normal, kl_divergence

from scmint.data import data_key, mask_key
from scmint.nn import ModalityDiscriminator, labelled_cross_entropy, modality_adversarial_loss
from scmint.nn._gaussian import GaussianEncoder, GaussianLinear
from scmint.nn._likelihoods import COUNT_LIKELIHOODS, EPS, BatchLikelihoodDecoder

from ._losses import gram_alignment_loss, paired_distance_loss

PRETRAIN, FINETUNE = 1, 2
"""Training stages: per-modality VAEs, then aligners and adversaries."""


class SCCROSSModule(BaseModuleClass):
    """Per-modality VAEs in their own latent spaces ``u_k``, aligned into a joint space ``z``.

    For each modality ``k``: an encoder from the reduced input ``h_k`` (PCA / LSI,
    optionally kNN-smoothed; computed by the model, looked up per minibatch by cell
    index) to ``q(u_k)``; aligners ``q(z | u_k)`` and ``p(u_k | z)`` (one linear Gaussian
    layer each); a decoder ``p(x_k | u_k)`` in the original features with batch-specific
    scale, bias and dispersion (:class:`~scmint.nn.BatchLikelihoodDecoder`). Shared: a
    ``K``-way modality discriminator ``D_z`` on ``z``; per modality a discriminator
    ``D_ge_k`` of real versus generated profiles (generated through ``u -> z -> u'``).

    **Stage 1** (``stage = 1``, pretraining): ``sum_k w_k [NLL_k(x | u) + kl_weight *
    KL(q(u_k) || N(0, I)) / F_k] + pretrain_mnn_weight * Gram(prior, u)``; no adversary.

    **Stage 2** (fine-tuning): the stage-1 terms plus ``NLL_k(x | u')`` (``u' = z2u(u2z(u))``),
    ``z_kl_weight * KL(q(z | u_k) || q(u_k)) / F_k``, ``mnn_weight * Gram(prior, z)``,
    optional ``pairing_weight *`` mean squared distance between the ``z`` means of cells
    measured in two modalities, optional ``classifier_weight *`` cross-entropy of a linear
    classifier shared by all modalities on the ``z`` means of labelled cells (a scmint
    extension: scCross itself is unsupervised), minus ``gan_weight * (L_Dz + sum_k L_Dge_k)`` (the
    encoders and decoders maximise the discriminators' cross-entropy). The
    discriminators minimise ``gan_weight * (L_Dz + sum_k L_Dge_k)``. During the burn-in
    of stage 2, ``D_z`` sees ``z`` plus Gaussian noise of ``burnin_noise`` times each
    dimension's minibatch standard deviation, annealed linearly to 0 over
    ``burnin_epochs`` (:meth:`set_epoch`), as published.

    NLL terms are means over cells and features; ``F_k`` is the number of features.
    The Gram term compares cosine similarities between consecutive modalities' cells
    (:func:`~scmint.model.sccross.gram_alignment_loss`).

    Parameters
    ----------
    modalities
        Modality names (two or more).
    n_input
        Width of each modality's encoder input.
    n_features
        Number of original features of each modality (decoder outputs).
    likelihoods
        ``{modality: likelihood}`` (see :data:`scmint.nn.LIKELIHOODS`).
    n_batch
        Number of batches.
    n_latent
        Dimension of ``u_k`` and ``z`` (50).
    n_hidden, n_layers, dropout
        Encoder blocks (256, 2, 0.2).
    n_prior
        Dimension of the MNN prior (0: no prior, Gram terms off).
    n_classes
        Classes of the optional classifier (0: none).
    class_of_code
        Class of each registered label code (``-1``: unlabelled).
    kl_weight, z_kl_weight, gan_weight, mnn_weight, pretrain_mnn_weight, pairing_weight,
    classifier_weight
        Loss weights (see above; the classifier needs ``n_classes >= 2``).
    modality_weights
        ``w_k`` (default 1 each).
    discriminator_hidden
        Hidden widths of the discriminators (256, 256).
    burnin_epochs, burnin_noise
        Stage-2 epochs over which ``D_z``'s input noise anneals to 0 (0: no noise), and
        its scale at the start in units of the per-dimension standard deviation (1.5).
    """

    def __init__(
        self,
        modalities: Sequence[str],
        n_input: Sequence[int],
        n_features: Sequence[int],
        likelihoods: Mapping[str, str],
        n_batch: int = 1,
        n_latent: int = 50,
        n_hidden: int = 256,
        n_layers: int = 2,
        dropout: float = 0.2,
        n_prior: int = 0,
        kl_weight: float = 1.0,
        z_kl_weight: float = 0.04,
        gan_weight: float = 0.05,
        mnn_weight: float = 0.04,
        pretrain_mnn_weight: float = 0.04,
        pairing_weight: float = 0.0,
        n_classes: int = 0,
        class_of_code: Sequence[int] | None = None,
        classifier_weight: float = 0.0,
        modality_weights: Mapping[str, float] | None = None,
        discriminator_hidden: Sequence[int] = (256, 256),
        burnin_epochs: int = 0,
        burnin_noise: float = 1.5,
    ) -> None:
        super().__init__()
        self.modalities = list(modalities)
        if len(self.modalities) < 2:
            raise ValueError(f"SCCROSS needs two or more modalities, got {self.modalities}.")
        if not (len(n_input) == len(n_features) == len(self.modalities)):
            raise ValueError("n_input and n_features need one entry per modality.")
        self.n_input = [int(n) for n in n_input]
        self.n_features = [int(n) for n in n_features]
        self.likelihoods = {m: likelihoods[m] for m in self.modalities}
        self.n_latent = int(n_latent)
        self.n_prior = int(n_prior)
        self.kl_weight = float(kl_weight)
        self.z_kl_weight = float(z_kl_weight)
        self.gan_weight = float(gan_weight)
        self.mnn_weight = float(mnn_weight)
        self.pretrain_mnn_weight = float(pretrain_mnn_weight)
        self.pairing_weight = float(pairing_weight)
        self.n_classes = int(n_classes)
        self.classifier_weight = float(classifier_weight) if self.n_classes > 1 else 0.0
        codes = list(class_of_code) if class_of_code is not None else [-1]
        self.register_buffer("class_of_code", torch.as_tensor(codes, dtype=torch.long))
        self.classifier = (
            nn.Linear(self.n_latent, self.n_classes) if self.classifier_weight > 0 else None
        )
        weights = modality_weights or {}
        self.modality_weights = {m: float(weights.get(m, 1.0)) for m in self.modalities}
        self.stage = PRETRAIN
        self.burnin_epochs = int(burnin_epochs)
        self.burnin_noise = float(burnin_noise)
        self.anneal = 0.0
        mods = self.modalities
        self.encoders = nn.ModuleDict(
            {
                m: GaussianEncoder(n, self.n_latent, n_hidden, n_layers, dropout)
                for m, n in zip(mods, self.n_input, strict=True)
            }
        )
        self.to_joint = nn.ModuleDict({m: GaussianLinear(n_latent, n_latent) for m in mods})
        self.from_joint = nn.ModuleDict({m: GaussianLinear(n_latent, n_latent) for m in mods})
        self.decoders = nn.ModuleDict(
            {
                m: BatchLikelihoodDecoder(n_latent, f, n_batch, self.likelihoods[m])
                for m, f in zip(mods, self.n_features, strict=True)
            }
        )
        self.latent_discriminator = ModalityDiscriminator(
            n_latent, len(mods), discriminator_hidden, output_activation=None
        )
        self.data_discriminators = nn.ModuleDict(
            {
                m: ModalityDiscriminator(f, 2, discriminator_hidden, output_activation=None)
                for m, f in zip(mods, self.n_features, strict=True)
            }
        )
        # per-cell encoder inputs and prior of the registered cells (set by the model)
        for i, n in enumerate(self.n_input):
            self.register_buffer(f"_inputs_{i}", torch.zeros(0, n), persistent=False)
            self.register_buffer(f"_prior_{i}", torch.zeros(0, self.n_prior), persistent=False)

    def set_epoch(self, epoch: int) -> None:
        """Anneal ``D_z``'s input noise in stage 2: ``max(1 - epoch / burnin_epochs, 0)``."""
        burnin = self.burnin_epochs
        active = self.stage == FINETUNE and burnin > 0
        self.anneal = max(1.0 - epoch / burnin, 0.0) if active else 0.0

    # ------------------------------------------------------------------ data tables
    def set_tables(
        self,
        inputs: Mapping[str, torch.Tensor],
        prior: Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        """Store the encoder inputs (and prior) of every registered cell, by cell index.

        Parameters
        ----------
        inputs
            ``{modality: n_cells x n_input}`` (rows of unmeasured cells are ignored).
        prior
            ``{modality: n_cells x n_prior}`` or ``None``. A row of NaN: a cell without a
            prior (from disk the prior spans a subsample), left out of the Gram terms.
        """
        device = next(self.parameters()).device
        for i, m in enumerate(self.modalities):
            setattr(
                self, f"_inputs_{i}", torch.as_tensor(inputs[m], dtype=torch.float32).to(device)
            )
            if prior is not None:
                p = torch.as_tensor(prior[m], dtype=torch.float32).to(device)
                setattr(self, f"_prior_{i}", p)

    def batch_parameters(self) -> dict[str, int]:
        """The decoders' per-batch parameters (rows, dimension 0).

        The only parameters a query update (:meth:`SCCROSS.load_query_data
        <scmint.model.SCCROSS.load_query_data>`) trains, for the new batches.
        """
        return {
            f"decoders.{m}.{name}": 0
            for m in self.modalities
            for name in self.decoders[m].batch_parameters()
        }

    def _table(self, kind: str, modality: str) -> torch.Tensor:
        return getattr(self, f"_{kind}_{self.modalities.index(modality)}")

    @property
    def has_prior(self) -> bool:
        """Whether the Gram (MNN prior) terms are on."""
        return self.n_prior > 0 and self._table("prior", self.modalities[0]).shape[0] > 0

    # ------------------------------------------------------------------ networks
    def encode(self, h: torch.Tensor, modality: str) -> Normal:
        """``q(u_k | h_k)`` of encoder inputs ``h`` of ``modality``."""
        return self.encoders[modality](h)

    def joint(self, u: torch.Tensor, modality: str) -> Normal:
        """``q(z | u_k)``: the aligner from ``modality``'s space into the joint space."""
        return self.to_joint[modality](u)

    def unjoint(self, z: torch.Tensor, modality: str) -> Normal:
        """``p(u_k | z)``: the aligner from the joint space into ``modality``'s space."""
        return self.from_joint[modality](z)

    def decode(
        self,
        u: torch.Tensor,
        modality: str,
        batch_index: torch.Tensor,
        library: torch.Tensor | None,
    ):
        """``p(x_k | u_k)`` in ``modality``'s original features."""
        return self.decoders[modality](u, batch_index, library)

    def discriminator_parameters(self) -> Iterator[nn.Parameter]:
        """Discriminator parameters; none in stage 1 (no adversarial step)."""
        if self.stage == PRETRAIN:
            return iter(())
        yield from self.latent_discriminator.parameters()
        yield from self.data_discriminators.parameters()

    # ------------------------------------------------------------------ scvi contract
    def _get_inference_input(self, tensors: dict[str, torch.Tensor], **kwargs) -> dict:
        index = tensors[REGISTRY_KEYS.INDICES_KEY].long().view(-1)
        has = {m: tensors[mask_key(m)].view(-1) > 0.5 for m in self.modalities}
        table = {m: self._table("inputs", m) for m in self.modalities}
        if table[self.modalities[0]].shape[0] == 0:
            raise RuntimeError("The encoder inputs are not set; train through SCCROSS.train().")
        return {"h": {m: table[m][index[has[m]]] for m in self.modalities}, "has": has}

    def inference(
        self, h: Mapping[str, torch.Tensor], has: Mapping[str, torch.Tensor]
    ) -> dict[str, dict]:
        """``q(u_k)`` and a sample per modality; in stage 2 also ``q(z | u)``, ``z``, ``u'``."""
        qu, u, qz, z, u_cycle = {}, {}, {}, {}, {}
        for m in self.modalities:
            qu[m] = self.encode(h[m], m)
            u[m] = qu[m].rsample()
            if self.stage == FINETUNE:
                qz[m] = self.joint(u[m], m)
                z[m] = qz[m].rsample()
                u_cycle[m] = self.unjoint(z[m], m).rsample()
        return {"qu": qu, "u": u, "qz": qz, "z": z, "u_cycle": u_cycle, "has": has}

    def _rows(self, tensors, has: Mapping[str, torch.Tensor]) -> dict[str, dict]:
        batch = tensors[REGISTRY_KEYS.BATCH_KEY].long().view(-1)
        x, b, lib = {}, {}, {}
        for m in self.modalities:
            x[m] = tensors[data_key(m)][has[m]]
            b[m] = batch[has[m]]
            lib[m] = x[m].sum(dim=1, keepdim=True)
        return {"x": x, "batch": b, "library": lib}

    def _get_generative_input(self, tensors, inference_outputs, **kwargs) -> dict:
        return {}

    def generative(self) -> dict:
        """Decoding happens in :meth:`loss`: ``p(x_k | u_k)`` and in stage 2 ``p(x_k | u'_k)``.

        The reconstruction terms go through the decoders' fused negative log-likelihood
        (:meth:`~scmint.nn.BatchLikelihoodDecoder.negative_log_likelihood`), which never
        forms the distribution; :meth:`decode` gives it.
        """
        return {}

    def _nll(self, u: torch.Tensor, modality: str, rows: Mapping[str, dict]) -> torch.Tensor:
        """Mean NLL per entry of the minibatch rows of ``modality`` decoded from ``u``."""
        return self.decoders[modality].negative_log_likelihood(
            u, rows["batch"][modality], rows["x"][modality], rows["library"][modality]
        )

    # ------------------------------------------------------------------ losses
    def _present(self, has: Mapping[str, torch.Tensor]) -> list[str]:
        return [m for m in self.modalities if bool(has[m].any())]

    def _gram(self, tensors, has, codes: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
        """Gram term between consecutive modalities present in the minibatch."""
        if not self.has_prior:
            return None
        index = tensors[REGISTRY_KEYS.INDICES_KEY].long().view(-1)
        present = self._present(has)
        if len(present) < 2:
            return None
        prior, kept = {}, {}
        for m in present:
            p = self._table("prior", m)[index[has[m]]]
            known = torch.isfinite(p).all(dim=1)  # NaN rows: cells without a prior
            prior[m], kept[m] = p[known], codes[m][known]
        terms = [
            gram_alignment_loss(prior[a], prior[b], kept[a], kept[b]) for a, b in pairwise(present)
        ]
        return torch.stack(terms).mean()

    def _discriminator_input(self, x: torch.Tensor, modality: str) -> torch.Tensor:
        """What ``D_ge`` sees: ``log1p`` of library-normalised counts, or the values."""
        if self.likelihoods[modality] in COUNT_LIKELIHOODS:
            lib = x.sum(dim=1, keepdim=True).clamp_min(EPS)
            return torch.log1p(x / lib * 1e4)
        return x

    def _adversarial(
        self,
        z: Mapping[str, torch.Tensor],
        real: Mapping[str, torch.Tensor],
        fake: Mapping[str, torch.Tensor],
        present: list[str],
        flip: bool = False,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``L_Dz + sum_k L_Dge_k`` (cross-entropies of the discriminators) and its parts.

        With ``flip`` the targets are swapped (the generator's non-saturating objective:
        codes labelled as another modality, generated profiles as real).
        """
        parts = {}
        codes = torch.cat([z[m] for m in present])
        if self.anneal > 0 and codes.shape[0] > 1:
            std = codes.detach().std(dim=0, keepdim=True)
            codes = codes + self.anneal * self.burnin_noise * std * torch.randn_like(codes)
        index = torch.cat(
            [
                torch.full((z[m].shape[0],), self.modalities.index(m), device=codes.device)
                for m in present
            ]
        )
        parts["latent_discriminator_loss"] = modality_adversarial_loss(
            self.latent_discriminator(codes),
            index,
            len(self.modalities),
            loss="cross_entropy",
            flip=flip,
        )
        for m in present:
            d = self.data_discriminators[m]  # no batch norm: real and fake rows scored apart
            # the generator's objective gets no gradient through the real profiles
            with torch.set_grad_enabled(torch.is_grad_enabled() and not flip):
                real_scores = d(self._discriminator_input(real[m], m))
            fake_scores = d(self._discriminator_input(fake[m], m))
            labels = torch.cat(
                [
                    torch.zeros(real_scores.shape[0], device=real_scores.device),
                    torch.ones(fake_scores.shape[0], device=real_scores.device),
                ]
            )
            parts[f"data_discriminator_loss_{m}"] = modality_adversarial_loss(
                torch.cat([real_scores, fake_scores]),
                labels,
                2,
                loss="cross_entropy",
                flip=flip,
            )
        return torch.stack(list(parts.values())).sum(), parts

    def loss(
        self,
        tensors: dict[str, torch.Tensor],
        inference_outputs: dict,
        generative_outputs: dict,
        kl_weight: float | None = None,
    ) -> LossOutput:
        """The stage's generator objective and its parts (see the class docstring)."""
        has = inference_outputs["has"]
        rows = self._rows(tensors, has)
        x = rows["x"]
        qu, u = inference_outputs["qu"], inference_outputs["u"]
        u_cycle = inference_outputs["u_cycle"]
        present = self._present(has)
        kl_w = self.kl_weight if kl_weight is None else float(kl_weight)
        zero = u[self.modalities[0]].new_zeros(())
        metrics: dict[str, torch.Tensor] = {}
        vae = zero
        for m, n_feat in zip(self.modalities, self.n_features, strict=True):
            if m not in present:
                continue
            nll = self._nll(u[m], m, rows)
            prior = Normal(torch.zeros_like(qu[m].loc), torch.ones_like(qu[m].scale))
            kl = kl_divergence(qu[m], prior).sum(dim=1).mean() / n_feat
            term = nll + kl_w * kl
            metrics[f"nll_{m}"] = nll.detach()
            metrics[f"kl_{m}"] = kl.detach()
            if self.stage == FINETUNE:
                nll_cycle = self._nll(u_cycle[m], m, rows)
                metrics[f"nll_cycle_{m}"] = nll_cycle.detach()
                qz = inference_outputs["qz"][m]
                z_kl = kl_divergence(qz, prior).sum(dim=1).mean() / n_feat
                metrics[f"z_kl_{m}"] = z_kl.detach()
                term = term + nll_cycle + self.z_kl_weight * z_kl
            vae = vae + self.modality_weights[m] * term
        metrics["vae_loss"] = vae.detach()
        total = vae
        if self.stage == PRETRAIN:
            gram = self._gram(tensors, has, u)
            if gram is not None:
                metrics["mnn_loss"] = gram.detach()
                total = total + self.pretrain_mnn_weight * gram
            n_obs = int(next(iter(has.values())).shape[0])
            return LossOutput(loss=total, n_obs_minibatch=n_obs, extra_metrics=metrics)

        z = inference_outputs["z"]
        gram = self._gram(tensors, has, z)
        if gram is not None:
            metrics["mnn_loss"] = gram.detach()
            total = total + self.mnn_weight * gram
        if self.pairing_weight > 0:
            pairing = self._pairing(inference_outputs["qz"], has)
            if pairing is not None:
                metrics["pairing_loss"] = pairing.detach()
                total = total + self.pairing_weight * pairing
        if self.classifier is not None:
            codes = tensors[REGISTRY_KEYS.LABELS_KEY].long().view(-1)
            means = {m: inference_outputs["qz"][m].loc for m in present}
            ce = labelled_cross_entropy(self.classifier, means, has, self.class_of_code[codes])
            if ce is not None:
                metrics["classification_loss"] = ce.detach()
                total = total + self.classifier_weight * ce
        if self.gan_weight > 0 and len(present) >= 2:
            fake = {
                m: self.decode(u_cycle[m], m, rows["batch"][m], rows["library"][m]).mean
                for m in present
            }
            adv, parts = self._adversarial(z, x, fake, present, flip=True)
            metrics.update({k: v.detach() for k, v in parts.items()})
            total = total + self.gan_weight * adv
        n_obs = int(next(iter(has.values())).shape[0])
        return LossOutput(loss=total, n_obs_minibatch=n_obs, extra_metrics=metrics)

    def _pairing(self, qz: Mapping[str, Normal], has) -> torch.Tensor | None:
        """Mean over modality pairs of the squared distance of ``z`` means of shared cells."""
        terms = []
        mods = list(qz)
        for i, a in enumerate(mods):
            for b in mods[i + 1 :]:
                both = has[a] & has[b]
                if not both.any():
                    continue
                pos_a = torch.cumsum(has[a].long(), 0) - 1
                pos_b = torch.cumsum(has[b].long(), 0) - 1
                terms.append(paired_distance_loss(qz[a].loc[pos_a[both]], qz[b].loc[pos_b[both]]))
        return torch.stack(terms).mean() if terms else None

    def discriminator_loss(self, tensors: dict[str, torch.Tensor], inference_outputs: dict):
        """``gan_weight * (L_Dz + sum_k L_Dge_k)`` on detached codes; ``None`` in stage 1."""
        if self.stage == PRETRAIN or self.gan_weight <= 0:
            return None
        has = inference_outputs["has"]
        present = self._present(has)
        if len(present) < 2:
            return None
        rows = self._rows(tensors, has)
        with torch.no_grad():
            fake = {
                m: self.decode(
                    inference_outputs["u_cycle"][m], m, rows["batch"][m], rows["library"][m]
                ).mean
                for m in present
            }
        adv, _ = self._adversarial(inference_outputs["z"], rows["x"], fake, present)
        return self.gan_weight * adv
