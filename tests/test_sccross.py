"""SCCROSS: likelihoods, MNN correction and prior, two-stage model, generation, perturbation."""

import warnings

import mudata as md
import numpy as np
import pytest
import scvi
import torch
from scipy import sparse

import scmint
from _simulation import simulate_and_place
from scmint.model import SCCROSS
from scmint.model.sccross import gram_alignment_loss
from scmint.nn import BatchLikelihoodDecoder, ZeroInflatedLogNormal

md.set_options(pull_on_update=False)
FAST = {"lr": 2e-3, "early_stopping": False, "enable_progress_bar": False}


pytestmark = pytest.mark.usefixtures("one_thread")


def _simulated_p2(seed: int = 0):
    """Simulated paired RNA + ATAC, unpaired by renaming (protocol P2), and its truth."""
    sim = scmint.data.simulate_multiome(
        n_cells=500,
        n_cell_types=4,
        n_genes=400,
        n_peaks=800,
        paired_fraction=1.0,
        rare_type_ratio=0.5,
        batch_effect=0.2,
        seed=seed,
    )
    rna, atac = sim["rna"].copy(), sim["atac"].copy()
    activity = scmint.pp.gene_activity(atac, genes=rna.var, gene_names=rna.var_names)
    rna.obs_names = rna.obs_names + "_rna"
    atac.obs_names = atac.obs_names + "_atac"
    activity.obs_names = atac.obs_names
    padded = scmint.data.pad_mudata(md.MuData({"rna": rna, "atac": atac}))
    return sim, rna, atac, activity, padded


@pytest.fixture(scope="module")
def simulated():
    sim, rna, atac, activity, padded = _simulated_p2()
    SCCROSS.setup_mudata(padded, batch_key="batch")
    scvi.settings.seed = 0
    model = SCCROSS(padded, gene_matrices={"atac": activity})
    # no burn-in noise on D_z in this 10-epoch run: with it (the default, 2 noisy epochs
    # here) the simulator's perturbation screen finds 4-6 of its 8 top genes, without 7-8
    model.train(max_epochs=10, pretrain_epochs=10, burnin_epochs=0, **FAST)
    return model, sim, rna, atac, padded


@pytest.fixture(scope="module")
def bmmc_heldout(_bmmc_multiome):
    """BMMC multiome, paired; 100 cells held out for translation."""
    mdata = _bmmc_multiome.copy()
    rng = np.random.default_rng(0)
    held = np.zeros(mdata.n_obs, dtype=bool)
    held[rng.choice(mdata.n_obs, 100, replace=False)] = True
    names = mdata.obs_names
    train = md.MuData({m: mdata[m][~held].copy() for m in ("rna", "atac")})
    test = md.MuData({m: mdata[m][held].copy() for m in ("rna", "atac")})
    padded = scmint.data.pad_mudata(train)
    SCCROSS.setup_mudata(padded, batch_key="batch")
    scvi.settings.seed = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # no shared genes: no MNN prior
        model = SCCROSS(padded, pairing_weight=1.0)
    model.train(max_epochs=30, pretrain_epochs=30, **FAST)
    assert len(names) == mdata.n_obs
    return model, train, test


# --------------------------------------------------------------------------- building blocks
def test_likelihood_decoders():
    u = torch.randn(6, 4)
    batch = torch.tensor([0, 1, 0, 1, 1, 0])
    lib = torch.full((6, 1), 100.0)
    x = torch.poisson(torch.full((6, 5), 3.0))
    for lik in ("nb", "zinb"):
        dec = BatchLikelihoodDecoder(4, 5, n_batch=2, likelihood=lik)
        px = dec(u, batch, lib)
        torch.testing.assert_close(px.mean.sum(1), lib.view(-1) * (1 if lik == "nb" else 0.5))
        assert px.log_prob(x).shape == (6, 5)
        with pytest.raises(ValueError, match="library"):
            dec(u, batch)
    for lik in ("normal", "bernoulli", "ziln"):
        px = BatchLikelihoodDecoder(4, 5, n_batch=2, likelihood=lik)(u, batch)
        target = (x > 2).float() if lik == "bernoulli" else x
        assert torch.isfinite(px.log_prob(target)).all()
    with pytest.raises(ValueError, match="likelihood"):
        BatchLikelihoodDecoder(4, 5, likelihood="poisson")
    # batch-specific parameters: changing batch 1's bias changes only batch-1 rows
    dec = BatchLikelihoodDecoder(4, 5, n_batch=2, likelihood="normal")
    before = dec(u, batch).mean.detach()
    with torch.no_grad():
        dec.bias[1] += 1.0
    diff = (dec(u, batch).mean.detach() - before).abs().sum(1)
    assert (diff[batch == 0] == 0).all() and (diff[batch == 1] > 0).all()


