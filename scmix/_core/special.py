"""Special-function kernels for numba.

The NB log-pmf and its derivatives need differences such as
``lgamma(x + theta) - lgamma(theta)``. Computed naively these lose all precision
when theta is large (the Poisson limit), so every difference here is evaluated
in a form without cancellation:

* small counts (``x <= SMALL_COUNT``): exact finite sums over ``l = 0 .. x-1``;
* large theta: the difference of Stirling / asymptotic series, written with
  ``log1p(x / theta)``;
* otherwise: the difference of the functions themselves (no cancellation when
  theta is small).

Counts are non-negative integers stored as float64.
"""

from __future__ import annotations

import math

import numba

SMALL_COUNT = 8.0
#: Above this argument the asymptotic series are accurate to ~1e-13.
ASYMPTOTIC_FROM = 10.0
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)

jit = numba.njit(cache=True, fastmath=False, nogil=True)


@numba.njit(cache=True, nogil=True, inline="always")
def log1p(y: float) -> float:
    """log(1 + y), accurate to a few ulp for any y > -1: ``log(u) * y / (u - 1)`` with
    ``u = 1 + y`` rounded (Goldberg 1991, theorem 4) cancels the rounding of ``u``.
    One ``log`` and a division: twice as fast as ``math.log1p`` (glibc) in numba."""
    u = 1.0 + y
    if u == 1.0:
        return y
    return math.log(u) * (y / (u - 1.0))


@jit
def digamma(z: float) -> float:
    """psi(z) for z > 0: recurrence up to ``ASYMPTOTIC_FROM``, then the asymptotic series."""
    result = 0.0
    while z < ASYMPTOTIC_FROM:
        result -= 1.0 / z
        z += 1.0
    return result + math.log(z) - 0.5 / z - _digamma_series(z)


@jit
def _digamma_series(z: float) -> float:
    """log z - 1/(2z) - psi(z) for z >= ASYMPTOTIC_FROM (Bernoulli series)."""
    f = 1.0 / (z * z)
    return f * (
        1.0 / 12.0 - f * (1.0 / 120.0 - f * (1.0 / 252.0 - f * (1.0 / 240.0 - f * (1.0 / 132.0))))
    )


@jit
def trigamma(z: float) -> float:
    """psi'(z) for z > 0: recurrence, then 1/z + 1/(2z^2) + sum B_2k / z^(2k+1)."""
    result = 0.0
    while z < ASYMPTOTIC_FROM:
        result += 1.0 / (z * z)
        z += 1.0
    f = 1.0 / (z * z)
    series = f * (
        1.0 / 6.0 - f * (1.0 / 30.0 - f * (1.0 / 42.0 - f * (1.0 / 30.0 - f * (5.0 / 66.0))))
    )
    return result + 1.0 / z + 0.5 * f + series / z


@jit
def _stirling_tail(z: float) -> float:
    """lgamma(z) - [(z - 1/2) log z - z + log(2 pi)/2] for z >= ASYMPTOTIC_FROM."""
    f = 1.0 / (z * z)
    return (1.0 / 12.0 - f * (1.0 / 360.0 - f * (1.0 / 1260.0 - f * (1.0 / 1680.0)))) / z


@jit
def lgamma_ratio(x: float, theta: float) -> float:
    """log Gamma(x + theta) - log Gamma(theta) for a count x >= 0 and theta > 0."""
    if x == 0.0:
        return 0.0
    if x <= SMALL_COUNT:
        total = 0.0
        for ell in range(int(x)):
            total += math.log(theta + ell)
        return total
    if theta >= ASYMPTOTIC_FROM:
        # (z-1/2)log z - z at z = theta + x minus the same at theta, without cancellation
        z = theta + x
        main = (theta - 0.5) * math.log1p(x / theta) + x * math.log(z) - x
        return main + _stirling_tail(z) - _stirling_tail(theta)
    return math.lgamma(x + theta) - math.lgamma(theta)


@jit
def digamma_ratio(x: float, theta: float) -> float:
    """psi(x + theta) - psi(theta) = sum_{l < x} 1 / (theta + l)."""
    if x == 0.0:
        return 0.0
    if x <= SMALL_COUNT:
        total = 0.0
        for ell in range(int(x)):
            total += 1.0 / (theta + ell)
        return total
    if theta >= ASYMPTOTIC_FROM:
        z = theta + x
        # the small series terms differ without a cancellation problem
        series = _digamma_series(z) - _digamma_series(theta)
        return math.log1p(x / theta) - 0.5 * (1.0 / z - 1.0 / theta) - series
    return digamma(x + theta) - digamma(theta)


@jit
def trigamma_ratio(x: float, theta: float) -> float:
    """psi'(x + theta) - psi'(theta) = -sum_{l < x} 1 / (theta + l)^2."""
    if x == 0.0:
        return 0.0
    if x <= SMALL_COUNT:
        total = 0.0
        for ell in range(int(x)):
            d = theta + ell
            total -= 1.0 / (d * d)
        return total
    return trigamma(x + theta) - trigamma(theta)
