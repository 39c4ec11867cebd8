"""Benchmark-protocol splits and a model-fitting helper for the model tests.

The model tests do not import the benchmark harness (``benchmarks/harness/``, outside
the installed package); these few helpers build the same splits (same cells, same
order, same seeds as ``harness.make_split``) so the tests' thresholds hold, and fit a
model through the common scmint API as ``harness`` does for scmint's models.
``tests/test_benchmark.py`` checks that both give the same splits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import anndata as ad
import mudata as md
import numpy as np
import pytest

#: Modalities, feature kinds and obs keys of the shared datasets the model tests use.
DATASETS = {
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
}


def data_dir() -> Path:
    """``$SCMINT_DATA_DIR``, else ``shared/data`` beside the repository."""
    env = os.environ.get("SCMINT_DATA_DIR")
    if env:
        return Path(env).expanduser().resolve()
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def load(name: str) -> md.MuData:
    """A shared dataset by name (the test is skipped when it is missing)."""
    path = data_dir() / name / f"{name}.h5mu"
    if not path.exists():
        pytest.skip(f"{path} not found: the shared datasets must sit beside the repository")
    md.set_options(pull_on_update=False)
    return md.read_h5mu(path)


@dataclass
class Split:
    """Training MuData, per-modality query cells and the true pairs (for scoring)."""

    protocol: str
    dataset: str
    modalities: tuple[str, str]
    labels_key: str
    batch_key: str
    train: md.MuData
    query: dict[str, ad.AnnData]
    pairs: tuple[np.ndarray, np.ndarray] | None
    n_cells: int
    extra: dict = field(default_factory=dict)


def make_split(dataset: str | md.MuData, protocol: str, name: str | None = None) -> Split:
    """Benchmark protocol P1 (80/20 reference/query), P2 (unpaired) or P3 (mosaic).

    Parameters
    ----------
    dataset
        A name of :data:`DATASETS`, or a MuData of one of them (then ``name`` says which).
    protocol
        ``"P1"``, ``"P2"`` or ``"P3"``.
    name
        Dataset name when ``dataset`` is a MuData.
    """
    if isinstance(dataset, str):
        name, mdata = dataset, load(dataset)
    else:
        mdata = dataset
    info = DATASETS[name]
    a, b = mods = tuple(info["modalities"])
    keys = {
        "labels_key": info["labels_key"],
        "batch_key": info["batch_key"],
        "n_cells": int(mdata.n_obs),
    }
    if protocol == "P1":
        perm = np.random.default_rng(0).permutation(mdata.n_obs)
        n_ref = int(0.8 * mdata.n_obs)
        ref, qry = perm[:n_ref], perm[n_ref:]
        train = md.MuData({m: mdata.mod[m][ref].copy() for m in mods})
        query = {m: mdata.mod[m][qry].copy() for m in mods}
        pairs = (np.arange(len(qry)), np.arange(len(qry)))
        extra = {"reference_indices": ref, "query_indices": qry}
        return Split("P1", name, mods, **keys, train=train, query=query, pairs=pairs, extra=extra)
    if protocol == "P2":
        n = mdata.n_obs
        perm_b = np.random.default_rng(1).permutation(n)
        ad_a = mdata.mod[a].copy()
        ad_a.obs_names = [f"{a}_{i}" for i in range(n)]
        ad_b = mdata.mod[b][perm_b].copy()
        ad_b.obs_names = [f"{b}_{j}" for j in range(n)]
        inv = np.empty(n, dtype=int)
        inv[perm_b] = np.arange(n)
        train = md.MuData({a: ad_a, b: ad_b})
        query = {a: ad_a, b: ad_b}
        return Split("P2", name, mods, **keys, train=train, query=query, pairs=(np.arange(n), inv))
    if protocol == "P3":
        names_a, names_b = mdata.mod[a].obs_names, mdata.mod[b].obs_names
        query = {
            a: mdata.mod[a][~names_a.isin(names_b)].copy(),
            b: mdata.mod[b][~names_b.isin(names_a)].copy(),
        }
        return Split("P3", name, mods, **keys, train=mdata, query=query, pairs=None)
    raise ValueError(f"Unknown protocol {protocol!r}.")


def scored_arrays(split: Split, embeddings: dict[str, np.ndarray]) -> tuple:
    """``(z_a, z_b, labels_a, labels_b, paired)``, rows put into true pairs when known."""
    a, b = split.modalities
    z_a, z_b = np.asarray(embeddings[a]), np.asarray(embeddings[b])
    lab_a = split.query[a].obs[split.labels_key].astype(str).to_numpy()
    lab_b = split.query[b].obs[split.labels_key].astype(str).to_numpy()
    if split.pairs is not None:
        ra, rb = split.pairs
        z_a, z_b, lab_a, lab_b = z_a[ra], z_b[rb], lab_a[ra], lab_b[rb]
    return z_a, z_b, lab_a, lab_b, split.pairs is not None


def score_split(split: Split, embeddings: dict[str, np.ndarray], k: int = 5) -> dict[str, float]:
    """:func:`scmint.metrics.integration_scores` of the query cells' embeddings."""
    from scmint.metrics import integration_scores

    z_a, z_b, lab_a, lab_b, paired = scored_arrays(split, embeddings)
    scores = integration_scores(z_a, z_b, labels_a=lab_a, labels_b=lab_b, paired=paired, k=k)
    return {key: float(val) for key, val in scores.items()}


def fit_model(
    split: Split,
    cls: type,
    *,
    max_epochs: int | None = None,
    seed: int = 0,
    use_labels: bool = True,
    train_kwargs: dict | None = None,
    **model_kwargs,
) -> SimpleNamespace:
    """Train ``cls`` on ``split.train`` and embed the query cells one modality at a time.

    The steps of the harness for scmint's models, in the same order (so the same random
    draws): seed, ``pad_mudata``, ``setup_mudata``, build, ``train``, embed.

    Returns
    -------
    types.SimpleNamespace
        ``model``, ``embeddings`` (per modality, one row per query cell) and
        ``translate(source, target) -> (prediction, space)`` (``space``: the model's
        ``translation_space``).
    """
    import scvi

    from scmint.data import pad_mudata

    scvi.settings.seed = seed
    mdata = pad_mudata(split.train, modalities=list(split.modalities))
    cls.setup_mudata(
        mdata,
        modalities=list(split.modalities),
        labels_key=split.labels_key if use_labels else None,
        batch_key=split.batch_key,
    )
    model = cls(mdata, **model_kwargs)
    kw = dict(train_kwargs or {})
    if max_epochs is not None:
        kw["max_epochs"] = max_epochs
    model.train(**kw)
    embeddings = {
        m: np.asarray(model.get_latent_representation(split.query[m], modality=m))
        for m in split.modalities
    }

    def translate(source: str, target: str) -> tuple[np.ndarray, str]:
        out = model.translate(split.query[source], source=source, target=target)
        return out.X, cls.translation_space

    return SimpleNamespace(model=model, embeddings=embeddings, translate=translate)
