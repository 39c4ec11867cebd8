"""Padding, validation, registration and query preparation of MuData."""

import contextlib

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from scvi.dataloaders import AnnDataLoader
from scvi.model.base import BaseModelClass

import scmint
from scmint.data import MuDataSetupMixin, pad_mudata, prepare_query_mudata


class _Registered(MuDataSetupMixin, BaseModelClass):
    """The smallest model class: only the shared registration."""


class _NeedsLabels(MuDataSetupMixin, BaseModelClass):
    _labels_required = True
    _count_modalities_default = "all"


def _unpaired(mdata: md.MuData) -> md.MuData:
    """Every cell split into one cell per modality, with disjoint names (protocol P2)."""
    mods = {}
    for name, adata in mdata.mod.items():
        a = adata.copy()
        a.obs_names = [f"{name}_{c}" for c in a.obs_names]
        mods[name] = a
    return md.MuData(mods)


def _snapshot(mdata: md.MuData):
    return {
        m: (a.X.copy(), a.obs.copy(), a.obs_names.copy(), a.var_names.copy())
        for m, a in mdata.mod.items()
    }, mdata.obs.copy()


def _assert_unchanged(mdata: md.MuData, snapshot) -> None:
    mods, obs = snapshot
    for m, (x, mobs, names, var) in mods.items():
        a = mdata.mod[m]
        assert (a.X != x).nnz == 0
        pd.testing.assert_frame_equal(a.obs, mobs)
        assert a.obs_names.equals(names) and a.var_names.equals(var)
    pd.testing.assert_frame_equal(mdata.obs, obs)


# ----------------------------------------------------------------- padding
def test_pad_paired_keeps_data_and_sets_all_indicators(bmmc_cite):
    before = _snapshot(bmmc_cite)
    padded = pad_mudata(bmmc_cite)
    _assert_unchanged(bmmc_cite, before)
    assert padded.n_obs == bmmc_cite["rna"].n_obs
    for m in ("rna", "adt"):
        assert sparse.issparse(padded[m].X)
        assert padded[m].obs_names.equals(padded.obs_names)
        assert (padded[m].X != bmmc_cite[m][padded.obs_names].X).nnz == 0
        assert (padded.obs[f"has_{m}"] == 1).all()
    assert (
        padded.obs["cell_type"].astype(str) == bmmc_cite["rna"].obs["cell_type"].astype(str)
    ).all()
    assert scmint.data.is_padded(padded)


def test_pad_unpaired_gives_disjoint_indicators_and_zero_rows(bmmc_multiome):
    unpaired = _unpaired(bmmc_multiome)
    padded = pad_mudata(unpaired)
    n = bmmc_multiome.n_obs
    assert padded.n_obs == 2 * n
    has_rna = padded.obs["has_rna"].to_numpy().astype(bool)
    has_atac = padded.obs["has_atac"].to_numpy().astype(bool)
    assert has_rna.sum() == n and has_atac.sum() == n and not (has_rna & has_atac).any()
    rna_rows = np.asarray(padded["rna"].X.sum(axis=1)).ravel()
    assert (rna_rows[~has_rna] == 0).all()
    assert rna_rows[has_rna].sum() == bmmc_multiome["rna"].X.sum()
    # the padding adds no stored entries
    assert padded["atac"].X.nnz == bmmc_multiome["atac"].X.nnz
    # obs columns from each modality reach mdata.obs for every cell
    assert padded.obs["cell_type"].notna().all()
    assert padded.obs["batch"].notna().all()


def test_pad_mosaic(pbmc_mosaic):
    before = _snapshot(pbmc_mosaic)
    padded = pad_mudata(pbmc_mosaic)
    _assert_unchanged(pbmc_mosaic, before)
    counts = padded.obs.groupby(["has_rna", "has_adt"], observed=True).size().to_dict()
    assert counts == {(1, 1): 800, (1, 0): 400, (0, 1): 400}
    # RNA-only cells are the p1_0 batch, ADT-only the p2_0 batch
    assert set(padded.obs.loc[padded.obs["has_adt"] == 0, "batch"]) == {"p1_0"}
    assert set(padded.obs.loc[padded.obs["has_rna"] == 0, "batch"]) == {"p2_0"}
    assert padded.obs["cell_type"].notna().all()
    for m in ("rna", "adt"):
        assert padded[m].X.nnz == pbmc_mosaic[m].X.nnz
        x = padded[m][pbmc_mosaic[m].obs_names].X
        assert (x != pbmc_mosaic[m].X).nnz == 0


