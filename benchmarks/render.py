"""Render benchmarks/results.csv (ablations, seeds, baselines) into BENCHMARKS.md and figures.

Usage::

    .venv/bin/python benchmarks/render.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# the harness is the package benchmarks/harness (not installed): import it from here
sys.path.insert(0, str(HERE))


def main(argv: list[str] | None = None) -> None:
    from harness import render

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=str(HERE / "results.csv"))
    parser.add_argument("--output", default=str(HERE.parent / "BENCHMARKS.md"))
    parser.add_argument("--figures", default=str(HERE / "figures"))
    parser.add_argument("--ablations", default=str(HERE / "ablations.csv"))
    parser.add_argument("--seeds", default=str(HERE / "seeds.csv"))
    parser.add_argument("--baselines", default=str(HERE / "baselines.csv"))
    parser.add_argument("--no-figures", action="store_true")
    args = parser.parse_args(argv)
    figures = None if args.no_figures else args.figures
    render(
        args.results,
        args.output,
        figures,
        ablations=args.ablations,
        seeds=args.seeds,
        baselines=args.baselines,
    )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
