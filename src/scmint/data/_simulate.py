"""Simulated single-cell multi-omics counts (RNA, ATAC, protein) with known ground truth."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any

import anndata as ad
import mudata
import numpy as np
import pandas as pd
from scipy import sparse

__all__ = ["simulate_multiome"]

# Genome layout (base pairs).
_BIN = 1_000  # grid on which peaks are placed (one peak per bin at most)
_PROMOTER = 2_000  # upstream part of a gene's regulatory region
_LINK_WINDOW = 20_000  # linked peaks lie at most this far downstream of the TSS (in the gene body)
_MARGIN = 25_000  # no background peak closer than this to a gene body or its promoter
_CHROM_START = 10_000  # first coordinate used on each chromosome

# Count models.
_RNA_DEPTH_PER_GENE = 2.0  # median RNA library size = 2 * n_genes
_ATAC_DEPTH_PER_PEAK = 0.06  # median ATAC counts per cell = 0.06 * n_peaks (density ~6%)
_ATAC_CAP = 4  # at most 4 counts per peak and cell (two alleles, two cut sites each)
_CHUNK_ENTRIES = 2**21  # cells x features entries sampled per dense block


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an integer, got {value!r}.")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value}.")
    return int(value)


def _check_float(name: str, value: Any, low: float, high: float = np.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a number, got {value!r}.")
    value = float(value)
    if np.isnan(value) or not low <= value <= high:
        raise ValueError(f"`{name}` must lie in [{low}, {high}], got {value}.")
    return value


def _type_sizes(n_cells: int, n_types: int, rare_type_ratio: float) -> np.ndarray:
    """Cells per type: geometric abundances from 1 down to ``rare_type_ratio``, each >= 1."""
    if n_types == 1:
        return np.array([n_cells])
    weights = rare_type_ratio ** (np.arange(n_types) / (n_types - 1))
    weights = weights / weights.sum()
    target = weights * (n_cells - n_types)
    sizes = np.floor(target).astype(int)
    remainder = n_cells - n_types - sizes.sum()
    order = np.argsort(-(target - sizes), kind="stable")
    sizes[order[:remainder]] += 1
    return sizes + 1


def _softmax_rows(logits: np.ndarray) -> np.ndarray:
    logits = logits - logits.max(axis=1, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=1, keepdims=True)
    return logits


def _negative_binomial(rng: np.random.Generator, mu: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """NB(mean ``mu``, inverse dispersion ``theta``) as a gamma-Poisson mixture."""
    rate = rng.gamma(shape=np.broadcast_to(theta, mu.shape), scale=mu / theta)
    return rng.poisson(rate)


def _chunks(n_rows: int, n_cols: int) -> list[np.ndarray]:
    size = max(1, _CHUNK_ENTRIES // max(n_cols, 1))
    return [np.arange(i, min(i + size, n_rows)) for i in range(0, n_rows, size)]


def _dense_to_csr(counts: np.ndarray) -> sparse.csr_matrix:
    return sparse.csr_matrix(counts.astype(np.float32))


def _stack(blocks: list[sparse.csr_matrix], n_cols: int) -> sparse.csr_matrix:
    if not blocks:
        return sparse.csr_matrix((0, n_cols), dtype=np.float32)
    return sparse.vstack(blocks, format="csr", dtype=np.float32)


def _poisson_sparse(
    rng: np.random.Generator, proportions: np.ndarray, depth: np.ndarray, cap: int
) -> sparse.csr_matrix:
    """Independent Poisson counts with means ``depth[:, None] * proportions``, clipped at cap.

    Rows of ``proportions`` sum to 1. Draws the total of each row (Poisson(depth)) and places
    the events by inverse-CDF sampling, which is exactly equivalent to independent Poisson
    draws per entry and much faster for sparse data.
    """
    n_rows, n_cols = proportions.shape
    totals = rng.poisson(depth)
    cdf = np.cumsum(proportions, axis=1, dtype=np.float64)
    cdf[:, -1] = 1.0
    cdf += np.arange(n_rows)[:, None]
    row = np.repeat(np.arange(n_rows), totals)
    pos = np.searchsorted(cdf.ravel(), row + rng.random(row.size), side="right")
    pos = np.minimum(pos, n_rows * n_cols - 1)
    out = sparse.csr_matrix(
        (np.ones(pos.size, dtype=np.float32), (pos // n_cols, pos % n_cols)),
        shape=(n_rows, n_cols),
    )
    out.sum_duplicates()
    np.minimum(out.data, cap, out=out.data)
    return out


def _layout_genome(
    rng: np.random.Generator, n_genes: int, n_peaks: int, peaks_per_gene: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Place genes and peaks on a synthetic genome.

    Returns the gene table (in gene index order) and the peak table (sorted by position,
    named ``chrN-start-end``, with column ``gene`` = index of the linked gene or -1).
    """
    n_chrom = int(np.clip(round(n_genes / 50), 1, 22))
    lengths = np.clip(np.exp(rng.normal(np.log(20_000), 0.8, n_genes)), 5_000, 150_000)
    lengths = (np.round(lengths / 100) * 100).astype(np.int64)
    strand_plus = rng.random(n_genes) < 0.5

    # Linked peaks: one promoter peak centred on the TSS, others in 1-kb bins at signed
    # distance d (transcription direction) in [-_PROMOTER, min(length, _LINK_WINDOW)),
    # leaving out the two bins next to the TSS that the promoter peak covers.
    n_bins = (_PROMOTER + np.minimum(lengths, _LINK_WINDOW)) // _BIN  # bins per gene
    n_linked = int(min(round(peaks_per_gene * n_genes), n_peaks))
    promoter_genes = rng.permutation(n_genes)[: min(n_linked, n_genes)]
    extra_gene = np.empty(0, dtype=np.int64)
    extra_bin = np.empty(0, dtype=np.int64)
    if n_linked > n_genes:
        slot_gene = np.repeat(np.arange(n_genes), n_bins - 2)
        starts = np.concatenate([[0], np.cumsum(n_bins - 2)[:-1]])
        slot_rank = np.arange(slot_gene.size) - np.repeat(starts, n_bins - 2)
        slot_bin = np.where(slot_rank == 0, 0, slot_rank + 2)  # bins 1 and 2 hold the promoter
        n_extra = min(n_linked - n_genes, slot_gene.size)
        chosen = rng.choice(slot_gene.size, size=n_extra, replace=False)
        extra_gene, extra_bin = slot_gene[chosen], slot_bin[chosen]
    link_gene = np.concatenate([promoter_genes, extra_gene]).astype(np.int64)
    n_linked = link_gene.size
    n_background = n_peaks - n_linked

    # Genes in random order along the chromosomes; before each gene a gap holding its share
    # of background peaks in its middle part, at least _MARGIN away from genes.
    order = rng.permutation(n_genes)
    chrom_of_slot = np.arange(n_genes) * n_chrom // n_genes
    bg_per_gap = rng.multinomial(n_background, np.full(n_genes, 1.0 / n_genes))
    extra_space = np.round(rng.exponential(30_000, n_genes) / _BIN).astype(np.int64) * _BIN
    gap = 2 * _MARGIN + 2 * _BIN * bg_per_gap + extra_space
    occupied = lengths[order] + _PROMOTER
    step = gap + occupied
    cum = np.cumsum(step)
    chrom_first = np.searchsorted(chrom_of_slot, chrom_of_slot, side="left")
    offset = np.concatenate([[0], cum[:-1]])
    gap_start = _CHROM_START + offset - offset[chrom_first]
    occ_start = gap_start + gap

    gene_chrom = np.empty(n_genes, dtype=np.int64)
    gene_chrom[order] = chrom_of_slot
    occ = np.empty(n_genes, dtype=np.int64)
    occ[order] = occ_start
    start = np.where(strand_plus, occ + _PROMOTER, occ)
    end = start + lengths
    tss = np.where(strand_plus, start, end)

    # Linked peak centres.
    width_link = rng.integers(300, 900, n_linked)
    bins = np.concatenate([np.full(promoter_genes.size, -1), extra_bin])
    jitter = rng.integers(-100, 101, n_linked)
    free = (_BIN - width_link) // 2
    jitter = np.where(bins < 0, jitter, rng.integers(-free, free + 1))
    signed = np.where(bins < 0, 0, -_PROMOTER + bins * _BIN + _BIN // 2) + jitter
    sign = np.where(strand_plus[link_gene], 1, -1)
    centre_link = tss[link_gene] + sign * signed

    # Background peaks: bins 2r or 2r+1 of the free middle part of their gap.
    gap_of_bg = np.repeat(np.arange(n_genes), bg_per_gap)
    first = np.concatenate([[0], np.cumsum(bg_per_gap)[:-1]])
    rank = np.arange(n_background) - np.repeat(first, bg_per_gap)
    bg_bin = 2 * rank + rng.integers(0, 2, n_background)
    width_bg = rng.integers(300, 900, n_background)
    free_bg = (_BIN - width_bg) // 2
    centre_bg = (
        gap_start[gap_of_bg]
        + _MARGIN
        + bg_bin * _BIN
        + _BIN // 2
        + rng.integers(-free_bg, free_bg + 1)
    )

    centre = np.concatenate([centre_link, centre_bg])
    width = np.concatenate([width_link, width_bg])
    peak_chrom = np.concatenate([gene_chrom[link_gene], chrom_of_slot[gap_of_bg]])
    peak_start = centre - width // 2
    peak_end = peak_start + width
    peak_gene = np.concatenate([link_gene, np.full(n_background, -1)])
    is_promoter = np.concatenate([bins < 0, np.zeros(n_background, dtype=bool)])
    peak_order = np.lexsort((peak_start, peak_chrom))

    chrom_names = np.array([f"chr{i + 1}" for i in range(n_chrom)])
    genes = pd.DataFrame(
        {
            "chrom": chrom_names[gene_chrom],
            "start": start,
            "end": end,
            "strand": np.where(strand_plus, "+", "-"),
            "tss": tss,
        }
    )
    peaks = pd.DataFrame(
        {
            "chrom": chrom_names[peak_chrom[peak_order]],
            "start": peak_start[peak_order],
            "end": peak_end[peak_order],
            "gene": peak_gene[peak_order],
            "promoter": is_promoter[peak_order],
        }
    )
    peaks.index = peaks["chrom"] + "-" + peaks["start"].astype(str) + "-" + peaks["end"].astype(str)
    return genes, peaks


def simulate_multiome(
    n_cells: int = 2000,
    n_cell_types: int = 5,
    n_batches: int = 2,
    n_genes: int = 1000,
    n_peaks: int = 3000,
    n_proteins: int = 0,
    paired_fraction: float = 0.5,
    peaks_per_gene: float = 2.0,
    de_genes_per_type: int = 20,
    n_latent: int = 5,
    batch_effect: float = 0.3,
    rare_type_ratio: float = 0.05,
    nonlinear_coupling: float = 0.0,
    seed: int = 0,
    modality_names: Sequence[str] = ("rna", "atac", "adt"),
) -> mudata.MuData:
    """Simulate a mosaic single-cell multi-omics data set (RNA, ATAC, protein) with ground truth.

    All cells share one latent state (a cell type plus a continuous within-type latent).
    RNA counts are drawn from it; chromatin accessibility (ATAC) and protein abundance are
    driven by the batch-free activity of linked genes. A fraction of the cells is measured in
    every modality (paired), the rest in exactly one, so the result is a mosaic MuData in the
    unpadded form described in the scmint data model. Everything is vectorised and sampled
    in blocks of cells, so memory grows linearly with ``n_cells``; the default call takes
    well under a second.

    Parameters
    ----------
    n_cells
        Total number of cells (union over modalities).
    n_cell_types
        Number of cell types, named ``"type0"``, ``"type1"``, ...; ``type0`` is the most
        abundant and the last one the rarest (see ``rare_type_ratio``).
    n_batches
        Number of batches (``"batch0"``, ...); cells are spread evenly and at random.
    n_genes
        Number of genes (``"Gene0000"``, ...).
    n_peaks
        Number of ATAC peaks; 0 leaves out the ATAC modality.
    n_proteins
        Number of surface proteins (``"Protein000"``, ...); 0 (default) leaves out the
        protein modality. At most ``n_genes``.
    paired_fraction
        Fraction of cells measured in every simulated modality, in [0, 1]. The other cells
        are split evenly among the modalities and measured in one only. With a single
        modality every cell is in it.
    peaks_per_gene
        Mean number of peaks linked to a gene: ``round(peaks_per_gene * n_genes)`` linked
        peaks in all, at most ``n_peaks`` and at most the number of free 1-kb slots near the
        genes (about 2 + gene length / 1 kb, up to 22, per gene); the other peaks are
        unlinked background peaks. Every gene gets a promoter peak first (if there are
        enough), the others are spread at random over the genes.
    de_genes_per_type
        Number of up-regulated marker genes per cell type; each type also gets
        ``de_genes_per_type // 2`` down-regulated genes. Marker sets of different types are
        disjoint when ``n_genes`` allows it.
    n_latent
        Dimension of the continuous within-type latent (0: cells of a type differ only by
        noise and program strength).
    batch_effect
        Strength of batch effects: standard deviation of the per-batch, per-feature
        log-scale shifts and of the per-batch log library-size shifts, in every modality.
        0 gives no batch effect at all.
    rare_type_ratio
        Abundance of the rarest type relative to the most abundant one, in (0, 1];
        abundances decay geometrically in between (defaults: 54%, 26%, 12%, 6%, 2.7%).
    nonlinear_coupling
        Strength of a cell-type-dependent, nonlinear coupling of chromatin accessibility
        to the latent state, >= 0; 0 (default) keeps the linear coupling. When > 0,
        each link between a peak and its gene is reversed in a random half of the cell
        types and background peaks respond to rectified, type-specific projections of
        the continuous latent with this gain, so no single linear map relates RNA to
        ATAC (see Notes); at 2-3 linear CCA loses most within-type matching.
    seed
        Seed (non-negative integer). The same arguments and seed give identical data.
        Independent random streams are used for cells, genome, and each modality, so e.g.
        adding proteins does not change the RNA or ATAC counts.
    modality_names
        Names of the RNA, ATAC and protein modalities, in this order.

    Returns
    -------
    MuData with one AnnData per simulated modality (``rna``; ``atac`` if ``n_peaks > 0``;
    ``adt`` if ``n_proteins > 0``), each holding only the cells measured in it. Cell names
    are ``"cell00000"``, ...; a cell measured in several modalities has the same name in
    each.

    - ``X`` of every modality: raw integer counts, ``float32`` CSR.
    - ``obs`` of every modality (and ``mdata.obs`` for all cells): ``"cell_type"`` and
      ``"batch"`` (categoricals with all types / batches as categories).
    - ``obsm["X_true"]`` of every modality (and ``mdata.obsm``): ground-truth latent,
      ``n_cell_types`` program activities followed by ``n_latent`` continuous coordinates.
    - ``rna.var``: ``"chrom"``, ``"start"``, ``"end"``, ``"strand"`` and ``"tss"`` (TSS =
      start on ``+``, end on ``-``); coordinates are 0-based, half-open.
    - ``atac.var``: peaks named ``"chrN-start-end"`` sorted by position, columns
      ``"chrom"``, ``"start"``, ``"end"``, ``"linked_gene"`` (gene name or ``""``) and
      ``"promoter"`` (bool).
    - ``adt.var``: ``"gene"``, the linked gene.
    - ``mdata.uns["simulation"]``: the ground truth, see Notes.

    Notes
    -----
    **Cells.** Type sizes are fixed (geometric abundances, every type has >= 1 cell); types
    and batches are assigned at random, independently. Cell ``c`` of type ``k`` has program
    activity ``a_ck = exp(0.15 * e)`` (``e ~ N(0, 1)``) for its own program and 0 for the
    others, and a continuous latent ``u_c ~ N(0, I_{n_latent})``. ``obsm["X_true"]`` is
    ``[a_c, u_c]``.

    **RNA.** Gene ``g`` has baseline log-expression ``b_g ~ N(0, 1.1^2)``, a type log-fold
    change ``L_kg`` (up markers ``U(1, 2.5)``, down markers ``-U(1, 2)``, 0 otherwise) and
    latent loadings ``W_g ~ N(0, 0.15^2 I)``. The batch-free activity of gene ``g`` in cell
    ``c`` is ``A_cg = sum_k a_ck L_kg + u_c . W_g``. Counts are negative binomial with mean
    ``l_c * softmax_g(b_g + A_cg + beta_{s(c) g})`` and per-gene inverse dispersion
    ``theta_g ~ LogNormal(log 4, 0.6^2)``, where ``beta_sg ~ N(0, batch_effect^2)`` is the
    shift of batch ``s`` and the library size ``l_c`` is log-normal (median
    ``2 * n_genes``, log-sd 0.35) times a per-batch factor ``exp(N(0, batch_effect^2))``.

    **ATAC.** Genes are placed on ``round(n_genes / 50)`` (1 to 22) chromosomes with gene
    bodies of 5-150 kb, separated by gaps of >= 50 kb. Linked peaks are 300-900 bp wide:
    a promoter peak centred on the TSS, others in the 2 kb upstream of the TSS or in the
    first 20 kb of the gene body. Unlinked background peaks sit in the gaps, at least 25 kb
    from any gene body or promoter, so any coordinate-based peak-to-gene assignment with a
    window up to 25 kb around gene body + 2 kb promoter recovers exactly the true links.
    Peak ``p`` has log-accessibility ``c_p + w_p A_{c g(p)} + beta_{s(c) p}``:
    ``c_p ~ N(0, 0.6^2)`` (+0.5 for promoter peaks), link weight ``w_p ~ U(0.5, 1.2)`` for
    peaks linked to gene ``g(p)`` (0 for background peaks, of which 30% instead get a
    type-specific effect ``U(1, 2)`` in one random type and all small latent loadings
    ``N(0, 0.1^2)``) and batch shift ``beta_sp ~ N(0, batch_effect^2)``. Counts are Poisson
    with mean ``d_c * softmax_p(.)``, clipped at 4 (two alleles); depth ``d_c`` is log-normal
    (median ``0.06 * n_peaks``, log-sd 0.5) times a per-batch factor, so counts are mostly
    0/1/2 with a density of about 6%.

    **Nonlinear coupling.** With ``nonlinear_coupling = s > 0`` the log-accessibility of
    peak ``p`` in cell ``c`` of type ``k`` is instead
    ``c_p + sigma_kp w_p A_{c g(p)} + B_kp + s max(0, u_c . v_kp - t_kp) + beta_{s(c) p}``:
    the link sign ``sigma_kp`` is -1 with probability 1/2, independently per linked peak
    and type (a regulator that activates in some lineages represses in others; 1 for
    background peaks), ``B_kp`` is the type-specific effect of background peaks above,
    and background peaks (only) get, in place of their latent loadings, a rectified
    response to the latent along a type-specific direction ``v_kp ~ N(0, I_{n_latent})``
    above a threshold ``t_kp ~ U(0, 1)`` (switch-like enhancers). RNA is unchanged, and
    the within-type relation between the modalities differs between types, so no single
    linear map fits it. Strong gains concentrate a cell's ATAC counts on its few most
    open background peaks (median nonzero peaks per cell at the demo size: 160 at
    ``s = 0``, about 25 at ``s = 2``, 10 at ``s = 3``). These parameters come from their
    own random stream: every other part of the simulation is the same as with ``s = 0``.

    **Protein.** Each protein is linked to a distinct gene, taken round-robin from the up
    markers of the types first, then at random. Counts are negative binomial
    (``theta ~ LogNormal(log 10, 0.3^2)``) with mean
    ``r_c exp(beta_{s(c) i}) (bg_i exp(gamma_{s(c)}) + exp(f_i + h_i A_{c g(i)}))``:
    background ``bg_i ~ LogNormal(log 5, 0.5^2)`` scaled per batch, foreground level
    ``f_i ~ N(log 20, 0.6^2)``, gene coupling ``h_i ~ U(0.6, 1.2)``, cell depth
    ``r_c ~ LogNormal(0, 0.3^2)`` times a per-batch factor, batch shifts as above.

    **Pairing.** ``round(paired_fraction * n_cells)`` random cells are measured in every
    modality; the others are split evenly (by ``numpy.array_split``) among the modalities.

    **``mdata.uns["simulation"]``** holds

    - ``"params"``: every argument of this call (``modality_names`` as a list);
    - ``"cell_types"``, ``"batches"``: category order; ``"cell_type_proportions"``: fraction
      of all cells in each type; ``"n_paired"``: number of paired cells;
    - ``"latent_columns"``: names of the ``obsm["X_true"]`` columns;
    - ``"de_genes"`` / ``"de_genes_down"``: ``{type: [gene names]}`` of up / down markers;
    - ``"de_lfc"``: ``(n_cell_types, n_genes)`` array of natural-log fold changes
      ``L_kg`` (rows in ``cell_types`` order, columns in ``rna.var`` order);
    - ``"gene_peak_links"`` (if ATAC): binary ``(n_genes, n_peaks)`` scipy CSR matrix,
      rows in ``rna.var`` order, columns in ``atac.var`` order;
    - ``"protein_genes"`` (if proteins): the linked gene of each protein, in ``adt.var``
      order.

    Examples
    --------
    >>> from scmint.data._simulate import simulate_multiome
    >>> mdata = simulate_multiome(n_cells=500, n_proteins=20, seed=1)
    >>> sorted(mdata.mod)
    ['adt', 'atac', 'rna']
    """
    n_cells = _check_int("n_cells", n_cells, 1)
    n_cell_types = _check_int("n_cell_types", n_cell_types, 1)
    n_batches = _check_int("n_batches", n_batches, 1)
    n_genes = _check_int("n_genes", n_genes, 1)
    n_peaks = _check_int("n_peaks", n_peaks, 0)
    n_proteins = _check_int("n_proteins", n_proteins, 0)
    de_genes_per_type = _check_int("de_genes_per_type", de_genes_per_type, 0)
    n_latent = _check_int("n_latent", n_latent, 0)
    seed = _check_int("seed", seed, 0)
    paired_fraction = _check_float("paired_fraction", paired_fraction, 0.0, 1.0)
    peaks_per_gene = _check_float("peaks_per_gene", peaks_per_gene, 0.0, 1e6)
    batch_effect = _check_float("batch_effect", batch_effect, 0.0, 1e3)
    rare_type_ratio = _check_float("rare_type_ratio", rare_type_ratio, 0.0, 1.0)
    nonlinear_coupling = _check_float("nonlinear_coupling", nonlinear_coupling, 0.0, 1e3)
    if rare_type_ratio == 0:
        raise ValueError("`rare_type_ratio` must be > 0.")
    if n_cells < n_cell_types:
        raise ValueError(
            f"`n_cells` ({n_cells}) must be at least `n_cell_types` ({n_cell_types}): "
            "every cell type needs a cell."
        )
    n_down = de_genes_per_type // 2
    if de_genes_per_type + n_down > n_genes:
        raise ValueError(
            f"`de_genes_per_type` ({de_genes_per_type}) needs {de_genes_per_type + n_down} "
            f"genes per type (up + down markers) but `n_genes` is {n_genes}."
        )
    if n_proteins > n_genes:
        raise ValueError(
            f"`n_proteins` ({n_proteins}) must not exceed `n_genes` ({n_genes}): each "
            "protein is linked to a distinct gene."
        )
    if isinstance(modality_names, str) or len(modality_names) != 3:
        raise ValueError("`modality_names` must be three names: (rna, atac, protein).")
    modality_names = [str(m) for m in modality_names]
    if len(set(modality_names)) != 3:
        raise ValueError(f"`modality_names` must be distinct, got {modality_names}.")
    params: dict[str, Any] = {
        "n_cells": n_cells,
        "n_cell_types": n_cell_types,
        "n_batches": n_batches,
        "n_genes": n_genes,
        "n_peaks": n_peaks,
        "n_proteins": n_proteins,
        "paired_fraction": paired_fraction,
        "peaks_per_gene": peaks_per_gene,
        "de_genes_per_type": de_genes_per_type,
        "n_latent": n_latent,
        "batch_effect": batch_effect,
        "rare_type_ratio": rare_type_ratio,
        "nonlinear_coupling": nonlinear_coupling,
        "seed": seed,
        "modality_names": list(modality_names),
    }
    rna_name, atac_name, adt_name = modality_names
    present = [rna_name] + ([atac_name] if n_peaks else []) + ([adt_name] if n_proteins else [])

    (
        rng_cells,
        rng_pair,
        rng_genes,
        rng_genome,
        rng_rna,
        rng_atac_par,
        rng_atac,
        rng_adt_par,
        rng_adt,
        rng_nonlinear,
    ) = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(10))

    # ------------------------------------------------------------------ cells
    type_names = [f"type{k}" for k in range(n_cell_types)]
    batch_names = [f"batch{s}" for s in range(n_batches)]
    sizes = _type_sizes(n_cells, n_cell_types, rare_type_ratio)
    cell_type = rng_cells.permutation(np.repeat(np.arange(n_cell_types), sizes))
    batch = rng_cells.permutation(np.arange(n_cells) % n_batches)
    programs = np.zeros((n_cells, n_cell_types))
    programs[np.arange(n_cells), cell_type] = np.exp(0.15 * rng_cells.standard_normal(n_cells))
    latent = rng_cells.standard_normal((n_cells, n_latent))
    x_true = np.hstack([programs, latent]).astype(np.float32)
    width = max(5, len(str(n_cells - 1)))
    cell_names = np.array([f"cell{i:0{width}d}" for i in range(n_cells)])

    # Pairing: paired cells in every modality, the rest split evenly.
    n_paired = int(round(paired_fraction * n_cells)) if len(present) > 1 else n_cells
    perm = rng_pair.permutation(n_cells)
    singles = np.array_split(perm[n_paired:], len(present))
    members = {
        m: np.sort(np.concatenate([perm[:n_paired], singles[i]])) for i, m in enumerate(present)
    }

    # ------------------------------------------------------------------ genes
    gwidth = max(4, len(str(n_genes - 1)))
    gene_names = np.array([f"Gene{g:0{gwidth}d}" for g in range(n_genes)])
    baseline = rng_genes.normal(0.0, 1.1, n_genes)
    loadings = rng_genes.normal(0.0, 0.15, (n_genes, n_latent))
    theta_rna = np.exp(rng_genes.normal(np.log(4.0), 0.6, n_genes))
    lfc = np.zeros((n_cell_types, n_genes))
    n_de = de_genes_per_type + n_down
    up_sets: list[np.ndarray] = []
    down_sets: list[np.ndarray] = []
    disjoint = rng_genes.permutation(n_genes) if n_cell_types * n_de <= n_genes else None
    for k in range(n_cell_types):
        if disjoint is not None:
            chosen = disjoint[k * n_de : (k + 1) * n_de]
        else:
            chosen = rng_genes.choice(n_genes, n_de, replace=False)
        up, down = np.sort(chosen[:de_genes_per_type]), np.sort(chosen[de_genes_per_type:])
        lfc[k, up] = rng_genes.uniform(1.0, 2.5, up.size)
        lfc[k, down] = -rng_genes.uniform(1.0, 2.0, down.size)
        up_sets.append(up)
        down_sets.append(down)
    rna_batch_shift = rng_genes.normal(0.0, batch_effect, (n_batches, n_genes))
    rna_batch_depth = rng_genes.normal(0.0, batch_effect, n_batches)

    def activity(cells: np.ndarray, genes: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Batch-free gene activity A (log scale, relative to baseline)."""
        return programs[cells] @ lfc[:, genes] + latent[cells] @ loadings[genes].T

    def sample_counts(
        cells: np.ndarray,
        n_features: int,
        rng: np.random.Generator,
        log_depth_mean: float,
        log_depth_sd: float,
        batch_depth: np.ndarray,
        block: Callable[[np.ndarray, np.ndarray], sparse.csr_matrix],
    ) -> sparse.csr_matrix:
        """Counts of ``cells`` (cells x ``n_features`` CSR).

        Draws each cell's log depth first (mean + normal noise + batch shift), then
        samples ``block(c, log_depth_of_c)`` on row chunks ``c`` and stacks them.
        """
        log_depth = (
            log_depth_mean + rng.normal(0.0, log_depth_sd, cells.size) + batch_depth[batch[cells]]
        )
        blocks = [block(cells[idx], log_depth[idx]) for idx in _chunks(cells.size, n_features)]
        return _stack(blocks, n_features)

    genes_df, peaks_df = _layout_genome(rng_genome, n_genes, n_peaks, peaks_per_gene)

    # ------------------------------------------------------------------ RNA
    def rna_block(c: np.ndarray, log_lib: np.ndarray) -> sparse.csr_matrix:
        eta = baseline + activity(c) + rna_batch_shift[batch[c]]
        mu = _softmax_rows(eta) * np.exp(log_lib)[:, None]
        return _dense_to_csr(_negative_binomial(rng_rna, mu, theta_rna))

    rna_x = sample_counts(
        members[rna_name],
        n_genes,
        rng_rna,
        np.log(_RNA_DEPTH_PER_GENE * n_genes),
        0.35,
        rna_batch_depth,
        rna_block,
    )
    rna_var = genes_df.copy()
    rna_var.index = pd.Index(gene_names)
    built = {rna_name: (rna_x, rna_var)}

    sim: dict[str, Any] = {}

    # ------------------------------------------------------------------ ATAC
    if n_peaks:
        peak_gene = peaks_df["gene"].to_numpy()
        linked = np.flatnonzero(peak_gene >= 0)
        background = np.flatnonzero(peak_gene < 0)
        peak_base = rng_atac_par.normal(0.0, 0.6, n_peaks) + 0.5 * peaks_df["promoter"].to_numpy()
        link_weight = rng_atac_par.uniform(0.5, 1.2, linked.size)
        bg_type_effect = np.zeros((n_cell_types, background.size))
        has_effect = np.flatnonzero(rng_atac_par.random(background.size) < 0.3)
        bg_type_effect[rng_atac_par.integers(0, n_cell_types, has_effect.size), has_effect] = (
            rng_atac_par.uniform(1.0, 2.0, has_effect.size)
        )
        bg_loadings = rng_atac_par.normal(0.0, 0.1, (background.size, n_latent))
        atac_batch_shift = rng_atac_par.normal(0.0, batch_effect, (n_batches, n_peaks))
        atac_batch_depth = rng_atac_par.normal(0.0, batch_effect, n_batches)
        if nonlinear_coupling:
            link_sign = np.where(rng_nonlinear.random((n_cell_types, linked.size)) < 0.5, -1, 1)
            bg_dirs = rng_nonlinear.standard_normal((n_cell_types, n_latent, background.size))
            bg_thresholds = rng_nonlinear.uniform(0.0, 1.0, (n_cell_types, background.size))

        def atac_block(c: np.ndarray, log_depth: np.ndarray) -> sparse.csr_matrix:
            logit = (peak_base + atac_batch_shift[batch[c]]).astype(np.float32)
            if not nonlinear_coupling:
                logit[:, linked] += activity(c, peak_gene[linked]) * link_weight
                logit[:, background] += programs[c] @ bg_type_effect + latent[c] @ bg_loadings.T
            else:
                k = cell_type[c]
                logit[:, linked] += activity(c, peak_gene[linked]) * link_weight * link_sign[k]
                proj = np.einsum("cl,clp->cp", latent[c], bg_dirs[k]) - bg_thresholds[k]
                logit[:, background] += programs[c] @ bg_type_effect + nonlinear_coupling * (
                    np.maximum(proj, 0.0)
                )
            depth = np.exp(log_depth)
            return _poisson_sparse(rng_atac, _softmax_rows(logit), depth, _ATAC_CAP)

        atac_x = sample_counts(
            members[atac_name],
            n_peaks,
            rng_atac,
            np.log(_ATAC_DEPTH_PER_PEAK * n_peaks),
            0.5,
            atac_batch_depth,
            atac_block,
        )
        atac_var = peaks_df[["chrom", "start", "end", "promoter"]].copy()
        atac_var.insert(3, "linked_gene", np.where(peak_gene >= 0, gene_names[peak_gene], ""))
        built[atac_name] = (atac_x, atac_var)
        sim["gene_peak_links"] = sparse.csr_matrix(
            (np.ones(linked.size, dtype=np.float32), (peak_gene[linked], linked)),
            shape=(n_genes, n_peaks),
        )

    # ------------------------------------------------------------------ protein
    if n_proteins:
        markers = [int(up[i]) for i in range(de_genes_per_type) for up in up_sets]
        markers = list(dict.fromkeys(markers))  # unique, order kept
        is_marker = np.zeros(n_genes, dtype=bool)
        is_marker[markers] = True
        others = [int(g) for g in rng_adt_par.permutation(n_genes) if not is_marker[g]]
        prot_gene = np.array((markers + others)[:n_proteins], dtype=np.int64)
        background_level = np.exp(rng_adt_par.normal(np.log(5.0), 0.5, n_proteins))
        fg_level = rng_adt_par.normal(np.log(20.0), 0.6, n_proteins)
        coupling = rng_adt_par.uniform(0.6, 1.2, n_proteins)
        theta_adt = np.exp(rng_adt_par.normal(np.log(10.0), 0.3, n_proteins))
        adt_batch_shift = rng_adt_par.normal(0.0, batch_effect, (n_batches, n_proteins))
        adt_batch_bg = rng_adt_par.normal(0.0, batch_effect, n_batches)
        adt_batch_depth = rng_adt_par.normal(0.0, batch_effect, n_batches)

        def adt_block(c: np.ndarray, log_depth: np.ndarray) -> sparse.csr_matrix:
            fg = np.exp(fg_level + coupling * activity(c, prot_gene))
            bg = background_level * np.exp(adt_batch_bg[batch[c]])[:, None]
            mu = np.exp(log_depth[:, None] + adt_batch_shift[batch[c]]) * (bg + fg)
            return _dense_to_csr(_negative_binomial(rng_adt, mu, theta_adt))

        adt_x = sample_counts(
            members[adt_name], n_proteins, rng_adt, 0.0, 0.3, adt_batch_depth, adt_block
        )
        pwidth = max(3, len(str(n_proteins - 1)))
        adt_var = pd.DataFrame(
            {"gene": gene_names[prot_gene]},
            index=pd.Index([f"Protein{i:0{pwidth}d}" for i in range(n_proteins)]),
        )
        built[adt_name] = (adt_x, adt_var)
        sim["protein_genes"] = list(gene_names[prot_gene])

    # ------------------------------------------------------------------ assemble
    type_cat = pd.Categorical.from_codes(cell_type, categories=type_names)
    batch_cat = pd.Categorical.from_codes(batch, categories=batch_names)
    obs_all = pd.DataFrame({"cell_type": type_cat, "batch": batch_cat}, index=cell_names)
    mods = {}
    for name in present:
        cells = members[name]
        x, var = built[name]
        adata = ad.AnnData(X=x, obs=obs_all.iloc[cells].copy(), var=var)
        adata.obsm["X_true"] = x_true[cells]
        mods[name] = adata

    with mudata.set_options(pull_on_update=False):
        mdata = mudata.MuData(mods)
        pos = pd.Index(cell_names).get_indexer(mdata.obs_names)
        mdata.obs["cell_type"] = type_cat[pos]
        mdata.obs["batch"] = batch_cat[pos]
        mdata.obsm["X_true"] = x_true[pos]

    latent_columns = [f"program_{t}" for t in type_names] + [f"latent{j}" for j in range(n_latent)]
    sim.update(
        {
            "params": params,
            "cell_types": type_names,
            "batches": batch_names,
            "cell_type_proportions": sizes / n_cells,
            "n_paired": n_paired,
            "latent_columns": latent_columns,
            "de_genes": {t: list(gene_names[up_sets[k]]) for k, t in enumerate(type_names)},
            "de_genes_down": {t: list(gene_names[down_sets[k]]) for k, t in enumerate(type_names)},
            "de_lfc": lfc.astype(np.float32),
        }
    )
    mdata.uns["simulation"] = sim
    return mdata
