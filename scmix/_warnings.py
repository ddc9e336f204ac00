"""Warnings that point at the user's line, however deep in scmix they are raised."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

_PACKAGE = str(Path(__file__).resolve().parent)


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` with the stack level of the first caller outside scmix, so that
    the warning names (and is filtered by) the notebook or script line that called it."""
    level, frame = 2, sys._getframe(1)  # stacklevel 1 is this function
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(_PACKAGE):
        level, frame = level + 1, frame.f_back
    warnings.warn(message, category, stacklevel=level)
