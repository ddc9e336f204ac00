"""The ``scmix`` console script, run in a subprocess as a user would."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pytest

import scmix.datasets

SCRIPT = Path(sys.executable).with_name("scmix")


def run(*args, cwd=None):
    return subprocess.run(
        [str(SCRIPT), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def assert_user_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # one line, no traceback
    assert re.match(r"scmix( fit)?: error: ", lines[0]), lines[0]
    for fragment in fragments:
        assert fragment in lines[0]


def test_console_script_is_installed():
    assert SCRIPT.is_file(), f"{SCRIPT} missing: install scmix (pip install -e .)"


def test_demo_end_to_end(tmp_path):
    out = tmp_path / "demo.h5ad"
    result = run("fit", "-o", out, "--plots", tmp_path / "plots", "--top", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "embedded demo" in result.stdout and "called bimodal: 8" in result.stdout
    assert ".obs['size_factors'] of the input" in result.stdout
    adata = ad.read_h5ad(out)
    var = adata.var
    for column in (
        "scmix_mean_1",
        "scmix_dispersion_0",
        "scmix_weight_1",
        "scmix_delta_bic",
        "scmix_lrt",
        "scmix_bimodal",
        "scmix_converged",
        "scmix_n_iter",
    ):
        assert column in var.columns
    layer = adata.layers["scmix_responsibility_1"]
    assert layer.shape == (adata.n_obs, adata.n_vars) and np.isfinite(layer).all()
    assert adata.uns["scmix"]["params"]["size_factors"] == "size_factors"
    # the demo's truth: only the two-component genes stay bimodal with spike-in offsets
    truly_two = var["true_n_components"].to_numpy() == 2
    assert np.array_equal(var["scmix_bimodal"].to_numpy(), truly_two)
    pngs = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert len(pngs) == 4 and "scmix_bimodality.png" in pngs
    # no progress bar when stderr is not a terminal (only, on a fresh cache, the line
    # that says the kernels compile)
    assert not [line for line in result.stderr.splitlines() if "compiling numerical" not in line]


def test_real_dataset_h5ad(tmp_path, data_dir):
    source = tmp_path / "svensson.h5ad"
    scmix.datasets.svensson2017("20312", data_dir=data_dir).write_h5ad(source)
    result = run(
        "fit",
        source,
        "--genes",
        "spike_in",
        "--size-factors",
        "spike_in",
        "--family",
        "poisson",
        "-k",
        "2",
        "--n-init",
        "1",
        "--seed",
        "3",
        "--key",
        "pm",
    )
    assert result.returncode == 0, result.stderr
    out = tmp_path / "svensson.scmix.h5ad"  # the default output beside the input
    adata = ad.read_h5ad(out)
    assert adata.uns["pm"]["params"]["family"] == "poisson"
    assert adata.uns["pm"]["params"]["random_state"] == 3
    totals = np.asarray(adata.X.sum(axis=1)).ravel()
    assert np.allclose(adata.obs["size_factors"], totals / totals.mean())
    assert adata.var["pm_loglik"].notna().sum() == 88  # two ERCC have no count
    assert "genes fitted: 88" in result.stdout


def test_gene_file_and_obs_key(tmp_path):
    adata = scmix.datasets.demo()
    adata.obs["depth"] = adata.obs["true_size_factors"]
    source = tmp_path / "in.h5ad"
    adata.write_h5ad(source)
    genes = tmp_path / "genes.txt"
    genes.write_text("# two genes\ngene_1\nERCC-00002\n")
    out = tmp_path / "out.h5ad"
    result = run("fit", source, "-o", out, "--genes", genes, "--size-factors", "depth", "-q")
    assert result.returncode == 0, result.stderr
    fitted = ad.read_h5ad(out)
    assert sorted(fitted.uns["scmix"]["var_names"]) == ["ERCC-00002", "gene_1"]
    assert fitted.uns["scmix"]["params"]["size_factors"] == "depth"


def test_help_documents_every_option():
    result = run("fit", "--help")
    assert result.returncode == 0
    for option in (
        "-o",
        "--layer",
        "--size-factors",
        "--genes",
        "-k",
        "--family",
        "--n-init",
        "--seed",
        "--plots",
        "--quiet",
        "--exclude-zero-cells",
        "INPUT.h5ad",
    ):
        assert option in result.stdout


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Small .h5ad files with one problem each."""
    folder = tmp_path_factory.mktemp("inputs")
    good = scmix.datasets.demo()
    good.write_h5ad(folder / "good.h5ad")
    negative = good.copy()
    negative.X = negative.X.toarray()
    negative.X[5, 3] = -1
    negative.write_h5ad(folder / "negative.h5ad")
    zero = good.copy()
    zero.X = zero.X.toarray()
    zero.X[7, :] = 0  # a cell without any count: its size factor would be zero
    del zero.obs["size_factors"]  # so that --size-factors auto computes them
    zero.write_h5ad(folder / "zero.h5ad")
    (folder / "not.h5ad").write_text("this is not an h5ad file\n")
    (folder / "unknown.txt").write_text("NOT_A_GENE\n")
    return folder


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["missing.h5ad"], ["missing.h5ad", "does not exist"]),
        (["not.h5ad"], ["cannot read", "not.h5ad"]),
        (["negative.h5ad"], ["negative", "cell_5"]),
        (["good.h5ad", "--size-factors", "nope"], ["'nope'", "neither a method"]),
        (["good.h5ad", "--layer", "spliced"], ["'spliced'", "layer"]),
        (["good.h5ad", "--genes", "nofile.txt"], ["nofile.txt"]),
        (["good.h5ad", "--genes", "unknown.txt"], ["NOT_A_GENE"]),
        (["good.h5ad", "-k", "0"], ["-k"]),
        (["good.h5ad", "--n-init", "0"], ["--n-init"]),
        (["zero.h5ad"], ["cell_7", "exclude_zero"]),
        (["good.h5ad", "--family", "gamma"], ["gamma"]),
        (["good.h5ad", "--no-such-option"], ["--no-such-option"]),
    ],
)
def test_user_errors_exit_2_in_one_line(inputs, args, fragments):
    result = run("fit", *args, "-o", inputs / "out.h5ad", cwd=inputs)
    assert_user_error(result, *fragments)
    assert not (inputs / "out.h5ad").exists()


