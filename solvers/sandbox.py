"""Host side: how a worker process is isolated, and the command line that starts it.

Two kinds of sandbox:

* ``bwrap`` - bubblewrap: new pid/net/ipc/uts namespaces (no network at all),
  read-only root filesystem, a size-capped tmpfs ``/tmp`` holding the work dirs,
  home/project/run/var directories hidden behind empty tmpfs, empty environment,
  ``--die-with-parent``, ``--new-session``, and an unprivileged uid. Run as an
  ordinary user, bwrap also creates a user namespace (uid 65534 inside). Run as
  root, it does not (a root-mapped user namespace would leave the program with
  host uid 0, which ignores RLIMIT_NPROC and owns root's files); instead the
  worker drops to a random unprivileged host uid right after start, so the
  process limit holds and root-only files stay unreadable.
* ``none`` - rlimits, a cleared environment and a throwaway work dir only. The program
  shares the host's uid, files and network: nothing it produces can be trusted.

Caps for a run as a whole (memory, processes, CPU) come from a cgroup (``isolation.py``).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Any, Literal

from solvers.result import SolverHarnessError

logger = logging.getLogger(__name__)

BwrapMode = Literal["auto", "always", "never"]
SOLVERS_DIR = os.path.dirname(os.path.abspath(__file__))
PROJECT_DIR = os.path.dirname(SOLVERS_DIR)
SANDBOX_SOLVERS_DIR = "/tmp/.alphaopt/solvers"  # where the worker code is mounted inside bwrap
SANDBOX_UID = 65534
_ALWAYS_HIDDEN = ("/root", "/home", "/run", "/var", "/mnt", "/media", "/srv")
_SYSTEM_DIRS = ("/", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc", "/dev", "/proc", "/sys", "/tmp")
_PROBE_TIMEOUT_S = 30.0

_lock = threading.Lock()
_plans: dict[str, SandboxPlan] = {}
_warned: set[str] = set()
_uids_in_use: set[int] = set()


def sandbox_env(home: str) -> dict[str, str]:
    """The complete environment a program sees: nothing from the host."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": home,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "NUMEXPR_NUM_THREADS": "1",
        "VECLIB_MAXIMUM_THREADS": "1",
    }


