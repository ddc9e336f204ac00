"""Tools: fit models to an AnnData and write the results to it."""

from ._fit_mixture import fit_mixture

__all__ = ["fit_mixture"]
