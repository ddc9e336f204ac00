"""The numba special-function kernels against scipy and exact finite sums."""

import math

import numpy as np
import pytest
from scipy import special

from scmix._core.numerics import special as sp

ARGS = np.concatenate([np.geomspace(1e-4, 1e4, 60), [0.5, 1.0, 9.99, 10.0, 10.01, 123.4]])


@pytest.mark.parametrize("z", ARGS)
def test_digamma_trigamma_match_scipy(z):
    assert sp.digamma(z) == pytest.approx(special.digamma(z), rel=1e-12, abs=1e-13)
    assert sp.trigamma(z) == pytest.approx(special.polygamma(1, z), rel=1e-11)


def _exact_sums(x: int, theta: float):
    """lgamma / digamma / trigamma differences as exact finite sums (fsum)."""
    terms = [theta + ell for ell in range(x)]
    return (
        math.fsum(math.log(t) for t in terms),
        math.fsum(1.0 / t for t in terms),
        -math.fsum(1.0 / (t * t) for t in terms),
    )


@pytest.mark.parametrize("theta", [1e-5, 0.3, 2.0, 9.5, 10.0, 55.0, 1e3, 1e6, 1e8])
@pytest.mark.parametrize("x", [0, 1, 2, 7, 8, 9, 15, 40, 300])
def test_count_differences_are_exact_without_cancellation(x, theta):
    lg, dg, tg = _exact_sums(x, theta)
    assert sp.lgamma_ratio(float(x), theta) == pytest.approx(lg, rel=1e-12, abs=1e-12)
    assert sp.digamma_ratio(float(x), theta) == pytest.approx(dg, rel=1e-10, abs=1e-300)
    assert sp.trigamma_ratio(float(x), theta) == pytest.approx(tg, rel=1e-6, abs=1e-300)
    # the three at once, as the M-step and the derivatives take them
    together = sp.level_ratios(float(x), theta)
    assert together[0] == pytest.approx(lg, rel=1e-12, abs=1e-12)
    assert together[1] == pytest.approx(dg, rel=1e-10, abs=1e-300)
    assert together[2] == pytest.approx(tg, rel=1e-6, abs=1e-300)


def test_lgamma_ratio_matches_scipy_where_scipy_is_accurate():
    for x in [3.0, 20.0, 1000.0]:
        for theta in [0.01, 1.0, 5.0, 50.0]:
            expected = special.gammaln(x + theta) - special.gammaln(theta)
            assert sp.lgamma_ratio(x, theta) == pytest.approx(expected, rel=1e-11)


def test_log1p_matches_numpy_to_a_few_ulp():
    """The log(u) * y / (u - 1) form of log1p keeps full precision from tiny to huge y."""
    rng = np.random.default_rng(0)
    y = np.concatenate(
        [
            rng.uniform(0.0, 1.0, 2000) * scale
            for scale in (1e-300, 1e-17, 1e-9, 1e-3, 1, 1e6, 1e200)
        ]
        + [-rng.uniform(0.0, 0.999, 2000), [0.0, -0.0]]
    )
    ours = np.array([sp.log1p(v) for v in y])
    np.testing.assert_allclose(ours, np.log1p(y), rtol=8 * np.finfo(float).eps, atol=0)


@sp.jit
def _apply_simd(kind, values, out):
    # a plain loop over an array, as in the kernels: LLVM vectorises it
    for i in range(values.shape[0]):
        if kind == 0:
            out[i] = sp.simd_log(values[i])
        elif kind == 1:
            out[i] = sp.simd_exp(values[i])
        else:
            out[i] = sp.simd_log1p(values[i])


def _ulp_error(ours, reference):
    finite = np.isfinite(reference) & (reference != 0.0)
    np.testing.assert_array_equal(ours[~finite], reference[~finite])
    return np.max(np.abs(ours[finite] - reference[finite]) / np.spacing(np.abs(reference[finite])))


def test_simd_log_exp_log1p_match_numpy_over_the_whole_range():
    """The branch-free fdlibm log and exp are within 1 ulp of numpy (glibc) from the
    subnormals to the largest float, with 0, inf, nan and negative arguments as numpy;
    log1p built on them within 2 ulp. Vectorised loops and scalar calls agree."""
    rng = np.random.default_rng(0)
    specials = [0.0, -0.0, -1.0, np.inf, -np.inf, np.nan, 5e-324, 1e-310, 1.0, 2.0]
    positive = np.concatenate([np.exp(rng.uniform(-745, 709.7, 200_000)), specials])
    exponents = np.concatenate(
        [rng.uniform(-750, 712, 200_000), [-745.13, -745.14, 709.78, 709.79, -1e-300, *specials]]
    )
    above_minus_one = np.concatenate(
        [np.exp(rng.uniform(-700, 700, 100_000)), -rng.uniform(0, 1, 1000), [0.0, 1e-17, -1e-17]]
    )
    with np.errstate(all="ignore"):
        cases = [
            (0, positive, np.log(positive), 1.0),
            (1, exponents, np.exp(exponents), 1.0),
            (2, above_minus_one, np.log1p(above_minus_one), 2.0),
        ]
    scalar = [sp.simd_log, sp.simd_exp, sp.simd_log1p]
    for kind, values, reference, max_ulp in cases:
        ours = np.empty_like(values)
        _apply_simd(kind, values, ours)
        assert _ulp_error(ours, reference) <= max_ulp
        picked = np.concatenate([values[:200], values[-10:]])
        one_by_one = np.array([scalar[kind](v) for v in picked])
        np.testing.assert_array_equal(one_by_one, np.concatenate([ours[:200], ours[-10:]]))
