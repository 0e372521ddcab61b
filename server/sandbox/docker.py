"""The Docker backend: one ``docker run`` container per program, when an engine answers."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from .config import SandboxConfig
from .isolation import SANDBOX_UID
from .result import error_result


@functools.cache
def docker_available() -> bool:
    """True when a Docker engine answers ``docker info``."""
    if not shutil.which("docker"):
        return False
    try:
        done = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and bool(done.stdout.strip())


def resolve_backend(backend: str) -> str:
    """``auto`` -> ``docker`` when the engine answers, else ``subprocess``."""
    if backend == "auto":
        return "docker" if docker_available() else "subprocess"
    if backend not in ("subprocess", "docker"):
        raise ValueError(f"unknown sandbox backend: {backend!r}")
    return backend


class DockerRunner:
    """Runs one job per ``docker run`` container (network none, memory and pid limits)."""

    def __init__(self, cfg: SandboxConfig) -> None:
        self._cfg = cfg

    def call(self, job: dict[str, Any]) -> dict[str, Any]:
        cfg = self._cfg
        folder = str(Path(__file__).resolve().parent)
        cmd = [
            "docker",
            "run",
            "--rm",
            "-i",
            "--network",
            "none",
            "--memory",
            f"{cfg.memory_mb}m",
            "--memory-swap",
            f"{cfg.memory_mb}m",
            "--pids-limit",
            str(cfg.max_processes),
            "--cpus",
            "1",
            "--read-only",
            "--tmpfs",
            "/sandbox:rw,exec,size=64m",
            "--user",
            f"{SANDBOX_UID}:{SANDBOX_UID}",
            "--security-opt",
            "no-new-privileges",
            "-v",
            f"{folder}:/trustfix_sandbox:ro",
            cfg.docker_image,
            "python",
            "-I",
            "/trustfix_sandbox/child.py",
            "--once",
            "/sandbox",
        ]
        try:
            done = subprocess.run(
                cmd,
                input=(json.dumps(job) + "\n").encode(),
                capture_output=True,
                timeout=cfg.wall_timeout + 60,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return error_result("timeout")
        lines = done.stdout.strip().splitlines()
        return json.loads(lines[-1]) if lines else error_result("sandbox")

    def close(self) -> None:
        """Nothing persistent to stop."""
