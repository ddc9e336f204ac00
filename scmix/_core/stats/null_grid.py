r"""Fast p-values of the LRT of K against one component: its null distribution simulated
once on a grid and shared by the genes.

Under the one-component model the LRT of gene j has a null distribution that depends
on the gene only through its fitted mean :math:`\mu_j` and dispersion
:math:`\phi_j = 1/\theta_j` (and the size factors and the options, which all genes
share). So instead of B replicates per gene (:mod:`.bootstrap`), B replicates are drawn
per node of a fixed grid in :math:`(u, v) = (\log\mu, \log\phi)` (steps ``STEP_MEAN``
and ``STEP_DISPERSION`` from the origin; Poisson: :math:`u` only), each refitted
exactly as the data (both models, the same starts and stopping rule), giving the null
statistics :math:`T_{c1}, \dots, T_{cB}` of node c. Gene j's p-value mixes the Monte
Carlo p-values of the (four) nodes around it with bilinear weights :math:`w_{jc}`:

.. math::

    p_j = \sum_c w_{jc}\, \frac{1 + \#\{b : T_{cb} > \mathrm{LRT}_j\}
          + U_j\, \#\{b : T_{cb} = \mathrm{LRT}_j\}}{B + 1},

with equality up to ``TIE_TOLERANCE`` and :math:`U_j` a uniform of the gene's own random
stream: at low counts many null statistics are exactly 0, and a gene with LRT 0 then
gets a p-value spread over the atom instead of 1 (a randomised Monte Carlo p-value); a
gene beyond every replicate gets :math:`1/(B+1)`.

Each node's p-value is exact for a gene at the node; between nodes the mixture follows
the null distribution where it changes smoothly with the mean and the dispersion (its
95% quantile rises from about 1 at means of 0.05-0.2 to 6-10 at means above 1, and its
mass at 0 falls from a third to nothing). Each node draws from a random stream of its
own (the seed and the node's grid position), and only the nodes next to some gene are
simulated, so a gene's p-value depends on its own fit, the size factors, the options
and the seed, not on the other genes: the grid costs (nodes used) x B fits, a bounded
number (about 130-250 nodes for means 0.05-50 and dispersions 0.01-2) whatever the
number of genes. So it is cheap for thousands of genes and dear for a few dozen, where
the exact bootstrap costs less.

Validated (1000 bimodal size factors, B = 49): on 300-900 one-component genes with
means 0.05-50 and dispersions 0.01-2, P(p < 0.05) = 0.03-0.06; the p-values are close
to uniform but not exactly (KS p-values 0.001-0.4 at 900 genes), slightly conservative
at means below 0.5 and low dispersions, where the null distribution changes fastest.
Like the per-gene bootstrap it plugs in the fitted mean and dispersion.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from ..families import Family
from ..fit.matrix import MixtureFit, fit_matrix
from ..settings import FitSettings
from .bootstrap import TIE_TOLERANCE, gene_rng
from .selection import benjamini_hochberg

#: Grid steps in log mean and log dispersion: a factor e^0.7 ~ 2 between nodes.
STEP_MEAN = 0.5
STEP_DISPERSION = 0.5
#: Dispersions are clipped to this range before they are placed on the grid (below it
#: the counts are Poisson-like, above it almost all zeros).
DISPERSION_RANGE = (1e-3, 1e2)
#: A node's p-value is its replicates' (Monte Carlo) while at least this many lie
#: above the gene's statistic; beyond, the exponential tail fitted to its upper
#: quarter extrapolates it (Monte Carlo p-values stop at 1 / (B + 1), far above what
#: Benjamini-Hochberg needs over thousands of genes).
TAIL_FROM = 10
#: Counts simulated at once (replicates x cells), to bound memory.
BATCH_ENTRIES = 4_000_000
#: The tag of the grid's random streams (the bootstrap's genes use others).
_STREAM_TAG = 7


def grid_coordinates(family: Family, params: dict[str, np.ndarray]) -> np.ndarray:
    """(genes, 2): each gene's one-component fit in grid units, (log mu / STEP_MEAN,
    log phi / STEP_DISPERSION); the second is 0 for a family without theta."""
    mu = params["mu"][:, 0]
    coords = np.zeros((mu.size, 2))
    coords[:, 0] = np.log(mu) / STEP_MEAN
    if "theta" in family.param_names:
        phi = np.clip(family.dispersion(params)[:, 0], *DISPERSION_RANGE)
        coords[:, 1] = np.log(phi) / STEP_DISPERSION
    return coords


def corners(coords: np.ndarray, has_theta: bool) -> tuple[np.ndarray, np.ndarray]:
    """The nodes around each gene, (genes, 4, 2) integer grid positions, and their
    bilinear weights (genes, 4) (two nodes of weight 0 repeat along v without theta)."""
    low = np.floor(coords)
    frac = coords - low
    if not has_theta:
        frac[:, 1] = 0.0
    offsets = np.array([[0, 0], [1, 0], [0, 1], [1, 1]])
    nodes = low[:, None, :].astype(np.int64) + offsets[None]
    fu, fv = frac[:, :1], frac[:, 1:]
    weights = np.column_stack([(1 - fu) * (1 - fv), fu * (1 - fv), (1 - fu) * fv, fu * fv])
    return nodes, weights


def node_rng(random_state: int | None, node) -> np.random.Generator:
    """A random stream of its own for a grid node (keyed by seed and position)."""
    entropy = np.random.SeedSequence(random_state).entropy
    key = (_STREAM_TAG, int(node[0]) + 2**31, int(node[1]) + 2**31)
    return np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=key))


def node_params(family: Family, nodes: np.ndarray) -> dict[str, np.ndarray]:
    """The one-component parameters (nodes, 1) at grid positions ``nodes`` (n, 2)."""
    params = {"mu": np.exp(nodes[:, :1] * STEP_MEAN)}
    if "theta" in family.param_names:
        params["theta"] = np.exp(-nodes[:, 1:] * STEP_DISPERSION)
    return params


def null_statistics(
    family: Family,
    nodes: np.ndarray,
    size_factors: np.ndarray,
    *,
    n_components: int,
    n_replicates: int,
    settings: FitSettings,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """(nodes, B): the LRT of B replicates drawn at each node (rows of ``nodes``) and
    refitted with ``settings``; 0 for a replicate without any count."""
    n_cells = size_factors.size
    params = node_params(family, nodes)
    start_shape = (max(settings.n_init, 1), n_components)
    per_batch = max(1, BATCH_ENTRIES // (n_replicates * n_cells))
    out = np.empty((len(nodes), n_replicates))
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
        lrt = np.nan_to_num(2.0 * (fit.loglik - fit.single.loglik), nan=0.0)
        out[first : first + len(block)] = np.maximum(lrt, 0.0).reshape(len(block), -1)
        if progress is not None:
            progress(first + len(block))
    return out


def exponential_tails(statistics: np.ndarray) -> np.ndarray:
    r"""(nodes, 3): per node (rows of sorted ``statistics``, nodes x B) the start t0 of
    its upper quarter (at least ``TAIL_FROM`` + 2 replicates), the mean excess
    :math:`\lambda` over it and the share of the replicates above it, (n + 1)/(B + 1):
    :math:`P(T \ge t) \approx \mathrm{share}\, e^{-(t - t_0)/\lambda}` for t > t0
    (the tail of a chi-square-like statistic is close to exponential)."""
    n_rep = statistics.shape[1]
    n_tail = min(n_rep - 1, max(TAIL_FROM + 2, n_rep // 4))
    start = statistics[:, n_rep - n_tail - 1]
    scale = np.maximum((statistics[:, n_rep - n_tail :] - start[:, None]).mean(axis=1), 1e-6)
    share = np.full(start.shape, (n_tail + 1.0) / (n_rep + 1.0))
    return np.column_stack([start, scale, share])


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
    simulated (``n_nodes``, one value), as the module docstring describes; ``names``
    (the genes') seed the uniform that breaks each gene's ties."""
    family = fit.family
    fitted = np.flatnonzero(fit.fitted)
    pvalue = np.full(fit.loglik.size, np.nan)
    if fitted.size == 0:
        return {"lrt_pvalue": pvalue, "lrt_padj": pvalue.copy(), "n_nodes": 0}
    single = {name: values[fitted] for name, values in fit.single.params.items()}
    has_theta = "theta" in family.param_names
    nodes, weights = corners(grid_coordinates(family, single), has_theta)
    used, index = np.unique(nodes.reshape(-1, 2), axis=0, return_inverse=True)
    statistics = np.sort(
        null_statistics(
            family,
            used,
            size_factors,
            n_components=fit.n_components,
            n_replicates=n_replicates,
            settings=settings,
            progress=progress,
        ),
        axis=1,
    )
    lrt = np.maximum(2.0 * (fit.loglik[fitted] - fit.single.loglik[fitted]), 0.0)
    tolerance = TIE_TOLERANCE * np.maximum(1.0, lrt)
    # ties (many null statistics are exactly 0 at low counts) broken at random, by a
    # uniform of the gene's own stream: p is then uniform under the null, not piled at
    # 1; a gene beyond every replicate keeps the smallest p, 1 / (B + 1)
    names = np.asarray(names)[fitted]
    tie_break = np.array([gene_rng(settings.random_state, n, 3).random() for n in names])
    index = index.reshape(-1, 4)
    tails = exponential_tails(statistics)
    node_p = np.empty_like(weights)
    for corner in range(4):
        rows = index[:, corner]
        null = statistics[rows]
        above = (null > lrt[:, None] + tolerance[:, None]).sum(axis=1)
        tied = (np.abs(null - lrt[:, None]) <= tolerance[:, None]).sum(axis=1)
        empirical = (1.0 + above + tie_break * tied) / (n_replicates + 1.0)
        start, scale, share = tails[rows].T
        tail = share * np.exp(-np.maximum(lrt - start, 0.0) / scale)
        node_p[:, corner] = np.where(above >= TAIL_FROM, empirical, np.minimum(tail, empirical))
    pvalue[fitted] = (weights * node_p).sum(axis=1)
    return {"lrt_pvalue": pvalue, "lrt_padj": benjamini_hochberg(pvalue), "n_nodes": len(used)}
