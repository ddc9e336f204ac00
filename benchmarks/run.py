"""All of scmix's benchmarks in one process: tables of workloads x implementations.

Run from the repository root::

    python benchmarks/run.py --quick     # about 3 minutes
    python benchmarks/run.py             # about 12 minutes
    python benchmarks/run.py --large     # adds K=2 NB on 20,000 genes x 10,000 cells

Sections (each prints its own table; ratios are measured in this one process):

1. core EM (``run_core.py``): Svensson 2017 ERCC and simulated genes, K=2 NB, scmix
   against the per-gene scipy EM of ``baseline.py``;
2. K=1 NB with offsets: scmix against statsmodels' NB2 GLM with an offset, per gene, and
   against R glmGamPoi on the same data (``glmgampoi.py``, when Rscript is installed);
3. scaling: K=2 NB on sparse counts (about 10% non-zero), time per gene and per cell as
   genes and cells grow (cost should be linear in each);
4. Gaussian mixtures (``cavi_vs_sklearn.py``): CAVI against scikit-learn's
   ``BayesianGaussianMixture``, and EM (scikit-learn ``GaussianMixture``) for reference;
5. per-iteration cost (``iteration_cost.py``): NB and Poisson, K = 1 and 2, in ns per cell
   x component x EM iteration, against one ``np.log`` per entry;
6. (``--large``) K=2 NB on 20,000 genes x 10,000 cells, 10% non-zero, with peak memory.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import warnings

import baseline_statsmodels
import cavi_vs_sklearn
import glmgampoi
import iteration_cost
import numpy as np
import run_core
from iteration_cost import sparse_counts
from run_core import best_of

import scmix
import scmix.datasets
import scmix.models


def table(header: list[str], rows: list[list]) -> str:
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def k1_vs_statsmodels(quick: bool) -> None:
    n_genes, n_cells = (200, 1000) if quick else (2000, 1000)
    sim = scmix.datasets.simulate(
        n_cells=n_cells, n_genes=n_genes, n_components=1, dispersion=0.3, random_state=7
    )
    X, sf = np.asarray(sim.X), sim.obs["size_factors"].to_numpy()
    model = scmix.models.NegativeBinomialMixture(1)
    seconds, _ = best_of(lambda: model.fit(X, size_factors=sf), repeats=3)
    subset = np.arange(20 if quick else 50)
    sm_seconds, sm_loglik = best_of(lambda: baseline_statsmodels.fit_nb2(X[:, subset], sf), 1)
    ours = model.lower_bound_[subset]  # the maximised log-likelihood per gene
    agree = int(np.sum(ours >= sm_loglik - 1e-6 * np.abs(sm_loglik)))
    per_gene = 1e3 * seconds / n_genes
    sm_per_gene = 1e3 * sm_seconds / subset.size
    print(f"\n2. K=1 NB with offsets, {n_genes} genes x {n_cells} cells")
    print(
        table(
            ["implementation", "genes", "s", "ms/gene", "ratio", "loglik >= statsmodels"],
            [
                [
                    "scmix NegativeBinomialMixture(1)",
                    n_genes,
                    f"{seconds:.2f}",
                    f"{per_gene:.3f}",
                    f"{sm_per_gene / per_gene:.0f}x",
                    f"{agree}/{subset.size}",
                ],
                [
                    "statsmodels NB2 GLM + offset",
                    subset.size,
                    f"{sm_seconds:.2f}",
                    f"{sm_per_gene:.2f}",
                    "1x",
                    "",
                ],
                [
                    "glmGamPoi (published figure)",
                    "",
                    "",
                    "1.4",
                    f"{1.4 / per_gene:.1f}x vs it",
                    "",
                ],
            ],
        )
    )
    # measured on the same data when R and glmGamPoi are installed
    glmgampoi.main(["--genes", str(n_genes), "--cells", str(n_cells)])


def scaling(quick: bool) -> None:
    base_genes, base_cells = (250, 1000) if quick else (1000, 2000)
    rows = []
    for factor_g, factor_c in [(1, 1), (2, 1), (4, 1), (1, 2), (1, 4)]:
        n_genes, n_cells = base_genes * factor_g, base_cells * factor_c
        X, sf = sparse_counts(n_cells, n_genes, seed=factor_g * 10 + factor_c)
        model = scmix.models.NegativeBinomialMixture(2)
        seconds, _ = best_of(lambda X=X, sf=sf, model=model: model.fit(X, size_factors=sf), 1)
        ns = 1e9 * seconds / (n_genes * n_cells)
        rows.append(
            [n_genes, n_cells, f"{X.nnz / (n_genes * n_cells):.3f}", f"{seconds:.2f}", f"{ns:.0f}"]
        )
    print("\n3. scaling, K=2 NB (n_init=3 + split, plus K=1), sparse counts")
    print(table(["genes", "cells", "non-zero", "s", "ns per gene x cell"], rows))
    print(
        "   linear in genes and in cells <=> the last column stays about constant; it falls "
        "with cells where pooled counts cost nodes, not cells"
    )


def gaussian(quick: bool) -> None:
    from sklearn.mixture import GaussianMixture

    n = 20_000 if quick else 100_000
    print(f"\n4. Gaussian mixtures, N = {n}")
    cavi_vs_sklearn.main(["--n", str(n)])
    rng = np.random.default_rng(0)
    x = np.where(rng.random(n) < 0.6, rng.normal(0, 1, n), rng.normal(3, 0.8, n))
    cavi = scmix.models.GaussianMixtureCAVI(2, tol=1e-8)
    em = GaussianMixture(2, tol=1e-8 * n, max_iter=1000, random_state=0)
    t_cavi, _ = best_of(lambda: cavi.fit(x), repeats=3)
    t_em, _ = best_of(lambda: em.fit(x[:, None]), repeats=3)
    print(
        table(
            ["implementation", "s", "means", "weights"],
            [
                [
                    "scmix GaussianMixtureCAVI (full)",
                    f"{t_cavi:.3f}",
                    np.round(cavi.means_, 3),
                    np.round(cavi.weights_, 3),
                ],
                [
                    "sklearn GaussianMixture (EM)",
                    f"{t_em:.3f}",
                    np.round(np.sort(em.means_.ravel()), 3),
                    np.round(em.weights_[np.argsort(em.means_.ravel())], 3),
                ],
            ],
        )
    )


def large() -> None:
    n_genes, n_cells = 20_000, 10_000
    print(f"\n6. K=2 NB, {n_genes} genes x {n_cells} cells, sparse")
    X, sf = sparse_counts(n_cells, n_genes, seed=99)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    print(f"   non-zero fraction {X.nnz / (n_genes * n_cells):.3f}; peak memory {before:.2f} GiB")
    model = scmix.models.NegativeBinomialMixture(2)
    seconds, _ = best_of(lambda: model.fit(X, size_factors=sf), 1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        f"   time {seconds:.0f} s (target < 300 s), peak memory of the process {peak:.2f} GiB "
        "(target < 4 GiB); converged "
        f"{int(model.converged_.sum())}/{n_genes}"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller workloads")
    parser.add_argument("--large", action="store_true", help="add the 20,000 x 10,000 fit")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)
    start = time.perf_counter()
    print("1. core EM")
    run_core.main(["--quick"] if args.quick else [])
    k1_vs_statsmodels(args.quick)
    scaling(args.quick)
    gaussian(args.quick)
    print("\n5. ", end="")
    iteration_cost.main(["--genes", "100" if args.quick else "400"])
    if args.large:
        large()
    print(f"\nall benchmarks: {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
