r"""Point labels that never overlap, placed again at every draw.

Each label's place is chosen in display pixels when the figure is drawn (after any
layout engine, ``tight_layout`` or change of size or dpi), so what is measured is what
is drawn. Labels are placed greedily, the most important first. The candidates lie on
rings of growing radius :math:`r` around the point, in 16 directions; a candidate is
allowed when its box stays inside the Axes and overlaps neither a label already
placed, nor the legend, nor the marker of a labelled point. Among the allowed ones the
label takes the one of least cost

.. math:: c = r + w \cdot n_{\text{covered}},

where :math:`n_{\text{covered}}` counts the other points under the box and :math:`w`
is two text heights: a label moves a little to leave points visible, not across the
plot. A label away from the first ring gets a thin leader line to its point.
"""

from __future__ import annotations

import numpy as np
from matplotlib.artist import Artist
from matplotlib.text import Text

#: Directions tried on each ring (degrees), the upper right first: labels read best
#: above and right of their point, and in the same place from gene to gene.
_ANGLES = np.deg2rad(
    [45, 135, -45, -135, 0, 180, 90, -90, 22.5, 157.5, -22.5, -157.5, 67.5, 112.5, -67.5, -112.5]
)
#: Rings tried beyond the first, as multiples of the text height.
_RING_STEP = 0.7
#: Free pixels kept around boxes (labels, legend, Axes edges).
_PAD = 1.5


def _alignment(angle: float) -> tuple[str, str]:
    """Text alignment that puts the box on the far side of its anchor."""
    cos, sin = np.cos(angle), np.sin(angle)
    ha = "left" if cos > 0.38 else "right" if cos < -0.38 else "center"
    va = "bottom" if sin > 0.38 else "top" if sin < -0.38 else "center"
    return ha, va


def _box(anchor_x, anchor_y, width, height, ha, va) -> tuple[float, float, float, float]:
    x0 = anchor_x - {"left": 0.0, "center": width / 2, "right": width}[ha]
    y0 = anchor_y - {"bottom": 0.0, "center": height / 2, "top": height}[va]
    return x0, y0, x0 + width, y0 + height


def _overlaps(box, others: list, pad: float = _PAD) -> bool:
    x0, y0, x1, y1 = box
    return any(
        x0 < b[2] + pad and b[0] - pad < x1 and y0 < b[3] + pad and b[1] - pad < y1 for b in others
    )