def test_exclude_zero_cells(inputs, tmp_path):
    out = tmp_path / "out.h5ad"
    result = run("fit", inputs / "zero.h5ad", "-o", out, "--exclude-zero-cells", "-q")
    assert result.returncode == 0, result.stderr
    assert "scmix: warning: removed 1 cells" in result.stderr
    assert ad.read_h5ad(out).n_obs == 999


def test_progress_bar_in_python(capsys):
    adata = scmix.datasets.simulate(n_cells=200, n_genes=5, random_state=0)
    scmix.tl.fit_mixture(adata, n_init=1, progress=True)
    assert "5/5" in capsys.readouterr().err


# --------------------------------------------------------------------------------------
# outputs: checked before the fit, written atomically
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("output", "plots", "fragments"),
    [
        ("{tmp}", None, ["is a folder"]),
        ("{tmp}/afile/out.h5ad", None, ["does not exist"]),
        ("/proc/out.h5ad", None, ["cannot write the output", "/proc/out.h5ad"]),
        ("{tmp}/out.h5ad", "/proc/plots", ["--plots", "takes no new file"]),
        ("{tmp}/out.h5ad", "{tmp}/afile/plots", ["--plots", "is not a folder"]),
    ],
)
def test_unwritable_outputs_fail_before_the_fit(tmp_path, output, plots, fragments):
    (tmp_path / "afile").write_text("a file, not a folder\n")
    args = ["fit", "-o", output.format(tmp=tmp_path)]
    if plots:
        args += ["--plots", plots.format(tmp=tmp_path)]
    result = run(*args, "-q", cwd=tmp_path)
    assert_user_error(result, *fragments)
    assert result.stdout == ""  # no summary: nothing was fitted
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


_LIMITED_WRITE = """
import resource, signal, sys
import anndata

original = anndata.AnnData.write_h5ad

def write_under_a_file_size_limit(self, *args, **kwargs):
    # from here on no file may grow past {limit} bytes: the write fails midway
    {on_limit}
    resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, resource.RLIM_INFINITY))
    return original(self, *args, **kwargs)

anndata.AnnData.write_h5ad = write_under_a_file_size_limit
from scmix.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("killed", [False, True], ids=["write_error", "killed"])
@pytest.mark.parametrize("same_as_input", [False, True], ids=["other_file", "input_file"])
def test_failed_write_keeps_the_earlier_file(tmp_path, killed, same_as_input):
    """A write that fails (EFBIG) or is killed (SIGXFSZ) midway leaves the file at -o as
    it was, also when -o is the input itself."""
    source = tmp_path / "in.h5ad"
    scmix.datasets.demo().write_h5ad(source)
    out = source if same_as_input else tmp_path / "out.h5ad"
    if not same_as_input:
        out.write_bytes(source.read_bytes())  # a good earlier output
    before = out.read_bytes()
    on_limit = "pass" if killed else "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)"
    script = tmp_path / "limited.py"
    script.write_text(_LIMITED_WRITE.format(limit=len(before) // 4, on_limit=on_limit))
    result = subprocess.run(
        [sys.executable, str(script), "fit", str(source), "-o", str(out), "-q"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    # killed by SIGXFSZ; or h5py fails (and at times crashes while cleaning up)
    assert result.returncode != 0, result.stderr
    assert "File too large" in result.stderr or result.returncode == -signal.SIGXFSZ
    assert out.read_bytes() == before
    ad.read_h5ad(out)  # still a good file


def test_write_error_is_one_line_and_removes_the_temporary_file(tmp_path):
    from scmix import cli

    out = tmp_path / "out.h5ad"
    out.write_text("the earlier output\n")

    def fails_midway(path):
        path.write_text("half of a file")
        raise OSError(27, "File too large")

    with pytest.raises(cli.WriteError, match=r"writing .*out.h5ad.* failed .*File too large"):
        cli._write(out, fails_midway)
    assert out.read_text() == "the earlier output\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.h5ad"]


def test_output_may_be_the_input(tmp_path):
    source = tmp_path / "in.h5ad"
    scmix.datasets.demo().write_h5ad(source)
    result = run("fit", source, "-o", source, "-q")
    assert result.returncode == 0, result.stderr
    assert "scmix_bimodal" in ad.read_h5ad(source).var


def test_internal_errors_keep_their_traceback(monkeypatch, tmp_path):
    """Only scmix's input errors are exit 2 in one line: a ValueError from a bug is not."""
    from scmix import cli, tl

    def broken(*args, **kwargs):
        raise ValueError("an internal bug, not bad input")

    monkeypatch.setattr(tl, "fit_mixture", broken)
    with pytest.raises(ValueError, match="internal bug"):
        cli.main(["fit", "-q", "-o", str(tmp_path / "out.h5ad")])
    assert not (tmp_path / "out.h5ad").exists()


def test_seed_must_be_non_negative(tmp_path):
    assert_user_error(run("fit", "--seed", "-1", "-o", tmp_path / "o.h5ad"), "--seed")
