"""The default K=2 NB fit before and after the speed work of issue 20, in one process.

Run from the repository root::

    python benchmarks/fit_speed.py                 # 20,000 genes x 10,000 cells
    python benchmarks/fit_speed.py --genes 2000    # a slice

Workload: ``iteration_cost.sparse_counts(10_000, n_genes, seed=99)`` (K=2 NB counts with
bimodal size factors and low means, about 13% non-zero), fitted by
``scmix.models.NegativeBinomialMixture(2).fit(X, size_factors=sf)`` with its defaults.
"Before" is the same fit with the private switches of the speed work set back
(:data:`SWITCHES`: the old code paths, kept for this comparison); "after" is the
default. Both run in this process, after a warm-up of both, alternately ``--repeats``
times (the machine may be shared: compare the ratio, the best of the repeats).

Printed: each time (wall and the process's CPU), the ratios before / after of the
best wall and of the best CPU times (``taskset -c 0`` runs it on one core), the
distribution of the per-gene log-likelihood differences after - before (min,
quantiles, genes below ``-1e-6 |before|``) and the peak memory of the process
(``ru_maxrss``) after the first "after" fit, which runs first.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import warnings
from contextlib import contextmanager

import numpy as np
from iteration_cost import sparse_counts

import scmix.models
from scmix._core.em import starts
from scmix._core.families import nb

#: (module, attribute, value of the old behaviour) of every private switch.
SWITCHES = [(starts, "_SHORTCUTS", False), (nb, "_SHARED_NODE_LOG1P", False)]


@contextmanager
def before_speed_work():
    """The old code paths, for the length of the block."""
    saved = [getattr(module, name) for module, name, _ in SWITCHES]
    try:
        for module, name, old in SWITCHES:
            setattr(module, name, old)
        yield
    finally:
        for (module, name, _), value in zip(SWITCHES, saved, strict=True):
            setattr(module, name, value)


def timed_fit(X, sf, old: bool):
    """(wall seconds, CPU seconds, per-gene log-likelihood) of the default fit."""
    model = scmix.models.NegativeBinomialMixture(2)
    with before_speed_work() if old else _nothing():
        wall, cpu = time.perf_counter(), time.process_time()
        model.fit(X, size_factors=sf)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return wall, cpu, model.lower_bound_


@contextmanager
def _nothing():
    yield


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--genes", type=int, default=20_000)
    parser.add_argument("--cells", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)
    X, sf = sparse_counts(args.cells, args.genes, seed=99)
    print(
        f"K=2 NB, {args.genes} genes x {args.cells} cells, sparse "
        f"({X.nnz / (args.genes * args.cells):.3f} non-zero); "
        f"memory before fitting {peak_gib():.2f} GiB"
    )
    for old in (False, True):  # warm-up: kernels loaded (or compiled) for both paths
        timed_fit(X[:, :50], sf, old)
    times = {False: [], True: []}
    loglik = {}
    peak_after = None
    for _ in range(args.repeats):
        for old in (False, True):
            wall, cpu, loglik[old] = timed_fit(X, sf, old)
            times[old].append((wall, cpu))
            label = "before" if old else "after "
            print(f"  {label}: {wall:6.1f} s wall, {cpu:6.1f} s CPU", flush=True)
            if peak_after is None:
                peak_after = peak_gib()
    (before, after), (before_cpu, after_cpu) = (
        [min(t[i] for t in times[old]) for old in (True, False)] for i in (0, 1)
    )
    print(
        f"best wall: before {before:.1f} s, after {after:.1f} s, ratio {before / after:.2f}; "
        f"best CPU: before {before_cpu:.1f} s, after {after_cpu:.1f} s, "
        f"ratio {before_cpu / after_cpu:.2f}"
    )
    diff = loglik[False] - loglik[True]
    fitted = np.isfinite(diff)
    diff, old_ll = diff[fitted], loglik[True][fitted]
    quantiles = np.quantile(diff, [0.0, 0.001, 0.01, 0.1, 0.5, 0.9, 0.99, 1.0])
    print(
        "per-gene log-likelihood after - before: "
        + ", ".join(
            f"{q}: {v:.3g}"
            for q, v in zip(
                ["min", 0.001, 0.01, 0.1, 0.5, 0.9, 0.99, "max"], quantiles, strict=True
            )
        )
    )
    worse = int((diff < -1e-6 * np.abs(old_ll)).sum())
    better = int((diff > 1e-6 * np.abs(old_ll)).sum())
    print(
        f"genes below before - 1e-6|before|: {worse} of {diff.size}; above before + "
        f"1e-6|before|: {better}"
    )
    print(f"peak memory: {peak_after:.2f} GiB after the first fit, {peak_gib():.2f} GiB at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
