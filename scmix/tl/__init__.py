"""Tools: fit models to an AnnData and write the results to it."""

from ._fit_mixture import fit_mixture
from ._goodness_of_fit import goodness_of_fit
from ._select import select_n_components
from ._size_factor_modes import size_factor_modes
from ._spike_in_qc import spike_in_qc
from ._technical_noise import technical_noise

__all__ = [
    "fit_mixture",
    "goodness_of_fit",
    "select_n_components",
    "size_factor_modes",
    "spike_in_qc",
    "technical_noise",
]
