"""SCCROSS's gene-set scores (its optional encoder input): GeneSetScorePCA, gene_set_scores."""

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import scmint
from scmint.model.sccross import GeneSetScorePCA, gene_set_scores, read_gmt
from scmint.pp import FittedTransform


@pytest.fixture(scope="module")
def sim():
    return scmint.data.simulate_multiome(
        n_cells=400, n_cell_types=4, n_genes=300, n_peaks=300, paired_fraction=1.0, seed=1
    )


def _marker_sets(sim):
    de = sim.uns["simulation"]["de_genes"]
    return {f"up_in_{t}": list(genes[:10]) for t, genes in de.items()}


def test_scores_mark_their_cell_type_and_project_new_cells(sim):
    rna = sim["rna"]
    train, new = rna[:300].copy(), rna[300:].copy()
    sets = _marker_sets(sim)
    t = GeneSetScorePCA(sets, n_comps=3)
    out = t.fit_transform(train) if hasattr(t, "fit_transform") else None
    t = GeneSetScorePCA(sets, n_comps=3).fit(train)
    assert t.n_output_ == 3 and list(t.set_names_) == list(sets)
    # the stored transform reproduces the training output and projects new cells alike
    np.testing.assert_allclose(
        t.transform(train),
        t.transform(train[:50]).tolist() + t.transform(train[50:]).tolist(),
        atol=1e-8,
    )
    if out is not None:
        np.testing.assert_allclose(out, t.transform(train), atol=1e-5)
    scores = t.scores(new)
    types = new.obs["cell_type"].astype(str).to_numpy()
    for name in sets:
        cell_type = name.removeprefix("up_in_")
        inside = scores.loc[types == cell_type, name].mean()
        outside = scores.loc[types != cell_type, name].mean()
        assert inside > outside + 0.5, (name, inside, outside)  # standardised units
    # a perturbed gene moves only the scores of the sets holding it
    gene = sets[next(iter(sets))][0]
    doubled = new.copy()
    factor = np.ones(new.n_vars)
    factor[new.var_names.get_loc(gene)] = 4.0
    doubled.X = sparse.csr_matrix(new.X @ sparse.diags(factor))
    delta = t.scores(doubled) - scores
    holding = [s for s, g in sets.items() if gene in g]
    assert (delta[holding].mean() > 0).all()
    # serialisable like every fitted transform
    again = FittedTransform.from_dict(t.to_dict())
    np.testing.assert_allclose(again.transform(new), t.transform(new))


def test_bad_gene_sets(sim):
    rna = sim["rna"]
    with pytest.raises(ValueError, match="no gene sets"):
        GeneSetScorePCA({})
    with pytest.raises(TypeError, match="string"):
        GeneSetScorePCA({"a": "Gene0001"})
    with pytest.raises(ValueError, match="gene names"):
        GeneSetScorePCA({"a": ["x", "y", "z"]}).fit(rna)
    with pytest.warns(UserWarning, match="fewer than 3"):
        t = GeneSetScorePCA({**_marker_sets(sim), "tiny": list(rna.var_names[:2])}).fit(rna)
    assert "tiny" not in t.set_names_
    noisy = rna.copy()
    noisy.X = noisy.X * 0.5  # normalised data: scored, with a warning (as LogNormPCA)
    with pytest.warns(UserWarning, match="raw counts"):
        GeneSetScorePCA(_marker_sets(sim)).fit(noisy)
    noisy.X = noisy.X * -1.0
    with pytest.raises(ValueError, match="negative"):
        GeneSetScorePCA(_marker_sets(sim)).fit(noisy)


# ------------------------------------------------- gene_set_scores and read_gmt (real data)
SETS = {
    "B": ["CD79A", "CD79B", "MS4A1", "CD19", "PAX5", "BANK1"],
    "Mono": ["S100A8", "S100A9", "VCAN", "CST3"],
    "T8": ["CD8A", "CD8B", "NOT_A_GENE"],
}


def test_gene_set_scores(pbmc_mosaic, tmp_path):
    rna = pbmc_mosaic["rna"]
    X, obs = rna.X.copy(), rna.obs.copy()
    with pytest.warns(UserWarning, match="1 of 3 genes not found"):
        S = gene_set_scores(rna, SETS)
    assert (rna.X != X).nnz == 0  # adata is not modified
    pd.testing.assert_frame_equal(rna.obs, obs)
    assert list(S.columns) == ["B", "Mono", "T8"] and S.index.equals(rna.obs_names)

    gmt = tmp_path / "sets.gmt"
    gmt.write_text("".join(f"{k}\tdescription\t" + "\t".join(v) + "\n" for k, v in SETS.items()))
    assert read_gmt(gmt) == SETS
    with pytest.warns(UserWarning):
        S2 = gene_set_scores(rna, gmt)
    pd.testing.assert_frame_equal(S, S2)

    ct = rna.obs["cell_type"].to_numpy()
    means = S.groupby(ct).mean()
    assert means["B"].idxmax() == "B", means
    assert means["Mono"].idxmax() == "Mono", means
    assert means.loc["CD8 T", "T8"] > means.drop(index="CD8 T")["T8"].median()

    bad = {"B": SETS["B"], "empty": ["NOPE1", "NOPE2"]}
    with pytest.warns(UserWarning, match="1 of 2 gene sets have no gene"):
        S3 = gene_set_scores(rna, bad)
    assert S3["empty"].isna().all() and np.allclose(S3["B"], S["B"])
    with pytest.raises(ValueError, match="no gene in the data"):
        gene_set_scores(rna, bad, on_empty="raise")
