"""The scglue CLUE peer adapter (skipped when scglue is not installed)."""

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("scglue")

# the harness is the package benchmarks/harness of the repository, not installed
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from harness import make_split, scored_arrays  # noqa: E402
from harness._scglue_clue import _epoch_schedule, fit_scglue_clue  # noqa: E402
from scmint.metrics import foscttm  # noqa: E402


@pytest.fixture(scope="module")
def cite_p1():
    return make_split("bmmc_cite_starter", "P1")


def test_scglue_clue_p1_aligns_query_cells(cite_p1):
    result = fit_scglue_clue(cite_p1, max_epochs=6, seed=0, use_gpu=False)
    for m in cite_p1.modalities:
        z = result.embeddings[m]
        # K = 2 blocks of latent_dim = 50, L2-normalised rows
        assert z.shape == (cite_p1.query[m].n_obs, 100)
        assert np.isfinite(z).all()
        np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, rtol=1e-5)
    assert 1 <= result.n_epochs <= 6
    assert result.train_time_s > 0 and result.inference_time_s > 0
    params = result.params
    assert params["prob_models"] == {"rna": "NB", "adt": "NB"}
    assert params["n_paired_train_cells"] == cite_p1.train.n_obs
    assert params["max_epochs"] == 6 and params["align_burnin"] < 6
    # the FOSCTTM of score_split (rows put into true pairs by scored_arrays), without its
    # slower scib metrics: random embeddings give 0.5, 6 epochs about 0.12 on this split
    z_a, z_b, _, _, paired = scored_arrays(cite_p1, result.embeddings)
    assert paired
    assert foscttm(z_a, z_b) < 0.3


def test_scglue_clue_is_deterministic(cite_p1, one_thread):
    runs = [fit_scglue_clue(cite_p1, max_epochs=2, seed=3, use_gpu=False) for _ in range(2)]
    other = fit_scglue_clue(cite_p1, max_epochs=2, seed=4, use_gpu=False)  # another seed
    for m in cite_p1.modalities:
        # same seed on one thread: the same embedding up to float rounding (with several
        # threads the summation order varies, which two epochs amplify to ~5e-3); another
        # seed moves the embedding by ~1e-1
        same = np.abs(runs[0].embeddings[m] - runs[1].embeddings[m]).max()
        different = np.abs(other.embeddings[m] - runs[0].embeddings[m]).max()
        assert same < 1e-5
        assert different > 1e-2


def test_scglue_clue_p3_mosaic_embeds_single_modality_cells():
    split = make_split("pbmc_mosaic", "P3")
    result = fit_scglue_clue(split, max_epochs=2, seed=0, use_gpu=False, normalize=False)
    for m in split.modalities:
        assert result.embeddings[m].shape == (split.query[m].n_obs, 100)
        assert np.isfinite(result.embeddings[m]).all()
    # paired cells are matched by obs_names; the single-modality ones stay unpaired
    assert result.params["n_train_cells"] == 1600
    assert result.params["n_paired_train_cells"] == 800
    assert result.params["use_batch"] == {"rna": True, "adt": True}


def test_scglue_clue_rejects_unknown_kwargs(cite_p1):
    with pytest.raises(TypeError, match="not_an_option"):
        fit_scglue_clue(cite_p1, max_epochs=1, not_an_option=1)


def test_epoch_schedule_matches_scglue_auto(cite_p1, monkeypatch):
    """The recorded schedule for max_epochs=None is what scglue's AUTO rule picks."""
    import scglue
    from scglue.models import scclue

    seen = {}

    def fake_fit(self, data, **kwargs):  # stop before training, keep scglue's choices
        seen.update(kwargs)

    monkeypatch.setattr(scclue.SCCLUETrainer, "fit", fake_fit)
    adatas = {}
    for m in cite_p1.modalities:
        adatas[m] = cite_p1.train.mod[m].copy()
        scglue.models.configure_dataset(
            adatas[m], "NB", use_highly_variable=False, use_obs_names=True
        )
    model = scglue.models.SCCLUEModel(adatas)
    model.compile()
    model.fit(adatas)
    keys = ("align_burnin", "max_epochs", "patience", "reduce_lr_patience")
    ours = _epoch_schedule(scglue, None, cite_p1.train.n_obs, 0.1, 128, 2e-3)
    assert {k: seen[k] for k in keys} == ours
    assert ours["max_epochs"] > 1000  # 480 cells: scglue's step budget means many epochs


def test_capped_epoch_schedule_keeps_scglue_ratios():
    import scglue

    capped = _epoch_schedule(scglue, 72, n_cells=1600, val_split=0.1, batch_size=128, lr=2e-3)
    assert capped == {"align_burnin": 12, "max_epochs": 72, "patience": 9, "reduce_lr_patience": 3}
    tiny = _epoch_schedule(scglue, 2, n_cells=1600, val_split=0.1, batch_size=128, lr=2e-3)
    assert tiny["align_burnin"] == 1 and tiny["reduce_lr_patience"] < tiny["patience"]
