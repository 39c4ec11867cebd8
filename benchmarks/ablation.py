"""Run an ablation study (one method, several switch settings) into benchmarks/ablations.csv.

Every variant is one :func:`harness.run_benchmark` run (own process, same
split and seed) whose row gets a ``variant`` column; ``benchmarks/render.py`` shows the
latest row of each variant in ``BENCHMARKS.md``.

Usage::

    # Con-AAE's Table 1 on bmmc_multiome_starter, pairing hidden (the defaults below)
    .venv/bin/python benchmarks/ablation.py --method conaae \
        --dataset bmmc_multiome_starter --protocol P2
    # own variants: name=JSON keyword arguments of the method
    .venv/bin/python benchmarks/ablation.py --method conaae --dataset bmmc_cite_starter \
        --protocol P2 --variant full={} --variant no_cycle='{"cycle_weight": 0}'
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# the harness is the package benchmarks/harness (not installed): import it from here
sys.path.insert(0, str(HERE))

#: Default variants per method: Con-AAE's ablation (its Table 1) with each loss switched off;
#: CLUE's choices the issue leaves to the benchmark (joint rule, alignment form) and its
#: paper's ablation (cross terms, alignment, adversary).
DEFAULT_VARIANTS = {
    "conaae": {
        "full": {},
        "no cycle": {"cycle_weight": 0.0},
        "no contrastive (triplet)": {"triplet_weight": 0.0},
        "no adversarial": {"adversarial_weight": 0.0},
        "no classifier": {"beta": 0.0},
        "autoencoders only": {
            "cycle_weight": 0.0,
            "triplet_weight": 0.0,
            "adversarial_weight": 0.0,
            "beta": 0.0,
        },
    },
    "clue": {
        "published (joint mean, cosine)": {},
        "joint product of experts": {"joint": "poe"},
        "alignment MSE (paper)": {"alignment": "mse"},
        "no cross ELBO": {"joint_cross_weight": 0.0, "real_cross_weight": 0.0},
        "no alignment term": {"alignment_weight": 0.0},
        "no adversarial": {"adversarial_weight": 0.0},
    },
    "sccross": {
        "published (unsupervised)": {"pairing_weight": 0.0},
        "label classifier": {"pairing_weight": 0.0, "classifier_weight": 1.0},
        "pairing": {"pairing_weight": 1.0},
        "pairing + label classifier": {"pairing_weight": 1.0, "classifier_weight": 1.0},
    },
}


def _variant(text: str) -> tuple[str, dict]:
    name, sep, value = text.partition("=")
    if not name or not sep:
        raise argparse.ArgumentTypeError(f"--variant expects name=JSON, got {text!r}")
    try:
        kwargs = json.loads(value)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"--variant {name}: {err}") from err
    if not isinstance(kwargs, dict):
        raise argparse.ArgumentTypeError(f"--variant {name}: expected a JSON object")
    return name, kwargs


def main(argv: list[str] | None = None) -> list[dict]:
    from harness import METHODS, PROTOCOLS, append_row, run_benchmark

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", required=True, choices=sorted(METHODS))
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--protocol", required=True, choices=PROTOCOLS)
    parser.add_argument("--variant", type=_variant, action="append", default=[])
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", default=str(HERE / "ablations.csv"))
    parser.add_argument("--timeout", type=float, default=None, help="seconds per variant")
    args = parser.parse_args(argv)

    variants = dict(args.variant) or DEFAULT_VARIANTS.get(args.method)
    if not variants:
        parser.error(f"no default variants for {args.method}; pass --variant name=JSON")
    rows = []
    for name, kwargs in variants.items():
        row = run_benchmark(
            args.method,
            args.dataset,
            args.protocol,
            max_epochs=args.max_epochs,
            seed=args.seed,
            method_kwargs=kwargs,
            timeout=args.timeout,
        )
        row = {"variant": name, **row}
        append_row(row, args.results)
        print(f"{name}: FOSCTTM {row['foscttm']}, recall@10 {row['recall_at_10']}")
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
