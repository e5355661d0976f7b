"""The project's own user-error type.

:class:`UserError` marks a mistake in what the user asked for (an unknown experiment or preset, a
``--set`` key or value that does not check, a data file that is missing or malformed). The command
line prints such an error as one line; any other exception is a bug and keeps its traceback.
It subclasses :class:`ValueError`, so library callers that catch ``ValueError`` keep working.
"""

from __future__ import annotations


class UserError(ValueError):
    """A mistake in the user's request: printed by the CLI as one line, without a traceback."""
