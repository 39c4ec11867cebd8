"""Tests for scmint.data._simulate.simulate_multiome."""

import time

import anndata
import mudata
import numpy as np
import pytest
from scipy import sparse
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from scmint.data._simulate import simulate_multiome

# ----------------------------------------------------------------------------- helpers


def _lognorm(x: sparse.spmatrix) -> np.ndarray:
    x = np.asarray(x.toarray(), dtype=np.float64)
    return np.log1p(x / np.maximum(x.sum(1, keepdims=True), 1) * 1e4)


def _knn_accuracy(x: np.ndarray, labels: np.ndarray, n_pcs: int = 20) -> float:
    x = (x - x.mean(0)) / (x.std(0) + 1e-8)
    z = PCA(n_pcs, random_state=0).fit_transform(x)
    return float(cross_val_score(KNeighborsClassifier(15), z, labels, cv=3).mean())


def _colcorr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(0)
    b = b - b.mean(0)
    return (a * b).sum(0) / np.sqrt((a * a).sum(0) * (b * b).sum(0) + 1e-12)


def _membership(mdata: mudata.MuData) -> dict[str, set[str]]:
    return {name: set(mod.obs_names) for name, mod in mdata.mod.items()}


@pytest.fixture(scope="module")
def sim() -> mudata.MuData:
    """Default simulation plus 30 proteins (module scope: read-only in tests)."""
    return simulate_multiome(n_proteins=30, seed=0)


@pytest.fixture(scope="module")
def paired() -> mudata.MuData:
    """Fully paired simulation for cross-modality checks."""
    return simulate_multiome(n_cells=1500, paired_fraction=1.0, n_proteins=30, seed=3)


# ----------------------------------------------------------------------------- structure


def test_structure_and_count_format(sim):
    assert list(sim.mod) == ["rna", "atac", "adt"]
    assert sim.n_obs == 2000
    assert sim["rna"].n_vars == 1000
    assert sim["atac"].n_vars == 3000
    assert sim["adt"].n_vars == 30
    for name, mod in sim.mod.items():
        x = mod.X
        assert sparse.issparse(x) and x.format == "csr", name
        assert x.dtype == np.float32, name
        assert x.data.min() >= 0, name
        np.testing.assert_array_equal(x.data, np.round(x.data))
        assert x.nnz > 0
        assert mod.obs["cell_type"].dtype == "category"
        assert mod.obs["batch"].dtype == "category"
        assert list(mod.obs["cell_type"].cat.categories) == [f"type{k}" for k in range(5)]
        assert list(mod.obs["batch"].cat.categories) == ["batch0", "batch1"]
        assert mod.obsm["X_true"].shape == (mod.n_obs, 5 + 5)
        assert all(n.startswith("cell") and len(n) == 9 for n in mod.obs_names)
    assert list(sim["rna"].var_names[:2]) == ["Gene0000", "Gene0001"]
    assert {"chrom", "start", "end", "strand"} <= set(sim["rna"].var.columns)
    assert set(sim["rna"].var["strand"]) == {"+", "-"}
    assert sim["adt"].var["gene"].isin(sim["rna"].var_names).all()
    # global obs agrees with the modalities
    for mod in sim.mod.values():
        glob = sim.obs.loc[mod.obs_names]
        np.testing.assert_array_equal(glob["cell_type"].values, mod.obs["cell_type"].values)
        np.testing.assert_array_equal(glob["batch"].values, mod.obs["batch"].values)
    truth = sim.uns["simulation"]
    for key in [
        "params",
        "cell_types",
        "batches",
        "cell_type_proportions",
        "n_paired",
        "latent_columns",
        "de_genes",
        "de_genes_down",
        "de_lfc",
        "gene_peak_links",
        "protein_genes",
    ]:
        assert key in truth, key
    assert truth["params"]["n_cells"] == 2000 and truth["params"]["seed"] == 0
    assert truth["de_lfc"].shape == (5, 1000)
    assert all(len(v) == 20 for v in truth["de_genes"].values())
    assert all(len(v) == 10 for v in truth["de_genes_down"].values())
    links = truth["gene_peak_links"]
    assert sparse.issparse(links) and links.shape == (1000, 3000)
    assert set(np.unique(links.data)) == {1.0}
    assert links.nnz == 2000  # peaks_per_gene=2
    assert links.sum(0).max() == 1  # a peak is linked to at most one gene
    np.testing.assert_array_equal(
        np.asarray(links.sum(0)).ravel() > 0, sim["atac"].var["linked_gene"].to_numpy() != ""
    )


