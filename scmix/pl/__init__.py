"""Plots (matplotlib, imported on first use of ``scmix.pl``), following scanpy's
conventions: keyword options, ``ax=`` to draw into an existing Axes, ``show=``,
and the Axes returned so that users can adjust it or call ``fig.savefig``."""

from ._bimodality import bimodality
from ._diagnostics import convergence, qq
from ._mixture import mixture
from ._responsibilities import responsibilities
from ._size_factors import size_factors
from ._spike_in_qc import spike_in_qc
from ._technical_noise import technical_noise

__all__ = [
    "bimodality",
    "convergence",
    "mixture",
    "qq",
    "responsibilities",
    "size_factors",
    "spike_in_qc",
    "technical_noise",
]
