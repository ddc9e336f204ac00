"""scmix.tl.spike_in_qc with a bimodal capture: the modes of the log capture, outliers
outside every mode, the low-capture mode reported apart, on simulated cells and on the
real data (Svensson 2017 sample 20312, the motivating case, and Zeisel 2015)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import scmix
from scmix import InputError


def _bimodal(n_low=300, n_main=700, n_broken=3, seed=0) -> ad.AnnData:
    """Cells with log capture N(log 0.05, 0.15^2) (the low mode), N(log 0.2, 0.15^2)
    (the main mode) and a few broken ones at 0.002; 3 spike-ins of known input."""
    rng = np.random.default_rng(seed)
    capture = np.r_[
        np.full(n_broken, 0.002),
        0.05 * np.exp(rng.normal(0, 0.15, n_low)),
        0.2 * np.exp(rng.normal(0, 0.15, n_main)),
    ]
    expected = np.array([2000.0, 600.0, 200.0])
    spikes = rng.poisson(capture[:, None] * expected)
    genes = rng.poisson(50, (capture.size, 20))
    adata = ad.AnnData(np.hstack([genes, spikes]))
    adata.var_names = [f"g{j}" for j in range(20)] + ["S1", "S2", "S3"]
    adata.var["spike_in"] = adata.var_names.str.startswith("S")
    adata.var["expected"] = np.r_[[np.nan] * 20, expected]
    return adata


def test_a_low_capture_mode_is_reported_as_a_mode_not_as_outliers():
    adata = _bimodal()
    scmix.tl.spike_in_qc(adata, expected_molecules="expected")
    obs, uns = adata.obs, adata.uns["spike_in_qc"]
    modes = uns["modes"]
    assert modes["n_modes"] == 2 and modes["main"] == 1
    np.testing.assert_allclose(modes["centres"], [0.05, 0.2], rtol=0.1)
    assert modes["metric"] == "log capture efficiency"
    # the three broken cells and nothing else are outliers
    assert np.flatnonzero(obs["spike_in_qc_low_capture"]).tolist() == [0, 1, 2]
    assert uns["n_outliers"] == 3 and uns["outlier_rules"]["low_capture"]["mode"] == 0
    # the low mode: all of its cells, none of the main mode's but a tail
    low_mode = obs["spike_in_qc_low_capture_mode"].to_numpy()
    assert low_mode[3:303].all() and low_mode[303:].mean() < 0.01
    assert uns["n_low_capture_mode"] == low_mode.sum()
    assert not (low_mode & obs["spike_in_qc_outlier"].to_numpy()).any()
    labels = obs["spike_in_qc_mode"]
    assert isinstance(labels.dtype, pd.CategoricalDtype)
    assert list(labels.cat.categories) == ["0", "1"]
    assert (labels[:303] == "0").all() and (labels[303:] == "1").mean() > 0.99
    np.testing.assert_allclose(modes["weights"], modes["n_cells"] / 1003)
    assert modes["mixture"]["n_components"] >= 2
    assert uns["params"]["mode_components"] == [1, 2, 3]


def test_one_mode_flags_the_whole_low_mode():
    """mode_components=1 is scater's rule on all cells: it flags the low mode wholesale
    (what the modes fix)."""
    adata = _bimodal()
    scmix.tl.spike_in_qc(adata, expected_molecules="expected", mode_components=1)
    obs = adata.obs
    assert adata.uns["spike_in_qc"]["modes"]["n_modes"] == 1
    assert obs["spike_in_qc_low_capture"][3:303].mean() > 0.9
    assert not obs["spike_in_qc_low_capture_mode"].any()


def test_unimodal_capture_gives_scaters_rule():
    rng = np.random.default_rng(3)
    adata = _bimodal(n_low=0, n_main=1000, n_broken=5, seed=3)
    adata.X[rng.choice(np.arange(5, 1005), 4, replace=False), 20:] //= 3  # a few low cells
    modes = scmix.tl.spike_in_qc(adata, expected_molecules="expected", copy=True)
    scater = scmix.tl.spike_in_qc(
        adata, expected_molecules="expected", mode_components=1, copy=True
    )
    assert modes.uns["spike_in_qc"]["modes"]["n_modes"] == 1
    columns = ["spike_in_qc_low_capture", "spike_in_qc_outlier", "spike_in_qc_low_capture_mode"]
    pd.testing.assert_frame_equal(modes.obs[columns], scater.obs[columns])
    rule = modes.uns["spike_in_qc"]["outlier_rules"]["low_capture"]
    assert rule == {**scater.uns["spike_in_qc"]["outlier_rules"]["low_capture"]}
    assert modes.obs["spike_in_qc_low_capture"][:5].all()


def test_results_survive_h5ad(tmp_path):
    adata = _bimodal()
    scmix.tl.spike_in_qc(adata, expected_molecules="expected")
    adata.write_h5ad(tmp_path / "qc.h5ad")
    back = ad.read_h5ad(tmp_path / "qc.h5ad")
    pd.testing.assert_frame_equal(back.obs, adata.obs)
    modes = back.uns["spike_in_qc"]["modes"]
    np.testing.assert_allclose(modes["centres"], adata.uns["spike_in_qc"]["modes"]["centres"])
    assert back.uns["spike_in_qc"]["detection"]["detection_limit_ci"].shape == (2,)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode_components": 0}, "mode_components"),
        ({"mode_components": []}, "at least one K"),
        ({"mode_components": "2"}, "a K or a list"),
        ({"mode_components": [1, 2.5]}, "mode_components must be an integer"),
        ({"min_mode_weight": 0.6}, "min_mode_weight"),
        ({"random_state": -1}, "random_state"),
    ],
)
def test_bad_mode_options_are_refused(kwargs, match):
    adata = _bimodal(n_low=10, n_main=20)
    with pytest.raises(InputError, match=match):
        scmix.tl.spike_in_qc(adata, **kwargs)
    assert "spike_in_qc" not in adata.uns


def _counts(adata, prefix="spike_in_qc"):
    obs = adata.obs
    return (
        int(obs[f"{prefix}_low_capture"].sum()),
        int(obs[f"{prefix}_outlier"].sum()),
        int(obs[f"{prefix}_low_capture_mode"].sum()),
    )


def test_svensson_20312_low_capture_mode(data_dir):
    """The motivating case: one MAD rule over all droplets flags 359 of 2,000 (the lower
    half of a broad low-capture mode); the modes find it (maxima at 400 and 1,749 ERCC
    UMI), flag no droplet as an outlier and put 750 in the low-capture mode."""
    adata = scmix.datasets.svensson2017("20312", data_dir=data_dir)
    before = scmix.tl.spike_in_qc(adata, mode_components=1, copy=True)
    scmix.tl.spike_in_qc(adata)
    modes = adata.uns["spike_in_qc"]["modes"]
    print(
        f"\nSvensson 20312: one mode {_counts(before)} -> modes {_counts(adata)} "
        f"(low capture, outliers, low-capture mode); centres {modes['centres']}, "
        f"cells {modes['n_cells']}"
    )
    assert _counts(before) == (359, 359, 0)
    assert modes["n_modes"] == 2 and modes["main"] == 1
    np.testing.assert_allclose(modes["centres"], [400, 1749], rtol=0.05)
    _, outliers, low_mode = _counts(adata)
    assert outliers <= 5 and 650 <= low_mode <= 850  # measured 0 and 750
    totals = adata.obs["spike_in_qc_total"].to_numpy()
    flagged = adata.obs["spike_in_qc_low_capture_mode"].to_numpy()
    assert totals[flagged].max() < np.median(totals[~flagged]) / 1.5


def test_zeisel_has_one_mode_and_the_same_outliers(data_dir):
    adata = scmix.datasets.zeisel2015(data_dir=data_dir)
    before = scmix.tl.spike_in_qc(
        adata, expected_molecules="ercc_expected_molecules", mode_components=1, copy=True
    )
    scmix.tl.spike_in_qc(adata, expected_molecules="ercc_expected_molecules")
    print(f"\nZeisel: one mode {_counts(before)} -> modes {_counts(adata)}")
    assert adata.uns["spike_in_qc"]["modes"]["n_modes"] == 1
    assert _counts(before) == _counts(adata) == (66, 66, 0)
