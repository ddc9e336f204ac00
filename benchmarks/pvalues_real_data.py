"""``pvalues="fast"`` against the exact per-gene bootstrap (B = 199) on real ERCC
spike-ins: Svensson et al. 2017 (10x Chromium ERCC-only samples 20311 and 20312) and
Tung et al. 2017 (iPSC C1 plates), each with the ERCC expressed in at least 10% of the
cells, size factors = per-cell ERCC totals (Svensson) or endogenous molecules (Tung)
scaled to mean 1.

Run from the repository root (needs ``$SCMIX_DATA_DIR``, default ``../shared/data``)::

    python benchmarks/pvalues_real_data.py

Prints per dataset: genes, cells, the BIC calls, the calls at padj < 0.05 of each method
and of both, the Spearman correlation of the two p-values, and the times (one run).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from scipy import stats

import scmix


def dataset(name: str):
    if name.startswith("svensson"):
        adata = scmix.datasets.svensson2017(name.split()[1])
        scmix.pp.size_factors(adata, method="spike_in")  # ERCC totals, mean 1
    else:
        adata = scmix.datasets.tung2017()
        molecules = adata.obs["endogenous_molecules"]
        adata.obs["size_factors"] = molecules / molecules.mean()
    X = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    return adata, (X > 0).mean(axis=0) >= 0.1


def timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def compare(name: str) -> dict:
    adata, expressed = dataset(name)
    fit = dict(mask_var=expressed)
    plain = timed(lambda: scmix.tl.fit_mixture(adata, **fit, key_added="plain"))
    fast = timed(lambda: scmix.tl.fit_mixture(adata, **fit, pvalues="fast", key_added="fast"))
    exact = timed(lambda: scmix.tl.fit_mixture(adata, **fit, pvalues="bootstrap", key_added="boot"))
    var = adata.var[expressed]
    f, b = var["fast_lrt_padj"] < 0.05, var["boot_lrt_padj"] < 0.05
    return {
        "genes": int(expressed.sum()),
        "cells": adata.n_obs,
        "BIC calls": int(var["plain_bimodal"].sum()),
        "fast padj<0.05": int(f.sum()),
        "bootstrap padj<0.05": int(b.sum()),
        "both": int((f & b).sum()),
        "Spearman": round(
            stats.spearmanr(var["fast_lrt_pvalue"], var["boot_lrt_pvalue"]).statistic, 3
        ),
        "fit s": round(plain, 1),
        "fast s": round(fast, 1),
        "bootstrap s": round(exact, 1),
    }


def main() -> None:
    scmix.tl.fit_mixture(scmix.datasets.simulate(n_cells=50, n_genes=3), pvalues="fast")
    rows = {}
    for name in ("svensson 20311", "svensson 20312", "tung"):
        rows[name] = compare(name)
        print(name, rows[name], flush=True)
    print(pd.DataFrame(rows).T.to_string())


if __name__ == "__main__":
    main()
