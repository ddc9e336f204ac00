"""Newton steps on the marginal log-likelihood (scmix._core.em.newton) and the split start
that runs only where needed: derivatives against finite differences, monotone traces,
and the optimum against scipy."""

from __future__ import annotations

import numpy as np
import pytest
from adata_helpers import fit_chunk
from scipy import optimize

import scmix
from scmix._core.em import driver as em
from scmix._core.em.driver import e_step_at, run_em
from scmix._core.em.newton import NewtonSteps
from scmix._core.em.starts import starts
from scmix._core.families import NegativeBinomial, Poisson
from scmix._core.families.base import ChunkData

FAMILIES = {"nb": (NegativeBinomial, ("mu", "theta")), "poisson": (Poisson, ("mu",))}


def _data(seed=1, n_cells=400):
    rng = np.random.default_rng(seed)
    s = np.exp(rng.normal(0.0, 0.5, n_cells))
    s /= s.mean()
    # a sparse, a moderate and a high-count gene
    x = np.vstack([rng.negative_binomial(2, 2 / (2 + s * m)) for m in (0.3, 5.0, 40.0)])
    return ChunkData(np.ascontiguousarray(x, dtype=np.float64), s), rng


def _pack(params, weights, names):
    logits = np.log(weights[:, :-1]) - np.log(weights[:, -1:])
    return np.concatenate([logits] + [np.log(params[n]) for n in names], axis=1)


def _unpack(z, n_comp, names):
    logits = np.concatenate([z[:, : n_comp - 1], np.zeros((z.shape[0], 1))], axis=1)
    w = np.exp(logits - logits.max(axis=1, keepdims=True))
    params = {
        n: np.exp(z[:, n_comp - 1 + q * n_comp : n_comp - 1 + (q + 1) * n_comp])
        for q, n in enumerate(names)
    }
    return params, w / w.sum(axis=1, keepdims=True)


def _derivatives(family, data, params, weights, state=None):
    n_rows, n_comp = weights.shape
    size = n_comp - 1 + n_comp * len(params)
    grad, hess = np.zeros((n_rows, size)), np.zeros((n_rows, size, size))
    family.marginal_derivatives(data, params, np.log(weights), np.arange(n_rows), state, grad, hess)
    return grad, hess


