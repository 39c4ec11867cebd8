"""Downstream tools for any embedding: smoothing, mini-bulks, peak-gene correlation."""

import os
import warnings

import anndata as ad
import matplotlib
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy import stats
from sklearn.metrics import roc_auc_score

import scmint
from scmint.data import simulate_multiome
from scmint.pl import peak_gene_correlation as plot_peak_gene_correlation
from scmint.pp import knn_indices
from scmint.tl._cis_regulatory import peak_gene_correlation
from scmint.tl._minibulk import _allocate, assign_minibulks, minibulk
from scmint.tl._smoothing import smooth, smoothing_operator

matplotlib.use("Agg")


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def latent_poisson():
    """Cells on a 3-d latent with known Poisson means (the truth smoothing should approach)."""
    rng = np.random.default_rng(0)
    n, d, p = 1500, 3, 60
    z = rng.normal(size=(n, d)).astype(np.float32)
    w = rng.normal(0.0, 0.6, size=(d, p))
    mu = np.exp(0.5 + z @ w)
    counts = rng.poisson(mu).astype(np.float32)
    return z, mu, counts


@pytest.fixture(scope="module")
def sim():
    """Fully paired simulated multiome with known gene-peak links."""
    return simulate_multiome(n_cells=2500, n_genes=250, n_peaks=1200, paired_fraction=1.0, seed=3)


@pytest.fixture(scope="module")
def sim_bulks(sim):
    rna = minibulk(sim["rna"], "X_true", "cell_type", n_bulks=60)
    atac = minibulk(sim["atac"], "X_true", "cell_type", n_bulks=60)
    return rna, atac


@pytest.fixture(scope="module")
def sim_table(sim_bulks):
    rna, atac = sim_bulks
    return peak_gene_correlation(rna, atac)


def _mean_feature_corr(a: np.ndarray, b: np.ndarray) -> float:
    a = (a - a.mean(0)) / a.std(0)
    b = (b - b.mean(0)) / b.std(0)
    return float((a * b).mean(0).mean())


# ----------------------------------------------------------------------------- smoothing


def test_smooth_reduces_noise_dense_and_sparse(latent_poisson):
    z, mu, counts = latent_poisson
    before = counts.copy()
    dense = smooth(counts, z, n_neighbors=15)
    assert isinstance(dense, np.ndarray) and dense.shape == counts.shape
    assert dense.dtype == np.float32
    raw_r = _mean_feature_corr(counts, mu)
    smooth_r = _mean_feature_corr(dense, mu)
    # measured: raw 0.82, smoothed 0.95
    assert smooth_r > raw_r + 0.1, (raw_r, smooth_r)
    np.testing.assert_array_equal(counts, before)

    csr = sp.csr_matrix(counts)
    out = smooth(csr, z, n_neighbors=15)
    assert isinstance(out, sp.csr_matrix)
    np.testing.assert_allclose(out.toarray(), dense, rtol=1e-5, atol=1e-6)
    arr = smooth(sp.csr_array(counts), z, n_neighbors=15)
    assert isinstance(arr, sp.csr_array)
    csc = smooth(sp.csc_matrix(counts), z, n_neighbors=15)
    assert isinstance(csc, sp.csc_matrix)
    # the mean of itself and neighbours keeps the total roughly (exactly for the sum)
    summed = smooth(csr, z, n_neighbors=15, aggregate="sum")
    assert summed.sum() > 10 * csr.sum()


