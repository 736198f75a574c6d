"""The CLI and the Python API: output, bad input, batch with resume, logs."""

from __future__ import annotations

import functools
import json

import pytest
from click.testing import CliRunner

import alphaopt
from alphaopt import api
from alphaopt.errors import InputError
from alphaopt.interfaces import cli
from tests.fakes import FORMULATION, INFEASIBLE_REPLY, LP_REPLY, MILP_REPLY, ScriptedLLM, program

PROBLEM = "Maximize 3x + 2y subject to x + y <= 4, x + 3y <= 6, x <= 3."


@pytest.fixture
def scripted(monkeypatch, runner):
    """Route every Agent the CLI builds to one scripted LLM and the shared runner; the scripts
    answer the formulate step first."""
    monkeypatch.setenv("ALPHAOPT_EXPERIMENTAL__FORMULATE", "1")
    llm = ScriptedLLM()
    agent = functools.partial(api.Agent, llm=llm, runner=runner)
    monkeypatch.setattr(cli, "Agent", agent)
    monkeypatch.setattr(api, "Agent", agent)
    return llm


def invoke(*args, input=None):
    return CliRunner().invoke(cli.cli, list(args), input=input, catch_exceptions=False)


def test_solve_prints_plan_formulation_and_saved_run(scripted):
    scripted.enqueue(FORMULATION, LP_REPLY)
    result = invoke("solve", PROBLEM)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Status: optimal" in out and "Objective (maximize): 11" in out
    assert "Decision values:" in out and "x " in out and "Saved: run" in out
    assert "Formulation (as the model wrote it):" in out and "Model as solved:\n  maximize  3*x + 2*y" in out
    assert "def build_model" not in out


def test_samples_flag_draws_more_programs(scripted):
    scripted.enqueue(FORMULATION, LP_REPLY, FORMULATION, LP_REPLY)
    data = json.loads(invoke("solve", PROBLEM, "--json", "--samples", "2").output)
    assert [c["objective"] for c in data["candidates"]] == [pytest.approx(11)] * 2 and data["candidates"][0]["chosen"]
    assert "Samples: 2, answer by majority vote" in render_text(data)


def render_text(data):
    from alphaopt.agent.state import Solution
    from alphaopt.interfaces.render import render_solution

    return render_solution(Solution.model_validate(data))


def test_solve_json_and_show_code(scripted):
    scripted.enqueue(FORMULATION, LP_REPLY)
    data = json.loads(invoke("solve", PROBLEM, "--json").output)
    assert (data["status"] == "optimal" and data["objective"] == pytest.approx(11)
            and data["variables"]["x"] == pytest.approx(3))
    scripted.enqueue(FORMULATION, LP_REPLY)
    assert "def build_model" in invoke("solve", PROBLEM, "--show-code", "--no-cache").output


def test_infeasible_answer_names_the_conflicting_constraints(scripted):
    scripted.enqueue(FORMULATION, INFEASIBLE_REPLY, "CONFIRMED")
    out = invoke("solve", "An impossible problem.").output
    assert "Status: infeasible" in out
    assert "These constraints cannot all hold together" in out and "  c1          x >= 10\n  c2          x <= 5" in out


def test_solve_reads_file_and_stdin(scripted, tmp_path):
    path = tmp_path / "p.txt"
    path.write_text(PROBLEM)
    scripted.enqueue(FORMULATION, LP_REPLY, FORMULATION, LP_REPLY)
    assert "Status: optimal" in invoke("solve", str(path)).output
    assert PROBLEM in scripted.calls[0].user
    assert "Status: optimal" in invoke("solve", "-", input=PROBLEM).output


def test_bad_input_gets_clear_errors(scripted, tmp_path):
    binary = tmp_path / "model.bin"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    for args, message in [
        (("solve", "   "), "empty"),
        (("solve", str(binary)), "not UTF-8 text"),
        (("solve", "x" * 30000), "limit is 20,000"),
    ]:
        result = CliRunner().invoke(cli.cli, list(args))
        assert result.exit_code == 1 and message in result.output, result.output
    assert scripted.calls == []


