"""The demo's report: a reading guide, marked scores, verdicts and figures in one HTML file."""

from __future__ import annotations

import base64
import html
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

HIGHER_IS_BETTER = {
    "foscttm": False,
    "matching_score": True,
    "recall_at_10": True,
    "label_transfer_a_to_b": True,
    "label_transfer_b_to_a": True,
    "celltype_asw": True,
    "modality_asw": True,
    "graph_connectivity": True,
    "train_time_s": False,
    "peak_rss_mb": False,
}
"""Direction of each column of the scores table (columns not listed are not marked)."""

BASELINE = "cca"
"""The linear baseline every model is compared with."""

LIMITS = {
    "sccross": (
        "SCCROSS is an unpaired VAE-GAN: its alignment comes from an MNN prior between RNA "
        "and ATAC gene activity plus adversaries, which need scCross's long schedule (the "
        "demo trains 10 + 10 epochs) and do not use the pairing of the reference cells "
        "beyond a pairing loss"
    ),
    "conaae": (
        "CONAAE aligns by adversarial, cycle and cell-type triplet losses, with the reference "
        "pairs only as a weak anchor (anchor_weight=0.1 in the demo); within a cell type "
        "little tells partners apart, so cell-level matching (FOSCTTM) can trail while "
        "cell types transfer well"
    ),
    "minnet": (
        "MINNET learns from the labelled reference pairs only; with few reference pairs or "
        "labels that do not separate states it has little to learn from"
    ),
    "clue": (
        "CLUE fits every modality's counts with three cross-decoders; in the demo's 20 "
        "epochs it may not have converged"
    ),
}
"""Why a model may trail the linear baseline, said in its verdict when it does."""


@dataclass
class MethodResult:
    """What the demo measured for one method."""

    name: str
    scores: dict[str, float]
    umap_png: Path
    confusion: tuple[np.ndarray, np.ndarray] | None = None  # (true, predicted) labels
    translation: dict[str, np.ndarray] = field(default_factory=dict)  # feature -> predicted


@dataclass
class Report:
    """Everything the report shows: written by :func:`write_html` and :func:`write_markdown`."""

    summary: Mapping[str, str]
    table: pd.DataFrame
    results: Sequence[MethodResult]
    verdict: Mapping[str, str]
    figures: Sequence[tuple[str, Path]]
    mod_a: str
    mod_b: str


@contextmanager
def measure_peak_memory(interval: float = 0.05) -> Iterator[dict[str, float]]:
    """Sample this process's resident memory while the block runs; yield a result dict.

    On exit the dict holds ``"peak_rss_mb"`` (the largest RSS seen, sampled every
    ``interval`` seconds) and, on a CUDA device, ``"peak_gpu_mb"`` (torch's peak
    allocation during the block).
    """
    import psutil

    process = psutil.Process()
    result = {"peak_rss_mb": process.memory_info().rss / 2**20}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(interval):
            result["peak_rss_mb"] = max(result["peak_rss_mb"], process.memory_info().rss / 2**20)

    cuda = _cuda_available()
    if cuda:
        import torch

        torch.cuda.reset_peak_memory_stats()
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join()
        result["peak_rss_mb"] = max(result["peak_rss_mb"], process.memory_info().rss / 2**20)
        if cuda:
            import torch

            result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def format_value(column: str, value: object) -> str:
    """Scores with 3 decimals, seconds with 1, megabytes with none."""
    if not isinstance(value, (float, int, np.floating, np.integer)):
        return str(value)
    if column.endswith("_mb"):
        return f"{value:.0f}"
    if column.endswith("_s"):
        return f"{value:.1f}"
    return f"{value:.3f}"


def best_rows(table: pd.DataFrame) -> dict[str, set[str]]:
    """Column -> methods with the best value (ties included), for the marked columns."""
    best: dict[str, set[str]] = {}
    for column, higher in HIGHER_IS_BETTER.items():
        if column not in table.columns:
            continue
        values = pd.to_numeric(table[column], errors="coerce").round(3)
        if values.notna().sum() < 2:
            continue
        target = values.max() if higher else values.min()
        best[column] = set(values.index[values == target])
    return best


