"""Datasets: simulation from the scmix model (loaders of published data follow)."""

from ._simulate import simulate

__all__ = ["simulate"]
