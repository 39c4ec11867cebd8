"""Tests of scmint.pp on the real starter datasets and tiny synthetic inputs."""

import os
import pickle
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp
from sklearn.neighbors import NearestNeighbors

import scmint.pp as pp
from scmint.pp._utils import aligned_matrix


# ----------------------------------------------------------------------------- helpers
def _snapshot(adata):
    X = adata.X.copy()
    return (
        X,
        adata.obs.copy(),
        adata.var_names.copy(),
        {k: v.copy() for k, v in adata.layers.items()},
    )


def _assert_unchanged(adata, snap):
    X, obs, var_names, layers = snap
    if sp.issparse(X):
        assert sp.issparse(adata.X)
        assert (adata.X != X).nnz == 0
    else:
        np.testing.assert_array_equal(adata.X, X)
    pd.testing.assert_frame_equal(adata.obs, obs)
    assert adata.var_names.equals(var_names)
    assert set(adata.layers.keys()) == set(layers)


def _knn_agreement(Z, labels, k=10):
    idx = NearestNeighbors(n_neighbors=k + 1).fit(Z).kneighbors(Z, return_distance=False)[:, 1:]
    labels = np.asarray(labels)
    return float((labels[idx] == labels[:, None]).mean())


def _chance_agreement(labels):
    p = pd.Series(labels).value_counts(normalize=True).to_numpy()
    return float((p**2).sum())


def _assert_close_up_to_sign(A, B, n, atol):
    for j in range(n):
        a, b = A[:, j], B[:, j]
        s = np.sign(a @ b)
        np.testing.assert_allclose(a, s * b, atol=atol, err_msg=f"component {j}")


# ----------------------------------------------------------------------------- LogNormPCA
def test_lognormpca_reproduces_training_and_scanpy(bmmc_multiome):
    rna = bmmc_multiome["rna"]
    snap = _snapshot(rna)
    tr = pp.LogNormPCA(n_comps=20, n_top_genes=300)
    Z = tr.fit_transform(rna)
    _assert_unchanged(rna, snap)
    assert Z.shape == (rna.n_obs, 20) and Z.dtype == np.float32
    assert len(tr.hvg_names_) == 300 and tr.n_output_ == 20

    # transform of the training cells equals fit_transform
    np.testing.assert_allclose(tr.transform(rna), Z, atol=1e-5)
    # a bare count matrix in the fitted feature order gives the same
    np.testing.assert_allclose(tr.transform(rna.X), Z, atol=1e-5)
    # a subset of cells gives the corresponding rows
    sub = np.arange(0, rna.n_obs, 7)
    np.testing.assert_allclose(tr.transform(rna[sub]), Z[sub], atol=1e-5)

    # independent check: scanpy's own pipeline on a copy gives the same embedding
    ref = rna.copy()
    ref.X = ref.X.astype(np.float64)
    sc.pp.normalize_total(ref, target_sum=1e4)
    sc.pp.log1p(ref)
    sc.pp.highly_variable_genes(ref, n_top_genes=300, subset=True)
    assert set(ref.var_names) == set(tr.hvg_names_)
    sc.pp.scale(ref, max_value=10)
    np.testing.assert_allclose(ref.var["std"].to_numpy(), tr.std_, rtol=1e-6)
    sc.pp.pca(ref, n_comps=20, svd_solver="arpack", random_state=0, dtype="float64")
    _assert_close_up_to_sign(ref.obsm["X_pca"], Z, 10, atol=1e-3)


