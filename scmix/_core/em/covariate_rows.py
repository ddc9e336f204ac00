r"""The iterations of the fits with covariates, gene by gene inside numba: the Newton
steps of the GLM (:mod:`.glm`) and the GEM and Newton steps of the mixture
(:mod:`.covariates`), on the per-gene objectives of :mod:`.covariate_kernels`.

A gene's parameters are a vector in the layout of :mod:`.covariate_kernels`:
:math:`(\log\mu_{1..K}, \gamma_{1..p}, \log\theta_{1..K}, \xi_{2..K})`. A Newton step
is

.. math::

    d = V\,\mathrm{diag}(1/\max(\lambda, \epsilon))\,V^\top g, \qquad
    -H = V \mathrm{diag}(\lambda) V^\top,

with :math:`\epsilon` a small fraction of the largest :math:`|\lambda|`, so that
:math:`d` ascends even where :math:`H` is not negative definite; it is shortened so
that no coordinate moves by more than ``MAX_MOVE`` and halved until the objective does
not decrease. So every accepted step keeps the objective non-decreasing, and a GEM
iteration (the weights' closed-form update, then one such step on Q) keeps the
marginal log-likelihood non-decreasing.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..families import THETA_MAX, THETA_MIN
from ..families._glm_cells import NB, POISSON
from ..numerics.jit import jit, over_rows
from .covariate_kernels import (
    Components,
    gene_derivatives,
    gene_objective,
    new_work,
    terms_objective,
)

#: Largest first move of a log-parameter or logit in one step (a factor e^3).
MAX_MOVE = 3.0
_LOG_THETA_MIN = math.log(THETA_MIN)
_LOG_THETA_MAX = math.log(THETA_MAX)
#: Weights are floored here (log) so that an emptied component keeps finite terms.
_LOG_WEIGHT_MIN = math.log(1e-300)


class Gene(NamedTuple):
    """One gene's data in a fit: the family code, the chunk's counts and exposure
    (:mod:`.covariate_kernels`), the gene's row of the counts and its scratch."""

    kind: int
    counts: tuple
    exposure: tuple
    g: int
    work: tuple


class Steps(NamedTuple):
    """How :func:`newton` runs: at most ``max_steps`` steps of at most
    ``max_halvings`` halvings; it stops when a step gains at most ``tol`` (1 +
    |objective|) and moves no coordinate by more than ``max_still`` (inf: any move),
    or when no halving raises the objective."""

    max_steps: int
    tol: float
    max_halvings: int
    max_still: float


@jit
def _size(params, n_theta, louis):
    n_comp = params.log_mu.shape[1]
    return n_comp + params.gamma.shape[1] + n_theta + (n_comp - 1 if louis else 0)


@jit
def get_vector(params, n_theta, louis):
    """Row 0 of ``params`` as a vector (the logits from the log weights, ``louis``)."""
    n_comp, n_cov = params.log_mu.shape[1], params.gamma.shape[1]
    vector = np.empty(_size(params, n_theta, louis))
    for k in range(n_comp):
        vector[k] = params.log_mu[0, k]
    for c in range(n_cov):
        vector[n_comp + c] = params.gamma[0, c]
    for k in range(n_theta):
        vector[n_comp + n_cov + k] = params.log_theta[0, k]
    if louis:
        for m in range(1, n_comp):
            vector[n_comp + n_cov + n_theta + m - 1] = (
                params.log_weights[0, m] - params.log_weights[0, 0]
            )
    return vector


@jit
def set_vector(vector, params, n_theta, louis):
    """Row 0 of ``params`` from a vector (log theta kept within its bounds; with
    ``louis`` the weights from the logits, normalised)."""
    n_comp, n_cov = params.log_mu.shape[1], params.gamma.shape[1]
    for k in range(n_comp):
        params.log_mu[0, k] = vector[k]
    for c in range(n_cov):
        params.gamma[0, c] = vector[n_comp + c]
    for k in range(n_theta):
        value = vector[n_comp + n_cov + k]
        params.log_theta[0, k] = min(max(value, _LOG_THETA_MIN), _LOG_THETA_MAX)
    if louis:
        first = n_comp + n_cov + n_theta - 1
        top = 0.0
        for m in range(1, n_comp):
            top = max(top, vector[first + m])
        total = math.exp(-top)
        for m in range(1, n_comp):
            total += math.exp(vector[first + m] - top)
        log_total = top + math.log(total)
        params.log_weights[0, 0] = max(-log_total, _LOG_WEIGHT_MIN)
        for m in range(1, n_comp):
            params.log_weights[0, m] = max(vector[first + m] - log_total, _LOG_WEIGHT_MIN)


