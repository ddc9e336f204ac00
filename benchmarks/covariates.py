"""Fits with covariates (a three-level batch): scmix against glmGamPoi and flexmix.

Run from the repository root::

    python benchmarks/covariates.py [--genes 2000] [--cells 1000] [--mixture-genes 100]
                                    [--flexmix-genes 10]

1. K = 1 NB with a batch design (``fit_mixture(adata, 1, covariates="batch")``) on
   ``--genes`` genes, against R glmGamPoi ``glm_gp(Y, design = ~ batch, size_factors = s)``
   as plain maximum likelihood (no Cox-Reid adjustment, no shrinkage): ms per gene,
   the ratio, and the largest log-likelihood difference.
2. K = 2 NB on ``--mixture-genes`` genes: with the batch against without covariates
   (the ratio of the times, both in this process).
3. K = 2 Poisson with the batch, against flexmix ``FLXMRglmfix(fixed = ~ batch,
   offset = log(s))`` (``stepFlexmix``, 3 starts) on ``--flexmix-genes`` genes: ms per
   gene and the log-likelihoods. The offset must be FLXMRglmfix's ``offset`` argument:
   an ``offset()`` term in the formula is silently ignored (checked here: the
   log-likelihood then equals the fit without offsets).

R parts report "not run" when ``Rscript`` or the package is missing.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

import scmix

#: What both R scripts start with: the counts, size factors and batches _run_r wrote.
READ_DATA = r"""
args <- commandArgs(trailingOnly = TRUE)
dir <- args[1]; n_genes <- as.integer(args[2]); n_cells <- as.integer(args[3])
Y <- matrix(readBin(file.path(dir, "counts.bin"), "double", n_genes * n_cells),
            nrow = n_genes, ncol = n_cells)
s <- readBin(file.path(dir, "sf.bin"), "double", n_cells)
batch <- factor(readBin(file.path(dir, "batch.bin"), "integer", n_cells))
"""

GLMGAMPOI = r"""
suppressPackageStartupMessages(library(glmGamPoi))
fit <- function(Y) glm_gp(Y, design = ~ batch, size_factors = s, on_disk = FALSE,
                          do_cox_reid_adjustment = FALSE, overdispersion_shrinkage = FALSE)
