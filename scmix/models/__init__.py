"""scikit-learn-style estimators on arrays, the array face of scmix's engines.

* :class:`NegativeBinomialMixture`, :class:`PoissonMixture`: one K-component count
  mixture per column of a cells x genes matrix, means scaled by size factors (the
  engine behind :func:`scmix.tl.fit_mixture`);
* :class:`GaussianMixtureCAVI`: variational Bayesian mixtures of univariate Gaussians
  by coordinate ascent (the engine behind :func:`scmix.tl.size_factor_modes`).
"""

from ._cavi import GaussianMixtureCAVI
from ._count import NegativeBinomialMixture, PoissonMixture

__all__ = ["GaussianMixtureCAVI", "NegativeBinomialMixture", "PoissonMixture"]
