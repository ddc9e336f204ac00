"""Leave-one-out check of ``scmix.tl.technical_noise`` on real spike-ins: each spike-in of
the trend is tested against the trend fitted on the others. Spike-ins are technical noise
by construction, so their rejection rate estimates the false-positive rate on real data
(the simulated calibration assumes every spike-in lies on the trend up to NB sampling).

Run from the repository root (``$SCMIX_DATA_DIR``, default ``../shared/data``)::

    python benchmarks/technical_noise_spike_in_loo.py [--dataset zeisel2015|tung2017|svensson2017]

Prints the number of spike-ins in the trend, the rejection rates at 0.05 and 0.01, and
the spike-ins' scatter of log(phi / trend) against its NB sampling error.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np

import scmix
from scmix._core.families import get_family
from scmix._core.fit.matrix import fit_matrix
from scmix._core.stats import technical_noise as engine


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="zeisel2015")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    adata = getattr(scmix.datasets, args.dataset)()
    if "spike_in" not in adata.var:
        scmix.pp.flag_spike_ins(adata)
    spikes = np.flatnonzero(adata.var["spike_in"].to_numpy())
    x = adata.X[:, spikes]
    x = (x.toarray() if hasattr(x, "toarray") else np.asarray(x)).astype(float)
    x = x[x.sum(axis=1) > 0]  # cells without spike-in counts have no spike-in factor
    s = x.sum(axis=1) / x.sum(axis=1).mean()  # the tool's default spike-in size factors
    fit = fit_matrix(x, s, family=get_family("nb"), n_components=1, store_resp=False)
    used = np.flatnonzero(fit.fitted & (fit.params["mu"][:, 0] >= 1.0))  # min_mean=1
    x = x[:, used]
    mean, disp = fit.params["mu"][used, 0], fit.dispersion[used, 0]
    loglik = fit.loglik[used]
    pvalues, log_ratio, root = np.empty(used.size), np.empty(used.size), np.empty(used.size)
    for j in range(used.size):
        others = np.arange(used.size) != j
        trend = engine.fit_trend(mean[others], disp[others])
        result = engine.noise_test(x[:, [j]], s, mean[[j]], disp[[j]], loglik[[j]], trend)
        pvalues[j] = result.pvalue[0]
        log_ratio[j] = np.log(disp[j] / trend(mean[j]))
        root[j] = result.signed_root[0]
    print(f"{args.dataset}: {x.shape[0]} cells, {used.size} spike-ins in the trend (mean >= 1)")
    print(f"  P(p<0.05) {np.mean(pvalues < 0.05):.3f}  P(p<0.01) {np.mean(pvalues < 0.01):.3f}")
    print(f"  median p {np.median(pvalues):.3f}")
    # sampling SE of log(phi_hat / trend) from the signed root: |log ratio| / |r|
    # (spike-ins fitted as Poisson, phi = 0, left out)
    ok = np.abs(root) > 0.5
    ok &= np.isfinite(log_ratio)
    se = np.abs(log_ratio[ok]) / np.abs(root[ok])
    finite = log_ratio[np.isfinite(log_ratio)]
    extra = max(np.var(finite) - np.mean(se**2), 0.0)
    print(
        f"  SD of log(phi / trend) {np.std(finite):.3f}, median sampling SE "
        f"{np.median(se):.3f}: extra scatter SD {np.sqrt(extra):.3f} (log scale)"
    )


if __name__ == "__main__":
    main()
