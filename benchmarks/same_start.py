"""scmix's EM from exactly the baseline's start: the like-for-like row of ``run_core.py``.

The start of ``baseline.py`` (equal groups by the rank of log1p(x / s), ties by
position, then moments) is computed here for every gene at once, and scmix's EM
(the private ``scmix._core.em.driver.run_em``) runs from it, so that the two differ only in
how each EM step is computed.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import baseline  # benchmarks/baseline.py (the script's directory is on sys.path)
import numba
import numpy as np


def baseline_start(X, sf, n_components=2):
    """``baseline.initial_parameters`` for every column of X (numba, genes in parallel):
    the cells split into K equal groups by the rank of log1p(x / s), ties by position
    (as the baseline's stable sort), then per group the mean and the moment theta.
    Returns ``(mu, theta, weights)``, each (n_genes, K)."""
    x = np.ascontiguousarray(np.asarray(X, dtype=np.float64).T)  # genes x cells
    return _baseline_start(
        x,
        np.asarray(sf, dtype=np.float64),
        n_components,
        baseline.MU_MIN,
        baseline.THETA_MIN,
        baseline.THETA_MAX,
    )


@numba.njit(parallel=True, cache=True)
def _baseline_start(x, sf, n_components, mu_min, theta_min, theta_max):
    n_genes, n_cells = x.shape
    mu = np.empty((n_genes, n_components))
    theta = np.empty((n_genes, n_components))
    weights = np.empty((n_genes, n_components))
    for g in numba.prange(n_genes):
        # log1p itself: rounding ties some distinct x / s, and ties are split by position
        y = np.log1p(x[g] / sf)
        labels = np.zeros(n_cells, dtype=np.int64)
        for k in range(1, n_components):
            # rank >= b (b = ceil(k n / K)): the cells above the b-th smallest value v,
            # and of the cells equal to v those beyond the first b - #(y < v) by position
            b = -((-k * n_cells) // n_components)
            v = np.partition(y, b - 1)[b - 1]
            below = 0
            for i in range(n_cells):
                below += y[i] < v
            tie = 0
            for i in range(n_cells):
                if y[i] > v:
                    labels[i] += 1
                elif y[i] == v:
                    labels[i] += tie >= b - below
                    tie += 1
        for k in range(n_components):
            total_x = 0.0
            total_s = 0.0
            size = 0
            for i in range(n_cells):
                if labels[i] == k:
                    total_x += x[g, i]
                    total_s += sf[i]
                    size += 1
            mu[g, k] = max(total_x / total_s, mu_min)
            excess = 0.0
            scale = 0.0
            for i in range(n_cells):
                if labels[i] == k:
                    m = sf[i] * mu[g, k]
                    excess += (x[g, i] - m) ** 2 - m
                    scale += m * m
            phi = excess / scale
            phi = phi if np.isfinite(phi) and phi > 1.0 / theta_max else 1.0 / theta_max
            theta[g, k] = min(max(1.0 / phi, theta_min), theta_max)
            weights[g, k] = max(size / n_cells, 1.0 / n_cells)
        total = weights[g].sum()
        for k in range(n_components):
            weights[g, k] /= total
    return mu, theta, weights


def fit_scmix_from_baseline_start(X, sf):
    """scmix's EM (the private engine ``scmix._core.em.driver.run_em``) from the baseline's
    start, computed here (:func:`baseline_start`, timed with the fit): the same start,
    model and stopping rule as the baseline, so the two differ only in how each EM step
    is computed. No one-component fit, no other start. Returns the full log-likelihood
    per gene, or None if that private API is not there any more."""
    try:
        from scmix._core.em.driver import run_em
        from scmix._core.families import NegativeBinomial
        from scmix._core.families.base import ChunkData
        from scmix._core.numerics.jit import row_threads
    except ImportError:
        return None
    mu, theta, weights = baseline_start(X, sf)
    family = NegativeBinomial()
    x = np.ascontiguousarray(np.asarray(X, dtype=np.float64).T)

    def run(rows):
        data = ChunkData(np.ascontiguousarray(x[rows]), sf)
        resp = np.empty((rows.size, 2, data.n_cells))
        loglik, *_ = run_em(
            family,
            data,
            {"mu": mu[rows], "theta": theta[rows]},
            weights[rows].copy(),
            resp,
            max_iter=1000,
            tol=1e-6,
            constant=family.log_prob_constant(data),
        )
        return loglik

    # the cores used as fit_matrix uses them (its kernels are serial): a part of the
    # genes per thread where each gets a million counts, else each kernel call's genes
    # split over the threads
    n_threads = os.cpu_count() or 1
    n_parts = max(1, min(n_threads, x.size // 1_000_000))
    parts = np.array_split(np.arange(x.shape[0]), n_parts)
    try:
        if n_parts == 1:
            with row_threads(n_threads):
                return run(parts[0])
        with ThreadPoolExecutor(n_parts) as pool:
            return np.concatenate(list(pool.map(run, parts)))
    except TypeError:  # the signature changed
        return None


def check_baseline_start(X, sf, genes) -> None:
    """:func:`baseline_start` equals ``baseline.initial_parameters`` on ``genes``."""
    mu, theta, weights = baseline_start(X[:, genes], sf)
    for i, j in enumerate(genes):
        expected = baseline.initial_parameters(np.asarray(X[:, j], dtype=np.float64), sf, 2)
        for got, want in zip((mu[i], theta[i], weights[i]), expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-12, err_msg=f"gene {j}")
