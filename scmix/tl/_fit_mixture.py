"""``scmix.tl.fit_mixture``: per-gene count mixtures with size-factor offsets."""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from .._core import validation
from .._core.errors import InputError, InputKeyError
from .._core.families import get_family
from .._core.fit.matrix import DEFAULT_MAX_ITER, DEFAULT_N_INIT, DEFAULT_TOL, fit_matrix
from .._core.stats import selection
from .._design import covariate_design, covariate_names
from .._docs import DOC_FIT_OPTIONS, DOC_INPUTS, doc_params
from .._inputs import check_adata, describe_mask, describe_size_factors, fit_inputs, in_memory
from .._scanpy import added, default_n_jobs, info
from .._schema import size_factors_column
from .._warnings import warn
from ._covariates import fit_with_covariates
from ._progress import progress_bar
from ._pvalues import check_call, check_pvalues, lrt_pvalues
from ._shared import fit_cell_level
from ._write import write_fit

#: ``store_responsibilities="auto"`` stores them below this size (float32 bytes of the
#: K - 1 layers, cells x all genes).
RESPONSIBILITIES_AUTO_LIMIT = 512 * 2**20


@doc_params(inputs=DOC_INPUTS, fit_options=DOC_FIT_OPTIONS)
def fit_mixture(
    adata: AnnData,
    n_components: int = 2,
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
    bic_threshold: float = selection.DEFAULT_BIC_THRESHOLD,
    min_weight: float = selection.DEFAULT_MIN_WEIGHT,
    call: Literal["bic", "padj"] = "bic",
    padj_threshold: float = selection.DEFAULT_PADJ_THRESHOLD,
    key_added: str = "scmix",
    store_responsibilities: bool | Literal["auto"] = "auto",
    keep_trace: bool = False,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    n_jobs: int | None = None,
    pvalues: Literal["bootstrap", "fast"] | None = None,
    n_bootstrap: int = 0,
    bootstrap_early_stop: int = 0,
    shared: bool = False,
    init: str | None = None,
    progress: bool = False,
    copy: bool = False,
) -> AnnData | None:
    r"""Fit a K-component count mixture with size-factor offsets to every selected gene.

    For gene j and cell i with size factor :math:`s_i`,

    .. math::

        p(x_{ij}) = \sum_{k=1}^{K} \pi_{jk}\, f(x_{ij} \mid s_i \mu_{jk}, \theta_{jk}),

    with f the negative binomial of mean :math:`m = s_i\mu_{jk}` and variance
    :math:`m + m^2/\theta_{jk}` (``family="nb"``) or the Poisson (``"poisson"``).
    Parameters are estimated by EM (a generalised EM for the NB: each M-step is
    a safeguarded Newton step, so the log-likelihood never decreases). The
    one-component model is fitted too, for model selection:
    :math:`\mathrm{BIC}_K = -2\ell_K + (Kp + K - 1)\log n` (p = 2 for NB, 1 for
    Poisson), :math:`\Delta\mathrm{BIC} = \mathrm{BIC}_1 - \mathrm{BIC}_K`,
    :math:`\mathrm{LRT} = 2(\ell_K - \ell_1)`.

    A gene is called **bimodal** when ``delta_bic > bic_threshold``, every
    component weight is at least ``min_weight``, the K-component fit converged and
    no component is degenerate (a point mass at zero, or two equal components; see
    ``scmix._core.stats.selection.degenerate_components``).
    With ``size_factors`` as offsets, a gene whose counts are bimodal only
    because the size factors are is *not* called bimodal.

    Parameters
    ----------
    adata
        Cells x genes, raw counts in ``X`` or ``layer`` (dense or sparse).
    n_components
        K >= 1.
    family
        ``"nb"`` (negative binomial) or ``"poisson"``.
    covariates
        ``.obs`` columns whose effects on the mean are shared by the components of a
        gene: :math:`m_{ijk} = s_i \exp(z_i^\top\gamma_j)\mu_{jk}` (flexmix's
        ``FLXMRglmfix(fixed = ~ z)``), so that a gene that shifts between batches but
        is unimodal within each is not called bimodal. A categorical column (category,
        string or boolean) enters as indicators of its levels against the first
        (reference) level; a numeric column is used as given (not centred or scaled:
        its coefficient is the change of the log mean per unit). ``mu_jk`` are then
        the means at the reference levels and zero. Fitted by a generalised EM with
        Newton M-steps and a Newton finish on the marginal likelihood, from ``n_init``
        deterministic splits (see :mod:`scmix._core.em.covariates`); the
        one-component fit is the count GLM (glmGamPoi's ``glm_gp`` without its
        Cox-Reid adjustment). Both BICs count the covariate effects. With
        ``n_bootstrap``, the replicates are drawn from the one-component GLM (see
        ``n_bootstrap``). Not yet combined with ``shared`` or ``init``. About twice
        the time of the fit without covariates (genes split over ``n_jobs`` threads).
    {inputs}
    {fit_options}
    bic_threshold, min_weight
        The bimodality call (defaults: 10, "very strong" evidence on the Kass and
        Raftery scale; 0.05).
    call, padj_threshold
        ``"bic"`` (default): a gene is bimodal when ``delta_bic > bic_threshold``;
        ``"padj"`` (needs ``pvalues``): when ``{key}_lrt_padj <= padj_threshold``
        (default 0.05, the false discovery rate of the calls). Both also need every
        weight at least ``min_weight``, convergence and no degenerate component.
    key_added
        Prefix of the outputs.
    store_responsibilities
        ``True``, ``False`` or ``"auto"``: store the responsibilities as ``.layers``
        (see Returns) when their K - 1 float32 layers of n_obs x n_vars take at most
        ``RESPONSIBILITIES_AUTO_LIMIT`` = 512 MiB (a warning says so when they do not;
        fitting a subset ``adata[:, genes].copy()`` makes them smaller).
    keep_trace
        Keep each gene's log-likelihood at every point of its (best start's) EM
        path, the non-decreasing sequence of EM and accepted SQUAREM points, in
        ``.uns[key]["trace"]``: shape (points, n_fitted_genes), NaN after a gene stopped.
    memory_budget
        Bytes of working memory of the gene chunks being fitted (default 256 MiB,
        shared by the threads), from which the chunk size is chosen when
        ``chunk_size`` is not given. Peak memory is this plus the inputs and outputs
        (and the responsibilities when stored): it does not grow with the number of
        genes.
    n_jobs
        Threads that fit gene chunks at once; ``-1``: one per core this process may
        use; ``None``: ``scanpy.settings.n_jobs`` when scanpy is imported and it was
        set to something other than its default 1, else one per core. Results do not
        depend on it.
    pvalues
        Calibrated p-values of the LRT of K against one component, written to
        ``{key}_lrt_pvalue`` and ``{key}_lrt_padj`` (Benjamini-Hochberg); K > 1 only.
        ``"bootstrap"``: the exact parametric bootstrap of each gene (below; B fits per
        gene). ``"fast"``: null replicates simulated once on a grid of means and
        dispersions that the genes share (``n_bootstrap`` per node, default 39), each
        gene compared with the replicates whose fitted one-component model is close to
        its own, with an exponential tail beyond them
        (:mod:`scmix._core.stats.null_grid`, where the method and its validation are
        described). Its cost is bounded by the grid (about 100 nodes x B fits), not by
        the number of genes: small against the fit of thousands of genes, larger than
        the bootstrap for a few dozen. A gene's p-value depends on its own counts, the
        size factors, the options and ``random_state``, not on the other genes. Not
        yet with ``covariates``. None: no p-values, unless ``n_bootstrap`` is set.
    n_bootstrap
        Replicates B of the parametric bootstrap of the LRT (0: none, or the method's
        default with ``pvalues``: 199 for the bootstrap; K > 1 only).
        Each gene's counts are simulated B times from its fitted one-component model
        with the cells' size factors, both models are refitted with the same
        settings, and :math:`p = (1 + \#\{\mathrm{LRT}^{(b)} \ge \mathrm{LRT}\})/(B + 1)`
        (McLachlan 1987); the chi-square reference is not valid for mixtures. With
        ``covariates`` the replicates come from the gene's one-component GLM,
        :math:`x_{ij} \sim f(s_i \mu_j \exp(z_i^\top\beta_j), \theta_j)` (the
        ``{key}_single_mean``, ``{key}_single_coef_*`` and ``{key}_single_dispersion``
        written), and both refits (the GLM and the K-component mixture) take the
        covariates. A replicate's LRT within 1e-6 (relative) of the observed one
        counts as reaching it. Costs B more fits of the selected genes (vectorised:
        replicates are extra rows). The smallest possible p-value is 1 / (B + 1);
        each gene's replicates come from a random stream of its own (seeded by
        ``random_state`` and its name), so its p-value does not depend on the other
        genes fitted.
    bootstrap_early_stop
        h > 0: replicates are drawn in rounds of h, a gene stops once h of them
        reached its LRT and gets the Besag-Clifford p-value e / L (e >= h of the L
        replicates drawn reached it): valid, and far cheaper when most genes are
        unremarkable, but with atoms instead of a uniform null distribution. 0
        (default): every gene uses all B replicates.
    shared
        Cell-level mixture: one latent class per cell shared by all the selected
        genes, :math:`p(x_{i\cdot}) = \sum_k \pi_k \prod_j f(x_{ij} \mid s_i\mu_{jk}, \theta_{jk})`
        (the E-step sums the genes' log-likelihoods). Answers "which cells are in
        the low-capture mode?". Writes the per-gene ``{key}_mean_{k}``,
        ``{key}_dispersion_{k}``, the shared weights in every ``{key}_weight_{k}``,
        the one-component ``{key}_single_*`` and ``{key}_loglik_1``;
        ``.obsm["{key}_responsibilities"]`` of shape (n_obs, K) (no layers);
        ``.obs["{key}_component"]`` (categorical, most probable class); and in
        ``.uns[key]`` the totals ``loglik``, ``loglik_1``, ``bic``, ``bic_1``,
        ``delta_bic``, ``lrt``, ``converged``, ``n_iter``, ``weights``. Classes
        are ordered by the mean over genes of log mu. Genes without counts are skipped.
    init
        A key of ``.obsm`` holding per-cell probabilities (n_obs, K), e.g.
        ``"size_factor_modes"`` after :func:`scmix.tl.size_factor_modes`: one more
        start of every gene from these responsibilities, the natural start when the
        bimodality comes from the size factors. With ``n_init=0`` it replaces the
        label-based starts (the split of the one-component fit stays).
    progress
        Show a progress bar (tqdm) over the fitted genes, advanced chunk by chunk.
    copy
        Work on and return a copy instead of writing to ``adata``.

    Returns
    -------
    ``None`` (or the annotated copy), with in ``.var`` (K components by increasing mean):

    ``{key}_mean_{k}``, ``{key}_dispersion_{k}``, ``{key}_weight_{k}``
        :math:`\mu_{jk}` per unit size factor, :math:`\phi_{jk} = 1/\theta_{jk}`
        (0 for Poisson or Poisson-like), :math:`\pi_{jk}`.
    ``{key}_single_mean``, ``{key}_single_dispersion``
        The one-component fit.
    ``{key}_loglik``, ``{key}_loglik_1``, ``{key}_bic``, ``{key}_bic_1``
        Log-likelihood and BIC of the K- and of the one-component fit.
    ``{key}_delta_bic``, ``{key}_lrt``
        BIC_1 - BIC_K and 2 (loglik - loglik_1).
    ``{key}_lrt_pvalue``, ``{key}_lrt_padj``
        With ``pvalues`` (or ``n_bootstrap``): the p-value of the LRT and its
        Benjamini-Hochberg adjustment over the fitted genes.
    ``{key}_bimodal``, ``{key}_converged``, ``{key}_n_iter``
        The call and diagnostics (genes without any count: not converged, 0 iterations).

    ``.layers["{key}_responsibility_{k}"]`` for k = 1 .. K-1 (stored as
    ``store_responsibilities`` says): float32 cells x genes, each cell's posterior
    probability :math:`r_{ijk}` of component k of gene j, NaN for genes not fitted.
    For K = 2, ``"{key}_responsibility_1"`` is the probability of the upper
    component; component 0's is one minus the sum of the others (read all K with
    :func:`scmix.get.responsibilities`). Layers follow cell and gene subsets, and
    scanpy reads them: ``sc.pl.umap(adata, color=gene, layer="scmix_responsibility_1")``.
    ``.obs["{key}_size_factors"]``: the size factors used, when they were given as an
    array or Series (a ``.obs`` key is recorded in ``params`` instead).
    With ``covariates``: ``{key}_coef_{column}`` (the K-component fit) and
    ``{key}_single_coef_{column}`` (the one-component GLM) in ``.var`` for each design
    column (``{column}_{level}`` for indicators), and ``covariates``,
    ``design_columns``, ``reference_levels`` in ``.uns[key]["params"]``.
    ``.uns[key]``: ``params`` (every argument), ``var_names`` (the fitted genes),
    ``n_obs`` (cells in the fit), ``n_components``, ``family``, ``version``, the
    ``var_columns``, ``obs_columns`` and ``layers`` written.
    Nothing is written unless the whole fit succeeds; a refit under the same key
    replaces every column the earlier fit wrote (found by exact name, even when
    ``.uns`` was lost). Input problems raise :class:`scmix.InputError` (a
    ``ValueError``; :class:`scmix.InputKeyError` for a missing key, also a
    ``KeyError``) naming the argument, before anything is computed.
    """
    check_adata(adata)
    fam = get_family(family)
    validation.check_key(key_added)
    n_jobs = default_n_jobs(n_jobs)
    if not (
        isinstance(store_responsibilities, (bool, np.bool_))
        or (isinstance(store_responsibilities, str) and store_responsibilities == "auto")
    ):
        raise InputError(
            f"store_responsibilities must be True, False or 'auto', got {store_responsibilities!r}."
        )
    # with init, n_init=0 leaves the given start (and the split) alone
    settings = validation.check_fit_options(
        n_init=n_init,
        max_iter=max_iter,
        tol=tol,
        random_state=random_state,
        chunk_size=chunk_size,
        memory_budget=memory_budget,
        n_jobs=n_jobs,
        allow_no_start=init is not None,
    )
    settings = replace(settings, keep_trace=keep_trace)
    n_init = settings.n_init
    n_components = validation.check_n_components(n_components, adata.n_obs)
    bic_threshold = validation.check_real(bic_threshold, "bic_threshold")
    min_weight = validation.check_real(min_weight, "min_weight", minimum=0.0, maximum=1.0)
    n_bootstrap = validation.check_int(n_bootstrap, "n_bootstrap", minimum=0)
    bootstrap_early_stop = validation.check_int(
        bootstrap_early_stop, "bootstrap_early_stop", minimum=0
    )
    pvalues, n_bootstrap = check_pvalues(
        pvalues,
        n_bootstrap,
        n_components=n_components,
        shared=shared,
        early_stop=bootstrap_early_stop,
    )

    call, padj_threshold = check_call(call, padj_threshold, pvalues)
    design = covariate_design(adata, covariates)
    if design is not None and (shared or init is not None or pvalues == "fast"):
        raise InputError(
            "covariates cannot be combined with shared=True, init or pvalues='fast' yet: "
            "fit with covariates alone (pvalues='bootstrap' works with them)."
        )
    X, selected, sf, check = fit_inputs(adata, layer, mask_var, size_factors)
    start_resp = _start_responsibilities(adata, init, n_components)
    params = dict(
        n_components=n_components,
        family=family,
        size_factors=describe_size_factors(size_factors),
        covariates=covariate_names(covariates) or None,
        layer=layer,
        mask_var=describe_mask(mask_var),
        n_init=n_init,
        max_iter=settings.max_iter,
        tol=settings.tol,
        random_state=settings.random_state,
        bic_threshold=bic_threshold,
        min_weight=min_weight,
        call=call,
        padj_threshold=padj_threshold,
        key_added=key_added,
        store_responsibilities=store_responsibilities,
        keep_trace=keep_trace,
        chunk_size=chunk_size,
        memory_budget=memory_budget,
        n_jobs=n_jobs,
        pvalues=pvalues,
        n_bootstrap=n_bootstrap,
        bootstrap_early_stop=bootstrap_early_stop,
        shared=shared,
        init=init,
        progress=progress,
    )
    target = adata.copy() if copy else adata
    sf_obs = _size_factors_obs(adata, key_added, size_factors, sf)
    start = info(
        f"fitting {'a cell-level ' if shared else ''}K={n_components} {fam.name} "
        f"mixture{'' if shared else 's'} to {selected.size} genes"
    )
    if design is not None:
        options = dict(
            n_init=n_init,
            max_iter=settings.max_iter,
            tol=settings.tol,
            store=_should_store(store_responsibilities, adata.n_obs, adata.n_vars, n_components),
            bic_threshold=bic_threshold,
            min_weight=min_weight,
            n_jobs=n_jobs,
            obs=sf_obs,
            n_bootstrap=n_bootstrap,
            bootstrap_early_stop=bootstrap_early_stop,
            random_state=settings.random_state,
            progress=partial(progress_bar, progress),
        )
        fit_with_covariates(
            target,
            in_memory(X, check),
            selected,
            sf,
            design,
            family=fam,
            n_components=n_components,
            options=options,
            params=params,
            key=key_added,
        )
        _log_added(start, target, key_added)
        return target if copy else None
    if shared:
        fit_cell_level(
            target,
            in_memory(X, check),
            selected,
            sf,
            family=fam,
            n_components=n_components,
            settings=settings,
            params=params,
            key=key_added,
            obs=sf_obs,
        )
        _log_added(start, target, key_added)
        return target if copy else None

    store = _should_store(store_responsibilities, adata.n_obs, adata.n_vars, n_components)

    with progress_bar(progress, selected.size) as advance:
        fit = fit_matrix(
            X,
            sf,
            family=fam,
            n_components=n_components,
            settings=settings,
            store_resp=store,
            progress=advance,
            start_resp=start_resp,
            check=check,
        )

    extra = {}
    if pvalues is not None:
        with progress_bar(progress, int(fit.fitted.sum()), pvalues) as advance:
            extra = lrt_pvalues(
                pvalues,
                fit,
                sf,
                adata.var_names[selected],
                n_replicates=n_bootstrap,
                early_stop=bootstrap_early_stop,
                settings=settings,
                progress=advance,
            )

    write_fit(target, key_added, selected, fit, params, extra=extra, obs=sf_obs)
    _log_added(start, target, key_added)
    return target if copy else None


