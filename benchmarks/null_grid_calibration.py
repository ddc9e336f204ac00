"""Prototype (issue 20): calibration of the null-grid LRT p-values on 300 null NB genes.

Run: SCMIX_DATA_DIR=../shared/data python benchmarks/null_grid_calibration.py SEED N_CELLS B
"""

import time, sys, numpy as np, scmix
from scipy import stats
from scmix._core.fit.matrix import fit_matrix
from scmix._core.families import get_family
from scmix._core.settings import FitSettings
from scmix._core.stats.null_grid import grid_lrt_pvalues

ad = scmix.datasets.svensson2017("20312")
tot = np.asarray(ad.X.sum(1)).ravel()
s_all = tot / tot.mean()
rng = np.random.default_rng(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
n_cells = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
B = int(sys.argv[3]) if len(sys.argv) > 3 else 49
s = s_all[rng.choice(s_all.size, n_cells, replace=False)]
s /= s.mean()
G = int(sys.argv[4]) if len(sys.argv) > 4 else 300
mu = np.exp(rng.uniform(np.log(0.05), np.log(50), G))
phi = np.exp(rng.uniform(np.log(0.01), np.log(2), G))
theta = 1 / phi
x = rng.poisson(rng.gamma(theta[:, None], s[None] * mu[:, None] / theta[:, None])).astype(float)
fam = get_family("nb")
settings = FitSettings(random_state=1)
t = time.perf_counter()
fit = fit_matrix(x.T, s, family=fam, n_components=2, settings=settings, store_resp=False)
t_fit = time.perf_counter() - t
t = time.perf_counter()
out = grid_lrt_pvalues(fit, s, np.arange(G), n_replicates=B, settings=settings)
t_grid = time.perf_counter() - t
p = out["lrt_pvalue"]
ok = np.isfinite(p)
print(
    f"fit {t_fit:.1f}s grid {t_grid:.1f}s ({out['n_nodes']} nodes), ratio {(t_fit + t_grid) / t_fit:.1f}x; fitted {ok.sum()}"
)
print(
    f"P(p<0.05) {np.mean(p[ok] < 0.05):.3f}  P(p<0.1) {np.mean(p[ok] < 0.1):.3f}  KS p {stats.kstest(p[ok], 'uniform').pvalue:.3g}  mean {p[ok].mean():.3f}"
)
for lo, hi in [(0.05, 0.5), (0.5, 5), (5, 50)]:
    m = ok & (mu >= lo) & (mu < hi)
    print(
        f"  mu {lo}-{hi}: n {m.sum()} P(p<0.05) {np.mean(p[m] < 0.05):.3f} KS {stats.kstest(p[m], 'uniform').pvalue:.3g}"
    )
for lo, hi in [(0.01, 0.1), (0.1, 0.5), (0.5, 2)]:
    m = ok & (phi >= lo) & (phi < hi)
    print(
        f"  phi {lo}-{hi}: n {m.sum()} P(p<0.05) {np.mean(p[m] < 0.05):.3f} KS {stats.kstest(p[m], 'uniform').pvalue:.3g}"
    )
