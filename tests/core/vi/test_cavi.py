"""CAVI for 1-D Gaussian mixtures: monotone ELBO, exact answers where they exist,
coordinate-wise optimality, agreement with scikit-learn, underflow, the estimator."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import special, stats
from sklearn.mixture import BayesianGaussianMixture

from scmix._core.vi import cavi
from scmix.models import GaussianMixtureCAVI

TEXTBOOK = {"sigma2": 100.0}


def mixture_sample(means, sds, sizes, seed):
    rng = np.random.default_rng(seed)
    parts = [rng.normal(m, s, n) for m, s, n in zip(means, sds, sizes, strict=True)]
    return rng.permutation(np.concatenate(parts))


def _prior(model):
    return TEXTBOOK if model == "textbook" else None


def _posterior_weights(params):
    return params["alpha"] / params["alpha"].sum()


class _BGMFromResp(BayesianGaussianMixture):
    """scikit-learn's variational mixture started from given responsibilities ``resp0``
    (set as an attribute) instead of its k-means labels."""

    def _initialize_parameters(self, X, random_state, xp=None):
        self._initialize(X, self.resp0)


def _sklearn_bgm(**options):
    settings = dict(
        weight_concentration_prior_type="dirichlet_distribution",
        covariance_type="full",
        reg_covar=0.0,  # scmix adds nothing to the scatter
    )
    settings.update(options)
    return settings


# -- the ELBO ----------------------------------------------------------------------------


@pytest.mark.parametrize("model", cavi.MODELS)
def test_elbo_never_decreases(model):
    for seed in range(4):
        x = mixture_sample([-2.0, 0.5, 3.0], [1.0, 0.6, 1.3], [150, 100, 250], seed)
        for k in (1, 2, 3, 5):
            options = dict(n_init=2, tol=0.0, max_iter=150, random_state=seed)
            fit = cavi.fit_cavi(x, k, model=model, prior=_prior(model), **options)
            steps = np.diff(fit.trace)
            assert fit.trace.shape == (fit.n_iter,)
            assert steps.min(initial=0.0) >= -1e-12 * abs(fit.elbo), (seed, k, steps.min())


@pytest.mark.parametrize("model", cavi.MODELS)
def test_fast_elbo_equals_term_by_term_elbo(model):
    x = mixture_sample([-1.0, 2.0], [1.0, 0.5], [120, 80], 5)
    fit = cavi.fit_cavi(x, 3, model=model, prior=_prior(model), max_iter=7, tol=0.0)
    slow = cavi.elbo(model, x, fit.resp, fit.params, fit.prior)
    assert fit.elbo == pytest.approx(slow, rel=1e-12)
    # and the split into per-point terms and the KL of the global factors
    lse = special.logsumexp(cavi.log_rho(model, x, fit.params, fit.prior), axis=1)
    kl = cavi.kl_globals(model, fit.params, fit.prior)
    assert fit.elbo == pytest.approx(lse.sum() - kl, rel=1e-12)


def test_textbook_k1_elbo_is_the_exact_log_evidence():
    # with K = 1, q(mu) is the exact posterior, so the ELBO equals log p(x), where
    # x ~ N(0, I + sigma^2 11^T) marginally
    x = mixture_sample([1.5], [1.0], [60], 0)
    sigma2 = 4.0
    fit = cavi.fit_cavi(x, 1, model="textbook", prior={"sigma2": sigma2})
    evidence = stats.multivariate_normal(np.zeros(60), np.eye(60) + sigma2).logpdf(x)
    assert fit.elbo == pytest.approx(evidence, rel=1e-12)


def test_full_k1_elbo_is_the_exact_log_evidence():
    # with K = 1 the Normal-Gamma factor is the exact posterior: compare with log p(x) as
    # a product of Student-t predictive densities, p(x_n | x_1..x_{n-1})
    x = mixture_sample([3.0], [2.0], [50], 1)
    prior = {"alpha0": 0.7, "beta0": 0.5, "m0": 1.0, "a0": 2.0, "b0": 3.0}
    fit = cavi.fit_cavi(x, 1, model="full", prior=prior)
    m, beta, a, b = prior["m0"], prior["beta0"], prior["a0"], prior["b0"]
    evidence = 0.0
    for value in x:
        scale = np.sqrt(b * (beta + 1.0) / (a * beta))
        evidence += stats.t.logpdf(value, 2.0 * a, loc=m, scale=scale)
        b += beta * (value - m) ** 2 / (2.0 * (beta + 1.0))
        m, beta, a = (beta * m + value) / (beta + 1.0), beta + 1.0, a + 0.5
    assert fit.elbo == pytest.approx(evidence, rel=1e-12)


# -- exact and known answers -------------------------------------------------------------


def test_textbook_k1_posterior_is_the_conjugate_posterior():
    x = mixture_sample([0.8], [1.0], [40], 2)
    sigma2 = 2.5
    fit = cavi.fit_cavi(x, 1, model="textbook", prior={"sigma2": sigma2})
    precision = 1.0 / sigma2 + x.size
    np.testing.assert_allclose(fit.params["m"], [x.sum() / precision], rtol=1e-13)
    np.testing.assert_allclose(fit.params["s2"], [1.0 / precision], rtol=1e-13)


def test_textbook_recovers_the_papers_example():
    # Blei et al. 2017, section 3: unit-variance clusters, here at -4, 0 and 9
    x = mixture_sample([-4.0, 0.0, 9.0], [1.0, 1.0, 1.0], [500, 500, 500], 2017)
    fit = cavi.fit_cavi(x, 3, model="textbook", prior={"sigma2": 100.0}, n_init=3)
    assert fit.converged
    np.testing.assert_allclose(fit.params["m"], [-4.0, 0.0, 9.0], atol=0.2)
    assert np.all(np.diff(fit.params["m"]) > 0)


# -- each update maximises the ELBO along its own coordinates ----------------------------

EPS = 1e-4


def _perturbations(params, names):
    for name in names:
        for k in range(params[name].shape[0]):
            for sign in (1.0, -1.0):
                moved = {key: value.copy() for key, value in params.items()}
                moved[name][k] += sign * EPS
                yield (name, k, sign), moved


def _resp_perturbations(resp, points):
    n_comp = resp.shape[1]
    for n in points:
        for j in range(n_comp):
            for ell in range(n_comp):
                if j != ell and resp[n, ell] > 2 * EPS:
                    moved = resp.copy()
                    moved[n, j] += EPS
                    moved[n, ell] -= EPS
                    yield (n, j, ell), moved


@pytest.mark.parametrize("model", cavi.MODELS)
def test_each_update_maximises_the_elbo_along_its_coordinates(model):
    x = mixture_sample([-1.5, 1.5], [1.0, 0.8], [80, 70], 7)
    prior = cavi.default_prior(model, x, 3, **(_prior(model) or {}))
    rng = np.random.default_rng(0)
    resp = rng.dirichlet(np.ones(3), size=x.size)  # a generic point, not an optimum
    names = cavi.PARAM_NAMES[model]

    # update of the global factors, responsibilities fixed
    params = cavi.update_globals(model, x, resp, prior)
    best = cavi.elbo(model, x, resp, params, prior)
    for where, moved in _perturbations(params, names):
        worse = cavi.elbo(model, x, resp, moved, prior)
        assert worse < best, (where, worse - best)

    # update of the responsibilities, global factors fixed
    resp = cavi.update_resp(model, x, params, prior)
    best = cavi.elbo(model, x, resp, params, prior)
    for where, moved in _resp_perturbations(resp, points=[0, 17, 42, 99]):
        worse = cavi.elbo(model, x, moved, params, prior)
        assert worse < best, (where, worse - best)

    # the check can fail: away from the optimum some direction raises the ELBO
    shifted = {key: value.copy() for key, value in params.items()}
    shifted["m"] += 0.1
    gains = [
        cavi.elbo(model, x, resp, moved, prior) - cavi.elbo(model, x, resp, shifted, prior)
        for _, moved in _perturbations(shifted, ["m"])
    ]
    assert max(gains) > 0


# -- agreement with scikit-learn ---------------------------------------------------------


def test_full_follows_sklearn_step_by_step_from_the_same_start():
    x = mixture_sample([0.0, 2.5], [1.0, 0.7], [300, 200], 1)
    resp0 = np.column_stack([x < np.median(x), x >= np.median(x)]).astype(float)
    # sklearn's loop is (E, M) after an M-step from resp0; ours is (M, E): after t of
    # its iterations sklearn has made t + 1 updates of the global factors, as ours after t + 1
    for t in (1, 10):
        fit = cavi.fit_cavi(x, 2, model="full", max_iter=t + 1, tol=0.0, init_resp=resp0)
        bgm = _BGMFromResp(n_components=2, **_sklearn_bgm(max_iter=t, tol=0.0))
        bgm.resp0 = resp0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning: max_iter reached on purpose
            bgm.fit(x[:, None])
        p = fit.params
        np.testing.assert_allclose(p["m"], bgm.means_[:, 0], rtol=0, atol=1e-10)
        np.testing.assert_allclose(_posterior_weights(p), bgm.weights_, rtol=0, atol=1e-10)
        np.testing.assert_allclose(p["beta"], bgm.mean_precision_, rtol=1e-10)
        np.testing.assert_allclose(2 * p["a"], bgm.degrees_of_freedom_, rtol=1e-10)
        np.testing.assert_allclose(p["b"] / p["a"], bgm.covariances_[:, 0, 0], rtol=1e-9)


def test_full_matches_sklearn_at_convergence():
    x = mixture_sample([-3.0, 1.0, 4.0], [1.0, 0.8, 1.2], [400, 300, 300], 3)
    fit = cavi.fit_cavi(x, 3, model="full", n_init=3, tol=1e-10, max_iter=5000)
    bgm = BayesianGaussianMixture(
        n_components=3, **_sklearn_bgm(tol=1e-10 * x.size, max_iter=5000, random_state=0)
    ).fit(x[:, None])
    order = np.argsort(bgm.means_[:, 0])
    assert fit.converged and bgm.converged_
    np.testing.assert_allclose(fit.params["m"], bgm.means_[order, 0], atol=1e-3)
    np.testing.assert_allclose(_posterior_weights(fit.params), bgm.weights_[order], atol=1e-3)
    np.testing.assert_allclose(
        fit.params["b"] / fit.params["a"], bgm.covariances_[order, 0, 0], rtol=1e-3
    )
    # the defaults are sklearn's, through a0 = nu0 / 2 and b0 = covariance_prior / 2
    assert fit.prior["alpha0"] == bgm.weight_concentration_prior_
    assert fit.prior["beta0"] == bgm.mean_precision_prior_
    assert fit.prior["m0"] == pytest.approx(bgm.mean_prior_[0], rel=1e-14)
    assert 2 * fit.prior["a0"] == bgm.degrees_of_freedom_prior_
    assert 2 * fit.prior["b0"] == pytest.approx(bgm.covariance_prior_[0, 0], rel=1e-14)


# -- numerical robustness ----------------------------------------------------------------


@pytest.mark.parametrize("model", cavi.MODELS)
def test_far_apart_clusters_do_not_underflow(model):
    # 1000 standard deviations apart: exp of the unnormalised log responsibilities of the
    # far component underflows to 0 (allowed); nothing may overflow or become NaN
    x = mixture_sample([0.0, 1000.0], [1.0, 1.0], [200, 100], 4)
    prior = {"sigma2": 1e7} if model == "textbook" else None
    with np.errstate(divide="raise", over="raise", invalid="raise"):
        fit = cavi.fit_cavi(x, 2, model=model, prior=prior, n_init=2)
    assert np.isfinite(fit.elbo) and np.isfinite(fit.trace).all()
    assert all(np.isfinite(value).all() for value in fit.params.values())
    assert np.isfinite(fit.resp).all()
    far = x > 500
    np.testing.assert_allclose(fit.resp, np.column_stack([~far, far]), rtol=0, atol=1e-12)
    # with hard labels each mean is the conjugate posterior mean of its cluster
    if model == "textbook":
        shrink, centre = 1.0 / fit.prior["sigma2"], 0.0
    else:
        shrink, centre = fit.prior["beta0"], fit.prior["m0"]
    expected = [(shrink * centre + x[g].sum()) / (shrink + g.sum()) for g in (~far, far)]
    np.testing.assert_allclose(fit.params["m"], expected, rtol=1e-12)


# -- the estimator -----------------------------------------------------------------------


@pytest.mark.parametrize("model", cavi.MODELS)
def test_estimator_attributes_and_score_identity(model):
    x = mixture_sample([-2.0, 2.0], [1.0, 1.0], [150, 250], 8)
    est = GaussianMixtureCAVI(2, model=model, n_init=2).fit(x[:, None])
    assert est.converged_ and est.n_iter_ == est.lower_bounds_.shape[0]
    assert est.means_.shape == est.weights_.shape == est.variances_.shape == (2,)
    np.testing.assert_allclose(est.means_, [-2.0, 2.0], atol=0.25)
    if model == "full":
        np.testing.assert_allclose(est.weights_, [0.375, 0.625], atol=0.05)
        np.testing.assert_allclose(est.precisions_ * est.variances_, 1.0)
    proba = est.predict_proba(x)
    assert proba.shape == (400, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(est.predict(x), proba.argmax(axis=1))
    # per-point terms and the global KL make up the ELBO of the fit
    assert x.size * est.score(x) - est.kl_divergence_ == pytest.approx(est.lower_bound_, rel=1e-12)
    assert np.isfinite(est.score([0.0, 100.0]))


def test_estimator_passes_sklearn_priors_as_halves():
    x = mixture_sample([-2.0, 2.0], [1.0, 1.0], [100, 100], 9)
    est = GaussianMixtureCAVI(
        2, degrees_of_freedom_prior=3.0, covariance_prior=0.5, weight_concentration_prior=2.0
    ).fit(x)
    assert est.prior_["a0"] == 1.5 and est.prior_["b0"] == 0.25 and est.prior_["alpha0"] == 2.0


@pytest.mark.parametrize(
    ("X", "options", "message"),
    [
        ([0.0, np.nan, 1.0], {}, "NaN or infinite"),
        ([0.0, np.inf, 1.0], {}, "NaN or infinite"),
        ([1.0], {}, "at least 2 points"),
        (np.zeros((5, 2)), {}, "1-D or of shape"),
        ([0.0, 1.0, 2.0], {"model": "bishop"}, "model must be one of"),
        ([0.0, 1.0, 2.0], {"n_components": 0}, "at least 1"),
        ([0.0, 1.0, 2.0], {"n_components": 4}, "cannot exceed"),
        ([2.0, 2.0, 2.0], {}, "constant"),
        ([0.0, 1.0, 2.0], {"model": "textbook", "mean_prior": 1.0}, "model='full' only"),
        ([0.0, 1.0, 2.0], {"mean_prior_variance": 1.0}, "model='textbook' only"),
        ([0.0, 1.0, 2.0], {"covariance_prior": -1.0}, "positive"),
        ([0.0, 1.0, 2.0], {"tol": -1.0}, "tol"),
    ],
)
def test_estimator_rejects_bad_input(X, options, message):
    settings = {"n_components": 2, **options}
    with pytest.raises(ValueError, match=message):
        GaussianMixtureCAVI(**settings).fit(X)


def test_estimator_not_fitted_and_not_converged():
    with pytest.raises(RuntimeError, match="not fitted"):
        GaussianMixtureCAVI().predict([0.0, 1.0])
    x = mixture_sample([-1.0, 1.0], [1.0, 1.0], [100, 100], 10)
    with pytest.warns(UserWarning, match="did not converge"):
        est = GaussianMixtureCAVI(2, max_iter=2, tol=0.0).fit(x)
    assert not est.converged_ and est.n_iter_ == 2
