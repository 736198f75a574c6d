"""``alphaopt batch``: one item never sinks the batch, a rerun retries only what failed or is
missing and never writes an id twice, and the exit code says what happened. The endpoint is a
real HTTP server on 127.0.0.1 (or the scripted LLM); the solver runs in its sandbox."""

from __future__ import annotations

import functools
import json
from collections import Counter

import pytest
from click.testing import CliRunner

from alphaopt import api
from alphaopt.interfaces import cli
from alphaopt.llm import client as llm_client
from benchmarks.fake_endpoint import FakeEndpoint, Raw
from tests.fakes import FORMULATION, LP_REPLY, ThreadSafeLLM, program

PROBLEM = "Maximize 3x + 2y subject to x + y <= 4, x + 3y <= 6, x <= 3."


@pytest.fixture(autouse=True)
def _shared_runner(monkeypatch, runner):
    """Every Agent the CLI builds uses the warm runner; requests may reach the loopback endpoint."""
    monkeypatch.setattr(llm_client, "ALLOW_MODEL_REQUESTS", True)
    monkeypatch.setattr(api, "Agent", functools.partial(api.Agent, runner=runner))


def batch(*args, input=None, env=None):
    return CliRunner().invoke(cli.cli, ["batch", *args, "--no-progress"], input=input,
                              env={"ALPHAOPT_EXPERIMENTAL__MAX_RETRIES": "0", **(env or {})})


