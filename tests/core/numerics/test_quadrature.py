"""Zero counts summed on quadrature nodes (scmix._core.numerics.quadrature) against exact sums."""

from __future__ import annotations

import numpy as np
import pytest
from adata_helpers import fit_matrix
from numpy.polynomial import Chebyshev
from scipy import sparse

import scmix
from scmix._core.em.driver import e_step_at
from scmix._core.families import NegativeBinomial, Poisson
from scmix._core.families.base import ChunkData
from scmix._core.numerics.quadrature import DEGREE, UNUSED, lagrange_basis, lobatto_nodes


def _sparse_genes(n_cells=3000, n_genes=12, seed=0):
    """Low-count NB genes (most counts zero) with bimodal size factors."""
    sim = scmix.datasets.simulate(
        n_cells=n_cells,
        n_genes=n_genes,
        n_components=2,
        means=np.column_stack([np.full(n_genes, 0.05), np.full(n_genes, 0.4)]),
        dispersion=0.3,
        random_state=seed,
    )
    x = np.ascontiguousarray(np.asarray(sim.X, dtype=np.float64).T)
    return x, sim.obs["size_factors"].to_numpy()


def _slot(quad, gene, level):
    """The pooled slot of count level ``level`` (-1: zero) of ``gene``."""
    return int(np.flatnonzero(quad.pooled_level[gene] == level)[0])


