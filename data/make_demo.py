"""Make ``data/demo.h5ad``, the small dataset that ``scmix fit`` uses without an input file.

Simulated with :func:`scmix.datasets.simulate`, calibrated on the Svensson et al. 2017
10x Chromium ERCC-only sample 20312 (read through ``scmix.datasets.svensson2017``, so
``SCMIX_DATA_DIR`` must point to the shared data):

* size factors: a two-component Gaussian mixture fitted by EM to the log spike-in size
  factors gives the two modes, their weights and spreads;
* spike-ins: each ERCC with a count in at least 5% of cells keeps its name, and the mean
  and dispersion of a one-component NB fitted to it with the spike-in size factors;
* endogenous-like genes ``gene_1`` ... ``gene_8`` really have two components (means 4x
  apart, weights 0.3 / 0.7), so that the demo shows both answers scmix gives;
* ``.obs["size_factors"]``: the spike-in size factors computed from the simulated ERCC
  (``scmix.pp.size_factors(method="spike_in")``), so that ``fit_mixture`` runs as is.

Run from the repository root: ``SCMIX_DATA_DIR=../shared/data python data/make_demo.py``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import anndata as ad
import numpy as np
from scipy import sparse

import scmix

N_CELLS = 1000
N_BIMODAL = 8
SEED = 2017
OUT = Path(__file__).resolve().parent / "demo.h5ad"


def two_gaussians(y: np.ndarray, n_iter: int = 500):
    """EM for a 1-D two-component Gaussian mixture: means, sds, weights (by mean)."""
    means = np.quantile(y, [0.25, 0.75])
    sds = np.full(2, y.std())
    weights = np.full(2, 0.5)
    for _ in range(n_iter):
        log_p = -0.5 * ((y[:, None] - means) / sds) ** 2 - np.log(sds) + np.log(weights)
        resp = np.exp(log_p - log_p.max(axis=1, keepdims=True))
        resp /= resp.sum(axis=1, keepdims=True)
        weights = resp.mean(axis=0)
        means = (resp * y[:, None]).sum(axis=0) / resp.sum(axis=0)
        sds = np.sqrt((resp * (y[:, None] - means) ** 2).sum(axis=0) / resp.sum(axis=0))
    order = np.argsort(means)
    return means[order], sds[order], weights[order]


def main() -> None:
    real = scmix.datasets.svensson2017("20312")
    scmix.pp.size_factors(real, method="spike_in")
    means, sds, weights = two_gaussians(np.log(real.obs["size_factors"].to_numpy()))

    detected = np.asarray((real.X > 0).mean(axis=0)).ravel() >= 0.05
    real = real[:, detected].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scmix.tl.fit_mixture(real, n_components=1, key_added="calib")
    mu = real.var["calib_mean_0"].to_numpy()
    phi = real.var["calib_dispersion_0"].to_numpy()

    spikes = scmix.datasets.simulate(
        n_cells=N_CELLS,
        n_genes=real.n_vars,
        n_components=1,
        means=mu[:, None],
        dispersion=phi[:, None],
        size_factors="bimodal",
        size_factor_modes=np.exp(means).tolist(),
        size_factor_weights=weights.tolist(),
        size_factor_sd=sds.tolist(),
        random_state=SEED,
    )
    rng = np.random.default_rng(SEED + 1)
    base = np.exp(rng.uniform(np.log(2.0), np.log(20.0), N_BIMODAL))
    genes = scmix.datasets.simulate(
        n_cells=N_CELLS,
        n_genes=N_BIMODAL,
        n_components=2,
        means=np.column_stack([base, 4.0 * base]),
        weights=[0.3, 0.7],
        dispersion=0.05,
        size_factors=spikes.obs["size_factors"].to_numpy(),
        random_state=SEED + 2,
    )

    counts = np.hstack([spikes.X, genes.X]).astype(np.int32)
    demo = ad.AnnData(sparse.csr_matrix(counts))
    demo.obs_names = [f"cell_{i}" for i in range(N_CELLS)]
    demo.var_names = [*real.var_names, *(f"gene_{j + 1}" for j in range(N_BIMODAL))]
    demo.obs["true_size_factors"] = spikes.obs["size_factors"].to_numpy()
    demo.obs["true_size_factor_mode"] = spikes.obs["size_factor_mode"].to_numpy()
    demo.var["spike_in"] = demo.var_names.str.startswith("ERCC-")
    for k in range(2):
        for field in ("mean", "dispersion", "weight"):
            one = (
                spikes.var[f"true_{field}_0"].to_numpy() if k == 0 else np.full(real.n_vars, np.nan)
            )
            if k == 0 and field == "weight":
                one = np.ones(real.n_vars)
            demo.var[f"true_{field}_{k}"] = np.concatenate(
                [one, genes.var[f"true_{field}_{k}"].to_numpy()]
            )
    demo.var["true_n_components"] = np.r_[np.ones(real.n_vars, int), np.full(N_BIMODAL, 2)]
    # spike-in size factors as a user would compute them, so that fit_mixture runs as is
    scmix.pp.size_factors(demo, method="spike_in")
    demo.uns["simulation"] = {
        "calibrated_on": "svensson2017 sample 20312 (ERCC with a count in >= 5% of cells)",
        "size_factor_modes": np.exp(means).tolist(),
        "size_factor_weights": weights.tolist(),
        "size_factor_sds": sds.tolist(),
        "n_cells": N_CELLS,
        "random_state": SEED,
        "script": "data/make_demo.py",
    }
    demo.write_h5ad(OUT, compression="gzip")
    print(
        f"wrote {OUT}: {demo.n_obs} cells x {demo.n_vars} genes ({real.n_vars} ERCC), "
        f"size-factor modes {np.round(np.exp(means), 3)} weights {np.round(weights, 3)} "
        f"log sds {np.round(sds, 3)}; {OUT.stat().st_size / 1024:.0f} KiB"
    )


if __name__ == "__main__":
    main()
