"""Faults are not answers: an endpoint that times out, fails or sends an empty or garbage reply
ends a run as an ``LLMError`` (never a ``Solution``), nothing of it is cached, and the next run
asks again. The endpoint is a real HTTP server on 127.0.0.1; the solver runs in its sandbox."""

from __future__ import annotations

import functools
import json
import sqlite3

import pytest
from click.testing import CliRunner

from alphaopt import api
from alphaopt.agent.run import Agent
from alphaopt.config import load_settings
from alphaopt.errors import LLMError
from alphaopt.interfaces import cli
from alphaopt.llm import client as llm_client
from benchmarks.fake_endpoint import FakeEndpoint, Raw
from tests.fakes import FORMULATION, LP_REPLY

PROBLEM = "Maximize 3x + 2y subject to x + y <= 4, x + 3y <= 6, x <= 3."


@pytest.fixture(autouse=True)
def _endpoint_allowed(monkeypatch, runner):
    """Requests may reach the fake endpoint (loopback only); every Agent shares the warm runner."""
    monkeypatch.setattr(llm_client, "ALLOW_MODEL_REQUESTS", True)
    agent = functools.partial(api.Agent, runner=runner)
    monkeypatch.setattr(cli, "Agent", agent)
    monkeypatch.setattr(api, "Agent", agent)


def _settings(tmp_path, endpoint, **top):
    return load_settings(home=tmp_path / "home", base_url=endpoint.url, model="m", api_key="k",
                         experimental={"max_retries": 0, "formulate": True}, **top)


@pytest.mark.parametrize("fault", [
    Raw(body="", content_type="application/json"),
    Raw(body=json.dumps({"choices": [{"message": {"role": "assistant", "content": ""}}]})),
    Raw(body="<html>upstream error</html>", content_type="text/html"),
    Raw(status=500, body=json.dumps({"error": {"message": "boom"}})),
])
def test_a_fault_mid_run_ends_the_run_as_a_failure_and_the_rerun_asks_again(tmp_path, runner, fault):
    answers = [FORMULATION, fault, LP_REPLY]
    with FakeEndpoint(lambda body: answers.pop(0)) as endpoint:
        settings = _settings(tmp_path, endpoint)
        with Agent(settings, runner=runner) as agent, pytest.raises(LLMError):
            agent.solve(PROBLEM)  # not a Solution with status invalid_program
        with sqlite3.connect(settings.runs_db) as db:
            assert db.execute("SELECT count(*) FROM runs").fetchone() == (0,)
            errors = [r[0] for r in db.execute("SELECT error FROM llm_calls ORDER BY rowid")]
        assert errors[0] is None and errors[1]  # the fault is logged with its error
        with Agent(settings, runner=runner) as agent:
            solution = agent.solve(PROBLEM)
    assert solution.status == "optimal" and solution.objective == pytest.approx(11)
    # the rerun replayed the formulation from the cache and asked the endpoint again for the program
    assert solution.tokens.cached_calls == 1 and len(endpoint.requests) == 3 and answers == []


def test_solve_with_a_failing_endpoint_exits_1_with_one_line_and_no_traceback(tmp_path):
    with FakeEndpoint(lambda body: Raw(body="not json at all", content_type="text/plain")) as endpoint:
        result = CliRunner().invoke(cli.cli, ["solve", PROBLEM, "--base-url", endpoint.url, "-m", "m",
                                              "--home", str(tmp_path / "home")],
                                    env={"ALPHAOPT_EXPERIMENTAL__MAX_RETRIES": "0"})
    assert result.exit_code == 1, result.output
    assert "not a chat completion" in result.stderr and "Traceback" not in result.output
    assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1


def test_solve_that_times_out_exits_1_naming_the_setting(tmp_path):
    with FakeEndpoint(lambda body: Raw(body=json.dumps({}), delay=3.0)) as endpoint:
        result = CliRunner().invoke(cli.cli, ["solve", PROBLEM, "--base-url", endpoint.url, "-m", "m"],
                                    env={"ALPHAOPT_EXPERIMENTAL__MAX_RETRIES": "0",
                                         "ALPHAOPT_REQUEST_TIMEOUT_S": "0.5"})
    assert result.exit_code == 1 and "did not answer within 0.5s" in result.stderr
    assert "ALPHAOPT_REQUEST_TIMEOUT_S" in result.stderr


def test_solve_batch_returns_each_fault_in_its_place(tmp_path, runner):
    def route(body):
        text = body["messages"][-1]["content"]
        return "" if "Case empty" in text else Raw(status=503, body="{}") if "Case busy" in text else LP_REPLY

    with FakeEndpoint(route) as endpoint:
        results = api.solve_batch([PROBLEM + " Case empty.", PROBLEM, PROBLEM + " Case busy.", "caf\udce9"],
                                  concurrency=3, settings=_settings(tmp_path, endpoint), runner=runner)
    assert [type(r).__name__ for r in results] == ["LLMError", "Solution", "LLMError", "InputError"]
    assert "empty completion" in str(results[0]) and "HTTP 503" in str(results[2])
    assert results[1].objective == pytest.approx(11) and "lone surrogate" in str(results[3])
    assert api.answered(results[1]) and not any(api.answered(r) for r in results[::2])
