"""Tests of scmint.metrics: hand-computed values, naive references, real data, errors."""

import os
import tracemalloc

import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from scipy import sparse

from scmint import metrics
from scmint.metrics import (
    celltype_asw,
    foscttm,
    foscttm_per_cell,
    graph_connectivity,
    integration_scores,
    label_transfer_accuracy,
    matching_matrix,
    matching_score,
    matching_score_from_matrix,
    modality_mixing_asw,
    nmi_ari,
    recall_at_k,
)

# --------------------------------------------------------------------------- references


def naive_foscttm(z_a, z_b):
    """Dense N x N reference, per direction, normalised by N - 1."""
    d = np.sqrt(((z_a[:, None, :] - z_b[None, :, :]) ** 2).sum(-1))  # d[i, j] = |a_i - b_j|
    n = len(z_a)
    true = np.diag(d)
    a_to_b = (d < true[:, None]).sum(1) / (n - 1)  # B cells closer to a_i than b_i
    b_to_a = (d < true[None, :]).sum(0) / (n - 1)  # A cells closer to b_j than a_j
    return a_to_b, b_to_a


def _knn_sets(query, ref, k):
    d = np.sqrt(((query[:, None, :] - ref[None, :, :]) ** 2).sum(-1))
    return [set(np.argsort(row, kind="stable")[:k]) for row in d]


def naive_matching_matrix(z_a, z_b, k):
    """Literal loop over eq. 16 with Python sets."""
    nn_iB = _knn_sets(z_a, z_b, k)  # k nearest B cells of each A cell
    nn_iA = _knn_sets(z_a, z_a, k)  # k nearest A cells of each A cell (self included)
    nn_jB = _knn_sets(z_b, z_b, k)  # k nearest B cells of each B cell (self included)
    nn_jA = _knn_sets(z_b, z_a, k)  # k nearest A cells of each B cell
    m = np.zeros((len(z_a), len(z_b)))
    for i in range(len(z_a)):
        for j in range(len(z_b)):
            # B-cell and A-cell indices live in different modalities: tag them
            num = {("B", x) for x in nn_iB[i] & nn_jB[j]} | {("A", x) for x in nn_jA[j] & nn_iA[i]}
            den = {("B", x) for x in nn_iB[i] | nn_jB[j]} | {("A", x) for x in nn_jA[j] | nn_iA[i]}
            m[i, j] = len(num) / len(den)
    return m


def naive_matching_score(z_a, z_b, k):
    m = naive_matching_matrix(z_a, z_b, k)
    m = m / m.sum(1, keepdims=True)
    return np.mean(np.diag(m))


def col(*values):
    return np.array(values, dtype=float).reshape(-1, 1)


# --------------------------------------------------------------------------- hand-computed


def test_foscttm_hand_computed():
    # a = 0, 1, 2 and b = 0.6, 1, 2 (1-D), rows are pairs.
    # a_to_b: a0=0: |a0-b0|=0.6, b1 at 1, b2 at 2 -> 0 closer; a1, a2 sit on their partner
    #   -> per cell (0, 0, 0).
    # b_to_a: b0=0.6: |b0-a0|=0.6 but a1 is at 0.4 -> 1 of the N-1=2 others -> 1/2;
    #   b1, b2 sit on their partner -> per cell (1/2, 0, 0), mean 1/6.
    z_a, z_b = col(0, 1, 2), col(0.6, 1, 2)
    a_to_b, b_to_a = foscttm_per_cell(z_a, z_b)
    np.testing.assert_allclose(a_to_b, [0, 0, 0])
    np.testing.assert_allclose(b_to_a, [0.5, 0, 0])
    assert foscttm(z_a, z_b, direction="a_to_b") == pytest.approx(0.0)
    assert foscttm(z_a, z_b, direction="b_to_a") == pytest.approx(1 / 6)
    assert foscttm(z_a, z_b) == pytest.approx(1 / 12)
    # swapping the modalities swaps the directions
    assert foscttm(z_b, z_a, direction="a_to_b") == pytest.approx(1 / 6)