def test_smoothing_operator_percentile_drops_longest_edges(latent_poisson):
    z = latent_poisson[0]
    k = 10
    idx, dist = knn_indices(z, k, method="exact")
    S = smoothing_operator(z, n_neighbors=k, percentile=95, method="exact")
    n = z.shape[0]
    assert S.shape == (n, n)
    np.testing.assert_allclose(np.asarray(S.sum(axis=1)).ravel(), 1.0, rtol=1e-6)
    assert np.all(S.diagonal() > 0)
    threshold = np.percentile(dist, 95)
    kept = dist <= threshold
    # kept neighbour edges are exactly the kNN edges within the percentile
    A = S.copy()
    A.setdiag(0)
    A.eliminate_zeros()
    assert A.nnz == kept.sum()
    rows = np.repeat(np.arange(n), k)
    assert np.all(np.asarray(A[rows[kept.ravel()], idx.ravel()[kept.ravel()]]).ravel() > 0)
    # ~5% of the edges dropped, all of them longer than every kept edge
    assert 0.03 < 1 - kept.mean() < 0.07
    assert dist[kept].max() <= dist[~kept].min()
    dropped = np.asarray(A[rows[~kept.ravel()], idx.ravel()[~kept.ravel()]]).ravel()
    assert np.all(dropped == 0)
    # without the cut each row holds k neighbours + itself; binary with aggregate="sum"
    full = smoothing_operator(z, n_neighbors=k, percentile=None, aggregate="sum", method="exact")
    np.testing.assert_array_equal(full.getnnz(axis=1), k + 1)
    assert set(np.unique(full.data)) == {1.0}
    sym = smoothing_operator(z, n_neighbors=k, percentile=None, symmetric=True, aggregate="sum")
    assert (sym != sym.T).nnz == 0 and sym.nnz >= full.nnz


def test_smooth_anndata_returns_new_object(latent_poisson):
    z, _, counts = latent_poisson
    adata = ad.AnnData(X=sp.csr_matrix(counts))
    adata.obsm["X_emb"] = z
    adata.layers["raw"] = sp.csr_matrix(counts * 2)
    adata.obs["cell_type"] = "a"
    x_before = adata.X.copy()
    out = smooth(adata, "X_emb", n_neighbors=10, layer="raw")
    assert out is not adata and out.shape == adata.shape
    assert sp.issparse(out.X)
    np.testing.assert_allclose(
        out.X.toarray(), smooth(counts * 2, z, n_neighbors=10), rtol=1e-5, atol=1e-5
    )
    assert list(out.obs.columns) == ["cell_type"] and "X_emb" in out.obsm
    assert out.uns["smoothing"]["n_neighbors"] == 10
    assert (adata.X != x_before).nnz == 0 and "smoothing" not in adata.uns
    with pytest.raises(KeyError, match="obsm"):
        smooth(adata, "X_missing")
    with pytest.raises(ValueError, match="rows"):
        smooth(counts, z[:10])


# ----------------------------------------------------------------------------- mini-bulks


def test_allocate_proportional_at_least_one():
    k = _allocate(np.array([1000, 300, 50, 5, 1]), 100)
    assert k.sum() == 100 and np.all(k >= 1) and np.all(k <= [1000, 300, 50, 5, 1])
    assert k[0] > k[1] > k[2]
    np.testing.assert_array_equal(_allocate(np.array([3, 2]), 10), [3, 2])
    np.testing.assert_array_equal(_allocate(np.array([10, 10, 10]), 2), [1, 1, 1])


def test_minibulk_one_type_each_and_counts_preserved(sim):
    rna = sim["rna"]
    x_before = rna.X.copy()
    obs_before = rna.obs.copy()
    bulk = minibulk(rna, "X_true", "cell_type", n_bulks=100)
    assert bulk.n_obs == 100 and bulk.n_vars == rna.n_vars
    assert sp.issparse(bulk.X)
    assert list(bulk.obs.columns) == ["cell_type", "n_cells"]
    assert bulk.obs["n_cells"].sum() == rna.n_obs and bulk.obs["n_cells"].min() >= 1
    # counts preserved, in total and per feature
    np.testing.assert_allclose(
        np.asarray(bulk.X.sum(axis=0)).ravel(), np.asarray(rna.X.sum(axis=0)).ravel(), rtol=1e-9
    )
    # every mini-bulk holds one cell type, the one in its obs
    assign = pd.Series(bulk.uns["minibulk"]["assignment"], index=rna.obs_names)
    types = rna.obs["cell_type"].astype(str)
    per_bulk = types.groupby(assign.to_numpy()).nunique()
    assert (per_bulk == 1).all()
    first_type = types.groupby(assign.to_numpy()).first()
    np.testing.assert_array_equal(
        first_type.loc[bulk.obs_names].to_numpy(), bulk.obs["cell_type"].astype(str).to_numpy()
    )
    np.testing.assert_array_equal(
        assign.value_counts().loc[bulk.obs_names].to_numpy(), bulk.obs["n_cells"].to_numpy()
    )
    # bulks per type proportional to the type's size, each type represented
    n_types = bulk.obs["cell_type"].value_counts()
    sizes = rna.obs["cell_type"].value_counts()
    assert (n_types.loc[sizes.index] >= 1).all()
    assert np.corrcoef(n_types.loc[sizes.index], sizes)[0, 1] > 0.99
    # mean aggregation = sum / n_cells
    mean = minibulk(rna, "X_true", "cell_type", n_bulks=100, aggregate="mean")
    np.testing.assert_allclose(
        mean.X.toarray(), bulk.X.toarray() / bulk.obs["n_cells"].to_numpy()[:, None], rtol=1e-9
    )
    # inputs unchanged
    assert (rna.X != x_before).nnz == 0
    pd.testing.assert_frame_equal(rna.obs, obs_before)
    assert "minibulk" not in rna.uns


