"""The error types of scmix's input checks.

Every problem with what a user passed (counts, size factors, masks, keys, options)
raises :class:`InputError` (a ``ValueError``) or :class:`InputKeyError` (also a
``KeyError``), with a message that names the argument or key. Any other exception
is a bug: the command line reports input errors in one line and keeps the traceback
of everything else.
"""

from __future__ import annotations


class InputError(ValueError):
    """A problem with the caller's input; the message names the argument or key."""


class InputKeyError(InputError, KeyError):
    """A key (a ``.obs`` / ``.var`` column, a layer, a gene, a fit) that is not there."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0]) if self.args else ""
