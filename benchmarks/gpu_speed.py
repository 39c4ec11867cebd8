"""Training speed on a GPU at ~100k cells: cells / s and GPU busy time per model.

The speed issue's GPU check, prepared to run in one go on a machine with an accelerator
(it also runs on a CPU, small, to test the script). A shared dataset is tiled ``--tile``
times (SNARE-seq x 10: 103k cells, 1.7k genes + 25.7k peaks), each model and MULTIVI
trains ``--epochs`` epochs on every tiled cell, and for the last epoch (warm: the CUDA
kernels and the device-resident data are in place) the script reports seconds, cells / s,
the fraction of ``nvidia-smi`` samples (every 200 ms) in that epoch with the GPU busy,
and the peak GPU memory. Model-building time (input transforms, priors, MINNET's graph) is
reported apart. MINNET runs with ``distance_cutoff="auto"`` (exact shortest paths from
every one of 80k cells would take hours; the half-ball index serves the capped ones).

Run from the repository root (results: ``<out>/gpu_speed.csv`` and ``.md``)::

    python benchmarks/gpu_speed.py --tile 10 --out gpu_speed            # on the GPU
    python benchmarks/gpu_speed.py --tile 1 --max-cells 1500 --epochs 1  # CPU smoke test

``benchmarks/gpu_speed.sh`` wraps it for the device machine (wheels, data, nvidia-smi).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
from lightning.pytorch.callbacks import Callback

sys.path.insert(0, str(Path(__file__).resolve().parent))

METHODS = ("multivi", "clue", "conaae", "sccross", "minnet")


class EpochTimer(Callback):
    """Wall-clock (``time.time``) start and end of every training epoch."""

    def __init__(self) -> None:
        self.epochs: list[tuple[float, float]] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:  # noqa: D102
        _sync()
        self._start = time.time()

    def on_train_epoch_end(self, trainer, pl_module) -> None:  # noqa: D102
        _sync()
        self.epochs.append((self._start, time.time()))
        print(f"  epoch {len(self.epochs)}: {self.epochs[-1][1] - self._start:.2f} s", flush=True)


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def tiled(name: str, tile: int, max_cells: int | None) -> md.MuData:
    """The dataset's cells repeated ``tile`` times (unique names), optionally subsampled."""
    from harness import load_dataset

    mdata = load_dataset(name)
    if max_cells is not None and mdata.n_obs > max_cells:
        keep = np.random.default_rng(0).choice(mdata.n_obs, max_cells, replace=False)
        mdata = mdata[np.sort(keep)].copy()
    mods = {}
    for m, a in mdata.mod.items():
        copies = []
        for k in range(tile):
            c = a.copy()
            c.obs_names = [f"{n}-{k}" for n in a.obs_names]
            copies.append(c)
        mods[m] = ad.concat(copies, merge="same") if tile > 1 else copies[0]
    out = md.MuData(mods)
    out.update()
    return out


def train_scmint(
    name: str,
    mdata: md.MuData,
    info: dict,
    epochs: int,
    timer: EpochTimer,
    train_fraction: float = 1.0,
) -> tuple[float, int]:
    """Build and train one scmint model on every cell; the build time and cells trained.

    A MuData read with ``backed=True`` must be padded already (it is trained from disk);
    ``train_fraction`` < 1 stops each epoch after that share of its minibatches. The
    cells an epoch trains on are every cell, except for MINNET (its paired, labelled
    training cells; from disk at most ``ON_DISK_FIT_CELLS`` of them).
    """
    import scmint.model
    from scmint.data import pad_mudata

    modalities = list(info["modalities"])
    padded = mdata if mdata.isbacked else pad_mudata(mdata, modalities=modalities)
    cls = getattr(scmint.model, name.upper())
    cls.setup_mudata(
        padded,
        modalities=modalities,
        labels_key=None if name == "clue" else info["labels_key"],  # as the benchmark rows
        batch_key=info["batch_key"],
    )
    kwargs = {"distance_cutoff": "auto"} if name == "minnet" else {}
    t0 = time.perf_counter()
    net = cls(padded, **kwargs)
    build = time.perf_counter() - t0
    train = {
        "max_epochs": epochs,
        "train_size": 1.0,  # every cell trains: cells / s counts them all
        "early_stopping": False,
        "callbacks": [timer],
        "enable_progress_bar": False,
    }
    if train_fraction < 1.0:
        train["limit_train_batches"] = train_fraction
    if name == "sccross":
        train.update(pretrain_epochs=epochs, reduce_lr_on_plateau=False)
    if name == "clue":
        train.update(reduce_lr_on_plateau=False, restore_best=False)
    net.train(**train)
    return build, len(net._pool) if name == "minnet" else padded.n_obs


