"""Family-independent numba kernels over a gene chunk (layout in ``families/base.py``)."""

from __future__ import annotations

import math

import numpy as np

from .jit import inline_jit, jit, sum_jit
from .special import log1p, simd_exp, simd_log1p


@jit
def log_factorial_sums(values, n_levels, level):
    """``sum_i log(x_ij!)`` per gene, shape ``(n_genes,)``, from the count levels of
    :func:`count_levels`: one lgamma per distinct count, times its cells."""
    n_genes, n_cells = level.shape
    out = np.zeros(n_genes)
    for g in range(n_genes):
        cells_at = np.zeros(n_levels[g])
        for i in range(n_cells):
            if level[g, i] >= 0:
                cells_at[level[g, i]] += 1.0
        total = 0.0
        for u in range(n_levels[g]):
            total += cells_at[u] * math.lgamma(values[g, u] + 1.0)
        out[g] = total
    return out


@jit
def most_levels(n_levels) -> int:
    """The largest count of levels of a chunk's genes, at least 1 (a loop: numba's
    ``max`` of an array compiles a reduction machinery of its own)."""
    largest = 1
    for n in n_levels:
        largest = max(largest, n)
    return largest


@jit
def _weighted_rate(x, size_factors, resp, active):
    n_comp = resp.shape[1]
    out = np.empty((active.shape[0], n_comp))
    for a in range(active.shape[0]):
        g = active[a]
        for k in range(n_comp):
            num = 0.0
            den = 0.0
            for i in range(x.shape[1]):
                num += resp[g, k, i] * x[g, i]
                den += resp[g, k, i] * size_factors[i]
            out[a, k] = num / den if den > 0.0 else np.nan
    return out


def weighted_rate(x, size_factors, resp, active=None) -> np.ndarray:
    """``sum_i r_ijk x_ij / sum_i r_ijk s_i``: the Poisson MLE of mu_jk (NaN without weight)."""
    if active is None:
        active = np.arange(x.shape[0])
    return _weighted_rate(x, size_factors, resp, active)


@inline_jit
def normalise(joint, top):
    """Turn ``joint[k] = log pi_k + log f_k`` (largest ``top``) into responsibilities
    in place and return ``log sum_k exp(joint[k])``.

    Subtracting the maximum keeps well-separated components from underflowing. Two
    components take the logistic form: one exp and one log1p, and the smaller
    responsibility as e / (1 + e), never as 1 - r (no cancellation).
    """
    n_comp = joint.shape[0]
    if n_comp == 1:
        joint[0] = 1.0
        return top
    if n_comp == 2:
        if joint[1] > joint[0]:
            e = math.exp(joint[0] - joint[1])
            joint[1] = 1.0 / (1.0 + e)
            joint[0] = e * joint[1]
        else:
            e = math.exp(joint[1] - joint[0])
            joint[0] = 1.0 / (1.0 + e)
            joint[1] = e * joint[0]
        return top + log1p(e)
    acc = 0.0
    for k in range(n_comp):
        joint[k] = math.exp(joint[k] - top)
        acc += joint[k]
    inv = 1.0 / acc
    for k in range(n_comp):
        joint[k] *= inv
    return top + math.log(acc)


@jit
def normalise_cells(resp, log_weights, cells, n_summed, indirect, sums):
    """``resp`` (K, n_cells) holds ``log f_k`` of one gene: turn the cells ``t <
    n_summed`` (cell ``cells[t]`` if ``indirect``) into responsibilities with weights
    ``exp(log_weights)``, add them to ``sums`` and return their log-likelihood."""
    n_comp = resp.shape[0]
    if n_comp == 2 and not indirect:
        return _normalise_two(resp[0, :n_summed], resp[1, :n_summed], log_weights, sums)
    if n_comp == 1 and not indirect:
        total = n_summed * log_weights[0]
        for i in range(n_summed):
            total += resp[0, i]
            resp[0, i] = 1.0
        sums[0] += n_summed
        return total
    joint = np.empty(n_comp)
    total = 0.0
    for t in range(n_summed):
        i = cells[t] if indirect else t
        top = -np.inf
        for k in range(n_comp):
            joint[k] = log_weights[k] + resp[k, i]
            top = max(top, joint[k])
        total += normalise(joint, top)
        for k in range(n_comp):
            resp[k, i] = joint[k]
            sums[k] += joint[k]
    return total


