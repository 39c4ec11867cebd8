"""Render ``benchmarks/results.csv`` into ``BENCHMARKS.md`` and figures."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from ._datasets import DATASETS

NOTES_START = "<!-- notes:start -->"
NOTES_END = "<!-- notes:end -->"
KNOWN_PEERS = {"cca", "multivi", "totalvi", "glue", "clue_scglue"}
REGENERATE = ".venv/bin/python benchmarks/render.py"

_SCORE_COLS = [
    ("foscttm", "FOSCTTM ↓"),
    ("matching_score", "matching ↑"),
    ("recall_at_10", "recall@10 ↑"),
    ("label_transfer_a_to_b", "LT a→b ↑"),
    ("label_transfer_b_to_a", "LT b→a ↑"),
    ("celltype_asw", "cell-type ASW ↑"),
    ("modality_asw", "modality mixing ASW ↑"),
    ("graph_connectivity", "graph conn. ↑"),
]
_COST_COLS = [
    ("n_epochs", "epochs"),
    ("train_time_s", "train s"),
    ("time_per_epoch_s", "s / epoch"),
    ("inference_time_s", "inference s"),
    ("peak_memory_mb", "peak RSS MB"),
    ("import_memory_mb", "RSS after imports MB"),
    ("device", "device"),
    ("git_commit", "commit"),
    ("timestamp", "run at (UTC)"),
]

#: Translation columns: (column, header template with {a} / {b} the modalities).
_TRANSLATION_COLS = [
    ("translation_feature_corr_a_to_b", "{a}→{b} per-feature r ↑"),
    ("translation_cell_corr_a_to_b", "{a}→{b} per-cell r ↑"),
    ("translation_cell_corr_baseline_a_to_b", "{a}→{b} per-cell r, mean profile"),
    ("translation_feature_corr_b_to_a", "{b}→{a} per-feature r ↑"),
    ("translation_cell_corr_b_to_a", "{b}→{a} per-cell r ↑"),
    ("translation_cell_corr_baseline_b_to_a", "{b}→{a} per-cell r, mean profile"),
    ("translation_time_s", "translate s"),
    ("translation_peak_memory_mb", "peak RSS with translation MB"),
]
TRANSLATION_TEXT = (
    "Translation: each scored cell's other modality predicted from one modality alone "
    "(P1: the query cells; P2: every cell's own half) and compared with that cell's "
    "measured profile, both as `log1p(x / rowsum * 1e4)` "
    "(`scmint.metrics.translation_correlation`): per-feature r is the mean over features "
    "of the Pearson correlation across cells (features constant in the prediction or the "
    "measurement are left out), per-cell r the mean over cells of the correlation across "
    "features. *Mean profile* is the baseline that predicts every cell as the mean "
    "profile of the training cells; its per-feature r is undefined (constant), its "
    "per-cell r is the bar a translation must clear. *knn_10 baseline* (P1) predicts each "
    "query cell as the mean profile of its 10 nearest reference cells in the source "
    "modality (PCA of log-normalised RNA or protein, LSI of peaks, fitted on the "
    "reference; `scmint.metrics.knn_profiles`, `benchmarks/baselines.py`): a translation "
    "model should beat it on both scores. What each method's prediction is: see Methods."
)


def is_peer(method: str) -> bool:
    """Whether ``method`` is a comparison method (registry flag, else a known name)."""
    from ._methods import METHODS

    if method in METHODS:
        return METHODS[method].peer
    return method in KNOWN_PEERS


def latest_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Keep the latest row per (method, dataset, protocol)."""
    df = df.sort_values("timestamp", kind="stable")
    return df.groupby(["method", "dataset", "protocol"], sort=False).tail(1)


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    if isinstance(value, str):
        return value if value and value != "nan" else "–"
    if isinstance(value, int | np.integer):
        return str(int(value))
    v = float(value)
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _group_order(df: pd.DataFrame) -> list[tuple[str, str]]:
    names = list(DATASETS) + sorted(set(df["dataset"]) - set(DATASETS))
    groups = []
    for name in names:
        for proto in sorted(df.loc[df["dataset"] == name, "protocol"].unique()):
            groups.append((name, proto))
    return groups


def _epochs(row: pd.Series) -> str:
    n = row.get("n_epochs")
    if n is None or (isinstance(n, float) and not np.isfinite(n)) or n == "":
        return "– (closed form)"
    try:
        max_epochs = json.loads(row.get("params") or "{}").get("max_epochs")
    except (TypeError, ValueError):
        max_epochs = None
    return f"{int(float(n))} / {max_epochs if max_epochs else 'default'}"


