"""The cost of the LRT p-values: a K = 2 NB fit (``scmix.tl.fit_mixture``, defaults)
without p-values, with ``pvalues="fast"`` (the null grid, 39 replicates per node) and with
the exact per-gene bootstrap, on simulated genes with bimodal size factors (ratios in one
run, each fit timed once).

Run from the repository root::

    python benchmarks/pvalues.py [--cells 1000] [--genes 2000 20000] [--bootstrap-genes 2000]
                                 [--bootstrap-replicates 19] [--large]

Workloads: ``--genes`` NB genes with means 0.05-50 and dispersions 0.01-2 (a tenth with
two components three fold apart) on ``--cells`` cells; with ``--large`` also the sparse
20,000 genes x 10,000 cells of ``benchmarks/run.py --large`` (low means, about 10%
non-zero). The bootstrap costs about B fits per gene, so it is timed with a few replicates
(``--bootstrap-replicates``) on one size only and extrapolated to B = 199.
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


def sparse_workload() -> ad.AnnData:
    from iteration_cost import sparse_counts  # benchmarks/ is on sys.path

    X, sf = sparse_counts(10_000, 20_000, seed=99)
    adata = ad.AnnData(X.tocsc())
    adata.obs["size_factors"] = sf
    return adata


def compare(adata: ad.AnnData, label: str) -> float:
    """Prints the fit's time without and with pvalues="fast"; returns the former."""
    plain = timed(lambda: scmix.tl.fit_mixture(adata, key_added="plain"))
    fast = timed(lambda: scmix.tl.fit_mixture(adata, pvalues="fast", key_added="fast"))
    print(
        f"{label}: fit {plain:.1f} s; with pvalues='fast' {fast:.1f} s "
        f"({fast / plain:.2f}x the fit)",
        flush=True,
    )
    return plain


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
    parser.add_argument("--large", action="store_true", help="add 20,000 x 10,000 sparse")
    args = parser.parse_args()
    warm = simulated(20, 200)
    scmix.tl.fit_mixture(warm, pvalues="fast")  # compile (or load) every kernel first
    scmix.tl.fit_mixture(warm, pvalues="bootstrap", n_bootstrap=2)
    for n_genes in args.genes:
        adata = simulated(n_genes, args.cells)
        plain = compare(adata, f"{n_genes} genes x {args.cells} cells")
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
                f"{1 + 199 * (boot - plain) / b / plain:.0f}x at B = 199)",
                flush=True,
            )
    if args.large:
        compare(sparse_workload(), "20000 genes x 10000 cells, sparse")


if __name__ == "__main__":
    main()