def test_pad_three_modalities_and_dense_input():
    rng = np.random.default_rng(0)
    mods = {}
    for i, name in enumerate(["a", "b", "c"]):
        cells = [f"c{j}" for j in range(i, i + 5)]
        mods[name] = ad.AnnData(
            X=rng.poisson(2, size=(5, 3)).astype(np.float32),
            obs=pd.DataFrame({"ct": ["x"] * 5}, index=cells),
        )
    padded = pad_mudata(md.MuData(mods))
    assert padded.n_obs == 7
    assert isinstance(padded["a"].X, np.ndarray)
    assert padded.obs[["has_a", "has_b", "has_c"]].sum().tolist() == [5, 5, 5]
    assert (padded["c"].X[:2] == 0).all()
    np.testing.assert_array_equal(padded["c"]["c4"].X, mods["c"]["c4"].X)


def test_pad_errors(bmmc_cite):
    with pytest.raises(TypeError, match="MuData"):
        pad_mudata(bmmc_cite["rna"])
    with pytest.raises(KeyError, match="Unknown modalities"):
        pad_mudata(bmmc_cite, modalities=["rna", "protein"])
    with pytest.raises(ValueError, match="two or more"):
        pad_mudata(bmmc_cite, modalities=["rna"])


# ------------------------------------------------------------ registration
def test_setup_registers_data_masks_batch_labels(pbmc_mosaic):
    padded = pad_mudata(pbmc_mosaic)
    _Registered.setup_mudata(padded, batch_key="batch", labels_key="cell_type")
    manager = _Registered._get_most_recent_anndata_manager(padded)
    keys = set(manager.data_registry.keys())
    assert {"X_rna", "X_adt", "mask_rna", "mask_adt", "batch", "labels"} <= keys
    assert manager.summary_stats["n_batch"] == 4
    loader = AnnDataLoader(manager, batch_size=2000, shuffle=False)
    batch = next(iter(loader))
    np.testing.assert_array_equal(
        batch["mask_adt"].numpy().ravel(), padded.obs["has_adt"].to_numpy()
    )
    np.testing.assert_allclose(batch["X_rna"].numpy().sum(), padded["rna"].X.sum(), rtol=1e-6)


def test_setup_rejects_unpadded_and_names_the_fix(pbmc_mosaic):
    with pytest.raises(ValueError, match=r"not padded.*scmint\.data\.pad_mudata"):
        _Registered.setup_mudata(pbmc_mosaic)
    paired = md.MuData(
        {"rna": pbmc_mosaic["rna"][:10].copy(), "adt": pbmc_mosaic["rna"][:10].copy()}
    )
    with pytest.raises(ValueError, match="indicator column 'has_rna'"):
        _Registered.setup_mudata(paired)


def test_setup_unknown_modality(pbmc_mosaic):
    padded = pad_mudata(pbmc_mosaic)
    with pytest.raises(KeyError, match=r"Unknown modalities \['atac'\]"):
        _Registered.setup_mudata(padded, modalities=["rna", "atac"])


def test_setup_non_integer_counts(bmmc_multiome):
    padded = pad_mudata(bmmc_multiome)
    padded["rna"].layers["lognorm"] = padded["rna"].X.copy()
    padded["rna"].layers["lognorm"].data = np.log1p(padded["rna"].layers["lognorm"].data)
    with pytest.raises(ValueError, match="non-integer values.*raw integer counts"):
        _NeedsLabels.setup_mudata(padded, layer={"rna": "lognorm"}, labels_key="cell_type")
    # a Normal likelihood accepts the same data
    _Registered.setup_mudata(padded, layer={"rna": "lognorm"})


def test_setup_negative_counts(bmmc_multiome):
    padded = pad_mudata(bmmc_multiome)
    padded["atac"].X.data[0] = -1
    with pytest.raises(ValueError, match="negative values"):
        _NeedsLabels.setup_mudata(padded, labels_key="cell_type")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_setup_nan_or_inf(bmmc_cite, bad):
    padded = pad_mudata(bmmc_cite)
    padded["adt"].X.data[3] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        _Registered.setup_mudata(padded)


def test_setup_empty_cells(bmmc_cite):
    padded = pad_mudata(bmmc_cite)
    for m in ("rna", "adt"):
        x = padded[m].X.tolil()
        x[5] = 0
        padded[m].X = x.tocsr()
    with pytest.raises(ValueError, match=r"1 cells .* no counts"):
        _Registered.setup_mudata(padded)


def test_setup_labels_errors(bmmc_cite):
    padded = pad_mudata(bmmc_cite)
    with pytest.raises(ValueError, match="pass labels_key"):
        _NeedsLabels.setup_mudata(padded)
    with pytest.raises(KeyError, match="labels_key 'celltype'"):
        _NeedsLabels.setup_mudata(padded, labels_key="celltype")
    padded.obs["unknown_types"] = "Unknown"
    with pytest.raises(ValueError, match="missing or 'Unknown'"):
        _NeedsLabels.setup_mudata(padded, labels_key="unknown_types")


