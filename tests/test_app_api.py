"""The API the app calls: streamed solves, edited re-runs, marked answers, library transfer, learning jobs."""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import pytest

from alphaopt.agent.run import Agent
from alphaopt.errors import InputError
from alphaopt.interfaces import app_api
from alphaopt.learning.training import read_training
from library import ImportLineError, InsightDraft, LibraryStore, Status
from solvers import SolveStatus
from tests.fakes import LP_REPLY, WRONG_LP_REPLY, RoutedLLM

PROBLEM = "Maximize 3x + 2y subject to x + y <= 4, x + 3y <= 6, x <= 3."
EDITED = "## Objective\nmaximize 3x + 2y\n## Constraints\nx + y <= 4\nx <= 2"


@pytest.fixture
def agent(settings, runner):
    llm = RoutedLLM()
    with Agent(settings, llm=llm, runner=runner, library=None) as a:
        yield a


def test_stream_yields_each_node_then_the_saved_solution(agent):
    agent.llm.on("write_program", LP_REPLY)
    steps = list(agent.stream(PROBLEM))
    assert [s.node for s in steps] == ["retrieve_insights", "formulate", "write_program", "run_program",
                                       "finish_sample", "answer", "done"]
    # the shipped pipeline writes the program directly: the formulate step writes nothing
    assert steps[1].update["formulation"] == "" and "def build_model" in steps[2].update["program"]
    assert steps[3].update["result"]["status"] is SolveStatus.OPTIMAL
    solution = steps[-1].solution
    assert solution is not None and solution.ok and solution.objective == pytest.approx(11)
    assert agent.log.run(solution.run_id)["status"] == "optimal"


def test_stream_from_an_edited_formulation_skips_formulate(agent):
    agent.llm.on("write_program", LP_REPLY)
    steps = list(agent.stream(PROBLEM, formulation=EDITED, insights=[]))
    assert [s.node for s in steps] == ["write_program", "run_program", "finish_sample", "answer", "done"]
    assert agent.llm.prompt_names == ["write_program"] and EDITED in agent.llm.calls[0].user
    assert steps[-1].solution.formulation == EDITED


def test_stream_rejects_empty_text_before_any_call(agent):
    with pytest.raises(InputError, match="empty"):
        next(agent.stream("   "))
    assert agent.llm.calls == []


def test_run_program_runs_an_edited_program_without_the_model(agent):
    solution = app_api.run_program(agent, PROBLEM, WRONG_LP_REPLY, formulation=EDITED)
    assert solution.ok and solution.objective == pytest.approx(26 / 3) and solution.formulation == EDITED
    assert agent.llm.calls == [] and agent.log.run(solution.run_id)["status"] == "optimal"
    assert solution.model == "(edited program)" and [(a.stage, a.status) for a in solution.attempts] == [
        ("write_program", SolveStatus.OPTIMAL)]
    broken = app_api.run_program(agent, PROBLEM, "def build_model():\n    return undefined_name\n")
    assert broken.status == "error" and "undefined_name" in broken.error
    with pytest.raises(InputError, match="program is empty"):
        app_api.run_program(agent, PROBLEM, "  ")


def test_an_edited_program_gets_only_the_mechanical_fixes_and_records_no_evidence(settings, runner):
    class Library:
        def __init__(self):
            self.recorded = []

        def retrieve(self, problem, *, llm, run_id):
            return []

        def record_outcome(self, run_id, insights, success):
            self.recorded.append(run_id)

    library = Library()
    minimized = WRONG_LP_REPLY.replace("sense=pyo.maximize", "sense=pyo.minimize").replace(
        "    return model", "    print(model)\n    return model")
    insight = {"id": "I0001", "version": 1, "condition": "c", "explanation": "e"}
    with Agent(settings, llm=RoutedLLM(), runner=runner, library=library) as agent:
        solution = agent.run_program(PROBLEM, minimized, insights=[insight])
    # the text asks to maximize, but a person's edit is not second-guessed: only the print goes
    assert "sense=pyo.minimize" in solution.program and solution.objective == pytest.approx(0)
    assert solution.attempts[0].fixes == ["dropped a print statement in build_model"]
    assert solution.insights == [insight] and library.recorded == []  # no prompt carried the insight
    assert agent.log.run(solution.run_id)["objective"] == pytest.approx(0)


