"""Likelihood heads with batch-specific scale, bias and dispersion (scCross / GLUE decoders).

A decoder maps a latent code to the parameters of a distribution over a modality's
original features. The linear part is shared by all batches; each batch ``b`` has its
own positive scale ``alpha_b = softplus(.)``, bias ``beta_b`` and, where the likelihood
has one, dispersion (or standard deviation, or zero-inflation) per feature: the batch
correction of scCross and GLUE. Count likelihoods reuse scvi-tools' distributions, with
a ``log_prob`` that evaluates the log-gamma terms on the non-zero counts only
(:func:`nb_log_prob`, :func:`zinb_log_prob`): the same values, a fraction of the work
on sparse data such as ATAC peaks.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from scvi.distributions import NegativeBinomial as _ScviNegativeBinomial
from scvi.distributions import ZeroInflatedNegativeBinomial as _ScviZINB
from torch import nn
from torch.distributions import Bernoulli, Distribution, LogNormal, Normal, constraints

from ._sparse import as_dense, csr_row_of, is_sparse_csr

Likelihood = Literal["nb", "zinb", "ziln", "normal", "bernoulli"]
LIKELIHOODS: tuple[str, ...] = ("nb", "zinb", "ziln", "normal", "bernoulli")
COUNT_LIKELIHOODS: tuple[str, ...] = ("nb", "zinb")
"""Likelihoods that need non-negative integer counts and a library size."""
EPS = 1e-7


def _nonzero_lgamma_terms(
    x: torch.Tensor, theta: torch.Tensor, out: torch.Tensor, eps: float
) -> torch.Tensor:
    """``out`` plus ``lgamma(x + theta) - lgamma(theta) - lgamma(x + 1)`` where ``x > eps``.

    The three terms cancel at ``x = 0``, so on a CPU they are evaluated only at the
    non-zero entries (a few percent of a peak matrix); on an accelerator, where a
    dense elementwise pass is cheaper than gathering, everywhere.
    """
    theta = theta.expand_as(x)
    if x.device.type != "cpu":
        terms = torch.lgamma(x + theta) - torch.lgamma(theta) - torch.lgamma(x + 1)
        return out + torch.where(x > eps, terms, torch.zeros_like(terms))
    nz = torch.nonzero(x > eps, as_tuple=True)
    xv, tv = x[nz], theta[nz]
    terms = torch.lgamma(xv + tv) - torch.lgamma(tv) - torch.lgamma(xv + 1)
    return out.index_put(nz, terms, accumulate=True)


def nb_log_prob(
    x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor, eps: float = 1e-8
) -> torch.Tensor:
    """Negative binomial log-likelihood, elementwise; scvi-tools' ``log_nb_positive`` values.

    ``log p(x) = theta (log(theta + eps) - log(theta + mu + eps))
    + x (log(mu + eps) - log(theta + mu + eps))
    + lgamma(x + theta) - lgamma(theta) - lgamma(x + 1)``,
    the last line only where ``x > 0`` (it is 0 at ``x = 0``).

    Parameters
    ----------
    x
        Counts, ``(n, G)``.
    mu
        Means, ``(n, G)``.
    theta
        Inverse dispersions, broadcastable to ``(n, G)``.
    eps
        Numerical stability constant (scvi-tools': 1e-8).
    """
    log_theta_mu = torch.log(theta + mu + eps)
    out = theta * (torch.log(theta + eps) - log_theta_mu)
    if x.device.type != "cpu":
        out = out + x * (torch.log(mu + eps) - log_theta_mu)
        return _nonzero_lgamma_terms(x, theta, out, eps)
    # on a CPU every term with a factor x (and the log-gamma terms) only at the non-zeros
    nz = torch.nonzero(x > eps, as_tuple=True)
    xv, tv = x[nz], theta.expand_as(x)[nz]
    terms = (
        xv * (torch.log(mu[nz] + eps) - log_theta_mu[nz])
        + torch.lgamma(xv + tv)
        - torch.lgamma(tv)
        - torch.lgamma(xv + 1)
    )
    return out.index_put(nz, terms, accumulate=True)


def zinb_log_prob(
    x: torch.Tensor,
    mu: torch.Tensor,
    theta: torch.Tensor,
    zi_logits: torch.Tensor,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Zero-inflated NB log-likelihood, elementwise; scvi-tools' ``log_zinb_positive`` values.

    With ``a = -pi + theta (log(theta + eps) - log(theta + mu + eps))`` (``pi`` the
    zero-inflation logits): ``softplus(a) - softplus(-pi)`` at ``x = 0``, else
    ``a - softplus(-pi) + x (log(mu + eps) - log(theta + mu + eps))
    + lgamma(x + theta) - lgamma(theta) - lgamma(x + 1)``.
    """
    softplus_pi = F.softplus(-zi_logits)
    log_theta_mu = torch.log(theta + mu + eps)
    a = -zi_logits + theta * (torch.log(theta + eps) - log_theta_mu)
    zero = F.softplus(a) - softplus_pi
    nonzero = a - softplus_pi + x * (torch.log(mu + eps) - log_theta_mu)
    out = torch.where(x < eps, zero, torch.where(x > eps, nonzero, torch.zeros_like(nonzero)))
    return _nonzero_lgamma_terms(x, theta, out, eps)


def _rows_of(parameter: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    """Per-row values of a ``(B, G)`` per-batch tensor: the row itself when ``B = 1``."""
    return parameter if parameter.shape[0] == 1 else parameter.index_select(0, batch)


def _per_batch_colsum(values: torch.Tensor, batch: torch.Tensor, n_batch: int) -> torch.Tensor:
    """``(B, G)`` column sums of ``(n, G)`` ``values`` over the rows of each batch."""
    if n_batch == 1:
        return values.sum(0, keepdim=True)
    return values.new_zeros((n_batch, values.shape[1])).index_add_(0, batch, values)


class _SoftmaxNBNLL(torch.autograd.Function):
    """Summed negative binomial NLL of counts under a softmax mean, forward and backward fused.

    With ``eta = a_b * v + c_b`` (per-batch ``a``, ``c``), ``mu = softmax(eta) * l + EPS``
    and ``t = theta_b + mu + eps``, the log-likelihood of one entry is
    ``theta (log(theta + eps) - log t) + x (log(mu + eps) - log t) + lgamma(x + theta)
    - lgamma(theta) - lgamma(x + 1)`` (:func:`nb_log_prob`), its terms in ``x`` only at the
    non-zero counts. The gradients are written out:
    ``d/d mu = -theta / t + x (1 / (mu + eps) - 1 / t)``; through the softmax
    ``d/d eta = q - p * sum_j q_j`` with ``q = l p * d/d mu``; ``d/d v = a_b * d/d eta``,
    ``d/d a_b`` and ``d/d c_b`` the per-batch column sums of ``v * d/d eta`` and
    ``d/d eta``; ``d/d theta = log(theta + eps) + theta / (theta + eps) - log t
    - (theta + x) / t + psi(x + theta) - psi(theta)``. Autograd of the elementwise
    formula makes about three times as many passes over the cells x features block,
    which is what a CLUE or scCross step over 25k peaks spends most of its time on.
    """

    @staticmethod
    def forward(ctx, v, a, c, theta, batch, library, rows, cols, xv, eps):  # noqa: D102
        n_batch = a.shape[0]
        lp = torch.softmax(torch.addcmul(_rows_of(c, batch), _rows_of(a, batch), v), dim=1)
        lp.mul_(library)  # l * softmax(eta) = mu - EPS
        t = lp + _rows_of(theta + (EPS + eps), batch)
        col_log_t = _per_batch_colsum(torch.log(t), batch, n_batch)
        counts = torch.bincount(batch, minlength=n_batch).to(v.dtype).view(-1, 1)
        log_theta = torch.log(theta + eps)
        dense = (theta * (counts * log_theta - col_log_t)).sum()
        tv = theta[batch[rows], cols]
        mu_nz = lp[rows, cols] + EPS
        t_nz = t[rows, cols]
        sparse_terms = (
            xv * (torch.log(mu_nz + eps) - torch.log(t_nz))
            + torch.lgamma(xv + tv)
            - torch.lgamma(tv)
            - torch.lgamma(xv + 1)
        ).sum()
        ctx.save_for_backward(v, a, theta, batch, library, lp, t, col_log_t, counts, rows, cols)
        ctx.eps = eps
        ctx.nz = (xv, tv, mu_nz, t_nz)
        return -(dense + sparse_terms)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        v, a, theta, batch, library, lp, t, col_log_t, counts, rows, cols = ctx.saved_tensors
        xv, tv, mu_nz, t_nz = ctx.nz
        eps = ctx.eps
        n_batch = a.shape[0]
        scale = -grad  # the output is the negative log-likelihood
        # d/d mu: -theta / t everywhere, x (1 / (mu + eps) - 1 / t) at the non-zeros
        dmu = torch.div(_rows_of(theta, batch), t).neg_()
        col_dmu = _per_batch_colsum(dmu, batch, n_batch)  # sum of -theta / t
        dmu.index_put_((rows, cols), xv / (mu_nz + eps) - xv / t_nz, accumulate=True)
        # through mu = l softmax(eta) + EPS
        q = dmu.mul_(lp)
        # p * sum(q) = lp * sum(q) / l; a row with l = 0 has lp = q = 0 (no division by 0)
        safe_library = torch.where(library > 0, library, torch.ones_like(library))
        q.addcmul_(lp, -(q.sum(1, keepdim=True) / safe_library))  # d/d eta
        da = _per_batch_colsum(q * v, batch, n_batch) * scale
        dc = _per_batch_colsum(q, batch, n_batch) * scale
        dv = q.mul_(_rows_of(a * scale, batch))
        nz_batch = batch[rows]
        dtheta = (
            counts * (torch.log(theta + eps) + theta / (theta + eps)) - col_log_t + col_dmu
        ).index_put_(
            (nz_batch, cols),
            torch.digamma(xv + tv) - torch.digamma(tv) - xv / t_nz,
            accumulate=True,
        ) * scale
        return dv, da, dc, dtheta, None, None, None, None, None, None


def softmax_nb_nll(
    v: torch.Tensor,
    scale: torch.Tensor,
    bias: torch.Tensor,
    theta: torch.Tensor,
    batch: torch.Tensor,
    library: torch.Tensor,
    x: torch.Tensor,
    eps: float = 1e-8,
) -> torch.Tensor:
    """``-sum log NB(x | softmax(scale_b * v + bias_b) * library + EPS, theta_b)``, fused.

    The value and gradients of ``-nb_log_prob(x, mu, theta_b).sum()`` for the mean of
    :class:`BatchLikelihoodDecoder`'s ``"nb"`` head, in a fraction of autograd's passes
    over the cells x features block (:class:`_SoftmaxNBNLL` has the formulas).

    Parameters
    ----------
    v
        Linear decoder output, ``(n, G)``.
    scale, bias, theta
        Per-batch positive scale, bias and inverse dispersion, ``(B, G)``.
    batch
        Batch of each row, ``(n,)`` integers in ``[0, B)``.
    library
        Library size of each row, ``(n, 1)``.
    x
        Counts, ``(n, G)``, dense or sparse CSR (only the non-zeros are read).
    eps
        scvi-tools' constant of the negative binomial (1e-8).
    """
    batch = batch.long().view(-1)
    if scale.shape[0] == 1:
        batch = torch.zeros_like(batch)
    if is_sparse_csr(x):
        rows, cols, xv = csr_row_of(x), x.col_indices(), x.values()
        keep = xv > eps  # stored zeros, if any
        rows, cols, xv = rows[keep], cols[keep], xv[keep]
    else:
        rows, cols = torch.nonzero(x > eps, as_tuple=True)
        xv = x[rows, cols]
    return _SoftmaxNBNLL.apply(
        v, scale, bias, theta, batch, library.view(-1, 1), rows, cols, xv, eps
    )


class NegativeBinomial(_ScviNegativeBinomial):
    """:class:`scvi.distributions.NegativeBinomial` with :func:`nb_log_prob` as ``log_prob``."""

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return nb_log_prob(value, self.mu, self.theta, eps=self._eps)


class ZeroInflatedNegativeBinomial(_ScviZINB):
    """:class:`scvi.distributions.ZeroInflatedNegativeBinomial` with :func:`zinb_log_prob`."""

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return zinb_log_prob(value, self.mu, self.theta, self.zi_logits, eps=1e-8)


class ZeroInflatedLogNormal(Distribution):
    """Zero-inflated log-normal: ``0`` with probability ``pi``, else ``LogNormal(loc, scale)``.

    For non-negative continuous data with many exact zeros (e.g. methylation rates).

    Parameters
    ----------
    loc
        Mean of ``log x`` for the non-zero part.
    scale
        Standard deviation of ``log x`` (positive).
    zi_logits
        Logits of the zero probability ``pi``.
    """

    arg_constraints = {
        "loc": constraints.real,
        "scale": constraints.positive,
        "zi_logits": constraints.real,
    }
    support = constraints.nonnegative

    def __init__(
        self, loc: torch.Tensor, scale: torch.Tensor, zi_logits: torch.Tensor, validate_args=False
    ) -> None:
        self.loc, self.scale, self.zi_logits = torch.broadcast_tensors(loc, scale, zi_logits)
        super().__init__(self.loc.shape, validate_args=validate_args)

    @property
    def zi_probs(self) -> torch.Tensor:
        """Probability of an exact zero."""
        return torch.sigmoid(self.zi_logits)

    @property
    def mean(self) -> torch.Tensor:
        return (1.0 - self.zi_probs) * torch.exp(self.loc + 0.5 * self.scale**2)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Log density of ``value`` (log-probability of the zero mass at 0)."""
        positive = value > 0
        safe = torch.where(positive, value, torch.ones_like(value))
        log_nonzero = -F.softplus(self.zi_logits) + LogNormal(self.loc, self.scale).log_prob(safe)
        log_zero = -F.softplus(-self.zi_logits)
        return torch.where(positive, log_nonzero, log_zero)

    def sample(self, sample_shape: torch.Size | tuple = ()) -> torch.Tensor:
        sample_shape = torch.Size(sample_shape)
        with torch.no_grad():
            x = LogNormal(self.loc, self.scale).sample(sample_shape)
            zero = torch.bernoulli(self.zi_probs.expand_as(x))
            return torch.where(zero > 0, torch.zeros_like(x), x)


class BatchLikelihoodDecoder(nn.Module):
    """Linear decoder to a likelihood with batch-specific scale, bias and dispersion.

    ``v = Linear(u)`` (shared); per batch ``b``: ``eta = softplus(s_b) * v + beta_b``.

    - ``"nb"``: mean ``softmax(eta) * library``, dispersion ``theta = exp(log_theta_b)``
      (:class:`scvi.distributions.NegativeBinomial`);
    - ``"zinb"``: as ``"nb"`` with zero-inflation logits per batch
      (:class:`scvi.distributions.ZeroInflatedNegativeBinomial`);
    - ``"ziln"``: log-scale mean ``eta``, log-scale std ``softplus(std_b)``, zero-inflation
      logits per batch (:class:`ZeroInflatedLogNormal`);
    - ``"normal"``: mean ``eta``, std ``softplus(std_b)`` (:class:`torch.distributions.Normal`);
    - ``"bernoulli"``: logits ``eta`` (:class:`torch.distributions.Bernoulli`).

    Parameters
    ----------
    n_input
        Latent dimension.
    n_output
        Number of features.
    n_batch
        Number of batches (at least 1).
    likelihood
        One of :data:`LIKELIHOODS`.
    """

    def __init__(
        self, n_input: int, n_output: int, n_batch: int = 1, likelihood: Likelihood = "nb"
    ) -> None:
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}.")
        if n_batch < 1:
            raise ValueError(f"n_batch must be >= 1, got {n_batch}.")
        self.likelihood = likelihood
        self.n_output = int(n_output)
        self.linear = nn.Linear(int(n_input), self.n_output)
        shape = (int(n_batch), self.n_output)
        self.scale_logit = nn.Parameter(torch.zeros(shape))
        self.bias = nn.Parameter(torch.zeros(shape))
        if likelihood in ("nb", "zinb"):
            self.log_theta = nn.Parameter(torch.zeros(shape))
        if likelihood in ("ziln", "normal"):
            self.std_logit = nn.Parameter(torch.zeros(shape))
        if likelihood in ("zinb", "ziln"):
            self.zi_logits = nn.Parameter(torch.zeros(shape))

    def batch_parameters(self) -> list[str]:
        """Names of the per-batch parameters (one row per batch, dimension 0)."""
        names = ("scale_logit", "bias", "log_theta", "std_logit", "zi_logits")
        return [name for name in names if hasattr(self, name)]

    @staticmethod
    def _of(parameter: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Rows ``b`` of a per-batch parameter; one broadcast row when there is one batch."""
        return parameter[:1] if parameter.shape[0] == 1 else parameter.index_select(0, b)

    def negative_log_likelihood(
        self,
        u: torch.Tensor,
        batch_index: torch.Tensor,
        x: torch.Tensor,
        library: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean over rows and features of ``-log p(x | u)``: ``-forward(...).log_prob(x).mean()``.

        The ``"nb"`` head on a CPU goes through :func:`softmax_nb_nll` (the same value and
        gradients in about a third of the passes over the cells x features block);
        everything else through the distribution.

        Parameters
        ----------
        u, batch_index, library
            As in :meth:`forward`.
        x
            Values of the rows, ``(n, n_output)``, dense or sparse CSR (``x > 0`` for
            ``"bernoulli"``).
        """
        if self.likelihood == "nb" and x.device.type == "cpu" and library is not None:
            b = batch_index.long().view(-1)
            nll = softmax_nb_nll(
                self.linear(u),
                F.softplus(self.scale_logit),
                self.bias,
                torch.exp(self.log_theta),
                b,
                library,
                x,
            )
            return nll / (x.shape[0] * x.shape[1])
        return -self(u, batch_index, library).log_prob(as_dense(x)).mean()

    def forward(
        self, u: torch.Tensor, batch_index: torch.Tensor, library: torch.Tensor | None = None
    ) -> Distribution:
        """The distribution of the features given codes ``u`` (rows), batches and libraries.

        Parameters
        ----------
        u
            Latent codes, ``(n, n_input)``.
        batch_index
            Batch of each row, ``(n,)`` or ``(n, 1)`` integers.
        library
            Library size (total counts) of each row, ``(n, 1)``; needed for ``"nb"`` and
            ``"zinb"``.
        """
        b = batch_index.long().view(-1)
        # positive transforms on the (batches, features) parameters, then one row per cell
        eta = torch.addcmul(
            self._of(self.bias, b), self._of(F.softplus(self.scale_logit), b), self.linear(u)
        )
        lik = self.likelihood
        if lik in COUNT_LIKELIHOODS:
            if library is None:
                raise ValueError(f"The {lik!r} likelihood needs the library size.")
            mu = torch.softmax(eta, dim=-1) * library.view(-1, 1)
            theta = self._of(torch.exp(self.log_theta), b)
            if lik == "nb":
                return NegativeBinomial(mu=mu + EPS, theta=theta)
            return ZeroInflatedNegativeBinomial(
                mu=mu + EPS, theta=theta, zi_logits=self._of(self.zi_logits, b)
            )
        if lik == "bernoulli":
            return Bernoulli(logits=eta)
        std = self._of(F.softplus(self.std_logit), b) + EPS
        if lik == "normal":
            return Normal(eta, std)
        return ZeroInflatedLogNormal(eta, std, self._of(self.zi_logits, b))