@jit
def ascent_step(grad, hess):
    """The Newton direction on -H with its eigenvalues floored at 1e-10 of the largest
    (at least 1e-12), shortened to move no coordinate by more than ``MAX_MOVE``; zero
    where the derivatives are not finite."""
    size = grad.shape[0]
    step = np.zeros(size)
    if not (np.all(np.isfinite(grad)) and np.all(np.isfinite(hess))):
        return step
    values, vectors = np.linalg.eigh(-hess)
    top = 0.0
    for p in range(size):
        top = max(top, abs(values[p]))
    floor = max(1e-10 * top, 1e-12)
    for p in range(size):
        projected = 0.0
        for q in range(size):
            projected += vectors[q, p] * grad[q]
        projected /= max(values[p], floor)
        for q in range(size):
            step[q] += vectors[q, p] * projected
    largest = 0.0
    for p in range(size):
        largest = max(largest, abs(step[p]))
    if largest > MAX_MOVE:
        step *= MAX_MOVE / largest
    return step


@jit
def newton(gene, params, resp, louis, steps, value, trace):
    """Newton steps on :func:`~.covariate_kernels.gene_objective` of ``gene`` from
    row 0 of ``params`` (updated in place), whose objective is ``value`` and whose cell
    terms, with derivatives, are in ``gene.work.terms``. Each step's objective is
    appended to ``trace`` (``trace[0]`` counts the points; no record where it has
    length 0). Returns ``(value, steps taken, converged)``; the cell terms are left at
    the returned parameters (with derivatives)."""
    n_theta = params.log_mu.shape[1] if gene.kind == NB else 0
    size = _size(params, n_theta, louis)
    out = (np.empty(size), np.empty((size, size)))
    kind, counts, exposure, g, work = gene
    for taken in range(steps.max_steps):
        gene_derivatives(kind, counts, exposure, params, 0, g, resp, louis, work, out, False)
        step = ascent_step(*out)
        start = get_vector(params, n_theta, louis)
        scale = 1.0
        accepted = False
        new_value = value
        for _ in range(steps.max_halvings):
            set_vector(start + scale * step, params, n_theta, louis)
            trial = gene_objective(kind, counts, exposure, params, 0, g, resp, louis, work, True)
            if np.isfinite(trial) and trial >= value:
                accepted, new_value = True, trial
                break
            scale *= 0.5
        if not accepted:
            set_vector(start, params, n_theta, louis)
            gene_objective(kind, counts, exposure, params, 0, g, resp, louis, work, True)
            return value, taken + 1, True
        moved = np.max(np.abs(get_vector(params, n_theta, louis) - start))
        gain = new_value - value
        value = new_value
        _record(trace, value)
        if gain <= steps.tol * (1.0 + abs(value)) and moved <= steps.max_still:
            return value, taken + 1, True
    return value, steps.max_steps, False


@jit
def _record(trace, value):
    if trace.shape[0] > 0:
        count = int(trace[0])
        if count + 1 < trace.shape[0]:
            trace[count + 1] = value
            trace[0] = count + 1


