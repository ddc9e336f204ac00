"""K=1 reference: statsmodels' NB2 (log link, offset log s_i, intercept only), per gene."""

from __future__ import annotations

import warnings

import numpy as np
from statsmodels.discrete.discrete_model import NegativeBinomial


def fit_nb2(X: np.ndarray, size_factors: np.ndarray) -> np.ndarray:
    """Maximised log-likelihood of each column of ``X`` (cells x genes), full constants."""
    offset = np.log(size_factors)
    exog = np.ones((X.shape[0], 1))
    out = np.empty(X.shape[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter on near-Poisson genes
        for j in range(X.shape[1]):
            model = NegativeBinomial(X[:, j], exog, offset=offset, loglike_method="nb2")
            out[j] = model.fit(disp=0, maxiter=200, method="bfgs").llf
    return out
