"""``scmix.tl.technical_noise`` against scran's ``modelGeneCV2WithSpikes`` on the same
counts and the same size factors (Zeisel 2015 and Tung 2017).

Run from the repository root (``$SCMIX_DATA_DIR``, default ``../shared/data``; needs
``Rscript`` with the Bioconductor packages scran and Matrix, otherwise it prints
"not run: ..." and exits 0)::

    python benchmarks/technical_noise_scran.py [--dataset zeisel2015 tung2017]
                                               [--out summary.json]

What is compared, per dataset:

- scmix: ``technical_noise(adata, spike_in="spike_in", size_factors="size_factors")``
  with the gene size factors a scanpy user of scmix would take,
  ``scmix.pp.size_factors(adata, method="library")`` (each cell's total count of the
  endogenous genes, mean 1), and the default spike-in factors (spike-in totals).
- scran: ``modelGeneCV2WithSpikes(x, spikes, size.factors=, spike.size.factors=)`` on
  the genes scmix tested (the genes with a count), the spike-ins with a count, and the
  factors technical_noise reports it used (``.obs["noise_size_factors"]`` for the genes,
  ``.obs["noise_spike_in_size_factors"]`` for the spike-ins). Counts and factors go to R
  through MatrixMarket and CSV files in a temporary directory.

Zeisel (1,464 cells, 1,000 genes, 57 ERCC) is the real comparison. Tung 2017 holds ERCC
counts only (no endogenous genes), so it is run as a null comparison: the ERCC with a
count are split in two by rank of their total (alternately); each half is tested as
"genes" against the trend of the other half, both normalised by the trend half's
totals, and the two folds are pooled. Every call there is a false positive.

Prints per dataset: cells, genes tested, spike-ins (and how many each method's trend
used); calls at FDR 0.05 by each method and their overlap (both / scmix only / scran
only), Jaccard index, Spearman correlations of the p-values and of scran's ``ratio``
(CV2 / trend) with scmix's ``dispersion / technical_dispersion``; both technical trends
in CV2 terms; the disagreement groups (median mean, detection rate, the two ratios) with
their 5 top genes; and how scran's formula treats the spike-ins themselves. ``--out``
writes the same numbers as JSON. ``--gene-factors spike_in`` gives Zeisel's genes the
spike-in totals instead (a check of the size-factor effect below).

scran's test (scran 1.26, commit df66576 of github.com/MarioniLab/scran;
``R/utils_variance.R``, ``.decompose_cv2``, lines 102-127): ``ratio = CV2 / trend(mean)``
and ``p.value = pnorm(ratio, mean = 1, sd = std.dev, lower.tail = FALSE)`` (line 118), a
normal null on the ratio itself (not its log), one SD for every gene whatever its mean
or the number of cells. ``trend`` and ``std.dev`` come from ``fitTrendCV2``
(``R/fitTrendCV2.R``, lines 72-147): ``A + B / mean`` fitted to the spike-ins with mean
> 0.1 and CV2 < ncells by ``nls`` with inverse-density and tricube robustness weights;
``std.dev = 1.4826 * weighted.median(|CV2 / trend - 1|)`` over those spike-ins (line
145). Means and CV2 are those of ``counts / s`` with both sets of factors centred to
mean 1 (``.compute_var_stats_with_spikes``, lines 144-179). scmix tests the NB dispersion
against its trend by a likelihood-ratio test that treats the trend as known, so its null
has only NB sampling error.

Reading the result (technical_noise with the spike-ins' scatter, branch i21-noise of
2026-12-07; scran 1.26.2, R 4.2.2):

Zeisel, the same factors for genes and spike-ins (``--gene-factors spike_in``): scmix
calls 865 of 1,000 genes at FDR 0.05, scran 982; every scmix call is a scran call (865
shared, 117 scran only, Jaccard 0.881); Spearman 0.950 for the p-values, 0.955 for
scran's ratio against scmix's dispersion / trend. All genes with mean >= 1 are called by
both (these 1,000 genes are the DESCEND subset of three cell types); the 117 are at
mean < 1.

Zeisel, library-size factors for the genes (the default run): scmix 549, scran 977; 549
shared, 0 scmix only, 428 scran only (Jaccard 0.562; Spearman 0.824 for the p-values).
Three causes:

1. The Poisson part of the CV2. For counts / s, CV2 = phi + mean(1/s) / mu. The genes'
   library-size factors vary far more than the spike-in totals (mean(1/s) 1.659 against
   1.160; endothelial-mural cells have a median factor of 0.22), so a gene exactly at
   the technical dispersion has a CV2 above scran's spike-in trend by up to 1.659 / 1.160
   = 1.43 at low means: at the genes, scran's trend is a median 0.73 of the technical CV2
   in the genes' own normalisation. With SD 0.084 that is a z of 4-5. Giving scran's
   trend the genes' Poisson part (the "what-if" line) takes its calls from 977 to 721
   (Jaccard with scmix 0.723, 533 shared). scran centres both sets of factors to mean
   1, not mean(1/s), so its CV2 trend transfers from spike-ins to genes only when the two
   sets of factors vary alike; scmix's NB puts each cell's factor in the likelihood, so
   a trend in the dispersion transfers (its stated assumption).
2. The null. scran's SD (0.084) comes mostly from the low-mean spike-ins, whose CV2 is
   mostly Poisson and scatters little, and it is the same at every mean: it calls any
   ratio above about 1.14. Applied in sample to its own 57 spike-ins it gives p < 0.05
   for 13, 10 of them among the 19 with mean >= 10. scmix refers each gene to the
   spike-ins' scatter around the trend beyond sampling (tau 0.50 on the log dispersion
   here; ``technical_noise_spike_in_loo.py``: 0 of 41 Zeisel spike-ins called when left
   out, against 24% with the trend as exact), so a gene needs a dispersion well above
   the trend: the smallest called has 2.7 times the trend. Of the 188 genes the what-if
   scran calls and scmix does not, the median has a dispersion 1.94 times the trend,
   inside the spike-ins' own spread (exp(1.645 x 0.50) = 2.3).
3. Moments against likelihood. scran's CV2 is a moment of counts / s and weights a cell
   by 1 / s^2; the NB likelihood gives a cell with a small factor little weight. 120 of
   those 188 genes are highest in the endothelial-mural cells (235 cells, median factor
   0.22), with a moment CV2 a median 1.23 times that of the NB fit. These look like
   real cell-type differences concentrated in the cells with the fewest counts, which a
   single NB with offsets weighs little.

Tung (null: held-out ERCC against the other half's trend, the same factors for both):
scmix 6 and scran 8 false calls of 86 at FDR 0.05 (4 shared). All of scmix's are among
the 11 ERCC with mean >= 10 and come from the spike-in totals, the default factors of
both tools: the largest ERCC makes 48% / 41% of its half's total, so the totals absorb
the dominant spike-ins' own variation and the trend has no floor (scran's A about
1e-12; scmix's a0 about 3e-4); the same 11 ERCC have a median dispersion of 0.0014 in
the trend half and 0.0051 held out. Two of scran's calls are ERCC seen in 1 and 2 of 564
cells (mean 0.002-0.004), whose moment CV2 is decided by the factors of those cells.

In short: with the same size factors the two agree closely (Jaccard 0.88, scmix's calls
a subset of scran's); with different factors for genes and spike-ins scran's CV2 trend
does not transfer and it calls 428 more genes, most of them within the spike-ins' own
scatter around the trend.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import io, sparse, stats

import scmix

FDR = 0.05

R_SCRIPT = r"""
suppressPackageStartupMessages({library(Matrix); library(scran)})
dir <- commandArgs(trailingOnly = TRUE)[1]
read_counts <- function(name) {
  m <- as(readMM(file.path(dir, paste0(name, ".mtx"))), "CsparseMatrix")
  rownames(m) <- readLines(file.path(dir, paste0(name, ".txt")))
  m
}
x <- read_counts("genes")  # genes x cells
spikes <- read_counts("spikes")
sf <- read.csv(file.path(dir, "size_factors.csv"))
out <- modelGeneCV2WithSpikes(x, spikes, size.factors = sf$genes,
                              spike.size.factors = sf$spikes)
