"""Bad input refused clearly, the same way for training data, query data and ``load``.

Every check runs for each of the four models on the CITE-seq starter (a real dataset).
"""

import mudata as md
import numpy as np
import pandas as pd
import pytest
import scvi
from scipy import sparse

import scmint
from scmint.model import CLUE, CONAAE, MINNET, SCCROSS

pytestmark = pytest.mark.usefixtures("one_thread")

MODELS = {"MINNET": MINNET, "SCCROSS": SCCROSS, "CONAAE": CONAAE, "CLUE": CLUE}
QUIET = {"enable_progress_bar": False, "early_stopping": False}
TRAIN = {
    "MINNET": {"max_epochs": 2, "batch_size": 64, "enable_progress_bar": False},
    "SCCROSS": {"max_epochs": 2, "pretrain_epochs": 2, "burnin_epochs": 0, **QUIET},
    "CONAAE": {"max_epochs": 2, **QUIET},
    "CLUE": {"max_epochs": 2, **QUIET},
}
N_CELLS = 240


@pytest.fixture(scope="module")
def cite(_bmmc_cite) -> md.MuData:
    """240 padded cells of the CITE-seq starter (raw counts in X)."""
    return scmint.data.pad_mudata(_bmmc_cite[:N_CELLS].copy())


def _setup(name: str, mdata: md.MuData, **kwargs) -> None:
    MODELS[name].setup_mudata(mdata, labels_key="cell_type", batch_key="batch", **kwargs)


@pytest.fixture(scope="module")
def trained(cite, tmp_path_factory) -> dict:
    """Each model trained for two epochs, saved without its data."""
    out = {}
    for name, cls in MODELS.items():
        mdata = cite.copy()
        _setup(name, mdata)
        scvi.settings.seed = 0
        model = cls(mdata)
        model.train(**TRAIN[name])
        path = tmp_path_factory.mktemp(name)
        model.save(path, overwrite=True)
        out[name] = (model, path)
    return out


def _permuted(mdata: md.MuData, modality: str, order: np.ndarray) -> md.MuData:
    mods = dict(mdata.mod)
    mods[modality] = mdata.mod[modality][:, order].copy()
    out = md.MuData(mods)
    out.obs = mdata.obs.copy()
    out.uns.update(dict(mdata.uns))
    return out


def _query_rna(cite: md.MuData, x) -> md.MuData:
    rna = cite["rna"][:30].copy()
    rna.X = x
    return rna


# --------------------------------------------------------------------------- 1: load
@pytest.mark.parametrize("name", list(MODELS))
def test_load_matches_features_by_name(name, trained, cite):
    model, path = trained[name]
    expected = model.get_latent_representation(modality="rna")
    order = np.random.default_rng(0).permutation(cite["rna"].n_vars)
    shuffled = _permuted(cite, "rna", order)
    before = shuffled["rna"].var_names.copy()
    with pytest.warns(UserWarning, match="another order"):
        loaded = MODELS[name].load(path, adata=shuffled)
    assert shuffled["rna"].var_names.equals(before)  # the MuData passed in is untouched
    assert loaded.adata["rna"].var_names.equals(cite["rna"].var_names)
    np.testing.assert_allclose(
        loaded.get_latent_representation(modality="rna"), expected, atol=1e-4
    )


@pytest.mark.parametrize("name", list(MODELS))
def test_load_refuses_missing_or_extra_features(name, trained, cite):
    _, path = trained[name]
    fewer = _permuted(cite, "rna", np.arange(1, cite["rna"].n_vars))
    with pytest.raises(ValueError, match=r"1 are missing .* subset or reorder"):
        MODELS[name].load(path, adata=fewer)
    renamed = cite.copy()
    renamed.mod["rna"].var_names = ["x" + v for v in cite["rna"].var_names]
    with pytest.raises(ValueError, match="not the model's"):
        MODELS[name].load(path, adata=renamed)


@pytest.mark.parametrize("name", list(MODELS))
def test_load_validates_data_like_setup(name, trained, cite):
    _, path = trained[name]
    bad = cite.copy()
    x = bad["adt"].X.copy()
    x.data[0] = np.nan
    bad.mod["adt"].X = x
    with pytest.raises(ValueError, match="modality 'adt' .* NaN or infinite"):
        MODELS[name].load(path, adata=bad)


