r"""Parametric bootstrap of the likelihood-ratio statistic of K against one component.

The LRT of a mixture has no chi-square reference distribution (under the null the
extra components sit on the boundary of the parameter space), so its null
distribution is simulated (McLachlan 1987): for each gene, B data sets are drawn
from the fitted one-component model with the cells' size factors (with covariates:
the gene's one-component GLM, :func:`covariate_lrt_pvalues`), both models are
refitted to each exactly as to the data, and

.. math::

    p_j = \frac{1 + \#\{b : \mathrm{LRT}^{(b)}_j \ge \mathrm{LRT}_j\}}{B + 1}.

The replicates of all genes go through the engine as extra rows of one matrix (no
per-replicate overhead). Optionally a gene whose replicates have already reached its
observed statistic often enough stops early (Besag and Clifford 1991), so clearly
unimodal genes cost a few fits and only genes with small p-values use all B.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from ..families import Family
from ..fit.chunks import GeneColumns, chunk_size_for
from ..fit.covariates import CovariateOptions, CovariateResults, covariate_logliks
from ..fit.matrix import MixtureFit, fit_matrix
from ..settings import FitSettings
from .selection import benjamini_hochberg

#: Bytes of simulated counts per batch of replicates of a fit with covariates, at most
#: (its refits work in chunks of their own).
COVARIATE_BATCH_BYTES = 32 * 2**20
#: LRT differences below this count as ties (optimiser noise), which keeps p-values honest.
TIE_TOLERANCE = 1e-6


def gene_rng(random_state: int | None, name, tag: int) -> np.random.Generator:
    """A generator of its own for a gene (keyed by seed, name and a purpose tag)."""
    entropy = np.random.SeedSequence(random_state).entropy
    key = (zlib.crc32(str(name).encode()), tag)
    return np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=key))


def simulate_replicates(family, params, size_factors, generators, n_replicates, start_shape):
    """``n_replicates`` count vectors per gene from its one-component fit, and the
    uniforms of their random EM starts (shape ``start_shape`` per replicate), both drawn
    from the gene's own generator and stacked gene by gene (row ``j * m + b``)."""
    n_cells = size_factors.size
    rows = len(generators) * n_replicates
    counts = np.empty((rows, n_cells))
    uniforms = np.empty((rows, *start_shape))
    for j, rng in enumerate(generators):
        component = {key: values[j : j + 1, :1] for key, values in params.items()}
        mean = np.broadcast_to(size_factors[None, :] * component["mu"], (n_replicates, n_cells))
        block = slice(j * n_replicates, (j + 1) * n_replicates)
        counts[block] = family.sample(mean, component, rng)
        uniforms[block] = rng.random((n_replicates, *start_shape))
    return counts, uniforms


def simulate_glm_replicates(
    family: Family,
    glm: dict[str, np.ndarray],
    size_factors: np.ndarray,
    design: np.ndarray,
    generators: list[np.random.Generator],
    n_replicates: int,
) -> np.ndarray:
    r"""``n_replicates`` count vectors per gene from its one-component GLM, stacked gene
    by gene (row ``j * m + b``), each gene's drawn from its own generator.

    ``glm`` holds the rows of the genes in ``generators``: ``coef`` (genes, q),
    :math:`\beta_j` with the intercept first, and ``log_theta`` (genes,),
    :math:`\alpha_j` (not read for a family without theta); ``design`` (cells, q) has
    rows :math:`d_i = (1, z_i)`. Cell i of gene j is drawn with mean
    :math:`s_i \exp(d_i^\top\beta_j)` and :math:`\theta_j = e^{\alpha_j}`.
    """
    n_cells = size_factors.size
    counts = np.empty((len(generators) * n_replicates, n_cells))
    log_sf = np.log(size_factors)
    theta = np.exp(glm["log_theta"]) if "theta" in family.param_names else None
    for j, rng in enumerate(generators):
        # gene by gene (not one product over the batch): the same arithmetic in any batch
        mean = np.exp(log_sf + design @ glm["coef"][j])
        mean = np.broadcast_to(mean, (n_replicates, n_cells))
        params = {} if theta is None else {"theta": theta[j]}
        counts[j * n_replicates : (j + 1) * n_replicates] = family.sample(mean, params, rng)
    return counts