def test_foscttm_hand_computed_2d():
    # square a = (0,0), (1,0), (0,1), (1,1); b = a with b0 moved to (0.9, 0.1).
    # a_to_b, a0=(0,0): |a0-b0| = sqrt(0.82) = 0.906; b1=(1,0) at 1, b2=(0,1) at 1,
    #   b3 at 1.41 -> 0.  a1=(1,0): partner at 0, nothing strictly closer -> 0; same a2, a3.
    # b_to_a, b0=(0.9,0.1): |b0-a0| = 0.906; a1 at sqrt(0.02) = 0.14 -> 1; a2 at
    #   sqrt(0.81 + 0.81) = 1.27; a3 at sqrt(0.01 + 0.81) = 0.906 (tie, not strictly closer)
    #   -> 1/3.  Others 0. -> b_to_a = 1/12, both = 1/24.
    z_a = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], dtype=float)
    z_b = z_a.copy()
    z_b[0] = [0.9, 0.1]
    assert foscttm(z_a, z_b, direction="a_to_b") == pytest.approx(0.0)
    assert foscttm(z_a, z_b, direction="b_to_a") == pytest.approx(1 / 12)
    assert foscttm(z_a, z_b) == pytest.approx(1 / 24)


def test_recall_at_k_hand_computed():
    # same points as test_foscttm_hand_computed: only b0 has a closer A cell (a1) than
    # its partner. k=1: a_to_b all found (1), b_to_a 2 of 3 -> both 5/6. k=2: all found.
    z_a, z_b = col(0, 1, 2), col(0.6, 1, 2)
    assert recall_at_k(z_a, z_b, k=1, direction="a_to_b") == pytest.approx(1.0)
    assert recall_at_k(z_a, z_b, k=1, direction="b_to_a") == pytest.approx(2 / 3)
    assert recall_at_k(z_a, z_b, k=1) == pytest.approx(5 / 6)
    assert recall_at_k(z_a, z_b, k=2) == pytest.approx(1.0)


def test_matching_score_hand_computed():
    # a = 0, 1, 2; b = 0, 1.6, 2.5 (1-D), k = 1, so NN_iA = {a_i}, NN_jB = {b_j}.
    # nearest B of a0, a1, a2: b0, b1 (0.6 < 1), b1 (0.4 < 0.5)
    # nearest A of b0, b1, b2: a0, a2 (0.4 < 0.6), a2
    # I_B[i,j] = [nnB(a_i) == j]: (0,0), (1,1), (2,1)
    # I_A[i,j] = [nnA(b_j) == i]: (0,0), (2,1), (2,2)
    # I = I_B + I_A: (0,0)=2, (1,1)=1, (2,1)=2, (2,2)=1; M = I / (4k - I):
    # (0,0)=1, (1,1)=1/3, (2,1)=1, (2,2)=1/3
    # row-normalised diagonal: 1, 1, (1/3)/(4/3) = 1/4 -> score = 2.25 / 3 = 0.75
    z_a, z_b = col(0, 1, 2), col(0, 1.6, 2.5)
    expected = np.array([[1, 0, 0], [0, 1 / 3, 0], [0, 1, 1 / 3]])
    m = matching_matrix(z_a, z_b, k=1)
    assert sparse.issparse(m)
    np.testing.assert_allclose(m.toarray(), expected)
    assert matching_score(z_a, z_b, k=1) == pytest.approx(0.75)
    # FOSCTTM of the same points: a2 has b1 closer (1 of 2), b1 has a2 closer (1 of 2)
    assert foscttm(z_a, z_b) == pytest.approx(1 / 6)


def test_matching_score_from_matrix_hand_computed():
    # rows / row sums: [2,1,1] -> 2/4, [0,1,0] -> 1/1, [1,1,2] -> 2/4; mean = 2/3
    m = np.array([[2, 1, 1], [0, 1, 0], [1, 1, 2]], dtype=float)
    assert matching_score_from_matrix(m) == pytest.approx(2 / 3)
    assert matching_score_from_matrix(sparse.csr_matrix(m)) == pytest.approx(2 / 3)
    assert matching_score_from_matrix(sparse.coo_matrix(m)) == pytest.approx(2 / 3)
    # an all-zero row contributes 0
    m[1] = 0
    assert matching_score_from_matrix(m) == pytest.approx(1 / 3)
    # scale of a row does not matter
    m2 = np.array([[2, 1, 1], [0, 5, 0], [10, 10, 20]], dtype=float)
    assert matching_score_from_matrix(m2) == pytest.approx(2 / 3)


