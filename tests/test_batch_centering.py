"""Batch centring of the input layers (CLUE, CONAAE, MINNET): issue 16, item 1."""

from __future__ import annotations

import numpy as np
import pytest
import scvi
import torch
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors

import scmint
from scmint.model import CLUE, CONAAE, MINNET
from scmint.nn import FeatureScalerLayer, SparseInputLinear

pytestmark = pytest.mark.usefixtures("one_thread")


def _mixing(z: np.ndarray, batch: np.ndarray, k: int = 15) -> float:
    """Share of each cell's ``k`` nearest neighbours from another batch (0.5: mixed)."""
    idx = NearestNeighbors(n_neighbors=k + 1).fit(z).kneighbors(z, return_distance=False)
    return float((batch[idx[:, 1:]] != batch[:, None]).mean())


@pytest.fixture(scope="module")
def strong_batch():
    """The issue's check: 600 paired cells, two batches, ``batch_effect=1.0``."""
    sim = scmint.data.simulate_multiome(
        n_cells=600, paired_fraction=1.0, batch_effect=1.0, n_genes=300, n_peaks=900, seed=0
    )
    return scmint.data.pad_mudata(sim)


# ---------------------------------------------------------------------- the layer
def test_centring_is_folded_into_the_sparse_first_layer():
    torch.manual_seed(0)
    layer = FeatureScalerLayer(30, "log", n_batch=3)
    layer.mean.copy_(torch.rand(30))
    layer.std.copy_(torch.rand(30) + 0.5)
    layer.batch_center.copy_(torch.randn(3, 30))
    x = torch.poisson(torch.rand(8, 30) * 0.5)
    codes = torch.tensor([0, 1, 2, 2, 1, 0, 0, 1])
    linear = SparseInputLinear(30, 5)
    dense = linear(x, layer, codes)
    sparse = linear(x.to_sparse_csr(), layer, codes)
    torch.testing.assert_close(sparse, dense, atol=1e-5, rtol=1e-5)
    expected = (layer.scale(x) - layer.batch_center[codes]) @ linear.weight + linear.bias
    torch.testing.assert_close(dense, expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="batch_index"):
        layer(x)


def test_a_state_dict_without_centres_loads_as_no_centring():
    saved = FeatureScalerLayer(4, "log").state_dict()  # an input layer of an older model
    assert tuple(saved["batch_center"].shape) == (0, 4)
    del saved["batch_center"]
    layer = FeatureScalerLayer(4, "log", n_batch=2)
    layer.load_state_dict(saved)
    assert not layer.centers_batches
    x = torch.ones(2, 4)
    torch.testing.assert_close(layer(x), layer.scale(x))


# ---------------------------------------------------------------------- the models
def test_centres_are_the_batch_means_of_the_scaled_inputs(strong_batch):
    mdata = strong_batch.copy()
    before = mdata["rna"].X.copy()
    CONAAE.setup_mudata(mdata, batch_key="batch")  # no labels: plain batch means
    model = CONAAE(mdata, center_batches=True, supervision="none")
    assert (mdata["rna"].X != before).nnz == 0  # the user's data are not modified
    layer = model.module.scalers["rna"]
    x = mdata["rna"].X
    scaled = layer.scale(torch.as_tensor(x.toarray(), dtype=torch.float32)).numpy()
    batch = mdata.obs["batch"].astype(str).to_numpy()
    for code, name in enumerate(model._batch_names()):
        np.testing.assert_allclose(
            layer.batch_center[code].numpy(), scaled[batch == name].mean(0), atol=1e-4
        )
    off = CONAAE(mdata, supervision="none")  # the default without labels: no centring
    assert not off.module.scalers["rna"].centers_batches
    assert not off._encodes_batch


