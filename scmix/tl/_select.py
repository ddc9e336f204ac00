"""Choosing the number of components per gene by BIC."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from anndata import AnnData

from .. import __version__
from .._core import validation
from .._core.errors import InputError
from .._core.families import get_family
from .._core.fit.covariates import CovariateOptions, covariate_logliks
from .._core.fit.matrix import DEFAULT_MAX_ITER, DEFAULT_N_INIT, DEFAULT_TOL, fit_matrix
from .._core.stats import selection
from .._design import covariate_design
from .._docs import DOC_INPUTS, doc_params
from .._inputs import check_adata, describe_mask, describe_size_factors, fit_inputs, in_memory
from .._scanpy import added, info
from .._schema import SELECT_SCHEMA
from ._write import replace_results, var_frame


@doc_params(inputs=DOC_INPUTS)
def select_n_components(
    adata: AnnData,
    n_components: Sequence[int] = (1, 2, 3),
    *,
    family: Literal["nb", "poisson"] = "nb",
    size_factors: str | np.ndarray | None = "size_factors",
    covariates: str | list[str] | None = None,
    layer: str | None = None,
    mask_var: str | np.ndarray | list[str] | None = None,
    n_init: int = DEFAULT_N_INIT,
    max_iter: int = DEFAULT_MAX_ITER,
    tol: float = DEFAULT_TOL,
    random_state: int | None = 0,
    key_added: str = "scmix_k",
    copy: bool = False,
) -> AnnData | None:
    r"""Fit K = each of ``n_components`` to every selected gene and keep, per gene, the K
    with the smallest :math:`\mathrm{BIC}_K = -2\ell_K + (Kp + K - 1)\log n`.

    Each K is fitted as by :func:`scmix.tl.fit_mixture` with the same options (so
    ``{key}_bic_2`` equals fit_mixture's ``scmix_bic`` for K = 2). Fit the chosen K
    with fit_mixture to get its parameters and responsibilities.

    Parameters
    ----------
    n_components
        The K to compare (each at least 1).
    {inputs}
    family, covariates, n_init, max_iter, tol, random_state
        As in :func:`scmix.tl.fit_mixture` (with covariates every BIC also counts their
        effects, the same number for every K, so the choice compares like with like).
    key_added
        Prefix of the outputs.

    Returns
    -------
    ``None`` (or the copy), with in ``.var``: ``{key}_loglik_{K}`` and ``{key}_bic_{K}``
    for every K, and ``{key}_n_components``, the K with the smallest BIC (0 for genes
    not fitted); ``.uns[key]["params"]`` records the settings.
    """
    check_adata(adata)
    validation.check_key(key_added)
    if isinstance(n_components, (str, bytes)) or not np.iterable(n_components):
        raise InputError(f"n_components must be a list of K, got {n_components!r}.")
    candidates = sorted({validation.check_n_components(k, adata.n_obs) for k in n_components})
    if not candidates:
        raise InputError("n_components must list at least one K.")
    fam = get_family(family)
    settings = validation.check_fit_options(
        n_init=n_init, max_iter=max_iter, tol=tol, random_state=random_state
    )
    design = covariate_design(adata, covariates)
    X, selected, sf, check = fit_inputs(adata, layer, mask_var, size_factors)
    start = info(f"fitting K = {candidates} {fam.name} mixtures to {selected.size} genes")
    if design is None:
        loglik = _logliks(X, sf, fam, candidates, settings, check)
    else:
        options = CovariateOptions(settings.n_init, settings.max_iter, settings.tol)
        loglik = covariate_logliks(
            in_memory(X, check),
            sf,
            design.matrix,
            family=fam,
            candidates=candidates,
            options=options,
        )
    p = fam.n_free_params
    n_cov = 0 if design is None else len(design.columns)
    bic = {
        k: selection.bic(loglik[k], k, p, adata.n_obs) + n_cov * np.log(adata.n_obs)
        for k in candidates
    }
    table = np.column_stack([bic[k] for k in candidates])
    fitted = np.isfinite(table).all(axis=1)
    chosen = np.where(
        fitted, np.asarray(candidates)[np.argmin(np.where(fitted[:, None], table, 0), axis=1)], 0
    )

    columns = {}
    for k in candidates:
        columns[f"{key_added}_loglik_{k}"] = loglik[k]
        columns[f"{key_added}_bic_{k}"] = bic[k]
    columns[f"{key_added}_n_components"] = chosen.astype(np.int64)
    params = dict(
        n_components=candidates,
        family=family,
        size_factors=describe_size_factors(size_factors),
        **({"covariates": None} if design is None else design.describe()),
        layer=layer,
        mask_var=describe_mask(mask_var),
        key_added=key_added,
        n_init=settings.n_init,
        max_iter=settings.max_iter,
        tol=settings.tol,
        random_state=settings.random_state,
    )
    uns = {
        "params": params,
        "var_names": np.asarray(adata.var_names[selected], dtype=object),
        "version": __version__,
    }
    target = adata.copy() if copy else adata
    replace_results(
        target,
        key_added,
        var_frame(adata.var_names, selected, columns),
        uns,
        schema=SELECT_SCHEMA,
    )
    info("    finished", time=start)
    added([(f"'{name}'", "adata.var") for name in columns] + [(f"'{key_added}'", "adata.uns")])
    return target if copy else None


def _logliks(X, sf, family, candidates, settings, check) -> dict:
    """Log-likelihood of each K without covariates (K = 1 from any fit's one-component
    model)."""
    loglik, fits = {}, {}
    for k in [c for c in candidates if c > 1] or candidates:
        fits[k] = fit_matrix(
            X, sf, family=family, n_components=k, settings=settings, store_resp=False, check=check
        )
        loglik[k] = fits[k].loglik
    if 1 in candidates:
        loglik[1] = next(iter(fits.values())).single.loglik
    return loglik
