"""End to end with the real embedded model (llama.cpp, Qwen2.5-Coder-1.5B) on a tiny problem.

Slow on 2 cores (about a minute). CI fetches the model first (`alphaopt model fetch`); where the
model file is missing this test fails with the command to fetch it rather than skipping quietly.
"""

from __future__ import annotations

import pytest

from alphaopt.agent.run import Agent
from alphaopt.config import default_model_dir, load_settings
from alphaopt.llm import client as llm
from alphaopt.llm.model_fetch import DEFAULT_MODEL

PROBLEM = (
    "A workshop makes chairs and tables. Each chair gives a profit of 30 dollars and each table 50 dollars. "
    "A chair uses 2 hours of carpentry and a table 3 hours; 120 carpentry hours are available. "
    "A chair uses 1 hour of finishing and a table 2 hours; 70 finishing hours are available. "
    "How many chairs and tables maximize the profit?"
)


@pytest.mark.slow
def test_embedded_model_solves_a_tiny_lp(tmp_path, monkeypatch, runner):
    pytest.importorskip("llama_cpp", reason="install with pip install -e '.[local]'")
    model = default_model_dir() / DEFAULT_MODEL.filename
    assert model.is_file(), f"embedded model missing at {model}: run 'alphaopt model fetch'"
    monkeypatch.setattr(llm, "ALLOW_MODEL_REQUESTS", True)
    monkeypatch.delenv("ALPHAOPT_SAMPLES")  # the shipped default, not the scripted tests' one
    settings = load_settings(home=tmp_path / "home")
    with Agent(settings, runner=runner) as agent:
        solution = agent.solve(PROBLEM)
    assert solution.status == "optimal", (solution.error, solution.program)
    assert solution.objective == pytest.approx(1900, rel=1e-4)
    assert solution.model.startswith("qwen2.5-coder-1.5b") and solution.tokens.calls >= 1
    assert [c.chosen for c in solution.candidates] == [True]  # one sample by default
    assert "maximize" in solution.model_text
    # the call log has the real calls, with tokens and latency
    calls = agent.log.calls(run_id=solution.run_id)
    assert len(calls) == solution.tokens.calls and all(c["input_tokens"] > 0 and c["latency_ms"] > 0 for c in calls)
