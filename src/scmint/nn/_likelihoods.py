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

    @staticmethod
    def _of(parameter: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Rows ``b`` of a per-batch parameter; one broadcast row when there is one batch."""
        return parameter[:1] if parameter.shape[0] == 1 else parameter[b]

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
        eta = F.softplus(self._of(self.scale_logit, b)) * self.linear(u) + self._of(self.bias, b)
        lik = self.likelihood
        if lik in COUNT_LIKELIHOODS:
            if library is None:
                raise ValueError(f"The {lik!r} likelihood needs the library size.")
            mu = torch.softmax(eta, dim=-1) * library.view(-1, 1)
            theta = torch.exp(self._of(self.log_theta, b))
            if lik == "nb":
                return NegativeBinomial(mu=mu + EPS, theta=theta)
            return ZeroInflatedNegativeBinomial(
                mu=mu + EPS, theta=theta, zi_logits=self._of(self.zi_logits, b)
            )
        if lik == "bernoulli":
            return Bernoulli(logits=eta)
        std = F.softplus(self._of(self.std_logit, b)) + EPS
        if lik == "normal":
            return Normal(eta, std)
        return ZeroInflatedLogNormal(eta, std, self._of(self.zi_logits, b))