def _points_in_box(box, xy: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Which markers (centres ``xy``, radii in pixels) touch the box."""
    x0, y0, x1, y1 = box
    dx = np.maximum(np.maximum(x0 - xy[:, 0], xy[:, 0] - x1), 0.0)
    dy = np.maximum(np.maximum(y0 - xy[:, 1], xy[:, 1] - y1), 0.0)
    return dx * dx + dy * dy < radius * radius


class LabelPlacer(Artist):
    """Places the annotations of points (made by :func:`label_points`) when drawn."""

    def __init__(self, annotations, legend=None):
        super().__init__()
        self.annotations = annotations
        self.legend = legend
        self.set_in_layout(False)  # draws nothing itself: no extent for layouts
        self.set_zorder(-1.0)  # before the texts and the legend, so it moves them first

    def _markers(self, renderer):
        """Centres (pixels) and radii of every scatter marker of the Axes."""
        centres, radii = [np.empty((0, 2))], [np.empty(0)]
        for collection in self.axes.collections:
            offsets = np.asarray(collection.get_offsets(), dtype=float)
            if offsets.size == 0:
                continue
            xy = collection.get_offset_transform().transform(offsets)
            sizes = np.asarray(collection.get_sizes(), dtype=float)
            size = np.resize(sizes if sizes.size else [36.0], len(xy))
            centres.append(xy)
            radii.append(np.sqrt(size) / 2 * renderer.points_to_pixels(1.0))
        xy, radius = np.concatenate(centres), np.concatenate(radii)
        finite = np.isfinite(xy).all(axis=1)
        return xy[finite], radius[finite]

    def _fix_legend(self, renderer, markers, labelled) -> list:
        """Put a legend asked to go to the "best" place in the corner or side that covers
        the fewest points (labelled points count ten times), labels aside: matplotlib's
        own choice avoids texts, which move after it. Returns its box."""
        if self.legend is None or not self.legend.get_visible():
            return []
        xy, radius = markers
        weight = np.ones(len(xy))
        weight[labelled] = 10.0
        best = None
        for loc in (
            "upper left",
            "upper right",
            "lower right",
            "lower left",
            "center left",
            "center right",
            "lower center",
            "upper center",
        ):
            self.legend.set_loc(loc)
            box = self.legend.get_window_extent(renderer)
            covered = weight[_points_in_box(tuple(box.extents), xy, radius + _PAD)].sum()
            if best is None or covered < best[0]:
                best = (covered, loc)
        self.legend.set_loc(best[1])
        return [tuple(self.legend.get_window_extent(renderer).extents)]

    def draw(self, renderer):
        if not self.get_visible() or not self.annotations:
            return
        frame = self.axes.get_window_extent(renderer)
        xy, radius = self._markers(renderer)
        points = np.array(
            [self.axes.transData.transform(a.xy) for a in self.annotations], dtype=float
        )
        # which markers are the labelled points themselves (never covered by a label)
        labelled = np.zeros(len(xy), dtype=bool)
        for point in points:
            labelled |= np.hypot(*(xy - point).T) < 0.5
        placed = self._fix_legend(renderer, (xy, radius), labelled)
        for annotation, point in zip(self.annotations, points, strict=True):
            annotation.set_visible(True)
            box = self._place(annotation, point, renderer, frame, placed, xy, radius, labelled)
            if box is None:
                annotation.set_visible(False)  # no room at all in this Axes
            else:
                placed.append(box)

    def _place(self, annotation, point, renderer, frame, placed, xy, radius, labelled):
        annotation.set_ha("left")
        annotation.set_va("bottom")
        extent = Text.get_window_extent(annotation, renderer)  # the text, no leader line
        width, height = extent.width, extent.height
        own = np.hypot(*(xy - point).T) < 0.5
        first = (radius[own].max() if own.any() else 3.0) + 2.0
        step = _RING_STEP * height
        inner = (frame.x0 + _PAD, frame.y0 + _PAD, frame.x1 - _PAD, frame.y1 - _PAD)
        others = ~own
        best = None
        for strict in (True, False):  # at worst, a label may cover another labelled point
            r = first
            while r < max(frame.width, frame.height) and (best is None or r < best[0]):
                for angle in _ANGLES:
                    ha, va = _alignment(angle)
                    anchor = point + r * np.array([np.cos(angle), np.sin(angle)])
                    box = _box(*anchor, width, height, ha, va)
                    inside = box[0] >= inner[0] and box[1] >= inner[1]
                    if not (inside and box[2] <= inner[2] and box[3] <= inner[3]):
                        continue
                    if _overlaps(box, placed):
                        continue
                    touched = _points_in_box(box, xy, radius)
                    if touched[own].any() or (strict and touched[labelled & others].any()):
                        continue
                    cost = r + 2.0 * height * touched[others].sum()
                    if best is None or cost < best[0]:
                        best = (cost, r, anchor, ha, va, box)
                r += step
            if best is not None:
                break
        if best is None:
            return None
        _, r, anchor, ha, va, box = best
        annotation.set_ha(ha)
        annotation.set_va(va)
        annotation.xyann = tuple(anchor - point)
        if annotation.arrow_patch is not None:  # a leader line only when moved away
            annotation.arrow_patch.set_visible(r > first + 0.5 * step)
        return box


def label_points(ax, x, y, texts, *, legend=None, **text_options) -> list:
    """Label the points ``(x[i], y[i])`` with ``texts[i]``, the most important first.

    Places are chosen when the figure is drawn, by a :class:`LabelPlacer` added to the
    Axes (see the module's description): every label overlaps neither another label nor
    ``legend`` (whose place is fixed first, where it covers the fewest points) and stays
    inside the Axes; a label moved away from its point gets a leader line. A label is
    left out only when no place inside the Axes is free at all.

    Returns
    -------
    The annotations (``ax.texts``), in the order given.
    """
    annotations = [
        ax.annotate(
            text,
            (xi, yi),
            xytext=(0.0, 0.0),
            textcoords="offset pixels",
            arrowprops={
                "arrowstyle": "-",
                "color": "0.35",
                "lw": 0.6,
                "shrinkA": 0.5,
                "shrinkB": 2.0,
            },
            **text_options,
        )
        for xi, yi, text in zip(x, y, texts, strict=True)
    ]
    for annotation in annotations:
        # placed inside the Axes at draw time, after the layout: not part of it
        annotation.set_in_layout(False)
    ax.add_artist(LabelPlacer(annotations, legend=legend))
    return annotations