def test_marked_answers_become_training_tasks_and_feedback_lines(agent, settings):
    agent.llm.on("write_program", LP_REPLY)
    right = list(agent.stream(PROBLEM))[-1].solution
    wrong = app_api.run_program(agent, PROBLEM, WRONG_LP_REPLY)
    with app_api.open_store(settings) as store:
        task = app_api.record_feedback(store, settings, right, right=True)
        assert task.id == f"feedback/{right.run_id}" and task.answer == pytest.approx(11)
        app_api.record_feedback(store, settings, wrong, right=False, answer=11.0)
        assert {t.id: t.answer for t in store.tasks(dataset="feedback")}[f"feedback/{wrong.run_id}"] == 11.0
        with pytest.raises(InputError, match="correct optimal value"):
            app_api.record_feedback(store, settings, wrong, right=False)
        with pytest.raises(InputError, match="already marked"):
            app_api.record_feedback(store, settings, wrong, right=False, answer=12.0)
    lines = [json.loads(line) for line in app_api.feedback_path(settings).read_text().splitlines()]
    assert lines == [{"id": right.run_id, "description": PROBLEM, "answer": 11.0},
                     {"id": wrong.run_id, "description": PROBLEM, "answer": 11.0}]
    assert [i[1:] for i in read_training([app_api.feedback_path(settings)])] == [
        (right.run_id, PROBLEM, 11.0), (wrong.run_id, PROBLEM, 11.0)]


def _draft(condition: str) -> InsightDraft:
    return InsightDraft(stage="general_formulation", level1="capacity", level2="shared resource",
                        condition=condition, explanation="sum every use in one constraint")


def test_export_and_import_round_trip_and_bad_files(settings, tmp_path):
    with app_api.open_store(settings) as store:
        store.add_insight(_draft("a machine is shared"), status=Status.VERIFIED)
        store.add_insight(_draft("still a candidate"))
        text = app_api.export_library(store)
    assert json.loads(text.splitlines()[0])["_header"]["training_problems"] == 0
    assert len(text.splitlines()) == 2  # header + the verified insight only
    with LibraryStore(tmp_path / "other.db") as other:
        assert app_api.import_library(other, text.encode()) == 1
        assert other.get("I0001").condition == "a machine is shared"
        with pytest.raises(ImportLineError):
            app_api.import_library(other, b'{"id": "I0009"}\n')
        with pytest.raises(InputError, match="not UTF-8"):
            app_api.import_library(other, b"\xff\xfe")
        assert len(other.list(status=None)) == 1


def test_sync_library_is_a_no_op_without_a_library(agent):
    assert app_api.sync_library(agent) is False


def _fake_learn(monkeypatch, seconds: float) -> None:
    script = f"import sys, time; print('fake learn', *sys.argv[1:], flush=True); time.sleep({seconds})"
    monkeypatch.setattr(app_api, "LEARN_COMMAND", [sys.executable, "-c", script])


def _training(tmp_path, rows=3):
    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps({"id": str(n), "description": f"problem {n}", "answer": n}) + "\n"
                            for n in range(rows)))
    return path


def test_a_learning_job_runs_detached_and_is_found_after_a_reload(settings, tmp_path, monkeypatch):
    _fake_learn(monkeypatch, 30)
    job = app_api.start_learning(settings, [_training(tmp_path)], limit=2, max_tokens=5000)
    try:
        assert job.total == 2 and job.command[-6:] == ["--home", str(settings.home), "--limit", "2",
                                                       "--max-tokens", "5000"]
        assert app_api.is_running(job)
        with pytest.raises(InputError, match="still running"):
            app_api.start_learning(settings, [_training(tmp_path)])
        monkeypatch.setattr(app_api, "_PROCESSES", {})  # a reload in a new app process: only the files remain
        [found] = app_api.learning_jobs(settings)
        assert found.id == job.id and app_api.is_running(found)
        deadline = time.time() + 60  # generous: CI machines can be loaded
        while "fake learn" not in app_api.log_tail(found) and time.time() < deadline:
            time.sleep(0.1)
        assert "fake learn" in app_api.log_tail(found)
        app_api.stop_learning(found)
        deadline = time.time() + 60  # generous: CI machines can be loaded
        while app_api.is_running(found) and time.time() < deadline:
            time.sleep(0.1)
        assert not app_api.is_running(found) and app_api.learning_jobs(settings)[0].stopped
    finally:
        if app_api.is_running(job):
            os.killpg(job.pid, signal.SIGKILL)