def _method_order(sub: pd.DataFrame) -> pd.DataFrame:
    key = sub["method"].map(lambda m: (0 if not is_peer(m) else 1, m))
    return sub.assign(_k=key).sort_values("_k").drop(columns="_k")


#: Columns of the ratio table: (results column or pair averaged, header).
_RATIO_COLS = [
    (("foscttm",), "FOSCTTM ratio ↓"),
    (("matching_score",), "matching score ratio ↑"),
    (("label_transfer_a_to_b", "label_transfer_b_to_a"), "label transfer ratio ↑"),
    (("train_time_s",), "train time ratio ↓"),
    (("time_per_epoch_s",), "time / epoch ratio ↓"),
    (("peak_memory_mb",), "peak memory ratio ↓"),
]


def _ratio(r: pd.Series, p: pd.Series, cols: tuple[str, ...]) -> str:
    """``mean(r[cols]) / mean(p[cols])`` formatted, or a dash where undefined."""
    try:
        num = float(np.mean([float(r[c]) for c in cols]))
        den = float(np.mean([float(p[c]) for c in cols]))
    except (KeyError, TypeError, ValueError):
        return "–"
    if not (np.isfinite(num) and np.isfinite(den)) or den == 0:
        return "–"
    return _fmt(num / den)


def ratio_rows(latest: pd.DataFrame) -> list[list[str]]:
    """Rows ``scmint / peer`` for every scmint method and peer run on the same split.

    Label transfer is the mean of both directions.
    """
    out = []
    for (name, proto), sub in latest.groupby(["dataset", "protocol"], sort=False):
        mine = sub[~sub["method"].map(is_peer)]
        peers = sub[sub["method"].map(is_peer)]
        for _, r in mine.iterrows():
            for _, p in peers.iterrows():
                cells = [f"{name} {proto}", r["method"], p["method"]]
                cells += [_ratio(r, p, cols) for cols, _ in _RATIO_COLS]
                out.append(cells)
    return out


