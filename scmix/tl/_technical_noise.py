"""Genes more variable than the spike-ins' technical noise: the trend of technical
dispersion against mean, fitted on the spike-ins, and a one-sided test of every other
gene against it, written to ``.var``, ``.obs`` and ``.uns``."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData

from .. import __version__
from .._core import validation
from .._core.errors import InputError
from .._core.families import get_family
from .._core.fit.chunks import iter_chunks
from .._core.fit.matrix import fit_matrix
from .._core.numerics.jit import worker_count
from .._core.settings import FitSettings
from .._core.stats import selection
from .._core.stats import technical_noise as engine
from .._inputs import check_adata, describe_size_factors, gene_columns, get_size_factors
from .._scanpy import added, default_n_jobs, info
from .._schema import TECHNICAL_NOISE_SCHEMA
from ._spike_in_qc import _spike_flags
from ._write import replace_results

#: (cells x genes) entries per block of the null fit (about 32 MiB dense).
BLOCK_ENTRIES = 4_000_000


def technical_noise(
    adata: AnnData,
    *,
    spike_in: str = "spike_in",
    size_factors: str | np.ndarray | pd.Series | None = "size_factors",
    spike_in_size_factors: str | np.ndarray | pd.Series | None = None,
    layer: str | None = None,
    min_mean: float = 1.0,
    scatter: bool = True,
    fdr: float = 0.05,
    max_iter: int = 1000,
    tol: float = 1e-6,
    n_jobs: int | None = None,
    key_added: str = "noise",
    copy: bool = False,
) -> AnnData | None:
    r"""Genes whose variation exceeds the technical noise measured by the spike-ins.

    1. Each spike-in j is fitted by a negative binomial with size-factor offsets,
       :math:`x_{ij} \sim \mathrm{NB}(s^{\mathrm{spike}}_i \mu_j, \phi_j)`, with the
       spike-in size factors.
    2. The technical dispersion :math:`\phi_{\mathrm{tech}}(\mu) = a_0 + a_1/\mu`
       (Brennecke et al. 2013's :math:`\mathrm{CV}^2 = a_1/\mu + a_0`, in NB-dispersion
       terms) is fitted to the spike-ins with mean :math:`\hat\mu_j \ge` ``min_mean`` by
       a gamma GLM with identity link (:mod:`scmix._core.stats.technical_noise`).
    3. Real spike-ins scatter around the trend more than NB sampling explains
       (by a factor of 1.4-1.65 in the dispersion on Svensson and Zeisel). Their
       scatter :math:`\tau`, the SD of :math:`\log\phi` around the trend beyond
       sampling, is estimated from each spike-in compared with the trend of the others
       (``scatter=True``; a robust median equation).
    4. Each other gene is fitted by the NB with the gene size factors :math:`s_i` and
       tested against "its dispersion is technical": the one-sided likelihood-ratio
       statistic of :math:`\phi_j > \phi_{\mathrm{tech}}(\mu_j)` (null fit with
       :math:`\phi = \phi_{\mathrm{tech}}(\mu)` and :math:`\mu` profiled), as a signed
       root :math:`r_j = \pm\sqrt{\Lambda_j}`, is referred to the spike-ins' spread:
       with :math:`\Delta_j = \log(\hat\phi_j / \phi_{\mathrm{tech}}(\hat\mu_j))` and
       its likelihood-ratio standard error :math:`\mathrm{se}_j = |\Delta_j / r_j|`,
       :math:`z_j = \Delta_j / \sqrt{\mathrm{se}_j^2 + \tau^2}` and
       :math:`p_j = 1 - \Phi(z_j)`. With few counts (sampling dominates) this is the
       LRT; with many it compares :math:`\Delta_j` with :math:`\tau`.
       Benjamini-Hochberg over the tested genes; ``variable`` is ``padj <= fdr``.

    Size factors. Spike-ins and genes are normalised separately, as in scran's
    ``modelGeneCV2WithSpikes``: spike-ins by the spike-in size factors (the same
    molecules went into every cell, so their totals measure each cell's capture and
    sequencing depth), genes by ``size_factors`` (library size or deconvolution factors:
    cells differ in RNA content, which the spike-in factors would leave in the genes'
    variance). Both are rescaled to mean 1 before fitting, so that :math:`\mu` is the
    mean count of an average cell for spike-ins and genes alike and one trend
    :math:`\phi_{\mathrm{tech}}(\mu)` applies to both; that transfer is the method's
    assumption. Passing the spike-in factors as ``size_factors`` too tests the genes'
    variation including differences in total RNA content between cells.

    Calibration: simulated genes drawn like the spike-ins (on the trend, with the same
    scatter) are called at the nominal rate, and real spike-ins tested against the
    trend and scatter of the others (``benchmarks/technical_noise_spike_in_loo.py``)
    too; with ``scatter=False`` (the trend as exact) 8-24% of real spike-ins are called
    at 0.05. The trend's coefficients are still treated as known, which matters only
    for genes whose mean lies beyond the spike-ins' range.

    Parameters
    ----------
    adata
        Counts (cells x genes) in ``X`` or ``layer``, non-negative integers.
    spike_in
        Boolean ``.var`` column flagging the spike-ins (e.g. from
        :func:`scmix.pp.flag_spike_ins`, or a scanpy ``qc_vars`` column).
    size_factors
        Size factors of the endogenous genes: a ``.obs`` key (default
        ``"size_factors"``, from :func:`scmix.pp.size_factors`), an array of length
        ``n_obs``, a Series aligned on ``obs_names``, or None (all ones).
    spike_in_size_factors
        Size factors of the spike-ins, given the same ways; None (default): each cell's
        spike-in total divided by the mean total (every cell must have a spike-in count).
    layer
        Layer holding the counts, or None for ``X``.
    min_mean
        Spike-ins with a fitted mean :math:`\hat\mu_j` below this (counts per average
        cell) are left out of the trend: their dispersion estimates are too noisy.
    scatter
        Refer each gene to the spike-ins' scatter around the trend (default). False
        tests against the trend as if exact (calibrated only when the spike-ins sit on
        it up to sampling, as in simulations).
    fdr
        Genes with ``padj <= fdr`` are called ``variable``.
    max_iter, tol
        Stopping rule of the NB fits (:func:`scmix.tl.fit_mixture`).
    n_jobs
        Threads of the NB fits and the tests.
    key_added
        Prefix of the columns and key of ``.uns``.
    copy
        Work on a copy and return it.

    Returns
    -------
    ``None`` (or the copy), with

    ``.var``
        ``{key}_mean`` (:math:`\hat\mu_j`), ``{key}_dispersion`` (:math:`\hat\phi_j`),
        ``{key}_technical_dispersion`` (:math:`\phi_{\mathrm{tech}}(\hat\mu_j)`) for
        every gene with a count (spike-ins included, with their own size factors);
        ``{key}_statistic`` (:math:`\Lambda_j`), ``{key}_z`` (:math:`z_j`),
        ``{key}_pvalue``, ``{key}_padj`` for
        the tested genes (NaN for spike-ins and genes without counts);
        ``{key}_variable`` (bool) and ``{key}_trend_spike_in`` (the spike-ins the trend
        was fitted on).
    ``.obs``
        ``{key}_size_factors`` and ``{key}_spike_in_size_factors``: the factors used,
        rescaled to mean 1.
    ``.uns[key]``
        ``trend`` (``a0``, ``a1``, ``scatter_sd`` (:math:`\tau`), ``n_spike_ins_used``,
        ``n_iter``, ``converged``, ``formula``), ``n_tested``, ``n_variable``,
        ``size_factor_scale`` and ``spike_in_size_factor_scale`` (the means divided
        out), ``params``, ``version``.

    Raises
    ------
    InputKeyError
        ``spike_in``, ``layer`` or a size-factor key is missing.
    InputError
        No spike-in, no endogenous gene, fewer than two spike-ins usable for the trend,
        a cell without spike-in counts (default spike-in factors), malformed options;
        ``adata`` is left as it was.
    """
    check_adata(adata)
    validation.check_key(key_added)
    validation.check_key(spike_in, "spike_in")
    min_mean = validation.check_real(min_mean, "min_mean", minimum=0.0)
    fdr = validation.check_real(fdr, "fdr", minimum=0.0, maximum=1.0)
    settings = validation.check_fit_options(
        n_init=1, max_iter=max_iter, tol=tol, random_state=0, n_jobs=default_n_jobs(n_jobs)
    )
    flags = _spike_flags(adata, spike_in)
    spikes, genes = np.flatnonzero(flags), np.flatnonzero(~flags)
    if genes.size == 0:
        raise InputError(f"adata.var[{spike_in!r}] flags every gene: nothing to test.")
    gene_sf = get_size_factors(adata, size_factors)
    spike_cols = gene_columns(adata, layer, spikes)
    if spike_in_size_factors is None:
        spike_sf = spike_cols.cell_totals()
        if (spike_sf <= 0).any():
            raise InputError(
                f"{int((spike_sf <= 0).sum())} cells have no spike-in count, so the default "
                "spike-in size factors (spike-in totals) are 0: remove those cells "
                "(scmix.tl.spike_in_qc flags them) or pass spike_in_size_factors."
            )
    else:
        spike_sf = get_size_factors(adata, spike_in_size_factors)
    gene_scale, spike_scale = float(gene_sf.mean()), float(spike_sf.mean())
    gene_sf, spike_sf = gene_sf / gene_scale, spike_sf / spike_scale
    gene_cols = gene_columns(adata, layer, genes)

    start = info(f"technical noise: trend on {spikes.size} spike-ins, testing {genes.size} genes")
    spike_fit = _fit(spike_cols, spike_sf, settings)
    spike_mean, spike_disp = spike_fit.params["mu"][:, 0], spike_fit.dispersion[:, 0]
    used = spike_fit.fitted & (spike_mean >= min_mean)
    if used.sum() < 3 or not (spike_disp[used] > 0).any():
        raise InputError(
            f"only {int(used.sum())} spike-ins have a fitted mean of at least min_mean="
            f"{min_mean} (and at least one must be over-dispersed): the trend needs three. "
            "Lower min_mean or check the spike-in flags."
        )
    rows = np.flatnonzero(used)
    if scatter:
        trend = engine.spike_in_scatter(
            engine.Columns.from_matrix(spike_cols.raw_block(rows)),
            spike_sf,
            (spike_mean[rows], spike_disp[rows], spike_fit.loglik[rows]),
        )
    else:
        trend = engine.fit_trend(spike_mean[rows], spike_disp[rows])

    gene_fit = _fit(gene_cols, gene_sf, settings)
    mean, disp = gene_fit.params["mu"][:, 0], gene_fit.dispersion[:, 0]
    tested = np.flatnonzero(gene_fit.fitted)
    statistic, z, pvalue = (np.full(genes.size, np.nan) for _ in range(3))
    block_size = max(1, BLOCK_ENTRIES // max(adata.n_obs, 1))
    for chunk in iter_chunks(tested.size, block_size):
        rows = tested[chunk]
        result = engine.noise_test(
            engine.Columns.from_matrix(gene_cols.raw_block(rows)),
            gene_sf,
            (mean[rows], disp[rows], gene_fit.loglik[rows]),
            trend,
            worker_count(settings.n_jobs),
        )
        statistic[rows], z[rows], pvalue[rows] = result.statistic, result.z, result.pvalue
    padj = selection.benjamini_hochberg(pvalue)

    n_vars = adata.n_vars
    columns = {
        "mean": np.full(n_vars, np.nan),
        "dispersion": np.full(n_vars, np.nan),
        "technical_dispersion": np.full(n_vars, np.nan),
        "statistic": np.full(n_vars, np.nan),
        "z": np.full(n_vars, np.nan),
        "pvalue": np.full(n_vars, np.nan),
        "padj": np.full(n_vars, np.nan),
        "variable": np.zeros(n_vars, dtype=bool),
        "trend_spike_in": np.zeros(n_vars, dtype=bool),
    }
    columns["mean"][spikes], columns["mean"][genes] = spike_mean, mean
    columns["dispersion"][spikes], columns["dispersion"][genes] = spike_disp, disp
    columns["technical_dispersion"][spikes] = trend(spike_mean)
    columns["technical_dispersion"][genes] = trend(mean)
    columns["statistic"][genes], columns["z"][genes] = statistic, z
    columns["pvalue"][genes] = pvalue
    columns["padj"][genes] = padj
    columns["variable"][genes] = padj <= fdr  # NaN compares False
    columns["trend_spike_in"][spikes] = used
    uns = {
        "trend": trend.summary(),
        "n_tested": int(tested.size),
        "n_variable": int(columns["variable"].sum()),
        "size_factor_scale": gene_scale,
        "spike_in_size_factor_scale": spike_scale,
        "params": dict(
            spike_in=spike_in,
            size_factors=describe_size_factors(size_factors),
            spike_in_size_factors="spike-in totals"
            if spike_in_size_factors is None
            else describe_size_factors(spike_in_size_factors),
            layer=layer,
            min_mean=min_mean,
            scatter=bool(scatter),
            fdr=fdr,
            max_iter=settings.max_iter,
            tol=settings.tol,
            key_added=key_added,
        ),
        "version": __version__,
    }
    target = adata.copy() if copy else adata
    new_var = pd.DataFrame(
        {f"{key_added}_{name}": values for name, values in columns.items()},
        index=target.var_names,
    )
    new_obs = pd.DataFrame(
        {
            f"{key_added}_size_factors": gene_sf,
            f"{key_added}_spike_in_size_factors": spike_sf,
        },
        index=target.obs_names,
    )
    replace_results(target, key_added, new_var, uns, schema=TECHNICAL_NOISE_SCHEMA, obs=new_obs)
    info("    finished", time=start)
    added(
        [
            (f"'{key_added}_*' per-gene columns", "adata.var"),
            (f"'{key_added}_*size_factors'", "adata.obs"),
            (f"'{key_added}'", "adata.uns"),
        ]
    )
    return target if copy else None


def _fit(columns, size_factors: np.ndarray, settings: FitSettings):
    """The one-component NB fit of every column (genes without counts: ``fitted=False``,
    with the engine's warning)."""
    return fit_matrix(
        columns,
        size_factors,
        family=get_family("nb"),
        n_components=1,
        settings=settings,
        store_resp=False,
    )
