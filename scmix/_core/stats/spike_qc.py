r"""Spike-in quality control on arrays: per-cell spike-in totals, fractions and capture
efficiencies, MAD outlier rules, and the detection limit (no AnnData here).

Notation: counts :math:`x_{ij}` of cell i and spike-in j in the set S of spike-ins,
:math:`E \subseteq S` the spike-ins whose expected input molecules per cell
:math:`e_j > 0` are known.

- spike-in total :math:`t_i = \sum_{j \in S} x_{ij}`;
- spike-in fraction :math:`f_i = t_i / \sum_{j} x_{ij}` (over every gene, as scanpy's
  ``pct_counts_{qc_var} / 100``);
- capture efficiency :math:`c_i = \sum_{j \in E} x_{ij} / \sum_{j \in E} e_j`: the
  fraction of the spike-in molecules put into the cell that were counted;
- detection limit: the input :math:`e_{50}` at which a spike-in is detected
  (:math:`x_{ij} > 0`) in half of the cells, from the logistic regression
  :math:`P(x_{ij} > 0) = \operatorname{expit}(a + b \log_{10} e_j)` fitted by maximum
  likelihood over every cell and spike-in of E (Svensson et al. 2017, Nat Methods
  14:381): :math:`e_{50} = 10^{-a/b}`, with a standard error that treats the spike-in,
  not the cell, as the unit of replication (see :func:`detection_limit`);
- modes of the log capture (of the log total when no :math:`e_j` is known): the modes of
  a variational Gaussian mixture of its finite values (:func:`capture_modes`), and
  scater's lower MAD rule applied within each mode (:func:`mode_mad_outliers`), so that a
  coherent low-capture mode is reported as a mode, not as outliers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit
from scipy.stats import t as student_t

from ..vi import cavi
from .modes import Modes, find_modes

#: The constant that makes the MAD a consistent estimator of a normal standard deviation.
MAD_CONSTANT = 1.4826
#: Fewest cells a mode of the capture must hold (whatever ``min_weight``), so that its
#: median and MAD mean something.
MIN_MODE_CELLS = 10
#: CAVI settings of the capture modes (those of ``scmix.tl.size_factor_modes``).
CAVI_OPTIONS = {"model": "full", "n_init": 3, "max_iter": 1000, "tol": 1e-8}
#: Molecules in one attomole: 1e-18 mol x 6.02214076e23 / mol (the SI Avogadro constant).
MOLECULES_PER_ATTOMOLE = 602_214.076


@dataclass
class MadRule:
    """An outlier rule ``median -/+ nmads * MAD`` on one per-cell metric."""

    metric: str
    tail: str
    nmads: float
    median: float
    mad: float
    threshold: float
    outlier: np.ndarray
    mode: int | None = None  # the mode whose median and MAD give the threshold

    def summary(self) -> dict:
        """The rule without the per-cell flags, for ``.uns``."""
        out = {
            "metric": self.metric,
            "tail": self.tail,
            "nmads": self.nmads,
            "median": self.median,
            "mad": self.mad,
            "threshold": self.threshold,
            "n_outliers": int(self.outlier.sum()),
        }
        if self.mode is not None:
            out["mode"] = self.mode
        return out


def mad_outliers(values: np.ndarray, *, nmads: float, tail: str, metric: str) -> MadRule:
    r"""Cells outside :math:`\operatorname{median} \pm n \cdot \mathrm{MAD}` (scater's
    ``isOutlier``), with :math:`\mathrm{MAD} = 1.4826\,\operatorname{median}_i
    |v_i - \operatorname{median}(v)|`, both over the finite values.

    ``tail="lower"`` flags :math:`v_i < \operatorname{median} - n\,\mathrm{MAD}`,
    ``"higher"`` flags :math:`v_i > \operatorname{median} + n\,\mathrm{MAD}`. A value of
    :math:`-\infty` (the log of a zero total) is below every threshold; NaN is never
    flagged. With no finite value nothing is flagged and the threshold is NaN.
    """
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        nan = float("nan")
        return MadRule(metric, tail, nmads, nan, nan, nan, np.zeros(values.size, dtype=bool))
    median = float(np.median(finite))
    mad = float(MAD_CONSTANT * np.median(np.abs(finite - median)))
    with np.errstate(invalid="ignore"):
        if tail == "lower":
            threshold = median - nmads * mad
            outlier = values < threshold
        else:
            threshold = median + nmads * mad
            outlier = values > threshold
    return MadRule(metric, tail, nmads, median, mad, threshold, outlier)


@dataclass
class CaptureModes:
    """The modes of a per-cell log metric (:func:`capture_modes`)."""

    modes: Modes
    labels: np.ndarray  # (n_cells,) the mode of each cell
    min_count: int  # fewest finite values a mode holds
    fit: cavi.CAVIFit | None  # the mixture kept (None: too few distinct values to fit)
    elbo_by_k: dict[int, float]

    def summary(self) -> dict:
        """Modes, their sizes and the mixture, for ``.uns`` (locations on the log scale)."""
        counts = self.modes.counts
        out = {
            "n_modes": self.modes.n_modes,
            "main": self.modes.main,
            "log_centres": self.modes.centres,
            "log_boundaries": self.modes.antimodes,
            "n_cells": counts,
            "weights": counts / max(int(counts.sum()), 1),
            "min_cells": self.min_count,
        }
        if self.fit is not None:
            out["mixture"] = {
                "n_components": int(self.fit.resp.shape[1]),
                **cavi.normal_components(self.fit),
                "elbo": self.fit.elbo,
                "elbo_by_k": {str(k): v for k, v in self.elbo_by_k.items()},
                "converged": self.fit.converged,
                "n_iter": self.fit.n_iter,
            }
        return out


def capture_modes(
    values: np.ndarray,
    candidates,
    *,
    min_weight: float,
    random_state=0,
    min_cells: int = MIN_MODE_CELLS,
) -> CaptureModes:
    r"""The modes of a per-cell log metric (log capture efficiency or log spike-in total).

    Bishop's variational Gaussian mixture (the CAVI ``"full"`` model of
    :func:`scmix.tl.size_factor_modes`, same priors and settings) is fitted to the n
    finite values for each K of ``candidates``, and the K with the largest ELBO is kept;
    the modes are the maxima of its density, each cell in the mode between the
    neighbouring antimodes (:mod:`.modes`), and a mode must hold at least
    :math:`\max(\texttt{min\_cells}, \lceil \texttt{min\_weight}\, n \rceil)` cells.
    K above n over that count is not tried (there is no room for that many modes). With
    fewer than two distinct finite values there is one mode and no fit. A cell whose value
    is :math:`-\infty` (no spike-in count) is in the lowest mode.
    """
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    min_count = max(int(min_cells), int(np.ceil(min_weight * finite.size)))
    distinct = np.unique(finite).size
    ks = sorted(
        {int(k) for k in candidates if k == 1 or k <= min(finite.size // min_count, distinct)}
    )
    if distinct < 2:
        centre = np.array([np.median(finite)]) if finite.size else np.array([np.nan])
        modes = Modes(centre, np.array([np.inf]), np.empty(0), np.array([finite.size]), 0)
        return CaptureModes(modes, np.zeros(values.size, dtype=np.int64), min_count, None, {})
    fit, fits = cavi.fit_cavi_best(finite, ks or [1], random_state=random_state, **CAVI_OPTIONS)
    components = cavi.normal_components(fit)
    modes = find_modes(
        finite, components["means"], components["sds"], components["weights"], min_count=min_count
    )
    return CaptureModes(
        modes, modes.labels(values), min_count, fit, {k: f.elbo for k, f in fits.items()}
    )


@dataclass
class ModeRules:
    """scater's lower rule within the modes (:func:`mode_mad_outliers`)."""

    low: MadRule  # below the main mode and every lower mode: outliers
    per_mode: list[MadRule]  # the rule of each mode, on its own cells
    low_mode: np.ndarray  # (n_cells,) below the main mode's threshold, not below ``low``'s
    main_threshold: float


