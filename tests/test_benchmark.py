"""Fast tests of the benchmark harness (benchmarks/harness) and the CCA baseline."""

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

# the harness is the package benchmarks/harness of the repository, not installed
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from harness import (  # noqa: E402
    FIELDS,
    append_row,
    dataset_info,
    dataset_path,
    get_method,
    make_split,
    p1_indices,
    render,
    run_benchmark,
    run_method,
    scored_arrays,
)


def _need(name: str) -> None:
    if not dataset_path(name).exists():
        pytest.skip(f"{dataset_path(name)} not found")


@pytest.fixture(scope="module")
def cite_p1():
    _need("bmmc_cite_starter")
    return make_split("bmmc_cite_starter", "P1")


def _dense(x):
    return x.toarray() if sparse.issparse(x) else np.asarray(x)


def test_p1_split(cite_p1, bmmc_cite):
    split = cite_p1
    n = bmmc_cite.n_obs
    perm = np.random.default_rng(0).permutation(n)
    ref, qry = p1_indices(n)
    assert len(ref) == int(0.8 * n) and len(ref) + len(qry) == n
    np.testing.assert_array_equal(ref, perm[: len(ref)])
    np.testing.assert_array_equal(qry, perm[len(ref) :])
    names = bmmc_cite.obs_names
    assert list(split.train.obs_names) == list(names[ref])
    for m in split.modalities:
        assert list(split.query[m].obs_names) == list(names[qry])
        assert not set(split.query[m].obs_names) & set(split.train.obs_names)
    np.testing.assert_array_equal(split.pairs[0], split.pairs[1])


def test_p2_split_hides_pairing_but_keeps_it_for_scoring(bmmc_multiome):
    _need("bmmc_multiome_starter")
    split = make_split("bmmc_multiome_starter", "P2")
    a, b = split.modalities
    qa, qb = split.query[a], split.query[b]
    assert not set(qa.obs_names) & set(qb.obs_names)
    assert not set(bmmc_multiome.obs_names) & (set(qa.obs_names) | set(qb.obs_names))
    assert split.train.mod[a].n_obs == split.train.mod[b].n_obs == bmmc_multiome.n_obs
    assert split.train.n_obs == 2 * bmmc_multiome.n_obs  # two unpaired cells per cell
    ra, rb = split.pairs
    assert not np.array_equal(rb, np.arange(len(rb)))  # row order does not give it away
    # the kept pairing maps both modalities back to the same original cells
    np.testing.assert_array_equal(_dense(qa.X[ra]), _dense(bmmc_multiome.mod[a].X))
    np.testing.assert_array_equal(_dense(qb.X[rb]), _dense(bmmc_multiome.mod[b].X))
    # scoring puts embeddings into true pairs: here "embeddings" are the cells' own counts
    z_a, z_b, lab_a, lab_b, paired = scored_arrays(split, {a: _dense(qa.X), b: _dense(qb.X)})
    assert paired
    np.testing.assert_array_equal(z_a, _dense(bmmc_multiome.mod[a].X))
    np.testing.assert_array_equal(z_b, _dense(bmmc_multiome.mod[b].X))
    np.testing.assert_array_equal(lab_a, lab_b)


def test_p3_split(pbmc_mosaic):
    _need("pbmc_mosaic")
    split = make_split("pbmc_mosaic", "P3")
    a, b = split.modalities
    assert split.pairs is None
    assert split.query[a].n_obs == 400 and split.query[b].n_obs == 400
    assert not set(split.query[a].obs_names) & set(pbmc_mosaic.mod[b].obs_names)
    assert not set(split.query[b].obs_names) & set(pbmc_mosaic.mod[a].obs_names)


def test_cca_p1_aligns_query_cells(cite_p1):
    result = run_method("cca", cite_p1)
    a, b = cite_p1.modalities
    assert result.embeddings[a].shape == (cite_p1.query[a].n_obs, 20)
    from scmint.metrics import foscttm

    # query rows are the same cells in both modalities (P1 pairs are the identity)
    assert foscttm(result.embeddings[a], result.embeddings[b]) < 0.3  # random is 0.5
    assert result.n_epochs is None