def test_minibulk_kmeans_and_fallback_and_matrix_input(sim):
    rna = sim["rna"]
    z = rna.obsm["X_true"]
    labels = rna.obs["cell_type"].to_numpy()
    km = minibulk(rna.X.toarray(), z, labels, n_bulks=40, method="kmeans")
    assert km.n_obs == 40 and isinstance(km.X, np.ndarray)
    assert list(km.obs.columns) == ["group", "n_cells"]
    np.testing.assert_allclose(km.X.sum(), rna.X.sum(), rtol=1e-9)
    # big types go to k-means instead of the quadratic-memory ward tree
    fb = minibulk(rna, z, "cell_type", n_bulks=40, max_hierarchical_cells=100)
    assert fb.n_obs == 40
    np.testing.assert_allclose(fb.X.sum(), rna.X.sum(), rtol=1e-9)
    # unlabelled cells are left out
    lab = pd.Series(labels, dtype=object)
    lab.iloc[:50] = np.nan
    part = minibulk(rna, z, lab.to_numpy(), n_bulks=40)
    assert part.obs["n_cells"].sum() == rna.n_obs - 50
    assert (part.uns["minibulk"]["assignment"][:50] == "").all()
    with pytest.warns(UserWarning, match="one mini-bulk per group"):
        few = minibulk(rna, z, "cell_type", n_bulks=2)
    assert few.n_obs == rna.obs["cell_type"].nunique()


def test_minibulk_joint_assignment_for_unpaired_modalities():
    m = simulate_multiome(n_cells=1500, n_genes=120, n_peaks=500, paired_fraction=0.2, seed=5)
    rna, atac = m["rna"], m["atac"]
    z = np.vstack([rna.obsm["X_true"], atac.obsm["X_true"]])
    types = np.concatenate([rna.obs["cell_type"].to_numpy(), atac.obs["cell_type"].to_numpy()])
    a = assign_minibulks(z, types, n_bulks=40)
    assert len(a.categories) == 40
    rb = minibulk(rna, groupby="cell_type", assignment=a[: rna.n_obs])
    ab = minibulk(atac, groupby="cell_type", assignment=a[rna.n_obs :])
    shared = rb.obs_names.intersection(ab.obs_names)
    assert len(shared) >= 35
    assert (rb.obs.loc[shared, "cell_type"] == ab.obs.loc[shared, "cell_type"]).all()
    table = peak_gene_correlation(rb, ab)  # rows matched by mini-bulk name
    assert len(table) > 0 and np.isfinite(table["rho"]).mean() > 0.9
    bad = np.asarray(a[: rna.n_obs]).copy()
    with pytest.raises(ValueError, match="several groups"):
        minibulk(rna, groupby=rna.obs["cell_type"].to_numpy()[::-1], assignment=bad)


# ----------------------------------------------------------------------------- correlation


