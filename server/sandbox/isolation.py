"""Isolation probing: which namespaces and privilege drop the pool's workers get here."""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

SANDBOX_UID = 65534
"""The ``nobody`` user a root worker drops to."""


@dataclass(frozen=True)
class Isolation:
    """What containment the subprocess backend's workers get on this machine."""

    prefix: tuple[str, ...]
    """Command prefix the worker is started under."""
    network: bool
    """Empty network namespace."""
    pid_namespace: bool
    """Worker is PID 1 of its own PID namespace (everything spawned is killed after each run)."""
    user: str
    """``nobody`` (root dropped privileges), ``userns`` (user namespace) or ``self``."""
    audit_hook: bool = True
    """The in-process audit hook (always on)."""


_UNSHARE = ("unshare", "--net", "--pid", "--fork", "--kill-child")
_SETPRIV = (
    "setpriv", f"--reuid={SANDBOX_UID}", f"--regid={SANDBOX_UID}", "--clear-groups",
    "--inh-caps=-all,+dac_read_search", "--ambient-caps=+dac_read_search",
    "--bounding-set=-all,+dac_read_search", "--no-new-privs",
)  # fmt: skip


def _probe(prefix: Sequence[str], expect_pid1: bool) -> bool:
    code = f"import os,sys; sys.exit(0 if (os.getpid() == 1) == {expect_pid1!r} else 3)"
    try:
        done = subprocess.run(
            [*prefix, sys.executable, "-I", "-c", code],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@functools.cache
def detect_isolation(network: bool = True) -> Isolation:
    """Probe once which namespaces and privilege drop work here; fall back silently."""
    candidates: list[Isolation] = []
    if network and shutil.which("unshare"):
        if os.geteuid() == 0:
            if shutil.which("setpriv"):
                candidates.append(Isolation(_UNSHARE + _SETPRIV, True, True, "nobody"))
            candidates.append(Isolation(_UNSHARE, True, True, "self"))
        else:
            userns = ("unshare", "--user", "--map-root-user", *_UNSHARE[1:])
            candidates.append(Isolation(userns, True, True, "userns"))
            candidates.append(Isolation(("unshare", "--user", "--map-root-user", "--net"),
                                        True, False, "userns"))  # fmt: skip
    for iso in candidates:
        if _probe(iso.prefix, iso.pid_namespace):
            log.debug("sandbox isolation: %s", iso)
            return iso
    log.debug("sandbox isolation: no namespaces")
    return Isolation((), False, False, "self")

