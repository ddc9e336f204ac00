"""Fixtures of the plotting tests."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest


@pytest.fixture(autouse=True)
def _close_figures():
    """Every test's figures closed after it (matplotlib keeps them otherwise)."""
    yield
    plt.close("all")
