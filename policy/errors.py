"""Typed errors of the policy package (mapped to exit codes only by grpo_tui.cli)."""


class PolicyError(Exception):
    """Base class for trainer and policy errors."""


class DatasetError(PolicyError, ValueError):
    """A dataset file is unreadable or invalid; the message says `file:line: reason`."""


class CheckpointError(PolicyError):
    """No usable checkpoint could be loaded."""


class TrainingDiverged(PolicyError):
    """Too many non-finite steps in a row."""


class SettingsError(PolicyError, ValueError):
    """Trainer settings that cannot work together (e.g. --lr-step with --cosine)."""


class RewardError(PolicyError):
    """A reward function cannot be loaded, raised, or returned something unusable; the message names it."""


class ExportError(PolicyError):
    """A checkpoint cannot be exported as asked (bow weights, --adapter-only of a full model, an existing out dir)."""


class RunLocked(PolicyError):
    """Another live process holds the run folder's lock (`<out>/.lock`); the message names its pid."""
