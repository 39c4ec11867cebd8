"""Tests of MINNET's graph distances: exact pair distances vs scipy, memory bounds."""

import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.csgraph import shortest_path

import scmint.model.minnet._graph_distance as gdm
from scmint.model.minnet import GraphDistances, build_distance_graph
from scmint.pp import knn_indices


# ----------------------------------------------------------------------------- helpers
def _knn_distance_graph(n=200, k=8, dim=5, seed=0):
    """Symmetrised kNN graph of random points with Euclidean edge lengths."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, dim))
    idx, dist = knn_indices(X, n_neighbors=k, method="exact")
    A = sp.csr_matrix((dist.ravel().astype(np.float64), (np.repeat(np.arange(n), k), idx.ravel())))
    return A.maximum(A.T).tocsr()


def _disconnected_graph(seed=1):
    """Three clusters (two kNN graphs and a path) plus two isolated nodes."""
    g1 = _knn_distance_graph(60, 5, 3, seed)
    g2 = _knn_distance_graph(40, 4, 3, seed + 1)
    path = sp.diags([np.full(9, 0.3), np.full(9, 0.3)], [1, -1], shape=(10, 10))
    iso = sp.csr_matrix((2, 2))
    G = sp.block_diag([g1, iso[:1, :1], g2, path, iso[:1, :1]], format="csr")
    return G


def _random_pairs(n, m, seed=0, self_frac=0.25):
    rng = np.random.default_rng(seed)
    s = rng.integers(0, n, m)
    t = rng.integers(0, n, m)
    is_self = rng.random(m) < self_frac
    t[is_self] = s[is_self]
    return s, t


@pytest.fixture(scope="module")
def knn_graph_200():
    return _knn_distance_graph()


@pytest.fixture(scope="module")
def disconnected():
    return _disconnected_graph()


# ----------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("graph_name", ["knn_graph_200", "disconnected"])
def test_no_cutoff_equals_scipy(request, graph_name):
    G = request.getfixturevalue(graph_name)
    D = shortest_path(G, directed=False)
    gd = GraphDistances(G)
    s, t = _random_pairs(G.shape[0], 3000)
    out = gd.pairs(s, t)
    assert out.dtype == np.float32 and out.shape == s.shape
    ref = D[s, t]
    finite = np.isfinite(ref)
    np.testing.assert_allclose(out[finite], ref[finite], rtol=1e-6, atol=1e-7)
    assert np.all(out[s == t] == 0)
    # unreachable pairs get the documented fill, a bound of the largest diameter
    diam = D[np.isfinite(D)].max()
    fill = gd.unreachable_distance
    assert diam <= fill <= 2 * diam
    if graph_name == "disconnected":
        assert (~finite).sum() > 100
        np.testing.assert_allclose(out[~finite], fill, rtol=1e-6)
    else:
        assert finite.all()


@pytest.mark.parametrize("graph_name", ["knn_graph_200", "disconnected"])
@pytest.mark.parametrize("method", ["index", "dijkstra"])
@pytest.mark.parametrize("q", [0.05, 0.3, 0.6, 1.0])
def test_cutoff_equals_capped_scipy(request, graph_name, method, q):
    G = request.getfixturevalue(graph_name)
    D = shortest_path(G, directed=False)
    s, t = _random_pairs(G.shape[0], 3000, seed=2)
    ref = D[s, t]
    cutoff = float(np.quantile(ref[np.isfinite(ref) & (s != t)], q))
    out = GraphDistances(G).pairs(s, t, cutoff=cutoff, method=method)
    # exact below the cut-off; farther and unreachable pairs get exactly the cut-off
    np.testing.assert_allclose(out, np.minimum(ref, cutoff), rtol=1e-6, atol=1e-7)
    assert np.all(out[~np.isfinite(ref)] == np.float32(cutoff))
    assert np.all(out[s == t] == 0)
    assert out.max() <= np.float32(cutoff)


def test_all_pairs_small_graph_index(knn_graph_200):
    """Every ordered pair of a graph, so no path/ball corner case is missed."""
    G = knn_graph_200[:80, :80]
    D = shortest_path(G, directed=False)
    n = G.shape[0]
    s, t = (a.ravel() for a in np.meshgrid(np.arange(n), np.arange(n), indexing="ij"))
    cutoffs = [2 * D[np.isfinite(D)].max(), 0.4, 0.1, 0.02]
    reused = GraphDistances(G)  # index of the largest cut-off serves the smaller ones
    for cutoff in cutoffs:
        for gd in (GraphDistances(G), reused):
            out = gd.pairs(s, t, cutoff=cutoff).reshape(n, n)
            np.testing.assert_allclose(out, np.minimum(D, cutoff), rtol=1e-6, atol=1e-7)
            np.testing.assert_allclose(out, out.T)
    assert reused.index_radius == pytest.approx(cutoffs[0] / 2)


def test_graph_without_edges():
    gd = GraphDistances(sp.csr_matrix((5, 5)))
    s, t = np.array([0, 1, 2]), np.array([0, 3, 4])
    np.testing.assert_array_equal(gd.pairs(s, t, cutoff=0.7), np.float32([0, 0.7, 0.7]))
    np.testing.assert_array_equal(gd.pairs(s, t), [0, 0, 0])  # fill: no finite distance
    assert gd.default_cutoff() == 1.0


def test_shapes_and_larger_index_reused(knn_graph_200):
    gd = GraphDistances(knn_graph_200)
    D = shortest_path(knn_graph_200, directed=False)
    s, t = _random_pairs(200, 600, seed=3)
    out = gd.pairs(s.reshape(20, 30), t.reshape(20, 30), cutoff=0.5)
    assert out.shape == (20, 30)
    assert gd.index_radius == pytest.approx(0.25)
    # a smaller cut-off reuses the larger index and is still exact
    small = gd.pairs(s, t, cutoff=0.2)
    assert gd.index_radius == pytest.approx(0.25)
    np.testing.assert_allclose(small, np.minimum(D[s, t], 0.2), rtol=1e-6, atol=1e-7)
    assert gd.pairs([], [], cutoff=0.5).shape == (0,)
    assert gd.pairs(np.array(5), np.array(5)).shape == ()
    with pytest.raises(ValueError, match="shape"):
        gd.pairs([1, 2], [3])
    with pytest.raises(IndexError):
        gd.pairs([0], [200])
    with pytest.raises(ValueError, match="cutoff"):
        gd.pairs([0], [1], method="index")


def test_invalid_graphs():
    with pytest.raises(ValueError, match="symmetric"):
        GraphDistances(sp.csr_matrix(np.array([[0, 1.0], [0, 0]])))
    with pytest.raises(ValueError, match="positive"):
        GraphDistances(sp.csr_matrix(np.array([[0, -1.0], [-1.0, 0]])))
    with pytest.raises(ValueError, match="square"):
        GraphDistances(sp.csr_matrix((2, 3)))


# ----------------------------------------------------------------------------- batching / memory
def test_batching_matches_one_batch_and_bounds_blocks(knn_graph_200, monkeypatch):
    G = knn_graph_200
    n = G.shape[0]
    s, t = _random_pairs(n, 2000, seed=4)
    one = GraphDistances(G, block_bytes=8 * n * n).pairs(s, t)
    assert GraphDistances(G, block_bytes=8 * n * n).batch_rows == n

    shapes = []
    real = gdm.dijkstra

    def spy(*args, **kwargs):
        D = real(*args, **kwargs)
        shapes.append(D.shape)
        return D

    monkeypatch.setattr(gdm, "dijkstra", spy)
    small = GraphDistances(G, block_bytes=8 * n * 3)
    assert small.batch_rows == 3
    for cutoff in [None, 0.3]:
        shapes.clear()
        out = small.pairs(s, t, cutoff=cutoff, method="dijkstra")
        ref = one if cutoff is None else np.minimum(one, np.float32(cutoff))
        np.testing.assert_allclose(out, ref, rtol=1e-6)
        assert len(shapes) > 10
        assert all(r * c * 8 <= small.block_bytes for r, c in shapes)
    # self pairs need no search; each pair is searched from one endpoint only
    shapes.clear()
    small.pairs(np.arange(n), np.arange(n))
    assert shapes == []
    shapes.clear()
    small.pairs(np.zeros(50, int), np.arange(50))  # star: one root suffices
    assert sum(r for r, _ in shapes) == 1


def test_index_memory_bound_and_fallback(knn_graph_200):
    G = knn_graph_200
    n = G.shape[0]
    s, t = _random_pairs(n, 1000, seed=5)
    ref = GraphDistances(G).pairs(s, t, cutoff=1.0, method="dijkstra")
    gd = GraphDistances(G)
    gd.prepare(1.0)
    # the index holds each cell's half-ball (radius cutoff / 2): linear in cells x ball
    D = shortest_path(G, directed=False)
    ball_entries = int((D <= 0.5).sum())
    assert gd._index[2].size == ball_entries
    assert gd.index_nbytes == 8 * (n + 1) + 8 * ball_entries
    tiny = GraphDistances(G, max_index_bytes=gd.index_nbytes // 2)
    assert not tiny.prepare(1.0)
    with pytest.warns(UserWarning, match="max_index_bytes"):
        out = tiny.pairs(s, t, cutoff=1.0)
    np.testing.assert_allclose(out, ref, rtol=1e-6)
    with pytest.raises(MemoryError):
        tiny.pairs(s, t, cutoff=1.0, method="index")


def test_default_cutoff_and_pickle(knn_graph_200):
    G = knn_graph_200
    gd = GraphDistances(G)
    D = shortest_path(G, directed=False)
    off = D[~np.eye(200, dtype=bool)]
    c = gd.default_cutoff(quantile=0.5, max_ball_size=None, n_sources=200, n_targets=10_000)
    assert c == pytest.approx(np.quantile(off, 0.5), rel=0.02)
    c_sample = gd.default_cutoff(quantile=0.5, max_ball_size=None)
    assert abs((off > c_sample).mean() - 0.5) < 0.1
    # the ball-size bound lowers the cut-off so half-balls hold ~max_ball_size cells
    c_small = gd.default_cutoff(quantile=0.9, max_ball_size=20, n_sources=200, n_targets=10_000)
    assert c_small < gd.default_cutoff(quantile=0.9, max_ball_size=None)
    mean_ball = (D <= c_small / 2).sum(axis=1).mean()
    assert 10 <= mean_ball <= 25

    gd.prepare(c)
    s, t = _random_pairs(200, 500, seed=6)
    before = gd.pairs(s, t, cutoff=c)
    clone = pickle.loads(pickle.dumps(gd))
    assert clone.index_radius is None  # index not pickled, rebuilt on use
    np.testing.assert_array_equal(clone.pairs(s, t, cutoff=c), before)


# ----------------------------------------------------------------------------- graph building
@pytest.mark.parametrize("batch_key", [None, "batch"])
def test_build_distance_graph(bmmc_multiome, batch_key):
    rna = bmmc_multiome.mod["rna"]
    X_before = rna.X.copy()
    obs_before = rna.obs.copy()
    layers_before = set(rna.layers)
    G = build_distance_graph(rna, batch_key=batch_key, n_top_genes=300, n_comps=20)
    n = rna.n_obs
    assert sp.isspmatrix_csr(G) and G.shape == (n, n)
    assert abs(G - G.T).max() < 1e-9
    assert G.diagonal().max() == 0 and G.nnz > 0
    assert G.data.min() > 0 and G.data.max() <= 1.01
    per_row = np.diff(G.indptr)
    assert per_row.min() >= 20 and per_row.mean() <= 40
    # input unchanged
    assert (rna.X != X_before).nnz == 0
    assert rna.obs.equals(obs_before) and set(rna.layers) == layers_before
    gd = GraphDistances(G)
    s, t = _random_pairs(n, 500, seed=7)
    ref = shortest_path(G, directed=False)[s, t]
    np.testing.assert_allclose(gd.pairs(s, t), ref, rtol=1e-6)


def test_build_distance_graph_batch_changes_graph(bmmc_multiome):
    rna = bmmc_multiome.mod["rna"]
    G0 = build_distance_graph(rna, n_top_genes=300, n_comps=20)
    G1 = build_distance_graph(rna, batch_key="batch", n_top_genes=300, n_comps=20)
    assert (G0 != G1).nnz > 0
    with pytest.raises(KeyError):
        build_distance_graph(rna, batch_key="nope")
