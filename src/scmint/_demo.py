"""End-to-end demo: integrate two modalities, score, plot and write a report."""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import mudata as md
import numpy as np
import pandas as pd
import psutil
from scipy import sparse

from . import data, metrics, pl, tl
from ._demo_report import (
    MethodResult,
    Report,
    measure_peak_memory,
    plot_confusions,
    plot_translation,
    verdicts,
    write_html,
    write_markdown,
)
from ._quiet import quiet_libraries

SIMULATION = {"paired_fraction": 0.6, "batch_effect": 0.3, "nonlinear_coupling": 2.0}
"""The demo's default data: a mosaic of paired and single-modality cells in two batches,
five cell types down to a rare one (2.7 % of cells), whose chromatin responds to the cell
state nonlinearly and differently per type (:func:`scmint.data.simulate_multiome`), so
that no single linear map relates the modalities: the linear CCA baseline loses most
within-type matching (held-out FOSCTTM about 0.15 at seeds 0-2) where models that learn a
nonlinear map from the reference pairs keep it (CLUE about 0.02, MINNET about 0.10)."""


def _load(path: str | Path | None, seed: int, n_cells: int) -> tuple[md.MuData, str]:
    if path is None:
        mdata = data.simulate_multiome(n_cells=n_cells, seed=seed, **SIMULATION)
        call = ", ".join(f"{k}={v}" for k, v in SIMULATION.items())
        description = (
            f"simulate_multiome(n_cells={n_cells}, {call}, seed={seed}): RNA + ATAC, two "
            "batches, five cell types (type4 rare), chromatin coupled to the cell state "
            "nonlinearly and differently per type, so a linear map between the modalities "
            "fails within types"
        )
        return mdata, description
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; pass a .h5mu file or no --data.")
    return data.read_h5mu(path), str(path)


def _cca(
    padded: md.MuData,
    mod_a: str,
    mod_b: str,
    reference: np.ndarray,
    seed: int,
    labels_key: str | None = None,
):
    """Fit the linear CCA baseline on the reference pairs; return ``(embed, None)``.

    ``labels_key`` is not used: CCA is unsupervised.
    """
    model = tl.LinearCCA(n_components=20, random_state=seed).fit(
        {m: padded[m][reference].copy() for m in (mod_a, mod_b)}, modalities=[mod_a, mod_b]
    )

    def embed(modality: str, cells: np.ndarray) -> np.ndarray:
        return model.transform(padded[modality][cells], modality=modality)

    return embed, None