def test_zero_inflated_log_normal():
    d = ZeroInflatedLogNormal(torch.zeros(3), torch.ones(3), torch.tensor([0.0, 0.0, 0.0]))
    lp = d.log_prob(torch.tensor([0.0, 1.0, np.e]))
    # zero: log(pi) = log 0.5; x = 1: log(0.5) + lognormal(0 | 0, 1) = log 0.5 - log sqrt(2 pi)
    torch.testing.assert_close(lp[0], torch.log(torch.tensor(0.5)))
    torch.testing.assert_close(lp[1], torch.log(torch.tensor(0.5)) - 0.5 * np.log(2 * np.pi))
    s = d.sample((2000,))
    assert 0.4 < (s == 0).float().mean() < 0.6


def test_gram_alignment_loss():
    p = torch.randn(5, 8)
    q = torch.randn(7, 8)
    assert gram_alignment_loss(p, q, 3 * p, 2 * q) < 1e-10  # cosine: scale-free
    assert gram_alignment_loss(p, q, torch.randn(5, 8), torch.randn(7, 8)) > 0.1
    assert gram_alignment_loss(p[:0], q, p[:0], q) == 0


def test_mnn_pairs_and_correction():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 20)) * 3
    labels_a = rng.integers(0, 3, 300)
    labels_b = rng.integers(0, 3, 200)
    a = centers[labels_a] + rng.normal(size=(300, 20)) * 0.3
    shift = rng.normal(size=20) * 3
    b = centers[labels_b] + shift + rng.normal(size=(200, 20)) * 0.3
    ia, ib = scmint.model.sccross.mnn_pairs(a - a.mean(0), b - b.mean(0), n_neighbors=10)
    assert ia.size > 50
    assert (labels_a[ia] == labels_b[ib]).mean() > 0.95
    (ca, cb), n_pairs = scmint.model.sccross.mnn_correct(a, b, n_neighbors=10, cos_norm=False)
    assert n_pairs[0] > 0 and np.allclose(ca, a)

    def nearest(x, ref):
        d = ((x[:, None, :] - ref[None, :, :]) ** 2).sum(-1)
        return d.argmin(1), np.sqrt(d.min(1)).mean()

    nn_raw, dist_raw = nearest(b, a)
    nn, dist = nearest(cb, a)
    assert dist < 0.3 * dist_raw, (dist, dist_raw)  # b moved onto a
    assert (labels_a[nn] == labels_b).mean() > 0.95  # onto cells of its own type
    # the sparse kernel equals the published Gaussian-kernel average of correction vectors
    ia, ib = scmint.model.sccross.mnn_pairs(a, b, n_neighbors=10)
    anchors = np.unique(ib)
    vectors = np.stack([(a[ia[ib == j]] - b[j]).mean(0) for j in anchors])
    d2 = ((b[:, None, :] - b[anchors][None, :, :]) ** 2).sum(-1)
    nearest50 = np.argsort(d2, axis=1)[:, :50]
    w = np.exp(-np.take_along_axis(d2, nearest50, 1) + np.take_along_axis(d2, nearest50, 1)[:, :1])
    w /= w.sum(1, keepdims=True)
    expected = b + np.einsum("ck,ckd->cd", w, vectors[nearest50])
    np.testing.assert_allclose(cb, expected, rtol=1e-5, atol=1e-6)  # float32 kNN distances
    with pytest.raises(ValueError, match="two or more"):
        scmint.model.sccross.mnn_correct(a)
    with pytest.raises(ValueError, match="same features"):
        scmint.model.sccross.mnn_correct(a, b[:, :5])


