"""Gene activity from chromatin accessibility: peak-gene links and cells x genes scores.

Coordinates are handled as BED intervals (0-based start, end exclusive). Peak names
such as ``chr1-100-200``, ``chr1_100_200`` and ``chr1:100-200`` are read as BED
intervals; GTF records (1-based, inclusive) are converted on reading.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from ._utils import get_matrix, to_csr

_PEAK_RE = re.compile(r"^(?P<chrom>.+)[:_-](?P<start>\d+)[_-](?P<end>\d+)$")
_GENE_COLUMNS = ("chrom", "start", "end", "strand")


def parse_peak_names(peak_names: Sequence[str]) -> pd.DataFrame:
    """Parse peak names into coordinates.

    Parameters
    ----------
    peak_names
        Names like ``"chr1-100-200"``, ``"chr1_100_200"`` or ``"chr1:100-200"``.

    Returns
    -------
    DataFrame with columns ``chrom`` (str), ``start``, ``end`` (int64; ``-1`` for names
    that could not be parsed) and ``parsed`` (bool), indexed by the names.
    """
    names = pd.Index(np.asarray(peak_names).astype(str))
    ext = names.to_series().str.extract(_PEAK_RE)
    parsed = ext["chrom"].notna().to_numpy()
    df = pd.DataFrame(index=names)
    df["chrom"] = ext["chrom"].fillna("").to_numpy()
    df["start"] = pd.to_numeric(ext["start"]).fillna(-1).astype(np.int64).to_numpy()
    df["end"] = pd.to_numeric(ext["end"]).fillna(-1).astype(np.int64).to_numpy()
    df["parsed"] = parsed
    return df


def read_gtf(path: str | Path, feature: str = "gene") -> pd.DataFrame:
    """Read gene records from a GTF file (plain or gzipped).

    Parameters
    ----------
    path
        GTF file.
    feature
        Value of the feature column to keep.

    Returns
    -------
    DataFrame with columns ``chrom``, ``start`` (0-based), ``end`` (exclusive),
    ``strand``, ``gene_id`` and ``gene_name`` (``gene_id`` where the record has no
    ``gene_name``).
    """
    gtf = pd.read_csv(
        path,
        sep="\t",
        comment="#",
        header=None,
        usecols=range(9),
        names=["chrom", "source", "feature", "start", "end", "score", "strand", "frame", "attr"],
        dtype={"chrom": str, "feature": str, "strand": str, "attr": str},
        compression="infer",
    )
    gtf = gtf[gtf["feature"] == feature]
    if gtf.empty:
        raise ValueError(f"no {feature!r} records in {path}")
    gene_id = gtf["attr"].str.extract(r'gene_id "([^"]*)"')[0]
    gene_name = gtf["attr"].str.extract(r'gene_name "([^"]*)"')[0]
    return pd.DataFrame(
        {
            "chrom": gtf["chrom"].to_numpy(),
            "start": gtf["start"].to_numpy(dtype=np.int64) - 1,
            "end": gtf["end"].to_numpy(dtype=np.int64),
            "strand": gtf["strand"].to_numpy(),
            "gene_id": gene_id.to_numpy(),
            "gene_name": gene_name.fillna(gene_id).to_numpy(),
        }
    )


def read_bed(path: str | Path) -> pd.DataFrame:
    """Read gene intervals from a BED file (``chrom start end name [score strand]``).

    Parameters
    ----------
    path
        BED file (plain or gzipped); at least four columns. Without a strand column
        (or with ``.``), genes are unstranded (see :func:`peak_gene_links`).

    Returns
    -------
    DataFrame with columns ``chrom``, ``start``, ``end``, ``strand``, ``gene_name``.
    """
    bed = pd.read_csv(
        path,
        sep="\t",
        comment="#",
        header=None,
        compression="infer",
        dtype={0: str, 3: str},
    )
    bed = bed[~bed[0].astype(str).str.startswith(("track", "browser"))]
    if bed.shape[1] < 4:
        raise ValueError(f"{path}: a gene BED needs at least 4 columns (chrom start end name)")
    strand = bed[5].astype(str).to_numpy() if bed.shape[1] >= 6 else np.full(len(bed), ".")
    return pd.DataFrame(
        {
            "chrom": bed[0].astype(str).to_numpy(),
            "start": bed[1].to_numpy(dtype=np.int64),
            "end": bed[2].to_numpy(dtype=np.int64),
            "strand": strand,
            "gene_name": bed[3].astype(str).to_numpy(),
        }
    )


def read_genes(genes: pd.DataFrame | str | Path) -> pd.DataFrame:
    """Return a gene coordinate table from a DataFrame, a GTF or a BED file.

    Parameters
    ----------
    genes
        DataFrame with columns ``chrom``, ``start``, ``end``, ``strand`` (optional,
        default ``"."``) and gene names in ``gene_name`` or the index (BED-style
        coordinates); or the path to a ``.gtf[.gz]`` or ``.bed[.gz]`` file.

    Returns
    -------
    DataFrame with columns ``chrom``, ``start``, ``end``, ``strand``, ``gene_name`` and a
    default index.
    """
    if isinstance(genes, str | Path):
        name = str(genes).lower().removesuffix(".gz")
        if name.endswith((".gtf", ".gff", ".gff3")):
            df = read_gtf(genes)
        elif name.endswith(".bed"):
            df = read_bed(genes)
        else:
            raise ValueError(f"{genes}: expected a .gtf or .bed file (optionally .gz)")
    elif isinstance(genes, pd.DataFrame):
        df = genes.copy()
        if "gene_name" not in df.columns:
            df["gene_name"] = df.index.astype(str)
        if "strand" not in df.columns:
            df["strand"] = "."
    else:
        raise TypeError("genes must be a DataFrame or the path to a GTF/BED file")
    missing = [c for c in ("chrom", "start", "end") if c not in df.columns]
    if missing:
        raise ValueError(f"gene table lacks columns {missing}")
    out = pd.DataFrame(
        {
            "chrom": df["chrom"].astype(str).to_numpy(),
            "start": df["start"].to_numpy(dtype=np.int64),
            "end": df["end"].to_numpy(dtype=np.int64),
            "strand": df["strand"].astype(str).to_numpy(),
            "gene_name": df["gene_name"].astype(str).to_numpy(),
        }
    )
    return out


def _gene_regions(
    genes: pd.DataFrame, upstream: int, downstream: int, gene_body: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Start/end of each gene's window: body (or TSS) + upstream before the TSS + downstream."""
    start = genes["start"].to_numpy(dtype=np.int64)
    end = genes["end"].to_numpy(dtype=np.int64)
    strand = genes["strand"].to_numpy().astype(str)
    minus = strand == "-"
    unstranded = ~(minus | (strand == "+"))
    if gene_body:
        lo, hi = start.copy(), end.copy()
    else:
        # TSS as a 1-bp interval
        tss = np.where(minus, end - 1, start)
        lo, hi = tss.copy(), tss + 1
    # plus strand: upstream to the left, downstream to the right of the gene
    r_lo = np.where(minus, lo - downstream, lo - upstream)
    r_hi = np.where(minus, hi + upstream, hi + downstream)
    # unknown strand: extend both sides by the larger window
    both = max(upstream, downstream)
    r_lo = np.where(unstranded, lo - both, r_lo)
    r_hi = np.where(unstranded, hi + both, r_hi)
    return np.maximum(r_lo, 0), r_hi


