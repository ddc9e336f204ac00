"""The pure-Python reader of R data files, on small files written in the test (tests/
rdata_writer.py) in each compression and both format versions, and its errors."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from rdata_writer import (
    COMPRESSORS,
    NA_INTEGER,
    NA_REAL,
    R,
    data_frame,
    ints,
    logicals,
    matrix,
    reals,
    rlist,
    serialize,
    strings,
)

from scmix.datasets._rdata import RDataError, parse, read_rda


def _objects() -> dict:
    counts = matrix([1, 2, 3, 4, 5, 6], 2, 3, rows=["g1", "g2"], cols=["c1", "c2", "c3"])
    factor = ints(
        [2, 1, None, 2],
        levels=strings(["low", "high"]),
        **{"class": strings(["factor"])},
    )
    frame = data_frame(
        {
            "n": ints([1, None, 3]),
            "x": reals([0.5, NA_REAL, math.inf]),
            "s": strings(["a", None, "é"]),
            "ok": logicals([1, 0, 1]),
        },
        3,
    )
    named = reals([86257.58663124879, 1e-300], names=strings(["a", "b"]))
    nested = rlist([None, ints([7]), strings(["z"])], names=strings(["nothing", "seven", "z"]))
    return {
        "counts": counts,
        "factor": factor,
        "frame": frame,
        "named": named,
        "nested": nested,
        "unnamed": rlist([logicals([1, None])]),
        "bare": matrix([1.5, 2.5, 3.5, 4.5], 2, 2, kind=14),
    }


@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("compression", list(COMPRESSORS))
def test_reads_every_supported_type(compression, version):
    data = COMPRESSORS[compression](serialize(_objects(), version=version))
    saved = read_rda(data)
    assert list(saved) == ["counts", "factor", "frame", "named", "nested", "unnamed", "bare"]

    counts = saved["counts"]  # column-major values, dimnames as index / columns
    assert list(counts.index) == ["g1", "g2"] and list(counts.columns) == ["c1", "c2", "c3"]
    np.testing.assert_array_equal(counts.to_numpy(), [[1, 3, 5], [2, 4, 6]])
    assert counts.dtypes.eq(np.int32).all()

    factor = saved["factor"]
    assert isinstance(factor, pd.Categorical) and list(factor.categories) == ["low", "high"]
    assert list(factor.codes) == [1, 0, -1, 1] and not factor.ordered

    frame = saved["frame"]
    assert list(frame.columns) == ["n", "x", "s", "ok"] and frame.index.equals(pd.RangeIndex(3))
    assert frame["n"].isna().tolist() == [False, True, False]  # integer NA -> NaN
    assert frame["x"].iloc[0] == 0.5 and np.isnan(frame["x"].iloc[1])
    assert frame["x"].iloc[2] == math.inf
    assert frame["s"].tolist() == ["a", None, "é"] and frame["ok"].tolist() == [True, False, True]

    named = saved["named"]
    assert named.index.tolist() == ["a", "b"]
    assert named.to_numpy().tolist() == [86257.58663124879, 1e-300]  # exact doubles
    assert saved["nested"]["nothing"] is None and saved["nested"]["z"].tolist() == ["z"]
    assert saved["nested"]["seven"].tolist() == [7]
    logical = saved["unnamed"][0]
    assert logical[0] is np.True_ or logical[0] is True
    assert logical[1] is pd.NA
    bare = saved["bare"]
    assert bare.index.equals(pd.RangeIndex(2)) and bare.to_numpy().tolist() == [
        [1.5, 3.5],
        [2.5, 4.5],
    ]


def test_parse_keeps_attributes_and_symbols_are_shared():
    top = parse(serialize(_objects()))
    tags = [tag for tag, _ in top.value]
    assert tags[0] == "counts"
    counts = top.value[0][1]
    assert set(counts.attributes) == {"dim", "dimnames"}
    assert counts.attr("dim").value.tolist() == [2, 3]
    # "names" is written once and referenced afterwards: the references resolve
    assert top.value[3][1].attr("names").value.tolist() == ["a", "b"]


def test_data_frame_with_row_names_and_a_repeated_column_name():
    frame = rlist(
        [reals([1.0, 2.0], names=strings(["p", "q"])), strings(["u", "v"])],
        names=strings(["a", "a"]),
        **{"class": strings(["data.frame"]), "row.names": strings(["r1", "r2"])},
    )
    read = read_rda(serialize({"frame": frame}))["frame"]
    assert list(read.columns) == ["a", "a"] and list(read.index) == ["r1", "r2"]
    assert read.iloc[:, 0].tolist() == [1.0, 2.0] and read.iloc[:, 1].tolist() == ["u", "v"]


def test_ordered_factor():
    factor = ints([1, 2], levels=strings(["a", "b"]), **{"class": strings(["ordered", "factor"])})
    assert read_rda(serialize({"f": factor}))["f"].ordered


def test_truncated_file_says_so():
    data = serialize(_objects())
    with pytest.raises(RDataError, match="truncated"):
        read_rda(data[: len(data) // 2])


def test_corrupted_compression_says_so():
    data = bytearray(COMPRESSORS["xz"](serialize(_objects())))
    data[len(data) // 2] ^= 0xFF
    with pytest.raises(RDataError, match="decompressed"):
        read_rda(bytes(data))


@pytest.mark.parametrize(
    ("kind", "name"), [(4, "environment"), (15, "complex"), (25, "S4"), (238, "ALTREP")]
)
def test_unsupported_type_is_named(kind, name):
    data = serialize({"x": R(kind, [])})
    with pytest.raises(RDataError, match=f"'{name}'.*not supported") as error:
        read_rda(data)
    assert "x" in str(error.value)  # where it was met


def test_unsupported_type_inside_a_list_says_where():
    data = serialize({"outer": rlist([ints([1]), R(15, [])])})
    with pytest.raises(RDataError, match=r"outer\[\[2\]\]"):
        read_rda(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"RDA2\nA\n2\n", "ASCII"),
        (b"PK\x03\x04 a zip file", "not an XDR"),
        (b"RDX2\nX\n\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00", "version 4"),
    ],
)
def test_not_an_r_data_file(data, message):
    with pytest.raises(RDataError, match=message):
        read_rda(data)


def test_mismatched_dim_is_an_error():
    bad = ints([1, 2, 3], dim=ints([2, 2]))
    with pytest.raises(RDataError, match="dim"):
        read_rda(serialize({"m": bad}))


def test_reads_a_path(tmp_path):
    path = tmp_path / "x.rda"
    path.write_bytes(COMPRESSORS["gzip"](serialize({"v": ints([NA_INTEGER, 4])})))
    values = read_rda(path)["v"]
    assert np.isnan(values[0]) and values[1] == 4
