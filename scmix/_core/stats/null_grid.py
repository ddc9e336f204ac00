r"""Fast p-values of the LRT of K against one component: a null distribution simulated
on a grid of one-component models that the genes share, matched on the fitted model.

Under the one-component model the LRT :math:`T_j = 2(\ell_{Kj} - \ell_{1j})` of gene j
has a null distribution that depends on the gene through its mean :math:`\mu_j` and
dispersion :math:`\phi_j = 1/\theta_j` (the size factors, the number of cells and the
fitting options are the same for every gene). Instead of B replicates per gene (the
exact bootstrap of :mod:`.bootstrap`), B replicates are simulated at each node of a grid
in :math:`(u, v) = (\log\mu, \log\phi)` (``STEP`` apart; Poisson: u only) and refitted
exactly as the data (both models, the same starts and stopping rule). Each replicate b
of node c gives its statistic :math:`T_{cb}` and its own *fitted* one-component model
:math:`(\hat u_{cb}, \hat v_{cb})`.

**Reference.** Gene j, fitted at :math:`(\hat u_j, \hat v_j)`, is compared with the
replicates whose fitted model is close to its own, with the weights

.. math::

    w_{jb} = \Big(1 - \frac{|\hat u_{b} - \hat u_j|}{h}\Big)_+
             \Big(1 - \frac{|\hat v_{b} - \hat v_j|}{h}\Big)_+, \qquad h = \mathrm{STEP},

taken over the replicates of a fixed set of nodes around the gene (the two columns
:math:`\lfloor\hat u_j\rfloor` and :math:`\lfloor\hat u_j\rfloor + 1`, whose replicates'
fitted means stay close to the node's, and the rows from the lowest dispersion up to
:math:`\max(\lfloor\hat v_j\rfloor + 2, 1)`: at low counts the fitted dispersions scatter
widely, often down to the Poisson boundary).
Matching on the fitted rather than the true model is what keeps the p-values uniform at
low counts: there the fitted dispersion scatters over orders of magnitude (often to the
Poisson boundary, where the LRT is near 0 too), and plugging it in as if it were the
truth (the parametric bootstrap) gives p-values piled near 1 (measured: KS p < 1e-10 for
means below 0.3 per unit size factor). The reference is the null distribution of T given
the fitted model, averaged over a flat prior on the nodes.

**p-value.** With :math:`W_j = \sum_b w_{jb}`, :math:`w_{0j}` the mean positive weight
(the "+1" of a Monte Carlo p-value) and a uniform :math:`U_j` of the gene's own stream
that spreads ties (many null statistics are 0 at low counts),

.. math::

    p_j = \frac{w_{0j} + \sum_b w_{jb}\,[T_b > T_j] + U_j \sum_b w_{jb}\,[T_b = T_j]}
               {w_{0j} + W_j}

up to the threshold :math:`t_{kj}` above which only ``TAIL_FROM`` replicates' worth of
weight lies. Beyond it the tail is exponential,
:math:`p_j = S_j(t_{kj})\, e^{-(T_j - t_{kj})/\lambda_j}`, with :math:`\lambda_j` the
weighted mean excess of the ``TAIL_FIT`` largest replicates' worth, but at least 2, the rate
of the chi-square-like tail :math:`e^{-t/2}` of a likelihood ratio statistic: at
moderate and high counts the mean excess is about 2 at every level (measured 1.5-3),
while at means below 0.3 it rises from 0.3 to 2 with the level, so that a tail fitted
to the upper replicates alone is up to 30x too light at p = 1e-3. The floor makes the
far tail conservative there instead.

**Properties.** Each node draws from a stream of its own (the seed and the node's
position) and a gene's p-value depends on its own fit, its node set, the size factors,
the options and the seed only: not on the other genes fitted alongside. The cost is
(nodes used) x B fits, bounded whatever the number of genes (a column of about 10
nodes per unit of log mean the genes span: about 100 nodes for means 0.05-150 and
dispersions 0.01-2), so the method is cheap against the fit of thousands of genes
(measured: 1.1-1.2x the fit of 20,000 genes, about 3x that of 2,000) but costs many
fits' worth for a few dozen genes (still less than the bootstrap with B = 199).

**Validated** (bimodal Svensson size factors, B = 39; ``benchmarks/pvalues_calibration.py``,
the note of issue 20): on one-component genes with means 0.05-50 and dispersions
0.01-2, P(p < 0.05) = 0.035-0.044 and P(p < 0.01) = 0.006-0.008 over 3000 genes x 1000
cells (three runs), 0.040 and 0.0062 (P(p < 0.001) = 0.0004) over 20,000 genes, 0.042-0.044
over 2000 genes x 100-200 cells: slightly conservative, most at means below 0.3 and in the
far tail. Over a few hundred genes the p-values are uniform (KS); over thousands KS detects
the Monte Carlo error of the shared replicates (KS p 0.001-0.4 over 3000 genes) and, over
20,000, small departures everywhere (KS p 0.0025). Like every parametric bootstrap it
plugs in a fitted model, so it is not calibrated when the cells say little about a gene
(a handful of counts, where the flat prior over the grid matters) or when the genes'
one-component model is wrong (then a small p-value says "not this model", not "two
modes").
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..families import Family
from ..fit.matrix import MixtureFit, fit_matrix
from ..settings import FitSettings
from .bootstrap import TIE_TOLERANCE, gene_rng
from .selection import benjamini_hochberg

#: Grid step in log mean and log dispersion (nodes a factor e apart), and the half-width
#: of the triangular kernel that matches fitted models.
STEP = 1.0
#: Fitted dispersions are clipped to this range before they are placed (below it the
#: counts are Poisson-like, above it almost all zeros); the lowest grid row holds it.
DISPERSION_RANGE = (1e-3, 1e2)
BOTTOM_ROW = int(np.floor(np.log(DISPERSION_RANGE[0]) / STEP))
#: Every gene's rows reach at least this one (dispersion e^1 ~ 2.7): at low counts a
#: replicate's fitted dispersion falls far below its node's, down to the Poisson boundary,
#: so a gene fitted there is compared with replicates from every row above it.
LOWEST_TOP_ROW = 1
#: Replicates' worth of weight above the threshold where the exponential tail takes over,
#: and above the (lower) threshold whose exceedances give its mean excess.
TAIL_FROM = 5
TAIL_FIT = 20
#: The smallest mean excess of the tail: the chi-square-like rate e^{-t/2}.
TAIL_SCALE_FLOOR = 2.0
#: Below this many replicates in its kernel a gene's kernel widens (x2, then x4).
MIN_REFERENCE = 20
#: Counts simulated at once (replicates x cells), and kernel weights computed at once.
BATCH_ENTRIES = 4_000_000
#: The tag of the grid's random streams (the bootstrap's genes use others).
_STREAM_TAG = 7


@dataclass
class NullReplicates:
    """The grid's replicates: ``statistic`` (nodes, B), their fitted one-component
    models ``coords`` (nodes, B, 2) in grid units (NaN for a replicate without counts,
    which is not fitted, like a gene) and each node's row in them (``row_of``)."""

    statistic: np.ndarray
    coords: np.ndarray
    row_of: dict[tuple[int, int], int]


