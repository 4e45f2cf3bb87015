"""Errors initlab raises where a bad value enters.

Every message names the bad value and says how to fix it. The CLI turns an :class:`InitlabError`
(and the ``ValueError`` / ``TypeError`` / ``FileNotFoundError`` family) into one line on stderr and
exit status 2.
"""

from __future__ import annotations


class InitlabError(ValueError):
    """A bad value given to initlab; the message names the value and the fix."""


class DataError(InitlabError):
    """A data set that cannot be loaded: missing, malformed, truncated or inconsistent."""


def outside_stacklevel() -> int:
    """The ``stacklevel`` for :func:`warnings.warn` that points at the first frame outside the
    ``initlab`` package: the user's line that called into initlab, however deep the warning is
    raised (for a warning ``warnings.warn(..., stacklevel=outside_stacklevel())``)."""
    import sys

    frame, level = sys._getframe(1), 1  # the function that calls this, which calls warnings.warn
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] == "initlab":
        frame, level = frame.f_back, level + 1
    return level
