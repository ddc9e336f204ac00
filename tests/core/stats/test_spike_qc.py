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
