"""Embedding plots: the same cells coloured by modality, cell type, batch."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import anndata as ad
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ._utils import finish, panel_axes


def embedding(
    adata: ad.AnnData,
    color: Sequence[str] = ("modality", "cell_type"),
    basis: str = "umap",
    *,
    ax: Axes | Sequence[Axes] | Figure | None = None,
    title: str | None = None,
    save: str | Path | None = None,
    point_size: float | None = None,
    show: bool | None = None,
) -> Figure | None:
    """Plot an embedding in one panel per ``color`` column, side by side.

    Each panel is :func:`scanpy.pl.embedding` of ``obsm[f"X_{basis}"]`` coloured by one
    ``obs`` column (as after :func:`scmint.tl.umap`).

    Parameters
    ----------
    adata
        AnnData with ``obsm[f"X_{basis}"]`` (see :func:`scmint.tl.umap`) and the
        ``obs`` columns named in ``color``.
    color
        ``obs`` columns to colour by; missing ones raise a clear error.
    basis
        Embedding basis, e.g. ``"umap"``.
    ax
        Where to draw the ``len(color)`` panels: None, a new figure; a (empty)
        :class:`~matplotlib.figure.Figure`, panels added to it side by side; a sequence
        of ``len(color)`` Axes (or one Axes for one colour), one panel in each.
    title
        Figure title (``suptitle`` of the figure the panels belong to).
    save
        Path of a PNG/PDF to write; None writes nothing.
    point_size
        Marker size; scanpy's default when None.
    show
        Show the figure (and return None). None (default) shows it when the function
        created it, i.e. no ``ax`` was given; with ``ax`` it returns the figure unshown.

    Returns
    -------
    The figure the panels were drawn into if not shown, else None.
    """
    import scanpy as sc  # imported when plotting, not with scmint.pl

    color = [color] if isinstance(color, str) else list(color)
    missing = [c for c in color if c not in adata.obs.columns]
    if missing:
        raise KeyError(f"Cannot colour by {missing}: not columns of obs ({list(adata.obs)}).")
    if f"X_{basis}" not in adata.obsm:
        raise KeyError(
            f"obsm['X_{basis}'] not found; compute it first, e.g. scmint.tl.umap(adata)."
        )
    created = ax is None
    fig, axes = panel_axes(ax, len(color), figsize=(5.5 * len(color), 4.5))
    for panel, key in zip(axes, color, strict=True):
        sc.pl.embedding(
            adata, basis=basis, color=key, ax=panel, show=False, size=point_size, frameon=False
        )
    if title:
        fig.suptitle(title)
    relayout = ax is None or isinstance(ax, Figure)  # laid out here, not by the caller
    return finish(fig, fig, show=show, save=save, created=created, relayout=relayout)