invisible(fit(Y[1:10, ]))
elapsed <- system.time(result <- fit(Y))[["elapsed"]]
mu <- result$Mu; theta <- 1 / result$overdispersions
ll <- rowSums(dnbinom(Y, size = theta, mu = mu, log = TRUE))
writeBin(c(elapsed, ll), file.path(dir, "result.bin"))
"""

FLEXMIX = r"""
suppressPackageStartupMessages(library(flexmix))
set.seed(1)
ll <- numeric(n_genes)
elapsed <- system.time(for (j in seq_len(n_genes)) {
  d <- data.frame(y = Y[j, ], batch = batch)
  fit <- stepFlexmix(y ~ 1, data = d, k = 2, nrep = 3, verbose = FALSE,
                     model = FLXMRglmfix(fixed = ~ batch, family = "poisson", offset = log(s)))
  ll[j] <- as.numeric(logLik(fit))
})[["elapsed"]]
writeBin(c(elapsed, ll), file.path(dir, "result.bin"))
"""


def batch_counts(n_genes: int, n_cells: int, seed: int = 0) -> ad.AnnData:
    """NB counts with a three-level batch effect and size factors; half the genes have
    two components within every batch."""
    rng = np.random.default_rng(seed)
    batch = rng.integers(0, 3, n_cells)
    s = rng.lognormal(0, 0.4, n_cells)
    s /= s.mean()
    effect = np.column_stack([np.zeros(n_genes), rng.normal(0, 0.5, (n_genes, 2))])
    base = rng.lognormal(1.5, 1.0, n_genes)
    fold = np.where(np.arange(n_genes) % 2 == 1, rng.uniform(3, 8, n_genes), 1.0)
    upper = rng.random((n_genes, n_cells)) < 0.4
    m = s[None] * np.exp(effect[:, batch]) * base[:, None] * np.where(upper, fold[:, None], 1.0)
    theta = rng.lognormal(1.0, 0.5, n_genes)[:, None]
    x = rng.poisson(rng.gamma(theta, m / theta)).astype(np.float64)
    adata = ad.AnnData(x.T)
    adata.obs["batch"] = pd.Categorical(batch.astype(str))
    adata.obs["size_factors"] = s
    adata.var_names = [f"g{j}" for j in range(n_genes)]
    return adata


def _timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def _run_r(script: str, adata: ad.AnnData, package: str) -> tuple[float, np.ndarray] | None:
    if shutil.which("Rscript") is None:
        print(f"  {package}: not run (no Rscript)")
        return None
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder)
        np.asarray(adata.X, dtype=np.float64).T.ravel(order="F").tofile(path / "counts.bin")
        adata.obs["size_factors"].to_numpy(np.float64).tofile(path / "sf.bin")
        adata.obs["batch"].cat.codes.to_numpy(np.int32).tofile(path / "batch.bin")
        (path / "script.R").write_text(READ_DATA + script)
        run = subprocess.run(
            ["Rscript", str(path / "script.R"), folder, str(adata.n_vars), str(adata.n_obs)],
            capture_output=True,
            text=True,
        )
        if run.returncode != 0:
            print(f"  {package}: not run ({run.stderr.strip().splitlines()[-1:]})")
            return None
        values = np.fromfile(path / "result.bin")
    return values[0], values[1:]


def _against_peer(adata: ad.AnnData, options: dict, script: str, peer: str) -> None:
    """Time ``fit_mixture(covariates="batch", **options)`` and the R ``script`` on the
    same data; print ms per gene, the ratio and the log-likelihood differences."""
    n_genes = adata.n_vars
    seconds = _timed(lambda: scmix.tl.fit_mixture(adata, covariates="batch", **options))
    ours = seconds * 1e3 / n_genes
    print(f"  scmix: {ours:.2f} ms/gene")
    result = _run_r(script, adata, peer)
    if result is not None:
        theirs = result[0] * 1e3 / n_genes
        gap = adata.var["scmix_loglik"].to_numpy() - result[1]
        print(f"  {peer}: {theirs:.2f} ms/gene; scmix is {theirs / ours:.2f}x as fast")
        print(f"  log-likelihood, scmix - {peer}: min {gap.min():.3g}, max {gap.max():.3g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genes", type=int, default=2000)
    parser.add_argument("--cells", type=int, default=1000)
    parser.add_argument("--mixture-genes", type=int, default=100)
    parser.add_argument("--flexmix-genes", type=int, default=10)
    args = parser.parse_args()
    adata = batch_counts(args.genes, args.cells)
    warm = adata[:, :5].copy()  # compile (or load) the kernels of both paths first
    scmix.tl.fit_mixture(warm, 1, covariates="batch")
    scmix.tl.fit_mixture(warm, covariates="batch")
    scmix.tl.fit_mixture(warm)

    print(f"1. K = 1 NB, batch design, {args.genes} genes x {args.cells} cells")
    _against_peer(adata, {"n_components": 1}, GLMGAMPOI, "glmGamPoi (ML)")

    part = adata[:, : args.mixture_genes].copy()
    print(f"2. K = 2 NB, {args.mixture_genes} genes")
    plain = _timed(lambda: scmix.tl.fit_mixture(part, key_added="plain"))
    with_batch = _timed(lambda: scmix.tl.fit_mixture(part, covariates="batch"))
    print(
        f"  without covariates {plain * 1e3 / part.n_vars:.1f} ms/gene, with the batch "
        f"{with_batch * 1e3 / part.n_vars:.1f} ms/gene: ratio {with_batch / plain:.1f}"
    )

    few = adata[:, 1 : 1 + 2 * args.flexmix_genes : 2].copy()  # genes with two components
    print(f"3. K = 2 Poisson with the batch, {few.n_vars} genes")
    _against_peer(few, {"family": "poisson"}, FLEXMIX, "flexmix FLXMRglmfix")


if __name__ == "__main__":
    main()
