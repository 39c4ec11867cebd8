"""CONAAE: Con-AAE's losses, the adversarial training plan and the model on real data."""

import warnings

import anndata as ad
import mudata as md
import numpy as np
import pytest
import scvi
import torch

import scmint
from _simulation import common_state
from _splits import make_split
from scmint.model import CONAAE
from scmint.model.conaae import CONAAEModule, batch_hard_triplet_loss, mmd_rbf
from scmint.nn import (
    MLP,
    FeatureScalerLayer,
    ModalityDiscriminator,
    SafeBatchNorm1d,
    least_squares_gan_loss,
    modality_adversarial_loss,
    modality_targets,
)
from scmint.train import GeneratorDiscriminatorPlan

pytestmark = pytest.mark.usefixtures("one_thread")


EPOCHS = 30
TRAIN = {
    "max_epochs": EPOCHS,
    "batch_size": 128,
    "plan_kwargs": {"lr": 1e-3},  # 10x Con-AAE's rate so that a few epochs suffice
    "early_stopping": False,
    "enable_progress_bar": False,
}
SHORT = {**TRAIN, "max_epochs": 3}


def _p2(mdata: md.MuData, name: str):
    """Benchmark protocol P2: every cell becomes two unpaired, renamed cells."""
    split = make_split(mdata, "P2", name=name)
    padded = scmint.data.pad_mudata(split.train)
    return split, padded


def _train(mdata: md.MuData, train_kwargs=None, labels_key="cell_type", **kwargs) -> CONAAE:
    CONAAE.setup_mudata(mdata, labels_key=labels_key, batch_key="batch")
    scvi.settings.seed = 0
    model = CONAAE(mdata, **kwargs)
    model.train(**(train_kwargs or TRAIN))
    return model


def _paired_embeddings(model: CONAAE, split):
    a, b = split.modalities
    z_a = model.get_latent_representation(split.query[a], modality=a)
    z_b = model.get_latent_representation(split.query[b], modality=b)
    rows_a, rows_b = split.pairs
    return z_a[rows_a], z_b[rows_b]


def _history(model: CONAAE, key: str) -> np.ndarray:
    return model.history[key].to_numpy().astype(float).ravel()


@pytest.fixture(scope="module")
def multiome(_bmmc_multiome):
    split, padded = _p2(_bmmc_multiome.copy(), "bmmc_multiome_starter")
    return _train(padded), split, padded


@pytest.fixture(scope="module")
def cite(_bmmc_cite):
    split, padded = _p2(_bmmc_cite.copy(), "bmmc_cite_starter")
    return _train(padded), split, padded


# --------------------------------------------------------------------------- losses
def test_least_squares_gan_matches_conaae():
    scores = torch.tensor([[0.2], [0.6], [0.9], [0.3], [0.5]])
    index = torch.tensor([0, 0, 1, 1, 1])
    # discriminator: 0.5 [mean D(z_0)^2 + mean (D(z_1) - 1)^2]
    d_loss = 0.5 * ((0.2**2 + 0.6**2) / 2 + (0.1**2 + 0.7**2 + 0.5**2) / 3)
    torch.testing.assert_close(least_squares_gan_loss(scores, index, 2), torch.tensor(d_loss))
    # encoders, flipped labels: 0.5 [mean (D(z_0) - 1)^2 + mean D(z_1)^2]
    g_loss = 0.5 * ((0.8**2 + 0.4**2) / 2 + (0.9**2 + 0.3**2 + 0.5**2) / 3)
    torch.testing.assert_close(
        modality_adversarial_loss(scores, index, 2, flip=True), torch.tensor(g_loss)
    )
    # K = 3: one-hot targets for the discriminator, uniform over the others when flipped
    t = modality_targets(torch.tensor([0, 2]), 3, flip=True)
    torch.testing.assert_close(t, torch.tensor([[0.0, 0.5, 0.5], [0.5, 0.5, 0.0]]))
    probs = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert least_squares_gan_loss(probs, torch.tensor([0, 2]), 3) == 0
    ce = modality_adversarial_loss(probs * 20, torch.tensor([0, 2]), 3, loss="cross_entropy")
    assert ce < 1e-6
    with pytest.raises(ValueError, match="do not fit 3 modalities"):
        least_squares_gan_loss(scores, index, 3)
    with pytest.raises(ValueError, match="loss must be one of"):
        modality_adversarial_loss(scores, index, 2, loss="wasserstein")


