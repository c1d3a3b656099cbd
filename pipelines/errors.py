"""Errors a user can act on: the CLI prints them without a traceback and exits with status 2."""


class MtlflowError(Exception):
    """Base class for user-facing errors (bad params, bad data, missing inputs)."""


class ConfigError(MtlflowError):
    """``params.yaml`` or an override is invalid; the message names the key path."""


class DataError(MtlflowError):
    """Input data is invalid; the message names the file, row and column."""