# --------------------------------------------------------------------------- 2: query values
@pytest.mark.parametrize("name", list(MODELS))
def test_query_values_validated(name, trained, cite):
    model, _ = trained[name]
    counts = sparse.csr_matrix(cite["rna"].X[:30])
    negative = counts.copy()
    negative.data[0] = -1.0
    with pytest.raises(ValueError, match="query's modality 'rna' .* 1 negative values"):
        model.get_latent_representation(_query_rna(cite, negative), modality="rna")
    nan = counts.copy()
    nan.data[0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite") as err:
        model.get_latent_representation(_query_rna(cite, nan), modality="rna")
    assert "before setup" not in str(err.value)
    lognorm = counts.copy()
    lognorm.data = np.log1p(lognorm.data)
    with pytest.raises(ValueError, match="trained on raw integer counts"):
        model.translate(_query_rna(cite, lognorm), source="rna", target="adt")
    # the same cells as raw counts are accepted and embedded
    z = model.get_latent_representation(_query_rna(cite, counts), modality="rna")
    assert z.shape == (30, model.module.n_latent) and np.isfinite(z).all()


# --------------------------------------------------------------------------- 3: no features
@pytest.mark.parametrize("name", list(MODELS))
def test_modality_without_features_refused(name, cite):
    empty = cite.copy()
    empty.mod["adt"] = empty["adt"][:, :0].copy()
    with pytest.raises(ValueError, match="Modality 'adt' has no features"):
        _setup(name, empty)


# --------------------------------------------------------------------------- 4: no cells
def test_empty_mudata_refused_by_pad_mudata(_bmmc_cite):
    with pytest.raises(ValueError, match="holds no cells"):
        scmint.data.pad_mudata(_bmmc_cite[:0].copy())


@pytest.mark.parametrize("name", list(MODELS))
def test_empty_mudata_refused_at_setup(name, cite):
    with pytest.raises(ValueError, match="holds no cells"):
        _setup(name, cite[:0].copy())


# --------------------------------------------------------------------------- 5: duplicate cells
@pytest.mark.parametrize("name", list(MODELS))
def test_duplicate_cell_names_refused(name, trained, cite):
    model, _ = trained[name]
    query = cite["rna"][:30].copy()
    query.obs_names = list(query.obs_names[:29]) + [query.obs_names[0]]
    with pytest.raises(ValueError, match="duplicated cell names"):
        model.get_latent_representation(query, modality="rna")
    padded = cite.copy()
    names = list(padded.obs_names)
    names[1] = names[0]
    for m in padded.mod:
        padded.mod[m].obs_names = names
    padded.obs_names = names
    with pytest.raises(ValueError, match="duplicated cell names"):
        _setup(name, padded)


# --------------------------------------------------------------------------- 6: labels
@pytest.mark.parametrize("name", list(MODELS))
def test_unknown_labels_key_lists_columns(name, cite):
    with pytest.raises(KeyError, match=r"columns: \[.*'cell_type'"):
        MODELS[name].setup_mudata(cite.copy(), labels_key="celltype")


def test_clue_warns_when_every_label_is_missing(cite):
    unlabelled = cite.copy()
    unlabelled.obs["cell_type"] = pd.Series(np.nan, index=unlabelled.obs_names, dtype=object)
    CLUE.setup_mudata(unlabelled, labels_key="cell_type")
    with pytest.warns(UserWarning, match="classifier is off"):
        model = CLUE(unlabelled)
    assert model.module.classifier is None


# --------------------------------------------------------------------------- 8: scvi-tools API
@pytest.mark.parametrize("name", list(MODELS))
def test_view_anndata_setup(name, trained, capsys):
    model, _ = trained[name]
    model.view_anndata_setup()
    assert "cell_type" in capsys.readouterr().out


# --------------------------------------------------------------------------- one public API
@pytest.mark.parametrize("name", list(MODELS))
def test_public_api_is_written_once(name):
    from scmint.model._base import MultiModalMixin

    for method in ("get_latent_representation", "translate", "perturb", "predict"):
        assert getattr(MODELS[name], method) is getattr(MultiModalMixin, method), method
    with pytest.raises(TypeError, match="setup_mudata"):
        MODELS[name].setup_anndata(None)


@pytest.mark.parametrize("name", list(MODELS))
def test_translation_options_are_checked(name, trained, cite):
    model, _ = trained[name]
    foreign = {"MINNET": {"sample": True}, "SCCROSS": {"k": 5}, "CONAAE": {"batch": "s1d1"}}
    foreign["CLUE"] = {"scale": "standardized"}
    with pytest.raises(TypeError, match=f"{name}.translate does not take"):
        model.translate(source="rna", target="adt", indices=np.arange(5), **foreign[name])
    out = model.translate(source="rna", target="adt", indices=np.arange(5))
    assert out.shape == (5, cite["adt"].n_vars)
    assert out.uns[f"{name.lower()}_translate"]["source"] == "rna"


def test_sccross_predicts_with_its_classifier(cite):
    mdata = cite.copy()
    SCCROSS.setup_mudata(mdata, labels_key="cell_type", batch_key="batch")
    scvi.settings.seed = 0
    plain = SCCROSS(mdata)
    with pytest.raises(ValueError, match="classifier_weight"):
        plain.predict()
    model = SCCROSS(mdata, classifier_weight=1.0)
    model.train(**TRAIN["SCCROSS"])
    labels = model.predict(modality="rna")
    assert labels.shape == (mdata.n_obs,) and set(labels) <= set(model.classes_)
    soft = model.predict(modality="adt", soft=True)
    np.testing.assert_allclose(soft.to_numpy().sum(1), 1.0, rtol=1e-5)


# --------------------------------------------------------------------------- conveniences
@pytest.mark.parametrize("name", list(MODELS))
def test_single_modality_query_infers_its_modality(name, trained, cite):
    model, _ = trained[name]
    adt = cite["adt"][:30].copy()
    named = model.get_latent_representation(adt, modality="adt")
    np.testing.assert_allclose(model.get_latent_representation(adt), named, atol=1e-5)
    stranger = adt.copy()
    stranger.var_names = [f"feature{i}" for i in range(adt.n_vars)]
    with pytest.raises(ValueError, match="do not say which"):
        model.get_latent_representation(stranger)


@pytest.mark.parametrize("name", list(MODELS))
def test_store_embeddings(name, trained, cite):
    model, _ = trained[name]
    before = set(model.adata.obsm)
    out = scmint.tl.store_embeddings(model, copy=True)
    assert set(model.adata.obsm) == before  # copy=True leaves the model's data alone
    key = f"X_{name.lower()}"
    np.testing.assert_allclose(out.obsm[key], model.get_latent_representation(), atol=1e-5)
    for m in ("rna", "adt"):
        z = out.obsm[f"{key}_{m}"]
        assert z.shape == (N_CELLS, model.module.n_latent) and np.isfinite(z).all()