def test_lognormpca_feature_matching(bmmc_multiome):
    rna = bmmc_multiome["rna"]
    tr = pp.LogNormPCA(n_comps=10, n_top_genes=200)
    Z = tr.fit_transform(rna)

    # shuffled feature order: aligned by name, same result
    perm = np.random.default_rng(0).permutation(rna.n_vars)
    np.testing.assert_allclose(tr.transform(rna[:, perm].copy()), Z, atol=1e-5)
    # extra features are ignored
    extra = ad.AnnData(
        sp.hstack([rna.X, sp.csr_matrix(np.ones((rna.n_obs, 1), dtype=np.float32))]).tocsr()
    )
    extra.var_names = [*rna.var_names, "NOT_A_GENE"]
    np.testing.assert_allclose(tr.transform(extra), Z, atol=1e-5)

    # missing features raise, naming how many
    missing = rna[:, 3:].copy()
    with pytest.raises(ValueError, match=r"3 of the 600 reference features .* are absent"):
        tr.transform(missing)
    # ... unless zero-filled on request, which equals zeroing them in the full data
    with pytest.warns(UserWarning, match="3 of the 600"):
        Zm = tr.transform(missing, allow_missing=True)
    Xz = rna.X.tolil()
    Xz[:, :3] = 0
    np.testing.assert_allclose(Zm, tr.transform(Xz.tocsr()), atol=1e-5)
    # a bare matrix with the wrong width raises
    with pytest.raises(ValueError, match="600 features were expected"):
        tr.transform(rna.X[:, :-1])
    with pytest.raises(pp.NotFittedError):
        pp.LogNormPCA().transform(rna)

    # chunked projection (large inputs) gives the same rows
    tr.chunk_size = 64
    np.testing.assert_allclose(tr.transform(rna), Z, atol=1e-5)
    # the matrix alignment of the transforms, on a bare matrix with its own names
    X = aligned_matrix(rna.X[:, perm], tr.feature_names_, var_names=rna.var_names[perm])
    assert (X != rna.X).nnz == 0


def test_lognormpca_serialisation_and_layers(bmmc_multiome):
    rna = bmmc_multiome["rna"]
    rna.layers["counts"] = rna.X.copy()
    rna.X = rna.layers["normalized"].copy()  # X no longer counts
    snap = _snapshot(rna)
    tr = pp.LogNormPCA(n_comps=10, n_top_genes=None, hvg_flavor="seurat")
    Z = tr.fit_transform(rna, layer="counts")
    _assert_unchanged(rna, snap)
    assert tr.layer_ == "counts"
    np.testing.assert_allclose(tr.transform(rna), Z, atol=1e-5)  # reads the fitted layer
    assert not np.allclose(tr.transform(rna, layer="X"), Z, atol=1e-3)

    clone = pickle.loads(pickle.dumps(tr))
    np.testing.assert_allclose(clone.transform(rna), Z, atol=1e-6)
    clone2 = pp.FittedTransform.from_dict(tr.to_dict())
    assert isinstance(clone2, pp.LogNormPCA)
    np.testing.assert_allclose(clone2.transform(rna), Z, atol=1e-6)


def test_lognormpca_seurat_v3_unscaled_sparse(bmmc_multiome):
    rna = bmmc_multiome["rna"]
    tr = pp.LogNormPCA(n_comps=10, n_top_genes=150, hvg_flavor="seurat_v3", scale=False)
    Z = tr.fit_transform(rna)
    hv = pp.highly_variable(rna, n_top_genes=150, flavor="seurat_v3")
    assert set(tr.hvg_names_) == set(hv.index[hv["highly_variable"]])
    assert sp.issparse(tr.scaled(rna))
    np.testing.assert_allclose(tr.transform(rna), Z, atol=1e-5)
    sub = np.arange(50, 120)
    np.testing.assert_allclose(tr.transform(rna[sub]), Z[sub], atol=1e-5)


