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


#: Where a point's label may go, in points from the point (with the text's alignment):
#: above right first, then the other corners, then further out above and below.
_LABEL_PLACES = tuple(
    (sign_x * 3, dy, "left" if sign_x > 0 else "right", "bottom" if dy > 0 else "top")
    for dy in (3, -3, 11, -11)
    for sign_x in (1, -1)
)


def label_points(ax, x, y, texts, **text_options) -> list:
    """Label the points ``(x[i], y[i])`` with ``texts[i]``, most important first: each
    label goes to the first of ``_LABEL_PLACES`` where it stays inside the Axes and
    overlaps neither an earlier label nor an existing legend; a label with no such
    place is left out (its point stays). Returns the annotations drawn. Positions are
    those of the current axis limits: set them (and the scales) before labelling."""
    frame = ax.get_window_extent()
    legend = ax.get_legend()
    placed = [] if legend is None else [legend.get_window_extent()]
    annotations = []
    for xi, yi, text in zip(x, y, texts, strict=True):
        for dx, dy, ha, va in _LABEL_PLACES:
            annotation = ax.annotate(
                text,
                (xi, yi),
                xytext=(dx, dy),
                textcoords="offset points",
                ha=ha,
                va=va,
                **text_options,
            )
            box = annotation.get_window_extent()
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1
            inside = inside and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if inside and not any(box.overlaps(other) for other in placed):
                placed.append(box)
                annotations.append(annotation)
                break
            annotation.remove()
    return annotations


def finish(ax, show: bool | None):
    """Show the figure when asked; always return the Axes."""
    if show:
        plt.show()
    return ax
