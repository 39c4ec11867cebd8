"""Shared fixtures: the real datasets in ../shared/data, read once per session."""

from pathlib import Path

import mudata as md
import pytest
import torch
from threadpoolctl import threadpool_limits

md.set_options(pull_on_update=False)


def pytest_configure(config) -> None:
    """Share the cores among pytest-xdist workers (``make test`` runs two).

    Each worker gets ``cores // workers`` torch and BLAS threads: two workers of one thread
    finish the suite much sooner on two cores than one worker of two threads, since most
    tests train tiny models where a second thread barely helps.
    """
    import os

    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1:
        threads = max(1, (os.cpu_count() or 1) // workers)
        torch.set_num_threads(threads)
        threadpool_limits(threads)


DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"


def _read(name: str) -> md.MuData:
    path = DATA_DIR / name / f"{name}.h5mu"
    if not path.exists():
        pytest.skip(f"{path} not found: the shared datasets must sit beside the repository")
    return md.read_h5mu(path)


def pytest_report_header(config) -> str:
    """The versions the suite runs against (CI runs it twice: resolved and newest)."""
    import anndata
    import numpy
    import pandas
    import scvi

    return (
        f"scmint stack: pandas {pandas.__version__}, numpy {numpy.__version__}, "
        f"anndata {anndata.__version__}, scvi-tools {scvi.__version__}, torch {torch.__version__}"
    )


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA_DIR


@pytest.fixture(scope="session")
def _bmmc_multiome() -> md.MuData:
    return _read("bmmc_multiome_starter")


@pytest.fixture
def bmmc_multiome(_bmmc_multiome) -> md.MuData:
    """Fresh copy of the 500-cell 10x Multiome starter (rna 600 genes, atac 600 peaks)."""
    return _bmmc_multiome.copy()


@pytest.fixture(scope="session")
def _bmmc_cite() -> md.MuData:
    return _read("bmmc_cite_starter")


@pytest.fixture
def bmmc_cite(_bmmc_cite) -> md.MuData:
    """Fresh copy of the 600-cell CITE-seq starter (rna 1,000 genes, adt 134 proteins)."""
    return _bmmc_cite.copy()


@pytest.fixture(scope="session")
def _pbmc_mosaic() -> md.MuData:
    return _read("pbmc_mosaic")


@pytest.fixture
def pbmc_mosaic(_pbmc_mosaic) -> md.MuData:
    """Fresh copy of the PBMC mosaic: 800 paired, 400 RNA-only, 400 ADT-only cells."""
    return _pbmc_mosaic.copy()


@pytest.fixture(scope="session")
def snare() -> md.MuData:
    """SNARE-seq mouse cortex, 10,309 paired cells (read-only: do not modify in tests)."""
    return _read("snare_mouse_cortex")


@pytest.fixture(scope="module")
def one_thread():
    """One torch / BLAS thread for a test module (``pytestmark = usefixtures``).

    The models' tests train on tiny problems, where one thread is much faster than two
    on a shared machine.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(n)