def test_batch_hard_triplet_loss():
    z = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.5], [5.0, 0.0]], requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1])
    loss = batch_hard_triplet_loss(z, labels, margin=0.3)
    # anchors: hardest positive (farthest same label), hardest negative (nearest other)
    d_ap = torch.tensor([1.0, 1.0, np.hypot(5.0, 0.5), np.hypot(5.0, 0.5)])
    d_an = torch.tensor([0.5, np.hypot(1.0, 0.5), 0.5, 4.0])
    expected = torch.relu(d_ap - d_an + 0.3).mean()
    torch.testing.assert_close(loss, expected.float())
    loss.backward()
    assert torch.isfinite(z.grad).all()
    # unlabelled rows take no part; one class only: no negatives, zero loss
    valid = torch.tensor([True, True, False, False])
    assert batch_hard_triplet_loss(z, labels, valid=valid) == 0
    far = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    assert batch_hard_triplet_loss(far, torch.tensor([0, 1])) == 0  # beyond the margin


def test_mmd_rbf():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 5, generator=gen)
    y = torch.randn(64, 5, generator=gen)
    assert abs(float(mmd_rbf(x, x))) < 1e-6
    same = float(mmd_rbf(x, y))
    shifted = float(mmd_rbf(x, y + 2.0))
    assert shifted > 10 * abs(same)
    assert float(mmd_rbf(x, y[:10] + 2.0)) > 0  # different sizes
    assert float(mmd_rbf(x[:0], y)) == 0


def test_blocks_single_row_and_scaler():
    mlp = MLP(6, 3, (8, 4))
    assert isinstance(mlp.layers[2], SafeBatchNorm1d)
    mlp.train()
    assert mlp(torch.randn(1, 6)).shape == (1, 3)  # a single row of a modality
    assert mlp(torch.randn(0, 6)).shape == (0, 3)
    disc = ModalityDiscriminator(3, n_modalities=2)
    out = disc(torch.randn(5, 3))
    assert out.shape == (5, 1) and ((out >= 0) & (out <= 1)).all()
    assert ModalityDiscriminator(3, n_modalities=4, output_activation=None).n_outputs == 4

    # the torch layer replays a fitted FeatureScaler exactly
    counts = np.random.default_rng(0).poisson(2.0, size=(50, 7)).astype(np.float32)
    counts[3] = 0  # an empty row stays finite
    for norm, kwargs in (("log", {"log": True, "target_sum": 1e4}), ("clr", {"clr": "feature"})):
        scaler = scmint.pp.FeatureScaler(max_value=10.0, **kwargs).fit(counts)
        layer = FeatureScalerLayer.from_scaler(scaler, norm)
        got = layer(torch.as_tensor(counts)).numpy()
        np.testing.assert_allclose(got, scaler.transform(counts), rtol=1e-4, atol=1e-4)
        back = layer.inverse(torch.as_tensor(got)).numpy()
        assert np.isfinite(back).all()


# --------------------------------------------------------------------------- plan
def test_training_plan_defaults_and_protocol():
    module = CONAAEModule(["a", "b"], [5, 3], n_hidden=(8,), n_latent=4)
    plan = GeneratorDiscriminatorPlan(module)
    assert (plan.lr, plan.weight_decay, plan.betas, plan.eps) == (1e-4, 1e-4, (0.5, 0.999), 1e-8)
    assert plan.automatic_optimization is False
    assert isinstance(plan, scvi.train.TrainingPlan)
    opt_g, opt_d = plan.configure_optimizers()
    disc = {id(p) for p in module.discriminator.parameters()}
    assert {id(p) for g in opt_d.param_groups for p in g["params"]} == disc
    assert not disc & {id(p) for g in opt_g.param_groups for p in g["params"]}
    assert opt_g.defaults["betas"] == (0.5, 0.999)
    no_adv = CONAAEModule(["a", "b"], [5, 3], n_hidden=(8,), adversarial_weight=0.0)
    assert no_adv.discriminator is None
    assert len(GeneratorDiscriminatorPlan(no_adv).configure_optimizers()) == 1
    with pytest.raises(TypeError, match="discriminator_loss"):
        GeneratorDiscriminatorPlan(scmint.model.minnet.MINNETModule(["a", "b"], [5, 3], 2))
    with pytest.raises(ValueError, match="order"):
        GeneratorDiscriminatorPlan(module, order="simultaneous")


