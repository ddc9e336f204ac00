"""Loaders of the published ERCC spike-in datasets, in their published file formats.

Every loader returns a cells x features AnnData with integer counts in ``X`` (CSR
when that is smaller than dense), ``.var["spike_in"]``, the ERCC Mix 1 / Mix 2
concentrations in ``.var`` (NaN for endogenous genes and unknown ERCC) and the
provenance (citation, source, licence, files) in ``.uns["dataset"]``. Files are
found (or downloaded) and verified by :mod:`scmix.datasets._registry`.
"""

from __future__ import annotations

import os
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from .._core.errors import InputError
from . import _zeisel
from ._registry import DatasetNotFoundError, entry, fetch, package_data_dir, provenance

DataDir = str | os.PathLike | None

ERCC_INFO = "ercc_reference/ercc-info.txt"
_SVENSSON = {
    "20311": "svensson2017_chromium_control/svensson1X.txt.gz",
    "20312": "svensson2017_chromium_control/svensson2X.txt.gz",
}
_TUNG = (
    "tung2017_ipsc_c1/tung.txt.gz",
    "tung2017_ipsc_c1/annotation.txt",
    "tung2017_ipsc_c1/summary-counts.txt.gz",
)
_ZEISEL = (
    "zeisel2015_descend_subset/genes_counts.tsv.gz",
    "zeisel2015_descend_subset/ercc_counts.tsv.gz",
    "zeisel2015_descend_subset/cells.tsv.gz",
    "zeisel2015_descend_subset/ercc_expected_molecules.tsv",
)
_MACOSKO = "macosko2015_dropseq_ercc/GSM1629193_ERCC.digital_expression.txt.gz"


def _integer_counts(table: pd.DataFrame, source: str) -> np.ndarray:
    """The table's values as int32 counts; a parse error (not a wrong matrix) otherwise."""
    values = table.to_numpy()
    if not np.issubdtype(values.dtype, np.number):
        raise InputError(f"{source}: non-numeric entries; the file does not parse as counts.")
    values = values.astype(np.float64)
    bad = ~np.isfinite(values) | (values < 0) | (values != np.round(values))
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise InputError(
            f"{source}: {int(bad.sum())} entries are not non-negative integers (first: row "
            f"{table.index[row]!r}, column {table.columns[col]!r}, value {values[row, col]!r})."
        )
    return values.astype(np.int32)


def _as_anndata(counts: np.ndarray, obs_names, var_names) -> AnnData:
    """Cells x features AnnData, CSR when its three arrays take less memory than dense."""
    nnz = int(np.count_nonzero(counts))
    csr_bytes = nnz * (counts.itemsize + 4) + (counts.shape[0] + 1) * 4
    matrix = sparse.csr_matrix(counts) if csr_bytes < counts.nbytes else counts
    adata = AnnData(matrix)
    adata.obs_names = pd.Index(obs_names, dtype=str)
    adata.var_names = pd.Index(var_names, dtype=str)
    return adata


def _read_table(path, sep: str, source: str) -> pd.DataFrame:
    """A text table whose first column holds the row names."""
    try:
        # round_trip: the default fast parser may be an ulp off a float written with repr
        return pd.read_csv(path, sep=sep, index_col=0, float_precision="round_trip")
    except (ValueError, EOFError, OSError, pd.errors.ParserError) as error:
        raise InputError(f"{source} does not parse: {error}") from error


def ercc_reference(data_dir: DataDir = None) -> pd.DataFrame:
    """ERCC Mix 1 / Mix 2 concentrations (attomoles/ul) and subgroup, indexed by ERCC id."""
    path = fetch(ERCC_INFO, data_dir)
    table = pd.read_csv(path, sep="\t", index_col=0)
    table = table.set_index("ERCC ID")
    return pd.DataFrame(
        {
            "ercc_subgroup": table["subgroup"].astype(str),
            "ercc_mix1_attomoles_ul": table["concentration in Mix 1 (attomoles/ul)"].astype(float),
            "ercc_mix2_attomoles_ul": table["concentration in Mix 2 (attomoles/ul)"].astype(float),
        }
    )


