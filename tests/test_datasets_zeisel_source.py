"""zeisel2015() from its public files (DESCEND's zeisel.rda + zeisel.txt): download,
checksums, ERCC ids restored by matching, the tsv copy preferred, and equality of the two
sources. Small public-format files are written in the test; the real ones are used
when a folder holds them (``$SCMIX_ZEISEL_PUBLIC_DIR`` or ``$SCMIX_DATA_DIR``)."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rdata_writer import COMPRESSORS, data_frame, ints, matrix, reals, rlist, serialize, strings
from scipy import sparse

import scmix.datasets as datasets
from scmix.datasets import _registry, _zeisel
from scmix.datasets._loaders import _ZEISEL, ERCC_INFO

FOLDER = "zeisel2015_descend_subset"
CELLS = ["X1_C02", "X1_A05", "X1_G12"]
GENES = ["Snap25", "Flt1"]
GENE_COUNTS = [[3, 0], [0, 7], [12, 1]]  # cells x genes
ERCC = {"ERCC-00004": [5, 9, 2], "ERCC-00002": [40, 0, 31]}  # rda order, not sorted
TRUE_MOL = [2032.472554, 4064.945108]


def _public_files(folder: Path) -> dict[str, Path]:
    """A small zeisel.rda and zeisel.txt in the public formats, and an ERCC table."""
    genes_by_cells = [GENE_COUNTS[c][g] for c in range(3) for g in range(2)]  # column-major
    sizes = {"names": strings(CELLS)}
    zeisel = rlist(
        [
            reals([2.5e4, 3.1e4, 1.9e4], **sizes),
            matrix(genes_by_cells, 2, 3, rows=GENES, cols=CELLS),
            matrix([1, 2, 3], 1, 3, rows=["Ier3"], cols=CELLS),
            data_frame(
                {cell: ints([row[i] for row in ERCC.values()]) for i, cell in enumerate(CELLS)}, 2
            ),
            strings(["interneurons", "endothelial-mural", "interneurons"]),
            reals([20625.0, 30199.0, 20717.0], **sizes),
            reals(TRUE_MOL),
        ],
        names=strings(
            [
                "cell.size",
                "count.matrix.large",
                "count.matrix.small",
                "ercc.matrix",
                "labels",
                "library.size",
                "trueMol",
            ]
        ),
    )
    (folder / FOLDER).mkdir(parents=True, exist_ok=True)
    (folder / "ercc_reference").mkdir(exist_ok=True)
    rda = folder / _zeisel.RDA
    rda.write_bytes(COMPRESSORS["xz"](serialize({"zeisel": zeisel}, version=2)))
    # write.table layout: quoted names, the header lacks the row-name column; more
    # cells than the subset, in another order, and an ERCC the subset lacks
    everyone = ["X9_B01", *reversed(CELLS)]
    rows = {
        "ERCC-00002": ERCC["ERCC-00002"],
        "ERCC-00003": [1, 1, 1],
        "ERCC-00004": ERCC["ERCC-00004"],
    }
    lines = [" ".join(f'"{c}"' for c in everyone)]
    for ercc, counts in rows.items():
        lines.append(" ".join([f'"{ercc}"', "0", *(str(v) for v in reversed(counts))]))
    txt = folder / _zeisel.ERCC_TXT
    txt.write_text("\n".join(lines) + "\n")
    info = folder / ERCC_INFO
    info.write_text(
        "ERCC ID\tsubgroup\tconcentration in Mix 1 (attomoles/ul)\tconcentration in Mix 2 "
        "(attomoles/ul)\n1\tERCC-00002\tA\t15000\t3750\n2\tERCC-00004\tA\t7500\t1875\n"
    )
    return {_zeisel.RDA: rda, _zeisel.ERCC_TXT: txt, ERCC_INFO: info}


def _serve(monkeypatch, files: dict[str, Path], register: bool = True) -> None:
    """Registry entries pointing at ``files`` (file:// URLs), with their checksums when
    ``register`` (small test files), or the registered ones (the real files)."""
    table = copy.deepcopy(_registry.registry())
    for relpath, path in files.items():
        table[relpath]["urls"] = [path.as_uri()]
        if register:
            table[relpath]["sha256"] = _registry.content_sha256(path)
    monkeypatch.setattr(_registry, "registry", lambda: table)


def _dense(adata) -> np.ndarray:
    return adata.X.toarray() if sparse.issparse(adata.X) else np.asarray(adata.X)


def test_downloads_the_public_files_and_restores_the_ercc_ids(tmp_path, offline, monkeypatch):
    _serve(monkeypatch, _public_files(tmp_path / "server"))
    adata = datasets.zeisel2015()
    assert list(adata.obs_names) == CELLS
    assert list(adata.var_names) == [*GENES, "ERCC-00004", "ERCC-00002"]
    expected = np.hstack([GENE_COUNTS, np.array(list(ERCC.values())).T])
    np.testing.assert_array_equal(_dense(adata), expected)
    assert adata.obs["cell_type"].tolist() == ["interneurons", "endothelial-mural", "interneurons"]
    assert adata.obs["library_size"].tolist() == [20625.0, 30199.0, 20717.0]
    assert adata.obs["cell_size"].tolist() == [2.5e4, 3.1e4, 1.9e4]
    molecules = adata.var["ercc_expected_molecules"]
    assert molecules.iloc[:2].isna().all() and molecules.iloc[2:].tolist() == TRUE_MOL
    assert adata.var["ercc_mix1_attomoles_ul"].iloc[2:].tolist() == [7500, 15000]
    info = adata.uns["dataset"]
    assert info["files"] == [_zeisel.RDA, _zeisel.ERCC_TXT, ERCC_INFO]
    cached = sorted(p.name for p in (offline / FOLDER).iterdir())
    assert cached == ["zeisel.rda", "zeisel.txt"]  # verified copies, no partial file
    for path in (tmp_path / "server" / FOLDER).iterdir():
        path.unlink()
    again = datasets.zeisel2015()  # from the cache
    np.testing.assert_array_equal(_dense(again), expected)


def _tsv_copy(adata, folder: Path) -> dict[str, Path]:
    """The converted copy's four files, written from a loaded AnnData."""
    (folder / FOLDER).mkdir(parents=True)
    spike = adata.var["spike_in"].to_numpy()
    frame = pd.DataFrame(_dense(adata), index=adata.obs_names, columns=adata.var_names)
    paths = {relpath: folder / relpath for relpath in _ZEISEL}
    genes, ercc, cells, expected = _ZEISEL
    frame.loc[:, ~spike].to_csv(paths[genes], sep="\t")
    frame.loc[:, spike].to_csv(paths[ercc], sep="\t")
    obs = adata.obs.rename(columns={"cell_type": "label"})[["label", "library_size", "cell_size"]]
    obs.to_csv(paths[cells], sep="\t")
    molecules = adata.var.loc[spike, "ercc_expected_molecules"].rename("expected_molecules")
    molecules.rename_axis("ercc_id").to_csv(paths[expected], sep="\t")
    return paths


def test_tsv_copy_is_preferred_and_equal(tmp_path, offline, monkeypatch):
    public = _public_files(tmp_path / "server")
    _serve(monkeypatch, public)
    downloaded = datasets.zeisel2015()
    local = tmp_path / "local"
    tsv = _tsv_copy(downloaded, local)
    _serve(monkeypatch, {**public, **tsv})
    for relpath in (_zeisel.RDA, _zeisel.ERCC_TXT):  # must not be needed any more
        (offline / relpath).unlink()
        public[relpath].unlink()
    (local / "ercc_reference").mkdir()
    (local / ERCC_INFO).write_bytes(public[ERCC_INFO].read_bytes())
    adata = datasets.zeisel2015(data_dir=local)
    assert adata.uns["dataset"]["files"] == [*_ZEISEL, ERCC_INFO]
    _assert_same(adata, downloaded)


def _assert_same(adata, other):
    assert adata.obs_names.equals(other.obs_names) and adata.var_names.equals(other.var_names)
    assert type(adata.X) is type(other.X) and adata.X.dtype == other.X.dtype
    np.testing.assert_array_equal(_dense(adata), _dense(other))
    pd.testing.assert_frame_equal(adata.obs, other.obs, check_exact=True)
    pd.testing.assert_frame_equal(adata.var, other.var, check_exact=True)
    mine, theirs = dict(adata.uns["dataset"]), dict(other.uns["dataset"])
    mine.pop("files"), theirs.pop("files")
    assert mine == theirs


def test_downloaded_file_with_wrong_checksum_is_refused(tmp_path, offline, monkeypatch):
    public = _public_files(tmp_path / "server")
    _serve(monkeypatch, public)
    rda = public[_zeisel.RDA]
    rda.write_bytes(rda.read_bytes() + b"\0")  # served bytes differ from the registered
    with pytest.raises(datasets.DatasetNotFoundError, match=r"zeisel\.rda.*not the registered"):
        datasets.zeisel2015()
    assert not (offline / FOLDER).exists() or not any((offline / FOLDER).glob("*rda*"))


def test_local_public_file_with_wrong_checksum_is_an_error(tmp_path, offline, monkeypatch):
    public = _public_files(tmp_path / "server")
    _serve(monkeypatch, public)
    text = public[_zeisel.ERCC_TXT]
    text.write_text(text.read_text().replace(" 40", " 41"))
    with pytest.raises(datasets.ChecksumError, match=r"zeisel\.txt"):
        datasets.zeisel2015(data_dir=tmp_path / "server")


def test_ercc_rows_must_match_one_row_of_zeisel_txt(tmp_path, offline, monkeypatch):
    public = _public_files(tmp_path / "server")
    text = public[_zeisel.ERCC_TXT]
    text.write_text(text.read_text().replace(" 40", " 41"))  # no row equals ERCC-00002 now
    _serve(monkeypatch, public)  # registered as it is: the content check must catch it
    with pytest.raises(ValueError, match="matches 0 rows"):
        datasets.zeisel2015()


# --- the real public files, when a folder holds them -------------------------------------


def _real_public_dir() -> Path | None:
    for variable in ("SCMIX_ZEISEL_PUBLIC_DIR", "SCMIX_DATA_DIR"):
        folder = Path(os.environ.get(variable) or "/nonexistent")
        if (folder / _zeisel.RDA).is_file() and (folder / _zeisel.ERCC_TXT).is_file():
            return folder
    return None


@pytest.fixture
def real_public(monkeypatch):
    folder = _real_public_dir()
    if folder is None:
        pytest.skip(
            "no zeisel.rda / zeisel.txt under $SCMIX_ZEISEL_PUBLIC_DIR or $SCMIX_DATA_DIR "
            f"(folder {FOLDER}/): the real-file test is not run"
        )
    return folder


def test_real_public_files_equal_the_tsv_copy(
    real_public, data_dir, tmp_path, offline, monkeypatch
):
    """Downloaded (file:// URLs, registered checksums) and read, the real public files
    give the AnnData of the converted copy, value for value."""
    files = {relpath: real_public / relpath for relpath in (_zeisel.RDA, _zeisel.ERCC_TXT)}
    reference = data_dir / ERCC_INFO
    _serve(monkeypatch, {**files, ERCC_INFO: reference}, register=False)
    downloaded = datasets.zeisel2015()
    assert (offline / _zeisel.RDA).is_file()
    _assert_same(downloaded, datasets.zeisel2015(data_dir=data_dir))
    assert downloaded.shape == (1464, 1057)
    # the restored ids agree with the concentrations: expected molecules / Mix 1 constant
    spike = downloaded.var.loc[downloaded.var["spike_in"]]
    ratio = spike["ercc_expected_molecules"] / spike["ercc_mix1_attomoles_ul"]
    assert ratio.max() / ratio.min() - 1 < 1e-8


def test_real_rda_reads(real_public):
    saved = _zeisel.read_rda(real_public / _zeisel.RDA)["zeisel"]
    assert saved["count.matrix.large"].shape == (1000, 1464)
    assert saved["ercc.matrix"].shape == (57, 1464)
