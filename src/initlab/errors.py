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
