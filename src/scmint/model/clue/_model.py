"""CLUE: cross-linked unified embedding for modality-incomplete multi-omics."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping
from math import ceil
from typing import Any

import mudata as md
import numpy as np
import torch
from scvi import REGISTRY_KEYS
from scvi.model.base import BaseModelClass, UnsupervisedTrainingMixin
from torch.distributions import Normal, kl_divergence

from scmint.data import MuDataSetupMixin, RegisteredDataSplitter, data_key, row_batches
from scmint.model._base import (
    INFERENCE_BATCH,
    Cells,
    MultiModalMixin,
    check_positive_int,
    keep_torch_threads,
    make_feature_scaler,
    resolve_per_modality,
)
from scmint.model._generative import (
    EvidenceMixin,
    NormalizedExpressionMixin,
    SimulationMixin,
)
from scmint.model._query_update import QueryUpdateMixin
from scmint.nn._blocks import INPUT_NORMALIZATIONS
from scmint.nn._likelihoods import COUNT_LIKELIHOODS, LIKELIHOODS
from scmint.train import (
    GeneratorDiscriminatorPlan,
    QuietTrainRunner,
    RestoreBestWeights,
    progress_epochs,
)

from ._module import ALIGNMENTS, JOINT_RULES, Alignment, CLUEModule, JointRule

TRAIN_PROGRESS, BURNIN_PROGRESS, PATIENCE_PROGRESS, LR_PATIENCE_PROGRESS = 72, 12, 9, 3
"""CLUE's schedule in progress units (learning rate x minibatch updates)."""


def _check_weight(name: str, value: float) -> float:
    if isinstance(value, bool) or not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}.")
    return float(value)


