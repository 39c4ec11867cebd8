"""End-to-end demo: integrate two modalities, score, plot and write a report."""

from __future__ import annotations

import html
import logging
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import matplotlib.pyplot as plt
import mudata as md
import numpy as np
import pandas as pd

from . import data, metrics, pl, tl


def _load(path: str | Path | None, seed: int, n_cells: int) -> tuple[md.MuData, str]:
    if path is None:
        mdata = data.simulate_multiome(n_cells=n_cells, paired_fraction=0.6, seed=seed)
        return mdata, f"simulate_multiome(n_cells={n_cells}, paired_fraction=0.6, seed={seed})"
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; pass a .h5mu file or no --data.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return md.read_h5mu(path), str(path)


def _cca(
    padded: md.MuData,
    mod_a: str,
    mod_b: str,
    reference: np.ndarray,
    seed: int,
    labels_key: str | None = None,
):
    """Fit the linear CCA baseline on the reference pairs; return an embedding function.

    ``labels_key`` is not used: CCA is unsupervised.
    """
    model = tl.LinearCCA(n_components=20, random_state=seed).fit(
        {m: padded[m][reference].copy() for m in (mod_a, mod_b)}, modalities=[mod_a, mod_b]
    )

    def embed(modality: str, cells: np.ndarray) -> np.ndarray:
        return model.transform(padded[modality][cells], modality=modality)

    return embed


def _minnet(
    padded: md.MuData,
    mod_a: str,
    mod_b: str,
    reference: np.ndarray,
    seed: int,
    labels_key: str = "cell_type",
):
    """Train MINNET on the labelled reference pairs; return an embedding function.

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

    return embed


def _conaae(
    padded: md.MuData,
    mod_a: str,
    mod_b: str,
    reference: np.ndarray,
    seed: int,
    labels_key: str = "cell_type",
):
    """Train CONAAE on every cell but the held-out queries; return an embedding function.

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

    return _embedder(model, padded)


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
    """Train SCCROSS on every cell but the held-out queries; return an embedding function.

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

    return _embedder(model, padded)


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
    """Train CLUE on every cell but the held-out queries; return an embedding function.

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
    return _embedder(model, padded)


CLUE_EPOCHS = 30
"""Epochs of CLUE in the demo."""


def _methods() -> dict:
    """Methods the demo runs: the linear baseline and every scmint model available."""
    return {
        "cca": _cca,
        "minnet": _minnet,
        "conaae": _conaae,
        "sccross": _sccross,
        "clue": _clue,
    }


@contextmanager
def _quiet() -> Iterator[None]:
    """Keep the demo's output to its step lines and progress bars.

    Lightning's device banner and tips (INFO log lines) and library deprecation notices
    (FutureWarning: mudata's pull-on-update, pynvml; Lightning's LeafSpec notice) are not
    shown while the demo runs; other warnings are.
    """
    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        warnings.filterwarnings("ignore", message="The number of training batches")
        for logger in loggers:
            logger.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


@_quiet()
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

    rows, figures = [], []
    methods = _methods()
    for i, (name, method) in enumerate(methods.items(), start=1):
        step(f"{name} ({i}/{len(methods)}): training on {len(reference)} reference cells")
        start = time.perf_counter()
        embed = method(padded, mod_a, mod_b, reference, seed, labels_key=labels_key)
        train_time = time.perf_counter() - start
        step(f"{name}: trained in {train_time:.0f} s; scoring and plotting")
        z_a = embed(mod_a, np.flatnonzero(has_a))
        z_b = embed(mod_b, np.flatnonzero(has_b))
        # query cells: held-out paired cells embedded one modality at a time
        pos_a = np.searchsorted(np.flatnonzero(has_a), query)
        pos_b = np.searchsorted(np.flatnonzero(has_b), query)
        labels = obs[labels_key].to_numpy()
        scores = metrics.integration_scores(
            z_a[pos_a], z_b[pos_b], labels[query], labels[query], paired=True
        )
        rows.append({"method": name, **scores, "train_time_s": train_time})

        joint = tl.stack_embeddings(
            {mod_a: z_a, mod_b: z_b},
            {mod_a: obs.loc[has_a, [labels_key]], mod_b: obs.loc[has_b, [labels_key]]},
        )
        joint.obs["measured"] = np.where(
            np.concatenate([has_b[has_a], has_a[has_b]]), "paired", "single modality"
        )
        tl.umap(joint)
        fig_path = out / f"embedding_{name}.png"
        fig = pl.embedding(
            joint,
            color=("modality", labels_key, "measured"),
            title=f"{name}: {mod_a} and {mod_b} cells, each embedded from one modality",
            save=fig_path,
            show=False,
        )
        plt.close(fig)
        figures.append((name, fig_path.name))

    table = pd.DataFrame(rows).set_index("method")
    summary = {
        "data": source,
        "modalities": f"{mod_a} ({padded[mod_a].n_vars} features), "
        f"{mod_b} ({padded[mod_b].n_vars} features)",
        "cells": f"{padded.n_obs} in all: {len(paired)} paired, "
        f"{int((has_a & ~has_b).sum())} {mod_a} only, {int((has_b & ~has_a).sum())} {mod_b} only",
        "reference / query": f"{len(reference)} paired reference cells train; "
        f"{len(query)} held-out paired cells are scored, each modality embedded alone",
    }
    _write_markdown(out / "report.md", summary, table, figures)
    report = out / "report.html"
    _write_html(report, summary, table, figures)
    step(f"report written to {report}")
    return report


_SCORE_NOTES = (
    "FOSCTTM: fraction of cells closer than the true partner (lower is better, 0.5 is "
    "random). Recall@10 and matching score: higher is better. Label transfer: 5-NN "
    "accuracy from one modality's cells to the other's. ASW: scib-metrics silhouettes "
    "(cell type: higher separates types; modality: higher mixes modalities)."
)


def _write_markdown(path: Path, summary: dict, table: pd.DataFrame, figures: list) -> None:
    lines = ["# scmint demo report", ""]
    lines += [f"- **{k}**: {v}" for k, v in summary.items()]
    lines += ["", "## Scores on held-out paired cells", "", table.round(3).to_markdown(), ""]
    lines += [_SCORE_NOTES, ""]
    for name, fig in figures:
        lines += [f"## {name}", "", f"![{name} embedding]({fig})", ""]
    path.write_text("\n".join(lines))


def _write_html(path: Path, summary: dict, table: pd.DataFrame, figures: list) -> None:
    items = "".join(
        f"<li><b>{html.escape(k)}</b>: {html.escape(str(v))}</li>" for k, v in summary.items()
    )
    figs = "".join(
        f"<h2>{html.escape(n)}</h2><img src='{html.escape(f)}' style='max-width:100%'>"
        for n, f in figures
    )
    path.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>scmint demo</title>"
        "<style>body{font-family:sans-serif;max-width:1200px;margin:auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}</style>"
        f"</head><body><h1>scmint demo report</h1><ul>{items}</ul>"
        "<h2>Scores on held-out paired cells</h2>"
        f"{table.round(3).to_html()}<p>{html.escape(_SCORE_NOTES)}</p>{figs}</body></html>"
    )
