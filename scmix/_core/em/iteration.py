r"""EM iterations over the rows of a chunk (one row per gene and start), accelerated by
SQUAREM and finished by Newton steps: :func:`run_em`.

For each row, EM maximises the marginal log-likelihood

.. math::

    \ell_j = \sum_i \log \sum_k \pi_{jk} f(x_{ij} \mid s_i \mu_{jk}, \theta_{jk}).

Every pass of the loop is one E-step of the active rows, then three steps over one
state object (:class:`EMRows`):

1. :func:`_judge`: where each row stands after its E-step (a point of the monotone
   sequence, an accepted or a failed extrapolation, converged, out of steps);
2. the Newton phase (:class:`NewtonPhase`) for the rows in it or entering it;
3. :func:`_advance`: the M-step of the rows that take one, the SQUAREM bookkeeping
   and each row's next phase.

A row has converged when :math:`\ell_j` rose by at most ``tol * n_cells`` over a whole
SQUAREM cycle (three EM steps and an extrapolation) or, without acceleration, in two
successive EM steps; it then leaves the active set, so that the kernels skip it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..families import Family
from ..families.base import ChunkData
from .newton import NewtonSteps
from .squarem import Squarem

# Phases of a row in the SQUAREM cycle; each pass of the loop is one E-step and the
# phase says at which point it was taken.
START, EM1, EXTRAPOLATED, STABILISED, REVERTED, NEWTON = range(6)
#: EM steps after which a row that has not converged switches to Newton steps
#: (:mod:`scmix._core.em.newton`), at the start of its next SQUAREM cycle.
NEWTON_AFTER = 12
#: Plain EM: a gain can dip below the threshold once while theta crosses a flat
#: region; convergence needs this many small steps in a row.
SMALL_GAINS_TO_STOP = 2


@dataclass
class EMRows:
    """The per-row state of :func:`run_em`, shared by its steps."""

    loglik: np.ndarray  # at the last E-step (without the constant)
    cycle_start: np.ndarray  # log-likelihood where the row's last cycle began
    converged: np.ndarray  # bool
    n_iter: np.ndarray  # EM (M-) steps and Newton steps taken
    phase: np.ndarray  # int8, one of START ... NEWTON
    streak: np.ndarray  # consecutive small gains
    log_weights: np.ndarray  # (rows, K)
    constant: np.ndarray  # per row, added to the reported log-likelihood
    threshold: float  # tol * n_cells
    trace: np.ndarray | None  # (points, rows), NaN after a row stopped
    n_points: np.ndarray  # points traced per row

    @classmethod
    def start(cls, weights, constant, *, threshold, max_iter, keep_trace) -> EMRows:
        n_rows = weights.shape[0]
        with np.errstate(divide="ignore"):
            log_weights = np.log(weights)
        return cls(
            loglik=np.full(n_rows, -np.inf),
            cycle_start=np.full(n_rows, -np.inf),
            converged=np.zeros(n_rows, dtype=bool),
            n_iter=np.zeros(n_rows, dtype=np.int64),
            phase=np.full(n_rows, START, dtype=np.int8),
            streak=np.zeros(n_rows, dtype=np.int64),
            log_weights=log_weights,
            constant=constant,
            threshold=threshold,
            trace=np.full((2 * max_iter + 2, n_rows), np.nan) if keep_trace else None,
            n_points=np.zeros(n_rows, dtype=np.int64),
        )

    def record(self, rows) -> None:
        """Trace the current log-likelihood of ``rows``, points of the monotone sequence."""
        if self.trace is not None:
            self.trace[self.n_points[rows], rows] = self.loglik[rows] + self.constant[rows]
            self.n_points[rows] += 1

    def set_log_weights(self, rows, weights) -> None:
        with np.errstate(divide="ignore"):
            self.log_weights[rows] = np.log(weights[rows])

    def traced(self) -> np.ndarray | None:
        return None if self.trace is None else self.trace[: self.n_points.max()]


@dataclass
class _Judged:
    """Masks over the active rows after their E-step (see :func:`_judge`)."""

    stop: np.ndarray  # converged, out of steps, or at a NaN log-likelihood
    revert: np.ndarray  # a failed extrapolation: back to theta2
    in_newton: np.ndarray  # in the Newton phase
    restart: np.ndarray  # at a cycle start, going on: a new SQUAREM cycle
    second: np.ndarray  # at theta1: their M-step gives theta2
    stabilising: np.ndarray  # at the extrapolated point: one EM step to stabilise


def _judge(rows: EMRows, active, squarem: Squarem | None, max_iter, gains_to_stop, first):
    """Where each active row stands after its E-step, and which rows stop."""
    ll = rows.loglik[active]
    phase = rows.phase[active]
    stabilised = phase == STABILISED
    accepted = stabilised & (ll >= squarem.reference[active]) if squarem else stabilised
    revert = (stabilised & ~accepted) | ((phase == EXTRAPOLATED) & ~np.isfinite(ll))
    # points of the monotone sequence: recorded, and where a row may stop (a reverted
    # row is back at theta2, or where Newton handed it back)
    point = (phase == START) | (phase == EM1) | accepted | (phase == REVERTED)
    # convergence is judged from one cycle start (a point where a SQUAREM cycle begins;
    # every point for plain EM) to the next: an EM step alone can gain little where
    # extrapolation still gains much
    cycle = (phase == START) | accepted | (phase == REVERTED)
    checked = cycle & (not first)
    small = ll - rows.cycle_start[active] <= rows.threshold
    streak = rows.streak
    streak[active[checked]] = np.where(small[checked], streak[active[checked]] + 1, 0)
    done = checked & (streak[active] >= gains_to_stop)
    rows.cycle_start[active[cycle]] = ll[cycle]
    rows.record(active[point])
    rows.converged[active[done]] = True
    # a point whose log-likelihood is not a number cannot improve: stop it there (not
    # converged) rather than iterate to max_iter
    stop = done | (point & ((rows.n_iter[active] >= max_iter) | np.isnan(ll)))
    in_newton = phase == NEWTON
    go = ~stop & ~revert & ~in_newton
    return _Judged(
        stop=stop,
        revert=revert,
        in_newton=in_newton,
        restart=go & cycle,
        second=go & (phase == EM1),
        stabilising=go & (phase == EXTRAPOLATED),
    )


@dataclass
class _Fit:
    """What EM updates (``params``, ``weights``) and works in, for :func:`_advance`."""

    family: Family
    data: ChunkData
    params: dict
    weights: np.ndarray
    resp: np.ndarray  # the E-step's responsibilities (work buffer)
    resp_sums: np.ndarray  # the E-step's sum_i r_ik per row
    state: object  # what the family's E-step leaves its M-step


def _advance(fit: _Fit, rows: EMRows, active, judged: _Judged, squarem: Squarem | None):
    """The M-step of the rows that take one, SQUAREM's saved points, extrapolations and
    reverts, and each row's next phase."""
    restart, second, revert = judged.restart, judged.second, judged.revert
    weights = fit.weights
    m_step = restart | second | judged.stabilising
    if squarem is not None:
        squarem.save(0, active[restart])
        squarem.save(1, active[second])
        squarem.revert(active[revert])
    update = active[m_step]
    if update.size:
        weights[update] = fit.resp_sums[update] / fit.data.n_cells
        fit.family.m_step(fit.data, fit.resp, fit.params, update, fit.state)
        rows.n_iter[update] += 1
    if squarem is not None:
        squarem.extrapolate(active[second], rows.loglik[active][second])
        rows.phase[active[restart]] = EM1
        rows.phase[active[second]] = EXTRAPOLATED
        rows.phase[active[judged.stabilising]] = STABILISED
        rows.phase[active[revert]] = REVERTED
    rows.set_log_weights(active[m_step | revert], weights)


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
    """Iterate EM from ``params`` / ``weights`` (updated in place) for every row.

    With ``accelerate``, EM steps are grouped in SQUAREM cycles (Varadhan and
    Roland 2008, scheme S3): from three successive EM points theta0, theta1 = F(theta0),
    theta2 = F(theta1) in log-parameter space, r = theta1 - theta0,
    v = theta2 - 2 theta1 + theta0, alpha = -|r| / |v| and the extrapolation
    theta' = theta0 - 2 alpha r + alpha^2 v is followed by one EM step,
    theta3 = F(theta'). theta3 is kept only if its log-likelihood is at least that
    of theta1; otherwise the row returns to theta2 (alpha = -1 is plain EM), whose
    log-likelihood is at least that of theta1 as well. The log-likelihood at the
    accepted points therefore never decreases. theta2 gets no E-step of its own (a
    cycle takes three E-steps, not four): like the SQUAREM package, which checks
    theta3 against the cycle start, the check needs no log-likelihood at theta2.

    A row still iterating after ``newton_after`` EM steps (a one-component fit: at
    once) continues with Newton steps on the marginal log-likelihood
    (:mod:`scmix._core.em.newton`, monotone as well), if the family supplies its
    derivatives; ``None`` keeps EM throughout.

    ``resp`` is the work buffer (a family may keep the responsibilities of cells
    pooled on quadrature nodes in its ``state`` instead, see :meth:`Family.e_step`).
    Returns ``(loglik, converged, n_iter, trace)``; ``n_iter`` counts EM steps
    (M-steps) and Newton steps, ``trace`` the log-likelihood at each accepted point,
    shape (points, rows), NaN after a row stopped.
    """
    n_rows, n_cells = data.x.shape
    rows = EMRows.start(
        weights, constant, threshold=tol * n_cells, max_iter=max_iter, keep_trace=keep_trace
    )
    squarem = Squarem(family, params, weights) if accelerate else None
    gains_to_stop = 1 if accelerate else SMALL_GAINS_TO_STOP
    resp_sums = np.zeros_like(weights)
    state = family.new_state(data, weights.shape[1])  # what an E-step leaves its M-step
    fit = _Fit(family, data, params, weights, resp, resp_sums, state)
    if newton_after is not None and weights.shape[1] == 1:
        # one component: the marginal likelihood is the likelihood, and Newton's
        # method on it converges in a few steps where EM needs cycles to stop
        newton_after = 0
    newton = None
    if newton_after is not None and family.has_newton:
        steps = NewtonSteps(family, params, weights)
        newton = NewtonPhase(steps, data, state, rows, max_iter, max(newton_after, 1), accelerate)
    active = np.arange(n_rows)
    first = True
    while active.size:
        family.e_step(data, params, rows.log_weights, active, resp, rows.loglik, resp_sums, state)
        judged = _judge(rows, active, squarem, max_iter, gains_to_stop, first)
        leaving = judged.stop
        if newton is not None:
            # EM rows at the start of a cycle, past newton_after steps, switch
            enter = judged.restart & (rows.n_iter[active] >= newton_after)
            if enter.any():
                enter[enter] = newton.steps.eligible(active[enter], rows.n_iter[active[enter]])
                judged.restart &= ~enter
            if enter.any() or judged.in_newton.any():
                leaving = leaving | newton.step(active, judged.in_newton, enter)
        if squarem is None:  # plain EM: every row going on takes an M-step
            judged.restart |= judged.second | judged.stabilising
            judged.second[:] = judged.stabilising[:] = False
        _advance(fit, rows, active, judged, squarem)
        active = active[~leaving]
        first = False
    return rows.loglik + constant, rows.converged, rows.n_iter, rows.traced()