@pytest.mark.parametrize("name", ["nb", "poisson"])
@pytest.mark.parametrize("n_comp", [2, 3])
def test_marginal_derivatives_match_finite_differences(name, n_comp):
    make, names = FAMILIES[name]
    family = make()
    data, rng = _data()
    n_rows = data.x.shape[0]
    params = {"mu": rng.uniform(0.5, 20.0, (n_rows, n_comp))}
    if "theta" in names:
        params["theta"] = rng.uniform(0.5, 30.0, (n_rows, n_comp))
    weights = rng.dirichlet(np.ones(n_comp), n_rows)
    z0 = _pack(params, weights, names)
    grad, hess = _derivatives(family, data, params, weights)
    assert np.allclose(hess, np.transpose(hess, (0, 2, 1)))
    h = 1e-5
    for p in range(z0.shape[1]):
        step = np.zeros(z0.shape[1])
        step[p] = h
        up, down = _unpack(z0 + step, n_comp, names), _unpack(z0 - step, n_comp, names)
        # gradient: central differences of the log-likelihood itself
        slope = (e_step_at(family, data, *up) - e_step_at(family, data, *down)) / (2 * h)
        np.testing.assert_allclose(grad[:, p], slope, rtol=1e-5, atol=1e-4)
        # Hessian: central differences of the analytic gradient
        column = (_derivatives(family, data, *up)[0] - _derivatives(family, data, *down)[0]) / (
            2 * h
        )
        np.testing.assert_allclose(hess[:, :, p], column, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", ["nb", "poisson"])
def test_derivatives_on_quadrature_nodes_match_every_cell(name):
    """With the state of an E-step on nodes, the sums over pooled zeros (and ones)
    agree with the sums over every cell."""
    make, names = FAMILIES[name]
    family = make()
    data, rng = _data(seed=2, n_cells=3000)
    n_rows, n_comp = data.x.shape[0], 2
    # Poisson responsibilities turn sharply with s at large means (the nodes would
    # fail their error check there): moderate means
    low, high = (0.2, 10.0) if "theta" in names else (1.0, 3.0)
    params = {"mu": rng.uniform(low, high, (n_rows, n_comp))}
    if "theta" in names:
        params["theta"] = rng.uniform(0.5, 10.0, (n_rows, n_comp))
    weights = np.full((n_rows, n_comp), 0.5)
    state = family.new_state(data, n_comp)
    resp = np.empty((n_rows, n_comp, data.n_cells))
    loglik, sums = np.empty(n_rows), np.empty((n_rows, n_comp))
    family.e_step(data, params, np.log(weights), np.arange(n_rows), resp, loglik, sums, state)
    assert state[1].any(), "no gene was summed on nodes: the test tests nothing"
    on_nodes = _derivatives(family, data, params, weights, state)
    every = _derivatives(family, data, params, weights)
    np.testing.assert_allclose(on_nodes[0], every[0], rtol=1e-9, atol=1e-8)
    np.testing.assert_allclose(on_nodes[1], every[1], rtol=1e-9, atol=1e-8)


def _overlapping(n_genes=20, seed=5):
    """Genes where K=2 is over-fitted (one NB each): EM crawls along flat ridges."""
    adata = scmix.datasets.simulate(
        n_cells=800, n_genes=n_genes, n_components=2, fold_change=1.3, random_state=seed
    )
    x = np.ascontiguousarray(np.asarray(adata.X, dtype=np.float64).T)
    return x, adata.obs["size_factors"].to_numpy()


def _fit_with(family, x, s, newton_after, tol=1e-8, max_iter=300):
    """EM from the quantile split of every gene by :func:`run_em`, with Newton steps
    after ``newton_after`` EM steps (None: EM only)."""
    data = ChunkData(x, s)
    n_comp = 2
    resp = np.empty((x.shape[0], n_comp, x.shape[1]))
    params, weights = next(
        starts(family, data, n_comp, 1, np.zeros((x.shape[0], 1, 2)), resp, None)
    )
    loglik, converged, n_iter, trace = run_em(
        family,
        data,
        params,
        weights,
        resp,
        max_iter=max_iter,
        tol=tol,
        constant=family.log_prob_constant(data),
        keep_trace=True,
        newton_after=newton_after,
    )
    return params, weights, loglik, converged, n_iter, trace


@pytest.mark.parametrize("name", ["nb", "poisson"])
def test_newton_phase_keeps_the_trace_monotone(name):
    family = FAMILIES[name][0]()
    x, s = _overlapping()
    for newton_after in (1, 4):
        *_, loglik, converged, _, trace = _fit_with(family, x, s, newton_after)
        assert converged.all()
        for j in range(trace.shape[1]):
            values = trace[:, j][np.isfinite(trace[:, j])]
            assert values.size >= 2
            assert np.diff(values).min() >= -1e-10 * abs(values[-1]), j
            assert values[-1] == pytest.approx(loglik[j], rel=1e-12)


@pytest.mark.parametrize("name", ["nb", "poisson"])
def test_newton_finish_takes_fewer_steps_and_ends_at_a_maximum(name):
    """On over-fitted genes EM crawls; with Newton steps the fit needs fewer steps, and
    scipy started from its result finds no higher point."""
    make, names = FAMILIES[name]
    family = make()
    x, s = _overlapping()
    params, weights, loglik, converged, n_iter, _ = _fit_with(family, x, s, 4, tol=1e-9)
    *_, em_iter, _ = _fit_with(family, x, s, None, tol=1e-9, max_iter=2000)
    assert n_iter.sum() < 0.7 * em_iter.sum(), (n_iter.sum(), em_iter.sum())
    assert converged.all()
    z = _pack(params, weights, names)
    for j in range(x.shape[0]):
        data = ChunkData(x[j : j + 1], s)

        def negative(v, data=data):
            return -e_step_at(family, data, *_unpack(v[None, :], 2, names))[0]

        bounds = [(None, None)] + [
            family.log_bounds().get(n, (None, None)) for n in names for _ in range(2)
        ]
        bounds = [
            (None if lo == -np.inf else lo, None if hi == np.inf else hi) for lo, hi in bounds
        ]
        best = optimize.minimize(negative, z[j], method="L-BFGS-B", bounds=bounds)
        assert -best.fun <= loglik[j] + 1e-7 * abs(loglik[j]), (j, -best.fun - loglik[j])


def test_split_start_leaves_the_saddle_of_equal_components(svensson_20312):
    """ERCC-00162 (Svensson 20312): the quantile start ends below the one-component
    fit, so the split of that fit (two almost equal components, next to a saddle) runs.
    EM from there stopped after 3 steps, 0.0007 above K=1; Newton steps from the start
    leave the saddle along its negative curvature, for a maximum 10.8 above K=1."""
    family = NegativeBinomial()
    gene = svensson_20312[:, "ERCC-00162"]
    x = np.ascontiguousarray(np.asarray(gene.X, dtype=np.float64).T)
    s = gene.obs["size_factors"].to_numpy()
    uniforms = np.zeros((1, 1, 2))
    options = {"n_init": 1, "max_iter": 300, "tol": 1e-6}
    single = fit_chunk(family, x, s, 1, uniforms=uniforms[:, :, :1], **options)
    fit = fit_chunk(family, x, s, 2, uniforms=uniforms, single=single, **options)
    assert fit.loglik[0] > single.loglik[0] + 5.0


def test_split_start_runs_only_where_no_other_start_reached_k1(svensson_20312, monkeypatch):
    """The split of the one-component fit is run for exactly the genes where the label
    starts did not rise above the one-component log-likelihood by more than the
    convergence tolerance; the LRT stays >= 0."""
    family = NegativeBinomial()
    counts = np.asarray(svensson_20312.X, dtype=np.float64).T
    x = np.ascontiguousarray(counts[counts.sum(axis=1) > 0])
    s = svensson_20312.obs["size_factors"].to_numpy()
    uniforms = np.random.default_rng(0).uniform(size=(x.shape[0], 1, 2))
    single = fit_chunk(
        family, x, s, 1, n_init=1, max_iter=300, tol=1e-6, uniforms=uniforms[:, :, :1]
    )
    runs = []
    original = em._run_starts

    def recording(family, data, start_list, keep, **options):
        result = original(family, data, start_list, keep, **options)
        runs.append((keep.copy(), result))
        return result

    monkeypatch.setattr(em, "_run_starts", recording)
    fit = fit_chunk(
        family, x, s, 2, n_init=1, max_iter=300, tol=1e-6, uniforms=uniforms, single=single
    )
    assert len(runs) == 2
    (first_keep, (_, first_gene, first)), (split_keep, _) = runs
    assert not first_keep[-1].any() and not split_keep[:-1].any()
    best = np.full(x.shape[0], -np.inf)
    np.maximum.at(best, first_gene, first["loglik"])
    needed = best <= single.loglik + 1e-6 * x.shape[1]  # within tol x n_cells of K=1
    # both cases occur on these ERCC (otherwise the test would not test the choice)
    assert needed.any() and not needed.all()
    np.testing.assert_array_equal(split_keep[-1], needed)
    assert (fit.loglik >= single.loglik - 1e-9 * np.abs(single.loglik)).all()


def test_a_flat_step_along_negative_curvature_hands_the_gene_back_to_em():
    """On a flat ridge (towards the Poisson limit the log-likelihood is nearly flat in
    log theta, yet may rise far away, as on ERCC-00025 of Svensson 20312) a step along
    negative curvature that gains at most the threshold does not leave the gene in
    Newton: it goes back to EM, whose M-step can move theta far in one step. A step
    that gains more keeps it in Newton; a step that loses is halved."""
    data, _ = _data()
    n_rows = data.x.shape[0]
    params = {"mu": np.tile([1.0, 5.0], (n_rows, 1)), "theta": np.full((n_rows, 2), 2.0)}
    weights = np.full((n_rows, 2), 0.5)
    newton = NewtonSteps(NegativeBinomial(), params, weights)
    rows = np.arange(n_rows)
    newton.escaping[rows] = True
    newton.base_loglik[rows] = -100.0
    threshold = 1e-3
    loglik = np.array([-100.0 + 0.5 * threshold, -100.0 + 1.0, -101.0])
    accepted, stopped, given_up = newton.judge(rows, loglik, threshold)
    assert accepted.tolist() == [True, True, False]
    assert given_up.tolist() == [True, False, False]
    assert not stopped.any()
    assert newton.step.tolist() == [1.0, 1.0, 0.5]


def test_one_component_fit_reaches_the_maximum_beyond_the_stopping_threshold():
    """K=1 fits stop when Newton predicts a gain below tol * n_cells, then take that
    last step: at an interior maximum the log-likelihood is at scipy's to 1e-10, not
    just to the threshold (1e-3 here)."""
    rng = np.random.default_rng(4)
    n_cells, n_genes = 1000, 20
    s = np.exp(rng.normal(0.0, 0.4, n_cells))
    s /= s.mean()
    means, thetas = rng.uniform(0.5, 30.0, n_genes), rng.uniform(0.5, 20.0, n_genes)
    x = np.vstack(
        [rng.negative_binomial(t, t / (t + s * m)) for m, t in zip(means, thetas, strict=True)]
    ).astype(np.float64)
    family = NegativeBinomial()
    fit = fit_chunk(
        family, x, s, 1, n_init=1, max_iter=100, tol=1e-6, uniforms=np.zeros((n_genes, 1, 1))
    )
    for j in range(n_genes):
        data = ChunkData(np.ascontiguousarray(x[j : j + 1]), s)

        def negative(v, data=data):
            params = {"mu": np.exp(v[:1])[None, :], "theta": np.exp(v[1:])[None, :]}
            return -e_step_at(family, data, params, np.ones((1, 1)))[0]

        start = np.log([fit.params["mu"][j, 0], fit.params["theta"][j, 0]])
        bounds = [(None, None), family.log_bounds()["theta"]]
        best = optimize.minimize(
            negative,
            np.clip(start, [-np.inf, bounds[1][0]], [np.inf, bounds[1][1]]),
            method="Nelder-Mead",
            bounds=bounds,
            options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 4000},
        )
        shortfall = -best.fun - fit.loglik[j]
        if best.x[1] < bounds[1][1] - 1.0:
            # an interior maximum: the last Newton step reached it
            assert shortfall <= 1e-10 * abs(best.fun), (j, shortfall)
        else:
            # theta at its bound (Poisson-like counts): along this flat ridge EM stops
            # once a cycle gains at most tol * n_cells
            assert shortfall <= 1e-6 * n_cells, (j, shortfall)


