"""The tutorial notebooks are committed executed: every code cell ran, none failed."""

from pathlib import Path

import nbformat
import pytest

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))


def test_there_are_tutorials():
    assert NOTEBOOKS, f"no notebooks in {TUTORIALS}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_executed_without_errors(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    assert code, f"{path.name} has no code cells"
    not_run = [i for i, c in enumerate(code) if c.execution_count is None]
    assert not not_run, f"{path.name}: code cells {not_run} were not executed"
    counts = [c.execution_count for c in code]
    assert counts == sorted(counts), f"{path.name} was not executed top to bottom: {counts}"
    errors = [
        out.get("ename")
        for c in code
        for out in c.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert not errors, f"{path.name} stored errors: {errors}"
    figures = sum("image/png" in out.get("data", {}) for c in code for out in c.get("outputs", []))
    assert figures > 0, f"{path.name} shows no plots"
