"""Shared fixtures. Real-data tests find ../shared/data through SCMIX_DATA_DIR; without it
they skip with a reason, except under CI (CI=true), where a missing folder is an error."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from adata_helpers import make_adata


def _data_dir() -> Path | None:
    value = os.environ.get("SCMIX_DATA_DIR")
    return Path(value) if value else None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = _data_dir()
    if path is None or not path.is_dir():
        reason = f"SCMIX_DATA_DIR is unset or not a folder ({path}): real-data test not run"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}, but CI=true requires the real data.")
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def svensson_20312(data_dir):
    """The Svensson 2017 Chromium ERCC-only sample 20312 as an AnnData (cells x 90 ERCC),
    with spike-in size factors (ERCC total per cell scaled to mean 1) in .obs."""
    import anndata as ad

    table = pd.read_csv(data_dir / "svensson2017_chromium_control" / "svensson2X.txt.gz", sep=" ")
    adata = ad.AnnData(table.T.to_numpy(dtype=np.int64))
    adata.obs_names = table.columns.astype(str)
    adata.var_names = table.index.astype(str)
    totals = adata.X.sum(axis=1)
    adata.obs["size_factors"] = totals / totals.mean()
    return adata


@pytest.fixture
def adata():
    """A small simulated AnnData (see adata_helpers.make_adata), new for each test."""
    return make_adata()


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No $SCMIX_DATA_DIR, an empty cache of our own, and no network (file:// URLs only)."""
    monkeypatch.delenv("SCMIX_DATA_DIR", raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv("SCMIX_CACHE_DIR", str(cache))
    real_urlopen = urllib.request.urlopen

    def local_only(url, *args, **kwargs):
        if not str(url).startswith("file:"):
            raise urllib.error.URLError("network disabled in the tests")
        return real_urlopen(url, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", local_only)
    return cache
