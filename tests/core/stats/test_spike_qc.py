"""The spike-in QC engine: the MAD rule and the logistic detection limit, against
independent references (a direct scipy.optimize maximisation, simulated truth)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import optimize
from scipy.special import expit

from scmix._core.stats import spike_qc


def _direct_fit(expected, k, n):
    """Maximise the binomial log-likelihood of expit(a + b log10 e) with Nelder-Mead."""
    x = np.log10(expected)

    def negloglik(beta):
        eta = beta[0] + beta[1] * x
        return np.sum(k * np.logaddexp(0, -eta) + (n - k) * np.logaddexp(0, eta))

    best = optimize.minimize(
        negloglik, [0.0, 1.0], method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12}
    )
    return best.x


def test_detection_limit_matches_a_direct_scipy_maximisation():
    expected = np.geomspace(0.3, 3000, 25)
    rng = np.random.default_rng(1)
    n = 400
    k = rng.binomial(n, expit(-1.0 + 2.5 * np.log10(expected)))
    fit = spike_qc.detection_limit(expected, k, n)
    a, b = _direct_fit(expected, k, n)
    assert fit.converged
    np.testing.assert_allclose([fit.intercept, fit.slope], [a, b], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fit.limit, 10 ** (-a / b), rtol=1e-5)
    np.testing.assert_allclose(fit.probability(np.array([fit.limit])), 0.5)


def test_detection_limit_recovers_the_simulated_truth_within_its_standard_error():
    """Per cell detection simulated from a known curve with e50 = 5 molecules."""
    rng = np.random.default_rng(7)
    expected = np.repeat(np.geomspace(0.5, 500, 12), 3)
    slope, e50 = 3.0, 5.0
    n = 2000
    detected = rng.random((n, expected.size)) < expit(slope * (np.log10(expected) - np.log10(e50)))
    fit = spike_qc.detection_limit(expected, detected.sum(axis=0), n)
    z = (np.log10(fit.limit) - np.log10(e50)) / fit.se_log10_limit
    assert abs(z) < 4
    np.testing.assert_allclose(fit.limit, e50, rtol=0.05)
    np.testing.assert_allclose(fit.slope, slope, rtol=0.1)


@pytest.mark.parametrize(
    "k",
    [np.array([0, 0, 0]), np.array([10, 10, 10]), np.array([0, 0, 10])],
    ids=["never detected", "always detected", "separated"],
)
def test_detection_limit_is_nan_when_not_identified(k):
    fit = spike_qc.detection_limit(np.array([1.0, 10.0, 100.0]), k, 10)
    assert np.isnan(fit.limit) and not fit.converged


def test_mad_rule_by_hand():
    values = np.array([1.0, 2.0, 3.0, 4.0, 100.0, -np.inf, np.nan])
    lower = spike_qc.mad_outliers(values, nmads=1.0, tail="lower", metric="v")
    # finite values 1, 2, 3, 4, 100: median 3, |deviations| 2, 1, 0, 1, 97 -> median 1
    assert lower.median == 3.0 and lower.mad == pytest.approx(1.4826)
    assert lower.threshold == pytest.approx(3.0 - 1.4826)
    np.testing.assert_array_equal(lower.outlier, [True, False, False, False, False, True, False])
    upper = spike_qc.mad_outliers(values, nmads=3.0, tail="higher", metric="v")
    np.testing.assert_array_equal(upper.outlier, [False] * 4 + [True, False, False])
    assert upper.summary()["n_outliers"] == 1


def test_cell_metrics_by_hand():
    m = spike_qc.cell_metrics(np.array([10.0, 0.0]), np.array([40.0, 0.0]), np.array([8.0, 0]), 16)
    np.testing.assert_allclose(m.fraction, [0.25, np.nan])
    np.testing.assert_allclose(m.capture, [0.5, 0.0])


def _scattered(rng, kind, expected, n, e50=3.0, slope=2.5, spread=0.5):
    """Detections of each spike-in in n cells around the curve expit(slope log10(e/e50)),
    with extra-binomial scatter between spike-ins: ``"logit-normal"`` (each spike-in's
    own logit offset, N(0, spread^2): the pattern of the real ERCC, whose Pearson
    residuals grow with p(1 - p)) or ``"beta-binomial"`` (p_j ~ Beta with intra-class
    correlation spread / 10: a constant quasi-binomial dispersion)."""
    eta = slope * (np.log10(expected) - np.log10(e50))
    if kind == "logit-normal":
        p = expit(eta + rng.normal(0.0, spread, expected.size))
    else:
        p = expit(eta)
        size = 10 / spread - 1
        p = rng.beta(p * size, (1 - p) * size)
    return rng.binomial(n, p)


@pytest.mark.parametrize(
    ("kind", "n_spike_ins", "n_cells"),
    [("logit-normal", 40, 1000), ("logit-normal", 12, 2000), ("beta-binomial", 20, 500)],
)
def test_detection_limit_interval_covers_under_extra_binomial_scatter(kind, n_spike_ins, n_cells):
    """400 data sets: the 95% interval holds the true e50 in about 95% of them; the
    binomial standard error (cells as independent trials) covers in well under 60%."""
    rng = np.random.default_rng(11)
    expected = np.geomspace(0.1, 1000, n_spike_ins)
    e50, reps = 3.0, 400
    covered = binomial_covered = 0
    for _ in range(reps):
        k = _scattered(rng, kind, expected, n_cells, e50=e50)
        fit = spike_qc.detection_limit(expected, k, n_cells)
        assert fit.converged and fit.se_log10_limit >= fit.se_log10_limit_binomial
        covered += fit.ci[0] <= e50 <= fit.ci[1]
        half = (fit.ci[1] / fit.ci[0]) ** 0.5  # the same t quantile, binomial se
        binomial_half = half ** (fit.se_log10_limit_binomial / fit.se_log10_limit)
        binomial_covered += fit.limit / binomial_half <= e50 <= fit.limit * binomial_half
    coverage, binomial = covered / reps, binomial_covered / reps
    print(f"\n{kind}, {n_spike_ins} spike-ins: coverage {coverage:.3f} (binomial {binomial:.3f})")
    assert 0.92 <= coverage <= 0.98
    assert binomial < 0.6


def test_detection_limit_robust_se_agrees_with_the_spike_in_jackknife():
    """HC3 is close to the delete-one-spike-in jackknife of log10 e50 (an independent,
    slow reference); both exceed the binomial standard error many times."""
    rng = np.random.default_rng(3)
    expected = np.geomspace(0.1, 1000, 30)
    n = 1000
    k = _scattered(rng, "logit-normal", expected, n)
    fit = spike_qc.detection_limit(expected, k, n)
    keep = np.ones(expected.size, dtype=bool)
    leave_one_out = []
    for j in range(expected.size):
        keep[:] = True
        keep[j] = False
        leave_one_out.append(np.log10(spike_qc.detection_limit(expected[keep], k[keep], n).limit))
    leave_one_out = np.array(leave_one_out)
    m = expected.size
    jackknife = np.sqrt((m - 1) / m * np.sum((leave_one_out - leave_one_out.mean()) ** 2))
    np.testing.assert_allclose(fit.se_log10_limit, jackknife, rtol=0.25)
    assert fit.se_log10_limit > 3 * fit.se_log10_limit_binomial
    assert fit.dispersion > 5


def test_detection_limit_under_binomial_scatter_keeps_the_binomial_error():
    rng = np.random.default_rng(5)
    expected = np.geomspace(0.1, 1000, 40)
    n = 1000
    k = rng.binomial(n, expit(2.5 * (np.log10(expected) - np.log10(3.0))))
    fit = spike_qc.detection_limit(expected, k, n)
    assert 0.5 < fit.dispersion < 1.6 and fit.df == 38
    np.testing.assert_allclose(fit.se_log10_limit, fit.se_log10_limit_binomial, rtol=0.3)


def test_detection_limit_with_two_spike_ins_has_no_standard_error():
    fit = spike_qc.detection_limit(np.array([1.0, 10.0]), np.array([3, 7]), 10)
    assert fit.converged and np.isfinite(fit.limit)
    assert np.isnan(fit.se_log10_limit) and np.isnan(fit.ci).all() and fit.df == 0
