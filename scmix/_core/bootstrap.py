r"""Parametric bootstrap of the likelihood-ratio statistic of K against one component.

The LRT of a mixture has no chi-square reference distribution (under the null the
extra components sit on the boundary of the parameter space), so its null
distribution is simulated (McLachlan 1987): for each gene, B data sets are drawn
from the fitted one-component model with the cells' size factors, both models are
refitted to each exactly as to the data, and

.. math::

    p_j = \frac{1 + \#\{b : \mathrm{LRT}^{(b)}_j \ge \mathrm{LRT}_j\}}{B + 1}.

The replicates of all genes go through the engine as extra rows of one matrix, so
the bootstrap is B fits of the same genes, vectorised, with no per-replicate overhead.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Callable

import numpy as np

from .families import Family

#: LRT differences below this count as ties (optimiser noise), which keeps p-values honest.
TIE_TOLERANCE = 1e-6


def gene_rng(random_state: int | None, name, tag: int) -> np.random.Generator:
    """A generator of its own for a gene (keyed by seed, name and a purpose tag)."""
    entropy = np.random.SeedSequence(random_state).entropy
    key = (zlib.crc32(str(name).encode()), tag)
    return np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=key))


def simulate_replicates(family, params, size_factors, names, n_bootstrap, random_state):
    """``n_bootstrap`` count vectors per gene from its one-component fit, stacked gene by
    gene: shape (n_genes * B, n_cells), rows ``j * B + b``."""
    n_cells = size_factors.size
    out = np.empty((len(names) * n_bootstrap, n_cells))
    for j, name in enumerate(names):
        component = {key: values[j : j + 1, :1] for key, values in params.items()}
        mean = np.broadcast_to(size_factors[None, :] * component["mu"], (n_bootstrap, n_cells))
        rows = slice(j * n_bootstrap, (j + 1) * n_bootstrap)
        out[rows] = family.sample(mean, component, gene_rng(random_state, name, 1))
    return out


def bootstrap_pvalues(
    fit_rows: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    family: Family,
    single_params: dict[str, np.ndarray],
    size_factors: np.ndarray,
    names,
    observed_lrt: np.ndarray,
    *,
    n_bootstrap: int,
    random_state: int | None,
    rows_per_batch: int,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap p-values of ``observed_lrt`` (genes,) and the null statistics (genes, B).

    ``fit_rows(counts)`` fits the one- and the K-component model to every row of
    ``counts`` (rows, cells) and returns their log-likelihoods; it is the same fit as
    for the data. A replicate without any count has LRT 0.
    """
    n_genes = len(names)
    null = np.empty((n_genes, n_bootstrap))
    per_batch = max(1, rows_per_batch // n_bootstrap)
    for start in range(0, n_genes, per_batch):
        block = slice(start, min(start + per_batch, n_genes))
        params = {key: values[block] for key, values in single_params.items()}
        counts = simulate_replicates(
            family, params, size_factors, names[block], n_bootstrap, random_state
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # replicates without counts
            loglik_1, loglik_k = fit_rows(counts)
        lrt = np.nan_to_num(2.0 * (loglik_k - loglik_1), nan=0.0)
        null[block] = lrt.reshape(-1, n_bootstrap)
        if progress is not None:
            progress(block.stop)
    exceed = null >= observed_lrt[:, None] - TIE_TOLERANCE * np.maximum(1.0, observed_lrt[:, None])
    return (1.0 + exceed.sum(axis=1)) / (n_bootstrap + 1.0), null
