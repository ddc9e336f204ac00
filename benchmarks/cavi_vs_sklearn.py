"""Benchmark of the 1-D CAVI Gaussian mixture ("full" model) against scikit-learn.

Run from the repository root::

    python benchmarks/cavi_vs_sklearn.py            # N = 10^5 (about 10 seconds)
    python benchmarks/cavi_vs_sklearn.py --n 20000

Data: N points (default 10^5) from 0.6 N(0, 1) + 0.4 N(3, 0.8^2), seed 0. Both fit the
same model and priors (scikit-learn's defaults for ``BayesianGaussianMixture`` with
``weight_concentration_prior_type="dirichlet_distribution"``, ``covariance_type="full"``;
``reg_covar=0`` because scmix adds nothing to the scatter) at the same tolerance: scmix's
``tol`` is per point, scikit-learn's applies to the total bound, so sklearn gets
``tol * N``. Timed in one process, best of 3 after a warm-up fit of each:

* default starts: scmix's quantile split of the sorted data; scikit-learn's k-means labels
  (its default, ``n_init=1``), whose k-means fit is part of its time;
* same start: both from the quantile-split responsibilities (scikit-learn through a
  subclass that replaces its initial labels), which compares the iterations alone.

Differences are the largest absolute differences of posterior means, weights
(``alpha_k / sum alpha``) and variances (``b_k / a_k``, scikit-learn's ``covariances_``).
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
from pathlib import Path

import numpy as np
import scipy
import sklearn
from run_core import best_of
from sklearn.mixture import BayesianGaussianMixture

from scmix._core.em.starts import quantile_labels
from scmix._core.vi import cavi
from scmix.models import GaussianMixtureCAVI

REPEATS = 3
TOL = 1e-8  # per point
N_COMPONENTS = 2


class BGMFromResp(BayesianGaussianMixture):
    """scikit-learn's variational mixture started from the responsibilities ``resp0``."""

    def _initialize_parameters(self, X, random_state, xp=None):
        self._initialize(X, self.resp0)


def simulate(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    second = rng.random(n) < 0.4
    return np.where(second, rng.normal(3.0, 0.8, n), rng.normal(0.0, 1.0, n))


def quantile_resp(x: np.ndarray) -> np.ndarray:
    resp = np.zeros((x.size, N_COMPONENTS))
    resp[np.arange(x.size), quantile_labels(x[None, :], N_COMPONENTS)[0]] = 1.0
    return resp


def sklearn_options(n: int) -> dict:
    return dict(
        n_components=N_COMPONENTS,
        weight_concentration_prior_type="dirichlet_distribution",
        covariance_type="full",
        reg_covar=0.0,
        tol=TOL * n,
        max_iter=10_000,
        random_state=0,
    )


def summary(means, weights, variances, n_iter, converged):
    order = np.argsort(means)
    return {
        "means": np.asarray(means)[order],
        "weights": np.asarray(weights)[order],
        "variances": np.asarray(variances)[order],
        "n_iter": int(n_iter),
        "converged": bool(converged),
    }


def run_scmix(x, init_resp=None):
    if init_resp is None:
        est = GaussianMixtureCAVI(N_COMPONENTS, model="full", tol=TOL, max_iter=10_000).fit(x)
        return summary(est.means_, est.weights_, est.variances_, est.n_iter_, est.converged_)
    fit = cavi.fit_cavi(
        x, N_COMPONENTS, model="full", tol=TOL, max_iter=10_000, init_resp=init_resp
    )
    p = fit.params
    return summary(
        p["m"], p["alpha"] / p["alpha"].sum(), p["b"] / p["a"], fit.n_iter, fit.converged
    )


def run_sklearn(x, init_resp=None):
    if init_resp is None:
        bgm = BayesianGaussianMixture(**sklearn_options(x.size))
    else:
        bgm = BGMFromResp(**sklearn_options(x.size))
        bgm.resp0 = init_resp
    bgm.fit(x[:, None])
    return summary(
        bgm.means_[:, 0], bgm.weights_, bgm.covariances_[:, 0, 0], bgm.n_iter_, bgm.converged_
    )


def format_table(header, cells) -> str:
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(w) for c, w in zip(cell, widths, strict=True)) for cell in cells]
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="number of points")
    args = parser.parse_args(argv)
    argv = sys.argv if argv is None else [sys.argv[0], *argv]
    print("scmix CAVI (1-D, 'full' model) vs sklearn BayesianGaussianMixture")
    print(f"command: {shlex.join(['python', *argv])}  (cwd {Path.cwd()})")
    print(
        f"machine: nproc={len(os.sched_getaffinity(0))}, {platform.platform()}; "
        f"python {platform.python_version()}, numpy {np.__version__}, "
        f"scipy {scipy.__version__}, scikit-learn {sklearn.__version__}"
    )
    x = simulate(args.n)
    resp0 = quantile_resp(x)
    print(
        f"data: N={x.size}, 0.6 N(0,1) + 0.4 N(3,0.8^2); K={N_COMPONENTS}; tol={TOL:g} per "
        f"point (sklearn tol={TOL * x.size:g}); best of {REPEATS} after a warm-up"
    )
    warm = simulate(2000, seed=1)
    run_scmix(warm)
    run_sklearn(warm)

    rows = []
    for start, init in (("default", None), ("same (quantile split)", resp0)):
        t_scmix, ours = best_of(lambda init=init: run_scmix(x, init), REPEATS)
        t_sk, theirs = best_of(lambda init=init: run_sklearn(x, init), REPEATS)
        diff = {key: np.abs(ours[key] - theirs[key]).max() for key in ("means", "weights")}
        diff["variances"] = np.abs(ours["variances"] - theirs["variances"]).max()
        for name, seconds, result in (("scmix", t_scmix, ours), ("sklearn", t_sk, theirs)):
            rows.append(
                [
                    start,
                    name,
                    f"{seconds:.4f}",
                    str(result["n_iter"]) + ("" if result["converged"] else " (not conv.)"),
                    f"{1e3 * seconds / result['n_iter']:.3f}",
                    f"{t_sk / t_scmix:.1f}x" if name == "scmix" else "",
                    f"{diff['means']:.1e}" if name == "scmix" else "",
                    f"{diff['weights']:.1e}" if name == "scmix" else "",
                    f"{diff['variances']:.1e}" if name == "scmix" else "",
                ]
            )
    header = [
        "start",
        "implementation",
        "time (s)",
        "iterations",
        "ms/iter",
        "sklearn/scmix",
        "max|d mean|",
        "max|d weight|",
        "max|d variance|",
    ]
    print()
    print(format_table(header, rows))
    print()
    print(
        f"scmix posterior means {np.array2string(ours['means'], precision=4)}, "
        f"weights {np.array2string(ours['weights'], precision=4)}, "
        f"variances {np.array2string(ours['variances'], precision=4)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