# ----------------------------------------------------------------------------- TfidfLSI
def test_tfidf_lsi_matches_muon_and_projects(bmmc_multiome):
    from muon import atac as mu_atac

    atac = bmmc_multiome["atac"]
    snap = _snapshot(atac)
    tr = pp.TfidfLSI(n_comps=30)
    L = tr.fit_transform(atac)
    _assert_unchanged(atac, snap)
    assert L.shape == (atac.n_obs, 29)  # first component dropped
    assert abs(tr.depth_correlation_[0]) > 0.5

    # TF-IDF with the stored idf equals muon's on the training cells, and is sparse
    T = tr.tfidf(atac)
    assert sp.issparse(T)
    ref = mu_atac.pp.tfidf(ad.AnnData(atac.X.copy()), inplace=False)
    assert sp.issparse(ref)
    assert T.nnz == atac.X.nnz
    np.testing.assert_allclose(T.toarray(), ref.toarray(), rtol=1e-5, atol=1e-5)
    assert np.array_equal(pp.tfidf(atac).toarray() != 0, ref.toarray() != 0)
    # idf itself as muon defines it: log1p(n_cells / total counts of the peak)
    colsum = np.asarray(atac.X.sum(0)).ravel()
    seen = colsum > 0
    assert (~seen).any()  # this dataset has peaks without counts: muon's idf is inf there
    np.testing.assert_allclose(tr.idf_[seen], np.log1p(atac.n_obs / colsum[seen]), rtol=1e-6)
    assert (tr.idf_[~seen] == 0).all()

    # the embedding is muon's LSI (up to sign), with the first component dropped
    lsi_ad = ad.AnnData(ref.astype(np.float64))
    mu_atac.tl.lsi(lsi_ad, n_comps=30)
    _assert_close_up_to_sign(lsi_ad.obsm["X_lsi"][:, 1:], L.astype(np.float64), 5, atol=1e-3)

    # projection of training cells and subsets
    np.testing.assert_allclose(tr.transform(atac), L, atol=1e-5)
    sub = np.arange(3, atac.n_obs, 5)
    np.testing.assert_allclose(tr.transform(atac[sub]), L[sub], atol=1e-5)
    perm = np.random.default_rng(1).permutation(atac.n_vars)
    np.testing.assert_allclose(tr.transform(atac[:, perm].copy()), L, atol=1e-5)
    with pytest.raises(ValueError, match="1 of the 600 reference features .* are absent"):
        tr.transform(atac[:, 1:].copy())
    # perturbed (non-integer) counts project without refitting
    pert = tr.transform(atac.X * 1.5)
    assert pert.shape == L.shape and np.isfinite(pert).all()
    clone = pp.FittedTransform.from_dict(pickle.loads(pickle.dumps(tr.to_dict())))
    np.testing.assert_allclose(clone.transform(atac[sub]), L[sub], atol=1e-6)


def test_tfidf_lsi_depth_option_and_functional(bmmc_multiome):
    atac = bmmc_multiome["atac"]
    L, tr = pp.tfidf_lsi(atac, n_comps=20, drop_component="depth")
    dropped = np.setdiff1d(np.arange(20), tr.kept_)
    assert len(dropped) == 1
    assert np.argmax(np.abs(tr.depth_correlation_)) == dropped[0]
    L_all, tr_all = pp.tfidf_lsi(atac, n_comps=20, drop_component=None)
    assert L_all.shape[1] == 20
    np.testing.assert_allclose(L_all.std(0), 1, atol=1e-4)
    np.testing.assert_allclose(tr_all.transform(atac), L_all, atol=1e-5)


def test_embeddings_separate_cell_types(bmmc_multiome):
    rna, atac = bmmc_multiome["rna"], bmmc_multiome["atac"]
    labels = rna.obs["cell_type"].to_numpy()
    chance = _chance_agreement(labels)
    Zr, _ = pp.pca(rna, n_comps=20, n_top_genes=None)
    Za, _ = pp.tfidf_lsi(atac, n_comps=6)  # only 600 peaks: few informative components
    acc_r = _knn_agreement(Zr, labels)
    acc_a = _knn_agreement(Za, labels)
    rng = np.random.default_rng(0)
    acc_rand = _knn_agreement(rng.normal(size=Zr.shape), labels)
    assert acc_r > max(2 * chance, acc_rand + 0.2), (acc_r, chance, acc_rand)
    assert acc_a > max(1.6 * chance, acc_rand + 0.08), (acc_a, chance, acc_rand)


