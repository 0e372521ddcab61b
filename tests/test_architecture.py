"""The dependency rules (bench -> server -> trainer), checked by import-linter's contracts in
pyproject.toml on a copy of the sources laid out as the installed package ``trustfix``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYOUT = {"trustfix_pkg": ".", "server": "server", "trainer": "trainer", "bench": "bench"}
"""Source folder -> place under ``trustfix/`` (the build's package-dir mapping)."""


def package_copy(dest: Path) -> Path:
    """The Python sources under ``dest/trustfix`` as the build maps them; returns ``dest``.

    import-linter finds a package by its folder, and the editable install maps four folders into
    one package, so it reads a copy (a few hundred small files) instead of the checkout."""
    for source, place in LAYOUT.items():
        shutil.copytree(
            ROOT / source,
            dest / "trustfix" / place,
            ignore=shutil.ignore_patterns("__pycache__", "*.safetensors", "*.json", "*.yml"),
            dirs_exist_ok=True,
        )
    return dest


def lint_imports(src: Path) -> subprocess.CompletedProcess[str]:
    """Run ``lint-imports`` with the project's contracts against the copy in ``src``."""
    code = "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())"
    return subprocess.run(
        [sys.executable, "-c", code, "--no-cache", "--config", str(ROOT / "pyproject.toml")],
        cwd=src,
        env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_dependency_contracts_hold(tmp_path: Path) -> None:
    result = lint_imports(package_copy(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken" in result.stdout


def test_a_forbidden_import_breaks_a_contract(tmp_path: Path) -> None:
    src = package_copy(tmp_path)
    (src / "trustfix" / "trainer" / "planted.py").write_text("import trustfix.server.units\n")
    result = lint_imports(src)
    assert result.returncode == 1
    assert "trustfix.trainer.planted -> trustfix.server.units" in result.stdout