def test_newton_directions_match_the_eigendecomposition_formula():
    """d = V diag(1/|lambda|) V^T g for -H = V diag(lambda) V^T (|lambda| floored),
    at most MAX_STEP per coordinate; coordinates at a bound with the gradient pushing
    outwards held; a small predicted gain at a maximum stops, at a saddle escapes
    along the eigenvector of the most positive curvature; non-finite rows take no step."""
    from scmix._core.em.newton import EIGEN_FLOOR, MAX_STEP, _directions

    rng = np.random.default_rng(7)
    n_rows, size = 6, 5
    a = rng.normal(size=(n_rows, size, size))
    hess = -np.einsum("rij,rkj->rik", a, a) - 0.1 * np.eye(size)  # negative definite
    hess[1] = -hess[1] + 0.0  # positive definite: a minimum in every direction
    grad = rng.normal(size=(n_rows, size))
    grad[2] *= 1e-9  # a maximum, tiny predicted gain: done
    grad[3] *= 1e-9
    hess[3, 0, 0] = 5.0  # a saddle with a tiny gradient: escape
    z = rng.normal(size=(n_rows, size))
    z[:, 4] = 1.0  # above the bound of coordinate 4 (but in row 4)
    lower = np.full(size, -np.inf)
    upper = np.full(size, np.inf)
    lower[4] = 0.0
    z[4, 4] = 0.0
    grad[4, 4] = -1.0  # row 4: coordinate 4 at its lower bound, pushed outwards: held
    grad[5, 0] = np.nan  # row 5: not finite
    loglik = np.full(n_rows, -1000.0)
    d, ok, done, escape, at_maximum = _directions(z, grad, hess, lower, upper, loglik, 1e-3)
    np.testing.assert_array_equal(ok, [True, True, True, True, True, False])
    np.testing.assert_array_equal(done, [False, False, True, False, False, False])
    np.testing.assert_array_equal(escape, [False, False, False, True, False, False])
    np.testing.assert_array_equal(at_maximum, [False, False, True, False, False, False])
    for r in (0, 1, 4):
        g, minus_h = grad[r].copy(), -hess[r]
        if r == 4:
            g[4] = 0.0
            minus_h[4, :] = minus_h[:, 4] = 0.0
            minus_h[4, 4] = 1.0
        lam, vec = np.linalg.eigh(minus_h)
        mag = np.maximum(np.abs(lam), EIGEN_FLOOR * np.abs(lam).max())
        expected = vec @ ((vec.T @ g) / mag)
        expected *= min(1.0, MAX_STEP / np.abs(expected).max())
        np.testing.assert_allclose(d[r], expected, rtol=1e-10, atol=1e-12)
    assert d[4, 4] == 0.0
    lam, vec = np.linalg.eigh(-hess[3])
    v = vec[:, 0] * np.sign(vec[:, 0] @ grad[3])
    np.testing.assert_allclose(d[3], MAX_STEP * v / np.abs(v).max(), rtol=1e-10)
    assert not d[5].any()
