"""Packaging: one distribution, folders mapped under trustfix, nothing bare importable."""

import importlib.util
import subprocess
import sys


def test_subpackages_import_under_trustfix():
    import trustfix.bench
    import trustfix.server
    import trustfix.trainer

    assert trustfix.trainer.PPOLearner.__module__ == "trustfix.trainer.ppo"
    assert trustfix.server.__name__ == "trustfix.server"
    assert trustfix.bench.__name__ == "trustfix.bench"


def test_no_bare_server_or_trainer_package(tmp_path):
    # run from an empty directory so the checkout itself is not on sys.path
    code = "import importlib.util as u; print(u.find_spec('server'), u.find_spec('trainer'), u.find_spec('bench'))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["None", "None", "None"]


def test_trainer_never_imports_server():
    code = (
        "import sys, trustfix.trainer, trustfix.trainer.synthetic, trustfix.trainer.events;"
        "print(sorted(m for m in sys.modules if m.startswith('trustfix.server')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_importing_the_trainer_prints_nothing():
    out = subprocess.run(
        [sys.executable, "-c", "import trustfix.trainer, trustfix.server"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout == ""


def test_console_script_runs():
    out = subprocess.run(
        [sys.executable, "-m", "trustfix.cli", "--help"], capture_output=True, text=True
    )
    assert importlib.util.find_spec("trustfix.cli") is not None
    assert "demo" in out.stdout + out.stderr


def test_public_api_resolves_lazily():
    code = (
        "import sys, trustfix.trainer as t, trustfix.trainer.events;"
        "assert 'torch' not in sys.modules, 'torch imported eagerly';"
        "assert t.PPOLearner.__name__ == 'PPOLearner';"
        "assert all(getattr(t, n) is not None for n in t.__all__)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_python_dash_m_trustfix():
    out = subprocess.run(
        [sys.executable, "-m", "trustfix", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "serve" in out.stdout