@jit
def normalise_two(first, second, log_weights, cell_loglik):
    """Two components, consecutive cells (or nodes): turn ``first`` / ``second``
    (``log f_k``) into responsibilities in place and write each cell's
    log-likelihood into ``cell_loglik``; written so that LLVM vectorises the loop
    (:func:`~scmix._core.numerics.special.simd_exp`)."""
    for i in range(first.shape[0]):
        a = log_weights[0] + first[i]
        b = log_weights[1] + second[i]
        top = max(a, b)
        e = simd_exp(min(a, b) - top)
        larger = 1.0 / (1.0 + e)
        smaller = e * larger
        first_larger = a >= b
        first[i] = larger if first_larger else smaller
        second[i] = smaller if first_larger else larger
        cell_loglik[i] = top + simd_log1p(e)


@jit
def _normalise_two(first, second, log_weights, sums):
    """:func:`normalise_cells` for two components and consecutive cells
    (:func:`normalise_two`), the sums in a second pass."""
    cell_loglik = np.empty(first.shape[0])
    normalise_two(first, second, log_weights, cell_loglik)
    sums[0] += row_sum(first)
    sums[1] += row_sum(second)
    return row_sum(cell_loglik)


@sum_jit
def row_dot(a, b) -> float:
    """``sum_i a_i b_i`` of two 1-d arrays, in an order LLVM chooses (:data:`sum_jit`)."""
    total = 0.0
    for i in range(a.shape[0]):
        total += a[i] * b[i]
    return total


@sum_jit
def row_sum(values) -> float:
    """The sum of a 1-d array, in an order LLVM chooses (:data:`sum_jit`): in vector
    registers, where adding in order would wait for each addition to finish."""
    total = 0.0
    for i in range(values.shape[0]):
        total += values[i]
    return total


@jit
def e_step(log_prob, log_weights, active, loglik, resp_sums):
    """Turn ``log_prob`` into responsibilities in place and sum the log-likelihood.

    For each active gene j and cell i, with ``l_k = log pi_jk + log f_ijk``:
    ``r_ijk = exp(l_k - logsumexp_k l)`` and ``loglik_j = sum_i logsumexp_k l``;
    ``resp_sums[j, k] = sum_i r_ijk`` gives the next weights (see :func:`normalise`).
    """
    n_comp = log_prob.shape[1]
    n_cells = log_prob.shape[2]
    no_cells = np.zeros(1, dtype=np.int32)
    for a in range(active.shape[0]):
        g = active[a]
        sums = np.zeros(n_comp)
        loglik[g] = normalise_cells(log_prob[g], log_weights[g], no_cells, n_cells, False, sums)
        for k in range(n_comp):
            resp_sums[g, k] = sums[k]


#: Rows of integer counts up to this many times the number of cells get their levels
#: from a table of every count rather than a sort.
LEVEL_TABLE_PER_CELL = 8


