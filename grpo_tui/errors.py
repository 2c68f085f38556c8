"""Typed errors of the operations side; `grpo_tui.cli` maps every package's errors to exit codes."""


class GrpoError(Exception):
    """An operational error: exit code 1."""


class UsageError(GrpoError):
    """Bad command-line or config input: exit code 2."""


class ConfigError(UsageError):
    """A config file or value is invalid; the message names the file, the key and the fix."""


class GuardRefused(GrpoError):
    """The capacity guard refused to start work: exit code 3."""
