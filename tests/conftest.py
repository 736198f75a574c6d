from __future__ import annotations

from collections.abc import Iterator

import pytest

from alphaopt.config import Settings, load_settings
from alphaopt.llm import client as llm
from solvers import SolverRunner
from tests.fakes import ScriptedLLM


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Every test gets its own alphaopt home and no endpoint settings from the host."""
    monkeypatch.setenv("ALPHAOPT_HOME", str(tmp_path / "home"))
    for name in ("ALPHAOPT_BASE_URL", "ALPHAOPT_API_KEY", "ALPHAOPT_MODEL", "ALPHAOPT_MODEL_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-dummy-test-key")
    monkeypatch.setenv("ALPHAOPT_USE_LIBRARY", "0")  # library tests turn it on explicitly
    monkeypatch.setenv("ALPHAOPT_EXPERIMENTAL__STARTER_LIBRARY", "none")  # and load a library of their own
    monkeypatch.setenv("ALPHAOPT_SAMPLES", "1")  # scripted tests script one sample; vote tests ask for more
    # everything else is what ships: tests that need the formulate step, or no text rewrites, say so
    monkeypatch.setattr(llm, "ALLOW_MODEL_REQUESTS", False)


@pytest.fixture
def settings(tmp_path) -> Settings:
    return load_settings(home=tmp_path / "home", solver_wall_time_s=10)


@pytest.fixture(scope="session")
def runner() -> Iterator[SolverRunner]:
    """One warm sandboxed runner for the whole session (real HiGHS)."""
    with SolverRunner(workers=1) as r:
        yield r


@pytest.fixture
def fake_llm() -> ScriptedLLM:
    return ScriptedLLM()