def train_multivi(mdata: md.MuData, info: dict, epochs: int, timer: EpochTimer) -> float:
    """MULTIVI on every cell (paired), batch = the dataset's batch."""
    import scvi

    rna, atac = info["modalities"]
    train = md.MuData({rna: mdata.mod[rna], atac: mdata.mod[atac]})
    batch = info["batch_key"]
    if batch is not None and batch in mdata.mod[rna].obs:
        train.obs["_batch"] = pd.Categorical(mdata.mod[rna].obs[batch].astype(str).to_numpy())
    else:
        train.obs["_batch"] = pd.Categorical(["0"] * train.n_obs)
    t0 = time.perf_counter()
    scvi.model.MULTIVI.setup_mudata(
        train, batch_key="_batch", modalities={"rna_layer": rna, "atac_layer": atac}
    )
    model = scvi.model.MULTIVI(train)
    build = time.perf_counter() - t0
    model.train(
        max_epochs=epochs,
        train_size=1.0,
        early_stopping=False,
        callbacks=[timer],
        enable_progress_bar=False,
    )
    return build


class SmiSampler:
    """``nvidia-smi`` utilisation and memory every 200 ms into a CSV (no-op without one)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.proc = None
        try:
            self.file = open(path, "w")  # noqa: SIM115 - closed in stop()
            self.proc = subprocess.Popen(
                [
                    "nvidia-smi",
                    "--query-gpu=timestamp,utilization.gpu,memory.used",
                    "--format=csv,noheader,nounits",
                    "-lms",
                    "200",
                ],
                stdout=self.file,
                stderr=subprocess.DEVNULL,
            )
        except (FileNotFoundError, OSError):
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait()
            self.file.close()

    def samples(self) -> pd.DataFrame:
        if self.proc is None or not self.path.exists():
            return pd.DataFrame(columns=["t", "util", "mem_mib"])
        rows = []
        for line in self.path.read_text().splitlines():
            parts = [p.strip() for p in line.split(",")]
            if len(parts) != 3:
                continue
            try:
                t = datetime.strptime(parts[0], "%Y/%m/%d %H:%M:%S.%f").timestamp()
                rows.append((t, float(parts[1]), float(parts[2])))
            except ValueError:
                continue
        return pd.DataFrame(rows, columns=["t", "util", "mem_mib"])


def main() -> None:  # noqa: D103
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="snare_mouse_cortex")
    parser.add_argument("--tile", type=int, default=10)
    parser.add_argument("--max-cells", type=int, default=None, help="subsample before tiling")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--out", default="gpu_speed")
    args = parser.parse_args()

    import scvi
    import torch

    from harness import dataset_info

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    info = dataset_info(args.dataset)
    mdata = tiled(args.dataset, args.tile, args.max_cells)
    print(f"{args.dataset} x {args.tile}: {mdata.n_obs} cells", flush=True)
    smi = SmiSampler(out / "nvidia_smi.csv")
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    rows = []
    for name in args.methods.split(","):
        print(f"== {name}", flush=True)
        scvi.settings.seed = 0
        timer = EpochTimer()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        try:
            if name == "multivi":
                build = train_multivi(mdata, info, args.epochs, timer)
            else:
                build, _ = train_scmint(name, mdata, info, args.epochs, timer)
            error = ""
        except Exception as e:  # noqa: BLE001 - one failing model must not stop the others
            build, error = float("nan"), f"{type(e).__name__}: {e}"[:300]
            print("  failed:", error, flush=True)
        total = time.perf_counter() - t0
        start, end = timer.epochs[-1] if timer.epochs else (np.nan, np.nan)
        rows.append(
            {
                "method": name,
                "cells": mdata.n_obs,
                "build_s": round(build, 2),
                "total_s": round(total, 1),
                "epochs": len(timer.epochs),
                "last_epoch_s": round(end - start, 2),
                "cells_per_s": round(mdata.n_obs / (end - start)) if timer.epochs else np.nan,
                "gpu_peak_mib": round(torch.cuda.max_memory_allocated() / 2**20)
                if torch.cuda.is_available()
                else np.nan,
                "window": (start, end),
                "error": error,
            }
        )
    smi.stop()
    samples = smi.samples()
    for row in rows:
        start, end = row.pop("window")
        inside = samples[(samples.t >= start) & (samples.t <= end)]
        row["gpu_busy_fraction"] = (
            round(float((inside.util > 0).mean()), 3) if len(inside) else np.nan
        )
        row["gpu_util_mean"] = round(float(inside.util.mean()), 1) if len(inside) else np.nan
    table = pd.DataFrame(rows)
    table.insert(0, "device", device)
    table.to_csv(out / "gpu_speed.csv", index=False)
    md_text = table.to_markdown(index=False) if _has_tabulate() else table.to_string(index=False)
    (out / "gpu_speed.md").write_text(md_text + "\n")
    print(md_text)


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()
