"""Run one benchmark (method in its own process) and append a row to the results CSV.

Usage::

    .venv/bin/python benchmarks/run.py --method cca --dataset bmmc_cite_starter --protocol P1
    .venv/bin/python benchmarks/run.py --method multivi --dataset snare_mouse_cortex \
        --protocol P1 --max-epochs 30 --param batch_size=256
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# the harness is the package benchmarks/harness (not installed): import it from here
sys.path.insert(0, str(HERE))


def _param(text: str) -> tuple[str, object]:
    key, _, value = text.partition("=")
    if not key or not _:
        raise argparse.ArgumentTypeError(f"--param expects key=value, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def main(argv: list[str] | None = None) -> dict:
    from harness import METHODS, PROTOCOLS, run_benchmark

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", required=True, choices=sorted(METHODS))
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--protocol", required=True, choices=PROTOCOLS)
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--param",
        type=_param,
        action="append",
        default=[],
        help="extra method keyword argument, key=value (value parsed as JSON when possible)",
    )
    parser.add_argument("--results", default=str(HERE / "results.csv"))
    parser.add_argument("--no-save", action="store_true", help="print the row only")
    parser.add_argument("--timeout", type=float, default=None, help="seconds")
    args = parser.parse_args(argv)

    row = run_benchmark(
        args.method,
        args.dataset,
        args.protocol,
        max_epochs=args.max_epochs,
        seed=args.seed,
        method_kwargs=dict(args.param),
        results=None if args.no_save else args.results,
        timeout=args.timeout,
    )
    width = max(len(k) for k in row)
    for key, value in row.items():
        print(f"{key:<{width}}  {value}")
    return row


if __name__ == "__main__":
    main()