@jit
def fit_glm_row(gene, weights, params, steps):
    """The GLM of one gene (row 0 of ``params``: K = 1) with cell ``weights`` (1,
    cells): the intercept at the weighted rate, then a Poisson fit and, for NB, theta
    from the moments of its residuals, then Newton steps. Returns ``(log-likelihood,
    steps taken, converged)``."""
    kind, counts, exposure, g, work = gene
    x, w = counts.x[g], weights[0]
    total, exposed = 0.0, 0.0
    for i in range(x.shape[0]):
        total += w[i] * x[i]
        exposed += w[i] * math.exp(exposure.log_offset[i])
    params.log_mu[0, 0] = math.log(total / exposed)
    params.gamma[0, :] = 0.0
    empty = np.zeros(1)
    if kind == NB:
        poisson = Gene(POISSON, counts, exposure, g, work)
        value = gene_objective(POISSON, counts, exposure, params, 0, g, weights, False, work, True)
        newton(poisson, params, weights, False, Steps(20, 1e-8, 40, 1e-7), value, empty)
        excess, scale = 0.0, 0.0  # the moments of the Poisson fit's residuals
        base = exposure.log_offset
        for i in range(x.shape[0]):
            eta = base[i] + params.log_mu[0, 0]
            for c in range(params.gamma.shape[1]):
                eta += exposure.columns[c, i] * params.gamma[0, c]
            m = math.exp(eta)
            excess += w[i] * ((x[i] - m) ** 2 - x[i])
            scale += w[i] * m * m
        phi = min(max(excess / scale, 1e-4), 1e4) if scale > 0.0 else 1e4
        params.log_theta[0, 0] = min(max(-math.log(phi), _LOG_THETA_MIN), _LOG_THETA_MAX)
    value = gene_objective(kind, counts, exposure, params, 0, g, weights, False, work, True)
    return newton(gene, params, weights, False, steps, value, empty)


class MixtureSteps(NamedTuple):
    """The stopping rules of :func:`fit_mixture_row`."""

    max_iter: int
    tol: float
    em_tol: float
    max_halvings: int


@jit
def fit_mixture_row(gene, params, limits, fixed, trace):
    """The mixture of one gene from the start in row 0 of ``params`` (updated in
    place): GEM iterations (weights, then one halved Newton step on Q at the
    responsibilities ``fixed`` (K, cells)) until one gains at most ``em_tol`` (1 +
    |loglik|), then Newton steps on the marginal log-likelihood until one gains at most
    ``tol`` (1 + |loglik|); ``max_iter`` bounds each. Leaves the responsibilities at the
    result in ``gene.work.resp``; returns ``(loglik, iterations, converged)``."""
    kind, counts, exposure, g, work = gene
    n_comp, n_cells = fixed.shape
    # every objective below leaves its cell terms, with derivatives, in work.terms: the
    # next step's derivatives, Q and E-step reuse them
    loglik = gene_objective(kind, counts, exposure, params, 0, g, fixed, True, work, True)
    _record(trace, loglik)
    one_step = Steps(1, 0.0, limits.max_halvings, np.inf)
    empty = np.zeros(0)
    n_iter = 0
    for _ in range(limits.max_iter):
        fixed[:] = work.resp
        for k in range(n_comp):
            weight = 0.0
            for i in range(n_cells):
                weight += fixed[k, i]
            log_weight = math.log(weight / n_cells) if weight > 0.0 else _LOG_WEIGHT_MIN
            params.log_weights[0, k] = max(log_weight, _LOG_WEIGHT_MIN)
        current = terms_objective(counts, params, 0, g, fixed, False, work)
        newton(gene, params, fixed, False, one_step, current, empty)
        new = terms_objective(counts, params, 0, g, fixed, True, work)  # the E-step
        gain = new - loglik
        loglik = new
        n_iter += 1
        _record(trace, loglik)
        if gain <= limits.em_tol * (1.0 + abs(new)):
            break
    finish = Steps(limits.max_iter, limits.tol, limits.max_halvings, np.inf)
    loglik, taken, converged = newton(gene, params, fixed, True, finish, loglik, trace)
    terms_objective(counts, params, 0, g, fixed, True, work)  # responsibilities at the fit
    return loglik, n_iter + taken, converged


class GlmRows(NamedTuple):
    """Per-gene results of :func:`glm_rows`."""

    coef: np.ndarray  # (genes, 1 + p): the intercept, then the covariates
    log_theta: np.ndarray  # (genes,)
    loglik: np.ndarray
    converged: np.ndarray
    n_iter: np.ndarray


