"""Typed errors of the miner package (mapped to exit codes only by grpo_tui.cli)."""


class MinerError(Exception):
    """Base class for miner errors."""


class StoreUnavailable(MinerError):
    """The Redis store cannot be reached; the message names the host or socket and what to check."""


class InvalidRecord(MinerError, ValueError):
    """A record to be written is invalid; the message names the field and the reason."""


class PolicyPathError(MinerError):
    """A policy-nudge path lies outside the workspace."""
