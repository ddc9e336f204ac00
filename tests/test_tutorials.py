"""Every tutorial notebook (tutorials/*.ipynb) runs end to end on the real data.

Each notebook is executed in a temporary copy (the files in the repository are never
written), with SCMIX_DATA_DIR set for the kernel and MPLBACKEND=Agg. The notebooks end
with a cell of asserts on their key numbers, so a silently wrong result fails here too.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

TUTORIALS_DIR = Path(__file__).resolve().parents[1] / "tutorials"
TUTORIALS = sorted(TUTORIALS_DIR.glob("*.ipynb"))


def test_tutorials_are_stored_clean():
    """Valid notebooks, saved without outputs or execution counts (no data needed)."""
    assert TUTORIALS, f"no notebook in {TUTORIALS_DIR}"
    for path in TUTORIALS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs, f"{path.name}: a code cell has stored outputs"
                assert cell.execution_count is None, f"{path.name}: stored execution count"


@pytest.mark.parametrize("notebook", TUTORIALS, ids=[path.stem for path in TUTORIALS])
def test_tutorial_runs(notebook, data_dir, tmp_path, monkeypatch):
    copy = tmp_path / notebook.name
    shutil.copyfile(notebook, copy)
    nb = nbformat.read(copy, as_version=4)
    # the kernel inherits this process's environment
    monkeypatch.setenv("SCMIX_DATA_DIR", str(data_dir))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    client = NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},  # the kernel's working directory
    )
    client.execute()
