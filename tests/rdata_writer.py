"""A minimal writer of R's XDR serialization format, for testing scmix's reader on small
files made in the test (no R, no data file in the repository).

It writes what R's ``save()`` writes for the supported types: a flags word (type,
object / attribute / tag bits, CHARSXP encoding in the "levels" bits), the length, the
big-endian payload, then the attribute pairlist; each symbol is written the first
time and referenced (REFSXP) afterwards, so the writer serializes in stream order.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import struct
from dataclasses import dataclass, field
from typing import Any

NA_INTEGER = -(2**31)
NA_REAL = struct.unpack(">d", bytes.fromhex("7ff00000000007a2"))[0]  # R's NA_real_ bits
LGL, INT, REAL, STR, LIST = 10, 13, 14, 16, 19


@dataclass
class R:
    """An R object to write: ``kind`` (SEXPTYPE), ``values`` (Python values, ``None`` for
    NA in character vectors, R objects for lists) and ``attrs`` in writing order."""

    kind: int
    values: list[Any]
    attrs: dict[str, Any] = field(default_factory=dict)


def ints(values, **attrs) -> R:
    return R(INT, list(values), attrs)


def reals(values, **attrs) -> R:
    return R(REAL, list(values), attrs)


def strings(values, **attrs) -> R:
    return R(STR, list(values), attrs)


def logicals(values, **attrs) -> R:
    return R(LGL, list(values), attrs)


def rlist(values, **attrs) -> R:
    return R(LIST, list(values), attrs)


def matrix(columns_major: list, nrow: int, ncol: int, rows=None, cols=None, kind=INT) -> R:
    """A matrix from its values in R's column-major order, with optional dimnames."""
    attrs: dict[str, Any] = {"dim": ints([nrow, ncol])}
    if rows is not None or cols is not None:
        attrs["dimnames"] = rlist(
            [
                strings(rows) if rows is not None else None,
                strings(cols) if cols is not None else None,
            ]
        )
    return R(kind, list(columns_major), attrs)


def data_frame(columns: dict[str, R], n: int) -> R:
    """A data.frame with automatic (compact) row names, as R stores them."""
    return rlist(
        list(columns.values()),
        names=strings(list(columns)),
        **{"class": strings(["data.frame"]), "row.names": ints([NA_INTEGER, -n])},
    )


class _Stream:
    def __init__(self) -> None:
        self.out = bytearray()
        self.symbols: dict[str, int] = {}

    def int(self, value: int) -> None:
        self.out += struct.pack(">i", value)

    def flags(self, kind: int, *, obj=False, attr=False, tag=False, levels=0) -> None:
        self.int(kind | obj << 8 | attr << 9 | tag << 10 | levels << 12)

    def charsxp(self, text: str | None) -> None:
        if text is None:
            self.flags(9)
            self.int(-1)
            return
        raw = text.encode("utf-8")
        self.flags(9, levels=64 if raw.isascii() else 8)  # ASCII or UTF-8 mark
        self.int(len(raw))
        self.out += raw

    def symbol(self, name: str) -> None:
        if name in self.symbols:
            self.int(255 | self.symbols[name] << 8)  # REFSXP, index in the flags
            return
        self.symbols[name] = len(self.symbols) + 1
        self.flags(1)
        self.charsxp(name)

    def pairlist(self, items: list[tuple[str, Any]]) -> None:
        for tag, value in items:
            self.flags(2, tag=True)
            self.symbol(tag)
            self.item(value)
        self.int(254)  # NILVALUE ends the pairlist

    def item(self, node: R | None) -> None:
        if node is None:
            self.int(254)
            return
        self.flags(node.kind, obj="class" in node.attrs, attr=bool(node.attrs))
        self.int(len(node.values))
        if node.kind in (INT, LGL):
            for value in node.values:
                self.int(NA_INTEGER if value is None else int(value))
        elif node.kind == REAL:
            self.out += struct.pack(f">{len(node.values)}d", *node.values)
        elif node.kind == STR:
            for value in node.values:
                self.charsxp(value)
        else:
            for value in node.values:
                self.item(value)
        if node.attrs:
            self.pairlist(list(node.attrs.items()))


def serialize(objects: dict[str, R | None], version: int = 3) -> bytes:
    """The bytes of an uncompressed ``.rda`` file saving ``objects`` by name."""
    stream = _Stream()
    stream.out += f"RDX{version}\nX\n".encode()
    for number in (version, 0x040201, 0x030500 if version == 3 else 0x020300):
        stream.int(number)
    if version == 3:
        stream.int(5)
        stream.out += b"UTF-8"
    stream.pairlist(list(objects.items()))
    return bytes(stream.out)


COMPRESSORS = {
    "none": lambda data: data,
    "gzip": gzip.compress,
    "bzip2": bz2.compress,
    "xz": lambda data: lzma.compress(data, format=lzma.FORMAT_XZ),
}
