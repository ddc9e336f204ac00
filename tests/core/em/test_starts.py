"""The shortcuts of the starts (:data:`scmix._core.em.starts._SHORTCUTS`) change how much
work the labels take, never the labels: every start equals the plain computation. With
the NB E-step's node logarithms shared by the pooled counts
(:data:`scmix._core.families.nb._SHARED_NODE_LOG1P`) too, a whole fit is the same."""

from __future__ import annotations

import numpy as np
import pytest

import scmix
from scmix._core.em import starts
from scmix._core.families import get_family, nb
from scmix._core.fit.matrix import fit_matrix
from scmix._core.settings import FitSettings


def _both_ways(monkeypatch, function):
    """``function()`` with the shortcuts and with the plain computation."""
    fast = function()
    monkeypatch.setattr(starts, "_SHORTCUTS", False)
    plain = function()
    monkeypatch.setattr(starts, "_SHORTCUTS", True)
    return fast, plain


def _sparse_expression(rng, n_genes=60, n_cells=501):
    """log1p(x / s) of genes from almost empty to dense, with the zero share around
    one half for some (the median test's boundary)."""
    size_factors = rng.lognormal(0.0, 0.5, n_cells)
    rates = np.geomspace(0.01, 20.0, n_genes)
    x = rng.poisson(np.outer(rates, size_factors)).astype(np.float64)
    # exactly half and one more than half of the cells at zero
    for g, n_zero in ((0, n_cells // 2), (1, n_cells // 2 + 1), (2, n_cells // 2 - 1)):
        x[g] = 1.0 + rng.poisson(2.0, n_cells)
        x[g, rng.choice(n_cells, n_zero, replace=False)] = 0.0
    return starts.normalised_expression(x, size_factors)


@pytest.mark.parametrize("n_components", [2, 3, 4])
def test_kmeanspp_shortcuts_give_the_plain_labels(monkeypatch, n_components):
    rng = np.random.default_rng(n_components)
    y = _sparse_expression(rng)
    # values of both signs with exact zeros (the CAVI's Gaussian data), and -0.0
    gaussian = rng.normal(0.0, 1.0, (20, 300))
    gaussian[:, ::7] = 0.0
    gaussian[:, ::11] = -0.0
    for values in (y, gaussian, np.vstack([np.zeros((1, 300)), gaussian[:1]])):
        uniforms = rng.random((values.shape[0], n_components))
        # the extremes of the second seed's draw, the first seed at a cell at 0 or not
        m = min(4, values.shape[0])
        uniforms[:m, 1] = [0.0, np.nextafter(1.0, 0.0), 1e-300, 0.5][:m]
        uniforms[:m, 0] = [0.0, 0.999, 0.0, 0.999][:m]
        fast, plain = _both_ways(
            monkeypatch, lambda v=values, u=uniforms: starts.kmeanspp_labels(v, n_components, u)
        )
        np.testing.assert_array_equal(fast, plain)


@pytest.mark.parametrize("n_cells", [500, 501])
def test_nested_start_shortcut_gives_the_plain_labels(monkeypatch, n_cells):
    rng = np.random.default_rng(n_cells)
    y = _sparse_expression(rng, n_cells=n_cells)
    uniforms = rng.random((y.shape[0], 2))
    fast, plain = _both_ways(monkeypatch, lambda: starts._nested_labels(y, 2, uniforms))
    np.testing.assert_array_equal(fast, plain)


@pytest.mark.parametrize("family", ["nb", "poisson"])
def test_a_sparse_fit_is_the_same_with_and_without_the_speed_shortcuts(monkeypatch, family):
    sim = scmix.datasets.simulate(
        n_cells=2000,  # enough cells for two or three pooled counts per gene
        n_genes=30,
        means=np.column_stack([np.full(30, 0.05), np.full(30, 0.5)]),
        size_factors="bimodal",
        random_state=3,
    )
    sf = sim.obs["size_factors"].to_numpy()

    def fit():
        return fit_matrix(
            sim.X,
            sf,
            family=get_family(family),
            n_components=2,
            settings=FitSettings(random_state=0),
            store_resp=False,
        )

    fast = fit()
    monkeypatch.setattr(starts, "_SHORTCUTS", False)
    monkeypatch.setattr(nb, "_SHARED_NODE_LOG1P", False)
    plain = fit()
    np.testing.assert_array_equal(fast.loglik, plain.loglik)
    np.testing.assert_array_equal(fast.n_iter, plain.n_iter)
    for name in fast.params:
        np.testing.assert_array_equal(fast.params[name], plain.params[name])