# ----------------------------------------------------------------------------- FeatureScaler
def test_feature_scaler_scaling_and_clr(bmmc_cite):
    from muon import prot as mu_prot

    adt = bmmc_cite["adt"]
    snap = _snapshot(adt)
    fs = pp.FeatureScaler(max_value=None, log=True)
    Z = fs.fit_transform(adt)
    _assert_unchanged(adt, snap)
    np.testing.assert_allclose(Z.mean(0), 0, atol=1e-5)
    sd = Z.std(0, ddof=1)
    np.testing.assert_allclose(sd[sd > 0], 1, atol=1e-4)
    np.testing.assert_allclose(fs.transform(adt[10:40]), Z[10:40], atol=1e-5)

    clipped = pp.FeatureScaler(max_value=2.0, log=True).fit_transform(adt)
    assert clipped.max() <= 2.0 + 1e-6 and clipped.min() >= -2.0 - 1e-6

    # CLR across cells per feature: the same as muon's, and replayed on new cells
    clr = pp.FeatureScaler(clr="feature", scale=False)
    C = clr.fit_transform(adt)
    ref = adt.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mu_prot.pp.clr(ref)
    np.testing.assert_allclose(C, ref.X.toarray(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(clr.transform(adt[:25]), C[:25], atol=1e-5)
    Cs = pp.FeatureScaler(clr="feature").fit(adt)
    np.testing.assert_allclose(Cs.transform(adt).mean(0), 0, atol=1e-2)
    with pytest.raises(ValueError, match="missing"):
        Cs.transform(adt[:, 5:].copy())
    with pytest.raises(ValueError, match="either log"):
        pp.FeatureScaler(clr="cell", log=True).fit(adt)


def test_feature_scaler_matches_scanpy_scale_on_sparse_peaks(bmmc_multiome):
    """Statistics come from the sparse matrix (no densified copy) and equal scanpy's."""
    atac = bmmc_multiome["atac"]
    assert sp.issparse(atac.X)
    fs = pp.FeatureScaler(max_value=10.0).fit(atac)
    ref = atac.copy()
    ref.X = ref.X.toarray().astype(np.float64)
    sc.pp.scale(ref, max_value=10.0)
    np.testing.assert_allclose(fs.mean_, ref.var["mean"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(fs.std_, ref.var["std"], rtol=1e-5)
    out = fs.transform(atac)
    assert out.dtype == np.float32 and out.shape == atac.shape
    np.testing.assert_allclose(out, ref.X, atol=1e-4)


# ----------------------------------------------------------------------------- functional
def test_normalize_log_and_highly_variable(bmmc_cite):
    rna = bmmc_cite["rna"]
    snap = _snapshot(rna)
    out = pp.normalize_log(rna, target_sum=1e4)
    _assert_unchanged(rna, snap)
    assert out is not rna
    expm = np.expm1(out.X.toarray()).sum(1)
    np.testing.assert_allclose(expm[expm > 0], 1e4, rtol=1e-3)

    hv = pp.highly_variable(rna, n_top_genes=200, flavor="seurat")
    _assert_unchanged(rna, snap)
    assert hv.index.equals(rna.var_names) and hv["highly_variable"].sum() == 200
    hv3 = pp.highly_variable(rna, n_top_genes=200, flavor="seurat_v3", batch_key="batch")
    assert hv3["highly_variable"].sum() == 200
    _assert_unchanged(rna, snap)

    copy = rna.copy()
    assert pp.normalize_log(copy, copy=False) is None
    np.testing.assert_allclose(copy.X.toarray(), out.X.toarray(), rtol=1e-6)


# ----------------------------------------------------------------------------- gene activity
def test_gene_activity_from_prior(snare, data_dir):
    rna, atac = snare["rna"], snare["atac"]
    x_before = atac.X.copy()
    prior_path = data_dir / "snare_mouse_cortex" / "gene_peak_prior.npz"
    prior = sp.load_npz(prior_path)
    ga = pp.gene_activity(atac, links=prior_path, gene_names=rna.var_names)
    assert (atac.X != x_before).nnz == 0
    assert sp.issparse(ga.X) and ga.shape == (atac.n_obs, rna.n_vars)
    assert ga.var_names.equals(rna.var_names) and ga.obs.equals(atac.obs)
    expected = (atac.X @ prior.T.astype(np.float32)).tocsr()
    assert abs(ga.X - expected).max() < 1e-4
    np.testing.assert_array_equal(ga.var["n_peaks"], np.asarray(prior.sum(1)).ravel())

    # activity correlates positively with expression: per gene across cell-type pseudobulks
    ct = pd.get_dummies(rna.obs["cell_type"]).to_numpy(dtype=float)
    ct = ct / ct.sum(0)  # pandas 3's to_numpy may return a read-only array

    def pseudobulk(X):
        lib = np.maximum(np.asarray(X.sum(1)).ravel(), 1)
        return np.log1p(np.asarray((sp.diags(1e4 / lib) @ X).T @ ct).T)

    A, R = pseudobulk(ga.X), pseudobulk(rna.X)
    ok = (A.std(0) > 0) & (R.std(0) > 0)
    r = np.array([np.corrcoef(A[:, j], R[:, j])[0, 1] for j in np.flatnonzero(ok)])
    assert r.mean() > 0.15 and (r > 0).mean() > 0.7, (r.mean(), (r > 0).mean())

    with pytest.raises(ValueError, match="gene_names"):
        pp.gene_activity(atac, links=prior)
    with pytest.raises(ValueError, match="exactly one"):
        pp.gene_activity(atac)


def test_parse_peak_names():
    df = pp.parse_peak_names(
        ["chr1-100-200", "chr2_300_400", "chrX:5-10", "chrUn_KI270.1-7-9", "x"]
    )
    assert df["chrom"].tolist()[:4] == ["chr1", "chr2", "chrX", "chrUn_KI270.1"]
    assert df["start"].tolist() == [100, 300, 5, 7, -1]
    assert df["end"].tolist() == [200, 400, 10, 9, -1]
    assert df["parsed"].tolist() == [True, True, True, True, False]


GENES = pd.DataFrame(
    {
        "chrom": ["chr1", "chr1", "chr2"],
        "start": [1000, 5000, 100],  # BED: 0-based, end exclusive
        "end": [2000, 6000, 300],
        "strand": ["+", "-", "+"],
    },
    index=["GENEA", "GENEB", "GENEC"],
)
# upstream=500: GENEA window [500, 2000), GENEB (minus strand, TSS at 6000) [5000, 6500),
# GENEC [0, 300)
PEAKS = [
    "chr1-600-700",  # 0: GENEA upstream (plus strand)
    "chr1-1500-1600",  # 1: GENEA body
    "chr1-4600-4700",  # 2: 'upstream' of GENEB only if it were plus strand -> none
    "chr1:6200-6300",  # 3: GENEB upstream (minus strand)
    "chr1_2100_2200",  # 4: after GENEA end -> only with downstream >= 101
    "chr2-150-250",  # 5: GENEC body
    "chr1-1990-5100",  # 6: spans GENEA end and GENEB start -> both
    "chr3-10-20",  # 7: chromosome without genes
    "chr1-400-500",  # 8: ends exactly where GENEA's window starts -> none
]
EXPECTED_LINKS = np.array(
    [
        [1, 1, 0, 0, 0, 0, 1, 0, 0],
        [0, 0, 0, 1, 0, 0, 1, 0, 0],
        [0, 0, 0, 0, 0, 1, 0, 0, 0],
    ],
    dtype=np.float32,
)


def _write_gtf(path):
    lines = ["#!genome-build test"]
    for name, row in GENES.iterrows():
        attr = f'gene_id "{name}_ID"; gene_name "{name}";'
        for feature in ("gene", "transcript", "exon"):
            # GTF: 1-based, inclusive
            lines.append(
                "\t".join(
                    [
                        row.chrom,
                        "test",
                        feature,
                        str(row.start + 1),
                        str(row.end),
                        ".",
                        row.strand,
                        ".",
                        attr,
                    ]
                )
            )
    path.write_text("\n".join(lines) + "\n")


def _write_bed(path):
    lines = [
        f"{row.chrom}\t{row.start}\t{row.end}\t{name}\t0\t{row.strand}"
        for name, row in GENES.iterrows()
    ]
    path.write_text("\n".join(lines) + "\n")


def test_gene_activity_from_coordinates(tmp_path):
    counts = np.array(
        [
            [1, 2, 4, 8, 16, 32, 64, 128, 256],
            [0, 1, 0, 1, 0, 1, 0, 1, 0],
            [3, 0, 0, 0, 5, 0, 7, 0, 9],
        ],
        dtype=np.float32,
    )
    atac = ad.AnnData(
        sp.csr_matrix(counts),
        obs=pd.DataFrame({"cell_type": ["a", "b", "c"]}, index=["c0", "c1", "c2"]),
    )
    atac.var_names = PEAKS
    snap = _snapshot(atac)
    gtf, bed = tmp_path / "genes.gtf", tmp_path / "genes.bed"
    _write_gtf(gtf)
    _write_bed(bed)
    assert pp.read_gtf(gtf)[["chrom", "start", "end", "strand"]].equals(
        GENES.reset_index(drop=True)[["chrom", "start", "end", "strand"]]
    )

    for genes in (GENES, gtf, bed):
        links = pp.peak_gene_links(PEAKS, genes, upstream=500)
        np.testing.assert_array_equal(links.toarray(), EXPECTED_LINKS)
        ga = pp.gene_activity(atac, genes=genes, upstream=500)
        _assert_unchanged(atac, snap)
        assert ga.var_names.tolist() == ["GENEA", "GENEB", "GENEC"]
        assert sp.issparse(ga.X) and ga.obs.equals(atac.obs)
        # hand-checked: GENEA = peaks 0,1,6; GENEB = peaks 3,6; GENEC = peak 5
        np.testing.assert_array_equal(
            ga.X.toarray(), [[1 + 2 + 64, 8 + 64, 32], [0 + 1 + 0, 1 + 0, 1], [3 + 0 + 7, 0 + 7, 0]]
        )
        np.testing.assert_array_equal(ga.var["n_peaks"], [3, 2, 1])

    # a downstream window reaches peak 4 for GENEA; GENEB's downstream is to its left
    down = pp.peak_gene_links(PEAKS, GENES, upstream=500, downstream=200).toarray()
    assert down[0, 4] == 1 and down[1].sum() == 2
    # TSS-only windows: GENEA [500, 1001) -> peak 0; GENEB [5999, 6500) -> peak 3
    tss = pp.peak_gene_links(PEAKS, GENES, upstream=500, gene_body=False).toarray()
    np.testing.assert_array_equal(
        tss[:2], [[1, 0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0, 0, 0, 0]]
    )
    # requested genes in a given order, unknown ones zero with a warning
    with pytest.warns(UserWarning, match="1 of 3 gene_names"):
        ga = pp.gene_activity(atac, genes=bed, upstream=500, gene_names=["GENEC", "NOPE", "GENEA"])
    np.testing.assert_array_equal(ga.X.toarray()[:, 1], 0)
    np.testing.assert_array_equal(ga.X.toarray()[:, 0], [32, 1, 0])


def test_peak_gene_links_matches_brute_force(snare):
    peaks = pp.parse_peak_names(snare["atac"].var_names)
    rng = np.random.default_rng(0)
    chroms = peaks["chrom"].unique()[:5]
    n = 300
    chrom = rng.choice(chroms, n)
    start = rng.integers(0, int(peaks["end"].max()), n)
    genes = pd.DataFrame(
        {
            "chrom": chrom,
            "start": start,
            "end": start + rng.integers(100, 200_000, n),
            "strand": rng.choice(["+", "-", "."], n),
            "gene_name": [f"g{i}" for i in range(n)],
        }
    )
    up, down = 5000, 1000
    links = pp.peak_gene_links(snare["atac"].var_names, genes, upstream=up, downstream=down)
    pc, ps, pe = peaks["chrom"].to_numpy(), peaks["start"].to_numpy(), peaks["end"].to_numpy()
    for i, g in genes.iterrows():
        if g.strand == "+":
            lo, hi = g.start - up, g.end + down
        elif g.strand == "-":
            lo, hi = g.start - down, g.end + up
        else:
            lo, hi = g.start - up, g.end + up
        expected = np.flatnonzero((pc == g.chrom) & (ps < hi) & (pe > max(lo, 0)))
        np.testing.assert_array_equal(
            links[i].indices if links[i].has_sorted_indices else np.sort(links[i].indices), expected
        )
    assert links.nnz > 100


# ----------------------------------------------------------------------------- kNN graphs
def test_knn_graph(bmmc_multiome):
    Z, _ = pp.pca(bmmc_multiome["rna"], n_comps=15, n_top_genes=None)
    Z_before = Z.copy()
    k = 10
    D, C = pp.knn_graph(Z, n_neighbors=k)
    np.testing.assert_array_equal(Z, Z_before)
    n = Z.shape[0]
    assert D.shape == C.shape == (n, n)
    np.testing.assert_array_equal(np.diff(D.indptr), k)
    assert D.diagonal().sum() == 0 and (D.tocoo().row != D.tocoo().col).all()
    assert abs(C - C.T).max() < 1e-6
    assert C.data.min() > 0 and C.data.max() <= 1 + 1e-6
    # every kNN edge is in the connectivities
    assert ((D != 0).astype(int) - (C != 0).astype(int) > 0).nnz == 0

    # distances are the true k nearest (brute force)
    full = np.linalg.norm(Z[:, None, :] - Z[None, :, :], axis=-1)
    np.fill_diagonal(full, np.inf)
    true_k = np.sort(full, axis=1)[:, :k]
    got = np.sort(D.toarray() + np.where(D.toarray() == 0, np.inf, 0), axis=1)[:, :k]
    np.testing.assert_allclose(got, true_k, rtol=1e-4)

    Db, Cb = pp.knn_graph(Z, n_neighbors=k, connectivity="binary")
    assert abs(Cb - Cb.T).max() == 0 and set(np.unique(Cb.data)) == {1.0}
    assert (Db != D).nnz == 0


@pytest.mark.parametrize("duplicates", [False, True])
def test_umap_connectivities_equal_umap(bmmc_multiome, duplicates):
    """The numpy fuzzy simplicial set equals umap's (scanpy's weights), to float32 rounding.

    With duplicated cells some neighbour distances are 0 (umap's rho then skips them).
    """
    from umap.umap_ import fuzzy_simplicial_set

    Z, _ = pp.pca(bmmc_multiome["rna"], n_comps=15, n_top_genes=None)
    if duplicates:
        Z = np.vstack([Z, Z[:40], Z[:10]])
    k = 15
    idx, dist = pp.knn_indices(Z, n_neighbors=k)
    ours = pp.umap_connectivities(idx, dist)
    n = Z.shape[0]
    ref, _, _ = fuzzy_simplicial_set(
        sp.coo_matrix((n, 1)),
        k + 1,
        0,
        "euclidean",
        knn_indices=np.hstack([np.arange(n)[:, None], idx]),
        knn_dists=np.hstack([np.zeros((n, 1), dtype=np.float32), dist]),
    )
    ref = ref.tocsr()
    assert (ours != 0).sum() == (ref != 0).sum()
    assert abs(ours - ref).max() < 1e-4
    np.testing.assert_allclose(ours[ref.nonzero()].A1, ref[ref.nonzero()].A1, rtol=1e-4)


@pytest.mark.skipif(
    not os.environ.get("SCMINT_SLOW_TESTS"),
    reason="pynndescent JIT-compiles for ~40 s; set SCMINT_SLOW_TESTS=1",
)
def test_knn_graph_pynndescent(bmmc_multiome):
    Z, _ = pp.pca(bmmc_multiome["rna"], n_comps=15, n_top_genes=None)
    k = 10
    D_exact, _ = pp.knn_graph(Z, n_neighbors=k, method="exact", connectivity="binary")
    D_apx, C_apx = pp.knn_graph(Z, n_neighbors=k, method="pynndescent", connectivity="binary")
    np.testing.assert_array_equal(np.diff(D_apx.indptr), k)
    recall = ((D_exact != 0).multiply(D_apx != 0)).nnz / D_exact.nnz
    assert recall > 0.9
    assert abs(C_apx - C_apx.T).max() == 0


def test_fitting_a_transform_keeps_torch_threads():
    """scanpy's numba kernels (normalize_total, HVG) reset torch's thread count; fit must not.

    On a machine with one core numba uses one thread and this cannot fail; CI has two.
    """
    import torch

    from scmint.data import simulate_multiome

    mdata = simulate_multiome(n_cells=200, n_genes=200, n_peaks=300, seed=0)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        pp.LogNormPCA(n_comps=5).fit(mdata["rna"])
        pp.TfidfLSI(n_comps=5).fit(mdata["atac"])
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
