"""Typed errors of the miner package (mapped to exit codes only by grpo_tui.cli)."""


class MinerError(Exception):
    """Base class for miner errors."""


class StoreUnavailable(MinerError):
    """The Redis store cannot be reached; the message names the host or socket and what to check."""


class InvalidRecord(MinerError, ValueError):
    """A record to be written is invalid; the message names the field and the reason."""


class RecordTooLarge(InvalidRecord):
    """A record to be written is larger than the miner accepts (`miner.extract.DEFAULT_MAX_ENTRY_BYTES`)."""


class PolicyPathError(MinerError):
    """A policy-nudge path lies outside the workspace."""


class StoreError(MinerError):
    """The store answered with an error (e.g. a stream key holding another type); the message says which key."""


class CursorError(MinerError):
    """`cursor.json` is unreadable or malformed; the message names the file and how to fix it."""