def verdicts(table: pd.DataFrame, mod_a: str, mod_b: str) -> dict[str, str]:
    """One line per method: how it compares with the linear baseline and the best method."""
    out = {}
    has_baseline = BASELINE in table.index
    best_foscttm = table["foscttm"].min()
    for name, row in table.iterrows():
        f = row["foscttm"]
        lt = np.nanmean([row.get("label_transfer_a_to_b"), row.get("label_transfer_b_to_a")])
        lead = "best alignment of the held-out cells" if np.isclose(f, best_foscttm) else None
        if name == BASELINE:
            text = (
                f"linear baseline (FOSCTTM {f:.3f}, label transfer {lt:.2f}): a model that "
                "does not beat it adds nothing to aligning these cells"
            )
        elif not has_baseline:
            text = f"FOSCTTM {f:.3f}, label transfer {lt:.2f}"
        else:
            base = table.loc[BASELINE, "foscttm"]
            if f < base - 0.005:
                text = (
                    f"aligns held-out {mod_a} and {mod_b} cells better than the linear baseline "
                    f"(FOSCTTM {f:.3f} vs {base:.3f}), label transfer {lt:.2f}"
                )
            else:
                reason = LIMITS.get(str(name), "")
                base_lt = np.nanmean(
                    [
                        table.loc[BASELINE].get("label_transfer_a_to_b"),
                        table.loc[BASELINE].get("label_transfer_b_to_a"),
                    ]
                )
                labels = (
                    f"but transfers cell types better ({lt:.2f} vs {base_lt:.2f})"
                    if lt > base_lt + 0.02
                    else f"label transfer {lt:.2f}"
                )
                text = (
                    f"does not beat the linear baseline at matching cells here (FOSCTTM "
                    f"{f:.3f} vs {base:.3f}), {labels}" + (f". Why: {reason}" if reason else "")
                )
        out[str(name)] = f"{lead}; {text}" if lead and name != BASELINE else text
    return out