def peak_gene_links(
    peak_names: Sequence[str] | pd.DataFrame,
    genes: pd.DataFrame | str | Path,
    upstream: int = 2000,
    downstream: int = 0,
    gene_body: bool = True,
) -> sp.csr_matrix:
    """Binary genes x peaks matrix linking each gene to the peaks overlapping its window.

    A gene's window is its body (or its TSS if ``gene_body=False``) extended by
    ``upstream`` bp before the TSS and ``downstream`` bp after the gene end, strand
    aware (for ``-`` strand genes the TSS is the end coordinate). Genes with unknown
    strand (``.``) are extended by ``max(upstream, downstream)`` on both sides. A peak
    is linked when its interval overlaps the window (half-open intervals).

    Parameters
    ----------
    peak_names
        Peak names (see :func:`parse_peak_names`) or a DataFrame with ``chrom``,
        ``start``, ``end``.
    genes
        Gene table or GTF/BED path (see :func:`read_genes`).
    upstream
        Bases before the TSS.
    downstream
        Bases after the gene end (after the TSS if ``gene_body=False``).
    gene_body
        Include the gene body.

    Returns
    -------
    CSR matrix ``n_genes x n_peaks`` (float32, 0/1); rows follow the rows of the gene
    table (``read_genes(genes)``), columns the peaks.
    """
    gt = read_genes(genes)
    if isinstance(peak_names, pd.DataFrame):
        peaks = peak_names[["chrom", "start", "end"]].copy()
        peaks["parsed"] = True
    else:
        peaks = parse_peak_names(peak_names)
    n_bad = int((~peaks["parsed"].to_numpy()).sum())
    if n_bad == len(peaks) and len(peaks):
        raise ValueError(
            f"no peak name could be parsed as chrom-start-end (e.g. {list(peaks.index[:3])})"
        )
    if n_bad:
        warnings.warn(
            f"{n_bad} peak names could not be parsed as coordinates and are left unlinked",
            UserWarning,
            stacklevel=2,
        )
    r_lo, r_hi = _gene_regions(gt, upstream, downstream, gene_body)
    p_chrom = peaks["chrom"].to_numpy().astype(str)
    p_start = peaks["start"].to_numpy(dtype=np.int64)
    p_end = peaks["end"].to_numpy(dtype=np.int64)
    p_ok = peaks["parsed"].to_numpy(dtype=bool)
    g_chrom = gt["chrom"].to_numpy().astype(str)

    rows, cols = [], []
    for chrom in np.intersect1d(np.unique(g_chrom), np.unique(p_chrom[p_ok])):
        pidx = np.flatnonzero((p_chrom == chrom) & p_ok)
        order = np.argsort(p_start[pidx], kind="stable")
        pidx = pidx[order]
        ps, pe = p_start[pidx], p_end[pidx]
        max_w = int((pe - ps).max())
        gidx = np.flatnonzero(g_chrom == chrom)
        lo, hi = r_lo[gidx], r_hi[gidx]
        # candidates: peaks with start in (lo - max_w, hi), i.e. start < hi and possibly end > lo
        first = np.searchsorted(ps, lo - max_w, side="right")
        last = np.searchsorted(ps, hi, side="left")
        counts = np.maximum(last - first, 0)
        if counts.sum() == 0:
            continue
        g_rep = np.repeat(np.arange(len(gidx)), counts)
        offs = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        cand = np.repeat(first, counts) + offs
        keep = pe[cand] > lo[g_rep]
        rows.append(gidx[g_rep[keep]])
        cols.append(pidx[cand[keep]])
    if rows:
        r = np.concatenate(rows)
        c = np.concatenate(cols)
    else:
        r = c = np.zeros(0, dtype=np.int64)
    links = sp.csr_matrix((np.ones(len(r), dtype=np.float32), (r, c)), shape=(len(gt), len(peaks)))
    links.sum_duplicates()
    links.data[:] = 1.0
    return links