def test_h5mu_roundtrip(tmp_path):
    mdata = simulate_multiome(n_cells=200, n_genes=100, n_peaks=300, n_proteins=5, seed=1)
    path = tmp_path / "sim.h5mu"
    # pandas 3 stores strings as pd.StringDtype, which anndata 0.12 writes only on opt-in
    with (
        mudata.set_options(pull_on_update=False),
        anndata.settings.override(allow_write_nullable_strings=True),
    ):
        mdata.write(path)
        back = mudata.read_h5mu(path)
    for name in mdata.mod:
        assert (back[name].X != mdata[name].X).nnz == 0
    assert (
        back.uns["simulation"]["gene_peak_links"] != mdata.uns["simulation"]["gene_peak_links"]
    ).nnz == 0


def test_default_call_is_fast():
    start = time.perf_counter()
    simulate_multiome()
    assert time.perf_counter() - start < 10  # ~0.7 s on 2 slow cores; generous bound


# ----------------------------------------------------------------------------- determinism


def test_same_seed_identical_different_seed_differs():
    kw = {"n_cells": 300, "n_genes": 200, "n_peaks": 500, "n_proteins": 10}
    a = simulate_multiome(seed=7, **kw)
    b = simulate_multiome(seed=7, **kw)
    c = simulate_multiome(seed=8, **kw)
    for name in a.mod:
        assert (a[name].X != b[name].X).nnz == 0
        assert a[name].obs.equals(b[name].obs)
        assert a[name].var.equals(b[name].var)
        np.testing.assert_array_equal(a[name].obsm["X_true"], b[name].obsm["X_true"])
        assert a[name].shape != c[name].shape or (a[name].X != c[name].X).nnz > 0
    assert (
        a.uns["simulation"]["gene_peak_links"] != b.uns["simulation"]["gene_peak_links"]
    ).nnz == 0
    assert not a["atac"].var_names.equals(c["atac"].var_names)


def test_streams_independent_of_other_modalities():
    kw = {"n_cells": 300, "n_genes": 200, "n_peaks": 500, "seed": 2}
    a = simulate_multiome(n_proteins=0, paired_fraction=1.0, **kw)
    b = simulate_multiome(n_proteins=15, paired_fraction=1.0, **kw)
    for name in ["rna", "atac"]:
        assert (a[name].X != b[name].X).nnz == 0


# ----------------------------------------------------------------------------- pairing


@pytest.mark.parametrize("paired_fraction", [0.0, 0.3, 0.5, 1.0])
@pytest.mark.parametrize("n_proteins", [0, 10])
def test_pairing(paired_fraction, n_proteins):
    n = 401
    mdata = simulate_multiome(
        n_cells=n,
        n_genes=100,
        n_peaks=200,
        n_proteins=n_proteins,
        paired_fraction=paired_fraction,
        seed=4,
    )
    members = _membership(mdata)
    n_mod = 3 if n_proteins else 2
    assert len(members) == n_mod
    union = set.union(*members.values())
    assert len(union) == n == mdata.n_obs
    counts = {cell: sum(cell in s for s in members.values()) for cell in union}
    n_paired = round(paired_fraction * n)
    assert sum(c == n_mod for c in counts.values()) == n_paired
    assert sum(c == 1 for c in counts.values()) == n - n_paired
    assert set(counts.values()) <= {1, n_mod}
    assert mdata.uns["simulation"]["n_paired"] == n_paired
    singles = [len(s) - n_paired for s in members.values()]
    assert sum(singles) == n - n_paired and max(singles) - min(singles) <= 1
    for name, mod in mdata.mod.items():
        assert mod.n_obs == len(members[name])
    if paired_fraction == 0:
        assert not set.intersection(*members.values())
    if paired_fraction == 1:
        assert all(s == union for s in members.values())


def test_single_modality_and_cite_like():
    rna_only = simulate_multiome(n_cells=100, n_genes=50, n_peaks=0, paired_fraction=0.0)
    assert list(rna_only.mod) == ["rna"] and rna_only["rna"].n_obs == 100
    assert "gene_peak_links" not in rna_only.uns["simulation"]
    cite = simulate_multiome(
        n_cells=100,
        n_genes=50,
        n_peaks=0,
        n_proteins=8,
        paired_fraction=0.5,
        modality_names=("gex", "peaks", "prot"),
    )
    assert list(cite.mod) == ["gex", "prot"]
    assert len(set(cite["gex"].obs_names) & set(cite["prot"].obs_names)) == 50


# ----------------------------------------------------------------------------- biology


