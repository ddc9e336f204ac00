"""What scmix takes from scanpy's settings when the user imported scanpy: log lines at
``scanpy.settings.verbosity`` and the default number of threads, ``scanpy.settings.n_jobs``.

scanpy is never imported here (``import scmix`` stays light): a session that did not
import scanpy cannot have set its verbosity, so the lines then go to the standard
``logging`` logger ``"scmix"`` at DEBUG level (silent unless configured).
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime, timedelta

_LOGGER = logging.getLogger("scmix")


def _scanpy_logging():
    """scanpy's logging module when scanpy is imported, else None."""
    if "scanpy" not in sys.modules:
        return None
    return sys.modules["scanpy"].logging


def info(message: str, *, time: datetime | None = None) -> datetime:
    """An INFO line, shown by scanpy from ``verbosity >= "info"`` (level 2), with the time
    passed since ``time`` (as scanpy: ``"    finished (0:00:01)"``). Returns the current
    time, the ``time`` of a later line."""
    scanpy_logging = _scanpy_logging()
    if scanpy_logging is not None:
        return scanpy_logging.info(message, time=time)
    now = datetime.now(UTC)
    if time is not None:
        message = f"{message} ({timedelta(seconds=int((now - time).total_seconds()))})"
    _LOGGER.debug(message.strip())
    return now


def hint(message: str) -> None:
    """A HINT line (what a tool added where), shown by scanpy from ``verbosity >= "hint"``
    (level 3) as ``--> message``."""
    scanpy_logging = _scanpy_logging()
    if scanpy_logging is not None:
        scanpy_logging.hint(message)
    else:
        _LOGGER.debug(message)


def added(items: list[tuple[str, str]]) -> None:
    """The HINT listing the results a tool wrote: ``[(name, where), ...]``, e.g.
    ``("'scmix_*' columns", "adata.var")``."""
    hint("added\n" + "\n".join(f"    {name} ({where})" for name, where in items))


def default_n_jobs(n_jobs: int | None) -> int | None:
    """``n_jobs``, or when it is None, ``scanpy.settings.n_jobs`` if scanpy is imported
    and it was changed from scanpy's default of 1 (``None``: one thread per core).

    scanpy's 1 cannot be told apart from a user's 1; scmix's own default (every core)
    is kept for it, since results do not depend on the number of threads.
    """
    if n_jobs is not None or "scanpy" not in sys.modules:
        return n_jobs
    scanpy_n_jobs = sys.modules["scanpy"].settings.n_jobs
    return None if scanpy_n_jobs in (None, 1) else scanpy_n_jobs
