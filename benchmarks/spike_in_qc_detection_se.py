"""Coverage of the 95% interval of the spike-in detection limit (``scmix.tl.spike_in_qc``)
under extra-binomial scatter of the spike-ins, for three standard errors of log10 e50:
binomial (every cell an independent trial), quasi-binomial (binomial times the square
root of Pearson's X^2 / (m - 2), floored at 1) and the robust HC3 sandwich over spike-ins
that scmix reports (floored at the binomial one). All three intervals use t_{0.975, m-2}.
Then the real data: dispersion and the binomial and robust standard errors.

Run from the repository root (``$SCMIX_DATA_DIR``, default ``../shared/data``)::

    python benchmarks/spike_in_qc_detection_se.py [--reps 1000]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from scipy.special import expit
from scipy.stats import t as student_t

import scmix
from scmix._core.stats import spike_qc

SCENARIOS = [  # kind, spike-ins, cells, spread (logit sd, or 10 x intra-class correlation)
    ("binomial", 40, 1000, 0.0),
    ("logit-normal", 40, 1000, 0.5),
    ("logit-normal", 40, 1000, 1.0),
    ("logit-normal", 12, 2000, 0.5),
    ("logit-normal", 57, 1464, 0.8),
    ("logit-normal", 90, 2000, 1.0),
    ("beta-binomial", 20, 500, 0.5),
    ("beta-binomial", 40, 1000, 0.5),
]


def simulate(rng, kind, expected, n, spread, e50=3.0, slope=2.5):
    eta = slope * (np.log10(expected) - np.log10(e50))
    if kind == "logit-normal":
        return rng.binomial(n, expit(eta + rng.normal(0.0, spread, expected.size)))
    p = expit(eta)
    if kind == "beta-binomial":
        size = 10 / spread - 1
        p = rng.beta(p * size, (1 - p) * size)
    return rng.binomial(n, p)


def coverage(kind, m, n, spread, reps, rng, e50=3.0):
    expected = np.geomspace(0.1, 1000, m)
    hits = np.zeros(3)
    done = 0
    for _ in range(reps):
        fit = spike_qc.detection_limit(expected, simulate(rng, kind, expected, n, spread), n)
        if not fit.converged:
            continue
        done += 1
        quasi = fit.se_log10_limit_binomial * np.sqrt(max(fit.dispersion, 1.0))
        q = student_t.ppf(0.975, fit.df)
        for i, se in enumerate((fit.se_log10_limit_binomial, quasi, fit.se_log10_limit)):
            hits[i] += abs(np.log10(fit.limit) - np.log10(e50)) <= q * se
    return hits / done


def real_data():
    out = []
    for name, loader, column in [
        ("zeisel2015", scmix.datasets.zeisel2015, "ercc_expected_molecules"),
        (
            "svensson2017 20312 (Mix 1 attomoles/ul)",
            scmix.datasets.svensson2017,
            "ercc_mix1_attomoles_ul",
        ),
        ("tung2017 (Mix 1 attomoles/ul)", scmix.datasets.tung2017, "ercc_mix1_attomoles_ul"),
    ]:
        adata = loader()
        scmix.tl.spike_in_qc(adata, expected_molecules=column)
        d = adata.uns["spike_in_qc"]["detection"]
        out.append((name, d))
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=1000)
    args = parser.parse_args()
    os.environ.setdefault("SCMIX_DATA_DIR", str(Path("../shared/data").resolve()))
    rng = np.random.default_rng(0)
    print(f"coverage of the 95% interval of e50 over {args.reps} data sets")
    header = ("scatter", "m", "cells", "spread", "binomial", "quasi", "robust")
    print(" ".join(f"{h:>{w}}" for h, w in zip(header, (14, 3, 5, 6, 9, 6, 7), strict=True)))
    for kind, m, n, spread in SCENARIOS:
        b, q, r = coverage(kind, m, n, spread, args.reps, rng)
        print(f"{kind:>14} {m:3d} {n:5d} {spread:6.2f} {b:9.3f} {q:6.3f} {r:7.3f}")
    print("\nreal data: detection limit, dispersion X^2/(m-2), se of log10 e50")
    for name, d in real_data():
        lo, hi = d["detection_limit_ci"]
        print(
            f"{name}: e50 {d['detection_limit']:.3g} (95% {lo:.3g}-{hi:.3g}), dispersion "
            f"{d['dispersion']:.1f}, se binomial {d['log10_detection_limit_se_binomial']:.4f}, "
            f"robust {d['log10_detection_limit_se']:.4f}"
        )


if __name__ == "__main__":
    main()
