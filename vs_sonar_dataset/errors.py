"""Errors a user can cause and fix. The CLI prints them as one line, never as a traceback."""


class UserError(Exception):
    """Bad input, bad configuration or a broken file: the message says what and where."""


class ShardError(UserError):
    """A stage file is missing, truncated, altered or of the wrong schema."""
