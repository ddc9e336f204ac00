"""Parameter descriptions shared by several docstrings (one text, several functions)."""

from __future__ import annotations

DOC_INPUTS = """\
size_factors
        A numeric ``.obs`` column, an array of length ``n_obs``, a pandas Series
        (aligned on ``obs_names`` by its index, as pandas does; an error names the
        cells it lacks) or ``None`` (all ones: no offsets). Positive and finite;
        booleans and strings are refused, not converted.
    layer
        Layer holding the counts; ``None`` uses ``X``. Dense, sparse, backed
        (``read_h5ad(..., backed="r")``, read block by block) or dask; finite
        non-negative integers of any numeric dtype. Masked arrays are refused.
    mask_var
        Genes to fit: a boolean ``.var`` column (e.g. ``"spike_in"``), a boolean
        array, a boolean Series (aligned on ``var_names``) or a list of gene names.
        Others get NaN / False in the outputs."""

DOC_FIT_OPTIONS = """\
n_init
        Label-based starts per gene: the first splits the cells into K groups by
        the rank of log1p(x/s), the second nests them (groups by distance from the
        median: a tight component inside broad ones), the others use k-means++ on
        log1p(x/s). For K > 1, where no start rose above the one-component
        log-likelihood by more than ``tol`` per cell, one more start splits the
        one-component fit into K near-equal components; where every start ends
        below the one-component fit, the fit is K copies of it. So the LRT is
        never negative (up to rounding). The best log-likelihood per gene is
        kept. Each start is a whole EM, so the time grows about in proportion to
        ``n_init``. Where the likelihood is flat (unimodal genes, such as most
        spike-ins) the starts often end at different maxima: on the 88 ERCC of
        Svensson 20312 a later start ends higher than the first for about a third
        of them. On clearly separated components they agree (under 1% of
        simulated bimodal genes differ), and ``n_init=1`` gives the same fit
        about three times faster.
    max_iter, tol
        EM (accelerated by SQUAREM, with a monotone safeguard) stops for a gene
        once its log-likelihood rose by at most ``tol`` per cell over a whole
        SQUAREM cycle (three EM steps and an extrapolation). A gene still
        iterating after 12 EM steps (K = 1: from the start) continues with
        Newton steps on the marginal log-likelihood, which never lower it either,
        and stops at a local maximum where the predicted gain is at most ``tol``
        per cell. A gene still rising after ``max_iter`` steps (EM and Newton) is
        reported as not converged.
    random_state
        Seed of the random starts; the result is deterministic for a given seed
        and does not depend on ``chunk_size``.
    chunk_size
        Genes processed at once; by default chosen so that a chunk takes about
        256 MiB. Results do not depend on it."""


def doc_params(**texts: str):
    """Decorator: replace ``{name}`` placeholders of a docstring with shared texts
    (by plain replacement: the docstrings hold LaTeX braces that ``str.format`` would read)."""

    def decorate(obj):
        for name, text in texts.items():
            obj.__doc__ = obj.__doc__.replace("{" + name + "}", text)
        return obj

    return decorate
