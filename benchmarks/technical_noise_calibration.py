"""Calibration, power and cost of ``scmix.tl.technical_noise`` on simulated data.

Cells have bimodal size factors (two modes a factor 4 apart, log-normal jitter 0.2, mean
1). 90 spike-ins (means 0.5-2000, log-uniform) follow the technical trend
``phi = a0 + a1 / mu`` (a0 = 0.05, a1 = 0.5) with the scatter of real spike-ins:
``log phi`` is the trend's plus a normal of SD ``--scatter`` (default 0.4, about what
Zeisel's and Svensson's spike-ins show; 0 puts them on the trend). Null genes (means
0.5-500) are drawn the same way; alternative genes (means 2-200) have ``extra`` added
to their (scattered) technical dispersion.
Both size factors are the true ones (``spike_in_size_factors="size_factors"``) unless
``--totals``: then the spike-ins use their totals (the default of the tool).

Run from the repository root::

    python benchmarks/technical_noise_calibration.py [--cells 600] [--genes 2000]
                                                     [--seeds 5] [--totals] [--scatter 0.4]

Prints, per seed, the fitted trend and scatter, the null rejection rate at 0.05 and 0.01
of the null genes drawn from the true model and of as many drawn from the model fitted
on the spike-ins (trend and scatter; the same cells and spike-ins, tested again), then
the pooled rates (by mean bin for the first), the power (BH-adjusted, FDR 0.05) by
extra dispersion and the wall time per run.
"""

from __future__ import annotations

import argparse
import time

import anndata as ad
import numpy as np

import scmix

A0, A1 = 0.05, 0.5
EXTRAS = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def simulate(rng, n_cells, n_null, n_alt, scatter):
    s = np.where(rng.random(n_cells) < 0.5, 0.5, 2.0) * np.exp(rng.normal(0, 0.2, n_cells))
    s /= s.mean()
    spike_mu = np.exp(rng.uniform(np.log(0.5), np.log(2000), 90))
    null_mu = np.exp(rng.uniform(np.log(0.5), np.log(500), n_null))
    alt_mu = np.tile(np.exp(rng.uniform(np.log(2), np.log(200), n_alt)), len(EXTRAS))
    extra = np.repeat(EXTRAS, n_alt)
    mu = np.r_[null_mu, alt_mu, spike_mu]
    technical = (A0 + A1 / mu) * np.exp(rng.normal(0.0, scatter, mu.size))
    phi = technical + np.r_[np.zeros(n_null), extra, np.zeros(90)]
    x = rng.negative_binomial(1 / phi, 1 / (1 + s[:, None] * mu * phi))
    adata = ad.AnnData(x.astype(np.float32))
    adata.var["spike_in"] = np.r_[np.zeros(n_null + extra.size, bool), np.ones(90, bool)]
    adata.obs["size_factors"] = s
    return adata, null_mu, extra


def from_fitted(rng, adata, n_genes):
    """``n_genes`` null genes drawn from the technical model fitted on ``adata``'s
    spike-ins (trend and scatter), with the same cells and the same spike-in counts."""
    trend = adata.uns["noise"]["trend"]
    s = adata.obs["noise_size_factors"].to_numpy()
    mu = np.exp(rng.uniform(np.log(0.5), np.log(500), n_genes))
    phi = (trend["a0"] + trend["a1"] / mu) * np.exp(rng.normal(0, trend["scatter_sd"], n_genes))
    x = rng.negative_binomial(1 / phi, 1 / (1 + s[:, None] * mu * phi)).astype(np.float32)
    spikes = adata.var["spike_in"].to_numpy()
    out = ad.AnnData(np.hstack([x, np.asarray(adata.X[:, spikes])]))
    out.var["spike_in"] = np.r_[np.zeros(n_genes, bool), np.ones(spikes.sum(), bool)]
    out.obs["size_factors"] = adata.obs["size_factors"].to_numpy()
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cells", type=int, default=600)
    parser.add_argument("--genes", type=int, default=2000, help="null genes per seed")
    parser.add_argument("--alt", type=int, default=200, help="genes per extra dispersion")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--totals", action="store_true")
    parser.add_argument("--scatter", type=float, default=0.4, help="SD of log phi")
    args = parser.parse_args()
    pvals, means, called, extras, times, fitted = [], [], [], [], [], []
    for seed in range(args.seeds):
        rng = np.random.default_rng(1000 + seed)
        adata, null_mu, extra = simulate(rng, args.cells, args.genes, args.alt, args.scatter)
        start = time.perf_counter()
        scmix.tl.technical_noise(
            adata, spike_in_size_factors=None if args.totals else "size_factors"
        )
        times.append(time.perf_counter() - start)
        p = adata.var["noise_pvalue"].to_numpy()
        trend = adata.uns["noise"]["trend"]
        null = p[: args.genes]
        print(
            f"seed {seed}: a0 {trend['a0']:.4f} a1 {trend['a1']:.3f} tau {trend['scatter_sd']:.3f} "
            f"({trend['n_spike_ins_used']} spike-ins)  P(p<0.05) {np.mean(null < 0.05):.4f}"
            f"  P(p<0.01) {np.mean(null < 0.01):.4f}  {times[-1]:.1f} s"
        )
        again = from_fitted(rng, adata, args.genes)
        scmix.tl.technical_noise(
            again, spike_in_size_factors=None if args.totals else "size_factors"
        )
        fitted.append(again.var["noise_pvalue"].to_numpy()[: args.genes])
        print(
            f"        genes from the fitted model: P(p<0.05) {np.mean(fitted[-1] < 0.05):.4f}"
            f"  P(p<0.01) {np.mean(fitted[-1] < 0.01):.4f}"
        )
        pvals.append(null)
        means.append(null_mu)
        var = adata.var["noise_variable"].to_numpy()
        called.append(var[args.genes : args.genes + extra.size])
        extras.append(extra)
    p, mu = np.concatenate(pvals), np.concatenate(means)
    print(f"\npooled null ({p.size} genes): P(p<0.05) {np.mean(p < 0.05):.4f}", end="")
    print(f"  P(p<0.01) {np.mean(p < 0.01):.4f}")
    pf = np.concatenate(fitted)
    print(f"pooled null from the fitted model: P(p<0.05) {np.mean(pf < 0.05):.4f}", end="")
    print(f"  P(p<0.01) {np.mean(pf < 0.01):.4f}")
    for lo, hi in [(0.5, 2), (2, 10), (10, 50), (50, 500)]:
        sel = (mu >= lo) & (mu < hi)
        print(f"  mean {lo:>5}-{hi:<4} n={sel.sum():5d}  P(p<0.05) {np.mean(p[sel] < 0.05):.4f}")
    called, extra = np.concatenate(called), np.concatenate(extras)
    print("\npower (padj <= 0.05), means 2-200:")
    for e in EXTRAS:
        print(f"  extra dispersion {e:<5} power {called[extra == e].mean():.3f}")
    n_genes = args.genes + args.alt * len(EXTRAS) + 90
    print(f"\n{n_genes} genes x {args.cells} cells: median {np.median(times):.2f} s per run")


if __name__ == "__main__":
    main()
