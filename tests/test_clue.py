"""CLUE: cross-linked encoders, joint rules, losses with missing modalities, and real data."""

import warnings

import mudata as md
import numpy as np
import pytest
import scvi
import torch

import scmint
from _simulation import common_state, simulate_and_place
from _splits import fit_model, make_split, score_split
from scmint.data import data_key, mask_key
from scmint.metrics import foscttm, label_transfer_accuracy
from scmint.model import CLUE
from scmint.model.clue import CLUEModule
from scmint.train import progress_epochs

pytestmark = pytest.mark.usefixtures("one_thread")


QUIET = {"enable_progress_bar": False}


def _fit(split, epochs: int, **kwargs):
    train = {"early_stopping": False, **QUIET}
    return fit_model(split, CLUE, max_epochs=epochs, train_kwargs=train, **kwargs)


def _lognorm(x) -> np.ndarray:
    x = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
    return np.log1p(x / np.maximum(x.sum(1, keepdims=True), 1) * 1e4)


def _row_corr(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    return float(np.mean((a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))))


@pytest.fixture(scope="module")
def cite_p1():
    split = make_split("bmmc_cite_starter", "P1")
    result = _fit(split, 40)
    return split, result


# --------------------------------------------------------------------------- module
def _module(k: int = 2, **kwargs) -> CLUEModule:
    mods = ["rna", "atac", "adt"][:k]
    torch.manual_seed(0)
    return CLUEModule(
        mods,
        [12, 9, 5][:k],
        likelihoods=dict(zip(mods, ["nb", "bernoulli", "normal"], strict=False)),
        normalization=dict(zip(mods, ["log", "log", "none"], strict=False)),
        n_batch=2,
        n_latent=4,
        n_hidden=16,
        **kwargs,
    )


def _tensors(module: CLUEModule, n: int = 10, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for m, g in zip(module.modalities, module.n_input, strict=True):
        x = torch.poisson(torch.full((n, g), 3.0), generator=gen)
        if module.likelihoods[m] == "normal":
            x = torch.randn(n, g, generator=gen)
        out[data_key(m)] = x
        out[mask_key(m)] = torch.ones(n, 1)
    out[scvi.REGISTRY_KEYS.BATCH_KEY] = torch.randint(0, 2, (n, 1), generator=gen).float()
    out[scvi.REGISTRY_KEYS.LABELS_KEY] = torch.zeros(n, 1)
    return out


def _loss(module: CLUEModule, tensors: dict, seed: int = 0):
    torch.manual_seed(seed)
    inference = module.inference(**module._get_inference_input(tensors))
    return module.loss(tensors, inference, {}), inference


def test_encoder_matrix_and_blocks():
    module = _module(3)
    assert module.n_latent == 12 and module.n_latent_block == 4
    x = torch.poisson(torch.full((6, 9), 2.0))
    q = module.encode(x, "atac")
    assert q.loc.shape == (6, 12) and (q.scale > 0).all()
    # block i of u is what modality i's decoder reads
    u = torch.randn(6, 12)
    torch.testing.assert_close(module.block(u, "adt"), u[:, 8:12])
    module.eval()
    torch.testing.assert_close(module.embed(x, "atac").norm(dim=1), torch.ones(6))
    dist = module.decode(u, "rna", torch.zeros(6), torch.full((6, 1), 100.0))
    torch.testing.assert_close(dist.mean.sum(1), torch.full((6,), 100.0), rtol=1e-4, atol=1e-3)
    assert module.decode(u, "atac", torch.zeros(6)).mean.max() <= 1  # Bernoulli probabilities


def test_sparse_minibatches_give_the_same_loss_and_gradients():
    """CSR minibatches (the data path's for sparse modalities) equal the dense ones."""
    module = _module(3)
    dense = _tensors(module, n=12)
    dense[mask_key("atac")][[1, 4]] = 0  # rows without ATAC (a mosaic minibatch)
    for m in module.modalities:  # padded rows hold zeros
        dense[data_key(m)] = dense[data_key(m)] * dense[mask_key(m)]
    dense[data_key("rna")][2] = 0  # a cell without counts
    sparse_csr = dict(dense)
    for m in ("rna", "atac"):
        sparse_csr[data_key(m)] = dense[data_key(m)].to_sparse_csr()
    results = []
    for tensors in (dense, sparse_csr):
        module.zero_grad()
        out, _ = _loss(module, tensors, seed=5)
        out.loss.backward()
        grads = {k: p.grad.clone() for k, p in module.named_parameters() if p.grad is not None}
        results.append((out.loss.detach(), grads))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-5, atol=1e-6)
    assert results[0][1].keys() == results[1][1].keys()
    for key, grad in results[0][1].items():
        torch.testing.assert_close(grad, results[1][1][key], rtol=1e-4, atol=1e-6, msg=key)