def test_label_transfer_hand_computed_with_missing_labels():
    # A: 0 'x', 1 'x', 10 'y', 10.6 None (ignored), 6 'x'; B: 0.5 'x', 10.5 'y', 20 NaN.
    # a_to_b (k=1, fit on a0, a1, a2, a4): b0 -> a0 'x' ok; b1 -> a2 'y' ok (a3 at 0.1
    #   would say None, but it is excluded); b2 unlabelled, not scored -> 1.0
    # b_to_a (fit on b0 'x', b1 'y'): a0 -> x ok, a1 -> x ok, a2 -> y ok, a4=6 -> b1 (4.5
    #   < 5.5) 'y' wrong; a3 not scored -> 3/4
    z_a = col(0, 1, 10, 10.6, 6)
    labels_a = pd.Categorical(["x", "x", "y", None, "x"])
    z_b = col(0.5, 10.5, 20)
    labels_b = np.array(["x", "y", np.nan], dtype=object)
    kw = {"k": 1}
    assert label_transfer_accuracy(z_a, labels_a, z_b, labels_b, direction="a_to_b", **kw) == 1
    assert label_transfer_accuracy(
        z_a, labels_a, z_b, labels_b, direction="b_to_a", **kw
    ) == pytest.approx(0.75)
    assert label_transfer_accuracy(z_a, labels_a, z_b, labels_b, **kw) == pytest.approx(0.875)


def test_label_transfer_numeric_and_string_labels_agree():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(60, 3))
    codes = rng.integers(0, 3, size=60)
    names = np.array(["t0", "t1", "t2"])[codes]
    zb = z + 0.01
    assert label_transfer_accuracy(z, codes, zb, codes, k=3) == pytest.approx(
        label_transfer_accuracy(z, pd.Series(names), zb, list(names), k=3)
    )


# --------------------------------------------------------------------------- properties


def test_perfect_alignment():
    z = np.random.default_rng(0).normal(size=(200, 8))
    assert foscttm(z, z) == 0.0
    a_to_b, b_to_a = foscttm_per_cell(z, z.copy())
    assert not a_to_b.any() and not b_to_a.any()
    assert recall_at_k(z, z, k=1) == 1.0
    # the true partner always shares the most neighbours: clearly above random pairing
    perm = np.random.default_rng(1).permutation(200)
    assert matching_score(z, z, k=10) > 5 * matching_score(z, z[perm], k=10)


@pytest.mark.parametrize("chunk_size", [1, 37, 300, None])
def test_chunked_foscttm_equals_dense(chunk_size):
    rng = np.random.default_rng(2)
    z_a = rng.normal(size=(300, 6))
    z_b = z_a + rng.normal(scale=1.0, size=z_a.shape)
    ref_ab, ref_ba = naive_foscttm(z_a, z_b)
    a_to_b, b_to_a = foscttm_per_cell(z_a, z_b, chunk_size=chunk_size)
    np.testing.assert_allclose(a_to_b, ref_ab)
    np.testing.assert_allclose(b_to_a, ref_ba)
    assert 0 < ref_ab.mean() < 0.5  # a non-trivial case
    assert foscttm(z_a, z_b, chunk_size=chunk_size) == pytest.approx(
        (ref_ab.mean() + ref_ba.mean()) / 2
    )
    # recall@k from the same counts: partner found if fewer than k cells are closer
    for k in (1, 5, 20):
        ref = (np.mean(ref_ab * 299 < k) + np.mean(ref_ba * 299 < k)) / 2
        assert recall_at_k(z_a, z_b, k=k, chunk_size=chunk_size) == pytest.approx(ref)


def test_random_embedding_foscttm_half():
    rng = np.random.default_rng(3)
    assert foscttm(rng.normal(size=(400, 5)), rng.normal(size=(400, 5))) == pytest.approx(
        0.5, abs=0.04
    )


def test_foscttm_memory_is_linear():
    n = 8000
    rng = np.random.default_rng(4)
    z_a = rng.normal(size=(n, 16))
    z_b = z_a + rng.normal(scale=0.5, size=z_a.shape)
    tracemalloc.start()
    try:
        value = foscttm(z_a, z_b)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert 0 < value < 0.5
    dense = n * n * 8  # one float64 N x N matrix: 512 MB
    assert peak < dense / 4, f"peak {peak / 2**20:.0f} MiB"


@pytest.mark.parametrize("k", [1, 3, 5])
def test_matching_score_equals_naive_loop(k):
    rng = np.random.default_rng(5)
    z_a = rng.normal(size=(40, 4))
    z_b = z_a + rng.normal(scale=0.7, size=z_a.shape)
    np.testing.assert_allclose(
        matching_matrix(z_a, z_b, k=k).toarray(), naive_matching_matrix(z_a, z_b, k)
    )
    assert matching_score(z_a, z_b, k=k) == pytest.approx(naive_matching_score(z_a, z_b, k))


