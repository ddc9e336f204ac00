"""The reference of the fast LRT p-values (scmix._core.stats.null_grid): the weighted
Monte Carlo p-value against closed forms, its exponential tail, the node sets."""

from __future__ import annotations

import numpy as np
import pytest

from scmix._core.families import get_family
from scmix._core.settings import FitSettings
from scmix._core.stats import null_grid


def test_with_every_replicate_at_the_genes_model_the_pvalue_is_the_monte_carlo_one():
    rng = np.random.default_rng(0)
    null = rng.chisquare(2, 200)
    ref = np.zeros((200, 2))  # every replicate fitted exactly where the genes are
    lrt = np.quantile(null, [0.1, 0.5, 0.8, 0.9])  # within the replicates, below the tail
    p = null_grid.reference_pvalues(null, ref, lrt, np.zeros((4, 2)), np.zeros(4))
    # weight 1 each: (1 + #{T_b > t} + U #{T_b = t}) / (B + 1), U = 0
    expected = (1 + (null[None] > lrt[:, None] + 1e-6).sum(axis=1)) / 201
    np.testing.assert_allclose(p, expected)


def test_ties_are_spread_by_the_uniform():
    null = np.r_[np.zeros(100), np.linspace(1, 5, 100)]
    ref = np.zeros((200, 2))
    u = np.array([0.0, 0.5, 1.0])
    p = null_grid.reference_pvalues(null, ref, np.zeros(3), np.zeros((3, 2)), u)
    np.testing.assert_allclose(p, (1 + 100 + u * 100) / 201)


def test_weights_follow_the_distance_of_the_fitted_models():
    # replicates at distance 0.5 (in grid units) weigh half, beyond 1 nothing
    ref = np.array([[0.0, 0.0], [0.5, 0.0], [1.5, 0.0]])
    w = null_grid.kernel_weights(ref, np.zeros((1, 2)), null_grid.STEP)
    np.testing.assert_allclose(w, [[1.0, 0.5, 0.0]])
    w = null_grid.kernel_weights(np.array([[np.nan, np.nan]]), np.zeros((1, 2)), 1.0)
    assert w[0, 0] == 0.0  # an unfitted replicate does not count


def test_the_tail_is_exponential_continuous_and_at_least_as_heavy_as_chi_square():
    rng = np.random.default_rng(1)
    null = rng.exponential(0.5, 500)  # a light tail: the floor of the scale holds
    ref = np.zeros((500, 2))
    order = np.sort(null)[::-1]
    threshold = order[null_grid.TAIL_FROM]
    t = threshold + np.array([1e-9, 2.0, 10.0, 40.0])
    p = null_grid.reference_pvalues(null, ref, t, np.zeros((4, 2)), np.zeros(4))
    share = (1 + null_grid.TAIL_FROM) / 501
    np.testing.assert_allclose(p[0], share, rtol=1e-6)
    np.testing.assert_allclose(p[1:], share * np.exp(-(t[1:] - threshold) / 2.0), rtol=1e-9)
    assert np.all(np.diff(p) < 0)
    # a heavier tail keeps its own (larger) mean excess
    heavy = rng.exponential(4.0, 500)
    order = np.sort(heavy)[::-1]
    threshold, fit_from = order[null_grid.TAIL_FROM], order[null_grid.TAIL_FIT]
    excess = order[: null_grid.TAIL_FIT] - fit_from  # the mean excess of the largest
    t = threshold + 20.0
    p = null_grid.reference_pvalues(heavy, ref, np.array([t]), np.zeros((1, 2)), np.zeros(1))
    np.testing.assert_allclose(p, share * np.exp(-20.0 / excess.mean()), rtol=1e-9)


def test_a_genes_node_set_holds_its_kernel():
    fam = get_family("nb")
    coords = null_grid.fitted_coordinates(
        fam, {"mu": np.array([[2.0]]), "theta": np.array([[5.0]])}
    )
    np.testing.assert_allclose(coords, [[np.log(2.0), np.log(0.2)]])
    (node_set,) = null_grid.node_sets(coords, True)
    nodes = np.array(null_grid.nodes_of(node_set, True))
    assert nodes[:, 0].min() <= coords[0, 0] <= nodes[:, 0].max()  # the nodes either side
    assert nodes[:, 1].min() == null_grid.BOTTOM_ROW and nodes[:, 1].max() >= coords[0, 1] + 1
    assert null_grid.BOTTOM_ROW <= np.log(null_grid.DISPERSION_RANGE[0])


@pytest.mark.parametrize("family", ["nb", "poisson"])
def test_node_replicates_come_from_the_nodes_model_and_stream(family):
    fam = get_family(family)
    s = np.random.default_rng(2).lognormal(0, 0.5, 300)
    s /= s.mean()
    nodes = np.array([[1, -2], [2, -1]]) if family == "nb" else np.array([[1, 0], [2, 0]])
    settings = FitSettings(random_state=4)
    reps = null_grid.simulate_nodes(
        fam, nodes, s, n_components=2, n_replicates=30, settings=settings
    )
    again = null_grid.simulate_nodes(
        fam, nodes[::-1], s, n_components=2, n_replicates=30, settings=settings
    )
    np.testing.assert_array_equal(reps.statistic[0], again.statistic[1])  # keyed by node
    assert (reps.statistic >= 0).all()
    # the replicates' fitted means scatter around the node's
    np.testing.assert_allclose(np.median(reps.coords[:, :, 0], axis=1), nodes[:, 0], atol=0.1)