@jit
def _glm_kernel(kind, counts, exposure, weights, steps, genes, rows, out):
    n_cov, n_cells = exposure.columns.shape
    work = new_work(1, n_cells)
    params = Components(np.zeros((1, 1)), np.zeros((1, 1)), np.zeros((1, n_cov)), np.zeros((1, 1)))
    for position in range(rows.shape[0]):
        a = rows[position]
        g = genes[a]
        gene = Gene(kind, counts, exposure, g, work)
        loglik, n_iter, converged = fit_glm_row(gene, weights[g : g + 1], params, steps)
        out.coef[a, 0] = params.log_mu[0, 0]
        out.coef[a, 1:] = params.gamma[0]
        out.log_theta[a] = params.log_theta[0, 0]
        out.loglik[a], out.n_iter[a], out.converged[a] = loglik, n_iter, converged


def glm_rows(kind, counts, exposure, weights, genes, steps: Steps) -> GlmRows:
    """:func:`fit_glm_row` of the genes ``genes`` (rows of ``counts`` and ``weights``,
    (genes, cells)), over the threads of :func:`~scmix._core.numerics.jit.row_threads`."""
    genes = np.ascontiguousarray(genes, dtype=np.int64)
    n = genes.size
    n_cov = exposure.columns.shape[0]
    out = GlmRows(
        np.zeros((n, 1 + n_cov)), np.zeros(n), np.zeros(n), np.zeros(n, bool), np.zeros(n, np.int64)
    )
    counts = type(counts)(*(np.ascontiguousarray(f) for f in counts))
    weights = np.ascontiguousarray(weights, dtype=np.float64)

    def kernel(rows):
        _glm_kernel(kind, counts, exposure, weights, steps, genes, rows, out)

    over_rows(kernel, np.arange(n), n * counts.x.shape[1] * 8)
    return out


class MixtureRows(NamedTuple):
    """Per-gene results of :func:`mixture_rows`."""

    params: Components  # (genes, ...) at the result
    loglik: np.ndarray
    converged: np.ndarray
    n_iter: np.ndarray
    resp: np.ndarray  # (genes, K, cells), or empty
    trace: np.ndarray  # (genes, 1 + points): the count, then the log-likelihoods; or empty


@jit
def _mixture_kernel(kind, counts, exposure, limits, genes, rows, out):
    n_comp = out.params.log_mu.shape[1]
    n_cov, n_cells = exposure.columns.shape
    work = new_work(n_comp, n_cells)
    fixed = np.empty((n_comp, n_cells))
    params = Components(
        np.zeros((1, n_comp)), np.zeros((1, n_comp)), np.zeros((1, n_cov)), np.zeros((1, n_comp))
    )
    no_trace = np.zeros(0)
    for position in range(rows.shape[0]):
        a = rows[position]
        for field in range(4):
            params[field][0] = out.params[field][a]
        gene = Gene(kind, counts, exposure, genes[a], work)
        trace = out.trace[a] if out.trace.shape[0] > 0 else no_trace
        loglik, n_iter, converged = fit_mixture_row(gene, params, limits, fixed, trace)
        for field in range(4):
            out.params[field][a] = params[field][0]
        out.loglik[a], out.n_iter[a], out.converged[a] = loglik, n_iter, converged
        if out.resp.shape[0] > 0:
            out.resp[a] = work.resp


def mixture_rows(
    kind,
    counts,
    exposure,
    start: Components,
    genes,
    limits: MixtureSteps,
    *,
    with_resp: bool = True,
    keep_trace: bool = False,
) -> MixtureRows:
    """:func:`fit_mixture_row` of the genes ``genes`` (rows of ``counts``) from the
    starts ``start`` (a row per gene), over the threads of
    :func:`~scmix._core.numerics.jit.row_threads`."""
    genes = np.ascontiguousarray(genes, dtype=np.int64)
    n, n_comp = start.log_mu.shape
    n_cells = counts.x.shape[1]
    params = Components(*(np.array(f, dtype=np.float64, order="C") for f in start))
    out = MixtureRows(
        params,
        np.zeros(n),
        np.zeros(n, bool),
        np.zeros(n, np.int64),
        np.zeros((n, n_comp, n_cells) if with_resp else (0, 0, 0)),
        np.zeros((n, 2 * limits.max_iter + 3) if keep_trace else (0, 0)),
    )
    counts = type(counts)(*(np.ascontiguousarray(f) for f in counts))

    def kernel(rows):
        _mixture_kernel(kind, counts, exposure, limits, genes, rows, out)

    over_rows(kernel, np.arange(n), n * n_cells * n_comp * 8)
    return out