def test_rule_is_exact_for_polynomials_in_log_size_factor():
    rng = np.random.default_rng(1)
    s = np.exp(rng.normal(0, 0.8, 1500))
    x = rng.choice([0.0, 1.0, 2.0, 7.0], p=[0.6, 0.25, 0.14, 0.01], size=(3, 1500))
    data = ChunkData(x, s)
    quad = data.quadrature
    u = np.log(s)
    values = data.levels[0]

    def polynomial(degree):
        # a Chebyshev series on the range of u: well conditioned up to high degree
        # (in the monomial basis, rounding alone exceeds the tolerance at degree 64)
        return Chebyshev(rng.normal(size=degree + 1), domain=[u.min(), u.max()])

    for gene in range(3):
        # the zeros, the ones and the twos are pooled (enough cells per node each)
        pooled = sorted(quad.pooled_count[gene][quad.pooled_level[gene] != UNUSED])
        assert pooled == [0.0, 1.0, 2.0]
        for count in (0.0, 1.0):
            level = -1 if count == 0 else int(np.flatnonzero(values[gene] == count)[0])
            p = _slot(quad, gene, level)
            member = x[gene] == count
            for degree in (0, 1, 5, DEGREE):
                f = polynomial(degree)
                exact = f(u[member]).sum()
                approx = quad.weights[gene, p] @ f(quad.log_size_factors)
                np.testing.assert_allclose(approx, exact, rtol=1e-9, atol=1e-9 * member.sum())
            # the low rule is exact up to degree N / 2 only
            f = polynomial(DEGREE // 2)
            np.testing.assert_allclose(
                quad.low_weights[gene, p] @ f(quad.log_size_factors),
                f(u[member]).sum(),
                rtol=1e-9,
            )
            # and not beyond: a term of degree N / 2 + 1 is not integrated exactly
            f = Chebyshev.basis(DEGREE // 2 + 2, domain=[u.min(), u.max()])
            low_error = abs(
                quad.low_weights[gene, p] @ f(quad.log_size_factors) - f(u[member]).sum()
            )
            assert low_error > 1e-6 * member.sum()


def test_every_cell_is_pooled_or_summed_once():
    x, s = _sparse_genes(n_cells=2000, n_genes=6, seed=5)
    quad = ChunkData(x, s).quadrature
    for gene in range(x.shape[0]):
        single = quad.cells[gene, : quad.n_cells[gene]]
        assert np.unique(single).size == single.size
        pooled = quad.pooled_level[gene] != UNUSED
        assert not np.isin(x[gene, single], quad.pooled_count[gene][pooled]).any()
        # the Lagrange basis sums to one: the weights of a count sum to its cells
        for p in np.flatnonzero(pooled):
            np.testing.assert_allclose(
                quad.weights[gene, p].sum(), (x[gene] == quad.pooled_count[gene, p]).sum()
            )
        assert (
            single.size + sum((x[gene] == c).sum() for c in quad.pooled_count[gene][pooled])
            == (x.shape[1])
        )


def test_lagrange_basis_at_nodes_and_partition_of_unity():
    nodes = lobatto_nodes(-1.5, 2.0, 8)
    np.testing.assert_array_equal(lagrange_basis(nodes, nodes), np.eye(9))
    points = np.linspace(-1.5, 2.0, 101)
    np.testing.assert_allclose(lagrange_basis(points, nodes).sum(axis=1), 1.0, rtol=1e-13)


def test_one_size_factor_makes_the_zeros_one_exact_node():
    x = np.array([[0.0, 0.0, 3.0, 0.0], [1.0, 0.0, 0.0, 2.0]])
    x = np.tile(x, (1, 40))  # 120 and 80 zeros, 40 threes, 40 ones, 40 twos
    quad = ChunkData(x, np.full(x.shape[1], 1.7)).quadrature
    assert quad.size_factors.size == 1
    np.testing.assert_array_equal(quad.weights[0, _slot(quad, 0, -1)], [120.0])
    np.testing.assert_array_equal(quad.weights[1, _slot(quad, 1, -1)], [80.0])
    assert quad.n_cells.tolist() == [0, 0]  # every count pooled


@pytest.mark.parametrize("family", [NegativeBinomial(), Poisson()], ids=["nb", "poisson"])
@pytest.mark.parametrize("n_components", [1, 2, 3])
def test_e_step_on_nodes_matches_every_cell(n_components, family):
    x, s = _sparse_genes()
    data = ChunkData(x, s)
    assert (data.quadrature.pooled_level[:, 0] != UNUSED).all()
    rng = np.random.default_rng(n_components)
    params = {
        "mu": np.sort(rng.uniform(0.02, 0.8, (x.shape[0], n_components)), axis=1),
        "theta": rng.uniform(0.5, 20, (x.shape[0], n_components)),
    }
    params = {name: params[name] for name in family.param_names}
    weights = rng.dirichlet(np.ones(n_components), x.shape[0])
    active = np.arange(x.shape[0])
    log_weights = np.log(weights)
    shape = (x.shape[0], n_components, x.shape[1])
    exact_resp, nodes_resp = np.empty(shape), np.empty(shape)
    exact_ll, nodes_ll = np.empty(x.shape[0]), np.empty(x.shape[0])
    exact_sums, nodes_sums = np.empty_like(weights), np.empty_like(weights)
    family.e_step(data, params, log_weights, active, exact_resp, exact_ll, exact_sums)
    state = family.new_state(data, n_components)
    family.e_step(data, params, log_weights, active, nodes_resp, nodes_ll, nodes_sums, state)
    assert state[1].all()  # every gene went through the nodes
    np.testing.assert_allclose(nodes_ll, exact_ll, rtol=1e-12)
    np.testing.assert_allclose(nodes_sums, exact_sums, rtol=1e-10)
    quad = data.quadrature
    for gene in range(x.shape[0]):  # the cells summed one by one
        single = quad.cells[gene, : quad.n_cells[gene]]
        # the same formulas; one path calls glibc's log and exp, the other the
        # vectorised special.simd_log / simd_exp (within 1 ulp of each other)
        np.testing.assert_allclose(
            nodes_resp[gene][:, single], exact_resp[gene][:, single], rtol=1e-14, atol=1e-300
        )
    # and the exact E-step is the log-pmf + normalisation of every cell
    np.testing.assert_allclose(
        e_step_at(family, data, params, weights),
        exact_ll + family.log_prob_constant(data),
        rtol=1e-13,
    )


def test_nb_m_step_on_nodes_matches_every_cell():
    x, s = _sparse_genes(seed=4)
    data = ChunkData(x, s)
    family = NegativeBinomial(max_newton=50, newton_tol=1e-12)
    n_genes = x.shape[0]
    start = {"mu": np.tile([0.04, 0.5], (n_genes, 1)), "theta": np.full((n_genes, 2), 3.0)}
    weights = np.full((n_genes, 2), 0.5)
    active = np.arange(n_genes)
    results = []
    for use_state in (False, True):
        params = {name: v.copy() for name, v in start.items()}
        resp = np.empty((n_genes, 2, x.shape[1]))
        state = family.new_state(data, 2) if use_state else None
        family.e_step(
            data,
            params,
            np.log(weights),
            active,
            resp,
            np.empty(n_genes),
            np.empty((n_genes, 2)),
            state,
        )
        family.m_step(data, resp, params, active, state)
        results.append(params)
    np.testing.assert_allclose(results[1]["mu"], results[0]["mu"], rtol=1e-8)
    # theta near the Poisson limit is flat (a change of 1e-7 moves Q by far less)
    np.testing.assert_allclose(results[1]["theta"], results[0]["theta"], rtol=1e-6)
    assert not np.allclose(results[0]["mu"], start["mu"])  # the M-step moved


def test_poisson_m_step_from_the_e_step_sums_is_the_closed_form():
    x, s = _sparse_genes(seed=6)
    data = ChunkData(x, s)
    family = Poisson()
    n_genes = x.shape[0]
    params = {"mu": np.tile([0.05, 0.6], (n_genes, 1))}
    log_weights = np.log(np.full((n_genes, 2), 0.5))
    active = np.arange(n_genes)
    resp = np.empty((n_genes, 2, x.shape[1]))
    state = family.new_state(data, 2)
    sums = np.empty((n_genes, 2))
    family.e_step(data, params, log_weights, active, resp, np.empty(n_genes), sums, state)
    family.m_step(data, resp, params, active, state)
    exact = np.empty_like(resp)
    family.e_step(
        data,
        {"mu": np.tile([0.05, 0.6], (n_genes, 1))},
        log_weights,
        active,
        exact,
        np.empty(n_genes),
        np.empty((n_genes, 2)),
    )
    expected = np.einsum("gki,gi->gk", exact, x) / np.einsum("gki,i->gk", exact, s)
    np.testing.assert_allclose(params["mu"], expected, rtol=1e-10)


def test_steep_responsibilities_fall_back_to_every_cell():
    """Two components so far apart that r(s) of the zeros is a near step: the node
    sums fail their error check and the gene is summed cell by cell."""
    rng = np.random.default_rng(3)
    n_cells = 2000
    s = np.exp(rng.normal(0, 1.0, n_cells))
    x = np.zeros((1, n_cells))
    x[0, :300] = rng.poisson(s[:300] * 20.0)
    data = ChunkData(x, s)
    family = NegativeBinomial()
    # r(s) of a zero jumps from 1 to 0 around s = log(9) / 20, within the range of s
    params = {"mu": np.array([[1e-3, 20.0]]), "theta": np.array([[1.0, 1e6]])}
    weights = np.array([[0.1, 0.9]])
    resp = np.empty((1, 2, n_cells))
    state = family.new_state(data, 2)
    ll, sums = np.empty(1), np.empty((1, 2))
    family.e_step(data, params, np.log(weights), np.arange(1), resp, ll, sums, state)
    assert data.quadrature.pooled_level[0, 0] != UNUSED and not state[1][0]
    exact = np.empty_like(resp)
    exact_ll = np.empty(1)
    family.e_step(data, params, np.log(weights), np.arange(1), exact, exact_ll, np.empty((1, 2)))
    np.testing.assert_array_equal(resp, exact)
    np.testing.assert_array_equal(ll, exact_ll)


@pytest.mark.parametrize("family", [NegativeBinomial(), Poisson()], ids=["nb", "poisson"])
def test_fit_on_nodes_reaches_the_optimum_of_the_exact_fit(monkeypatch, family):
    """Same data, counts pooled on nodes or cell by cell: the same log-likelihoods (both
    are evaluated exactly at the end) to the precision of the convergence test."""
    from scmix._core.numerics import quadrature

    x, s = _sparse_genes(n_cells=2000, n_genes=8, seed=7)
    X = sparse.csr_matrix(x.T)
    options = dict(
        family=family,
        n_components=2,
        n_init=3,
        max_iter=3000,
        tol=1e-10,
        random_state=0,
        store_resp=False,
    )
    on_nodes = fit_matrix(X, s, **options)
    monkeypatch.setattr(quadrature, "MIN_CELLS_PER_NODE", 10**9)  # never on nodes
    every_cell = fit_matrix(X, s, **options)
    # genes that converge (some crawl along a ridge for longer than max_iter either way)
    both = on_nodes.converged & every_cell.converged
    assert both.sum() >= 5
    # (the node sums agree to ~1e-15; what is left is where EM stopped on a flat ridge)
    np.testing.assert_allclose(on_nodes.loglik[both], every_cell.loglik[both], rtol=1e-7)
    np.testing.assert_allclose(on_nodes.single.loglik, every_cell.single.loglik, rtol=1e-10)


def test_chunk_sizes_give_identical_results_on_nodes():
    x, s = _sparse_genes(n_cells=1500, n_genes=9, seed=2)
    X = sparse.csr_matrix(x.T)
    options = dict(
        family=NegativeBinomial(),
        n_components=2,
        n_init=2,
        max_iter=1000,
        tol=1e-6,
        random_state=0,
        store_resp=False,
    )
    whole = fit_matrix(X, s, chunk_size=9, **options)
    for chunk_size in (1, 4):
        chunked = fit_matrix(X, s, chunk_size=chunk_size, **options)
        np.testing.assert_array_equal(chunked.loglik, whole.loglik)
        np.testing.assert_array_equal(chunked.params["mu"], whole.params["mu"])
        np.testing.assert_array_equal(chunked.n_iter, whole.n_iter)


def test_a_gene_is_pooled_only_where_few_cells_remain_one_by_one():
    """Pooling pays where the pooled counts hold most cells (POOLED_COST): a sparse
    gene is pooled; a gene whose zeros and ones leave half the cells single is not."""
    from scmix._core.numerics.quadrature import POOLED_COST

    rng = np.random.default_rng(4)
    n = 2000
    s = np.exp(rng.normal(0, 0.5, n))
    sparse = rng.choice([0.0, 1.0, 2.0], p=[0.9, 0.08, 0.02], size=n)
    spread = np.where(rng.random(n) < 0.5, rng.choice([0.0, 1.0], size=n), rng.integers(2, 60, n))
    quad = ChunkData(np.vstack([sparse, spread]), s).quadrature
    n_nodes = quad.size_factors.size
    for gene, expect_pooled in ((0, True), (1, False)):
        pooled = quad.pooled_level[gene] != UNUSED
        assert pooled.any() == expect_pooled
        single = quad.n_cells[gene]
        assert (POOLED_COST * (single + n_nodes * pooled.sum()) < n) == expect_pooled
    assert quad.n_cells[1] == n and quad.tolerance[1] == 0.0
