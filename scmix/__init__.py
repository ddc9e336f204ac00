"""scmix: mixtures of negative binomials with size-factor offsets for single-cell counts.

Submodules follow scanpy: ``pp`` (preprocessing), ``tl`` (tools), ``pl`` (plots),
``get``, ``datasets`` and ``models`` (array-level estimators). They are imported
on first use, so ``import scmix`` stays light (no scanpy, no matplotlib).
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("scmix")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

from ._core.errors import InputError, InputKeyError

_SUBMODULES = ("pp", "tl", "pl", "get", "datasets", "models")

__all__ = [*_SUBMODULES, "InputError", "InputKeyError", "__version__"]


def __getattr__(name: str):
    if name in _SUBMODULES:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'scmix' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
