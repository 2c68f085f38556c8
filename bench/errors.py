"""Typed errors of the bench package; `grpo_tui.cli` maps them to exit codes (1 error, 2 usage)."""

from grpo_tui.errors import GrpoError, UsageError


class BenchError(GrpoError):
    """A benchmark could not run (a worker failed, an optional tool is missing): exit code 1."""


class BenchUsageError(UsageError):
    """Unknown case or provider, or sizes a case cannot take: exit code 2."""
