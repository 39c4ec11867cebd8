"""MINNET: the MinNet Siamese model, its loss, pair sampler and training plan."""

import warnings

import mudata as md
import numpy as np
import pytest
import scvi
import torch

import scmint
from scmint.model import MINNET
from scmint.model.minnet import (
    SiamesePairSampler,
    SiameseTrainingPlan,
    draw_pairs,
    flexible_margin,
    flexible_margin_contrastive_loss,
)
from scmint.tl._label_transfer import transfer_labels

pytestmark = pytest.mark.usefixtures("one_thread")


EPOCHS = 8
TRAIN = {
    "max_epochs": EPOCHS,
    "batch_size": 64,
    "plan_kwargs": {"lr": 1e-3},  # 10x MinNet's rate so that a few epochs suffice
    "check_val_every_n_epoch": 1,
    "enable_progress_bar": False,
}


def _split(mdata: md.MuData):
    """P1 split: 80% of the cells are the paired reference, 20% held-out queries."""
    padded = scmint.data.pad_mudata(mdata)
    order = np.random.default_rng(0).permutation(padded.n_obs)
    n_ref = int(0.8 * padded.n_obs)
    ref = padded[np.sort(order[:n_ref])].copy()
    query = padded[np.sort(order[n_ref:])].copy()
    return ref, query


def _train(ref: md.MuData, batch_key=None, train_kwargs=None, **kwargs) -> MINNET:
    MINNET.setup_mudata(ref, labels_key="cell_type", batch_key=batch_key)
    scvi.settings.seed = 0
    model = MINNET(ref, **kwargs)
    model.train(**TRAIN, **(train_kwargs or {}))
    return model


def _chance(ref_labels, query_labels) -> float:
    """Accuracy of always guessing the reference's most frequent cell type."""
    majority = ref_labels.value_counts().index[0]
    return float(np.mean(np.asarray(query_labels) == majority))


@pytest.fixture(scope="module")
def cite_model(_bmmc_cite):
    ref, query = _split(_bmmc_cite.copy())
    model = _train(ref, batch_key="batch")
    return model, ref, query


# --------------------------------------------------------------------------- loss
def test_contrastive_loss_matches_formula():
    e_a = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    e_b = torch.tensor([[3.0, 4.0], [3.0, 4.0], [30.0, 40.0]])
    same = torch.tensor([1.0, 0.0, 0.0])
    margin = flexible_margin(torch.tensor([0.0, 0.2, 0.2]), torch.tensor([0.0, 1.0, 0.0]), 3.0)
    torch.testing.assert_close(margin, torch.tensor([0.0, 3.2, 0.2]))
    per_pair = flexible_margin_contrastive_loss(e_a, e_b, same, margin, 10.0, reduction="none")
    d2 = torch.tensor([25.0, 25.0, 2500.0]) + 1e-3
    expected = torch.stack(
        [
            0.5 * d2[0],  # positive: pulled together
            0.5 * 2 * (32.0 - d2[1].sqrt()) ** 2,  # negative inside its margin 10 * 3.2
            torch.tensor(0.0),  # negative beyond its margin 10 * 0.2
        ]
    )
    torch.testing.assert_close(per_pair, expected)
    mean = flexible_margin_contrastive_loss(e_a, e_b, same, margin, 10.0)
    torch.testing.assert_close(mean, expected.mean())
    with pytest.raises(ValueError, match="same shape"):
        flexible_margin_contrastive_loss(e_a, e_b[:2], same, margin)


# --------------------------------------------------------------------------- pairs
@pytest.mark.parametrize("strategy", ["between", "within"])
def test_draw_pairs(strategy):
    pairs = draw_pairs(4000, np.random.default_rng(0), 0.25, strategy)
    assert len(pairs) == 8000
    pos = pairs.same > 0.5
    assert 0.23 < pos.mean() < 0.27  # ~3 negatives per positive
    np.testing.assert_array_equal(pairs.first_cell[pos], pairs.second_cell[pos])
    assert (pairs.first_cell[~pos] != pairs.second_cell[~pos]).all()
    assert (pairs.first_mod[pos] != pairs.second_mod[pos]).all()
    # each cell anchors one pair in each modality
    assert np.bincount(pairs.first_cell[pairs.first_mod == 0]).tolist() == [1] * 4000
    cross = pairs.first_mod[~pos] != pairs.second_mod[~pos]
    assert cross.all() if strategy == "between" else not cross.any()
    with pytest.raises(ValueError, match="strategy"):
        draw_pairs(10, np.random.default_rng(0), strategy="across")


