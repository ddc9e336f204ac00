"""Keeping the best of several starts and ordering its components: the one rule of
every fit with starts (the per-gene EM of :mod:`.driver`, the cell-level EM of
:mod:`.shared`, the CAVI of :mod:`scmix._core.vi.cavi`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def best_start(objectives: np.ndarray | Sequence[float]) -> np.ndarray:
    """Index of the best start along axis 0 (highest objective, the earliest on ties);
    a NaN objective is never the best unless every start has one."""
    values = np.asarray(objectives, dtype=np.float64)
    return np.argmax(np.where(np.isnan(values), -np.inf, values), axis=0)


def component_order(key: np.ndarray) -> np.ndarray:
    """The order of the components by increasing ``key`` along the last axis (stable:
    equal keys keep their order), as every fit reports them."""
    return np.argsort(key, axis=-1, kind="stable")
