"""The one data path (scmint.data._tensors): same minibatches as scvi-tools', same outputs."""

import numpy as np
import pytest
import scvi
import torch
from scipy import sparse
from scvi.dataloaders import DataSplitter

import scmint
from scmint.data import CSRRows, RegisteredDataSplitter, RegisteredTensors, row_batches
from scmint.model import CLUE, CONAAE, MINNET, SCCROSS

pytestmark = pytest.mark.usefixtures("one_thread")

N_CELLS = 200


@pytest.fixture
def mosaic(_pbmc_mosaic):
    """A padded mosaic (paired, RNA-only and ADT-only cells), sparse counts."""
    mdata = _pbmc_mosaic[np.r_[0:80, 800:860, 1200:1260]].copy()
    return scmint.data.pad_mudata(mdata)


def test_csr_rows_cut_the_same_rows_as_scipy(bmmc_multiome):
    x = sparse.csr_matrix(bmmc_multiome.mod["atac"].X, dtype=np.float32)
    x[3] = 0  # an empty row
    x.eliminate_zeros()
    csr = CSRRows.from_matrix(x)
    rows = np.array([5, 3, 3, 0, x.shape[0] - 1, 17])  # repeats, an empty row, any order
    t = torch.as_tensor(rows)
    np.testing.assert_array_equal(csr.dense_rows(t).numpy(), x[rows].toarray())
    np.testing.assert_array_equal(csr.sparse_rows(t).to_dense().numpy(), x[rows].toarray())
    assert csr.dense_rows(torch.as_tensor([], dtype=torch.int64)).shape == (0, x.shape[1])


