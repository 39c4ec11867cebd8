"""Translation baselines of each paired dataset's P1 split, into ``baselines.csv``.

The kNN baseline (:func:`harness.knn_translation_baseline`: each query cell's target
profile predicted as the mean of its ``k`` nearest reference cells' in the source
modality) depends on the split only, not on a method, so it is computed once per split
here; ``benchmarks/render.py`` shows it as a row of each P1 translation table.

Usage::

    .venv/bin/python benchmarks/baselines.py [--datasets D ...] [--k 10]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import DATASETS, knn_translation_baseline, make_split  # noqa: E402

OUT = HERE / "baselines.csv"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="*", default=None, help="default: every paired one")
    parser.add_argument("--k", type=int, default=10, help="neighbours averaged (10)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    rows = []
    for name in args.datasets or list(DATASETS):
        try:
            split = make_split(name, "P1")
        except ValueError as error:  # the mosaic dataset has no P1
            print(f"{name}: skipped ({error})")
            continue
        t0 = time.perf_counter()
        scores = knn_translation_baseline(split, n_neighbors=args.k)
        seconds = time.perf_counter() - t0
        rows.append(
            {
                "dataset": name,
                "protocol": "P1",
                "baseline": f"knn_{args.k}",
                **scores,
                "seconds": round(seconds, 2),
            }
        )
        print(name, {k: round(v, 3) for k, v in scores.items()}, f"{seconds:.1f} s")
    pd.DataFrame(rows).to_csv(args.out, index=False)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