def _size_factors_obs(adata: AnnData, key: str, size_factors, values) -> pd.DataFrame:
    """The ``.obs`` column ``{key}_size_factors`` when the size factors came as an array
    or Series (so that the fit's readers find them after a write and read), or when
    they are that very column (a refit must not drop its own input)."""
    column = size_factors_column(key)
    frame = pd.DataFrame(index=adata.obs_names)
    if size_factors is not None and (not isinstance(size_factors, str) or size_factors == column):
        frame[column] = np.asarray(values, dtype=np.float64)
    return frame


def _log_added(start, adata: AnnData, key: str) -> None:
    """scanpy's closing lines: the time taken and what was written where."""
    info("    finished", time=start)
    written = adata.uns[key]
    items = [(f"'{key}_*' columns", "adata.var"), (f"'{key}'", "adata.uns")]
    items += [(f"'{name}'", "adata.layers") for name in written["layers"]]
    items += [(f"'{name}'", "adata.obs") for name in written["obs_columns"]]
    if f"{key}_responsibilities" in adata.obsm:
        items.append((f"'{key}_responsibilities'", "adata.obsm"))
    added(items)


def _start_responsibilities(adata, init, n_components):
    """(K, n_obs) starting responsibilities from ``.obsm[init]``, or None."""
    if init is None:
        return None
    if not isinstance(init, str) or init not in adata.obsm:
        raise InputKeyError(
            f"init {init!r} is not a key of adata.obsm (keys: {list(adata.obsm.keys())}); "
            "run scmix.tl.size_factor_modes first, or pass init=None."
        )
    probabilities = np.asarray(adata.obsm[init], dtype=np.float64)
    if probabilities.shape != (adata.n_obs, n_components):
        raise InputError(
            f"adata.obsm[{init!r}] has shape {probabilities.shape}; init needs "
            f"(n_obs, n_components) = {(adata.n_obs, n_components)}."
        )
    if not (np.isfinite(probabilities).all() and (probabilities >= 0).all()):
        raise InputError(f"adata.obsm[{init!r}] must hold finite non-negative probabilities.")
    total = probabilities.sum(axis=1, keepdims=True)
    return np.ascontiguousarray((probabilities / np.where(total > 0, total, 1.0)).T)


def _should_store(option, n_obs: int, n_vars: int, n_components: int) -> bool:
    """Store the responsibilities? (K = 1 has none to store: every cell's is 1.)"""
    if option != "auto" or n_components == 1:
        return bool(option) and n_components > 1
    size = 4 * n_obs * n_vars * (n_components - 1)
    if size <= RESPONSIBILITIES_AUTO_LIMIT:
        return True
    warn(
        f"Not storing responsibilities: {n_components - 1} layer(s) of {n_obs} cells x "
        f"{n_vars} genes would take {size / 2**30:.1f} GiB (limit "
        f"{RESPONSIBILITIES_AUTO_LIMIT / 2**30:.1f} GiB for 'auto'); pass "
        "store_responsibilities=True to keep them anyway, or fit a subset "
        "adata[:, genes].copy()."
    )
    return False
