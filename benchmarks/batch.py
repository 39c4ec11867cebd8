"""Batch removal (issue 16, item 1): how far each model's embedding mixes the batches.

Every model is set up with ``batch_key="batch"`` (what a user does to remove batch
effects; every model also with ``labels_key="cell_type"``: MINNET and CONAAE train
on labels, CLUE's classifier reads them, and all four then centre each batch's inputs
with composition-corrected centres) and trained on all cells; the cells of each
modality are embedded from that modality, and the embedding is scored against the
batches (mixing: the share of each cell's 15 nearest neighbours from another batch;
scib's iLISI and batch ASW) and against the cell types (cell-type ASW, graph
connectivity). MULTIVI (RNA + ATAC) and TOTALVI (RNA + protein, cells with RNA) run
beside them.

Datasets: the simulator with a strong batch effect (``sim_batch1``: 1,200 paired cells,
two batches, ``batch_effect=1.0``) and the same cells without one (``sim_batch0``, the
cell-type ASW the targets compare with), both also at 600 cells (``sim600_*``, the
issue's own check); ``pbmc_mosaic_paired`` (two donors, paired
CITE-seq) and ``pbmc_mosaic`` (four donors, a mosaic).

Usage::

    .venv/bin/python benchmarks/batch.py [--datasets D ...] [--methods M ...] \\
        [--epochs 30] [--peer-epochs 100] [--out benchmarks/batch.csv]

Rows are appended to ``--out`` (replacing earlier rows of the same dataset and method);
``--markdown`` prints the table of the file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
import warnings
from pathlib import Path

import mudata as md
import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.neighbors import NearestNeighbors

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import scmint  # noqa: E402
from harness import load_dataset  # noqa: E402
from harness._runner import git_commit  # noqa: E402

OUT = HERE / "batch.csv"
SCMINT_METHODS = ("clue", "conaae", "minnet", "sccross")
LABELLED = ("clue", "conaae", "minnet", "sccross")
PEERS = {"multivi": ("rna", "atac"), "totalvi": ("rna", "adt")}
SIMULATED = {  # name: (cells, batch_effect)
    "sim_batch1": (1200, 1.0),
    "sim_batch0": (1200, 0.0),
    "sim600_batch1": (600, 1.0),  # the issue's own check (600 paired cells, 30 epochs)
    "sim600_batch0": (600, 0.0),
}
DATA = (*SIMULATED, "pbmc_mosaic_paired", "pbmc_mosaic")
SCORES = ("mixing_15nn", "ilisi", "batch_asw", "celltype_asw", "graph_connectivity")


def load(name: str) -> md.MuData:
    """A dataset as modalities with ``obs['batch']`` and ``obs['cell_type']``."""
    if name in SIMULATED:
        n_cells, effect = SIMULATED[name]
        return scmint.data.simulate_multiome(
            n_cells=n_cells, paired_fraction=1.0, batch_effect=effect, seed=0
        )
    return load_dataset(name)


def mixing(z: np.ndarray, batch: np.ndarray, k: int = 15) -> float:
    """Share of each cell's ``k`` nearest neighbours that come from another batch."""
    idx = NearestNeighbors(n_neighbors=k + 1).fit(z).kneighbors(z, return_distance=False)
    return float((batch[idx[:, 1:]] != batch[:, None]).mean())


def scores(z: np.ndarray, batch: np.ndarray, cell_type: np.ndarray) -> dict[str, float]:
    m = scmint.metrics
    return {
        "mixing_15nn": mixing(z, batch),
        "ilisi": m.ilisi(z, batch),
        "batch_asw": m.batch_asw(z, batch, labels=cell_type),
        "celltype_asw": m.celltype_asw(z, cell_type),
        "graph_connectivity": m.graph_connectivity(z, cell_type),
    }


def scmint_embeddings(method: str, mdata: md.MuData, epochs: int) -> dict[str, tuple]:
    """``{modality: (z, obs)}`` of a scmint model trained with ``batch_key``."""
    padded = scmint.data.pad_mudata(mdata)
    model_cls = getattr(scmint.model, method.upper())
    # MINNET and CONAAE train on cell-type labels, CLUE's classifier reads them; all
    # four correct their batch centres for cell-type composition with them
    labels = {"labels_key": "cell_type"} if method in LABELLED else {}
    model_cls.setup_mudata(padded, batch_key="batch", **labels)
    model = model_cls(padded)
    model.train(max_epochs=epochs, enable_progress_bar=False)
    out = {}
    for m in mdata.mod:
        cells = np.flatnonzero(padded.obs[scmint.data.indicator_key(m)].to_numpy() > 0)
        z = model.get_latent_representation(modality=m, indices=cells)
        out[m] = (z, padded.obs.iloc[cells])
    return out


