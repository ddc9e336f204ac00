"""The two Gaussian mixture models of :mod:`scmix._core.vi.cavi`, on responsibilities of
shape (K, N): each model's update of the global factors, its log rho, the KL of its
global factors from their prior and its ELBO terms (the formulas are in the
docstring of :mod:`scmix._core.vi.cavi`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from scipy.special import digamma, gammaln, xlogy

_LOG_2PI = float(np.log(2.0 * np.pi))
PRIOR_NAMES = {"textbook": ("sigma2",), "full": ("alpha0", "beta0", "m0", "a0", "b0")}
PARAM_NAMES = {"textbook": ("m", "s2"), "full": ("alpha", "beta", "m", "a", "b")}

# -- the two models, on responsibilities of shape (K, N) ---------------------------------
# ``sq`` is a (K, N) work array: each global update leaves (x_n - m_k)^2 in it, and the
# log-rho functions turn it into log rho_nk in place, so an iteration allocates nothing big.


def _textbook_update(x, resp, prior, sq) -> dict[str, np.ndarray]:
    s2 = 1.0 / (1.0 / prior["sigma2"] + resp.sum(axis=1))
    m = s2 * (resp @ x)
    np.subtract(x[None, :], m[:, None], out=sq)
    np.square(sq, out=sq)
    return {"m": m, "s2": s2}


def _textbook_log_rho(params, prior, sq) -> np.ndarray:
    """E[log p(x_n, c_n = k | mu)] = -log K - log(2 pi)/2 - ((x_n - m_k)^2 + s_k^2)/2."""
    n_comp = params["m"].shape[0]
    const = -np.log(n_comp) - 0.5 * _LOG_2PI - 0.5 * params["s2"]
    sq *= -0.5
    sq += const[:, None]
    return sq


def _textbook_kl(params, prior) -> float:
    """KL(N(m_k, s_k^2) || N(0, sigma^2)), summed over k."""
    ratio = params["s2"] / prior["sigma2"]
    return float(0.5 * (ratio + params["m"] ** 2 / prior["sigma2"] - 1.0 - np.log(ratio)).sum())


def _textbook_terms(x, resp, params, prior) -> dict[str, float]:
    """Blei et al. (2017) ELBO, term by term; ``resp`` (K, N)."""
    m, s2, sigma2 = params["m"], params["s2"], prior["sigma2"]
    n_comp, n = resp.shape
    e_sq = (x[None, :] ** 2 - 2.0 * x[None, :] * m[:, None] + (s2 + m**2)[:, None]) / 2.0
    return {
        "E[log p(mu)]": float(
            (-0.5 * np.log(2 * np.pi * sigma2) - (s2 + m**2) / (2 * sigma2)).sum()
        ),
        "E[log p(c)]": -n * np.log(n_comp),
        "E[log p(x | c, mu)]": float((resp * (-0.5 * _LOG_2PI - e_sq)).sum()),
        "E[log q(c)]": float(xlogy(resp, resp).sum()),
        "E[log q(mu)]": float((-0.5 * np.log(2 * np.pi * np.e * s2)).sum()),
    }


def _full_update(x, resp, prior, sq) -> dict[str, np.ndarray]:
    nk = resp.sum(axis=1)
    beta = prior["beta0"] + nk
    m = (prior["beta0"] * prior["m0"] + resp @ x) / beta
    np.subtract(x[None, :], m[:, None], out=sq)
    np.square(sq, out=sq)
    scatter = np.einsum("kn,kn->k", resp, sq)
    return {
        "alpha": prior["alpha0"] + nk,
        "beta": beta,
        "m": m,
        "a": prior["a0"] + nk / 2.0,
        "b": prior["b0"] + 0.5 * (scatter + prior["beta0"] * (m - prior["m0"]) ** 2),
    }


def _full_expectations(params):
    """E[log pi_k], E[log lambda_k], E[lambda_k] under q."""
    alpha, a, b = params["alpha"], params["a"], params["b"]
    return digamma(alpha) - digamma(alpha.sum()), digamma(a) - np.log(b), a / b


def _full_log_rho(params, prior, sq) -> np.ndarray:
    """E[log pi_k + log N(x_n | mu_k, 1/lambda_k)], Bishop (10.46) with (10.64)-(10.66)."""
    e_log_pi, e_log_lam, e_lam = _full_expectations(params)
    const = e_log_pi + 0.5 * e_log_lam - 0.5 * _LOG_2PI - 0.5 / params["beta"]
    sq *= (-0.5 * e_lam)[:, None]
    sq += const[:, None]
    return sq


def _log_dirichlet_norm(alpha: np.ndarray) -> float:
    """log C(alpha), the log normaliser of the Dirichlet density (Bishop, appendix B)."""
    return float(gammaln(alpha.sum()) - gammaln(alpha).sum())


def _full_kl(params, prior) -> float:
    """KL(q(pi) || p(pi)) + sum_k KL(NG(m_k, beta_k, a_k, b_k) || NG(m0, beta0, a0, b0))."""
    alpha, beta, m, a, b = (params[name] for name in PARAM_NAMES["full"])
    alpha0, beta0, m0, a0, b0 = (prior[name] for name in PRIOR_NAMES["full"])
    e_log_pi, _, e_lam = _full_expectations(params)
    kl_pi = (
        _log_dirichlet_norm(alpha)
        - _log_dirichlet_norm(np.full_like(alpha, alpha0))
        + ((alpha - alpha0) * e_log_pi).sum()
    )
    kl_mu = 0.5 * (np.log(beta / beta0) - 1.0 + beta0 / beta + beta0 * e_lam * (m - m0) ** 2)
    kl_lam = (a - a0) * digamma(a) - gammaln(a) + gammaln(a0) + a0 * np.log(b / b0)
    kl_lam += a * (b0 - b) / b
    return float(kl_pi + (kl_mu + kl_lam).sum())


def _full_terms(x, resp, params, prior) -> dict[str, float]:
    """Bishop (10.70)-(10.77) in 1-D, term by term; ``resp`` (K, N)."""
    alpha, beta, m, a, b = (params[name] for name in PARAM_NAMES["full"])
    alpha0, beta0, m0, a0, b0 = (prior[name] for name in PRIOR_NAMES["full"])
    e_log_pi, e_log_lam, e_lam = _full_expectations(params)
    # E[lambda_k (x_n - mu_k)^2] = 1/beta_k + E[lambda_k] (x_n - m_k)^2, Bishop (10.64)
    e_quad = 1.0 / beta[:, None] + e_lam[:, None] * (x[None, :] - m[:, None]) ** 2
    n_comp = alpha.shape[0]
    log_gamma_norm = a0 * np.log(b0) - gammaln(a0)  # Bishop's Wishart ln B(W0, nu0), in 1-D
    return {
        "E[log p(x | z, mu, lambda)]": float(
            (resp * (0.5 * e_log_lam[:, None] - 0.5 * _LOG_2PI - 0.5 * e_quad)).sum()
        ),
        "E[log p(z | pi)]": float((resp * e_log_pi[:, None]).sum()),
        "E[log p(pi)]": _log_dirichlet_norm(np.full(n_comp, alpha0))
        + (alpha0 - 1.0) * float(e_log_pi.sum()),
        "E[log p(mu, lambda)]": float(
            (
                0.5 * np.log(beta0 / (2 * np.pi))
                + 0.5 * e_log_lam
                - 0.5 * beta0 * (1.0 / beta + e_lam * (m - m0) ** 2)
                + log_gamma_norm
                + (a0 - 1.0) * e_log_lam
                - b0 * e_lam
            ).sum()
        ),
        "E[log q(z)]": float(xlogy(resp, resp).sum()),
        "E[log q(pi)]": _log_dirichlet_norm(alpha) + float(((alpha - 1.0) * e_log_pi).sum()),
        "E[log q(mu, lambda)]": float(
            (
                0.5 * np.log(beta / (2 * np.pi))
                + 0.5 * e_log_lam
                - 0.5
                + a * np.log(b)
                - gammaln(a)
                + (a - 1.0) * e_log_lam
                - a
            ).sum()
        ),
    }


class Model(NamedTuple):
    update: Callable  # (x, resp (K, N), prior, sq (K, N)) -> params; leaves (x - m)^2 in sq
    log_rho: Callable  # (params, prior, sq) -> log rho (K, N), written over sq
    kl: Callable  # (params, prior) -> KL of the global factors from their prior
    terms: Callable  # (x, resp (K, N), params, prior) -> {term: value}


MODELS = {
    "textbook": Model(_textbook_update, _textbook_log_rho, _textbook_kl, _textbook_terms),
    "full": Model(_full_update, _full_log_rho, _full_kl, _full_terms),
}
