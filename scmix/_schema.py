"""The names of the results each tool writes under a key.

A key owns exactly the ``.var`` / ``.obs`` columns of its tool's schema (``{key}_mean_0``,
``{key}_loglik``, ...), matched by full name, never by prefix: the fit under ``"scmix"``
does not own the columns of a fit under ``"scmix_mean"`` (``scmix_mean_loglik``), and the
columns of an earlier fit are found even when ``.uns`` was lost.
"""

from __future__ import annotations

import re

Schema = re.Pattern

#: ``.var`` columns of :func:`scmix.tl.fit_mixture` (and of goodness_of_fit on its fit),
#: without the ``{key}_`` prefix.
FIT_SCHEMA = re.compile(
    r"(mean|dispersion|weight)_\d+|single_(mean|dispersion)|loglik(_1)?|bic(_1)?|delta_bic"
    r"|lrt(_pvalue|_padj)?|bimodal|converged|n_iter|(single_)?gof_(ks|pvalue)"
    r"|(single_)?coef_.+"
)
#: ``.var`` columns of :func:`scmix.tl.select_n_components`.
SELECT_SCHEMA = re.compile(r"(loglik|bic)_\d+|n_components")
#: ``.obs`` columns of a fit: the class of a cell-level fit, the size factors given as
#: an array.
FIT_OBS_SCHEMA = re.compile(r"component|size_factors")
#: ``.layers`` of a per-gene fit: responsibilities of components 1 .. K-1.
FIT_LAYER_SCHEMA = re.compile(r"responsibility_\d+")


def responsibility_layer(key: str, component: int) -> str:
    """The ``.layers`` key of component ``component``'s responsibilities under ``key``."""
    return f"{key}_responsibility_{component}"


def size_factors_column(key: str) -> str:
    """The ``.obs`` column holding the size factors of the fit under ``key`` when they
    were given as an array or Series rather than as a ``.obs`` key."""
    return f"{key}_size_factors"


def owned_columns(columns, key: str, schema: re.Pattern) -> list[str]:
    """The columns among ``columns`` that a tool with ``schema`` writes under ``key``."""
    prefix = f"{key}_"
    return [
        c
        for c in columns
        if isinstance(c, str) and c.startswith(prefix) and schema.fullmatch(c[len(prefix) :])
    ]


#: ``.var`` columns of :func:`scmix.tl.spike_in_qc` (per spike-in; NaN for other genes).
SPIKE_QC_SCHEMA = re.compile(r"expected_molecules|mean_count|detection_rate")
#: ``.var`` columns of :func:`scmix.tl.technical_noise`; ``.obs``: the size factors used.
TECHNICAL_NOISE_SCHEMA = re.compile(
    r"mean|dispersion|technical_dispersion|statistic|z|pvalue|padj|variable|trend_spike_in"
)