def test_matching_matrix_unequal_modalities_equals_naive_loop():
    rng = np.random.default_rng(6)
    z_a, z_b = rng.normal(size=(40, 3)), rng.normal(size=(33, 3))
    m = matching_matrix(z_a, z_b, k=4)
    assert m.shape == (40, 33)
    np.testing.assert_allclose(m.toarray(), naive_matching_matrix(z_a, z_b, 4))


# --------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def cite_pca(_bmmc_cite):
    rna = _bmmc_cite["rna"].copy()
    sc.pp.normalize_total(rna, target_sum=1e4)
    sc.pp.log1p(rna)
    sc.pp.pca(rna, n_comps=50, random_state=0)
    return np.asarray(rna.obsm["X_pca"], dtype=np.float64), rna.obs["cell_type"].to_numpy()


def test_real_foscttm_random_vs_noisy_pairing(cite_pca):
    z, _ = cite_pca
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(z))
    assert foscttm(z, z[perm]) == pytest.approx(0.5, abs=0.05)
    noisy = z + rng.normal(scale=0.1 * z.std(), size=z.shape)
    assert foscttm(noisy, z) < 0.01
    assert recall_at_k(z, noisy, k=10) > 0.95
    assert recall_at_k(z, z[perm], k=10) < 0.1
    assert matching_score(z, noisy) > 10 * matching_score(z, z[perm])


