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


LIBRARY_NOTICES = (
    "will not pull obs/var columns",  # mudata pull-on-update
    "var_names are not unique",
    "Cannot join columns with the same name",
    "mod_names is deprecated",
    "already downloaded",  # scvi-tools on load
    "GPU available",  # Lightning's banner
    "LeafSpec",
    "The number of training batches",
    "IProgress not found",  # tqdm in Jupyter without ipywidgets
)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_quiet_without_warning_filters(path):
    """Quiet by default: no warning filters in the notebook, no library notices in its outputs."""
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    filters = [i for i, c in enumerate(code) if "warnings.filterwarnings" in c.source]
    assert not filters, f"{path.name}: code cells {filters} set warning filters"
    shown = {
        notice
        for c in code
        for out in c.get("outputs", [])
        for notice in LIBRARY_NOTICES
        if notice in (out.get("text", "") + str(out.get("data", {}).get("text/plain", "")))
    }
    assert not shown, f"{path.name} shows library notices: {sorted(shown)}"
