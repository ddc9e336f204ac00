"""Distribution families: each knows its log-pmf and its M-step."""

from ..errors import InputError
from .base import MU_MIN, Family
from .nb import THETA_MAX, THETA_MIN, NegativeBinomial
from .poisson import Poisson

FAMILIES = {"nb": NegativeBinomial, "poisson": Poisson}


def get_family(name: str, **options) -> Family:
    """The family called ``name`` (``"nb"`` or ``"poisson"``)."""
    if not isinstance(name, str) or name not in FAMILIES:
        raise InputError(f"family must be one of {sorted(FAMILIES)}, got {name!r}")
    return FAMILIES[name](**options)


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
