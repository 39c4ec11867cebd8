"""Plot the peak-gene correlations of one gene against the peaks' distance to its TSS."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from ._utils import finish, new_or_given_axes


def peak_gene_correlation(
    table: pd.DataFrame,
    gene: str,
    fdr: float | None = 0.05,
    label_top: int = 3,
    *,
    ax: Axes | None = None,
    title: str | None = None,
    save: str | Path | None = None,
    show: bool | None = None,
) -> Axes | None:
    """Correlation of one gene with each nearby peak against the peak's distance to the TSS.

    Plots the output of :func:`scmint.tl.peak_gene_correlation`. One stem per peak at its
    signed distance to the TSS (kb; negative = upstream), with height the correlation
    ``rho``; peaks with ``fdr`` below the threshold are drawn in colour, the others in
    grey, and the ``label_top`` strongest positive links are labelled with the peak name.

    Parameters
    ----------
    table
        Output of :func:`scmint.tl.peak_gene_correlation` (columns ``gene``, ``peak``,
        ``distance``, ``rho``; ``fdr`` optional).
    gene
        Gene to plot.
    fdr
        Significance threshold on the ``fdr`` column; None colours every peak alike.
    label_top
        Number of highest-``rho`` peaks to label with their names.
    ax
        Axes to draw into (e.g. one panel of a larger figure); a new figure when None.
    title
        Axes title; default the gene name and its number of peaks.
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
    missing = [c for c in ("gene", "peak", "distance", "rho") if c not in table.columns]
    if missing:
        raise KeyError(f"table lacks columns {missing}; expected peak_gene_correlation output")
    sub = table[table["gene"] == gene]
    if sub.empty:
        raise KeyError(f"gene {gene!r} has no peaks in the table")
    sub = sub.sort_values("distance")
    created = ax is None
    fig, ax = new_or_given_axes(ax, figsize=(6.5, 3.8))
    x = sub["distance"].to_numpy(dtype=np.float64) / 1e3
    rho = sub["rho"].to_numpy(dtype=np.float64)
    if fdr is not None and "fdr" in sub.columns:
        sig = sub["fdr"].to_numpy(dtype=np.float64) < fdr
    else:
        sig = np.ones(len(sub), dtype=bool)
    colors = np.where(sig, np.where(rho >= 0, "tab:red", "tab:blue"), "0.65")
    ax.vlines(x, 0, rho, colors=colors, linewidth=1.5)
    ax.scatter(x, rho, c=colors, s=22, zorder=3)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.axvline(0, color="black", linestyle="--", linewidth=0.8)
    if label_top > 0:
        top = np.argsort(-np.nan_to_num(rho, nan=-np.inf))[:label_top]
        for i in top:
            if np.isfinite(rho[i]):
                ax.annotate(
                    str(sub["peak"].iloc[i]),
                    (x[i], rho[i]),
                    textcoords="offset points",
                    xytext=(3, 4),
                    fontsize=7,
                )
    ax.set_xlabel("peak centre - TSS (kb, along the gene's strand)")
    ax.set_ylabel("correlation (rho)")
    ax.set_ylim(min(-1.05, np.nanmin(rho) - 0.05), 1.1)
    if title is None:
        title = f"{gene}: {len(sub)} peaks"
        if fdr is not None and "fdr" in sub.columns:
            title += f", {int(sig.sum())} with FDR < {fdr:g}"
    ax.set_title(title)
    return finish(fig, ax, show=show, save=save, created=created)
