"""Peer adapter: the published CLUE model (``scglue.models.SCCLUEModel``) on a benchmark split.

CLUE (cross-linked unified embedding) was published inside the ``scglue`` package
(marked experimental there). This module trains it on a :class:`~harness.Split`
through scglue's public API only, and embeds the scored cells one modality at a time.

What the adapter does, step by step:

1. One AnnData per modality holding the raw counts of the training cells (all features,
   ``use_highly_variable=False``), its batch labels and, optionally, its cell types.
   Cells measured in both modalities share their ``obs_names``, and each modality is
   configured with ``use_obs_names=True``, which is how scglue pairs cells: P1 trains on
   the fully paired reference, P3 on the mosaic (paired cells in both AnnData objects,
   single-modality cells in one only; scglue fills the missing slot with a random cell
   of that modality and masks it out of the cross terms).
2. ``scglue.models.configure_dataset`` with the likelihood of the feature kind: ``"NB"``
   for RNA and protein counts, and ``"NB"`` for ATAC counts too, as in the published
   CLUE competition code (NB on raw peak counts). scglue also lists ``"Bernoulli"``,
   but in 0.4.1 it cannot be combined with an NB modality: the cross-reconstruction term
   decodes the NB target with the library size estimated by the *source* encoder, which
   the Bernoulli (plain) encoder does not have, and training fails with
   ``AttributeError: 'NoneType' object has no attribute 'unsqueeze'``. ``use_batch`` is
   the split's batch column when the modality has it. No ``use_rep``: the encoders read
   scglue's own ``log1p(x * 1e4 / sum x)`` of the counts (the API default).
3. ``SCCLUEModel(adatas, latent_dim=50, ...)``, ``compile()`` (RMSprop, lr 2e-3, every
   lambda 0.02 except lambda_data = lambda_kl = 1, ``normalize_u=True``) and
   ``fit(adatas, batch_size=128, val_split=0.1, ...)``: scglue's defaults unless a
   keyword argument overrides them.
4. ``model.encode_data(modality, query)`` for each modality's scored cells: the
   posterior mean of that modality's cross-encoder row, the concatenation of its K
   blocks (K = 2 modalities, so ``2 * latent_dim`` columns), computed from that
   modality's counts alone (the encoders take no batch and nothing from the other
   modality). That is the representation the published CLUE code matched cells on; its
   matching functions L2-normalise it first, and training decodes and aligns the
   L2-normalised vector (``normalize_u=True``), so the returned embedding is
   L2-normalised row-wise as well (``normalize=False`` returns the raw means).

Epochs: with ``max_epochs=None`` the burn-in, maximum epochs, early-stopping patience
and LR-plateau patience are scglue's own automatic values (``SCCLUEModel.fit`` with
``AUTO``: a fixed number of optimisation steps, ``max(ceil(72 / lr / batches_per_epoch),
72)`` epochs etc.), computed here with the same formula so that they are recorded. The
rule fixes a number of optimisation steps, so small datasets get thousands of epochs
(bmmc_cite_starter P1: at most 10,667 epochs, burn-in 1,778, patience 1,334;
pbmc_mosaic P3: 3,200, 534 and 400), hours on a CPU; early stopping cannot act before
the burn-in ends. With ``max_epochs=M`` the other three are scaled with scglue's own ratios
(12/72, 9/72 and 3/72 of ``M``, at least 1), so that the adversarial burn-in still ends
before training does; each can be overridden.

Compatibility notes (scglue 0.4.1 on Python 3.11, numpy 2, pandas 2, anndata 0.12,
torch 2.x, pytorch-ignite 0.5): importing and training work without patches. scglue's
global ``config`` and console log level are changed only inside :func:`fit_scglue_clue`
and restored afterwards; the training directory (checkpoints, TensorBoard logs) is a
temporary directory removed afterwards instead of scglue's ``mkdtemp`` that is never
cleaned up. scglue's training loop installs a SIGINT handler, so it must run in the
main thread.
"""

from __future__ import annotations

import inspect
import logging
import math
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

from ._protocols import Split
from ._result import MethodResult