@dataclass
class NewtonPhase:
    """The Newton part of a pass of :func:`run_em`, on its :class:`EMRows`."""

    steps: NewtonSteps
    data: ChunkData
    state: object  # the family's E-step state
    rows: EMRows
    max_iter: int
    wait: int  # EM steps before a row handed back may try Newton again
    accelerated: bool

    def __post_init__(self):
        self.marks = np.zeros(self.rows.n_iter.shape[0], dtype=bool)  # a set of rows

    def step(self, active, in_newton, enter) -> np.ndarray:
        """Judge the trial points of the Newton rows (``in_newton``, just through their
        E-step), start steps for them and for the rows entering (``enter``), hand rows
        back to EM. Returns the mask (over ``active``) of rows that stop."""
        steps, marks, rows = self.steps, self.marks, self.rows
        threshold, n_iter = rows.threshold, rows.n_iter
        newton_rows = active[in_newton]
        took, finished, given_up = steps.judge(newton_rows, rows.loglik, threshold)
        rows.record(newton_rows[took])
        rows.converged[newton_rows[finished]] = True
        going_on = took & ~finished & ~given_up
        out_of_steps = n_iter[newton_rows] >= self.max_iter
        ending = np.concatenate([newton_rows[finished], newton_rows[going_on & out_of_steps]])
        stepping = np.concatenate([active[enter], newton_rows[going_on & ~out_of_steps]])
        converged_now, handed_back = steps.start(
            self.data, self.state, rows.log_weights, rows.loglik, stepping, threshold
        )
        rows.converged[converged_now] = True
        rows.phase[stepping] = NEWTON
        # a step was taken by the stepping rows that neither stopped nor went back
        marks[stepping] = True
        marks[converged_now] = False
        marks[handed_back] = False
        n_iter[stepping[marks[stepping]]] += 1
        marks[stepping] = False
        # back to EM for some EM steps, a fresh cycle from the current point: where a
        # failed step began, or on a flat ridge, along which EM's M-step (optimising
        # theta in one go) moves further than Newton steps in log theta
        back = np.concatenate([newton_rows[given_up], handed_back])
        if back.size:
            steps.hand_back(back, n_iter[back], self.wait)
            rows.phase[back] = REVERTED if self.accelerated else START
            rows.cycle_start[back] = -np.inf
        marks[converged_now] = True
        marks[ending] = True
        stopping = marks[active]
        marks[converged_now] = False
        marks[ending] = False
        rows.set_log_weights(np.concatenate([stepping, newton_rows]), steps.weights)
        return stopping