def mode_mad_outliers(
    values: np.ndarray, labels: np.ndarray, n_modes: int, main: int, *, nmads: float, metric: str
) -> ModeRules:
    r"""scater's lower rule within each mode: outliers and the low-capture mode.

    Rule k is :func:`mad_outliers` on the finite values of mode k (``labels == k``),
    threshold :math:`T_k = \operatorname{median}_k - n\,\mathrm{MAD}_k`. With the main
    mode ``main`` and :math:`T_{\mathrm{low}} = \min_{k \le \mathrm{main}} T_k`, a value
    below :math:`T_{\mathrm{low}}` is below the main mode and every mode under it: an
    outlier (``low``, which carries that mode's median and MAD); a value in
    :math:`[T_{\mathrm{low}}, T_{\mathrm{main}})` is low for the main mode but within a
    lower one: ``low_mode``. Modes above the main one (doublets, say) neither flag nor
    excuse a low value. With one mode, ``low`` is exactly :func:`mad_outliers` on all
    values and ``low_mode`` is empty. A NaN threshold (a mode without finite values)
    flags nothing.
    """
    values = np.asarray(values, dtype=np.float64)
    per_mode = [
        mad_outliers(
            np.where(labels == k, values, np.nan), nmads=nmads, tail="lower", metric=metric
        )
        for k in range(n_modes)
    ]
    thresholds = np.array([rule.threshold for rule in per_mode[: main + 1]])
    j = int(np.nanargmin(thresholds)) if np.isfinite(thresholds).any() else main
    with np.errstate(invalid="ignore"):
        outlier = values < thresholds[j]
        low_mode = ~outlier & (values < per_mode[main].threshold)
    rule = per_mode[j]
    low = MadRule(metric, "lower", nmads, rule.median, rule.mad, rule.threshold, outlier, j)
    return ModeRules(low, per_mode, low_mode, per_mode[main].threshold)