def test_real_label_transfer(cite_pca):
    z, labels = cite_pca
    rng = np.random.default_rng(0)
    order = rng.permutation(len(z))
    h1, h2 = order[: len(z) // 2], order[len(z) // 2 :]
    real = label_transfer_accuracy(z[h1], labels[h1], z[h2], labels[h2], k=5)
    shuffled = rng.permutation(labels)
    fake = label_transfer_accuracy(z[h1], shuffled[h1], z[h2], labels[h2], k=5)
    majority = pd.Series(labels).value_counts(normalize=True).iloc[0]  # 0.15 (41 types)
    assert real > 0.45
    assert fake < majority + 0.05
    # a slightly noised copy of the same cells transfers its own labels well
    noisy = z + rng.normal(scale=0.1 * z.std(), size=z.shape)
    assert label_transfer_accuracy(z, labels, noisy, labels, k=5) > 0.6


def test_real_scib_wrappers(cite_pca):
    z, labels = cite_pca
    shuffled = np.random.default_rng(0).permutation(labels)
    real_asw, fake_asw = celltype_asw(z, labels), celltype_asw(z, shuffled)
    assert 0 <= fake_asw < real_asw <= 1
    real_gc, fake_gc = graph_connectivity(z, labels), graph_connectivity(z, shuffled)
    assert 0 < fake_gc < real_gc <= 1
    scores = nmi_ari(z, labels, cluster_method="kmeans")
    assert set(scores) == {"nmi", "ari"}
    assert 0.3 < scores["nmi"] <= 1 and 0 < scores["ari"] <= 1
    assert nmi_ari(z, shuffled, cluster_method="kmeans")["nmi"] < scores["nmi"] - 0.2


def test_nmi_ari_leiden():
    rng = np.random.default_rng(7)
    centers = rng.normal(scale=10, size=(3, 5))
    labels = np.repeat(["a", "b", "c"], 60)
    z = centers[np.repeat([0, 1, 2], 60)] + rng.normal(size=(180, 5))
    scores = nmi_ari(z, labels, n_neighbors=10, cluster_method="leiden")
    assert scores["nmi"] > 0.9 and scores["ari"] > 0.9


@pytest.mark.skipif(
    not os.environ.get("SCMINT_SLOW_TESTS"),
    reason="pynndescent compiles for ~1 min per process; set SCMINT_SLOW_TESTS=1",
)
def test_graph_connectivity_pynndescent_matches_exact(cite_pca):
    z, labels = cite_pca
    assert graph_connectivity(z, labels, neighbors="pynndescent") == pytest.approx(
        graph_connectivity(z, labels, neighbors="exact"), abs=0.02
    )


def test_modality_mixing_asw():
    rng = np.random.default_rng(8)
    labels = np.repeat(["t1", "t2"], 100)
    z_a = rng.normal(size=(200, 4)) + (labels == "t2")[:, None] * 8
    mixed = z_a + rng.normal(scale=0.05, size=z_a.shape)
    apart = z_a + 5.0
    modality = np.repeat(["rna", "atac"], 200)
    both_labels = np.concatenate([labels, labels])
    good = modality_mixing_asw(np.vstack([z_a, mixed]), modality, both_labels)
    bad = modality_mixing_asw(np.vstack([z_a, apart]), modality, both_labels)
    assert 0 <= bad < good <= 1
    assert good > 0.9
    # without labels all cells form one group
    assert 0 <= modality_mixing_asw(np.vstack([z_a, mixed]), modality) <= 1
    # one cell type per modality: scib-metrics has nothing to score
    with pytest.warns(UserWarning, match="No cell type holds"):
        out = modality_mixing_asw(np.vstack([z_a, mixed]), modality, np.repeat(["x", "y"], 200))
    assert np.isnan(out)


def test_batch_removal_scores():
    """iLISI and batch ASW: 1 for mixed batches, about 0 for separated ones."""
    from scmint.metrics import batch_asw, ilisi

    rng = np.random.default_rng(3)
    labels = np.repeat(["t1", "t2"], 200)
    z = rng.normal(size=(400, 4)) + (labels == "t2")[:, None] * 8
    mixed_batch = np.tile(["b1", "b2"], 200)  # both batches in every neighbourhood
    split_batch = np.where(np.arange(400) % 2 == 0, "b1", "b2")
    # the same cells with the batches moved apart
    shifted = z + (split_batch == "b2")[:, None] * 30.0
    assert ilisi(z, mixed_batch) > 0.9
    assert ilisi(shifted, split_batch) < 0.05
    assert batch_asw(z, mixed_batch, labels) > 0.9
    assert batch_asw(shifted, split_batch, labels) < batch_asw(z, mixed_batch, labels)
    with pytest.raises(ValueError, match="missing"):
        ilisi(z, np.where(np.arange(400) == 0, None, mixed_batch))
    with pytest.raises(ValueError, match="2 distinct"):
        ilisi(z, np.repeat("b1", 400))


def test_integration_scores_real_paired_and_unpaired(_pbmc_mosaic):
    rna = _pbmc_mosaic["rna"].copy()
    sc.pp.normalize_total(rna, target_sum=1e4)
    sc.pp.log1p(rna)
    sc.pp.pca(rna, n_comps=20, random_state=0)
    paired = rna.obs_names.isin(_pbmc_mosaic["adt"].obs_names)
    z_p = np.asarray(rna.obsm["X_pca"], dtype=np.float64)[paired]
    lab_p = rna.obs["cell_type"].to_numpy()[paired]
    rng = np.random.default_rng(0)
    noisy = z_p + rng.normal(scale=0.05 * z_p.std(), size=z_p.shape)

    scores = integration_scores(z_p, noisy, lab_p, lab_p, paired=True, k=5)
    assert tuple(scores) == metrics.SCORE_KEYS
    assert list(scores) == [
        "foscttm",
        "matching_score",
        "recall_at_10",
        "label_transfer_a_to_b",
        "label_transfer_b_to_a",
        "celltype_asw",
        "modality_asw",
        "graph_connectivity",
    ]
    assert all(isinstance(v, float) and 0 <= v <= 1 for v in scores.values())
    assert scores["foscttm"] < 0.01
    assert scores["recall_at_10"] > 0.95
    assert scores["foscttm"] == pytest.approx(foscttm(z_p, noisy))
    assert scores["recall_at_10"] == pytest.approx(recall_at_k(z_p, noisy, k=10))
    assert scores["matching_score"] == pytest.approx(matching_score(z_p, noisy, k=10))
    assert scores["label_transfer_a_to_b"] > 0.8 and scores["label_transfer_b_to_a"] > 0.8
    assert scores["modality_asw"] > 0.9

    # the same cells without the pairing (B rows shuffled): paired metrics are NaN
    perm = rng.permutation(len(z_p))
    unpaired = integration_scores(z_p, noisy[perm], lab_p, lab_p[perm], paired=False)
    assert tuple(unpaired) == metrics.SCORE_KEYS
    for key in ("foscttm", "matching_score", "recall_at_10"):
        assert np.isnan(unpaired[key])
    for key in metrics.SCORE_KEYS[3:]:
        assert unpaired[key] == pytest.approx(scores[key], abs=1e-5)

    # no labels: only the paired metrics and the global modality mixing
    bare = integration_scores(z_p, noisy)
    assert np.isnan(bare["celltype_asw"]) and np.isnan(bare["label_transfer_a_to_b"])
    assert bare["foscttm"] == scores["foscttm"] and 0 <= bare["modality_asw"] <= 1


def test_integration_scores_unequal_modalities():
    # mosaic-like: modalities hold different numbers of cells; one side unlabelled
    rng = np.random.default_rng(10)
    lab_a, lab_b = np.repeat(["u", "v"], 30), np.repeat(["u", "v"], 20)
    z_a = rng.normal(size=(60, 3)) + (lab_a == "v")[:, None] * 6
    z_b = rng.normal(size=(40, 3)) + (lab_b == "v")[:, None] * 6
    scores = integration_scores(z_a, z_b, lab_a, lab_b, paired=False, k=3)
    assert scores["label_transfer_a_to_b"] == 1.0 and scores["label_transfer_b_to_a"] == 1.0
    assert scores["graph_connectivity"] == 1.0
    assert 0.5 < scores["celltype_asw"] <= 1 and 0.5 < scores["modality_asw"] <= 1
    one_sided = integration_scores(z_a, z_b, labels_a=lab_a, paired=False)
    assert np.isnan(one_sided["label_transfer_a_to_b"])
    assert 0.5 < one_sided["celltype_asw"] <= 1  # on the labelled A cells only


# --------------------------------------------------------------------------- errors


def test_errors():
    rng = np.random.default_rng(9)
    z = rng.normal(size=(20, 3))
    with pytest.raises(ValueError, match="same number of rows"):
        foscttm(z, z[:15])
    with pytest.raises(ValueError, match="same number of rows"):
        matching_score(z, z[:15])
    with pytest.raises(ValueError, match="same number of rows"):
        integration_scores(z, z[:15], paired=True)
    with pytest.raises(ValueError, match="same number of columns"):
        foscttm(z, z[:, :2])
    bad = z.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="z_b contains NaN"):
        foscttm(z, bad)
    with pytest.raises(ValueError, match="z_a contains NaN"):
        label_transfer_accuracy(bad, np.zeros(20), z, np.zeros(20))
    with pytest.raises(ValueError, match="z contains NaN"):
        celltype_asw(bad, np.arange(20) % 2)
    with pytest.raises(ValueError, match="2-D array"):
        foscttm(z[:, 0], z[:, 0])
    with pytest.raises(
        ValueError, match=r"k must be at least 1 and smaller than .* \(20\), got 20"
    ):
        recall_at_k(z, z, k=20)
    with pytest.raises(ValueError, match="k must be at least 1"):
        matching_score(z, z, k=25)
    with pytest.raises(ValueError, match="k must be at least 1"):
        recall_at_k(z, z, k=0)
    with pytest.raises(TypeError, match="k must be an integer"):
        recall_at_k(z, z, k=2.5)
    with pytest.raises(ValueError, match="labelled reference cells"):
        label_transfer_accuracy(z, np.arange(20) % 2, z, np.arange(20) % 2, k=21)
    with pytest.raises(ValueError, match="n_neighbors must be at least 1"):
        graph_connectivity(z, np.arange(20) % 2, n_neighbors=20)
    with pytest.raises(ValueError, match="direction must be one of"):
        foscttm(z, z, direction="forward")
    with pytest.raises(ValueError, match="direction must be one of"):
        recall_at_k(z, z, direction="a->b")
    with pytest.raises(ValueError, match="direction must be one of"):
        label_transfer_accuracy(z, np.zeros(20), z, np.zeros(20), direction="sideways")
    with pytest.raises(ValueError, match="labels_b has 19 entries but the embedding has 20"):
        label_transfer_accuracy(z, np.zeros(20), z, np.zeros(19))
    with pytest.raises(ValueError, match="At least 2 distinct labels"):
        celltype_asw(z, ["same"] * 20)
    with pytest.raises(ValueError, match="at least 2 distinct modalities"):
        modality_mixing_asw(z, ["rna"] * 20)
    with pytest.raises(ValueError, match="must be square"):
        matching_score_from_matrix(np.ones((3, 4)))
    with pytest.raises(ValueError, match="non-negative"):
        matching_score_from_matrix(-np.eye(3))
    with pytest.raises(ValueError, match="cluster_method"):
        nmi_ari(z, np.arange(20) % 2, cluster_method="louvain")