def test_peak_gene_correlation_recovers_true_links(sim, sim_table):
    table = sim_table
    links = sim.uns["simulation"]["gene_peak_links"].tocsr()
    gi = sim["rna"].var_names.get_indexer(table["gene"])
    pi = sim["atac"].var_names.get_indexer(table["peak"])
    truth = np.asarray(links[gi, pi]).ravel() > 0
    # every true link lies within 150 kb of its gene's TSS, so all are candidates
    assert truth.sum() == links.nnz
    ok = np.isfinite(table["rho"].to_numpy())
    assert ok.mean() > 0.99
    auroc = roc_auc_score(truth[ok], table["rho"].to_numpy()[ok])
    # measured: AUROC 0.89, mean rho 0.35 (linked) vs 0.00 (not linked)
    assert auroc > 0.75, auroc
    assert table["rho"][truth].mean() > table["rho"][~truth].mean() + 0.2
    # signed distance along the strand: linked peaks lie from 2 kb upstream to 20 kb
    # downstream of the TSS; promoter peaks are centred on it
    d_true = table["distance"].to_numpy()[truth]
    assert d_true.min() >= -2600 and d_true.max() <= 20600
    promoter = sim["atac"].var["promoter"].to_numpy()[pi] & truth
    assert np.abs(table["distance"].to_numpy()[promoter]).max() <= 150
    assert np.abs(table["distance"]).max() <= 150_000 + 1000


def test_peak_gene_correlation_table_format(sim_bulks, sim_table):
    rna, atac = sim_bulks
    table = sim_table
    assert list(table.columns) == ["gene", "peak", "distance", "rho", "pvalue", "fdr"]
    assert pd.api.types.is_string_dtype(table["gene"])  # object (pandas 2) or str (pandas 3)
    assert pd.api.types.is_string_dtype(table["peak"])
    assert table["distance"].dtype == np.int64
    for c in ("rho", "pvalue", "fdr"):
        assert table[c].dtype == np.float64
    assert table["rho"].between(-1, 1).all()
    assert table["pvalue"].between(0, 1).all() and (table["fdr"] >= table["pvalue"]).all()
    assert not table.duplicated(["gene", "peak"]).any()
    # genes in rna.var order
    order = rna.var_names.get_indexer(table["gene"])
    assert np.all(np.diff(order) >= 0)
    # inputs unchanged
    assert "minibulk" in rna.uns and rna.n_obs == 60 and atac.n_obs == 60


