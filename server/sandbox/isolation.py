"""Isolation: what the pool's workers are started under, probed once per process.

Strong (the boundary): bubblewrap.  Each worker is one long-lived ``bwrap`` sandbox in which it
forks a child per program, so the isolation costs one bwrap start per worker, not per program:

* a new mount namespace on an empty root showing only, read-only, the Python installation
  (``sys.base_prefix``), the shared libraries (``/usr/lib``, ``/lib64``...) and the worker
  script's folder; a private ``/proc`` (the sandbox's own processes only), a minimal ``/dev``
  and a private size-limited tmpfs at ``/tmp`` holding the programs' temp dirs.  No ``/etc``,
  no home, no ``/usr/bin``, nothing of the host writable;
* new network (no route out), PID (the worker is PID 1 and kills every other process in it
  after each program), IPC, UTS and cgroup namespaces; as a non-root user also a user namespace
  (``--unshare-all``); ``--die-with-parent``, ``--new-session``, no new privileges;
* as root the worker is started keeping only CAP_SETUID/CAP_SETGID and drops to ``nobody``
  (uid 65534 of the host, no capabilities) before it runs anything: a user namespace would map
  the sandbox user to the host's root;
* a seccomp filter (:func:`seccomp_filter`, classic BPF passed with ``--seccomp FD``) refusing
  the kernel interfaces a test never needs: ptrace and other processes' memory, mounts and
  namespaces, kernel modules, BPF, keyrings, io_uring, sockets other than AF_UNIX;
* the child's rlimits and audit hook (:mod:`.child`) inside all of that.

Weak (only with ``allow_weak``): ``unshare --net --pid`` and, as root, ``setpriv`` to ``nobody``
keeping CAP_DAC_READ_SEARCH, with the audit hook: the host's file system stays visible.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import platform
import shutil
import struct
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SANDBOX_UID = 65534
"""The ``nobody`` user a root worker drops to."""
SCRIPT_DIR = "/opt/trustfix-sandbox"
"""Where the worker script's folder appears inside a bubblewrap sandbox."""
SANDBOX_TMP = "/tmp"
"""The private tmpfs inside a bubblewrap sandbox (the programs' temp dirs go under it)."""
_LIB_DIRS = ("/usr/lib", "/usr/lib64", "/usr/lib32", "/lib", "/lib64", "/lib32")


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot isolate untrusted code here and was not allowed to run it weakly."""


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
    """The in-process audit hook (always on; a second layer, not a boundary)."""
    tool: str = "none"
    """``bwrap``, ``unshare``, ``docker`` or ``none``."""
    mounts: bool = False
    """Private mount namespace showing only the Python installation and the temp dirs."""
    seccomp: bytes = b""
    """The seccomp filter handed to bubblewrap (empty: none)."""
    python: str = sys.executable
    """Interpreter the worker runs (as seen inside the sandbox)."""
    script: str = ""
    """The worker script (as seen inside the sandbox); empty: :data:`.pool.CHILD_SCRIPT`."""
    base: str = ""
    """Folder of the programs' temp dirs inside the sandbox; empty: a host dir the pool makes."""
    worker_args: tuple[str, ...] = ()
    """Extra worker arguments (``--uid N``: drop to that user; ``--wipe``: empty the private
    tmpfs after each program)."""
    reason: str = ""
    """Why bubblewrap is not used (empty when it is)."""

    @property
    def strong(self) -> bool:
        """A kernel-drawn boundary (bubblewrap or a container), not namespaces plus the hook."""
        return self.tool in ("bwrap", "docker")

    def describe(self) -> str:
        """One line for logs and benchmarks."""
        return (
            f"tool={self.tool} mounts={self.mounts} network={self.network} "
            f"pid_namespace={self.pid_namespace} user={self.user} "
            f"seccomp={bool(self.seccomp)} audit_hook={self.audit_hook}"
        )

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start ``argv`` under this isolation (the seccomp filter goes through a pipe)."""
        if not self.seccomp:
            return subprocess.Popen([*self.prefix, *argv], **kwargs)
        rfd, wfd = os.pipe()
        try:
            os.write(wfd, self.seccomp)
            os.close(wfd)
            wfd = -1
            cmd = [*self.prefix[:-1], "--seccomp", str(rfd), self.prefix[-1], *argv]
            return subprocess.Popen(cmd, pass_fds=(rfd,), **kwargs)
        finally:
            os.close(rfd)
            if wfd >= 0:
                os.close(wfd)


# --- seccomp ----------------------------------------------------------------------------------

_SECCOMP_RET_KILL_PROCESS = 0x80000000
_SECCOMP_RET_ERRNO = 0x00050000
_SECCOMP_RET_ALLOW = 0x7FFF0000
_BPF_LD_W_ABS = 0x20
_BPF_JEQ_K = 0x15
_BPF_JGE_K = 0x35
_BPF_JSET_K = 0x45
_BPF_RET_K = 0x06
_EPERM, _ENOSYS, _EAFNOSUPPORT = 1, 38, 97
_AF_UNIX = 1
_CLONE_NAMESPACES = (
    0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
)
"""CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET."""
_X32_SYSCALL_BIT = 0x40000000

_DENIED = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "unshare",
    "setns",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "keyctl",
    "add_key",
    "request_key",
    "acct",
    "swapon",
    "swapoff",
    "reboot",
    "sethostname",
    "setdomainname",
    "syslog",
    "open_by_handle_at",
    "name_to_handle_at",
    "quotactl",
    "lookup_dcookie",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "fanotify_init",
    "iopl",
    "ioperm",
)
"""System calls refused with EPERM (those an architecture lacks are skipped)."""

_SYSCALLS: dict[str, tuple[int, dict[str, int]]] = {
    # machine: (AUDIT_ARCH, syscall numbers from asm/unistd_64.h resp. asm-generic/unistd.h)
    "x86_64": (
        0xC000003E,
        {
            "ptrace": 101,
            "process_vm_readv": 310,
            "process_vm_writev": 311,
            "kcmp": 312,
            "pidfd_getfd": 438,
            "mount": 165,
            "umount2": 166,
            "pivot_root": 155,
            "chroot": 161,
            "unshare": 272,
            "setns": 308,
            "open_tree": 428,
            "move_mount": 429,
            "fsopen": 430,
            "fsconfig": 431,
            "fsmount": 432,
            "fspick": 433,
            "mount_setattr": 442,
            "kexec_load": 246,
            "kexec_file_load": 320,
            "init_module": 175,
            "finit_module": 313,
            "delete_module": 176,
            "bpf": 321,
            "perf_event_open": 298,
            "userfaultfd": 323,
            "keyctl": 250,
            "add_key": 248,
            "request_key": 249,
            "acct": 163,
            "swapon": 167,
            "swapoff": 168,
            "reboot": 169,
            "sethostname": 170,
            "setdomainname": 171,
            "syslog": 103,
            "open_by_handle_at": 304,
            "name_to_handle_at": 303,
            "quotactl": 179,
            "lookup_dcookie": 212,
            "io_uring_setup": 425,
            "io_uring_enter": 426,
            "io_uring_register": 427,
            "fanotify_init": 300,
            "iopl": 172,
            "ioperm": 173,
            "clone3": 435,
            "socket": 41,
            "clone": 56,
        },
    ),
    "aarch64": (
        0xC00000B7,
        {
            "ptrace": 117,
            "process_vm_readv": 270,
            "process_vm_writev": 271,
            "kcmp": 272,
            "pidfd_getfd": 438,
            "mount": 40,
            "umount2": 39,
            "pivot_root": 41,
            "chroot": 51,
            "unshare": 97,
            "setns": 268,
            "open_tree": 428,
            "move_mount": 429,
            "fsopen": 430,
            "fsconfig": 431,
            "fsmount": 432,
            "fspick": 433,
            "mount_setattr": 442,
            "kexec_load": 104,
            "kexec_file_load": 294,
            "init_module": 105,
            "finit_module": 273,
            "delete_module": 106,
            "bpf": 280,
            "perf_event_open": 241,
            "userfaultfd": 282,
            "keyctl": 219,
            "add_key": 217,
            "request_key": 218,
            "acct": 89,
            "swapon": 224,
            "swapoff": 225,
            "reboot": 142,
            "sethostname": 161,
            "setdomainname": 162,
            "syslog": 116,
            "open_by_handle_at": 265,
            "name_to_handle_at": 264,
            "quotactl": 60,
            "lookup_dcookie": 18,
            "io_uring_setup": 425,
            "io_uring_enter": 426,
            "io_uring_register": 427,
            "fanotify_init": 262,
            "clone3": 435,
            "socket": 198,
            "clone": 220,
        },
    ),
}


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    """One ``struct sock_filter`` instruction."""
    return struct.pack("=HBBI", code, jt, jf, k)


def seccomp_filter(machine: str | None = None) -> bytes:
    """The sandbox's seccomp program (classic BPF), or ``b""`` for an unknown architecture.

    Another architecture's calling convention kills the process; the calls in ``_DENIED`` fail
    with EPERM; ``clone3`` with ENOSYS (its flags sit behind a pointer, so the C library falls
    back to ``clone``); ``clone`` with a namespace flag and ``socket`` of a family other than
    AF_UNIX fail; everything else is allowed (the mount, PID and network namespaces and the
    rlimits bound it).
    """
    machine = machine or platform.machine()
    if machine not in _SYSCALLS:
        return b""
    arch, numbers = _SYSCALLS[machine]
    errno = _SECCOMP_RET_ERRNO
    prog = [
        _insn(_BPF_LD_W_ABS, 4),  # seccomp_data.arch
        _insn(_BPF_JEQ_K, arch, 1, 0),
        _insn(_BPF_RET_K, _SECCOMP_RET_KILL_PROCESS),
        _insn(_BPF_LD_W_ABS, 0),  # seccomp_data.nr
    ]
    if machine == "x86_64":
        prog += [
            _insn(_BPF_JGE_K, _X32_SYSCALL_BIT, 0, 1),
            _insn(_BPF_RET_K, _SECCOMP_RET_KILL_PROCESS),
        ]
    for name in _DENIED:
        if name in numbers:
            prog += [_insn(_BPF_JEQ_K, numbers[name], 0, 1), _insn(_BPF_RET_K, errno | _EPERM)]
    prog += [_insn(_BPF_JEQ_K, numbers["clone3"], 0, 1), _insn(_BPF_RET_K, errno | _ENOSYS)]
    prog += [
        _insn(_BPF_JEQ_K, numbers["socket"], 0, 4),
        _insn(_BPF_LD_W_ABS, 16),  # args[0] (low word): the address family
        _insn(_BPF_JEQ_K, _AF_UNIX, 1, 0),
        _insn(_BPF_RET_K, errno | _EAFNOSUPPORT),
        _insn(_BPF_RET_K, _SECCOMP_RET_ALLOW),
        _insn(_BPF_JEQ_K, numbers["clone"], 0, 4),
        _insn(_BPF_LD_W_ABS, 16),  # args[0] (low word): the clone flags
        _insn(_BPF_JSET_K, _CLONE_NAMESPACES, 0, 1),
        _insn(_BPF_RET_K, errno | _EPERM),
        _insn(_BPF_RET_K, _SECCOMP_RET_ALLOW),
        _insn(_BPF_RET_K, _SECCOMP_RET_ALLOW),
    ]
    return b"".join(prog)


# --- bubblewrap -------------------------------------------------------------------------------


def _visible_paths(
    script_dir: Path,
) -> tuple[list[str], list[tuple[str, str]], list[tuple[str, str]]]:
    """(dirs to create, (source, target) read-only binds, (target, link) symlinks)."""
    binds: dict[str, str] = {}
    links: list[tuple[str, str]] = []
    python = os.path.realpath(sys.executable)
    prefix = os.path.realpath(sys.base_prefix)
    binds[prefix] = prefix
    if not python.startswith(prefix + os.sep):
        folder = os.path.dirname(os.path.dirname(python))
        binds[folder] = folder
    for lib in _LIB_DIRS:
        if os.path.islink(lib):
            links.append((os.readlink(lib), lib))
        elif os.path.isdir(lib) and not any(lib.startswith(b + os.sep) or lib == b for b in binds):
            binds[lib] = lib
    binds[str(script_dir)] = SCRIPT_DIR
    targets = [*binds.values(), *(target for _, target in links), SANDBOX_TMP]
    parents = {str(p) for t in targets for p in Path(t).parents if str(p) != "/"}
    return sorted(parents), sorted(binds.items()), links


def bwrap_prefix(
    bwrap: str, script_dir: Path, root: bool, tmp_mb: int, userns_guard: bool
) -> tuple[str, ...]:
    """The bubblewrap command line a worker starts under (ends with ``--``)."""
    cmd: list[str] = [bwrap]
    if root:
        cmd += [
            "--unshare-net",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--cap-drop",
            "ALL",
            "--cap-add",
            "CAP_SETUID",
            "--cap-add",
            "CAP_SETGID",
        ]
    else:
        cmd += ["--unshare-all"] + (["--unshare-user", "--disable-userns"] if userns_guard else [])
    cmd += [
        "--die-with-parent",
        "--new-session",
        "--as-pid-1",
        "--clearenv",
        "--setenv",
        "PATH",
        "/usr/bin:/bin",
        "--setenv",
        "LANG",
        "C.UTF-8",
    ]
    dirs, binds, links = _visible_paths(script_dir)
    for folder in dirs:
        cmd += ["--perms", "0755", "--dir", folder]
    for source, target in binds:
        cmd += ["--ro-bind", source, target]
    for link, target in links:
        cmd += ["--symlink", link, target]
    cmd += [
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--perms",
        "1777",
        "--size",
        str(tmp_mb << 20),
        "--tmpfs",
        SANDBOX_TMP,
        "--chdir",
        SANDBOX_TMP,
        "--",
    ]
    return tuple(cmd)


def _probe_bwrap(iso: Isolation) -> str:
    """Run the worker script's ``--probe`` under ``iso``; empty when it shows what it must."""
    try:
        proc = iso.popen(
            [iso.python, "-I", iso.script, "--probe", *iso.worker_args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={"PATH": "/usr/bin:/bin"},
        )
        out, err = proc.communicate(timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{type(exc).__name__}: {exc}"
    if proc.returncode != 0:
        return (err.decode(errors="replace").strip() or f"exit status {proc.returncode}")[-300:]
    facts = json.loads(out.decode().strip().splitlines()[-1])
    want_uid = SANDBOX_UID if "--uid" in iso.worker_args else os.getuid()
    if (
        facts["pid"] != 1
        or facts["uid"] != want_uid
        or facts["caps"] != 0
        or "etc" in facts["root"]
    ):
        return f"the sandbox does not look isolated: {facts}"
    return ""


def _bubblewrap(bwrap: str, tmp_mb: int, use_seccomp: bool, script_dir: Path) -> Isolation:
    """The bubblewrap isolation, or ``tool="none"`` with the reason it cannot run here."""
    exe = shutil.which(bwrap)
    if exe is None:
        return Isolation(
            (), False, False, "self", reason=f"{bwrap!r} not found (apt-get install bubblewrap)"
        )
    root = os.geteuid() == 0
    filt = seccomp_filter() if use_seccomp else b""
    reason = ""
    for guard in (False,) if root else (True, False):
        iso = Isolation(
            bwrap_prefix(exe, script_dir, root, tmp_mb, guard),
            True,
            True,
            "nobody" if root else "userns",
            tool="bwrap",
            mounts=True,
            seccomp=filt,
            python=os.path.realpath(sys.executable),
            script=f"{SCRIPT_DIR}/child.py",
            base=SANDBOX_TMP,
            worker_args=(("--uid", str(SANDBOX_UID)) if root else ()) + ("--wipe",),
        )
        reason = _probe_bwrap(iso)
        if not reason:
            return iso
    return Isolation((), False, False, "self", reason=f"bubblewrap cannot run here: {reason}")


_UNSHARE = ("unshare", "--net", "--pid", "--fork", "--kill-child")
_SETPRIV = (
    "setpriv",
    f"--reuid={SANDBOX_UID}",
    f"--regid={SANDBOX_UID}",
    "--clear-groups",
    "--inh-caps=-all,+dac_read_search",
    "--ambient-caps=+dac_read_search",
    "--bounding-set=-all,+dac_read_search",
    "--no-new-privs",
)


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


def _weak(network: bool, reason: str) -> Isolation:
    """Namespaces and privilege drop as far as they work here (the audit hook does the rest)."""
    candidates: list[Isolation] = []
    if network and shutil.which("unshare"):
        if os.geteuid() == 0:
            if shutil.which("setpriv"):
                candidates.append(
                    Isolation(_UNSHARE + _SETPRIV, True, True, "nobody", tool="unshare")
                )
            candidates.append(Isolation(_UNSHARE, True, True, "self", tool="unshare"))
        else:
            userns = ("unshare", "--user", "--map-root-user", *_UNSHARE[1:])
            candidates.append(Isolation(userns, True, True, "userns", tool="unshare"))
            candidates.append(
                Isolation(
                    ("unshare", "--user", "--map-root-user", "--net"),
                    True,
                    False,
                    "userns",
                    tool="unshare",
                )
            )
    for iso in candidates:
        if _probe(iso.prefix, iso.pid_namespace):
            return replace(iso, reason=reason)
    return Isolation((), False, False, "self", reason=reason)


@functools.cache
def detect_isolation(
    network: bool = True,
    mode: str = "auto",
    bwrap: str = "bwrap",
    tmp_mb: int = 64,
    seccomp: bool = True,
) -> Isolation:
    """Probe once what the workers can be started under: bubblewrap unless ``mode="weak"``;
    weak isolation (the result's ``strong`` is false, ``reason`` says why) when it cannot run."""
    if mode not in ("auto", "bwrap", "weak"):
        raise ValueError(f"unknown sandbox isolation: {mode!r}")
    if mode == "weak":
        iso = _weak(network, "isolation = 'weak' was asked for")
    else:
        iso = _bubblewrap(bwrap, tmp_mb, seccomp, Path(__file__).resolve().parent)
        if not iso.strong and mode == "auto":
            iso = _weak(network, iso.reason)
    log.debug("sandbox isolation: %s", iso.describe())
    return iso
