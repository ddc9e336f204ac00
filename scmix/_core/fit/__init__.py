"""Fitting a whole count matrix: gene chunks, the per-chunk fit, the dask runner."""