def test_sampler_redraws_every_epoch_and_looks_up_negatives_only():
    calls = []

    def distance_fn(a, b):
        calls.append(len(a))
        return np.full(len(a), 0.5)

    cells = np.arange(10, 110)
    sampler = SiamesePairSampler(cells, batch_size=30, distance_fn=distance_fn, seed=1)
    epoch1, epoch2 = list(sampler), list(sampler)
    assert len(epoch1) == len(sampler) == 7
    assert sum(len(b) for b in epoch1) == 200
    assert min(len(b) for b in epoch1) >= 28  # evenly split: no tiny last batch
    first1 = np.concatenate([b.second_cell for b in epoch1])
    first2 = np.concatenate([b.second_cell for b in epoch2])
    assert not np.array_equal(np.sort(first1), np.sort(first2))  # redrawn
    assert np.isin(first1, cells).all()
    neg = np.concatenate([b.same for b in epoch1]) < 0.5
    assert calls[0] == neg.sum()
    dist = np.concatenate([b.distance for b in epoch1])
    assert (dist[neg] == 0.5).all() and (dist[~neg] == 0).all()
    # prefetching: one distance look-up serves several (different) epochs
    calls.clear()
    pre = SiamesePairSampler(cells, batch_size=30, distance_fn=distance_fn, prefetch_epochs=3)
    epochs = [np.concatenate([b.second_cell for b in pre]) for _ in range(4)]
    assert len(calls) == 2 and calls[0] > 2 * 200  # ~450 negatives of 3 epochs, not ~150
    assert not np.array_equal(np.sort(epochs[0]), np.sort(epochs[1]))
    fixed = SiamesePairSampler(cells, batch_size=30, redraw=False, shuffle=False)
    a, b = list(fixed), list(fixed)
    np.testing.assert_array_equal(a[0].second_cell, b[0].second_cell)


def test_training_plan_defaults():
    module = scmint.model.minnet.MINNETModule(["a", "b"], [5, 3], n_labels=2)
    plan = SiameseTrainingPlan(module)
    assert (plan.lr, plan.weight_decay, plan.eps, plan.optimizer_name) == (
        1e-4,
        1e-6,
        1e-8,
        "Adam",
    )
    assert isinstance(plan, scvi.train.TrainingPlan)
    enc = module.encoders["a"]
    assert isinstance(enc.activation, torch.nn.Tanh) and enc.linear.out_features == 768
    assert module.embedding_head.out_features == 32


# --------------------------------------------------------------------------- model
def test_cite_training_and_query_integration(cite_model):
    model, ref, query = cite_model
    hist = model.history
    train_loss = hist["train_loss"].to_numpy().astype(float).ravel()
    assert len(train_loss) == EPOCHS
    assert train_loss[-1] < 0.5 * train_loss[0]
    assert "validation_loss" in hist and "contrastive_loss_train" in hist
    assert len(model.train_indices) + len(model.validation_indices) == ref.n_obs

    # held-out cells, each modality embedded alone (AnnData queries)
    z_rna = model.get_latent_representation(query["rna"], modality="rna")
    z_adt = model.get_latent_representation(query["adt"], modality="adt")
    assert z_rna.shape == (query.n_obs, 32)
    fos = scmint.metrics.foscttm(z_rna, z_adt)
    assert fos < 0.2, fos  # measured 0.08 (random: 0.5)

    labels = query.obs["cell_type"].to_numpy()
    chance = _chance(ref.obs["cell_type"], labels)
    z_ref = model.get_latent_representation(modality="rna")
    acc = np.mean(transfer_labels(z_ref, ref.obs["cell_type"], z_adt, k=5) == labels)
    assert acc > 4 * chance, (acc, chance)  # measured 0.43 (majority guess: 0.05)
    pred = model.predict(query["adt"], modality="adt")
    assert np.mean(pred == labels) > 4 * chance  # measured 0.64
    soft = model.predict(query, soft=True)
    np.testing.assert_allclose(soft.to_numpy().sum(axis=1), 1.0, rtol=1e-6)

    # joint embedding of paired cells = mean of the two modality embeddings
    z_joint = model.get_latent_representation(query, modality="joint")
    np.testing.assert_allclose(z_joint, (z_rna + z_adt) / 2, rtol=1e-5, atol=1e-5)


