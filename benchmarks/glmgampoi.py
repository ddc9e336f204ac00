"""K=1 NB with size-factor offsets: scmix against R glmGamPoi on the same data.

Run from the repository root (needs ``Rscript`` with glmGamPoi, e.g. the Debian
package ``r-bioc-glmgampoi``; without it the script says so and stops)::

    python benchmarks/glmgampoi.py [--genes 2000] [--cells 1000]

The counts are ``scmix.datasets.simulate(n_components=1, dispersion=0.3,
random_state=7)`` (as section 2 of ``run.py``), handed to R as raw float64.
glmGamPoi runs ``glm_gp(Y, design = ~ 1, size_factors = s)`` twice: with its
defaults (Cox-Reid adjusted dispersion) and as the plain maximum-likelihood fit
(``do_cox_reid_adjustment = FALSE, overdispersion_shrinkage = FALSE``), the model
scmix fits; each is timed after a warm-up on 10 genes (R's ``system.time``,
elapsed). scmix ``NegativeBinomialMixture(1)`` is timed as the best of 3 in this
process. Prints ms per gene, the ratio, and the agreement of the estimates.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from run_core import best_of

import scmix.datasets
import scmix.models

R_SCRIPT = r"""
suppressPackageStartupMessages(library(glmGamPoi))
args <- commandArgs(trailingOnly = TRUE)
dir <- args[1]; n_genes <- as.integer(args[2]); n_cells <- as.integer(args[3])
Y <- matrix(readBin(file.path(dir, "counts.bin"), "double", n_genes * n_cells),
            nrow = n_genes, ncol = n_cells)
s <- readBin(file.path(dir, "size_factors.bin"), "double", n_cells)
fit_ml <- function(Y) glm_gp(Y, design = ~ 1, size_factors = s, on_disk = FALSE,
                             do_cox_reid_adjustment = FALSE, overdispersion_shrinkage = FALSE)
fit_default <- function(Y) glm_gp(Y, design = ~ 1, size_factors = s, on_disk = FALSE)
invisible(fit_ml(Y[1:10, ])); invisible(fit_default(Y[1:10, ]))
t_ml <- system.time(ml <- fit_ml(Y))[["elapsed"]]
t_default <- system.time(default <- fit_default(Y))[["elapsed"]]
writeBin(c(t_ml, t_default, exp(ml$Beta[, 1]), ml$overdispersions),
         file.path(dir, "result.bin"))
"""


def _nb_loglik(X, s, mu, phi) -> np.ndarray:
    """Per-gene NB log-likelihood (scipy), phi = 0 as Poisson."""
    from scipy import stats

    m = s[:, None] * mu[None, :]
    with np.errstate(divide="ignore"):
        theta = np.where(phi > 0, 1.0 / phi, np.inf)
    nb = stats.nbinom.logpmf(X, theta[None, :], theta[None, :] / (theta[None, :] + m))
    poisson = stats.poisson.logpmf(X, m)
    return np.where(np.isfinite(theta)[None, :], nb, poisson).sum(axis=0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--genes", type=int, default=2000)
    parser.add_argument("--cells", type=int, default=1000)
    args = parser.parse_args(argv)
    if shutil.which("Rscript") is None:
        print("   glmGamPoi: Rscript not found (apt-get install r-bioc-glmgampoi); not run")
        return 0
    sim = scmix.datasets.simulate(
        n_cells=args.cells, n_genes=args.genes, n_components=1, dispersion=0.3, random_state=7
    )
    X = np.asarray(sim.X, dtype=np.float64)
    sf = sim.obs["size_factors"].to_numpy()
    model = scmix.models.NegativeBinomialMixture(1)
    model.fit(X[:, :10], size_factors=sf)  # warm-up
    seconds, _ = best_of(lambda: model.fit(X, size_factors=sf), repeats=3)
    with tempfile.TemporaryDirectory() as tmp:
        # R reads column-major: a genes x cells matrix is X (cells x genes) in C order
        X.astype(np.float64).tofile(Path(tmp) / "counts.bin")
        sf.astype(np.float64).tofile(Path(tmp) / "size_factors.bin")
        (Path(tmp) / "fit.R").write_text(R_SCRIPT)
        run = subprocess.run(
            ["Rscript", str(Path(tmp) / "fit.R"), tmp, str(args.genes), str(args.cells)],
            capture_output=True,
            text=True,
        )
        if run.returncode != 0:
            print(f"   glmGamPoi failed:\n{run.stderr}")
            return 1
        result = np.fromfile(Path(tmp) / "result.bin")
    t_ml, t_default = result[:2]
    mu_r, phi_r = result[2 : 2 + args.genes], result[2 + args.genes :]
    fitted = np.isfinite(model.means_[:, 0])
    mu_ours, phi_ours = model.means_[:, 0], model.dispersions_[:, 0]
    ms = 1e3 * seconds / args.genes
    print(f"   K=1 NB with offsets, {args.genes} genes x {args.cells} cells")
    print(f"   scmix NegativeBinomialMixture(1): {ms:.3f} ms/gene")
    for name, t in (("glmGamPoi, maximum likelihood", t_ml), ("glmGamPoi, defaults", t_default)):
        r_ms = 1e3 * t / args.genes
        print(f"   {name}: {r_ms:.3f} ms/gene; scmix is {r_ms / ms:.1f}x faster")
    both = fitted & np.isfinite(mu_r) & np.isfinite(phi_r)
    rel_mu = np.max(np.abs(mu_ours[both] / mu_r[both] - 1))
    # dispersions near 0 (Poisson-like genes) compare in absolute terms
    diff_phi = np.abs(phi_ours[both] - phi_r[both]) / np.maximum(phi_r[both], 1e-2)
    loglik_ours = _nb_loglik(X[:, both], sf, mu_ours[both], phi_ours[both])
    loglik_r = _nb_loglik(X[:, both], sf, mu_r[both], phi_r[both])
    at_least = int(np.sum(loglik_ours >= loglik_r - 1e-9 * np.abs(loglik_r)))
    print(
        f"   log-likelihood: scmix >= glmGamPoi (ML) - 1e-9 |.| on {at_least}/{both.sum()} genes; "
        f"largest gain of scmix {np.max(loglik_ours - loglik_r):.2e}, "
        f"largest loss {np.max(loglik_r - loglik_ours):.2e}"
    )
    print(
        f"   against glmGamPoi's maximum likelihood on {both.sum()} genes: max relative "
        f"difference in mu {rel_mu:.1e}; in the dispersion, median {np.median(diff_phi):.1e}, "
        f"max {diff_phi.max():.1e}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
