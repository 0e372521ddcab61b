"""The extension in a real VS Code: the packaged .vsix installed into code-server 4.100.3, driven
by headless Chromium (puppeteer-core).  Opening a buggy file and pressing Ctrl+. lists trustfix's
actions; applying the first one changes the file and records an accept in the server's outbox.
The screenshot of the menu is written to ``docs/e2e-quickfix.png`` (shown in the README) when
``TRUSTFIX_E2E_SCREENSHOT=1``, so that an ordinary run leaves the checkout as it was.

Skips only where ``npm`` or Chromium is missing; ``tests/e2e/install.sh`` (run by ``make
install``) installs code-server and puppeteer-core, and runs here when they are not yet there.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from trustfix.server.outbox import Outbox
from trustfix.trainer.events import Feedback, Suggestion

E2E = Path(__file__).resolve().parent
ROOT = E2E.parent.parent
EXTENSION = ROOT / "vscode-extension"
VSIX = EXTENSION / "trustfix-0.1.0.vsix"
SCREENSHOT = ROOT / "docs" / "e2e-quickfix.png"
NPM = shutil.which("npm")
CHROMIUM = (
    os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
)
CODE_SERVER = E2E / "node_modules" / ".bin" / "code-server"
BUGGY = (ROOT / "tests" / "fixtures" / "buggy.txt").read_text()
LINE = 15  # 1-based line of "    if a == None:"


def run(command: list[str], cwd: Path, timeout: float) -> None:
    """Run a set-up step; its output tail in the failure message."""
    done = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{command}: {done.stdout[-3000:]}{done.stderr[-3000:]}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def outbox_events(data: Path) -> list[object]:
    """The events in the server's outbox (empty until it exists)."""
    if not (data / "outbox.sqlite").exists():
        return []
    outbox = Outbox(data / "outbox.sqlite")
    try:
        return [event for _, event in outbox.pending(10_000)]
    finally:
        outbox.close()


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.skipif(NPM is None, reason="npm is not on PATH: the extension cannot be built")
@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed: nothing can drive VS Code")
def test_quick_fix_menu_lists_and_applies_trustfix_actions_in_vscode(tmp_path: Path) -> None:
    assert NPM is not None and CHROMIUM is not None
    if not CODE_SERVER.exists():
        run(["sh", str(E2E / "install.sh")], E2E, 1500)
    if not (EXTENSION / "node_modules").is_dir():
        run([NPM, "ci", "--no-audit", "--no-fund"], EXTENSION, 600)
    run([NPM, "run", "package"], EXTENSION, 600)

    workspace, user, extensions, data = (tmp_path / n for n in ("ws", "user", "ext", "data"))
    workspace.mkdir()
    (workspace / "buggy.py").write_text(BUGGY)
    (user / "User").mkdir(parents=True)
    (user / "User" / "settings.json").write_text(
        json.dumps(
            {
                "trustfix.interpreter": sys.executable,
                "trustfix.reviewerId": "e2e",
                "security.workspace.trust.enabled": False,
                "workbench.startupEditor": "none",
                "extensions.autoCheckUpdates": False,
                "telemetry.telemetryLevel": "off",
            }
        )
    )
    env = {**os.environ, "TRUSTFIX_DATA_DIR": str(data)}
    dirs = ["--user-data-dir", str(user), "--extensions-dir", str(extensions)]
    run([str(CODE_SERVER), *dirs, "--install-extension", str(VSIX)], E2E, 300)

    port = free_port()
    server = subprocess.Popen(
        [
            str(CODE_SERVER),
            *dirs,
            "--auth",
            "none",
            "--bind-addr",
            f"127.0.0.1:{port}",
            "--disable-telemetry",
            "--disable-update-check",
            "--disable-workspace-trust",
            str(workspace),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/?folder={workspace}"
        for _ in range(120):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        shot = tmp_path / "quickfix.png"
        driven = subprocess.run(
            ["node", str(E2E / "quickfix.mjs"), url, "buggy.py", str(LINE), str(shot), "300"],
            cwd=E2E,
            env={**env, "CHROMIUM": CHROMIUM},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        logs = "\n".join(
            p.read_text()[-3000:] for p in user.glob("logs/*/exthost*/trustfix.trustfix/*.log")
        )
        assert driven.returncode == 0, driven.stdout[-3000:] + driven.stderr[-3000:] + logs
        result = json.loads(driven.stdout.strip().splitlines()[-1])
        assert result["titles"] and all(t.startswith("trustfix:") for t in result["titles"])
        assert result["applied"] == result["titles"][0]
        assert shot.stat().st_size > 0
        if os.environ.get("TRUSTFIX_E2E_SCREENSHOT") == "1":
            shutil.copyfile(shot, SCREENSHOT)

        assert (workspace / "buggy.py").read_text() != BUGGY, logs
        accepts: list[Feedback] = []
        for _ in range(60):  # the accept reaches the outbox through the server's link thread
            events = outbox_events(data)
            accepts = [e for e in events if isinstance(e, Feedback) and e.kind == "accept"]
            if accepts:
                break
            time.sleep(0.5)
        (accept,) = accepts
        offered = {e.id: e for e in events if isinstance(e, Suggestion)}
        assert accept.suggestion_id in offered
    finally:
        os.killpg(server.pid, 15)
        server.wait(30)
