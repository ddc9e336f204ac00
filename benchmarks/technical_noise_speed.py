"""Time of ``scmix.tl.technical_noise`` on 20,000 genes x 10,000 cells (issue 21: under a
minute on this machine), against the one-component NB fit of the same genes, which it
contains, in the same process.

Run from the repository root::

    python benchmarks/technical_noise_speed.py                  # 20,000 genes x 10,000 cells
    python benchmarks/technical_noise_speed.py --genes 2000     # a slice

Workload: ``iteration_cost.sparse_counts(cells, genes, seed=99)`` (NB counts with bimodal
size factors and low means, about 13% non-zero, sparse CSR) and 92 spike-ins (means
0.5-2000, on the trend 0.05 + 0.5/mean with log-normal scatter of SD 0.4), library-size
factors of the genes as ``size_factors``. After a warm-up on a slice (numba compiles),
each is run ``--repeats`` times, alternately; printed: the best wall time of each, their
ratio, the share of the time in the null fits, and the genes called.
"""

from __future__ import annotations

import argparse
import time
import warnings

import anndata as ad
import numpy as np
from iteration_cost import sparse_counts
from scipy import sparse

import scmix
from scmix._core.families import get_family
from scmix._core.fit.matrix import fit_matrix
from scmix._core.stats import technical_noise as engine


def workload(n_cells: int, n_genes: int) -> ad.AnnData:
    genes, s = sparse_counts(n_cells, n_genes, seed=99)
    rng = np.random.default_rng(7)
    mu = np.exp(rng.uniform(np.log(0.5), np.log(2000), 92))
    phi = (0.05 + 0.5 / mu) * np.exp(rng.normal(0.0, 0.4, mu.size))
    spikes = rng.negative_binomial(1 / phi, 1 / (1 + s[:, None] * mu * phi))
    adata = ad.AnnData(sparse.hstack([genes, sparse.csr_matrix(spikes)], format="csr"))
    adata.var["spike_in"] = np.r_[np.zeros(n_genes, bool), np.ones(mu.size, bool)]
    totals = np.asarray(genes.sum(axis=1)).ravel()
    adata.obs["size_factors"] = totals / totals.mean()
    return adata


class NullFitTimer:
    """Adds up the wall time spent in ``engine.null_fits``."""

    def __init__(self):
        self.seconds = 0.0
        self._original = engine.null_fits

    def __enter__(self):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return self._original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        engine.null_fits = timed
        return self

    def __exit__(self, *exc):
        engine.null_fits = self._original


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cells", type=int, default=10_000)
    parser.add_argument("--genes", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    adata = workload(args.cells, args.genes)
    genes = adata[:, ~adata.var["spike_in"].to_numpy()].X.tocsc()
    sf = adata.obs["size_factors"].to_numpy()
    print(
        f"{args.genes} genes x {args.cells} cells, {genes.nnz / np.prod(genes.shape):.1%} non-zero"
    )
    small = adata[:, np.r_[0:200, args.genes : adata.n_vars]].copy()
    scmix.tl.technical_noise(small)  # warm-up: numba compiles or loads its cache
    fit_matrix(genes[:, :200], sf, family=get_family("nb"), n_components=1, store_resp=False)
    tool, fit, null = [], [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        fit_matrix(genes, sf, family=get_family("nb"), n_components=1, store_resp=False)
        fit.append(time.perf_counter() - start)
        with NullFitTimer() as timer:
            start = time.perf_counter()
            scmix.tl.technical_noise(adata)
            tool.append(time.perf_counter() - start)
        null.append(timer.seconds)
    best = int(np.argmin(tool))
    for name, times in (("NB fit of the genes (K=1)", fit), ("tl.technical_noise", tool)):
        runs = ", ".join(f"{t:.1f}" for t in times)
        print(f"  {name + ':':<28} best {min(times):6.1f} s  ({runs})")
    print(f"  ratio technical_noise / fit: {min(tool) / min(fit):.2f}")
    print(f"  null fits: {null[best]:.1f} s of the best run ({null[best] / tool[best]:.0%})")
    trend = adata.uns["noise"]["trend"]
    print(
        f"  trend a0 {trend['a0']:.3f}, a1 {trend['a1']:.3f}, tau {trend['scatter_sd']:.3f}; "
        f"{adata.uns['noise']['n_variable']} of {adata.uns['noise']['n_tested']} genes called"
    )


if __name__ == "__main__":
    main()