def fitted_coordinates(family: Family, params: dict[str, np.ndarray]) -> np.ndarray:
    """(n, 2): one-component fits ``params`` (each (n, 1)) in grid units, (log mu, log phi)
    / STEP; the second is 0 for a family without theta."""
    with np.errstate(divide="ignore", invalid="ignore"):
        mu = params["mu"][:, 0]
        coords = np.zeros((mu.size, 2))
        coords[:, 0] = np.where(mu > 0, np.log(mu), np.nan) / STEP
        if "theta" in family.param_names:
            phi = np.clip(family.dispersion(params)[:, 0], *DISPERSION_RANGE)
            coords[:, 1] = np.log(phi) / STEP
    return coords


def node_sets(coords: np.ndarray, has_theta: bool) -> np.ndarray:
    """(genes, 2) integers that name each gene's node set: its first column floor(u)
    (two columns) and its top row, floor(v) + 2 but at least ``LOWEST_TOP_ROW`` (rows
    from ``BOTTOM_ROW``)."""
    first = np.floor(coords[:, 0]).astype(np.int64)
    if not has_theta:
        return np.column_stack([first, np.zeros_like(first)])
    top = np.maximum(np.floor(coords[:, 1]).astype(np.int64) + 2, LOWEST_TOP_ROW)
    return np.column_stack([first, top])


def nodes_of(node_set, has_theta: bool) -> list[tuple[int, int]]:
    """The grid positions (u, v) of one node set (see :func:`node_sets`)."""
    first, top = (int(x) for x in node_set)
    rows = range(BOTTOM_ROW, top + 1) if has_theta else range(0, 1)
    return [(u, v) for u in range(first, first + 2) for v in rows]