def test_cell_type_abundances_and_rare_type(sim):
    props = sim.uns["simulation"]["cell_type_proportions"]
    counts = sim.obs["cell_type"].value_counts()
    assert counts.sum() == 2000 and (counts > 0).all()
    assert counts.min() / 2000 < 0.05  # a rare type
    assert counts.max() / 2000 > 0.3
    np.testing.assert_allclose(props, counts[sim.uns["simulation"]["cell_types"]].values / 2000)
    rare = counts.idxmin()
    for mod in sim.mod.values():
        assert (mod.obs["cell_type"] == rare).sum() > 0


def test_cell_types_distinguishable_in_rna(sim):
    rna = sim["rna"]
    labels = rna.obs["cell_type"].to_numpy()
    acc = _knn_accuracy(_lognorm(rna.X), labels)
    majority = rna.obs["cell_type"].value_counts(normalize=True).max()
    assert acc > 0.9 and acc > majority + 0.3


def test_cell_types_distinguishable_in_atac(sim):
    atac = sim["atac"]
    labels = atac.obs["cell_type"].to_numpy()
    acc = _knn_accuracy(np.log1p(atac.X.toarray()), labels)
    majority = atac.obs["cell_type"].value_counts(normalize=True).max()
    assert acc > majority + 0.2


def test_batch_effect_present_only_when_requested():
    kw = {"n_cells": 1200, "n_genes": 500, "n_peaks": 0, "seed": 5}
    accs = {}
    for effect in [0.3, 0.0]:
        rna = simulate_multiome(batch_effect=effect, **kw)["rna"]
        accs[effect] = _knn_accuracy(_lognorm(rna.X), rna.obs["batch"].to_numpy())
    assert accs[0.3] > 0.85
    assert accs[0.0] < 0.65
    assert accs[0.3] > accs[0.0] + 0.25


def test_de_genes_up_and_down(sim):
    rna = sim["rna"]
    x = _lognorm(rna.X)
    truth = sim.uns["simulation"]
    labels = rna.obs["cell_type"].to_numpy()
    for cell_type, up in truth["de_genes"].items():
        inside = labels == cell_type
        up_idx = rna.var_names.get_indexer(up)
        diff = x[inside][:, up_idx].mean(0) - x[~inside][:, up_idx].mean(0)
        assert (diff > 0).mean() >= 0.9, cell_type
        assert diff.mean() > 0.5
        down_idx = rna.var_names.get_indexer(truth["de_genes_down"][cell_type])
        diff_down = x[inside][:, down_idx].mean(0) - x[~inside][:, down_idx].mean(0)
        assert diff_down.mean() < 0
        k = truth["cell_types"].index(cell_type)
        assert (truth["de_lfc"][k, up_idx] > 0).all()
        assert (truth["de_lfc"][k, down_idx] < 0).all()


def test_ground_truth_latent_matches_labels(sim):
    truth = sim.uns["simulation"]
    programs = sim.obsm["X_true"][:, : len(truth["cell_types"])]
    np.testing.assert_array_equal(
        np.array(truth["cell_types"])[programs.argmax(1)], sim.obs["cell_type"].to_numpy()
    )
    assert (np.count_nonzero(programs, axis=1) == 1).all()


def test_atac_sparse_low_counts(sim):
    x = sim["atac"].X
    density = x.nnz / (x.shape[0] * x.shape[1])
    assert 0.01 < density < 0.10
    assert x.data.max() <= 4
    assert np.isin(x.data, [1, 2]).mean() > 0.9


def test_peak_coordinates_recover_links(sim):
    """A coordinate-based peak-to-gene assignment (gene body + 2 kb promoter, +-20 kb window)."""
    genes = sim["rna"].var
    peaks = sim["atac"].var
    names = peaks.index.str.split("-", expand=True).to_frame(index=False)
    np.testing.assert_array_equal(names[0], peaks["chrom"])
    np.testing.assert_array_equal(names[1].astype(int), peaks["start"])
    np.testing.assert_array_equal(names[2].astype(int), peaks["end"])
    tss = np.where(genes["strand"] == "+", genes["start"], genes["end"])
    lo = np.where(genes["strand"] == "+", tss - 2000, genes["start"])
    hi = np.where(genes["strand"] == "+", genes["end"], tss + 2000)
    window = 20_000
    hit = (
        (genes["chrom"].to_numpy()[:, None] == peaks["chrom"].to_numpy()[None, :])
        & (peaks["end"].to_numpy()[None, :] > (lo - window)[:, None])
        & (peaks["start"].to_numpy()[None, :] < (hi + window)[:, None])
    )
    links = sim.uns["simulation"]["gene_peak_links"].toarray() > 0
    np.testing.assert_array_equal(hit, links)
    # peaks sorted and non-overlapping within chromosomes
    for _, df in peaks.groupby("chrom", observed=True):
        assert (df["start"].to_numpy()[1:] >= df["end"].to_numpy()[:-1]).all()