def test_state_dict_of_separate_element_encoders_loads():
    """A CrossEncoder saved with K separate first layers loads into the shared-first layout."""
    from scmint.model.clue._module import CrossEncoder
    from scmint.nn import FeatureScalerLayer, GaussianEncoder

    torch.manual_seed(0)
    old = torch.nn.ModuleList(GaussianEncoder(30, 4, 16, 2, 0.2) for _ in range(3))
    state = {f"elements.{k}": v for k, v in old.state_dict().items()}
    new = CrossEncoder(30, 3, 4, 16, 2, 0.2)
    new.load_state_dict(state)
    for module in (old, new):
        for layer in module.modules():  # non-trivial running statistics
            if isinstance(layer, torch.nn.BatchNorm1d):
                layer.running_mean.normal_()
        module.eval()
    old.load_state_dict({k.removeprefix("elements."): v for k, v in state.items()})
    new.load_state_dict(state)
    scaler = FeatureScalerLayer(30, "log", max_value=None)
    x = torch.poisson(torch.full((7, 30), 1.0))
    parts = [encoder(scaler(x)) for encoder in old]
    q = new(x.to_sparse_csr(), scaler)
    torch.testing.assert_close(q.loc, torch.cat([p.loc for p in parts], 1))
    torch.testing.assert_close(q.scale, torch.cat([p.scale for p in parts], 1))


def test_joint_rules():
    loc = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[2.0, 2.0], [9.0, 9.0]]])
    scale = torch.tensor([[[1.0, 1.0], [1.0, 1.0]], [[0.5, 0.5], [1.0, 1.0]]])
    mask = torch.tensor([[True, True], [True, False]])
    mean = _module(normalize=False)
    # masked mean: the absent modality's values take no part
    torch.testing.assert_close(
        mean.combine(loc, scale, mask, sample=False), torch.tensor([[0.5, 0.5], [2.0, 2.0]])
    )
    unit = _module()
    torch.testing.assert_close(
        unit.combine(loc, scale, mask, sample=False).norm(dim=1), torch.ones(2)
    )
    poe = _module(joint="poe", normalize=False)
    # product of the experts present and the N(0, 1) prior: precision-weighted mean
    torch.testing.assert_close(
        poe.combine(loc, scale, mask, sample=False),
        torch.tensor([[1 / 3, 1 / 3], [2.0 * 4 / 5, 2.0 * 4 / 5]]),
    )


def test_missing_modality_takes_no_part():
    module = _module()
    tensors = _tensors(module)
    tensors[mask_key("atac")][:4] = 0.0  # four RNA-only cells
    base, _ = _loss(module, tensors)
    changed = {k: v.clone() for k, v in tensors.items()}
    changed[data_key("atac")][:4] = 50.0  # what sits in the padding must not matter
    again, _ = _loss(module, changed)
    torch.testing.assert_close(base.loss, again.loss)
    for key in ("self_elbo_loss", "joint_cross_loss", "real_cross_loss", "alignment_loss"):
        assert key in base.extra_metrics and torch.isfinite(base.extra_metrics[key])
    # a paired cell's ATAC profile does count
    changed[data_key("atac")][5] = 50.0
    third, _ = _loss(module, changed)
    assert not torch.allclose(base.loss, third.loss)
    # no cell with both modalities: no real-cross term
    solo = {k: v.clone() for k, v in tensors.items()}
    solo[mask_key("rna")][4:] = 0.0
    out, _ = _loss(module, solo)
    assert "real_cross_loss" not in out.extra_metrics


def test_adversarial_terms_and_noise_annealing():
    module = _module(3).eval()  # no dropout: both passes see the same discriminator
    tensors = _tensors(module)
    out, inference = _loss(module, tensors)
    disc = module.discriminator_loss(tensors, inference)
    adv = out.extra_metrics["adversarial_loss"]
    # the generator maximises what the discriminator minimises (published sign)
    torch.testing.assert_close(disc.detach(), module.adversarial_weight * adv, rtol=1e-4, atol=0)
    torch.testing.assert_close(out.loss, out.extra_metrics["vae_loss"] - 0.02 * adv)
    module.burnin_epochs = 4
    module.set_epoch(0)
    assert module.anneal == 1.0
    module.set_epoch(2)
    assert module.anneal == 0.5
    module.set_epoch(9)
    assert module.anneal == 0.0
    off = _module(adversarial_weight=0.0)
    assert off.discriminator is None and list(off.discriminator_parameters()) == []
    out, inference = _loss(off, _tensors(off))
    assert "adversarial_loss" not in out.extra_metrics
    assert off.discriminator_loss(_tensors(off), inference) is None


