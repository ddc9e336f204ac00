"""scmix.tl.spike_in_qc: per-cell figures by hand, the outlier rule, scanpy's qc_vars,
inputs refused without touching the AnnData, and the Zeisel capture efficiencies."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import scmix
from scmix import InputError, InputKeyError

# 4 cells x (2 genes + 3 spike-ins)
COUNTS = np.array(
    [
        [10, 5, 4, 2, 0],
        [0, 20, 8, 4, 1],
        [3, 3, 0, 0, 0],
        [30, 10, 16, 6, 2],
    ]
)
EXPECTED = np.array([np.nan, np.nan, 40.0, 10.0, 2.0])


def _small(as_sparse: bool = False) -> ad.AnnData:
    X = sparse.csr_matrix(COUNTS) if as_sparse else COUNTS.copy()
    adata = ad.AnnData(X)
    adata.obs_names = [f"cell{i}" for i in range(4)]
    adata.var_names = ["g1", "g2", "ERCC-1", "ERCC-2", "ERCC-3"]
    adata.var["spike_in"] = [False, False, True, True, True]
    adata.var["expected"] = EXPECTED
    return adata


@pytest.mark.parametrize("as_sparse", [False, True], ids=["dense", "sparse"])
def test_per_cell_figures_by_hand(as_sparse):
    adata = _small(as_sparse)
    scmix.tl.spike_in_qc(adata, expected_molecules="expected", nmads=3.0)
    obs = adata.obs
    # spike-in totals 6, 13, 0, 24; libraries 21, 33, 6, 64; expected total 52
    np.testing.assert_allclose(obs["spike_in_qc_total"], [6, 13, 0, 24])
    np.testing.assert_allclose(obs["spike_in_qc_fraction"], [6 / 21, 13 / 33, 0, 24 / 64])
    np.testing.assert_allclose(obs["spike_in_qc_capture_efficiency"], [6 / 52, 13 / 52, 0, 24 / 52])
    # the cell without spike-in counts has log capture -inf: low capture
    assert obs["spike_in_qc_low_capture"].tolist() == [False, False, True, False]
    assert obs["spike_in_qc_outlier"].dtype == bool
    var = adata.var
    np.testing.assert_allclose(var["spike_in_qc_mean_count"][2:], [28 / 4, 12 / 4, 3 / 4])
    np.testing.assert_allclose(var["spike_in_qc_detection_rate"][2:], [0.75, 0.75, 0.5])
    assert var["spike_in_qc_mean_count"][:2].isna().all()
    uns = adata.uns["spike_in_qc"]
    assert uns["expected_total"] == 52.0 and uns["n_with_expected"] == 3
    rule = uns["outlier_rules"]["low_capture"]
    finite = np.log(np.array([6, 13, 24]) / 52)
    median = np.median(finite)
    np.testing.assert_allclose(rule["median"], median)
    np.testing.assert_allclose(rule["mad"], 1.4826 * np.median(np.abs(finite - median)))
    np.testing.assert_allclose(rule["threshold"], median - 3 * rule["mad"])
    assert uns["params"]["expected_molecules"] == "expected" and uns["params"]["nmads"] == 3.0


def test_outlier_rule_flags_the_constructed_low_capture_and_empty_cells():
    """100 cells with log capture about N(log 0.2, 0.1^2); three at a tenth of it and
    two empty wells (few endogenous counts: high spike-in fraction)."""
    rng = np.random.default_rng(0)
    n = 100
    expected = np.array([1000.0, 300.0, 100.0])
    capture = 0.2 * np.exp(rng.normal(0, 0.1, n))
    capture[:3] = 0.02
    spikes = rng.poisson(capture[:, None] * expected)
    genes = rng.poisson(50, (n, 40))
    genes[3:5] = 0
    adata = ad.AnnData(np.hstack([genes, spikes]))
    adata.var_names = [f"g{j}" for j in range(40)] + ["S1", "S2", "S3"]
    adata.var["ercc"] = adata.var_names.str.startswith("S")
    scmix.tl.spike_in_qc(adata, spike_in="ercc", expected_molecules=np.r_[[np.nan] * 40, expected])
    obs = adata.obs
    assert np.flatnonzero(obs["spike_in_qc_low_capture"]).tolist() == [0, 1, 2]
    assert np.flatnonzero(obs["spike_in_qc_high_fraction"]).tolist() == [3, 4]
    assert np.flatnonzero(obs["spike_in_qc_outlier"]).tolist() == [0, 1, 2, 3, 4]
    assert adata.uns["spike_in_qc"]["n_outliers"] == 5
    np.testing.assert_allclose(np.median(obs["spike_in_qc_capture_efficiency"]), 0.2, rtol=0.05)


def test_scanpy_qc_vars_column_gives_the_same_fraction():
    sc = pytest.importorskip("scanpy")
    adata = _small()
    adata.var["ercc"] = adata.var.pop("spike_in")
    sc.pp.calculate_qc_metrics(adata, qc_vars=["ercc"], inplace=True, percent_top=None)
    scmix.tl.spike_in_qc(adata, spike_in="ercc", key_added="qc")
    np.testing.assert_allclose(adata.obs["qc_total"], adata.obs["total_counts_ercc"])
    np.testing.assert_allclose(100 * adata.obs["qc_fraction"], adata.obs["pct_counts_ercc"])
    assert "qc_capture_efficiency" not in adata.obs and "detection" not in adata.uns["qc"]


@pytest.mark.parametrize(
    "form",
    ["per gene", "per spike-in", "series"],
)
def test_expected_molecules_forms_agree(form):
    adata = _small()
    values = {
        "per gene": EXPECTED,
        "per spike-in": EXPECTED[2:],
        "series": pd.Series(EXPECTED[2:][::-1], index=["ERCC-3", "ERCC-2", "ERCC-1"]),
    }[form]
    scmix.tl.spike_in_qc(adata, expected_molecules=values)
    reference = _small()
    scmix.tl.spike_in_qc(reference, expected_molecules="expected")
    pd.testing.assert_frame_equal(adata.obs, reference.obs)
    np.testing.assert_allclose(
        adata.var["spike_in_qc_expected_molecules"], reference.var["spike_in_qc_expected_molecules"]
    )


def test_expected_scale_and_copy():
    adata = _small()
    result = scmix.tl.spike_in_qc(
        adata, expected_molecules="expected", expected_scale=2.0, copy=True
    )
    assert "spike_in_qc" not in adata.uns and "spike_in_qc_total" not in adata.obs
    np.testing.assert_allclose(
        result.obs["spike_in_qc_capture_efficiency"], np.array([6, 13, 0, 24]) / 104
    )


def test_rerun_without_expected_removes_the_capture_columns():
    adata = _small()
    scmix.tl.spike_in_qc(adata, expected_molecules="expected")
    assert scmix.tl.spike_in_qc(adata) is None
    assert "spike_in_qc_capture_efficiency" not in adata.obs
    assert "spike_in_qc_expected_molecules" not in adata.var


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"spike_in": "ercc"}, InputKeyError, "'ercc' is not a column of adata.var"),
        ({"spike_in": "none_flagged"}, InputError, "flags no spike-in"),
        ({"spike_in": "as_text"}, InputError, "must be boolean"),
        ({"expected_molecules": "nope"}, InputKeyError, "'nope' is not a column"),
        ({"expected_molecules": np.ones(4)}, InputError, "one per gene"),
        ({"expected_molecules": np.array([1.0, -1, 2])}, InputError, "positive"),
        ({"expected_molecules": np.full(3, np.nan)}, InputError, "no expected molecules"),
        ({"nmads": -1.0}, InputError, "nmads"),
        ({"layer": "counts"}, InputKeyError, "layer 'counts'"),
    ],
)
def test_bad_inputs_leave_adata_unchanged(kwargs, error, match):
    adata = _small()
    adata.var["none_flagged"] = False
    adata.var["as_text"] = "True"
    before = adata.copy()
    with pytest.raises(error, match=match):
        scmix.tl.spike_in_qc(adata, **kwargs)
    pd.testing.assert_frame_equal(adata.obs, before.obs)
    pd.testing.assert_frame_equal(adata.var, before.var)
    assert dict(adata.uns) == dict(before.uns)


def test_zeisel_capture_efficiency_against_the_published_expected_molecules(data_dir):
    adata = scmix.datasets.zeisel2015(data_dir=data_dir)
    scmix.tl.spike_in_qc(adata, expected_molecules="ercc_expected_molecules")
    uns = adata.uns["spike_in_qc"]
    capture = adata.obs["spike_in_qc_capture_efficiency"].to_numpy()
    ercc = adata[:, adata.var["spike_in"].to_numpy()]
    expected = ercc.var["ercc_expected_molecules"].to_numpy()
    # by hand: each cell's ERCC molecules over the 57 ERCC's expected molecules
    np.testing.assert_allclose(capture, np.asarray(ercc.X.sum(axis=1)).ravel() / expected.sum())
    print(
        f"\nZeisel: capture efficiency median {np.median(capture):.3f} "
        f"(range {capture.min():.3f}-{capture.max():.3f}), detection limit "
        f"{uns['detection']['detection_limit']:.2f} molecules, {uns['n_outliers']} cells flagged"
    )
    assert uns["n_with_expected"] == 57
    assert 0.15 < np.median(capture) < 0.25  # measured 0.203
    assert uns["detection"]["converged"]
    assert 2 < uns["detection"]["detection_limit"] < 6  # measured 3.6 molecules
    # flagged cells: a few percent, all with low capture (no cell has a high fraction)
    flagged = adata.obs["spike_in_qc_outlier"].to_numpy()
    assert 0.01 < flagged.mean() < 0.1
    assert capture[flagged].max() < capture[~flagged].min()


def test_expected_scale_from_ercc_concentrations_reproduces_zeisel_expected_molecules(data_dir):
    """attomoles/ul x 1e-18 mol x 6.02214076e23 / mol x (ul added per cell x dilution):
    the molecules per cell shipped with Zeisel 2015 are Mix 1 with 4.5e-7 ul of stock per
    cell, to within the rounding of the Avogadro constant they used (6.0221409e23)."""
    from scmix._core.stats.spike_qc import MOLECULES_PER_ATTOMOLE

    assert MOLECULES_PER_ATTOMOLE == pytest.approx(1e-18 * 6.02214076e23, rel=1e-15)
    adata = scmix.datasets.zeisel2015(data_dir=data_dir)
    spikes = adata.var["spike_in"].to_numpy()
    shipped = adata.var["ercc_expected_molecules"].to_numpy()[spikes]
    mix1 = adata.var["ercc_mix1_attomoles_ul"].to_numpy()[spikes]
    scale = MOLECULES_PER_ATTOMOLE * 4.5e-7  # ul of undiluted Mix 1 per cell
    np.testing.assert_allclose(mix1 * scale, shipped, rtol=1e-7)
    # not Mix 2: its ratios to the shipped values spread over a factor 8
    ratio = adata.var["ercc_mix2_attomoles_ul"].to_numpy()[spikes] * scale / shipped
    assert ratio.max() / ratio.min() == pytest.approx(8.0)
    by_scale = scmix.tl.spike_in_qc(
        adata, expected_molecules="ercc_mix1_attomoles_ul", expected_scale=scale, copy=True
    )
    scmix.tl.spike_in_qc(adata, expected_molecules="ercc_expected_molecules")
    np.testing.assert_allclose(
        by_scale.obs["spike_in_qc_capture_efficiency"],
        adata.obs["spike_in_qc_capture_efficiency"],
        rtol=1e-7,
    )
    np.testing.assert_allclose(
        by_scale.uns["spike_in_qc"]["detection"]["detection_limit"],
        adata.uns["spike_in_qc"]["detection"]["detection_limit"],
        rtol=1e-6,
    )
