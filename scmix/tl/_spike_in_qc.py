"""Spike-in quality control per cell: totals, fractions, capture efficiency, its modes,
outliers and the detection limit, written to ``.obs``, ``.var`` and ``.uns``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from .. import __version__
from .._core import validation
from .._core.errors import InputError, InputKeyError
from .._core.stats import spike_qc
from .._inputs import bool_column, check_adata, gene_columns
from .._scanpy import added, info
from .._schema import SPIKE_QC_SCHEMA
from ._write import replace_results, var_frame

#: The per-cell ``.obs`` columns, without the ``{key}_`` prefix.
OBS_COLUMNS = (
    "total",
    "fraction",
    "capture_efficiency",
    "mode",
    "low_capture",
    "high_fraction",
    "outlier",
    "low_capture_mode",
)


def spike_in_qc(
    adata: AnnData,
    *,
    spike_in: str = "spike_in",
    layer: str | None = None,
    expected_molecules: str | np.ndarray | pd.Series | None = None,
    expected_scale: float = 1.0,
    nmads: float = 3.0,
    mode_components: int | Sequence[int] = (1, 2, 3),
    min_mode_weight: float = 0.05,
    random_state: int | None = 0,
    key_added: str = "spike_in_qc",
    copy: bool = False,
) -> AnnData | None:
    r"""Spike-in quality control per cell, and the detection limit of the spike-ins.

    With counts :math:`x_{ij}`, the spike-ins S (``.var[spike_in]``) and, for the
    spike-ins E whose expected input is known, :math:`e_j` molecules put into each cell:

    - spike-in total :math:`t_i = \sum_{j \in S} x_{ij}`;
    - spike-in fraction :math:`f_i = t_i / \sum_j x_{ij}` (the sum over every gene,
      spike-ins included; scanpy's ``pct_counts_{qc_var}`` is :math:`100 f_i`; NaN for a
      cell without counts);
    - capture efficiency :math:`c_i = \sum_{j \in E} x_{ij} / \sum_{j \in E} e_j`: the
      fraction of the spike-in molecules put into the cell that were counted;
    - modes of the capture: the cells' log capture :math:`\log c_i` (their log total
      :math:`\log t_i` without expected molecules) may have several modes, e.g. in the
      10x ERCC controls of Svensson 2017 (sample 20312) 30% of the droplets capture about
      a quarter as much as the rest. Bishop's variational Gaussian mixture (the
      engine of :func:`scmix.tl.size_factor_modes`) is fitted to the finite values for
      each K of ``mode_components`` and the K with the largest ELBO is kept. The modes
      are the maxima of its density (two components with one maximum, such as a skewed
      bulk, are one mode); each cell belongs to the mode between the neighbouring density
      minima; a mode holds at least ``min_mode_weight`` of the cells and at least 10
      cells (a smaller one is merged with its neighbour). The *main* mode is the highest
      maximum of the density;
    - outliers (scater's ``isOutlier`` rule within each mode, ``nmads`` = n): with
      :math:`\mathrm{MAD}(v) = 1.4826\, \operatorname{median}_i |v_i -
      \operatorname{median}(v)|`, mode k has the threshold :math:`T_k =
      \operatorname{median}_k(\log c) - n\,\mathrm{MAD}_k(\log c)` over its own cells.
      A cell has *low capture* when :math:`\log c_i < T_{\mathrm{low}} = \min_{k \le
      \mathrm{main}} T_k`: below the main mode and every mode under it, no mode accounts
      for it (modes above the main one, such as doublets, do not count). With one mode
      this is scater's rule on all cells; ``mode_components=1`` forces it. A cell has a
      *high fraction* when :math:`f_i > \operatorname{median}(f) + n\,\mathrm{MAD}(f)`
      over all cells (an empty or dying cell: little endogenous RNA). A cell with no
      spike-in count has :math:`\log t_i = -\infty` and low capture. ``outlier`` is
      either;
    - *low-capture mode*: :math:`T_{\mathrm{low}} \le \log c_i < T_{\mathrm{main}}`, a
      cell that captured less than the main mode's range but within that of a lower
      mode: one of a coherent group of cells that captured less, which a single MAD rule
      over all cells flags wholesale (on Svensson 20312 that rule flagged 359 of 2,000
      cells; now none is an outlier, and 750, those below 1,016 spike-in UMI, are in the
      low-capture mode, whose maximum is at 400 against the main mode's 1,749). It is
      set by the thresholds, so it also holds the cells of the main mode's lower flank
      below :math:`T_{\mathrm{main}}` (160 of the 750 in Svensson 20312) and leaves out
      a lower mode's cells above it; ``{key}_mode`` says in which mode's basin each cell
      lies. It is empty when
      the main mode is the lowest. Whether to keep these cells is the analyst's call;
      ``~(obs[f"{key}_outlier"] | obs[f"{key}_low_capture_mode"])`` keeps neither;
    - detection limit: the input :math:`e_{50}` at which a spike-in is detected
      (:math:`x_{ij} > 0`) in half of the cells, from the logistic regression
      :math:`P(x_{ij} > 0) = \operatorname{expit}(a + b \log_{10} e_j)` fitted by
      maximum likelihood over all cells and the spike-ins of E (Svensson et al. 2017,
      Nat Methods 14:381): :math:`e_{50} = 10^{-a/b}`. Its standard error (delta method)
      treats the spike-in, not the cell, as the unit of replication: the spike-ins
      scatter around the curve far more than binomially (Pearson :math:`X^2/(m-2)` = 83
      on Zeisel 2015), so the covariance of (a, b) is the robust HC3 sandwich over the m
      spike-ins, floored at the binomial one, and the 95% interval uses
      :math:`t_{m-2}` (formulas in ``scmix/_core/stats/spike_qc.py``;
      the binomial error, which counts every cell as an independent trial, is kept for
      comparison and is about 12 times smaller on Zeisel).

    Parameters
    ----------
    adata
        Counts (cells x genes) in ``X`` or ``layer``: non-negative integers.
    spike_in
        A boolean ``.var`` column flagging the spike-ins: ``"spike_in"`` from
        :func:`scmix.pp.flag_spike_ins`, or the column of scanpy's ``qc_vars``
        convention (e.g. ``adata.var["ercc"]`` for
        ``sc.pp.calculate_qc_metrics(adata, qc_vars=["ercc"])``).
    layer
        Layer holding the counts, or None for ``X``.
    expected_molecules
        The expected number of molecules of each spike-in put into each cell (the same
        in every cell), multiplied by ``expected_scale``. Accepted forms:

        - the name of a numeric ``.var`` column (e.g. ``"ercc_expected_molecules"`` of
          :func:`scmix.datasets.zeisel2015`); its values for the genes that are not
          spike-ins are ignored;
        - a 1-D array with one value per gene (``n_vars``, in ``var_names`` order) or
          one per spike-in (in the order of the flagged genes in ``.var``);
        - a pandas Series indexed by gene names (reindexed on the spike-ins' names;
          spike-ins it lacks count as unknown);
        - None: no capture efficiency and no detection limit.

        NaN marks a spike-in whose input is unknown: it is left out of E. Values must
        be positive otherwise. At least one spike-in must have a known input.
    expected_scale
        Factor turning ``expected_molecules`` into molecules per cell. For ERCC
        concentrations :math:`C_j` in attomoles/µl of the stock mix
        (``.var["ercc_mix1_attomoles_ul"]`` of the loaders), with V µl of the mix
        diluted by D (a fraction: 5e-5 for 1:20,000) added to each cell,
        :math:`e_j = C_j \cdot 10^{-18} \cdot 6.02214076 \times 10^{23} \cdot V D`
        molecules, so ``expected_scale = 602214.076 * V * D`` (602,214.076 molecules per
        attomole). The expected molecules shipped with Zeisel et al. 2015
        (``"ercc_expected_molecules"``) are Mix 1 with :math:`V D = 4.5 \times 10^{-7}`
        µl: ``expected_molecules="ercc_mix1_attomoles_ul",
        expected_scale=602214.076 * 4.5e-7`` reproduces them to a relative 2e-8 (the
        Avogadro constant they used, 6.0221409e23, is the older CODATA value).
    nmads
        n of the outlier rules.
    mode_components
        K of the Gaussian mixtures of the log capture (or log total) tried for its modes;
        the one with the largest ELBO is kept. ``1`` gives one mode: scater's rule on
        every cell.
    min_mode_weight
        Smallest fraction of the cells (with a finite log capture) that a mode holds.
    random_state
        Seed of the mixture's k-means++ starts.
    key_added
        Prefix of the columns and key of ``.uns``.
    copy
        Work on a copy and return it.

    Returns
    -------
    ``None`` (or the copy), with

    ``.obs``
        ``{key}_total`` (:math:`t_i`), ``{key}_fraction`` (:math:`f_i`),
        ``{key}_capture_efficiency`` (:math:`c_i`, with ``expected_molecules``),
        ``{key}_mode`` (categorical ``"0"`` ... ``"M-1"``, modes by increasing capture),
        ``{key}_low_capture``, ``{key}_high_fraction``, ``{key}_outlier`` and
        ``{key}_low_capture_mode`` (booleans).
    ``.var``
        For the spike-ins (NaN for other genes): ``{key}_mean_count`` (mean count per
        cell), ``{key}_detection_rate`` (fraction of cells with a count > 0) and, with
        ``expected_molecules``, ``{key}_expected_molecules`` (:math:`e_j`, scaled).
    ``.uns[key]``
        ``outlier_rules`` (per rule: metric, tail, nmads, median, MAD, threshold,
        n_outliers, a ``description``; for ``low_capture`` also ``mode``, the mode whose
        median and MAD give the threshold), ``modes`` (``metric``, ``n_modes``, ``main``,
        ``centres`` and ``boundaries`` on the capture (or total) scale, their logs
        ``log_centres`` and ``log_boundaries``, ``n_cells`` and ``weights`` per mode,
        ``medians``, ``mads`` and ``thresholds`` of each mode's rule on the log scale,
        ``min_cells``, and ``mixture``: the Gaussian mixture kept, ``n_components``,
        ``means``, ``sds``, ``weights``, ``elbo``, ``elbo_by_k``, ``converged``,
        ``n_iter``), ``n_low_capture_mode``, ``low_capture_mode_rule`` (in words),
        ``detection`` (``detection_limit`` :math:`e_{50}`, ``log10_detection_limit_se``
        (robust), ``detection_limit_ci`` (95%, molecules),
        ``log10_detection_limit_se_binomial``, ``dispersion`` (Pearson
        :math:`X^2/(m-2)`), ``df`` (m - 2), ``intercept`` a, ``slope`` b, ``converged``,
        ``n_iter``; with ``expected_molecules``), ``expected_total``
        :math:`\sum_{j \in E} e_j`, ``median_capture_efficiency``, ``n_spike_ins``,
        ``n_with_expected``, ``spike_ins`` (names), ``n_outliers``, ``params`` and
        ``version``.

    Raises
    ------
    InputKeyError
        ``spike_in``, ``layer`` or an ``expected_molecules`` column is missing.
    InputError
        No spike-in is flagged, a flag or input is malformed; ``adata`` is left as it was.
    """
    check_adata(adata)
    validation.check_key(key_added)
    validation.check_key(spike_in, "spike_in")
    nmads = validation.check_real(nmads, "nmads", minimum=0.0)
    expected_scale = validation.check_real(expected_scale, "expected_scale", minimum=0.0)
    if expected_scale == 0:
        raise InputError("expected_scale must be positive, got 0.")
    mode_components = _mode_components(mode_components)
    min_mode_weight = validation.check_real(
        min_mode_weight, "min_mode_weight", minimum=0.0, maximum=0.5
    )
    random_state = validation.check_random_state(random_state)
    flags = _spike_flags(adata, spike_in)
    spikes = np.flatnonzero(flags)
    expected = None
    if expected_molecules is not None:
        expected = _expected(adata, expected_molecules, spikes) * expected_scale
    columns = gene_columns(adata, layer, np.arange(adata.n_vars))
    block = columns.raw_block(spikes)
    counts = block.toarray() if sparse.issparse(block) else np.asarray(block)
    counts = counts.astype(np.float64)

    start = info(f"spike-in QC of {adata.n_obs} cells on {spikes.size} spike-ins")
    library = columns.cell_totals()
    known = None if expected is None else np.isfinite(expected)
    metrics = spike_qc.cell_metrics(
        counts.sum(axis=1),
        library,
        None if known is None else counts[:, known].sum(axis=1),
        None if known is None else float(expected[known].sum()),
    )
    with np.errstate(divide="ignore"):  # a cell without spike-in counts: log 0 = -inf
        low_metric, metric_name = np.log(metrics.total), "log spike-in total"
        if metrics.capture is not None:
            low_metric, metric_name = np.log(metrics.capture), "log capture efficiency"
    modes = spike_qc.capture_modes(
        low_metric, mode_components, min_weight=min_mode_weight, random_state=random_state
    )
    n_modes, main = modes.modes.n_modes, modes.modes.main
    rules = spike_qc.mode_mad_outliers(
        low_metric, modes.labels, n_modes, main, nmads=nmads, metric=metric_name
    )
    low, low_mode = rules.low, rules.low_mode
    high = spike_qc.mad_outliers(
        metrics.fraction, nmads=nmads, tail="higher", metric="spike-in fraction"
    )
    outlier = low.outlier | high.outlier
    n_detected = (counts > 0).sum(axis=0)
    var_columns = {
        f"{key_added}_mean_count": counts.mean(axis=0),
        f"{key_added}_detection_rate": n_detected / adata.n_obs,
    }
    uns: dict = {
        "outlier_rules": {
            "low_capture": {**low.summary(), "description": LOW_RULE},
            "high_fraction": {**high.summary(), "description": HIGH_RULE},
        },
        "modes": _modes_summary(modes, rules.per_mode, metric_name),
        "n_outliers": int(outlier.sum()),
        "n_low_capture_mode": int(low_mode.sum()),
        "low_capture_mode_rule": LOW_MODE_RULE,
        "n_spike_ins": int(spikes.size),
        "spike_ins": np.asarray(adata.var_names[spikes], dtype=object),
        "median_spike_in_total": float(np.median(metrics.total)),
    }
    obs = {
        f"{key_added}_total": metrics.total,
        f"{key_added}_fraction": metrics.fraction,
    }
    mode_names = [str(k) for k in range(n_modes)]
    mode_column = pd.Categorical.from_codes(modes.labels, categories=mode_names)
    if expected is not None:
        var_columns[f"{key_added}_expected_molecules"] = expected
        fit = spike_qc.detection_limit(expected[known], n_detected[known], adata.n_obs)
        obs[f"{key_added}_capture_efficiency"] = metrics.capture
        uns.update(
            detection=fit.summary(),
            expected_total=metrics.expected_total,
            n_with_expected=int(known.sum()),
            median_capture_efficiency=float(np.median(metrics.capture)),
        )
    obs[f"{key_added}_mode"] = mode_column
    obs[f"{key_added}_low_capture"] = low.outlier
    obs[f"{key_added}_high_fraction"] = high.outlier
    obs[f"{key_added}_outlier"] = outlier
    obs[f"{key_added}_low_capture_mode"] = low_mode
    uns["params"] = dict(
        spike_in=spike_in,
        layer=layer,
        expected_molecules=_describe(expected_molecules),
        expected_scale=expected_scale,
        nmads=nmads,
        mode_components=list(mode_components),
        min_mode_weight=min_mode_weight,
        random_state=random_state,
        key_added=key_added,
    )
    uns["version"] = __version__

    target = adata.copy() if copy else adata
    new_var = var_frame(target.var_names, spikes, var_columns)
    new_obs = pd.DataFrame(obs, index=target.obs_names)
    replace_results(target, key_added, new_var, uns, schema=SPIKE_QC_SCHEMA, obs=new_obs)
    info("    finished", time=start)
    added(
        [
            (f"'{key_added}_*' per-cell columns", "adata.obs"),
            (f"'{key_added}_*' per-spike-in columns", "adata.var"),
            (f"'{key_added}'", "adata.uns"),
        ]
    )
    return target if copy else None


LOW_RULE = (
    "below the main mode and every lower mode: log capture (or log total) < T_low = min "
    "over the modes k up to the main one of T_k = median_k - nmads * MAD_k, median and "
    "MAD over the cells of mode k"
)
LOW_MODE_RULE = "T_low <= log capture (or log total) < T_main, the main mode's threshold"
HIGH_RULE = "spike-in fraction > median + nmads * MAD, over all cells"


def _mode_components(value) -> list[int]:
    if isinstance(value, (str, bytes)) or not (np.isscalar(value) or np.iterable(value)):
        raise InputError(f"mode_components must be a K or a list of K, got {value!r}.")
    candidates = [value] if np.isscalar(value) else list(value)
    if not candidates:
        raise InputError("mode_components must be at least one K.")
    return [validation.check_int(k, "mode_components") for k in candidates]


def _modes_summary(modes: spike_qc.CaptureModes, per_mode, metric: str) -> dict:
    """``.uns[key]["modes"]``: the modes on both scales and each mode's rule."""
    out = {"metric": metric, **modes.summary()}
    out["centres"] = np.exp(out["log_centres"])
    out["boundaries"] = np.exp(out["log_boundaries"])
    out["medians"] = np.array([rule.median for rule in per_mode])
    out["mads"] = np.array([rule.mad for rule in per_mode])
    out["thresholds"] = np.array([rule.threshold for rule in per_mode])
    return out


def _spike_flags(adata: AnnData, spike_in: str) -> np.ndarray:
    if spike_in not in adata.var.columns:
        flags = [c for c in adata.var.columns if pd.api.types.is_bool_dtype(adata.var[c].dtype)]
        raise InputKeyError(
            f"spike_in {spike_in!r} is not a column of adata.var (boolean columns: {flags}): "
            "flag the spike-ins with scmix.pp.flag_spike_ins(adata), or name the column "
            "that flags them (e.g. the one of scanpy's qc_vars)."
        )
    flags = bool_column(adata.var, spike_in, f"adata.var[{spike_in!r}] (the spike-in flags)")
    if not flags.any():
        raise InputError(
            f"adata.var[{spike_in!r}] flags no spike-in (all {adata.n_vars} genes are False)."
        )
    return flags


def _expected(adata: AnnData, expected_molecules, spikes: np.ndarray) -> np.ndarray:
    """Expected molecules per spike-in (NaN where unknown), validated."""
    names = adata.var_names[spikes]
    if isinstance(expected_molecules, str):
        if expected_molecules not in adata.var.columns:
            raise InputKeyError(
                f"expected_molecules {expected_molecules!r} is not a column of adata.var "
                f"(columns: {list(adata.var.columns)})."
            )
        what = f"adata.var[{expected_molecules!r}]"
        values = validation.numeric_vector(
            adata.var[expected_molecules].reset_index(drop=True), what
        )[spikes]
    elif isinstance(expected_molecules, pd.Series):
        what = "expected_molecules"
        if expected_molecules.index.has_duplicates:
            raise InputError("expected_molecules is a pandas Series with duplicate labels.")
        values = validation.numeric_vector(
            expected_molecules.reindex(names).reset_index(drop=True), what
        )
    else:
        what = "expected_molecules"
        values = validation.numeric_vector(expected_molecules, what)
        if values.size == adata.n_vars:
            values = values[spikes]
        elif values.size != spikes.size:
            raise InputError(
                f"expected_molecules has {values.size} values: give one per gene "
                f"({adata.n_vars}) or one per spike-in ({spikes.size})."
            )
    bad = ~np.isnan(values) & ~(np.isfinite(values) & (values > 0))
    if bad.any():
        raise InputError(
            f"{what} must be positive and finite (or NaN for unknown), but spike-ins "
            f"{list(names[bad][:5])} have {list(values[bad][:5])}."
        )
    if np.isnan(values).all():
        raise InputError(
            f"{what} gives no expected molecules for any of the {spikes.size} spike-ins."
        )
    return values


def _describe(expected_molecules):
    if expected_molecules is None or isinstance(expected_molecules, str):
        return expected_molecules
    return "Series" if isinstance(expected_molecules, pd.Series) else "array"
