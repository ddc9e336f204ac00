"""Readable ticks for logarithmic, symmetric-log and log(x + c) axes.

Matplotlib's log locators label minor ticks when the axis spans less than about two
decades, and their labels then run into each other (``2x10^-1 3x10^-1 ...``). Here the
major ticks are "nice" numbers (0, then :math:`10^k`, then :math:`5\\cdot10^k`, then
:math:`2\\cdot10^k`), kept in that order of priority only where their labels stay clear
of the labels already kept, measured in pixels on the axis's own scale; the minor ticks
are unlabelled.
"""

from __future__ import annotations

import matplotlib as mpl
import numpy as np
from matplotlib import ticker
from matplotlib.font_manager import FontProperties

#: Width of one character of a tick label, in font sizes (DejaVu Sans digits are 0.64).
_CHAR_WIDTH = 0.65
#: Free space between two tick labels, in font sizes (along x: between words; along
#: y: between lines).
_LABEL_GAP = {"x": 0.8, "y": 0.4}


def number_label(value: float) -> str:
    """``0.05``, ``2``, ``1000`` as written; powers of ten beyond 10^5 (or below 10^-3)
    in mathtext, which stay short."""
    if value == 0:
        return "0"
    magnitude = abs(value)
    if 1e-3 <= magnitude < 1e5:
        return f"{value:g}"
    exponent = int(np.floor(np.log10(magnitude) + 1e-9))
    mantissa = value / 10.0**exponent
    if np.isclose(abs(mantissa), 1.0):
        sign = "-" if mantissa < 0 else ""
        return f"${sign}10^{{{exponent}}}$"
    return f"${mantissa:g}\\times10^{{{exponent}}}$"


def _label_chars(text: str) -> float:
    """Approximate width of a tick label in characters (mathtext exponents are small)."""
    if text.startswith("$"):
        return 3.0 + 0.6 * (len(text) - 8)
    return float(len(text))


def _candidates(vmin: float, vmax: float) -> list[list[float]]:
    """Nice numbers in [vmin, vmax] by priority: 0; powers of ten; 5 x; 2 x."""
    largest = max(abs(vmin), abs(vmax))
    if largest == 0 or not np.isfinite(largest):
        return [[0.0]]
    positive = [v for v in (vmin, vmax, abs(vmin), abs(vmax)) if v > 0]
    low = np.floor(np.log10(min(positive))) - 1 if vmin > 0 or vmax < 0 else -12
    low = max(low, np.floor(np.log10(largest)) - 12)
    exponents = np.arange(low, np.ceil(np.log10(largest)) + 1)
    groups = []
    for mantissa in (1.0, 5.0, 2.0):
        values = mantissa * 10.0**exponents
        values = np.concatenate([-values, values])
        groups.append(sorted(v for v in values if vmin <= v <= vmax))
    return [[0.0] if vmin <= 0 <= vmax else [], *groups]


class NiceLocator(ticker.Locator):
    r"""Major ticks at 0, :math:`10^k`, :math:`5\cdot10^k`, :math:`2\cdot10^k` (by
    priority), each kept only if its label is clear of the labels already kept, in
    pixels on the axis's scale (log, symlog or any function scale). Falls back to
    evenly spaced round numbers when fewer than two fit (an axis within a decade).
    ``integer=True`` (counts): no tick between 0 and 1."""

    def __init__(self, *, integer: bool = False):
        self.integer = integer

    def _allowed(self, values) -> list[float]:
        return [v for v in values if not self.integer or v == 0 or abs(v) >= 1]

    def __call__(self):
        vmin, vmax = self.axis.get_view_interval()
        return self.tick_values(vmin, vmax)

    def _pixels(self, values, vmin, vmax):
        """Positions of ``values`` along the axis, in pixels from its start."""
        transform = self.axis.get_transform()
        ends = transform.transform(np.array([[vmin], [vmax]], dtype=float)).ravel()
        where = transform.transform(np.asarray(values, dtype=float)[:, None]).ravel()
        bbox = self.axis.axes.bbox
        length = bbox.width if self.axis.axis_name == "x" else bbox.height
        return (where - ends[0]) / (ends[1] - ends[0]) * length

    def _clearance(self, texts) -> np.ndarray:
        """Half the room each label needs along the axis, in pixels."""
        setting = mpl.rcParams[f"{self.axis.axis_name}tick.labelsize"]
        size = FontProperties(size=setting).get_size_in_points()
        pixels = size * self.axis.axes.figure.dpi / 72.0
        if self.axis.axis_name == "x":
            widths = np.array([_label_chars(t) * _CHAR_WIDTH for t in texts])
        else:
            widths = np.ones(len(texts))
        return (widths + _LABEL_GAP[self.axis.axis_name]) * pixels / 2.0

    def tick_values(self, vmin, vmax):
        vmin, vmax = sorted((float(vmin), float(vmax)))
        if self.axis is None:  # no scale to measure on: every candidate
            return np.array(sorted(self._allowed(v for g in _candidates(vmin, vmax) for v in g)))
        kept, room, where = [], [], []
        for group in _candidates(vmin, vmax):
            group = self._allowed(group)
            if not group:
                continue
            pixels = self._pixels(group, vmin, vmax)
            clear = self._clearance([number_label(v) for v in group])
            for value, pixel, half in zip(group, pixels, clear, strict=True):
                if not np.isfinite(pixel):
                    continue
                if all(abs(pixel - p) >= half + h for p, h in zip(where, room, strict=True)):
                    kept.append(value)
                    where.append(pixel)
                    room.append(half)
        if len(kept) < 2:  # within a decade: round numbers, evenly spaced in value
            even = ticker.MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10]).tick_values(vmin, vmax)
            even = [v for v in even if vmin <= v <= vmax and (v > 0 or vmin <= 0)]
            kept = self._allowed(v for v in even if not self.integer or v == round(v))
        return np.array(sorted(kept))


class MinorLocator(NiceLocator):
    r"""Unlabelled minor ticks at :math:`m\cdot10^k` (m = 1..9) that are no major tick,
    at least 3 pixels apart (a symmetric-log axis bunches them near 0)."""

    def __call__(self):
        vmin, vmax = sorted(self.axis.get_view_interval())
        largest = max(abs(vmin), abs(vmax))
        if largest == 0 or not np.isfinite(largest):
            return np.array([])
        top = np.ceil(np.log10(largest))
        exponents = np.arange(top - 8, top + 1)
        values = (np.arange(1, 10)[:, None] * 10.0 ** exponents[None, :]).ravel()
        values = np.concatenate([-values, values])
        majors = set(np.round(self.axis.get_majorticklocs(), 12))
        values = np.array(sorted(self._allowed(v for v in values if vmin <= v <= vmax)))
        values = values[[round(v, 12) not in majors for v in values]]
        kept, last = [], -np.inf
        for value, pixel in zip(values, self._pixels(values, vmin, vmax), strict=True):
            if np.isfinite(pixel) and pixel - last >= 3.0:
                kept.append(value)
                last = pixel
        return np.array(kept)


def nice_ticks(axis, *, integer: bool = False) -> None:
    """Put :class:`NiceLocator` labels (plain numbers) and unlabelled minor ticks on a
    log-like ``axis`` (``ax.xaxis`` or ``ax.yaxis``), after its scale is set;
    ``integer=True`` for counts (no tick between 0 and 1)."""
    axis.set_major_locator(NiceLocator(integer=integer))
    axis.set_major_formatter(ticker.FuncFormatter(lambda value, _: number_label(value)))
    axis.set_minor_locator(MinorLocator(integer=integer))
    axis.set_minor_formatter(ticker.NullFormatter())
