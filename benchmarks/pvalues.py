"""The cost of the LRT p-values: a K = 2 NB fit without p-values, with
``pvalues="fast"`` (the null grid, 49 replicates per node) and with the exact per-gene
bootstrap, on simulated genes with bimodal size factors (ratios in one run).

Run from the repository root::

    python benchmarks/pvalues.py [--cells 1000] [--genes 2000 20000] [--bootstrap-genes 2000]
                                 [--bootstrap-replicates 19]

The bootstrap costs about B fits per gene, so it is timed with a few replicates
(``--bootstrap-replicates``) on the first size only and reported per replicate too.
"""

from __future__ import annotations

import argparse
import time

import anndata as ad
import numpy as np

import scmix


def simulated(n_genes: int, n_cells: int, seed: int = 0) -> ad.AnnData:
    """NB genes (means 0.05-50, dispersions 0.01-2, a tenth with two components three
    fold apart) and size factors with two modes a factor 4 apart."""
    rng = np.random.default_rng(seed)
    upper_cells = rng.random(n_cells) < 1 / 3
    s = rng.lognormal(np.where(upper_cells, np.log(4.0), 0.0), 0.25)
    s /= s.mean()
    mu = np.exp(rng.uniform(np.log(0.05), np.log(50), n_genes))
    theta = 1.0 / np.exp(rng.uniform(np.log(0.01), np.log(2), n_genes))
    bimodal = rng.random(n_genes) < 0.1
    fold = np.where(bimodal[None], np.where(rng.random((n_cells, n_genes)) < 0.5, 3.0, 1.0), 1.0)
    mean = s[:, None] * mu[None] * fold
    adata = ad.AnnData(rng.poisson(rng.gamma(theta, mean / theta)).astype(np.float32))
    adata.obs["size_factors"] = s
    return adata


def timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=1000)
    parser.add_argument("--genes", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--bootstrap-genes", type=int, default=2000)
    parser.add_argument("--bootstrap-replicates", type=int, default=19)
    args = parser.parse_args()
    warm = simulated(20, 200)
    scmix.tl.fit_mixture(warm, pvalues="fast")  # compile (or load) every kernel first
    scmix.tl.fit_mixture(warm, pvalues="bootstrap", n_bootstrap=2)
    for n_genes in args.genes:
        adata = simulated(n_genes, args.cells)
        plain = timed(lambda a=adata: scmix.tl.fit_mixture(a, key_added="plain"))
        fast = timed(lambda a=adata: scmix.tl.fit_mixture(a, pvalues="fast", key_added="fast"))
        print(
            f"{n_genes} genes x {args.cells} cells: fit {plain:.1f} s; with pvalues='fast' "
            f"{fast:.1f} s ({fast / plain:.2f}x the fit)"
        )
        if n_genes == args.bootstrap_genes:
            b = args.bootstrap_replicates
            boot = timed(
                lambda a=adata, b=b: scmix.tl.fit_mixture(
                    a, pvalues="bootstrap", n_bootstrap=b, key_added="boot"
                )
            )
            print(
                f"  with the bootstrap, B = {b}: {boot:.1f} s ({boot / plain:.1f}x the fit; "
                f"{(boot - plain) / b / plain:.2f} fits' time per replicate, so about "
                f"{1 + 199 * (boot - plain) / b / plain:.0f}x at B = 199)"
            )


if __name__ == "__main__":
    main()
