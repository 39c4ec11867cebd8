"""Benchmark harness: datasets, protocols P1/P2/P3, method registry, runner, rendering.

Not part of the installed ``scmint`` package: the package ``benchmarks/harness/`` of the
repository. The scripts of ``benchmarks/`` put their folder on ``sys.path`` and
``import harness``; so do the harness tests (``tests/test_benchmark*.py``). The peer
methods' optional dependencies: ``pip install scmint[peers]``.

Examples
--------
>>> import sys
>>> sys.path.insert(0, "benchmarks")  # from the repository root
>>> from harness import make_split, run_method, score_split
>>> split = make_split("bmmc_cite_starter", "P1")
>>> result = run_method("cca", split)
>>> scores = score_split(split, result.embeddings)
>>> translation, seconds = score_translation(split, result.translate)  # NaN: CCA does not

From the shell (method in its own process, one row appended to the results CSV)::

    python benchmarks/run.py --method cca --dataset bmmc_cite_starter --protocol P1
    python benchmarks/render.py
"""

from ._datasets import DATASETS, data_dir, dataset_info, dataset_path, load_dataset
from ._methods import (
    METHODS,
    Method,
    MethodResult,
    get_method,
    register_method,
    run_method,
)
from ._protocols import (
    KNN_BASELINE_KEYS,
    PROTOCOLS,
    TRANSLATION_KEYS,
    Split,
    knn_translation_baseline,
    make_split,
    p1_indices,
    score_split,
    score_translation,
    scored_arrays,
)
from ._render import render, render_markdown
from ._runner import FIELDS, SCORE_KEYS, append_row, run_benchmark

__all__ = [
    "DATASETS",
    "FIELDS",
    "KNN_BASELINE_KEYS",
    "METHODS",
    "PROTOCOLS",
    "SCORE_KEYS",
    "TRANSLATION_KEYS",
    "Method",
    "MethodResult",
    "Split",
    "append_row",
    "data_dir",
    "dataset_info",
    "dataset_path",
    "get_method",
    "knn_translation_baseline",
    "load_dataset",
    "make_split",
    "p1_indices",
    "register_method",
    "render",
    "render_markdown",
    "run_benchmark",
    "run_method",
    "score_split",
    "score_translation",
    "scored_arrays",
]
