"""A small pure-Python reader of R's serialization format (``.rda`` / ``.RData``, ``.rds``).

Only what published count tables need is supported: version 2 and 3 XDR (binary,
big-endian) streams, compressed with gzip, bzip2 or xz (or not at all), holding
NULL, logical / integer / double / character vectors, lists, pairlists, symbols,
attributes and references to them. Anything else (environments, closures, S4
objects, ALTREP, complex numbers, the ASCII and native-binary formats) raises
:class:`RDataError` naming the R type and where in the object it was met.

:func:`parse` returns the raw tree (:class:`RObject`); :func:`read_rda` converts
its named objects to Python: atomic vectors to numpy arrays (a ``names``
attribute makes a :class:`pandas.Series`), 2-d matrices to
:class:`pandas.DataFrame` indexed by their ``dimnames``, factors to
:class:`pandas.Categorical`, data frames to :class:`pandas.DataFrame` and lists to
``dict`` (named) or ``list``. R's ``NA`` becomes NaN (double; integer vectors
holding NA become float64), ``None`` (character) or ``pandas.NA`` (logical, in an
object array).

The format is described in R's ``src/main/serialize.c`` and in "R Internals",
section 1.8 "Serialization formats".
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["RDataError", "RObject", "parse", "read_rda"]

# SEXP types (Rinternals.h) and the pseudo-types of the stream (serialize.c)
NILSXP, SYMSXP, LISTSXP, CHARSXP, LGLSXP = 0, 1, 2, 9, 10
INTSXP, REALSXP, STRSXP, VECSXP = 13, 14, 16, 19
REFSXP, NILVALUE_SXP = 255, 254
_TYPE_NAMES = {
    3: "closure",
    4: "environment",
    5: "promise",
    6: "language",
    7: "special",
    8: "builtin",
    15: "complex",
    17: "...",
    20: "expression",
    21: "bytecode",
    22: "externalptr",
    23: "weakref",
    24: "raw",
    25: "S4",
    238: "ALTREP",
    239: "attributed pairlist",
    240: "attributed language",
    241: "base environment",
    242: "empty environment",
    245: "generic reference",
    246: "class reference",
    247: "persistent reference",
    248: "package environment",
    249: "namespace",
    250: "base namespace",
    251: "missing argument",
    252: "unbound value",
    253: "global environment",
}
NA_INTEGER = -(2**31)
_IS_OBJECT, _HAS_ATTR, _HAS_TAG = 1 << 8, 1 << 9, 1 << 10
_LATIN1, _UTF8 = 1 << 2, 1 << 3  # CHARSXP encoding bits of the "levels" field


class RDataError(ValueError):
    """The bytes are not an R serialization stream this reader supports."""


@dataclass
class RObject:
    """One node of a deserialized R object.

    ``value`` is a numpy array for atomic vectors (``int32`` for logical and
    integer, with R's ``NA`` as ``-2**31``; ``float64`` for double; ``object``
    holding ``str`` or ``None`` for character), a list of :class:`RObject` for
    lists, a list of ``(tag, RObject)`` pairs for pairlists, the name for a symbol
    and ``None`` for NULL. ``attributes`` maps attribute names to their values.
    """

    type: int
    value: Any = None
    attributes: dict[str, RObject] = field(default_factory=dict)

    def attr(self, name: str) -> RObject | None:
        return self.attributes.get(name)

    def classes(self) -> list[str]:
        found = self.attr("class")
        return [] if found is None else list(found.value)


NULL = RObject(NILSXP)


def decompress(data: bytes) -> bytes:
    """The bytes unpacked by the compression their magic number names (or as they are)."""
    if data[:2] == b"\x1f\x8b":
        return gzip.decompress(data)
    if data[:3] == b"BZh":
        return bz2.decompress(data)
    if data[:6] == b"\xfd7zXZ\x00":
        return lzma.decompress(data)
    return data


class _Reader:
    """Reads items from an XDR stream; ``refs`` holds the symbols back-references name."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos, self.refs = memoryview(data), 0, []

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.data):
            raise RDataError(
                f"the stream ends early (needs {n} bytes at offset {self.pos} of "
                f"{len(self.data)}): the file is truncated."
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def int32(self) -> int:
        return struct.unpack(">i", self.take(4))[0]

    def length(self) -> int:
        n = self.int32()
        if n == -1:  # long vector: two 32-bit halves follow
            upper, lower = struct.unpack(">II", self.take(8))
            n = (upper << 32) + lower
        if n < 0:
            raise RDataError(f"negative vector length {n} at offset {self.pos - 4}.")
        return n

    def item(self, where: str) -> RObject:
        flags = self.int32()
        kind = flags & 0xFF
        if kind == NILVALUE_SXP:
            return NULL
        if kind == REFSXP:
            index = (flags >> 8) or self.int32()
            if not 1 <= index <= len(self.refs):
                raise RDataError(f"{where}: reference {index} to an object not yet read.")
            return self.refs[index - 1]
        if kind == SYMSXP:
            symbol = RObject(SYMSXP, self.item(where).value[0])
            self.refs.append(symbol)
            return symbol
        if kind == LISTSXP:
            return self.pairlist(flags, where)
        if kind == CHARSXP:  # only met alone in malformed streams; read it as a string
            return RObject(STRSXP, np.array([self.string(flags)], dtype=object))
        if kind in (LGLSXP, INTSXP):
            values = np.frombuffer(self.take(4 * self.length()), ">i4").astype(np.int32)
            node = RObject(kind, values)
        elif kind == REALSXP:
            node = RObject(kind, np.frombuffer(self.take(8 * self.length()), ">f8").astype(float))
        elif kind == STRSXP:
            n = self.length()
            node = RObject(kind, np.array([self.charsxp(where) for _ in range(n)], dtype=object))
        elif kind == VECSXP:
            n = self.length()
            node = RObject(kind, [self.item(f"{where}[[{i + 1}]]") for i in range(n)])
        else:
            name = _TYPE_NAMES.get(kind, f"unknown type {kind}")
            raise RDataError(
                f"{where}: R objects of type {name!r} (SEXPTYPE {kind}) are not supported "
                "by this reader (only NULL, logical, integer, double and character vectors, "
                "lists and attributes are)."
            )
        if flags & _HAS_ATTR:
            node.attributes = self.attributes(where)
        return node

    def charsxp(self, where: str) -> str | None:
        flags = self.int32()
        if flags & 0xFF != CHARSXP:
            raise RDataError(f"{where}: expected a string element, found SEXPTYPE {flags & 0xFF}.")
        return self.string(flags)

    def string(self, flags: int) -> str | None:
        n = self.int32()
        if n == -1:
            return None  # NA_character_
        raw = bytes(self.take(n))
        # strings marked neither UTF-8 nor Latin-1 are in the writer's native encoding,
        # which for published data is UTF-8 (or plain ASCII) in practice
        return raw.decode("latin-1" if (flags >> 12) & _LATIN1 else "utf-8")

    def pairlist(self, flags: int, where: str) -> RObject:
        """A pairlist (attribute lists and the ``.rda`` top level) as ``(tag, value)`` pairs;
        read as a loop over its cells, not by recursion, so long pairlists fit the stack."""
        items: list[tuple[str | None, RObject]] = []
        attributes: dict[str, RObject] = {}
        while True:
            if flags & _HAS_ATTR:
                attributes = self.attributes(where)
            tag = self.item(where).value if flags & _HAS_TAG else None
            items.append((tag, self.item(f"{where}${tag}" if tag else where)))
            flags = self.int32()
            if flags & 0xFF == NILVALUE_SXP:
                return RObject(LISTSXP, items, attributes)
            if flags & 0xFF != LISTSXP:  # a dotted pair: not produced by save()
                raise RDataError(f"{where}: a pairlist ends in SEXPTYPE {flags & 0xFF}.")

    def attributes(self, where: str) -> dict[str, RObject]:
        flags = self.int32()
        if flags & 0xFF != LISTSXP:
            raise RDataError(f"{where}: attributes are SEXPTYPE {flags & 0xFF}, not a pairlist.")
        return {tag: value for tag, value in self.pairlist(flags, f"{where}@").value}


def parse(data: bytes) -> RObject:
    """The object serialized in ``data`` (an ``.rda`` file's content, with its
    ``RDX2`` / ``RDX3`` magic, or a bare ``.rds`` stream), compressed or not.

    For an ``.rda`` file the result is a pairlist of ``(name, object)`` pairs.
    """
    try:
        data = decompress(bytes(data))
    except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError) as error:
        raise RDataError(f"the R data cannot be decompressed: {error}") from error
    if data[:5] in (b"RDX2\n", b"RDX3\n"):
        data = data[5:]
    elif data[:4] in (b"RDA2", b"RDA3", b"RDB2", b"RDB3"):
        raise RDataError("ASCII and native-binary R files are not supported; save with xdr.")
    if data[:2] != b"X\n":
        raise RDataError(
            f"not an XDR R serialization stream (starts {bytes(data[:8])!r}): "
            "expected an .rda/.rds file written by save() or saveRDS()."
        )
    reader = _Reader(data)
    reader.pos = 2
    version = reader.int32()
    reader.int32(), reader.int32()  # writer's R version, oldest R version that reads it
    if version == 3:
        reader.take(reader.int32())  # name of the writer's native encoding
    elif version != 2:
        raise RDataError(f"serialization format version {version} is not supported (2 or 3).")
    return reader.item("<top>")