@dataclass
class CellMetrics:
    """Per-cell spike-in figures (arrays of length n_cells)."""

    total: np.ndarray
    fraction: np.ndarray
    capture: np.ndarray | None
    expected_total: float | None


def cell_metrics(
    spike_totals: np.ndarray,
    library_totals: np.ndarray,
    known_totals: np.ndarray | None = None,
    expected_total: float | None = None,
) -> CellMetrics:
    r"""Spike-in total :math:`t_i`, fraction :math:`f_i = t_i / L_i` (NaN where the
    library :math:`L_i` is zero) and, when ``expected_total`` :math:`= \sum_{j \in E} e_j`
    is given with ``known_totals`` :math:`= \sum_{j \in E} x_{ij}`, the capture
    efficiency :math:`c_i`."""
    total = np.asarray(spike_totals, dtype=np.float64)
    library = np.asarray(library_totals, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(library > 0, total / library, np.nan)
    capture = None
    if expected_total is not None:
        capture = np.asarray(known_totals, dtype=np.float64) / expected_total
    return CellMetrics(total, fraction, capture, expected_total)


@dataclass
class DetectionFit:
    r"""The logistic regression of detection on :math:`\log_{10} e_j`.

    ``se_log10_limit`` is the standard error used for ``ci`` (the robust one, at least
    the binomial one); ``se_log10_limit_binomial`` is the model-based one, which
    assumes binomial scatter of the :math:`k_j`; ``dispersion`` is Pearson's
    :math:`X^2 / (m - 2)` (about 1 under that assumption).
    """

    intercept: float
    slope: float
    limit: float
    se_log10_limit: float
    converged: bool
    n_iter: int
    se_log10_limit_binomial: float = np.nan
    dispersion: float = np.nan
    df: int = 0
    ci: tuple[float, float] = (np.nan, np.nan)

    def summary(self) -> dict:
        return {
            "detection_limit": self.limit,
            "log10_detection_limit_se": self.se_log10_limit,
            "log10_detection_limit_se_binomial": self.se_log10_limit_binomial,
            "detection_limit_ci": np.array(self.ci, dtype=np.float64),
            "dispersion": self.dispersion,
            "df": self.df,
            "intercept": self.intercept,
            "slope": self.slope,
            "converged": self.converged,
            "n_iter": self.n_iter,
        }

    def probability(self, molecules: np.ndarray) -> np.ndarray:
        """Fitted probability of detection at ``molecules`` input molecules."""
        return expit(self.intercept + self.slope * np.log10(molecules))


def _binomial_loglik(beta: np.ndarray, design: np.ndarray, k: np.ndarray, n: float) -> float:
    eta = design @ beta
    # k log p + (n - k) log(1 - p), with log p = -log1p(exp(-eta)) computed stably
    return float(np.sum(-k * np.logaddexp(0.0, -eta) - (n - k) * np.logaddexp(0.0, eta)))


def detection_limit(
    expected: np.ndarray,
    n_detected: np.ndarray,
    n_cells: int,
    *,
    max_iter: int = 100,
    tol: float = 1e-10,
) -> DetectionFit:
    r"""Fit :math:`P(x_{ij} > 0) = \operatorname{expit}(a + b \log_{10} e_j)` by maximum
    likelihood and return :math:`e_{50} = 10^{-a/b}`.

    The cells are exchangeable in this model, so the likelihood is binomial per spike-in:
    :math:`\sum_j k_j \log p_j + (n - k_j) \log(1 - p_j)` with :math:`k_j` (``n_detected``)
    of the :math:`n` cells detecting spike-in j. Newton-Raphson with step halving (the
    log-likelihood never decreases).

    Standard error of :math:`\log_{10} e_{50} = -a/b`: the delta method,
    :math:`\mathrm{se}^2 = g^\top V g` with :math:`g = (-1/b,\ a/b^2)`. The binomial
    :math:`V = I^{-1}`, :math:`I = \sum_j w_j x_j x_j^\top`, :math:`w_j = n p_j (1 -
    p_j)`, :math:`x_j = (1, \log_{10} e_j)`, counts every cell as an independent trial;
    real spike-ins scatter around the curve far more than that (their own capture
    differs), and by an amount that grows with :math:`p_j (1 - p_j)`: on Zeisel 2015
    Pearson's :math:`X^2 / (m - 2) = \sum_j (k_j - n p_j)^2 / w_j / (m - 2)` is 83
    (about 3 for the spike-ins detected in almost no or every cell, over 100 near the
    limit), so a single quasi-binomial dispersion would still understate the error
    where it matters. The spike-in is the unit of replication instead: the robust
    (sandwich) covariance with the HC3 leverage correction,

    .. math::

        V = I^{-1} \Big[\sum_j \frac{(k_j - n p_j)^2}{(1 - h_j)^2} x_j x_j^\top\Big]
        I^{-1}, \qquad h_j = w_j\, x_j^\top I^{-1} x_j,

    floored at the binomial one (``se = max(se_robust, se_binomial)``, as a quasi-binomial
    dispersion is floored at 1), and the 95% interval :math:`10^{\log_{10} e_{50} \pm
    t_{0.975,\, m-2}\, \mathrm{se}}`. Its coverage is 0.93-0.95 on curves simulated with
    logit-normal or beta-binomial scatter of 12-90 spike-ins, where the binomial
    interval covers 0.08-0.30 and the quasi-binomial one 0.84-0.93
    (``benchmarks/spike_in_qc_detection_se.py``, 1,000 data sets each; on Zeisel 2015
    the standard error of :math:`\log_{10} e_{50}` goes from 0.0039 to 0.048). With m = 2
    spike-ins there are no degrees of freedom: the standard errors and interval are NaN.

    When the data do not identify a limit (fewer than two distinct inputs, every or no
    spike-in always detected, or complete separation: the slope diverges), ``limit``
    is NaN and ``converged`` False.
    """
    log_e = np.log10(np.asarray(expected, dtype=np.float64))
    k = np.asarray(n_detected, dtype=np.float64)
    n = float(n_cells)
    nan_fit = DetectionFit(np.nan, np.nan, np.nan, np.nan, False, 0)
    if np.unique(log_e).size < 2 or k.sum() == 0 or k.sum() == n * k.size:
        return nan_fit
    design = np.column_stack([np.ones_like(log_e), log_e])
    # start: a least-squares line through the empirical logits
    p0 = np.clip((k + 0.5) / (n + 1.0), 1e-6, 1 - 1e-6)
    beta = np.linalg.lstsq(design, np.log(p0 / (1 - p0)), rcond=None)[0]
    loglik = _binomial_loglik(beta, design, k, n)
    converged, it = False, 0
    while it < max_iter:
        it += 1
        p = expit(design @ beta)
        w = n * p * (1 - p)
        grad = design.T @ (k - n * p)
        info = design.T @ (design * w[:, None])
        try:
            step = np.linalg.solve(info, grad)
        except np.linalg.LinAlgError:
            break
        for _ in range(50):
            candidate = beta + step
            new = _binomial_loglik(candidate, design, k, n)
            if new >= loglik - 1e-12 * abs(loglik):
                break
            step = step / 2
        beta, change = candidate, new - loglik
        loglik = new
        if abs(change) <= tol * (1 + abs(loglik)) and np.max(np.abs(step)) < 1e-8:
            converged = True
            break
    a, b = float(beta[0]), float(beta[1])
    if not converged or not np.isfinite(b) or abs(b) > 1e3 or b == 0:
        return DetectionFit(a, b, np.nan, np.nan, False, it)
    errors = _limit_errors(design, beta, k, n)
    return DetectionFit(a, b, float(10 ** (-a / b)), converged=True, n_iter=it, **errors)


def _limit_errors(design: np.ndarray, beta: np.ndarray, k: np.ndarray, n: float) -> dict:
    """Binomial and robust (HC3) standard errors of log10 e50, the dispersion and the
    95% interval of e50 (see :func:`detection_limit`)."""
    a, b = beta
    p = expit(design @ beta)
    weight = n * p * (1 - p)
    cov = np.linalg.inv(design.T @ (design * weight[:, None]))
    grad = np.array([-1.0 / b, a / b**2])  # of -a/b in (a, b)
    se_binomial = float(np.sqrt(grad @ cov @ grad))
    df = k.size - 2
    nan = float("nan")
    if df < 1:
        return dict(se_log10_limit=nan, se_log10_limit_binomial=nan, df=df)
    residual = k - n * p
    leverage = weight * np.einsum("jr,rs,js->j", design, cov, design)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = design * (residual / (1 - leverage))[:, None]
        se_robust = float(np.sqrt(grad @ cov @ (score.T @ score) @ cov @ grad))
    se = max(se_robust, se_binomial) if np.isfinite(se_robust) else nan
    half = float(student_t.ppf(0.975, df)) * se
    centre = -a / b
    return dict(
        se_log10_limit=se,
        se_log10_limit_binomial=se_binomial,
        dispersion=float(np.sum(residual**2 / weight) / df),
        df=df,
        ci=(float(10 ** (centre - half)), float(10 ** (centre + half))),
    )