def test_linked_peaks_track_gene_expression(paired):
    rna, atac = paired["rna"], paired["atac"]
    assert (rna.obs_names == atac.obs_names).all()
    # metacells from the ground-truth latent, as peak-gene correlation tools do
    groups = KMeans(40, n_init=1, random_state=0).fit_predict(rna.obsm["X_true"])
    agg = sparse.csr_matrix((np.ones(rna.n_obs), (groups, np.arange(rna.n_obs))))
    x = _lognorm(agg @ rna.X)
    a = _lognorm(agg @ atac.X)
    links = paired.uns["simulation"]["gene_peak_links"].tocoo()
    linked = _colcorr(x[:, links.row], a[:, links.col])
    rng = np.random.default_rng(0)
    random = _colcorr(
        x[:, rng.integers(0, x.shape[1], links.nnz)], a[:, rng.integers(0, a.shape[1], links.nnz)]
    )
    assert np.nanmean(linked) > np.nanmean(random) + 0.15
    assert abs(np.nanmean(random)) < 0.05


def test_protein_tracks_linked_gene(paired):
    rna, adt = paired["rna"], paired["adt"]
    genes = paired.uns["simulation"]["protein_genes"]
    assert list(adt.var["gene"]) == genes and len(set(genes)) == adt.n_vars
    idx = rna.var_names.get_indexer(genes)
    x = _lognorm(rna.X)
    p = np.log1p(adt.X.toarray())
    linked = _colcorr(x[:, idx], p)
    shuffled = _colcorr(x[:, np.random.default_rng(0).permutation(idx)], p)
    assert linked.mean() > 0.2
    assert linked.mean() > shuffled.mean() + 0.15
    # proteins carry a background: almost no zeros
    assert adt.X.nnz / np.prod(adt.shape) > 0.95


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_cells": 3, "n_cell_types": 5}, ValueError, "n_cell_types"),
        ({"paired_fraction": 1.5}, ValueError, "paired_fraction"),
        ({"paired_fraction": -0.1}, ValueError, "paired_fraction"),
        ({"n_genes": -1}, ValueError, "n_genes"),
        ({"n_peaks": -5}, ValueError, "n_peaks"),
        ({"n_proteins": -1}, ValueError, "n_proteins"),
        ({"n_cells": 0}, ValueError, "n_cells"),
        ({"n_batches": 0}, ValueError, "n_batches"),
        ({"batch_effect": -0.1}, ValueError, "batch_effect"),
        ({"n_genes": 10, "de_genes_per_type": 20}, ValueError, "de_genes_per_type"),
        ({"n_genes": 50, "n_proteins": 60, "de_genes_per_type": 5}, ValueError, "n_proteins"),
        ({"n_cells": 10.5}, TypeError, "n_cells"),
        ({"modality_names": ("rna", "rna", "adt")}, ValueError, "distinct"),
        ({"modality_names": ("rna", "atac")}, ValueError, "three"),
        ({"rare_type_ratio": 0.0}, ValueError, "rare_type_ratio"),
    ],
)
def test_argument_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        simulate_multiome(**kwargs)


def test_nonlinear_coupling_defeats_a_linear_map_and_leaves_rna_alone():
    """With nonlinear_coupling, RNA is unchanged, ATAC differs, and linear CCA fits worse."""
    from scmint.metrics import foscttm
    from scmint.tl import LinearCCA

    linear = simulate_multiome(n_cells=1500, paired_fraction=1.0, seed=0)
    nonlinear = simulate_multiome(n_cells=1500, paired_fraction=1.0, nonlinear_coupling=2.0, seed=0)
    assert (linear["rna"].X != nonlinear["rna"].X).nnz == 0
    assert (linear["atac"].X != nonlinear["atac"].X).nnz > 0
    assert nonlinear.uns["simulation"]["params"]["nonlinear_coupling"] == 2.0

    def cca_foscttm(mdata) -> float:
        train, test = mdata[:1200], mdata[1200:]
        cca = LinearCCA(n_components=20, random_state=0).fit(
            {m: train[m].copy() for m in ("rna", "atac")}, modalities=["rna", "atac"]
        )
        z = {m: cca.transform(test[m].copy(), modality=m) for m in ("rna", "atac")}
        return foscttm(z["rna"], z["atac"])

    assert cca_foscttm(nonlinear) > cca_foscttm(linear) + 0.05


def test_nonlinear_coupling_is_checked():
    with pytest.raises(ValueError, match="nonlinear_coupling"):
        simulate_multiome(n_cells=100, nonlinear_coupling=-1.0)