write.csv(as.data.frame(out), file.path(dir, "genes_out.csv"))
meta <- metadata(out)
ncells <- ncol(x)
# the spike-ins fitTrendCV2 uses (its defaults: min.mean = 0.1, CV2 below ncells)
used <- meta$cv2 < ncells - 1e-8 & meta$mean > 0.1
trend <- meta$trend(meta$mean)
ratio <- meta$cv2 / trend
spike_out <- data.frame(mean = meta$mean, cv2 = meta$cv2, trend = trend, ratio = ratio,
                        used = used,
                        # scran's gene p-value formula (.decompose_cv2) applied to the
                        # spike-ins, in sample: scran reports no spike-in p-values
                        p.value = pnorm(ratio, mean = 1, sd = meta$std.dev, lower.tail = FALSE),
                        row.names = names(meta$mean))
write.csv(spike_out, file.path(dir, "spikes_out.csv"))
write.csv(data.frame(std.dev = meta$std.dev, scran = as.character(packageVersion("scran")),
                     trend_at_inf = meta$trend(1e12), trend_at_1 = meta$trend(1)),
          file.path(dir, "scalars.csv"), row.names = FALSE)
"""


def r_missing() -> str | None:
    """Why scran cannot run here, or None."""
    if shutil.which("Rscript") is None:
        return "Rscript not found (install R and the Bioconductor package scran)"
    check = subprocess.run(
        [
            "Rscript",
            "-e",
            'quit(status = !all(sapply(c("scran", "Matrix"), requireNamespace, quietly = TRUE)))',
        ],
        capture_output=True,
        text=True,
    )
    if check.returncode != 0:
        return (
            "the R packages scran and Matrix are not both installed (BiocManager::install('scran'))"
        )
    return None


def dense(X) -> np.ndarray:
    return X.toarray() if sparse.issparse(X) else np.asarray(X)


def run_scran(
    genes: np.ndarray,
    spikes: np.ndarray,
    gene_names,
    spike_names,
    size_factors: np.ndarray,
    spike_size_factors: np.ndarray,
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """``modelGeneCV2WithSpikes`` on cells x genes / cells x spike-ins counts; returns the
    gene table, the spike-in table and the scalars (raises if R fails)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder)
        for name, counts, names in (("genes", genes, gene_names), ("spikes", spikes, spike_names)):
            io.mmwrite(path / f"{name}.mtx", sparse.coo_matrix(counts.T.astype(np.int64)))
            (path / f"{name}.txt").write_text("\n".join(map(str, names)) + "\n")
        pd.DataFrame({"genes": size_factors, "spikes": spike_size_factors}).to_csv(
            path / "size_factors.csv", index=False, float_format="%.17g"
        )
        (path / "scran.R").write_text(R_SCRIPT)
        run = subprocess.run(
            ["Rscript", str(path / "scran.R"), folder], capture_output=True, text=True
        )
        if run.returncode != 0:
            raise RuntimeError(
                f"Rscript (scran modelGeneCV2WithSpikes) failed with exit status "
                f"{run.returncode}:\n{run.stderr.strip()}"
            )
        gene_out = pd.read_csv(path / "genes_out.csv", index_col=0)
        spike_out = pd.read_csv(path / "spikes_out.csv", index_col=0)
        scalars = pd.read_csv(path / "scalars.csv").iloc[0].to_dict()
    gene_out.index = gene_out.index.astype(str)
    spike_out.index = spike_out.index.astype(str)
    if not gene_out.index.equals(pd.Index(map(str, gene_names))):
        raise RuntimeError("scran returned the genes in another order or other names.")
    return gene_out, spike_out, scalars


