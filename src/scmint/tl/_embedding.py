"""Put per-modality embeddings of one model into one AnnData for plotting and scoring."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp

from scmint._threads import keep_torch_threads


def store_embeddings(
    model: Any,
    mdata: Any = None,
    key_added: str | None = None,
    per_modality: bool = True,
    batch_size: int | None = None,
    copy: bool = False,
) -> Any:
    """Write a model's embeddings into ``mdata.obsm``, as scvi-tools tutorials do.

    ``obsm[key_added]`` receives the joint embedding
    (``model.get_latent_representation(mdata, modality="joint")``) and, with
    ``per_modality``, ``obsm[f"{key_added}_{modality}"]`` each modality's embedding, with
    NaN rows for cells not measured in it.

    Parameters
    ----------
    model
        A trained scmint model (MINNET, SCCROSS, CONAAE or CLUE).
    mdata
        The model's registered MuData (default: ``model.adata``) or a padded query MuData
        holding the model's modalities for the same cells.
    key_added
        Key of the joint embedding; default ``"X_<model>"`` (e.g. ``"X_clue"``).
    per_modality
        Also store one embedding per modality.
    batch_size
        Cells per forward pass.
    copy
        Return a copy with the embeddings instead of writing into ``mdata``.

    Returns
    -------
    ``None`` (``mdata.obsm`` is modified), or the modified copy when ``copy=True``.
    """
    target = model.adata if mdata is None else mdata
    if not hasattr(target, "obsm") or not hasattr(target, "mod"):
        raise TypeError(
            f"store_embeddings writes into a MuData, got {type(target).__name__}; for one "
            "modality's AnnData use adata.obsm[key] = model.get_latent_representation(adata)."
        )
    if copy:
        target = target.copy()
    query = None if mdata is None or mdata is model.adata else target
    key = key_added or model._latent_key
    target.obsm[key] = model.get_latent_representation(
        query, modality="joint", batch_size=batch_size
    )
    if per_modality:
        for m in model.modalities:
            target.obsm[f"{key}_{m}"] = model.get_latent_representation(
                query, modality=m, batch_size=batch_size, missing="nan"
            )
    return target if copy else None


def stack_embeddings(
    embeddings: Mapping[str, np.ndarray],
    obs: Mapping[str, pd.DataFrame],
    key_added: str = "X_emb",
    modality_key: str = "modality",
) -> ad.AnnData:
    """Stack per-modality embeddings of the same latent space into one AnnData.

    Parameters
    ----------
    embeddings
        ``{modality: cells x d array}``; all arrays share ``d``.
    obs
        ``{modality: obs DataFrame}`` with one row per embedded cell, in the same order
        (cell type, batch, ...).
    key_added
        Key of ``obsm`` that receives the stacked embedding.
    modality_key
        Name of the ``obs`` column that says which modality each row was embedded from.

    Returns
    -------
    AnnData with no features, ``obsm[key_added]`` holding the embeddings and ``obs``
    holding the given columns plus ``modality_key``. Row names are
    ``f"{cell}:{modality}"`` so the same cell may appear once per modality.
    """
    if set(embeddings) != set(obs):
        raise ValueError(
            f"embeddings and obs must name the same modalities, got {sorted(embeddings)} "
            f"and {sorted(obs)}."
        )
    dims = {m: np.asarray(z).shape[1] for m, z in embeddings.items()}
    if len(set(dims.values())) != 1:
        raise ValueError(f"Embeddings differ in dimension: {dims}.")
    frames = []
    for m, z in embeddings.items():
        frame = obs[m].copy()
        if len(frame) != len(z):
            raise ValueError(
                f"Modality '{m}': {len(z)} embedded cells but {len(frame)} rows of obs."
            )
        frame.index = [f"{c}:{m}" for c in frame.index]
        frame[modality_key] = m
        frames.append(frame)
    stacked_obs = pd.concat(frames, axis=0)
    for col in stacked_obs.columns:
        if stacked_obs[col].dtype == object:
            stacked_obs[col] = stacked_obs[col].astype("category")
    z_all = np.concatenate([np.asarray(embeddings[m], dtype=np.float32) for m in embeddings])
    out = ad.AnnData(obs=stacked_obs)
    out.obsm[key_added] = z_all
    return out


def umap(
    adata: ad.AnnData,
    use_rep: str = "X_emb",
    n_neighbors: int = 15,
    random_state: int = 0,
    copy: bool = False,
) -> ad.AnnData | None:
    """Compute a UMAP of ``obsm[use_rep]`` with scanpy (neighbours, then UMAP).

    Neighbours are exact below ``_EXACT_BELOW`` cells and from pynndescent above, as in
    scanpy (whose own pynndescent path fails with scipy >= 1.17's sparse arrays).

    Parameters
    ----------
    adata
        AnnData with the embedding in ``obsm[use_rep]``, e.g. from
        :func:`stack_embeddings`.
    use_rep
        ``obsm`` key of the embedding.
    n_neighbors
        Neighbours of the kNN graph.
    random_state
        Seed of the neighbour search and of UMAP.
    copy
        Return a copy with the results instead of writing them into ``adata``.

    Returns
    -------
    None, and ``adata`` gains ``obsm["X_umap"]``, ``obsp["distances"]`` /
    ``obsp["connectivities"]`` and ``uns["neighbors"]`` / ``uns["umap"]``; with
    ``copy=True`` a copy of ``adata`` with them, ``adata`` unchanged.
    """
    if copy:
        adata = adata.copy()
    transformer = None
    if adata.n_obs >= _EXACT_BELOW:
        transformer = _csr_pynndescent(
            n_neighbors=n_neighbors,
            random_state=random_state,
            n_trees=min(64, 5 + round(adata.n_obs**0.5 / 20.0)),
            n_iters=max(5, round(np.log2(adata.n_obs))),
        )
    with keep_torch_threads():  # scanpy's numba kernels reset torch's thread count
        sc.pp.neighbors(
            adata,
            use_rep=use_rep,
            n_neighbors=n_neighbors,
            random_state=random_state,
            transformer=transformer,
        )
        sc.tl.umap(adata, random_state=random_state)
    return adata if copy else None


_EXACT_BELOW = 4096  # scanpy's own switch from exact to approximate neighbours


def _csr_pynndescent(**kwargs: Any) -> Any:
    """The kNN transformer of pynndescent, returning ``scipy.sparse.csr_matrix``.

    scanpy 1.11 calls ``getnnz`` on the transformer's output, which scipy >= 1.17's
    ``csr_array`` no longer has.
    """
    from pynndescent import PyNNDescentTransformer

    class CsrPyNNDescentTransformer(PyNNDescentTransformer):
        def transform(self, X: Any, y: Any = None) -> sp.csr_matrix:
            return sp.csr_matrix(super().transform(X))

        def fit_transform(self, X: Any, y: Any = None, **fit_params: Any) -> sp.csr_matrix:
            return sp.csr_matrix(super().fit_transform(X, y, **fit_params))

    return CsrPyNNDescentTransformer(**kwargs)
