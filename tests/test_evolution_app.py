"""Evolution from the app: a detached ``alphaopt library evolve`` job (its process id, one at a
time per home), its per-round metrics on the Learn page, and a rollback.

The job's command is replaced by a small Python program that does what the real one does to
the home (takes the evolution lock, records an evolution run with its pid and per-round
metrics, then works for a while), so the page and the refusals are exercised without a model.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import time

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from alphaopt import api
from alphaopt.config import load_settings
from alphaopt.errors import InputError
from alphaopt.interfaces import app_api
from alphaopt.learning.evolve import evolve_lock, evolve_running
from alphaopt_app.learn_page import rounds_frame
from library import InsightDraft, LibraryStore, Status
from tests.fakes import RoutedLLM
from tests.test_app import ROOT, click, ok

ROUNDS = [{"round": 1, "before": {"problems": 4, "right": 2, "accuracy": 0.5, "precision": 0.5, "recall": 0.5,
                                  "positive": 1, "negative": 1, "unretrieved": 1, "neutral": 0},
           "after": {"problems": 4, "right": 4, "accuracy": 1.0, "precision": 1.0, "recall": 1.0,
                     "positive": 1, "negative": 1, "unretrieved": 1, "neutral": 0},
           "refined": {"I0001": {}}, "retagged": {"I0001": {}}, "retired": [], "labels_retired": [],
           "pairs": {}, "solved": 2, "reused": 5}]
FAKE_EVOLVE = f"""
import json, os, sys, time
from pathlib import Path
from alphaopt.learning.evolve import evolve_lock
from library import LibraryStore
home = Path(sys.argv[sys.argv.index("--home") + 1])
with evolve_lock(home):
    store = LibraryStore(home / "library.db")
    run = store.start_run({{"job": "evolve", "pid": os.getpid(), "library_version": 3}})
    store.update_run(run.id, counters={{"library_version": 3, "rounds": {ROUNDS!r},
                                       "step": "round 2: replayed 1 of 4"}})
    print("fake evolve", *sys.argv[1:], flush=True)
    time.sleep(float(os.environ.get("FAKE_EVOLVE_SECONDS", "300")))
