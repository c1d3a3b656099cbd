"""Errors a user can act on: the CLI prints them without a traceback and exits with status 2."""


class MtlflowError(Exception):
    """Base class for user-facing errors (bad params, bad data, missing inputs)."""


class ConfigError(MtlflowError):
    """``params.yaml`` or an override is invalid; the message names the key path.

    ``problems`` holds each problem as ``(key path, kind)`` (pydantic's error type, e.g.
    ``extra_forbidden``, or ``not_a_section``), for code that reacts to one kind of problem.
    """

    def __init__(self, message: str, problems: tuple[tuple[str, str], ...] = ()):
        super().__init__(message)
        self.problems = problems


class DataError(MtlflowError):
    """Input data is invalid; the message names the file, row and column."""