def compare_one(adata) -> tuple[pd.DataFrame, dict]:
    """Both methods on ``adata`` (``.var["spike_in"]``, ``.obs["size_factors"]``): a
    per-gene table of the tested genes and per-run facts."""
    started = time.perf_counter()
    scmix.tl.technical_noise(adata, spike_in="spike_in", size_factors="size_factors")
    seconds_scmix = time.perf_counter() - started
    var = adata.var
    X = dense(adata.X).astype(np.float64)
    spike = var["spike_in"].to_numpy(bool)
    genes = ~spike & var["noise_pvalue"].notna().to_numpy()
    spikes = spike & (X.sum(axis=0) > 0)
    sf = adata.obs["noise_size_factors"].to_numpy(np.float64)
    spike_sf = adata.obs["noise_spike_in_size_factors"].to_numpy(np.float64)
    started = time.perf_counter()
    scran, scran_spikes, scalars = run_scran(
        X[:, genes],
        X[:, spikes],
        var_names := adata.var_names[genes],
        adata.var_names[spikes],
        sf,
        spike_sf,
    )
    seconds_scran = time.perf_counter() - started
    ours = var.loc[genes]
    table = pd.DataFrame(
        {
            "mean": ours["noise_mean"],
            "detection": (X[:, genes] > 0).mean(axis=0),
            "scmix_dispersion": ours["noise_dispersion"],
            "scmix_ratio": ours["noise_dispersion"] / ours["noise_technical_dispersion"],
            "scmix_pvalue": ours["noise_pvalue"],
            "scmix_padj": ours["noise_padj"],
            "scmix_call": ours["noise_variable"].astype(bool),
            "scran_mean": scran["mean"].to_numpy(),
            "scran_cv2": scran["total"].to_numpy(),
            "scran_trend": scran["trend"].to_numpy(),
            "scran_ratio": scran["ratio"].to_numpy(),
            "scran_pvalue": scran["p.value"].to_numpy(),
            "scran_fdr": scran["FDR"].to_numpy(),
        },
        index=var_names,
    )
    table["scran_call"] = table["scran_fdr"] <= FDR
    # CV2 of normalised counts implied by the NB, E[var(x/s)] / mu^2 = phi + mean(1/s) / mu:
    # scmix's technical CV2 and the gene's total CV2, both with the genes' Poisson part
    poisson = np.mean(1.0 / sf) / ours["noise_mean"]
    table["scmix_tech_cv2"] = ours["noise_technical_dispersion"] + poisson
    table["scmix_cv2_ratio"] = (ours["noise_dispersion"] + poisson) / table["scmix_tech_cv2"]
    # scran's moment CV2 over the CV2 the NB fit implies: above 1 when a few cells with
    # small size factors carry large normalised values (the moments weight them by 1/s^2)
    table["moment_over_nb"] = table["scran_cv2"] / (ours["noise_dispersion"] + poisson)
    # what-if: scran's test with its spike-in trend given the genes' Poisson part,
    # A + (B - mean(1/s_spike) + mean(1/s_gene)) / mu (same ratio ~ N(1, std.dev) null)
    shifted = (
        table["scran_trend"] + (np.mean(1.0 / sf) - np.mean(1.0 / spike_sf)) / table["scran_mean"]
    )
    table["scran_shifted_ratio"] = table["scran_cv2"] / shifted
    table["scran_shifted_pvalue"] = stats.norm.sf(
        table["scran_shifted_ratio"], loc=1.0, scale=float(scalars["std.dev"])
    )
    table["scran_shifted_call"] = (
        stats.false_discovery_control(table["scran_shifted_pvalue"].fillna(1.0)) <= FDR
    )
    if "cell_type" in adata.obs:
        # where each gene is highest (normalised by the gene factors), and the factors'
        # median per cell type
        types = adata.obs["cell_type"].astype(str).to_numpy()
        names = np.unique(types)
        by_type = np.stack(
            [(X[types == t][:, genes] / sf[types == t, None]).mean(0) for t in names]
        )
        table["highest_in"] = names[by_type.argmax(axis=0)]
        with np.errstate(divide="ignore"):
            table["highest_over_lowest"] = by_type.max(axis=0) / by_type.min(axis=0)
        sf_by_type = {
            f"{t} ({int((types == t).sum())} cells)": float(np.median(sf[types == t]))
            for t in names
        }
    else:
        sf_by_type = {}
    spike_var = var.loc[spikes]
    in_trend = spike_var[spike_var["noise_trend_spike_in"].astype(bool)]
    with np.errstate(divide="ignore"):  # spike-ins fitted as Poisson (dispersion 0)
        log_phi_ratio = np.log(
            in_trend["noise_dispersion"] / in_trend["noise_technical_dispersion"]
        ).to_numpy()
    facts = {
        "cells": int(adata.n_obs),
        "genes_tested": int(genes.sum()),
        "spike_ins": int(spikes.sum()),
        "spike_ins_in_trend_scmix": int(spike_var["noise_trend_spike_in"].sum()),
        "spike_ins_in_trend_scran": int(scran_spikes["used"].sum()),
        "scran_std_dev": float(scalars["std.dev"]),
        "scran_version": str(scalars["scran"]),
        "scran_trend_A": float(scalars["trend_at_inf"]),
        "scran_trend_B": float(scalars["trend_at_1"] - scalars["trend_at_inf"]),
        "mean_inv_size_factor_genes": float(np.mean(1.0 / sf)),
        "mean_inv_size_factor_spikes": float(np.mean(1.0 / spike_sf)),
        "scmix_spike_dispersion": spike_var["noise_dispersion"],
        "largest_spike_in_share": float(np.max(X[:, spikes].sum(axis=0)) / X[:, spikes].sum()),
        "scmix_spike_log_phi_ratio_robust_sd": robust_sd(log_phi_ratio),
        "scmix_spike_poisson": int(np.sum(~np.isfinite(log_phi_ratio))),
        "size_factor_median_by_cell_type": sf_by_type,
        "seconds_scmix": round(seconds_scmix, 1),
        "seconds_scran": round(seconds_scran, 1),
    }
    # scmix trend in CV2 terms at the spike-ins: dispersion + mean(1/s_spike) / mu
    facts["scmix_trend_cv2_at_spikes"] = (
        spike_var["noise_technical_dispersion"] + np.mean(1.0 / spike_sf) / spike_var["noise_mean"]
    ).to_numpy()
    facts["scran_spikes"] = scran_spikes
    return table, facts