# --- conversion to Python ---------------------------------------------------------------


def _atomic(node: RObject) -> np.ndarray:
    """An atomic vector as numpy, R's NA as NaN / None / pandas.NA (see the module doc)."""
    values = node.value
    if node.type == INTSXP:
        missing = values == NA_INTEGER
        return np.where(missing, np.nan, values) if missing.any() else values
    if node.type == LGLSXP:
        missing = values == NA_INTEGER
        if missing.any():
            out = values.astype(bool).astype(object)
            out[missing] = pd.NA
            return out
        return values.astype(bool)
    return values


def _names(node: RObject | None) -> list | None:
    if node is None or node.type == NILSXP:
        return None
    if node.type not in (STRSXP, INTSXP, REALSXP):
        raise RDataError(f"names of SEXPTYPE {node.type} are not supported.")
    return list(_atomic(node))


def _row_names(node: RObject | None, n: int) -> pd.Index:
    """Data frame row names; R stores automatic ones compactly as ``c(NA, -n)``."""
    if node is None or (
        node.type == INTSXP and len(node.value) == 2 and node.value[0] == NA_INTEGER
    ):
        return pd.RangeIndex(n)
    return pd.Index(_names(node))


def _factor(node: RObject, where: str) -> pd.Categorical:
    levels = _names(node.attr("levels")) or []
    codes = node.value.astype(np.int64) - 1  # 1-based, NA -> -1 (pandas' missing code)
    codes[node.value == NA_INTEGER] = -1
    if node.type != INTSXP or codes.max(initial=-1) >= len(levels):
        raise RDataError(f"{where}: a factor whose codes do not index its levels.")
    ordered = "ordered" in node.classes()
    return pd.Categorical.from_codes(codes, categories=levels, ordered=ordered)


