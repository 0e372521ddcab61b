"""The VS Code extension builds: lint, compile, unit tests and the .vsix package (npm run ci)."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

EXTENSION = Path(__file__).resolve().parent.parent / "vscode-extension"
VSIX = EXTENSION / "trustfix-0.1.0.vsix"
NPM = shutil.which("npm")


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Runs a build step, its output captured for the assertion message."""
    env = {**os.environ, "TRUSTFIX_PYTHON": sys.executable}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.skipif(NPM is None, reason="npm is not on PATH: the VS Code extension cannot be built")
def test_extension_builds_and_packages(tmp_path: Path) -> None:
    assert NPM is not None
    VSIX.unlink(missing_ok=True)
    if not (EXTENSION / "node_modules").is_dir():
        installed = _run([NPM, "ci", "--no-audit", "--no-fund"], EXTENSION)
        assert installed.returncode == 0, installed.stdout + installed.stderr
    built = _run([NPM, "run", "ci"], EXTENSION)
    assert built.returncode == 0, built.stdout[-6000:] + built.stderr[-6000:]
    assert "# fail 0" in built.stdout
    assert VSIX.is_file()

    with zipfile.ZipFile(VSIX) as vsix:
        names = vsix.namelist()
        vsix.extractall(tmp_path)
    assert "extension/out/extension.js" in names
    assert "extension/package.json" in names
    assert "extension/node_modules/vscode-languageclient/node.js" in names
    assert not [n for n in names if n.startswith("extension/src/")]
    assert not [n for n in names if "/test/" in n or n.endswith((".test.js", ".ts", ".map"))]
    assert not [n for n in names if n.startswith("extension/node_modules/") and "/typescript/" in n]

    # The packaged extension loads with only what the .vsix holds (and a fake `vscode`).
    mock = EXTENSION / "out" / "test" / "tests" / "extension" / "vscode-mock.js"
    entry = tmp_path / "extension" / "out" / "extension.js"
    script = (
        f"const e = require({str(entry)!r});"
        "if (typeof e.activate !== 'function' || typeof e.deactivate !== 'function') process.exit(3);"
    )
    loaded = _run(["node", "--require", str(mock), "-e", script], tmp_path)
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
