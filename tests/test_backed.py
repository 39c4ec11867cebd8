"""Training and inference from a MuData that stays on disk (``read_h5mu(path, backed=True)``)."""

import contextlib
import warnings

import anndata as ad
import mudata as md
import numpy as np
import pytest
import scvi
import torch
from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar
from scipy import sparse

import scmint
from scmint.data import CSRRows, OnDiskRows, check_values, pad_mudata
from scmint.data import _backed as backed_module
from scmint.data._backed import BlockShuffleBatchSampler, DiskCSRRows
from scmint.data._validation import _row_sums
from scmint.metrics import foscttm
from scmint.model import CLUE, CONAAE, MINNET, SCCROSS

pytestmark = pytest.mark.usefixtures("one_thread")

QUIET = {"enable_progress_bar": False}


def _write(data, path):
    """Write an AnnData / MuData (newest anndata writes pandas-3 string indexes when allowed)."""
    if isinstance(data, md.MuData):
        return scmint.data.write_h5mu(data, path)
    try:
        allow = ad.settings.override(allow_write_nullable_strings=True)
    except (AttributeError, KeyError, TypeError, ValueError):
        allow = contextlib.nullcontext()
    with allow:
        data.write(path)
    return path


@pytest.fixture
def small_blocks(monkeypatch):
    """Chunks and blocks of 64 cells, so that small data span several of them."""
    monkeypatch.setattr(backed_module, "CHUNK_BYTES", 1)
    monkeypatch.setattr(backed_module, "MIN_CHUNK_ROWS", 64)


@pytest.fixture
def counts_on_disk(tmp_path):
    """A 300 x 40 sparse count matrix in memory and the same matrix read backed."""
    rng = np.random.default_rng(0)
    x = sparse.random(300, 40, density=0.2, format="csr", random_state=rng, dtype=np.float32)
    x.data = np.ceil(x.data * 10)
    path = _write(ad.AnnData(X=x), tmp_path / "counts.h5ad")
    return x, ad.read_h5ad(path, backed="r").X


