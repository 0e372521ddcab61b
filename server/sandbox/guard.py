"""The audit hook: the sandbox's second layer, inside the untrusted process.

Not a boundary (the program runs in the same interpreter and can reach the hook: the hostile
suite removes it), but it turns the common escapes into a clear ``SandboxViolation`` that fails
the running test even when the program catches it.  It blocks opening for writing, creating,
removing, renaming or changing files outside the temp dir (by path: a ``dir_fd`` is not in the
audit event, the mount namespace stops those); process creation (``os.fork``,
``subprocess.Popen``, ``os.system``, ``os.exec*``, ``os.posix_spawn``, ``os.spawn*``) and
signals; socket creation (other than AF_UNIX), connect/bind/send and name lookups; ctypes;
changing rlimits.  The child also refuses imports of ``BLOCKED_MODULES`` through it.

Standard library only: the sandbox's child script imports this module.
"""

from __future__ import annotations

import os
import sys
from typing import Any

MESSAGE_CHARS = 300
"""Longest message kept per test (and per violation)."""
BLOCKED_MODULES = frozenset(
    {
        "ctypes",
        "_ctypes",
        "_posixsubprocess",
        "_xxsubinterpreters",
        "_testcapi",
        "_testinternalcapi",
    }
)
"""Modules a program may not import (and that the child removes from ``sys.modules``)."""
_BLOCKED_EVENTS = frozenset(
    {
        "os.fork",
        "os.forkpty",
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "subprocess.Popen",
        "pty.spawn",
        "os.kill",
        "os.killpg",
        "signal.pthread_kill",
        "socket.connect",
        "socket.bind",
        "socket.sendto",
        "socket.sendmsg",
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "socket.gethostbyaddr",
        "ctypes.dlopen",
        "ctypes.dlsym",
        "ctypes.call_function",
        "ctypes.cdata",
        "resource.setrlimit",
        "resource.prlimit",
        "os.setuid",
        "os.setgid",
        "webbrowser.open",
        "os.startfile",
        "gc.get_objects",
        "gc.get_referrers",
        "gc.get_referents",
    }
)
_PATH_EVENTS: dict[str, tuple[int, ...]] = {
    "os.remove": (0,),
    "os.rmdir": (0,),
    "os.mkdir": (0,),
    "os.rename": (0, 1),
    "os.link": (0, 1),
    "os.symlink": (1,),
    "os.chmod": (0,),
    "os.chown": (0,),
    "os.truncate": (0,),
    "os.utime": (0,),
    "os.chflags": (0,),
    "os.lchflags": (0,),
    "os.setxattr": (0,),
    "os.removexattr": (0,),
    "shutil.rmtree": (0,),
    "shutil.copyfile": (1,),
    "shutil.copymode": (1,),
    "shutil.copystat": (1,),
    "shutil.move": (0, 1),
    "shutil.chown": (0,),
}
_AF_UNIX = 1
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


class SandboxViolation(PermissionError):
    """Raised inside the sandbox when the program attempts something the sandbox forbids."""


def install_guard(root: str, violations: list[str]) -> None:
    """Audit hook: block writes outside ``root``, processes, network, ctypes (see docstring)."""
    root = os.path.realpath(root)
    prefix = root + os.sep
    realpath, join, fsdecode, getcwd = os.path.realpath, os.path.join, os.fsdecode, os.getcwd
    busy = [False]

    def outside(path: Any) -> bool:
        if isinstance(path, int) or path is None:
            return False
        text = fsdecode(path) if isinstance(path, (bytes, os.PathLike)) else str(path)
        if text == os.devnull:
            return False
        full = realpath(join(getcwd(), text))
        return full != root and not full.startswith(prefix)

    def block(what: str) -> None:
        violations.append(what[:MESSAGE_CHARS])
        raise SandboxViolation(f"sandbox: {what}")

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if busy[0]:
            return
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool(
                (flags or 0) & _WRITE_FLAGS
            )
            if not writing:
                return
            busy[0] = True
            try:
                bad = outside(path)
            finally:
                busy[0] = False
            if bad:
                block(f"write outside the sandbox: {path!r}")
        elif event in _PATH_EVENTS:
            busy[0] = True
            try:
                bad = [args[i] for i in _PATH_EVENTS[event] if i < len(args) and outside(args[i])]
            finally:
                busy[0] = False
            if bad:
                block(f"{event} outside the sandbox: {bad[0]!r}")
        elif event in _BLOCKED_EVENTS:
            block(f"{event} is not allowed")
        elif event == "socket.__new__" and args[1] != _AF_UNIX:
            block(f"sockets of address family {args[1]} are not allowed")
        elif event == "import" and args[0].partition(".")[0] in BLOCKED_MODULES:
            block(f"import of {args[0]} is not allowed")

    sys.addaudithook(hook)