def _batch(n: int = 12, seed: int = 0) -> dict:
    """A padded minibatch: rows 0-3 paired, 4-7 only 'a', 8-11 only 'b'."""
    rng = np.random.default_rng(seed)
    mask_a = np.r_[np.ones(8), np.zeros(4)].astype(np.float32)
    mask_b = np.r_[np.ones(4), np.zeros(4), np.ones(4)].astype(np.float32)
    x_a = rng.poisson(3.0, (n, 5)).astype(np.float32) * mask_a[:, None]
    x_b = rng.poisson(3.0, (n, 3)).astype(np.float32) * mask_b[:, None]
    return {
        "X_a": torch.as_tensor(x_a),
        "X_b": torch.as_tensor(x_b),
        "mask_a": torch.as_tensor(mask_a[:, None]),
        "mask_b": torch.as_tensor(mask_b[:, None]),
        "labels": torch.as_tensor(rng.integers(0, 3, (n, 1)).astype(np.float32)),
        "batch": torch.zeros((n, 1)),
    }


@pytest.mark.parametrize(
    ("switch", "term"),
    [
        ("cycle_weight", "cycle_loss"),
        ("triplet_weight", "triplet_loss"),
        ("adversarial_weight", "adversarial_loss"),
        ("mmd_weight", "mmd_loss"),
        ("anchor_weight", "anchor_loss"),
        ("classifier_weight", "classification_loss"),
    ],
)
def test_switches_remove_exactly_their_term(switch, term):
    """Each weight is real: the total drops by exactly weight x term when it is 0."""
    kwargs = {
        "n_hidden": (8,),
        "n_latent": 4,
        "n_classes": 3,
        "class_of_code": [0, 1, 2],
        "mmd_weight": 2.0,
        "anchor_weight": 0.5,
    }
    torch.manual_seed(0)
    full = CONAAEModule(["a", "b"], [5, 3], **kwargs)
    ablated = CONAAEModule(["a", "b"], [5, 3], **{**kwargs, switch: 0.0})
    ablated.load_state_dict(full.state_dict(), strict=False)
    full.eval()
    ablated.eval()
    batch = _batch()
    with torch.no_grad():
        _, _, out_full = full(batch)
        _, _, out_ablated = ablated(batch)
    assert term in out_full.extra_metrics
    assert term not in out_ablated.extra_metrics
    weight = getattr(full, switch)
    torch.testing.assert_close(
        out_full.loss - out_ablated.loss,
        weight * out_full.extra_metrics[term],
        rtol=1e-4,
        atol=1e-4,
    )
    inf = full.inference(**full._get_inference_input(batch))
    if switch == "adversarial_weight":
        assert ablated.discriminator_loss(batch, inf) is None
        assert full.discriminator_loss(batch, inf) > 0
    # anchor: rows 0-3 are the only ones measured in both modalities
    if switch == "anchor_weight":
        expected = torch.nn.functional.mse_loss(inf["z"]["a"][:4], inf["z"]["b"][:4])
        torch.testing.assert_close(out_full.extra_metrics[term], expected)


