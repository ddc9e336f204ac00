"""The EM driver for one chunk of genes. It knows no distribution: a
:class:`~scmix._core.families.Family` supplies the log-pmf and the M-step.

For each gene j, EM maximises the marginal log-likelihood

.. math::

    \\ell_j = \\sum_i \\log \\sum_k \\pi_{jk} f(x_{ij} \\mid s_i \\mu_{jk}, \\theta_{jk}).

One iteration: E-step (responsibilities and :math:`\\ell_j` at the current
parameters), convergence test, then the M-step (:math:`\\pi_{jk} = \\bar r_{jk}`
and the family's update), accelerated by SQUAREM with a monotone safeguard.
A gene has converged when :math:`\\ell_j` rose by at most ``tol * n_cells``
(``tol`` is per cell, as in scikit-learn) over a whole SQUAREM cycle (three EM
steps and an extrapolation), or, without acceleration, in two successive EM
steps; it then leaves the active set, so that the kernels skip it.

A gene still iterating after ``NEWTON_AFTER`` EM steps (a one-component fit: at
once) continues with Newton steps on :math:`\\ell_j` (:mod:`scmix._core.em.newton`):
EM crawls where components overlap, Newton converges quadratically near a maximum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..families import Family
from ..families.base import ChunkData
from ..settings import FitSettings
from .best import best_start, component_order
from .newton import NewtonSteps
from .squarem import Squarem
from .starts import starts


@dataclass
class ChunkFit:
    """EM results for a chunk of ``n_genes`` genes, components sorted by mean."""

    params: dict[str, np.ndarray]  # each (n_genes, K)
    weights: np.ndarray  # (n_genes, K)
    loglik: np.ndarray  # (n_genes,), the full marginal log-likelihood
    converged: np.ndarray  # (n_genes,) bool
    n_iter: np.ndarray  # (n_genes,) M-steps taken by the best start
    resp: np.ndarray  # (n_genes, K, n_cells): responsibilities at the returned parameters
    # (points, n_genes): log-likelihood along the EM path, NaN after a gene stopped
    trace: np.ndarray | None


# Phases of a gene in the SQUAREM cycle; each loop iteration is one E-step and
# the phase says at which point it was taken.
_START, _EM1, _EXTRAPOLATED, _STABILISED, _REVERTED, _NEWTON = range(6)
#: EM steps after which a gene that has not converged switches to Newton steps
#: (:mod:`scmix._core.em.newton`), at the start of its next SQUAREM cycle.
NEWTON_AFTER = 12
#: Plain EM: a gain can dip below the threshold once while theta crosses a flat
#: region; convergence needs this many small steps in a row.
_SMALL_GAINS_TO_STOP = 2


def run_em(
    family: Family,
    data: ChunkData,
    params,
    weights,
    resp,
    *,
    max_iter: int,
    tol: float,
    constant,
    keep_trace: bool = False,
    accelerate: bool = True,
    newton_after: int | None = NEWTON_AFTER,
):
    """Iterate EM from ``params`` / ``weights`` (updated in place) for every gene.

    With ``accelerate``, EM steps are grouped in SQUAREM cycles (Varadhan and
    Roland 2008, scheme S3): from three successive EM points theta0, theta1 = F(theta0),
    theta2 = F(theta1) in log-parameter space, r = theta1 - theta0,
    v = theta2 - 2 theta1 + theta0, alpha = -|r| / |v| and the extrapolation
    theta' = theta0 - 2 alpha r + alpha^2 v is followed by one EM step,
    theta3 = F(theta'). theta3 is kept only if its log-likelihood is at least that
    of theta1; otherwise the gene returns to theta2 (alpha = -1 is plain EM), whose
    log-likelihood is at least that of theta1 as well. The log-likelihood at the
    accepted points therefore never decreases. theta2 gets no E-step of its own (a
    cycle takes three E-steps, not four): like the SQUAREM package, which checks
    theta3 against the cycle start, the check needs no log-likelihood at theta2.

    A gene still iterating after ``newton_after`` EM steps continues with Newton
    steps on the marginal log-likelihood (:mod:`scmix._core.em.newton`, monotone as
    well), if the family supplies its derivatives; ``None`` keeps EM throughout.

    ``resp`` is the work buffer (a family may keep the responsibilities of cells
    pooled on quadrature nodes in its ``state`` instead, see :meth:`Family.e_step`).
    Returns ``(loglik, converged, n_iter, trace)``;
    ``n_iter`` counts EM steps (M-steps) and Newton steps, ``trace`` the log-likelihood at each
    accepted point, shape (points, n_genes), NaN after a gene stopped.
    """
    n_genes, n_cells = data.x.shape
    threshold = tol * n_cells
    loglik = np.full(n_genes, -np.inf)
    cycle_start = np.full(n_genes, -np.inf)  # log-likelihood where the last cycle began
    converged = np.zeros(n_genes, dtype=bool)
    n_iter = np.zeros(n_genes, dtype=np.int64)
    phase = np.full(n_genes, _START, dtype=np.int8)
    n_points = np.zeros(n_genes, dtype=np.int64)
    streak = np.zeros(n_genes, dtype=np.int64)  # consecutive small gains
    trace = np.full((2 * max_iter + 2, n_genes), np.nan) if keep_trace else None
    squarem = Squarem(family, params, weights) if accelerate else None
    small_gains_to_stop = 1 if accelerate else _SMALL_GAINS_TO_STOP
    resp_sums = np.zeros_like(weights)
    state = family.new_state(data, weights.shape[1])  # what an E-step leaves its M-step
    with np.errstate(divide="ignore"):
        log_weights = np.log(weights)
    newton = None
    if newton_after is not None and weights.shape[1] == 1:
        # one component: the marginal likelihood is the likelihood, and Newton's
        # method on it converges in a few steps where EM needs cycles to stop
        newton_after = 0
    if newton_after is not None and family.has_newton:
        newton = NewtonSteps(family, params, weights)
        newton_phase = _NewtonPhase(
            newton,
            data,
            state,
            log_weights,
            threshold=threshold,
            max_iter=max_iter,
            wait=max(newton_after, 1),
            accelerated=accelerate,
            converged=converged,
            n_iter=n_iter,
            phase=phase,
            cycle_start=cycle_start,
            trace=trace,
            n_points=n_points,
            constant=constant,
        )
    active = np.arange(n_genes)
    first = True
    while active.size:
        family.e_step(data, params, log_weights, active, resp, loglik, resp_sums, state)
        ll = loglik[active]
        ph = phase[active]
        in_newton = ph == _NEWTON

        stabilised = ph == _STABILISED
        accepted = stabilised & (ll >= squarem.reference[active]) if squarem else stabilised
        revert = (stabilised & ~accepted) | ((ph == _EXTRAPOLATED) & ~np.isfinite(ll))
        # points of the monotone sequence: recorded, and where a gene may stop (a
        # reverted gene is back at theta2, or where Newton handed it back)
        point = (ph == _START) | (ph == _EM1) | accepted | (ph == _REVERTED)
        # convergence is judged from one cycle start (a point where a SQUAREM cycle
        # begins; every point for plain EM) to the next: an EM step alone can gain
        # little where extrapolation still gains much
        cycle = (ph == _START) | accepted | (ph == _REVERTED)
        checked = cycle & (not first)
        small = ll - cycle_start[active] <= threshold
        streak[active[checked]] = np.where(small[checked], streak[active[checked]] + 1, 0)
        done = checked & (streak[active] >= small_gains_to_stop)
        cycle_start[active[cycle]] = ll[cycle]
        if trace is not None:
            recorded = active[point]
            trace[n_points[recorded], recorded] = loglik[recorded] + constant[recorded]
            n_points[recorded] += 1
        converged[active[done]] = True
        # a point whose log-likelihood is not a number cannot improve: stop it there
        # (not converged) rather than iterate to max_iter
        stop = done | (point & ((n_iter[active] >= max_iter) | np.isnan(ll)))

        go = ~stop & ~revert & ~in_newton
        restart = go & ((ph == _START) | accepted | (ph == _REVERTED))
        newton_done = np.zeros_like(stop)
        if newton is not None:
            # EM genes at the start of a cycle, past newton_after steps, switch
            enter = restart & (n_iter[active] >= newton_after)
            if enter.any():
                enter[enter] = newton.eligible(active[enter], n_iter[active[enter]])
                restart &= ~enter
                go &= ~enter
            if enter.any() or in_newton.any():
                newton_done = newton_phase.step(active, in_newton, enter, loglik)
        second = go & (ph == _EM1)  # their M-step gives theta2
        m_step = restart | second | (go & (ph == _EXTRAPOLATED))
        if squarem is None:
            m_step = go.copy()
        else:
            squarem.save(0, active[restart])
            squarem.save(1, active[second])
            squarem.revert(active[revert])
        update = active[m_step]
        if update.size:
            weights[update] = resp_sums[update] / n_cells
            family.m_step(data, resp, params, update, state)
            n_iter[update] += 1
        if squarem is not None:
            squarem.extrapolate(active[second], ll[second])
        changed = active[m_step | revert]
        with np.errstate(divide="ignore"):
            log_weights[changed] = np.log(weights[changed])
        if squarem is not None:
            phase[active[restart]] = _EM1
            phase[active[second]] = _EXTRAPOLATED
            phase[active[go & (ph == _EXTRAPOLATED)]] = _STABILISED
            phase[active[revert]] = _REVERTED
        active = active[~(stop | newton_done)]
        first = False
    if trace is not None:
        trace = trace[: n_points.max()]
    return loglik + constant, converged, n_iter, trace


@dataclass
class _NewtonPhase:
    """The Newton part of an iteration of :func:`run_em`, on the driver's per-row
    arrays (updated in place)."""

    newton: NewtonSteps
    data: ChunkData
    state: object
    log_weights: np.ndarray
    threshold: float
    max_iter: int
    wait: int  # EM steps before a row handed back may try Newton again
    accelerated: bool
    converged: np.ndarray
    n_iter: np.ndarray
    phase: np.ndarray
    cycle_start: np.ndarray
    trace: np.ndarray | None
    n_points: np.ndarray
    constant: np.ndarray

    def __post_init__(self):
        self.marks = np.zeros(self.n_iter.shape[0], dtype=bool)  # a set of rows as a mask

    def step(self, active, in_newton, enter, loglik) -> np.ndarray:
        """Judge the trial points of the Newton rows (``in_newton``, just through
        their E-step), start steps for them and for the rows entering (``enter``),
        hand rows back to EM. Returns the mask (over ``active``) of rows that stop."""
        newton, marks, n_iter = self.newton, self.marks, self.n_iter
        rows = active[in_newton]
        took, finished, given_up = newton.judge(rows, loglik, self.threshold)
        moved = rows[took]
        if self.trace is not None:
            self.trace[self.n_points[moved], moved] = loglik[moved] + self.constant[moved]
            self.n_points[moved] += 1
        self.converged[rows[finished]] = True
        going_on = took & ~finished & ~given_up
        out_of_steps = n_iter[rows] >= self.max_iter
        ending = np.concatenate([rows[finished], rows[going_on & out_of_steps]])
        stepping = np.concatenate([active[enter], rows[going_on & ~out_of_steps]])
        converged_now, handed_back = newton.start(
            self.data, self.state, self.log_weights, loglik, stepping, self.threshold
        )
        self.converged[converged_now] = True
        self.phase[stepping] = _NEWTON
        # a step was taken by the stepping rows that neither stopped nor went back
        marks[stepping] = True
        marks[converged_now] = False
        marks[handed_back] = False
        n_iter[stepping[marks[stepping]]] += 1
        marks[stepping] = False
        # back to EM for some EM steps, a fresh cycle from the current point: where
        # a failed step began, or on a flat ridge, along which EM's M-step
        # (optimising theta in one go) moves further than Newton steps in log theta
        back = np.concatenate([rows[given_up], handed_back])
        if back.size:
            newton.hand_back(back, n_iter[back], self.wait)
            self.phase[back] = _REVERTED if self.accelerated else _START
            self.cycle_start[back] = -np.inf
        marks[converged_now] = True
        marks[ending] = True
        stopping = marks[active]
        marks[converged_now] = False
        marks[ending] = False
        changed = np.concatenate([stepping, rows])
        with np.errstate(divide="ignore"):
            self.log_weights[changed] = np.log(newton.weights[changed])
        return stopping


def fit_chunk(
    family: Family,
    x: np.ndarray,
    size_factors: np.ndarray,
    n_components: int,
    *,
    settings: FitSettings,
    uniforms: np.ndarray,
    single: ChunkFit | None = None,
    data: ChunkData | None = None,
    start_resp: np.ndarray | None = None,
) -> ChunkFit:
    """Fit a K-component mixture to every gene (row) of ``x`` from ``n_init`` starts.

    Parameters
    ----------
    x
        Counts, float64, shape ``(n_genes, n_cells)``, C-contiguous.
    size_factors
        Shape ``(n_cells,)``, positive.
    settings
        The starts (``n_init``), the stopping rule (``max_iter``, ``tol``), SQUAREM
        (``accelerate``, see :func:`run_em`) and ``keep_trace``.
    uniforms
        Uniform draws for the random starts, shape ``(n_genes, n_init, K)``.
    single
        The one-component fit of the same genes. When given (K > 1), one more
        start splits it into K almost equal components where needed, and where
        every start still ends below it, the fit is K identical copies of it: the
        K-component log-likelihood does not end below the one-component one (the
        LRT stays >= 0, up to rounding).
    data
        ``ChunkData(x, size_factors)`` when the caller already has it (its count
        levels are then computed once for the K=1 and the K-component fit).
    start_resp
        Responsibilities (K, n_cells) shared by all genes: one more start from them
        (``n_init`` may then be 0).

    All starts run in one EM with one row per start and gene (start-major), which
    shares the driver's per-iteration cost and gives the threads more work; a start
    identical to an earlier start of its gene is not run again. The split of
    ``single`` runs afterwards, and only for the genes where no other start rose above
    the one-component log-likelihood by more than ``tol * n_cells``. The best start per
    gene (highest marginal log-likelihood, the earliest on ties) is kept; its
    components are sorted by increasing mean and a final E-step makes the
    responsibilities match the returned parameters.
    """
    n_genes, n_cells = x.shape
    n_init, tol = settings.n_init, settings.tol
    if data is None:
        data = ChunkData(x, size_factors)
    work = np.empty((n_genes, n_components, n_cells))
    start_list = list(
        starts(family, data, n_components, n_init, uniforms, work, single, start_resp)
    )
    n_starts = len(start_list)
    # a start identical to an earlier one of the same gene (k-means++ and the nested
    # split often give the same labels) would repeat its EM exactly: it is left out
    keep = _distinct_starts(start_list, family.param_names)
    options = {
        "max_iter": settings.max_iter,
        "tol": tol,
        "keep_trace": settings.keep_trace,
        "accelerate": settings.accelerate,
    }
    split = single is not None and n_components > 1
    runs = []
    if split:
        # the split of the one-component fit runs only where no other start rose
        # above the one-component log-likelihood by more than the convergence
        # tolerance (tol per cell): its purpose is LRT >= 0, and a start that ends
        # within that tolerance (often at a near-empty component) is the
        # one-component fit again, which must not keep the split from exploring
        label_starts = keep.copy()
        label_starts[-1] = False
        if label_starts.any():
            runs.append(_run_starts(family, data, start_list, label_starts, **options))
            best = np.full(n_genes, -np.inf)
            np.fmax.at(best, runs[0][1], runs[0][2]["loglik"])  # NaN rows ignored
            keep[-1] &= best <= single.loglik + tol * n_cells
        keep[:-1] = False
        # the split sits next to the saddle of two equal components, where EM barely
        # moves and may stop: Newton steps from the start leave along the negative
        # curvature (or stop at a true maximum)
        options["newton_after"] = 0
    if keep.any():
        runs.append(_run_starts(family, data, start_list, keep, **options))
    row_start, row_gene, result = _concatenate_runs(runs)
    params, weights = result["params"], result["weights"]
    loglik, converged, n_iter, trace = (
        result[name] for name in ("loglik", "converged", "n_iter", "trace")
    )

    genes = np.arange(n_genes)
    by_start = np.full((n_starts, n_genes), -np.inf)
    by_start[row_start, row_gene] = np.where(np.isnan(loglik), -np.inf, loglik)  # never kept
    row_of = np.zeros((n_starts, n_genes), dtype=np.int64)
    row_of[row_start, row_gene] = np.arange(row_gene.size)
    # the best start of each gene (the earliest on ties), as a row of the stacked arrays
    rows = row_of[best_start(by_start), genes]
    order = component_order(params["mu"][rows])
    params = {name: np.take_along_axis(v[rows], order, axis=1) for name, v in params.items()}
    weights = np.take_along_axis(weights[rows], order, axis=1)
    converged, n_iter = converged[rows], n_iter[rows]
    # final E-step at the kept parameters, in sorted component order (every cell
    # summed: the EM's log-likelihoods may come from pooled node sums)
    final = e_step_at(family, data, params, weights, out=work)
    below = final < single.loglik if split else np.zeros(n_genes, dtype=bool)
    if below.any():
        # the one-component model is nested in the K-component one: where the kept
        # start ended below it (EM from the split can stop a hair below, next to the
        # saddle of equal components), K identical copies of it are the better fit
        for name in params:
            params[name][below] = single.params[name][below]
        weights[below] = 1.0 / n_components
        converged[below] = single.converged[below]
        final = e_step_at(family, data, params, weights, out=work)
    return ChunkFit(
        params,
        weights,
        final,
        converged,
        n_iter,
        work,
        None if trace is None else trace[:, rows],
    )


def _run_starts(family, data, start_list, keep, **options):
    """EM from the starts ``keep[s, g]`` of ``start_list``, one row per kept start and
    gene (start-major). Returns ``(row_start, row_gene, result)``."""
    row_start, row_gene = np.nonzero(keep)
    stacked = data.take(row_gene)
    params = {
        name: np.concatenate([p[name][keep[s]] for s, (p, _) in enumerate(start_list)])
        for name in family.param_names
    }
    weights = np.concatenate([w[keep[s]] for s, (_, w) in enumerate(start_list)])
    constant = family.log_prob_constant(data)[row_gene]
    resp = np.empty((row_gene.size, weights.shape[1], data.n_cells))
    loglik, converged, n_iter, trace = run_em(
        family, stacked, params, weights, resp, constant=constant, **options
    )
    result = {
        "params": params,
        "weights": weights,
        "loglik": loglik,
        "converged": converged,
        "n_iter": n_iter,
        "trace": trace,
    }
    return row_start, row_gene, result


def _concatenate_runs(runs):
    """The rows of several :func:`_run_starts` results as one; traces padded with NaN."""
    if len(runs) == 1:
        return runs[0]
    row_start = np.concatenate([r[0] for r in runs])
    row_gene = np.concatenate([r[1] for r in runs])
    results = [r[2] for r in runs]
    merged = {
        "params": {
            name: np.concatenate([r["params"][name] for r in results])
            for name in results[0]["params"]
        }
    }
    for name in ("weights", "loglik", "converged", "n_iter"):
        merged[name] = np.concatenate([r[name] for r in results])
    merged["trace"] = None
    if results[0]["trace"] is not None:
        length = max(r["trace"].shape[0] for r in results)
        merged["trace"] = np.concatenate(
            [
                np.pad(
                    r["trace"], ((0, length - r["trace"].shape[0]), (0, 0)), constant_values=np.nan
                )
                for r in results
            ],
            axis=1,
        )
    return row_start, row_gene, merged


def _distinct_starts(start_list, param_names) -> np.ndarray:
    """(n_starts, n_genes) bool: False where a start equals an earlier start of the gene
    in every parameter and weight (exactly, so that its EM would be the same)."""
    keep = np.ones((len(start_list), start_list[0][1].shape[0]), dtype=bool)
    for s, (params, weights) in enumerate(start_list):
        for t in range(s):
            earlier, earlier_weights = start_list[t]
            same = (weights == earlier_weights).all(axis=1)
            for name in param_names:
                same &= (params[name] == earlier[name]).all(axis=1)
            keep[s] &= ~same
    return keep


def e_step_at(family: Family, data: ChunkData, params, weights, out=None) -> np.ndarray:
    """Responsibilities at given parameters (into ``out``, shape (n_genes, K, n_cells))
    and the full log-likelihood of every gene, which is returned."""
    n_genes, n_comp = weights.shape
    if out is None:
        out = np.empty((n_genes, n_comp, data.n_cells))
    every = np.arange(n_genes)
    loglik = np.empty(n_genes)
    with np.errstate(divide="ignore"):
        log_weights = np.log(weights)
    # without a state every cell is summed and every responsibility set
    family.e_step(data, params, log_weights, every, out, loglik, np.empty_like(weights))
    return loglik + family.log_prob_constant(data)
