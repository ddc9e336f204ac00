"""scikit-learn-style mixture estimators on arrays, batched over columns (genes).

These are the array face of the engine behind :func:`scmix.tl.fit_mixture`:
``fit(X, size_factors)`` fits one K-component mixture per column of ``X``
(cells x genes), with means scaled by each cell's size factor:

.. math::

    x_{ij} \\sim \\sum_k \\pi_{jk} f(\\cdot \\mid s_i \\mu_{jk}, \\theta_{jk}).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from .._core import validation
from .._core.em.driver import e_step_at
from .._core.errors import InputError
from .._core.families import Family, NegativeBinomial, Poisson
from .._core.families.base import ChunkData
from .._core.fit.chunks import GeneColumns, chunk_size_for, iter_chunks
from .._core.fit.covariates import CovariateOptions, covariate_predict, fit_covariate_matrix
from .._core.fit.matrix import (
    DEFAULT_MAX_ITER,
    DEFAULT_N_INIT,
    DEFAULT_TOL,
    MixtureFit,
    fit_matrix,
)
from .._core.stats import selection
from .._core.stats.selection import covariate_summary
from .._docs import DOC_FIT_OPTIONS, doc_params


class _CountMixture(BaseEstimator):
    """Shared driver of the count mixtures; subclasses name their family.

    A scikit-learn estimator (``get_params``, ``set_params``, ``clone``): the constructor
    stores its arguments untouched, ``fit`` validates them. Size factors are passed by
    keyword (``fit(X, size_factors=s)``); the ``y`` of scikit-learn's signatures is
    there for pipelines and must stay ``None``.
    """

    def __init__(
        self,
        n_components: int = 2,
        *,
        n_init: int = DEFAULT_N_INIT,
        max_iter: int = DEFAULT_MAX_ITER,
        tol: float = DEFAULT_TOL,
        random_state: int | None = 0,
        chunk_size: int | None = None,
        bic_threshold: float = selection.DEFAULT_BIC_THRESHOLD,
        min_weight: float = selection.DEFAULT_MIN_WEIGHT,
    ):
        self.n_components = n_components
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.chunk_size = chunk_size
        self.bic_threshold = bic_threshold
        self.min_weight = min_weight

    def _make_family(self) -> Family:
        raise NotImplementedError

    # -- fitting ---------------------------------------------------------------------
    def fit(self, X, y=None, *, size_factors=None, covariates=None):
        """Fit one mixture per column of ``X`` (n_cells, n_genes), dense or sparse.

        ``size_factors``: shape (n_cells,), positive; ``None`` means all ones. A
        pandas Series is aligned on the index of a DataFrame ``X`` (with an array
        ``X`` it must have the default index 0..n-1, or be passed as an array).
        Columns without any count are not fitted (NaN parameters, ``converged_`` False).
        The one-component model is fitted too (``single_*``), for ``delta_bic_``,
        ``lrt_`` and the call ``bimodal_`` (as :func:`scmix.tl.fit_mixture` makes it).

        ``covariates``: a design matrix (n_cells, p) without an intercept column, whose
        effects on the mean every component of a gene shares (``coef_``, ``single_coef_``;
        see ``fit_mixture(covariates=...)``): indicator columns for a factor, numeric
        columns as given. The evaluation methods then need the same columns.
        """
        _no_target(y)
        settings = validation.check_fit_options(
            n_init=self.n_init,
            max_iter=self.max_iter,
            tol=self.tol,
            random_state=self.random_state,
            chunk_size=self.chunk_size,
        )
        bic_threshold = validation.check_real(self.bic_threshold, "bic_threshold")
        min_weight = validation.check_real(self.min_weight, "min_weight", minimum=0.0, maximum=1.0)
        X, size_factors = self._check_data(X, size_factors)
        n_comp = validation.check_n_components(self.n_components, X.n_cells)
        if covariates is not None:
            z = validation.check_covariates(covariates, X.n_cells)
            options = CovariateOptions(settings.n_init, settings.max_iter, settings.tol)
            family = self._make_family()
            results = fit_covariate_matrix(
                X, size_factors, z, family=family, n_components=n_comp, options=options
            )
            table = covariate_summary(
                results, family, X.n_cells, bic_threshold=bic_threshold, min_weight=min_weight
            )
            self._set_covariate_fit(family, results, table)
            return self
        self.covariate_fit_ = None
        fit = fit_matrix(
            X,
            size_factors,
            family=self._make_family(),
            n_components=n_comp,
            settings=settings,
            store_resp=False,
        )
        self._set_fitted(fit)
        table = selection.model_selection_table(
            fit, X.n_cells, bic_threshold=bic_threshold, min_weight=min_weight
        )
        self.single_lower_bound_ = table["loglik_1"]
        self.delta_bic_ = table["delta_bic"]
        self.lrt_ = table["lrt"]
        self.bimodal_ = table["bimodal"]
        return self

    def _set_fitted(self, fit: MixtureFit) -> None:
        self.family_ = fit.family
        self.params_ = fit.params
        self.means_ = fit.params["mu"]
        self.dispersions_ = fit.dispersion
        self.weights_ = fit.weights
        self.converged_ = fit.converged
        self.n_iter_ = fit.n_iter
        self.lower_bound_ = fit.loglik
        self.single_means_ = fit.single.params["mu"][:, 0]
        self.single_dispersions_ = fit.single.dispersion[:, 0]
        self.n_features_in_ = fit.weights.shape[0]

    def _set_covariate_fit(self, family: Family, results, table: dict) -> None:
        self.family_ = family
        self.covariate_fit_ = results
        self.means_, self.dispersions_ = table["mean"], table["dispersion"]
        self.params_ = family.params_from_summary(table["mean"], table["dispersion"])
        self.weights_ = results.weights
        self.converged_, self.n_iter_ = results.converged, results.n_iter
        self.lower_bound_ = results.loglik
        self.single_means_ = table["single_mean"]
        self.single_dispersions_ = table["single_dispersion"]
        self.coef_ = results.gamma
        self.single_coef_ = results.single_coef[:, 1:]
        self.n_features_in_ = results.weights.shape[0]
        self.single_lower_bound_ = table["loglik_1"]
        self.delta_bic_, self.lrt_, self.bimodal_ = (
            table["delta_bic"],
            table["lrt"],
            table["bimodal"],
        )

    @property
    def n_covariates_(self) -> int:
        """Covariate columns of the fit (0 without covariates)."""
        self._check_fitted()
        fit = getattr(self, "covariate_fit_", None)
        return 0 if fit is None else fit.gamma.shape[1]

    def _check_data(self, X, size_factors):
        """X as :class:`GeneColumns` and the size factors, validated. A pandas Series of
        size factors is aligned on the index of a DataFrame ``X``."""
        cell_names = X.index if isinstance(X, pd.DataFrame) else None
        if isinstance(X, pd.DataFrame):
            X = X.to_numpy()
        if not hasattr(X, "shape") or len(X.shape) != 2:
            X = np.asarray(X)
            if X.ndim != 2:
                raise InputError(f"X must be 2-dimensional (cells x genes), got shape {X.shape}.")
        if X.shape[0] == 0 or X.shape[1] == 0:
            raise InputError(f"X has no cells or no genes (shape {X.shape}).")
        columns = GeneColumns(X)
        validation.check_counts(columns, cell_names=cell_names)
        if size_factors is None:
            size_factors = np.ones(columns.n_cells)
        values = validation.check_size_factors(size_factors, columns.n_cells, cell_names=cell_names)
        return columns, values

    def _check_fitted(self) -> None:
        if not hasattr(self, "means_"):
            raise _NotFitted(f"This {type(self).__name__} is not fitted yet: call fit(X) first.")

    # -- evaluation ------------------------------------------------------------------
    def _e_step(self, X, size_factors, covariates=None):
        """Responsibilities (n_genes, K, n_cells) and per-gene log-likelihoods, computed
        a chunk of genes at a time (sparse input is never densified whole)."""
        self._check_fitted()
        X, size_factors = self._check_data(X, size_factors)
        if X.n_genes != self.n_features_in_:
            raise InputError(
                f"X has {X.n_genes} genes; the model was fitted on {self.n_features_in_}."
            )
        if (covariates is None) != (self.n_covariates_ == 0):
            raise InputError(
                f"the model was fitted with {self.n_covariates_} covariate columns: pass "
                "the same covariates= (and only then)."
            )
        if covariates is not None:
            z = validation.check_covariates(covariates, X.n_cells)
            if z.shape[1] != self.n_covariates_:
                raise InputError(
                    f"covariates have {z.shape[1]} columns; the model was fitted with "
                    f"{self.n_covariates_}."
                )
            return covariate_predict(X, size_factors, z, self.covariate_fit_, self.family_)
        k = self.n_components
        resp = np.full((X.n_genes, k, X.n_cells), np.nan)
        loglik = np.full(X.n_genes, np.nan)
        fitted = np.isfinite(self.means_).all(axis=1)
        size = self.chunk_size or chunk_size_for(X.n_cells, k)
        for chunk in iter_chunks(X.n_genes, size):
            genes = np.arange(chunk.start, chunk.stop)[fitted[chunk]]
            if genes.size == 0:
                continue
            x = X.block(chunk)[genes - chunk.start]
            data = ChunkData(np.ascontiguousarray(x), size_factors)
            params = {name: np.ascontiguousarray(v[genes]) for name, v in self.params_.items()}
            buf = np.empty((genes.size, k, X.n_cells))
            loglik[genes] = e_step_at(self.family_, data, params, self.weights_[genes], buf)
            resp[genes] = buf
        return resp, loglik

    def predict_proba(self, X, *, size_factors=None, covariates=None) -> np.ndarray:
        """Responsibilities r_ijk, shape (n_cells, n_genes, K); NaN for unfitted genes."""
        resp, _ = self._e_step(X, size_factors, covariates)
        return resp.transpose(2, 0, 1)

    def predict(self, X, *, size_factors=None, covariates=None) -> np.ndarray:
        """Most probable component per cell and gene, shape (n_cells, n_genes); -1 if unfitted."""
        proba = self.predict_proba(X, size_factors=size_factors, covariates=covariates)
        labels = np.argmax(np.nan_to_num(proba, nan=-1.0), axis=2)
        labels[:, ~np.isfinite(self.means_).all(axis=1)] = -1
        return labels

    def log_likelihood(self, X, *, size_factors=None, covariates=None) -> np.ndarray:
        """Total log-likelihood per gene, shape (n_genes,); NaN for unfitted genes."""
        return self._e_step(X, size_factors, covariates)[1]

    def score(self, X, y=None, *, size_factors=None, covariates=None) -> float:
        """Mean log-likelihood per cell, summed over the fitted genes (scikit-learn's
        ``score``: higher is better)."""
        _no_target(y)
        loglik = self.log_likelihood(X, size_factors=size_factors, covariates=covariates)
        return float(np.nansum(loglik) / X.shape[0])

    def bic(self, X, *, size_factors=None, covariates=None) -> np.ndarray:
        """BIC per gene, ``-2 loglik + (K p + K - 1 + n_covariates) log n``, shape
        (n_genes,)."""
        loglik = self.log_likelihood(X, size_factors=size_factors, covariates=covariates)
        n_cells = X.shape[0]
        return selection.bic(
            loglik, self.n_components, self.family_.n_free_params, n_cells
        ) + self.n_covariates_ * np.log(n_cells)


class _NotFitted(NotFittedError, RuntimeError):
    """scikit-learn's NotFittedError (also a RuntimeError, as scmix raised before)."""


