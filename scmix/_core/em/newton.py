r"""Newton steps on the marginal log-likelihood, for genes on which EM crawls.

EM converges linearly, at a rate set by the fraction of missing information; where
two components overlap (an over-fitted K on a unimodal gene) that rate is close to 1
and EM (even with SQUAREM) takes hundreds of steps up a flat ridge. Near the optimum,
Newton's method on the marginal log-likelihood converges quadratically
(Redner and Walker 1984, section 5, recommend this EM-then-Newton hybrid).

The coordinates are the weight logits :math:`\alpha_m = \log(\pi_m / \pi_K)` and the
log-parameters of each component (laid out as in
:func:`~scmix._core.numerics.kernels.add_cell_scores`); the family supplies the gradient
:math:`g` and Hessian :math:`H` (:meth:`Family.marginal_derivatives`). A step is

.. math::

    d = V\,\mathrm{diag}(1/|\lambda|_+)\,V^T g, \qquad -H = V \mathrm{diag}(\lambda) V^T,

with each :math:`|\lambda|` raised to at least ``EIGEN_FLOOR`` times the largest, so
that :math:`d` is an ascent direction even where :math:`H` is not negative definite;
coordinates at a bound that the gradient pushes outwards are held fixed, and no
coordinate moves by more than ``MAX_STEP``. A step is accepted only if the marginal
log-likelihood rises; otherwise it is halved. So the sequence of accepted points
stays monotone.

A gene stops (converged) at a strict local maximum (every eigenvalue of -H positive)
where the quadratic model predicts a gain :math:`g^T d / 2` of at most the EM
threshold (``tol * n_cells``), after one last step (kept if it rises). Where the
predicted gain is that small but some curvature is >= 0 (a saddle, or a ridge), the
step follows the eigenvector of the most positive curvature instead. The gene goes
back to EM for some EM steps, then may try again, when such a step gains less than
the threshold (a flat ridge: towards the Poisson limit the log-likelihood is flat in
log theta yet may rise far away, which EM's M-step reaches in one step), when
``MAX_HALVINGS`` halvings did not rise, or when the derivatives are not finite.
"""

from __future__ import annotations

import math

import numpy as np

from ..families import Family
from ..families.base import ChunkData
from ..numerics.jit import jit

#: Largest change of one coordinate (a log-parameter or a logit) in one step.
MAX_STEP = 3.0
#: Halvings of a step before the gene is handed back to EM.
MAX_HALVINGS = 10
#: Eigenvalues of -H are raised to at least this fraction of the largest one.
EIGEN_FLOOR = 1e-10
#: Predicted gains below this fraction of the log-likelihood are rounding noise.
ROUNDING = 1e-12
#: A gene with a component weight below this does not take Newton steps (its logit
#: is far out on a flat tail); EM handles emptied components.
MIN_WEIGHT = 1e-8
_TINY = float(np.finfo(np.float64).tiny)


