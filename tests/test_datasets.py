"""Loaders of the published datasets and the registry: shapes, counts, provenance,
checksums, download and the errors when a file is missing or wrong."""

from __future__ import annotations

import copy
import gzip
import shutil

import numpy as np
import pytest
from scipy import sparse

import scmix.datasets as datasets
from scmix.datasets import _registry

# cells, features, spike-ins, and the per-cell ERCC totals min / median / max of the data README
PUBLISHED = {
    "svensson2017_20311": (
        datasets.svensson2017,
        {"sample": "20311"},
        2000,
        90,
        90,
        (256, 1363, 4401),
    ),
    "svensson2017_20312": (
        datasets.svensson2017,
        {"sample": "20312"},
        2000,
        90,
        90,
        (225, 1526, 14011),
    ),
    "tung2017": (datasets.tung2017, {}, 564, 89, 89, (666, 1030, 2036)),
    "zeisel2015": (datasets.zeisel2015, {}, 1464, 1057, 57, (1002, 5700, 12974)),
    "macosko2015": (datasets.macosko2015, {}, 84, 80, 80, (4337, 12296, 21127)),
}


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_loader_matches_published_figures(name, data_dir):
    loader, kwargs, n_cells, n_features, n_spike, (low, middle, high) = PUBLISHED[name]
    adata = loader(**kwargs, data_dir=data_dir)
    assert adata.shape == (n_cells, n_features)
    assert np.issubdtype(adata.X.dtype, np.integer)
    dense = adata.X.toarray() if sparse.issparse(adata.X) else adata.X
    # CSR exactly when it is the smaller representation
    assert sparse.issparse(adata.X) == (np.count_nonzero(dense) / dense.size < 0.5)
    assert dense.min() >= 0
    assert adata.var["spike_in"].sum() == n_spike
    assert adata.var_names[adata.var["spike_in"]].str.startswith("ERCC-").all()
    totals = dense[:, adata.var["spike_in"].to_numpy()].sum(axis=1)
    assert (totals.min(), totals.max()) == (low, high)
    assert abs(np.median(totals) - middle) <= 0.5
    # concentrations for every ERCC of the reference table, NaN elsewhere
    known = adata.var["ercc_mix1_attomoles_ul"].notna()
    assert known.sum() > 0.85 * n_spike and not known[~adata.var["spike_in"]].any()
    info = adata.uns["dataset"]
    assert info["name"] == name and "doi" in info["citation"] and info["files"]
    assert adata.obs_names.is_unique and adata.var_names.is_unique


def test_ercc_reference_concentrations(data_dir):
    table = datasets.ercc_reference(data_dir=data_dir)
    assert table.shape == (92, 3)
    assert table.loc["ERCC-00130", "ercc_mix1_attomoles_ul"] == 30000
    assert table.loc["ERCC-00002", "ercc_mix2_attomoles_ul"] == 30000
    assert set(table["ercc_subgroup"]) == {"A", "B", "C", "D"}


def test_tung_annotations(data_dir):
    adata = datasets.tung2017(data_dir=data_dir)
    obs = adata.obs
    assert obs["batch"].nunique() == 8 and obs["individual"].nunique() == 3
    assert (
        obs["batch"].astype(str)
        == obs["individual"].astype(str) + "." + obs["replicate"].astype(str)
    ).all()
    assert (obs["endogenous_molecules"] > 0).all()
    assert (obs["endogenous_reads"] > obs["endogenous_molecules"]).all()
    first = obs.loc["NA19098.r1.A01"]
    assert first["endogenous_molecules"] == 63322 and first["well"] == "A01"
    # ERCC capture differs by batch (median ERCC total per batch about 849 to 1544)
    totals = np.asarray(adata.X.sum(axis=1)).ravel()
    medians = obs.assign(total=totals).groupby("batch", observed=True)["total"].median()
    assert 800 < medians.min() < 900 and 1500 < medians.max() < 1600


def test_zeisel_annotations(data_dir):
    adata = datasets.zeisel2015(data_dir=data_dir)
    assert adata.obs["cell_type"].nunique() == 3
    assert adata.var["ercc_expected_molecules"].notna().sum() == 57
    assert not adata.var["spike_in"][:1000].any() and adata.var["spike_in"][1000:].all()


def test_demo_ships_with_the_package(monkeypatch, tmp_path):
    monkeypatch.delenv("SCMIX_DATA_DIR", raising=False)
    monkeypatch.setenv("SCMIX_CACHE_DIR", str(tmp_path))
    adata = datasets.demo()
    assert np.issubdtype(adata.X.dtype, np.integer)
    assert adata.var["spike_in"].sum() >= 40 and (~adata.var["spike_in"]).sum() >= 5
    assert "simulation" in adata.uns and "true_size_factors" in adata.obs
    assert not any(tmp_path.iterdir())  # nothing downloaded


