"""Thin wrappers over scib-metrics, and the combined score table.

The silhouette, graph-connectivity and clustering scores are computed by
:mod:`scib_metrics` itself; these wrappers only validate inputs, encode labels
(strings, categoricals, numbers; NaN/None = missing) and build the neighbour
graphs. :mod:`scib_metrics` (and JAX) are imported on first use.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np
import pandas as pd

from ._cross_modal import (
    _check_embedding,
    _check_k,
    _check_pair,
    _default_chunk,
    _directional_counts,
    _foscttm_from_counts,
    _label_array,
    _recall_from_counts,
    label_transfer_accuracy,
    matching_score,
)

Neighbors = Literal["auto", "pynndescent", "exact"]


def _labelled(z: Any, labels: Any, name: str = "labels") -> tuple[np.ndarray, np.ndarray]:
    """Embedding and integer label codes of the cells whose label is not missing."""
    z = _check_embedding(z, "z")
    values, missing = _label_array(labels, z.shape[0], name)
    keep = ~missing
    codes, _ = pd.factorize(values[keep])
    return z[keep], codes.astype(np.int64)


def _need_two(codes: np.ndarray, what: str = "labels") -> None:
    n_unique = np.unique(codes).size
    if n_unique < 2:
        raise ValueError(f"At least 2 distinct {what} are needed, got {n_unique}.")
    if n_unique >= codes.size:
        raise ValueError(
            f"Every cell has its own {what[:-1]} ({codes.size} cells): a silhouette is undefined."
        )


def _neighbors(z: np.ndarray, n_neighbors: int, neighbors: Neighbors):
    """k-nearest-neighbour graph (self included) as scib-metrics ``NeighborsResults``."""
    from scib_metrics.nearest_neighbors import NeighborsResults

    from ..pp import knn_indices

    n = z.shape[0]
    n_neighbors = _check_k(n_neighbors, n, name="n_neighbors")
    if neighbors not in ("auto", "pynndescent", "exact"):
        raise ValueError(
            f"neighbors must be one of 'auto', 'pynndescent', 'exact', got {neighbors!r}."
        )
    idx, dist = knn_indices(
        np.ascontiguousarray(z, dtype=np.float32), n_neighbors - 1, method=neighbors
    )
    self_idx = np.arange(n, dtype=idx.dtype)[:, None]
    return NeighborsResults(
        indices=np.hstack([self_idx, idx]),
        distances=np.hstack([np.zeros((n, 1), dtype=np.float32), dist]),
    )


def celltype_asw(z: Any, labels: Any, rescale: bool = True, chunk_size: int = 256) -> float:
    """Cell-type average silhouette width, :func:`scib_metrics.silhouette_label`.

    Parameters
    ----------
    z
        Embedding, cells x dimensions.
    labels
        Cell-type label of each row; cells with a missing (NaN/None) label are
        left out.
    rescale
        Rescale from [-1, 1] to ``(asw + 1) / 2`` in [0, 1], as scib does.
    chunk_size
        Rows of distances computed at a time by scib-metrics.

    Returns
    -------
    float
        Higher means cell types are better separated.
    """
    import scib_metrics

    z, codes = _labelled(z, labels)
    _need_two(codes)
    return float(
        scib_metrics.silhouette_label(
            z.astype(np.float32), codes, rescale=rescale, chunk_size=chunk_size
        )
    )


def modality_mixing_asw(
    z: Any,
    modality: Any,
    labels: Any | None = None,
    rescale: bool = True,
    chunk_size: int = 256,
) -> float:
    """Modality mixing within cell types, :func:`scib_metrics.silhouette_batch`.

    The modality is passed as the batch: for each cell type, the silhouette of
    the modality labels is computed, its absolute value taken and (with
    ``rescale``) turned into ``1 - |s|``, so 1 means the modalities are fully
    mixed within each cell type.

    Parameters
    ----------
    z
        Joint embedding of the cells of all modalities, cells x dimensions.
    modality
        Modality of each row (e.g. ``"rna"``/``"atac"``).
    labels
        Cell-type label of each row; ``None`` treats all cells as one type.
        Cells with a missing label or modality are left out.
    rescale
        Return ``1 - |silhouette|`` (higher is better), as scib does.
    chunk_size
        Rows of distances computed at a time by scib-metrics.

    Returns
    -------
    float
        Mixing score; NaN (with a warning) when no cell type holds cells of at
        least two modalities, because scib-metrics skips such types.
    """
    import scib_metrics

    z = _check_embedding(z, "z")
    mods, miss_mod = _label_array(modality, z.shape[0], "modality")
    if labels is None:
        labs, miss_lab = np.zeros(z.shape[0], dtype=object), np.zeros(z.shape[0], dtype=bool)
    else:
        labs, miss_lab = _label_array(labels, z.shape[0], "labels")
    keep = ~(miss_mod | miss_lab)
    z, mods, labs = z[keep], mods[keep], labs[keep]
    mod_codes, _ = pd.factorize(mods)
    lab_codes, _ = pd.factorize(labs)
    if np.unique(mod_codes).size < 2:
        raise ValueError("modality must hold at least 2 distinct modalities.")
    # scib-metrics skips label groups with one modality or one cell per modality
    usable = [
        g
        for g in np.unique(lab_codes)
        if 1 < np.unique(mod_codes[lab_codes == g]).size < np.sum(lab_codes == g)
    ]
    if not usable:
        warnings.warn(
            "No cell type holds cells of at least two modalities: modality mixing ASW is NaN.",
            stacklevel=2,
        )
        return float("nan")
    return float(
        scib_metrics.silhouette_batch(
            z.astype(np.float32), lab_codes, mod_codes, rescale=rescale, chunk_size=chunk_size
        )
    )


def batch_asw(
    z: Any, batch: Any, labels: Any | None = None, rescale: bool = True, chunk_size: int = 256
) -> float:
    """Batch mixing within cell types (scib's batch ASW, :func:`scib_metrics.silhouette_batch`).

    :func:`modality_mixing_asw` with batches in place of modalities: 1 means the
    batches are fully mixed within each cell type, 0 that they are separated.

    Parameters
    ----------
    z
        Embedding, cells x dimensions.
    batch
        Batch of each row.
    labels
        Cell-type label of each row; ``None`` treats all cells as one type.
    rescale, chunk_size
        As in :func:`modality_mixing_asw`.

    Returns
    -------
    float
        In [0, 1], higher is better; NaN (with a warning) when no cell type holds
        cells of two batches.
    """
    return modality_mixing_asw(z, batch, labels=labels, rescale=rescale, chunk_size=chunk_size)


def ilisi(z: Any, batch: Any, n_neighbors: int = 90, neighbors: Neighbors = "auto") -> float:
    """Integration LISI of the batches, :func:`scib_metrics.ilisi_knn` (scaled to [0, 1]).

    The inverse Simpson index of the batches among each cell's neighbours (perplexity
    ``n_neighbors / 3``), its median over cells, scaled as scib does:
    0 = every neighbourhood holds one batch, 1 = the batches are as mixed as their
    sizes allow.

    Parameters
    ----------
    z
        Embedding, cells x dimensions.
    batch
        Batch of each row (two or more batches; missing values are not allowed).
    n_neighbors
        Neighbours per cell, self included (90, scib's default).
    neighbors
        Search method, see :func:`graph_connectivity`.

    Returns
    -------
    float
        In [0, 1], higher is better.
    """
    import scib_metrics

    z = _check_embedding(z, "z")
    batches, missing = _label_array(batch, z.shape[0], "batch")
    if missing.any():
        raise ValueError(f"batch has {int(missing.sum())} missing values; give every cell one.")
    codes, _ = pd.factorize(batches)
    _need_two(codes, "batches")
    nn = _neighbors(z, min(n_neighbors, z.shape[0]), neighbors)
    return float(scib_metrics.ilisi_knn(nn, codes, scale=True))


def graph_connectivity(
    z: Any, labels: Any, n_neighbors: int = 15, neighbors: Neighbors = "auto"
) -> float:
    """Graph connectivity of each cell type, :func:`scib_metrics.graph_connectivity`.

    For each label, the fraction of its cells in the largest connected component
    of the kNN graph restricted to that label, averaged over labels.

    Parameters
    ----------
    z
        Embedding, cells x dimensions.
    labels
        Label of each row; cells with a missing label are left out before the
        graph is built.
    n_neighbors
        Neighbours per cell, self included (as in scib-metrics).
    neighbors
        Search method of :func:`scmint.pp.knn_indices`: ``"pynndescent"``
        (approximate; its first call in a process compiles for about a minute),
        ``"exact"`` (scikit-learn) or ``"auto"`` (exact up to 30,000 cells).

    Returns
    -------
    float
        In (0, 1], higher is better.
    """
    import scib_metrics

    z, codes = _labelled(z, labels)
    nn = _neighbors(z, n_neighbors, neighbors)
    return float(scib_metrics.graph_connectivity(nn, codes))


def nmi_ari(
    z: Any,
    labels: Any,
    n_neighbors: int = 15,
    cluster_method: Literal["leiden", "kmeans"] = "leiden",
    neighbors: Neighbors = "auto",
    seed: int = 42,
) -> dict[str, float]:
    """NMI and ARI between clusters of the embedding and the labels (scib-metrics).

    Parameters
    ----------
    z
        Embedding, cells x dimensions.
    labels
        Label of each row; cells with a missing label are left out.
    n_neighbors
        Neighbours of the graph Leiden clusters (self included).
    cluster_method
        ``"leiden"``: :func:`scib_metrics.nmi_ari_cluster_labels_leiden` over 10
        resolutions, keeping the best NMI; ``"kmeans"``:
        :func:`scib_metrics.nmi_ari_cluster_labels_kmeans` with as many clusters
        as labels (faster on large data).
    neighbors
        How the graph is built, see :func:`graph_connectivity`.
    seed
        Seed of the Leiden clustering.

    Returns
    -------
    dict
        ``{"nmi": float, "ari": float}``.
    """
    import scib_metrics

    z, codes = _labelled(z, labels)
    if cluster_method == "leiden":
        nn = _neighbors(z, n_neighbors, neighbors)
        out = scib_metrics.nmi_ari_cluster_labels_leiden(nn, codes, seed=seed)
    elif cluster_method == "kmeans":
        out = scib_metrics.nmi_ari_cluster_labels_kmeans(z.astype(np.float32), codes)
    else:
        raise ValueError(f"cluster_method must be 'leiden' or 'kmeans', got {cluster_method!r}.")
    return {"nmi": float(out["nmi"]), "ari": float(out["ari"])}


SCORE_KEYS = (
    "foscttm",
    "matching_score",
    "recall_at_10",
    "label_transfer_a_to_b",
    "label_transfer_b_to_a",
    "celltype_asw",
    "modality_asw",
    "graph_connectivity",
)


def integration_scores(
    z_a: Any,
    z_b: Any,
    labels_a: Any | None = None,
    labels_b: Any | None = None,
    paired: bool = True,
    k: int = 5,
    n_neighbors: int = 15,
) -> dict[str, float]:
    """The standard row of scores of a two-modality integration.

    Parameters
    ----------
    z_a, z_b
        Embeddings of modality A and B, cells x dimensions (same dimensions).
    labels_a, labels_b
        Cell-type labels of the rows of ``z_a`` / ``z_b`` (optional).
    paired
        Row ``i`` of ``z_a`` and of ``z_b`` are the same cell: enables FOSCTTM,
        matching score (k = 10) and recall@10.
    k
        Neighbours of the label-transfer classifier.
    n_neighbors
        Neighbours of the graph for graph connectivity.

    Returns
    -------
    dict
        Always the keys ``"foscttm"``, ``"matching_score"``, ``"recall_at_10"``
        (NaN unless ``paired``), ``"label_transfer_a_to_b"``,
        ``"label_transfer_b_to_a"`` (NaN unless both label arrays are given),
        ``"celltype_asw"``, ``"graph_connectivity"`` (on the joint embedding of A
        and B cells; NaN without labels) and ``"modality_asw"`` (joint embedding,
        modality ``'a'``/``'b'`` as batch, within cell types when both label
        arrays are given, else over all cells).
    """
    z_a, z_b = _check_pair(z_a, z_b, paired=paired)
    nan = float("nan")
    scores = dict.fromkeys(SCORE_KEYS, nan)
    if paired:
        n = z_a.shape[0]
        _check_k(10, n, what="paired cells (recall@10 and the matching score use k=10)")
        # one pass of distances serves FOSCTTM and recall@10
        counts = _directional_counts(z_a, z_b, "both", _default_chunk(n, None))
        scores["foscttm"] = _foscttm_from_counts(counts, n)
        scores["recall_at_10"] = _recall_from_counts(counts, 10)
        scores["matching_score"] = matching_score(z_a, z_b, k=10)

    n_a, n_b = z_a.shape[0], z_b.shape[0]
    if labels_a is not None:
        lab_a, _ = _label_array(labels_a, n_a, "labels_a")
    if labels_b is not None:
        lab_b, _ = _label_array(labels_b, n_b, "labels_b")
    if labels_a is not None and labels_b is not None:
        scores["label_transfer_a_to_b"] = label_transfer_accuracy(
            z_a, lab_a, z_b, lab_b, k=k, direction="a_to_b"
        )
        scores["label_transfer_b_to_a"] = label_transfer_accuracy(
            z_a, lab_a, z_b, lab_b, k=k, direction="b_to_a"
        )

    joint = np.vstack([z_a, z_b])
    modality = np.array(["a"] * n_a + ["b"] * n_b, dtype=object)
    if labels_a is None and labels_b is None:
        joint_labels = None
    else:
        joint_labels = np.concatenate(
            [
                lab_a if labels_a is not None else np.full(n_a, None, dtype=object),
                lab_b if labels_b is not None else np.full(n_b, None, dtype=object),
            ]
        )
    both = labels_a is not None and labels_b is not None
    scores["modality_asw"] = modality_mixing_asw(joint, modality, joint_labels if both else None)
    if joint_labels is not None:
        scores["celltype_asw"] = celltype_asw(joint, joint_labels)
        scores["graph_connectivity"] = graph_connectivity(
            joint, joint_labels, n_neighbors=n_neighbors
        )
    return scores