def _no_target(y) -> None:
    if y is not None:
        raise InputError(
            "these mixtures have no target y: pass size factors by keyword, fit(X, size_factors=s)."
        )


@doc_params(fit_options=DOC_FIT_OPTIONS)
class NegativeBinomialMixture(_CountMixture):
    """Mixture of negative binomials with size-factor offsets, one per column.

    Component k of gene j has mean ``s_i * means_[j, k]`` and variance
    ``m + m^2 * dispersions_[j, k]``.

    Parameters
    ----------
    n_components
        K, the number of components.
    {fit_options}
    bic_threshold, min_weight
        The bimodality call ``bimodal_``, as in :func:`scmix.tl.fit_mixture`.

    Attributes
    ----------
    means_, dispersions_, weights_ : ndarray of shape (n_genes, K)
        Components sorted by increasing mean; dispersion 0 marks a Poisson-like component.
    converged_, n_iter_ : ndarray of shape (n_genes,)
    lower_bound_ : ndarray of shape (n_genes,)
        The maximised marginal log-likelihood of each gene (a total over cells).
    single_means_, single_dispersions_, single_lower_bound_ : ndarray of shape (n_genes,)
        The one-component fit.
    delta_bic_, lrt_, bimodal_ : ndarray of shape (n_genes,)
        BIC_1 - BIC_K, 2 (loglik_K - loglik_1) and the bimodality call (``bic_threshold``,
        ``min_weight``), as :func:`scmix.tl.fit_mixture` writes them.
    coef_, single_coef_ : ndarray of shape (n_genes, n_covariates)
        After ``fit(..., covariates=Z)``: each gene's covariate effects (log scale),
        shared by its components, in the K- and the one-component fit; ``means_`` are
        then the means where every covariate is zero.
    """

    def _make_family(self) -> Family:
        return NegativeBinomial()


class PoissonMixture(_CountMixture):
    """Mixture of Poissons with size-factor offsets, one per column.

    Same parameters and attributes as :class:`NegativeBinomialMixture`;
    ``dispersions_`` is all zeros.
    """

    def _make_family(self) -> Family:
        return Poisson()


__all__ = ["NegativeBinomialMixture", "PoissonMixture"]
