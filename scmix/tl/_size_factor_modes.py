"""The modes of the size factors: a variational Gaussian mixture of log size factors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from .. import __version__
from .._core import validation
from .._core.errors import InputError
from .._core.vi import cavi
from .._inputs import check_adata, describe_size_factors, get_size_factors
from .._scanpy import added, info
from ._write import commit


def size_factor_modes(
    adata: AnnData,
    n_components: int | Sequence[int] = 2,
    *,
    size_factors: str | np.ndarray = "size_factors",
    method: Literal["cavi"] = "cavi",
    n_init: int = 3,
    max_iter: int = 1000,
    tol: float = 1e-8,
    random_state: int | None = 0,
    key_added: str = "size_factor_modes",
    copy: bool = False,
) -> AnnData | None:
    r"""Find the modes of the size factors: a Bayesian Gaussian mixture of
    :math:`\log s_i`, fitted by coordinate-ascent variational inference.

    The model is Bishop's variational Gaussian mixture (``GaussianMixtureCAVI(model="full")``):
    :math:`\pi \sim \mathrm{Dir}(\alpha_0)`, :math:`\lambda_k \sim \mathrm{Gamma}(a_0, b_0)`,
    :math:`\mu_k \mid \lambda_k \sim N(m_0, 1/(\beta_0\lambda_k))`,
    :math:`\log s_i \mid c_i = k \sim N(\mu_k, 1/\lambda_k)`, with scikit-learn's default
    priors. Bimodal size factors (e.g. droplets with two capture efficiencies) are the
    usual reason spike-in counts look bimodal; these modes are the natural start of
    :func:`scmix.tl.fit_mixture` (``init="size_factor_modes"``).

    Parameters
    ----------
    n_components
        K, or several K: the one with the largest ELBO (the variational lower bound
        on the log evidence) is kept.
    size_factors
        ``.obs`` column (e.g. from :func:`scmix.pp.size_factors`), an array, or a
        pandas Series (aligned on ``obs_names``).
    method
        ``"cavi"`` (the only one for now).
    n_init, max_iter, tol, random_state
        Starts (quantile split, then k-means++), and the stopping rule: an iteration
        that raises the ELBO by less than ``tol`` per cell ends a start.
    key_added
        Where the results go.

    Returns
    -------
    ``None`` (or the copy), with

    ``.obs[key_added]``
        The most probable mode of each cell (categorical ``"0"`` ... ``"K-1"``, by
        increasing mean).
    ``.obsm[key_added]``
        Posterior probabilities of the modes, (n_obs, K).
    ``.uns[key_added]``
        ``means`` and ``sds`` (posterior mean and expected standard deviation of each
        mode, on the log scale), ``size_factors`` (exp of the means), ``weights``
        (posterior mean weights), ``elbo``, ``elbo_trace``, ``converged``, ``n_iter``,
        ``elbo_by_k`` when several K were tried, and ``params``.
    """
    check_adata(adata)
    validation.check_choice(method, "method", ("cavi",))
    validation.check_key(key_added)
    if isinstance(n_components, (str, bytes)) or not (
        np.isscalar(n_components) or np.iterable(n_components)
    ):
        raise InputError(f"n_components must be a K or a list of K, got {n_components!r}.")
    candidates = [n_components] if np.isscalar(n_components) else list(n_components)
    if not candidates:
        raise InputError("n_components must be at least one K.")
    candidates = [validation.check_n_components(k, adata.n_obs) for k in candidates]
    options = validation.check_fit_options(
        n_init=n_init, max_iter=max_iter, tol=tol, random_state=random_state
    )
    n_init, max_iter, tol = options.n_init, options.max_iter, options.tol
    log_sf = np.log(get_size_factors(adata, size_factors))
    if np.ptp(log_sf) == 0:
        raise InputError(
            f"size_factors {describe_size_factors(size_factors)!r} are the same for every "
            "cell: there are no modes to find."
        )

    start = info(f"finding K = {candidates} modes of the log size factors (CAVI)")
    fit, fits = cavi.fit_cavi_best(
        log_sf,
        candidates,
        model="full",
        n_init=n_init,
        max_iter=max_iter,
        tol=tol,
        random_state=random_state,
    )
    best_k = fit.resp.shape[1]
    components = cavi.normal_components(fit)
    labels = fit.resp.argmax(axis=1)
    uns = {
        "means": components["means"],
        "sds": components["sds"],
        "size_factors": np.exp(components["means"]),
        "weights": components["weights"],
        "elbo": fit.elbo,
        "elbo_trace": fit.trace,
        "converged": fit.converged,
        "n_iter": fit.n_iter,
        "n_components": best_k,
        "params": dict(
            n_components=candidates,
            size_factors=size_factors if isinstance(size_factors, str) else "array",
            method=method,
            n_init=n_init,
            max_iter=max_iter,
            tol=tol,
            random_state=random_state,
            key_added=key_added,
        ),
        "version": __version__,
    }
    if len(candidates) > 1:
        uns["elbo_by_k"] = {str(k): fits[k].elbo for k in candidates}

    target = adata.copy() if copy else adata
    obs = target.obs.copy()
    obs[key_added] = pd.Categorical(labels.astype(str), categories=[str(k) for k in range(best_k)])
    commit(target, obs=obs, obsm={key_added: fit.resp}, uns={key_added: uns})
    info("    finished", time=start)
    added([(f"'{key_added}'", where) for where in ("adata.obs", "adata.obsm", "adata.uns")])
    return target if copy else None
