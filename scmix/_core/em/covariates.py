r"""Count mixtures with covariate effects shared by the components of a gene.

For gene j, cell i with size factor :math:`s_i` and covariate row :math:`z_i`,

.. math::

    x_{ij} \sim \sum_k \pi_{jk} f\bigl(x \mid s_i e^{z_i^\top\gamma_j} \mu_{jk},
    \theta_{jk}\bigr),

flexmix's ``FLXMRglmfix(fixed = ~ z)``: a shift between batches moves every component
of the gene alike, so it cannot pass for a second component. Fitted by a generalised EM
(GEM), gene by gene (:mod:`.covariate_rows`):

* E-step: :math:`r_{ijk} \propto \pi_{jk} f_{ijk}`;
* M-step: :math:`\pi_{jk} = \frac1n \sum_i r_{ijk}`, then one Newton step on the expected
  complete-data log-likelihood :math:`Q = \sum_{ik} r_{ijk} \log f_{ijk}` jointly in
  :math:`(\log\mu_{j\cdot}, \gamma_j, \log\theta_{j\cdot})`, on the exact Hessian made
  negative definite, halved until Q does not decrease.

Both parts of the M-step increase Q, so the marginal log-likelihood never decreases
(the GEM property). Once an iteration gains little, Newton steps on the marginal
log-likelihood (its Hessian by Louis' identity) finish the fit. The derivatives come
from one pass over the cells (:mod:`.covariate_kernels`), on each family's per-cell
terms (:mod:`scmix._core.families._glm_cells`); the same Newton steps fit the
one-component model (:mod:`.glm`). This module chooses the starts and keeps each
gene's best.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..families import Family
from ..families.base import CountTable
from .covariate_kernels import Components, exposure_of, marginal_loglik
from .covariate_rows import MixtureSteps, mixture_rows
from .glm import GlmFit, _has_theta, _rows_times, fit_glm
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
    state = _start(family, x, log_offset, covariates, single, levels)
    exposure = exposure_of(log_offset, covariates)
    limits = MixtureSteps(max_iter, tol, em_tol, _MAX_HALVINGS)
    genes = np.arange(x.x.shape[0])
    rows = mixture_rows(
        family.glm_kind, x, exposure, _kernel_params(state), genes, limits, keep_trace=keep_trace
    )
    fitted = rows.params
    state = _State(
        fitted.log_mu,
        None if state.log_theta is None else fitted.log_theta,
        fitted.gamma,
        np.exp(fitted.log_weights),
    )
    loglik, resp, converged, n_iter = rows.loglik, rows.resp, rows.converged, rows.n_iter
    trace = _trace_list(rows.trace) if keep_trace else None
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


def _kernel_params(state: _State) -> Components:
    """The state as the kernels take it (log weights floored: an emptied component
    keeps a finite log-likelihood)."""
    log_theta = np.zeros_like(state.log_mu) if state.log_theta is None else state.log_theta
    log_weights = np.log(np.maximum(state.weights, 1e-300))
    return Components(state.log_mu, log_theta, state.gamma, log_weights)


def covariate_e_step(family, x, log_offset, covariates, fit: CovariateMixture):
    """Marginal log-likelihood (genes,) and responsibilities (genes, K, cells) of the
    counts ``x`` (genes, cells) under the parameters of ``fit``."""
    state = _State(fit.log_mu, fit.log_theta, fit.gamma, fit.weights)
    exposure = exposure_of(log_offset, covariates)
    params = _kernel_params(state)
    return marginal_loglik(family.glm_kind, CountTable.of(x), exposure, params, with_resp=True)


def _trace_list(trace: np.ndarray) -> list[np.ndarray]:
    """The per-gene paths (genes, 1 + points; the count first) as a list of
    log-likelihoods (genes,) per point, a gene's last value repeated once it stopped."""
    counts = trace[:, 0].astype(np.int64)
    points = trace[:, 1 : 1 + counts.max(initial=1)]
    for row, count in enumerate(counts):
        points[row, count:] = points[row, count - 1]
    return list(points.T.copy())
