"""The work root of a sandboxed worker: wiping it between runs, reading what was written there.

Sandbox side. Everything in the work root (the sandbox's ``/tmp``) may have been written by a
program: files are read without following links and only when they are regular files.
"""

from __future__ import annotations

import os
import shutil
import stat
from typing import Any


def wipe(root: str, keep: set[str]) -> None:
    """Remove everything below ``root`` except the paths in ``keep`` (and the directories leading to them)."""
    try:
        entries = list(os.scandir(root))
    except OSError:
        return
    for entry in entries:
        path = entry.path
        if path in keep:
            continue
        if any(k.startswith(path + "/") for k in keep):
            wipe(path, keep)
            continue
        try:
            if not entry.is_dir(follow_symlinks=False):
                os.unlink(path)
                continue
        except OSError:
            continue
        shutil.rmtree(path, ignore_errors=True)
        if os.path.lexists(path):  # the program locked a directory (chmod 000): open everything, then retry
            for _ in _walk_opening(path):
                pass
            shutil.rmtree(path, ignore_errors=True)


def _walk_opening(path: str) -> Any:
    """``os.walk`` top-down that opens (chmod 700) each directory before descending into it."""
    try:
        os.chmod(path, 0o700)
    except OSError:
        pass
    for dirpath, dirnames, files in os.walk(path):
        for name in dirnames:
            child = os.path.join(dirpath, name)
            try:
                if not os.path.islink(child):  # Linux has no lchmod: never follow a link the program left
                    os.chmod(child, 0o700)
            except OSError:
                pass
        yield dirpath, dirnames, files


def read_text(path: str, chars: int) -> str:
    """The last ``chars`` characters of a log file (marked when cut); never through a link, FIFO or device."""
    if chars <= 0:
        return ""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return ""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        size = os.lseek(fd, 0, os.SEEK_END)
        os.lseek(fd, max(0, size - chars), os.SEEK_SET)
        text = os.read(fd, chars).decode("utf-8", "replace")
    finally:
        os.close(fd)
    return "[... output truncated ...]\n" + text if size > chars else text


def log_tail(output: str, solver_log: str, chars: int) -> str:
    if chars <= 0:
        return ""
    parts = [p for p in (output.rstrip(), solver_log.rstrip()) if p]
    text = "\n--- solver log ---\n".join(parts) if len(parts) == 2 else (parts[0] if parts else "")
    return text if len(text) <= chars else text[-chars:]
