"""The settings of an EM fit of a count matrix, in one structure that every layer passes on."""

from __future__ import annotations

from dataclasses import dataclass

#: Defaults of every fit (``fit_mixture``, ``select_n_components``, the estimators).
DEFAULT_N_INIT = 3
DEFAULT_MAX_ITER = 1000
DEFAULT_TOL = 1e-6
#: Default working-memory budget of the gene chunks being fitted.
DEFAULT_MEMORY_BYTES = 256 * 2**20


@dataclass(frozen=True)
class FitSettings:
    """How a fit runs: its starts and stopping rule, and how its work is split.

    Built from the user's options by :func:`scmix._core.validation.check_fit_options`.
    """

    #: Label starts per gene (k-means++ and quantile splits, see :mod:`..em.starts`).
    n_init: int = DEFAULT_N_INIT
    #: Most EM (or Newton) steps per start.
    max_iter: int = DEFAULT_MAX_ITER
    #: Convergence: a log-likelihood gain of at most ``tol * n_cells`` per SQUAREM cycle.
    tol: float = DEFAULT_TOL
    #: Seed of the per-gene uniforms of the random starts.
    random_state: int | None = None
    #: SQUAREM acceleration (off: plain EM).
    accelerate: bool = True
    #: Keep the log-likelihood along the EM path of the best start.
    keep_trace: bool = False
    #: Genes per chunk (None: from ``memory_bytes``).
    chunk_size: int | None = None
    #: Working memory of the chunks being fitted, shared by the threads.
    memory_bytes: int = DEFAULT_MEMORY_BYTES
    #: Threads fitting chunks at once (None or -1: one per core).
    n_jobs: int | None = None


#: The settings of a fit given no options.
DEFAULT_SETTINGS = FitSettings()