#: Likelihood (scglue ``prob_model``) of each feature kind.
PROB_MODELS = {"rna": "NB", "protein": "NB", "atac": "NB"}

# constants of scglue's AUTO epoch rule in SCCLUEModel.fit (read from the class when present)
_PRG = {
    "align_burnin": ("ALIGN_BURNIN_PRG", 12.0),
    "max_epochs": ("MAX_EPOCH_PRG", 72.0),
    "patience": ("PATIENCE_PRG", 9.0),
    "reduce_lr_patience": ("REDUCE_LR_PATIENCE_PRG", 3.0),
}


def _import_scglue():
    try:
        import scglue
        import scglue.models
    except ImportError as err:  # pragma: no cover - exercised only without scglue
        raise ImportError(
            "The 'scglue_clue' benchmark method runs the published CLUE model of the scglue "
            "package, which is not installed. Install it with `pip install scglue`."
        ) from err
    return scglue


@contextmanager
def _scglue_settings(scglue, *, cpu_only: bool, verbose: bool) -> Iterator[None]:
    """Set scglue's global config and log level for one run; restore them afterwards."""
    config = scglue.config
    saved = {
        "CPU_ONLY": config.CPU_ONLY,
        "DATALOADER_PIN_MEMORY": config.DATALOADER_PIN_MEMORY,
    }
    saved_level = scglue.log.console_log_level
    # ignite's early-stopping handler logs "Stop training" through its own logger
    ignite_log = logging.getLogger("ignite.handlers.early_stopping.EarlyStopping")
    saved_ignite_level = ignite_log.level
    try:
        config.CPU_ONLY = cpu_only
        # pinned memory only helps host -> GPU copies; on CPU torch warns about it
        config.DATALOADER_PIN_MEMORY = not cpu_only
        scglue.log.console_log_level = logging.INFO if verbose else logging.WARNING
        if not verbose:
            ignite_log.setLevel(logging.WARNING)
        yield
    finally:
        for key, val in saved.items():
            setattr(config, key, val)
        scglue.log.console_log_level = saved_level
        ignite_log.setLevel(saved_ignite_level)


def _counts_anndata(
    adata: ad.AnnData,
    obs: dict[str, np.ndarray],
    var_names: pd.Index | None = None,
) -> ad.AnnData:
    """Fresh AnnData with float32 CSR counts, the given obs columns and no other content."""
    if var_names is not None:
        adata = adata[:, var_names]
    x = sparse.csr_matrix(adata.X, dtype=np.float32, copy=True)  # never alias the split
    return ad.AnnData(
        X=x,
        obs=pd.DataFrame(obs, index=adata.obs_names.astype(str)),
        var=pd.DataFrame(index=adata.var_names.astype(str)),
    )


def _split_kwargs(scglue, kwargs: dict) -> tuple[dict, dict, dict]:
    """Route extra keyword arguments to ``SCCLUEModel()``, ``compile`` or ``fit`` by name."""
    cls = scglue.models.SCCLUEModel
    targets = {
        # random_seed is `seed`; directory is a temporary directory of the adapter
        "init": set(inspect.signature(cls.__init__).parameters) - {"self", "adatas", "random_seed"},
        "compile": set(inspect.signature(cls.compile).parameters) - {"self", "kwargs"},
        "fit": set(inspect.signature(cls.fit).parameters) - {"self", "adatas", "directory"},
    }
    routed: dict[str, dict] = {"init": {}, "compile": {}, "fit": {}}
    for key, val in kwargs.items():
        where = [name for name, params in targets.items() if key in params]
        if not where:
            raise TypeError(
                f"fit_scglue_clue got an unexpected keyword argument {key!r}; it is not an "
                "argument of scglue's SCCLUEModel(), compile() or fit()."
            )
        routed[where[0]][key] = val
    return routed["init"], routed["compile"], routed["fit"]


