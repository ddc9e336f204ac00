"""Make ``docs/svensson_ercc.png``, the figure of the README.

ERCC-00002 in the Svensson et al. 2017 Chromium ERCC-only sample 20312: its counts are
bimodal, a two-component NB fits them without size factors (called bimodal), but with
spike-in size factors as offsets one component explains them (not bimodal), and the
counts divided by the size factors have a single mode.

Run from the repository root: ``SCMIX_DATA_DIR=../shared/data python docs/make_readme_figure.py``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

import scmix

OUT = Path(__file__).resolve().parent / "svensson_ercc.png"
GENE = "ERCC-00002"


def main() -> None:
    adata = scmix.datasets.svensson2017("20312")
    scmix.pp.size_factors(adata, method="spike_in")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the two ERCC without counts
        scmix.tl.fit_mixture(adata, size_factors=None, key_added="raw")
        scmix.tl.fit_mixture(adata)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4), layout="constrained")
    scmix.pl.mixture(adata, GENE, key="raw", ax=axes[0])
    scmix.pl.mixture(adata, GENE, ax=axes[1])
    scmix.pl.mixture(adata, GENE, scale="normalised", ax=axes[2])
    axes[0].set_title(f"{GENE}, no size factors: ΔBIC = {adata.var.loc[GENE, 'raw_delta_bic']:.0f}")
    axes[1].set_title(
        f"spike-in size factors as offsets: ΔBIC = {adata.var.loc[GENE, 'scmix_delta_bic']:.0f}"
    )
    axes[2].set_title("counts / size factor: one mode")
    fig.savefig(OUT, dpi=72)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