def test_linear_cca_api(cite_p1):
    from scmint.tl._cca import LinearCCA, infer_kind

    assert infer_kind("atac") == "atac" and infer_kind("peaks") == "atac"
    assert infer_kind("adt") == "protein" and infer_kind("rna") == "rna"
    cca = LinearCCA(n_components=5, n_comps=15).fit(cite_p1.train)
    assert cca.kinds_ == {"rna": "rna", "adt": "protein"}
    z_b = cca.transform(cite_p1.query["adt"], modality="b")
    np.testing.assert_allclose(z_b, cca.transform(cite_p1.query["adt"], modality="adt"))
    assert z_b.shape == (cite_p1.query["adt"].n_obs, 5) and z_b.dtype == np.float32
    assert np.all(np.diff(cca.correlations_) <= 1e-6) and cca.correlations_[0] > 0.5
    with pytest.raises(ValueError, match="Unknown modality"):
        cca.transform(cite_p1.query["adt"], modality="atac")


def test_cca_refuses_p2():
    _need("bmmc_multiome_starter")
    split = make_split("bmmc_multiome_starter", "P2")
    with pytest.raises(ValueError, match="pairing"):
        run_method("cca", split)
    with pytest.raises(ValueError, match="kinds"):
        get_method("totalvi").check(make_split("bmmc_multiome_starter", "P1"))


def test_runner_appends_a_row(tmp_path):
    _need("bmmc_cite_starter")
    results = tmp_path / "results.csv"
    row = run_benchmark("cca", "bmmc_cite_starter", "P1", results=results)
    df = pd.read_csv(results)
    assert len(df) == 1 and list(df.columns) == list(FIELDS)
    got = df.iloc[0]
    assert got["method"] == "cca" and got["protocol"] == "P1"
    assert got["n_cells"] == 600 and got["n_train"] == 480 and got["n_query"] == 240
    assert 0 <= got["foscttm"] < 0.3
    assert got["peak_memory_mb"] > 50 and got["train_time_s"] > 0
    assert got["device"].startswith(("cpu", "cuda"))
    assert json.loads(got["params"])["n_components"] == 20
    # CCA does not translate: the translation columns are there, and empty
    assert np.isnan(got["translation_cell_corr_a_to_b"]) and np.isnan(got["translation_time_s"])
    assert row["foscttm"] == pytest.approx(got["foscttm"])


def _row(method, dataset="bmmc_cite_starter", foscttm=0.2, t=10.0, stamp="2026-01-01T00:00:00Z"):
    return {
        "timestamp": stamp,
        "method": method,
        "dataset": dataset,
        "protocol": "P1",
        "modalities": "rna+adt",
        "n_cells": 600,
        "n_train": 480,
        "n_query": 240,
        "foscttm": foscttm,
        "matching_score": 0.01,
        "recall_at_10": 0.3,
        "label_transfer_a_to_b": 0.5,
        "label_transfer_b_to_a": 0.4,
        "celltype_asw": 0.5,
        "modality_asw": 0.8,
        "graph_connectivity": 0.6,
        "train_time_s": t,
        "n_epochs": 5,
        "time_per_epoch_s": t / 5,
        "inference_time_s": 0.1,
        "peak_memory_mb": 800.0,
        "device": "cpu",
        "git_commit": "abc",
        "params": json.dumps({"max_epochs": 5}),
    }


def test_render_markdown_table(tmp_path):
    csv = tmp_path / "results.csv"
    append_row(_row("totalvi", foscttm=0.4, stamp="2026-01-01T00:00:00Z"), csv)
    append_row(_row("totalvi", foscttm=0.3, stamp="2026-01-02T00:00:00Z"), csv)  # latest
    append_row(_row("newmodel", foscttm=0.15, t=5.0) | {"extra_col": 1}, csv)
    assert "extra_col" in pd.read_csv(csv).columns
    out = tmp_path / "BENCHMARKS.md"
    text = render(csv, out, figures_dir=tmp_path / "figures")
    assert "## bmmc_cite_starter — P1" in text
    assert "| method | FOSCTTM ↓ |" in text
    assert "| totalvi | 0.300 |" in text and "| totalvi | 0.400 |" not in text
    # newmodel is no registered peer: ratio row newmodel / totalvi (FOSCTTM 0.15 / 0.3,
    # matching and label transfer equal, time 5 / 10)
    assert "| bmmc_cite_starter P1 | newmodel | totalvi | 0.500 | 1.000 | 1.000 | 0.500 |" in text
    assert (tmp_path / "figures" / "foscttm.png").stat().st_size > 0
    # hand-written notes survive a re-render
    out.write_text(out.read_text().replace("(none)", "my note"))
    assert "my note" in render(csv, out, figures_dir=None)
    assert "## Ablations" not in text