def _epoch_schedule(
    scglue, max_epochs: int | None, n_cells: int, val_split: float, batch_size: int, lr: float
) -> dict[str, int]:
    """Burn-in, max epochs and patiences as scglue's ``fit`` would choose them.

    ``max_epochs=None``: scglue's AUTO rule, ``max(ceil(PRG / lr / batches_per_epoch),
    ceil(PRG))`` with PRG = 12 (burn-in), 72 (max epochs), 9 (patience) and 3 (LR
    patience). ``max_epochs=M``: the other three scaled by PRG / 72 of ``M``.
    """
    cls = scglue.models.SCCLUEModel
    prg = {key: float(getattr(cls, attr, default)) for key, (attr, default) in _PRG.items()}
    if max_epochs is None:
        batches_per_epoch = n_cells * (1 - val_split) / batch_size
        return {
            key: max(math.ceil(val / lr / batches_per_epoch), math.ceil(val))
            for key, val in prg.items()
        }
    max_epochs = int(max_epochs)
    if max_epochs < 1:
        raise ValueError(f"max_epochs must be a positive integer, got {max_epochs}.")
    out = {
        key: max(1, math.ceil(max_epochs * val / prg["max_epochs"]))
        for key, val in prg.items()
        if key != "max_epochs"
    }
    out["max_epochs"] = max_epochs
    if out["reduce_lr_patience"] >= out["patience"]:
        # scglue warns that LR scheduling is then ineffective; 0 switches it off
        out["reduce_lr_patience"] = out["patience"] - 1
    return out