def test_block_sampler_reads_each_block_once_in_a_seeded_order():
    rows = np.sort(np.random.default_rng(1).choice(1000, 700, replace=False))
    sampler = BlockShuffleBatchSampler(rows, block_rows=100, batch_size=32, pool_blocks=1)
    torch.manual_seed(0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 22
    flat = np.concatenate(batches)
    assert np.array_equal(np.sort(flat), np.arange(700))  # every position once
    blocks = rows[flat] // 100
    assert np.count_nonzero(np.diff(blocks)) == 9  # ten blocks, each visited in one run
    assert not np.array_equal(blocks, np.sort(blocks))  # in a random order
    torch.manual_seed(0)
    assert all(np.array_equal(a, b) for a, b in zip(batches, sampler, strict=True))
    torch.manual_seed(1)
    assert not np.array_equal(np.concatenate(list(sampler)), flat)
    dropped = BlockShuffleBatchSampler(rows, 100, 32, drop_last=True)
    assert len(dropped) == 21 and all(len(b) == 32 for b in dropped)

    # pools of four blocks: their cells are shuffled together, pool after pool
    pooled = np.concatenate(list(BlockShuffleBatchSampler(rows, 100, 32, pool_blocks=4)))
    blocks = rows[pooled] // 100
    first_seen = list(dict.fromkeys(blocks.tolist()))
    start = 0
    for i in range(0, 10, 4):
        pool = set(first_seen[i : i + 4])
        size = int(np.isin(blocks, list(pool)).sum())
        assert set(blocks[start : start + size].tolist()) == pool
        start += size
    assert np.count_nonzero(np.diff(blocks)) > 9  # blocks interleaved within a pool


def test_disk_minibatches_equal_the_in_memory_ones(counts_on_disk):
    x, on_disk = counts_on_disk
    disk = DiskCSRRows(on_disk, block_rows=64)
    memory = CSRRows.from_matrix(x)
    assert disk.density == pytest.approx(x.nnz / (300 * 40))
    within = torch.tensor([70, 65, 127, 64])  # one block
    seam = torch.tensor([130, 5, 129, 63, 64, 250])  # four blocks, any order
    for rows in (within, seam):
        assert torch.equal(disk.dense_rows(rows), memory.dense_rows(rows))
        assert torch.equal(disk.sparse_rows(rows).to_dense(), memory.dense_rows(rows))
        if rows is within:
            assert disk.blocks_read == 1  # read once, then cut from the held block
    assert len(disk._cache) == 4 <= backed_module.POOL_BLOCKS + 1  # the blocks touched

    # a minibatch at the seam of two pools: the blocks read for it stay held
    seam_blocks = DiskCSRRows(on_disk, block_rows=10)  # 30 blocks, five held
    seam_blocks.dense_rows(torch.arange(200, 240, 5))  # blocks 20-23 (one pool)
    seam_blocks.dense_rows(torch.tensor([225, 235, 5, 15, 25, 35]))  # 22, 23 + 0-3 (next)
    read = seam_blocks.blocks_read
    seam_blocks.dense_rows(torch.tensor([6, 16, 26, 36]))  # the new pool only
    assert read == 8 and seam_blocks.blocks_read == read


def test_on_disk_selection_reads_what_memory_holds(counts_on_disk, small_blocks):
    x, on_disk = counts_on_disk
    rows = OnDiskRows(on_disk)
    assert rows.chunk_rows == 64 and rows.shape == (300, 40)
    mask = np.arange(300) % 3 != 0
    pick = np.array([150, 3, 199, 0, 7])
    chosen = rows[mask][pick]  # nothing read until here
    assert isinstance(chosen, OnDiskRows)
    assert (chosen.to_memory() != x[mask][pick]).nnz == 0
    assert (rows[::-1].to_memory() != x[::-1]).nnz == 0
    np.testing.assert_allclose(rows.sum(axis=1).ravel(), np.asarray(x.sum(axis=1)).ravel())
    np.testing.assert_allclose(rows.sum(axis=0).ravel(), np.asarray(x.sum(axis=0)).ravel())
    np.testing.assert_allclose(_row_sums(on_disk), np.asarray(x.sum(axis=1)).ravel())
    batches = list(scmint.data.row_batches(on_disk, 50, "cpu"))
    assert [b.stop - b.start for b, _ in batches] == [50, 14] * 4 + [44]  # chunks of 64
    np.testing.assert_array_equal(torch.cat([t for _, t in batches]).numpy(), x.toarray())


def test_value_checks_read_disk_chunks_and_count_as_in_memory(tmp_path, small_blocks):
    x = sparse.random(200, 30, density=0.3, format="csr", random_state=0, dtype=np.float32)
    x.data = np.round(x.data * 5) - 1  # some negative, some zero-valued stored entries
    x.data[::7] += 0.5
    for step, (kind, message) in enumerate(
        [("nonnegative", "negative values"), ("counts", "non-integer values"), ("counts", None)]
    ):
        if step:
            x.data = np.abs(x.data) if step == 1 else np.round(x.data)
        path = _write(ad.AnnData(X=x), tmp_path / f"x{step}.h5ad")
        on_disk = ad.read_h5ad(path, backed="r").X
        if message is None:
            check_values(on_disk, "rna", kind=kind)
            continue
        with pytest.raises(ValueError, match=message) as in_memory:
            check_values(x, "rna", kind=kind)
        with pytest.raises(ValueError) as from_disk:
            check_values(on_disk, "rna", kind=kind)
        assert str(from_disk.value) == str(in_memory.value)


@pytest.fixture
def multiome_files(bmmc_multiome, tmp_path):
    """The padded BMMC Multiome starter in memory and written to disk, cells shuffled."""
    padded = pad_mudata(bmmc_multiome)
    path = scmint.data.write_h5mu(padded, tmp_path / "multiome.h5mu", shuffle_cells=True)
    return md.read_h5mu(path), path


def test_a_file_sorted_by_batch_warns_and_shuffled_cells_mix(bmmc_multiome, small_blocks, tmp_path):
    padded = pad_mudata(bmmc_multiome)
    for shuffle, warns in ((False, True), (True, False)):
        path = scmint.data.write_h5mu(padded, tmp_path / f"{shuffle}.h5mu", shuffle_cells=shuffle)
        on_disk = md.read_h5mu(path, backed=True)
        CLUE.setup_mudata(on_disk, batch_key="batch")
        manager = CLUE(on_disk).adata_manager
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            scmint.data.RegisteredTensors(manager)
        sorted_warnings = [w for w in caught if "sorted by batch" in str(w.message)]
        assert bool(sorted_warnings) == warns, [str(w.message) for w in caught]
        if shuffle:  # the same cells, every modality in the same new order
            back = md.read_h5mu(path)
            assert set(back.obs_names) == set(padded.obs_names)
            assert not back.obs_names.equals(padded.obs_names)
            row = padded.obs_names.get_loc(back.obs_names[0])
            assert (back["atac"].X[0] != padded["atac"].X[row]).nnz == 0


def _labelled_from_disk(model_cls, path):
    """``model_cls`` set up with labels on the file read with ``backed=True`` (seed 0)."""
    on_disk = md.read_h5mu(path, backed=True)
    scvi.settings.seed = 0
    model_cls.setup_mudata(on_disk, labels_key="cell_type")
    return model_cls(on_disk), on_disk


def _embeds_as_in_memory(model, padded, folder, rtol: float, atol: float) -> None:
    """Inference from disk equals inference of the same weights on the data in memory."""
    model.save(folder)
    same = type(model).load(folder, adata=padded)
    np.testing.assert_allclose(
        model.get_latent_representation(modality="atac"),
        same.get_latent_representation(modality="atac"),
        rtol=rtol,
        atol=atol,
    )


def _fit_clue(mdata, epochs: int) -> CLUE:
    scvi.settings.seed = 0
    CLUE.setup_mudata(mdata, batch_key="batch")
    model = CLUE(mdata)
    model.train(max_epochs=epochs, early_stopping=False, **QUIET)
    return model


def test_clue_trains_from_disk_as_well_as_from_memory(multiome_files, small_blocks, tmp_path):
    padded, path = multiome_files
    on_disk = md.read_h5mu(path, backed=True)
    model = _fit_clue(on_disk, 25)
    assert on_disk.isbacked and on_disk["atac"].isbacked  # never read into memory
    reference = _fit_clue(padded, 25)
    scores = {}
    for name, m in (("disk", model), ("memory", reference)):
        z = [m.get_latent_representation(modality=k) for k in ("rna", "atac")]
        scores[name] = foscttm(*z)
    # measured 0.297 from disk, 0.285 from memory (chance 0.5)
    assert scores["disk"] < 0.35 and scores["disk"] < scores["memory"] + 0.05, scores

    # inference from disk equals inference of the same weights on the data in memory
    model.save(tmp_path / "clue")
    same = CLUE.load(tmp_path / "clue", adata=padded)
    np.testing.assert_array_equal(
        model.get_latent_representation(), same.get_latent_representation()
    )
    cells = np.arange(0, padded.n_obs, 7)
    np.testing.assert_allclose(
        model.translate(source="rna", target="atac", indices=cells).X,
        same.translate(source="rna", target="atac", indices=cells).X,
        rtol=1e-5,
    )
    again = CLUE.load(tmp_path / "clue", adata=md.read_h5mu(path, backed=True))
    np.testing.assert_array_equal(
        again.get_latent_representation(modality="atac"),
        same.get_latent_representation(modality="atac"),
    )


def test_conaae_trains_from_disk_with_scalers_fitted_on_a_subsample(
    multiome_files, small_blocks, monkeypatch, tmp_path
):
    from scmint.model import _base

    monkeypatch.setattr(_base, "ON_DISK_FIT_CELLS", 200)
    padded, path = multiome_files
    model, on_disk = _labelled_from_disk(CONAAE, path)
    # the scaler statistics are those of 200 of the 500 cells, drawn with the seed
    rows = _base.fit_subsample(np.arange(padded.n_obs), 200)
    assert len(rows) == 200 and np.all(np.diff(rows) > 0)
    expected = _base.make_feature_scaler("log", 1e4, 10.0).fit(padded["rna"].X[rows])
    np.testing.assert_allclose(
        model.module.scalers["rna"].mean.numpy(), expected.mean_, rtol=1e-4, atol=1e-5
    )
    model.train(max_epochs=3)
    assert on_disk["rna"].isbacked
    # epochs from disk take long: the bar is Lightning's per-minibatch one, with an ETA
    bar = model.trainer.progress_bar_callback
    assert isinstance(bar, RichProgressBar | TQDMProgressBar), bar
    _embeds_as_in_memory(model, padded, tmp_path / "conaae", rtol=1e-5, atol=1e-6)


def test_minnet_from_disk_trains_as_from_memory(multiome_files, small_blocks, tmp_path):
    """All training cells fit under the limit: the same cells, scalers, graph and pairs,
    so the same weights as from memory; inference reads the file."""
    padded, path = multiome_files
    models = {}
    for name, data in (("disk", md.read_h5mu(path, backed=True)), ("memory", padded.copy())):
        scvi.settings.seed = 0
        MINNET.setup_mudata(data, labels_key="cell_type")
        models[name] = MINNET(data)
        models[name].train(max_epochs=2, **QUIET)
        assert data.isbacked == (name == "disk")
    disk, memory = models["disk"], models["memory"]
    np.testing.assert_array_equal(disk._pool, memory._pool)
    for name, value in memory.module.state_dict().items():
        torch.testing.assert_close(disk.module.state_dict()[name], value, msg=name)
    np.testing.assert_allclose(
        disk.get_latent_representation(modality="atac"),
        memory.get_latent_representation(modality="atac"),
        rtol=1e-5,
        atol=1e-6,
    )
    cells = np.arange(0, padded.n_obs, 7)
    translated = [m.translate(source="rna", target="atac", indices=cells).X for m in (disk, memory)]
    np.testing.assert_allclose(*(sparse.csr_matrix(x).toarray() for x in translated), rtol=1e-5)
    disk.save(tmp_path / "minnet")
    again = MINNET.load(tmp_path / "minnet", adata=md.read_h5mu(path, backed=True))
    np.testing.assert_array_equal(
        again.get_latent_representation(modality="rna"),
        disk.get_latent_representation(modality="rna"),
    )


def _refit_fails(*args, **kwargs):
    raise AssertionError("load refitted what the file holds")


def test_minnet_from_disk_trains_on_a_subsample_of_the_cells(
    multiome_files, small_blocks, monkeypatch, tmp_path
):
    from scmint.model import _base

    monkeypatch.setattr(_base, "ON_DISK_FIT_CELLS", 200)
    padded, path = multiome_files
    model, on_disk = _labelled_from_disk(MINNET, path)
    # the training cells: 200 of the paired, labelled cells, drawn with the seed
    paired = np.logical_and.reduce(
        [padded.obs[scmint.data.indicator_key(m)].to_numpy() > 0 for m in ("rna", "atac")]
    )
    labelled = padded.obs["cell_type"].notna().to_numpy()
    expected = _base.fit_subsample(np.flatnonzero(paired & labelled), 200)
    np.testing.assert_array_equal(model._pool, expected)
    scaler = _base.make_feature_scaler("log", 1e4, 10.0).fit(padded["atac"].X[expected])
    np.testing.assert_allclose(
        model.module.scalers["atac"].mean.numpy(), scaler.mean_, rtol=1e-4, atol=1e-5
    )
    model.train(max_epochs=2, **QUIET)
    assert on_disk["atac"].isbacked
    z = model.get_latent_representation(modality="rna")  # every cell, from the file
    assert z.shape == (padded.n_obs, 32) and np.isfinite(z).all()
    translated = model.translate(source="rna", target="atac", indices=np.arange(10))
    assert translated.shape == (10, padded["atac"].n_vars)
    # load: the same training cells (not drawn again with today's seed), whose profiles
    # translate averages, and the saved scalers; nothing is subsampled or fitted again
    model.save(tmp_path / "minnet")
    scvi.settings.seed = 123
    monkeypatch.setattr("scmint.model.minnet._model.fit_subsample", _refit_fails)
    monkeypatch.setattr(_base, "make_feature_scaler", _refit_fails)
    loaded = MINNET.load(tmp_path / "minnet", adata=md.read_h5mu(path, backed=True))
    np.testing.assert_array_equal(loaded._pool, expected)
    again = loaded.translate(source="rna", target="atac", indices=np.arange(10))
    np.testing.assert_allclose(again.X.toarray(), translated.X.toarray(), rtol=1e-5)


@pytest.fixture
def simulated_files(tmp_path):
    """Simulated paired RNA + ATAC with two batches (gene coordinates: an MNN prior),
    padded, in memory and written to disk with the cells shuffled."""
    sim = scmint.data.simulate_multiome(
        n_cells=400, n_genes=300, n_peaks=600, paired_fraction=1.0, seed=0
    )
    padded = pad_mudata(sim)
    path = scmint.data.write_h5mu(padded, tmp_path / "sim.h5mu", shuffle_cells=True)
    return md.read_h5mu(path), path


def _sccross(mdata) -> SCCROSS:
    scvi.settings.seed = 0
    SCCROSS.setup_mudata(mdata, batch_key="batch", labels_key="cell_type")
    return SCCROSS(mdata, n_components=20, prior_components=10)


def test_sccross_from_disk_fits_what_memory_fits_and_reads_the_file(
    simulated_files, small_blocks, tmp_path
):
    padded, path = simulated_files
    on_disk = md.read_h5mu(path, backed=True)
    disk, memory = _sccross(on_disk), _sccross(padded)
    # transforms, prior, batch centres and the encoder inputs of every cell, as in memory
    for m in ("rna", "atac"):
        assert disk.prior_info_["gene_sources"] == memory.prior_info_["gene_sources"]
        np.testing.assert_allclose(disk.prior_[m], memory.prior_[m], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(
            disk.batch_centers_[m], memory.batch_centers_[m], rtol=1e-4, atol=1e-4
        )
        rows = np.flatnonzero(disk._registered_mask(m))
        codes = memory._cell_batch_codes(memory.adata.obs)[rows]
        np.testing.assert_allclose(
            disk._encoder_inputs(disk._registered(m)[rows], m, batch=codes),
            memory._encoder_inputs(memory._registered(m)[rows], m, batch=codes),
            rtol=1e-4,
            atol=1e-4,
        )
    disk.train(max_epochs=2, pretrain_epochs=1, **QUIET)
    assert on_disk.isbacked and on_disk["atac"].isbacked
    z = [disk.get_latent_representation(modality=m) for m in ("rna", "atac")]
    assert foscttm(*z) < 0.4  # paired cells: chance is 0.5
    _embeds_as_in_memory(disk, padded, tmp_path / "sccross", rtol=1e-4, atol=1e-5)


def test_sccross_from_disk_reads_its_subsample_once_and_reduces_each_cell_once(
    simulated_files, small_blocks, monkeypatch
):
    from scmint.data._backed import OnDiskRows

    padded, path = simulated_files
    reads = []
    to_memory = OnDiskRows.to_memory

    def counting_to_memory(self):
        reads.append(len(self))
        return to_memory(self)

    monkeypatch.setattr(OnDiskRows, "to_memory", counting_to_memory)
    model = _sccross(md.read_h5mu(path, backed=True))
    # one subsample per modality serves the PCA / LSI and the prior's gene matrices
    assert reads == [400, 400]
    expected = {}
    codes = model._cell_batch_codes(model.adata.obs)
    for m in ("rna", "atac"):
        rows = np.flatnonzero(model._registered_mask(m))
        expected[m] = model._encoder_inputs(model._registered(m)[rows], m, batch=codes[rows])

    reduced = []
    for m, transform in model.transforms_.items():
        original = transform.transform

        def counting_transform(x, original=original, m=m):
            reduced.append((m, x.shape[0]))
            return original(x)

        monkeypatch.setattr(transform, "transform", counting_transform)
    model._install_tables()  # what train does first: no cell is reduced again
    assert reduced == []
    for i, m in enumerate(("rna", "atac")):
        rows = np.flatnonzero(model._registered_mask(m))
        table = getattr(model.module, f"_inputs_{i}").numpy()
        np.testing.assert_array_equal(table[rows], expected[m])
    model._install_tables()  # a second train reduces again, with the same result
    assert sum(n for _, n in reduced) == 800


def test_sccross_from_disk_fits_its_prior_on_a_subsample(
    simulated_files, small_blocks, monkeypatch, tmp_path
):
    from scmint.model import _base

    monkeypatch.setattr(_base, "ON_DISK_FIT_CELLS", 150)
    padded, path = simulated_files
    model = _sccross(md.read_h5mu(path, backed=True))
    for m in ("rna", "atac"):
        known = np.isfinite(model.prior_[m]).all(axis=1)
        measured = model._registered_mask(m)
        # 150 drawn cells of each modality have a prior, the other measured cells none
        assert known[measured].sum() == 150 and not np.isnan(model.prior_[m][~measured]).any()
    model.train(max_epochs=2, pretrain_epochs=1, **QUIET)
    losses = model.history["train_loss"].to_numpy(dtype=float)
    assert np.isfinite(losses).all()
    # load takes the transforms and the prior from the file instead of refitting them
    model.save(tmp_path / "sccross")
    for name in ("mnn_prior", "fit_subsample", "SCCROSS._fit_transforms"):
        monkeypatch.setattr(f"scmint.model.sccross._model.{name}", _refit_fails)
    loaded = SCCROSS.load(tmp_path / "sccross", adata=md.read_h5mu(path, backed=True))
    for m in ("rna", "atac"):
        np.testing.assert_array_equal(loaded.prior_[m], model.prior_[m])
    np.testing.assert_allclose(
        loaded.get_latent_representation(modality="atac"),
        model.get_latent_representation(modality="atac"),
        rtol=1e-5,
        atol=1e-6,
    )


def test_padding_needs_the_data_in_memory(multiome_files):
    _, path = multiome_files
    with pytest.raises(ValueError, match="backed=True.*padding and query cells"):
        pad_mudata(md.read_h5mu(path, backed=True))


def test_column_stored_matrix_on_disk_is_refused_with_how_to_fix(tmp_path):
    x = sparse.random(50, 10, density=0.3, format="csc", random_state=0, dtype=np.float32)
    on_disk = ad.read_h5ad(_write(ad.AnnData(X=x), tmp_path / "csc.h5ad"), backed="r").X
    with pytest.raises(ValueError, match="column by column.*csr_matrix"):
        OnDiskRows(on_disk)


def test_block_sampler_on_several_processes_splits_the_blocks():
    rows = np.arange(1000)
    ranks = [
        BlockShuffleBatchSampler(rows, 100, 32, num_replicas=3, rank=r, seed=4) for r in range(3)
    ]
    for sampler in ranks:
        sampler.set_epoch(2)
    drawn = [np.concatenate(list(s)) for s in ranks]
    assert {len(list(s)) for s in ranks} == {len(ranks[0])} and len(ranks[0]) == 11
    assert all(len(d) == 334 for d in drawn)  # ceil(1000 / 3), shares wrapped around
    blocks = [set(rows[d] // 100) for d in drawn]
    assert not (blocks[0] & blocks[1]) and not (blocks[1] & blocks[2])  # own blocks only
    assert set.union(*blocks) == set(range(10))
    again = BlockShuffleBatchSampler(rows, 100, 32, num_replicas=3, rank=0, seed=4)
    again.set_epoch(2)
    assert np.array_equal(np.concatenate(list(again)), drawn[0])  # the same on every call
    again.set_epoch(3)
    assert not np.array_equal(np.concatenate(list(again)), drawn[0])  # a new order each epoch
