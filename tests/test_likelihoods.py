"""Count likelihoods: scvi-tools' values and gradients, log-gamma terms on non-zeros only."""

import numpy as np
import pytest
import torch
from scvi.distributions._negative_binomial import log_nb_positive, log_zinb_positive

from scmint.nn._likelihoods import BatchLikelihoodDecoder, nb_log_prob, zinb_log_prob


@pytest.fixture
def atac_counts(bmmc_multiome) -> torch.Tensor:
    """128 cells x 600 peaks of real ATAC counts (mostly zeros)."""
    x = bmmc_multiome.mod["atac"].X[:128]
    return torch.as_tensor(np.asarray(x.todense()), dtype=torch.float32)


def _values_and_grads(fn, x, zero_inflated):
    torch.manual_seed(0)
    n, g = x.shape
    eta = torch.randn(n, g, requires_grad=True)
    log_theta = torch.randn(1, g, requires_grad=True)
    pi = torch.randn(n, g, requires_grad=True)
    mu = torch.softmax(eta, -1) * x.sum(1, keepdim=True).clamp(min=1) + 1e-7
    theta = torch.exp(log_theta).expand(n, g)
    value = fn(x, mu, theta, pi) if zero_inflated else fn(x, mu, theta)
    params = [eta, log_theta, pi] if zero_inflated else [eta, log_theta]
    return value, torch.autograd.grad(value.sum(), params)


@pytest.mark.parametrize(
    ("ours", "scvi_fn", "zero_inflated"),
    [(nb_log_prob, log_nb_positive, False), (zinb_log_prob, log_zinb_positive, True)],
)
def test_count_log_prob_equals_scvi_tools(atac_counts, ours, scvi_fn, zero_inflated):
    assert (atac_counts == 0).float().mean() > 0.5  # the sparse case the shortcut is for
    v1, g1 = _values_and_grads(ours, atac_counts, zero_inflated)
    v2, g2 = _values_and_grads(scvi_fn, atac_counts, zero_inflated)
    torch.testing.assert_close(v1, v2, rtol=1e-5, atol=1e-4)
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("likelihood", ["nb", "zinb", "normal", "ziln", "bernoulli"])
def test_one_batch_broadcasts_like_the_gathered_parameters(likelihood, atac_counts):
    """With one batch the per-batch parameters broadcast; with two they are gathered."""
    torch.manual_seed(1)
    one = BatchLikelihoodDecoder(8, atac_counts.shape[1], n_batch=1, likelihood=likelihood)
    two = BatchLikelihoodDecoder(8, atac_counts.shape[1], n_batch=2, likelihood=likelihood)
    with torch.no_grad():
        for name, p in one.named_parameters():
            q = dict(two.named_parameters())[name]
            q.copy_(p.expand_as(q) if p.shape[0] == 1 and q.dim() == 2 else p)
            if q.dim() == 2 and q.shape[0] == 2:
                q[1] += 1.0  # batch 1 differs; only batch 0 is used below
    u = torch.randn(atac_counts.shape[0], 8)
    b = torch.zeros(atac_counts.shape[0], dtype=torch.long)
    lib = atac_counts.sum(1, keepdim=True).clamp(min=1)
    target = (atac_counts > 0).float() if likelihood == "bernoulli" else atac_counts
    a = one(u, b, lib).log_prob(target)
    c = two(u, b, lib).log_prob(target)
    assert a.shape == target.shape
    torch.testing.assert_close(a, c)


@pytest.mark.parametrize("n_batch", [1, 3])
def test_fused_nb_nll_matches_the_distribution(n_batch, atac_counts):
    """The fused NB NLL: value and gradients of -log_prob(x).mean() of the "nb" head."""
    x = atac_counts[:, :200].double()
    x[0] = 0  # a cell without counts in these peaks: library 0
    torch.manual_seed(0)
    dec = BatchLikelihoodDecoder(8, x.shape[1], n_batch=n_batch, likelihood="nb").double()
    with torch.no_grad():  # away from the initial values (scale 1, bias 0, theta 1)
        for p in (dec.scale_logit, dec.bias, dec.log_theta):
            p.normal_()
    u = torch.randn(x.shape[0], 8, dtype=torch.double)
    batch = torch.randint(0, n_batch, (x.shape[0],))
    library = x.sum(1, keepdim=True)
    params = list(dec.parameters())
    fused = dec.negative_log_likelihood(u, batch, x, library)
    reference = -dec(u, batch, library).log_prob(x).mean()
    torch.testing.assert_close(fused, reference, rtol=1e-10, atol=1e-12)
    fused_grads = torch.autograd.grad(fused, params)
    for a, b in zip(fused_grads, torch.autograd.grad(reference, params), strict=True):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-12)


def test_fused_nb_nll_passes_gradcheck():
    from scmint.nn._likelihoods import softmax_nb_nll

    torch.manual_seed(1)
    n, g, n_batch = 12, 9, 2
    x = (torch.rand(n, g) < 0.4).double() * torch.randint(1, 7, (n, g)).double()
    v = torch.randn(n, g, dtype=torch.double, requires_grad=True)
    scale = (torch.rand(n_batch, g, dtype=torch.double) + 0.5).requires_grad_()
    bias = torch.randn(n_batch, g, dtype=torch.double, requires_grad=True)
    theta = (torch.rand(n_batch, g, dtype=torch.double) * 3 + 0.1).requires_grad_()
    batch = torch.arange(n) % n_batch
    library = x.sum(1, keepdim=True).clamp(min=1)
    assert torch.autograd.gradcheck(
        lambda *p: softmax_nb_nll(*p, batch, library, x), (v, scale, bias, theta)
    )
