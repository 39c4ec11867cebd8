"""Query update for new batches (scArches): CLUE.load_query_data."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scvi
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors

import scmint
from scmint.model import CLUE

pytestmark = pytest.mark.usefixtures("one_thread")

EPOCHS = 40


def _split(mdata, query_batches):
    """Reference and query cells by batch, with plain-string batch columns (no unused
    categories, so the reference registers only its own batches)."""
    batch = mdata.obs["batch"].astype(str)
    ref = mdata[~batch.isin(query_batches)].copy()
    query = mdata[batch.isin(query_batches)].copy()
    for part in (ref, query):
        part.obs["batch"] = part.obs["batch"].astype(str)
    return ref, query


@pytest.fixture(scope="module")
def simulated():
    sim = scmint.data.simulate_multiome(
        n_cells=1200,
        n_batches=3,
        batch_effect=0.6,
        paired_fraction=1.0,
        n_genes=300,
        n_peaks=900,
        seed=0,
    )
    return _split(scmint.data.pad_mudata(sim), ["batch2"])


@pytest.fixture(scope="module")
def reference(simulated):
    ref, _ = simulated
    scvi.settings.seed = 0
    CLUE.setup_mudata(ref, batch_key="batch")
    model = CLUE(ref, encode_batch=True)
    model.train(max_epochs=EPOCHS, enable_progress_bar=False)
    return model


def _label_transfer(z_ref, labels_ref, z_query, labels_query) -> float:
    knn = KNeighborsClassifier(n_neighbors=15).fit(z_ref, labels_ref)
    return float((knn.predict(z_query) == labels_query).mean())


def _mixing(z, batches, batch, k: int = 15) -> float:
    """Fraction of ``batch``'s cells' ``k`` neighbours from other batches, over the
    fraction if cells were neighbours at random (1: fully mixed)."""
    idx = NearestNeighbors(n_neighbors=k + 1).fit(z).kneighbors(z, return_distance=False)
    rows = batches == batch
    other = (batches[idx[rows, 1:]] != batch).mean()
    return float(other / ((~rows).sum() / (len(batches) - 1)))


def test_query_update_trains_new_batch_only(simulated, reference):
    ref, query = simulated
    z_ref = reference.get_latent_representation()
    before = {k: v.clone() for k, v in reference.module.state_dict().items()}
    query_in = query.copy()

    scvi.settings.seed = 0
    model = CLUE.load_query_data(query, reference)
    assert model._batch_names() == ["batch0", "batch1", "batch2"]
    assert not model.is_trained_
    fit_before = model.get_reconstruction_error()
    start = {k: v.clone() for k, v in model.module.state_dict().items()}
    # a new batch starts as the mean of the reference batches' slices
    bias = start["decoders.rna.head.bias"]
    np.testing.assert_allclose(bias[2].numpy(), bias[:2].mean(0).numpy(), rtol=1e-6, atol=1e-7)
    model.train(max_epochs=EPOCHS, enable_progress_bar=False)

    # the query and the reference model are left as they were
    assert query.obs.columns.tolist() == query_in.obs.columns.tolist()
    for key, value in reference.module.state_dict().items():
        assert value.equal(before[key]), key
    # only the new batch's slices moved; everything else is the reference's
    batch_parameters = model.module.batch_parameters()
    state = model.module.state_dict()
    moved = []
    for key, value in state.items():
        ref_value = before[key]
        old_part = value
        for dim, n in enumerate(ref_value.shape):
            old_part = old_part.narrow(dim, 0, n)  # the reference's entries
        assert old_part.equal(ref_value), key
        if value.shape == ref_value.shape:
            continue
        fitted = key.endswith("batch_center")  # the new batch's input centre, its mean
        assert key in batch_parameters or key.startswith("discriminator.") or fitted, key
        if not value.equal(start[key]):
            moved.append(key)
            assert key in batch_parameters, key  # the discriminator stays frozen
    assert any(k.endswith("batch_bias") for k in moved)
    assert any(".head." in k for k in moved)

    # the reference cells' embedding is exactly the reference model's
    np.testing.assert_array_equal(model.get_latent_representation(ref), z_ref)
    # the new batch's parameters fit its profiles better than the average batch's
    fit_after = model.get_reconstruction_error()
    for m in ("rna", "atac"):
        key = f"reconstruction_loss_{m}"
        assert fit_after[key] < 0.99 * fit_before[key], (m, fit_before[key], fit_after[key])
    # query cells land with reference cells of their type, mixed with the reference
    # nearly as well as the reference's two batches are mixed with each other (batch
    # centring mixes those two well: 0.80 of random; the query 0.62)
    z_query = model.get_latent_representation()
    lt = _label_transfer(
        z_ref, ref.obs["cell_type"].astype(str), z_query, query.obs["cell_type"].astype(str)
    )
    assert lt >= 0.9, lt
    batches = np.r_[ref.obs["batch"].to_numpy(), query.obs["batch"].to_numpy()]
    query_mixing = _mixing(np.vstack([z_ref, z_query]), batches, "batch2")
    reference_mixing = _mixing(z_ref, ref.obs["batch"].to_numpy(), "batch0")
    assert query_mixing >= 0.7 * reference_mixing, (query_mixing, reference_mixing)
    # translation and normalised expression can use the new batch's decoders, and the
    # reference batches' (trained on the reference's cells)
    out = model.get_normalized_expression(modality="rna", transform_batch="batch2")
    assert out.shape == (query.n_obs, query["rna"].n_vars)
    from_reference = model.translate(source="rna", target="atac", batch="batch0")
    z = from_reference.obsm["X_clue"]  # decoding the same codes: the reference's decoder
    np.testing.assert_allclose(
        model._decode(z, "atac", np.full(len(z), 1e4, np.float32), "batch0", False, None),
        reference._decode(z, "atac", np.full(len(z), 1e4, np.float32), "batch0", False, None),
        rtol=1e-5,
    )


def test_weight_decay_leaves_the_reference_slices(simulated, reference):
    _, query = simulated
    before = {k: v.clone() for k, v in reference.module.state_dict().items()}
    model = CLUE.load_query_data(query, reference)
    model.train(
        max_epochs=2,
        enable_progress_bar=False,
        plan_kwargs={"optimizer": "AdamW", "weight_decay": 0.1},
    )
    for key, value in model.module.state_dict().items():
        old = value
        for dim, n in enumerate(before[key].shape):
            old = old.narrow(dim, 0, n)
        assert old.equal(before[key]), key


def test_single_batch_reference(simulated):
    """A one-batch reference has no one-hot decoder columns: the query adds them."""
    ref, query = simulated
    one = ref[ref.obs["batch"] == "batch0"].copy()
    scvi.settings.seed = 0
    CLUE.setup_mudata(one, batch_key="batch")
    reference = CLUE(one, encode_batch=True)
    reference.train(max_epochs=2, enable_progress_bar=False)
    model = CLUE.load_query_data(query, reference)
    # the reference had one batch, so no input centres: neither has its query model
    assert not model.module.inputs["rna"].centers_batches
    model.train(max_epochs=2, enable_progress_bar=False)
    z = reference.get_latent_representation()
    np.testing.assert_array_equal(model.get_latent_representation(one), z)
    library = np.full(len(z), 1e4, np.float32)
    np.testing.assert_allclose(
        model._decode(z, "rna", library, "batch0", False, None),
        reference._decode(z, "rna", library, "batch0", False, None),
        rtol=1e-5,
    )


def test_reference_from_disk_and_save_load(simulated, reference, tmp_path):
    _, query = simulated
    reference.save(tmp_path / "ref", overwrite=True)
    # loading the reference with cells of a new batch points to the query update
    with pytest.raises(ValueError, match="load_query_data"):
        CLUE.load(str(tmp_path / "ref"), adata=scmint.data.pad_mudata(query))
    model = CLUE.load_query_data(query, tmp_path / "ref")
    model.train(max_epochs=2, enable_progress_bar=False)
    z = model.get_latent_representation()
    model.save(tmp_path / "query", overwrite=True)
    again = CLUE.load(str(tmp_path / "query"), adata=model.adata)
    np.testing.assert_allclose(again.get_latent_representation(), z, atol=1e-6)


def test_unseen_batch_needs_the_update(simulated, reference):
    _, query = simulated
    with pytest.raises(ValueError, match="load_query_data"):
        reference.get_latent_representation(query)
    with pytest.raises(ValueError, match="load_query_data"):
        reference.translate(query, source="rna", target="atac")


def test_bad_queries_are_refused(simulated, reference):
    ref, query = simulated
    no_batch = query.copy()
    del no_batch.obs["batch"]
    with pytest.raises(KeyError, match="obs\\['batch'\\]"):
        CLUE.load_query_data(no_batch, reference)
    with pytest.warns(UserWarning, match="no new batch"):
        CLUE.load_query_data(ref[:50].copy(), reference)


def test_reference_without_batch_key_or_encoded_batch(simulated):
    ref, query = simulated
    ref = ref.copy()
    CLUE.setup_mudata(ref)
    model = CLUE(ref)
    model.train(max_epochs=1, enable_progress_bar=False)
    with pytest.raises(ValueError, match="without batch_key"):
        CLUE.load_query_data(query, model)

    CLUE.setup_mudata(ref, batch_key="batch")
    plain = CLUE(ref, center_batches=False)
    plain.train(max_epochs=1, enable_progress_bar=False)
    with pytest.warns(UserWarning, match="encode_batch=True"):
        CLUE.load_query_data(query, plain)
    # without batch-reading encoders, query cells of any batch embed directly
    # (other libraries' deprecation warnings, e.g. newer pandas inside mudata, are not ours)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        latent = plain.get_latent_representation(query)
    assert np.isfinite(latent).all()
    assert not [w for w in caught if "batch" in str(w.message).lower()]


def test_rna_only_query_of_a_new_donor(pbmc_mosaic, tmp_path):
    """Real data: a reference of two paired donors, RNA-only cells of a third as query."""
    mdata = scmint.data.pad_mudata(pbmc_mosaic)
    ref, query = _split(mdata[mdata.obs["batch"].astype(str) != "p2_0"].copy(), ["p1_0"])
    assert not query.obs[scmint.data.indicator_key("adt")].astype(bool).any()
    scvi.settings.seed = 0
    CLUE.setup_mudata(ref, batch_key="batch", labels_key="cell_type")
    reference = CLUE(
        ref, encode_batch=True, likelihood="nb", normalization={"rna": "log", "adt": "clr"}
    )
    reference.train(max_epochs=30, enable_progress_bar=False)
    z_ref = reference.get_latent_representation()
    model = CLUE.load_query_data(query, reference)
    # query labels stay in obs, registered unlabelled (no new classes for the classifier)
    assert (model.adata.obs["cell_type"] == query.obs["cell_type"]).all()
    model.train(max_epochs=30, enable_progress_bar=False)
    np.testing.assert_array_equal(model.get_latent_representation(ref), z_ref)
    # a saved query model without ADT cells loads again
    model.save(tmp_path / "query", overwrite=True)
    again = CLUE.load(str(tmp_path / "query"), adata=model.adata)
    np.testing.assert_allclose(
        again.get_latent_representation(modality="rna"),
        model.get_latent_representation(modality="rna"),
        atol=1e-6,
    )
    z_query = model.get_latent_representation(modality="rna")
    lt = _label_transfer(
        z_ref, ref.obs["cell_type"].astype(str), z_query, query.obs["cell_type"].astype(str)
    )
    assert lt >= 0.75, lt


def test_sccross_query_update_fits_the_new_batch_decoders(simulated):
    """SCCROSS: the new batch's decoder rows train, everything else is the reference's."""
    from scmint.model import SCCROSS

    ref, query = simulated
    ref = ref.copy()
    scvi.settings.seed = 0
    SCCROSS.setup_mudata(ref, batch_key="batch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # no MNN prior on these gene names
        reference = SCCROSS(ref, n_components=20, center_batches=False)
    reference.train(max_epochs=3, pretrain_epochs=3, enable_progress_bar=False)
    before = {k: v.clone() for k, v in reference.module.state_dict().items()}
    z_query = reference.get_latent_representation(query, modality="rna")

    model = SCCROSS.load_query_data(query, reference)
    assert model.prior_ is None and model.transforms_ is reference.transforms_
    fit_before = model.get_reconstruction_error()
    model.train(max_epochs=3, pretrain_epochs=3, enable_progress_bar=False)
    state = model.module.state_dict()
    for key, value in state.items():
        old = value
        for dim, n in enumerate(before[key].shape):
            old = old.narrow(dim, 0, n)
        assert old.equal(before[key]), key
    assert not state["decoders.rna.bias"][2].equal(state["decoders.rna.bias"][:2].mean(0))
    # the encoders do not read the batch: the query embedding is the reference's
    np.testing.assert_allclose(
        model.get_latent_representation(modality="rna"), z_query, rtol=1e-5, atol=1e-6
    )
    fit_after = model.get_reconstruction_error()
    for m in ("rna", "atac"):
        key = f"reconstruction_loss_{m}"
        assert fit_after[key] < fit_before[key], (m, fit_before[key], fit_after[key])
    new = model.get_normalized_expression(modality="rna", transform_batch="batch2")
    old = model.get_normalized_expression(modality="rna", transform_batch="batch0")
    assert not np.allclose(new, old)

    # with batch centring (the default) the encoders read the batch: an unseen batch
    # needs the update, which keeps the reference's centres and adds the query batch's
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        centred = SCCROSS(ref, n_components=20)
    centred.train(max_epochs=2, pretrain_epochs=2, enable_progress_bar=False)
    with pytest.raises(ValueError, match="load_query_data"):
        centred.get_latent_representation(query, modality="rna")
    updated = SCCROSS.load_query_data(query, centred)
    for m in ("rna", "atac"):
        centres = updated.batch_centers_[m]
        assert centres.shape[0] == 3
        np.testing.assert_array_equal(centres[:2], centred.batch_centers_[m])
        rows = np.flatnonzero(updated._registered_mask(m))
        inputs = updated._reduce(updated._registered(m)[rows], m)
        np.testing.assert_allclose(centres[2], inputs.mean(axis=0), rtol=1e-4, atol=1e-5)
    assert np.isfinite(updated.get_latent_representation(modality="rna")).all()
