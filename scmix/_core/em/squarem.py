"""SQUAREM bookkeeping for the EM driver (Varadhan and Roland 2008, scheme S3)."""

from __future__ import annotations

import numpy as np

from ..families import Family

#: Factor by which the largest allowed step grows after a step at the cap.
ALPHA_GROWTH = 4.0


class Squarem:
    """Per-gene SQUAREM bookkeeping in log space: log weights, then each log parameter."""

    def __init__(self, family: Family, params, weights):
        self.family = family
        self.params = params
        self.weights = weights
        n_genes, n_comp = weights.shape
        size = n_comp * (1 + len(params))
        self.points = np.full((3, n_genes, size), np.nan)
        # the log-likelihood the stabilised point theta3 must reach: that of theta1
        self.reference = np.full(n_genes, -np.inf)
        self.alpha_max = np.ones(n_genes)

    def _pack(self, genes) -> np.ndarray:
        with np.errstate(divide="ignore"):
            blocks = [np.log(self.weights[genes])]
            blocks += [np.log(self.params[name][genes]) for name in self.params]
        return np.concatenate(blocks, axis=1)

    def _unpack(self, z, genes) -> None:
        if not genes.size:
            return
        n_comp = self.weights.shape[1]
        log_w = z[:, :n_comp]
        w = np.exp(log_w - log_w.max(axis=1, keepdims=True))
        self.weights[genes] = w / w.sum(axis=1, keepdims=True)
        for b, name in enumerate(self.params, start=1):
            # a long extrapolation may leave the float range; clip_params bounds it
            block = np.clip(z[:, b * n_comp : (b + 1) * n_comp], -700.0, 700.0)
            self.params[name][genes] = np.exp(block)
        self.family.clip_params(self.params, genes)

    def save(self, which: int, genes) -> None:
        if not genes.size:
            return
        self.points[which, genes] = self._pack(genes)

    def extrapolate(self, genes, loglik1) -> None:
        """Move ``genes`` from their third EM point theta2 to theta' (``loglik1``: the
        log-likelihood at theta1)."""
        if not genes.size:
            return
        z2 = self._pack(genes)
        self.points[2, genes] = z2
        self.reference[genes] = loglik1
        z0, z1 = self.points[0, genes], self.points[1, genes]
        # emptied components have log weight -inf: their differences are NaN (handled below)
        with np.errstate(invalid="ignore", divide="ignore"):
            r = z1 - z0
            v = z2 - z1 - r
            alpha = -np.sqrt(np.sum(r * r, axis=1) / np.sum(v * v, axis=1))
        alpha = np.where(np.isfinite(alpha), alpha, -1.0)
        alpha = np.clip(alpha, -self.alpha_max[genes], -1.0)
        # a step at its cap may grow next time
        at_cap = alpha <= -self.alpha_max[genes]
        self.alpha_max[genes[at_cap]] *= ALPHA_GROWTH
        with np.errstate(invalid="ignore"):
            z = z0 - 2.0 * alpha[:, None] * r + (alpha * alpha)[:, None] * v
        bad = ~np.isfinite(z).all(axis=1) | (alpha == -1.0)
        z[bad] = z2[bad]  # -inf log weights (emptied components) or plain EM
        self._unpack(z, genes)

    def revert(self, genes) -> None:
        """Back to theta2 after a failed extrapolation, with a shorter maximal step."""
        if not genes.size:
            return
        self._unpack(self.points[2, genes], genes)
        self.alpha_max[genes] = np.maximum(1.0, self.alpha_max[genes] / ALPHA_GROWTH)