# --------------------------------------------------------------------------- model
def test_multiome_p2_alignment(multiome):
    model, split, padded = multiome
    hist = model.history
    for key in (
        "train_loss",
        "validation_loss",
        "reconstruction_loss_train",
        "adversarial_loss_train",
        "discriminator_loss_train",
        "discriminator_loss_validation",
        "cycle_loss_train",
        "triplet_loss_validation",
        "classification_loss_train",
    ):
        assert key in hist, key
    assert "anchor_loss_train" not in hist and "mmd_loss_train" not in hist
    assert len(_history(model, "train_loss")) == EPOCHS
    triplet = _history(model, "triplet_loss_train")
    assert triplet[-1] < 0.7 * triplet[0]
    assert len(model.train_indices) + len(model.validation_indices) == padded.n_obs

    z_a, z_b = _paired_embeddings(model, split)
    assert z_a.shape == (split.n_cells, 50)
    fos = scmint.metrics.foscttm(z_a, z_b)
    assert fos < 0.2, fos  # measured 0.088 (random: 0.5)
    recall = scmint.metrics.recall_at_k(z_a, z_b, k=10)
    assert recall > 5 * 10 / split.n_cells, recall  # measured 0.25 (chance 0.02)


def test_cite_p2_alignment(cite):
    model, split, _ = cite
    z_a, z_b = _paired_embeddings(model, split)
    fos = scmint.metrics.foscttm(z_a, z_b)
    assert fos < 0.15, fos  # measured 0.035 (random: 0.5)
    recall = scmint.metrics.recall_at_k(z_a, z_b, k=10)
    assert recall > 10 * 10 / split.n_cells, recall  # measured 0.45 (chance 0.017)


def test_query_forms_predict_and_joint(multiome):
    model, split, padded = multiome
    a, b = split.modalities
    z_rna = model.get_latent_representation(split.query[a], modality=a)
    # registered data: the rows of rna cells, NaN elsewhere with missing="nan"
    z_reg = model.get_latent_representation(modality=a, missing="nan")
    has = padded.obs[f"has_{a}"].to_numpy() > 0
    np.testing.assert_allclose(z_reg[has], z_rna, atol=1e-5)
    assert np.isnan(z_reg[~has]).all()
    with pytest.raises(ValueError, match=f"not measured in '{a}'"):
        model.get_latent_representation(modality=a)
    # joint of single-modality cells is their one embedding
    joint = model.get_latent_representation(modality="joint")
    np.testing.assert_allclose(joint[has], z_rna, atol=1e-5)
    # a MuData with one modality, features matched by name (10 genes dropped)
    rna = split.query[a][:, 10:].copy()
    with pytest.warns(UserWarning, match="10 of the 600 reference features"):
        z = model.get_latent_representation(md.MuData({a: rna}), modality=a)
    assert np.isfinite(z).all()
    labels = split.query[b].obs["cell_type"].to_numpy()
    pred = model.predict(split.query[b], modality=b)
    majority = np.mean(labels == split.query[b].obs["cell_type"].value_counts().index[0])
    assert np.mean(pred == labels) > 2 * majority
    soft = model.predict(split.query[b], modality=b, soft=True)
    np.testing.assert_allclose(soft.to_numpy().sum(axis=1), 1.0, rtol=1e-6)


def test_simulate(cite):
    model, split, padded = cite
    state, share = common_state(model, "cell_type")
    out = model.simulate("cell_type", state, n_cells=60)
    assert list(out["rna"].obs_names) == list(out["adt"].obs_names)  # paired
    assert isinstance(out["rna"].X, np.ndarray)  # decoded log-normalised values, not counts
    assert model.translation_space_of("rna") == "lognorm"
    # each simulated RNA profile is nearest (correlation) to its state's mean profile
    has = padded.obs["has_rna"].to_numpy() > 0
    x = padded["rna"].X[has].toarray()
    lognorm = np.log1p(x / np.maximum(x.sum(1, keepdims=True), 1) * 1e4)
    labels = padded.obs["cell_type"].astype(str).to_numpy()[has]
    types = np.unique(labels)
    centroids = np.stack([lognorm[labels == t].mean(0) for t in types])
    corr = np.corrcoef(out["rna"].X, centroids)[: out.n_obs, out.n_obs :]
    frac = float(np.mean(types[corr.argmax(1)] == state))
    assert frac > 0.5, (frac, share)
    standardized = model.simulate("cell_type", state, n_cells=60, scale="standardized")
    assert not np.allclose(standardized["adt"].X, out["adt"].X)
    with pytest.raises(TypeError, match="does not take"):
        model.simulate("cell_type", state, sample=True)