def lines_of(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_bad_items_and_faults_become_their_lines_and_a_rerun_retries_only_them(tmp_path):
    problems = tmp_path / "in.jsonl"
    write_jsonl(problems, [
        {"id": "good1", "problem": PROBLEM + " Case one."},
        {"id": "surrogate", "problem": "Maximize caf\udce9 profit."},  # "\udce9" in the file: a lone surrogate
        {"id": "garbage", "problem": PROBLEM + " Case garbage."},
        {"id": "good2", "problem": PROBLEM + " Case two."},
        {"id": "empty", "problem": PROBLEM + " Case empty."},
        {"id": "notext", "question": "a line without a problem field"},
        {"id": "good3", "problem": PROBLEM + " Case three."},
    ])
    assert "\\udce9" in problems.read_text()
    healed = False

    def route(body):
        text = body["messages"][-1]["content"]
        if not healed and "Case garbage" in text:
            return Raw(body="<html>502 Bad Gateway</html>", content_type="text/html")
        if not healed and "Case empty" in text:
            return ""
        return LP_REPLY

    out = tmp_path / "out.jsonl"
    with FakeEndpoint(route) as endpoint:
        args = [str(problems), "-o", str(out), "-c", "4", "--base-url", endpoint.url, "-m", "m"]
        first = batch(*args)
        assert first.exit_code == 4, first.output
        assert "7 problems: 0 already" in first.stdout and "3 answered" in first.stdout
        assert "4 of 7 problems failed" in first.stderr and "run the same command again" in first.stderr
        rows = {r["id"]: r for r in lines_of(out)}
        assert len(rows) == 7 and all(rows[f"good{k}"]["objective"] == pytest.approx(11) for k in (1, 2, 3))
        assert rows["surrogate"]["failure"] and rows["surrogate"]["error"].startswith("InputError: ")
        assert "lone surrogate (U+DCE9" in rows["surrogate"]["error"]
        errors = {k: rows[k].get("error", "") for k in rows}
        assert errors["garbage"].startswith("LLMError: ") and "not a chat completion" in errors["garbage"]
        assert errors["empty"].startswith("LLMError: ") and "empty completion" in errors["empty"]
        assert errors["notext"].startswith("InputError: ") and "line 6 has no problem text" in errors["notext"]

        before = len(endpoint.requests)
        healed = True
        second = batch(*args)
        asked = endpoint.user_texts()[before:]
    assert second.exit_code == 4 and "7 problems: 3 already" in second.stdout and "2 answered" in second.stdout
    assert "2 of 7 problems failed" in second.stderr
    # only the two faults were asked again, and not answered from the cache
    assert {t.split("Case ")[1].split(".")[0] for t in asked} == {"empty", "garbage"}
    rows = lines_of(out)
    ids = ("good1", "surrogate", "garbage", "good2", "empty", "notext", "good3")
    assert Counter(r["id"] for r in rows) == Counter(ids)  # each id once
    by_id = {r["id"]: r for r in rows}
    assert by_id["garbage"]["status"] == by_id["empty"]["status"] == "optimal"


def test_an_unexpected_exception_in_one_item_is_its_failure_line(tmp_path, monkeypatch):
    def route(prompt_name, user):
        if "Case crash" in user:
            return RuntimeError("worker exploded")
        return LP_REPLY if prompt_name == "write_program" else FORMULATION

    llm = ThreadSafeLLM(route)
    monkeypatch.setattr(api, "Agent", functools.partial(api.Agent, llm=llm))
    problems, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(problems, [{"id": str(k), "problem": PROBLEM + (" Case crash." if k == 2 else "")} for k in range(4)])
    result = batch(str(problems), "-o", str(out), "-c", "2")
    assert result.exit_code == 4 and "1 of 4 problems failed" in result.stderr
    rows = {r["id"]: r for r in lines_of(out)}
    assert rows["2"] == {"id": "2", "failure": True, "error": "RuntimeError: worker exploded"}
    assert [rows[k]["status"] for k in ("0", "1", "3")] == ["optimal"] * 3



def test_a_rerun_after_a_kill_keeps_finished_lines_and_writes_no_id_twice(tmp_path, monkeypatch):
    llm = ThreadSafeLLM(lambda name, user: LP_REPLY if name == "write_program" else FORMULATION, delay=0)
    monkeypatch.setattr(api, "Agent", functools.partial(api.Agent, llm=llm))
    problems, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(problems, [{"id": k, "problem": PROBLEM + f" Case {k}."} for k in ("a", "b", "c", "d")])
    done = {"id": "a", "status": "optimal", "objective": 11.0}
    out.write_text(
        json.dumps(done) + "\n"
        + json.dumps({**done, "objective": 99.0}) + "\n"  # a second line for a: the first one is kept
        + json.dumps({"id": "b", "failure": True, "error": "LLMError: busy"}) + "\n"  # retried
        + json.dumps({"id": "zz", "status": "optimal", "objective": 1.0}) + "\n"  # not in the input: kept
        + '{"id": "c", "status": "opt'  # the line being written when the process was killed
    )
    result = batch(str(problems), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "4 problems: 1 already" in result.stdout and "3 answered (3 optimal), 0 failed" in result.stdout
    rows = lines_of(out)
    assert Counter(r["id"] for r in rows) == Counter(["a", "zz", "b", "c", "d"])
    assert rows[0] == done and not any(r.get("failure") for r in rows)
    assert sorted(c.user.split("Case ")[1][0] for c in llm.calls if c.prompt_name == "write_program") == ["b", "c", "d"]


def test_a_batch_that_ends_without_an_answer_exits_3(tmp_path, monkeypatch):
    broken = program("raise ValueError('no model here')")
    llm = ThreadSafeLLM(lambda name, user: broken if name == "write_program" else FORMULATION, delay=0)
    monkeypatch.setattr(api, "Agent", functools.partial(api.Agent, llm=llm))
    problems, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(problems, [{"id": "x", "problem": PROBLEM}])
    result = batch(str(problems), "-o", str(out), "--max-repairs", "0")
    assert result.exit_code == 3, result.output
    assert "1 of 1 problems have no answer" in result.stderr and lines_of(out)[0]["status"] == "error"
    again = batch(str(problems), "-o", str(out), "--max-repairs", "0")  # kept, not retried: the same exit
    assert again.exit_code == 3 and "1 already" in again.stdout and len(lines_of(out)) == 1


@pytest.mark.parametrize(("data", "message"), [
    (b'{"problem": "ok"}\n{"problem": "caf\xe9"}\n', "line 2 (column 17) is not UTF-8 text (byte 0xe9)"),
    (b'{"problem": "ok"}\n\x89PNG\r\n\x1a\n\x00\x00', "line 4 (column 1) holds a NUL byte"),
    (b'{"problem": "ok"}\nnot json\n', "line 2 is not valid JSON"),
    (b'{"id": 1, "problem": "a"}\n{"id": 1, "problem": "b"}\n', "line 2 repeats id '1'"),
])
def test_an_input_that_is_not_utf8_jsonl_is_one_line_naming_the_line(tmp_path, data, message):
    problems, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    problems.write_bytes(data)
    result = batch(str(problems), "-o", str(out))
    assert result.exit_code == 1 and message in result.stderr, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()
    from_stdin = batch("-", "-o", str(out), input=data)
    assert from_stdin.exit_code == 1 and "standard input " + message.split(" (")[0] in from_stdin.stderr


def test_the_output_may_not_be_the_input(tmp_path):
    problems = tmp_path / "in.jsonl"
    write_jsonl(problems, [{"id": "a", "problem": PROBLEM}])
    result = batch(str(problems), "-o", str(problems))
    assert result.exit_code == 1 and "is the input file" in result.stderr
    assert lines_of(problems) == [{"id": "a", "problem": PROBLEM}]


def test_batch_help_documents_the_exit_codes():
    text = CliRunner().invoke(cli.cli, ["batch", "--help"]).output
    assert "Exit codes:" in text and "4  some problems failed" in text and "3  no failures" in text


def test_a_run_that_cannot_start_leaves_the_output_as_it_was(tmp_path, monkeypatch):
    llm = ThreadSafeLLM(lambda name, user: LP_REPLY, delay=0)
    monkeypatch.setattr(api, "Agent", functools.partial(api.Agent, llm=llm))
    problems, out, home = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "broken"
    write_jsonl(problems, [{"id": "a", "problem": PROBLEM}, {"id": "b", "problem": PROBLEM + " Case b."}])
    before = (json.dumps({"id": "a", "status": "optimal", "objective": 11.0}) + "\n"
              + json.dumps({"id": "b", "failure": True, "error": "LLMError: busy"}) + "\n")
    out.write_text(before)
    home.mkdir()
    (home / "runs.db").write_text("not a database")  # the agent cannot open its call log
    result = CliRunner().invoke(cli.cli, ["batch", str(problems), "-o", str(out), "--no-progress", "--home", str(home)])
    assert result.exit_code != 0 and llm.calls == []
    assert out.read_text() == before  # b's failure line is still there to say why
