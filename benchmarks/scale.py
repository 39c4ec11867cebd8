"""Scale: seconds per epoch, cells / s and peak memory against the number of cells.

Each model and MULTIVI trains on a shared dataset tiled to several sizes (SNARE-seq P1
cells, 1.7k genes + 25.7k peaks: x1 = 10.3k cells, x10 = 103k, x100 = 1.03M), every run in
its own process so that its peak resident memory (``wait4``'s ``ru_maxrss``: data,
libraries and training) is its own. A run is skipped at the next size once a method's
run at this size took longer than ``--budget-s``. Training uses the pieces of
``gpu_speed.py`` (same settings: every cell trains, MINNET with
``distance_cutoff="auto"``); the epoch time is that of the last epoch.

With ``--data disk`` the tiled, padded dataset is first written to ``--files`` (by a
separate process, streaming: one copy of the untiled data in memory, tiles appended to
the file's sparse matrices) and the model trains from it read with ``backed=True``
(:mod:`scmint.data._backed`); the row's ``data`` column says which. ``--train-fraction``
stops each epoch after that share of its minibatches (for 1M cells on a CPU): the row
keeps the measured seconds and reports ``epoch_s`` scaled to the whole epoch.

Run from the repository root; results go to ``<out>/scale.csv``, ``scale.md`` and
``scale.png`` (log-log: seconds per epoch and peak RSS against cells)::

    python benchmarks/scale.py --tiles 1,10 --out scale                 # CPU sitting
    python benchmarks/scale.py --tiles 1,10 --methods clue --append --out scale  # re-measure
    python benchmarks/scale.py --tiles 1,10,100 --out scale_gpu         # on a GPU
    python benchmarks/scale.py --tiles 1 --max-cells 600 --epochs 1     # smoke test
    python benchmarks/scale.py --tiles 1,10 --methods clue --data disk --append --out scale
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

METHODS = ("multivi", "minnet", "clue", "sccross", "conaae")


def tiled_file(args: argparse.Namespace, tile: int) -> Path:
    """Where the padded dataset tiled ``tile`` times is written for ``--data disk``."""
    cells = "" if args.max_cells is None else f"_max{args.max_cells}"
    peaks = "" if args.peak_copies == 1 else f"_peaks{args.peak_copies}"
    return Path(args.files) / f"{args.dataset}{cells}{peaks}_x{tile}.h5mu"


def write_tiled(
    dataset: str, tile: int, max_cells: int | None, path: Path, peak_copies: int = 1
) -> None:
    """Write the padded dataset tiled ``tile`` times, streaming the tiles into the file.

    One untiled copy is padded and written (X and obs only); each further tile is
    appended to every modality's sparse X on disk, then the obs tables and mudata's
    obs maps are rewritten for all cells: memory stays that of one copy.
    ``peak_copies``: the ATAC matrix side by side with itself that many times (SNARE-seq
    x 2: 51.5k peaks at SNARE-seq's density).
    """
    import anndata as ad
    import h5py
    import mudata as md
    import numpy as np
    from anndata.io import sparse_dataset, write_elem
    from scipy import sparse

    from gpu_speed import tiled
    from harness import dataset_info
    from scmint.data import pad_mudata, write_h5mu

    info = dataset_info(dataset)
    modalities = list(info["modalities"])
    padded = pad_mudata(tiled(dataset, 1, max_cells), modalities=modalities)

    def matrix(m):
        x = sparse.csr_matrix(padded[m].X, dtype=np.float32)
        copies = peak_copies if info["kinds"][m] == "atac" else 1
        return x if copies == 1 else sparse.hstack([x] * copies, format="csr")

    base = md.MuData({m: ad.AnnData(X=matrix(m), obs=padded[m].obs) for m in modalities})
    base.obs = padded.obs.copy()
    base.uns.update(padded.uns)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    write_h5mu(base, tmp)
    names = base.obs_names

    def repeat(obs):
        out = pd.concat([obs] * tile)
        out.index = pd.Index([f"{n}-{k}" for k in range(tile) for n in names], dtype=object)
        return out

    with h5py.File(tmp, "r+") as f:
        for m in modalities:
            x = sparse_dataset(f[f"mod/{m}/X"])
            for _ in range(tile - 1):
                x.append(base[m].X)
            write_elem(f[f"mod/{m}"], "obs", repeat(base[m].obs))
            write_elem(f["obsmap"], m, np.arange(1, tile * base.n_obs + 1, dtype=np.int64))
        write_elem(f, "obs", repeat(base.obs))
        for key in list(f.get("obsm", {})):  # mudata's per-cell arrays
            write_elem(f["obsm"], key, np.concatenate([f[f"obsm/{key}"][()]] * tile))
    tmp.rename(path)


def run_one(
    method: str,
    dataset: str,
    tile: int,
    max_cells: int | None,
    epochs: int,
    path: Path | None = None,
    train_fraction: float = 1.0,
) -> dict:
    """Train ``method`` on the tiled dataset in this process; the row without memory.

    ``path``: train from this file, read with ``backed=True``, instead of from memory.
    """
    import scvi
    import torch

    from gpu_speed import EpochTimer, tiled, train_multivi, train_scmint
    from harness import dataset_info
    from scmint.data import read_h5mu

    info = dataset_info(dataset)
    t0 = time.perf_counter()
    mdata = tiled(dataset, tile, max_cells) if path is None else read_h5mu(path, backed=True)
    load = time.perf_counter() - t0
    scvi.settings.seed = 0
    timer = EpochTimer()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    if method == "multivi":
        build, trained = train_multivi(mdata, info, epochs, timer), mdata.n_obs
    else:
        build, trained = train_scmint(method, mdata, info, epochs, timer, train_fraction)
    start, end = timer.epochs[-1]
    epoch = (end - start) / train_fraction
    return {
        "method": method,
        "data": "memory" if path is None else "disk",
        "cells": mdata.n_obs,
        "train_cells": trained,  # MINNET from disk: a subsample (ON_DISK_FIT_CELLS)
        "features": sum(a.n_vars for a in mdata.mod.values()),
        "load_s": round(load, 1),
        "build_s": round(build, 1),
        "epoch_fraction": train_fraction,
        "measured_s": round(end - start, 2),
        "epoch_s": round(epoch, 2),
        "cells_per_s": round(trained / epoch),
        "gpu_peak_mib": round(torch.cuda.max_memory_allocated() / 2**20)
        if torch.cuda.is_available()
        else None,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "threads": torch.get_num_threads(),
    }


def run_in_child(args: argparse.Namespace, method: str, tile: int) -> dict:
    """One run in a child process: its row plus its peak RSS and wall time."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        method,
        "--dataset",
        args.dataset,
        "--tiles",
        str(tile),
        "--epochs",
        str(args.epochs),
    ]
    if args.max_cells is not None:
        command += ["--max-cells", str(args.max_cells)]
    if args.data == "disk":
        command += ["--data", "disk", "--files", args.files]
        command += ["--peak-copies", str(args.peak_copies)]
        command += ["--train-fraction", str(args.train_fraction)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    rows = [line for line in out.splitlines() if line.startswith("ROW ")]
    failed = {"method": method, "data": args.data, "error": out[-300:]}
    row = json.loads(rows[-1][4:]) if rows else failed
    row.update(
        tile=tile,
        peak_copies=args.peak_copies,
        wall_s=round(wall, 1),
        peak_rss_mb=round(usage.ru_maxrss / 1024),  # kB on Linux
        returncode=proc.returncode,
    )
    return row


def plot(table: pd.DataFrame, path: Path) -> None:
    """Log-log panels of seconds per epoch and peak RSS against cells, one line per method."""
    import matplotlib

    matplotlib.use("Agg")  # a script, not the library: no display
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4), layout="constrained")
    table = table.assign(data=table.get("data", pd.Series("memory", index=table.index)))
    table["data"] = table["data"].fillna("memory")
    copies = table.get("peak_copies", pd.Series(1, index=table.index))
    table["peak_copies"] = copies.fillna(1).astype(int)
    methods = sorted(table["method"].unique())
    colors = dict(zip(methods, plt.get_cmap("tab10").colors[: len(methods)], strict=True))
    groups = table.dropna(subset=["epoch_s"]).groupby(["method", "data", "peak_copies"])
    for (method, data, n_copies), rows in groups:
        rows = rows.sort_values("cells")
        # dashed: trained from a backed file; squares: the peaks repeated
        style = ("s" if n_copies > 1 else "o") + ("--" if data == "disk" else "-")
        label = f"{method} (from disk)" if data == "disk" else method
        if n_copies > 1:
            label += f", peaks x{n_copies}"
        for ax, y in zip(axes, (rows.epoch_s, rows.peak_rss_mb / 1024), strict=True):
            ax.plot(rows.cells, y, style, color=colors[method], label=label)
    for ax, label in zip(axes, ("seconds per epoch", "peak RSS (GB)"), strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("cells")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=8)
    fig.savefig(path, dpi=120)