def peer_embeddings(method: str, mdata: md.MuData, epochs: int) -> dict[str, tuple]:
    """MULTIVI's per-modality embeddings, or TOTALVI's (cells with RNA; one space)."""
    import scvi

    rna, other = PEERS[method]
    if method == "multivi":
        data = md.MuData({rna: mdata[rna].copy(), other: mdata[other].copy()})
        common = data[rna].obs_names.intersection(data[other].obs_names)
        data = md.MuData({m: data[m][common].copy() for m in (rna, other)})
        data.obs["batch"] = pd.Categorical(data[rna].obs["batch"].astype(str))
        scvi.model.MULTIVI.setup_mudata(
            data, batch_key="batch", modalities={"rna_layer": rna, "atac_layer": other}
        )
        model = scvi.model.MULTIVI(data)
        model.train(max_epochs=epochs, enable_progress_bar=False)
        keys = {rna: "expression", other: "accessibility"}
        obs = data[rna].obs
        return {m: (model.get_latent_representation(modality=keys[m]), obs) for m in keys}
    common = mdata[rna].obs_names.intersection(mdata[other].obs_names)
    data = md.MuData({rna: mdata[rna][common].copy(), other: mdata[other][common].copy()})
    proteins = data[other].X  # TOTALVI reads dense protein counts
    data[other].X = proteins.toarray() if sparse.issparse(proteins) else proteins
    data.obs["batch"] = pd.Categorical(data[rna].obs["batch"].astype(str))
    scvi.model.TOTALVI.setup_mudata(
        data, batch_key="batch", modalities={"rna_layer": rna, "protein_layer": other}
    )
    model = scvi.model.TOTALVI(data)
    model.train(max_epochs=epochs, enable_progress_bar=False)
    return {"joint": (model.get_latent_representation(), data[rna].obs)}


def run(dataset: str, method: str, epochs: int, peer_epochs: int) -> list[dict]:
    mdata = load(dataset)
    if method in PEERS and not set(PEERS[method]) <= set(mdata.mod):
        return []
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if method in PEERS:
            emb = peer_embeddings(method, mdata, peer_epochs)
        else:
            emb = scmint_embeddings(method, mdata, epochs)
    train_s = time.perf_counter() - t0
    rows = []
    for modality, (z, obs) in emb.items():
        batch = obs["batch"].astype(str).to_numpy()
        cell_type = obs["cell_type"].astype(str).to_numpy()
        rows.append(
            {
                "dataset": dataset,
                "method": method,
                "modality": modality,
                "n_cells": len(z),
                "n_batches": len(set(batch)),
                **scores(z, batch, cell_type),
                "epochs": peer_epochs if method in PEERS else epochs,
                "train_s": round(train_s, 1),
                "commit": git_commit(),
                "run_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        )
    return rows


def markdown(table: pd.DataFrame) -> str:
    cols = ["dataset", "method", "modality", "n_cells", "n_batches", *SCORES, "epochs"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in table[cols].iterrows():
        cells = [f"{v:.3f}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="*", default=list(DATA), choices=DATA)
    parser.add_argument(
        "--methods", nargs="*", default=[*SCMINT_METHODS, *PEERS], choices=[*SCMINT_METHODS, *PEERS]
    )
    parser.add_argument("--epochs", type=int, default=30, help="epochs of the scmint models")
    parser.add_argument("--peer-epochs", type=int, default=100, help="MULTIVI / TOTALVI epochs")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--markdown", action="store_true", help="print the table and stop")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(pd.read_csv(args.out)))
        return
    for dataset in args.datasets:
        for method in args.methods:
            rows = run(dataset, method, args.epochs, args.peer_epochs)
            if not rows:
                continue
            new = pd.DataFrame(rows)
            print(markdown(new), flush=True)
            if args.out.exists():
                old = pd.read_csv(args.out)
                old = old[~((old["dataset"] == dataset) & (old["method"] == method))]
                new = pd.concat([old, new], ignore_index=True)
            new.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