def test_render_ablation_section(tmp_path):
    csv, abl = tmp_path / "results.csv", tmp_path / "ablations.csv"
    append_row(_row("newmodel", foscttm=0.15), csv)
    full = _row("newmodel", foscttm=0.10, stamp="2026-01-01T00:00:00Z")
    off = _row("newmodel", foscttm=0.30) | {"params": json.dumps({"cycle_weight": 0.0})}
    append_row({"variant": "full"} | full, abl)
    append_row({"variant": "full"} | full | {"foscttm": 0.12}, abl)  # latest of "full"
    append_row({"variant": "no cycle"} | off, abl)
    text = render(csv, tmp_path / "B.md", figures_dir=None, ablations=abl)
    assert "### newmodel on bmmc_cite_starter — P1" in text
    assert "| full | `{}` | 1 | 0.120 |" in text and "| full | `{}` | 1 | 0.100 |" not in text
    assert '| no cycle | `{"cycle_weight": 0.0}` | 1 | 0.300 |' in text
    # another seed of a variant: mean ± sd over the seeds' latest runs
    seeded = {"params": json.dumps({"cycle_weight": 0.0, "seed": 1}), "foscttm": 0.40}
    append_row({"variant": "no cycle"} | off | seeded, abl)
    text = render(csv, tmp_path / "B.md", figures_dir=None, ablations=abl)
    assert '| no cycle | `{"cycle_weight": 0.0}` | 2 | 0.350 ± 0.071 |' in text
    assert "| full | `{}` | 1 | 0.120 |" in text


def test_data_dir_env_override(monkeypatch, tmp_path):
    from harness import data_dir, load_dataset

    monkeypatch.setenv("SCMINT_DATA_DIR", str(tmp_path))
    assert data_dir() == tmp_path.resolve()
    with pytest.raises(FileNotFoundError, match="SCMINT_DATA_DIR"):
        load_dataset("bmmc_cite_starter")


# --------------------------------------------------------------------------- translation


def _oracle(split, shuffle=False, space="counts"):
    """A translator that returns each cell's measured partner profile (test only)."""
    from scmint.metrics import log_normalize

    a, _ = split.modalities
    rows_a, rows_b = split.pairs

    def translate(source, target):
        src_rows, tgt_rows = (rows_a, rows_b) if source == a else (rows_b, rows_a)
        partner = np.empty(split.query[source].n_obs, dtype=int)
        partner[src_rows] = tgt_rows  # row of `target` paired with each `source` row
        if shuffle:
            partner = np.random.default_rng(0).permutation(partner)
        x = _dense(split.query[target].X)[partner]
        return (log_normalize(x) if space == "lognorm" else x), space

    return translate


@pytest.mark.parametrize("space", ["counts", "lognorm"])
def test_score_translation_oracle_is_one_and_beats_baseline(cite_p1, space):
    from harness import TRANSLATION_KEYS, score_translation

    scores, seconds = score_translation(cite_p1, _oracle(cite_p1, space=space))
    assert set(scores) == set(TRANSLATION_KEYS) and seconds >= 0
    for tag in ("a_to_b", "b_to_a"):
        assert scores[f"translation_feature_corr_{tag}"] == pytest.approx(1.0)
        assert scores[f"translation_cell_corr_{tag}"] == pytest.approx(1.0)
        assert 0.0 < scores[f"translation_cell_corr_baseline_{tag}"] < 0.99


