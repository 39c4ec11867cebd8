"""Run one benchmark in a separate process and append a row to the results CSV."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import tempfile
import traceback
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pandas as pd

from scmint.metrics import SCORE_KEYS

from ._datasets import REPO_ROOT
from ._protocols import TRANSLATION_KEYS

#: Columns of ``benchmarks/results.csv``, in order.
FIELDS = (
    "timestamp",
    "method",
    "dataset",
    "protocol",
    "modalities",
    "n_cells",
    "n_train",
    "n_query",
    *SCORE_KEYS,
    *TRANSLATION_KEYS,
    "train_time_s",
    "n_epochs",
    "time_per_epoch_s",
    "inference_time_s",
    "peak_memory_mb",
    "import_memory_mb",
    "translation_time_s",
    "translation_peak_memory_mb",
    "device",
    "scmint_version",
    "scvi_tools_version",
    "torch_version",
    "git_commit",
    "params",
)


def _pkg_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return ""


def _peak_rss_mb(field: str = "VmHWM") -> float:
    """Peak (``VmHWM``) or current (``VmRSS``) resident memory of this process in MiB."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024.0**2 if sys.platform == "darwin" else rss / 1024.0


def _device() -> str:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return "cpu"
    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    n = torch.get_num_threads()
    return f"cpu ({os.cpu_count()} cores, {n} torch threads)"


def git_commit(repo: Path = REPO_ROOT) -> str:
    """Short commit hash of ``repo``'s HEAD, with ``+dirty`` if tracked files changed."""
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "diff-index", "--quiet", "HEAD", "--"],
            capture_output=True,
            timeout=20,
        ).returncode
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return ""


def _child(job: dict, outdir: str) -> None:
    """Body of the benchmark process: split, run the method, save embeddings and costs."""
    out = Path(outdir)
    try:
        from ._methods import run_method
        from ._protocols import make_split, score_translation, scored_arrays

        import_mb = _peak_rss_mb("VmRSS")  # scmint, scvi-tools, torch imported; no data yet
        split = make_split(job["dataset"], job["protocol"])
        kwargs = dict(job.get("method_kwargs") or {})
        result = run_method(
            job["method"],
            split,
            max_epochs=job.get("max_epochs"),
            seed=job.get("seed", 0),
            **kwargs,
        )
        peak_mb = _peak_rss_mb()  # training and embedding, before any translation
        translation, translation_s = score_translation(split, result.translate)
        a, b = split.modalities
        z_a, z_b, lab_a, lab_b, paired = scored_arrays(split, result.embeddings)
        np.savez(
            out / "embeddings.npz",
            z_a=z_a,
            z_b=z_b,
            labels_a=lab_a.astype(str),
            labels_b=lab_b.astype(str),
        )
        info = {
            "modalities": f"{a}+{b}",
            "paired": paired,
            "n_cells": split.n_cells,
            "n_train": split.n_train,
            "n_query": split.n_query,
            "n_epochs": result.n_epochs,
            "train_time_s": result.train_time_s,
            "inference_time_s": result.inference_time_s,
            "params": result.params,
            "device": _device(),
            "peak_memory_mb": peak_mb,
            "import_memory_mb": import_mb,
            "translation": translation,
            "translation_time_s": translation_s,
            "translation_peak_memory_mb": _peak_rss_mb() if result.translate else float("nan"),
        }
        (out / "info.json").write_text(json.dumps(info, default=str))
    except BaseException:
        (out / "error.txt").write_text(traceback.format_exc())
        raise


def run_in_subprocess(job: dict, timeout: float | None = None) -> tuple[dict, dict]:
    """Run ``job`` in a fresh (spawned) process.

    Parameters
    ----------
    job
        ``method``, ``dataset``, ``protocol`` and optional ``max_epochs``, ``seed``,
        ``method_kwargs``.
    timeout
        Seconds before the process is terminated.

    Returns
    -------
    tuple of dict
        ``(info, arrays)``: costs and metadata measured in the child, and the scored
        embeddings / labels (``z_a``, ``z_b``, ``labels_a``, ``labels_b``).
    """
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="scmint_bench_") as tmp:
        proc = ctx.Process(target=_child, args=(job, tmp), name=f"scmint-bench-{job['method']}")
        proc.start()
        proc.join(timeout)
        if proc.is_alive():
            proc.terminate()
            proc.join(10)
            raise TimeoutError(f"Benchmark {job} exceeded {timeout} s.")
        err = Path(tmp) / "error.txt"
        if proc.exitcode != 0 or err.exists():
            detail = err.read_text() if err.exists() else f"exit code {proc.exitcode}"
            raise RuntimeError(f"Benchmark {job} failed in its process:\n{detail}")
        info = json.loads((Path(tmp) / "info.json").read_text())
        with np.load(Path(tmp) / "embeddings.npz") as npz:
            arrays = {k: npz[k] for k in npz.files}
    return info, arrays