def zeisel(gene_factors: str = "library"):
    adata = scmix.datasets.zeisel2015()
    if "spike_in" not in adata.var:
        scmix.pp.flag_spike_ins(adata)
    # "library": endogenous-gene totals, mean 1; "spike_in": the spike-in totals
    scmix.pp.size_factors(adata, method=gene_factors)
    yield "zeisel2015", adata


def tung():
    """Two folds: each half of the ERCC tested as genes against the other half's trend."""
    adata = scmix.datasets.tung2017()
    X = dense(adata.X)
    adata = adata[:, X.sum(axis=0) > 0].copy()
    order = np.argsort(-dense(adata.X).sum(axis=0), kind="stable")
    halves = [order[0::2], order[1::2]]
    for fold, trend_half in enumerate(halves):
        part = adata.copy()
        part.var["spike_in"] = np.isin(np.arange(part.n_vars), trend_half)
        # "genes" normalised as the trend spike-ins: their totals (a null comparison)
        scmix.pp.size_factors(part, method="spike_in")
        yield f"tung2017 fold {fold + 1}", part


def _median(values) -> float:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else float("nan")


def _jaccard(a, b) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = int((a | b).sum())
    return float((a & b).sum() / union) if union else float("nan")


def _highest_in(rows: pd.DataFrame) -> dict:
    """How many of ``rows`` are highest in each cell type (when cell types are known)."""
    if "highest_in" not in rows:
        return {}
    return {"highest_in": {k: int(v) for k, v in rows["highest_in"].value_counts().items()}}