def test_score_translation_shuffled_is_near_zero_per_feature(cite_p1):
    from harness import score_translation

    scores, _ = score_translation(cite_p1, _oracle(cite_p1, shuffle=True))
    for tag in ("a_to_b", "b_to_a"):
        assert abs(scores[f"translation_feature_corr_{tag}"]) < 0.05
        # a random other cell is no better than the mean profile
        assert (
            scores[f"translation_cell_corr_{tag}"] < scores[f"translation_cell_corr_baseline_{tag}"]
        )


def test_knn_baseline_beats_the_mean_profile_on_cite_seq(cite_p1, tmp_path):
    """The kNN baseline on real CITE-seq: above the mean profile per cell, correlated per
    protein / gene; refused without paired training cells; shown in the table."""
    from harness import knn_translation_baseline, score_translation

    knn = knn_translation_baseline(cite_p1, n_neighbors=10)
    mean, _ = score_translation(cite_p1, _oracle(cite_p1, shuffle=True))  # for its baseline
    for tag in ("a_to_b", "b_to_a"):
        assert knn[f"translation_cell_corr_{tag}"] > mean[f"translation_cell_corr_baseline_{tag}"]
        assert knn[f"translation_feature_corr_{tag}"] > 0.2
    _need("bmmc_multiome_starter")
    with pytest.raises(ValueError, match="P1"):
        knn_translation_baseline(make_split("bmmc_multiome_starter", "P2"))

    csv = tmp_path / "results.csv"
    append_row(_row("totalvi") | {"translation_cell_corr_a_to_b": 0.5}, csv)
    baselines = tmp_path / "baselines.csv"
    pd.DataFrame(
        [{"dataset": "bmmc_cite_starter", "protocol": "P1", "baseline": "knn_10", **knn}]
    ).to_csv(baselines, index=False)
    text = render(csv, tmp_path / "B.md", figures_dir=None, baselines=baselines)
    row = f"| *knn_10 baseline* | {knn['translation_feature_corr_a_to_b']:.3f} |"
    assert row in text


def test_score_translation_follows_p2_pairs():
    """P2 shuffles modality b: the scorer must compare each prediction with its true pair."""
    from harness import score_translation

    _need("bmmc_multiome_starter")
    split = make_split("bmmc_multiome_starter", "P2")
    assert not np.array_equal(split.pairs[0], split.pairs[1])
    scores, _ = score_translation(split, _oracle(split))
    assert scores["translation_cell_corr_a_to_b"] == pytest.approx(1.0)
    assert scores["translation_feature_corr_b_to_a"] == pytest.approx(1.0)


def test_score_translation_missing_direction_and_no_translator(cite_p1):
    from harness import TRANSLATION_KEYS, score_translation

    oracle = _oracle(cite_p1)
    a, _ = cite_p1.modalities

    def one_way(source, target):
        return oracle(source, target) if source == a else None

    scores, _ = score_translation(cite_p1, one_way)
    assert scores["translation_cell_corr_a_to_b"] == pytest.approx(1.0)
    assert np.isnan(scores["translation_cell_corr_b_to_a"])
    assert np.isnan(scores["translation_cell_corr_baseline_b_to_a"])
    scores, seconds = score_translation(cite_p1, None)
    assert all(np.isnan(scores[k]) for k in TRANSLATION_KEYS) and np.isnan(seconds)
    with pytest.raises(ValueError, match="expected"):
        score_translation(cite_p1, lambda s, t: (np.zeros((3, 3)), "counts"))


def test_sccross_translates_query_cells(cite_p1):
    from harness import score_translation

    result = run_method("sccross", cite_p1, max_epochs=2)
    a, b = cite_p1.modalities
    pred, space = result.translate(a, b)
    assert space == "counts" and pred.shape == (cite_p1.query[a].n_obs, cite_p1.query[b].n_vars)
    assert (np.asarray(pred) >= 0).all()
    scores, _ = score_translation(cite_p1, result.translate)
    assert all(-1 <= v <= 1 for v in scores.values())
    assert result.params["gene_prior"] is None  # RNA + protein: no gene-peak links


