r"""Coordinate-ascent variational inference (CAVI) for one-dimensional Gaussian mixtures.

Two models of data :math:`x_1, \ldots, x_N`, each with latent labels :math:`c_n`:

``"textbook"`` (Blei, Kucukelbir & McAuliffe 2017, *Variational inference: a review for
statisticians*, section 3): unit-variance components, equal weights,

.. math::

    \mu_k \sim N(0, \sigma^2), \quad c_n \sim \mathrm{Cat}(1/K), \quad
    x_n \mid c_n, \mu \sim N(\mu_{c_n}, 1),

with factors :math:`q(\mu_k) = N(m_k, s_k^2)` and :math:`q(c_n) = \mathrm{Cat}(\phi_n)`:

.. math::

    \phi_{nk} \propto \exp\{x_n m_k - (s_k^2 + m_k^2)/2\}, \quad
    s_k^2 = \frac{1}{1/\sigma^2 + \sum_n \phi_{nk}}, \quad
    m_k = s_k^2 \sum_n \phi_{nk} x_n.

``"full"`` (Bishop 2006, *PRML*, section 10.2, with D = 1): weights, means and
precisions all learnt,

.. math::

    \pi \sim \mathrm{Dir}(\alpha_0), \quad
    \lambda_k \sim \mathrm{Gamma}(a_0, \text{rate } b_0), \quad
    \mu_k \mid \lambda_k \sim N(m_0, 1/(\beta_0 \lambda_k)), \quad
    x_n \mid c_n \sim N(\mu_{c_n}, 1/\lambda_{c_n}),

with :math:`q(\pi) = \mathrm{Dir}(\alpha)`, :math:`q(\mu_k, \lambda_k)` Normal-Gamma
:math:`(m_k, \beta_k, a_k, b_k)` and :math:`q(c_n) = \mathrm{Cat}(r_n)`. With
:math:`N_k = \sum_n r_{nk}`, Bishop's (10.58)-(10.63) become

.. math::

    \alpha_k = \alpha_0 + N_k, \quad \beta_k = \beta_0 + N_k, \quad
    m_k = \frac{\beta_0 m_0 + \sum_n r_{nk} x_n}{\beta_k}, \quad
    a_k = a_0 + \frac{N_k}{2}, \quad
    b_k = b_0 + \frac12 \Big[\sum_n r_{nk} (x_n - m_k)^2 + \beta_0 (m_k - m_0)^2\Big]

(the last is Bishop's :math:`W_k^{-1}/2`, written around :math:`m_k` so that no
division by :math:`N_k` is needed), and (10.64)-(10.66)

.. math::

    \log r_{nk} = \psi(\alpha_k) - \psi(\textstyle\sum_j \alpha_j)
    + \frac12 [\psi(a_k) - \log b_k] - \frac12 \log 2\pi
    - \frac12 \Big[\frac{1}{\beta_k} + \frac{a_k}{b_k} (x_n - m_k)^2\Big] + \text{const}_n.

The 1-D Wishart :math:`\mathcal{W}(\lambda \mid W, \nu)` is :math:`\mathrm{Gamma}(\nu/2,
\text{rate } 1/(2W))`. scikit-learn's ``BayesianGaussianMixture`` puts
:math:`\mathcal{W}(W_0, \nu_0)` on the precision with :math:`W_0^{-1}` =
``covariance_prior`` and :math:`\nu_0` = ``degrees_of_freedom_prior``, so

.. math::

    a_0 = \nu_0 / 2, \qquad b_0 = \texttt{covariance\_prior} / 2,

and its fitted ``covariances_`` are :math:`W_k^{-1}/\nu_k = b_k / a_k`. Defaults
(:func:`default_prior`) follow scikit-learn's with
``weight_concentration_prior_type="dirichlet_distribution"``: :math:`\alpha_0 = 1/K`,
:math:`\beta_0 = 1`, :math:`m_0 = \bar x`, :math:`\nu_0 = 1` (so :math:`a_0 = 1/2`) and
``covariance_prior`` = the sample variance of x with ddof = 1, as ``np.cov`` (so
:math:`b_0 = \mathrm{var}(x)/2`).

Both ELBOs are complete, constants included, so that with K = 1 (where the factorised
posterior is exact) they equal the log evidence :math:`\log p(x)`. The driver writes the
ELBO as :math:`\sum_n \log \sum_k \rho_{nk} - \mathrm{KL}(q(\text{globals}) \,\|\,
p(\text{globals}))`, valid right after the update of the :math:`q(c_n)`; :func:`elbo_terms`
is the slow, term-by-term version (Bishop (10.70)-(10.77); Blei et al. section 3) for any
factors, against which the fast one is tested.

One iteration updates the global factors from the responsibilities, then the
responsibilities (in log space, normalised with a log-sum-exp), then evaluates the
ELBO; each update maximises the ELBO in its own factors, so the ELBO never decreases.
Starts: the first splits the sorted x into K groups of equal size, the others use
k-means++ seeds and Lloyd iterations; the best final ELBO is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import validation
from ..em.best import best_start, component_order
from ..em.starts import kmeanspp_labels, quantile_labels
from ..errors import InputError
from .gaussian import MODELS as MODEL_FORMULAS
from .gaussian import PARAM_NAMES, PRIOR_NAMES

__all__ = [
    "MODELS",
    "PARAM_NAMES",
    "PRIOR_NAMES",
    "CAVIFit",
    "fit_cavi",
    "fit_cavi_best",
    "normal_components",
    "run_cavi",
]

MODELS = ("textbook", "full")


@dataclass
class CAVIFit:
    """The best start of :func:`fit_cavi`; components sorted by posterior mean ``m``."""

    model: str
    params: dict[str, np.ndarray]  # posterior parameters, each (K,); names in PARAM_NAMES
    prior: dict[str, float]  # names in PRIOR_NAMES
    resp: np.ndarray  # (N, K), q(c_n) under the final global factors
    elbo: float  # the final ELBO, constants included
    trace: np.ndarray  # (n_iter,), the ELBO after each full iteration
    converged: bool
    n_iter: int


# -- inputs and priors -------------------------------------------------------------------


def check_data(x) -> np.ndarray:
    """Return x as a float64 vector: 1-D or shape (N, 1), finite, at least 2 points."""
    try:
        values = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError("X must be numeric.") from None
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise InputError(f"X must be 1-D or of shape (n, 1), got shape {values.shape}.")
    if values.shape[0] < 2:
        raise InputError(f"X must hold at least 2 points, got {values.shape[0]}.")
    bad = ~np.isfinite(values)
    if bad.any():
        raise InputError(
            f"X must be finite, but has {int(bad.sum())} NaN or infinite value(s), "
            f"at positions {np.flatnonzero(bad)[:5].tolist()}."
        )
    return np.ascontiguousarray(values)


def check_model(model) -> str:
    if model not in MODELS:
        raise InputError(f"model must be one of {MODELS}, got {model!r}.")
    return model


def default_prior(model: str, x: np.ndarray, n_components: int, **given) -> dict[str, float]:
    """The prior of ``model``, with scikit-learn-like defaults for values not ``given``.

    ``"textbook"``: ``sigma2`` (prior variance of the means, no default: Blei et al. fix
    it by hand). ``"full"``: ``alpha0 = 1/K``, ``beta0 = 1``, ``m0 = mean(x)``,
    ``a0 = 1/2`` and ``b0 = var(x, ddof=1) / 2`` (see the module docstring for the
    mapping to scikit-learn). Every value must be finite; all but ``m0`` positive.
    """
    check_model(model)
    unknown = set(given) - set(PRIOR_NAMES[model])
    if unknown:
        raise InputError(f"model {model!r} has no prior {sorted(unknown)}.")
    if model == "textbook":
        defaults = {"sigma2": None}
    else:
        defaults = {
            "alpha0": 1.0 / n_components,
            "beta0": 1.0,
            "m0": float(np.mean(x)),
            "a0": 0.5,
            "b0": float(np.var(x, ddof=1)) / 2.0,
        }
    prior = {}
    for name, default in defaults.items():
        value = given.get(name)
        value = default if value is None else value
        if value is None:
            raise InputError(f"the {model!r} model needs a value for {name!r}.")
        value = float(value)
        if not np.isfinite(value) or (name != "m0" and value <= 0):
            hint = " (X is constant: pass it explicitly)" if name == "b0" and value == 0 else ""
            raise InputError(f"prior {name!r} must be finite and positive, got {value}{hint}.")
        prior[name] = value
    return prior


# -- public array functions, responsibilities of shape (N, K) ----------------------------


def _kn(resp: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(resp, dtype=np.float64).T)


def update_globals(model: str, x: np.ndarray, resp: np.ndarray, prior) -> dict[str, np.ndarray]:
    """The optimal global factors given the responsibilities ``resp`` (N, K)."""
    resp_kn = _kn(resp)
    return MODEL_FORMULAS[check_model(model)].update(x, resp_kn, prior, np.empty_like(resp_kn))


def log_rho(model: str, x: np.ndarray, params, prior) -> np.ndarray:
    r"""Unnormalised log responsibilities :math:`\log \rho_{nk}`, shape (N, K).

    :math:`\log \rho_{nk} = E_q[\log p(x_n, c_n = k \mid \text{globals})]`; its
    log-sum-exp over k is the largest value of point n's own ELBO term.
    """
    sq = (x[None, :] - params["m"][:, None]) ** 2
    return MODEL_FORMULAS[check_model(model)].log_rho(params, prior, sq).T


def update_resp(model: str, x: np.ndarray, params, prior) -> np.ndarray:
    """The optimal q(c_n) given the global factors, shape (N, K), by a log-sum-exp."""
    values = log_rho(model, x, params, prior)
    values = values - values.max(axis=1, keepdims=True)
    resp = np.exp(values)
    return resp / resp.sum(axis=1, keepdims=True)


def kl_globals(model: str, params, prior) -> float:
    """KL divergence of the global factors from their prior (their part of -ELBO)."""
    return MODEL_FORMULAS[check_model(model)].kl(params, prior)


def elbo_terms(model: str, x: np.ndarray, resp: np.ndarray, params, prior) -> dict[str, float]:
    """The expectations that make up the ELBO, for any factors (``resp``: (N, K));
    ``E[log p(...)]`` terms enter with a plus sign, ``E[log q(...)]`` with a minus."""
    return MODEL_FORMULAS[check_model(model)].terms(x, _kn(resp), params, prior)


def elbo(model: str, x: np.ndarray, resp: np.ndarray, params, prior) -> float:
    """The ELBO of any factors, summed from :func:`elbo_terms`."""
    terms = elbo_terms(model, x, resp, params, prior)
    return float(sum(-v if name.startswith("E[log q") else v for name, v in terms.items()))


# -- the driver --------------------------------------------------------------------------


def _normalise(log_rho_kn: np.ndarray, resp: np.ndarray) -> float:
    """Write softmax over k of ``log_rho_kn`` (destroyed) into ``resp``; return
    sum_n log sum_k rho_nk. Subtracting the column maximum keeps exp from underflowing."""
    top = log_rho_kn.max(axis=0)
    log_rho_kn -= top
    np.exp(log_rho_kn, out=resp)
    total = resp.sum(axis=0)
    resp /= total
    return float(top.sum() + np.log(total).sum())


def run_cavi(model: str, x: np.ndarray, resp: np.ndarray, prior, *, max_iter: int, tol: float):
    """CAVI from responsibilities ``resp`` (K, N), updated in place.

    Each iteration: global factors from ``resp``, then ``resp`` from them, then the ELBO.
    Stops once an iteration raises the ELBO by less than ``tol * N``, or after
    ``max_iter`` iterations. Returns ``(params, elbo, trace, converged, n_iter)``.
    """
    family = MODEL_FORMULAS[model]
    sq = np.empty_like(resp)
    threshold = tol * x.shape[0]
    trace: list[float] = []
    converged = False
    params = {}
    while len(trace) < max_iter:
        params = family.update(x, resp, prior, sq)
        value = _normalise(family.log_rho(params, prior, sq), resp) - family.kl(params, prior)
        converged = bool(trace) and value - trace[-1] < threshold
        trace.append(value)
        if converged:
            break
    return params, trace[-1], np.array(trace), converged, len(trace)


def starting_resp(x: np.ndarray, n_components: int, n_init: int, rng: np.random.Generator):
    """Yield hard responsibilities (K, N): the quantile split of x, then k-means++ starts."""
    for start in range(1 if n_components == 1 else n_init):
        if start == 0:
            labels = quantile_labels(x[None, :], n_components)[0]
        else:
            labels = kmeanspp_labels(x[None, :], n_components, rng.random((1, n_components)))[0]
        yield (labels[None, :] == np.arange(n_components)[:, None]).astype(np.float64)


def fit_cavi(
    x,
    n_components: int,
    *,
    model: str = "full",
    prior: dict[str, float] | None = None,
    n_init: int = 1,
    max_iter: int = 500,
    tol: float = 1e-6,
    random_state: int | np.random.Generator | None = 0,
    init_resp: np.ndarray | None = None,
) -> CAVIFit:
    """Fit a 1-D Gaussian mixture by CAVI; keep the start with the largest final ELBO.

    Parameters
    ----------
    x
        Data, shape (N,) or (N, 1), finite.
    n_components
        K.
    model
        ``"textbook"`` or ``"full"`` (see the module docstring).
    prior
        Prior values by name (:data:`PRIOR_NAMES`); missing ones get the defaults of
        :func:`default_prior` (``"textbook"`` needs ``sigma2``).
    n_init
        Starts: the quantile split of the sorted x, then k-means++ seeds drawn from
        ``random_state`` followed by Lloyd iterations. K = 1 has a single start.
    max_iter, tol
        Each start stops once an iteration raised the ELBO by less than ``tol`` per point,
        or after ``max_iter`` iterations.
    init_resp
        Optional starting responsibilities (N, K), rows summing to 1; replaces the starts.

    Returns
    -------
    CAVIFit
        Components sorted by posterior mean.
    """
    x = check_data(x)
    n = x.shape[0]
    n_components = validation.check_n_components(n_components, n)
    model = check_model(model)
    prior = default_prior(model, x, n_components, **(prior or {}))
    generator = isinstance(random_state, np.random.Generator)
    options = validation.check_fit_options(
        n_init=n_init,
        max_iter=max_iter,
        tol=tol,
        random_state=None if generator else random_state,
    )
    n_init, max_iter, tol = options.n_init, options.max_iter, options.tol
    if init_resp is not None:
        init_resp = np.asarray(init_resp, dtype=np.float64)
        if init_resp.shape != (n, n_components):
            raise InputError(
                f"init_resp must have shape {(n, n_components)}, got {init_resp.shape}."
            )
        if not (np.isfinite(init_resp).all() and (init_resp >= 0).all()):
            raise InputError("init_resp must be finite and non-negative.")
        if not np.allclose(init_resp.sum(axis=1), 1.0):
            raise InputError("the rows of init_resp must sum to 1.")
        starts = [_kn(init_resp)]
    else:
        starts = starting_resp(x, n_components, n_init, np.random.default_rng(random_state))

    runs = [(resp, run_cavi(model, x, resp, prior, max_iter=max_iter, tol=tol)) for resp in starts]
    resp, (params, value, trace, converged, n_iter) = runs[best_start([r[1][1] for r in runs])]
    order = component_order(params["m"])
    return CAVIFit(
        model=model,
        params={name: params[name][order] for name in PARAM_NAMES[model]},
        prior=prior,
        resp=np.ascontiguousarray(resp[order].T),
        elbo=value,
        trace=trace,
        converged=converged,
        n_iter=n_iter,
    )


def fit_cavi_best(x, candidates, **options) -> tuple[CAVIFit, dict[int, CAVIFit]]:
    """:func:`fit_cavi` for each K of ``candidates`` with the same ``options``: the fit with
    the largest ELBO (the first such K on a tie), and every fit by K."""
    fits = {k: fit_cavi(x, k, **options) for k in candidates}
    return fits[max(fits, key=lambda k: fits[k].elbo)], fits


def normal_components(fit: CAVIFit) -> dict[str, np.ndarray]:
    r"""The components of a ``"full"`` fit as normals, each (K,): ``means`` :math:`m_k`,
    ``sds`` :math:`\sqrt{b_k / a_k}` (one over the root of the expected precision;
    scikit-learn's ``covariances_`` are their squares) and ``weights``
    :math:`\alpha_k / \sum_j \alpha_j` (the posterior mean weights)."""
    if fit.model != "full":
        raise InputError(f"normal_components needs a 'full' fit, got {fit.model!r}.")
    alpha, m, a, b = (fit.params[name] for name in ("alpha", "m", "a", "b"))
    return {"means": m, "sds": np.sqrt(b / a), "weights": alpha / alpha.sum()}
