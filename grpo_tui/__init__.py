"""grpo-tui operations side: CLI, config, scheduler, guard, stats; the console lives in grpo_tui.console."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("grpo-tui")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+unknown"
