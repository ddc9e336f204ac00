"""Kernels compiled twice: threaded over genes for large work, serial for small.

numba's thread pool costs a few microseconds per call on an idle machine but
milliseconds when the cores are busy, and EM ends with long tails of calls on a
handful of still-active genes. Those go to the serial build.
"""

from __future__ import annotations

import threading
import types
from contextlib import contextmanager

import numba

#: Entries (genes x cells x components) below which a call runs serially: about
#: 25 microseconds of work, measured best on the Svensson ERCC fit (2 cores).
PARALLEL_MIN_WORK = 5_000


class GeneKernel:
    """A numba kernel whose outer ``prange`` runs over genes (or gene x component pairs)."""

    def __init__(self, function):
        self.parallel = numba.njit(parallel=True, cache=True, nogil=True)(function)
        # a distinct function object (and qualname), so the two builds cache separately
        serial = types.FunctionType(
            function.__code__,
            function.__globals__,
            function.__name__ + "_serial",
            function.__defaults__,
            function.__closure__,
        )
        serial.__qualname__ = function.__qualname__ + "_serial"
        serial.__doc__ = function.__doc__
        self.serial = numba.njit(cache=True, nogil=True)(serial)
        self.__doc__ = function.__doc__
        self.__name__ = function.__name__

    def __call__(self, *args, work: int | None = None):
        if getattr(_local, "serial", False) or (work is not None and work < PARALLEL_MIN_WORK):
            return self.serial(*args)
        return self.parallel(*args)


_local = threading.local()


@contextmanager
def serial_kernels():
    """Run every gene kernel serially in this thread (e.g. inside a dask task, where the
    parallelism comes from running several tasks at once, not from numba's threads)."""
    before = getattr(_local, "serial", False)
    _local.serial = True
    try:
        yield
    finally:
        _local.serial = before


def gene_kernel(function) -> GeneKernel:
    """Decorator: compile ``function`` as a :class:`GeneKernel`."""
    return GeneKernel(function)


@contextmanager
def numba_threads(n_jobs: int | None):
    """Use ``n_jobs`` threads for the parallel kernels inside the block (None: numba's
    setting; -1: every thread numba was started with)."""
    if n_jobs is None:
        yield
        return
    available = numba.config.NUMBA_NUM_THREADS
    before = numba.get_num_threads()
    numba.set_num_threads(available if n_jobs == -1 else min(n_jobs, available))
    try:
        yield
    finally:
        numba.set_num_threads(before)