def test_alignment_choices():
    tensors = _tensors(_module())
    cos = _loss(_module(), tensors)[0].extra_metrics["alignment_loss"]
    mse = _loss(_module(alignment="mse"), tensors)[0].extra_metrics["alignment_loss"]
    assert cos > 0 and mse > 0 and not torch.isclose(cos, mse)
    with pytest.raises(ValueError, match="alignment"):
        _module(alignment="l1")
    with pytest.raises(ValueError, match="joint"):
        _module(joint="max")


def test_progress_schedule():
    # GLUE's rule: progress / (lr x minibatches per epoch), at least `progress` epochs
    assert progress_epochs(72, 2e-3, 72) == 500
    assert progress_epochs(72, 2e-3, 4) == 1000  # capped
    assert progress_epochs(72, 2e-3, 10_000) == 72


# --------------------------------------------------------------------------- real data
def test_p1_cite_alignment_and_translation(cite_p1):
    split, result = cite_p1
    scores = score_split(split, result.embeddings)
    assert scores["foscttm"] < 0.2, scores  # measured 0.09 after 40 epochs (CCA 0.16)
    # 41 cell types (the most common is 13 % of the query cells): well above chance
    assert scores["label_transfer_a_to_b"] > 0.25 and scores["label_transfer_b_to_a"] > 0.25
    # ADT of the held-out cells predicted from their RNA alone
    pred, space = result.translate("rna", "adt")
    assert space == "counts" and pred.shape == split.query["adt"].shape
    rows_a, rows_b = split.pairs
    measured = _lognorm(split.query["adt"].X[rows_b])
    predicted = _lognorm(pred[rows_a])
    baseline = np.broadcast_to(_lognorm(split.train.mod["adt"].X).mean(0), measured.shape)
    own, base = _row_corr(predicted, measured), _row_corr(baseline, measured)
    assert own > base + 0.05, (own, base)
    per_protein = [np.corrcoef(predicted[:, j], measured[:, j])[0, 1] for j in range(20)]
    assert np.nanmean(per_protein) > 0.3, per_protein


def test_p1_multiome():
    split = make_split("bmmc_multiome_starter", "P1")
    result = _fit(split, 40)
    fos = foscttm(
        *(result.embeddings[m][r] for m, r in zip(split.modalities, split.pairs, strict=True))
    )
    assert fos < 0.35, fos


def test_p3_mosaic_label_transfer(pbmc_mosaic):
    split = make_split("pbmc_mosaic", "P3")
    result = _fit(split, 40, joint="poe")
    z_rna, z_adt = (result.embeddings[m] for m in split.modalities)
    y_rna = split.query["rna"].obs[split.labels_key].to_numpy()
    y_adt = split.query["adt"].obs[split.labels_key].to_numpy()
    chance = max(np.mean(y_adt == c) for c in np.unique(y_adt))
    acc = label_transfer_accuracy(z_rna, y_rna, z_adt, y_adt)
    assert acc > chance + 0.3, (acc, chance)


