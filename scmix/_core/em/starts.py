"""Starting points for EM: hard labels of the cells of each gene.

Every start works on ``y = log1p(x / s)``, the depth-normalised expression:

* start 0 splits the cells of each gene into K groups of equal size by the
  rank of y (deterministic);
* start 1 nests the components: K equal groups by the rank of ``|y - median|``,
  so that a tight component sits inside broad ones (deterministic). Mixtures
  of a narrow and a wide NB with similar means are common optima that
  splitting by level does not reach. Where this is the quantile split again
  (more than half of the counts are zero) it is a k-means++ start instead;
* later starts use k-means++ seeding on y followed by a few Lloyd iterations,
  driven by uniforms drawn once per gene, so that a gene's start does not
  depend on which chunk it is processed in.

The caller may add a start from per-cell responsibilities shared by all genes
(e.g. the posterior probabilities of the size-factor modes); with ``n_init=0`` it
replaces the label starts. For K > 1 the split of the one-component fit is always
one more start.
"""

from __future__ import annotations

import numpy as np

from ..numerics.jit import inline_jit, jit, over_rows

_LLOYD_ITERATIONS = 10
#: Private switch: False computes the starts the long way (the same labels, slower:
#: k-means++ seeds and Lloyd iterations over every cell, both splits of every gene for
#: the nested start),
#: for the before/after timing of benchmarks/fit_speed.py.
_SHORTCUTS = True


def normalised_expression(x: np.ndarray, size_factors: np.ndarray) -> np.ndarray:
    """``log1p(x / s)``, shape ``(n_genes, n_cells)``."""
    return np.log1p(x / size_factors[None, :])


