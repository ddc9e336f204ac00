"""Variational inference: CAVI for one-dimensional Gaussian mixtures."""
