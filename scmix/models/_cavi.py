r"""A scikit-learn-style estimator over :mod:`scmix._core.vi.cavi`: variational Bayesian
Gaussian mixtures of one-dimensional data, fitted by coordinate ascent (CAVI)."""

from __future__ import annotations

import warnings

import numpy as np
from scipy.special import logsumexp

from .._core.errors import InputError
from .._core.vi import cavi

_FULL_PRIORS = (
    "weight_concentration_prior",
    "mean_prior",
    "mean_precision_prior",
    "degrees_of_freedom_prior",
    "covariance_prior",
)


class GaussianMixtureCAVI:
    r"""Variational Bayesian mixture of K univariate Gaussians, fitted by CAVI.

    ``model="full"`` is Bishop's (PRML 10.2) variational Gaussian mixture in 1-D,
    the model of scikit-learn's ``BayesianGaussianMixture(covariance_type="full",
    weight_concentration_prior_type="dirichlet_distribution")``, with the same prior
    parameters and defaults. ``model="textbook"`` is the mixture of unit-variance
    Gaussians with equal weights of Blei, Kucukelbir & McAuliffe (2017), section 3:
    :math:`\mu_k \sim N(0, \sigma^2)`; it suits data on a scale where the components
    have variance about 1. The formulas are in :mod:`scmix._core.vi.cavi`.

    Parameters
    ----------
    n_components
        K, the number of components.
    model
        ``"full"`` or ``"textbook"``.
    n_init
        Starts: the first splits the sorted data into K groups of equal size, the others
        use k-means++ seeds drawn from ``random_state`` and Lloyd iterations. The start
        with the largest final ELBO is kept.
    max_iter, tol
        A start stops once an iteration (all factors updated once) raised the ELBO by
        less than ``tol`` per data point, or after ``max_iter`` iterations.
        (scikit-learn's ``BayesianGaussianMixture`` compares its ``tol`` with the change
        of the total bound: its ``tol`` = this ``tol`` times N.)
    random_state
        Seed (or ``numpy.random.Generator``) of the k-means++ starts.
    weight_concentration_prior
        ``"full"``: :math:`\alpha_0` of the symmetric Dirichlet prior on the weights;
        default 1/K.
    mean_prior, mean_precision_prior
        ``"full"``: :math:`m_0` and :math:`\beta_0` of
        :math:`\mu_k \mid \lambda_k \sim N(m_0, 1/(\beta_0 \lambda_k))`; defaults: the
        mean of X and 1.
    degrees_of_freedom_prior, covariance_prior
        ``"full"``: :math:`\nu_0` and :math:`W_0^{-1}` of scikit-learn's Wishart prior on
        the precision, i.e. :math:`\lambda_k \sim \mathrm{Gamma}(a_0 = \nu_0/2,
        \text{rate } b_0 = W_0^{-1}/2)`; defaults: 1 and the variance of X (ddof = 1),
        as scikit-learn with one feature.
    mean_prior_variance
        ``"textbook"``: :math:`\sigma^2`, the prior variance of the means (prior mean 0);
        default 100.

    Attributes
    ----------
    means_ : ndarray of shape (K,)
        Posterior means of the component means, sorted increasingly.
    weights_ : ndarray of shape (K,)
        Posterior mean weights :math:`\alpha_k / \sum_j \alpha_j` (``"textbook"``: 1/K).
    precisions_, variances_ : ndarray of shape (K,)
        :math:`E_q[\lambda_k] = a_k / b_k` and its inverse :math:`b_k / a_k` (as
        scikit-learn's ``covariances_``; not :math:`E_q[1/\lambda_k]`). ``"textbook"``: 1.
    mean_variances_ : ndarray of shape (K,)
        ``"textbook"``: :math:`s_k^2`, the posterior variances of the means.
    weight_concentration_, mean_precision_, precision_shape_, precision_rate_
        ``"full"``: the posterior :math:`\alpha_k, \beta_k, a_k, b_k`, each (K,).
    params_, prior_ : dict
        All posterior and prior parameters, named as in :mod:`scmix._core.vi.cavi`.
    lower_bound_ : float
        The final ELBO of the best start, a lower bound on :math:`\log p(X)` with every
        constant included (equal to it for K = 1).
    lower_bounds_ : ndarray
        The ELBO after each iteration of the best start (never decreasing).
    kl_divergence_ : float
        :math:`\mathrm{KL}(q \| p)` of the global factors (weights, means, precisions).
    converged_ : bool
    n_iter_ : int
    """

    def __init__(
        self,
        n_components: int = 2,
        *,
        model: str = "full",
        n_init: int = 1,
        max_iter: int = 500,
        tol: float = 1e-6,
        random_state: int | np.random.Generator | None = 0,
        weight_concentration_prior: float | None = None,
        mean_prior: float | None = None,
        mean_precision_prior: float | None = None,
        degrees_of_freedom_prior: float | None = None,
        covariance_prior: float | None = None,
        mean_prior_variance: float | None = None,
    ):
        self.n_components = n_components
        self.model = model
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.weight_concentration_prior = weight_concentration_prior
        self.mean_prior = mean_prior
        self.mean_precision_prior = mean_precision_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.covariance_prior = covariance_prior
        self.mean_prior_variance = mean_prior_variance

    def _prior(self) -> dict[str, float | None]:
        """The engine's prior names; sklearn's (nu0, W0^-1) become (a0, b0) = halves."""
        model = cavi.check_model(self.model)
        if model == "textbook":
            given = [name for name in _FULL_PRIORS if getattr(self, name) is not None]
            if given:
                raise InputError(f"{given} apply to model='full' only, not 'textbook'.")
            sigma2 = 100.0 if self.mean_prior_variance is None else self.mean_prior_variance
            return {"sigma2": sigma2}
        if self.mean_prior_variance is not None:
            raise InputError("mean_prior_variance applies to model='textbook' only, not 'full'.")

        def half(value):
            return None if value is None else float(value) / 2.0

        return {
            "alpha0": self.weight_concentration_prior,
            "beta0": self.mean_precision_prior,
            "m0": self.mean_prior,
            "a0": half(self.degrees_of_freedom_prior),
            "b0": half(self.covariance_prior),
        }

    # -- fitting ---------------------------------------------------------------------
    def fit(self, X, y=None):
        """Fit to ``X`` of shape (N,) or (N, 1), finite, with N >= max(2, K)."""
        x = cavi.check_data(X)
        fit = cavi.fit_cavi(
            x,
            self.n_components,
            model=self.model,
            prior=self._prior(),
            n_init=self.n_init,
            max_iter=self.max_iter,
            tol=self.tol,
            random_state=self.random_state,
        )
        if not fit.converged:
            warnings.warn(
                f"CAVI did not converge in {fit.n_iter} iterations (best start): increase "
                "max_iter or tol.",
                UserWarning,
                stacklevel=2,
            )
        self._set_fitted(fit)
        return self

    def _set_fitted(self, fit: cavi.CAVIFit) -> None:
        params = fit.params
        n_comp = params["m"].shape[0]
        self.params_ = params
        self.prior_ = fit.prior
        self.means_ = params["m"]
        if fit.model == "full":
            self.weights_ = params["alpha"] / params["alpha"].sum()
            self.precisions_ = params["a"] / params["b"]
            self.weight_concentration_ = params["alpha"]
            self.mean_precision_ = params["beta"]
            self.precision_shape_ = params["a"]
            self.precision_rate_ = params["b"]
        else:
            self.weights_ = np.full(n_comp, 1.0 / n_comp)
            self.precisions_ = np.ones(n_comp)
            self.mean_variances_ = params["s2"]
        self.variances_ = 1.0 / self.precisions_
        self.lower_bound_ = fit.elbo
        self.lower_bounds_ = fit.trace
        self.kl_divergence_ = cavi.kl_globals(fit.model, params, fit.prior)
        self.converged_ = fit.converged
        self.n_iter_ = fit.n_iter
        self.model_ = fit.model

    def _log_rho(self, X) -> np.ndarray:
        if not hasattr(self, "params_"):
            raise RuntimeError(f"This {type(self).__name__} is not fitted yet: call fit(X) first.")
        return cavi.log_rho(self.model_, cavi.check_data(X), self.params_, self.prior_)

    # -- evaluation ------------------------------------------------------------------
    def predict_proba(self, X) -> np.ndarray:
        """The optimal :math:`q(c_n)` given the fitted global factors, shape (N, K)."""
        values = self._log_rho(X)
        return np.exp(values - logsumexp(values, axis=1, keepdims=True))

    def predict(self, X) -> np.ndarray:
        """The most probable component of each point, shape (N,)."""
        return np.argmax(self._log_rho(X), axis=1)

    def score_samples(self, X) -> np.ndarray:
        r"""Each point's own ELBO term, shape (N,):

        .. math::

            \ell_n = \max_{q(c_n)} E_q[\log p(x_n, c_n \mid \text{globals}) - \log q(c_n)]
            = \log \sum_k \exp E_q[\log \pi_k + \log N(x_n \mid \mu_k, 1/\lambda_k)],

        with the global factors held at their fitted values. By Jensen's inequality it is
        a lower bound on the log posterior predictive density of a new point
        :math:`\log \int p(x \mid \text{globals}) \, q(\text{globals})`, and it is what
        scikit-learn's ``BayesianGaussianMixture.score_samples`` computes.
        """
        return logsumexp(self._log_rho(X), axis=1)

    def score(self, X, y=None) -> float:
        r"""The mean of :meth:`score_samples`.

        On the training data the ELBO splits into these per-point terms and the global
        KL divergence: ``lower_bound_ == N * score(X) - kl_divergence_`` (up to
        rounding), so the per-point ELBO of the fit is
        ``score(X) - kl_divergence_ / N``. On new data it is the mean lower bound on
        the log predictive density (see :meth:`score_samples`).
        """
        return float(self.score_samples(X).mean())


__all__ = ["GaussianMixtureCAVI"]