def test_translate_and_perturb(cite):
    model, split, _ = cite
    a, b = split.modalities
    rows_a, rows_b = split.pairs
    out = model.translate(split.query[a], source=a, target=b)
    assert isinstance(out, ad.AnnData)
    assert out.shape == (split.query[a].n_obs, split.query[b].n_vars)
    assert list(out.var_names) == list(split.query[b].var_names)
    assert np.isfinite(out.X).all()
    assert out.obsm["X_conaae"].shape == (out.n_obs, 50)
    # per protein, across cells: the translation follows the measured partner cells;
    # a mean-profile baseline has no variation across cells (correlation 0)
    measured = split.query[b].X[rows_b].toarray()
    measured = np.log1p(measured / measured.sum(1, keepdims=True) * 1e4)
    pred = out.X[rows_a]
    corr = [np.corrcoef(pred[:, j], measured[:, j])[0, 1] for j in range(pred.shape[1])]
    assert np.nanmean(corr) > 0.4, np.nanmean(corr)  # measured 0.68
    # per cell, across proteins: closer to the partner's profile than the mean profile is
    mean = measured.mean(axis=0)
    own = np.mean([np.corrcoef(pred[i], measured[i])[0, 1] for i in range(len(pred))])
    base = np.mean([np.corrcoef(mean, measured[i])[0, 1] for i in range(len(pred))])
    assert own > base + 0.1, (own, base)  # measured 0.88 vs 0.65
    std = model.translate(split.query[a], source=a, target=b, scale="standardized")
    assert not np.allclose(std.X, out.X)
    with pytest.raises(ValueError, match="scale must be"):
        model.translate(split.query[a], source=a, target=b, scale="counts")

    genes = list(split.query[a].var_names[:20])
    same = model.perturb(split.query[a], modality=a, features=genes, factor=1.0)
    np.testing.assert_allclose(same.obs["shift_norm"], 0.0, atol=1e-4)
    assert same.shape == (split.query[a].n_obs, 50)
    knock = model.perturb(split.query[a], modality=a, features=genes, factor=0.0, target=b)
    assert (knock.obs["shift_norm"] > 0).mean() > 0.5
    assert knock.shape == (split.query[a].n_obs, split.query[b].n_vars)
    np.testing.assert_allclose(
        knock.X, knock.layers["translated_perturbed"] - knock.layers["translated"], atol=1e-6
    )
    np.testing.assert_allclose(knock.layers["translated"], out.X, atol=1e-5)
    with pytest.raises(KeyError, match=f"not among the model's '{a}' features"):
        model.perturb(split.query[a], modality=a, features=["NOT_A_GENE"])


def test_save_load_roundtrip(multiome, tmp_path):
    model, split, padded = multiome
    a = split.modalities[0]
    z = model.get_latent_representation(split.query[a], modality=a)
    model.save(tmp_path / "conaae", overwrite=True)
    loaded = CONAAE.load(tmp_path / "conaae", adata=padded)
    assert loaded.is_trained_
    np.testing.assert_array_equal(loaded.get_latent_representation(split.query[a], modality=a), z)
    torch.testing.assert_close(
        loaded.module.scalers[a].mean, model.module.scalers[a].mean.to(loaded.device)
    )
    assert list(loaded.classes_) == list(model.classes_)
    assert "discriminator_loss_train" in loaded.history


def test_ablations_change_training(_bmmc_multiome):
    """Switches change what is optimised: logged terms, discriminator, outcome."""
    split, padded = _p2(_bmmc_multiome.copy(), "bmmc_multiome_starter")
    runs = {}
    for name, kwargs in {
        "full": {},
        "no_adversarial": {"adversarial_weight": 0.0},
        "no_cycle": {"cycle_weight": 0.0},
        "no_triplet": {"triplet_weight": 0.0},
    }.items():
        runs[name] = _train(padded, SHORT, **kwargs)
    hist = {k: m.history for k, m in runs.items()}
    assert "discriminator_loss_train" not in hist["no_adversarial"]
    assert "adversarial_loss_train" not in hist["no_adversarial"]
    assert runs["no_adversarial"].module.discriminator is None
    assert "cycle_loss_train" not in hist["no_cycle"]
    assert "triplet_loss_train" not in hist["no_triplet"]
    for name in ("no_cycle", "no_triplet"):
        assert "discriminator_loss_train" in hist[name]
    z = {k: _paired_embeddings(m, split)[0] for k, m in runs.items()}
    for name in ("no_adversarial", "no_cycle", "no_triplet"):
        assert not np.allclose(z[name], z["full"], atol=1e-3), name