def test_query_forms_and_missing_modality(cite_model):
    model, ref, query = cite_model
    z_rna = model.get_latent_representation(query["rna"], modality="rna")
    # a MuData holding RNA only: padded internally; joint = its RNA embedding
    rna_only = md.MuData({"rna": query["rna"].copy()})
    np.testing.assert_allclose(
        model.get_latent_representation(rna_only, modality="joint"), z_rna, atol=1e-4
    )
    with pytest.raises(ValueError, match="not measured in 'adt'"):
        model.get_latent_representation(rna_only, modality="adt")
    nan = model.get_latent_representation(rna_only, modality="adt", missing="nan")
    assert np.isnan(nan).all()
    # features aligned by name: drop 10 proteins, zero-filled with a warning
    adt = query["adt"][:, 10:].copy()
    with pytest.warns(UserWarning, match="10 of the 134 reference features"):
        z = model.get_latent_representation(adt, modality="adt")
    assert np.isfinite(z).all()
    # indices of the registered data
    z_all = model.get_latent_representation(modality="rna")
    np.testing.assert_allclose(
        model.get_latent_representation(modality="rna", indices=[3, 1]), z_all[[3, 1]], atol=1e-5
    )


def test_translate_and_perturb(cite_model):
    model, ref, query = cite_model
    out = model.translate(query["rna"], source="rna", target="adt", k=10)
    assert out.shape == (query.n_obs, 134)
    assert list(out.var_names) == list(ref["adt"].var_names)
    pred = np.log1p(out.X.toarray())
    true = np.log1p(query["adt"].X.toarray())
    own = np.mean([np.corrcoef(pred[i], true[i])[0, 1] for i in range(len(pred))])
    shuffled = np.mean(
        [np.corrcoef(pred[i], true[(i + 7) % len(pred)])[0, 1] for i in range(len(pred))]
    )
    assert own > shuffled  # the profile predicted for a cell fits that cell best

    genes = list(ref["rna"].var_names[:20])
    same = model.perturb(query["rna"], modality="rna", features=genes, factor=1.0)
    np.testing.assert_allclose(same.obs["shift_norm"], 0.0, atol=1e-5)
    knock = model.perturb(query["rna"], modality="rna", features=genes, factor=0.0, target="adt")
    assert (knock.obs["shift_norm"] > 0).mean() > 0.5
    assert knock.shape == (query.n_obs, 134)
    assert knock.layers["translated"].shape == knock.layers["translated_perturbed"].shape
    np.testing.assert_allclose(
        knock.X,
        knock.layers["translated_perturbed"].toarray() - knock.layers["translated"].toarray(),
    )
    with pytest.raises(KeyError, match="not among the model's 'rna' features"):
        model.perturb(query["rna"], modality="rna", features=["NOT_A_GENE"])


def test_save_load_roundtrip(cite_model, tmp_path):
    model, ref, query = cite_model
    z = model.get_latent_representation(query["adt"], modality="adt")
    model.save(tmp_path / "minnet", overwrite=True)
    loaded = MINNET.load(tmp_path / "minnet", adata=ref)
    assert loaded.is_trained_
    np.testing.assert_array_equal(loaded.get_latent_representation(query["adt"], modality="adt"), z)
    np.testing.assert_array_equal(loaded.scalers_["rna"].mean_, model.scalers_["rna"].mean_)
    assert list(loaded.cell_types_) == list(model.cell_types_)