# --------------------------------------------------------------------------- translation


def _naive_lognorm(x):
    x = np.asarray(x, dtype=np.float64)
    total = x.sum(1, keepdims=True)
    total[total == 0] = 1.0
    return np.log1p(x / total * 1e4)


def _naive_corr_rows(p, m):
    """Pearson of row i of p with row i of m, NaN when either is constant."""
    out = np.full(p.shape[0], np.nan)
    for i in range(p.shape[0]):
        if np.ptp(p[i]) > 0 and np.ptp(m[i]) > 0:
            out[i] = np.corrcoef(p[i], m[i])[0, 1]
    return out


def _counts(n=60, g=25, seed=0):
    rng = np.random.default_rng(seed)
    rate = rng.gamma(2.0, 1.0, size=(1, g)) * rng.gamma(5.0, 0.2, size=(n, 1))
    return rng.poisson(rate).astype(float)


def test_translation_perfect_prediction_is_one():
    x = _counts()
    res = metrics.translation_correlation(x, sparse.csr_matrix(x))
    assert res.feature_corr == pytest.approx(1.0)
    assert res.cell_corr == pytest.approx(1.0)
    # a count-scale mean at any library size is the same profile once normalised
    scaled = x * np.random.default_rng(1).uniform(0.1, 10.0, size=(x.shape[0], 1))
    assert metrics.translation_correlation(scaled, x).cell_corr == pytest.approx(1.0)
    # a prediction already in the log1p-normalised space
    res = metrics.translation_correlation(metrics.log_normalize(x), x, predicted_space="lognorm")
    assert res.feature_corr == pytest.approx(1.0) and res.cell_corr == pytest.approx(1.0)