def append_row(row: dict, results: str | Path) -> None:
    """Append ``row`` to the CSV ``results`` (created with a header if missing)."""
    results = Path(results)
    results.parent.mkdir(parents=True, exist_ok=True)
    new = pd.DataFrame([row])
    if results.exists() and results.stat().st_size > 0:
        old = pd.read_csv(results)
        cols = list(dict.fromkeys([*FIELDS, *old.columns, *new.columns]))
        frame = pd.concat([old, new], ignore_index=True).reindex(columns=cols)
    else:
        cols = list(dict.fromkeys([*FIELDS, *new.columns]))
        frame = new.reindex(columns=cols)
    tmp = results.with_suffix(results.suffix + ".tmp")
    frame.to_csv(tmp, index=False)
    os.replace(tmp, results)


def run_benchmark(
    method: str,
    dataset: str,
    protocol: str,
    *,
    max_epochs: int | None = None,
    seed: int = 0,
    method_kwargs: dict | None = None,
    results: str | Path | None = None,
    timeout: float | None = None,
) -> dict:
    """Run one (method, dataset, protocol) benchmark in its own process and score it.

    The method runs in a spawned process so that its peak resident memory
    (``VmHWM``) is its own; the scores are computed here from the embeddings it
    saves. A method that translates between modalities is scored in that process too
    (:func:`~harness.score_translation`), after its peak memory of training
    and embedding has been read; ``translation_time_s`` and
    ``translation_peak_memory_mb`` (the process's peak including translation) are its
    cost.

    Parameters
    ----------
    method
        Registered method name (see :data:`~harness.METHODS`).
    dataset
        Dataset name.
    protocol
        ``"P1"``, ``"P2"`` or ``"P3"``.
    max_epochs
        Passed to the method (``None``: the method's default).
    seed
        Random seed passed to the method.
    method_kwargs
        Extra keyword arguments of the method.
    results
        CSV to append the row to; ``None`` to only return it.
    timeout
        Seconds before the method's process is killed.

    Returns
    -------
    dict
        The results row (see :data:`FIELDS`).
    """
    from scmint.metrics import integration_scores

    from ._methods import get_method

    m = get_method(method)  # fail early on unknown names
    if protocol not in m.protocols:
        raise ValueError(
            f"Method {method!r} does not support protocol {protocol} "
            f"(supports {', '.join(m.protocols)}). {m.unsupported.get(protocol, '')}".strip()
        )
    job = {
        "method": method,
        "dataset": dataset,
        "protocol": protocol,
        "max_epochs": max_epochs,
        "seed": seed,
        "method_kwargs": method_kwargs or {},
    }
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    info, arrays = run_in_subprocess(job, timeout=timeout)
    scores = integration_scores(
        arrays["z_a"],
        arrays["z_b"],
        labels_a=arrays["labels_a"],
        labels_b=arrays["labels_b"],
        paired=bool(info["paired"]),
        k=5,
    )
    n_epochs = info["n_epochs"]
    row = {
        "timestamp": stamp,
        "method": method,
        "dataset": dataset,
        "protocol": protocol,
        "modalities": info["modalities"],
        "n_cells": info["n_cells"],
        "n_train": info["n_train"],
        "n_query": info["n_query"],
        **{k: _as_float(scores.get(k)) for k in SCORE_KEYS},
        **{k: _as_float(info.get("translation", {}).get(k)) for k in TRANSLATION_KEYS},
        "train_time_s": round(info["train_time_s"], 3),
        "n_epochs": n_epochs if n_epochs is not None else "",
        "time_per_epoch_s": round(info["train_time_s"] / n_epochs, 4) if n_epochs else "",
        "inference_time_s": round(info["inference_time_s"], 3),
        "peak_memory_mb": round(info["peak_memory_mb"], 1),
        "import_memory_mb": round(info["import_memory_mb"], 1),
        "translation_time_s": _rounded(info.get("translation_time_s"), 3),
        "translation_peak_memory_mb": _rounded(info.get("translation_peak_memory_mb"), 1),
        "device": info["device"],
        "scmint_version": _pkg_version("scmint"),
        "scvi_tools_version": _pkg_version("scvi-tools"),
        "torch_version": _pkg_version("torch"),
        "git_commit": git_commit(),
        "params": json.dumps({"seed": seed, **info["params"]}, sort_keys=True, default=str),
    }
    if results is not None:
        append_row(row, results)
    return row


def _rounded(value, digits: int) -> float:
    """``round(value, digits)``, NaN for missing values."""
    try:
        return round(float(value), digits)
    except (TypeError, ValueError):
        return float("nan")


def _as_float(value) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return round(out, 5) if np.isfinite(out) else out
