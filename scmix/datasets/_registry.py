"""Where the published data files are, and that they are the right ones.

The registry (``data/registry.json``, shipped inside the package) records for every
file its public URLs, a sha256, its citation and a licence note. The checksum is of
the file's *content* (decompressed when gzipped), so a gzipped local copy and the
uncompressed file at the source verify alike.

A file is looked for, in order, in ``data_dir=``, in ``$SCMIX_DATA_DIR`` and in the
cache (``$SCMIX_CACHE_DIR``, by default ``~/.cache/scmix``); otherwise it is
downloaded from its URLs into the cache. Every copy is verified before it is read.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import urllib.request
import zlib
from functools import cache
from importlib import resources
from pathlib import Path

_CHUNK = 1 << 20


class ChecksumError(ValueError):
    """A data file exists but its content is not the registered one."""


class DatasetNotFoundError(FileNotFoundError):
    """A data file is in none of the places scmix looks, and could not be downloaded."""


def package_data_dir() -> Path:
    """The project's ``data/`` folder: inside the installed package (wheel), or
    beside the package in a source checkout (editable install)."""
    installed = Path(str(resources.files("scmix"))) / "data"
    if (installed / "registry.json").is_file():
        return installed
    return Path(__file__).resolve().parents[2] / "data"


@cache
def registry() -> dict:
    """The ``files`` table of ``data/registry.json``."""
    with open(package_data_dir() / "registry.json", encoding="utf-8") as handle:
        return json.load(handle)["files"]


def entry(relpath: str) -> dict:
    return registry()[relpath]


def cache_dir() -> Path:
    """``$SCMIX_CACHE_DIR`` or ``$XDG_CACHE_HOME/scmix`` (default ``~/.cache/scmix``)."""
    if os.environ.get("SCMIX_CACHE_DIR"):
        return Path(os.environ["SCMIX_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "scmix"


def content_sha256(path: Path) -> str:
    """sha256 of the file's content, decompressed first when its name ends in ``.gz``."""
    digest = hashlib.sha256()
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            while block := handle.read(_CHUNK):
                digest.update(block)
    except (OSError, EOFError, zlib.error) as error:  # truncated or corrupted gzip
        raise ChecksumError(f"{path} cannot be read as {path.name}: {error}") from error
    return digest.hexdigest()


def verify(path: Path, relpath: str) -> Path:
    expected = entry(relpath)["sha256"]
    found = content_sha256(path)
    if found != expected:
        raise ChecksumError(
            f"{path} is not the registered {relpath} (content sha256 {found[:12]}..., "
            f"expected {expected[:12]}...): the file is corrupted, truncated or another "
            "version. Delete it or replace it with the published file."
        )
    return path


def _candidates(folder: Path, relpath: str) -> list[Path]:
    """The file under ``folder``, gzipped or not (both verify against one checksum)."""
    path = folder / relpath
    plain = path.with_suffix("") if path.suffix == ".gz" else path
    return [path, plain, plain.with_name(plain.name + ".gz")]


def _download(urls: list[str], target: Path, relpath: str) -> tuple[Path | None, list[str]]:
    """Download into ``target``'s folder from the first URL that serves the registered
    content; returns the verified path (or None) and one line per failed attempt."""
    failures = []
    target.parent.mkdir(parents=True, exist_ok=True)
    base = target.name.removesuffix(".gz")
    for url in urls:
        # keep the URL's compression in the file name: the checksum reads by name
        final = target.with_name(base + ".gz" if url.endswith(".gz") else base)
        partial = final.with_name(".part-" + final.name)
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
                shutil.copyfileobj(response, out)
            verify(partial, relpath)
        except (OSError, ValueError) as error:
            failures.append(f"{url}: {error}")
            partial.unlink(missing_ok=True)
            continue
        partial.replace(final)
        return final, failures
    return None, failures


def fetch(relpath: str, data_dir: str | os.PathLike | None = None, download: bool = True) -> Path:
    """A verified local copy of the registered file ``relpath`` (e.g.
    ``"svensson2017_chromium_control/svensson2X.txt.gz"``).

    Raises
    ------
    ChecksumError
        The first copy found does not have the registered content (it is never
        silently replaced: a wrong file in a data folder is worth knowing about).
    DatasetNotFoundError
        No copy anywhere and no download possible; the message lists where the
        file was looked for and how to provide it.
    """
    info = entry(relpath)
    searched = []
    folders = []
    if data_dir is not None:
        folders.append(("data_dir", Path(data_dir)))
    if os.environ.get("SCMIX_DATA_DIR"):
        folders.append(("$SCMIX_DATA_DIR", Path(os.environ["SCMIX_DATA_DIR"])))
    folders.append(("cache", cache_dir()))
    for label, folder in folders:
        for path in _candidates(folder, relpath):
            if path.is_file():
                return verify(path, relpath)
        searched.append(f"{label} {folder}")
    failures = []
    if download and info["urls"]:
        path, failures = _download(info["urls"], cache_dir() / relpath, relpath)
        if path is not None:
            return path
    how = (
        "download failed: " + "; ".join(failures)
        if failures
        else "no download attempted"
        if not download
        else f"there is no public copy in this format ({info['note']})"
    )
    raise DatasetNotFoundError(
        f"{relpath} was not found (looked in {', '.join(searched)}) and {how}. "
        f"Put the file in a folder and pass data_dir= or set SCMIX_DATA_DIR to it"
        + (f"; source: {info['urls'][0]}" if info["urls"] else "")
        + "."
    )


def provenance(relpaths: list[str]) -> dict:
    """Citation, source URLs and licence notes of the files, for ``.uns``."""
    entries = [entry(path) for path in relpaths]
    return {
        "citation": entries[0]["citation"],
        "files": list(relpaths),
        "source": [url for e in entries for url in e["urls"][:1]] or [e["note"] for e in entries],
        "licence": sorted({e["licence"] for e in entries}),
    }
