"""The sandbox's settings: limits, backend, isolation policy."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

ALLOW_WEAK_ENV = "TRUSTFIX_ALLOW_WEAK_SANDBOX"
"""Environment variable giving ``SandboxConfig.allow_weak`` its default (``1``/``true``); not of
the ``TRUSTFIX_<SECTION>__<FIELD>`` form, which the trainer's config loader reads (and which has
no sandbox section)."""


def _env_allows_weak() -> bool:
    """``allow_weak``'s default: true only when ``TRUSTFIX_ALLOW_WEAK_SANDBOX`` says so."""
    return os.environ.get(ALLOW_WEAK_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass
class SandboxConfig:
    """Limits and backend of the test sandbox."""

    cpu_seconds: int = 2
    """RLIMIT_CPU of one program run (whole seconds; SIGKILL one second later)."""
    memory_mb: int = 512
    """RLIMIT_AS of one program run, in MiB."""
    file_size_mb: int = 8
    """RLIMIT_FSIZE: largest file a program may write, in MiB."""
    max_processes: int = 64
    """RLIMIT_NPROC: processes of the sandbox user; the kernel ignores it for root, so a root
    worker drops to ``nobody`` first (see :mod:`.isolation`)."""
    wall_timeout: float = 5.0
    """Wall-clock seconds after which the program's process group is killed."""
    workers: int = 2
    """Pre-forked worker processes (one per core), i.e. programs run in parallel."""
    network_isolation: bool = True
    """Weak isolation only: start workers in an empty network namespace (``unshare --net``) when
    the kernel allows (bubblewrap always unshares the network)."""
    isolation: str = "auto"
    """Subprocess backend: ``bwrap`` (bubblewrap, refuse when it cannot run), ``weak`` (namespaces,
    privilege drop and the audit hook only; needs ``allow_weak``), ``auto`` (bubblewrap when it
    runs here, else weak if ``allow_weak``, else refuse)."""
    allow_weak: bool = field(default_factory=_env_allows_weak)
    """Run untrusted code without bubblewrap (logged as a warning at start); default false, or
    the value of ``TRUSTFIX_ALLOW_WEAK_SANDBOX``.  Without it a sandbox that cannot start
    bubblewrap raises ``SandboxUnavailable`` instead of falling back."""
    bwrap: str = "bwrap"
    """The bubblewrap executable (a name looked up on PATH, or a path)."""
    seccomp: bool = True
    """Under bubblewrap, load a seccomp filter (see :func:`.isolation.seccomp_filter`) where the
    machine's architecture is known (x86_64, aarch64)."""
    tmp_mb: int = 64
    """Under bubblewrap: size of each worker's private tmpfs (``/tmp``, where the programs' temp
    dirs are), in MiB."""
    backend: str = "auto"
    """``auto`` (Docker when ``docker info`` answers, else subprocess), ``subprocess``, ``docker``."""
    docker_image: str = "python:3.11-slim"
    """Image of the Docker backend."""
    cache_size: int = 20_000
    """Results kept in the in-memory LRU cache keyed by sha256 of (program, tests, entry point)."""
    temp_root: str = ""
    """Weak isolation: where the per-program temp dirs are made; empty: /dev/shm when writable (a tmpfs: creating
    and removing a dir there costs microseconds, on a journaling disk milliseconds), else the
    system temp dir."""

    def temp_dir_root(self) -> str:
        """The directory under which the sandbox's temp dirs go."""
        if self.temp_root:
            return self.temp_root
        shm = "/dev/shm"
        return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else tempfile.gettempdir()

    def limits(self) -> dict[str, Any]:
        """The limits a worker applies to each child."""
        return {
            "cpu_seconds": int(self.cpu_seconds),
            "memory_mb": int(self.memory_mb),
            "file_size_mb": int(self.file_size_mb),
            "max_processes": int(self.max_processes),
            "wall_timeout": float(self.wall_timeout),
        }
