import numpy as np, scmix
from scmix._core.families import get_family
from scmix._core.settings import FitSettings
from scmix._core.stats import null_grid

ad = scmix.datasets.svensson2017("20312")
tot = np.asarray(ad.X.sum(1)).ravel()
s = tot / tot.mean()
rng = np.random.default_rng(0)
s = s[rng.choice(s.size, 1000, replace=False)]
s /= s.mean()
fam = get_family("nb")
for node in ([3, -4], [0, -2], [-3, -6]):
    node = np.array([node])
    big = null_grid.null_statistics(
        fam, node, s, n_components=2, n_replicates=2000, settings=FitSettings(random_state=5)
    )[0]
    big.sort()
    print(
        "node mu",
        np.exp(node[0, 0] * null_grid.STEP_MEAN).round(3),
        "phi",
        np.exp(node[0, 1] * null_grid.STEP_DISPERSION).round(4),
    )
    for t in np.quantile(big, [0.9, 0.99, 0.995, 0.999]):
        emp = np.mean(big >= t)
        ests = []
        for k in range(20):
            sub = np.sort(rng.choice(big, 49, replace=False))[None]
            start, scale, share = null_grid.exponential_tails(sub)[0]
            ests.append(min(share * np.exp(-max(t - start, 0) / scale), 1))
        print(
            f"  t {t:.2f}: empirical {emp:.4f}, tail from 49: median {np.median(ests):.4f} [{np.quantile(ests, 0.1):.4f}, {np.quantile(ests, 0.9):.4f}]"
        )