def fit_scglue_clue(
    split: Split,
    *,
    max_epochs: int | None = None,
    seed: int = 0,
    latent_dim: int = 50,
    batch_size: int = 128,
    val_split: float = 0.1,
    lr: float = 2e-3,
    use_batch: bool = True,
    use_labels: bool = False,
    normalize: bool = True,
    use_gpu: bool | None = None,
    verbose: bool = False,
    **kwargs,
) -> MethodResult:
    """Train scglue's published CLUE model on a split and embed the scored cells.

    See the module docstring for the data set-up, the epoch schedule and the choice of
    embedding.

    Parameters
    ----------
    split
        Benchmark split (P1: trains on the paired reference; P3: on the mosaic, paired
        cells matched by ``obs_names``). P2 also runs (no shared names: nothing paired)
        but is not what CLUE is meant for.
    max_epochs
        ``None``: scglue's automatic schedule with early stopping; an integer: at most
        that many epochs, burn-in and patiences scaled with scglue's ratios.
    seed
        ``random_seed`` of ``SCCLUEModel`` (weights, validation split, shuffling).
    latent_dim
        Size ``d`` of each of the K blocks of the embedding (scglue default 50).
    batch_size, val_split
        Minibatch size and validation fraction of ``fit`` (scglue defaults 128, 0.1).
    lr
        RMSprop learning rate of ``compile`` (scglue default 2e-3).
    use_batch
        Configure each modality with the split's batch column (batch-conditioned
        decoders) when the modality has it.
    use_labels
        Configure ``use_cell_type`` with the split's labels (CLUE's optional linear
        classifier on the embedding); off by default, as in scglue. Keep it off in P3:
        there the scored cells are training cells, so their own labels would be used.
    normalize
        L2-normalise each embedding row (see the module docstring).
    use_gpu
        ``None``: scglue's own device choice (a free GPU if any); ``False``: CPU;
        ``True``: require a CUDA GPU.
    verbose
        Keep scglue's INFO log (losses every 10 epochs) on the console.
    **kwargs
        Any other argument of ``SCCLUEModel()`` (``x2u_h_dim``, ``dropout``,
        ``shared_batches``, ...), ``compile()`` (``lam_align``, ``lam_cos``,
        ``normalize_u``, ...) or ``fit()`` (``align_burnin``, ``patience``,
        ``reduce_lr_patience``), routed by name.

    Returns
    -------
    MethodResult
        Embeddings (``2 * latent_dim`` columns) of ``split.query[m]`` for each modality,
        epochs actually run, wall times and the parameters used.
    """
    scglue = _import_scglue()
    import torch

    if use_gpu and not torch.cuda.is_available():
        raise RuntimeError("use_gpu=True but torch finds no CUDA device.")
    init_kw, compile_kw, fit_kw = _split_kwargs(scglue, kwargs)
    mods = tuple(split.modalities)
    prob_models = {}
    for m in mods:
        kind = split.kinds[m]
        if kind not in PROB_MODELS:
            raise ValueError(f"No scglue likelihood for feature kind {kind!r} of {m!r}.")
        prob_models[m] = PROB_MODELS[kind]

    adatas: dict[str, ad.AnnData] = {}
    batch_cols: dict[str, str | None] = {}
    for m in mods:
        src = split.train.mod[m]
        obs: dict[str, np.ndarray] = {}
        batch_cols[m] = None
        if use_batch and split.batch_key in src.obs:
            obs["_batch"] = src.obs[split.batch_key].astype(str).to_numpy()
            batch_cols[m] = "_batch"
        if use_labels:
            obs["_label"] = src.obs[split.labels_key].astype(str).to_numpy()
        adatas[m] = _counts_anndata(src, obs)
        scglue.models.configure_dataset(
            adatas[m],
            prob_models[m],
            use_highly_variable=False,
            use_batch=batch_cols[m],
            use_cell_type="_label" if use_labels else None,
            use_obs_names=True,
        )
    n_union = len(
        pd.Index(np.concatenate([a.obs_names.to_numpy() for a in adatas.values()])).unique()
    )
    n_paired = len(adatas[mods[0]].obs_names.intersection(adatas[mods[1]].obs_names))
    schedule = _epoch_schedule(scglue, max_epochs, n_union, val_split, batch_size, lr)
    schedule.update({k: fit_kw.pop(k) for k in list(fit_kw) if k in schedule})

    epochs_run: list[int] = []
    restored: list[int] = []
    cpu_only = not torch.cuda.is_available() if use_gpu is None else not use_gpu
    with _scglue_settings(scglue, cpu_only=cpu_only, verbose=verbose):
        model = scglue.models.SCCLUEModel(
            adatas, latent_dim=latent_dim, random_seed=seed, **init_kw
        )
        model.compile(lr=lr, **compile_kw)
        trainer = model.trainer
        report = trainer.report_metrics

        def _count_epochs(train_state, val_state) -> None:
            # called once per completed epoch (scglue logs losses from here)
            epochs_run.append(int(train_state.epoch))
            report(train_state, val_state)

        trainer.report_metrics = _count_epochs
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="scmint_scglue_") as tmp:
            model.fit(
                adatas,
                val_split=val_split,
                batch_size=batch_size,
                directory=tmp,
                **schedule,
                **fit_kw,
            )
            for path in Path(tmp).glob("checkpoint_*.pt"):
                match = re.fullmatch(r"checkpoint_(\d+)\.pt", path.name)
                if match:
                    restored.append(int(match.group(1)))
        t1 = time.perf_counter()
        del trainer.report_metrics
        emb = {}
        for m in mods:
            q = split.query[m]
            qa = _counts_anndata(q, {}, var_names=adatas[m].var_names)
            z = np.asarray(model.encode_data(m, qa), dtype=np.float64)
            if normalize:
                z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
            emb[m] = z
        t2 = time.perf_counter()
        device = str(model.net.device)

    n_epochs = max(epochs_run) if epochs_run else 0
    params = {
        "scglue_version": getattr(scglue, "__version__", ""),
        "latent_dim": latent_dim,
        "embedding_dim": latent_dim * len(mods),
        "batch_size": batch_size,
        "val_split": val_split,
        "lr": lr,
        "optimizer": "RMSprop",
        "prob_models": prob_models,
        "use_batch": {m: batch_cols[m] is not None for m in mods},
        "use_labels": use_labels,
        "encoder_input": "log1p(x * 1e4 / sum x) of all features (no use_rep)",
        "normalize": normalize,
        "n_train_cells": n_union,
        "n_paired_train_cells": n_paired,
        **schedule,
        "early_stopped": n_epochs < schedule["max_epochs"],
        # scglue restores the latest checkpoint kept by its early-stopping plugin
        "restored_epoch": max(restored) if restored else None,
        "device": device,
        "seed": seed,
        **init_kw,
        **compile_kw,
        **fit_kw,
    }
    return MethodResult(
        embeddings=emb,
        n_epochs=n_epochs,
        train_time_s=t1 - t0,
        inference_time_s=t2 - t1,
        params=params,
    )