class NewtonSteps:
    """Per-row state of the Newton phase: the point a step starts from, its
    log-likelihood, the direction and the current step length."""

    def __init__(self, family: Family, params, weights):
        self.family = family
        self.params = params
        self.weights = weights
        n_rows, n_comp = weights.shape
        self.n_comp = n_comp
        size = n_comp - 1 + n_comp * len(params)
        bounds = family.log_bounds()
        self.lower = np.concatenate(
            [np.full(n_comp - 1, -np.inf)]
            + [np.full(n_comp, bounds.get(name, (-np.inf, np.inf))[0]) for name in params]
        )
        self.upper = np.concatenate(
            [np.full(n_comp - 1, np.inf)]
            + [np.full(n_comp, bounds.get(name, (-np.inf, np.inf))[1]) for name in params]
        )
        self.grad = np.zeros((n_rows, size))
        self.hess = np.zeros((n_rows, size, size))
        self.base = np.zeros((n_rows, size))
        self.base_loglik = np.full(n_rows, -np.inf)
        self.direction = np.zeros((n_rows, size))
        self.step = np.ones(n_rows)
        #: rows whose current step follows negative curvature (see ``start``)
        self.escaping = np.zeros(n_rows, dtype=bool)
        #: rows at a maximum that take their last Newton step (see ``start``)
        self.finishing = np.zeros(n_rows, dtype=bool)
        #: EM steps a row takes before it may (again) take Newton steps
        self.resume_at = np.zeros(n_rows, dtype=np.int64)

    def eligible(self, rows: np.ndarray, n_iter: np.ndarray) -> np.ndarray:
        """Which of ``rows`` (with ``n_iter`` steps taken) may take Newton steps."""
        return (n_iter >= self.resume_at[rows]) & (self.weights[rows].min(axis=1) >= MIN_WEIGHT)

    def hand_back(self, rows, n_iter, wait) -> None:
        """``rows`` return to EM for ``wait`` EM steps before they may try Newton again."""
        self.resume_at[rows] = n_iter + wait

    def _pack(self, rows) -> np.ndarray:
        log_w = np.log(self.weights[rows])
        blocks = [log_w[:, :-1] - log_w[:, -1:]]
        blocks += [np.log(self.params[name][rows]) for name in self.params]
        return np.concatenate(blocks, axis=1)

    def _unpack(self, z, rows) -> None:
        if not len(rows):
            return
        n_comp = self.n_comp
        logits = np.concatenate([z[:, : n_comp - 1], np.zeros((len(rows), 1))], axis=1)
        w = np.exp(logits - logits.max(axis=1, keepdims=True))
        self.weights[rows] = w / w.sum(axis=1, keepdims=True)
        for q, name in enumerate(self.params):
            start = n_comp - 1 + q * n_comp
            self.params[name][rows] = np.exp(z[:, start : start + n_comp])
        self.family.clip_params(self.params, rows)

    def start(
        self, data: ChunkData, state, log_weights, loglik, rows, threshold
    ) -> tuple[np.ndarray, np.ndarray]:
        """A Newton direction at the current point of ``rows`` and its first trial
        point (written into the parameters). Returns ``(converged, given_up)``: rows
        at a strict local maximum whose predicted gain is at most ``threshold``, and
        rows to hand back to EM (derivatives not finite); both left at their point."""
        if not rows.size:
            return rows, rows
        self.family.marginal_derivatives(
            data, self.params, log_weights, rows, state, self.grad, self.hess
        )
        z = self._pack(rows)
        d, ok, done, escape, at_maximum = _directions(
            z,
            self.grad[rows],
            self.hess[rows],
            self.lower,
            self.upper,
            loglik[rows],
            threshold,
        )
        moving = ok & ~done
        go = rows[moving]
        self.base[go] = z[moving]
        self.base_loglik[go] = loglik[go]
        self.direction[go] = d[moving]
        self.escaping[go] = escape[moving]
        self.finishing[go] = at_maximum[moving]
        self.step[go] = 1.0
        self._trial(go)
        return rows[done], rows[~ok]

    def _trial(self, rows) -> None:
        if not rows.size:
            return
        z = self.base[rows] + self.step[rows, None] * self.direction[rows]
        self._unpack(np.clip(z, self.lower, self.upper), rows)

    def judge(self, rows, loglik, threshold) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """After the E-step at the trial points of ``rows``: masks ``(accepted, stopped,
        given_up)``. A step is accepted if it raised the log-likelihood.

        A last step from a maximum stops the gene (converged) whether it rose or not; a
        rejected one goes back to its start point, whose log-likelihood is restored in
        ``loglik``. An accepted step along negative curvature that gained at most
        ``threshold`` leaves the gene on a flat ridge, where EM (whose M-step moves
        theta far in one step) decides: it is ``given_up``, as are rows out of
        halvings, which go back to their start point. Other rejected rows get a halved
        step (their next trial point)."""
        gain = loglik[rows] - self.base_loglik[rows]
        accepted = gain > 0.0
        finishing = self.finishing[rows]
        back = rows[finishing & ~accepted]
        self._unpack(self.base[back], back)
        loglik[back] = self.base_loglik[back]
        flat = accepted & self.escaping[rows] & (gain <= threshold)
        rejected = rows[~accepted & ~finishing]
        self.step[rejected] *= 0.5
        out = self.step[rejected] < 0.5**MAX_HALVINGS
        give_up = rejected[out]
        self._unpack(self.base[give_up], give_up)
        self._trial(rejected[~out])
        given_up = flat
        if give_up.size:
            given_up = flat | np.isin(rows, give_up)
        return accepted, finishing, given_up