def plot_confusions(results: Sequence[MethodResult], mod_a: str, mod_b: str, path: Path) -> Path:
    """Row-normalised confusion matrices of label transfer, one panel per method."""
    shown = [r for r in results if r.confusion is not None]
    labels = sorted({str(v) for r in shown for v in r.confusion[0]})
    fig, axes = plt.subplots(
        1, len(shown), figsize=(3.6 * len(shown) + 1, 3.8), squeeze=False, constrained_layout=True
    )
    image = None
    for ax, result in zip(axes[0], shown, strict=True):
        true, pred = (np.asarray(x).astype(str) for x in result.confusion)
        table = pd.crosstab(
            pd.Categorical(true, labels), pd.Categorical(pred, labels), dropna=False
        ).to_numpy(dtype=float)
        table = table / np.maximum(table.sum(axis=1, keepdims=True), 1)
        image = ax.imshow(table, vmin=0, vmax=1, cmap="Blues")
        ax.set_title(f"{result.name}: {np.mean(true == pred):.2f} correct", fontsize=10)
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=8)
        ax.set_yticks(range(len(labels)), labels if ax is axes[0][0] else [], fontsize=8)
        ax.set_xlabel(f"label from {mod_a} neighbours")
    axes[0][0].set_ylabel(f"true label ({mod_b} cell)")
    if image is not None:
        fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="fraction of the row")
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_translation(
    results: Sequence[MethodResult],
    measured: Mapping[str, np.ndarray],
    source: str,
    target: str,
    path: Path,
) -> Path | None:
    """Predicted against measured values of a few marker features, a row per model."""
    shown = [r for r in results if r.translation]
    if not shown:
        return None
    features = list(measured)
    fig, axes = plt.subplots(
        len(shown),
        len(features),
        figsize=(2.6 * len(features), 2.5 * len(shown)),
        squeeze=False,
        constrained_layout=True,
    )
    for row, result in zip(axes, shown, strict=True):
        for ax, feature in zip(row, features, strict=True):
            x, y = measured[feature], result.translation[feature]
            ax.scatter(x, y, s=4, alpha=0.5, color="tab:blue", rasterized=True)
            r = np.corrcoef(x, y)[0, 1] if np.std(x) > 0 and np.std(y) > 0 else np.nan
            ax.set_title(f"{result.name}: {feature}  r = {r:.2f}", fontsize=9)
            ax.tick_params(labelsize=7)
        row[0].set_ylabel(f"predicted from {source}", fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel(f"measured {target}", fontsize=8)
    fig.suptitle(
        f"{target} predicted from {source} alone for the held-out cells "
        "(log1p of counts per 10k; each point a cell)",
        fontsize=10,
    )
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path


READING_GUIDE = (
    "Each method learned from the reference cells; the held-out cells (measured in both "
    "modalities, never seen in training) were then embedded from one modality at a time, "
    "as new single-modality data would be. A good integration puts each held-out cell's "
    "{a} embedding next to its own {b} embedding and next to cells of its type.",
    "The table: FOSCTTM is the fraction of cells that sit closer than the true partner "
    "(lower is better; 0.5 is random pairing); label transfer is how often a cell's "
    "{b} embedding gets its type from the 5 nearest {a} embeddings (and back). The best "
    "value of each column is in bold; the first row is the linear CCA baseline every model should "
    "beat.",
    "train_time_s is the training time; peak_rss_mb the largest resident memory of the "
    "demo's process while the method trained and was scored (it includes the data and "
    "libraries loaded before, see 'memory before the methods' above); peak_gpu_mb, on a "
    "GPU, torch's peak allocation.",
    "The UMAPs show every cell: on the left coloured by the modality it was embedded "
    "from (well mixed is good), in the middle by cell type (types separate, each one "
    "island holding both modalities), on the right whether the cell was measured in "
    "both modalities or one.",
    "The confusion matrices show which types are mistaken for which when labels travel "
    "from {a} to {b} cells; the translation plot shows how well each model predicts a "
    "few marker features of {a} from {b} alone.",
)


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"<img src='data:image/png;base64,{data}' style='max-width:100%'>"


def _table_html(table: pd.DataFrame) -> str:
    best = best_rows(table)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    rows = []
    for name, row in table.iterrows():
        cells = []
        for column, value in row.items():
            text = html.escape(format_value(str(column), value))
            if name in best.get(str(column), set()):
                text = f"<b>{text}</b>"
            cells.append(f"<td>{text}</td>")
        rows.append(f"<tr><th>{html.escape(str(name))}</th>{''.join(cells)}</tr>")
    return f"<table><tr><th>method</th>{head}</tr>{''.join(rows)}</table>"


def write_html(path: Path, report: Report) -> Path:
    """Write the report as one self-contained HTML file (figures embedded)."""
    summary, table, results, verdict = report.summary, report.table, report.results, report.verdict
    extra_figures, mod_a, mod_b = report.figures, report.mod_a, report.mod_b
    items = "".join(
        f"<li><b>{html.escape(k)}</b>: {html.escape(str(v))}</li>" for k, v in summary.items()
    )
    guide = "".join(f"<li>{html.escape(t.format(a=mod_a, b=mod_b))}</li>" for t in READING_GUIDE)
    verdicts_html = "".join(
        f"<li><b>{html.escape(n)}</b>: {html.escape(v)}</li>" for n, v in verdict.items()
    )
    umaps = "".join(
        f"<h3>{html.escape(r.name)}</h3>{_image(r.umap_png)}" for r in results if r.umap_png
    )
    extras = "".join(f"<h2>{html.escape(t)}</h2>{_image(p)}" for t, p in extra_figures)
    path.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>scmint demo</title>"
        "<style>body{font-family:sans-serif;max-width:1200px;margin:auto;line-height:1.4}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}"
        "td{text-align:right}</style></head><body><h1>scmint demo report</h1>"
        f"<ul>{items}</ul><h2>How to read this report</h2><ul>{guide}</ul>"
        f"<h2>Verdicts</h2><ul>{verdicts_html}</ul>"
        f"<h2>Scores on the held-out cells</h2>{_table_html(table)}"
        f"{extras}<h2>Embeddings</h2>{umaps}</body></html>"
    )
    return path


def write_markdown(path: Path, report: Report) -> Path:
    """Write the report as Markdown beside its PNG figures."""
    summary, table, results, verdict = report.summary, report.table, report.results, report.verdict
    extra_figures, mod_a, mod_b = report.figures, report.mod_a, report.mod_b
    best = best_rows(table)
    shown = table.copy().astype(object)
    for column in shown.columns:
        for name in shown.index:
            value = table.loc[name, column]
            text = format_value(str(column), value)
            shown.loc[name, column] = f"**{text}**" if name in best.get(column, set()) else text
    lines = ["# scmint demo report", ""]
    lines += [f"- **{k}**: {v}" for k, v in summary.items()]
    lines += ["", "## How to read this report", ""]
    lines += [f"- {t.format(a=mod_a, b=mod_b)}" for t in READING_GUIDE]
    lines += ["", "## Verdicts", ""] + [f"- **{n}**: {v}" for n, v in verdict.items()]
    lines += ["", "## Scores on the held-out cells", "", shown.to_markdown(), ""]
    for title, fig in extra_figures:
        lines += [f"## {title}", "", f"![{title}]({fig.name})", ""]
    lines += ["## Embeddings", ""]
    for r in results:
        lines += [f"### {r.name}", "", f"![{r.name} embedding]({r.umap_png.name})", ""]
    path.write_text("\n".join(lines))
    return path
