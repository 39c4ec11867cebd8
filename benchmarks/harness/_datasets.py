"""Loading the shared benchmark datasets by name."""

from __future__ import annotations

import os
from pathlib import Path

import mudata as md

from scmint.data import read_h5mu

#: Datasets of the benchmark: name -> (modality pair, labels key, batch key, feature kinds,
#: and optional side files in the dataset's folder: ``gene_peak_links``, a genes x peaks
#: matrix with rows in RNA and columns in ATAC feature order).
DATASETS: dict[str, dict] = {
    "snare_mouse_cortex": {
        "modalities": ("rna", "atac"),
        "kinds": {"rna": "rna", "atac": "atac"},
        "labels_key": "cell_type",
        "batch_key": "batch",
        "gene_peak_links": "gene_peak_prior.npz",
    },
    "bmmc_multiome_starter": {
        "modalities": ("rna", "atac"),
        "kinds": {"rna": "rna", "atac": "atac"},
        "labels_key": "cell_type",
        "batch_key": "batch",
    },
    "bmmc_cite_starter": {
        "modalities": ("rna", "adt"),
        "kinds": {"rna": "rna", "adt": "protein"},
        "labels_key": "cell_type",
        "batch_key": "batch",
    },
    "pbmc_mosaic": {
        "modalities": ("rna", "adt"),
        "kinds": {"rna": "rna", "adt": "protein"},
        "labels_key": "cell_type",
        "batch_key": "batch",
    },
    # the cells of pbmc_mosaic measured in both modalities (donors p3_0, p4_0), so that
    # the paired protocols run on a CITE-seq panel whose proteins map to the RNA genes
    "pbmc_mosaic_paired": {
        "modalities": ("rna", "adt"),
        "kinds": {"rna": "rna", "adt": "protein"},
        "labels_key": "cell_type",
        "batch_key": "batch",
        "paired_subset_of": "pbmc_mosaic",
    },
}


#: The repository holding this harness (``<repo>/benchmarks/harness/``).
REPO_ROOT = Path(__file__).resolve().parents[2]


def data_dir() -> Path:
    """Directory holding the shared datasets.

    ``$SCMINT_DATA_DIR`` when set; otherwise ``shared/data`` beside the repository
    (``<repo>/../shared/data``, found from this file's location in
    ``<repo>/benchmarks/harness/``).

    Returns
    -------
    Path
        The data directory (not checked for existence).
    """
    env = os.environ.get("SCMINT_DATA_DIR")
    if env:
        return Path(env).expanduser().resolve()
    return REPO_ROOT.parent / "shared" / "data"


def dataset_path(name: str) -> Path:
    """Path of the ``.h5mu`` file of dataset ``name``.

    Parameters
    ----------
    name
        A key of :data:`DATASETS` (or any folder ``<data_dir>/<name>/<name>.h5mu``).

    Returns
    -------
    Path
        The file path.
    """
    return data_dir() / name / f"{name}.h5mu"


def load_dataset(name: str) -> md.MuData:
    """Read a shared benchmark dataset.

    Parameters
    ----------
    name
        Dataset name, e.g. ``"bmmc_cite_starter"``.

    Returns
    -------
    mudata.MuData
        The dataset as stored (raw counts in ``X`` of each modality).

    Raises
    ------
    FileNotFoundError
        If the file is missing; the message names ``SCMINT_DATA_DIR``.
    """
    source = DATASETS.get(name, {}).get("paired_subset_of")
    if source is not None:
        return _paired_cells(load_dataset(source))
    path = dataset_path(name)
    if not path.exists():
        raise FileNotFoundError(
            f"Dataset {name!r} not found at {path}. Set SCMINT_DATA_DIR to the folder "
            f"holding <name>/<name>.h5mu. Known datasets: {sorted(DATASETS)}."
        )
    md.set_options(pull_on_update=False)
    return read_h5mu(path)


def _paired_cells(mdata: md.MuData) -> md.MuData:
    """The cells measured in every modality, in one order in each."""
    mods = list(mdata.mod)
    common = mdata.mod[mods[0]].obs_names
    for m in mods[1:]:
        common = common.intersection(mdata.mod[m].obs_names, sort=False)
    return md.MuData({m: mdata.mod[m][common].copy() for m in mods})


def dataset_info(name: str) -> dict:
    """Modalities, feature kinds, labels and batch keys of a known dataset.

    Parameters
    ----------
    name
        A key of :data:`DATASETS`.

    Returns
    -------
    dict
        Keys ``modalities``, ``kinds``, ``labels_key``, ``batch_key`` and, where the
        dataset has one, ``gene_peak_links`` (file name in the dataset's folder).
    """
    if name not in DATASETS:
        raise KeyError(f"Unknown dataset {name!r}; known: {sorted(DATASETS)}.")
    return dict(DATASETS[name])
