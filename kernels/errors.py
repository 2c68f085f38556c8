"""Typed errors of the kernels package (mapped to exit codes only by grpo_tui.cli)."""


class KernelError(Exception):
    """Base class for kernel errors."""


class ShapeError(KernelError, ValueError):
    """Input tensors have incompatible shapes or dtypes."""


class BackendError(KernelError):
    """The requested kernel backend cannot be used here."""


class OptionError(KernelError, ValueError):
    """A keyword option has a value the kernels do not support (loss type, ratio level, temperature...)."""