def to_python(node: RObject, where: str = "<top>") -> Any:
    """Convert a parsed R object to numpy / pandas / builtin Python objects."""
    classes = node.classes()
    if node.type == NILSXP:
        return None
    if "factor" in classes:
        return _factor(node, where)
    if node.type == VECSXP:
        names = _names(node.attr("names"))
        labels = names or [str(i + 1) for i in range(len(node.value))]
        items = [to_python(v, f"{where}${k}") for k, v in zip(labels, node.value, strict=True)]
        if "data.frame" in classes:
            n = len(items[0]) if items else 0
            # columns by position (a data frame may repeat a name), as plain arrays (a
            # named column would otherwise be aligned on its names)
            columns = {
                i: v.to_numpy() if isinstance(v, pd.Series) else v for i, v in enumerate(items)
            }
            frame = pd.DataFrame(columns, index=_row_names(node.attr("row.names"), n))
            frame.columns = labels
            return frame
        return dict(zip(names, items, strict=True)) if names is not None else items
    if node.type == LISTSXP:
        return {tag: to_python(v, f"{where}${tag}") for tag, v in node.value}
    if node.type == SYMSXP:
        return node.value
    if node.type not in (LGLSXP, INTSXP, REALSXP, STRSXP):
        raise RDataError(f"{where}: SEXPTYPE {node.type} cannot be converted.")
    values = _atomic(node)
    dim = node.attr("dim")
    if dim is not None:
        shape = tuple(int(d) for d in dim.value)
        if int(np.prod(shape)) != len(values):
            raise RDataError(f"{where}: dim {shape} does not match length {len(values)}.")
        array = values.reshape(shape, order="F")  # R stores arrays column-major
        if len(shape) != 2:
            return array
        dimnames = node.attr("dimnames")
        rows, cols = (
            (None, None)
            if dimnames is None or dimnames.type == NILSXP
            else (_names(d) for d in dimnames.value)
        )
        return pd.DataFrame(array, index=rows, columns=cols, copy=False)
    names = _names(node.attr("names"))
    return values if names is None else pd.Series(values, index=names)


def read_rda(source: str | os.PathLike | bytes) -> dict[str, Any]:
    """The objects saved in an ``.rda`` / ``.RData`` file, by name, converted to Python.

    Parameters
    ----------
    source
        A path, or the file's bytes.

    Raises
    ------
    RDataError
        The file is not an XDR R data file, is truncated, or holds an unsupported type.
    """
    if isinstance(source, bytes | bytearray):
        top = parse(source)
    else:
        with open(source, "rb") as handle:
            top = parse(handle.read())
    if top.type != LISTSXP or any(tag is None for tag, _ in top.value):
        raise RDataError("not an .rda file: the top object is not a list of named objects.")
    return {tag: to_python(value, tag) for tag, value in top.value}
