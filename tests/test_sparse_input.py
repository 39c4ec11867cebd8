"""Sparse first layers: the same outputs and gradients as densified minibatches."""

import numpy as np
import pytest
import torch

from scmint.data import CSRRows
from scmint.nn import FeatureScalerLayer, SparseInputLinear
from scmint.pp import FeatureScaler

pytestmark = pytest.mark.usefixtures("one_thread")

SCALERS = {
    "log": {"log": True, "target_sum": 1e4},
    "clr": {"clr": "feature"},
    "none": {},
}


def _rows(adata, n=64):
    """Rows 0..n of a modality as CSRRows plus their indices."""
    return CSRRows.from_matrix(adata.X), torch.arange(n)


@pytest.mark.parametrize("normalization", sorted(SCALERS))
@pytest.mark.parametrize("max_value", [10.0, 1.0, None])
def test_sparse_minibatch_equals_dense(bmmc_multiome, normalization, max_value):
    """``s(x) W + b`` from CSR rows equals the dense computation, values and gradients.

    ``max_value=1`` clips many scaled values (including those of the zeros), which the
    folded form must reproduce.
    """
    atac = bmmc_multiome.mod["atac"]
    scaler = FeatureScaler(max_value=max_value, **SCALERS[normalization]).fit(atac)
    layer_scaler = FeatureScalerLayer.from_scaler(scaler, normalization)
    rows, index = _rows(atac)
    dense, csr = rows.dense_rows(index), rows.sparse_rows(index)
    assert csr.layout == torch.sparse_csr and (dense == 0).float().mean() > 0.5
    torch.manual_seed(0)
    layer = SparseInputLinear(atac.n_vars, 16)
    out_dense = layer(dense, layer_scaler)
    grads_dense = torch.autograd.grad(out_dense.pow(2).sum(), [layer.weight, layer.bias])
    out_sparse = layer(csr, layer_scaler)
    grads_sparse = torch.autograd.grad(out_sparse.pow(2).sum(), [layer.weight, layer.bias])
    torch.testing.assert_close(out_sparse, out_dense, rtol=1e-4, atol=1e-4)
    for a, b in zip(grads_sparse, grads_dense, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-3)
    # and the dense path is a plain affine map of the scaled rows
    expected = layer_scaler(dense) @ layer.weight + layer.bias
    torch.testing.assert_close(out_dense, expected)


def test_empty_rows_and_no_scaler(bmmc_multiome):
    """Rows without non-zeros get the bias (no scaler) or the scaled zero row (scaler)."""
    x = bmmc_multiome.mod["atac"].X[:8].tolil()
    x[3] = 0
    rows = CSRRows.from_matrix(x.tocsr())
    index = torch.arange(8)
    layer = SparseInputLinear(x.shape[1], 4)
    torch.testing.assert_close(layer(rows.sparse_rows(index))[3], layer.bias.detach())
    torch.testing.assert_close(
        layer(rows.sparse_rows(index)), layer(rows.dense_rows(index)), rtol=1e-5, atol=1e-5
    )


def test_loads_a_linear_state_dict_transposed():
    """A state dict saved with a ``torch.nn.Linear`` first layer loads (transposed)."""
    linear = torch.nn.Linear(30, 7)
    layer = SparseInputLinear(30, 7)
    layer.load_state_dict(linear.state_dict())
    x = torch.rand(5, 30)
    torch.testing.assert_close(layer(x), linear(x))


def test_minnet_trains_on_sparse_peak_minibatches(bmmc_multiome):
    """MINNET trains with the density rule's minibatch formats; sparse and dense embed alike.

    (The starter's 600 selected peaks are 14 % non-zero, above the rule's 10 %, so this
    training run is dense; the sparse path is exercised by the embedding comparison.)
    """
    import scmint.model
    from scmint.data import data_key, pad_mudata
    from scmint.model.minnet import SiamesePairDataset, SiamesePairSampler

    mdata = pad_mudata(bmmc_multiome)
    scmint.model.MINNET.setup_mudata(mdata, labels_key="cell_type")
    net = scmint.model.MINNET(mdata, n_hidden=32)
    net.train(max_epochs=1, enable_progress_bar=False)
    atac = mdata.mod["atac"].X
    dataset = SiamesePairDataset(
        [mdata.mod[m].X for m in net.modalities], np.zeros(mdata.n_obs), net.modalities
    )
    density = dict(zip(net.modalities, (m.density for m in dataset.matrices), strict=True))
    assert dataset.sparse == [density[m] <= dataset.SPARSE_MAX_DENSITY for m in net.modalities]
    assert 0 < density["atac"] < 1
    rows = CSRRows.from_matrix(atac)
    index = torch.arange(40)
    net.module.eval()
    with torch.no_grad():
        sparse_z = net.module.embed(rows.sparse_rows(index), "atac")
        dense_z = net.module.embed(rows.dense_rows(index), "atac")
    torch.testing.assert_close(sparse_z, dense_z, rtol=1e-4, atol=1e-4)
    # one training minibatch of pairs, sparse and dense: the same loss and gradients
    pool = net._pool
    matrices = [mdata.mod[m].X[pool] for m in net.modalities]
    labels = net._pool_labels
    sampler = SiamesePairSampler(np.arange(len(pool)), batch_size=64, seed=0)
    pairs = next(iter(sampler))
    losses, grads = [], []
    for sparse_inputs in (True, False):
        data = SiamesePairDataset(matrices, labels, net.modalities, sparse_inputs=sparse_inputs)
        batch = data[pairs]
        assert batch[data_key("atac")].layout == (
            torch.sparse_csr if sparse_inputs else torch.strided
        )
        net.module.train()
        _, _, out = net.module(batch)
        losses.append(out.loss)
        weight = net.module.encoders["atac"].linear.weight
        grads.append(torch.autograd.grad(out.loss, weight)[0])
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-5)