def test_model_api_on_mosaic(pbmc_mosaic):
    mdata = scmint.data.pad_mudata(pbmc_mosaic.copy())
    CLUE.setup_mudata(mdata, batch_key="batch", labels_key="cell_type")
    scvi.settings.seed = 0
    model = CLUE(mdata, likelihood={"adt": "normal"}, normalization={"adt": "clr"})
    model.train(max_epochs=3, **QUIET)
    for key in ("real_cross_loss_train", "discriminator_loss_train", "vae_loss_validation"):
        assert key in model.history, key
    assert model.module.burnin_epochs == 1
    z = model.get_latent_representation()
    assert z.shape == (mdata.n_obs, 100) and np.isfinite(z).all()
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, rtol=1e-4)
    rna_only = np.flatnonzero(~mdata.obs["has_adt"].to_numpy().astype(bool))
    assert rna_only.size
    z_rna = model.get_latent_representation(modality="rna", indices=rna_only)
    np.testing.assert_allclose(z[rna_only], z_rna, atol=1e-5)  # one modality: joint = its own
    with pytest.raises(ValueError, match="not measured in 'adt'"):
        model.get_latent_representation(modality="adt", indices=rna_only)
    adt = model.translate(source="rna", target="adt", indices=rna_only)
    assert adt.shape == (rna_only.size, mdata["adt"].n_vars) and np.isfinite(adt.X).all()
    counts = model.translate(source="joint", target="rna", library=2000.0, batch="p3_0")
    np.testing.assert_allclose(counts.X.sum(1), 2000.0, rtol=1e-3)
    with pytest.raises(ValueError, match="not measured in 'adt'"):
        model.translate(source="rna", target="adt", indices=rna_only, library="observed")
    with pytest.raises(KeyError, match="Unknown batch"):
        model.translate(source="rna", target="adt", batch="nowhere")
    with pytest.raises(ValueError, match="no cells measured in 'adt'"):
        model.translate(source="rna", target="adt", batch="p1_0")  # the RNA-only batch
    assert model._decoder_batch(None, "adt") != model._batch_code("p1_0")
    labels = model.predict(modality="joint")
    assert labels.shape == (mdata.n_obs,) and set(labels) <= set(model.classes_)
    genes = list(mdata["rna"].var_names[:30])
    same = model.perturb(modality="rna", features=genes, factor=1.0, indices=rna_only)
    np.testing.assert_allclose(same.obs["shift_norm"], 0.0, atol=1e-5)
    knock = model.perturb(
        modality="rna", features=genes, factor=0.0, indices=rna_only, target="adt"
    )
    assert knock.shape == (rna_only.size, mdata["adt"].n_vars)
    assert (knock.obs["shift_norm"] > 1e-4).mean() > 0.5
    np.testing.assert_allclose(
        knock.X, knock.layers["translated_perturbed"] - knock.layers["translated"], atol=1e-5
    )


def test_simulate_and_normalized_expression(cite_p1):
    model = cite_p1[1].model
    state, share = common_state(model, "cell_type")
    out, fractions = simulate_and_place(model, "cell_type", state)
    assert all(f > 0.5 for f in fractions.values()), (fractions, share)
    np.testing.assert_allclose(np.linalg.norm(out.obsm["X_clue"], axis=1), 1.0, rtol=1e-5)
    assert np.allclose(out["rna"].X.data, np.round(out["rna"].X.data))  # sampled counts
    # frequencies: the decoded negative-binomial means at library size 1
    rows = np.arange(30)
    freq = model.get_normalized_expression(modality="rna", indices=rows)
    assert list(freq.index) == list(model.adata.obs_names[rows])
    np.testing.assert_allclose(freq.to_numpy().sum(axis=1), 1.0, atol=1e-3)  # + EPS per gene
    joint = model.translate(source="joint", target="rna", indices=rows, library=1.0)
    np.testing.assert_allclose(freq.to_numpy(), joint.X, rtol=1e-5)  # default source: joint
    from_adt = model.get_normalized_expression(
        modality="rna", indices=rows, source="adt", return_numpy=True
    )
    assert not np.allclose(from_adt, freq.to_numpy())


def test_elbo_and_reconstruction_error(cite_p1):
    split, result = cite_p1
    model = result.model
    rows = np.arange(200)
    elbo = model.get_elbo(indices=rows, return_mean=False)
    assert elbo.shape == (200,) and np.isfinite(elbo).all() and (elbo < 0).all()
    assert np.isclose(model.get_elbo(indices=rows), elbo.mean())
    untrained = CLUE(model.adata)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "not trained"
        assert model.get_elbo(indices=rows) > untrained.get_elbo(indices=rows) + 100
    # held-out cells (query, with their batch): their own profiles are far likelier
    # than the same counts shuffled across genes
    query = split.query["rna"][:200].copy()
    error = model.get_reconstruction_error(query)
    assert set(error) == {"reconstruction_loss_rna", "reconstruction_loss_adt"}
    assert np.isnan(error["reconstruction_loss_adt"])  # the query has no ADT
    shuffled = query.copy()
    x = shuffled.X.toarray()
    rng = np.random.default_rng(0)
    shuffled.X = np.stack([rng.permutation(row) for row in x])
    worse = model.get_reconstruction_error(shuffled)["reconstruction_loss_rna"]
    assert worse > 1.2 * error["reconstruction_loss_rna"], (worse, error)
    query.obs["batch"] = "nowhere"
    with pytest.raises(ValueError, match="not registered batches"):
        model.get_elbo(query)