def quantile_labels(y: np.ndarray, n_components: int) -> np.ndarray:
    """Label cells 0..K-1 by the rank of y within each gene (equal-size groups), ties
    kept together: a cell's group is that of the first cell with its value, so that
    equal counts (typically the zeros) do not land in two groups. Where that would
    leave a group empty, the groups are of equal size (ties split by position)."""
    # A cell's group is floor(K r / n) with r the number of cells below its value
    # (the rank of the first cell of its tie): it passes boundary k when r >=
    # ceil(k n / K), i.e. when its value exceeds the ceil(k n / K)-th smallest. Those
    # K - 1 order statistics come from a selection, in linear time.
    y = np.ascontiguousarray(y, dtype=np.float64)
    n_genes, n_cells = y.shape
    labels = np.zeros((n_genes, n_cells), dtype=np.int64)
    work = np.empty(n_cells)
    for k in range(1, n_components):
        rank = -((-k * n_cells) // n_components) - 1  # ceil(k n / K) - 1, from 0
        labels += y > _order_statistics(y, rank, work)[:, None]
    # a tie as large as a group: equal-size groups, ties split by position
    empty = np.zeros(n_genes, dtype=bool)
    for k in range(n_components):
        empty |= ~(labels == k).any(axis=1)
    tied = np.flatnonzero(empty)
    for g in tied:
        order = np.argsort(y[g], kind="stable")
        labels[g, order] = (np.arange(n_cells) * n_components) // n_cells
    return labels


@inline_jit
def _nearest(value, centres):
    """Index of the centre nearest to ``value`` (the lowest index on ties)."""
    best = 0
    for k in range(1, centres.shape[0]):
        if abs(value - centres[k]) < abs(value - centres[best]):
            best = k
    return best


@jit
def _order_statistics(y, rank, work):
    """The ``rank``-th smallest value (from 0) of each row of ``y``: quickselect with a
    three-way partition, which stays linear where most values tie (the zeros of a
    sparse gene; numpy's introselect took ten times as long on those)."""
    n_genes, n = y.shape
    out = np.empty(n_genes)
    for g in range(n_genes):
        for i in range(n):
            work[i] = y[g, i]
        low, high = 0, n  # the rank lies in work[low:high]
        while True:
            a, b, c = work[low], work[(low + high - 1) // 2], work[high - 1]
            pivot = max(min(a, b), min(max(a, b), c))  # the median of three
            # work[low:lt] < pivot, work[lt:i] == pivot, work[gt:high] > pivot
            lt, i, gt = low, low, high
            while i < gt:
                v = work[i]
                if v < pivot:
                    work[i], work[lt] = work[lt], v
                    lt += 1
                    i += 1
                elif v > pivot:
                    gt -= 1
                    work[i], work[gt] = work[gt], v
                else:
                    i += 1
            if rank < lt:
                high = lt
            elif rank >= gt:
                low = gt
            else:
                out[g] = pivot
                break
    return out


@jit
def _sort_small(values):
    """Sort a few values in place (insertion sort: numba's quicksort is seconds of
    compilation for K numbers)."""
    for i in range(1, values.shape[0]):
        value = values[i]
        j = i - 1
        while j >= 0 and values[j] > value:
            values[j + 1] = values[j]
            j -= 1
        values[j + 1] = value


def kmeanspp_labels(y: np.ndarray, n_components: int, uniforms: np.ndarray) -> np.ndarray:
    """k-means++ seeds (one uniform per centre, ``uniforms`` of shape (n_genes, K)),
    then Lloyd iterations; labels ordered by centre so that label 0 is the lowest. A
    numba kernel rather than scikit-learn's ``KMeans``: every gene is a one-dimensional
    problem of its own, thousands per chunk, one Python call each there."""
    y = np.ascontiguousarray(y, dtype=np.float64)
    uniforms = np.ascontiguousarray(uniforms[:, :n_components], dtype=np.float64)
    labels = np.empty(y.shape, dtype=np.int64)
    shortcuts = _SHORTCUTS
    over_rows(
        lambda rows: _kmeanspp_labels(y, uniforms, rows, labels, shortcuts),
        np.arange(y.shape[0]),
        work=y.size * n_components * _LLOYD_ITERATIONS,
    )
    return labels


@jit
def _seed_from_zero(row, others, uniform):
    """The cell of k-means++'s second seed where the first is 0 and ``others`` are the
    cells not at 0: those at 0 add exact zeros to the cumulative squared distances, so
    the first cell where the sum over every cell reaches its target is the first of the
    others where their sum does (or cell 0, for a target of 0), as in
    :func:`_kmeanspp_labels`."""
    total = 0.0
    for t in range(others.shape[0]):
        total += row[others[t]] ** 2
    target = uniform * total
    if not target > 0.0:
        return 0
    running = 0.0
    for t in range(others.shape[0]):
        running += row[others[t]] ** 2
        if running >= target:
            return others[t]
    return row.shape[0] - 1


@jit
def _kmeanspp_labels(y, uniforms, rows, labels, shortcuts):
    """The kernel of :func:`kmeanspp_labels`. With ``shortcuts`` (the default; off
    only to time the plain loop), the Lloyd iterations give the same centres with less
    work: the cells at 0 (the zero counts, most cells of a sparse gene) are one group
    whose nearest centre is found once (adding 0.0 leaves a total as it is, and the
    count of cells is an exact integer) and labelled at once, and the iterations stop
    once no centre moved (the next ones would repeat the same sums exactly). Two
    centres whose first seed is at 0 draw the second from the other cells alone
    (:func:`_seed_from_zero`)."""
    n_cells = y.shape[1]
    n_components = uniforms.shape[1]
    centres = np.empty(n_components)
    totals = np.empty(n_components)
    counts = np.empty(n_components)
    dist2 = np.empty(n_cells)
    cumulative = np.empty(n_cells)
    others = np.empty(n_cells, dtype=np.int64)  # the cells not at 0
    for g in rows:
        row = y[g]
        n_others = 0
        for i in range(n_cells):
            if not shortcuts or row[i] != 0.0:
                others[n_others] = i
                n_others += 1
        centres[0] = row[min(int(uniforms[g, 0] * n_cells), n_cells - 1)]
        # two centres, the first at 0 (most often, on a sparse gene): the second seed
        # from the cells not at 0 alone
        seeded = shortcuts and n_components == 2 and centres[0] == 0.0
        if seeded:
            centres[1] = row[_seed_from_zero(row, others[:n_others], uniforms[g, 1])]
        for k in range(1, 1 if seeded else n_components):
            # the first cell where the cumulative squared distance reaches the target
            running = 0.0
            for i in range(n_cells):
                if k == 1:  # the distances to the first centre, in the same pass
                    dist2[i] = (row[i] - centres[0]) ** 2
                running += dist2[i]
                cumulative[i] = running
            target = uniforms[g, k] * cumulative[n_cells - 1]
            pick = 0
            while pick < n_cells - 1 and cumulative[pick] < target:
                pick += 1
            centres[k] = row[pick]
            if k < n_components - 1:  # the last centre's distances are not used
                for i in range(n_cells):
                    dist2[i] = min(dist2[i], (row[i] - centres[k]) ** 2)
        for _ in range(_LLOYD_ITERATIONS):
            totals[:] = 0.0
            counts[:] = 0.0
            counts[_nearest(0.0, centres)] += n_cells - n_others
            for t in range(n_others):
                i = others[t]
                k = _nearest(row[i], centres)
                totals[k] += row[i]
                counts[k] += 1.0
            moved = not shortcuts
            for k in range(n_components):
                if counts[k] > 0:
                    centre = totals[k] / counts[k]
                    moved |= centre != centres[k]
                    centres[k] = centre
            if not moved:
                break
        _sort_small(centres)
        at_zero = _nearest(0.0, centres)
        for i in range(n_cells):
            labels[g, i] = at_zero
        for t in range(n_others):
            i = others[t]
            labels[g, i] = _nearest(row[i], centres)


def starting_labels(
    x: np.ndarray,
    size_factors: np.ndarray,
    n_components: int,
    start: int,
    uniforms: np.ndarray,
    y: np.ndarray | None = None,
) -> np.ndarray:
    """Hard labels for start number ``start`` (``uniforms``: shape (n_genes, n_init, K));
    ``y``: :func:`normalised_expression` of ``x``, if the caller has it."""
    if n_components == 1:
        return np.zeros(x.shape, dtype=np.int64)
    if start == 0:
        # log1p is increasing: the ranks of x / s are those of y (one pass fewer)
        return quantile_labels(x / size_factors[None, :], n_components)
    if y is None:
        y = normalised_expression(x, size_factors)
    if start == 1:
        return _nested_labels(y, n_components, uniforms[:, start, :])
    return kmeanspp_labels(y, n_components, uniforms[:, start, :])


def _nested_labels(y: np.ndarray, n_components: int, uniforms: np.ndarray) -> np.ndarray:
    """The nested split of every gene, or its k-means++ labels where the nested split
    is the quantile split (``uniforms``: (n_genes, K))."""
    same = np.ones(y.shape[0], dtype=bool)
    split = same.copy()
    if _SHORTCUTS:
        # where more than half the cells are at 0 (y >= 0), the median is 0, |y - 0| is
        # y itself, and the nested split is the quantile split without comparing them
        # (the sparse genes, most of a matrix)
        split = (y == 0.0).sum(axis=1) <= y.shape[1] // 2
    nested = np.empty(y.shape, dtype=np.int64)
    if split.any():
        median = np.median(y[split], axis=1, keepdims=True)
        nested[split] = quantile_labels(np.abs(y[split] - median), n_components)
        # where the median is the smallest value the nested split is the quantile
        # split again: a k-means++ start instead
        same[split] = (nested[split] == quantile_labels(y[split], n_components)).all(axis=1)
    if same.any():
        nested[same] = kmeanspp_labels(y[same], n_components, uniforms[same])
    return nested


def one_hot(labels: np.ndarray, n_components: int, out: np.ndarray) -> np.ndarray:
    """Write the responsibilities of hard labels into ``out`` (n_genes, K, n_cells)."""
    for k in range(n_components):
        np.equal(labels, k, out=out[:, k, :], casting="unsafe")
    return out


#: Relative spread of the means when the one-component fit is split into K.
_SPLIT = 1e-3


def starts(family, data, n_components, n_init, uniforms, resp, single, given=None):
    """Yield ``(params, weights)`` of each start: the ``given`` responsibilities
    (K, n_cells) shared by every gene, if any, then ``n_init`` label starts, then the
    split."""
    n_cells = data.n_cells
    if given is not None and n_components > 1:
        resp[:] = given[None, :, :]
        params = family.initial_params(data, resp)
        weights = np.maximum(resp.mean(axis=2), 1.0 / n_cells)
        yield params, weights / weights.sum(axis=1, keepdims=True)
    y = None  # the normalised expression, computed once for the starts after the first
    for start in range(1 if n_components == 1 and given is None else n_init):
        if start == 1 and n_components > 1:
            y = normalised_expression(data.x, data.size_factors)
        labels = starting_labels(data.x, data.size_factors, n_components, start, uniforms, y)
        one_hot(labels, n_components, resp)
        params = family.initial_params(data, resp)
        weights = resp.mean(axis=2)
        # no component starts empty: a floor of one cell's worth of weight
        np.maximum(weights, 1.0 / n_cells, out=weights)
        weights /= weights.sum(axis=1, keepdims=True)
        yield params, weights
    if single is not None and n_components > 1:
        params = {name: np.repeat(v, n_components, axis=1) for name, v in single.params.items()}
        params["mu"] *= np.exp(_SPLIT * (np.arange(n_components) - (n_components - 1) / 2))
        yield params, np.full((data.x.shape[0], n_components), 1.0 / n_components)