@pytest.mark.parametrize(
    ("method", "dataset"), [("totalvi", "bmmc_cite_starter"), ("multivi", "bmmc_multiome_starter")]
)
def test_scvi_peers_translate(method, dataset):
    from harness import score_translation

    _need(dataset)
    split = make_split(dataset, "P1")
    result = run_method(method, split, max_epochs=2)
    scores, _ = score_translation(split, result.translate)
    for tag in ("a_to_b", "b_to_a"):
        assert -1 <= scores[f"translation_cell_corr_{tag}"] <= 1
        assert -1 <= scores[f"translation_feature_corr_{tag}"] <= 1


def test_sccross_gene_prior_from_links(snare, bmmc_multiome):
    from harness._methods import sccross_gene_matrices

    _need("snare_mouse_cortex")
    split = make_split("snare_mouse_cortex", "P1")
    assert split.extra["gene_peak_links"].endswith("gene_peak_prior.npz")
    gm = sccross_gene_matrices(split)
    activity = gm["atac"]
    assert list(activity.obs_names) == list(split.train.mod["atac"].obs_names)
    assert list(activity.var_names) == list(split.train.mod["rna"].var_names)
    links = sparse.load_npz(split.extra["gene_peak_links"])
    expected = (split.train.mod["atac"].X[:5] @ links.T).toarray()
    np.testing.assert_allclose(_dense(activity.X[:5]), expected)
    assert sccross_gene_matrices(make_split("bmmc_multiome_starter", "P1")) is None


def test_old_rows_without_translation_render(tmp_path):
    csv = tmp_path / "results.csv"
    pd.DataFrame([_row("totalvi")]).to_csv(csv, index=False)  # an old row: no new columns
    new = _row("newmodel", stamp="2026-01-02T00:00:00Z") | {
        "translation_feature_corr_a_to_b": 0.41,
        "translation_cell_corr_a_to_b": 0.82,
        "translation_cell_corr_baseline_a_to_b": 0.77,
        "translation_time_s": 1.5,
    }
    append_row(new, csv)
    df = pd.read_csv(csv)
    assert set(FIELDS) <= set(df.columns)
    old = df[df["method"] == "totalvi"].iloc[0]
    assert np.isnan(old["translation_cell_corr_a_to_b"]) and np.isnan(old["translation_time_s"])
    text = render(csv, tmp_path / "B.md", figures_dir=tmp_path / "figures")
    assert (tmp_path / "figures" / "translation.png").stat().st_size > 0
    assert "rna→adt per-feature r ↑" in text and "adt→rna per-cell r ↑" in text
    assert "| newmodel | 0.410 | 0.820 | 0.770 | – | – | – | 1.500 |" in text
    table = text.split("Translation (Pearson r")[1].split("\n\n")[1]
    assert "totalvi" not in table  # no translation: not in the translation table


@pytest.mark.parametrize(("method", "space"), [("conaae", "lognorm"), ("minnet", "counts")])
def test_scmint_models_translate(cite_p1, method, space):
    from harness import score_translation

    train = {"early_stopping": False, "enable_progress_bar": False}
    result = run_method(method, cite_p1, max_epochs=2, train_kwargs=train)
    a, b = cite_p1.modalities
    pred, got = result.translate(a, b)
    assert got == space and pred.shape == (cite_p1.query[a].n_obs, cite_p1.query[b].n_vars)
    scores, _ = score_translation(cite_p1, result.translate)
    assert all(-1 <= v <= 1 for v in scores.values())


def test_conaae_clr_target_is_not_scored(cite_p1):
    """CONAAE's CLR output is not log1p(x / rowsum * 1e4): that direction is left out."""
    from harness import score_translation

    train = {"early_stopping": False, "enable_progress_bar": False}
    result = run_method(
        "conaae", cite_p1, max_epochs=1, train_kwargs=train, normalization={"adt": "clr"}
    )
    scores, _ = score_translation(cite_p1, result.translate)
    assert np.isnan(scores["translation_cell_corr_a_to_b"])  # rna -> adt (CLR)
    assert np.isfinite(scores["translation_cell_corr_b_to_a"])  # adt -> rna (log)


