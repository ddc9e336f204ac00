"""Modes of a 1-D Gaussian mixture density (maxima, antimodes, merging of small modes) and
the MAD rule within modes, against hand-made mixtures and the plain MAD rule."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import optimize

from scmix._core.stats import modes, spike_qc


def test_two_separated_components_make_two_modes_with_the_antimode_at_the_density_minimum():
    means, sds, weights = np.array([0.0, 4.0]), np.array([1.0, 0.5]), np.array([0.3, 0.7])
    centres, heights, antimodes, depths = modes.density_modes(means, sds, weights)
    np.testing.assert_allclose(centres, means, atol=0.01)
    density = lambda x: modes.mixture_density(np.atleast_1d(x), means, sds, weights)[0]  # noqa: E731
    minimum = optimize.minimize_scalar(density, bounds=(0.5, 3.5), method="bounded").x
    np.testing.assert_allclose(antimodes, [minimum], atol=2e-3)
    np.testing.assert_allclose(heights, [density(c) for c in centres])
    assert depths[0] < heights.min()


@pytest.mark.parametrize(
    ("means", "sds", "weights"),
    [
        ([0.0, 0.0], [1.0, 3.0], [0.5, 0.5]),  # same centre, heavy tail
        ([0.0, 1.0], [1.0, 1.0], [0.5, 0.5]),  # overlapping: a flat top, one mode
        ([0.0, 1.5], [0.5, 2.0], [0.7, 0.3]),  # skewed bulk
        ([2.0], [1.0], [1.0]),
    ],
    ids=["heavy tail", "flat top", "skewed", "one component"],
)
def test_components_without_separate_maxima_make_one_mode(means, sds, weights):
    centres, _, antimodes, _ = modes.density_modes(means, sds, weights)
    assert centres.size == 1 and antimodes.size == 0


def test_a_handful_of_outlying_values_is_merged_into_the_bulk():
    rng = np.random.default_rng(0)
    values = np.r_[rng.normal(0, 1, 500), np.full(5, -10.0)]
    found = modes.find_modes(values, [-10.0, 0.0], [0.1, 1.0], [0.01, 0.99], min_count=10)
    assert found.n_modes == 1 and found.main == 0 and found.counts.tolist() == [505]
    np.testing.assert_allclose(found.centres, [0.0], atol=0.01)
    assert (found.labels(values) == 0).all()


def test_a_small_middle_mode_joins_the_neighbour_across_the_shallower_antimode():
    """Modes at 0, 3 (small) and 5: 3 lies closer to 5, the valley towards 5 is shallower
    (higher), so the merged mode spans 3 and 5 and keeps the higher maximum, at 5."""
    means, sds, weights = [0.0, 3.0, 5.0], [0.5, 0.3, 0.5], [0.5, 0.02, 0.48]
    values = np.r_[np.zeros(500), np.full(20, 3.0), np.full(480, 5.0)]
    found = modes.find_modes(values, means, sds, weights, min_count=50)
    assert found.n_modes == 2
    np.testing.assert_allclose(found.centres, [0.0, 5.0], atol=0.01)
    assert found.counts.tolist() == [500, 500] and found.antimodes[0] < 3.0
    assert found.main == 0  # the higher density maximum (weight 0.5 against 0.48)


def test_labels_follow_the_antimodes_and_minus_infinity_is_in_the_lowest_mode():
    found = modes.Modes(np.array([0.0, 5.0]), np.array([1.0, 2.0]), np.array([2.5]), [1, 1], 1)
    np.testing.assert_array_equal(found.labels([-np.inf, 0.0, 2.5, 9.0]), [0, 0, 1, 1])


def test_mode_rule_with_one_mode_is_the_plain_mad_rule():
    rng = np.random.default_rng(1)
    values = np.r_[rng.normal(0, 1, 200), -8.0, -np.inf, np.nan]
    rules = spike_qc.mode_mad_outliers(
        values, np.zeros(values.size, dtype=int), 1, 0, nmads=3.0, metric="v"
    )
    plain = spike_qc.mad_outliers(values, nmads=3.0, tail="lower", metric="v")
    np.testing.assert_array_equal(rules.low.outlier, plain.outlier)
    assert (rules.low.median, rules.low.mad, rules.low.threshold) == (
        plain.median,
        plain.mad,
        plain.threshold,
    )
    assert not rules.low_mode.any() and rules.low.mode == 0


def test_mode_rule_by_hand_with_a_lower_a_main_and_an_upper_mode():
    """Mode 0: -5, 1..5 (median 2.5, MAD 1.5 x 1.4826), mode 1 (main): 10..14 (median 12,
    MAD 1.4826), mode 2: 20, 60 (median 40, MAD 20 x 1.4826: its threshold is the lowest,
    but modes above the main one do not excuse a low value)."""
    values = np.array([-5.0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 20, 60])
    labels = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2])
    rules = spike_qc.mode_mad_outliers(values, labels, 3, 1, nmads=2.0, metric="v")
    mad = 1.4826
    expected = [2.5 - 2 * 1.5 * mad, 12 - 2 * mad, 40 - 2 * 20 * mad]
    np.testing.assert_allclose([r.threshold for r in rules.per_mode], expected)
    assert rules.low.mode == 0 and rules.low.threshold == pytest.approx(expected[0])
    np.testing.assert_array_equal(np.flatnonzero(rules.low.outlier), [0])
    # low for the main mode (below 12 - 2 MAD = 9.03) but within mode 0
    np.testing.assert_array_equal(np.flatnonzero(rules.low_mode), [1, 2, 3, 4, 5])
    assert rules.main_threshold == pytest.approx(expected[1])


def test_capture_modes_finds_two_modes_and_one_without_room_for_two():
    rng = np.random.default_rng(2)
    values = np.r_[rng.normal(np.log(0.05), 0.15, 300), rng.normal(np.log(0.2), 0.15, 700)]
    found = spike_qc.capture_modes(values, (1, 2, 3), min_weight=0.05, random_state=0)
    assert found.modes.n_modes == 2 and found.modes.main == 1
    np.testing.assert_allclose(np.exp(found.modes.centres), [0.05, 0.2], rtol=0.05)
    assert abs(found.modes.counts[0] - 300) <= 3
    summary = found.summary()
    assert summary["mixture"]["n_components"] in (2, 3) and set(
        summary["mixture"]["elbo_by_k"]
    ) == {"1", "2", "3"}
    # 15 values: no room for two modes of 10; K = 1 only
    few = spike_qc.capture_modes(values[:15], (1, 2, 3), min_weight=0.05)
    assert few.modes.n_modes == 1 and set(few.elbo_by_k) == {1}
    # one distinct value: no fit at all
    same = spike_qc.capture_modes(np.r_[np.full(30, 1.0), -np.inf], (1, 2), min_weight=0.05)
    assert same.fit is None and same.modes.n_modes == 1 and "mixture" not in same.summary()
