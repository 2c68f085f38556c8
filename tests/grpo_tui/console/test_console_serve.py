"""The console in a browser: `textual serve` (or Textual's own `textual_serve` server, which it wraps)
serves `grpo-tui --readonly` on a local port, headless Chromium loads the page and saves a screenshot,
and the screenshot must show the console (not a blank or error page).

Needs the serve package (`pip install -e ".[serve]"`, no network at run time: the page and its
JavaScript come from the package) and a Chromium binary; skipped, saying which is missing, otherwise.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

CHROMIUMS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def _chromium() -> str | None:
    return next((path for name in CHROMIUMS if (path := shutil.which(name))), None)


def _serve_command(app_command: str, port: int) -> list[str] | None:
    """`textual serve` when textual-dev is installed, else textual_serve's Server (what it runs); None: neither."""
    if importlib.util.find_spec("textual_dev") is not None and shutil.which("textual"):
        return [shutil.which("textual") or "textual", "serve", "-h", "127.0.0.1", "-p", str(port), app_command]
    if importlib.util.find_spec("textual_serve") is not None:
        code = ("import sys; from textual_serve.server import Server; "
                "Server(sys.argv[1], host='127.0.0.1', port=int(sys.argv[2])).serve()")
        return [sys.executable, "-c", code, app_command, str(port)]
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_http(url: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                return reply.read().decode("utf-8", "replace")
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_console_under_textual_serve_in_headless_chromium(tmp_path_factory: pytest.TempPathFactory) -> None:
    chromium = _chromium()
    home = Path(tmp_path_factory.mktemp("srv")) / "h"
    port = _free_port()
    grpo_tui = shutil.which("grpo-tui") or str(Path(sys.executable).with_name("grpo-tui"))
    serve = _serve_command(f"{grpo_tui} --home {home} --readonly --refresh 1", port)
    if serve is None:
        pytest.skip("neither textual-dev (`textual serve`) nor textual-serve is installed: pip install -e '.[serve]'")
    if chromium is None:
        pytest.skip(f"no Chromium binary on PATH (looked for {', '.join(CHROMIUMS)})")
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("playwright (the Python package that drives Chromium) is not installed: pip install -e '.[test]'")
    from playwright.sync_api import sync_playwright

    log = tmp_path_factory.mktemp("srvlog") / "serve.log"
    shot = tmp_path_factory.mktemp("shot") / "console.png"
    with open(log, "wb") as out:
        server = subprocess.Popen(serve, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        page = _wait_http(f"http://127.0.0.1:{port}/", 60)
        assert "<html" in page.lower(), page[:500]
        with sync_playwright() as pw:  # Debian's Chromium, not a browser of Playwright's own (no download)
            browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu",
                                         "--disable-background-networking", "--disable-component-update", "--disable-sync"])  # fmt: skip
            tab = browser.new_page(viewport={"width": 1280, "height": 860})
            tab.goto(f"http://127.0.0.1:{port}/")
            tab.wait_for_selector("body.-first-byte", timeout=60_000)  # textual-serve: the app's first output arrived
            tab.wait_for_timeout(4_000)  # its first refreshes draw the panels
            assert not tab.is_visible(".intro-dialog"), "the served page never left its intro dialog"
            tab.screenshot(path=str(shot))
            browser.close()
    finally:  # the server and the console it started (same process group: its own session)
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(5)
        for proc in psutil.process_iter(["cmdline"]):  # nothing of this test's home keeps running
            if str(home) in " ".join(proc.info["cmdline"] or []):
                proc.kill()
    assert shot.exists() and shot.stat().st_size > 5_000, f"no screenshot; server log:\n{log.read_text()[-2000:]}"
    from PIL import Image

    with Image.open(shot) as image:  # a console draws many colours (borders, bars, text); a blank page one or two
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 16, f"the page looks blank ({len(colours)} colours): {shot}"
    print(f"screenshot of the served console: {shot}")
