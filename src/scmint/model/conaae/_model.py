"""CONAAE: Con-AAE's contrastive cycle adversarial autoencoders as a scvi-tools model."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import mudata as md
import numpy as np
import torch
from scvi import REGISTRY_KEYS
from scvi.model.base import BaseModelClass, UnsupervisedTrainingMixin

from scmint._threads import keep_torch_threads
from scmint.data import MuDataSetupMixin, RegisteredDataSplitter
from scmint.model._base import (
    Cells,
    MultiModalMixin,
    Normalization,
    check_positive_int,
    resolve_normalization,
)
from scmint.model._generative import SimulationMixin
from scmint.model._query_update import QueryUpdateMixin
from scmint.nn._adversarial import ADVERSARIAL_LOSSES, AdversarialLoss
from scmint.train import GeneratorDiscriminatorPlan, QuietTrainRunner

from ._module import CONAAEModule

HiddenSpec = Literal["auto", "input"] | int | Sequence[int]
Supervision = Literal["labels", "batch", "none"]
Scale = Literal["normalized", "standardized"]
_SCALES = ("normalized", "standardized")

AUTO_MAX_WIDTH = 1024
"""Widest hidden layer of ``n_hidden="auto"``."""


def resolve_hidden(spec: HiddenSpec, n_input: int) -> tuple[int, ...]:
    """Hidden widths of one modality's encoder from ``n_hidden``.

    ``"auto"``: ``(min(G, 1024), min(G, 256), 100)`` for ``G`` input features, Con-AAE's
    funnel with the wide layers capped so that parameters grow linearly in ``G``;
    ``"input"``: Con-AAE's published ``(G, G, G, 100)``; an int: one hidden layer;
    a sequence: the widths.
    """
    if isinstance(spec, str):
        if spec == "auto":
            first = min(n_input, AUTO_MAX_WIDTH)
            return (first, min(first, 256), 100)
        if spec == "input":
            return (n_input, n_input, n_input, 100)
        raise ValueError(f"n_hidden must be 'auto', 'input', an int or widths, got {spec!r}.")
    widths = (spec,) if isinstance(spec, int | np.integer) else tuple(spec)
    if not all(isinstance(w, int | np.integer) and w > 0 for w in widths):
        raise ValueError(f"n_hidden widths must be positive integers, got {spec!r}.")
    return tuple(int(w) for w in widths)


def _weight(name: str, value: float | None, default: float) -> float:
    value = default if value is None else value
    if isinstance(value, bool) or not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}.")
    return float(value)


class CONAAE(
    QueryUpdateMixin,
    UnsupervisedTrainingMixin,
    SimulationMixin,
    MultiModalMixin,
    MuDataSetupMixin,
    BaseModelClass,
):
    """Con-AAE: contrastive cycle adversarial autoencoders for unpaired multi-omics.

    The model of Wang et al. (Con-AAE) for two or more modalities whose cells need not
    be paired (unpaired by default; known pairs used when asked). Each modality has a
    deterministic autoencoder into one shared ``n_latent``-d space
    (:class:`~scmint.model.conaae._module.CONAAEModule`); the latent spaces are aligned by

    - an **adversarial** loss: a modality discriminator on the latent codes, trained
      in turn with the autoencoders (least-squares GAN as published; for ``K > 2``
      modalities a ``K``-way discriminator);
    - a latent **cycle**-consistency loss: ``z_a -> decoder_b -> encoder_b`` must return
      ``z_a``;
    - a batch-hard **triplet** (contrastive) loss on the latent codes of all modalities
      with class labels (cell types, or batches with ``supervision="batch"``), margin
      0.3, and a linear **classifier** on the latent space;
    - optionally a multi-kernel **MMD** between modalities and an **anchor** loss
      pulling together the two embeddings of cells measured in both (known pairs).

    Training alternates one autoencoder update and one discriminator update per
    minibatch (:class:`scmint.train.GeneratorDiscriminatorPlan`, Adam lr 1e-4, betas (0.5,
    0.999), weight decay 1e-4 as published) and stops early on a validation split
    instead of running thousands of fixed epochs.

    **Inputs.** Each modality is normalised inside the module, minibatch by minibatch
    (data stay sparse outside a minibatch): library-size normalisation and ``log1p``
    (``"log"``), CLR (``"clr"``, for proteins) or nothing (``"none"``), then per-feature
    standardisation clipped at ``max_value``, with statistics fitted on the registered
    cells (:class:`~scmint.pp.FeatureScaler`) and stored as module buffers, so query and
    perturbed cells are scaled exactly like the training cells and the statistics are
    saved with the model. Reconstruction is the MSE in that standardised space.

    **Width.** Con-AAE's hidden layers are as wide as the input (``(G, G, G, 100)``), so
    parameters and compute grow as ``G^2``: ~2.4 billion weights per autoencoder for
    20,000 genes. The default ``n_hidden="auto"`` keeps Con-AAE's funnel but caps the
    wide layers, ``(min(G, 1024), min(G, 256), 100)``, so cost grows linearly in ``G``
    and tens of thousands of features fit on one GPU; ``n_hidden="input"`` reproduces
    the published widths.

    **Translation.** :meth:`translate` decodes into the target's standardised space and,
    with ``scale="normalized"`` (default), undoes the standardisation: a target
    normalised with ``"log"`` comes back as ``log1p(x / library * target_sum)``
    (``translation_space = "lognorm"`` for the default ``target_sum=1e4``; see
    :meth:`translation_space_of`). :meth:`simulate` draws codes of a cell state (the
    mean and spread of its cells' embeddings) and decodes every modality from each code
    into the same space: matched normalised profiles, not counts.

    **Atlases on disk.** CONAAE also trains and infers from a padded MuData read with
    ``mudata.read_h5mu(path, backed=True)``: cells are read in blocks of about 64 MB
    (:mod:`scmint.data._backed`), and the feature scalers are fitted on at most
    :data:`~scmint.model._base.ON_DISK_FIT_CELLS` (50,000) cells of each modality, drawn
    at random (every cell when the data are in memory).

    **Batches.** With ``batch_key`` and batch centring (our addition) each batch's
    centre is taken off every modality's standardised inputs, so the encoders read, and
    the decoders reconstruct, profiles without the per-feature shifts between batches.
    With cell-type labels (``labels_key``, CONAAE's usual supervision) the centres are
    corrected for each batch's composition; plain batch means would also take off
    composition differences. ``center_batches=None`` (default) centres when labels are
    registered. ``benchmarks/batch.csv``: simulator with a strong batch effect
    (``batch_effect=1.0``), other-batch share of 15 nearest neighbours 0.01 / 0.04 ->
    0.39 / 0.30 (RNA / ATAC) at equal cell-type ASW; ``pbmc_mosaic_paired`` iLISI 0.80 /
    0.85 against TOTALVI's 0.76. Translations and simulated profiles are those of the
    average batch. Cells embedded later (queries, perturbed cells) need their batch, one
    of the registered batches.

    **New batches.** CONAAE has no trained batch parameters; :meth:`load_query_data`
    (scvi-tools' name) adds the query's new batches with their own cells' centres and
    returns a model that is ready at once (nothing is trained; the reference's
    embedding is unchanged). Without batch centring query cells of any batch are
    embedded directly with :meth:`get_latent_representation`.

    Parameters
    ----------
    mdata
        Padded MuData registered with :meth:`setup_mudata` (two or more modalities;
        ``labels_key`` recommended). Values must be counts (or non-negative normalised
        values) unless ``normalization="none"``.
    n_latent
        Latent dimension (50).
    n_hidden
        Encoder hidden widths: ``"auto"``, ``"input"`` (published), an int (one layer),
        a sequence, or ``{modality: any of these}``. Decoders mirror them.
    alpha
        Con-AAE's ``alpha`` (10): weight of the reconstruction loss and default weight
        of the adversarial, cycle and triplet losses.
    beta
        Con-AAE's ``beta`` (1): weight of the classifier's cross-entropy.
    adversarial_weight, cycle_weight, triplet_weight
        Weights of those terms (default ``alpha``); 0 switches a term off (the ablation
        switches; an adversarial weight of 0 builds no discriminator).
    mmd_weight
        Weight of the multi-kernel RBF MMD between modalities (0: off; Con-AAE's
        optional term uses ``alpha``).
    anchor_weight
        Weight of the anchor loss ``MSE(z_a, z_b)`` over cells measured in both ``a``
        and ``b`` (0: off, unpaired; Con-AAE uses 0.05 to 1, e.g. 0.1).
    triplet_margin
        Margin of the triplet loss (0.3).
    cycle_detach
        ``True`` (default): in the cycle loss ``z_a`` is a constant, so the term trains
        only modality ``b``'s decoder and encoder to be consistent on the region of
        latent space that modality ``a`` occupies, the purpose the paper gives it.
        ``False``: the literal formula, with gradients also reaching ``a``'s encoder
        through ``z_a``; on the bmmc starters this stalled all learning at Con-AAE's
        learning rate (FOSCTTM ~0.45 after 100 epochs versus ~0.11 with the default).
    supervision
        Classes of the triplet loss and the classifier: ``"labels"`` (the registered
        ``labels_key``; unlabelled cells take no part), ``"batch"`` (the registered
        ``batch_key``, Con-AAE's choice on sci-CAR) or ``"none"``. Without classes both
        terms are off, with a warning unless ``"none"`` was asked for.
    adversarial_loss
        ``"least_squares"`` (published) or ``"cross_entropy"``.
    normalization
        ``"log"`` (default), ``"clr"`` or ``"none"``; one value or ``{modality: ...}``.
    target_sum
        Counts per cell after normalisation for ``"log"``.
    max_value
        Clip standardised inputs to ``[-max_value, max_value]`` (10).
    center_batches
        Take each batch's centre off the inputs (see **Batches**): True, False, or
        ``None`` (default) for "when cell-type labels are registered"; used when two or
        more batches are registered.

    Examples
    --------
    >>> mdata = scmint.data.pad_mudata(mdata)  # unpaired, paired or mosaic
    >>> scmint.model.CONAAE.setup_mudata(mdata, labels_key="cell_type")
    >>> model = scmint.model.CONAAE(mdata)
    >>> model.train()
    >>> z_rna = model.get_latent_representation(modality="rna", missing="nan")
    >>> atac_from_rna = model.translate(source="rna", target="atac", indices=rna_cells)
    """

    _module_cls = CONAAEModule
    _training_plan_cls = GeneratorDiscriminatorPlan
    _data_splitter_cls = RegisteredDataSplitter
    _train_runner_cls = QuietTrainRunner
    _reads_from_disk = True
    _latent_key = "X_conaae"
    #: Space of :meth:`translate`'s output with the defaults (``scale="normalized"``,
    #: ``normalization="log"``, ``target_sum=1e4``): ``"lognorm"``, that is
    #: ``log1p(x / library * 1e4)``; for other settings see :meth:`translation_space_of`.
    translation_space = "lognorm"

    def translation_space_of(self, target: str, scale: Scale = "normalized") -> str | None:
        """Space of ``translate(..., target=target, scale=scale)``'s output.

        Parameters
        ----------
        target
            Target modality.
        scale
            The ``scale`` option of :meth:`translate`.

        Returns
        -------
        str or None
            :attr:`translation_space` (``"lognorm"``) for ``scale="normalized"`` and a
            target normalised with ``"log"`` at ``target_sum=1e4``; ``None`` otherwise
            (another ``target_sum``, CLR, the values as registered with
            ``normalization="none"``, or the standardised space of
            ``scale="standardized"``).
        """
        self._check_scale(scale)
        if scale != "normalized" or self.normalization.get(target) != "log":
            return None
        target_sum = float(self.module.scalers[target].target_sum)
        return self.translation_space if target_sum == 1e4 else None

    def __init__(
        self,
        mdata: md.MuData,
        n_latent: int = 50,
        n_hidden: HiddenSpec | Mapping[str, HiddenSpec] = "auto",
        alpha: float = 10.0,
        beta: float = 1.0,
        adversarial_weight: float | None = None,
        cycle_weight: float | None = None,
        triplet_weight: float | None = None,
        mmd_weight: float = 0.0,
        anchor_weight: float = 0.0,
        triplet_margin: float = 0.3,
        cycle_detach: bool = True,
        supervision: Supervision = "labels",
        adversarial_loss: AdversarialLoss = "least_squares",
        normalization: Normalization | Mapping[str, Normalization] = "log",
        target_sum: float = 1e4,
        max_value: float | None = 10.0,
        center_batches: bool | None = None,
    ) -> None:
        super().__init__(mdata)
        mods = self.modalities
        if adversarial_loss not in ADVERSARIAL_LOSSES:
            raise ValueError(
                f"adversarial_loss must be one of {ADVERSARIAL_LOSSES}, got {adversarial_loss!r}."
            )
        if supervision not in ("labels", "batch", "none"):
            raise ValueError(
                f"supervision must be 'labels', 'batch' or 'none', got {supervision!r}."
            )
        check_positive_int(n_latent=n_latent)
        if not triplet_margin >= 0:
            raise ValueError(f"triplet_margin must be >= 0, got {triplet_margin!r}.")
        weights = {
            "reconstruction_weight": _weight("alpha", alpha, 10.0),
            "classifier_weight": _weight("beta", beta, 1.0),
            "adversarial_weight": _weight("adversarial_weight", adversarial_weight, alpha),
            "cycle_weight": _weight("cycle_weight", cycle_weight, alpha),
            "triplet_weight": _weight("triplet_weight", triplet_weight, alpha),
            "mmd_weight": _weight("mmd_weight", mmd_weight, 0.0),
            "anchor_weight": _weight("anchor_weight", anchor_weight, 0.0),
        }
        norms = resolve_normalization(mods, normalization)
        n_input = [self.adata.mod[m].n_vars for m in mods]
        specs = (
            {m: n_hidden.get(m, "auto") for m in mods}
            if isinstance(n_hidden, Mapping)
            else dict.fromkeys(mods, n_hidden)
        )
        hidden = {m: resolve_hidden(specs[m], n) for m, n in zip(mods, n_input, strict=True)}
        class_source, classes, class_of_code = self._classes(supervision)
        self.classes_ = np.asarray(classes, dtype=object)
        scalers = self._fit_scalers(norms, target_sum, max_value)
        self.normalization = norms
        self.module = self._module_cls(
            modalities=mods,
            n_input=n_input,
            n_hidden=hidden,
            n_latent=n_latent,
            n_classes=len(classes),
            class_of_code=class_of_code,
            class_source=class_source,
            normalization=norms,
            target_sum=target_sum,
            max_value=max_value,
            triplet_margin=triplet_margin,
            cycle_detach=cycle_detach,
            adversarial_loss=adversarial_loss,
            n_batch=self.summary_stats.n_batch,
            center_batches=self._resolve_center_batches(center_batches),
            **weights,
        )
        for m in mods:
            self.module.scalers[m].set_statistics(scalers[m])
        with keep_torch_threads():
            self._fit_input_centers()
        mod = self.module
        terms = [
            f"{name}={getattr(mod, key):g}"
            for name, key in (
                ("reconstruction", "reconstruction_weight"),
                ("adversarial", "adversarial_weight"),
                ("cycle", "cycle_weight"),
                ("triplet", "triplet_weight"),
                ("classifier", "classifier_weight"),
                ("mmd", "mmd_weight"),
                ("anchor", "anchor_weight"),
            )
        ]
        inputs = ", ".join(f"{m} ({n} features)" for m, n in zip(mods, n_input, strict=True))
        self._model_summary_string = (
            f"CONAAE: {inputs}; n_latent={n_latent}, hidden={hidden}, {len(classes)} classes "
            f"({class_source if classes else 'no supervision'}); loss weights "
            f"{', '.join(terms)}."
        )
        self.init_params_ = self._get_init_params(locals())

    # ------------------------------------------------------------------ setup
    def _classes(self, supervision: Supervision) -> tuple[str, list[str], list[int]]:
        """Source of the classes, their names and the class of each registry code."""
        setup_args = self.adata_manager.registry["setup_args"]
        if supervision == "none":
            return "labels", [], [-1]
        if supervision == "batch":
            if setup_args.get("batch_key") is None:
                raise ValueError(
                    "supervision='batch' uses the registered batches as classes, but "
                    "setup_mudata was called without batch_key=. Pass batch_key= there, or "
                    "use supervision='labels' with labels_key=."
                )
            state = self.adata_manager.get_state_registry(REGISTRY_KEYS.BATCH_KEY)
            mapping = np.asarray(state.categorical_mapping).astype(str)
            return "batch", list(mapping), list(range(len(mapping)))
        if setup_args.get("labels_key") is None:
            warnings.warn(
                "CONAAE was set up without labels_key, so its triplet (contrastive) loss and "
                "classifier are off and the modalities are aligned by the adversarial and "
                "cycle losses alone, which match the distributions but not the cells (on the "
                "bmmc starters no better than random pairing). Pass labels_key= (cell types) "
                "to setup_mudata, or supervision='batch' with a batch_key; "
                "supervision='none' silences this warning.",
                UserWarning,
                stacklevel=3,
            )
            return "labels", [], [-1]
        classes, class_of_code = self._label_classes()
        if len(classes) < 2:
            warnings.warn(
                f"labels_key has {len(classes)} class(es) besides the unlabelled category; "
                "the triplet loss and classifier need two or more and are off.",
                UserWarning,
                stacklevel=3,
            )
            return "labels", [], [-1]
        return "labels", classes, class_of_code

    # ------------------------------------------------------------------ training
    def train(
        self,
        max_epochs: int = 200,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        train_size: float | None = None,
        validation_size: float | None = None,
        shuffle_set_split: bool = True,
        batch_size: int = 128,
        early_stopping: bool = False,
        early_stopping_patience: int = 20,
        early_stopping_warmup_epochs: int = 10,
        datasplitter_kwargs: dict | None = None,
        plan_kwargs: dict | None = None,
        **trainer_kwargs: Any,
    ):
        """Train with alternating autoencoder and discriminator updates.

        scvi-tools' :class:`~scvi.dataloaders.DataSplitter` draws minibatches of rows of
        the padded MuData (each row a cell with the modalities its indicators say);
        :class:`~scmint.train.GeneratorDiscriminatorPlan` runs the updates; scvi-tools'
        ``TrainRunner`` gives progress bar, early stopping, accelerators and
        ``model.history`` (every loss term, ``_train`` and ``_validation``).

        Parameters
        ----------
        max_epochs
            Number of epochs (200; fewer only with ``early_stopping``). Con-AAE ran
            4000 epochs and found its best models around 1000-2000 with batches of 32.
        accelerator
            Lightning accelerator (``"auto"``, ``"cpu"``, ``"gpu"``, ...).
        devices
            Lightning devices.
        train_size
            Fraction of cells for training; default (None) 0.9, as in scvi-tools (which
            then moves a last minibatch of fewer than 3 cells to the validation set).
            The rest is the validation set.
        validation_size
            Fraction for validation; default ``1 - train_size``.
        shuffle_set_split
            Split a random permutation of the cells (seeded by ``scvi.settings.seed``).
        batch_size
            Cells per minibatch (128; Con-AAE used 32 per modality).
        early_stopping
            Stop when ``validation_loss`` (the autoencoders' objective on the validation
            cells) has not improved for ``early_stopping_patience`` epochs. Off by
            default: that objective does not track the alignment. Its cycle, triplet
            and anchor terms are near 0 for the collapsed latent space of the untrained
            network and grow as the space opens, and the reconstruction term levels off
            by epoch ~60-80, while the alignment keeps improving: on
            ``bmmc_multiome_starter`` (P1, seed 0) the validation objective stopped
            training at epoch 31 (FOSCTTM 0.42), and over 150 epochs every validation
            term but the classifier's was lowest at epoch 0 while FOSCTTM fell steadily
            (0.49 at epoch 0, 0.42 at 30, 0.40 at 60, 0.37 at 150). Where it stopped
            depended on the seed's validation noise, so the epochs run, and the
            alignment, varied from seed to seed; a fixed budget does not.
        early_stopping_patience
            Epochs without improvement before stopping (20).
        early_stopping_warmup_epochs
            Epochs before early stopping starts watching (10). The untrained network,
            whose latent codes are all near zero, scores a deceptively low objective
            (cycle, triplet and adversarial terms are small for a collapsed latent
            space) that the first epochs of learning exceed; without a warm-up it would
            stay the best score and stop training after ``early_stopping_patience``
            epochs.
        datasplitter_kwargs
            Passed to :class:`~scvi.dataloaders.DataSplitter`.
        plan_kwargs
            Passed to :class:`~scmint.train.GeneratorDiscriminatorPlan` (``lr`` 1e-4,
            ``betas`` (0.5, 0.999), ``weight_decay`` 1e-4, ``discriminator_lr``, ...).
        **trainer_kwargs
            Passed to :class:`~scvi.train.Trainer` (e.g. ``early_stopping_monitor``,
            ``enable_progress_bar``, ``check_val_every_n_epoch``).
        """
        n_val = self._validation_cells(train_size, validation_size, early_stopping)
        if n_val > 0:
            trainer_kwargs.setdefault("check_val_every_n_epoch", 1)
        trainer_kwargs.setdefault("early_stopping_monitor", "validation_loss")
        trainer_kwargs.setdefault("early_stopping_patience", early_stopping_patience)
        trainer_kwargs.setdefault("early_stopping_warmup_epochs", early_stopping_warmup_epochs)
        return super().train(
            max_epochs=max_epochs,
            accelerator=accelerator,
            devices=devices,
            train_size=train_size,
            validation_size=validation_size,
            shuffle_set_split=shuffle_set_split,
            batch_size=batch_size,
            early_stopping=early_stopping,
            datasplitter_kwargs=datasplitter_kwargs,
            plan_kwargs=plan_kwargs,
            **trainer_kwargs,
        )

    # ------------------------------------------------------------------ forward passes
    def _embed_matrix(
        self, x, modality: str, batch_size: int | None = None, batch: np.ndarray | None = None
    ) -> np.ndarray:
        return self._forward_rows(
            x,
            lambda b, codes=None: self.module.encode(b, modality, codes),
            self.module.n_latent,
            batch_size,
            batch,
        )

    def _logits_matrix(
        self, x, modality: str, batch_size: int | None = None, batch: np.ndarray | None = None
    ) -> np.ndarray:
        return self._forward_rows(
            x,
            lambda b, codes=None: self.module.classify(self.module.encode(b, modality, codes)),
            self.module.n_classes,
            batch_size,
            batch,
        )

    def _decode_matrix(
        self, z: np.ndarray, target: str, scale: Scale, batch_size: int | None = None
    ) -> np.ndarray:
        """``target`` profiles decoded from latent codes, on the scale asked for."""

        def decode(b: torch.Tensor) -> torch.Tensor:
            x = self.module.decode(b, target)
            return self.module.unscale(x, target) if scale == "normalized" else x

        width = self.adata.mod[target].n_vars
        return self._forward_rows(z, decode, width, batch_size)

    def _check_scale(self, scale: str) -> None:
        if scale not in _SCALES:
            raise ValueError(f"scale must be one of {_SCALES}, got {scale!r}.")

    # ------------------------------------------------------------------ public API hooks
    _translation_options = ("scale",)

    def _classifier_classes(self) -> np.ndarray:
        if self.module.classifier is None:
            raise ValueError(
                "This CONAAE has no classifier: it was trained without classes (no labels_key, "
                "supervision='none', or beta=0). Set up with labels_key= and train again."
            )
        return self.classes_

    def _check_translation(self, target: str, scale: Scale = "normalized", **_: Any) -> None:
        self._check_scale(scale)

    def _translate_latent(
        self,
        z: np.ndarray,
        target: str,
        cells: Cells,
        batch_size: int | None,
        scale: Scale = "normalized",
    ) -> np.ndarray:
        """``target``'s decoder output for codes ``z``, on the ``scale`` asked for."""
        self._check_scale(scale)
        return self._decode_matrix(z, target, scale, batch_size)