def test_peak_gene_correlation_equals_scipy(sim_bulks, sim_table):
    rna, atac = sim_bulks
    table = sim_table

    def norm(adata, name):
        x = adata.X.toarray()
        x = np.log1p(x / x.sum(1, keepdims=True) * 1e4)
        return x[:, adata.var_names.get_loc(name)]

    rows = table.sample(8, random_state=0)
    for _, r in rows.iterrows():
        g, p = norm(rna, r["gene"]), norm(atac, r["peak"])
        res = stats.spearmanr(g, p)
        np.testing.assert_allclose(r["rho"], res.statistic, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(r["pvalue"], res.pvalue, rtol=1e-8, atol=1e-300)
    pearson = peak_gene_correlation(rna, atac, method="pearson")
    for _, r in pearson.sample(8, random_state=1).iterrows():
        res = stats.pearsonr(norm(rna, r["gene"]), norm(atac, r["peak"]))
        np.testing.assert_allclose(r["rho"], res.statistic, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(r["pvalue"], res.pvalue, rtol=1e-6, atol=1e-300)
    # unnormalised values straight from the matrices
    raw = peak_gene_correlation(rna, atac, normalize=False)
    r = raw.iloc[0]
    res = stats.spearmanr(
        rna[:, r["gene"]].X.toarray().ravel(), atac[:, r["peak"]].X.toarray().ravel()
    )
    np.testing.assert_allclose(r["rho"], res.statistic, rtol=1e-10)


def test_peak_gene_correlation_constant_peak_gives_nan(sim_bulks, sim_table):
    rna, atac = sim_bulks
    atac2 = atac.copy()
    peak = sim_table["peak"].iloc[0]
    X = atac2.X.toarray()
    X[:, atac2.var_names.get_loc(peak)] = 0
    atac2.X = sp.csr_matrix(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = peak_gene_correlation(rna, atac2)
    sel = table["peak"] == peak
    assert table.loc[sel, ["rho", "pvalue", "fdr"]].isna().all().all()
    assert table.loc[~sel, "fdr"].notna().all()


def test_peak_gene_correlation_gene_sources_window_subset(sim, sim_bulks, sim_table, tmp_path):
    rna, atac = sim_bulks
    var = sim["rna"].var
    # GTF (1-based inclusive) and table give the same pairs as rna.var
    gtf = tmp_path / "genes.gtf"
    lines = [
        f"{r.chrom}\tsim\tgene\t{r.start + 1}\t{r.end}\t.\t{r.strand}\t.\t"
        f'gene_id "{name}"; gene_name "{name}";'
        for name, r in var.iterrows()
    ]
    gtf.write_text("\n".join(lines) + "\n")
    from_gtf = peak_gene_correlation(rna, atac, genes=gtf)
    pd.testing.assert_frame_equal(from_gtf, sim_table)
    bare = rna.copy()
    bare.var = pd.DataFrame(index=rna.var_names)
    from_table = peak_gene_correlation(bare, atac, genes=var[["chrom", "start", "end", "strand"]])
    pd.testing.assert_frame_equal(from_table, sim_table)
    with pytest.raises(ValueError, match="coordinate"):
        peak_gene_correlation(bare, atac)
    # rna.var names are used (not a gene_name column); genes without coordinates skipped
    odd = rna.copy()
    odd.var["gene_name"] = [f"alias{i}" for i in range(odd.n_vars)]
    odd.var["chrom"] = odd.var["chrom"].astype(object)
    odd.var.iloc[0, odd.var.columns.get_loc("chrom")] = np.nan
    partial = peak_gene_correlation(odd, atac)
    expected = sim_table[sim_table["gene"] != rna.var_names[0]].reset_index(drop=True)
    assert rna.var_names[0] in set(sim_table["gene"])
    pd.testing.assert_frame_equal(
        partial[["gene", "peak", "distance", "rho"]], expected[["gene", "peak", "distance", "rho"]]
    )
    # subset and a downstream-only window
    genes = list(rna.var_names[:5])
    sub = peak_gene_correlation(rna, atac, genes_subset=genes, window=(0, 30_000))
    assert set(sub["gene"]) <= set(genes) and len(sub) > 0
    assert sub["distance"].min() >= -500 and sub["distance"].max() <= 30_500
    with pytest.warns(UserWarning, match="genes_subset"):
        peak_gene_correlation(rna, atac, genes_subset=[genes[0], "NotAGene"])
    with pytest.raises(ValueError, match="at least 3"):
        peak_gene_correlation(rna[:2], atac[:2])


# ----------------------------------------------------------------------------- plot


def test_plot_peak_gene_correlation(sim_table, tmp_path):
    import matplotlib.pyplot as plt

    gene = sim_table["gene"].value_counts().index[0]
    ax = plot_peak_gene_correlation(sim_table, gene, save=tmp_path / "links.png", show=False)
    assert isinstance(ax, plt.Axes)
    assert (tmp_path / "links.png").stat().st_size > 0
    assert gene in ax.get_title()
    plt.close(ax.figure)
    with pytest.raises(KeyError, match="no peaks"):
        plot_peak_gene_correlation(sim_table, "NotAGene")


def test_plots_draw_into_given_axes_and_show(sim_table, monkeypatch):
    """scanpy conventions: ``ax=`` is drawn into; ``show`` decides show-or-return."""
    import matplotlib.pyplot as plt

    shown = []
    monkeypatch.setattr(plt, "show", lambda *a, **k: shown.append(1))
    gene = sim_table["gene"].value_counts().index[0]
    fig, axes = plt.subplots(1, 2)
    # into a given Axes: returned, not shown (the caller's figure is unfinished)
    assert plot_peak_gene_correlation(sim_table, gene, ax=axes[1]) is axes[1]
    assert axes[1].get_title() and not axes[0].get_title() and not shown
    # a figure of its own: shown and None returned by default, returned with show=False
    assert plot_peak_gene_correlation(sim_table, gene) is None and shown == [1]
    assert plot_peak_gene_correlation(sim_table, gene, ax=axes[0], show=True) is None
    assert shown == [1, 1]
    plt.close("all")

    obs = pd.DataFrame(
        {"a": list("xyz" * 10), "b": list("uv" * 15)}, index=list(map(str, range(30)))
    )
    adata = ad.AnnData(obs=obs)
    adata.obs = adata.obs.astype("category")
    adata.obsm["X_umap"] = np.random.default_rng(0).normal(size=(30, 2))
    fig, axes = plt.subplots(2, 2)
    out = scmint.pl.embedding(adata, color=("a", "b"), ax=[axes[0, 1], axes[1, 0]])
    assert out is fig and axes[0, 1].collections and not axes[0, 0].collections
    given = plt.figure()
    assert scmint.pl.embedding(adata, color=("a", "b"), ax=given) is given
    assert len(given.axes) >= 2 and len(shown) == 2
    with pytest.raises(ValueError, match="2 Axes"):
        scmint.pl.embedding(adata, color=("a", "b"), ax=axes[0, 0])
    new = scmint.pl.embedding(adata, color="a", show=False)
    assert isinstance(new, plt.Figure) and len(shown) == 2
    plt.close("all")


# ----------------------------------------------------------------------------- real data


def test_minibulk_snare_sanity(snare):
    from sklearn.decomposition import TruncatedSVD

    rna, atac = snare["rna"], snare["atac"]
    X = sp.csr_matrix(rna.X, dtype=np.float32)
    Xn = sp.csr_matrix(sp.diags(1e4 / np.asarray(X.sum(axis=1)).ravel()) @ X)
    Xn.data = np.log1p(Xn.data)
    z = TruncatedSVD(20, random_state=0).fit_transform(Xn)
    rb = minibulk(rna, z, "cell_type", n_bulks=100)
    ab = minibulk(atac, z, "cell_type", n_bulks=100)
    assert rb.n_obs == 100 and rb.obs_names.equals(ab.obs_names)
    assert set(rb.obs["cell_type"]) == set(rna.obs["cell_type"])  # 23 types, all present
    np.testing.assert_allclose(ab.X.sum(), atac.X.sum(), rtol=1e-9)
    assign = rb.uns["minibulk"]["assignment"]
    assert (
        pd.Series(rna.obs["cell_type"].astype(str).to_numpy()).groupby(assign).nunique() == 1
    ).all()


@pytest.mark.skipif(
    not os.environ.get("SCMINT_SLOW_TESTS"),
    reason="pynndescent JIT-compiles for ~40 s; set SCMINT_SLOW_TESTS=1",
)
def test_umap_above_the_exact_neighbour_limit():
    """>= 4096 cells take the approximate-neighbour path (scanpy's own fails on scipy 1.17)."""
    from scmint.tl import umap
    from scmint.tl._embedding import _EXACT_BELOW

    rng = np.random.default_rng(0)
    centres = rng.normal(scale=8.0, size=(3, 16))
    group = rng.integers(0, 3, size=_EXACT_BELOW + 500)
    adata = ad.AnnData(obs=pd.DataFrame({"g": group.astype(str)}))
    adata.obsm["X_emb"] = (centres[group] + rng.normal(size=(len(group), 16))).astype(np.float32)
    umap(adata, n_neighbors=10)
    coords = adata.obsm["X_umap"]
    assert coords.shape == (len(group), 2) and np.isfinite(coords).all()
    # the three well-separated groups stay apart: nearest other-group centroid is far
    cent = np.stack([coords[group == g].mean(0) for g in range(3)])
    spread = max(coords[group == g].std(0).max() for g in range(3))
    gaps = [np.linalg.norm(cent[a] - cent[b]) for a in range(3) for b in range(a + 1, 3)]
    assert min(gaps) > 2 * spread


def test_umap_copy_follows_scanpy():
    """``copy=False`` (default) writes into ``adata`` and returns None; ``copy=True`` a copy."""
    from scmint.tl import umap

    adata = ad.AnnData(obs=pd.DataFrame(index=[str(i) for i in range(200)]))
    adata.obsm["X_emb"] = np.random.default_rng(0).normal(size=(200, 8)).astype(np.float32)
    out = umap(adata, copy=True)
    assert out is not adata and out.obsm["X_umap"].shape == (200, 2)
    assert "X_umap" not in adata.obsm and "neighbors" not in adata.uns
    assert umap(adata) is None
    np.testing.assert_allclose(adata.obsm["X_umap"], out.obsm["X_umap"])


def test_umap_keeps_torch_thread_count():
    """scanpy's numba kernels reset torch's threads; tl.umap must put them back."""
    import torch

    from scmint.tl import umap

    n = torch.get_num_threads()
    adata = ad.AnnData(obs=pd.DataFrame(index=[str(i) for i in range(300)]))
    adata.obsm["X_emb"] = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
    try:
        torch.set_num_threads(1)
        umap(adata)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(n)