def robust_sd(values) -> float:
    """1.4826 times the median absolute deviation of the finite values."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def spearman(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    return float(stats.spearmanr(a[ok], b[ok]).statistic)


def summarise(name: str, table: pd.DataFrame, runs: list[dict]) -> dict:
    a, b = table["scmix_call"].to_numpy(), table["scran_call"].to_numpy()
    groups = {
        "both": a & b,
        "scmix only": a & ~b,
        "scran only": ~a & b,
        "neither": ~a & ~b,
    }
    spikes = pd.concat([run["scran_spikes"] for run in runs])
    used = spikes["used"].to_numpy(bool)
    # both trends in CV2 terms at the same means, the spike-ins of the runs
    scmix_cv2 = np.concatenate([run["scmix_trend_cv2_at_spikes"] for run in runs])
    summary = {
        "dataset": name,
        "cells": runs[0]["cells"],
        "genes_tested": len(table),
        "spike_ins": [run["spike_ins"] for run in runs],
        "spike_ins_in_trend_scmix": [run["spike_ins_in_trend_scmix"] for run in runs],
        "spike_ins_in_trend_scran": [run["spike_ins_in_trend_scran"] for run in runs],
        "scran_std_dev": [run["scran_std_dev"] for run in runs],
        "scran_trend_A_B": [[run["scran_trend_A"], run["scran_trend_B"]] for run in runs],
        "mean_inv_size_factor_genes": [run["mean_inv_size_factor_genes"] for run in runs],
        "mean_inv_size_factor_spikes": [run["mean_inv_size_factor_spikes"] for run in runs],
        "seconds_scmix": [run["seconds_scmix"] for run in runs],
        "seconds_scran": [run["seconds_scran"] for run in runs],
        "scran_version": runs[0]["scran_version"],
        "calls_scmix": int(a.sum()),
        "calls_scran": int(b.sum()),
        "p_below_0.05_scmix": int((table["scmix_pvalue"] < 0.05).sum()),
        "p_below_0.05_scran": int((table["scran_pvalue"] < 0.05).sum()),
        "overlap": {key: int(mask.sum()) for key, mask in groups.items()},
        "jaccard": _jaccard(a, b),
        "spearman_pvalues": spearman(table["scmix_pvalue"], table["scran_pvalue"]),
        "spearman_ratios": spearman(table["scmix_ratio"], table["scran_ratio"]),
        "median_trend_ratio_scran_over_scmix_at_genes": _median(
            table["scran_trend"] / table["scmix_tech_cv2"]
        ),
        "median_trend_ratio_scran_over_scmix_at_spikes": _median(
            spikes["trend"].to_numpy() / scmix_cv2
        ),
        "smallest_ratio_called": {
            "scmix": _median([]) if not a.any() else float(table.loc[a, "scmix_ratio"].min()),
            "scran": _median([]) if not b.any() else float(table.loc[b, "scran_ratio"].min()),
        },
        "scran_genes_poisson_part": {
            "calls": int(table["scran_shifted_call"].sum()),
            "both_with_scmix": int((table["scran_shifted_call"] & table["scmix_call"]).sum()),
            "jaccard_with_scmix": _jaccard(table["scran_shifted_call"], table["scmix_call"]),
            "disagreements": {
                key: {
                    "n": int(mask.sum()),
                    "median_mean": _median(table.loc[mask, "mean"]),
                    "median_scmix_ratio": _median(table.loc[mask, "scmix_ratio"]),
                    "median_scmix_cv2_ratio": _median(table.loc[mask, "scmix_cv2_ratio"]),
                    "median_scran_shifted_ratio": _median(table.loc[mask, "scran_shifted_ratio"]),
                    "median_moment_over_nb": _median(table.loc[mask, "moment_over_nb"]),
                    **_highest_in(table.loc[mask]),
                }
                for key, mask in (
                    ("scmix only", a & ~table["scran_shifted_call"].to_numpy()),
                    ("what-if only", ~a & table["scran_shifted_call"].to_numpy()),
                )
            },
        },
        "spearman_scran_ratio_scmix_cv2_ratio": spearman(
            table["scmix_cv2_ratio"], table["scran_ratio"]
        ),
        "by_mean": {},
        "groups": {},
        "scran_formula_on_spike_ins": {
            "in_trend": int(used.sum()),
            "p_below_0.05": int((spikes["p.value"][used] < 0.05).sum()),
            "p_below_0.05_mean_10_or_more": int(
                ((spikes["p.value"] < 0.05) & used & (spikes["mean"] >= 10)).sum()
            ),
            "mean_10_or_more": int((used & (spikes["mean"] >= 10)).sum()),
            "log_ratio_robust_sd": robust_sd(np.log(spikes["ratio"][used])),
            "scmix_log_phi_ratio_robust_sd": [
                run["scmix_spike_log_phi_ratio_robust_sd"] for run in runs
            ],
            "scmix_poisson_spike_ins": [run["scmix_spike_poisson"] for run in runs],
        },
    }
    summary["largest_spike_in_share"] = [run["largest_spike_in_share"] for run in runs]
    summary["size_factor_median_by_cell_type"] = runs[0]["size_factor_median_by_cell_type"]
    # the same spike-in as a trend spike-in (normalised by totals it is part of) and as
    # a tested gene (Tung folds): its dispersion both ways, spike-ins with mean >= 10
    as_spike = pd.concat([run["scmix_spike_dispersion"] for run in runs])
    high = table.index[(table["mean"] >= 10) & table.index.isin(as_spike.index)]
    if len(high):
        summary["dispersion_in_trend_vs_tested"] = {
            "n": len(high),
            "median_in_trend": _median(as_spike.loc[high]),
            "median_tested": _median(table.loc[high, "scmix_dispersion"]),
        }
    bins = pd.cut(table["mean"], [0, 0.1, 1, 10, np.inf], right=False)
    for interval, rows in table.groupby(bins, observed=False):
        summary["by_mean"][f"[{interval.left:g}, {interval.right:g})"] = {
            "n": len(rows),
            "scmix": int(rows["scmix_call"].sum()),
            "scran": int(rows["scran_call"].sum()),
            "both": int((rows["scmix_call"] & rows["scran_call"]).sum()),
        }
    for key, mask in groups.items():
        rows = table[mask]
        entry = {
            "n": int(mask.sum()),
            "median_mean": _median(rows["mean"]),
            "median_detection": _median(rows["detection"]),
            "median_scmix_ratio": _median(rows["scmix_ratio"]),
            "median_scran_ratio": _median(rows["scran_ratio"]),
            "median_scmix_cv2_ratio": _median(rows["scmix_cv2_ratio"]),
            "median_moment_over_nb": _median(rows["moment_over_nb"]),
            **_highest_in(rows),
        }
        if key in ("scmix only", "scran only"):
            by = ["scmix_pvalue", "scmix_ratio"] if key == "scmix only" else ["scran_pvalue"]
            ascending = [True, False] if key == "scmix only" else [True]
            top = rows.sort_values(by, ascending=ascending).head(5)
            entry["top"] = [
                {
                    "gene": gene,
                    "mean": float(row["mean"]),
                    "detection": float(row["detection"]),
                    "scmix_ratio": float(row["scmix_ratio"]),
                    "scmix_padj": float(row["scmix_padj"]),
                    "scran_ratio": float(row["scran_ratio"]),
                    "scran_fdr": float(row["scran_fdr"]),
                    "moment_over_nb": float(row["moment_over_nb"]),
                    **(
                        {
                            "highest_in": row["highest_in"],
                            "highest_over_lowest": float(row["highest_over_lowest"]),
                        }
                        if "highest_in" in row
                        else {}
                    ),
                }
                for gene, row in top.iterrows()
            ]
        summary["groups"][key] = entry
    return summary


def _types(group: dict) -> str:
    if "highest_in" not in group:
        return ""
    return "  highest in: " + ", ".join(f"{t} {n}" for t, n in group["highest_in"].items())


def report(s: dict) -> None:
    factors = f", gene size factors {s['gene_factors']!r}" if "gene_factors" in s else ""
    print(f"\n{s['dataset']} (scran {s['scran_version']}{factors})")
    print(
        f"  cells {s['cells']}, genes tested {s['genes_tested']}, spike-ins "
        f"{'/'.join(map(str, s['spike_ins']))} (in the trend: scmix "
        f"{'/'.join(map(str, s['spike_ins_in_trend_scmix']))}, scran "
        f"{'/'.join(map(str, s['spike_ins_in_trend_scran']))})"
    )
    print(
        "  time: scmix "
        + "/".join(f"{t:.1f}" for t in s["seconds_scmix"])
        + " s, scran (with R start) "
        + "/".join(f"{t:.1f}" for t in s["seconds_scran"])
        + " s"
    )
    print(
        f"  calls at FDR {FDR}: scmix {s['calls_scmix']}, scran {s['calls_scran']}  "
        f"(p < 0.05: scmix {s['p_below_0.05_scmix']}, scran {s['p_below_0.05_scran']})"
    )
    o = s["overlap"]
    print(
        f"  overlap: both {o['both']}, scmix only {o['scmix only']}, scran only "
        f"{o['scran only']}, neither {o['neither']}; Jaccard {s['jaccard']:.3f}"
    )
    print(
        f"  Spearman: p-values {s['spearman_pvalues']:.3f}; scran ratio vs scmix "
        f"dispersion / technical_dispersion {s['spearman_ratios']:.3f}, vs scmix CV2 ratio "
        f"{s['spearman_scran_ratio_scmix_cv2_ratio']:.3f}"
    )
    print(
        "  calls by scmix mean (n / scmix / scran / both): "
        + "; ".join(
            f"{key} {v['n']}/{v['scmix']}/{v['scran']}/{v['both']}"
            for key, v in s["by_mean"].items()
        )
    )
    print(
        "  scran: CV2 trend A + B/mu with (A, B) = "
        + ", ".join(f"({a:.3g}, {b:.3g})" for a, b in s["scran_trend_A_B"])
        + "; SD of the ratio (its null: ratio ~ N(1, SD)) "
        + "/".join(f"{v:.3f}" for v in s["scran_std_dev"])
    )
    print(
        "  mean(1/s): genes "
        + "/".join(f"{v:.3f}" for v in s["mean_inv_size_factor_genes"])
        + ", spike-ins "
        + "/".join(f"{v:.3f}" for v in s["mean_inv_size_factor_spikes"])
        + "; scran trend / scmix trend in CV2 terms (dispersion + mean(1/s) / mu), median: "
        f"at the spike-ins {s['median_trend_ratio_scran_over_scmix_at_spikes']:.3f}, "
        f"at the genes {s['median_trend_ratio_scran_over_scmix_at_genes']:.3f}"
    )
    w = s["scran_genes_poisson_part"]
    print(
        f"  what-if: scran's test against its trend given the genes' Poisson part "
        f"(B + mean(1/s_genes) - mean(1/s_spikes)): {w['calls']} calls, {w['both_with_scmix']} "
        f"shared with scmix, Jaccard {w['jaccard_with_scmix']:.3f}"
    )
    for key, g in w["disagreements"].items():
        print(
            f"    {key}: {g['n']} genes, medians: mean {g['median_mean']:.3g}, scmix "
            f"phi/trend {g['median_scmix_ratio']:.3g}, scmix CV2 ratio "
            f"{g['median_scmix_cv2_ratio']:.3g}, what-if scran ratio "
            f"{g['median_scran_shifted_ratio']:.3g}, moment/NB {g['median_moment_over_nb']:.3g}"
            + _types(g)
        )
    print(
        "  largest spike-in's share of the spike-in total: "
        + "/".join(f"{v:.2f}" for v in s["largest_spike_in_share"])
    )
    if "dispersion_in_trend_vs_tested" in s:
        d = s["dispersion_in_trend_vs_tested"]
        print(
            f"  the {d['n']} ERCC with mean >= 10, scmix dispersion (median) as a trend "
            f"spike-in {d['median_in_trend']:.2g}, held out as a gene {d['median_tested']:.2g}"
        )
    if s["size_factor_median_by_cell_type"]:
        print(
            "  gene size factors, median by cell type: "
            + ", ".join(f"{t} {v:.2f}" for t, v in s["size_factor_median_by_cell_type"].items())
        )
    low = s["smallest_ratio_called"]
    print(
        f"  smallest ratio called: scmix dispersion / trend {low['scmix']:.3g}, "
        f"scran CV2 / trend {low['scran']:.3g}"
    )
    print(
        "  medians by group (scmix CV2 ratio: the NB's CV2 over scmix's technical CV2, "
        "both with the genes' Poisson part; moment/NB: scran's CV2 over the NB's)"
    )
    print(
        f"  {'group':<11} {'n':>5} {'mean':>9} {'detect':>7} {'scmix phi/trend':>16} "
        f"{'scmix CV2 ratio':>16} {'scran ratio':>12} {'moment/NB':>10}"
    )
    for key, g in s["groups"].items():
        print(
            f"  {key:<11} {g['n']:>5} {g['median_mean']:>9.3g} {g['median_detection']:>7.3f} "
            f"{g['median_scmix_ratio']:>16.3g} {g['median_scmix_cv2_ratio']:>16.3g} "
            f"{g['median_scran_ratio']:>12.3g} {g['median_moment_over_nb']:>10.3g}" + _types(g)
        )
    for key in ("scmix only", "scran only"):
        top = s["groups"][key].get("top", [])
        if not top:
            continue
        print(f"  top {key} (by its p-value):")
        for t in top:
            where = (
                f"  highest in {t['highest_in']} ({t['highest_over_lowest']:.3g}x the lowest type)"
                if "highest_in" in t
                else ""
            )
            print(
                f"    {t['gene']:<13} mean {t['mean']:7.3g}  detect {t['detection']:.3f}  "
                f"scmix phi/trend {t['scmix_ratio']:6.3g} padj {t['scmix_padj']:8.2e}  "
                f"scran ratio {t['scran_ratio']:6.3g} FDR {t['scran_fdr']:8.2e}  "
                f"moment/NB {t['moment_over_nb']:.3g}{where}"
            )
    sp = s["scran_formula_on_spike_ins"]
    print(
        "  spike-ins: scran reports no p-values for them and scmix does not test them "
        "(see technical_noise_spike_in_loo.py)."
    )
    print(
        f"    scran's formula applied in sample to its {sp['in_trend']} trend spike-ins: "
        f"p < 0.05 for {sp['p_below_0.05']} ({sp['p_below_0.05_mean_10_or_more']} of them "
        f"among the {sp['mean_10_or_more']} with mean >= 10)"
    )
    print(
        f"    robust SD (1.4826 MAD) of log(CV2 / trend), scran: {sp['log_ratio_robust_sd']:.3f}; "
        "of log(dispersion / trend), scmix's trend spike-ins: "
        + "/".join(f"{v:.3f}" for v in sp["scmix_log_phi_ratio_robust_sd"])
        + " (fitted as Poisson, left out: "
        + "/".join(map(str, sp["scmix_poisson_spike_ins"]))
        + ")"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--dataset",
        nargs="+",
        default=["zeisel2015", "tung2017"],
        choices=["zeisel2015", "tung2017"],
    )
    parser.add_argument(
        "--gene-factors",
        default="library",
        choices=["library", "spike_in"],
        help="Zeisel's gene size factors, by scmix.pp.size_factors (default: library)",
    )
    parser.add_argument("--out", type=Path, default=None, help="write a JSON summary here")
    args = parser.parse_args(argv)
    missing = r_missing()
    if missing:
        print(f"not run: {missing}")
        return 0
    summaries = []
    for dataset in args.dataset:  # one after the other
        runs, tables = [], []
        parts = zeisel(args.gene_factors) if dataset == "zeisel2015" else tung()
        for label, adata in parts:
            table, facts = compare_one(adata)
            table["run"] = label
            runs.append(facts)
            tables.append(table)
        summary = summarise(dataset, pd.concat(tables), runs)
        if dataset == "zeisel2015":
            summary["gene_factors"] = args.gene_factors
        report(summary)
        summaries.append(summary)
    if args.out is not None:
        args.out.write_text(json.dumps({"fdr": FDR, "datasets": summaries}, indent=2) + "\n")
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