def test_translation_matches_naive_reference_in_chunks():
    x, y = _counts(seed=2), _counts(seed=3)
    y[5] = 0.0  # an empty measured cell: constant profile
    res = metrics.translation_correlation(sparse.csr_matrix(x), y, chunk_size=7)
    p, m = _naive_lognorm(x), _naive_lognorm(y)
    np.testing.assert_allclose(res.per_cell, _naive_corr_rows(p, m), atol=1e-10)
    np.testing.assert_allclose(res.per_feature, _naive_corr_rows(p.T, m.T), atol=1e-10)
    assert np.isnan(res.per_cell[5]) and np.isfinite(res.per_cell[:5]).all()
    assert res.cell_corr == pytest.approx(np.nanmean(_naive_corr_rows(p, m)))
    one_chunk = metrics.translation_correlation(x, y, chunk_size=1000)
    np.testing.assert_allclose(one_chunk.per_feature, res.per_feature, atol=1e-10)


def test_translation_constant_feature_is_nan():
    x = _counts(seed=4)
    rng = np.random.default_rng(4)
    m = metrics.log_normalize(x)
    m[:, 0] = 1.5  # constant measured feature: correlation undefined
    p = m + rng.normal(scale=0.3, size=m.shape)
    # constant within each chunk of 10 rows but not overall: still defined
    p[:, 1] = np.repeat(np.arange(6), 10)[: x.shape[0]]
    res = metrics.translation_correlation(
        p, m, predicted_space="lognorm", measured_space="lognorm", chunk_size=10
    )
    assert np.isnan(res.per_feature[0]) and np.isfinite(res.per_feature[1:]).all()
    np.testing.assert_allclose(res.per_feature[1:], _naive_corr_rows(p.T, m.T)[1:], atol=1e-10)
    assert res.feature_corr == pytest.approx(res.per_feature[1:].mean())
    flat = np.full_like(m, 2.0)  # a constant prediction: nothing defined
    res = metrics.translation_correlation(
        flat, m, predicted_space="lognorm", measured_space="lognorm"
    )
    assert np.isnan(res.per_feature).all() and np.isnan(res.feature_corr)
    assert np.isnan(res.per_cell).all() and np.isnan(res.cell_corr)


def test_translation_shuffled_prediction_is_near_zero():
    rng = np.random.default_rng(5)
    n, g = 3000, 40
    x = rng.poisson(rng.gamma(2.0, 1.0, size=(n, g))).astype(float)  # cells differ per feature
    res = metrics.translation_correlation(x[rng.permutation(n)], x)
    assert abs(res.feature_corr) < 0.05
    noise = rng.normal(size=(n, g))
    res = metrics.translation_correlation(
        rng.normal(size=(n, g)), noise, predicted_space="lognorm", measured_space="lognorm"
    )
    assert abs(res.cell_corr) < 0.05 and abs(res.feature_corr) < 0.05


