"""Counts simulated from the scmix model, with the truth stored beside them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from anndata import AnnData
from scipy import sparse

from .._core.errors import InputError
from .._core.validation import check_size_factors


def simulate_size_factors(
    n_cells: int,
    kind: str = "bimodal",
    *,
    modes: Sequence[float] = (0.5, 2.0),
    mode_weights: Sequence[float] | None = None,
    sd: float | Sequence[float] = 0.2,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Size factors and each cell's size-factor mode (all 0 unless bimodal).

    ``"bimodal"``: log s ~ N(log modes[c], sd[c]^2) with mode c drawn with ``mode_weights``
    (``sd`` one value or one per mode);
    ``"lognormal"``: log s ~ N(0, sd^2); ``"constant"``: all ones.
    """
    mode = np.zeros(n_cells, dtype=np.int64)
    if kind == "constant":
        return np.ones(n_cells), mode
    if kind == "lognormal":
        return np.exp(rng.normal(0.0, float(np.mean(sd)), n_cells)), mode
    if kind == "bimodal":
        modes = np.asarray(modes, dtype=float)
        weights = (
            np.full(modes.size, 1.0 / modes.size)
            if mode_weights is None
            else np.asarray(mode_weights)
        )
        sds = np.broadcast_to(np.asarray(sd, dtype=float), modes.shape)
        mode = rng.choice(modes.size, size=n_cells, p=weights / weights.sum())
        return np.exp(np.log(modes[mode]) + sds[mode] * rng.normal(0.0, 1.0, n_cells)), mode
    raise InputError(
        f"size_factors must be 'bimodal', 'lognormal', 'constant' or an array, got {kind!r}."
    )


def _per_gene(value, n_genes: int, n_components: int, name: str) -> np.ndarray:
    array = np.asarray(value, dtype=float)
    if array.ndim == 0:
        return np.full((n_genes, n_components), float(array))
    if array.shape == (n_components,):
        return np.tile(array, (n_genes, 1))
    if array.shape == (n_genes, n_components):
        return array.copy()
    raise InputError(
        f"{name} must be a scalar, shape ({n_components},) or ({n_genes}, {n_components}); "
        f"got {array.shape}."
    )


def simulate(
    n_cells: int = 2000,
    n_genes: int = 100,
    *,
    n_components: int = 2,
    means=None,
    fold_change: float = 4.0,
    weights=None,
    dispersion=0.1,
    size_factors="bimodal",
    size_factor_modes: Sequence[float] = (0.5, 2.0),
    size_factor_weights: Sequence[float] | None = None,
    size_factor_sd: float | Sequence[float] = 0.2,
    as_sparse: bool = False,
    random_state: int | None = 0,
) -> AnnData:
    r"""Simulate counts from the scmix model.

    For gene j and cell i: a component :math:`z_{ij} \sim \mathrm{Cat}(\pi_j)`, then
    :math:`x_{ij} \sim \mathrm{NB}(s_i \mu_{j z_{ij}}, \phi_{j z_{ij}})` (mean m,
    variance :math:`m + \phi m^2`; Poisson where :math:`\phi = 0`).

    Parameters
    ----------
    n_cells, n_genes, n_components
        Shape of the data and K.
    means
        mu_jk: scalar, (K,) or (n_genes, K). By default each gene gets a base mean
        log-uniform in [1, 100] and component k has ``base * fold_change**k``.
    weights
        pi_jk: (K,) or (n_genes, K); equal weights by default.
    dispersion
        phi_jk = 1/theta_jk (scalar, (K,) or (n_genes, K)); 0 gives Poisson counts.
    size_factors
        ``"bimodal"`` (modes ``size_factor_modes`` with weights ``size_factor_weights``
        and log-scale sd ``size_factor_sd``, one value or one per mode), ``"lognormal"``,
        ``"constant"`` or an array.
    as_sparse
        Store ``X`` as CSR.
    random_state
        Seed.

    Returns
    -------
    AnnData with integer counts in ``X``; ``.obs["size_factors"]`` and
    ``.obs["size_factor_mode"]``; truth in ``.var["true_mean_{k}"]``,
    ``["true_dispersion_{k}"]``, ``["true_weight_{k}"]``; each cell's component in
    ``.obsm["true_component"]`` (n_cells, n_genes); the settings in ``.uns["simulation"]``.
    """
    rng = np.random.default_rng(random_state)
    if isinstance(size_factors, str):
        sf, mode = simulate_size_factors(
            n_cells,
            size_factors,
            modes=size_factor_modes,
            mode_weights=size_factor_weights,
            sd=size_factor_sd,
            rng=rng,
        )
        sf_label = size_factors
    else:
        sf = check_size_factors(size_factors, n_cells)
        mode, sf_label = np.zeros(n_cells, dtype=np.int64), "array"
    if means is None:
        base = np.exp(rng.uniform(np.log(1.0), np.log(100.0), n_genes))
        means = base[:, None] * fold_change ** np.arange(n_components)[None, :]
    mu = _per_gene(means, n_genes, n_components, "means")
    phi = _per_gene(dispersion, n_genes, n_components, "dispersion")
    pi = _per_gene(
        1.0 / n_components if weights is None else weights, n_genes, n_components, "weights"
    )
    pi /= pi.sum(axis=1, keepdims=True)

    cumulative = np.cumsum(pi, axis=1)
    u = rng.random((n_cells, n_genes))
    component = (u[:, :, None] > cumulative[None, :, :]).sum(axis=2).clip(max=n_components - 1)
    genes = np.arange(n_genes)[None, :]
    mean = sf[:, None] * mu[genes, component]
    phi_cell = phi[genes, component]
    # NB as a gamma-Poisson mixture: rate ~ Gamma(shape 1/phi, scale phi * mean)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(
            phi_cell > 0,
            rng.gamma(np.where(phi_cell > 0, 1.0 / phi_cell, 1.0), 1.0) * phi_cell * mean,
            mean,
        )
    counts = rng.poisson(rate).astype(np.int64)

    adata = AnnData(sparse.csr_matrix(counts) if as_sparse else counts)
    adata.obs_names = [f"cell_{i}" for i in range(n_cells)]
    adata.var_names = [f"gene_{j}" for j in range(n_genes)]
    adata.obs["size_factors"] = sf
    adata.obs["size_factor_mode"] = mode
    for k in range(n_components):
        adata.var[f"true_mean_{k}"] = mu[:, k]
        adata.var[f"true_dispersion_{k}"] = phi[:, k]
        adata.var[f"true_weight_{k}"] = pi[:, k]
    adata.obsm["true_component"] = component.astype(np.int8)
    adata.uns["simulation"] = {
        "n_components": n_components,
        "size_factors": sf_label,
        "size_factor_modes": list(size_factor_modes),
        "size_factor_sd": np.atleast_1d(size_factor_sd).tolist(),
        "fold_change": fold_change,
        "random_state": random_state,
    }
    return adata
