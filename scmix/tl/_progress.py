"""A tqdm progress bar for the long steps of the tools (the fit, the p-values)."""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def progress_bar(show: bool, n_genes: int, what: str = "fitting"):
    """A callback for ``fit_matrix(progress=...)`` that moves a tqdm bar (or nothing)."""
    if not show:
        yield None
        return
    from tqdm.auto import tqdm

    with tqdm(total=n_genes, unit="gene", desc=what) as bar:

        def advance(done: int) -> None:
            bar.update(done - bar.n)

        yield advance
