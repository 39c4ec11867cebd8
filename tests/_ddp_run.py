"""Train every model on one and on two CPU processes (DDP); print FOSCTTM as JSON.

Run by ``test_ddp.py`` in a fresh interpreter: forking the DDP processes from the test
session, whose earlier tests started OpenMP and numba threads, could hang.
"""

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import scvi
import torch

import scmint
from scmint.data import _backed
from scmint.metrics import foscttm
from scmint.model import CLUE, CONAAE, MINNET, SCCROSS

# blocks of 128 cells, so that the two processes of the on-disk runs read blocks of their own
_backed.CHUNK_BYTES, _backed.MIN_CHUNK_ROWS = 1, 128

MODELS = {"clue": CLUE, "conaae": CONAAE, "minnet": MINNET, "sccross": SCCROSS}
EPOCHS = 30


def train(name: str, padded, **trainer_kwargs):
    """``name`` trained for EPOCHS epochs on the CPU with the given trainer options."""
    cls = MODELS[name]
    kwargs = {"labels_key": "cell_type"} if name in ("conaae", "minnet") else {}
    cls.setup_mudata(padded, batch_key="batch", **kwargs)
    scvi.settings.seed = 0
    model = cls(padded)
    epochs = {"pretrain_epochs": EPOCHS} if name == "sccross" else {}
    model.train(
        max_epochs=EPOCHS,
        accelerator="cpu",
        enable_progress_bar=False,
        early_stopping=False,
        **epochs,
        **trainer_kwargs,
    )
    return model


def main(names: list[str]) -> None:
    torch.set_num_threads(1)
    # a mosaic: paired cells and cells of one modality (minibatches without a modality)
    sim = scmint.data.simulate_multiome(n_cells=600, n_genes=200, n_peaks=400, seed=0)
    padded = scmint.data.pad_mudata(sim)
    both = np.flatnonzero((padded.obs["has_rna"] > 0) & (padded.obs["has_atac"] > 0))
    settings = {"one": {"devices": 1}, "two": {"devices": 2, "strategy": "ddp_fork"}}
    scores = {}
    with tempfile.TemporaryDirectory() as folder:
        path = scmint.data.write_h5mu(padded, Path(folder) / "padded.h5mu")
        for name in names:
            for label, kwargs in settings.items():
                model = train(name, padded.copy(), **kwargs)
                scores[f"{name}_{label}"] = score(model, both)
            if MODELS[name]._reads_from_disk:  # two processes, each reading its blocks
                on_disk = scmint.data.read_h5mu(path, backed=True)
                model = train(name, on_disk, **settings["two"])
                scores[f"{name}_disk_two"] = score(model, both)
    print("SCORES " + json.dumps(scores))


def score(model, cells: np.ndarray) -> float:
    """FOSCTTM of the paired ``cells`` embedded from each modality alone."""
    z_rna = model.get_latent_representation(modality="rna", indices=cells)
    z_atac = model.get_latent_representation(modality="atac", indices=cells)
    return float(foscttm(z_rna, z_atac))


if __name__ == "__main__":
    main(sys.argv[1:] or sorted(MODELS))
