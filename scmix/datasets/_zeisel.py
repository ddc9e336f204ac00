"""The DESCEND subset of Zeisel et al. (2015), from its public files.

Two files are public: ``data/zeisel.rda`` of the DESCEND R package
(github.com/jingshuw/descend, commit 8055f403b82e) holds the 1,464 cells: the
1,000-gene count matrix, the 57 ERCC counts, the cell-type labels, the library and
cell sizes and the expected ERCC molecules (``trueMol``). Its ERCC rows are unnamed,
so the ids are restored from ``spike_in_analysis/zeisel.txt`` of
github.com/jingshuw/DESCEND_manuscript_source_code (the ERCC counts of all 3,005
cells, rows named): each ERCC row of the ``.rda`` must equal exactly one row of
``zeisel.txt`` over the same cells. ``trueMol`` is in the order of the ERCC rows
(DESCEND sorts both by ERCC id).

:func:`tables` gives the four tables of the converted copy
(``zeisel2015_descend_subset/*.tsv``), equal to it value for value.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .._core.errors import InputError
from ._rdata import RDataError, read_rda

RDA = "zeisel2015_descend_subset/zeisel.rda"
ERCC_TXT = "zeisel2015_descend_subset/zeisel.txt"
_FIELDS = (
    "count.matrix.large",
    "ercc.matrix",
    "labels",
    "library.size",
    "cell.size",
    "trueMol",
)


def _ercc_ids(ercc: pd.DataFrame, named: pd.DataFrame) -> list[str]:
    """The id of each (unnamed) ERCC row of ``ercc`` (ERCC x cells): the row of ``named``
    (ERCC x more cells) with the same counts in the same cells, which must be unique."""
    missing = ercc.columns.difference(named.columns)
    if len(missing):
        raise InputError(f"{ERCC_TXT} lacks {len(missing)} cells of {RDA} (first: {missing[0]}).")
    wanted = named[ercc.columns].to_numpy()
    ids = []
    for row in ercc.to_numpy():
        same = np.flatnonzero((wanted == row).all(axis=1))
        if len(same) != 1:
            raise InputError(
                f"an ERCC row of {RDA} matches {len(same)} rows of {ERCC_TXT} (needs one): "
                "the two files are not the registered versions."
            )
        ids.append(str(named.index[same[0]]))
    if len(set(ids)) != len(ids):
        raise InputError(f"two ERCC rows of {RDA} match the same row of {ERCC_TXT}.")
    return ids


def tables(rda: Path, ercc_txt: Path) -> tuple[pd.DataFrame, ...]:
    """Genes counts, ERCC counts (cells x features), cells (``label``,
    ``library_size``, ``cell_size``) and expected molecules (ERCC id ->
    ``expected_molecules``), as in the converted tsv copy."""
    try:
        saved = read_rda(rda)
    except RDataError as error:
        raise InputError(f"{RDA} does not read as an R data file: {error}") from error
    zeisel = saved.get("zeisel")
    if not isinstance(zeisel, dict) or not set(_FIELDS) <= set(zeisel):
        raise InputError(f"{RDA} does not hold the list 'zeisel' with fields {_FIELDS}.")
    genes = zeisel["count.matrix.large"].T  # genes x cells in R
    cells = genes.index
    for name in ("library.size", "cell.size"):
        if not zeisel[name].index.equals(cells):
            raise InputError(f"{RDA}: {name} is not named by the cells of the count matrix.")
    ercc = zeisel["ercc.matrix"]
    if not ercc.columns.equals(cells):
        raise InputError(f"{RDA}: the ERCC matrix does not list the cells of the count matrix.")
    try:
        named = pd.read_csv(ercc_txt, sep=" ")  # R write.table: the header lacks the row names
    except (ValueError, OSError, pd.errors.ParserError) as error:
        raise InputError(f"{ERCC_TXT} does not parse: {error}") from error
    ids = _ercc_ids(ercc, named)
    if len(zeisel["labels"]) != len(cells) or len(zeisel["trueMol"]) != len(ids):
        raise InputError(f"{RDA}: labels or trueMol do not match the cells or the ERCC.")
    ercc = pd.DataFrame(ercc.to_numpy().T, index=cells, columns=ids)
    info = pd.DataFrame(
        {
            "label": np.asarray(zeisel["labels"], dtype=object),
            "library_size": zeisel["library.size"].to_numpy(float),
            "cell_size": zeisel["cell.size"].to_numpy(float),
        },
        index=cells,
    )
    expected = pd.DataFrame(
        {"expected_molecules": np.asarray(zeisel["trueMol"], dtype=float)},
        index=pd.Index(ids, name="ercc_id"),
    )
    return genes, ercc, info, expected
