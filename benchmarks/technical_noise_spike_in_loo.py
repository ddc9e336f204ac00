"""Leave-one-out check of ``scmix.tl.technical_noise`` on real spike-ins: each spike-in of
the trend is tested against the trend and scatter fitted on the others. Spike-ins are
technical noise by construction, so their rejection rate estimates the test's
false-positive rate on real data (a simulation assumes its own model).

Run from the repository root (``$SCMIX_DATA_DIR``, default ``../shared/data``)::

    python benchmarks/technical_noise_spike_in_loo.py [--dataset zeisel2015|tung2017|svensson2017]

Prints the number of spike-ins in the trend, the scatter tau of log(phi / trend) beyond
sampling, and the rejection rates at 0.05 and 0.01 of the test with the scatter (the
default) and of the test treating the trend as exact (``scatter=False``).
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
from scipy import stats

import scmix
from scmix._core.families import get_family
from scmix._core.fit.matrix import fit_matrix
from scmix._core.stats import technical_noise as engine


def spike_ins(adata):
    """Spike-in counts (cells with a spike-in count), their size factors (the tool's
    default: totals / mean), and the free NB fits of the spike-ins with mean >= 1."""
    if "spike_in" not in adata.var:
        scmix.pp.flag_spike_ins(adata)
    x = adata.X[:, np.flatnonzero(adata.var["spike_in"].to_numpy())]
    x = (x.toarray() if hasattr(x, "toarray") else np.asarray(x)).astype(float)
    x = x[x.sum(axis=1) > 0]
    s = x.sum(axis=1) / x.sum(axis=1).mean()
    fit = fit_matrix(x, s, family=get_family("nb"), n_components=1, store_resp=False)
    used = np.flatnonzero(fit.fitted & (fit.params["mu"][:, 0] >= 1.0))  # min_mean=1
    free = (fit.params["mu"][used, 0], fit.dispersion[used, 0], fit.loglik[used])
    return x[:, used], s, free


def left_out_tests(x, s, free):
    """Per spike-in k: z and p against the trend and scatter of the others, and the
    p-value of the exact-trend test."""
    mean, disp, loglik = free
    n = mean.size
    z, p, p_exact, tau = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    for k in range(n):
        others = np.flatnonzero(np.arange(n) != k)
        trend = engine.spike_in_scatter(
            engine.Columns.from_matrix(x[:, others]),
            s,
            (mean[others], disp[others], loglik[others]),
        )
        one = engine.Columns.from_matrix(x[:, [k]])
        result = engine.noise_test(one, s, (mean[[k]], disp[[k]], loglik[[k]]), trend)
        z[k], p[k], tau[k] = result.z[0], result.pvalue[0], trend.scatter_sd
        r = np.sign(disp[k] - result.technical_dispersion[0]) * np.sqrt(result.statistic[0])
        p_exact[k] = stats.norm.sf(r)
    return z, p, p_exact, tau


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="zeisel2015")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    x, s, free = spike_ins(getattr(scmix.datasets, args.dataset)())
    trend = engine.spike_in_scatter(engine.Columns.from_matrix(x), s, free)
    z, p, p_exact, tau = left_out_tests(x, s, free)
    print(f"{args.dataset}: {x.shape[0]} cells, {free[0].size} spike-ins in the trend (mean >= 1)")
    print(
        f"  trend a0 {trend.a0:.4f}, a1 {trend.a1:.4f}; scatter tau {trend.scatter_sd:.3f} "
        f"(log scale; a factor {np.exp(trend.scatter_sd):.2f}); leave-one-out tau "
        f"{tau.min():.3f}-{tau.max():.3f}"
    )
    for name, values in (("with scatter (default)", p), ("trend as exact", p_exact)):
        print(
            f"  {name:<24} P(p<0.05) {np.mean(values < 0.05):.3f}  "
            f"P(p<0.01) {np.mean(values < 0.01):.3f}  median p {np.median(values):.3f}"
        )
    print(f"  z: mean {z.mean():.2f}, SD {z.std():.2f} (N(0, 1) if calibrated)")


if __name__ == "__main__":
    main()
