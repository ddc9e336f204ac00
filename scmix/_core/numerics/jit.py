"""How scmix compiles its numba kernels: options, cache folder, and how many threads fit.

Every kernel is compiled once, serial (no ``parallel=True`` build): parallelism comes
from running gene chunks in threads (:func:`worker_count`; the kernels release the
GIL), which costs no second build of each kernel and keeps a newcomer's first fit
short. Kernels take a few named structures (namedtuples of arrays, one dtype per
field), so that each compiles for one signature.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numba
import numpy as np

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
#: What the first fit says (the CLI prints it unless ``-q``).
COMPILING_MESSAGE = "compiling numerical kernels, once per installation (about 10 seconds)"


def announce_compilation() -> None:
    """Say once, on the ``scmix`` logger (INFO), that the kernels are being compiled:
    the first fit of a fresh installation spends some seconds on it."""
    if FIRST_RUN and not _announced.is_set():
        _announced.set()
        logging.getLogger("scmix").info(COMPILING_MESSAGE)


#: What the first fit with covariates says: their kernels are compiled apart.
COVARIATE_MESSAGE = (
    "compiling the kernels of the fits with covariates, once per installation (about 40 s)"
)


def covariate_kernels_cached() -> bool:
    """Whether a fit with covariates ran to its end with these sources (a marker in
    :data:`CACHE_DIR`, written by :func:`mark_covariate_kernels_cached`)."""
    return os.path.exists(os.path.join(CACHE_DIR, "covariates.compiled"))


def mark_covariate_kernels_cached() -> None:
    """Leave the marker of :func:`covariate_kernels_cached` (ignored if it cannot)."""
    try:
        os.makedirs(CACHE_DIR, exist_ok=True)
        with open(os.path.join(CACHE_DIR, "covariates.compiled"), "w"):
            pass
    except OSError:
        pass


def announce_covariate_compilation() -> bool:
    """Say (``scmix`` logger, INFO) that the covariate kernels are being compiled, when
    no fit with covariates has run with these sources; returns whether it said so."""
    if covariate_kernels_cached():
        return False
    logging.getLogger("scmix").info(COVARIATE_MESSAGE)
    return True


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


#: The decorator of a kernel and of its helpers. Helpers are not inlined by numba
#: (``inline="always"`` repeats their typing in every caller, seconds of compilation);
#: LLVM inlines the small ones anyway.
jit = _njit(**JIT_OPTIONS)
#: The decorator of the small helpers of the hot loops (the scalar log-pmfs, the
#: normalisation of responsibilities, the branch-free special functions, which loops
#: must inline to vectorise): inlined by numba, not left to LLVM's judgement (the
#: per-node and per-cell calls are the E-steps' inner loops).
inline_jit = _njit(inline="always", **JIT_OPTIONS)
#: The decorator of a sum over an array: ``reassoc`` lets LLVM add in vector registers
#: (and so in another order), which it may not for floats otherwise. Only sums get it,
#: so that no other expression is regrouped; numba would lose the flag when inlining,
#: LLVM keeps it (it is an attribute of each addition).
sum_jit = _njit(fastmath={"reassoc"}, **JIT_OPTIONS)


#: Entries (rows x cells x components) of a kernel call below which it runs in the
#: calling thread alone: handing rows to another thread costs tens of microseconds.
ROW_SPLIT_MIN_WORK = 50_000
_local = threading.local()
_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


@contextmanager
def row_threads(n_threads: int):
    """Let the kernel calls of this thread split their rows over ``n_threads`` threads
    (:func:`over_rows`): how a fit too small for a chunk per thread still uses the
    cores. Elsewhere (threads fitting chunks, dask tasks) kernels run where called."""
    before = getattr(_local, "n_threads", 1)
    _local.n_threads = n_threads
    try:
        yield
    finally:
        _local.n_threads = before


def over_rows(call, active: np.ndarray, work: int) -> None:
    """``call(rows)`` for the rows ``active`` (a kernel writing each row's results in
    place), split into contiguous parts run at once where :func:`row_threads` allows
    and the ``work`` is large enough; the kernels release the GIL."""
    n_threads = min(getattr(_local, "n_threads", 1), active.size)
    if n_threads <= 1 or work < ROW_SPLIT_MIN_WORK:
        call(active)
        return
    # interleaved (costs vary along the rows), and contiguous: one signature per kernel
    parts = [np.ascontiguousarray(active[t::n_threads]) for t in range(n_threads)]
    with _pools_lock:
        pool = _pools.get(n_threads)
        if pool is None:
            pool = _pools[n_threads] = ThreadPoolExecutor(n_threads - 1)
    others = [pool.submit(call, part) for part in parts[1:]]
    call(parts[0])
    for future in others:
        future.result()


def worker_count(n_jobs: int | None) -> int:
    """Threads that fit gene chunks at once: ``n_jobs``, or every core this process may
    use for None or -1."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        available = os.cpu_count() or 1
    if n_jobs is None or n_jobs == -1:
        return available
    return max(1, min(int(n_jobs), available))
