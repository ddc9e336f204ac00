"""dask.distributed scaling: 1 vs 2 single-threaded workers of a LocalCluster.

Run from the repository root (needs ``pip install -e ".[dask]"``)::

    python benchmarks/dask_scaling.py [--genes 20000] [--cells 10000]

K=2 NB on the sparse workload of ``iteration_cost.py`` (about 10% non-zero), as an
AnnData whose ``X`` is a dask array of sparse gene blocks, fitted by
``scmix.tl.fit_mixture`` on a ``LocalCluster(n_workers=w, threads_per_worker=1)``.
Prints the wall time per cluster size, the speed-up of 2 workers over 1, and the
largest log-likelihood difference to the in-memory fit.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import anndata as ad
import dask.array as da
import numpy as np
from iteration_cost import sparse_counts

import scmix


def fit_on_cluster(adata, n_workers: int, chunk_size: int) -> tuple[float, np.ndarray]:
    import distributed

    with (
        distributed.LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
    ):
        fitted = adata.copy()
        start = time.perf_counter()
        scmix.tl.fit_mixture(
            fitted,
            size_factors="size_factors",
            chunk_size=chunk_size,
            store_responsibilities=False,
        )
        seconds = time.perf_counter() - start
    return seconds, fitted.var["scmix_loglik"].to_numpy()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--genes", type=int, default=20_000)
    parser.add_argument("--cells", type=int, default=10_000)
    parser.add_argument("--chunk-size", type=int, default=250)
    parser.add_argument("--skip-in-memory", action="store_true")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)
    X, sf = sparse_counts(args.cells, args.genes, seed=99)
    adata = ad.AnnData(X.tocsc())
    adata.obs["size_factors"] = sf
    lazy = adata.copy()
    lazy.X = da.from_array(X.tocsc(), chunks=(args.cells, args.chunk_size), asarray=False)
    rows = []
    for n_workers in (1, 2):
        seconds, loglik = fit_on_cluster(lazy, n_workers, args.chunk_size)
        rows.append((n_workers, seconds, loglik))
        print(f"   {n_workers} single-threaded worker(s): {seconds:.1f} s", flush=True)
    speedup = rows[0][1] / rows[1][1]
    print(f"   2 workers vs 1: {speedup:.2f}x (target >= 1.6x)")
    print(
        f"   1 vs 2 workers, max |loglik difference|: {np.max(np.abs(rows[0][2] - rows[1][2])):.1e}"
    )
    if not args.skip_in_memory:
        memory = adata.copy()
        scmix.tl.fit_mixture(
            memory,
            size_factors="size_factors",
            chunk_size=args.chunk_size,
            store_responsibilities=False,
        )
        diff = np.max(np.abs(memory.var["scmix_loglik"].to_numpy() - rows[1][2]))
        print(f"   dask vs in-memory, max |loglik difference|: {diff:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