def test_unreachable_endpoint_is_a_clear_cli_error(monkeypatch):
    monkeypatch.setattr(alphaopt.llm.client, "ALLOW_MODEL_REQUESTS", True)
    result = CliRunner().invoke(cli.cli, ["solve", PROBLEM, "--base-url", "http://127.0.0.1:9/v1", "-m", "m"],
                                env={"ALPHAOPT_EXPERIMENTAL__MAX_RETRIES": "0"})
    assert result.exit_code == 1 and "Cannot reach the model endpoint" in result.output
    assert "ALPHAOPT_BASE_URL" in result.output


def test_bad_setting_names_the_variable():
    result = CliRunner().invoke(cli.cli, ["solve", PROBLEM, "--base-url", "localhost:8000"])
    assert result.exit_code == 1 and "ALPHAOPT_BASE_URL" in result.output


def test_api_rejects_empty_text(settings, runner):
    with pytest.raises(InputError):
        alphaopt.solve("", settings=settings, llm=ScriptedLLM(), runner=runner)


def test_batch_records_failures_and_resumes(scripted, tmp_path):
    problems = tmp_path / "in.jsonl"
    problems.write_text("\n".join(json.dumps(r) for r in [
        {"id": "a", "problem": PROBLEM, "answer": 11},
        {"id": "b", "description": "An integer problem"},
        {"id": "c", "problem": "   "},
    ]) + "\n")
    out = tmp_path / "out.jsonl"
    scripted.enqueue(FORMULATION, LP_REPLY, FORMULATION, MILP_REPLY)
    result = invoke("batch", str(problems), "-o", str(out), "--no-progress")
    assert "3 problems: 0 already" in result.stdout and "2 answered (2 optimal), 1 failed" in result.stdout
    assert result.exit_code == 4 and "1 of 3 problems failed" in result.stderr
    lines = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert lines["a"]["objective"] == pytest.approx(11) and lines["b"]["objective"] == pytest.approx(20)
    assert lines["c"]["failure"] and "empty" in lines["c"]["error"]
    # the answer field never reaches the model
    assert all("11" not in c.user.replace(PROBLEM, "") for c in scripted.calls)

    problems.write_text(problems.read_text().replace('"problem": "   "', '"problem": "' + PROBLEM + '"'))
    scripted.enqueue(FORMULATION, LP_REPLY)
    result = invoke("batch", str(problems), "-o", str(out), "--no-progress")
    assert "3 problems: 2 already" in result.output and "0 failed" in result.output and result.exit_code == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(r["id"] for r in lines) == ["a", "b", "c"] and lines[-1]["status"] == "optimal"