def test_row_batches_cover_sparse_and_dense_rows(bmmc_multiome):
    x = sparse.csr_matrix(bmmc_multiome.mod["rna"].X)
    blocks = list(row_batches(x, 64))
    assert [b.shape[0] for _, b in blocks] == [64] * (x.shape[0] // 64) + [x.shape[0] % 64]
    np.testing.assert_array_equal(
        np.vstack([b.numpy() for _, b in blocks]), x.toarray().astype(np.float32)
    )
    dense = x.toarray()
    again = np.vstack([b.numpy() for _, b in row_batches(dense, 100)])
    np.testing.assert_array_equal(again, dense.astype(np.float32))


def _iterate(loader) -> list[dict[str, np.ndarray]]:
    return [{k: v.numpy() for k, v in batch.items()} for batch in loader]


@pytest.mark.parametrize("model", [CLUE, CONAAE, SCCROSS])
def test_same_minibatches_as_scvi_tools(model, mosaic):
    """Split, order under a seed, keys, dtypes and values equal scvi-tools' DataSplitter."""
    model.setup_mudata(mosaic, batch_key="batch")
    manager = model(mosaic)._get_most_recent_anndata_manager(mosaic)
    scvi.settings.seed = 3
    ours = RegisteredDataSplitter(manager, train_size=0.8, batch_size=32)
    theirs = DataSplitter(manager, train_size=0.8, batch_size=32)
    ours.setup()
    theirs.setup()
    np.testing.assert_array_equal(ours.train_idx, theirs.train_idx)
    np.testing.assert_array_equal(ours.val_idx, theirs.val_idx)
    for name in ("train_dataloader", "val_dataloader"):
        torch.manual_seed(11)
        a = _iterate(getattr(ours, name)())
        torch.manual_seed(11)
        b = _iterate(getattr(theirs, name)())
        assert len(a) == len(b) > 1
        for x, y in zip(a, b, strict=True):
            assert x.keys() == y.keys()
            for key in x:
                assert x[key].dtype == y[key].dtype, key
                np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def test_training_through_the_data_path_equals_scvi_tools(mosaic, monkeypatch):
    """Same minibatches, same updates: the trained weights are identical."""
    CONAAE.setup_mudata(mosaic, batch_key="batch", labels_key="cell_type")
    weights = []
    for splitter in (RegisteredDataSplitter, DataSplitter):
        monkeypatch.setattr(CONAAE, "_data_splitter_cls", splitter)
        scvi.settings.seed = 0
        net = CONAAE(mosaic, n_hidden=(32,), n_latent=8)
        net.train(max_epochs=2, batch_size=32, enable_progress_bar=False)
        weights.append({k: v.clone() for k, v in net.module.state_dict().items()})
    for key in weights[0]:
        torch.testing.assert_close(weights[0][key], weights[1][key], rtol=0, atol=0, msg=key)


def test_registered_tensors_hold_sparse_matrices_once(mosaic):
    CLUE.setup_mudata(mosaic, batch_key="batch")
    manager = CLUE(mosaic)._get_most_recent_anndata_manager(mosaic)
    tensors = RegisteredTensors(manager)
    sparse_fields = [k for k, f in tensors.fields.items() if isinstance(f, CSRRows)]
    assert sorted(sparse_fields) == ["X_adt", "X_rna"]
    x = manager.get_from_registry("X_rna")
    assert tensors.fields["X_rna"].values.numel() == sparse.csr_matrix(x).nnz
    batch = tensors.batch([4, 0, 9])
    np.testing.assert_array_equal(batch["X_rna"].numpy(), x[[4, 0, 9]].toarray())


def test_sparse_keys_hand_out_csr_minibatches_of_sparse_matrices(mosaic):
    """Matrices named in sparse_keys come as CSR (same values); dense ones stay dense."""
    CLUE.setup_mudata(mosaic, batch_key="batch")
    manager = CLUE(mosaic)._get_most_recent_anndata_manager(mosaic)
    dense = RegisteredTensors(manager)
    x_adt = manager.get_from_registry("X_adt")
    assert dense.fields["X_adt"].density > 0.1  # proteins: most entries non-zero
    tensors = RegisteredTensors(manager, sparse_keys=["X_rna", "X_adt", "batch"])
    assert tensors.sparse_keys == {"X_rna"}  # only sparse matrices at <= 10 % non-zeros
    rows = [7, 0, 150, 7]
    batch, reference = tensors.batch(rows), dense.batch(rows)
    assert batch["X_rna"].layout == torch.sparse_csr
    assert batch["X_adt"].layout == torch.strided
    np.testing.assert_array_equal(batch["X_rna"].to_dense().numpy(), reference["X_rna"].numpy())
    np.testing.assert_array_equal(batch["X_adt"].numpy(), np.asarray(x_adt[rows].todense()))
    splitter = RegisteredDataSplitter(manager, train_size=0.8, batch_size=32, sparse_keys=["X_rna"])
    splitter.setup()
    first = next(iter(splitter.train_dataloader()))
    assert first["X_rna"].layout == torch.sparse_csr


@pytest.mark.parametrize("model", [CLUE, CONAAE, SCCROSS, MINNET])
def test_inference_through_the_data_path_matches_a_dense_pass(model, mosaic):
    """Embeddings from sparse matrices (CSR tensors) equal those of the same rows dense."""
    kwargs = {"labels_key": "cell_type"} if model is MINNET else {}
    model.setup_mudata(mosaic, **kwargs)
    net = model(mosaic)
    net.train(max_epochs=1, enable_progress_bar=False)
    rna = mosaic.mod["rna"].X
    has = mosaic.obs["has_rna"].to_numpy().astype(bool)
    z_sparse = net._embed_matrix(sparse.csr_matrix(rna)[has], "rna", batch_size=50)
    z_dense = net._embed_matrix(np.asarray(rna[has].todense()), "rna", batch_size=1000)
    np.testing.assert_allclose(z_sparse, z_dense, rtol=1e-5, atol=1e-5)
    latent = net.get_latent_representation(modality="rna", missing="nan")
    np.testing.assert_allclose(latent[has], z_sparse, rtol=1e-5, atol=1e-5)
