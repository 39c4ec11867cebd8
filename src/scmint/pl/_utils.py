"""What every plot shares: where to draw (``ax=``), whether to show (``show=``), saving."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure


def new_or_given_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    """The figure and axes to draw a single-panel plot into: ``ax``'s, or new ones."""
    if ax is None:
        return plt.subplots(figsize=figsize)
    if not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes or None, got {type(ax).__name__}.")
    return ax.figure, ax


def panel_axes(
    ax: Axes | Sequence[Axes] | Figure | None,
    n: int,
    figsize: tuple[float, float],
) -> tuple[Figure, list[Axes]]:
    """The figure and ``n`` side-by-side axes of a multi-panel plot.

    ``ax`` None: a new figure; a :class:`~matplotlib.figure.Figure`: ``n`` panels added
    to it (it should be empty); an Axes (``n == 1``) or a sequence of ``n`` Axes: those.
    """
    if ax is None:
        fig, axes = plt.subplots(1, n, figsize=figsize, squeeze=False)
        return fig, list(axes[0])
    if isinstance(ax, Figure):
        axes = ax.subplots(1, n, squeeze=False)
        return ax, list(axes[0])
    axes = [ax] if isinstance(ax, Axes) else list(ax)
    if len(axes) != n or not all(isinstance(a, Axes) for a in axes):
        raise ValueError(
            f"ax must be a Figure, or {n} Axes (one per panel), got {len(axes)} object(s)."
        )
    return axes[0].figure, axes


def finish(
    fig: Figure,
    result: Any,
    *,
    show: bool | None,
    save: str | Path | None,
    created: bool,
    relayout: bool | None = None,
    dpi: int = 120,
) -> Any:
    """Save ``fig``, then show it and return None, or return ``result`` without showing.

    ``show=None`` shows the figure only if the plot function created it (no ``ax=``
    given), so panels drawn into a caller's axes are not shown half-finished.
    ``relayout`` (default ``created``) runs ``tight_layout`` on the figure first.
    """
    if created if relayout is None else relayout:
        fig.tight_layout()
    if save is not None:
        fig.savefig(save, dpi=dpi, bbox_inches="tight")
    if show is None:
        show = created
    if show:
        plt.show()
        return None
    return result
