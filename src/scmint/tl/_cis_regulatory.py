"""Cis-regulatory inference: correlation of genes with nearby peaks across mini-bulks.

Following MinNet's downstream analysis (written for any model): after smoothing
(:func:`scmint.tl.smooth`) and mini-bulk aggregation (:func:`scmint.tl.minibulk`), the
expression of each gene is correlated (Spearman) with the accessibility of every peak
within 150 kb of its TSS; unusually high correlations of distal peaks suggest
regulatory elements. Only candidate pairs are ever computed (no genes x peaks dense
matrix), so memory grows with the number of pairs.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData
from scipy import stats

from ..data._validation import get_matrix
from ..pp._gene_activity import parse_peak_names, peak_gene_links, read_genes
from ..pp._utils import as_float_matrix, log_normalize_rows

_PAIR_CHUNK = 200_000  # candidate pairs per vectorised block
_COLUMNS = ["gene", "peak", "distance", "rho", "pvalue", "fdr"]


def _bulk_matrix(
    adata: AnnData, layer: str | None, cols: np.ndarray, normalize: bool
) -> np.ndarray:
    """Dense bulks x ``cols`` matrix, library-size normalised and log1p-transformed."""
    X = get_matrix(adata, layer)
    if normalize:
        if np.any(np.asarray(X.sum(axis=1)).ravel() <= 0):
            raise ValueError("a mini-bulk has no counts; drop it before correlating")
        X = log_normalize_rows(as_float_matrix(X, np.float64))
    X = X[:, cols]
    X = X.toarray() if sp.issparse(X) else np.asarray(X)
    return np.asarray(X, dtype=np.float64)


def _standardise(X: np.ndarray) -> np.ndarray:
    """Centre each column and scale it to unit norm (all-constant columns become NaN)."""
    X = X - X.mean(axis=0, keepdims=True)
    norm = np.sqrt((X**2).sum(axis=0, keepdims=True))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, X / np.where(norm > 0, norm, 1.0), np.nan)


def peak_gene_correlation(
    rna: AnnData,
    atac: AnnData,
    genes: pd.DataFrame | str | Path | None = None,
    window: int | tuple[int, int] = 150_000,
    method: Literal["spearman", "pearson"] = "spearman",
    genes_subset: Sequence[str] | None = None,
    normalize: bool = True,
    rna_layer: str | None = None,
    atac_layer: str | None = None,
) -> pd.DataFrame:
    """Correlate genes with the peaks near their TSS across mini-bulks (or cells).

    Candidate pairs are the peaks overlapping ``[TSS - upstream, TSS + downstream]``
    (strand aware; :func:`scmint.pp.peak_gene_links` with ``gene_body=False``). For every
    pair the Spearman (rank) or Pearson correlation of the gene's expression and the
    peak's accessibility over the rows shared by ``rna`` and ``atac`` is computed in
    vectorised blocks over the sparse pair list. Two-sided p-values come from the t
    distribution with ``n - 2`` degrees of freedom (as :func:`scipy.stats.spearmanr` /
    :func:`scipy.stats.pearsonr`); ``fdr`` are Benjamini-Hochberg adjusted p-values
    (:func:`scipy.stats.false_discovery_control`) over all pairs of the table.

    Parameters
    ----------
    rna
        Mini-bulks (or cells) x genes, e.g. from :func:`scmint.tl.minibulk`. Not modified.
    atac
        Mini-bulks x peaks, peaks named ``chr-start-end`` / ``chr_start_end`` /
        ``chr:start-end``. Rows are matched to ``rna`` by name when the two share
        names (rows in only one are ignored), otherwise by position (same row count).
    genes
        Gene coordinates: a table (``chrom``, ``start``, ``end``, ``strand``; names in
        ``gene_name`` or the index) or a GTF/BED path, see :func:`scmint.pp.read_genes`;
        entries are matched to ``rna.var_names`` by name. None: the columns ``chrom``,
        ``start``, ``end`` (BED-style) and ``strand`` (optional) of ``rna.var``; genes
        with missing coordinates are skipped.
    window
        Bases around the TSS: one number for both sides, or ``(upstream, downstream)``.
    method
        ``"spearman"`` (default, as the MinNet paper) or ``"pearson"``.
    genes_subset
        Only these genes (names of ``rna.var_names``).
    normalize
        Normalise each row to its library size (counts per 10^4) and ``log1p`` before
        correlating (recommended for mini-bulks of different sizes; the log does not
        change Spearman correlations). False: use the values as given.
    rna_layer, atac_layer
        Layers holding the values instead of ``X``.

    Returns
    -------
    DataFrame with one row per candidate pair, sorted by gene (``rna.var`` order) then
    peak position, columns ``gene`` (str), ``peak`` (str), ``distance`` (int64: peak
    centre minus TSS in bp, signed along the gene's strand: negative upstream, positive
    downstream; genomic orientation for unstranded genes), ``rho``, ``pvalue`` and
    ``fdr`` (float64; NaN where a gene or peak is constant over the rows).

    Examples
    --------
    >>> from scmint.data import simulate_multiome
    >>> from scmint.tl._minibulk import minibulk
    >>> from scmint.tl._cis_regulatory import peak_gene_correlation
    >>> m = simulate_multiome(n_cells=600, n_genes=100, n_peaks=300, paired_fraction=1.0)
    >>> rna = minibulk(m["rna"], "X_true", "cell_type", n_bulks=30)
    >>> atac = minibulk(m["atac"], "X_true", "cell_type", n_bulks=30)
    >>> table = peak_gene_correlation(rna, atac)
    >>> list(table.columns)
    ['gene', 'peak', 'distance', 'rho', 'pvalue', 'fdr']
    """
    if method not in ("spearman", "pearson"):
        raise ValueError(f"method must be 'spearman' or 'pearson', got {method!r}")
    upstream, downstream = (window, window) if np.isscalar(window) else tuple(window)
    if upstream < 0 or downstream < 0:
        raise ValueError(f"window must be non-negative, got {window}")

    # rows shared by the two modalities
    if rna.obs_names.equals(atac.obs_names):
        r_rows = a_rows = np.arange(rna.n_obs)
    else:
        common = rna.obs_names.intersection(atac.obs_names, sort=False)
        if len(common):
            r_rows = rna.obs_names.get_indexer(common)
            a_rows = atac.obs_names.get_indexer(common)
        elif rna.n_obs == atac.n_obs:
            r_rows = a_rows = np.arange(rna.n_obs)
        else:
            raise ValueError(
                f"rna ({rna.n_obs} rows) and atac ({atac.n_obs} rows) share no row names"
            )
    n = len(r_rows)
    if n < 3:
        raise ValueError(f"need at least 3 shared rows (mini-bulks) to correlate, got {n}")

    # gene coordinates matched to rna.var_names
    if genes is None:
        missing = [c for c in ("chrom", "start", "end") if c not in rna.var.columns]
        if missing:
            raise ValueError(
                f"rna.var lacks gene coordinate columns {missing}; pass genes= (a table or "
                "a GTF/BED path)"
            )
        cols = [c for c in ("chrom", "start", "end", "strand") if c in rna.var.columns]
        coords = rna.var[cols]
        located = coords[["chrom", "start", "end"]].notna().all(axis=1).to_numpy()
        if not located.any():
            raise ValueError("no gene of rna.var has coordinates (chrom, start, end)")
        # names are rna.var_names (a gene_name column of rna.var is not used)
        table = read_genes(coords[located])
    else:
        table = read_genes(genes)
    gene_idx = rna.var_names.get_indexer(table["gene_name"])
    if genes_subset is not None:
        subset = pd.Index(np.asarray(genes_subset).astype(str))
        absent = subset.difference(rna.var_names)
        if len(absent) == len(subset):
            raise ValueError("none of genes_subset is in rna.var_names")
        if len(absent):
            warnings.warn(
                f"{len(absent)} of {len(subset)} genes_subset are not in rna.var_names "
                f"(e.g. {list(absent[:3])})",
                UserWarning,
                stacklevel=2,
            )
        gene_idx = np.where(np.isin(gene_idx, rna.var_names.get_indexer(subset)), gene_idx, -1)
    keep_rows = np.flatnonzero(gene_idx >= 0)
    if keep_rows.size == 0:
        raise ValueError("no gene of the coordinate table is in rna.var_names")
    table = table.iloc[keep_rows].reset_index(drop=True)
    gene_idx = gene_idx[keep_rows]

    # candidate pairs (rows of the table x peaks) within the window around the TSS
    peaks = parse_peak_names(atac.var_names)
    L = peak_gene_links(peaks, table, upstream=upstream, downstream=downstream, gene_body=False)
    L = L.tocoo()
    t_row, p_idx = L.row.astype(np.int64), L.col.astype(np.int64)
    g_idx = gene_idx[t_row]
    strand = table["strand"].to_numpy().astype(str)[t_row]
    tss = np.where(
        strand == "-",
        table["end"].to_numpy(dtype=np.int64)[t_row] - 1,
        table["start"].to_numpy(dtype=np.int64)[t_row],
    )
    p_start = peaks["start"].to_numpy(dtype=np.int64)[p_idx]
    p_end = peaks["end"].to_numpy(dtype=np.int64)[p_idx]
    centre = (p_start + p_end) // 2
    distance = np.where(strand == "-", tss - centre, centre - tss)
    # a gene listed twice in the table: keep each (gene, peak) pair once, nearest TSS
    order = np.lexsort((np.abs(distance), p_idx, g_idx))
    g_idx, p_idx, distance = g_idx[order], p_idx[order], distance[order]
    first = np.ones(g_idx.size, dtype=bool)
    first[1:] = (g_idx[1:] != g_idx[:-1]) | (p_idx[1:] != p_idx[:-1])
    g_idx, p_idx, distance = g_idx[first], p_idx[first], distance[first]
    # order: gene (rna.var order), then peak position
    pos = peaks["start"].to_numpy(dtype=np.int64)[p_idx]
    order = np.lexsort((p_idx, pos, g_idx))
    g_idx, p_idx, distance = g_idx[order], p_idx[order], distance[order]
    if g_idx.size == 0:
        return pd.DataFrame(
            {
                "gene": pd.Series(dtype=object),
                "peak": pd.Series(dtype=object),
                "distance": pd.Series(dtype=np.int64),
                "rho": pd.Series(dtype=np.float64),
                "pvalue": pd.Series(dtype=np.float64),
                "fdr": pd.Series(dtype=np.float64),
            }
        )

    # standardised (ranked) columns of the genes and peaks that appear in pairs
    ug, g_loc = np.unique(g_idx, return_inverse=True)
    up, p_loc = np.unique(p_idx, return_inverse=True)
    G = _bulk_matrix(rna, rna_layer, ug, normalize)[r_rows]
    P = _bulk_matrix(atac, atac_layer, up, normalize)[a_rows]
    if method == "spearman":
        G = stats.rankdata(G, axis=0)
        P = stats.rankdata(P, axis=0)
    Gz = _standardise(G).T.copy()  # features x bulks
    Pz = _standardise(P).T.copy()
    rho = np.empty(g_idx.size, dtype=np.float64)
    for s in range(0, g_idx.size, _PAIR_CHUNK):
        e = min(s + _PAIR_CHUNK, g_idx.size)
        rho[s:e] = np.einsum("ij,ij->i", Gz[g_loc[s:e]], Pz[p_loc[s:e]])
    np.clip(rho, -1.0, 1.0, out=rho)

    # two-sided p-values from the t distribution (n - 2 degrees of freedom)
    dof = n - 2
    with np.errstate(divide="ignore", invalid="ignore"):
        t = rho * np.sqrt(dof / ((1.0 - rho) * (1.0 + rho)))
    pvalue = 2.0 * stats.t.sf(np.abs(t), dof)
    fdr = np.full_like(pvalue, np.nan)
    finite = np.isfinite(pvalue)
    if finite.any():
        fdr[finite] = stats.false_discovery_control(pvalue[finite], method="bh")

    return pd.DataFrame(
        {
            "gene": np.asarray(rna.var_names, dtype=object)[g_idx],
            "peak": np.asarray(atac.var_names, dtype=object)[p_idx],
            "distance": distance.astype(np.int64),
            "rho": rho,
            "pvalue": pvalue,
            "fdr": fdr,
        }
    )
