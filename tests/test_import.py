"""``import scmint`` is quiet and light: subpackages load on first access (PEP 562)."""

import subprocess
import sys

HEAVY = ("scvi", "torch", "jax", "scib_metrics", "lightning", "matplotlib", "scanpy")


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )


def test_import_prints_nothing():
    proc = _run("import scmint")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout == ""


def test_import_leaves_heavy_libraries_unimported():
    code = (
        "import sys, scmint\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
        "print(sorted(n for n in dir(scmint) if not n.startswith('_')))\n"
    )
    proc = _run(code)
    assert proc.returncode == 0, proc.stderr
    loaded, names = proc.stdout.splitlines()
    assert loaded == "[]", f"import scmint imported {loaded}"
    assert names == str(sorted(["data", "metrics", "model", "nn", "pl", "pp", "tl", "train"]))


def test_subpackages_load_on_access():
    proc = _run(
        "import matplotlib, scmint\n"
        "backend = matplotlib.get_backend()\n"
        "assert scmint.data.pad_mudata and scmint.model.CLUE and scmint.tl.umap\n"
        "assert scmint.pl.embedding and matplotlib.get_backend() == backend\n"
        "from scmint import pp\n"
        "assert pp.peak_gene_links\n"
        "try:\n"
        "    scmint.nope\n"
        "except AttributeError as e:\n"
        "    print(e)\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert "has no attribute 'nope'" in proc.stdout