class CLUE(
    QueryUpdateMixin,
    UnsupervisedTrainingMixin,
    SimulationMixin,
    NormalizedExpressionMixin,
    EvidenceMixin,
    MultiModalMixin,
    MuDataSetupMixin,
    BaseModelClass,
):
    """CLUE: cross-linked unified embedding of paired, unpaired and mosaic multi-omics.

    The model of Tu et al. (CLUE, NeurIPS 2021 multimodal integration competition;
    published inside ``scglue``) as a scvi-tools model over a padded MuData. Each
    modality ``k`` has a row of a ``K x K`` encoder matrix: element ``i`` encodes ``x_k``
    into the latent block that modality ``i``'s decoder reads, so a cell measured in any
    one modality gets the full ``K x n_latent`` embedding, and a missing modality can be
    predicted from the cross blocks. The embeddings from different modalities are aligned
    by the cross ELBO terms (cells measured in several modalities), an alignment term
    (cosine, or the paper's MSE to the mean) and a modality discriminator; see
    :class:`~scmint.model.clue._module.CLUEModule` for the objective.

    Cells that lack a modality (the padded MuData's indicators) take no part in the terms
    that need it: no random stand-in profile is drawn, unlike the published code.

    Translation (:meth:`translate`) returns the target decoder's mean, on the count scale
    for count likelihoods: ``translation_space = "counts"``. :meth:`simulate` draws
    codes of a cell state (the mean and spread of its cells' embeddings, projected onto
    the unit sphere) and decodes every modality from each code: matched counts.
    :meth:`get_normalized_expression` gives the decoded means at a fixed library size
    (frequencies at 1) from the joint embedding.

    Deviations from the published code, all documented where they apply: count
    likelihoods use the observed library size of the profile they score, and
    cross-modal predictions a library chosen by the user, instead of a library size
    regressed from the source profile; decoders (scvi-tools ``FCLayers``) use batch norm
    before the activation; the automatic schedule is capped at 1,000 epochs.

    **Atlases on disk.** CLUE fits nothing that needs every cell at once, so it also
    trains and infers from a padded MuData read with ``mudata.read_h5mu(path,
    backed=True)``: the matrices stay in the file and are read in blocks of about 64 MB
    (blocks in a random order, the cells of four blocks shuffled together; at most five
    blocks held, :mod:`scmint.data._backed`), so host memory does not grow with the number of cells
    beyond per-cell vectors. Setup's checks and the library sizes read the file chunk by
    chunk (a few passes over it); a CLR modality's geometric means are fitted on at most
    :data:`~scmint.model._base.ON_DISK_FIT_CELLS` (50,000) of its cells, drawn at random.

    **Batches.** With ``batch_key`` the decoders are batch-conditioned (as published)
    and, with batch centring (our addition), each batch's centre is taken off the
    encoders' log-normalised inputs in every modality, so the per-feature shifts between
    batches that the decoders model never reach the embedding. The centres come from
    the registered cells: with cell-type labels (``labels_key``) corrected for each
    batch's composition (see ``_fit_input_centers``), otherwise plain batch means, which
    also take off composition differences and on real donors with different
    compositions separate the batches more. So ``center_batches=None`` (default)
    centres when labels are registered. ``benchmarks/batch.csv``: simulator with a
    strong batch effect (``batch_effect=1.0``), other-batch share of 15 nearest
    neighbours 0.00 -> 0.34 / 0.24 (RNA / ATAC, with labels, 1,200 cells);
    ``pbmc_mosaic_paired`` with labels, iLISI 0.71 / 0.85 against TOTALVI's 0.76 at a
    higher cell-type ASW (0.80 / 0.77 against 0.70). Cells embedded
    later (queries, perturbed or simulated cells) need their batch, one of the
    registered batches.

    **New batches (scArches).** :meth:`load_query_data` maps the cells of new batches onto
    a trained reference as scvi-tools' ``ArchesMixin`` does: the new batches' decoder
    parameters (and, with ``encode_batch=True``, their encoder biases) are added, start
    as the mean of the reference batches' and are the only parameters trained on the
    query; with batch centring the new batches' centres are their own cells' means. The
    reference's embedding of its own cells stays exactly as it was; the query cells mix
    with the reference about as well as the reference's batches mix with each other
    (``tests/test_query_update.py``).

    Parameters
    ----------
    mdata
        Padded MuData registered with :meth:`setup_mudata` (``batch_key`` for batch
        correction; ``labels_key`` adds the optional cell-type classifier); in memory, or
        on disk (``backed=True``).
    n_latent
        Dimension ``d`` of one latent block (50); embeddings have ``K * d`` dimensions.
    n_hidden, n_layers, dropout
        Width (256), depth (2) and dropout (0.2) of every encoder, decoder and the
        discriminator.
    likelihood
        ``"nb"`` (default), ``"zinb"``, ``"bernoulli"`` (of ``x > 0``, e.g. ATAC),
        ``"normal"`` or ``"ziln"``; one value or ``{modality: value}``. Count likelihoods
        need raw integer counts.
    normalization
        Encoder input transform, one value or ``{modality: value}``: ``"log"``
        (``log1p(x / library * 1e4)``, the default for count likelihoods and Bernoulli),
        ``"clr"`` (per-feature centred log ratio, for proteins) or ``"none"`` (the
        default for Normal and zero-inflated log-normal data).
    joint
        Joint embedding of a cell from several modalities: ``"mean"`` (published code:
        mean of the L2-normalised per-modality embeddings) or ``"poe"`` (the paper's
        product of Gaussian experts per block).
    normalize
        L2-normalise embeddings (published default).
    alignment
        ``"cosine"`` (published code) or ``"mse"`` (paper).
    data_weight, kl_weight
        Weights of the self ELBO's likelihood and KL terms (published: 1 and 1).
    joint_cross_weight, real_cross_weight, alignment_weight
        Weights of the joint-cross and real-cross ELBO and the alignment term
        (published: 0.02 each); 0 switches a term off.
    adversarial_weight, classifier_weight
        Weights of the adversarial and classifier terms (published: 0.02 each); 0
        switches a term off (the classifier also needs ``labels_key``).
    modality_weights
        Per-modality weights of the likelihood terms (default 1).
    encode_batch
        The encoders read each cell's batch as well (a learned bias per batch in their
        first layer, as scvi-tools' ``encode_covariates``; default False, as published).
        Train the reference with it when new batches will be mapped onto it with
        :meth:`load_query_data`: only then does the query update move the query cells'
        embeddings (otherwise it fits the new batches' decoder parameters only). Query
        cells then need the registered batch column, with registered batches.
    center_batches
        Take each batch's centre off the encoders' inputs (see **Batches**): True,
        False, or ``None`` (default) for "when cell-type labels are registered"; used
        when two or more batches are registered.

    Examples
    --------
    >>> mdata = scmint.data.pad_mudata(mdata)  # paired, unpaired or mosaic
    >>> scmint.model.CLUE.setup_mudata(mdata, batch_key="batch")
    >>> model = scmint.model.CLUE(mdata, likelihood={"rna": "nb", "adt": "nb"})
    >>> model.train()
    >>> z = model.get_latent_representation()  # joint, for every cell
    >>> adt = model.translate(source="rna", target="adt", indices=rna_only_cells)
    """

    _module_cls = CLUEModule
    _training_plan_cls = GeneratorDiscriminatorPlan
    _data_splitter_cls = RegisteredDataSplitter
    _train_runner_cls = QuietTrainRunner
    _latent_key = "X_clue"
    #: Space of :meth:`translate`'s output: ``"counts"``, counts or count-scale means
    #: (compared after ``log1p(x / rowsum * 1e4)``); ``"lognorm"`` would be that already.
    translation_space = "counts"
    _count_modalities_default = "all"
    _reads_from_disk = True

    def __init__(
        self,
        mdata: md.MuData,
        n_latent: int = 50,
        n_hidden: int = 256,
        n_layers: int = 2,
        dropout: float = 0.2,
        likelihood: str | Mapping[str, str] = "nb",
        normalization: str | Mapping[str, str] | None = None,
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
        encode_batch: bool = False,
        center_batches: bool | None = None,
    ) -> None:
        super().__init__(mdata)
        mods = self.modalities
        check_positive_int(n_latent=n_latent, n_hidden=n_hidden, n_layers=n_layers)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}.")
        if joint not in JOINT_RULES:
            raise ValueError(f"joint must be one of {JOINT_RULES}, got {joint!r}.")
        if alignment not in ALIGNMENTS:
            raise ValueError(f"alignment must be one of {ALIGNMENTS}, got {alignment!r}.")
        weights = {
            name: _check_weight(name, value)
            for name, value in (
                ("data_weight", data_weight),
                ("kl_weight", kl_weight),
                ("joint_cross_weight", joint_cross_weight),
                ("real_cross_weight", real_cross_weight),
                ("alignment_weight", alignment_weight),
                ("adversarial_weight", adversarial_weight),
                ("classifier_weight", classifier_weight),
            )
        }
        unknown = [m for m in (modality_weights or {}) if m not in mods]
        if unknown:
            raise KeyError(f"modality_weights names modalities {unknown} not among {mods}.")
        for m, w in (modality_weights or {}).items():
            _check_weight(f"modality_weights['{m}']", w)
        likelihoods = resolve_per_modality("likelihood", likelihood, mods, LIKELIHOODS, "nb")
        self._check_count_modalities([m for m in mods if likelihoods[m] in COUNT_LIKELIHOODS])
        default_norm = {m: "none" if likelihoods[m] in ("normal", "ziln") else "log" for m in mods}
        norms = resolve_per_modality(
            "normalization",
            default_norm if normalization is None else normalization,
            mods,
            INPUT_NORMALIZATIONS,
            default_norm,
        )
        for m in mods:
            if norms[m] != "none" or likelihoods[m] in COUNT_LIKELIHOODS + ("bernoulli",):
                self._check_nonnegative(m, norms[m])
        classes, class_of_code = self._label_classes()
        if len(classes) < 2:
            if self.adata_manager.registry["setup_args"].get("labels_key") is not None:
                warnings.warn(
                    f"labels_key has {len(classes)} cell type(s) besides the unlabelled "
                    "category (every label missing or one type only), so CLUE's classifier "
                    "is off and training is unsupervised. Pass a labels_key with two or "
                    "more labelled types, or set up without labels_key to silence this.",
                    UserWarning,
                    stacklevel=2,
                )
            classes, class_of_code = [], [-1]
        self.classes_ = np.asarray(classes, dtype=object)
        self.likelihoods_ = likelihoods
        self.normalization_ = norms
        self.library_mean_ = self._library_means()
        self.batch_cells_ = self._batch_cells()
        self.module = self._module_cls(
            modalities=mods,
            n_input=[self.adata.mod[m].n_vars for m in mods],
            likelihoods=likelihoods,
            normalization=norms,
            n_batch=self.summary_stats.n_batch,
            n_latent=int(n_latent),
            n_hidden=int(n_hidden),
            n_layers=int(n_layers),
            dropout=float(dropout),
            n_classes=len(classes),
            class_of_code=class_of_code,
            joint=joint,
            normalize=normalize,
            alignment=alignment,
            modality_weights=modality_weights,
            encode_batch=encode_batch,
            center_batches=self._resolve_center_batches(center_batches),
            **weights,
        )
        self._fit_clr(norms)
        with keep_torch_threads():
            self._fit_input_centers()
        inputs = ", ".join(
            f"{m} ({self.adata.mod[m].n_vars} features, {likelihoods[m]}, {norms[m]} input)"
            for m in mods
        )
        self._model_summary_string = (
            f"CLUE: {inputs}; embedding {len(mods)} x {n_latent}, joint={joint}, "
            f"alignment={alignment}, {self.summary_stats.n_batch} batches"
            f"{' (encoded)' if encode_batch else ''}"
            f"{' (centred)' if self.module.center_batches else ''}, "
            f"{len(classes)} classes."
        )
        self.init_params_ = self._get_init_params(locals())

    # ------------------------------------------------------------------ setup
    def _fit_clr(self, norms: Mapping[str, str]) -> None:
        """Per-feature geometric means of the ``"clr"`` modalities, into the input layers."""
        with keep_torch_threads():
            for m in self.modalities:
                if norms[m] != "clr":
                    continue
                rows = np.flatnonzero(self._registered_mask(m))
                if not rows.size:  # a query without this modality: the reference's means load
                    continue
                scaler = make_feature_scaler("clr", 1e4, None).fit(
                    self._fit_rows(m, rows), feature_names=self.adata.mod[m].var_names
                )
                gm = torch.as_tensor(np.asarray(scaler.clr_geometric_mean_), dtype=torch.float32)
                self.module.inputs[m].geometric_mean.copy_(gm)

    # ------------------------------------------------------------------ training
    def train(
        self,
        max_epochs: int | None = None,
        lr: float = 2e-3,
        batch_size: int = 128,
        burnin_epochs: int | None = None,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        train_size: float | None = None,
        validation_size: float | None = None,
        shuffle_set_split: bool = True,
        early_stopping: bool = True,
        early_stopping_patience: int | None = None,
        reduce_lr_on_plateau: bool = True,
        lr_patience: int | None = None,
        restore_best: bool = True,
        restore_monitor: str | None = None,
        datasplitter_kwargs: dict | None = None,
        plan_kwargs: dict | None = None,
        **trainer_kwargs: Any,
    ):
        """Train with one discriminator and one generator update per minibatch.

        RMSprop (no momentum) for both networks through
        :class:`scmint.train.GeneratorDiscriminatorPlan` (discriminator first, as
        published), scvi-tools' data splitter, progress bar, early stopping on
        ``vae_loss_validation`` (the generator objective without the adversarial term),
        learning-rate reduction on plateau and, at the end, the weights of the best
        validation epoch restored (``restore_best``). ``model.history`` holds every term.

        Parameters
        ----------
        max_epochs
            Default: CLUE's schedule, 72 progress units (``lr`` x minibatch updates):
            ``max(ceil(72 / (lr * n_batches)), 72)`` epochs for ``n_batches`` minibatches
            per epoch, capped at 1,000 (small datasets would ask for thousands).
        lr
            RMSprop learning rate (2e-3).
        batch_size
            Cells per minibatch (128).
        burnin_epochs
            Epochs over which the discriminator's input noise anneals to 0; early
            stopping starts watching after them. Default 12/72 of ``max_epochs``.
        accelerator, devices
            Lightning accelerator and devices.
        train_size, validation_size, shuffle_set_split
            As in scvi-tools (default 90% of cells for training).
        early_stopping
            Stop when ``vae_loss_validation`` has not improved for
            ``early_stopping_patience`` epochs.
        early_stopping_patience
            Default 9/72 of ``max_epochs`` (at least 1).
        reduce_lr_on_plateau
            Reduce the learning rate tenfold when ``vae_loss_validation`` plateaus.
        lr_patience
            Epochs of plateau before a reduction; default 3/72 of ``max_epochs``.
        restore_best
            Load back, when training ends, the weights of the epoch (after the burn-in)
            with the lowest ``restore_monitor``, as the published trainer restores its
            best checkpoint; ``model.best_epoch_`` says which (0-based). At RMSprop's
            full learning rate the alignment is jumpy from epoch to epoch, and the last
            epoch's weights are a draw from it: on ``bmmc_cite_starter`` (20 epochs,
            labels, all cells) the FOSCTTM of seeds 0-4 was 0.073, 0.068, 0.251, 0.084,
            0.087 with the last epoch's weights (seed 2's last epoch jumped from 0.067
            and its validation objective from 4.99 to 5.65), and 0.073, 0.068, 0.076,
            0.084, 0.087 with the best epoch's.
        restore_monitor
            Metric of ``restore_best``; default the early-stopping metric
            (``vae_loss_validation``, ``vae_loss_train`` without validation cells).
        datasplitter_kwargs
            Passed to :class:`~scmint.data.RegisteredDataSplitter` (scvi-tools'
            ``DataSplitter``). By default every modality with at most 10 % non-zero
            entries reaches the encoders as sparse minibatches (``"sparse_keys"``: the
            registry keys, e.g. ``[]`` for dense minibatches; same values either way).
        plan_kwargs
            Passed to :class:`~scmint.train.GeneratorDiscriminatorPlan`.
        **trainer_kwargs
            Passed to :class:`~scvi.train.Trainer`.
        """
        if not (np.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be a positive number, got {lr!r}.")
        n = self.adata.n_obs
        n_val = self._validation_cells(train_size, validation_size, early_stopping)
        n_batches = ceil((n - n_val) / batch_size)
        if max_epochs is None:
            max_epochs = progress_epochs(TRAIN_PROGRESS, lr, n_batches)
        if isinstance(max_epochs, bool) or int(max_epochs) < 1:
            raise ValueError(f"max_epochs must be a positive integer, got {max_epochs!r}.")
        max_epochs = int(max_epochs)

        def share(progress: int) -> int:
            return max(ceil(max_epochs * progress / TRAIN_PROGRESS), 1)

        burnin = share(BURNIN_PROGRESS) if burnin_epochs is None else int(burnin_epochs)
        if burnin < 0:
            raise ValueError(f"burnin_epochs must be >= 0, got {burnin_epochs!r}.")
        self.module.burnin_epochs = burnin
        monitor = "vae_loss_validation" if n_val > 0 else "vae_loss_train"
        plan = {
            "optimizer": "Custom",
            "optimizer_creator": functools.partial(torch.optim.RMSprop, lr=lr, momentum=0.0),
            "order": "discriminator_first",
            "reduce_lr_on_plateau": reduce_lr_on_plateau,
            "lr_patience": share(LR_PATIENCE_PROGRESS) if lr_patience is None else lr_patience,
            "lr_factor": 0.1,
            "lr_scheduler_metric": monitor,
            **(plan_kwargs or {}),
        }
        if n_val > 0:
            trainer_kwargs.setdefault("check_val_every_n_epoch", 1)
        trainer_kwargs.setdefault("early_stopping_monitor", monitor)
        patience = early_stopping_patience
        trainer_kwargs.setdefault(
            "early_stopping_patience", share(PATIENCE_PROGRESS) if patience is None else patience
        )
        trainer_kwargs.setdefault("early_stopping_warmup_epochs", burnin)
        keeper = None
        if restore_best:
            keeper = RestoreBestWeights(
                restore_monitor or monitor, warmup_epochs=min(burnin, max_epochs - 1)
            )
            trainer_kwargs["callbacks"] = [*trainer_kwargs.get("callbacks", []), keeper]
        out = super().train(
            max_epochs=max_epochs,
            accelerator=accelerator,
            devices=devices,
            train_size=train_size,
            validation_size=validation_size,
            shuffle_set_split=shuffle_set_split,
            batch_size=batch_size,
            early_stopping=early_stopping,
            datasplitter_kwargs={
                "sparse_keys": [data_key(m) for m in self.modalities],
                **(datasplitter_kwargs or {}),
            },
            plan_kwargs=plan,
            **trainer_kwargs,
        )
        self.best_epoch_ = None if keeper is None else keeper.best_epoch
        return out

    # ------------------------------------------------------------------ forward passes
    def _embed_matrix(
        self, x, modality: str, batch_size: int | None = None, batch: np.ndarray | None = None
    ) -> np.ndarray:
        return self._forward_rows(
            x,
            lambda block, b=None: self.module.embed(block, modality, b),
            self.module.n_latent,
            batch_size,
            batch,
        )

    def _logits_matrix(
        self, x, modality: str, batch_size: int | None = None, batch: np.ndarray | None = None
    ) -> np.ndarray:
        return self._forward_rows(
            x,
            lambda block, b=None: self.module.classify(self.module.encode(block, modality, b).loc),
            self.module.n_classes,
            batch_size,
            batch,
        )

    def _posterior(
        self, x, modality: str, batch_size: int | None, batch: np.ndarray | None = None
    ) -> tuple[np.ndarray, ...]:
        """Means and standard deviations of ``q(u | x)`` of the rows of ``x``."""
        width = self.module.n_latent

        def both(block: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
            q = self.module.encode(block, modality, b)
            return torch.cat([q.loc, q.scale], 1)

        out = self._forward_rows(x, both, 2 * width, batch_size, batch)
        return out[:, :width], out[:, width:]

    @torch.inference_mode()
    def _joint_embedding(self, cells: Cells, batch_size: int | None) -> np.ndarray:
        """The module's joint rule (normalised mean or product of experts) over modalities."""
        self.module.eval()
        n, k, width = cells.n_obs, len(self.modalities), self.module.n_latent
        loc = np.zeros((n, k, width), dtype=np.float32)
        scale = np.ones((n, k, width), dtype=np.float32)
        mask = np.zeros((n, k), dtype=bool)
        codes = self._encoder_batches(cells)
        for i, m in enumerate(self.modalities):
            rows = np.flatnonzero(cells.has[m])
            if rows.size:
                loc[rows, i], scale[rows, i] = self._posterior(
                    cells.matrices[m][rows], m, batch_size, None if codes is None else codes[rows]
                )
                mask[rows, i] = True
        out = np.empty((n, width), dtype=np.float32)
        for start in range(0, n, INFERENCE_BATCH):
            part = slice(start, start + INFERENCE_BATCH)
            tensors = [torch.as_tensor(a[part], device=self.device) for a in (loc, scale, mask)]
            out[part] = self.module.combine(*tensors, sample=False).float().cpu().numpy()
        return out

    def _decoder_batch(self, batch: str | int | None, target: str) -> int:
        """Registry code of the batch whose ``target`` decoder parameters are used.

        ``None``: the batch with the most cells measured in ``target`` (in a mosaic the
        first batch may hold none, and its parameters for ``target`` were never trained).
        A batch without ``target`` cells is refused for the same reason.
        """
        cells = getattr(self, "batch_cells_", None)  # a query model's include the reference's
        if cells is None or len(cells[target]) != self.summary_stats.n_batch:
            cells = self._batch_cells()
        counts = np.asarray(cells[target])
        if batch is None:
            return int(counts.argmax())
        code = self._batch_code(batch)
        if counts[code] == 0:
            names = self.adata_manager.get_state_registry(REGISTRY_KEYS.BATCH_KEY)
            usable = [str(n) for n, c in zip(names.categorical_mapping, counts, strict=True) if c]
            raise ValueError(
                f"Batch {batch!r} has no cells measured in '{target}', so its '{target}' "
                f"decoder parameters were never trained. Choose one of {usable}."
            )
        return code

    def _libraries(self, library, target: str, cells: Cells) -> np.ndarray:
        """Library sizes of the predicted ``target`` profiles of ``cells``."""
        if isinstance(library, str) and library == "observed":
            self._require(cells, target)
            sums = np.asarray(cells.matrices[target].sum(axis=1), dtype=np.float32).ravel()
            return np.maximum(sums, 1.0)
        if isinstance(library, str) and library != "mean":
            raise ValueError(
                f"library must be 'mean', 'observed', a number or an array, got {library!r}."
            )
        return self._library(library, target, cells.n_obs)

    @torch.inference_mode()
    def _decode(
        self,
        u: np.ndarray,
        target: str,
        library: np.ndarray,
        batch: str | int | None,
        sample: bool,
        batch_size: int | None,
    ) -> np.ndarray:
        """``target`` profiles (means or samples) decoded from embeddings ``u``."""
        self.module.eval()
        code = self._decoder_batch(batch, target)
        count = self.likelihoods_[target] in COUNT_LIKELIHOODS
        bs = batch_size or INFERENCE_BATCH
        out = np.empty((u.shape[0], self.adata.mod[target].n_vars), dtype=np.float32)
        for start in range(0, u.shape[0], bs):
            stop = min(start + bs, u.shape[0])
            ub = torch.as_tensor(u[start:stop], dtype=torch.float32, device=self.device)
            b = torch.full((stop - start,), code, dtype=torch.long, device=self.device)
            lib = torch.as_tensor(library[start:stop, None], device=self.device) if count else None
            dist = self.module.decode(ub, target, b, lib)
            out[start:stop] = (dist.sample() if sample else dist.mean).float().cpu().numpy()
        return out

    @torch.inference_mode()
    def _elbo_terms(
        self, x, modality: str, batch_codes: np.ndarray, batch_size: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-cell NLL of ``x`` (own block, normalised posterior mean) and KL."""
        self.module.eval()
        count = self.likelihoods_[modality] in COUNT_LIKELIHOODS
        nll = np.empty(x.shape[0])
        kl = np.empty(x.shape[0])
        for rows, block in row_batches(x, batch_size or INFERENCE_BATCH, self.device):
            b = torch.as_tensor(batch_codes[rows], device=self.device)
            q = self.module.encode(block, modality, b if self.module.reads_batch else None)
            lib = block.sum(1, keepdim=True).clamp(min=1.0) if count else None
            dist = self.module.decode(self.module._unit(q.loc), modality, b, lib)
            target = self.module._target(block, modality)
            nll[rows] = -dist.log_prob(target).sum(1).double().cpu().numpy()
            prior = Normal(torch.zeros_like(q.loc), torch.ones_like(q.scale))
            kl[rows] = kl_divergence(q, prior).sum(1).double().cpu().numpy()
        return nll, kl

    def _finish_codes(self, z: np.ndarray) -> np.ndarray:
        """Drawn codes on the unit sphere when embeddings are normalised (as in training)."""
        if not self.module.normalize:
            return z
        return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)

    # ------------------------------------------------------------------ public API hooks
    _translation_options = ("sample", "library", "batch")
    _joint_translation = True

    def _classifier_classes(self) -> np.ndarray:
        if self.module.classifier is None:
            raise ValueError(
                "This CLUE has no classifier: it was set up without labels_key (or with fewer "
                "than two cell types, or classifier_weight=0). Set up with labels_key= and "
                "train again."
            )
        return self.classes_

    def _check_translation(self, target: str, batch: str | int | None = None, **_: Any) -> None:
        self._decoder_batch(batch, target)  # a bad batch fails before any computation

    def _translate_latent(
        self,
        z: np.ndarray,
        target: str,
        cells: Cells,
        batch_size: int | None,
        sample: bool = False,
        library: str | float | np.ndarray = "mean",
        batch: str | int | None = None,
    ) -> np.ndarray:
        """``target`` profiles decoded from embeddings ``z`` by ``target``'s decoder."""
        lib = self._libraries(library, target, cells)
        return self._decode(z, target, lib, batch, sample, batch_size)
