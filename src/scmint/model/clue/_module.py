"""CLUE's cross-linked encoder matrix, decoders and discriminator as a scvi-tools module."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from scvi import REGISTRY_KEYS
from scvi.module.base import BaseModuleClass, LossOutput
from scvi.nn import FCLayers
from torch import nn
from torch.distributions import Distribution, Normal, kl_divergence

from scmint.data import data_key, mask_key
from scmint.nn import (
    MLP,
    FeatureScalerLayer,
    ModalityDiscriminator,
    OptionalHeadsMixin,
    SafeBatchNorm1d,
    SparseInputLinear,
    labelled_cross_entropy,
)
from scmint.nn._adversarial import cross_entropy_gan_loss
from scmint.nn._likelihoods import COUNT_LIKELIHOODS, EPS, BatchLikelihoodDecoder
from scmint.nn._sparse import as_dense, row_sums, select_rows

JointRule = Literal["mean", "poe"]
JOINT_RULES: tuple[str, ...] = ("mean", "poe")
Alignment = Literal["cosine", "mse"]
ALIGNMENTS: tuple[str, ...] = ("cosine", "mse")


class CrossEncoder(nn.Module):
    """One source modality's row of CLUE's encoder matrix.

    ``K`` element encoders read the same (normalised) input; element ``i`` estimates the
    latent block that modality ``i``'s decoder reads. The blocks are concatenated into
    one diagonal Normal over ``K * n_latent`` dimensions.

    Each element is an MLP (``Linear -> LeakyReLU -> BatchNorm -> Dropout`` blocks) with
    a Gaussian head. The ``K`` first ``Linear`` layers all read the input, so they are
    held as one :class:`~scmint.nn.SparseInputLinear` of ``K * n_hidden`` outputs (element
    ``i`` owns outputs ``i * n_hidden`` to ``(i + 1) * n_hidden``): a sparse CSR minibatch
    (e.g. 25k peaks) is read once, without densifying it, and the input normalisation is
    folded into that layer. State dicts of the earlier layout (``K`` separate first
    layers) load into this one.

    Parameters
    ----------
    n_input
        Input features of the source modality.
    n_blocks
        Number of modalities ``K`` (latent blocks).
    n_latent
        Dimension of one block.
    n_hidden, n_layers, dropout
        Width, depth (number of hidden layers, at least 1) and dropout of each element.
    n_batch
        Batches whose one-hot the first layer reads (a learned bias per batch, the same
        as concatenating the one-hot to the input); 0: the encoder does not read the
        batch (published CLUE).
    """

    def __init__(
        self,
        n_input: int,
        n_blocks: int,
        n_latent: int,
        n_hidden: int,
        n_layers: int,
        dropout: float,
        n_batch: int = 0,
    ) -> None:
        super().__init__()
        self.n_hidden = int(n_hidden)
        self.n_latent = int(n_latent)
        self.first = SparseInputLinear(n_input, n_blocks * self.n_hidden)
        self.batch_bias = (
            nn.Parameter(torch.zeros(int(n_batch), n_blocks * self.n_hidden)) if n_batch else None
        )
        self.elements = nn.ModuleList(
            _element_tail(self.n_hidden, self.n_latent, n_layers, dropout) for _ in range(n_blocks)
        )
        self._register_load_state_dict_pre_hook(_from_separate_first_layers, with_module=True)

    def forward(
        self,
        x: torch.Tensor,
        scaler: FeatureScalerLayer | None = None,
        batch_index: torch.Tensor | None = None,
    ) -> Normal:
        """``q(u | x)`` for dense or sparse CSR ``x``, normalised by ``scaler`` first.

        ``batch_index``: the rows' batch codes, required when the encoder reads the batch
        or ``scaler`` centres batches.
        """
        h = self.first(x, scaler, batch_index)
        if self.batch_bias is not None:
            if batch_index is None:
                raise ValueError("This encoder reads the batch: pass batch_index.")
            h = h + self.batch_bias.index_select(0, batch_index.long().view(-1))
        h = h.split(self.n_hidden, dim=1)
        out = [element(part) for element, part in zip(self.elements, h, strict=True)]
        d = self.n_latent
        loc = torch.cat([o[:, :d] for o in out], 1)
        scale = torch.cat([F.softplus(o[:, d:]) + EPS for o in out], 1)
        return Normal(loc, scale)


def _element_tail(n_hidden: int, n_latent: int, n_layers: int, dropout: float) -> nn.Sequential:
    """An element encoder after its first ``Linear``: the rest of the MLP, ``2 * n_latent`` out."""
    layers: list[nn.Module] = [nn.LeakyReLU(0.2), SafeBatchNorm1d(n_hidden)]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    hidden = (n_hidden,) * (n_layers - 1)
    layers.append(MLP(n_hidden, 2 * n_latent, hidden, negative_slope=0.2, dropout=dropout))
    return nn.Sequential(*layers)


def _from_separate_first_layers(module, state_dict, prefix, *args) -> None:
    """Load a state dict of ``K`` separate element encoders into :class:`CrossEncoder`.

    The earlier layout held element ``i`` as ``elements.i.body.layers.*`` (an MLP whose
    first ``Linear`` read the input); here the first layers are one ``first`` layer and
    the rest of each element keeps its parameters in the same order.
    """
    old = f"{prefix}elements.0.body.layers.0.weight"
    if old not in state_dict:
        return
    k = len(module.elements)
    weights, biases = [], []
    for i in range(k):
        head = f"{prefix}elements.{i}.body.layers."
        weights.append(state_dict.pop(head + "0.weight"))
        biases.append(state_dict.pop(head + "0.bias"))
        rest = sorted(
            (key for key in state_dict if key.startswith(head)),
            key=lambda key: int(key[len(head) :].split(".")[0]),
        )
        new_keys = [f"{prefix}elements.{i}.{name}" for name in module.elements[i].state_dict()]
        if len(rest) != len(new_keys):
            raise RuntimeError(
                f"Cannot map the saved CLUE encoder ({len(rest)} entries in element {i}) to "
                f"this layout ({len(new_keys)}): was it saved with other widths or depth?"
            )
        for old_key, new_key in zip(rest, new_keys, strict=True):
            state_dict[new_key] = state_dict.pop(old_key)
    state_dict[f"{prefix}first.weight"] = torch.cat(weights, 0).t().contiguous()
    state_dict[f"{prefix}first.bias"] = torch.cat(biases, 0)


class CLUEDecoder(nn.Module):
    """A modality's decoder: MLP with the batch injected at every layer, then a likelihood.

    ``FCLayers`` (scvi-tools; batch one-hot concatenated to every layer's input) followed
    by :class:`~scmint.nn.BatchLikelihoodDecoder` (batch-specific scale, bias and
    dispersion).
    """

    def __init__(
        self,
        n_latent: int,
        n_output: int,
        n_batch: int,
        likelihood: str,
        n_hidden: int,
        n_layers: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.body = FCLayers(
            n_in=n_latent,
            n_out=n_hidden,
            n_cat_list=[n_batch],
            n_layers=n_layers,
            n_hidden=n_hidden,
            dropout_rate=dropout,
            inject_covariates=True,
            activation_fn=nn.LeakyReLU,
        )
        self.head = BatchLikelihoodDecoder(n_hidden, n_output, n_batch, likelihood)

    def forward(
        self, u: torch.Tensor, batch_index: torch.Tensor, library: torch.Tensor | None
    ) -> Distribution:
        b = batch_index.long().view(-1, 1)
        return self.head(self.body(u, b), b, library)

    def negative_log_likelihood(
        self,
        u: torch.Tensor,
        batch_index: torch.Tensor,
        x: torch.Tensor,
        library: torch.Tensor | None,
    ) -> torch.Tensor:
        """Mean ``-log p(x | u)`` per entry, through the head's fused NLL where it has one."""
        b = batch_index.long().view(-1, 1)
        return self.head.negative_log_likelihood(self.body(u, b), b, x, library)


class CLUEModule(OptionalHeadsMixin, BaseModuleClass):
    """Cross-linked variational autoencoders for modality-incomplete multi-omics (CLUE).

    **Encoders.** For ``K`` modalities, each source modality ``k`` has a
    :class:`CrossEncoder`: ``K`` element encoders, element ``i`` the variational
    posterior ``q(z_i | x_k)`` of the latent block that modality ``i`` decodes. A cell's
    embedding from modality ``k`` is ``u_k = (z_1, ..., z_K)``, ``K * n_latent``
    dimensions; "self" blocks (``i = k``) reconstruct the source, "cross" blocks
    (``i != k``) predict the other modalities.

    **Decoders.** Per modality an MLP with the batch injected at every layer and a
    likelihood with batch-specific scale, bias and dispersion (negative binomial for
    counts; ZINB, Bernoulli (on ``x > 0``), Normal and zero-inflated log-normal too). Count
    likelihoods use the observed library size of the profile they score.

    **Joint embedding** of a cell from the modalities it has: ``"mean"`` (published code):
    the mean of the sampled, L2-normalised ``u_k``, normalised again; ``"poe"`` (the
    paper's eq. 6): per latent block the product of the Gaussian experts ``q(z_i | x_k)``
    and the prior ``N(0, I)``, sampled (then normalised if ``normalize``).

    **Generator objective** (:meth:`loss`), every term over the cells that have the
    modalities it needs (``mask_<m>`` of the padded MuData)::

        w_data  * sum_k w_k [NLL_k(x_k | block k of u_k) + w_kl * KL(q(u_k) || N(0, I)) / F_k]
      + w_joint * sum_k w_k NLL_k(x_k | block k of the joint embedding)      (joint cross)
      + w_real  * sum_{t != s} w_t NLL_t(x_t | block t of u_s)  (cells with s and t; real cross)
      + w_align * alignment(u_k, joint)        (cosine: sum_k 1 - cos; mse: paper's eq. 9)
      + w_class * CE(classifier(mean of u_k), labels)                       (optional)
      - w_adv   * CE(D(mean of u_k + noise, batch), modality)         (fool the discriminator)

    with ``NLL`` the mean negative log-likelihood per feature and ``F_k`` the number of
    features. The ``K``-way discriminator ``D`` minimises ``w_adv * CE`` on the same
    inputs (:meth:`discriminator_loss`); during the burn-in its inputs carry Gaussian
    noise whose scale falls linearly from 1 to 0 (:meth:`set_epoch`).

    Parameters
    ----------
    modalities
        Modality names, in order (``K >= 2``).
    n_input
        Features of each modality.
    likelihoods
        Likelihood of each modality (``{modality: name}``).
    normalization
        Encoder input transform per modality (``"log"``, ``"clr"``, ``"none"``; see
        :class:`~scmint.nn.FeatureScalerLayer`).
    n_batch
        Number of batches.
    n_latent
        Dimension of one latent block ``d`` (embedding ``K * d``).
    n_hidden, n_layers, dropout
        Width, depth and dropout of encoders, decoders and discriminator.
    n_classes
        Classes of the optional classifier (0: none).
    class_of_code
        Class of each registered label code (``-1``: unlabelled).
    joint
        ``"mean"`` or ``"poe"`` (see above).
    normalize
        L2-normalise the sampled ``u_k`` and the joint embedding (published default).
    alignment
        ``"cosine"`` (published code) or ``"mse"`` (paper).
    data_weight, kl_weight, joint_cross_weight, real_cross_weight, alignment_weight,
    adversarial_weight, classifier_weight
        Weights of the terms above (published: 1, 1, 0.02, 0.02, 0.02, 0.02, 0.02).
    modality_weights
        ``w_k`` per modality (default 1).
    burnin_epochs
        Epochs over which the discriminator's input noise anneals to 0.
    encode_batch
        Encoders read the batch too (a learned bias per batch in their first layer), as
        scvi-tools' ``encode_covariates``: needed for a query update of new batches
        (:meth:`CLUE.load_query_data <scmint.model.CLUE.load_query_data>`) to move the
        query cells' embeddings. Published CLUE: False.
    center_batches
        Take each batch's mean off the encoders' (log-normalised) inputs, per modality
        (:class:`~scmint.nn.FeatureScalerLayer` with batch centres, set by the model):
        per-feature batch shifts then never reach the encoders, and the batch-conditioned
        decoders put them back. Needs ``n_batch >= 2``.
    """

    def __init__(
        self,
        modalities: Sequence[str],
        n_input: Sequence[int],
        likelihoods: Mapping[str, str],
        normalization: Mapping[str, str],
        n_batch: int = 1,
        n_latent: int = 50,
        n_hidden: int = 256,
        n_layers: int = 2,
        dropout: float = 0.2,
        n_classes: int = 0,
        class_of_code: Sequence[int] | None = None,
        joint: JointRule = "mean",
        normalize: bool = True,
        alignment: Alignment = "cosine",
        data_weight: float = 1.0,
        kl_weight: float = 1.0,
        joint_cross_weight: float = 0.02,
        real_cross_weight: float = 0.02,
        alignment_weight: float = 0.02,
        adversarial_weight: float = 0.02,
        classifier_weight: float = 0.02,
        modality_weights: Mapping[str, float] | None = None,
        burnin_epochs: int = 12,
        encode_batch: bool = False,
        center_batches: bool = False,
    ) -> None:
        super().__init__()
        self.modalities = list(modalities)
        k = len(self.modalities)
        if k < 2:
            raise ValueError(f"CLUE needs two or more modalities, got {self.modalities}.")
        if joint not in JOINT_RULES:
            raise ValueError(f"joint must be one of {JOINT_RULES}, got {joint!r}.")
        if alignment not in ALIGNMENTS:
            raise ValueError(f"alignment must be one of {ALIGNMENTS}, got {alignment!r}.")
        self.n_input = [int(n) for n in n_input]
        self.likelihoods = {m: likelihoods[m] for m in self.modalities}
        self.n_batch = max(int(n_batch), 1)
        self.n_latent_block = int(n_latent)
        self.n_latent = k * self.n_latent_block
        self.n_classes = int(n_classes)
        self.joint_rule = joint
        self.normalize = bool(normalize)
        self.alignment = alignment
        self.data_weight = float(data_weight)
        self.kl_weight = float(kl_weight)
        self.joint_cross_weight = float(joint_cross_weight)
        self.real_cross_weight = float(real_cross_weight)
        self.alignment_weight = float(alignment_weight)
        self.adversarial_weight = float(adversarial_weight)
        self.classifier_weight = float(classifier_weight) if self.n_classes > 1 else 0.0
        weights = dict(modality_weights or {})
        self.modality_weights = {m: float(weights.get(m, 1.0)) for m in self.modalities}
        self.burnin_epochs = int(burnin_epochs)
        self.anneal = 0.0
        self.encode_batch = bool(encode_batch)
        self.center_batches = bool(center_batches) and self.n_batch > 1
        n_centers = self.n_batch if self.center_batches else 0

        self.inputs = nn.ModuleDict(
            {
                m: FeatureScalerLayer(n, normalization[m], max_value=None, n_batch=n_centers)
                for m, n in zip(self.modalities, self.n_input, strict=True)
            }
        )
        self.encoders = nn.ModuleDict(
            {
                m: CrossEncoder(
                    n,
                    k,
                    self.n_latent_block,
                    n_hidden,
                    n_layers,
                    dropout,
                    n_batch=self.n_batch if self.encode_batch else 0,
                )
                for m, n in zip(self.modalities, self.n_input, strict=True)
            }
        )
        self.decoders = nn.ModuleDict(
            {
                m: CLUEDecoder(
                    self.n_latent_block,
                    n,
                    self.n_batch,
                    self.likelihoods[m],
                    n_hidden,
                    n_layers,
                    dropout,
                )
                for m, n in zip(self.modalities, self.n_input, strict=True)
            }
        )
        self.discriminator = (
            ModalityDiscriminator(
                self.n_latent + self.n_batch,
                k,
                (n_hidden,) * n_layers,
                output_activation=None,
                dropout=dropout,
            )
            if self.adversarial_weight > 0
            else None
        )
        self.classifier = (
            nn.Linear(self.n_latent, self.n_classes) if self.classifier_weight > 0 else None
        )
        codes = list(class_of_code) if class_of_code is not None else [-1]
        self.register_buffer("class_of_code", torch.as_tensor(codes, dtype=torch.long))

    # ------------------------------------------------------------------ schedule
    def set_epoch(self, epoch: int) -> None:
        """Anneal the discriminator's input noise: ``max(1 - epoch / burnin_epochs, 0)``."""
        burnin = self.burnin_epochs
        self.anneal = max(1.0 - epoch / burnin, 0.0) if burnin > 0 else 0.0

    # ------------------------------------------------------------------ networks
    def input_layers(self) -> nn.ModuleDict:
        """Each modality's input layer (normalisation and batch centres)."""
        return self.inputs

    @property
    def reads_batch(self) -> bool:
        """Whether the encoders need the rows' batch codes (batch bias or centring)."""
        return self.encode_batch or any(layer.centers_batches for layer in self.inputs.values())

    def _unit(self, u: torch.Tensor) -> torch.Tensor:
        return F.normalize(u, dim=1) if self.normalize else u

    def encode(
        self, x: torch.Tensor, modality: str, batch_index: torch.Tensor | None = None
    ) -> Normal:
        """``q(u | x)`` of registered (e.g. count) values ``x`` of ``modality``.

        ``batch_index`` (the rows' batch codes) is required when :attr:`reads_batch`.
        """
        return self.encoders[modality](x, self.inputs[modality], batch_index)

    def embed(
        self, x: torch.Tensor, modality: str, batch_index: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Embedding of ``x``: the posterior mean of ``u`` (L2-normalised if ``normalize``)."""
        return self._unit(self.encode(x, modality, batch_index).loc)

    def batch_parameters(self) -> dict[str, int]:
        """Parameters with a slice per batch, and the dimension that holds the batches.

        A batch's slice is at the end of that dimension in registry order (rows of the
        likelihood heads, the one-hot columns of the decoders' layers, the encoders'
        batch biases). A query update (:meth:`CLUE.load_query_data
        <scmint.model.CLUE.load_query_data>`) trains only the new batches' slices of
        these and freezes everything else.
        """
        out: dict[str, int] = {}
        for m in self.modalities:
            if self.encoders[m].batch_bias is not None:
                out[f"encoders.{m}.batch_bias"] = 0
            for name in self.decoders[m].head.batch_parameters():
                out[f"decoders.{m}.head.{name}"] = 0
            for name, _ in self.decoders[m].body.named_parameters():
                if name.endswith(".0.weight"):  # FCLayers: the batch one-hot in every layer
                    out[f"decoders.{m}.body.{name}"] = 1
        return out

    def block(self, u: torch.Tensor, modality: str) -> torch.Tensor:
        """The latent block of ``u`` that ``modality``'s decoder reads."""
        i = self.modalities.index(modality)
        d = self.n_latent_block
        return u[:, i * d : (i + 1) * d]

    def decode(
        self,
        u: torch.Tensor,
        modality: str,
        batch_index: torch.Tensor,
        library: torch.Tensor | None = None,
    ) -> Distribution:
        """``p(x_modality | block of u)`` for full embeddings ``u`` (``K * d`` columns)."""
        return self.decoders[modality](self.block(u, modality), batch_index, library)

    def combine(
        self, loc: torch.Tensor, scale: torch.Tensor, mask: torch.Tensor, sample: bool
    ) -> torch.Tensor:
        """Joint embedding of rows from their per-modality posteriors.

        Parameters
        ----------
        loc, scale
            ``(n, K, K * d)`` posterior means and standard deviations of ``u_k`` (any
            value where the modality is absent).
        mask
            ``(n, K)`` which modalities each row has.
        sample
            Draw ``u_k`` (training) instead of using the means.

        Returns
        -------
        ``(n, K * d)`` joint embedding (rows without any modality are zero).
        """
        m = mask.to(loc.dtype).unsqueeze(-1)
        if self.joint_rule == "poe":
            precision = m / scale.pow(2)
            total = 1.0 + precision.sum(1)
            mean = (precision * loc).sum(1) / total
            joint = mean + torch.randn_like(mean) / total.sqrt() if sample else mean
            return self._unit(joint)
        u = loc + scale * torch.randn_like(loc) if sample else loc
        return self.mean_joint(self._unit(u.flatten(0, 1)).view_as(u), mask)

    def mean_joint(self, u: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The published joint rule: masked mean of ``(n, K, K * d)`` embeddings, normalised."""
        m = mask.to(u.dtype).unsqueeze(-1)
        return self._unit((u * m).sum(1) / m.sum(1).clamp(min=1.0))

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
    ) -> dict[str, dict[str, torch.Tensor] | dict[str, Normal]]:
        """Posteriors ``q(u_k | x_k)`` of each modality's rows of the minibatch."""
        has, qu = {}, {}
        for m in self.modalities:
            has[m] = mask[m].view(-1) > 0.5
            b = batch.view(-1)[has[m]] if self.reads_batch else None
            qu[m] = self.encode(select_rows(x[m], has[m]), m, b)
        return {"qu": qu, "has": has}

    def _get_generative_input(self, tensors, inference_outputs, **kwargs) -> dict:
        return {}

    def generative(self) -> dict:
        """Decoding happens in :meth:`loss`, once per term."""
        return {}

    # ------------------------------------------------------------------ losses
    def _target(self, x: torch.Tensor, modality: str) -> torch.Tensor:
        """Values a likelihood scores: ``x > 0`` for Bernoulli, ``x`` otherwise.

        A sparse CSR ``x`` stays sparse for the negative binomial (its fused NLL reads
        the non-zeros) and is densified for the other likelihoods.
        """
        if self.likelihoods[modality] == "bernoulli":
            x = as_dense(x)
            return (x > 0).to(x.dtype)
        return x if self.likelihoods[modality] == "nb" else as_dense(x)

    def _nll(
        self, u: torch.Tensor, x: torch.Tensor, modality: str, batch_index: torch.Tensor
    ) -> torch.Tensor:
        """Mean NLL per feature of ``x`` (rows) under ``modality``'s decoder from ``u``.

        In training a term needs two or more rows (the decoder's batch norm estimates
        statistics from the rows); with fewer it is 0 for this minibatch.
        """
        if self.training and x.shape[0] < 2:
            return u.new_zeros(())
        library = None
        if self.likelihoods[modality] in COUNT_LIKELIHOODS:
            library = row_sums(x).clamp(min=1.0)
        return self.decoders[modality].negative_log_likelihood(
            self.block(u, modality), batch_index, self._target(x, modality), library
        )

    def _discriminator_scores(
        self,
        qu: Mapping[str, Normal],
        has: Mapping[str, torch.Tensor],
        batch: torch.Tensor,
        detach: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Discriminator logits of the posterior means (noisy in burn-in), and modalities."""
        present = [m for m in self.modalities if has[m].any()]
        u = torch.cat([qu[m].loc for m in present])
        if detach:
            u = u.detach()
        if self.anneal > 0:
            u = u + self.anneal * torch.randn_like(u)
        b = torch.cat([batch[has[m]] for m in present]).long().view(-1)
        onehot = F.one_hot(b, self.n_batch).to(u.dtype)
        index = torch.cat(
            [
                torch.full((int(has[m].sum()),), self.modalities.index(m), device=u.device)
                for m in present
            ]
        )
        return self.discriminator(torch.cat([u, onehot], 1)), index

    def _adversarial(self, qu, has, batch, detach: bool = False) -> torch.Tensor | None:
        if self.discriminator is None or sum(bool(h.any()) for h in has.values()) < 2:
            return None
        scores, index = self._discriminator_scores(qu, has, batch, detach)
        return cross_entropy_gan_loss(scores, index, len(self.modalities))

    def _scatter(
        self, qu: Mapping[str, Normal], has: Mapping[str, torch.Tensor], n: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(n, K, K * d)`` locs and scales (ones where absent) and the ``(n, K)`` mask."""
        ref = next(iter(qu.values())).loc
        k = len(self.modalities)
        loc = ref.new_zeros((n, k, self.n_latent))
        scale = ref.new_ones((n, k, self.n_latent))
        for i, m in enumerate(self.modalities):
            loc[has[m], i] = qu[m].loc
            scale[has[m], i] = qu[m].scale
        mask = torch.stack([has[m] for m in self.modalities], 1)
        return loc, scale, mask

    def loss(
        self,
        tensors: dict[str, torch.Tensor],
        inference_outputs: dict,
        generative_outputs: dict,
    ) -> LossOutput:
        """The generator objective and its parts (see the class docstring)."""
        qu, has = inference_outputs["qu"], inference_outputs["has"]
        x = {m: tensors[data_key(m)] for m in self.modalities}
        batch = tensors[REGISTRY_KEYS.BATCH_KEY].long().view(-1)
        n = int(batch.shape[0])
        loc, scale, mask = self._scatter(qu, has, n)
        # one sample of every u_k, normalised, scattered into (n, K, K d)
        u = self._unit((loc + scale * torch.randn_like(loc)).flatten(0, 1)).view_as(loc)
        joint = (
            self.mean_joint(u, mask)  # the same samples as the per-modality terms
            if self.joint_rule == "mean"
            else self.combine(loc, scale, mask, sample=True)
        )
        present = [m for m in self.modalities if has[m].any()]
        rows = {m: select_rows(x[m], has[m]) for m in present}  # each modality's own rows
        zero = loc.new_zeros(())
        metrics: dict[str, torch.Tensor] = {}

        data = zero
        for m in present:
            i = self.modalities.index(m)
            nll = self._nll(u[has[m], i], rows[m], m, batch[has[m]])
            prior = Normal(torch.zeros_like(qu[m].loc), torch.ones_like(qu[m].scale))
            kl = kl_divergence(qu[m], prior).sum(1).mean() / x[m].shape[1]
            metrics[f"nll_{m}"] = nll.detach()
            metrics[f"kl_{m}"] = kl.detach()
            data = data + self.modality_weights[m] * (nll + self.kl_weight * kl)
        metrics["self_elbo_loss"] = data.detach()
        total = self.data_weight * data

        if self.joint_cross_weight > 0:
            jc = zero
            for m in present:
                jc = jc + self.modality_weights[m] * self._nll(
                    joint[has[m]], rows[m], m, batch[has[m]]
                )
            metrics["joint_cross_loss"] = jc.detach()
            total = total + self.joint_cross_weight * jc

        if self.real_cross_weight > 0:
            rc, n_pairs = zero, 0
            for t in self.modalities:
                for s_i, s in enumerate(self.modalities):
                    both = has[s] & has[t]
                    if s == t or not both.any():
                        continue
                    rc = rc + self.modality_weights[t] * self._nll(
                        u[both, s_i], select_rows(x[t], both), t, batch[both]
                    )
                    n_pairs += 1
            if n_pairs:
                metrics["real_cross_loss"] = rc.detach()
                total = total + self.real_cross_weight * rc

        if self.alignment_weight > 0:
            align = self._alignment(u, joint, mask)
            metrics["alignment_loss"] = align.detach()
            total = total + self.alignment_weight * align

        if self.classifier is not None:
            ce = self._classification(tensors, qu, has)
            if ce is not None:
                metrics["classification_loss"] = ce.detach()
                total = total + self.classifier_weight * ce

        metrics["vae_loss"] = total.detach()
        adv = self._adversarial(qu, has, batch)
        if adv is not None:
            metrics["adversarial_loss"] = adv.detach()
            total = total - self.adversarial_weight * adv
        return LossOutput(loss=total, n_obs_minibatch=n, extra_metrics=metrics)

    def _alignment(self, u: torch.Tensor, joint: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Cosine (published code) or MSE-to-the-mean (paper) alignment of ``u_k``."""
        if self.alignment == "cosine":
            terms = [
                1.0 - F.cosine_similarity(u[mask[:, i], i], joint[mask[:, i]]).mean()
                for i in range(len(self.modalities))
                if mask[:, i].any()
            ]
            return torch.stack(terms).sum()
        m = mask.to(u.dtype).unsqueeze(-1)
        count = m.sum(1)
        rows = count.view(-1) > 0
        mean = (u * m).sum(1) / count.clamp(min=1.0)
        spread = ((u - mean.unsqueeze(1)).pow(2) * m).sum((1, 2)) / count.view(-1).clamp(min=1.0)
        return spread[rows].mean()

    def _classification(self, tensors, qu, has) -> torch.Tensor | None:
        codes = tensors[REGISTRY_KEYS.LABELS_KEY].long().view(-1)
        means = {m: q.loc for m, q in qu.items()}
        return labelled_cross_entropy(self.classifier, means, has, self.class_of_code[codes])

    def discriminator_loss(
        self, tensors: dict[str, torch.Tensor], inference_outputs: dict
    ) -> torch.Tensor | None:
        """``w_adv`` times the discriminator's cross-entropy on (detached) posterior means."""
        batch = tensors[REGISTRY_KEYS.BATCH_KEY].long().view(-1)
        adv = self._adversarial(
            inference_outputs["qu"], inference_outputs["has"], batch, detach=True
        )
        return None if adv is None else self.adversarial_weight * adv
