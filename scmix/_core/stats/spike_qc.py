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
  14:381): :math:`e_{50} = 10^{-a/b}`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit

#: The constant that makes the MAD a consistent estimator of a normal standard deviation.
MAD_CONSTANT = 1.4826
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

    def summary(self) -> dict:
        """The rule without the per-cell flags, for ``.uns``."""
        return {
            "metric": self.metric,
            "tail": self.tail,
            "nmads": self.nmads,
            "median": self.median,
            "mad": self.mad,
            "threshold": self.threshold,
            "n_outliers": int(self.outlier.sum()),
        }


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
    r"""The logistic regression of detection on :math:`\log_{10} e_j`."""

    intercept: float
    slope: float
    limit: float
    se_log10_limit: float
    converged: bool
    n_iter: int

    def summary(self) -> dict:
        return {
            "detection_limit": self.limit,
            "log10_detection_limit_se": self.se_log10_limit,
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
    log-likelihood never decreases); the standard error of :math:`\log_{10} e_{50} =
    -a/b` is the delta method's, from the inverse Fisher information.

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
    p = expit(design @ beta)
    info = design.T @ (design * (n * p * (1 - p))[:, None])
    cov = np.linalg.inv(info)
    # gradient of -a/b in (a, b)
    grad = np.array([-1.0 / b, a / b**2])
    se = float(np.sqrt(grad @ cov @ grad))
    return DetectionFit(a, b, float(10 ** (-a / b)), se, True, it)