def _minnet(
    padded: md.MuData,
    mod_a: str,
    mod_b: str,
    reference: np.ndarray,
    seed: int,
    labels_key: str = "cell_type",
):
    """Train MINNET on the labelled reference pairs; return ``(embed, model)``.

    The query cells are embedded one modality at a time, as new unpaired data.
    """
    import scvi

    from .model import MINNET

    ref = md.MuData({m: padded[m][reference].copy() for m in (mod_a, mod_b)})
    ref.obs = padded.obs.iloc[reference].copy()
    ref.uns["scmint_padding"] = dict(padded.uns["scmint_padding"])
    MINNET.setup_mudata(ref, modalities=[mod_a, mod_b], labels_key=labels_key)
    scvi.settings.seed = seed
    model = MINNET(ref)
    # 10x MinNet's learning rate so that a short run converges (the demo must be quick)
    model.train(max_epochs=25, plan_kwargs={"lr": 1e-3})

    def embed(modality: str, cells: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return model.get_latent_representation(padded[modality][cells], modality=modality)

    return embed, model


def _conaae(
    padded: md.MuData,
    mod_a: str,
    mod_b: str,
    reference: np.ndarray,
    seed: int,
    labels_key: str = "cell_type",
):
    """Train CONAAE on every cell but the held-out queries; return ``(embed, model)``.

    Single-modality cells train as they are (Con-AAE aligns unpaired data); the known
    pairs of the reference cells add the anchor loss.
    """
    import scvi

    from .model import CONAAE

    cells = _training_cells(padded, mod_a, mod_b, reference)
    CONAAE.setup_mudata(cells, modalities=[mod_a, mod_b], labels_key=labels_key)
    scvi.settings.seed = seed
    model = CONAAE(cells, anchor_weight=0.1)
    # 10x Con-AAE's learning rate so that a short run converges (the demo must be quick)
    model.train(max_epochs=20, plan_kwargs={"lr": 1e-3})

    return _embedder(model, padded), model


def _gene_matrices(cells: md.MuData, modalities: Sequence[str]) -> dict:
    """ATAC gene activity for SCCROSS's MNN prior, where the data allow it.

    A modality whose features are peaks (``chr-start-end``) gets a cells x genes matrix
    (:func:`scmint.pp.gene_activity`) when the other modality's ``var`` has gene
    coordinates (``chrom``, ``start``, ``end``; the simulator writes them). Otherwise
    nothing: SCCROSS then uses shared feature names, or no prior.
    """
    from .pp import gene_activity, parse_peak_names

    out = {}
    for peaks, genes in (modalities, modalities[::-1]):
        var = cells[genes].var
        if not {"chrom", "start", "end"} <= set(var.columns):
            continue
        if parse_peak_names(cells[peaks].var_names)["parsed"].mean() < 0.9:
            continue
        rows = cells.obs[data.indicator_key(peaks)].to_numpy().astype(bool)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # genes without peaks
            out[peaks] = gene_activity(
                cells[peaks][rows], genes=var, gene_names=cells[genes].var_names
            )
    return out


def _sccross(
    padded: md.MuData,
    mod_a: str,
    mod_b: str,
    reference: np.ndarray,
    seed: int,
    labels_key: str = "cell_type",
):
    """Train SCCROSS on every cell but the held-out queries; return ``(embed, model)``.

    ``labels_key`` is not used (SCCROSS is unsupervised). The MNN prior comes from ATAC
    gene activity when the genes have coordinates (the simulator's do); the known pairs
    of the reference cells add the pairing loss.
    """
    import scvi

    from .model import SCCROSS

    cells = _training_cells(padded, mod_a, mod_b, reference)
    batch_key = "batch" if "batch" in cells.obs.columns else None
    SCCROSS.setup_mudata(cells, modalities=[mod_a, mod_b], batch_key=batch_key)
    scvi.settings.seed = seed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # no shared genes: no prior
        model = SCCROSS(
            cells,
            n_components=50,  # PCA / LSI inputs (published: 100), enough for the simulator
            gene_matrices=_gene_matrices(cells, [mod_a, mod_b]) or None,
        )
    # a fixed, short schedule at twice scCross's learning rate (the demo must be quick),
    # without the burn-in noise on D_z: in a 10-epoch stage it costs alignment (held-out
    # FOSCTTM on the default simulation, seeds 0-2: 0.33 / 0.31 / 0.25 without, 0.36 /
    # 0.33 / 0.32 with)
    model.train(
        max_epochs=SCCROSS_EPOCHS,
        pretrain_epochs=SCCROSS_EPOCHS,
        lr=2e-3,
        burnin_epochs=0,
        early_stopping=False,
    )

    return _embedder(model, padded), model


SCCROSS_EPOCHS = 10
"""Epochs of each of SCCROSS's two training stages in the demo."""


def _training_cells(padded: md.MuData, mod_a: str, mod_b: str, reference: np.ndarray) -> md.MuData:
    """Every cell but the held-out queries (paired cells outside ``reference``), a copy."""
    paired = padded.obs[data.indicator_key(mod_a)].to_numpy().astype(bool) & padded.obs[
        data.indicator_key(mod_b)
    ].to_numpy().astype(bool)
    query = np.setdiff1d(np.flatnonzero(paired), reference)
    return padded[np.setdiff1d(np.arange(padded.n_obs), query)].copy()


def _embedder(model, padded: md.MuData):
    """``embed(modality, rows)``: a trained model's embedding of cells of ``padded``."""

    def embed(modality: str, rows: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return model.get_latent_representation(padded[modality][rows], modality=modality)

    return embed


def _clue(
    padded: md.MuData,
    mod_a: str,
    mod_b: str,
    reference: np.ndarray,
    seed: int,
    labels_key: str = "cell_type",
):
    """Train CLUE on every cell but the held-out queries; return ``(embed, model)``.

    ``labels_key`` is not used (CLUE's classifier is optional; the demo scores label
    transfer, so it trains without labels). Single-modality cells train as they are, the
    paired reference cells give the cross terms.
    """
    import scvi

    from .model import CLUE

    cells = _training_cells(padded, mod_a, mod_b, reference)
    batch_key = "batch" if "batch" in cells.obs.columns else None
    CLUE.setup_mudata(cells, modalities=[mod_a, mod_b], batch_key=batch_key)
    scvi.settings.seed = seed
    model = CLUE(cells)
    # a fixed, short schedule with larger minibatches (the demo must be quick)
    model.train(max_epochs=CLUE_EPOCHS, batch_size=256)
    return _embedder(model, padded), model


CLUE_EPOCHS = 20
"""Epochs of CLUE in the demo."""


def _methods() -> dict:
    """Methods the demo runs: the linear baseline and every scmint model available.

    Each is called as ``method(padded, mod_a, mod_b, reference, seed, labels_key=...)``
    and returns ``(embed, model)``: ``embed(modality, rows)`` embeds rows of ``padded``
    from one modality alone; ``model`` is the trained scmint model (None for the
    baseline), used for the translation plot.
    """
    return {
        "cca": _cca,
        "minnet": _minnet,
        "conaae": _conaae,
        "sccross": _sccross,
        "clue": _clue,
    }


@quiet_libraries()
def run_demo(
    path: str | Path | None = None,
    out_dir: str | Path = "demo_output",
    modalities: Sequence[str] | None = None,
    labels_key: str = "cell_type",
    seed: int = 0,
    n_cells: int = 3000,
) -> Path:
    """Run the demo and write ``report.md`` and ``report.html`` to ``out_dir``.

    Parameters
    ----------
    path
        A ``.h5mu`` file (paired, unpaired or mosaic); None simulates one with
        :func:`scmint.data.simulate_multiome`.
    out_dir
        Folder for the report and figures (created).
    modalities
        Two modalities to integrate; default the first two of the MuData.
    labels_key
        Column with cell types (used for scoring and plots only).
    seed
        Seed of the simulator and of the reference/query split.
    n_cells
        Number of simulated cells when ``path`` is None.

    Returns
    -------
    Path of ``report.html``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clock = time.perf_counter()

    def step(message: str) -> None:
        """One progress line: elapsed minutes:seconds, then what the demo does."""
        minutes, seconds = divmod(int(time.perf_counter() - clock), 60)
        print(f"[demo {minutes:d}:{seconds:02d}] {message}", flush=True)

    step("loading the data" if path is not None else f"simulating {n_cells} cells")
    mdata, source = _load(path, seed, n_cells)
    padded = data.pad_mudata(mdata, modalities=modalities)
    mod_a, mod_b = list(padded.mod)[:2]
    obs = padded.obs
    if labels_key not in obs.columns:
        raise KeyError(f"labels_key '{labels_key}' not found in the MuData's obs.")
    has_a = obs[data.indicator_key(mod_a)].to_numpy().astype(bool)
    has_b = obs[data.indicator_key(mod_b)].to_numpy().astype(bool)
    paired = np.flatnonzero(has_a & has_b)
    if len(paired) < 50:
        raise ValueError(
            f"The demo's linear baseline learns from paired cells; only {len(paired)} cells "
            f"have both '{mod_a}' and '{mod_b}'."
        )
    order = np.random.default_rng(seed).permutation(len(paired))
    n_ref = int(0.8 * len(paired))
    reference, query = paired[order[:n_ref]], paired[order[n_ref:]]

    labels = obs[labels_key].to_numpy()
    rows_a, rows_b = np.flatnonzero(has_a), np.flatnonzero(has_b)
    pos_a, pos_b = np.searchsorted(rows_a, query), np.searchsorted(rows_b, query)
    markers = _marker_features(padded[mod_a][query])
    results, methods = [], _methods()
    rss_before = psutil.Process().memory_info().rss / 2**20
    for i, (name, method) in enumerate(methods.items(), start=1):
        step(f"{name} ({i}/{len(methods)}): training on {len(reference)} reference cells")
        start = time.perf_counter()
        with measure_peak_memory() as memory:
            embed, model = method(padded, mod_a, mod_b, reference, seed, labels_key=labels_key)
            train_time = time.perf_counter() - start
            step(f"{name}: trained in {train_time:.0f} s; scoring and plotting")
            z_a, z_b = embed(mod_a, rows_a), embed(mod_b, rows_b)
            translated = _translate_markers(model, padded, mod_b, mod_a, query, markers)
        # query cells: held-out paired cells embedded one modality at a time
        scores = metrics.integration_scores(
            z_a[pos_a], z_b[pos_b], labels[query], labels[query], paired=True
        )
        scores |= {"train_time_s": train_time, "peak_rss_mb": memory["peak_rss_mb"]}
        if "peak_gpu_mb" in memory:
            scores["peak_gpu_mb"] = memory["peak_gpu_mb"]
        predicted = tl.transfer_labels(z_a[pos_a], labels[query], z_b[pos_b], k=5)
        results.append(
            MethodResult(
                name=name,
                scores=scores,
                umap_png=_plot_embedding(
                    out, name, z_a, z_b, obs, has_a, has_b, labels_key, mod_a, mod_b
                ),
                confusion=(labels[query], predicted),
                translation=translated,
            )
        )

    table = pd.DataFrame([{"method": r.name, **r.scores} for r in results]).set_index("method")
    summary = {
        "data": source,
        "modalities": f"{mod_a} ({padded[mod_a].n_vars} features), "
        f"{mod_b} ({padded[mod_b].n_vars} features)",
        "cells": f"{padded.n_obs} in all: {len(paired)} paired, "
        f"{int((has_a & ~has_b).sum())} {mod_a} only, {int((has_b & ~has_a).sum())} {mod_b} only",
        "reference / query": f"{len(reference)} paired reference cells train; "
        f"{len(query)} held-out paired cells are scored, each modality embedded alone",
        "machine": _machine(),
        "memory before the methods": f"{rss_before:.0f} MB resident (data and libraries)",
    }
    figures = [
        (
            f"Label transfer {mod_a} → {mod_b} on the held-out cells",
            plot_confusions(results, mod_a, mod_b, out / "label_transfer.png"),
        )
    ]
    translation_png = plot_translation(
        results,
        _lognorm_columns(padded[mod_a][query], markers),
        mod_b,
        mod_a,
        out / "translation.png",
    )
    if translation_png is not None:
        figures.append((f"{mod_a} predicted from {mod_b}", translation_png))
    report = Report(summary, table, results, verdicts(table, mod_a, mod_b), figures, mod_a, mod_b)
    write_markdown(out / "report.md", report)
    written = write_html(out / "report.html", report)
    step(f"report written to {written}")
    return written


def _plot_embedding(
    out: Path,
    name: str,
    z_a: np.ndarray,
    z_b: np.ndarray,
    obs: pd.DataFrame,
    has_a: np.ndarray,
    has_b: np.ndarray,
    labels_key: str,
    mod_a: str,
    mod_b: str,
) -> Path:
    """UMAP of every cell's embedding from each modality, by modality, type and measurement."""
    joint = tl.stack_embeddings(
        {mod_a: z_a, mod_b: z_b},
        {mod_a: obs.loc[has_a, [labels_key]], mod_b: obs.loc[has_b, [labels_key]]},
    )
    joint.obs["measured"] = np.where(
        np.concatenate([has_b[has_a], has_a[has_b]]), "paired", "single modality"
    )
    tl.umap(joint)
    path = out / f"embedding_{name}.png"
    fig = pl.embedding(
        joint,
        color=("modality", labels_key, "measured"),
        title=f"{name}: {mod_a} and {mod_b} cells, each embedded from one modality",
        save=path,
        show=False,
    )
    plt.close(fig)
    return path


N_MARKERS = 4
"""Features shown in the translation plot."""


def _marker_features(measured) -> list[str]:
    """The ``N_MARKERS`` features whose log-normalised values vary most over ``measured``."""
    from sklearn.utils.sparsefuncs import mean_variance_axis

    from .pp._utils import log_normalize_rows

    x = log_normalize_rows(measured.X)
    if hasattr(x, "toarray"):
        variance = mean_variance_axis(sparse.csr_matrix(x), axis=0)[1]
    else:
        variance = np.asarray(x).var(axis=0)
    return list(measured.var_names[np.argsort(-variance)[:N_MARKERS]])


def _lognorm_columns(adata, features: Sequence[str]) -> dict[str, np.ndarray]:
    """``log1p(x / rowsum * 1e4)`` of the rows of ``adata``, for ``features``."""
    from .pp._utils import log_normalize_rows

    x = log_normalize_rows(adata.X)[:, adata.var_names.get_indexer(features)]
    x = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
    return {f: x[:, j] for j, f in enumerate(features)}


def _translate_markers(model, padded, source, target, rows, markers) -> dict[str, np.ndarray]:
    """Marker features of ``target`` predicted from ``source`` alone (log-normalised)."""
    if model is None:
        return {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        predicted = model.translate(padded[source][rows].copy(), source=source, target=target)
    if getattr(model, "translation_space", "counts") == "lognorm":
        x = predicted[:, list(markers)].X
        x = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
        return {f: x[:, j] for j, f in enumerate(markers)}
    return _lognorm_columns(predicted, markers)


def _machine() -> str:
    """Where the demo ran: CPU cores and torch threads, or the GPU."""
    import os

    import torch

    if torch.cuda.is_available():
        return f"GPU: {torch.cuda.get_device_name()}"
    return f"CPU: {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
