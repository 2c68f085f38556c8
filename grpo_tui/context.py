"""What every `grpo` command receives: the resolved home folder and the verbosity.

`secure_home` is the gate every command's home passes (grpo_tui.cli, grpo-tui): a missing home is
created 0700; an existing one is refused (GrpoError, exit 1, the fix in the message) when it is not a
folder, is owned by another user, or is writable by group or others (anyone who can write there could
plant symlinks or swap the files the trainer and scheduler use).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import click

from grpo_tui.errors import GrpoError


@dataclass(frozen=True)
class Ctx:
    home: Path  # the workspace's .grpo/ folder (DESIGN section 3)
    verbose: int = 0


pass_ctx = click.make_pass_decorator(Ctx)


def secure_home(home: Path) -> Path:
    """Create `home` 0700 when missing; refuse one owned by someone else or writable by group/others."""
    home = Path(home)
    try:
        home.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        pass
    except OSError as exc:
        raise GrpoError(f"cannot create the home {home}: {exc.strerror}; pick another with --home or GRPO_HOME") from exc
    st = os.stat(home)  # a symlinked home is judged by the folder it points at
    if not stat.S_ISDIR(st.st_mode):
        raise GrpoError(f"the home {home} is not a folder; pick another with --home or GRPO_HOME")
    if st.st_uid != os.geteuid():
        raise GrpoError(f"refusing the home {home}: it is owned by uid {st.st_uid}, not by you (uid {os.geteuid()}), "
                        f"so its owner could plant files or symlinks in it; use a home of your own (--home or GRPO_HOME, "
                        f"e.g. ./.grpo in your workspace)")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        who = " and ".join(w for w, bit in (("group", stat.S_IWGRP), ("others", stat.S_IWOTH)) if st.st_mode & bit)
        raise GrpoError(f"refusing the home {home}: it is writable by {who} (mode {stat.S_IMODE(st.st_mode):04o}), "
                        f"so they could plant files or symlinks in it; fix: chmod 700 {home}")
    return home