@dataclass(frozen=True)
class SandboxPlan:
    """How workers are started; ``description`` is reported in ``SolveResult.sandbox``."""

    kind: Literal["bwrap", "none"]
    description: str
    bwrap: str | None = None
    privileged: bool = False  # bwrap runs as root: no user namespace, the worker drops its uid

    def worker_command(self, *, warm: bool, tmp_mb: int, host_workdir: str, uid: int | None,
                       probe: bool = False) -> tuple[list[str], dict[str, str], str]:
        """argv, environment and cwd for ``subprocess.Popen`` of one worker."""
        config: dict[str, Any] = {"mode": self.kind, "warm": warm, "probe": probe, "uid": uid,
                                  "sys_path": _package_paths()}
        if self.kind == "none":
            config["work_root"] = host_workdir
            argv = [sys.executable, "-I", "-B", os.path.join(SOLVERS_DIR, "worker.py"), json.dumps(config)]
            return argv, sandbox_env(host_workdir), host_workdir
        config["work_root"] = "/tmp"
        config["keep"] = [SANDBOX_SOLVERS_DIR]  # a mount inside the work root: never wiped
        assert self.bwrap is not None
        argv = [self.bwrap, "--die-with-parent", "--new-session"]
        if self.privileged:
            argv += ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
                     "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
                     "--cap-add", "CAP_SETPCAP"]
        else:
            argv += ["--unshare-all", "--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID),
                     "--disable-userns"]
        argv += ["--hostname", "sandbox", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                 "--perms", "1777", "--size", str(tmp_mb << 20), "--tmpfs", "/tmp"]
        hidden, exposed = _mount_plan()
        for path in hidden:
            argv += ["--tmpfs", path]
        binds = [(path, path) for path in exposed] + [(SOLVERS_DIR, SANDBOX_SOLVERS_DIR)]
        created: set[str] = set()
        for _, dest in binds:  # bwrap would create missing parents 0700 as root: unusable after the uid drop
            for parent in _parents_below(dest, [*hidden, "/tmp"]):
                if parent not in created:
                    created.add(parent)
                    argv += ["--perms", "0755", "--dir", parent]
        for source, dest in binds:
            argv += ["--ro-bind", source, dest]
        argv += ["--clearenv"]
        for key, value in sandbox_env("/tmp").items():
            argv += ["--setenv", key, value]
        argv += ["--chdir", "/tmp", "--", _python_inside(), "-I", "-B",
                 f"{SANDBOX_SOLVERS_DIR}/worker.py", json.dumps(config)]
        return argv, {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, host_workdir


def resolve_sandbox(use_bwrap: BwrapMode = "auto") -> SandboxPlan:
    """Pick (and cache) the sandbox for this mode; probe bwrap once per process."""
    if use_bwrap not in ("auto", "always", "never"):
        raise ValueError(f"use_bwrap must be 'auto', 'always' or 'never', not {use_bwrap!r}")
    with _lock:
        if use_bwrap in _plans:
            return _plans[use_bwrap]
    plan = _resolve(use_bwrap)
    with _lock:
        return _plans.setdefault(use_bwrap, plan)


def _resolve(use_bwrap: BwrapMode) -> SandboxPlan:
    if use_bwrap == "never":
        return _fallback("bubblewrap disabled (use_bwrap='never')", warn=False)
    path = shutil.which("bwrap") or ("/usr/bin/bwrap" if os.access("/usr/bin/bwrap", os.X_OK) else None)
    if path is None:
        reason = "bubblewrap not found"
    else:
        privileged = os.geteuid() == 0
        plan = SandboxPlan("bwrap", _bwrap_description(privileged), bwrap=path, privileged=privileged)
        problem = _probe(plan)
        if problem is None:
            return plan
        reason = f"bubblewrap probe failed: {problem}"
    if use_bwrap == "always":
        raise SolverHarnessError(f"use_bwrap='always' but {reason}")
    return _fallback(reason, warn=True)


def _bwrap_description(privileged: bool) -> str:
    user = "unprivileged host uid (no user namespace: started as root)" if privileged else "user namespace, uid 65534"
    return f"bwrap: no network, pid/ipc/uts namespaces, read-only root, tmpfs /tmp, empty env, {user}"


def _fallback(reason: str, *, warn: bool) -> SandboxPlan:
    description = f"rlimits only: {reason}"
    if os.geteuid() == 0:
        description += " (running as root: the process limit is not enforced)"
    if warn:
        with _lock:
            first = reason not in _warned
            _warned.add(reason)
        if first:
            logger.warning("solver sandbox degraded to %s; programs are NOT isolated from the host "
                           "filesystem, network or processes", description)
    return SandboxPlan("none", description)


def _probe(plan: SandboxPlan) -> str | None:
    """Start a probe worker in the sandbox: drop uid, import pyomo and highspy, exit."""
    uid = allocate_uid() if plan.privileged else None
    try:
        argv, env, cwd = plan.worker_command(warm=False, tmp_mb=16, host_workdir="/", uid=uid, probe=True)
        proc = subprocess.run(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=_PROBE_TIMEOUT_S, start_new_session=True)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        release_uid(uid)
    if proc.returncode != 0 or b'"ready": true' not in proc.stdout:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        return f"exit code {proc.returncode}: {' | '.join(err[-3:]) or 'no output'}"
    return None


def allocate_uid() -> int:
    """A random unprivileged host uid, distinct from the others this process uses.

    Each worker gets its own uid so RLIMIT_NPROC (counted per uid) is per worker.
    """
    rng = random.SystemRandom()
    with _lock:
        while True:
            uid = rng.randrange(1_000_000, 2_000_000_000)
            if uid not in _uids_in_use:
                _uids_in_use.add(uid)
                return uid


def release_uid(uid: int | None) -> None:
    with _lock:
        _uids_in_use.discard(uid)


def _python_inside() -> str:
    """This interpreter by a path that exists inside the sandbox: its folder resolved (a virtual
    environment reached through a link, ``project/.venv -> /opt/venv``, sits in a hidden project
    folder), its own name kept (resolving it too would leave the virtual environment)."""
    return os.path.join(os.path.realpath(os.path.dirname(sys.executable)), os.path.basename(sys.executable))


def _package_paths() -> list[str]:
    """sys.path entries that hold the solver packages (found without importing them)."""
    paths: list[str] = []
    for name in ("pyomo", "highspy", "pyscipopt", "numpy"):
        spec = importlib.util.find_spec(name)
        if spec and spec.submodule_search_locations:
            root = os.path.dirname(os.path.realpath(next(iter(spec.submodule_search_locations))))
            if root not in paths:
                paths.append(root)
    return paths


def _parents_below(path: str, roots: list[str]) -> list[str]:
    """Directories strictly between the tmpfs root containing ``path`` and ``path``, outermost first."""
    root = max((r for r in roots if _is_within(path, r) and path != r), key=len, default=None)
    if root is None:
        return []
    parents = []
    parent = os.path.dirname(path)
    while parent != root and _is_within(parent, root):
        parents.append(parent)
        parent = os.path.dirname(parent)
    return parents[::-1]


def _is_within(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _mount_plan() -> tuple[list[str], list[str]]:
    """Directories to hide behind tmpfs, and paths to bind back inside them."""
    needed = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
              os.path.dirname(sys.executable), os.path.dirname(os.path.realpath(sys.executable)),
              *_package_paths()}
    needed_real = sorted({os.path.realpath(p) for p in needed if p})
    candidates = [*_ALWAYS_HIDDEN, os.path.expanduser("~"), PROJECT_DIR, os.getcwd()]
    hidden: list[str] = []
    for path in sorted({os.path.realpath(c) for c in candidates if c and not os.path.islink(c)}, key=len):
        if not os.path.isdir(path) or any(_is_within(s, path) for s in _SYSTEM_DIRS):
            continue
        if any(_is_within(path, h) for h in hidden):
            continue
        if any(_is_within(path, n) for n in needed_real):  # cannot hide a directory the worker lives in
            continue
        hidden.append(path)
    exposed = sorted({n for n in needed_real if os.path.exists(n) and any(_is_within(n, h) for h in hidden)})
    exposed = [p for p in exposed if not any(p != q and _is_within(p, q) for q in exposed)]
    return hidden, exposed
