"""Cost of one EM iteration against the cost of one vectorised ``log`` per entry.

Run from the repository root::

    python benchmarks/iteration_cost.py [--genes 400] [--cells 10000]

For NB and Poisson, K = 1 and 2, on sparse simulated counts (about 10% non-zero):
the fit's wall time divided by the EM iterations of every start of every gene, per
cell and component, in nanoseconds. The reference is ``np.log`` over an array of
``genes x cells`` entries (what the E-step of a plain implementation must at least
compute once per component), timed in the same process. scmix sums cells that share
a frequent count on quadrature nodes (``scmix._core.numerics.quadrature``), so it can cost
less than one log per entry; the table also gives the same fit with that off.
"""

from __future__ import annotations

import argparse
import sys
import warnings

import numpy as np
from run_core import best_of

import scmix.datasets
import scmix.models
from scmix._core.em import driver as em
from scmix._core.numerics import quadrature


def sparse_counts(n_cells: int, n_genes: int, seed: int, block: int = 2000):
    """K=2 NB counts with bimodal size factors and low means, about 10% non-zero,
    simulated ``block`` genes at a time (the simulation is dense inside a block)."""
    from scipy import sparse

    blocks, size_factors = [], "bimodal"
    for first in range(0, n_genes, block):
        n = min(block, n_genes - first)
        sim = scmix.datasets.simulate(
            n_cells=n_cells,
            n_genes=n,
            n_components=2,
            means=np.column_stack([np.full(n, 0.04), np.full(n, 0.2)]),
            dispersion=0.2,
            size_factors=size_factors,
            as_sparse=True,
            random_state=seed + first,
        )
        size_factors = sim.obs["size_factors"].to_numpy()  # the same cells in every block
        blocks.append(sim.X.tocsr())
    return sparse.hstack(blocks, format="csr"), size_factors


class IterationCounter:
    """Sums the EM iterations (M-steps) of every row (start x gene) that run_em fits."""

    def __init__(self):
        self.iterations = {}  # n_components -> total M-steps
        self._run_em = em.run_em

    def __enter__(self):
        def counting(family, data, params, *args, **kwargs):
            out = self._run_em(family, data, params, *args, **kwargs)
            k = params["mu"].shape[1]
            self.iterations[k] = self.iterations.get(k, 0) + int(out[2].sum())
            return out

        em.run_em = counting
        return self

    def __exit__(self, *exc):
        em.run_em = self._run_em


def measure(X, sf, family: str, k: int, pooled: bool) -> tuple[float, float, dict]:
    cls = scmix.models.NegativeBinomialMixture if family == "nb" else scmix.models.PoissonMixture
    before = quadrature.MIN_CELLS_PER_NODE
    quadrature.MIN_CELLS_PER_NODE = before if pooled else 10**12
    try:
        cls(k).fit(X[:, :10], size_factors=sf)  # warm-up
        with IterationCounter() as counter:
            seconds, model = best_of(lambda: cls(k).fit(X, size_factors=sf), repeats=1)
    finally:
        quadrature.MIN_CELLS_PER_NODE = before
    return seconds, float(model.lower_bound_.sum()), counter.iterations


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--genes", type=int, default=400)
    parser.add_argument("--cells", type=int, default=10_000)
    parser.add_argument(
        "--pooled-only", action="store_true", help="skip the fits without pooling (slow)"
    )
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)
    X, sf = sparse_counts(args.cells, args.genes, seed=5)
    entries = args.genes * args.cells
    values = np.random.default_rng(0).random(entries) + 0.5
    log_seconds, _ = best_of(lambda: np.log(values), repeats=5)
    log_ns = 1e9 * log_seconds / entries
    print(
        f"per-iteration cost, {args.genes} genes x {args.cells} cells, "
        f"{X.nnz / entries:.3f} non-zero; np.log: {log_ns:.2f} ns per entry"
    )
    header = [
        "family",
        "K",
        "zeros/ones pooled",
        "fit s",
        "iterations",
        "ns/(cell x comp x it)",
        "vs one log",
        "sum loglik",
    ]
    rows = []
    for family in ("nb", "poisson"):
        for k in (1, 2):
            for pooled in (True,) if args.pooled_only else (True, False):
                seconds, loglik, iterations = measure(X, sf, family, k, pooled)
                # iterations of the K-component fit (and of the K=1 fit that comes with it)
                work = sum(kk * it for kk, it in iterations.items()) * args.cells
                # a Poisson K=1 start is the closed-form optimum: no iteration at all
                ns = 1e9 * seconds / work if work else 0.0
                rows.append(
                    [
                        family,
                        k,
                        "yes" if pooled else "no",
                        f"{seconds:.2f}",
                        sum(iterations.values()),
                        f"{ns:.2f}" if work else "-",
                        f"{ns / log_ns:.1f}x" if work else "-",
                        f"{loglik:.3f}",
                    ]
                )
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))
    print(
        "   (fit time includes starts and the final exact E-step; iterations count every "
        "start of every gene, K=1 fits included, EM and Newton steps alike; -: no step)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