def gene_activity(
    atac: AnnData,
    genes: pd.DataFrame | str | Path | None = None,
    links: sp.spmatrix | sp.sparray | np.ndarray | str | Path | None = None,
    gene_names: Sequence[str] | None = None,
    upstream: int = 2000,
    downstream: int = 0,
    gene_body: bool = True,
    layer: str | None = None,
) -> AnnData:
    """Cells x genes activity: summed counts of the peaks linked to each gene.

    Give either gene coordinates (``genes``), from which links are built with
    :func:`peak_gene_links` from the peak names, or a genes x peaks ``links`` matrix
    whose columns follow ``atac.var_names`` (e.g. a ``gene_peak_prior.npz``) with its
    ``gene_names``.

    Parameters
    ----------
    atac
        Cells x peaks counts (not modified). Peaks are named ``chr-start-end``,
        ``chr_start_end`` or ``chr:start-end``.
    genes
        Gene coordinates: DataFrame or path to a GTF/BED file (see :func:`read_genes`).
    links
        Genes x peaks matrix (or ``.npz`` path), alternative to ``genes``.
    gene_names
        With ``links``: the names of its rows (required). With ``genes``: the genes to
        return and their order (e.g. ``rna.var_names``); names absent from the
        table become all-zero columns (with a warning). Default: every gene of the
        table, duplicated names merged.
    upstream, downstream, gene_body
        Gene windows, see :func:`peak_gene_links`.
    layer
        Layer of ``atac`` holding the counts.

    Returns
    -------
    AnnData ``n_cells x n_genes`` with sparse ``X = counts @ links.T``, ``obs`` copied
    from ``atac`` and ``var['n_peaks']`` (number of linked peaks per gene).
    """
    if (genes is None) == (links is None):
        raise ValueError("give exactly one of `genes` (coordinates) or `links` (matrix)")
    if links is not None:
        if isinstance(links, str | Path):
            links = sp.load_npz(links)
        L = to_csr(links, np.float32)
        if gene_names is None:
            raise ValueError("`gene_names` (the rows of `links`) is required with `links`")
        names = pd.Index(np.asarray(gene_names).astype(str))
        if len(names) != L.shape[0]:
            raise ValueError(f"{len(names)} gene_names for a links matrix with {L.shape[0]} rows")
        if L.shape[1] != atac.n_vars:
            raise ValueError(
                f"links has {L.shape[1]} columns but atac has {atac.n_vars} peaks; the columns "
                "must follow atac.var_names"
            )
    else:
        table = read_genes(genes)
        L = peak_gene_links(atac.var_names, table, upstream, downstream, gene_body)
        table_names = pd.Index(table["gene_name"])
        # merge rows of duplicated gene names (union of their peaks)
        uniq, inverse = np.unique(table_names, return_inverse=True)
        first_pos = pd.Index(table_names).get_indexer(uniq)
        order = np.argsort(first_pos)
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        merge = sp.csr_matrix(
            (np.ones(len(inverse), dtype=np.float32), (rank[inverse], np.arange(len(inverse)))),
            shape=(len(uniq), len(inverse)),
        )
        L = sp.csr_matrix(merge @ L)
        L.data[:] = 1.0
        merged_names = pd.Index(uniq[order])
        if gene_names is not None:
            names = pd.Index(np.asarray(gene_names).astype(str))
            idx = merged_names.get_indexer(names)
            n_absent = int((idx < 0).sum())
            if n_absent == len(names):
                raise ValueError("none of `gene_names` is in the gene table")
            if n_absent:
                warnings.warn(
                    f"{n_absent} of {len(names)} gene_names are not in the gene table; "
                    "their activity is zero",
                    UserWarning,
                    stacklevel=2,
                )
            present = np.flatnonzero(idx >= 0)
            sel = sp.csr_matrix(
                (np.ones(len(present), dtype=np.float32), (present, idx[present])),
                shape=(len(names), len(merged_names)),
            )
            L = sp.csr_matrix(sel @ L)
        else:
            names = merged_names
    counts = to_csr(get_matrix(atac, layer), np.float32)
    X = sp.csr_matrix(counts @ L.T.tocsc())
    var = pd.DataFrame(index=names.copy())
    var["n_peaks"] = np.asarray((L != 0).sum(axis=1)).ravel().astype(np.int64)
    return AnnData(X=X, obs=atac.obs.copy(), var=var)
