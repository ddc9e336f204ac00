"""The compiled kernels cannot go stale: their cache folder is named after a digest of
every engine source, so an edit anywhere in ``scmix/_core`` (a helper in another file, a
module constant) compiles afresh instead of meeting old machine code."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numba

import scmix._core.numerics.jit as jit_module
from scmix._core.numerics.jit import CACHE_DIR, source_hash

ENGINE = Path(jit_module.__file__).parents[1]  # scmix/_core


def test_any_edit_of_an_engine_source_changes_the_cache_folder(tmp_path):
    copy = tmp_path / "_core"
    shutil.copytree(ENGINE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    original = source_hash(copy)
    assert source_hash(copy) == original  # deterministic
    assert original == source_hash()  # the copy is the engine
    edited = source_hash(copy)
    for name in ("numerics/special.py", "families/nb.py", "em/driver.py"):
        helper = copy / name  # special.py: helpers inlined into kernels of other files
        helper.write_text(helper.read_text() + "\n# an edit\n")
        assert source_hash(copy) != edited, name
        edited = source_hash(copy)
    (copy / "families/nb.py").rename(copy / "families/nb_renamed.py")  # names count too
    assert source_hash(copy) != edited


def test_kernels_cache_in_the_hashed_folder_and_leave_numba_alone():
    from scmix._core.families._nb_kernels import _nb_e_step
    from scmix._core.numerics.kernels import row_sum

    assert Path(CACHE_DIR).name == f"scmix-{source_hash()}"
    for kernel in (row_sum, _nb_e_step):
        assert kernel._cache._cache_path.startswith(CACHE_DIR)
    # other packages' kernels keep numba's own setting
    assert numba.config.CACHE_DIR == os.environ.get("NUMBA_CACHE_DIR", "")


def test_numba_cache_dir_is_the_base_when_set(tmp_path):
    code = "from scmix._core.numerics.jit import CACHE_DIR; print(CACHE_DIR)"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert shown.returncode == 0, shown.stderr
    assert Path(shown.stdout.strip()) == tmp_path / f"scmix-{source_hash()}"


def test_first_fit_on_a_fresh_cache_says_once_that_kernels_compile(monkeypatch, caplog):
    import logging
    import threading

    import scmix

    monkeypatch.setattr(jit_module, "FIRST_RUN", True)
    monkeypatch.setattr(jit_module, "_announced", threading.Event())
    adata = scmix.datasets.simulate(n_cells=50, n_genes=2, random_state=0)
    with caplog.at_level(logging.INFO, logger="scmix"):
        scmix.tl.fit_mixture(adata, n_init=1, max_iter=3)
        scmix.tl.fit_mixture(adata, n_init=1, max_iter=3)
    lines = [
        r.getMessage() for r in caplog.records if "compiling numerical kernels" in r.getMessage()
    ]
    assert lines == [jit_module.COMPILING_MESSAGE]
    assert lines[0].startswith("compiling numerical kernels, once per installation")

    monkeypatch.setattr(jit_module, "FIRST_RUN", False)  # a warm cache: nothing said
    monkeypatch.setattr(jit_module, "_announced", threading.Event())
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="scmix"):
        scmix.tl.fit_mixture(adata, n_init=1, max_iter=3)
    assert not caplog.records


def test_first_fit_with_covariates_says_that_its_kernels_compile(monkeypatch, tmp_path, caplog):
    """Until a fit with covariates and K > 1 ran with these sources (a marker in the
    cache folder), a covariate fit says that it compiles; a K = 1 fit leaves no marker."""
    import logging

    import numpy as np
    import pandas as pd

    import scmix

    monkeypatch.setattr(jit_module, "CACHE_DIR", str(tmp_path / "cache"))
    adata = scmix.datasets.simulate(n_cells=60, n_genes=2, random_state=0)
    adata.obs["batch"] = pd.Categorical(np.arange(60) % 2)

    def said(n_components):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="scmix"):
            scmix.tl.fit_mixture(adata, n_components, covariates="batch", max_iter=5)
        return [r.getMessage() for r in caplog.records].count(jit_module.COVARIATE_MESSAGE)

    assert said(1) == 1
    assert said(2) == 1  # a K = 1 fit does not compile the mixture's kernel
    assert jit_module.covariate_kernels_cached()
    assert said(2) == 0
    assert said(1) == 0
