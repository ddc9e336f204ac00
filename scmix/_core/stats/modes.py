r"""The modes of a one-dimensional Gaussian mixture density, and the values between them.

A fitted mixture :math:`f(x) = \sum_k w_k\, N(x \mid m_k, s_k^2)` has at most K local
maxima, all within :math:`[\min_k m_k, \max_k m_k]` (in one dimension; Carreira-Perpiñán
and Williams 2003). Components do not make modes by themselves: two components whose sum
has one maximum (a skewed or heavy-tailed bulk) are one mode. Modal clustering (Li, Ray
and Lindsay 2007, JMLR 8:1687) gives each point the maximum its uphill path reaches; in
one dimension these are the intervals between the *antimodes*, the density minima between
adjacent maxima, so mode k holds the values in :math:`[b_{k-1}, b_k)` with
:math:`b_0 = -\infty` and :math:`b_M = \infty`.

A mode holding fewer than ``min_count`` of the finite values is not a mode: it is merged
with the neighbour across its shallower antimode (the higher density minimum; the only
neighbour at either end), smallest first, until every mode is large enough or one is
left, so that a handful of outlying values does not make a mode of its own. The merged
mode keeps the higher maximum.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np

#: Points of the grid on which the maxima and antimodes are located.
GRID_SIZE = 4097


@dataclass
class Modes:
    """Modes in ascending order; ``main`` is the one with the highest density."""

    centres: np.ndarray  # (M,) the density maxima
    heights: np.ndarray  # (M,) the density there
    antimodes: np.ndarray  # (M - 1,) the boundaries between consecutive modes
    counts: np.ndarray  # (M,) finite values in each mode
    main: int

    @property
    def n_modes(self) -> int:
        return int(self.centres.size)

    def labels(self, values: np.ndarray) -> np.ndarray:
        """The mode of each value: k where ``antimodes[k-1] <= value < antimodes[k]``
        (``-inf`` is in mode 0)."""
        return np.searchsorted(self.antimodes, np.asarray(values, dtype=np.float64), side="right")


def mixture_density(x: np.ndarray, means, sds, weights) -> np.ndarray:
    r""":math:`\sum_k w_k N(x \mid m_k, s_k^2)` at each point of ``x``."""
    means, sds, weights = (np.asarray(v, dtype=np.float64)[:, None] for v in (means, sds, weights))
    z = (np.asarray(x, dtype=np.float64)[None, :] - means) / sds
    return np.sum(weights * np.exp(-0.5 * z**2) / (sds * np.sqrt(2 * np.pi)), axis=0)


def density_modes(means, sds, weights) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    r"""Maxima of the mixture density (locations and heights, ascending) and the antimodes
    between consecutive maxima (locations and heights), on a grid of :data:`GRID_SIZE`
    points over :math:`[\min m_k, \max m_k]` (outside it the density is monotone)."""
    means = np.asarray(means, dtype=np.float64)
    lo, hi = float(means.min()), float(means.max())
    if hi - lo <= 1e-12 * max(1.0, abs(lo)):
        centre = np.array([lo])
        return centre, mixture_density(centre, means, sds, weights), np.empty(0), np.empty(0)
    grid = np.linspace(lo, hi, GRID_SIZE)
    d = mixture_density(grid, means, sds, weights)
    rising = np.r_[True, d[1:] > d[:-1]]  # the density rises into point i (from the left end)
    falling = np.r_[d[:-1] >= d[1:], True]  # and does not rise after it
    peaks = np.flatnonzero(rising & falling)
    dips = np.array([p + int(np.argmin(d[p : q + 1])) for p, q in pairwise(peaks)], dtype=int)
    return grid[peaks], d[peaks], grid[dips], d[dips]


def find_modes(values: np.ndarray, means, sds, weights, *, min_count: int) -> Modes:
    """The modes of the fitted mixture (``means``, ``sds``, ``weights``: (K,)) and how many
    of the finite ``values`` each holds, modes with fewer than ``min_count`` merged away
    (see the module docstring)."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    centres, heights, cuts, depths = (list(v) for v in density_modes(means, sds, weights))
    while True:
        counts = np.bincount(
            np.searchsorted(np.asarray(cuts), finite, side="right"), minlength=len(centres)
        )
        small = np.flatnonzero(counts < min_count)
        if len(centres) == 1 or small.size == 0:
            break
        k = int(small[np.argmin(counts[small])])
        if k == 0:
            cut = 0
        elif k == len(centres) - 1:
            cut = k - 1
        else:  # across the shallower antimode: the higher density minimum
            cut = k - 1 if depths[k - 1] >= depths[k] else k
        keep = cut if heights[cut] >= heights[cut + 1] else cut + 1
        centres[cut], heights[cut] = centres[keep], heights[keep]
        del centres[cut + 1], heights[cut + 1], cuts[cut], depths[cut]
    heights = np.asarray(heights)
    return Modes(
        centres=np.asarray(centres),
        heights=heights,
        antimodes=np.asarray(cuts, dtype=np.float64),
        counts=counts,
        main=int(np.argmax(heights)),
    )
