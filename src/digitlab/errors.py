"""Errors a user can fix: their message names the bad value and what is allowed, so no traceback is needed."""


class DigitlabError(Exception):
    """Base class: the entry points print these as one paragraph instead of a stack trace."""


class DataError(DigitlabError):
    """The data on disk or from a source is missing, incomplete, corrupt or fails its checksum."""


class ConfigError(DigitlabError):
    """A config value is out of range or names something that does not exist."""
