"""Errors a user can fix: their message names the bad value and what is allowed, so no traceback is needed."""


class DigitlabError(Exception):
    """Base class: the entry points print these as one paragraph instead of a stack trace."""


class DataError(DigitlabError):
    """The data on disk or from a source is missing, incomplete, corrupt or fails its checksum."""


class RunInterrupted(DigitlabError):
    """A run stopped before its end by a signal (SIGTERM, as `scancel` and `kill` send) or Ctrl-C: nothing of
    it is wrong, its checkpoints are kept and `resume=true` continues it. A search gives its trial back."""


class ConfigError(DigitlabError):
    """A config value is out of range or names something that does not exist."""
