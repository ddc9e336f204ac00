"""Distribution families: each knows its log-pmf and its M-step."""

from ..errors import InputError
from .base import MU_MIN, Family
from .nb import THETA_MAX, THETA_MIN, NegativeBinomial
from .poisson import Poisson

FAMILIES = {"nb": NegativeBinomial, "poisson": Poisson}


def get_family(name: str, **options) -> Family:
    """The family called ``name`` (``"nb"`` or ``"poisson"``)."""
    try:
        return FAMILIES[name](**options)
    except KeyError:
        raise InputError(f"family must be one of {sorted(FAMILIES)}, got {name!r}") from None


__all__ = [
    "FAMILIES",
    "MU_MIN",
    "THETA_MAX",
    "THETA_MIN",
    "Family",
    "NegativeBinomial",
    "Poisson",
    "get_family",
]