@pytest.mark.parametrize(("model_cls", "labelled"), [(CONAAE, True), (MINNET, True), (CLUE, False)])
def test_centring_mixes_the_batches(strong_batch, model_cls, labelled):
    """With centring, the batches mix where they did not, at equal cell-type separation."""
    batch = strong_batch.obs["batch"].astype(str).to_numpy()
    cell_type = strong_batch.obs["cell_type"].astype(str).to_numpy()
    scores = {}
    for center in (False, True):
        mdata = strong_batch.copy()
        labels = {"labels_key": "cell_type"} if labelled else {}
        model_cls.setup_mudata(mdata, batch_key="batch", **labels)
        scvi.settings.seed = 0
        model = model_cls(mdata, center_batches=center)
        model.train(max_epochs=30, enable_progress_bar=False)
        z = model.get_latent_representation(modality="rna")
        knn = KNeighborsClassifier(15).fit(z[batch == "batch0"], cell_type[batch == "batch0"])
        transfer = float((knn.predict(z[batch == "batch1"]) == cell_type[batch == "batch1"]).mean())
        scores[center] = (_mixing(z, batch), transfer)
    (mix_off, transfer_off), (mix_on, transfer_on) = scores[False], scores[True]
    assert mix_off < 0.2
    assert mix_on >= 0.35  # the target (0.5: fully mixed)
    assert mix_on > mix_off + 0.2
    # cell types of one batch are found among the other batch's cells as well as before
    assert transfer_on >= min(transfer_off - 0.03, 0.9)


# ---------------------------------------------------------------------- new batches
@pytest.fixture(scope="module")
def three_batches():
    sim = scmint.data.simulate_multiome(
        n_cells=900,
        n_batches=3,
        batch_effect=0.6,  # as CLUE's query update test
        paired_fraction=1.0,
        n_genes=300,
        n_peaks=900,
        seed=1,
    )
    mdata = scmint.data.pad_mudata(sim)
    batch = mdata.obs["batch"].astype(str)
    ref = mdata[batch != "batch2"].copy()
    query = mdata[batch == "batch2"].copy()
    for part in (ref, query):
        part.obs["batch"] = part.obs["batch"].astype(str)
    return ref, query


@pytest.mark.parametrize("model_cls", [CONAAE, MINNET])
def test_query_of_a_new_batch_gets_its_own_centres(three_batches, model_cls, tmp_path):
    ref, query = three_batches
    ref = ref.copy()
    model_cls.setup_mudata(ref, batch_key="batch", labels_key="cell_type")
    scvi.settings.seed = 0
    reference = model_cls(ref)
    reference.train(max_epochs=30, enable_progress_bar=False)
    with pytest.raises(ValueError, match="load_query_data"):
        reference.get_latent_representation(query, modality="rna")
    z_ref = reference.get_latent_representation(modality="rna")

    reference.save(tmp_path / "ref")
    updated = model_cls.load_query_data(query.copy(), tmp_path / "ref")
    assert updated.is_trained_  # only the new batch's centres were fitted
    assert updated._batch_names() == ["batch0", "batch1", "batch2"]
    # the reference's cells embed as before
    np.testing.assert_allclose(
        updated.get_latent_representation(ref, modality="rna"), z_ref, atol=1e-5
    )
    z_query = updated.get_latent_representation(modality="rna")
    labels = ref.obs["cell_type"].astype(str).to_numpy()
    knn = KNeighborsClassifier(15).fit(z_ref, labels)
    transfer = (knn.predict(z_query) == query.obs["cell_type"].astype(str).to_numpy()).mean()
    assert transfer >= 0.9
    if model_cls is MINNET:
        with pytest.raises(RuntimeError, match="nothing to train"):
            updated.train(max_epochs=1)


