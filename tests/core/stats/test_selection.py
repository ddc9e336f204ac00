"""The bimodality call: thresholds and degenerate components."""

from __future__ import annotations

import numpy as np

from scmix._core.families.nb import THETA_MIN
from scmix._core.stats import selection


def test_degenerate_components():
    means = np.array([[2.0, 10.0], [1e-5, 10.0], [5.0, 5.02], [5.0, 5.02], [3.0, 9.0]])
    phis = np.array([[0.1, 0.1], [0.1, 0.1], [0.2, 0.2], [0.01, 0.5], [1 / THETA_MIN, 0.1]])
    got = selection.degenerate_components(means, phis)
    # distinct; point mass at zero; the same component twice; same mean but narrow and
    # broad (a real mixture); all mass at zero through the dispersion bound
    assert got.tolist() == [False, True, True, False, True]


def test_bimodal_call_needs_every_condition():
    delta = np.array([50.0, 5.0, 50.0, 50.0, 50.0])
    weights = np.array([[0.3, 0.7], [0.3, 0.7], [0.01, 0.99], [0.3, 0.7], [0.3, 0.7]])
    converged = np.array([True, True, True, False, True])
    means = np.array([[2.0, 10.0]] * 4 + [[5.0, 5.0]])
    phis = np.full((5, 2), 0.1)
    call = selection.bimodal_call(delta, weights, converged, means, phis)
    assert call.tolist() == [True, False, False, False, False]