def test_unlabelled_training_warns_and_works(_bmmc_cite):
    split, padded = _p2(_bmmc_cite.copy(), "bmmc_cite_starter")
    CONAAE.setup_mudata(padded)
    with pytest.warns(UserWarning, match="without labels_key"):
        model = CONAAE(padded)
    assert model.module.classifier is None and model.module.triplet_weight == 0
    model.train(**SHORT)
    assert "triplet_loss_train" not in model.history
    assert "classification_loss_train" not in model.history
    assert "discriminator_loss_train" in model.history
    z_a, z_b = _paired_embeddings(model, split)
    assert np.isfinite(z_a).all() and np.isfinite(z_b).all()
    with pytest.raises(ValueError, match="no classifier"):
        model.predict(split.query["rna"], modality="rna")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CONAAE(padded, supervision="none")  # asked for: no warning
    # the batches as classes, as Con-AAE does on sci-CAR
    CONAAE.setup_mudata(padded, batch_key="batch")
    by_batch = CONAAE(padded, supervision="batch")
    assert by_batch.module.class_source == "batch"
    assert len(by_batch.classes_) == padded.obs["batch"].nunique()


def test_three_modalities_and_anchor():
    """K = 3 (rna + atac + adt, mosaic): K-way discriminator, anchor on known pairs."""
    sim = scmint.data.simulate_multiome(
        n_cells=600, n_genes=200, n_peaks=300, n_proteins=30, paired_fraction=0.5, seed=0
    )
    padded = scmint.data.pad_mudata(sim)
    # the default early stopping on validation_loss, with a short warm-up and patience
    early = {
        **SHORT,
        "max_epochs": 6,
        "early_stopping": True,
        "early_stopping_warmup_epochs": 1,
        "early_stopping_patience": 2,
    }
    model = _train(padded, early, anchor_weight=0.1, mmd_weight=1.0)
    assert 2 <= len(_history(model, "validation_loss")) <= 6
    assert model.module.discriminator.n_outputs == 3
    for key in ("discriminator_loss_train", "anchor_loss_train", "mmd_loss_train"):
        assert key in model.history, key
    for m in ("rna", "atac", "adt"):
        z = model.get_latent_representation(sim[m], modality=m)
        assert z.shape == (sim[m].n_obs, 50) and np.isfinite(z).all()
    joint = model.get_latent_representation()
    assert joint.shape == (padded.n_obs, 50)
    out = model.translate(sim["rna"], source="rna", target="adt")
    assert out.shape == (sim["rna"].n_obs, 30)