def test_save_load_round_trip(cite_p1, tmp_path):
    split, _ = cite_p1
    mdata = scmint.data.pad_mudata(split.train)
    CLUE.setup_mudata(mdata, batch_key=split.batch_key)
    scvi.settings.seed = 0
    model = CLUE(mdata, joint="poe", n_latent=8)
    model.train(max_epochs=2, **QUIET)
    before = model.get_latent_representation(split.query["adt"], modality="adt")
    model.save(tmp_path / "clue", overwrite=True)
    loaded = CLUE.load(tmp_path / "clue", adata=mdata)
    after = loaded.get_latent_representation(split.query["adt"], modality="adt")
    np.testing.assert_allclose(before, after, atol=1e-6)
    assert loaded.module.joint_rule == "poe" and loaded.module.n_latent == 16


def test_bad_input_raises_before_training(bmmc_multiome):
    padded = scmint.data.pad_mudata(bmmc_multiome)
    with pytest.raises(TypeError, match="setup_mudata"):
        CLUE.setup_anndata(padded["rna"])
    noisy = padded.copy()
    noisy.mod["rna"].X = noisy.mod["rna"].X * 0.5
    with pytest.raises(ValueError, match="integer"):
        CLUE.setup_mudata(noisy)
    nan = padded.copy()
    nan.mod["atac"].X = nan.mod["atac"].X.toarray()
    nan.mod["atac"].X[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN|finite"):
        CLUE.setup_mudata(nan)
    with pytest.raises(ValueError, match="pad"):
        CLUE.setup_mudata(md.MuData({"rna": padded["rna"][:10], "atac": padded["atac"][5:15]}))
    CLUE.setup_mudata(padded, batch_key="batch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(ValueError, match="likelihood"):
            CLUE(padded, likelihood="poisson")
        with pytest.raises(KeyError, match="not among"):
            CLUE(padded, likelihood={"adt": "nb"})
        with pytest.raises(ValueError, match="joint"):
            CLUE(padded, joint="sum")
        with pytest.raises(ValueError, match="kl_weight"):
            CLUE(padded, kl_weight=-1.0)
        with pytest.raises(ValueError, match="n_latent"):
            CLUE(padded, n_latent=0)
        model = CLUE(padded)
    with pytest.raises(ValueError, match="train_size"):
        model.train(max_epochs=1, train_size=1.0)
    with pytest.raises(ValueError, match="lr"):
        model.train(max_epochs=1, lr=0.0)
    with pytest.raises(ValueError, match="no classifier"):
        model.predict()
    with pytest.raises(KeyError, match="Unknown modality"):
        model.translate(source="protein", target="rna")
    # non-integer values with a count likelihood fail at construction
    floats = scmint.data.pad_mudata(bmmc_multiome)
    floats.mod["atac"].X = floats.mod["atac"].X * 0.3
    CLUE.setup_mudata(floats, count_modalities=["rna"])
    with pytest.raises(ValueError, match="integer"):
        CLUE(floats)
    CLUE(floats, likelihood={"atac": "bernoulli"})  # x > 0 is what it scores


def test_seed_stability_restores_best_epoch(bmmc_cite):
    """Two seeds land close: the weights of the best validation epoch are restored.

    At RMSprop's full learning rate CLUE's alignment jumps from epoch to epoch; with the
    last epoch's weights, seed 2 of this set-up (20 epochs, labels, every cell scored)
    scored FOSCTTM 0.25 (its previous epoch 0.07) against 0.07 for seed 0.
    """
    mods = ["rna", "adt"]
    scores, models = {}, {}
    for seed in (0, 2):
        scvi.settings.seed = seed
        mdata = scmint.data.pad_mudata(bmmc_cite, modalities=mods)
        CLUE.setup_mudata(mdata, modalities=mods, batch_key="batch", labels_key="cell_type")
        model = CLUE(mdata)
        model.train(max_epochs=20, **QUIET)
        z = [model.get_latent_representation(mdata, modality=m) for m in mods]
        scores[seed], models[seed] = foscttm(*z), model
    assert max(scores.values()) < 0.12, scores  # measured 0.073 and 0.076
    assert max(scores.values()) / min(scores.values()) < 1.5, scores
    # the restored epoch is the best validation epoch after the burn-in (4 of 20)
    for model in models.values():
        val = model.history["vae_loss_validation"].to_numpy(dtype=float).ravel()
        assert model.best_epoch_ == 4 + int(np.argmin(val[4:]))
    # switched off, training ends on the last epoch's weights
    model = CLUE(mdata)
    model.train(max_epochs=2, restore_best=False, **QUIET)
    assert model.best_epoch_ is None
