"""The first fit of a fresh installation compiles its kernels on two cores.

numba compiles one function at a time per process. On a fresh cache, the first fit
starts this module in a second process (:func:`compile_in_background`), which compiles
the kernels that the fit needs only later (the Newton steps, the M-step, the random
starts) on a tiny problem and writes them to the shared cache, while the fit compiles
the count levels, the quadrature and the E-step. When the fit reaches a kernel, numba
finds it in the cache; where the second process has not finished it yet, the fit
compiles it itself (the cache files are replaced atomically), so nothing waits on it.

Run as ``python -m scmix._core.fit.warmup``.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from ..numerics.jit import FIRST_RUN, worker_count

_started = False
_process: subprocess.Popen | None = None  # kept, so that it is not collected while running


def compile_in_background(family_name: str) -> None:
    """On a fresh cache with more than one core, once per process: compile the later
    kernels of ``family_name`` in a second process. Any failure to start it is ignored
    (the fit then compiles everything itself)."""
    global _started, _process
    if _started or not FIRST_RUN or worker_count(None) < 2 or not sys.executable:
        return
    _started = True
    try:
        _process = subprocess.Popen(
            [sys.executable, "-m", __name__, family_name],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    except (OSError, ValueError):
        pass


def compile_later_kernels(family_name: str = "nb") -> None:
    """Compile, in the order a first fit needs them after its first E-steps, the Newton
    steps (the marginal derivatives and the directions; the one-component fit takes
    them first), the M-step and the kernels of the starts of the K-component fit, by
    running each once on a tiny problem."""
    from ..em import starts
    from ..em.newton import NewtonSteps
    from ..families import get_family
    from ..families.base import ChunkData

    family = get_family(family_name)
    rng = np.random.default_rng(0)
    size_factors = rng.uniform(0.5, 2.0, 300)
    x = rng.poisson(np.outer([0.5, 3.0], size_factors)).astype(np.float64)
    x[:, 0] = 1.0  # every row has a count
    data = ChunkData(x, size_factors)
    n_rows, n_comp = x.shape[0], 2
    resp = np.full((n_rows, n_comp, x.shape[1]), 0.5)
    # parameters set here and no E-step state (every cell summed): the kernels the fit
    # compiles first (moments, quadrature, E-step) are not compiled twice
    params = {"mu": np.array([[0.4, 0.6], [2.5, 3.5]])}
    if "theta" in family.param_names:
        params["theta"] = np.full((n_rows, n_comp), 5.0)
    weights = np.full((n_rows, n_comp), 0.5)
    rows = np.arange(n_rows)
    newton = NewtonSteps(family, params, weights)
    newton.start(data, None, np.log(weights), np.zeros(n_rows), rows, 1e-6)
    family.m_step(data, resp, params, rows, None)
    y = starts.normalised_expression(x, size_factors)
    starts.quantile_labels(y, n_comp)
    starts.kmeanspp_labels(y, n_comp, rng.random((n_rows, n_comp)))


if __name__ == "__main__":
    compile_later_kernels(*sys.argv[1:2])