def make_figures(latest: pd.DataFrame, figures_dir: Path) -> dict[str, Path]:
    """Bar charts of FOSCTTM, label transfer, cost and translation; returns name -> file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures_dir.mkdir(parents=True, exist_ok=True)
    groups = _group_order(latest)
    methods = sorted(latest["method"].unique(), key=lambda m: (is_peer(m), m))
    files = {}

    def grouped(ax, values: dict[tuple[str, str, str], float], ylabel: str, log=False):
        # splits (x groups) and methods (bars) that have a finite value in this chart
        shown = [
            g for g in groups if any(np.isfinite(values.get((*g, m), np.nan)) for m in methods)
        ]
        bars = [m for m in methods if any(np.isfinite(values.get((*g, m), np.nan)) for g in shown)]
        width = 0.8 / max(len(bars), 1)
        x = np.arange(len(shown))
        for i, m in enumerate(bars):
            ys = [values.get((d, p, m), np.nan) for d, p in shown]
            color = f"C{methods.index(m)}"  # one colour per method across charts
            ax.bar(x + (i - (len(bars) - 1) / 2) * width, ys, width, label=m, color=color)
        labels = [textwrap.fill(d.replace("_", " "), 14) + f"\n{p}" for d, p in shown]
        ax.set_xticks(x, labels, fontsize=8)
        ax.set_ylabel(ylabel)
        if log:
            ax.set_yscale("log")
        if bars:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no runs", ha="center", va="center", transform=ax.transAxes)

    def values(col: str, frame: pd.DataFrame = latest) -> dict:
        out = {}
        for _, r in frame.iterrows():
            try:
                out[(r["dataset"], r["protocol"], r["method"])] = float(r[col])
            except (TypeError, ValueError):
                pass
        return out

    fig, ax = plt.subplots(figsize=(max(6, 1.8 * len(groups)), 4))
    grouped(ax, values("foscttm"), "FOSCTTM (lower is better)")
    ax.axhline(0.5, color="grey", ls="--", lw=0.8)
    ax.set_title("Cross-modal matching of query cells embedded one modality at a time")
    fig.tight_layout()
    files["foscttm"] = figures_dir / "foscttm.png"
    fig.savefig(files["foscttm"], dpi=120)
    plt.close(fig)

    lt = latest.assign(
        _lt=(
            pd.to_numeric(latest["label_transfer_a_to_b"], errors="coerce")
            + pd.to_numeric(latest["label_transfer_b_to_a"], errors="coerce")
        )
        / 2
    )
    fig, ax = plt.subplots(figsize=(max(6, 1.8 * len(groups)), 4))
    grouped(ax, values("_lt", lt), "label transfer accuracy (mean of both directions)")
    ax.set_ylim(0, 1)
    fig.tight_layout()
    files["label_transfer"] = figures_dir / "label_transfer.png"
    fig.savefig(files["label_transfer"], dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(2, 1, figsize=(max(6, 1.8 * len(groups)), 7.5))
    grouped(axes[0], values("train_time_s"), "training wall time (s, log)", log=True)
    grouped(axes[1], values("peak_memory_mb"), "peak resident memory (MB)")
    fig.tight_layout()
    files["cost"] = figures_dir / "cost.png"
    fig.savefig(files["cost"], dpi=120)
    plt.close(fig)

    cols = [c for c, _ in _TRANSLATION_COLS[:6]]
    if all(c in latest.columns for c in cols) and _has_translation(latest):
        num = latest[cols].apply(pd.to_numeric, errors="coerce")
        gain = latest.assign(
            _gain_ab=num[cols[1]] - num[cols[2]], _gain_ba=num[cols[4]] - num[cols[5]]
        )
        fig, axes = plt.subplots(2, 2, figsize=(max(9, 3.2 * len(groups)), 7.5))
        for row, (tag, feat, g) in enumerate(
            (("a→b", cols[0], "_gain_ab"), ("b→a", cols[3], "_gain_ba"))
        ):
            grouped(axes[row, 0], values(feat), f"{tag}: per-feature r")
            grouped(axes[row, 1], values(g, gain), f"{tag}: per-cell r − mean-profile r")
            axes[row, 1].axhline(0.0, color="grey", ls="--", lw=0.8)
        fig.suptitle("Translation quality (a = first modality of the dataset)")
        fig.tight_layout()
        files["translation"] = figures_dir / "translation.png"
        fig.savefig(files["translation"], dpi=120)
        plt.close(fig)
    return files


def _has_translation(sub: pd.DataFrame) -> bool:
    """Whether any row of ``sub`` has a translation score."""
    cols = [c for c, _ in _TRANSLATION_COLS[:6] if c in sub.columns]
    if not cols:
        return False
    values = sub[cols].apply(pd.to_numeric, errors="coerce")
    return bool(np.isfinite(values.to_numpy(dtype=float)).any())


def translation_table(sub: pd.DataFrame, baselines: pd.DataFrame | None = None) -> list[str]:
    """Markdown lines of the translation table of one split (empty if none translated).

    Parameters
    ----------
    sub
        Latest rows of one dataset / protocol.
    baselines
        Rows of ``benchmarks/baselines.csv`` (``benchmarks/baselines.py``); those of this
        split are shown as rows named after their ``baseline`` (e.g. ``knn_10``).

    Returns
    -------
    list of str
        A heading, the table and a blank line; methods without translation are left out.
    """
    if not _has_translation(sub):
        return []
    a, _, b = str(sub.iloc[0].get("modalities", "a+b")).partition("+")
    a, b = a or "a", b or "b"
    rows = []
    for _, r in sub.iterrows():
        if not _has_translation(r.to_frame().T):
            continue
        rows.append([r["method"]] + [_fmt(r.get(c)) for c, _ in _TRANSLATION_COLS])
    if baselines is not None and not baselines.empty:
        first = sub.iloc[0]
        mine = baselines[
            (baselines["dataset"] == first["dataset"])
            & (baselines["protocol"] == first["protocol"])
        ]
        for _, r in mine.iterrows():
            rows.append(
                [f"*{r['baseline']} baseline*"]
                + [_fmt(r.get(c)) if c in r.index else "–" for c, _ in _TRANSLATION_COLS]
            )
    header = ["method"] + [h.format(a=a, b=b) for _, h in _TRANSLATION_COLS]
    return [
        "Translation (Pearson r in log1p-normalised space; see above):",
        "",
        _table(header, rows),
        "",
    ]


def _commands(latest: pd.DataFrame) -> list[str]:
    cmds = []
    for _, r in latest.iterrows():
        cmd = (
            f".venv/bin/python benchmarks/run.py --method {r['method']} "
            f"--dataset {r['dataset']} --protocol {r['protocol']}"
        )
        try:
            max_epochs = json.loads(r.get("params") or "{}").get("max_epochs")
        except (TypeError, ValueError):
            max_epochs = None
        if max_epochs:
            cmd += f" --max-epochs {max_epochs}"
        cmds.append(cmd)
    return cmds


def _method_notes(methods: list[str]) -> str:
    from ._methods import METHODS

    parts = []
    for m in methods:
        if m in METHODS and METHODS[m].notes:
            parts.append(f"- **{m}**: " + " ".join(METHODS[m].notes.split()))
    return "\n".join(parts)


def render_markdown(
    df: pd.DataFrame,
    figures: dict[str, Path] | None = None,
    notes: str | None = None,
    base: Path | None = None,
    ablations: pd.DataFrame | None = None,
    seeds: pd.DataFrame | None = None,
    baselines: pd.DataFrame | None = None,
) -> str:
    """Markdown of the benchmark results.

    Parameters
    ----------
    df
        Results rows (all of them; the latest per method / dataset / protocol is shown).
    figures
        Name -> figure file to embed.
    notes
        Hand-written notes kept between the notes markers.
    base
        Directory of the markdown file (figure links are made relative to it).
    ablations
        Rows of ablation runs (``benchmarks/ablations.csv``: a results row plus a
        ``variant`` column); the latest row per variant is shown.
    seeds
        Rows of the seed sweep (``benchmarks/seeds.csv``, see :func:`seeds_section`).
    baselines
        Translation baselines per split (``benchmarks/baselines.csv``, see
        :func:`translation_table`).

    Returns
    -------
    str
        The markdown document.
    """
    latest = latest_rows(df)
    out = [
        "# scmint benchmarks",
        "",
        "<!-- Generated by benchmarks/render.py from benchmarks/results.csv; edit only the "
        "notes section, the rest is overwritten. -->",
        "",
        f"Regenerate this file: `{REGENERATE}` (reads `benchmarks/results.csv`, writes this "
        "file and `benchmarks/figures/*.png`). Add a row: `.venv/bin/python benchmarks/run.py "
        "--method M --dataset D --protocol P [--max-epochs N]` (see `benchmarks/README.md`).",
        "",
        "Protocols (the project's shared benchmark protocol): **P1** reference → query: "
        "80/20 split with `numpy.random.default_rng(0).permutation(n_cells)`, train on the "
        "reference, embed every query cell one modality at a time (nothing from its other "
        "modality), score the query cells. **P2** unpaired: every cell becomes two unpaired "
        "cells with unrelated names; train on all, the true pairing is used only for scoring. "
        "**P3** mosaic: `pbmc_mosaic` as stored; label transfer and mixing between RNA-only "
        "and ADT-only cells. FOSCTTM is the mean of both directions (0.5 = random). "
        "LT = 5-NN label-transfer accuracy, a = first modality of the dataset "
        "(RNA), b = second. Peak RSS is the peak resident memory of the process that loaded "
        "the data and ran the method. Only the latest run per method / dataset / protocol is "
        "shown; every run is in `benchmarks/results.csv`.",
        "",
        TRANSLATION_TEXT,
        "",
    ]
    for name, proto in _group_order(latest):
        sub = _method_order(latest[(latest["dataset"] == name) & (latest["protocol"] == proto)])
        first = sub.iloc[0]
        out += [
            f"## {name} — {proto}",
            "",
            f"{int(first['n_cells'])} cells ({first.get('modalities', '')}), "
            f"{int(first['n_train'])} training cells, {int(first['n_query'])} scored profiles.",
            "",
            _table(
                ["method"] + [h for _, h in _SCORE_COLS],
                [[r["method"]] + [_fmt(r[c]) for c, _ in _SCORE_COLS] for _, r in sub.iterrows()],
            ),
            "",
            _table(
                ["method"] + [h for _, h in _COST_COLS],
                [
                    [r["method"]]
                    + [_epochs(r) if c == "n_epochs" else _fmt(r[c], 2) for c, _ in _COST_COLS]
                    for _, r in sub.iterrows()
                ],
            ),
            "",
        ]
        out += translation_table(sub, baselines)
    ratios = ratio_rows(latest)
    out += ["## scmint / peer ratios", ""]
    if ratios:
        out += [
            "Ratios of the latest runs on the same split: scmint / peer. ↓: below 1 scmint is "
            "better or cheaper; ↑: above 1 scmint is better (label transfer: mean of both "
            "directions). Peers and scmint models of one split are run back to back, so "
            "their times are taken under similar load.",
            "",
            _table(["split", "scmint model", "peer"] + [h for _, h in _RATIO_COLS], ratios),
            "",
        ]
    else:
        out += ["No scmint model has results yet; ratio columns appear once one has.", ""]
    if figures:
        out += ["## Figures", ""]
        for key, path in figures.items():
            rel = os.path.relpath(path, base) if base is not None else str(path)
            out += [f"![{key}]({Path(rel).as_posix()})", ""]
    if ablations is not None and not ablations.empty:
        out += ablation_section(ablations)
    if seeds is not None and not seeds.empty:
        out += seeds_section(seeds)
    out += ["## Methods", "", _method_notes(sorted(latest["method"].unique())), ""]
    out += ["## Commands of the runs shown", "", "```bash"] + _commands(latest) + ["```", ""]
    out += [
        "## Notes",
        "",
        NOTES_START,
        (notes or "(none)").strip("\n"),
        NOTES_END,
        "",
    ]
    return "\n".join(out)


_ABLATION_COLS = [c for c in _SCORE_COLS if c[0] != "matching_score"] + [
    ("n_epochs", "epochs"),
    ("train_time_s", "train s"),
]


def _params(row: pd.Series) -> dict:
    return json.loads(row["params"]) if isinstance(row.get("params"), str) else {}


def _seed_mean(values: pd.Series) -> str:
    """One run: its value; several seeds: ``mean ± sd``."""
    values = pd.to_numeric(values, errors="coerce").dropna()
    if len(values) < 2:
        return _fmt(values.iloc[0] if len(values) else None)
    return f"{_fmt(values.mean())} ± {_fmt(values.std())}"


def ablation_section(ablations: pd.DataFrame) -> list[str]:
    """Markdown lines: one table per (method, dataset, protocol), one row per variant.

    The latest run per variant and seed (``params["seed"]``); a variant run with several
    seeds shows ``mean ± sd`` over them.
    """
    df = ablations.sort_values("timestamp", kind="stable")
    df = df.assign(_seed=[_params(r).get("seed", 0) for _, r in df.iterrows()])
    df = df.groupby(["method", "dataset", "protocol", "variant", "_seed"], sort=False).tail(1)
    out = [
        "## Ablations",
        "",
        "Each row is one part of the model switched off, trained on the same split "
        "(params: the method's keyword arguments); one run per seed, `mean ± sd` where "
        "several seeds ran. Regenerate: `.venv/bin/python benchmarks/ablation.py --method M "
        "--dataset D --protocol P [--seed S]`.",
        "",
    ]
    for (method, dataset, protocol), sub in df.groupby(
        ["method", "dataset", "protocol"], sort=False
    ):
        out += [f"### {method} on {dataset} — {protocol}", ""]
        rows = []
        for variant, runs in sub.groupby("variant", sort=False):
            last = runs.iloc[-1]
            switches = {
                k: v
                for k, v in _params(last).items()
                if k not in ("max_epochs", "seed", "use_labels", "use_batch")
            }
            cells = [str(variant), f"`{json.dumps(switches)}`", str(len(runs))]
            for c, _ in _ABLATION_COLS:
                if c == "n_epochs":
                    cells.append(_epochs(last) if len(runs) == 1 else _epoch_range(runs))
                elif c == "train_time_s":
                    cells.append(_fmt(pd.to_numeric(runs[c], errors="coerce").mean()))
                else:
                    cells.append(_seed_mean(runs[c]))
            rows.append(cells)
        header = ["variant", "params", "seeds"] + [h for _, h in _ABLATION_COLS]
        out += [_table(header, rows), ""]
    return out


def _epoch_range(runs: pd.DataFrame) -> str:
    """``lo-hi / max`` epochs over several runs."""
    n = pd.to_numeric(runs["n_epochs"], errors="coerce").dropna().astype(int)
    max_epochs = _params(runs.iloc[-1]).get("max_epochs")
    span = f"{n.min()}" if n.min() == n.max() else f"{n.min()}-{n.max()}"
    return f"{span} / {max_epochs if max_epochs else 'default'}"


SEEDS_COMMAND = "OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/python benchmarks/seeds.py"


def seeds_section(seeds: pd.DataFrame) -> list[str]:
    """Markdown lines: FOSCTTM over seeds per (method, dataset, protocol).

    Parameters
    ----------
    seeds
        Rows of ``benchmarks/seeds.csv`` (``method``, ``dataset``, ``protocol``,
        ``seed``, ``foscttm``, ``epochs``, ``time``, ``max_epochs``); the latest row per
        seed is used.

    Returns
    -------
    list of str
        The section's lines.
    """
    df = seeds.sort_values("timestamp", kind="stable") if "timestamp" in seeds else seeds
    df = df.groupby(["method", "dataset", "protocol", "seed"], sort=False).tail(1)
    rows = []
    for (method, dataset, protocol), sub in df.groupby(
        ["method", "dataset", "protocol"], sort=False
    ):
        f = sub["foscttm"].astype(float)
        ep = sub["epochs"].astype(float)
        cap = sub["max_epochs"].iloc[-1] if "max_epochs" in sub else np.nan
        budget = "default" if pd.isna(cap) or cap == "" else str(int(float(cap)))
        run = f"{int(ep.min())}" if ep.min() == ep.max() else f"{int(ep.min())}-{int(ep.max())}"
        rows.append(
            [
                method,
                dataset,
                protocol,
                ", ".join(str(int(x)) for x in sub["seed"]),
                f"{run} / {budget}",
                _fmt(f.mean()),
                _fmt(f.std(ddof=1) if len(f) > 1 else np.nan),
                _fmt(f.min()),
                _fmt(f.max()),
                _fmt(f.max() / f.min() if f.min() > 0 else np.nan, 2),
                _fmt(sub["time"].astype(float).mean(), 1),
            ]
        )
    header = [
        "method",
        "dataset",
        "protocol",
        "seeds",
        "epochs run / max",
        "FOSCTTM mean",
        "sd",
        "min",
        "max",
        "max / min",
        "train s (mean)",
    ]
    return [
        "## Seed stability",
        "",
        "FOSCTTM of the same split trained with different seeds (`scvi.settings.seed`; "
        "the split is fixed), one run per seed through the harness (own process, one "
        "CPU thread). Epochs: run / the budget given as `max_epochs` (models with early "
        "stopping may stop sooner; `default`: the model's own). The latest run per seed "
        "is shown; every run is in `benchmarks/seeds.csv`. "
        f"Regenerate: `{SEEDS_COMMAND}`, then `{REGENERATE}`.",
        "",
        _table(header, rows),
        "",
    ]


def _existing_notes(path: Path) -> str | None:
    if not path.exists():
        return None
    text = path.read_text()
    if NOTES_START in text and NOTES_END in text:
        return text.split(NOTES_START, 1)[1].split(NOTES_END, 1)[0].strip("\n")
    return None


def render(
    results: str | Path,
    output: str | Path,
    figures_dir: str | Path | None = None,
    ablations: str | Path | None = None,
    seeds: str | Path | None = None,
    baselines: str | Path | None = None,
) -> str:
    """Render a results CSV into a markdown file (and figures).

    Parameters
    ----------
    results
        The CSV written by :func:`~harness.run_benchmark`.
    output
        Markdown file to write. Text between ``<!-- notes:start -->`` and
        ``<!-- notes:end -->`` in an existing file is kept.
    figures_dir
        Where to write the PNG figures; ``None`` for no figures.
    ablations
        CSV written by ``benchmarks/ablation.py`` (rows with a ``variant`` column);
        ``None`` or a missing file: no ablation section.
    seeds
        CSV written by ``benchmarks/seeds.py``; ``None`` or a missing file: no seed
        stability section.
    baselines
        CSV written by ``benchmarks/baselines.py``; ``None`` or a missing file: no
        baseline rows in the translation tables.

    Returns
    -------
    str
        The markdown written.
    """
    output = Path(output)
    df = pd.read_csv(results)
    if df.empty:
        raise ValueError(f"{results} has no rows.")
    figures = None
    if figures_dir is not None:
        figures = make_figures(latest_rows(df), Path(figures_dir))
    abl = None
    if ablations is not None and Path(ablations).exists():
        abl = pd.read_csv(ablations)
    sd = pd.read_csv(seeds) if seeds is not None and Path(seeds).exists() else None
    base_rows = None
    if baselines is not None and Path(baselines).exists():
        base_rows = pd.read_csv(baselines)
    text = render_markdown(
        df,
        figures,
        notes=_existing_notes(output),
        base=output.parent,
        ablations=abl,
        seeds=sd,
        baselines=base_rows,
    )
    output.write_text(text)
    return text
