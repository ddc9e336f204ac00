r"""Fused kernels of the fits with covariates (:mod:`.covariates`, :mod:`.glm`): one pass
over a gene's cells gives its marginal log-likelihood, its expected complete-data
log-likelihood Q, or the gradient and Hessian of either, with no (genes, K, cells)
temporaries. The family enters as a code (``kind``, :mod:`..families._glm_cells`).

For gene j, cell i and component k, :math:`\eta_{ik} = \log s_i + z_i^\top\gamma + \log\mu_k`
and :math:`\ell_{ik} = \log f(x_i \mid e^{\eta_{ik}}, \theta_k)`. The parameters are laid
out as :math:`(\log\mu_{1..K}, \gamma_{1..p}, \log\theta_{1..K}, \xi_{2..K})` (the
thetas for a family with theta, the weight logits :math:`\xi_l = \log(\pi_l/\pi_1)`
for the marginal derivatives only).

A cell's score in every parameter is a few numbers times its covariate row: the score
of :math:`\ell_{ik}` in :math:`\gamma` is :math:`\partial_\eta\ell_{ik}\, z_i`. So each
cell's scores and Hessians are formed in a reduced space where :math:`\gamma` is one
"shift" coordinate (size :math:`2K + 1 + (K - 1)` for NB), summed, and the shift row is
spread over :math:`z_i` (and :math:`z_i z_i^\top`) once per cell:

* Q (a GEM M-step, and the GLM with cell weights as ``resp``):
  :math:`\nabla Q = \sum_{ik} r_{ik} u_{ik}`,
  :math:`\nabla^2 Q = \sum_{ik} r_{ik} H_{ik}`;
* the marginal log-likelihood (Louis 1982), with :math:`u_{ik}` the score of
  :math:`\log \pi_k f_{ik}` and :math:`\bar u_i = \sum_k r_{ik} u_{ik}`:
  :math:`\nabla\ell = \sum_i \bar u_i`,
  :math:`\nabla^2\ell = \sum_i [\sum_k r_{ik}(H_{ik} + u_{ik}u_{ik}^\top)
  - \bar u_i \bar u_i^\top]`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..families._glm_cells import NB, fill_cell_terms, fill_level_table
from ..families.base import CountTable
from ..numerics.jit import jit, over_rows
from ..numerics.kernels import row_dot, row_sum
from ..numerics.special import simd_exp, simd_log


class Exposure(NamedTuple):
    """What moves every component of a cell alike: the log size factors (cells,) and
    the covariates by column (p, cells), both float64 and C-contiguous (see
    :func:`exposure_of`)."""

    log_offset: np.ndarray
    columns: np.ndarray


def exposure_of(log_offset: np.ndarray, covariates: np.ndarray) -> Exposure:
    """The :class:`Exposure` of log size factors (cells,) and covariates (cells, p)."""
    return Exposure(
        np.ascontiguousarray(log_offset, dtype=np.float64),
        np.ascontiguousarray(np.asarray(covariates, dtype=np.float64).T),
    )


class Components(NamedTuple):
    """Per-gene parameters, float64 C-contiguous: ``log_mu``, ``log_theta`` (zeros for
    a family without theta) and ``log_weights``, each (genes, K); ``gamma`` (genes, p)."""

    log_mu: np.ndarray
    log_theta: np.ndarray
    gamma: np.ndarray
    log_weights: np.ndarray


@jit
def _gene_terms(kind, counts, exposure, params, g, a, derivatives, terms):
    """``terms[k]`` (6, cells): :func:`fill_cell_terms` of every component of gene g
    (row g of ``counts``) at the parameters of row a."""
    n_comp = params.log_mu.shape[1]
    z = exposure.columns
    base = exposure.log_offset.copy()
    for c in range(z.shape[0]):
        gamma = params.gamma[a, c]
        for i in range(base.shape[0]):
            base[i] += z[c, i] * gamma
    eta = np.empty_like(base)
    table = np.zeros((3, counts.values.shape[1]))
    cells = (counts.x[g], counts.index[g])
    for k in range(n_comp):
        log_theta = params.log_theta[a, k]
        fill_level_table(kind, counts.values[g], math.exp(log_theta), derivatives, table)
        log_mu = params.log_mu[a, k]
        for i in range(base.shape[0]):
            eta[i] = base[i] + log_mu
        fill_cell_terms(kind, cells, table, eta, log_theta, derivatives, terms[k])


@jit
def _posterior(log_weights, terms, log_factorial, resp):
    """Responsibilities ``resp`` (K, cells) from the components' log-pmfs
    ``terms[:, 0]``; returns the marginal log-likelihood."""
    n_comp, _, n_cells = terms.shape
    cell = np.empty(n_cells)
    if n_comp == 1:
        for i in range(n_cells):
            cell[i] = log_weights[0] + terms[0, 0, i]
            resp[0, i] = 1.0
    else:
        top = np.full(n_cells, -np.inf)
        for k in range(n_comp):
            w = log_weights[k]
            for i in range(n_cells):
                top[i] = max(top[i], w + terms[k, 0, i])
        summed = np.zeros(n_cells)
        for k in range(n_comp):
            w = log_weights[k]
            for i in range(n_cells):
                summed[i] += simd_exp(w + terms[k, 0, i] - top[i])
        for i in range(n_cells):
            cell[i] = top[i] + simd_log(summed[i])
        for k in range(n_comp):
            w = log_weights[k]
            for i in range(n_cells):
                resp[k, i] = simd_exp(w + terms[k, 0, i] - cell[i])
    for i in range(n_cells):
        cell[i] -= log_factorial[i]
    return row_sum(cell)


@jit
def _loglik_kernel(kind, counts, exposure, params, genes, rows, loglik, resp):
    """``loglik[a]`` the marginal log-likelihood and, where ``resp`` has rows,
    ``resp[a]`` (K, cells) the responsibilities, of gene ``genes[a]`` (a row of
    ``counts``) at the parameters of row a, for the rows ``rows``."""
    n_comp = params.log_mu.shape[1]
    n_cells = counts.x.shape[1]
    terms = np.empty((n_comp, 6, n_cells))
    scratch = np.empty((n_comp, n_cells))
    for position in range(rows.shape[0]):
        a = rows[position]
        g = genes[a]
        _gene_terms(kind, counts, exposure, params, g, a, False, terms)
        out = resp[a] if resp.shape[0] > 0 else scratch
        loglik[a] = _posterior(params.log_weights[a], terms, counts.log_factorial[g], out)


@jit
def _role(k, a, n_comp, n_theta):
    """What reduced coordinate ``a`` is to component k: 0 its eta (log mu_k or the
    shift), 1 its log theta, 2 a weight logit, -1 none of its parameters."""
    if a == k or a == n_comp:
        return 0
    if a <= n_comp + n_theta:
        return 1 if a == n_comp + 1 + k else -1
    return 2


@jit
def _reduced_scores(terms, resp, pi, n_theta, louis, scores):
    """``scores[k, a]`` (cells,) the score u_k of component k in reduced coordinate a
    (zero where a is none of its parameters; the logits' are constants)."""
    n_comp = terms.shape[0]
    size = scores.shape[1]
    for k in range(n_comp):
        for a in range(size):
            role = _role(k, a, n_comp, n_theta)
            if role == 0:
                scores[k, a] = terms[k, 1]
            elif role == 1:
                scores[k, a] = terms[k, 3]
            elif role == 2 and louis:
                m = a - n_comp - n_theta
                scores[k, a] = (1.0 if k == m else 0.0) - pi[m]
            else:
                scores[k, a] = 0.0


@jit
def _pair_values(terms, resp, scores, mean, a, b, n_theta, louis, out):
    """``out[i]`` the (a, b) entry of cell i's reduced Hessian contribution:
    sum_k r_k (H_k + [louis] u_k u_k') - [louis] ubar ubar'."""
    n_comp = terms.shape[0]
    out[:] = 0.0
    for k in range(n_comp):
        role_a = _role(k, a, n_comp, n_theta)
        role_b = _role(k, b, n_comp, n_theta)
        if role_a < 0 or role_b < 0:
            continue
        r = resp[k]
        if role_a < 2 and role_b < 2:  # the Hessian of log f_k
            column = 2 if role_a + role_b == 0 else (5 if role_a + role_b == 1 else 4)
            h = terms[k, column]
            for i in range(out.shape[0]):
                out[i] += r[i] * h[i]
        if louis:
            sa, sb = scores[k, a], scores[k, b]
            for i in range(out.shape[0]):
                out[i] += r[i] * sa[i] * sb[i]
    if louis:
        ma, mb = mean[a], mean[b]
        for i in range(out.shape[0]):
            out[i] -= ma[i] * mb[i]


class Work(NamedTuple):
    """Scratch of the per-gene functions, allocated once per kernel call (a (K, cells)
    array allocated per gene and step would cost a page fault per cell block)."""

    terms: np.ndarray  # (K, 6, cells): fill_cell_terms of each component
    resp: np.ndarray  # (K, cells): the responsibilities of the last objective
    scores: np.ndarray  # (K, size, cells): reduced scores
    mean: np.ndarray  # (size, cells)
    values: np.ndarray  # (cells,)
    weighted: np.ndarray  # (cells,)
    pi: np.ndarray  # (K,)


@jit
def new_work(n_comp, n_cells):
    """:class:`Work` for K components (room for the marginal derivatives of NB)."""
    size = 3 * n_comp
    return Work(
        np.empty((n_comp, 6, n_cells)),
        np.empty((n_comp, n_cells)),
        np.empty((n_comp, size, n_cells)),
        np.empty((size, n_cells)),
        np.empty(n_cells),
        np.empty(n_cells),
        np.empty(n_comp),
    )


@jit
def gene_objective(kind, counts, exposure, params, a, g, resp, louis, work, derivatives):
    """At the parameters of row a, for gene g: with ``louis`` the marginal
    log-likelihood (responsibilities left in ``work.resp``), else Q without the
    weights' term at the responsibilities ``resp`` (K, cells). The cell terms are left
    in ``work.terms`` (with their derivatives where asked, for a next
    :func:`gene_derivatives` at the same point)."""
    _gene_terms(kind, counts, exposure, params, g, a, derivatives, work.terms)
    return terms_objective(counts, params, a, g, resp, louis, work)


@jit
def terms_objective(counts, params, a, g, resp, louis, work):
    """:func:`gene_objective` from the cell terms already in ``work.terms``."""
    if louis:
        return _posterior(params.log_weights[a], work.terms, counts.log_factorial[g], work.resp)
    total = 0.0
    for k in range(params.log_mu.shape[1]):
        total += row_dot(resp[k], work.terms[k, 0])
        total -= row_dot(resp[k], counts.log_factorial[g])
    return total


@jit
def gene_derivatives(kind, counts, exposure, params, a, g, resp, louis, work, out, fresh):
    """Gradient and Hessian ``out = (grad, hess)`` of :func:`gene_objective` (layout of
    the module docstring; every entry written). ``fresh``: compute the cell terms;
    otherwise ``work.terms`` holds them, with derivatives, at these parameters."""
    grad, hess = out
    n_comp = params.log_mu.shape[1]
    z = exposure.columns
    n_cov, n_cells = z.shape
    n_theta = n_comp if kind == NB else 0
    shift = n_comp
    size = n_comp + 1 + n_theta + (n_comp - 1 if louis else 0)  # gamma as one coordinate
    terms, pi = work.terms, work.pi
    scores, mean = work.scores[:, :size], work.mean[:size]
    if fresh:
        _gene_terms(kind, counts, exposure, params, g, a, True, terms)
    for k in range(n_comp):
        pi[k] = math.exp(params.log_weights[a, k])
    r = resp
    if louis:
        _posterior(params.log_weights[a], terms, counts.log_factorial[g], work.resp)
        r = work.resp
    _reduced_scores(terms, r, pi, n_theta, louis, scores)
    mean[:] = 0.0
    for k in range(n_comp):
        for p in range(size):
            for i in range(n_cells):
                mean[p, i] += r[k, i] * scores[k, p, i]
    hess[:] = 0.0
    for p in range(size):
        if p == shift:
            for c in range(n_cov):
                grad[shift + c] = row_dot(z[c], mean[shift])
        else:
            grad[_full(p, shift, n_cov)] = row_sum(mean[p])
        for q in range(p, size):
            _pair_values(terms, r, scores, mean, p, q, n_theta, louis, work.values)
            _put_pair(work.values, z, p, q, shift, work.weighted, hess)
    if louis:  # the logits' own Hessian, -(diag(pi) - pi pi') per cell
        first = n_comp + n_cov + n_theta - 1
        for m in range(1, n_comp):
            for m2 in range(1, n_comp):
                diagonal = pi[m] if m == m2 else 0.0
                hess[first + m, first + m2] -= n_cells * (diagonal - pi[m] * pi[m2])


@jit
def _derivatives_kernel(kind, counts, exposure, params, resp, louis, genes, rows, out):
    """:func:`gene_derivatives` into ``out = (grad, hess)`` row a, for gene
    ``genes[a]`` at the parameters of row a, for the rows ``rows`` (``resp`` by gene)."""
    work = new_work(params.log_mu.shape[1], counts.x.shape[1])
    for position in range(rows.shape[0]):
        a = rows[position]
        g = genes[a]
        r = work.resp if louis else resp[g]
        rows_out = (out[0][a], out[1][a])
        gene_derivatives(kind, counts, exposure, params, a, g, r, louis, work, rows_out, True)


@jit
def _full(p, shift, n_cov):
    """The full index of reduced coordinate p (not the shift)."""
    return p if p < shift else p - 1 + n_cov


@jit
def _put_pair(values, z, p, q, shift, weighted, hess):
    """Sum the per-cell entry (p, q) into the full Hessian; the shift spread over the
    covariates (z_c for one shift, z_c z_d for two)."""
    n_cov = z.shape[0]
    if p != shift and q != shift:
        total = row_sum(values)
        fp, fq = _full(p, shift, n_cov), _full(q, shift, n_cov)
        hess[fp, fq] = total
        hess[fq, fp] = total
    elif p == shift and q == shift:
        for c in range(n_cov):
            for i in range(values.shape[0]):
                weighted[i] = z[c, i] * values[i]
            for d in range(c, n_cov):
                total = row_dot(weighted, z[d])
                hess[shift + c, shift + d] = total
                hess[shift + d, shift + c] = total
    else:
        other = _full(q if p == shift else p, shift, n_cov)
        for c in range(n_cov):
            total = row_dot(z[c], values)
            hess[shift + c, other] = total
            hess[other, shift + c] = total


def _contiguous(structure):
    return type(structure)(*(np.ascontiguousarray(field) for field in structure))


def _prepare(counts, exposure, params, genes):
    """The structures in one memory layout, and the genes (rows of ``counts``) that
    the rows of ``params`` are: all in order by default."""
    genes = np.arange(counts.x.shape[0]) if genes is None else np.asarray(genes, dtype=np.int64)
    return _contiguous(counts), _contiguous(exposure), _contiguous(params), genes


def _run(kernel, genes, counts, params, weight=1):
    """``kernel(rows)`` over every row, split over the threads of
    :func:`~scmix._core.numerics.jit.row_threads` where the work is large."""
    rows = np.arange(genes.size)
    over_rows(kernel, rows, weight * rows.size * counts.x.shape[1] * params.log_mu.shape[1])


def marginal_loglik(
    kind: int,
    counts: CountTable,
    exposure: Exposure,
    params: Components,
    *,
    genes: np.ndarray | None = None,
    with_resp: bool = False,
):
    """The marginal log-likelihood of each row of ``params`` (the counts of gene
    ``genes[a]``, every row of ``counts`` in order by default) and, ``with_resp``, the
    responsibilities (rows, K, cells) (else None)."""
    counts, exposure, params, genes = _prepare(counts, exposure, params, genes)
    loglik = np.empty(genes.size)
    shape = (genes.size, params.log_mu.shape[1], counts.x.shape[1]) if with_resp else (0, 0, 0)
    resp = np.empty(shape)

    def kernel(rows):
        _loglik_kernel(kind, counts, exposure, params, genes, rows, loglik, resp)

    _run(kernel, genes, counts, params)
    return loglik, (resp if with_resp else None)


def derivatives(
    kind: int,
    counts: CountTable,
    exposure: Exposure,
    params: Components,
    resp: np.ndarray | None = None,
    *,
    genes: np.ndarray | None = None,
):
    """Gradient (rows, P) and Hessian (rows, P, P) of Q at the responsibilities
    ``resp`` (genes of ``counts``, K, cells) or, for ``resp=None``, of the marginal
    log-likelihood (then with the weight logits last); rows as in
    :func:`marginal_loglik`."""
    counts, exposure, params, genes = _prepare(counts, exposure, params, genes)
    n_comp = params.log_mu.shape[1]
    louis = resp is None
    n_theta = n_comp if kind == NB else 0
    size = n_comp + exposure.columns.shape[0] + n_theta + (n_comp - 1 if louis else 0)
    out = (np.zeros((genes.size, size)), np.zeros((genes.size, size, size)))
    resp = np.empty((0, 0, 0)) if louis else np.ascontiguousarray(resp)

    def kernel(rows):
        _derivatives_kernel(kind, counts, exposure, params, resp, louis, genes, rows, out)

    _run(kernel, genes, counts, params, weight=4)
    return out
