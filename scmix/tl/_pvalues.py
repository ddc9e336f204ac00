"""The LRT p-values of ``fit_mixture(pvalues=...)``: the option checked, and the
p-values of a fit without covariates (the exact per-gene bootstrap, or the grid of
:mod:`scmix._core.stats.null_grid`)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .._core import validation
from .._core.errors import InputError
from .._core.fit.matrix import MixtureFit
from .._core.settings import FitSettings
from .._core.stats import bootstrap, null_grid

#: Replicates of each method when ``n_bootstrap`` is 0: per gene (the bootstrap) and
#: per grid node (``"fast"``).
DEFAULT_REPLICATES = {"bootstrap": 199, "fast": 39}
METHODS = (None, "bootstrap", "fast")


def check_pvalues(pvalues, n_bootstrap: int, *, n_components: int, shared: bool, early_stop: int):
    """The method (None, "bootstrap" or "fast") and its number of replicates. A positive
    ``n_bootstrap`` without ``pvalues`` asks for the bootstrap, as it always did."""
    if pvalues not in METHODS:
        raise InputError(f"pvalues must be None, 'bootstrap' or 'fast', got {pvalues!r}.")
    if pvalues is None:
        pvalues = "bootstrap" if n_bootstrap else None
    if pvalues is None:
        return None, 0
    if n_components == 1:
        raise InputError(f"pvalues={pvalues!r} needs n_components > 1 (the LRT compares K with 1).")
    if shared:
        raise InputError(f"pvalues={pvalues!r} is not available with shared=True.")
    if pvalues == "fast" and early_stop:
        raise InputError("bootstrap_early_stop applies to pvalues='bootstrap' only.")
    return pvalues, n_bootstrap or DEFAULT_REPLICATES[pvalues]


def check_call(call, padj_threshold, pvalues) -> tuple[str, float]:
    """``call`` ("bic" or "padj", which needs p-values) and its ``padj_threshold``."""
    if call not in ("bic", "padj"):
        raise InputError(f"call must be 'bic' or 'padj', got {call!r}.")
    padj_threshold = validation.check_real(
        padj_threshold, "padj_threshold", minimum=0.0, maximum=1.0
    )
    if call == "padj" and pvalues is None:
        raise InputError("call='padj' needs p-values: pass pvalues='fast' or pvalues='bootstrap'.")
    return call, padj_threshold


def lrt_pvalues(
    method: str,
    fit: MixtureFit,
    size_factors: np.ndarray,
    names,
    *,
    n_replicates: int,
    early_stop: int,
    settings: FitSettings,
    progress=None,
) -> dict[str, np.ndarray]:
    """``lrt_pvalue`` and ``lrt_padj`` of every gene of ``fit`` (NaN where not fitted)."""
    settings = replace(settings, keep_trace=False)
    if method == "bootstrap":
        return bootstrap.lrt_pvalues(
            fit,
            size_factors,
            names,
            n_bootstrap=n_replicates,
            early_stop=early_stop,
            settings=settings,
            progress=progress,
        )
    # the grid's work is counted in nodes, not genes: no bar
    result = null_grid.grid_lrt_pvalues(
        fit, size_factors, names, n_replicates=n_replicates, settings=settings
    )
    if progress is not None:
        progress(int(fit.fitted.sum()))
    return {"lrt_pvalue": result["lrt_pvalue"], "lrt_padj": result["lrt_padj"]}
