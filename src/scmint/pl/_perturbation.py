"""Plot of an in-silico perturbation screen."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from ._utils import finish, new_or_given_axes


def perturbation_screen(
    result: pd.DataFrame,
    n_top: int = 20,
    *,
    ax: Axes | None = None,
    title: str | None = None,
    save: str | Path | None = None,
    show: bool | None = None,
) -> Axes | None:
    """Bar chart of the features that move a state furthest toward the reference.

    Plots the output of :func:`scmint.tl.perturbation_screen`: one bar per feature and
    factor, the shift of the mean cosine distance to the reference (positive = closer).

    Parameters
    ----------
    result
        Output of :func:`scmint.tl.perturbation_screen`.
    n_top
        Features shown (highest ``score``).
    ax
        Axes to draw into (e.g. one panel of a larger figure); a new figure when None.
    title
        Axes title (default: state -> reference).
    save
        Path of a PNG/PDF to write (the whole figure ``ax`` belongs to); None writes
        nothing.
    show
        Show the figure (and return None). None (default) shows it when the function
        created it, i.e. no ``ax`` was given; with ``ax`` it returns the Axes unshown.

    Returns
    -------
    The Axes drawn into if not shown, else None.
    """
    score_cols = [c for c in result.columns if c.startswith("score_")]
    if not score_cols:
        raise ValueError("result has no score_<factor> columns; pass perturbation_screen output.")
    top = result.sort_values("score", ascending=False).head(n_top)
    created = ax is None
    fig, ax = new_or_given_axes(ax, figsize=(6, 0.3 * len(top) + 1.5))
    height = 0.8 / len(score_cols)
    pos = np.arange(len(top))
    for i, col in enumerate(score_cols):
        ax.barh(pos + i * height, top[col], height=height, label=f"x{col.removeprefix('score_')}")
    ax.set_yticks(pos + 0.4 - height / 2)
    ax.set_yticklabels(top.index)
    ax.invert_yaxis()
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_xlabel("decrease of mean cosine distance to reference")
    attrs = result.attrs
    ax.set_title(title or f"{attrs.get('state', 'state')} -> {attrs.get('reference', 'reference')}")
    ax.legend(title="factor", loc="lower right")
    return finish(fig, ax, show=show, save=save, created=created)
