"""Command line: ``scmint demo`` runs the end-to-end example and writes a report."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``scmint`` command."""
    parser = argparse.ArgumentParser(prog="scmint", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="integrate two modalities, score them and write an HTML report"
    )
    demo.add_argument("--data", default=None, help=".h5mu file; default: the built-in simulator")
    demo.add_argument("--out", default="demo_output", help="folder for the report")
    demo.add_argument("--modalities", nargs=2, default=None, help="two modality names")
    demo.add_argument("--labels-key", default="cell_type", help="obs column with cell types")
    demo.add_argument("--n-cells", type=int, default=3000, help="simulated cells")
    demo.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    with warnings.catch_warnings():  # torch's pynvml deprecation notice at import
        warnings.simplefilter("ignore", FutureWarning)
        from ._demo import run_demo

    run_demo(
        path=args.data,
        out_dir=args.out,
        modalities=args.modalities,
        labels_key=args.labels_key,
        seed=args.seed,
        n_cells=args.n_cells,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