def _annotate(adata: AnnData, name: str, files: list[str], data_dir: DataDir) -> AnnData:
    """Spike-in flags, ERCC concentrations and provenance."""
    adata.var["spike_in"] = np.asarray(adata.var_names.str.startswith("ERCC-"), dtype=bool)
    reference = ercc_reference(data_dir).reindex(adata.var_names)
    for column in reference.columns:
        adata.var[column] = reference[column].to_numpy()
    adata.uns["dataset"] = {"name": name, **provenance([*files, ERCC_INFO])}
    return adata


def svensson2017(
    sample: Literal["20311", "20312"] = "20312", *, data_dir: DataDir = None
) -> AnnData:
    """10x Chromium droplets loaded with ERCC spike-ins only (Svensson et al. 2017).

    2,000 cells x 90 ERCC per sample, UMI counts. Sample 20312 has clearly bimodal
    per-cell ERCC totals: the motivating case of scmix. ``.obs["sample"]`` names it.

    Parameters
    ----------
    sample
        ``"20311"`` or ``"20312"`` (files ``svensson1X`` / ``svensson2X``).
    data_dir
        Folder holding ``svensson2017_chromium_control/``; by default
        ``$SCMIX_DATA_DIR``, then the cache, then a download.
    """
    sample = str(sample)
    if sample not in _SVENSSON:
        raise InputError(f"sample must be one of {sorted(_SVENSSON)}, got {sample!r}.")
    relpath = _SVENSSON[sample]
    table = _read_table(fetch(relpath, data_dir), " ", relpath)
    adata = _as_anndata(_integer_counts(table, relpath).T, table.columns, table.index)
    adata.obs["sample"] = pd.Categorical([sample] * adata.n_obs)
    return _annotate(adata, f"svensson2017_{sample}", [relpath], data_dir)


def tung2017(*, data_dir: DataDir = None) -> AnnData:
    """iPSC Fluidigm C1 ERCC UMI counts of Tung et al. 2017 (564 cells x 89 ERCC).

    ``.obs``: ``individual``, ``replicate``, ``well``, ``batch`` (individual.replicate)
    and the endogenous library size of each cell, ``endogenous_molecules`` (UMI
    assigned to genes) and ``endogenous_reads``, usable as size factors.
    """
    counts_path, annotation_path, summary_path = _TUNG
    table = _read_table(fetch(counts_path, data_dir), " ", counts_path)
    adata = _as_anndata(_integer_counts(table, counts_path).T, table.columns, table.index)

    annotation = pd.read_csv(fetch(annotation_path, data_dir), sep="\t").set_index("sample_id")
    summary = pd.read_csv(fetch(summary_path, data_dir), sep="\t")
    summary.index = summary["individual"] + "." + summary["replicate"] + "." + summary["well"]
    assigned = summary.pivot_table(
        index=summary.index, columns="rmdup", values="Assigned", aggfunc="first"
    )
    missing = adata.obs_names.difference(annotation.index).union(
        adata.obs_names.difference(assigned.index)
    )
    if len(missing):
        raise InputError(
            f"{len(missing)} cells of {counts_path} are missing from {annotation_path} or "
            f"{summary_path} (first: {list(missing[:3])})."
        )
    cells = adata.obs_names
    for column in ("individual", "replicate", "well", "batch"):
        adata.obs[column] = pd.Categorical(annotation.loc[cells, column].astype(str))
    adata.obs["endogenous_molecules"] = assigned.loc[cells, "molecules"].to_numpy(np.int64)
    adata.obs["endogenous_reads"] = assigned.loc[cells, "reads"].to_numpy(np.int64)
    return _annotate(adata, "tung2017", list(_TUNG), data_dir)


def _zeisel_tables(data_dir: DataDir) -> tuple[tuple[pd.DataFrame, ...], list[str]]:
    """The four Zeisel tables and the registered files they were read from: the
    converted tsv copy when a folder or the cache holds it, else the public files."""
    try:
        paths = [fetch(relpath, data_dir, download=False) for relpath in _ZEISEL]
    except DatasetNotFoundError:
        rda, ercc_txt = fetch(_zeisel.RDA, data_dir), fetch(_zeisel.ERCC_TXT, data_dir)
        return _zeisel.tables(rda, ercc_txt), [_zeisel.RDA, _zeisel.ERCC_TXT]
    genes, ercc, cells, expected = (
        _read_table(path, "\t", relpath) for path, relpath in zip(paths, _ZEISEL, strict=True)
    )
    return (genes, ercc, cells, expected), list(_ZEISEL)


