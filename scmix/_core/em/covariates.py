r"""Count mixtures with covariate effects shared by the components of a gene.

For gene j, cell i with size factor :math:`s_i` and covariate row :math:`z_i`,

.. math::

    x_{ij} \sim \sum_k \pi_{jk} f\bigl(x \mid s_i e^{z_i^\top\gamma_j} \mu_{jk},
    \theta_{jk}\bigr),

flexmix's ``FLXMRglmfix(fixed = ~ z)``: a shift between batches moves every component
of the gene alike, so it cannot pass for a second component. Fitted by a generalised EM
(GEM), every gene side by side:

* E-step: :math:`r_{ijk} \propto \pi_{jk} f_{ijk}`;
* M-step: :math:`\pi_{jk} = \frac1n \sum_i r_{ijk}`, then one Newton step on the expected
  complete-data log-likelihood :math:`Q = \sum_{ik} r_{ijk} \log f_{ijk}` jointly in
  :math:`(\log\mu_{j\cdot}, \gamma_j, \log\theta_{j\cdot})`, on the exact Hessian made
  negative definite, halved until Q does not decrease.

Both parts of the M-step increase Q, so the marginal log-likelihood never decreases
(the GEM property). The derivatives are the family's
(:meth:`~scmix._core.families.base.Family.glm_terms`); the same Newton machinery fits
the one-component model (:mod:`scmix._core.em.glm`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..families import Family
from ..families.base import CountTable
from .glm import (
    _LOG_THETA,
    GlmFit,
    _ascent_direction,
    _bounded,
    _has_theta,
    _rows_times,
    _rows_times_t,
    fit_glm,
    weighted_gram,
)
from .starts import quantile_labels

_MAX_HALVINGS = 30


@dataclass
class CovariateMixture:
    """Per-gene fit (components by increasing mean at the reference covariates)."""

    log_mu: np.ndarray  # (genes, K)
    log_theta: np.ndarray | None  # (genes, K)
    gamma: np.ndarray  # (genes, p) covariate effects, shared by the components
    weights: np.ndarray  # (genes, K)
    loglik: np.ndarray  # (genes,)
    converged: np.ndarray  # (genes,) bool
    n_iter: np.ndarray  # (genes,)
    resp: np.ndarray | None = None  # (genes, K, cells) at the fit
    trace: list | None = None  # the log-likelihoods (genes,) after each iteration


def fit_covariate_mixture(
    family: Family,
    x: np.ndarray,
    log_offset: np.ndarray,
    covariates: np.ndarray,
    n_components: int,
    *,
    n_init: int = 5,
    max_iter: int = 1000,
    tol: float = 1e-8,
    keep_trace: bool = False,
    em_tol: float = 1e-5,
    single: GlmFit | None = None,
) -> CovariateMixture:
    """The best of ``n_init`` fits of every row of ``x`` (genes, cells) by
    :func:`fit_from_split`, one from each split of :func:`split_levels` (deterministic:
    a gene's fit depends on its counts only, not on the chunk it is fitted in).
    ``single``: the one-component GLM of the same rows, when the caller has it."""
    counts = CountTable.of(x)
    if single is None:
        design = np.column_stack([np.ones(counts.x.shape[1]), covariates])
        single = fit_glm(family, counts, log_offset, design)
    best = None
    for levels in split_levels(n_components, n_init):
        fit = fit_from_split(
            family,
            counts,
            log_offset,
            covariates,
            single,
            levels,
            max_iter=max_iter,
            tol=tol,
            keep_trace=keep_trace,
            em_tol=em_tol,
        )
        best = fit if best is None else _better(best, fit)
    return best


def split_levels(n_components: int, n_init: int) -> list[np.ndarray]:
    """Quantile levels of the starting splits: the equal-size split first, then splits
    moved towards small upper and small lower groups, down to a few percent of the
    cells (a small component is the optimum an equal split misses most often). At
    most eight starts."""
    base = np.arange(1, n_components) / n_components
    shifts = [0.0, 0.6, -0.6, 0.9, -0.9, 0.3, -0.3, 0.75][: max(n_init, 1)]
    span = 1.0 / n_components
    return [np.clip(base + shift * span, 0.02, 0.98) for shift in shifts]


def _better(a: CovariateMixture, b: CovariateMixture) -> CovariateMixture:
    """Per gene, the fit with the larger log-likelihood (``a`` on ties)."""
    take_b = b.loglik > a.loglik
    if not take_b.any():
        return a
    out = CovariateMixture(**{k: v for k, v in vars(a).items()})
    for name in ("log_mu", "log_theta", "gamma", "weights", "loglik", "converged", "n_iter"):
        mine, other = getattr(a, name), getattr(b, name)
        if mine is not None:
            setattr(out, name, np.where(_expand(take_b, mine), other, mine))
    if a.resp is not None:
        out.resp = np.where(take_b[:, None, None], b.resp, a.resp)
    if a.trace is not None:  # the longer path goes on at its final value
        length = max(len(a.trace), len(b.trace))
        padded = [t + [t[-1]] * (length - len(t)) for t in (a.trace, b.trace)]
        out.trace = [np.where(take_b, tb, ta) for ta, tb in zip(*padded, strict=True)]
    return out


def _expand(mask, like):
    return mask.reshape(mask.shape + (1,) * (np.ndim(like) - 1))


def fit_from_split(
    family: Family,
    x: CountTable,
    log_offset: np.ndarray,
    covariates: np.ndarray,
    single,
    levels: np.ndarray,
    *,
    max_iter: int = 1000,
    tol: float = 1e-8,
    keep_trace: bool = False,
    em_tol: float = 1e-5,
) -> CovariateMixture:
    """Fit every row of ``x`` (genes, cells); ``covariates`` (cells, p) without an
    intercept. Starts from the one-component GLM ``single``'s covariate effects and the
    split of the counts divided by the fitted offsets at the quantile ``levels``. GEM
    iterations run until they raise a gene's log-likelihood by at most ``em_tol``
    (1 + |loglik|); Newton steps on the marginal log-likelihood (halved until it does
    not decrease) then finish it, until a step gains at most ``tol`` (1 + |loglik|).
    ``max_iter`` bounds both."""
    n_genes = x.x.shape[0]
    state = _start(family, x, log_offset, covariates, single, levels)
    loglik, resp = _e_step(family, x, log_offset, covariates, state)
    converged = np.zeros(n_genes, dtype=bool)
    n_iter = np.zeros(n_genes, dtype=np.int64)
    trace = [loglik.copy()] if keep_trace else None
    for _ in range(max_iter):
        active = np.flatnonzero(~converged)
        if active.size == 0:
            break
        sub = state.take(active)
        sub.weights = resp[active].mean(axis=2)
        counts = x.take(active)
        _newton_m_step(family, counts, log_offset, covariates, resp[active], sub)
        new_loglik, new_resp = _e_step(family, counts, log_offset, covariates, sub)
        gain = new_loglik - loglik[active]
        state.put(active, sub)
        loglik[active], resp[active] = new_loglik, new_resp
        n_iter[active] += 1
        converged[active[gain <= em_tol * (1.0 + np.abs(new_loglik))]] = True
        if keep_trace:
            trace.append(loglik.copy())
    converged[:] = False
    _newton_finish(
        family,
        (x, log_offset, covariates),
        state,
        loglik,
        converged,
        n_iter,
        tol=tol,
        max_iter=max_iter,
        trace=trace,
    )
    loglik, resp = _e_step(family, x, log_offset, covariates, state)
    if keep_trace:
        trace.append(loglik.copy())
    order = np.argsort(state.log_mu, axis=1, kind="stable")
    take = np.take_along_axis
    return CovariateMixture(
        log_mu=take(state.log_mu, order, axis=1),
        log_theta=None if state.log_theta is None else take(state.log_theta, order, axis=1),
        gamma=state.gamma,
        weights=take(state.weights, order, axis=1),
        loglik=loglik,
        converged=converged,
        n_iter=n_iter,
        resp=take(resp, order[:, :, None], axis=1),
        trace=trace,
    )


@dataclass
class _State:
    log_mu: np.ndarray  # (genes, K)
    log_theta: np.ndarray | None  # (genes, K)
    gamma: np.ndarray  # (genes, p)
    weights: np.ndarray  # (genes, K)

    def take(self, rows) -> _State:
        theta = None if self.log_theta is None else self.log_theta[rows].copy()
        return _State(self.log_mu[rows].copy(), theta, self.gamma[rows].copy(), self.weights[rows])

    def put(self, rows, other: _State) -> None:
        self.log_mu[rows], self.gamma[rows], self.weights[rows] = (
            other.log_mu,
            other.gamma,
            other.weights,
        )
        if self.log_theta is not None:
            self.log_theta[rows] = other.log_theta

    def vector(self) -> np.ndarray:
        parts = [self.log_mu, self.gamma]
        return np.column_stack(parts + ([] if self.log_theta is None else [self.log_theta]))

    def set_vector(self, values: np.ndarray) -> None:
        k, p = self.log_mu.shape[1], self.gamma.shape[1]
        self.log_mu, self.gamma = values[:, :k], values[:, k : k + p]
        if self.log_theta is not None:
            self.log_theta = np.clip(values[:, k + p :], *_LOG_THETA)


def _start(family, x, log_offset, covariates, single, levels) -> _State:
    """Covariate effects of the one-component fit; components from a split of the
    counts over their fitted offsets (the covariates' shifts removed) at the quantile
    ``levels`` (the equal split of :func:`quantile_labels` for equal levels, which
    keeps ties together)."""
    n_components = len(levels) + 1
    gamma = np.nan_to_num(single.coef[:, 1:])
    log_exposure = log_offset[None, :] + _rows_times(gamma, covariates)
    x = x.x
    y = x / np.exp(log_exposure)
    labels = quantile_labels(y, n_components)
    if not np.allclose(levels, np.arange(1, n_components) / n_components):
        thresholds = np.quantile(y, levels, axis=1).T  # (genes, K - 1)
        moved = (y[:, None, :] > thresholds[:, :, None]).sum(axis=1)
        filled = np.all([(moved == k).any(axis=1) for k in range(n_components)], axis=0)
        labels[filled] = moved[filled]
    resp = (labels[:, None, :] == np.arange(n_components)[None, :, None]).astype(np.float64)
    exposure = np.exp(log_exposure)
    rate = (resp * x[:, None, :]).sum(axis=2) / (resp * exposure[:, None, :]).sum(axis=2)
    overall = x.sum(axis=1) / exposure.sum(axis=1)
    rate = np.where(np.isfinite(rate) & (rate > 0), rate, np.maximum(overall, 1e-8)[:, None])
    log_theta = None
    if _has_theta(family):
        start = single.log_theta if single.log_theta is not None else np.zeros(x.shape[0])
        log_theta = np.repeat(np.nan_to_num(start)[:, None], n_components, axis=1)
    weights = np.full((x.shape[0], n_components), 1.0 / n_components)
    return _State(np.log(rate), log_theta, gamma, weights)


def _log_densities(family, x, log_offset, covariates, state, *, terms=False):
    """log f_ijk (genes, K, cells), and with ``terms`` each component's GlmTerms."""
    eta_base = log_offset[None, :] + _rows_times(state.gamma, covariates)
    out = []
    for k in range(state.log_mu.shape[1]):
        theta = None if state.log_theta is None else state.log_theta[:, k : k + 1]
        eta = eta_base + state.log_mu[:, k : k + 1]
        out.append(family.glm_terms(x, eta, theta, derivatives=terms))
    if terms:
        return out
    return np.stack([t.loglik for t in out], axis=1)


def covariate_e_step(family, x, log_offset, covariates, fit: CovariateMixture):
    """Marginal log-likelihood (genes,) and responsibilities (genes, K, cells) of the
    counts ``x`` (genes, cells) under the parameters of ``fit``."""
    theta = None if fit.log_theta is None else fit.log_theta.copy()
    state = _State(fit.log_mu.copy(), theta, fit.gamma.copy(), fit.weights.copy())
    return _e_step(family, CountTable.of(x), log_offset, covariates, state)


def _e_step(family, x, log_offset, covariates, state):
    """Marginal log-likelihood (genes,) and responsibilities (genes, K, cells)."""
    return _posterior(_log_densities(family, x, log_offset, covariates, state), state.weights)


def _posterior(log_densities: np.ndarray, weights: np.ndarray):
    """Marginal log-likelihood (genes,) and responsibilities (genes, K, cells) from the
    components' log-densities (genes, K, cells) and weights (genes, K)."""
    joint = log_densities + np.log(np.maximum(weights, 1e-300))[:, :, None]
    total = _logsumexp(joint)
    return total.sum(axis=1), np.exp(joint - total[:, None, :])


def _expected(family, x, log_offset, covariates, resp, state) -> np.ndarray:
    """Q without the weights' term: sum_ik r_ik log f_ik (genes,)."""
    return (resp * _log_densities(family, x, log_offset, covariates, state)).sum(axis=(1, 2))


def _newton_m_step(family, x, log_offset, covariates, resp, state: _State) -> None:
    """One halved Newton step on Q in (log mu, gamma, log theta), in place."""
    grad, hess = _q_derivatives(family, x, log_offset, covariates, resp, state)
    step = _bounded(_ascent_direction(grad, hess))
    start = state.vector()
    current = _expected(family, x, log_offset, covariates, resp, state)
    best = start.copy()
    pending = np.arange(x.x.shape[0])
    scale = 1.0
    for _ in range(_MAX_HALVINGS):
        if pending.size == 0:
            break
        trial = state.take(pending)
        trial.set_vector(start[pending] + scale * step[pending])
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            value = _expected(family, x.take(pending), log_offset, covariates, resp[pending], trial)
        good = np.isfinite(value) & (value >= current[pending])
        best[pending[good]] = trial.vector()[good]
        pending = pending[~good]
        scale *= 0.5
    state.set_vector(best)


def _q_derivatives(family, x, log_offset, covariates, resp, state):
    """Gradient and Hessian of Q in (log mu_1..K, gamma_1..p, log theta_1..K)."""
    terms = _log_densities(family, x, log_offset, covariates, state, terms=True)
    n_genes, n_comp = state.log_mu.shape
    p = covariates.shape[1]
    has_theta = state.log_theta is not None
    size = n_comp + p + (n_comp if has_theta else 0)
    grad = np.zeros((n_genes, size))
    hess = np.zeros((n_genes, size, size))
    g = slice(n_comp, n_comp + p)
    for k, t in enumerate(terms):
        r = resp[:, k, :]
        d1, d2 = r * t.d_eta, r * t.d2_eta
        grad[:, k] = d1.sum(axis=1)
        grad[:, g] += _rows_times_t(d1, covariates)
        hess[:, k, k] = d2.sum(axis=1)
        cross = _rows_times_t(d2, covariates)
        hess[:, k, g], hess[:, g, k] = cross, cross
        hess[:, g, g] += weighted_gram(d2, covariates)
        if has_theta:
            a = n_comp + p + k
            grad[:, a] = (r * t.d_alpha).sum(axis=1)
            hess[:, a, a] = (r * t.d2_alpha).sum(axis=1)
            mixed = r * t.d_eta_alpha
            hess[:, a, k] = hess[:, k, a] = mixed.sum(axis=1)
            with_gamma = _rows_times_t(mixed, covariates)
            hess[:, a, g], hess[:, g, a] = with_gamma, with_gamma
    return grad, hess


def _newton_finish(family, data, state, loglik, converged, n_iter, *, tol, max_iter, trace):
    """Newton steps on the marginal log-likelihood in (log mu, gamma, log theta, weight
    logits), on its exact Hessian (Louis: complete minus missing information), made
    negative definite and halved until the log-likelihood does not decrease: quadratic
    convergence where GEM crawls (weights of nearly equal components)."""
    x, log_offset, covariates = data
    for _ in range(max_iter):
        active = np.flatnonzero(~converged)
        if active.size == 0:
            return
        sub = state.take(active)
        counts = x.take(active)
        grad, hess = _marginal_derivatives(family, counts, log_offset, covariates, sub)
        step = _bounded(_ascent_direction(grad, hess))
        start = _with_logits(sub)
        best, best_ll = start.copy(), loglik[active].copy()
        pending = np.arange(active.size)
        scale = 1.0
        for _ in range(_MAX_HALVINGS):
            if pending.size == 0:
                break
            trial = sub.take(pending)
            _set_with_logits(trial, start[pending] + scale * step[pending])
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                value, _ = _e_step(family, counts.take(pending), log_offset, covariates, trial)
            good = np.isfinite(value) & (value >= loglik[active[pending]])
            best[pending[good]] = _with_logits(trial)[good]
            best_ll[pending[good]] = value[good]
            pending = pending[~good]
            scale *= 0.5
        gain = best_ll - loglik[active]
        _set_with_logits(sub, best)
        state.put(active, sub)
        loglik[active] = best_ll
        n_iter[active] += 1
        stuck = np.zeros(active.size, dtype=bool)
        stuck[pending] = True  # no halving raised the log-likelihood: stationary
        done = stuck | (gain <= tol * (1.0 + np.abs(best_ll)))
        converged[active[done]] = True
        if trace is not None:
            trace.append(loglik.copy())


def _with_logits(state: _State) -> np.ndarray:
    """The parameter vector with the weight logits xi_k = log(pi_k / pi_0), k >= 1."""
    logits = np.log(np.maximum(state.weights[:, 1:], 1e-300)) - np.log(
        np.maximum(state.weights[:, :1], 1e-300)
    )
    return np.column_stack([state.vector(), logits])


def _set_with_logits(state: _State, values: np.ndarray) -> None:
    n_comp = state.log_mu.shape[1]
    state.set_vector(values[:, : values.shape[1] - (n_comp - 1)])
    logits = np.column_stack(
        [np.zeros(values.shape[0]), values[:, values.shape[1] - (n_comp - 1) :]]
    )
    state.weights = np.exp(logits - _logsumexp(logits)[:, None])


def _marginal_derivatives(family, x, log_offset, covariates, state):
    """Gradient and Hessian of the marginal log-likelihood in the layout of
    :func:`_with_logits`: per cell, with s_ik the score of log(pi_k f_ik) and H_ik its
    Hessian, sum_k r_ik (H_ik + s_ik s_ik^T) - (sum_k r_ik s_ik)(...)^T (Louis 1982)."""
    terms = _log_densities(family, x, log_offset, covariates, state, terms=True)
    _, resp = _posterior(np.stack([t.loglik for t in terms], axis=1), state.weights)
    n_genes, n_comp = state.log_mu.shape
    n_cells, p = covariates.shape
    has_theta = state.log_theta is not None
    first_logit = n_comp + p + (n_comp if has_theta else 0)
    size = first_logit + n_comp - 1
    g = slice(n_comp, n_comp + p)
    scores = np.zeros((n_genes, n_comp, n_cells, size))
    hess = np.zeros((n_genes, size, size))
    pi = state.weights
    for k, t in enumerate(terms):
        r = resp[:, k, :]
        scores[:, k, :, k] = t.d_eta
        scores[:, k, :, g] = t.d_eta[:, :, None] * covariates[None]
        d2 = r * t.d2_eta
        hess[:, k, k] += d2.sum(axis=1)
        cross = _rows_times_t(d2, covariates)
        hess[:, k, g] += cross
        hess[:, g, k] += cross
        hess[:, g, g] += weighted_gram(d2, covariates)
        if has_theta:
            a = n_comp + p + k
            scores[:, k, :, a] = t.d_alpha
            hess[:, a, a] += (r * t.d2_alpha).sum(axis=1)
            mixed = r * t.d_eta_alpha
            hess[:, a, k] += mixed.sum(axis=1)
            hess[:, k, a] += mixed.sum(axis=1)
            with_gamma = _rows_times_t(mixed, covariates)
            hess[:, a, g] += with_gamma
            hess[:, g, a] += with_gamma
        # weight logits: d log pi_k / d xi_l = [k == l] - pi_l
        for other in range(1, n_comp):
            scores[:, k, :, first_logit + other - 1] = float(k == other) - pi[:, other : other + 1]
    # the logits' own Hessian, -(diag(pi) - pi pi^T) over l, m >= 1, for every cell
    w = pi[:, 1:]
    block = -(np.einsum("gl,lm->glm", w, np.eye(n_comp - 1)) - w[:, :, None] * w[:, None, :])
    hess[:, first_logit:, first_logit:] += n_cells * block
    mean_score = (resp[..., None] * scores).sum(axis=1)
    grad = mean_score.sum(axis=1)
    stacked = scores.reshape(n_genes, n_comp * n_cells, size)
    weighted = stacked * resp.reshape(n_genes, n_comp * n_cells, 1)
    hess += np.matmul(weighted.transpose(0, 2, 1), stacked)
    hess -= np.matmul(mean_score.transpose(0, 2, 1), mean_score)
    return grad, hess


def _logsumexp(values: np.ndarray) -> np.ndarray:
    """log sum_k exp(values[:, k, ...]) over axis 1, shifted by the maximum (scipy's
    ``logsumexp`` costs more in argument handling than in arithmetic at these sizes)."""
    top = values.max(axis=1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    return np.log(np.exp(values - top).sum(axis=1)) + top[:, 0]