def test_multiome_rna_and_peaks(_bmmc_multiome):
    """RNA genes and ATAC peaks directly, each with its own encoder."""
    ref, query = _split(_bmmc_multiome.copy())
    # early stopping watches validation_loss (patience longer than the run)
    early = {"early_stopping": True, "early_stopping_patience": 20}
    model = _train(ref, strategy="within", train_kwargs=early)
    loss = model.history["train_loss"].to_numpy().astype(float).ravel()
    assert loss[-1] < loss[0]
    z_rna = model.get_latent_representation(query["rna"], modality="rna")
    z_atac = model.get_latent_representation(query["atac"], modality="atac")
    fos = scmint.metrics.foscttm(z_rna, z_atac)
    assert fos < 0.4, fos  # measured 0.30
    labels = query.obs["cell_type"].to_numpy()
    chance = _chance(ref.obs["cell_type"], labels)
    acc = scmint.metrics.label_transfer_accuracy(z_rna, labels, z_atac, labels, k=5)
    assert acc > 2 * chance, (acc, chance)  # measured 0.34 (majority guess: 0.11)


def test_snare_rna_and_atac_gene_activity(snare, data_dir):
    """MinNet's multiome setting: RNA against ATAC gene activity (linked peaks summed)."""
    cells = np.sort(np.random.default_rng(1).choice(snare.n_obs, 2000, replace=False))
    sub = snare[cells]
    prior = data_dir / "snare_mouse_cortex" / "gene_peak_prior.npz"
    activity = scmint.pp.gene_activity(sub["atac"], links=prior, gene_names=sub["rna"].var_names)
    assert activity.shape == sub["rna"].shape
    mdata = md.MuData({"rna": sub["rna"].copy(), "activity": activity})
    ref, query = _split(mdata)
    model = _train(ref, batch_key="batch", activation="tanh")
    loss = model.history["train_loss"].to_numpy().astype(float).ravel()
    assert loss[-1] < 0.7 * loss[0]
    z_rna = model.get_latent_representation(query["rna"], modality="rna")
    z_act = model.get_latent_representation(query["activity"], modality="activity")
    fos = scmint.metrics.foscttm(z_rna, z_act)
    assert fos < 0.3, fos  # measured 0.21
    labels = query.obs["cell_type"].to_numpy()
    chance = _chance(ref.obs["cell_type"], labels)
    acc = scmint.metrics.label_transfer_accuracy(z_rna, labels, z_act, labels, k=5)
    assert acc > 1.5 * chance, (acc, chance)  # measured 0.44 (majority guess: 0.26)


# --------------------------------------------------------------------------- errors
def test_bad_inputs(bmmc_cite, cite_model):
    padded = scmint.data.pad_mudata(bmmc_cite)
    with pytest.raises(ValueError, match="labels_key"):
        MINNET.setup_mudata(padded)
    with pytest.raises(TypeError, match="setup_mudata"):
        MINNET.setup_anndata(padded["rna"])

    # unpaired: RNA of half the cells, protein of the other half
    half = bmmc_cite.n_obs // 2
    unpaired = scmint.data.pad_mudata(
        md.MuData({"rna": bmmc_cite["rna"][:half].copy(), "adt": bmmc_cite["adt"][half:].copy()})
    )
    MINNET.setup_mudata(unpaired, labels_key="cell_type")
    with pytest.raises(ValueError, match="no cell is"):
        MINNET(unpaired)

    bad = padded.copy()
    x = bad["adt"].X.toarray()
    x[0, 0] = np.nan
    bad.mod["adt"].X = x
    with pytest.raises(ValueError, match="NaN"):
        MINNET.setup_mudata(bad, labels_key="cell_type")

    model, ref, query = cite_model
    with pytest.raises(KeyError, match="Unknown modality 'atac'"):
        model.get_latent_representation(query, modality="atac")
    # an AnnData query's modality is inferred from its feature names
    np.testing.assert_allclose(
        model.get_latent_representation(query["rna"], modality="joint"),
        model.get_latent_representation(query["rna"], modality="rna"),
        atol=1e-5,
    )
    q = query["adt"].copy()
    q.X = q.X.toarray()
    q.X[2, 5] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.get_latent_representation(q, modality="adt")
    with pytest.raises(ValueError, match="strategy"):
        MINNET(ref, strategy="across")
    with pytest.raises(ValueError, match="early_stopping"):
        model.train(max_epochs=1, train_size=1.0, early_stopping=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="positive integer"):
            transfer_labels(np.zeros((3, 2)), ["a", "b", "c"], np.zeros((1, 2)), k=0)