def test_translation_rows_pair_the_inputs():
    x = _counts(seed=6)
    perm = np.random.default_rng(7).permutation(x.shape[0])
    shuffled = sparse.csr_matrix(x[perm])  # measured row j is cell perm[j]
    inv = np.empty_like(perm)
    inv[perm] = np.arange(perm.size)
    res = metrics.translation_correlation(x, shuffled, rows_measured=inv, chunk_size=11)
    assert res.cell_corr == pytest.approx(1.0) and res.feature_corr == pytest.approx(1.0)
    assert res.per_cell.shape == (x.shape[0],)
    res = metrics.translation_correlation(x, shuffled)  # unpaired rows: worse
    assert res.feature_corr < 0.5


def test_mean_profile_baseline():
    x = _counts(seed=8)
    prof = metrics.mean_profile(sparse.csr_matrix(x), chunk_size=5)
    np.testing.assert_allclose(prof, _naive_lognorm(x).mean(0))
    base = np.broadcast_to(prof, x.shape)  # a view: no N x G copy
    res = metrics.translation_correlation(base, x, predicted_space="lognorm")
    assert np.isnan(res.per_feature).all() and np.isnan(res.feature_corr)
    np.testing.assert_allclose(res.per_cell, _naive_corr_rows(base, _naive_lognorm(x)), atol=1e-10)
    assert 0.0 < res.cell_corr < 1.0
    # a perfect translation beats the baseline per cell
    assert metrics.translation_correlation(x, x).cell_corr > res.cell_corr


def test_translation_memory_is_linear():
    rng = np.random.default_rng(9)
    n, g = 20000, 1000
    x = sparse.random(n, g, density=0.02, format="csr", random_state=rng, dtype=np.float64)
    x.data = np.ceil(x.data * 5)
    tracemalloc.start()
    try:
        res = metrics.translation_correlation(x, x, chunk_size=500)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert res.feature_corr == pytest.approx(1.0)
    dense = n * g * 8  # one dense float64 copy: 160 MB
    assert peak < dense / 8, f"peak {peak / 2**20:.0f} MiB"


def test_translation_errors():
    x = _counts()
    with pytest.raises(ValueError, match="features"):
        metrics.translation_correlation(x, x[:, :-1])
    with pytest.raises(ValueError, match="true pairs"):
        metrics.translation_correlation(x, x[:-1])
    with pytest.raises(ValueError, match="predicted_space"):
        metrics.translation_correlation(x, x, predicted_space="clr")
    with pytest.raises(ValueError, match="Non-finite"):
        bad = x.copy()
        bad[3, 2] = np.nan
        metrics.translation_correlation(bad, x, predicted_space="lognorm")
    with pytest.raises(IndexError, match="outside"):
        metrics.translation_correlation(x, x, rows_measured=np.arange(1, x.shape[0] + 1))
    with pytest.raises(ValueError, match="at least 2 cells"):
        metrics.translation_correlation(x[:1], x[:1])


def test_knn_profiles_average_the_nearest_reference_cells():
    rng = np.random.default_rng(6)
    source = sparse.csr_matrix(rng.poisson(2.0, size=(40, 25)).astype(np.float32))
    target = sparse.csr_matrix(rng.poisson(3.0, size=(40, 12)).astype(np.float32))
    # k = every reference cell: the mean-profile baseline
    pred = metrics.knn_profiles(source, target, source[:7], n_neighbors=40, n_comps=5)
    assert pred.shape == (7, 12) and pred.dtype == np.float32
    np.testing.assert_allclose(pred, np.tile(metrics.mean_profile(target), (7, 1)), rtol=1e-5)
    # k = 1 on the reference cells themselves: each cell's own target profile
    for representation in ("pca", "lsi"):
        own = metrics.knn_profiles(
            source, target, source, n_neighbors=1, representation=representation, n_comps=10
        )
        np.testing.assert_allclose(own, metrics.log_normalize(target), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="same paired cells"):
        metrics.knn_profiles(source, target[:5], source)
    with pytest.raises(ValueError, match="same features"):
        metrics.knn_profiles(source, target, target)
    with pytest.raises(ValueError, match="n_neighbors"):
        metrics.knn_profiles(source, target, source, n_neighbors=41)