def test_conaae_registration(_bmmc_cite):
    method = get_method("conaae")
    assert method.protocols == ("P1", "P2", "P3") and not method.peer
    assert "anchor" in method.notes
    # P1: paired reference, so the anchor loss is on; query cells one modality at a time
    name = "bmmc_cite_starter"
    split = make_split(_bmmc_cite.copy(), "P1", info={**dataset_info(name), "name": name})
    result = run_method(
        "conaae",
        split,
        max_epochs=2,
        train_kwargs={"early_stopping": False, "enable_progress_bar": False},
    )
    assert result.params["anchor_weight"] == 0.1
    assert result.embeddings["adt"].shape == (split.query["adt"].n_obs, 50)


@pytest.mark.parametrize(
    ("name", "protocol"),
    [("bmmc_cite_starter", "P1"), ("bmmc_multiome_starter", "P2"), ("pbmc_mosaic", "P3")],
)
def test_model_tests_use_the_harness_splits(name, protocol):
    """tests/_splits.py (the model tests' splits) builds the harness' splits exactly."""
    import _splits

    _need(name)
    ours, theirs = _splits.make_split(name, protocol), make_split(name, protocol)
    assert _splits.DATASETS[name] == {
        k: v for k, v in dataset_info(name).items() if k in _splits.DATASETS[name]
    }
    assert (ours.modalities, ours.n_cells) == (theirs.modalities, theirs.n_cells)
    for m in theirs.modalities:
        assert (ours.train.mod[m].obs_names == theirs.train.mod[m].obs_names).all()
        assert (ours.query[m].obs_names == theirs.query[m].obs_names).all()
        assert (ours.query[m].var_names == theirs.query[m].var_names).all()
        assert (ours.query[m].X != theirs.query[m].X).nnz == 0
    if theirs.pairs is None:
        assert ours.pairs is None
    else:
        for mine, ref in zip(ours.pairs, theirs.pairs, strict=True):
            np.testing.assert_array_equal(mine, ref)


def test_translation_space_is_read_from_the_models():
    """The harness asks each model class what space its ``translate`` returns."""
    from harness._methods import translation_space
    from scmint.model import CLUE, CONAAE, MINNET, SCCROSS

    assert {c.__name__: c.translation_space for c in (MINNET, SCCROSS, CLUE, CONAAE)} == {
        "MINNET": "counts",
        "SCCROSS": "counts",
        "CLUE": "counts",
        "CONAAE": "lognorm",
    }

    class Declared:
        translation_space = "counts"

    assert translation_space(Declared(), "adt") == "counts"
    assert translation_space(object(), "adt") is None


def test_sccross_claims_classifier_and_scores():
    """The reference classifier of benchmarks/sccross_claims.py types held-out real RNA
    cells of the simulator (so what it says of generated profiles means something), and
    a short run scores generation and simulation within their ranges."""
    import sccross_claims
    import scmint

    sim = scmint.data.simulate_multiome(n_cells=1200, n_peaks=0, paired_fraction=1.0, seed=1)
    x, types = sim["rna"].X, sim["rna"].obs["cell_type"].astype(str).to_numpy()
    train = np.arange(len(types)) % 3 > 0
    classifier = sccross_claims.RNATypeClassifier(x[train], types[train])
    assert np.mean(classifier.predict(x[~train]) == types[~train]) > 0.9
    # shuffled genes carry no type: the vote falls to chance
    rng = np.random.default_rng(0)
    shuffled = x[~train].toarray()[:, rng.permutation(x.shape[1])]
    assert np.mean(classifier.predict(shuffled) == types[~train]) < 0.7

    row = sccross_claims.run(seed=0, n_cells=600, epochs=1)
    assert row["prior"] and row["rare_type"] == "type4"
    assert -1 <= row["proportion_r"] <= 1
    keys = ("generated_typed_as_own", "rare_recall_real", "simulated_rare_typed_rare")
    for key in keys:
        assert 0 <= row[key] <= 1


