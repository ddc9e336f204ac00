import time, numpy as np, pandas as pd, scmix
from scipy import stats

rows = {}
for name in ["svensson 20311", "svensson 20312", "tung"]:
    if name.startswith("svensson"):
        ad = scmix.datasets.svensson2017(name.split()[1])
        scmix.pp.size_factors(ad, method="total") if False else None
        tot = np.asarray(ad.X.sum(1)).ravel()
        ad.obs["size_factors"] = tot / tot.mean()
    else:
        ad = scmix.datasets.tung2017()
        e = ad.obs["endogenous_molecules"]
        ad.obs["size_factors"] = e / e.mean()
    X = ad.X.toarray() if hasattr(ad.X, "toarray") else np.asarray(ad.X)
    expressed = (X > 0).mean(0) >= 0.1
    t = time.perf_counter()
    scmix.tl.fit_mixture(ad, mask_var=expressed, key_added="none")
    t0 = time.perf_counter() - t
    t = time.perf_counter()
    scmix.tl.fit_mixture(ad, mask_var=expressed, pvalues="fast", key_added="fast")
    t1 = time.perf_counter() - t
    t = time.perf_counter()
    scmix.tl.fit_mixture(ad, mask_var=expressed, pvalues="bootstrap", key_added="boot")
    t2 = time.perf_counter() - t
    v = ad.var[expressed]
    f, b = v["fast_lrt_pvalue"], v["boot_lrt_pvalue"]
    rows[name] = {
        "genes": int(expressed.sum()),
        "cells": ad.n_obs,
        "BIC calls": int(v["none_bimodal"].sum()),
        "fast padj<0.05": int((v["fast_lrt_padj"] < 0.05).sum()),
        "bootstrap padj<0.05": int((v["boot_lrt_padj"] < 0.05).sum()),
        "both": int(((v["fast_lrt_padj"] < 0.05) & (v["boot_lrt_padj"] < 0.05)).sum()),
        "Spearman": round(stats.spearmanr(f, b).statistic, 3),
        "fit s": round(t0, 1),
        "fast s": round(t1, 1),
        "bootstrap s": round(t2, 1),
    }
    print(name, rows[name], flush=True)
print(pd.DataFrame(rows).T.to_string())