def test_batch_rejects_bad_jsonl_naming_the_line(tmp_path):
    problems = tmp_path / "in.jsonl"
    problems.write_text('{"id": 1, "problem": "ok"}\nnot json\n')
    result = CliRunner().invoke(cli.cli, ["batch", str(problems), "-o", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 1 and "line 2" in result.output


def test_logs_list_and_show(tmp_path):
    from alphaopt.config import load_settings
    from alphaopt.llm.runlog import CallRecord, RunLog

    log = RunLog(load_settings().runs_db)
    log.log_call(CallRecord(id="01ABC", prompt_name="formulate", prompt_sha="s", model="m", params={},
                            messages=[{"role": "user", "content": "hello"}], cache_key="k",
                            response=json.dumps({"text": "world"}), input_tokens=3, output_tokens=1, latency_ms=1500))
    listed = invoke("logs", "list").output
    assert "01ABC" in listed and "formulate" in listed and "1.5s" in listed
    shown = invoke("logs", "show", "01A").output
    assert "hello" in shown and "world" in shown


def test_runs_list_and_show(scripted):
    scripted.enqueue(FORMULATION, LP_REPLY)
    run_id = json.loads(invoke("solve", PROBLEM, "--json").output)["run_id"]
    assert run_id in invoke("runs", "list").output
    assert "Objective (maximize): 11" in invoke("runs", "show", run_id).output


def test_library_list_and_export_read_the_store_without_the_index(tmp_path):
    from alphaopt.config import load_settings

    home = tmp_path / "lib"
    assert invoke("library", "list", "--home", str(home)).exit_code == 0
    out = invoke("library", "export", str(tmp_path / "out.jsonl"), "--home", str(home))
    assert out.exit_code == 0 and "Exported 0 verified insights" in out.output
    settings = load_settings(home=home)
    assert settings.library_db.exists() and not settings.chroma_dir.exists()


def test_library_list_marks_an_insight_verified_untold(tmp_path):
    from library import InsightDraft, LibraryStore

    home = tmp_path / "lib"
    invoke("library", "list", "--home", str(home))  # creates the store
    store = LibraryStore(home / "library.db")
    lesson = InsightDraft(stage="general_formulation", level1="constraints", level2="inequality direction",
                          condition='when the text says "needs to transport N chicken"', explanation="use >=",
                          example="wrong: a == 5 right: a >= 5")
    store.add_insight(lesson, status="verified", provenance={"evidence": {"told": False}})
    store.add_insight(lesson, status="verified")
    store.close()
    listed = invoke("library", "list", "--home", str(home)).output.splitlines()
    assert listed[0].endswith("(applied, untold)") and not listed[1].endswith("untold")


def test_library_retire_keeps_the_reason_and_leaves_the_export(tmp_path):
    from alphaopt.agent.retrieval import open_store
    from alphaopt.config import load_settings
    from library import InsightDraft

    home = tmp_path / "lib"
    store = open_store(load_settings(home=home))
    insight = store.add_insight(InsightDraft(stage="general_formulation", level1="variables", level2="integrality",
                                             condition="when items are counted", explanation="use integers"),
                                status="verified")
    store.close()
    out = invoke("library", "retire", insight.id, "--reason", "chose it for a cost problem and broke it",
                 "--home", str(home))
    assert out.exit_code == 0, out.output
    store = open_store(load_settings(home=home))
    assert store.get(insight.id).status.value == "retired"
    assert store.get(insight.id).reason == "retired by review: chose it for a cost problem and broke it"
    out = invoke("library", "export", str(tmp_path / "out.jsonl"), "--home", str(home))
    assert "Exported 0 verified insights" in out.output
    missing = invoke("library", "retire", "I9999", "--reason", "x", "--home", str(home))
    assert missing.exit_code != 0 and "no insight 'I9999'" in missing.output


def test_library_review_records_the_note_on_a_new_version_and_in_the_export(tmp_path):
    import json

    from alphaopt.agent.retrieval import open_store
    from alphaopt.config import load_settings
    from library import InsightDraft

    home = tmp_path / "lib"
    store = open_store(load_settings(home=home))
    draft = InsightDraft(stage="general_formulation", level1="variables", level2="integrality",
                         condition="when items are counted", explanation="use integers")
    insight = store.add_insight(draft, status="verified", provenance={"evidence": {"with": 2, "without": 0}})
    candidate = store.add_insight(draft.model_copy(update={"condition": "when a list is given"}))
    store.close()
    out = invoke("library", "review", insight.id, "--note", "right where recalled; checked its sources",
                 "--home", str(home))
    assert out.exit_code == 0, out.output
    store = open_store(load_settings(home=home))
    reviewed = store.get(insight.id)
    assert reviewed.version == insight.version + 1 and reviewed.status.value == "verified"
    assert reviewed.provenance.evidence == {"with": 2, "without": 0,
                                           "review": "right where recalled; checked its sources"}
    assert reviewed.reason == "reviewed: right where recalled; checked its sources"
    store.close()
    invoke("library", "export", str(tmp_path / "out.jsonl"), "--home", str(home))
    exported = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()[1:]]
    assert [r["reason"] for r in exported] == ["reviewed: right where recalled; checked its sources"]
    refused = invoke("library", "review", candidate.id, "--note", "x", "--home", str(home))
    assert refused.exit_code != 0 and "only a verified insight is reviewed" in refused.output


def test_a_missing_file_is_an_error_not_a_problem_text(tmp_path):
    out = invoke("solve", str(tmp_path / "bakery.txt"))
    assert out.exit_code != 0 and "No such file" in out.output and "problem text itself" in out.output


def test_a_long_problem_is_taken_as_its_argument(scripted):
    long_problem = PROBLEM + " The plant manager wants a clear and simple plan for the team." * 32
    assert len(long_problem) > 2000
    scripted.enqueue(FORMULATION, LP_REPLY)
    result = invoke("solve", long_problem)
    assert result.exit_code == 0 and "Status: optimal" in result.output
    assert long_problem in scripted.calls[0].user


@pytest.mark.parametrize(("args", "stdin", "message"), [
    (("solve", "Maximize caf\udce9 profit"), None,
     "The problem argument is not UTF-8 text: character 13 is a lone surrogate (U+DCE9, an undecodable byte 0xe9)"),
    (("solve", "-"), b"Maximize caf\xe9 profit", "standard input line 1 (column 13) is not UTF-8 text (byte 0xe9)"),
    (("solve", "-"), b"Maximize\x00 profit", "standard input line 1 (column 9) holds a NUL byte"),
])
def test_bytes_that_are_not_text_are_one_clear_line(scripted, args, stdin, message):
    result = CliRunner().invoke(cli.cli, list(args), input=stdin)
    assert result.exit_code == 1 and message in result.stderr, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and scripted.calls == []


def test_a_command_line_that_is_not_utf8_is_refused_by_the_real_program(tmp_path):
    """The bytes reach click as Python decodes argv (surrogateescape); no model is started."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "ALPHAOPT_HOME": str(tmp_path / "home"), "LC_ALL": "C.UTF-8"}
    done = subprocess.run([sys.executable, "-m", "alphaopt", "solve", b"Maximize caf\xe9 profit"],
                          capture_output=True, env=env, timeout=120)
    assert done.returncode == 1 and done.stdout == b""
    assert b"not UTF-8 text" in done.stderr and b"byte 0xe9" in done.stderr and b"Traceback" not in done.stderr


def test_solve_exit_codes_say_whether_there_is_an_answer(scripted):
    scripted.enqueue(FORMULATION, LP_REPLY)
    assert invoke("solve", PROBLEM).exit_code == 0
    scripted.enqueue(FORMULATION, INFEASIBLE_REPLY)  # no diagnosis: the solver's verdict stands
    result = CliRunner().invoke(cli.cli, ["solve", "An impossible problem.", "--json"],
                                env={"ALPHAOPT_EXPERIMENTAL__MAX_DIAGNOSES": "0"})
    assert result.exit_code == 0 and json.loads(result.stdout)["status"] == "infeasible"  # a proven verdict
    scripted.enqueue(FORMULATION, program("raise ValueError('no model here')"))
    result = CliRunner().invoke(cli.cli, ["solve", PROBLEM, "--json", "--max-repairs", "0", "--no-cache"])
    assert result.exit_code == 3 and json.loads(result.stdout)["status"] == "error"
    assert "No answer: the run ended with status 'error'" in result.stderr


def test_solve_help_documents_the_exit_codes():
    text = CliRunner().invoke(cli.cli, ["solve", "--help"]).output
    assert "Exit codes:" in text and "0  answered" in text and "3  no answer" in text and "any length" in text