def test_sccross_claims_atac_classifier():
    """The ATAC classifier of benchmarks/sccross_claims.py --snare types held-out real
    ATAC cells of the simulator, and falls towards chance on shuffled peaks."""
    import sccross_claims
    import scmint

    sim = scmint.data.simulate_multiome(n_cells=1200, paired_fraction=1.0, seed=2)
    x, types = sim["atac"].X, sim["atac"].obs["cell_type"].astype(str).to_numpy()
    train = np.arange(len(types)) % 3 > 0
    classifier = sccross_claims.ATACTypeClassifier(x[train], types[train])
    assert np.mean(classifier.predict(x[~train]) == types[~train]) > 0.8
    rng = np.random.default_rng(0)
    shuffled = sparse.csr_matrix(x[~train].toarray()[:, rng.permutation(x.shape[1])])
    assert np.mean(classifier.predict(shuffled) == types[~train]) < 0.7
    recall = sccross_claims.held_out_recall(x, types, "type0", sccross_claims.ATACTypeClassifier)
    assert 0.8 < recall <= 1


def test_minnet_claims_conditions():
    """benchmarks/minnet_claims.py: the control keeps each mini-bulk's type and shuffles
    which mini-bulk it is, and on SNARE-seq the measured pairs and smoothing order the
    gene-peak correlations as MinNet reports (true pairs above the type-only control,
    smoothing above none; a one-epoch model on 1,500 reference cells)."""
    import anndata as ad

    import minnet_claims

    bulks = ad.AnnData(
        X=np.eye(6, dtype=np.float32),
        obs=pd.DataFrame({"group": list("aaabbb")}, index=["a0", "a1", "a2", "b3", "b4", "b5"]),
    )
    shuffled = minnet_claims.shuffle_within_type(bulks, seed=3)
    assert sorted(shuffled.obs_names) == sorted(bulks.obs_names)
    assert not shuffled.obs_names.equals(bulks.obs_names)
    for name, group in zip(shuffled.obs_names, shuffled.obs["group"], strict=True):
        assert bulks.obs.loc[name, "group"] == group  # names move within their type
    assert bulks.obs_names.tolist() == ["a0", "a1", "a2", "b3", "b4", "b5"]  # not modified

    _need("snare_mouse_cortex")
    rows = minnet_claims.run(seed=0, epochs=1, n_bulks=40, reference_cells=1500)
    rho = {row["condition"]: row["rho_linked"] for row in rows}
    assert rho["true pairs"] > rho["control: same type, random mini-bulk"] + 0.01
    assert rho["unpaired, smoothing k=20"] > rho["unpaired, no smoothing"]
    assert 10 < rows[0]["bulks"] <= 40 and rows[0]["query_cells"] == 2465


def test_scale_file_with_peak_copies(tmp_path):
    """benchmarks/scale.py writes a tiled file whose peaks sit side by side ``peak_copies``
    times (the 50k-peak rows), and keeps rows of another peak count when appending."""
    import mudata as md

    import scale
    from gpu_speed import tiled

    _need("snare_mouse_cortex")
    path = tmp_path / "tiled.h5mu"
    scale.write_tiled("snare_mouse_cortex", 2, 200, path, peak_copies=2)
    written = md.read_h5mu(path, backed=True)
    one = tiled("snare_mouse_cortex", 1, 200)
    n_peaks = one["atac"].n_vars
    assert written.n_obs == 400 and written["atac"].n_vars == 2 * n_peaks
    assert written["rna"].n_vars == one["rna"].n_vars
    atac = written["atac"].X[200:400]  # the second tile
    first = atac[:, :n_peaks].toarray()
    np.testing.assert_array_equal(first, atac[:, n_peaks:].toarray())
    order = one["atac"].obs_names.get_indexer([n[:-2] for n in written["atac"].obs_names[:200]])
    np.testing.assert_array_equal(first, one["atac"].X[order].toarray())

    earlier = pd.DataFrame([{"method": "clue", "tile": 1, "data": "disk", "epoch_s": 1.0}])
    now = pd.DataFrame(
        [{"method": "clue", "tile": 1, "data": "disk", "epoch_s": 2.0, "peak_copies": 2}]
    )
    merged = scale._merged(earlier, now)
    assert merged["peak_copies"].tolist() == [1, 2]  # another peak count: both rows kept
    again = scale._merged(merged, now.assign(epoch_s=3.0))
    assert again["epoch_s"].tolist() == [1.0, 3.0]  # same key: replaced