# --- files that are wrong, missing or downloaded -----------------------------------------

SVENSSON = "svensson2017_chromium_control/svensson2X.txt.gz"


def _copy_to(tmp_path, data_dir, relpath=SVENSSON):
    """A data folder with a copy of ``relpath`` (and of the ERCC reference)."""
    folder = tmp_path / "data"
    for path in (relpath, datasets._loaders.ERCC_INFO):
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(data_dir / path, folder / path)
    return folder, folder / relpath


def test_copy_in_data_dir_verifies(tmp_path, data_dir, offline):
    folder, _ = _copy_to(tmp_path, data_dir)
    adata = datasets.svensson2017("20312", data_dir=folder)
    assert adata.shape == (2000, 90)


def test_corrupted_file_is_a_checksum_error(tmp_path, data_dir, offline):
    folder, target = _copy_to(tmp_path, data_dir)
    text = gzip.decompress(target.read_bytes())
    # one count changed (a valid file that parses, but not the published one)
    position = text.index(b" 83 ")
    target.write_bytes(gzip.compress(text[:position] + b" 84 " + text[position + 4 :]))
    with pytest.raises(datasets.ChecksumError, match="svensson2X"):
        datasets.svensson2017("20312", data_dir=folder)


def test_truncated_file_is_a_checksum_error(tmp_path, data_dir, offline):
    folder, target = _copy_to(tmp_path, data_dir)
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    with pytest.raises(datasets.ChecksumError, match="cannot be read"):
        datasets.svensson2017("20312", data_dir=folder)


def test_unparsable_file_is_a_parse_error(tmp_path, data_dir, offline, monkeypatch):
    """A file registered with a checksum but holding non-counts fails in the parser."""
    folder, target = _copy_to(tmp_path, data_dir)
    text = gzip.decompress(target.read_bytes()).replace(b" 83 ", b" 8.5 ", 1)
    target.write_bytes(gzip.compress(text))
    _register(monkeypatch, SVENSSON, sha256=_registry.content_sha256(target))
    with pytest.raises(ValueError, match="not non-negative integers"):
        datasets.svensson2017("20312", data_dir=folder)


def _register(monkeypatch, relpath, **changes):
    table = copy.deepcopy(_registry.registry())
    table[relpath].update(changes)
    monkeypatch.setattr(_registry, "registry", lambda: table)


def test_missing_file_error_says_where_and_how(tmp_path, offline, monkeypatch):
    _register(monkeypatch, SVENSSON, urls=[(tmp_path / "nowhere.txt").as_uri()])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(datasets.DatasetNotFoundError) as error:
        datasets.svensson2017("20312", data_dir=empty)
    message = str(error.value)
    assert str(empty) in message and str(offline) in message
    assert "SCMIX_DATA_DIR" in message and "download failed" in message


def test_zeisel_without_any_copy_names_its_public_source(tmp_path, offline):
    """No tsv copy and no network: the error names the public .rda and where it is."""
    with pytest.raises(datasets.DatasetNotFoundError) as error:
        datasets.zeisel2015(data_dir=tmp_path)
    message = str(error.value)
    assert "zeisel.rda" in message and "download failed" in message
    assert "jingshuw/descend/8055f403b82e" in message


def test_download_verifies_and_caches(tmp_path, data_dir, offline, monkeypatch):
    source = tmp_path / "server" / "svensson2X.txt"  # served uncompressed, as upstream
    source.parent.mkdir()
    source.write_bytes(gzip.decompress((data_dir / SVENSSON).read_bytes()))
    wrong = tmp_path / "server" / "wrong.txt"
    wrong.write_bytes(b"not the file\n")
    _register(monkeypatch, SVENSSON, urls=[wrong.as_uri(), source.as_uri()])
    # the ERCC reference comes from the real data folder
    reference = tmp_path / "ref"
    shutil.copytree(data_dir / "ercc_reference", reference / "ercc_reference")
    monkeypatch.setenv("SCMIX_DATA_DIR", str(reference))
    adata = datasets.svensson2017("20312")
    cached = offline / "svensson2017_chromium_control" / "svensson2X.txt"
    assert cached.is_file() and adata.shape == (2000, 90)
    assert [p.name for p in cached.parent.iterdir()] == ["svensson2X.txt"]  # no partial left
    source.unlink()
    again = datasets.svensson2017("20312")  # from the cache, no download
    assert (again.X != adata.X).nnz == 0


def test_unknown_sample():
    with pytest.raises(ValueError, match="20311"):
        datasets.svensson2017("99999")