def count_levels(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct non-zero counts of each gene and each cell's index into them.

    Returns ``values`` (n_genes, n_levels_max), padded with 0, ``n_levels``
    (n_genes,) and ``level`` (n_genes, n_cells) int32, -1 for a zero count.
    Terms with special functions (lgamma, digamma) depend on a cell only
    through its count, so they are evaluated once per level, not once per cell.
    Integer counts up to ``LEVEL_TABLE_PER_CELL`` times the number of cells are
    indexed through a table of every count (linear time, :func:`_levels_by_table`);
    other rows (fractional or huge values) by numpy's sort. The values are then read
    back through the levels.
    """
    n_genes, n_cells = x.shape
    level = np.full((n_genes, n_cells), -1, dtype=np.int32)
    n_levels = np.zeros(n_genes, dtype=np.int64)
    index = np.zeros(LEVEL_TABLE_PER_CELL * n_cells + 1, dtype=np.int32)
    by_table = np.zeros(n_genes, dtype=np.bool_)
    _levels_by_table(x, index, level, n_levels, by_table)
    for g in np.flatnonzero(~by_table):
        distinct, inverse = np.unique(x[g], return_inverse=True)
        zero = distinct[0] == 0.0  # counts are >= 0: a zero is the smallest value
        level[g] = inverse - zero
        n_levels[g] = distinct.size - zero
    values = np.zeros((n_genes, max(1, int(n_levels.max(initial=0)))))
    _level_values(x, level, values)
    return values, n_levels, level


@jit
def _levels_by_table(x, index, level, n_levels, by_table):
    """:func:`count_levels` of each row of integer counts below ``index``'s length
    through ``index`` (zeros; left zero again): mark the counts present, number them in
    increasing order, read each cell's number. ``by_table[g]`` says which rows it did
    (the others hold a fractional or a larger count)."""
    n_cells = x.shape[1]
    for g in range(x.shape[0]):
        largest = 0.0
        integers = True
        for i in range(n_cells):
            largest = max(largest, x[g, i])
            integers &= x[g, i] == math.floor(x[g, i])
        if not integers or largest >= index.shape[0]:
            continue
        top = int(largest)
        for i in range(n_cells):
            index[int(x[g, i])] = 1
        current = -1
        for v in range(1, top + 1):
            if index[v]:
                current += 1
                index[v] = current
        for i in range(n_cells):
            if x[g, i] > 0.0:
                level[g, i] = index[int(x[g, i])]
        n_levels[g] = current + 1
        for v in range(top + 1):
            index[v] = 0
        by_table[g] = True


@jit
def _level_values(x, level, values):
    """``values[g, level[g, i]] = x[g, i]`` for every non-zero count."""
    for g in range(x.shape[0]):
        for i in range(x.shape[1]):
            if level[g, i] >= 0:
                values[g, level[g, i]] = x[g, i]


@jit
def add_cell_scores(cell_weight, resp, score, curvature, weights, grad, hess):
    """Add (pseudo-)cells of weights ``cell_weight`` to the gradient and Hessian of the
    marginal log-likelihood ``l = sum_i log sum_k pi_k f_k(x_i)`` (Louis' identity).

    Coordinates (``P = K - 1 + Q K``): the weight logits ``alpha_m = log(pi_m / pi_K)``,
    ``m < K``, then parameter ``q`` of component ``k`` at ``K - 1 + q K + k``.
    ``resp[k, i]`` are the responsibilities of cell i, ``score[k, q, i]`` and
    ``curvature[k, q, q', i]`` the first and second derivatives of ``log f_k`` in the
    family's log-parameters (the cells last in every array). With ``s_k`` the
    gradient of ``log pi_k + log f_k``, ``G = sum_k r_k s_k`` and

    .. math::

        \\nabla^2 l_i = \\sum_k r_k (\\nabla^2 \\log f_k + (s_k - G)(s_k - G)^T)
                       - (\\mathrm{diag}\\,\\pi - \\pi\\pi^T),

    the covariance written about its mean, so that nothing cancels. The last term
    (the same for every cell) is added by :func:`add_weight_curvature`; only the upper
    triangle of ``hess`` is filled. Each sum over cells is a loop of its own
    (:func:`row_dot`), which runs several times faster than the ``P (P + 1) / 2``
    updates of the Hessian one cell at a time.
    """
    n_comp, n_par, n_cells = score.shape
    n_logit = n_comp - 1
    size = grad.shape[0]
    # G, the cells' responsibility-weighted mean score: e_m's mean is r_m
    mean = np.empty((size, n_cells))
    for m in range(n_logit):
        for i in range(n_cells):
            mean[m, i] = resp[m, i]
        grad[m] += row_dot(cell_weight, resp[m]) - weights[m] * row_sum(cell_weight)
    for q in range(n_par):
        for j in range(n_comp):
            p = n_logit + q * n_comp + j
            for i in range(n_cells):
                mean[p, i] = resp[j, i] * score[j, q, i]
            grad[p] += row_dot(cell_weight, mean[p])
    centred = np.empty((size, n_cells))
    rk = np.empty(n_cells)
    weighted = np.empty(n_cells)
    for k in range(n_comp):
        # s_k - G, coordinate by coordinate (s_k is e_k, then component k's score)
        for m in range(n_logit):
            own = 1.0 if m == k else 0.0
            for i in range(n_cells):
                centred[m, i] = own - mean[m, i]
        for q in range(n_par):
            for j in range(n_comp):
                p = n_logit + q * n_comp + j
                if j == k:
                    for i in range(n_cells):
                        centred[p, i] = score[k, q, i] - mean[p, i]
                else:
                    for i in range(n_cells):
                        centred[p, i] = -mean[p, i]
        for i in range(n_cells):
            rk[i] = cell_weight[i] * resp[k, i]
        for p in range(size):
            for i in range(n_cells):
                weighted[i] = rk[i] * centred[p, i]
            for p2 in range(p, size):
                hess[p, p2] += row_dot(weighted, centred[p2])
        for q in range(n_par):
            for q2 in range(q, n_par):
                hess[n_logit + q * n_comp + k, n_logit + q2 * n_comp + k] += row_dot(
                    rk, curvature[k, q, q2]
                )


@jit
def add_weight_curvature(total_weight, weights, hess):
    """The second derivative of ``log pi_k`` in the logits, ``-(diag pi - pi pi^T)``,
    summed over cells of total weight ``total_weight``; then mirror the upper triangle."""
    n_logit = weights.shape[0] - 1
    for m in range(n_logit):
        for m2 in range(m, n_logit):
            hess[m, m2] -= total_weight * (
                (weights[m] if m == m2 else 0.0) - weights[m] * weights[m2]
            )
    for p in range(hess.shape[0]):
        for p2 in range(p):
            hess[p, p2] = hess[p2, p]
