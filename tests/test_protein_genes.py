"""Proteins of CITE-seq panels matched to their genes: scmint.pp.protein_gene_names / _matrix."""

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData
from scipy import sparse

import scmint
from scmint.pp import protein_gene_matrix, protein_gene_names


def test_real_panels_match_their_genes(bmmc_cite, pbmc_mosaic):
    # TotalSeq names of the BMMC panel
    cite = protein_gene_names(bmmc_cite["adt"].var_names)
    expected = {
        "CD3": "CD3E",
        "CD8": "CD8A",
        "CD56": "NCAM1",
        "CD16": "FCGR3A",
        "CD45RA": "PTPRC",
        "CD45RO": "PTPRC",
        "HLA-DR": "HLA-DRA",
        "HLA-A-B-C": "HLA-A",
        "CD11c": "ITGAX",
        "FceRIa": "FCER1A",
        "TCRVa7.2": "TRAV1-2",  # a number that is part of the name, not a clone index
        "CD158e1": "KIR3DL1",
        "CD4": "CD4",  # a CD name that is its gene's symbol
        "CD14": "CD14",
    }
    assert cite[list(expected)].to_dict() == expected
    assert cite.notna().all()
    # the PBMC panel: lower case, dots, numbered clones of one target
    pbmc = protein_gene_names(pbmc_mosaic["adt"].var_names, genes=pbmc_mosaic["rna"].var_names)
    expected = {
        "cd4.1": "CD4",
        "cd4.2": "CD4",
        "cd56.1": "NCAM1",
        "cd45ra": "PTPRC",
        "hla.dr": "HLA-DRA",
        "siglec.8": "SIGLEC8",
        "tcr.v.7.2": "TRAV1-2",
        "tcr.v.2": "TRDV2",  # not a clone of tcr.v.9
        "tcr.v.9": "TRGV9",
        "cd11a.cd18": "ITGAL",
    }
    assert pbmc[list(expected)].to_dict() == expected
    # ambiguous targets stay unmatched rather than guessed
    assert pbmc[["folate", "cadherin"]].isna().all()
    assert pbmc.index.equals(pbmc_mosaic["adt"].var_names)


def test_decorations_case_and_user_table(tmp_path):
    names = ["ADT_CD19", "CD20_TotalSeqB", "cd14-ADT", "Cd4", "MyTarget", "CD3"]
    got = protein_gene_names(names, genes=["Cd4", "Ms4a1"])
    # mouse gene symbols are matched by name, ignoring case
    assert got.drop("MyTarget").to_dict() == {
        "ADT_CD19": "CD19",
        "CD20_TotalSeqB": "MS4A1",
        "cd14-ADT": "CD14",
        "Cd4": "Cd4",
        "CD3": "CD3E",
    }
    assert pd.isna(got["MyTarget"])
    # the user's table wins, None leaves a protein unmatched, keys ignore case / separators
    table = {"MyTarget": "GENE1", "CD3": None, "cd-19": "CD19X"}
    got = protein_gene_names(names, table=table)
    assert got["MyTarget"] == "GENE1" and pd.isna(got["CD3"]) and got["ADT_CD19"] == "CD19X"
    # the same table as a DataFrame and as a file
    frame = pd.DataFrame({"protein": ["MyTarget"], "gene": ["GENE1"]})
    assert protein_gene_names(names, table=frame)["MyTarget"] == "GENE1"
    path = tmp_path / "table.tsv"
    frame.to_csv(path, sep="\t", index=False)
    assert protein_gene_names(names, table=path)["MyTarget"] == "GENE1"
    with pytest.raises(ValueError, match="two columns"):
        protein_gene_names(names, table=frame.assign(extra=1))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        protein_gene_names(names, table=tmp_path / "missing.csv")
    with pytest.raises(TypeError, match="mapping"):
        protein_gene_names(names, table=3)


def test_protein_gene_matrix_sums_proteins_of_one_gene():
    x = sparse.csr_matrix(np.array([[1, 2, 3, 4, 5], [0, 1, 0, 2, 7]], dtype=np.float32))
    adt = AnnData(
        X=x,
        obs=pd.DataFrame({"batch": ["a", "b"]}, index=["c1", "c2"]),
        var=pd.DataFrame(index=["cd4.1", "cd4.2", "CD45RA", "CD45RO", "unknown_thing"]),
    )
    before = adt.X.toarray().copy()
    genes = ["PTPRC", "GAPDH", "CD4"]
    out = protein_gene_matrix(adt, genes=genes)
    assert list(out.var_names) == ["PTPRC", "CD4"]  # in the order of genes, present only
    np.testing.assert_array_equal(out.X.toarray(), [[7, 3], [2, 1]])
    assert out.var.loc["PTPRC", "proteins"] == "CD45RA,CD45RO"
    assert out.var.loc["CD4", "proteins"] == "cd4.1,cd4.2"
    assert out.obs.equals(adt.obs) and sparse.issparse(out.X)
    np.testing.assert_array_equal(adt.X.toarray(), before)  # input untouched
    every = protein_gene_matrix(adt)
    assert set(every.var_names) == {"CD4", "PTPRC"}


def test_simulated_panel_through_the_truth_table():
    sim = scmint.data.simulate_multiome(n_cells=200, n_proteins=30, seed=0)
    truth = sim["adt"].var["gene"]
    got = protein_gene_names(sim["adt"].var_names, table=truth)
    assert got.equals(truth.astype(object).rename("gene"))
    out = protein_gene_matrix(sim["adt"], genes=sim["rna"].var_names, table=truth)
    assert out.n_vars == truth.nunique()
    first = truth.iloc[0]
    rows = truth.index[truth == first]
    np.testing.assert_allclose(
        out[:, first].X.toarray().ravel(),
        np.asarray(sim["adt"][:, rows].X.sum(axis=1)).ravel(),
    )