def test_setup_missing_batch_column(bmmc_cite):
    padded = pad_mudata(bmmc_cite)
    padded.obs = padded.obs.drop(columns="batch")
    with pytest.raises(KeyError, match=r"batch_key 'batch'.*pad_mudata"):
        _Registered.setup_mudata(padded, batch_key="batch")


def test_setup_does_not_touch_data(bmmc_cite):
    padded = pad_mudata(bmmc_cite)
    x = padded["rna"].X.copy()
    _NeedsLabels.setup_mudata(padded, labels_key="cell_type", batch_key="batch")
    assert (padded["rna"].X != x).nnz == 0


# ------------------------------------------------------------------ queries
def test_align_features_zero_fills_and_warns(bmmc_cite):
    rna = bmmc_cite["rna"]
    reference = rna.var_names
    query = rna[:20, rna.var_names[10:]].copy()
    query = query[:, query.var_names[::-1]].copy()  # shuffled order, 10 genes missing
    with pytest.warns(UserWarning, match="10 of the 1000 reference features"):
        aligned = scmint.data.align_features(query, reference, modality="rna")
    assert aligned.var_names.equals(reference)
    assert sparse.issparse(aligned.X)
    assert aligned.X[:, :10].nnz == 0
    assert (aligned.X[:, 10:] != rna[:20, 10:].X).nnz == 0
    with pytest.raises(ValueError, match="align_features=True"):
        scmint.data.align_features(query, reference, modality="rna", align=False)


def test_prepare_query_from_one_modality_anndata(pbmc_mosaic):
    padded = pad_mudata(pbmc_mosaic)
    features = {m: padded[m].var_names for m in ("rna", "adt")}
    rna_only = pbmc_mosaic["rna"][:30].copy()
    query = prepare_query_mudata(rna_only, features, modality="rna")
    assert list(query.mod) == ["rna", "adt"]
    assert query.n_obs == 30
    assert (query.obs["has_rna"] == 1).all() and (query.obs["has_adt"] == 0).all()
    assert query["adt"].X.nnz == 0 and query["adt"].var_names.equals(features["adt"])
    assert query.obs["cell_type"].notna().all()
    inferred = prepare_query_mudata(rna_only, features)  # its gene names say it is RNA
    assert (inferred.obs["has_rna"] == 1).all() and (inferred["rna"].X != query["rna"].X).nnz == 0
    unnamed = rna_only.copy()
    unnamed.var_names = [f"f{i}" for i in range(unnamed.n_vars)]
    with pytest.raises(ValueError, match="modality="):
        prepare_query_mudata(unnamed, features)
    with pytest.raises(KeyError, match="Unknown modality 'atac'"):
        prepare_query_mudata(rna_only, features, modality="atac")


def test_prepare_query_from_mosaic_and_padded(pbmc_mosaic):
    padded = pad_mudata(pbmc_mosaic)
    features = {m: padded[m].var_names for m in ("rna", "adt")}
    query = prepare_query_mudata(pbmc_mosaic, features)
    assert query.obs[["has_rna", "has_adt"]].sum().tolist() == [1200, 1200]
    again = prepare_query_mudata(padded, features)
    assert again.obs_names.equals(padded.obs_names)
    assert (again["rna"].X != padded["rna"].X).nnz == 0


def test_backed_data_is_refused_with_how_to_fix(tmp_path):
    """A MuData read with backed=True fails up front where data must be in memory
    (padding, query cells), never later; the models themselves read it (test_backed)."""
    from scmint.model import MINNET

    sim = scmint.data.simulate_multiome(n_cells=120, n_genes=100, n_peaks=200, seed=0)
    padded = pad_mudata(sim)
    try:  # newest anndata: pandas 3 string indexes are written only when allowed
        allow = ad.settings.override(allow_write_nullable_strings=True)
    except (AttributeError, KeyError, TypeError, ValueError):
        allow = contextlib.nullcontext()
    with allow:
        padded.write(tmp_path / "padded.h5mu")
    backed = md.read_h5mu(tmp_path / "padded.h5mu", backed=True)
    message = "backed=True.*read_h5mu"
    with pytest.raises(ValueError, match=message):
        pad_mudata(backed)
    MINNET.setup_mudata(padded, labels_key="cell_type")
    model = MINNET(padded)
    model.train(max_epochs=1, enable_progress_bar=False)
    with pytest.raises(ValueError, match="The query is backed"):
        model.get_latent_representation(backed["rna"], modality="rna")
    assert not md.read_h5mu(tmp_path / "padded.h5mu").isbacked  # in memory: accepted
