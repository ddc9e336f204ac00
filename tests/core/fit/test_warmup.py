"""The second process of a fresh installation's first fit (scmix._core.fit.warmup): it
must keep running the kernels a fit uses, with their signatures, for every family, or
it would compile nothing useful (silently: its errors are not shown)."""

from __future__ import annotations

import subprocess

import pytest

from scmix._core.families import FAMILIES
from scmix._core.fit import warmup


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_warm_up_runs_the_later_kernels_of_every_family(family):
    from scmix._core.em import newton, starts
    from scmix._core.families import _nb_mstep, poisson

    warmup.compile_later_kernels(family)
    kernels = [newton._held, newton._steps, starts._order_statistics, starts._kmeanspp_labels]
    kernels.append(
        _nb_mstep._nb_marginal_derivatives
        if family == "nb"
        else poisson._poisson_marginal_derivatives
    )
    assert all(kernel.signatures for kernel in kernels)


def test_the_fit_compiles_the_same_signatures_as_the_warm_up():
    """The warm-up's kernels get the argument types of a real fit (one signature each)."""
    import scmix
    from scmix._core.em import newton, starts
    from scmix._core.families import _nb_mstep

    scmix.tl.fit_mixture(scmix.datasets.simulate(n_cells=80, n_genes=3, random_state=1))
    warmup.compile_later_kernels("nb")
    for kernel in (_nb_mstep._nb_marginal_derivatives, _nb_mstep._nb_m_step, newton._held):
        assert len(kernel.signatures) == 1, kernel.__name__
    assert len(starts._kmeanspp_labels.signatures) == 1


def test_no_second_process_on_a_warm_cache(monkeypatch):
    started = []
    monkeypatch.setattr(warmup, "FIRST_RUN", False)
    monkeypatch.setattr(warmup, "_started", False)
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: started.append(a))
    warmup.compile_in_background("nb")
    assert not started
    monkeypatch.setattr(warmup, "FIRST_RUN", True)
    monkeypatch.setattr(warmup, "worker_count", lambda n_jobs: 2)
    warmup.compile_in_background("nb")
    warmup.compile_in_background("nb")  # once per process
    assert len(started) == 1 and started[0][0][-2:] == ["scmix._core.fit.warmup", "nb"]
