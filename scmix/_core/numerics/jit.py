"""Kernels compiled twice: threaded over genes for large work, serial for small.

numba's thread pool costs a few microseconds per call on an idle machine but
milliseconds when the cores are busy, and EM ends with long tails of calls on a
handful of still-active genes. Those go to the serial build.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import types
from contextlib import contextmanager
from pathlib import Path

import numba

#: Options of every scmix kernel: compiled once and cached, the GIL released, and
#: division as in numpy (x / 0 gives inf or nan instead of raising). The zero check of
#: Python's division is a branch that keeps LLVM from vectorising any loop that divides.
JIT_OPTIONS = {"cache": True, "nogil": True, "error_model": "numpy"}


def source_hash(root: Path | None = None) -> str:
    """A digest of every source file of the engine (``scmix/_core``, by default)."""
    root = Path(__file__).parents[1] if root is None else root
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _cache_dir() -> str:
    """Where the compiled kernels are cached: a folder named after :func:`source_hash`,
    under ``$NUMBA_CACHE_DIR`` or the user's cache folder. numba checks a cached kernel
    against its own source file only; an edit to a helper in another file (or to a
    module constant) would leave it stale. Keyed on every engine source, an edited
    engine compiles afresh and never meets an old kernel."""
    base = os.environ.get("NUMBA_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "scmix",
        "numba",
    )
    return os.path.join(base, f"scmix-{source_hash()}")


#: The cache folder of this version of the engine's sources.
CACHE_DIR = _cache_dir()
#: No kernel of these sources was cached yet (read before any kernel is decorated:
#: numba makes the folder then): the first fit compiles them.
FIRST_RUN = not os.path.isdir(CACHE_DIR)
_announced = threading.Event()


def announce_compilation() -> None:
    """Say once, on the ``scmix`` logger (INFO), that the kernels are being compiled:
    the first fit of a fresh installation spends about a minute on it."""
    if FIRST_RUN and not _announced.is_set():
        _announced.set()
        logging.getLogger("scmix").info(
            "compiling numerical kernels, once per installation (about a minute)"
        )


def _njit(**options):
    """``numba.njit(**options)``, caching in :data:`CACHE_DIR`. numba picks a function's
    cache folder when it is decorated, from its global setting: set only meanwhile, so
    that other packages' numba caches stay where they were."""
    decorate = numba.njit(**options)

    def decorator(function):
        saved = numba.config.CACHE_DIR
        numba.config.CACHE_DIR = CACHE_DIR
        try:
            return decorate(function)
        finally:
            numba.config.CACHE_DIR = saved

    return decorator


#: The decorator of a kernel, and of a small helper numba inlines into its callers.
jit = _njit(**JIT_OPTIONS)
inline_jit = _njit(inline="always", **JIT_OPTIONS)
#: The decorator of a sum over an array: ``reassoc`` lets LLVM add in vector registers
#: (and so in another order), which it may not for floats otherwise. Only sums get it,
#: so that no other expression is regrouped; numba would lose the flag when inlining,
#: LLVM keeps it (it is an attribute of each addition).
sum_jit = _njit(fastmath={"reassoc"}, **JIT_OPTIONS)

#: Entries (genes x cells x components) below which a call runs serially: about
#: 25 microseconds of work, measured best on the Svensson ERCC fit (2 cores).
PARALLEL_MIN_WORK = 5_000


class GeneKernel:
    """A numba kernel whose outer ``prange`` runs over genes (or gene x component pairs)."""

    def __init__(self, function):
        self.parallel = _njit(parallel=True, **JIT_OPTIONS)(function)
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
        self.serial = _njit(**JIT_OPTIONS)(serial)
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