def zeisel2015(*, data_dir: DataDir = None) -> AnnData:
    """Mouse cortex / hippocampus cells of Zeisel et al. 2015, the DESCEND subset
    (Wang et al. 2018): 1,464 cells x (1,000 genes + 57 ERCC), UMI counts.

    ``.obs``: ``cell_type`` (pyramidal CA1 / interneurons / endothelial-mural),
    ``library_size``, ``cell_size``; ``.var["ercc_expected_molecules"]``: the expected
    number of molecules of each ERCC per cell (NaN for genes). Marker genes of one
    cell type are genuinely bimodal across these cells.

    Sources, in order: the converted copy ``zeisel2015_descend_subset/*.tsv[.gz]`` in
    ``data_dir``, ``$SCMIX_DATA_DIR`` or the cache; otherwise the two public files,
    ``zeisel.rda`` and ``zeisel.txt``, found in the same places or downloaded (see
    ``data/registry.json``). The ``.rda`` (data of the DESCEND R package,
    github.com/jingshuw/descend) is read by scmix's own reader of R data files, with no
    R; ``zeisel.txt`` (github.com/jingshuw/DESCEND_manuscript_source_code) gives the
    ERCC ids, which the ``.rda`` lacks. Both sources give the same AnnData, except for
    ``.uns["dataset"]["files"]``, which names the files read.
    """
    (genes, ercc, cells, expected), files = _zeisel_tables(data_dir)
    # the counts come from the first two files of the tsv copy, from the .rda otherwise
    genes_name, ercc_name = (files[0], files[1]) if len(files) == 4 else (files[0], files[0])
    if not (genes.index.equals(ercc.index) and genes.index.equals(cells.index)):
        raise InputError(f"the gene counts, ERCC counts and cells of {files} list different cells.")
    counts = np.hstack([_integer_counts(genes, genes_name), _integer_counts(ercc, ercc_name)])
    adata = _as_anndata(counts, genes.index, [*genes.columns, *ercc.columns])
    adata.obs["cell_type"] = pd.Categorical(cells["label"].astype(str))
    adata.obs["library_size"] = cells["library_size"].to_numpy(float)
    adata.obs["cell_size"] = cells["cell_size"].to_numpy(float)
    adata.var["ercc_expected_molecules"] = (
        expected["expected_molecules"].reindex(adata.var_names).to_numpy(float)
    )
    adata = _annotate(adata, "zeisel2015", files, data_dir)
    # the tsv copy has no URL of its own: cite the public files it was converted from
    adata.uns["dataset"]["source"] = [
        entry(relpath)["urls"][0] for relpath in (_zeisel.RDA, _zeisel.ERCC_TXT, ERCC_INFO)
    ]
    return adata


def macosko2015(*, data_dir: DataDir = None) -> AnnData:
    """Drop-seq beads with ERCC spike-ins only (Macosko et al. 2015, GEO GSM1629193):
    84 beads x 80 ERCC, UMI counts."""
    table = _read_table(fetch(_MACOSKO, data_dir), "\t", _MACOSKO)
    adata = _as_anndata(_integer_counts(table, _MACOSKO).T, table.columns, table.index)
    return _annotate(adata, "macosko2015", [_MACOSKO], data_dir)


DEMO_FILE = "demo.h5ad"


def demo() -> AnnData:
    """The small demo dataset shipped with scmix (made by ``data/make_demo.py``).

    Simulated from the scmix model with figures calibrated on the Svensson 2017
    sample 20312 ERCC: the same two size-factor modes, each ERCC's fitted mean and
    dispersion, plus a few endogenous-like genes that really have two components.
    ``.var["spike_in"]`` flags the ERCC; ``.obs["size_factors"]`` holds the spike-in
    size factors computed from them; the truth is in ``.var["true_*"]``,
    ``.obs["true_size_factors"]`` and ``.uns["simulation"]``. It needs no download.
    """
    import anndata

    return anndata.read_h5ad(package_data_dir() / DEMO_FILE)