def bootstrap_pvalues(
    simulate: Callable[[np.ndarray, list, int], tuple],
    fit_rows: Callable[..., tuple[np.ndarray, np.ndarray]],
    names,
    observed_lrt: np.ndarray,
    *,
    n_bootstrap: int,
    random_state: int | None,
    rows_per_batch: int,
    stop_after: int = 0,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Bootstrap p-values of ``observed_lrt`` (genes,) and the number of replicates each
    gene used.

    ``simulate(genes, generators, m)`` draws m replicates of each of ``genes`` (indices
    into ``names``) from its null model, each gene's from its generator in
    ``generators``, and returns what ``fit_rows`` takes: ``fit_rows(*simulate(...))``
    fits the one- and the K-component model to every replicate (rows gene by gene,
    ``j * m + b``), exactly as to the data, and returns their log-likelihoods. A
    replicate without any count has LRT 0. Everything a gene's replicates depend on
    comes from its own generator (:func:`gene_rng` of its name), so its p-value does
    not depend on the other genes.

    A replicate's LRT counts as reaching the observed one when
    :math:`\mathrm{LRT}^{(b)} \ge \mathrm{LRT} - \epsilon\max(1, \mathrm{LRT})`,
    :math:`\epsilon` = ``TIE_TOLERANCE`` (a tie up to optimiser noise counts).
    With ``stop_after`` = h > 0, replicates are drawn in rounds of h and a gene stops as
    soon as h of its replicates reached its observed LRT (Besag and Clifford 1991): its
    p-value is then h / L after L replicates, a valid p-value (P(p <= a) <= a) that
    spends few fits on clearly unremarkable genes, though not uniform (it has atoms
    at h / L). Otherwise, and by default, every gene runs all ``n_bootstrap``
    replicates and ``p = (1 + #exceed) / (B + 1)``.
    """
    n_genes = len(names)
    generators = [gene_rng(random_state, name, 1) for name in names]
    exceed = np.zeros(n_genes, dtype=np.int64)
    drawn = np.zeros(n_genes, dtype=np.int64)
    stopped = np.zeros(n_genes, dtype=bool)
    round_size = stop_after if stop_after > 0 else n_bootstrap
    threshold = observed_lrt - TIE_TOLERANCE * np.maximum(1.0, observed_lrt)
    while True:
        active = np.flatnonzero(~stopped & (drawn < n_bootstrap))
        if not active.size:
            break
        m = int(min(round_size, n_bootstrap - drawn[active[0]]))  # active genes drew alike
        per_batch = max(1, rows_per_batch // m)
        for start in range(0, active.size, per_batch):
            genes = active[start : start + per_batch]
            replicates = simulate(genes, [generators[g] for g in genes], m)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # replicates without counts
                loglik_1, loglik_k = fit_rows(*replicates)
            lrt = np.nan_to_num(2.0 * (loglik_k - loglik_1), nan=0.0).reshape(-1, m)
            exceed[genes] += (lrt >= threshold[genes, None]).sum(axis=1)
            drawn[genes] += m
        if stop_after > 0:
            stopped |= exceed >= stop_after
        if progress is not None:
            progress(
                int(
                    stopped.sum()
                    + (drawn >= n_bootstrap).sum()
                    - (stopped & (drawn >= n_bootstrap)).sum()
                )
            )
    pvalue = np.where(stopped, exceed / np.maximum(drawn, 1), (1.0 + exceed) / (n_bootstrap + 1.0))
    return pvalue, drawn


def lrt_pvalues(
    fit: MixtureFit,
    size_factors: np.ndarray,
    names,
    *,
    n_bootstrap: int,
    early_stop: int,
    settings: FitSettings,
    progress: Callable[[int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Bootstrap p-values of the LRT of ``fit`` (``lrt_pvalue``) and their
    Benjamini-Hochberg adjustment (``lrt_padj``), NaN for genes not fitted. Each
    replicate is refitted by :func:`~scmix._core.fit.matrix.fit_matrix` with the fit's
    ``settings``; ``names`` (the genes') seed each gene's own random stream."""
    fitted = np.flatnonzero(fit.fitted)
    n_components = fit.n_components

    def fit_rows(counts, uniforms):
        result = fit_matrix(
            counts.T,
            size_factors,
            family=fit.family,
            n_components=n_components,
            store_resp=False,
            uniforms=uniforms,
            settings=settings,
        )
        return result.single.loglik, result.loglik

    lrt = 2.0 * (fit.loglik - fit.single.loglik)
    starts = 1 + settings.n_init
    rows = max(
        n_bootstrap,
        2 * chunk_size_for(size_factors.size, n_components, starts, settings.memory_bytes),
    )
    single = {name: values[fitted] for name, values in fit.single.params.items()}
    start_shape = (max(settings.n_init, 1), n_components)

    def simulate(genes, generators, m):
        params = {key: values[genes] for key, values in single.items()}
        return simulate_replicates(fit.family, params, size_factors, generators, m, start_shape)

    return _fitted_pvalues(
        (simulate, fit_rows),
        names,
        lrt,
        fitted,
        n_bootstrap=n_bootstrap,
        random_state=settings.random_state,
        rows_per_batch=rows,
        stop_after=early_stop,
        progress=progress,
    )


def covariate_lrt_pvalues(
    fit: CovariateResults,
    size_factors: np.ndarray,
    covariates: np.ndarray,
    names,
    *,
    family: Family,
    options: CovariateOptions,
    n_bootstrap: int,
    early_stop: int,
    random_state: int | None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, np.ndarray]:
    r"""Bootstrap p-values of the LRT of a fit with covariates (``lrt_pvalue``) and their
    Benjamini-Hochberg adjustment (``lrt_padj``), NaN for genes not fitted.

    The null model of gene j is its one-component GLM
    (:mod:`scmix._core.em.glm`): :math:`x_{ij} \sim f(s_i \exp(d_i^\top\beta_j),
    \theta_j)` with :math:`d_i = (1, z_i)`, ``fit.single_coef`` and
    ``fit.single_log_theta``. Each of its B replicates (:func:`simulate_glm_replicates`)
    is refitted with K = 1 and K = ``fit.log_mu.shape[1]`` by
    :func:`~scmix._core.fit.covariates.covariate_logliks` with the data's ``options``,
    :math:`\mathrm{LRT}^{(b)} = 2(\ell^{(b)}_K - \ell^{(b)}_1)`, and

    .. math::

        p_j = \frac{1 + \#\{b : \mathrm{LRT}^{(b)}_j \ge \mathrm{LRT}_j\}}{B + 1}

    (up to ``TIE_TOLERANCE``), or Besag-Clifford's with ``early_stop`` > 0, as
    :func:`bootstrap_pvalues` computes them. The covariate fits start deterministically,
    so no start uniforms are drawn; ``names`` (the genes') seed each gene's stream.
    ``covariates``: (cells, p), without the intercept, as for the fit.
    """
    covariates = np.ascontiguousarray(covariates, dtype=np.float64)
    n_cells = size_factors.size
    n_components = fit.log_mu.shape[1]
    design = np.column_stack([np.ones(n_cells), covariates])
    fitted = np.flatnonzero(fit.fitted)
    glm = {"coef": fit.single_coef[fitted], "log_theta": fit.single_log_theta[fitted]}
    refit = replace(options, store_resp=False)

    def simulate(genes, generators, m):
        rows = {key: values[genes] for key, values in glm.items()}
        return (simulate_glm_replicates(family, rows, size_factors, design, generators, m),)

    def fit_rows(counts):
        logliks = covariate_logliks(
            GeneColumns(counts.T),
            size_factors,
            covariates,
            family=family,
            candidates=[1, n_components],
            options=refit,
        )
        return logliks[1], logliks[n_components]

    lrt = 2.0 * (fit.loglik - fit.loglik_1)
    rows = max(n_bootstrap, COVARIATE_BATCH_BYTES // (8 * n_cells))
    return _fitted_pvalues(
        (simulate, fit_rows),
        names,
        lrt,
        fitted,
        n_bootstrap=n_bootstrap,
        random_state=random_state,
        rows_per_batch=rows,
        stop_after=early_stop,
        progress=progress,
    )


def _fitted_pvalues(model, names, lrt, fitted, **options) -> dict[str, np.ndarray]:
    """:func:`bootstrap_pvalues` of the genes ``fitted`` (``model`` is its ``(simulate,
    fit_rows)``), as ``lrt_pvalue`` (NaN for the others) and ``lrt_padj``."""
    pvalue = np.full(lrt.size, np.nan)
    pvalue[fitted], _ = bootstrap_pvalues(*model, np.asarray(names)[fitted], lrt[fitted], **options)
    return {"lrt_pvalue": pvalue, "lrt_padj": benjamini_hochberg(pvalue)}
