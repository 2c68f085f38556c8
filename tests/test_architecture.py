"""The import table of DESIGN section 2, enforced by reading imports with `ast`.

| folder    | may import (of ours)            |
| kernels   | nothing                         |
| miner     | nothing                         |
| policy    | kernels, miner.schema, miner.atomic (and miner.errors) |
| grpo_tui  | everything above                |
| bench     | everything above                |

Inside grpo_tui, only `grpo_tui/console/` (app, screens, widgets) may import textual or the console;
heavy optional imports (triton, transformers, peft, docker, pynvml) are never at module top level of
a package `__init__`, so `import kernels` works without a GPU.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = ("kernels", "miner", "policy", "grpo_tui", "bench")
ALLOWED: dict[str, set[str]] = {
    "kernels": set(),
    "miner": set(),
    "policy": {"kernels", "miner.schema", "miner.errors", "miner.atomic"},
    "grpo_tui": {"kernels", "miner", "policy"},
    "bench": {"kernels", "miner", "policy", "grpo_tui"},
}
HEAVY = ("triton", "transformers", "peft", "docker", "pynvml")
# The one place the CLI binds the top layer: `grpo bench` (grpo_tui/commands/bench.py) runs bench/.
CLI_BINDINGS = {"grpo_tui.commands.bench": "bench"}


def imported_modules(tree: ast.AST, module: str) -> list[tuple[int, str]]:
    """Absolute module names imported anywhere in `tree` (relative imports resolved against `module`)."""
    out: list[tuple[int, str]] = []
    package = module.rsplit(".", 1)[0] if "." in module else module
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append((node.lineno, name))
            out.extend((node.lineno, f"{name}.{alias.name}") for alias in node.names if alias.name != "*")
    return out


def _allowed(folder: str, name: str) -> bool:
    top = name.split(".")[0]
    if top not in OURS or top == folder:
        return True
    return any(name == rule or name.startswith(rule + ".") for rule in ALLOWED[folder])


def top_level_imports(tree: ast.Module) -> list[tuple[int, str]]:
    """Imports executed at import time: module body, including if/try blocks, not inside functions."""
    out: list[tuple[int, str]] = []
    stack: list[ast.stmt] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            out.append((node.lineno, node.module or ""))
        elif isinstance(node, (ast.If, ast.Try)):
            stack.extend(node.body + node.orelse + getattr(node, "finalbody", []))
            for handler in getattr(node, "handlers", []):
                stack.extend(handler.body)
    return out


def violations(path: Path, root: Path = ROOT) -> list[str]:
    """Every broken rule of the import table in one source file under `root`."""
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1] + ["__init__"]
    module = ".".join(parts)
    folder = parts[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[str] = []
    is_console = parts[:2] == ["grpo_tui", "console"]
    for lineno, name in imported_modules(tree, module):
        where = f"{path.relative_to(root)}:{lineno}"
        if not _allowed(folder, name) and CLI_BINDINGS.get(module) != name.split(".")[0]:
            found.append(f"{where}: {folder} may not import {name}")
        if folder == "grpo_tui" and not is_console:
            if name.split(".")[0] == "textual" or name.startswith("grpo_tui.console"):
                found.append(f"{where}: operations module imports the console/textual ({name})")
    if parts[-1] == "__init__":
        for lineno, name in top_level_imports(tree):
            if name.split(".")[0] in HEAVY:
                found.append(f"{path.relative_to(root)}:{lineno}: package __init__ imports heavy {name} at import time")
    return found


def source_files(root: Path = ROOT) -> list[Path]:
    return sorted(p for folder in OURS for p in (root / folder).rglob("*.py"))


def test_import_table_holds_for_the_whole_tree() -> None:
    files = source_files()
    assert files, "no source files found"
    problems = [v for f in files for v in violations(f)]
    assert problems == []


@pytest.mark.parametrize(
    ("rel", "source", "expected"),
    [
        ("kernels/bad.py", "import miner\n", "kernels may not import miner"),
        ("miner/bad.py", "from policy.trainer import train\n", "miner may not import policy"),
        ("policy/bad.py", "from miner.store import Store\n", "policy may not import miner.store"),
        ("policy/bad.py", "from grpo_tui import cli\n", "policy may not import grpo_tui"),
        ("grpo_tui/scheduler.py", "def f():\n    import textual.app\n", "operations module imports the console/textual"),
        ("grpo_tui/daemon.py", "from .console import app\n", "operations module imports the console/textual"),
        ("kernels/__init__.py", "import triton\n", "package __init__ imports heavy triton"),
        ("grpo_tui/scheduler.py", "from bench import runner\n", "grpo_tui may not import bench"),
    ],
)
def test_a_bad_module_is_caught(tmp_path: Path, rel: str, source: str, expected: str) -> None:
    path = tmp_path / rel
    path.parent.mkdir(parents=True)
    path.write_text(source)
    problems = violations(path, root=tmp_path)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(
    ("rel", "source"),
    [
        ("policy/ok.py", "from miner.schema import ActionRecord\nimport kernels\n"),
        ("grpo_tui/console/app.py", "import textual.app\nfrom grpo_tui.client import Client\n"),
        ("bench/ok.py", "from policy import trainer\nfrom grpo_tui import config\n"),
        ("kernels/triton_op.py", "import triton\n"),
        ("grpo_tui/commands/bench.py", "def f():\n    from bench import runner\n"),
    ],
)
def test_a_good_module_passes(tmp_path: Path, rel: str, source: str) -> None:
    path = tmp_path / rel
    path.parent.mkdir(parents=True)
    path.write_text(source)
    assert violations(path, root=tmp_path) == []


def _heavy_loaded(imports: str) -> set[str]:
    code = f"import sys, {imports}\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, capture_output=True, text=True)
    return {m for m in out.stdout.strip().split(",") if m}


def test_packages_import_on_cpu_without_heavy_modules() -> None:
    # torch itself may load pynvml (torch.cuda's memory helpers); only what *we* add beyond that counts.
    baseline = _heavy_loaded("torch")
    assert _heavy_loaded("kernels, miner, policy, grpo_tui, bench") - baseline == set()
