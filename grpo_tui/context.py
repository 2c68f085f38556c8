"""What every `grpo` command receives: the resolved home folder and the verbosity."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click


@dataclass(frozen=True)
class Ctx:
    home: Path  # the workspace's .grpo/ folder (DESIGN section 3)
    verbose: int = 0


pass_ctx = click.make_pass_decorator(Ctx)
