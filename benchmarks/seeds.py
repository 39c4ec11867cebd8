"""Run scmint's models over several seeds into benchmarks/seeds.csv (seed stability).

Every run is one :func:`harness.run_benchmark` (own process, the protocol's
fixed split, only the training seed changes); each row is appended as soon as the run
ends, so an interrupted sweep keeps what it finished (``--resume`` skips those).
``benchmarks/render.py`` renders the "Seed stability" table of ``BENCHMARKS.md`` from
the file.

Usage::

    # the committed table: 4 models x 2 starters x seeds 0-4, epochs of EPOCHS below
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/python benchmarks/seeds.py
    # one model, other epochs
    .venv/bin/python benchmarks/seeds.py --method clue --max-epochs clue=100
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# one thread unless the caller chose otherwise (inherited by the benchmark processes)
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

HERE = Path(__file__).resolve().parent
# the harness is the package benchmarks/harness (not installed): import it from here
sys.path.insert(0, str(HERE))

#: Models, each in its main protocol (P1: every model supports it; CONAAE adds its
#: anchor loss there).
METHODS = {"minnet": "P1", "sccross": "P1", "conaae": "P1", "clue": "P1"}
DATASETS = ("bmmc_cite_starter", "bmmc_multiome_starter")
SEEDS = (0, 1, 2, 3, 4)
#: Epoch budget of each model in the sweep (``max_epochs`` of the harness; ``None``: the
#: model's default; early stopping, where a model has it, may end a run sooner). CONAAE
#: runs its default 200 epochs; the others less than their defaults (CLUE's schedule asks
#: up to 1,000 epochs, SCCROSS's published count far more, MINNET 100) to keep the 40
#: runs within about 20 minutes on one CPU thread.
EPOCHS: dict[str, int | None] = {"minnet": 30, "sccross": 30, "conaae": None, "clue": 40}
#: Columns of ``benchmarks/seeds.csv``.
FIELDS = (
    "method",
    "dataset",
    "protocol",
    "seed",
    "foscttm",
    "epochs",
    "time",
    "max_epochs",
    "git_commit",
    "timestamp",
    "params",
)


def _epochs(text: str) -> tuple[str, int | None]:
    name, sep, value = text.partition("=")
    if not sep or name not in METHODS:
        raise argparse.ArgumentTypeError(f"--max-epochs expects method=N, got {text!r}")
    return name, None if value.lower() in ("", "none", "default") else int(value)


def _done(path: Path) -> set[tuple[str, str, str, int]]:
    import pandas as pd

    if not path.exists() or path.stat().st_size == 0:
        return set()
    df = pd.read_csv(path)
    return {
        (r.method, r.dataset, r.protocol, int(r.seed))
        for r in df[["method", "dataset", "protocol", "seed"]].itertuples()
    }


def append_row(row: dict, path: Path) -> None:
    """Append ``row`` to the CSV ``path`` (columns :data:`FIELDS`; header if new)."""
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    new = pd.DataFrame([row]).reindex(columns=list(FIELDS))
    exists = path.exists() and path.stat().st_size > 0
    new.to_csv(path, mode="a" if exists else "w", header=not exists, index=False)


def main(argv: list[str] | None = None) -> list[dict]:
    from harness import run_benchmark

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", action="append", choices=sorted(METHODS), default=[])
    parser.add_argument("--dataset", action="append", default=[])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--max-epochs", type=_epochs, action="append", default=[])
    parser.add_argument("--results", default=str(HERE / "seeds.csv"))
    parser.add_argument("--resume", action="store_true", help="skip runs already in --results")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per run")
    args = parser.parse_args(argv)

    epochs = {**EPOCHS, **dict(args.max_epochs)}
    done = _done(Path(args.results)) if args.resume else set()
    rows = []
    for method in args.method or list(METHODS):
        protocol = METHODS[method]
        for dataset in args.dataset or list(DATASETS):
            for seed in args.seeds:
                if (method, dataset, protocol, seed) in done:
                    continue
                t0 = time.perf_counter()
                full = run_benchmark(
                    method,
                    dataset,
                    protocol,
                    max_epochs=epochs[method],
                    seed=seed,
                    timeout=args.timeout,
                )
                row = {
                    "method": method,
                    "dataset": dataset,
                    "protocol": protocol,
                    "seed": seed,
                    "foscttm": full["foscttm"],
                    "epochs": full["n_epochs"],
                    "time": full["train_time_s"],
                    "max_epochs": epochs[method] if epochs[method] is not None else "",
                    "git_commit": full["git_commit"],
                    "timestamp": full["timestamp"],
                    "params": full["params"],
                }
                append_row(row, Path(args.results))
                rows.append(row)
                print(
                    f"{method} {dataset} {protocol} seed {seed}: FOSCTTM {row['foscttm']:.3f}, "
                    f"{row['epochs']} epochs, train {row['time']:.0f} s "
                    f"(run {time.perf_counter() - t0:.0f} s)",
                    flush=True,
                )
    return rows


if __name__ == "__main__":
    main()