def node_rng(random_state: int | None, node) -> np.random.Generator:
    """A random stream of its own for a grid node (keyed by seed and position)."""
    entropy = np.random.SeedSequence(random_state).entropy
    key = (_STREAM_TAG, int(node[0]) + 2**31, int(node[1]) + 2**31)
    return np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=key))


def node_params(family: Family, nodes: np.ndarray) -> dict[str, np.ndarray]:
    """The one-component parameters (nodes, 1) at grid positions ``nodes`` (n, 2)."""
    params = {"mu": np.exp(nodes[:, :1] * STEP)}
    if "theta" in family.param_names:
        params["theta"] = np.exp(-nodes[:, 1:] * STEP)
    return params


def simulate_nodes(
    family: Family,
    nodes: np.ndarray,
    size_factors: np.ndarray,
    *,
    n_components: int,
    n_replicates: int,
    settings: FitSettings,
    progress: Callable[[int], None] | None = None,
) -> NullReplicates:
    """B replicates drawn at each node (rows of ``nodes``) from its own stream and
    refitted with ``settings``: their LRT (0 for a replicate without counts) and fitted
    one-component models."""
    n_cells = size_factors.size
    params = node_params(family, nodes)
    start_shape = (max(settings.n_init, 1), n_components)
    per_batch = max(1, BATCH_ENTRIES // (n_replicates * n_cells))
    statistic = np.empty((len(nodes), n_replicates))
    coords = np.empty((len(nodes), n_replicates, 2))
    for first in range(0, len(nodes), per_batch):
        block = range(first, min(first + per_batch, len(nodes)))
        counts = np.empty((len(block) * n_replicates, n_cells))
        uniforms = np.empty((len(block) * n_replicates, *start_shape))
        for row, c in enumerate(block):
            rng = node_rng(settings.random_state, nodes[c])
            node = {name: values[c : c + 1] for name, values in params.items()}
            mean = np.broadcast_to(size_factors * node["mu"], (n_replicates, n_cells))
            rows = slice(row * n_replicates, (row + 1) * n_replicates)
            counts[rows] = family.sample(mean, node, rng)
            uniforms[rows] = rng.random((n_replicates, *start_shape))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # replicates without counts
            fit = fit_matrix(
                counts.T,
                size_factors,
                family=family,
                n_components=n_components,
                settings=settings,
                store_resp=False,
                uniforms=uniforms,
            )
        lrt = np.maximum(np.nan_to_num(2.0 * (fit.loglik - fit.single.loglik), nan=0.0), 0.0)
        where = slice(first, first + len(block))
        statistic[where] = lrt.reshape(len(block), n_replicates)
        fitted = fitted_coordinates(family, fit.single.params)
        fitted[~fit.fitted] = np.nan
        coords[where] = fitted.reshape(len(block), n_replicates, 2)
        if progress is not None:
            progress(first + len(block))
    row_of = {(int(u), int(v)): c for c, (u, v) in enumerate(nodes)}
    return NullReplicates(statistic, coords, row_of)


def kernel_weights(ref: np.ndarray, coords: np.ndarray, width: float) -> np.ndarray:
    """(genes, refs) triangular weights of the replicates' fitted models ``ref``
    (refs, 2) around the genes' ``coords`` (genes, 2); 0 for unfitted replicates."""
    du = np.abs(ref[None, :, 0] - coords[:, None, 0]) / width
    dv = np.abs(ref[None, :, 1] - coords[:, None, 1]) / width
    weights = np.maximum(0.0, 1.0 - du) * np.maximum(0.0, 1.0 - dv)
    return np.nan_to_num(weights, nan=0.0)


def reference_pvalues(
    null: np.ndarray, ref: np.ndarray, lrt: np.ndarray, coords: np.ndarray, tie_break: np.ndarray
) -> np.ndarray:
    """p-values of genes (statistics ``lrt``, fitted at ``coords``) that share one pool
    of replicates (statistics ``null``, fitted at ``ref``), as the module docstring says."""
    order = np.argsort(-null, kind="stable")
    null, ref = null[order], ref[order]
    weights = kernel_weights(ref, coords, STEP)
    for wider in (2.0, 4.0):  # a gene far from every replicate: a wider kernel
        thin = (weights > 0).sum(axis=1) < MIN_REFERENCE
        if thin.any():
            weights[thin] = kernel_weights(ref, coords[thin], wider * STEP)
    total = weights.sum(axis=1)
    w0 = total / np.maximum((weights > 0).sum(axis=1), 1)
    tolerance = TIE_TOLERANCE * np.maximum(1.0, lrt)
    above = (weights * (null[None] > (lrt + tolerance)[:, None])).sum(axis=1)
    tied = (weights * (np.abs(null[None] - lrt[:, None]) <= tolerance[:, None])).sum(axis=1)
    empirical = (w0 + above + tie_break * tied) / (w0 + total)
    # the tail: beyond TAIL_FROM replicates' worth of weight, exponential with the mean
    # excess of the TAIL_FIT largest (but at least the chi-square-like rate)
    cumulative = np.cumsum(weights, axis=1)
    threshold, upper_weight = upper_part(null, weights, cumulative, TAIL_FROM * w0)
    fit_from, fit_weight = upper_part(null, weights, cumulative, TAIL_FIT * w0)
    above_fit = weights * (null[None] > fit_from[:, None])
    excess = (above_fit * (null[None] - fit_from[:, None])).sum(axis=1)
    scale = np.maximum(excess / np.maximum(fit_weight, 1e-300), TAIL_SCALE_FLOOR)
    share = (w0 + upper_weight) / (w0 + total)
    tail = share * np.exp(-(lrt - threshold) / scale)
    return np.where(lrt > threshold, tail, empirical)


def upper_part(
    null: np.ndarray, weights: np.ndarray, cumulative: np.ndarray, weight: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per gene, the largest threshold among the (descending) ``null`` with at least
    ``weight`` above it, and the weight strictly above it."""
    k = (cumulative <= weight[:, None] * (1 + 1e-9)).sum(axis=1)
    threshold = null[np.minimum(k, null.size - 1)]
    return threshold, (weights * (null[None] > threshold[:, None])).sum(axis=1)


def grid_lrt_pvalues(
    fit: MixtureFit,
    size_factors: np.ndarray,
    names,
    *,
    n_replicates: int,
    settings: FitSettings,
    progress: Callable[[int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Grid p-values of the LRT of ``fit`` (``lrt_pvalue``, NaN for genes not fitted),
    their Benjamini-Hochberg adjustment (``lrt_padj``) and the number of grid nodes
    simulated (``n_nodes``), as the module docstring describes; ``names`` (the genes')
    seed the uniform that breaks each gene's ties."""
    family = fit.family
    has_theta = "theta" in family.param_names
    fitted = np.flatnonzero(fit.fitted)
    pvalue = np.full(fit.loglik.size, np.nan)
    if fitted.size == 0:
        return {"lrt_pvalue": pvalue, "lrt_padj": pvalue.copy(), "n_nodes": 0}
    single = {name: values[fitted] for name, values in fit.single.params.items()}
    coords = fitted_coordinates(family, single)
    sets = node_sets(coords, has_theta)
    unique_sets, set_index = np.unique(sets, axis=0, return_inverse=True)
    set_index = set_index.ravel()
    nodes = sorted({node for s in unique_sets for node in nodes_of(s, has_theta)})
    replicates = simulate_nodes(
        family,
        np.array(nodes, dtype=np.int64),
        size_factors,
        n_components=fit.n_components,
        n_replicates=n_replicates,
        settings=settings,
        progress=progress,
    )
    lrt = np.maximum(2.0 * (fit.loglik[fitted] - fit.single.loglik[fitted]), 0.0)
    names = np.asarray(names)[fitted]
    tie_break = np.array([gene_rng(settings.random_state, n, 3).random() for n in names])
    values = np.empty(fitted.size)
    for s, node_set in enumerate(unique_sets):
        rows = [replicates.row_of[node] for node in nodes_of(node_set, has_theta)]
        null = replicates.statistic[rows].ravel()
        ref = replicates.coords[rows].reshape(-1, 2)
        genes = np.flatnonzero(set_index == s)
        per_batch = max(1, BATCH_ENTRIES // null.size)
        for first in range(0, genes.size, per_batch):
            batch = genes[first : first + per_batch]
            values[batch] = reference_pvalues(
                null, ref, lrt[batch], coords[batch], tie_break[batch]
            )
    pvalue[fitted] = values
    return {"lrt_pvalue": pvalue, "lrt_padj": benjamini_hochberg(pvalue), "n_nodes": len(nodes)}
