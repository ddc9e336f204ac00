"""Goodness of fit of a stored mixture fit: randomized quantile residuals and a KS test."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData

from .._core.errors import InputKeyError
from .._core.fit.chunks import chunk_size_for, iter_chunks
from .._core.stats import gof
from .._core.validation import check_random_state
from .._fitted import Model, fit_params, fit_size_factors, gene_exposures, stored_model
from .._inputs import gene_columns
from .._scanpy import added, info
from ._write import add_var_columns


def goodness_of_fit(
    adata: AnnData,
    *,
    key: str = "scmix",
    model: Model = "mixture",
    random_state: int | None = 0,
    size_factors=None,
    copy: bool = False,
) -> AnnData | None:
    r"""Test every fitted gene's model with randomized quantile residuals (Dunn and Smyth 1996).

    For cell i with count x and the fitted mixture cdf
    :math:`F_i(x) = \sum_k \pi_k F(x \mid s_i \mu_k, \phi_k)` (NB, or Poisson),
    :math:`u_i = F_i(x - 1) + v_i\,(F_i(x) - F_i(x - 1))` with :math:`v_i \sim U(0,1)`
    is exactly uniform under the model. A one-sample Kolmogorov-Smirnov test of
    the :math:`u_i` against U(0, 1) gives each gene's p-value (exact distribution).
    Works for any K, NB and Poisson. With the parameters fitted to the same counts
    the test is conservative (p-values lean towards 1 under the model).

    Parameters
    ----------
    adata
        Fitted by :func:`scmix.tl.fit_mixture` under ``key``.
    model
        ``"mixture"``: the K-component fit; ``"one_component"``: the one-component
        fit that fit_mixture stores beside it (``{key}_single_*``).
    random_state
        Seed of the :math:`v_i`; each gene has its own stream (seed and gene name),
        so a gene's result does not depend on the others.
    size_factors
        Other size factors than the fit's (which are read from ``.obs``: the key the
        fit was given, or ``{key}_size_factors`` that it wrote for an array); an
        array, a Series aligned on ``obs_names`` or a ``.obs`` key, checked as the fit
        checks them.
    copy
        Return a copy instead of writing to ``adata``.

    Returns
    -------
    ``None`` (or the copy), with in ``.var`` (prefix ``{key}_gof`` for the mixture,
    ``{key}_single_gof`` for the one-component fit): ``_ks`` the KS statistic and
    ``_pvalue`` its p-value (NaN for genes not fitted); the settings in
    ``.uns[key]["goodness_of_fit"][model]``. Reject at level alpha with Bonferroni:
    ``pvalue < alpha / n_fitted``.
    """
    params = fit_params(adata, key)
    stored = stored_model(adata, key, model)
    random_state = check_random_state(random_state)
    sf = fit_size_factors(adata, params, size_factors)
    columns = gene_columns(adata, params["layer"], stored.positions)
    start = info(f"testing the {model} fits of {stored.positions.size} genes")
    statistic = np.full(adata.n_vars, np.nan)
    pvalue = np.full(adata.n_vars, np.nan)
    n_comp = stored.weights.shape[1]
    for chunk in iter_chunks(columns.n_genes, chunk_size_for(adata.n_obs, n_comp)):
        genes = stored.positions[chunk]
        u = gof.quantile_residuals(
            stored.family,
            columns.block(chunk),
            gene_exposures(adata, key, sf, genes, model),
            {name: values[chunk] for name, values in stored.params.items()},
            stored.weights[chunk],
            gof.gene_uniforms(random_state, adata.var_names[genes], adata.n_obs),
        )
        statistic[genes], pvalue[genes] = gof.ks_uniform(u)

    prefix = f"{key}_gof" if model == "mixture" else f"{key}_single_gof"
    target = adata.copy() if copy else adata
    new = pd.DataFrame(
        {f"{prefix}_ks": statistic, f"{prefix}_pvalue": pvalue}, index=adata.var_names
    )
    settings = {
        "test": "Kolmogorov-Smirnov of randomized quantile residuals against U(0, 1)",
        "random_state": random_state,
        "n_genes": int(stored.positions.size),
    }
    add_var_columns(target, key, new, {"goodness_of_fit": {model: settings}})
    info("    finished", time=start)
    added([(f"'{name}'", "adata.var") for name in new.columns])
    return target if copy else None


def quantile_residuals(
    adata: AnnData,
    genes,
    *,
    key: str = "scmix",
    model: Model = "mixture",
    random_state: int | None = 0,
    size_factors=None,
) -> pd.DataFrame:
    """Randomized quantile residuals on the normal scale, :math:`\\Phi^{-1}(u_i)`, of the
    given genes (cells x genes DataFrame), with the same streams as :func:`goodness_of_fit`."""
    from scipy import stats

    params = fit_params(adata, key)
    stored = stored_model(adata, key, model)
    random_state = check_random_state(random_state)
    names = [genes] if isinstance(genes, str) else list(genes)
    fitted = pd.Index(adata.var_names[stored.positions])
    missing = [g for g in names if g not in fitted]
    if missing:
        raise InputKeyError(f"genes not fitted under key {key!r}: {missing[:5]}.")
    rows = fitted.get_indexer(names)
    positions = stored.positions[rows]
    u = gof.quantile_residuals(
        stored.family,
        gene_columns(adata, params["layer"], positions).block(slice(None)),
        gene_exposures(adata, key, fit_size_factors(adata, params, size_factors), positions, model),
        {name: values[rows] for name, values in stored.params.items()},
        stored.weights[rows],
        gof.gene_uniforms(random_state, names, adata.n_obs),
    )
    return pd.DataFrame(stats.norm.ppf(u).T, index=adata.obs_names, columns=names)
