"""Colours, Axes and showing, shared by the plots."""

from __future__ import annotations

import matplotlib.pyplot as plt

#: Colours of the components (colour-blind safe, readable in print) and of the marginal.
COMPONENT_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")
MARGINAL_COLOUR = "black"
HIGHLIGHT_COLOUR = "#D55E00"


def new_axes(ax):
    if ax is None:
        _, ax = plt.subplots(figsize=(5.0, 3.6))
    return ax


def finish(ax, show: bool | None):
    """Show the figure when asked; always return the Axes."""
    if show:
        plt.show()
    return ax