def test_a_model_saved_before_centring_loads_without_it(strong_batch, tmp_path):
    mdata = strong_batch.copy()
    CONAAE.setup_mudata(mdata, batch_key="batch", labels_key="cell_type")
    model = CONAAE(mdata, center_batches=False)
    model.train(max_epochs=1, enable_progress_bar=False)
    z = model.get_latent_representation(modality="rna")
    model.save(tmp_path / "old")
    # what an older scmint wrote: no batch_center buffers, no center_batches parameter
    path = tmp_path / "old" / "model.pt"
    saved = torch.load(path, weights_only=False)
    saved["model_state_dict"] = {
        k: v for k, v in saved["model_state_dict"].items() if not k.endswith("batch_center")
    }
    saved["attr_dict"]["init_params_"]["non_kwargs"].pop("center_batches", None)
    saved["attr_dict"]["init_params_"].get("kwargs", {}).pop("center_batches", None)
    torch.save(saved, path)
    loaded = CONAAE.load(tmp_path / "old", adata=mdata)
    assert not loaded._encodes_batch
    np.testing.assert_allclose(loaded.get_latent_representation(modality="rna"), z, atol=1e-5)


def test_labelled_centres_are_corrected_for_composition():
    """Two batches differing by a pure shift, with different cell-type compositions: the
    labelled centres differ by the shift; plain batch means also by the composition."""
    from scmint.model._centres import batch_centres
    from scmint.model._centres import layer_batch_centres as _batch_centres

    rng = np.random.default_rng(0)
    type_means = np.array([[0.0, 0.0, 0.0], [4.0, -2.0, 1.0]])
    shift = np.array([1.0, 0.5, -1.0])
    batch = np.r_[np.zeros(200, int), np.ones(200, int)]
    cell_type = np.r_[rng.random(200) < 0.8, rng.random(200) < 0.2].astype(int)
    x = type_means[cell_type] + shift * batch[:, None] + rng.normal(0, 0.1, (400, 3))
    layer = FeatureScalerLayer(3, "none", max_value=None, n_batch=2)
    plain = _batch_centres(layer, x.astype(np.float32), batch, 2).numpy()
    labelled = _batch_centres(layer, x.astype(np.float32), batch, 2, cell_type).numpy()
    np.testing.assert_allclose(labelled[1] - labelled[0], shift, atol=0.05)
    assert np.abs(plain[1] - plain[0] - shift).max() > 1.0
    # unlabelled cells (-1) take no part in the correction
    some = cell_type.copy()
    some[::7] = -1
    partly = _batch_centres(layer, x.astype(np.float32), batch, 2, some).numpy()
    np.testing.assert_allclose(partly[1] - partly[0], shift, atol=0.05)
    # the same centres from an array in memory (SCCROSS's reduced inputs)
    np.testing.assert_allclose(batch_centres(x, batch, 2, some), partly, atol=1e-4)


def test_centring_follows_the_labels_by_default(strong_batch):
    mdata = strong_batch.copy()
    CLUE.setup_mudata(mdata, batch_key="batch")
    assert not CLUE(mdata)._encodes_batch  # no labels: plain means would mix compositions
    CLUE.setup_mudata(mdata, batch_key="batch", labels_key="cell_type")
    assert CLUE(mdata).module.inputs["rna"].centers_batches


def test_loading_takes_the_centres_from_the_file(strong_batch, tmp_path, monkeypatch):
    """Load does not refit the centres over the data passed (a pass over them, then
    discarded): they come from the saved state, and the embedding is the saved model's."""
    mdata = strong_batch.copy()
    CONAAE.setup_mudata(mdata, batch_key="batch", labels_key="cell_type")
    model = CONAAE(mdata)
    model.train(max_epochs=1, enable_progress_bar=False)
    z = model.get_latent_representation(modality="rna")
    model.save(tmp_path / "centred")

    def refit(*args, **kwargs):
        raise AssertionError("the batch centres were refitted at load")

    monkeypatch.setattr("scmint.model._base.layer_batch_centres", refit)
    loaded = CONAAE.load(tmp_path / "centred", adata=mdata)
    assert loaded._encodes_batch
    torch.testing.assert_close(
        loaded.module.input_layers()["rna"].batch_center,
        model.module.input_layers()["rna"].batch_center,
    )
    np.testing.assert_allclose(loaded.get_latent_representation(modality="rna"), z, atol=1e-5)
