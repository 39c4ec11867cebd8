"""Plot of an in-silico perturbation screen."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def perturbation_screen(
    result: pd.DataFrame,
    n_top: int = 20,
    title: str | None = None,
    save: str | Path | None = None,
) -> plt.Figure:
    """Bar chart of the features that move a state furthest toward the reference.

    Parameters
    ----------
    result
        Output of :func:`scmint.tl.perturbation_screen`.
    n_top
        Features shown (highest ``score``).
    title
        Figure title (default: state -> reference).
    save
        Path of a PNG/PDF to write; None writes nothing.

    Returns
    -------
    The figure: one bar per feature and factor (shift of the mean cosine distance to the
    reference; positive = closer).
    """
    score_cols = [c for c in result.columns if c.startswith("score_")]
    if not score_cols:
        raise ValueError("result has no score_<factor> columns; pass perturbation_screen output.")
    top = result.sort_values("score", ascending=False).head(n_top)
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(top) + 1.5))
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
    fig.tight_layout()
    if save is not None:
        fig.savefig(save)
    return fig
