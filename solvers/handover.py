"""The hand-over of a model from the program's process to the worker (both sides of it).

``send`` (in the program's process) puts each file into a sealed memfd, which no process can
change afterwards, and sends the memfds in one message on a Unix socket. ``receive`` (in the
worker, once every process of the program is gone) takes the last message the kernel stamped
with the program child's own pid; a message from any other process, or a file that is not
sealed, is dropped. So nothing a process the program started can write, and no file in the
work dir, reaches the solver.
"""

from __future__ import annotations

import array
import fcntl
import json
import os
import socket
import struct
from typing import Any

DESCRIPTION = "export.json"  # the name of the description among the handed-over files
SEALED = fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW  # what makes a memfd unchangeable
MAX_BYTES = 64 << 20  # per handed-over file
FAILURES = {"error", "invalid_program", "memory_limit", "output_limit", "killed"}  # what a program may report


def send(sock_fd: int, description: dict[str, Any], files: dict[str, bytes]) -> None:
    """Hand the description and the model files to the worker, each in a sealed memfd."""
    named = {DESCRIPTION: json.dumps(description).encode(), **{f"model.{fmt}": data for fmt, data in files.items()}}
    fds = []
    try:
        for name, data in named.items():
            fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
            fds.append(fd)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, SEALED | fcntl.F_SEAL_SEAL)
        with socket.socket(fileno=os.dup(sock_fd)) as sock:
            socket.send_fds(sock, [json.dumps(list(named)).encode()], fds)
    finally:
        for fd in fds:
            os.close(fd)


def receive(sock: socket.socket, pid: int) -> tuple[dict[str, Any], dict[str, bytes]] | None:
    """The last hand-over the process ``pid`` sent (see ``send``), or None.

    Messages from any other process (their kernel-stamped pid differs) are dropped, and so is
    anything not in a sealed memfd: nothing can have changed it since it was sent.
    """
    sock.setblocking(False)
    chosen: tuple[bytes, list[int]] | None = None
    space = socket.CMSG_SPACE(struct.calcsize("iII")) + socket.CMSG_SPACE(8 * array.array("i").itemsize)
    while True:
        try:
            message, ancillary, flags, _ = sock.recvmsg(4096, space)
        except OSError:
            break
        if not message and not ancillary:
            break
        sender, fds = None, []
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                sender = struct.unpack("iII", data[:struct.calcsize("iII")])[0]
            elif level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds += array.array("i", data[:len(data) - len(data) % array.array("i").itemsize]).tolist()
        if sender == pid and not flags & (socket.MSG_CTRUNC | socket.MSG_TRUNC):
            if chosen is not None:
                _close(chosen[1])
            chosen = (message, fds)
        else:
            _close(fds)
    if chosen is None:
        return None
    message, fds = chosen
    try:
        names = json.loads(message)
        if not isinstance(names, list) or len(names) != len(fds):
            return None
        contents = {str(name): _sealed(fd) for name, fd in zip(names, fds, strict=True)}
    except ValueError:
        return None
    finally:
        _close(fds)
    try:
        description = json.loads(contents.pop(DESCRIPTION) or b"")
    except (KeyError, ValueError):
        return None
    if not isinstance(description, dict):
        return None
    if description.get("status") != "exported":
        status = description.get("status") if description.get("status") in FAILURES else "error"
        return {"status": status, "error": str(description.get("error") or "the program failed")}, {}
    files = {name[len("model."):]: data for name, data in contents.items()
             if name in ("model.lp", "model.nl") and data is not None}
    return description, files


def _sealed(fd: int) -> bytes | None:
    """The content of a sealed memfd (write, shrink and grow sealed), or None."""
    try:
        if fcntl.fcntl(fd, fcntl.F_GET_SEALS) & SEALED != SEALED:
            return None
        size = os.fstat(fd).st_size
        if size > MAX_BYTES:
            return None
        return os.pread(fd, size, 0) if size else b""
    except OSError:
        return None


def _close(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
