"""size_factor_modes (CAVI on log size factors), the start it gives fit_mixture, its plot."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import scmix


def test_recovers_simulated_modes():
    adata = scmix.datasets.simulate(
        n_cells=3000,
        n_genes=2,
        size_factor_modes=(0.5, 2.0),
        size_factor_weights=(0.3, 0.7),
        size_factor_sd=0.15,
        random_state=4,
    )
    scmix.tl.size_factor_modes(adata)
    modes = adata.uns["size_factor_modes"]
    np.testing.assert_allclose(modes["size_factors"], [0.5, 2.0], rtol=0.03)
    np.testing.assert_allclose(modes["weights"], [0.3, 0.7], atol=0.02)
    np.testing.assert_allclose(modes["sds"], 0.15, rtol=0.1)
    trace = modes["elbo_trace"]
    assert np.all(np.diff(trace) >= -1e-9 * np.abs(trace[1:]))
    labels = adata.obs["size_factor_modes"]
    assert isinstance(labels.dtype, pd.CategoricalDtype)
    assert (labels.astype(int).to_numpy() == adata.obs["size_factor_mode"]).mean() > 0.99
    assert adata.obsm["size_factor_modes"].shape == (3000, 2)


def test_chooses_k_by_the_elbo():
    one = scmix.datasets.simulate(n_cells=2000, n_genes=1, size_factors="lognormal", random_state=5)
    scmix.tl.size_factor_modes(one, [1, 2, 3])
    assert one.uns["size_factor_modes"]["n_components"] == 1
    assert set(one.uns["size_factor_modes"]["elbo_by_k"]) == {"1", "2", "3"}


@pytest.fixture(scope="module")
def svensson_modes(svensson_20312):
    adata = svensson_20312.copy()
    scmix.tl.size_factor_modes(adata, 2)
    return adata


def test_svensson_two_modes(svensson_modes):
    """Measured: modes at s = 0.56 and 1.32 with weights 0.56 and 0.44 (log sds 0.73, 0.11)."""
    modes = svensson_modes.uns["size_factor_modes"]
    low, high = modes["size_factors"]
    assert 0.4 < low < 0.7 and 1.2 < high < 1.45
    assert modes["sds"][1] < 0.5 * modes["sds"][0]  # a sharp upper mode, a broad lower one
    assert 0.4 < modes["weights"][1] < 0.5
    trace = modes["elbo_trace"]
    assert np.all(np.diff(trace) >= -1e-9 * np.abs(trace[1:])) and modes["converged"]


def test_modes_start_never_loses_to_the_default(svensson_modes):
    adata = svensson_modes.copy()
    expressed = np.asarray((adata.X > 0).mean(axis=0)).ravel() >= 0.1
    scmix.tl.fit_mixture(adata, size_factors=None, mask_var=expressed, key_added="default")
    scmix.tl.fit_mixture(
        adata, size_factors=None, mask_var=expressed, key_added="modes", init="size_factor_modes"
    )
    default = adata.var["default_loglik"][expressed]
    modes = adata.var["modes_loglik"][expressed]
    assert (modes >= default - 1e-6 * default.abs()).all()
    assert adata.uns["modes"]["params"]["init"] == "size_factor_modes"


def test_init_errors(svensson_modes):
    adata = svensson_modes[:, :5].copy()
    with pytest.raises(KeyError, match="size_factor_modes"):
        scmix.tl.fit_mixture(adata, init="nope")
    with pytest.raises(ValueError, match="n_components"):
        scmix.tl.fit_mixture(adata, 3, init="size_factor_modes")
    with pytest.raises(ValueError, match="method"):
        scmix.tl.size_factor_modes(adata, method="em")


def test_plot_draws_each_mode_and_the_mixture(svensson_modes):
    ax = scmix.pl.size_factors(svensson_modes, show=False)
    labels = [line.get_label() for line in ax.get_lines()]
    assert len(labels) == 3 and labels[-1] == "mixture" and labels[0].startswith("mode 0")
    plt.close("all")
    with pytest.raises(KeyError, match="size_factor_modes"):
        scmix.pl.size_factors(svensson_modes, key="other")


@pytest.mark.parametrize("model", ["full", "textbook"])
def test_elbo_never_decreases_on_real_size_factors(svensson_20312, model):
    log_sf = np.log(svensson_20312.obs["size_factors"].to_numpy())
    # the textbook model has unit-variance components: standardise for it
    x = (log_sf - log_sf.mean()) / log_sf.std() * 3 if model == "textbook" else log_sf
    for k in (2, 3):
        fit = scmix.models.GaussianMixtureCAVI(k, model=model, n_init=2).fit(x)
        bounds = np.asarray(fit.lower_bounds_)
        assert np.all(np.diff(bounds) >= -1e-10 * np.abs(bounds[1:])), (model, k)
        assert fit.converged_