"""


@pytest.fixture
def home(monkeypatch, runner):
    monkeypatch.setattr(app_api, "EVOLVE_COMMAND", [sys.executable, "-c", FAKE_EVOLVE])
    settings = load_settings()
    with LibraryStore(settings.library_db) as store:
        store.add_insight(InsightDraft(stage="general_formulation", level1="variables", level2="bounds and sign",
                                       condition="a variable has an upper limit", explanation="copy it"),
                          status=Status.VERIFIED)
        store.add_task("toy_train", "t1", "Maximize x subject to x <= 3.", 3.0)
    return settings


def _wait(condition, seconds: float = 60) -> None:  # generous: CI machines can be loaded
    deadline = time.time() + seconds
    while not condition() and time.time() < deadline:
        time.sleep(0.1)
    assert condition()


def test_an_evolution_job_runs_detached_one_at_a_time_and_stops(home):
    job = app_api.start_evolve(home, rounds=2, candidates=4, max_problems=10)
    try:
        assert job.total == 2 and job.command[-8:] == ["--home", str(home.home), "--rounds", "2", "--candidates", "4",
                                                       "--max-problems", "10"]
        _wait(lambda: evolve_running(home.home) is not None)
        assert evolve_running(home.home).startswith(f"pid {job.pid}")
        with pytest.raises(InputError, match="already running on this library"):
            app_api.start_evolve(home)
        with pytest.raises(InputError, match="changing this library"):
            app_api.rollback_library(home, 1)
        with LibraryStore(home.library_db) as store:
            _wait(lambda: app_api.evolve_run_of(job, store.runs()) is not None)
            run = app_api.evolve_run_of(job, store.runs())
            assert run.settings["pid"] == job.pid
        [found] = app_api.evolve_jobs(home)
        assert found.id == job.id and app_api.learning_jobs(home) == []  # kept apart from learning jobs
        app_api.stop_learning(found)
        _wait(lambda: not app_api.is_running(found))
        assert app_api.evolve_jobs(home)[0].stopped and evolve_running(home.home) is None
    finally:
        if app_api.is_running(job):
            os.killpg(job.pid, signal.SIGKILL)


def test_evolution_is_refused_without_answers_or_while_another_holds_the_home(home, tmp_path):
    empty = load_settings(home=tmp_path / "empty")
    with pytest.raises(InputError, match="no training problem with a known answer"):
        app_api.start_evolve(empty)
    with evolve_lock(home.home), pytest.raises(InputError, match="already running on this library"):
        app_api.start_evolve(home)  # e.g. `alphaopt library evolve` started in a terminal holds the home
    assert app_api.evolve_jobs(home) == []


def test_rollback_from_the_app_restores_an_earlier_version(home):
    with LibraryStore(home.library_db) as store:
        before = store.library_version()
        store.revise("I0001", condition="a variable has a limit", reason="test")
    restored = app_api.rollback_library(home, before)
    assert restored.number == before + 2
    with LibraryStore(home.library_db) as store:
        assert store.get("I0001").condition == "a variable has an upper limit"


def test_rounds_frame_has_a_row_per_round_and_measurement():
    frame = rounds_frame({"rounds": ROUNDS})
    assert frame[["round", "when", "accuracy", "precision", "recall"]].values.tolist() == [
        [1, "before", 0.5, 0.5, 0.5], [1, "after", 1.0, 1.0, 1.0]]
    assert frame["broadened"].tolist() == [0, 0]  # a run recorded before broadening existed
    later = [{**ROUNDS[0], "broadened": {"I0001": {}}}]
    assert rounds_frame({"rounds": later})[["refined", "broadened", "re-tagged"]].values.tolist() == [[1, 1, 1]] * 2
    assert rounds_frame({}).empty


@pytest.fixture
def page(home, monkeypatch, runner):
    monkeypatch.setattr(api, "Agent", functools.partial(api.Agent, llm=RoutedLLM(), runner=runner))
    st.cache_resource.clear()
    yield lambda: ok(AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
                     .switch_page("alphaopt_app/learn_page.py").run())
    st.cache_resource.clear()


def test_the_learn_page_starts_an_evolution_shows_its_rounds_and_rolls_back(page, home):
    at = page()
    at.number_input(key="evolve_rounds").set_value(2).run()
    ok(click(at, "Start evolving"))
    [job] = app_api.evolve_jobs(home)
    try:
        assert "Started evolution job" in at.success[0].value and "2 round(s)" in at.success[0].value
        with LibraryStore(home.library_db) as store:
            _wait(lambda: app_api.evolve_run_of(job, store.runs()) is not None)
        at = page()  # a reload finds it running, with its rounds
        assert any(m.value.startswith(f"**Evolution job {job.id}: running**") for m in at.markdown)
        assert [b.disabled for b in at.button if b.label in ("Start evolving", "Start learning", "Roll back")] == [
            True, True, True]
        assert any(c.value == "Now: round 2: replayed 1 of 4" for c in at.caption)
        rounds = next(d.value for d in at.dataframe if "precision" in d.value.columns)
        assert rounds.precision.tolist() == [0.5, 1.0]
        ok(click(at, "Stop evolving"))
        _wait(lambda: not app_api.is_running(job))
    finally:
        if app_api.is_running(job):
            os.killpg(job.pid, signal.SIGKILL)
    at = page()
    assert any(m.value.startswith(f"**Evolution job {job.id}: stopped**") for m in at.markdown)
    with LibraryStore(home.library_db) as store:
        before = store.library_version()
        store.revise("I0001", condition="a variable has a limit", reason="test")
    at = page()
    at.number_input(key="rollback_version").set_value(before).run()
    ok(click(at, "Roll back"))
    assert f"Restored library version {before}" in at.success[0].value
    with LibraryStore(home.library_db) as store:
        assert store.get("I0001").condition == "a variable has an upper limit"
