"""Calibration of ``fit_mixture(pvalues="fast")`` under the one-component model: null NB
genes (means 0.05-50 per unit size factor, dispersions 0.01-2, log-uniform) on cells
with the real, bimodal size factors of Svensson et al. 2017's ERCC-only sample 20312
(per-cell ERCC totals scaled to mean 1, a random subset of cells).

Run from the repository root::

    python benchmarks/pvalues_calibration.py [--genes 3000] [--cells 1000] [--seed 0]
                                             [--replicates 39] [--random-state 0]

Prints the rejection rates at 0.05, 0.01 and 0.001, the KS test of uniformity over
all genes and by mean and dispersion, and the cost against the fit (same run).
Needs ``$SCMIX_DATA_DIR`` (default ``../shared/data``).
"""

from __future__ import annotations

import argparse
import time

import anndata as ad
import numpy as np
from scipy import stats

import scmix


def null_genes(n_genes: int, n_cells: int, seed: int) -> ad.AnnData:
    sample = scmix.datasets.svensson2017("20312")
    totals = np.asarray(sample.X.sum(axis=1)).ravel()
    rng = np.random.default_rng(seed)
    s = totals[rng.choice(totals.size, n_cells, replace=False)]
    s = s / s.mean()
    mu = np.exp(rng.uniform(np.log(0.05), np.log(50), n_genes))
    phi = np.exp(rng.uniform(np.log(0.01), np.log(2), n_genes))
    mean = s[:, None] * mu[None]
    counts = rng.poisson(rng.gamma(1 / phi, mean * phi)).astype(np.float32)
    adata = ad.AnnData(counts)
    adata.obs["size_factors"] = s
    adata.var["true_mean"], adata.var["true_dispersion"] = mu, phi
    return adata


def summary(p: np.ndarray) -> str:
    return (
        f"n {p.size:5d}  P(p<0.05) {np.mean(p < 0.05):.3f}  P(p<0.01) {np.mean(p < 0.01):.4f}"
        f"  P(p<0.001) {np.mean(p < 0.001):.4f}  KS p {stats.kstest(p, 'uniform').pvalue:.3g}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genes", type=int, default=3000)
    parser.add_argument("--cells", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--replicates", type=int, default=0, help="per node (0: default 39)")
    parser.add_argument("--random-state", type=int, default=0, help="of the fits and the grid")
    args = parser.parse_args()
    adata = null_genes(args.genes, args.cells, args.seed)
    scmix.tl.fit_mixture(adata[:, :5].copy(), pvalues="fast")  # compile / load kernels
    start = time.perf_counter()
    scmix.tl.fit_mixture(adata, key_added="plain")
    plain = time.perf_counter() - start
    start = time.perf_counter()
    scmix.tl.fit_mixture(
        adata, pvalues="fast", n_bootstrap=args.replicates, random_state=args.random_state
    )
    fast = time.perf_counter() - start
    var = adata.var
    fitted = var["scmix_loglik"].notna()
    p = var["scmix_lrt_pvalue"].to_numpy()
    print(
        f"{args.genes} null genes x {args.cells} cells, seed {args.seed}, "
        f"random_state {args.random_state}"
    )
    print(f"  fit {plain:.1f} s, with pvalues='fast' {fast:.1f} s: {fast / plain:.2f}x")
    print(f"  fitted {int(fitted.sum())}, NaN p-values among them {int(np.isnan(p[fitted]).sum())}")
    print("  all genes      ", summary(p[fitted]))
    for lo, hi in [(0.05, 0.3), (0.3, 2), (2, 50)]:
        where = fitted & (var["true_mean"] >= lo) & (var["true_mean"] < hi)
        print(f"  mean {lo:>4}-{hi:<4}  ", summary(p[where]))
    for lo, hi in [(0.01, 0.1), (0.1, 0.5), (0.5, 2)]:
        where = fitted & (var["true_dispersion"] >= lo) & (var["true_dispersion"] < hi)
        print(f"  disp {lo:>4}-{hi:<4}  ", summary(p[where]))


if __name__ == "__main__":
    main()
