"""The README's Python quick start runs as written and prints what the README says."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_quick_start_on_real_data(data_dir, capsys, monkeypatch):
    monkeypatch.setenv("SCMIX_DATA_DIR", str(data_dir))
    text = README.read_text()
    (block,) = [b for b in _python_blocks(text) if "svensson2017" in b]
    exec(compile(block, str(README), "exec"), {})
    printed = capsys.readouterr().out
    claimed = re.search(r"# (\d+) and (\d+) of (\d+)", block)
    assert claimed, "the README states the numbers it prints"
    without, with_, _ = claimed.groups()
    assert f"{without} bimodal without size factors, {with_} with" in printed