def _merged(earlier: pd.DataFrame, now: pd.DataFrame) -> pd.DataFrame:
    """Earlier rows whose (method, tile) was not run now, then this sitting's rows."""
    if earlier.empty:
        return now
    earlier = earlier.copy()
    if "data" not in earlier:
        earlier["data"] = "memory"  # rows from before on-disk runs
    earlier["data"] = earlier["data"].fillna("memory")
    for frame in (earlier, now):  # rows from before --peak-copies: one copy
        if "peak_copies" not in frame:
            frame["peak_copies"] = 1
        frame["peak_copies"] = frame["peak_copies"].fillna(1).astype(int)
    key = ["method", "tile", "data", "peak_copies"]
    done = set(map(tuple, now[key].to_numpy()))
    keep = [tuple(k) not in done for k in earlier[key].to_numpy()]
    return pd.concat([earlier[keep], now], ignore_index=True)


def _git_commit() -> str:
    """Short commit of the working tree (``+dirty`` with local changes), or ``""``."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "src"], capture_output=True, text=True
        )
        return head + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return ""


def main() -> None:  # noqa: D103
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="snare_mouse_cortex")
    parser.add_argument("--tiles", default="1,10", help="tile factors, comma-separated")
    parser.add_argument("--max-cells", type=int, default=None, help="subsample before tiling")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--budget-s", type=float, default=600.0)
    parser.add_argument("--out", default="scale")
    parser.add_argument(
        "--append",
        action="store_true",
        help="keep the rows already in <out>/scale.csv, replacing the (method, tile) pairs run now",
    )
    parser.add_argument(
        "--data", choices=("memory", "disk"), default="memory", help="train from memory or disk"
    )
    parser.add_argument(
        "--files", default="/tmp/scmint_scale", help="folder of the tiled files (--data disk)"
    )
    parser.add_argument(
        "--train-fraction", type=float, default=1.0, help="share of each epoch's minibatches"
    )
    parser.add_argument(
        "--peak-copies",
        type=int,
        default=1,
        help="--data disk: the peaks side by side this many times (2: 51.5k SNARE-seq peaks)",
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--write-file", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    tiles = [int(t) for t in args.tiles.split(",")]
    if args.write_file:
        write_tiled(
            args.dataset, tiles[0], args.max_cells, tiled_file(args, tiles[0]), args.peak_copies
        )
        return
    if args.child is not None:
        path = tiled_file(args, tiles[0]) if args.data == "disk" else None
        row = run_one(
            args.child,
            args.dataset,
            tiles[0],
            args.max_cells,
            args.epochs,
            path,
            args.train_fraction,
        )
        print("ROW " + json.dumps(row), flush=True)
        return

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    earlier = pd.DataFrame()
    if args.append and (out / "scale.csv").exists():
        earlier = pd.read_csv(out / "scale.csv")
    commit = _git_commit()
    rows, over_budget = [], set()
    for tile in tiles:
        if args.data == "disk" and not tiled_file(args, tile).exists():
            print(f"== writing {tiled_file(args, tile)}", flush=True)
            t0 = time.perf_counter()
            command = [sys.executable, str(Path(__file__).resolve()), "--write-file"]
            command += ["--dataset", args.dataset, "--tiles", str(tile)]
            command += ["--files", args.files, "--peak-copies", str(args.peak_copies)]
            if args.max_cells is not None:
                command += ["--max-cells", str(args.max_cells)]
            subprocess.run(command, check=True)
            print(f"   written in {time.perf_counter() - t0:.0f} s", flush=True)
        for method in args.methods.split(","):
            if method in over_budget:
                print(f"== {method} x{tile}: skipped (over budget at a smaller size)", flush=True)
                continue
            print(f"== {method} x{tile}", flush=True)
            row = run_in_child(args, method, tile)
            row.update(commit=commit, run_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            print(f"   {row}", flush=True)
            rows.append(row)
            if row["wall_s"] > args.budget_s or row.get("returncode", 1) != 0:
                over_budget.add(method)
            table = _merged(earlier, pd.DataFrame(rows))
            table.to_csv(out / "scale.csv", index=False)
    table = _merged(earlier, pd.DataFrame(rows))
    (out / "scale.md").write_text(table.to_markdown(index=False) + "\n")
    if "epoch_s" in table:
        plot(table, out / "scale.png")
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
