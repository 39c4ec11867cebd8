"""Label transfer by distance-weighted nearest neighbours in a shared embedding."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd


def _as_embedding(z: Any, name: str) -> np.ndarray:
    if hasattr(z, "detach"):
        z = z.detach().cpu().numpy()
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2 or z.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array (cells x dimensions).")
    if not np.isfinite(z).all():
        n = int((~np.isfinite(z)).any(axis=1).sum())
        raise ValueError(f"{name} holds NaN or infinite values in {n} cells.")
    return z


def transfer_labels(
    z_ref: Any,
    labels_ref: Any,
    z_query: Any,
    k: int = 5,
    weights: Literal["distance", "uniform"] = "distance",
    return_confidence: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Transfer labels from reference to query cells by k-nearest-neighbour vote.

    MinNet's downstream label transfer: each query cell takes the label with the
    largest summed weight among its ``k`` nearest reference cells in the co-embedding,
    each neighbour weighted by the inverse of its distance.

    Parameters
    ----------
    z_ref
        Reference embedding, cells x dimensions.
    labels_ref
        Label of each reference cell (missing values are not allowed).
    z_query
        Query embedding in the same space, cells x dimensions.
    k
        Number of neighbours (capped at the number of reference cells).
    weights
        ``"distance"``: weight ``1 / (distance + 1e-12)``; ``"uniform"``: majority vote.
    return_confidence
        Also return each query cell's winning share of the weight (in ``[0, 1]``).

    Returns
    -------
    Predicted labels (an object array of the reference labels' values); with
    ``return_confidence`` also the confidences.

    Examples
    --------
    >>> import numpy as np
    >>> from scmint.tl._label_transfer import transfer_labels
    >>> z_ref = np.array([[0.0], [0.1], [5.0], [5.1]])
    >>> transfer_labels(z_ref, ["a", "a", "b", "b"], np.array([[0.05], [4.9]]), k=2).tolist()
    ['a', 'b']
    """
    from sklearn.neighbors import NearestNeighbors

    z_ref = _as_embedding(z_ref, "z_ref")
    z_query = _as_embedding(z_query, "z_query")
    if z_ref.shape[1] != z_query.shape[1]:
        raise ValueError(
            f"z_ref and z_query must have the same dimensions, got {z_ref.shape[1]} and "
            f"{z_query.shape[1]}."
        )
    labels = pd.Series(np.asarray(labels_ref, dtype=object).ravel())
    if len(labels) != z_ref.shape[0]:
        raise ValueError(f"{len(labels)} labels for {z_ref.shape[0]} reference cells.")
    if labels.isna().any():
        raise ValueError(
            f"labels_ref has {int(labels.isna().sum())} missing values; drop those cells."
        )
    if weights not in ("distance", "uniform"):
        raise ValueError(f"weights must be 'distance' or 'uniform', got {weights!r}.")
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}.")
    k = min(int(k), z_ref.shape[0])
    codes, classes = pd.factorize(labels, sort=True)
    dist, idx = NearestNeighbors(n_neighbors=k).fit(z_ref).kneighbors(z_query)
    w = 1.0 / (dist + 1e-12) if weights == "distance" else np.ones_like(dist)
    votes = np.zeros((z_query.shape[0], len(classes)))
    rows = np.repeat(np.arange(z_query.shape[0]), k)
    np.add.at(votes, (rows, codes[idx].ravel()), w.ravel())
    best = votes.argmax(axis=1)
    predicted = np.asarray(classes, dtype=object)[best]
    if return_confidence:
        confidence = votes[np.arange(len(best)), best] / votes.sum(axis=1)
        return predicted, confidence
    return predicted
