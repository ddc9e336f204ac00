"""Files written atomically: a reader never sees a half-written file, and a failed or
killed write leaves the earlier file at the path untouched."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path in the folder of ``path`` to write to; when the block ends
    without error it replaces ``path`` (``os.replace``, atomic on POSIX), otherwise it is
    removed. The temporary name keeps the suffix of ``path`` (writers choose the format
    by it)."""
    target = Path(path)
    fd, name = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=f".tmp{target.suffix}"
    )
    os.close(fd)
    temporary = Path(name)
    try:
        yield temporary
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def check_writable_folder(folder: str | os.PathLike) -> None:
    """Raise ``OSError`` unless a file can be created in ``folder`` (tried, not guessed:
    permission bits say nothing for root or on read-only file systems)."""
    fd, name = tempfile.mkstemp(dir=folder, prefix=".scmix-write-check.")
    os.close(fd)
    os.unlink(name)