def _directions(z, grad, hess, lower, upper, loglik, threshold):
    """The step of :meth:`NewtonSteps.start` for each row: ``(d, ok, done, escape,
    at_maximum)``. A coordinate at a bound that the gradient pushes outwards is held
    (its gradient and its row and column of -H zeroed, 1 on the diagonal); rows whose
    derivatives are not finite are not ``ok`` (no step). The eigen-decompositions are
    numpy's, every row at once (numba's ``eigh`` compiled LAPACK wrappers for seconds);
    the loops around them are kernels (numpy's dozen small calls cost more than the
    step on a few rows)."""
    n_rows, size = z.shape
    g = np.empty((n_rows, size))
    minus_h = np.empty((n_rows, size, size))
    ok = np.empty(n_rows, dtype=bool)
    _held(z, grad, hess, (lower, upper), g, minus_h, ok)
    out = (
        np.zeros((n_rows, size)),
        np.zeros(n_rows, dtype=bool),
        np.zeros(n_rows, dtype=bool),
        np.zeros(n_rows, dtype=bool),
    )
    rows = np.flatnonzero(ok)
    if rows.size:
        eigenvalues, vectors = np.linalg.eigh(minus_h[rows])
        _steps(rows, g, eigenvalues, vectors, loglik, threshold, out)
    d, done, escape, at_maximum = out
    return d, ok, done, escape, at_maximum


@jit
def _held(z, grad, hess, bounds, g, minus_h, ok):
    """``g = grad`` and ``minus_h = -hess`` with the coordinates at a bound that the
    gradient pushes outwards held; ``ok``: every derivative finite."""
    lower, upper = bounds
    n_rows, size = z.shape
    for r in range(n_rows):
        finite = True
        for p in range(size):
            g[r, p] = grad[r, p]
            for q in range(size):
                minus_h[r, p, q] = -hess[r, p, q]
        for p in range(size):
            if (z[r, p] <= lower[p] and g[r, p] < 0.0) or (z[r, p] >= upper[p] and g[r, p] > 0.0):
                g[r, p] = 0.0
                for q in range(size):
                    minus_h[r, p, q] = 0.0
                    minus_h[r, q, p] = 0.0
                minus_h[r, p, p] = 1.0
        for p in range(size):
            finite &= math.isfinite(g[r, p])
            for q in range(size):
                finite &= math.isfinite(minus_h[r, p, q])
        ok[r] = finite


@jit
def _steps(rows, g, eigenvalues, vectors, loglik, threshold, out):
    """The steps of the ``rows`` from their eigen-decompositions (``eigenvalues[i]``
    ascending, ``vectors[i]`` in columns, of row ``rows[i]``), into ``out = (d, done,
    escape, at_maximum)``."""
    d, done, escape, at_maximum = out
    size = g.shape[1]
    along = np.empty(size)
    for i in range(rows.shape[0]):
        r = rows[i]
        lam = eigenvalues[i]
        vec = vectors[i]
        largest = 0.0
        for p in range(size):
            largest = max(largest, abs(lam[p]))
        floor = max(EIGEN_FLOOR * largest, _TINY)
        for q in range(size):
            total = 0.0
            for p in range(size):
                total += vec[p, q] * g[r, p]
            along[q] = total / max(abs(lam[q]), floor)
        predicted = 0.0
        biggest = 0.0
        for p in range(size):
            step = 0.0
            for q in range(size):
                step += vec[p, q] * along[q]
            d[r, p] = step
            predicted += g[r, p] * step
            biggest = max(biggest, abs(step))
        predicted *= 0.5
        scale = min(1.0, MAX_STEP / max(biggest, 1e-300))
        for p in range(size):
            d[r, p] *= scale
        if predicted <= threshold:
            # converged only at a strict local maximum; at a saddle or on a ridge (some
            # curvature >= 0) the step follows the direction of most positive curvature
            if lam[0] > 0.0:
                at_maximum[r] = True
                # at a maximum one last step is nearly free and makes the error
                # quadratically smaller, unless the gain is at the rounding
                done[r] = not (predicted > ROUNDING * abs(loglik[r]))
            else:
                escape[r] = True
                toward = 0.0
                largest_v = 0.0
                for p in range(size):
                    toward += vec[p, 0] * g[r, p]
                    largest_v = max(largest_v, abs(vec[p, 0]))
                side = -1.0 if toward < 0.0 else 1.0
                for p in range(size):
                    d[r, p] = MAX_STEP * side * vec[p, 0] / largest_v