# --------------------------------------------------------------------------- errors
def test_bad_inputs(bmmc_cite, multiome):
    padded = scmint.data.pad_mudata(bmmc_cite)
    with pytest.raises(KeyError, match="Unknown modalities"):
        CONAAE.setup_mudata(padded, modalities=["rna", "atac"])
    with pytest.raises(ValueError, match="two or more modalities"):
        CONAAE.setup_mudata(padded, modalities=["rna"])
    half = bmmc_cite.n_obs // 2
    rna, adt = bmmc_cite["rna"][:half].copy(), bmmc_cite["adt"][half:].copy()
    with pytest.raises(ValueError, match="pad_mudata"):
        CONAAE.setup_mudata(md.MuData({"rna": rna, "adt": adt}))
    with pytest.raises(TypeError, match="setup_mudata"):
        CONAAE.setup_anndata(padded["rna"])
    bad = padded.copy()
    x = bad["adt"].X.toarray()
    x[0, 0] = np.nan
    bad.mod["adt"].X = x
    with pytest.raises(ValueError, match="NaN"):
        CONAAE.setup_mudata(bad, labels_key="cell_type")
    neg = padded.copy()
    x = neg["adt"].X.toarray()
    x[0, 0] = -1.0
    neg.mod["adt"].X = x
    CONAAE.setup_mudata(neg, labels_key="cell_type")
    with pytest.raises(ValueError, match="negative values"):
        CONAAE(neg)
    CONAAE(neg, normalization={"adt": "none"}, n_hidden=(16,))  # fine when not normalised
    CONAAE.setup_mudata(padded, labels_key="cell_type")
    with pytest.raises(ValueError, match="without batch_key"):
        CONAAE(padded, supervision="batch")
    with pytest.raises(ValueError, match="n_hidden"):
        CONAAE(padded, n_hidden="wide")
    with pytest.raises(ValueError, match="cycle_weight"):
        CONAAE(padded, cycle_weight=-1.0)
    with pytest.raises(ValueError, match="Unknown normalization"):
        CONAAE(padded, normalization="tfidf")
    model, split, _ = multiome
    with pytest.raises(ValueError, match="early_stopping"):
        model.train(max_epochs=1, train_size=1.0, early_stopping=True)
    with pytest.raises(KeyError, match="Unknown modality 'adt'"):
        model.get_latent_representation(split.query["rna"], modality="adt")
    # an AnnData query's modality is inferred from its feature names
    np.testing.assert_allclose(
        model.get_latent_representation(split.query["rna"], modality="joint"),
        model.get_latent_representation(split.query["rna"], modality="rna"),
        atol=1e-5,
    )
    with pytest.raises(ValueError, match="source= and target="):
        model.translate(split.query["rna"], source="rna")
    q = split.query["atac"].copy()
    q.X = q.X.toarray()
    q.X[2, 5] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.get_latent_representation(q, modality="atac")


def test_plan_options_train():
    """Discriminator-first order, plateau scheduler and gradient clipping run end to end."""
    sim = scmint.data.simulate_multiome(
        n_cells=300, n_genes=100, n_peaks=150, paired_fraction=0.0, seed=1
    )
    padded = scmint.data.pad_mudata(sim)
    plan = {
        "lr": 1e-3,
        "order": "discriminator_first",
        "reduce_lr_on_plateau": True,
        "lr_patience": 1,
        "max_grad_norm": 1.0,
    }
    model = _train(padded, {**SHORT, "plan_kwargs": plan})
    assert "discriminator_loss_train" in model.history
    assert "lr-Adam" in model.history  # the plateau scheduler of the generator optimiser
    z = model.get_latent_representation(modality="atac", missing="nan")
    assert np.isfinite(z[padded.obs["has_atac"].to_numpy() > 0]).all()


def test_default_trains_the_whole_budget():
    """The summed validation objective does not track the alignment, so no early stop.

    On the multiome starter (P1, seed 0) that objective is lowest right after the
    warm-up and rises while the latent space opens; early stopping on it (the former
    default, patience 20) ended training at epoch 31 while FOSCTTM was still falling.
    """
    split = make_split("bmmc_multiome_starter", "P1")
    mdata = scmint.data.pad_mudata(split.train)
    CONAAE.setup_mudata(mdata, labels_key="cell_type", batch_key="batch")
    scvi.settings.seed = 0
    model = CONAAE(mdata, anchor_weight=0.1)
    model.train(max_epochs=35, enable_progress_bar=False)
    assert len(_history(model, "train_loss")) == 35
    val = _history(model, "validation_loss")
    # the old rule: best after a 10-epoch warm-up, then 20 epochs without improvement
    assert 10 + int(np.argmin(val[10:])) <= 35 - 20, val
    a, b = split.modalities
    fos = scmint.metrics.foscttm(
        model.get_latent_representation(split.query[a], modality=a)[split.pairs[0]],
        model.get_latent_representation(split.query[b], modality=b)[split.pairs[1]],
    )
    assert fos < 0.45, fos  # still falling: 0.42 at epoch 31, 0.37 at 150 (random 0.5)
