"""The one exception type for user mistakes: the CLI prints its message on one line and exits 2."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input (paths, specs, options, data): printed as ``error: <message>``."""
