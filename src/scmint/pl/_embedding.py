"""Embedding plots: the same cells coloured by modality, cell type, batch."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import matplotlib.pyplot as plt  # noqa: E402
import scanpy as sc  # noqa: E402


def embedding(
    adata: ad.AnnData,
    color: Sequence[str] = ("modality", "cell_type"),
    basis: str = "umap",
    title: str | None = None,
    save: str | Path | None = None,
    point_size: float | None = None,
) -> plt.Figure:
    """Plot an embedding in one panel per ``color`` column, side by side.

    Parameters
    ----------
    adata
        AnnData with ``obsm[f"X_{basis}"]`` (see :func:`scmint.tl.umap`) and the
        ``obs`` columns named in ``color``.
    color
        ``obs`` columns to colour by; missing ones raise a clear error.
    basis
        Embedding basis, e.g. ``"umap"``.
    title
        Figure title.
    save
        Path of a PNG/PDF to write; None writes nothing.
    point_size
        Marker size; scanpy's default when None.

    Returns
    -------
    The matplotlib figure.
    """
    missing = [c for c in color if c not in adata.obs.columns]
    if missing:
        raise KeyError(f"Cannot colour by {missing}: not columns of obs ({list(adata.obs)}).")
    if f"X_{basis}" not in adata.obsm:
        raise KeyError(
            f"obsm['X_{basis}'] not found; compute it first, e.g. scmint.tl.umap(adata)."
        )
    fig, axes = plt.subplots(1, len(color), figsize=(5.5 * len(color), 4.5), squeeze=False)
    for ax, key in zip(axes[0], color, strict=True):
        sc.pl.embedding(
            adata, basis=basis, color=key, ax=ax, show=False, size=point_size, frameon=False
        )
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if save is not None:
        fig.savefig(save, dpi=120, bbox_inches="tight")
    return fig