def test_mnn_prior_pairs_cells_and_metacells():
    sim, rna, atac, activity, _ = _simulated_p2(seed=1)
    prior, info = scmint.model.sccross.mnn_prior({"rna": rna, "atac": activity}, n_comps=20)
    assert prior["rna"].shape == (rna.n_obs, 20) and prior["atac"].shape == (atac.n_obs, 20)
    fos = scmint.metrics.foscttm(prior["rna"], prior["atac"])
    assert fos < 0.3, fos  # measured 0.17 (random 0.5)
    meta, info = scmint.model.sccross.mnn_prior(
        {"rna": rna, "atac": activity}, cells_per_metacell=10
    )
    assert info["n_units"]["rna"] < rna.n_obs / 5 and meta["rna"].shape == (rna.n_obs, 50)
    with pytest.raises(ValueError, match="share"):
        scmint.model.sccross.mnn_prior({"rna": rna, "atac": atac})


# --------------------------------------------------------------------------- errors
def test_bad_input_raises_before_training(bmmc_multiome):
    padded = scmint.data.pad_mudata(bmmc_multiome)
    with pytest.raises(TypeError, match="setup_mudata"):
        SCCROSS.setup_anndata(padded["rna"])
    noisy = padded.copy()
    noisy.mod["rna"].X = noisy.mod["rna"].X * 0.5
    with pytest.raises(ValueError, match="integer"):
        SCCROSS.setup_mudata(noisy)
    SCCROSS.setup_mudata(padded, batch_key="batch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(ValueError, match="likelihood"):
            SCCROSS(padded, likelihood="poisson")
        with pytest.raises(KeyError, match="gene_matrices"):
            SCCROSS(padded, gene_matrices={"adt": padded["rna"]})
        with pytest.raises(ValueError, match="fewer than 50"):
            SCCROSS(padded, gene_matrices={"atac": padded["atac"]})
        with pytest.raises(ValueError, match="non-count"):
            SCCROSS(padded, likelihood={"atac": "normal"}, representation={"atac": "lsi"})
        with pytest.raises(ValueError, match="n_latent"):
            SCCROSS(padded, n_latent=0)
        model = SCCROSS(padded, smoothing_neighbors=5)
    with pytest.raises(ValueError, match="train_size"):
        model.train(max_epochs=1, train_size=1.0)
    with pytest.raises(ValueError, match="lr"):
        model.train(max_epochs=1, lr=-1.0)
    # non-integer counts with an NB likelihood fail at construction, before training
    float_mdata = scmint.data.pad_mudata(bmmc_multiome)
    float_mdata.mod["atac"].X = float_mdata.mod["atac"].X * 0.3
    SCCROSS.setup_mudata(float_mdata, count_modalities=["rna"])
    with pytest.raises(ValueError, match="integer"):
        SCCROSS(float_mdata)


# --------------------------------------------------------------------------- model
def test_two_stage_training_and_p2_alignment(simulated):
    model, sim, rna, atac, padded = simulated
    hist = model.history
    for key in ("train_loss", "vae_loss_train", "mnn_loss_train", "kl_rna_train"):
        assert len(hist[key]) == 20, key  # both stages
    for key in (
        "latent_discriminator_loss_train",
        "data_discriminator_loss_atac_train",
        "discriminator_loss_train",
        "nll_cycle_rna_validation",
    ):
        assert len(hist[key]) == 10, key  # stage 2 only
    z_rna = model.get_latent_representation(rna, modality="rna")
    z_atac = model.get_latent_representation(atac, modality="atac")
    assert z_rna.shape == (rna.n_obs, 50)
    fos = scmint.metrics.foscttm(z_rna, z_atac)
    assert fos < 0.45, fos  # measured 0.34 (random 0.5); the MNN prior alone gives 0.17
    joint = model.get_latent_representation(modality="joint")
    assert joint.shape == (padded.n_obs, 50) and np.isfinite(joint).all()
    with pytest.raises(ValueError, match="not measured"):
        model.get_latent_representation(modality="rna")


def test_label_classifier_aligns_unpaired_multiome_without_prior():
    """P2 on the BMMC multiome starter: no shared genes, so no MNN prior; labels align."""
    from _splits import make_split, scored_arrays

    split = make_split("bmmc_multiome_starter", "P2")
    padded = scmint.data.pad_mudata(split.train)
    SCCROSS.setup_mudata(padded, batch_key="batch", labels_key="cell_type")
    fos = {}
    for weight in (0.0, 1.0):
        scvi.settings.seed = 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # no shared genes: no MNN prior
            model = SCCROSS(padded, classifier_weight=weight)
        model.train(max_epochs=30, pretrain_epochs=30, enable_progress_bar=False)
        z = {
            m: model.get_latent_representation(split.query[m], modality=m) for m in split.modalities
        }
        z_a, z_b, _, _, paired = scored_arrays(split, z)
        assert paired
        fos[weight] = scmint.metrics.foscttm(z_a, z_b)
    assert "classification_loss_train" in model.history
    assert model.module.burnin_epochs == 5  # published burn-in: 8 / 48 of 30 epochs
    # measured: 0.48 with the adversaries alone (random 0.5), 0.18 with the classifier
    assert fos[0.0] > 0.4, fos
    assert fos[1.0] < 0.3, fos


def test_prior_from_the_genes_of_a_cite_seq_panel(pbmc_mosaic, bmmc_cite):
    """Real CITE-seq: proteins enter the MNN prior on the genes that encode them."""
    padded = scmint.data.pad_mudata(pbmc_mosaic)
    SCCROSS.setup_mudata(padded, batch_key="batch")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # a prior: no warning about its absence
        warnings.filterwarnings("ignore", "var_names are not unique")
        model = SCCROSS(padded)
    info = model.prior_info_
    assert info["gene_sources"] == {
        "rna": "own features",
        "adt": "encoding genes of the proteins",
    }
    assert info["n_shared_genes"] >= 60  # 66: CD markers, PTPRC, HLA-DRA, ... among 500 genes
    both = ((padded.obs["has_rna"] > 0) & (padded.obs["has_adt"] > 0)).to_numpy()
    fos = scmint.metrics.foscttm(model.prior_["rna"][both], model.prior_["adt"][both])
    assert fos < 0.33, fos  # measured 0.25; random 0.5: the prior pairs cells across
    # the BMMC starter's 1,000 genes hold 8 of its panel's 134 genes: no prior, and the
    # warning says what was matched and what to pass
    cite = scmint.data.pad_mudata(bmmc_cite)
    SCCROSS.setup_mudata(cite)
    with pytest.warns(UserWarning, match=r"(?s)share 8 genes.*protein_genes=.*134 of 134"):
        model = SCCROSS(cite)
    assert model.prior_ is None


def test_prior_from_gene_coordinates_or_an_annotation():
    """RNA + ATAC: gene activity from the coordinates stored with the genes, or passed."""
    sim, rna, atac, activity, padded = _simulated_p2()
    assert {"chrom", "start", "end"} <= set(padded["rna"].var.columns)
    SCCROSS.setup_mudata(padded)
    auto = SCCROSS(padded)
    assert auto.prior_info_["gene_sources"]["atac"] == "gene activity (gene coordinates in rna.var)"
    # the same prior as from the user's gene-activity matrix
    given = SCCROSS(padded, gene_matrices={"atac": activity})
    np.testing.assert_allclose(auto.prior_["atac"], given.prior_["atac"], atol=1e-4)
    truth = scmint.metrics.foscttm(auto.prior_["rna"][: len(rna)], auto.prior_["atac"][len(rna) :])
    assert truth < 0.3, truth
    # without coordinates in var: a warning naming gene_annotation=, then the annotation
    bare = padded.copy()
    bare.mod["rna"].var = bare.mod["rna"].var[[]]
    SCCROSS.setup_mudata(bare)
    with pytest.warns(UserWarning, match="gene_annotation="):
        assert SCCROSS(bare).prior_ is None
    annotated = SCCROSS(bare, gene_annotation=rna.var)
    assert annotated.prior_info_["gene_sources"]["atac"] == "gene activity (gene_annotation)"
    np.testing.assert_allclose(annotated.prior_["atac"], auto.prior_["atac"], atol=1e-4)
    # gene coordinates as 10x readers store them
    tenx = bare.copy()
    var = rna.var
    tenx.mod["rna"].var["interval"] = (
        var["chrom"] + ":" + var["start"].astype(str) + "-" + var["end"].astype(str)
    ).to_numpy()
    SCCROSS.setup_mudata(tenx)
    assert SCCROSS(tenx).prior_ is not None


def _other_batch_share(z: np.ndarray, batch: np.ndarray, k: int = 15) -> float:
    from sklearn.neighbors import NearestNeighbors

    idx = NearestNeighbors(n_neighbors=k + 1).fit(z).kneighbors(z, return_distance=False)
    return float((batch[idx[:, 1:]] != batch[:, None]).mean())


def test_batch_centering_mixes_a_strong_batch_effect():
    """batch_key removes the simulator's per-gene batch shifts from the embedding."""
    sim = scmint.data.simulate_multiome(
        n_cells=600, n_genes=400, n_peaks=800, paired_fraction=1.0, batch_effect=1.0, seed=0
    )
    padded = scmint.data.pad_mudata(sim)
    SCCROSS.setup_mudata(padded, batch_key="batch")
    batch = padded.obs["batch"].astype(str).to_numpy()
    cell_type = padded.obs["cell_type"].astype(str).to_numpy()
    mixing, asw = {}, {}
    for center in (False, True):
        scvi.settings.seed = 0
        model = SCCROSS(padded, center_batches=center)
        assert (model.batch_centers_ is not None) == center
        model.train(max_epochs=15, pretrain_epochs=15, **FAST)
        for m in ("rna", "atac"):
            z = model.get_latent_representation(modality=m)
            mixing[center, m] = _other_batch_share(z, batch)
            asw[center, m] = scmint.metrics.celltype_asw(z, cell_type)
    # measured: rna 0.00 / atac 0.25 without centring, 0.47 / 0.50 with (0.5 = mixed)
    assert mixing[False, "rna"] < 0.1, mixing
    for m in ("rna", "atac"):
        assert mixing[True, m] > 0.35, mixing
        assert asw[True, m] > asw[False, m] - 0.05, asw
    assert model.batch_centers_["rna"].shape == (2, model._input_width("rna"))
    # query cells are centred on their batch's stored mean: the same embedding as
    # the registered cells, and a query without the batch column is refused
    query = padded["rna"][:50].copy()
    np.testing.assert_allclose(
        model.get_latent_representation(query, modality="rna"),
        model.get_latent_representation(modality="rna", indices=np.arange(50)),
        atol=1e-4,
    )
    no_batch = query.copy()
    no_batch.obs = no_batch.obs[[]]
    with pytest.raises(ValueError, match="no 'batch' column"):
        model.get_latent_representation(no_batch, modality="rna")


def test_training_leaves_the_callers_callbacks(simulated):
    """Both stages get their own early stopping; the callbacks passed in stay as given."""
    from lightning.pytorch.callbacks import Callback

    model, *_ = simulated
    callbacks = [Callback()]
    fresh = SCCROSS(model.adata, gene_matrices=None)
    fresh.train(
        max_epochs=2,
        pretrain_epochs=2,
        callbacks=callbacks,
        enable_progress_bar=False,
        early_stopping=True,
    )
    assert len(callbacks) == 1


def test_label_classifier_needs_labels(bmmc_multiome):
    padded = scmint.data.pad_mudata(bmmc_multiome)
    SCCROSS.setup_mudata(padded, batch_key="batch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(ValueError, match="labels_key"):
            SCCROSS(padded, classifier_weight=1.0)
        with pytest.raises(ValueError, match="classifier_weight"):
            SCCROSS(padded, classifier_weight=-1.0)


def test_burnin_noise_on_the_latent_discriminator(simulated):
    model, *_ = simulated
    module = model.module
    assert module.burnin_epochs == 0  # as the fixture asked
    assert any(k.startswith("lr") for k in model.history)  # LR on plateau, as published
    module.burnin_epochs = 2  # the default for 10 stage-2 epochs: 8 / 48, rounded up
    dev = model.device  # the GPU where the model trained on one
    z = {"rna": torch.randn(40, 50, device=dev), "atac": torch.randn(30, 50, device=dev) + 1.0}
    x = {"rna": torch.rand(40, 400, device=dev), "atac": torch.rand(30, 800, device=dev)}
    args = (z, x, x, ["rna", "atac"])
    module.eval()
    try:
        module.set_epoch(0)  # start of the burn-in: noisy, so two calls differ
        assert module.anneal == 1.0
        first = module._adversarial(*args)[1]["latent_discriminator_loss"]
        second = module._adversarial(*args)[1]["latent_discriminator_loss"]
        assert not torch.isclose(first, second)
        module.set_epoch(1)
        assert module.anneal == 0.5
        module.set_epoch(2)  # burn-in over: no noise, deterministic
        assert module.anneal == 0.0
        first = module._adversarial(*args)[1]["latent_discriminator_loss"]
        torch.testing.assert_close(
            first, module._adversarial(*args)[1]["latent_discriminator_loss"]
        )
        module.stage = 1  # no noise in stage 1
        module.set_epoch(0)
        assert module.anneal == 0.0
    finally:
        module.stage = 2
        module.burnin_epochs = 0
        module.set_epoch(10)


def test_translation_beats_mean_profile(bmmc_heldout):
    model, train, test = bmmc_heldout

    def lognorm(x):
        x = np.asarray(x.toarray() if sparse.issparse(x) else x, dtype=np.float64)
        return np.log1p(x / np.maximum(x.sum(1, keepdims=True), 1) * 1e4)

    def cell_corr(a, b):
        a = a - a.mean(1, keepdims=True)
        b = b - b.mean(1, keepdims=True)
        return float(np.mean((a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1) + 1e-12)))

    for source, target in (("rna", "atac"), ("atac", "rna")):
        pred = model.translate(test[source], source=source, target=target)
        assert pred.shape == (test.n_obs, train[target].n_vars)
        assert list(pred.var_names) == list(train[target].var_names)
        assert (pred.X >= 0).all() and "X_sccross" in pred.obsm
        measured = lognorm(test[target][pred.obs_names].X)
        # the mean profile, in the same form as the model's output (a mean, then log1p)
        mean_profile = np.expm1(lognorm(train[target].X)).mean(0)
        baseline = np.broadcast_to(np.log1p(mean_profile), measured.shape)
        r_model = cell_corr(lognorm(pred.X), measured)
        r_base = cell_corr(baseline, measured)
        # measured: rna->atac 0.350 vs 0.327, atac->rna 0.586 vs 0.565
        assert r_model > r_base, (source, target, r_model, r_base)
    samples = model.translate(test["rna"], source="rna", target="atac", sample=True, library=500)
    assert np.allclose(samples.X, np.round(samples.X))
    same = model.translate(test["rna"], source="rna", target="rna", batch=1)
    assert same.shape == test["rna"].shape
    with pytest.raises(KeyError, match="batch"):
        model.translate(test["rna"], source="rna", target="atac", batch="nope")
    with pytest.raises(KeyError, match="Unknown modality"):
        model.translate(test["rna"], source="rna", target="adt")


def test_simulated_cells_land_near_their_type(simulated):
    model, sim, rna, atac, padded = simulated
    out, fractions = simulate_and_place(model, "cell_type", "type1", n_cells=80)
    # chance 0.25. After 10 epochs the GAN's run-to-run spread is wide: over fixture
    # seeds 0-3 the fractions (rna, atac) were (0.89, 0.95), (1.0, 1.0), (1.0, 0.73),
    # (1.0, 1.0), and a seed with one modality near 0.5 and the other at 1.0 occurs.
    assert np.mean(list(fractions.values())) > 0.7, fractions
    assert min(fractions.values()) > 0.4, fractions
    assert sparse.issparse(out["rna"].X)
    assert np.allclose(out["rna"].X.data, np.round(out["rna"].X.data))  # sampled counts
    assert out.uns["sccross_simulation"]["sample"] is True
    n_type = int((padded.obs["cell_type"] == "type1").sum())
    assert model.simulate("cell_type", "type1", fold=0.5)["rna"].n_obs == round(0.5 * n_type)
    means = model.simulate("cell_type", "type1", n_cells=20, sample=False, library=500.0)
    np.testing.assert_allclose(means["rna"].X.sum(axis=1), 500.0, rtol=1e-3)
    again = model.simulate("cell_type", "type1", n_cells=80, seed=0)
    assert (again["rna"].X != out["rna"].X).nnz == 0  # a seed repeats the cells
    with pytest.raises(ValueError, match="No registered cell"):
        model.simulate("cell_type", "nope")
    with pytest.raises(KeyError, match="column"):
        model.simulate("nope", "type1")
    with pytest.raises(TypeError, match="does not take"):
        model.simulate("cell_type", "type1", scale="normalized")
    with pytest.raises(ValueError, match="n_cells"):
        model.simulate("cell_type", "type1", n_cells=0)


def test_normalized_expression(simulated):
    model, sim, rna, atac, padded = simulated
    rows = np.flatnonzero(padded.obs["has_rna"].to_numpy() > 0)[:40]
    freq = model.get_normalized_expression(modality="rna", indices=rows)
    assert list(freq.columns) == list(padded["rna"].var_names)
    assert list(freq.index) == list(padded.obs_names[rows])
    np.testing.assert_allclose(freq.to_numpy().sum(axis=1), 1.0, rtol=1e-4)  # frequencies
    per_10k = model.get_normalized_expression(
        modality="rna", indices=rows, library_size=1e4, return_numpy=True
    )
    # the likelihood adds EPS = 1e-7 to its mean, so library 1e4 is 1e4 x (freq - EPS) + EPS
    np.testing.assert_allclose(per_10k, 1e4 * freq.to_numpy(), rtol=1e-5, atol=2e-3)
    batches = [str(b) for b in model.adata_manager.get_state_registry("batch").categorical_mapping]
    one, two = (
        model.get_normalized_expression(
            modality="rna", indices=rows, transform_batch=b, return_numpy=True
        )
        for b in batches[:2]
    )
    both = model.get_normalized_expression(
        modality="rna", indices=rows, transform_batch=batches[:2], return_numpy=True
    )
    np.testing.assert_allclose(both, (one + two) / 2, rtol=1e-5, atol=1e-9)
    assert not np.allclose(one, two)  # batch-specific decoder parameters
    with pytest.raises(ValueError, match="library_size"):
        model.get_normalized_expression(modality="rna", library_size=0)
    with pytest.raises(KeyError, match="Unknown batch"):
        model.get_normalized_expression(modality="rna", transform_batch="nope")


def test_elbo_and_reconstruction_error(simulated):
    model, sim, rna, atac, padded = simulated
    error = model.get_reconstruction_error(return_mean=False)
    has_rna = padded.obs["has_rna"].to_numpy() > 0
    assert np.isfinite(error["reconstruction_loss_rna"][has_rna]).all()
    assert np.isnan(error["reconstruction_loss_rna"][~has_rna]).all()  # P2: one modality each
    elbo = model.get_elbo(return_mean=False)
    assert elbo.shape == (padded.n_obs,) and np.isfinite(elbo).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # no prior; "not trained"
        untrained = SCCROSS(padded)
        assert model.get_elbo() > untrained.get_elbo() + 10


def test_perturbation_and_screen_recover_de_genes(simulated):
    model, sim, rna, atac, padded = simulated
    truth = sim.uns["simulation"]
    state, reference = "type0", "type1"
    up_ref = list(truth["de_genes"][reference][:8])
    up_state = list(truth["de_genes"][state][:8])
    de = set().union(*truth["de_genes"].values(), *truth["de_genes_down"].values())
    background = [g for g in rna.var_names if g not in de][:16]
    rows = np.flatnonzero(padded.obs["has_rna"].to_numpy() > 0)[:50]
    shift = model.perturb(modality="rna", features=up_ref, factor=1.5, indices=rows)
    assert shift.shape == (50, 50) and (shift.obs["shift_norm"] > 0).all()
    assert "X_sccross_perturbed" in shift.obsm
    same = model.perturb(modality="rna", features=up_ref, factor=1.0, indices=rows)
    assert np.abs(same.X).max() < 1e-5  # factor 1: no shift (same graph, stored transforms)
    cross = model.perturb(modality="rna", features=up_ref, target="atac", indices=rows)
    assert cross.shape == (50, atac.n_vars) and "translated_perturbed" in cross.layers

    result = scmint.tl.perturbation_screen(
        model, "rna", up_ref + up_state + background, "cell_type", state, reference
    )
    assert list(result["rank"]) == list(range(1, len(result) + 1))
    assert {"score_1.5", "score_0.5", "distance_1.5", "best_factor"} <= set(result.columns)
    top = set(result.index[:8])
    hits = len(top & set(up_ref + up_state))
    # DE genes are 16 of the 32 screened: chance puts 4 in the top 8. Measured on the
    # 2026-12-07 package set (scvi.settings.seed 0-3 of this fixture): 5, 6, 6, 8 (an
    # earlier set gave 8 at seed 0); the bound is above chance, not at the best seed
    assert hits >= 5, result.head(10)
    assert result.loc[up_ref, "score_1.5"].mean() > result.loc[background, "score_1.5"].mean()
    import matplotlib.pyplot as plt

    ax = scmint.pl.perturbation_screen(result, n_top=10, show=False)
    assert isinstance(ax, plt.Axes) and len(ax.get_yticklabels()) == 10
    plt.close(ax.figure)
    with pytest.raises(KeyError, match="features"):
        model.perturb(modality="rna", features=["NOPE"], indices=rows)
    with pytest.raises(ValueError, match="factor"):
        model.perturb(modality="rna", features=up_ref, factor=-1.0, indices=rows)


def test_save_load_roundtrip(simulated, tmp_path):
    model, sim, rna, atac, padded = simulated
    z = model.get_latent_representation(rna, modality="rna")
    x = model.translate(rna[:20], source="rna", target="atac").X
    model.save(tmp_path / "sccross", overwrite=True, save_anndata=False)
    loaded = SCCROSS.load(tmp_path / "sccross", adata=padded)
    np.testing.assert_allclose(loaded.get_latent_representation(rna, modality="rna"), z, atol=1e-5)
    np.testing.assert_allclose(
        loaded.translate(rna[:20], source="rna", target="atac").X, x, rtol=1e-4, atol=1e-4
    )
    assert loaded.prior_ is not None and loaded.is_trained_
    assert isinstance(loaded.transforms_["atac"], scmint.pp.TfidfLSI)
    for m in ("rna", "atac"):  # the batch centres are the saved ones
        np.testing.assert_array_equal(loaded.batch_centers_[m], model.batch_centers_[m])
    # a model saved before batch centring existed loads without it
    path = tmp_path / "sccross" / "model.pt"
    saved = torch.load(path, weights_only=False)
    del saved["attr_dict"]["batch_centers_"]
    del saved["attr_dict"]["init_params_"]["non_kwargs"]["center_batches"]
    torch.save(saved, path)
    old = SCCROSS.load(tmp_path / "sccross", adata=padded)
    assert old.batch_centers_ is None and not old._encodes_batch
    assert np.isfinite(old.get_latent_representation(rna, modality="rna")).all()


def test_query_forms(simulated):
    model, sim, rna, atac, padded = simulated
    z_ad = model.get_latent_representation(atac[:30], modality="atac")
    z_md = model.get_latent_representation(md.MuData({"atac": atac[:30].copy()}), modality="atac")
    np.testing.assert_allclose(z_ad, z_md, atol=1e-5)
    shuffled = atac[:30, ::-1].copy()  # features matched by name
    np.testing.assert_allclose(
        model.get_latent_representation(shuffled, modality="atac"), z_ad, atol=1e-4
    )


def test_gene_set_scores_extend_the_encoder_input(tmp_path):
    sim, rna, atac, activity, padded = _simulated_p2(seed=2)
    truth = sim.uns["simulation"]
    sets = {f"up_{t}": list(g[:10]) for t, g in truth["de_genes"].items()}
    sets.update({f"down_{t}": list(g[:10]) for t, g in truth["de_genes_down"].items()})
    SCCROSS.setup_mudata(padded, batch_key="batch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(KeyError, match="gene_sets"):
            SCCROSS(padded, gene_sets={"adt": sets})
    model = SCCROSS(padded, gene_matrices={"atac": activity}, gene_sets={"rna": sets})
    scores = model.gene_set_transforms_["rna"]
    assert isinstance(scores, scmint.model.sccross.GeneSetScorePCA) and scores.n_output_ == 5
    width = model.transforms_["rna"].n_output_ + 5
    assert model.module.n_input[model.module.modalities.index("rna")] == width
    inputs = model._encoder_inputs(rna.X[:40], "rna")
    assert inputs.shape == (40, width) and "atac" not in model.gene_set_transforms_
    model.train(max_epochs=2, pretrain_epochs=2, **FAST)
    z = model.get_latent_representation(rna, modality="rna")
    model.save(tmp_path / "gs", overwrite=True, save_anndata=False)
    loaded = SCCROSS.load(tmp_path / "gs", adata=padded)
    assert list(loaded.gene_set_transforms_["rna"].set_names_) == list(sets)
    np.testing.assert_allclose(loaded.get_latent_representation(rna, modality="rna"), z, atol=1e-5)
