"""Endogenous genes on the Zeisel 2015 subset: marker genes of a cell type are bimodal
across the three types, and a cell-level mixture of them recovers the labels."""

from __future__ import annotations

import numpy as np
import pytest
import scanpy as sc
from sklearn.metrics import adjusted_rand_score, roc_auc_score

import scmix

N_MARKERS = 10


@pytest.fixture(scope="module")
def zeisel(data_dir):
    adata = scmix.datasets.zeisel2015(data_dir=data_dir)
    scmix.pp.size_factors(adata, method="library")
    normalised = adata.X.toarray() / adata.obs["size_factors"].to_numpy()[:, None]
    markers = {}
    for cell_type in adata.obs["cell_type"].cat.categories:
        inside = (adata.obs["cell_type"] == cell_type).to_numpy()
        mean_in, mean_out = normalised[inside].mean(0), normalised[~inside].mean(0)
        score = np.log2((mean_in + 0.1) / (mean_out + 0.1))
        # well expressed in the type (a mode that has counts), endogenous genes only
        score[adata.var["spike_in"].to_numpy() | (mean_in < 5)] = -np.inf
        markers[cell_type] = list(adata.var_names[np.argsort(-score)[:N_MARKERS]])
    return adata, markers


def test_marker_genes_are_bimodal_and_their_upper_component_is_the_type(zeisel):
    adata, markers = zeisel
    genes = [g for group in markers.values() for g in group]
    rng = np.random.default_rng(0)
    endogenous = adata.var_names[~adata.var["spike_in"].to_numpy()].difference(genes)
    others = list(rng.choice(endogenous, size=len(genes), replace=False))
    scmix.tl.fit_mixture(adata, mask_var=genes + others)
    called = adata.var["scmix_bimodal"]
    # measured: 16 of the 30 markers (4, 6, 6 per type) against 3 of 30 random genes
    assert called[genes].mean() >= 0.4 and called[genes].mean() > 2 * called[others].mean()
    # scanpy reads the layer: the upper component's probability of each cell
    upper = sc.get.obs_df(adata, keys=genes, layer="scmix_responsibility_1")
    for cell_type, group in markers.items():
        inside = (adata.obs["cell_type"] == cell_type).to_numpy()
        aucs = [roc_auc_score(inside, upper[g]) for g in group if called[g]]
        # measured median AUC: 0.98 endothelial-mural, 0.81 interneurons, 0.83 CA1
        assert aucs and np.median(aucs) > 0.75, cell_type


def test_cell_level_mixture_of_markers_recovers_the_labels(zeisel):
    adata, markers = zeisel
    adata = adata.copy()
    genes = [g for group in markers.values() for g in group]
    scmix.tl.fit_mixture(adata, 3, mask_var=genes, shared=True)
    ari = adjusted_rand_score(adata.obs["cell_type"], adata.obs["scmix_component"])
    assert ari > 0.8  # measured 0.93; chance is 0