def test_a_finished_job_records_its_exit_code(settings, tmp_path, monkeypatch):
    _fake_learn(monkeypatch, 0)
    job = app_api.start_learning(settings, [_training(tmp_path)])
    deadline = time.time() + 60  # generous: CI machines can be loaded
    while app_api.is_running(job) and time.time() < deadline:
        time.sleep(0.05)
    assert app_api.learning_jobs(settings)[0].returncode == 0


def test_learning_several_problems_at_once_needs_a_remote_endpoint(settings, tmp_path, monkeypatch):
    _fake_learn(monkeypatch, 0)
    with pytest.raises(InputError, match="needs a remote endpoint"):
        app_api.start_learning(settings, [_training(tmp_path)], concurrency=2)
    remote = settings.model_copy(update={"base_url": "http://localhost:9/v1"})
    job = app_api.start_learning(remote, [_training(tmp_path)], concurrency=2)
    assert job.command[-2:] == ["--concurrency", "2"]
    deadline = time.time() + 60  # generous: CI machines can be loaded
    while app_api.is_running(job) and time.time() < deadline:
        time.sleep(0.05)


def test_learning_refuses_bad_or_finished_input(settings, tmp_path, monkeypatch):
    _fake_learn(monkeypatch, 0)
    with pytest.raises(InputError, match="at least one"):
        app_api.start_learning(settings, [])
    with pytest.raises(InputError, match=r"Cannot use 'bad\.jsonl'"):
        app_api.save_upload(settings, "bad.jsonl", b'{"description": "no answer"}\n')
    with pytest.raises(InputError, match="not UTF-8"):
        app_api.save_upload(settings, "bin.jsonl", b"\xff\xfe")
    saved = app_api.save_upload(settings, "my data.jsonl", _training(tmp_path).read_bytes())
    assert saved.name == "my_data.jsonl" and saved.parent == app_api.jobs_dir(settings) / "uploads"
    with app_api.open_store(settings) as store:
        for n in range(3):
            store.add_task("my_data", str(n), f"problem {n}", n)
            store.record_attempt(f"my_data/{n}", kind="done", status="solved")
    with pytest.raises(InputError, match="learned from already"):
        app_api.start_learning(settings, [saved])
    assert app_api.learning_jobs(settings) == []


def test_run_of_matches_the_first_library_run_after_the_job(settings):
    job = app_api.LearnJob(id="j", pid=1, command=[], log=str(settings.home / "j.log"),
                           started_at="2030-01-01T00:00:00.000+00:00", total=1)
    with app_api.open_store(settings) as store:
        store.start_run()
        assert app_api.run_of(job, store.runs()) is None
        job.started_at = "2000-01-01T00:00:00.000+00:00"
        assert app_api.run_of(job, store.runs()).id == "R0001"



def test_the_learn_command_and_its_flags_exist():
    from click.testing import CliRunner

    from alphaopt.interfaces import cli

    assert app_api.LEARN_COMMAND[-3:] == ["-m", "alphaopt", "learn"]
    help_text = CliRunner().invoke(cli.cli, ["learn", "--help"]).output
    assert all(flag in help_text for flag in ("--home", "--limit", "--max-tokens"))


def test_a_stop_recorded_through_one_copy_of_a_job_survives_another_copy_reaping_it(tmp_path):
    import subprocess

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
    app_api._PROCESSES[proc.pid] = proc
    job = app_api.LearnJob(id="j1", pid=proc.pid, command=["sleep"], log=str(tmp_path / "j1.log"),
                           started_at="2026-12-05T00:00:00", total=1)
    job.save()
    page_copy = app_api.LearnJob(**json.loads(job.path.read_text()))
    app_api.stop_learning(page_copy)  # the app's page stops it; the other copy still says not stopped
    proc.wait(timeout=30)
    assert not app_api.is_running(job)  # this copy reaps the process and records its exit code
    saved = json.loads(job.path.read_text())
    assert saved["stopped"] is True and saved["returncode"] == -signal.SIGTERM
