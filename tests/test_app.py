"""The Streamlit app's main flows, page by page, with a scripted LLM and the real solver (AppTest)."""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from alphaopt import api
from alphaopt.config import load_settings
from alphaopt.errors import LLMError
from alphaopt.interfaces import app_api
from alphaopt_app import charts
from alphaopt_app.mathfmt import formulation_markdown
from library import InsightDraft, LibraryStore, Status
from tests.fakes import FORMULATION, LP_REPLY, WRONG_LP_REPLY, RoutedLLM

ROOT = Path(__file__).resolve().parents[1]
PROBLEM = "Maximize 3x + 2y subject to x + y <= 4, x + 3y <= 6, x <= 3."


@pytest.fixture
def llm(monkeypatch, runner):
    """Every Agent the app builds gets this scripted LLM and the shared runner; the formulate step
    is on, so that the app's formulation view has a formulation to show and edit."""
    monkeypatch.setenv("ALPHAOPT_EXPERIMENTAL__FORMULATE", "1")
    fake = RoutedLLM()
    monkeypatch.setattr(api, "Agent", functools.partial(api.Agent, llm=fake, runner=runner))
    st.cache_resource.clear()
    yield fake
    st.cache_resource.clear()


def app() -> AppTest:
    return AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()


def click(at: AppTest, label: str) -> AppTest:
    [button] = [b for b in at.button if b.label == label]
    return button.click().run()


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def chart_elements(at: AppTest) -> list[object]:
    return [e for e in at.main if getattr(e, "type", "") in ("arrow_vega_lite_chart", "vega_lite_chart")]


# -- Solve ---------------------------------------------------------------------------------------

def test_solve_an_example_and_see_steps_answer_and_constraints(llm):
    at = app()
    at.selectbox(key="example").select("furniture.txt").run()
    assert "chairs" in at.text_area(key="problem").value
    llm.on("formulate", FORMULATION).on("write_program", LP_REPLY)
    ok(click(at, "Solve"))
    assert [s.label for s in at.status] == ["Done: optimal after 6 steps"]
    markdown = " ".join(m.value for m in at.markdown)
    assert "**Formulation**" in markdown and r"$x + y \le 4$" in markdown and "**Pyomo program**" in markdown
    assert any("def build_model" in c.value for c in at.code)
    assert at.metric[0].label == "Objective (maximize)" and at.metric[0].value == "11"
    plan, constraints, _attempts = (d.value for d in at.dataframe)
    assert dict(zip(plan.variable, plan.value, strict=True)) == pytest.approx({"x": 3, "y": 1})
    assert list(constraints.columns) == ["constraint", "dual", "slack", "binding"] and constraints.binding.all()
    assert at.success[0].value.startswith("Status: optimal")
    assert at.text_area(key="program_edit").value.strip().startswith("import pyomo")
    assert at.text_area(key="formulation_edit").value == FORMULATION


def test_a_nonlinear_answer_names_scip_its_global_proof_and_its_check(llm):
    from tests.test_nonlinear import SADDLE, SADDLE_REPLY

    at = app()
    at.text_area(key="problem").input(SADDLE).run()
    llm.on("formulate", "## Variables\nx, y in [-1, 2]\n## Objective\nminimize x*y\n## Constraints\nx + y <= 1")
    llm.on("write_program", SADDLE_REPLY)
    ok(click(at, "Solve"))
    assert at.success[0].value.startswith("Status: optimal") and at.metric[0].value == "-2"
    assert [i.value for i in at.info] == ["Solver: SCIP (nonconvex_qp model): global optimum, proven"]
    captions = " ".join(c.value for c in at.caption)
    assert "Plan check: passed against the model file" in captions and "Whole-run caps: " in captions
    assert "No duals: they are reported for linear programs without integers (HiGHS) only." in captions
    _plan, attempts = (d.value for d in at.dataframe)
    assert list(attempts.solver) == ["scip"]
    steps = " ".join(m.value for m in at.markdown)
    assert "status **optimal** from scip" in steps


def test_mark_answers_right_and_wrong(llm):
    at = app()
    at.text_area(key="problem").input(PROBLEM).run()
    llm.on("formulate", FORMULATION).on("write_program", LP_REPLY)
    click(at, "Solve")
    run_id = at.session_state["solution"].run_id
    ok(click(at, "Save as a training example"))
    assert "Saved training problem `feedback/" in at.success[-1].value
    at.radio(key="verdict").set_value("Wrong")  # in a form: sent with the submit button
    ok(click(at, "Save as a training example"))
    assert "Give the correct optimal value" in at.error[0].value
    at.number_input(key="correct_value").set_value(12.5)
    ok(click(at, "Save as a training example"))
    assert "already marked with the answer 11" in at.error[0].value
    settings = load_settings()
    with LibraryStore(settings.library_db) as store:
        assert store.get_task(f"feedback/{run_id}").answer == 11
    assert json.loads(app_api.feedback_path(settings).read_text()) == {"id": run_id, "description": PROBLEM,
                                                                       "answer": 11.0}


def test_edit_the_program_and_the_formulation_and_rerun(llm):
    at = app()
    at.text_area(key="problem").input(PROBLEM).run()
    llm.on("formulate", FORMULATION).on("write_program", LP_REPLY)
    click(at, "Solve")
    at.text_area(key="program_edit").input(WRONG_LP_REPLY).run()
    ok(click(at, "Run this program"))
    assert at.metric[0].value == "8.66667" and len(llm.calls) == 2  # no model call
    edited = FORMULATION.replace("x <= 3", "x <= 2")
    at.text_area(key="formulation_edit").input(edited).run()
    llm.on("write_program", WRONG_LP_REPLY)
    ok(click(at, "Re-run from this formulation"))
    assert llm.prompt_names[-1] == "write_program" and "x <= 2" in llm.calls[-1].user
    assert at.session_state["solution"].formulation == edited and at.metric[0].value == "8.66667"
    assert [s.label for s in at.status] == ["Done: optimal after 4 steps"]


def test_bad_input_and_failures_are_clear_and_keep_the_text(llm):
    at = app()
    ok(click(at, "Solve"))
    assert "empty" in at.error[0].value and llm.calls == []

    def unreachable(messages):
        raise LLMError("Cannot reach the model endpoint http://127.0.0.1:9/v1: check ALPHAOPT_BASE_URL.")

    llm.on("formulate", unreachable)
    at.text_area(key="problem").input(PROBLEM).run()
    ok(click(at, "Solve"))
    assert "Cannot reach the model endpoint" in at.error[0].value
    assert at.text_area(key="problem").value == PROBLEM
    assert at.session_state["solution"] is None if "solution" in at.session_state else True


def test_solve_with_the_library_shows_why_each_insight_applies(llm, monkeypatch):
    monkeypatch.setenv("ALPHAOPT_USE_LIBRARY", "1")
    with LibraryStore(load_settings().library_db) as store:
        store.add_insight(InsightDraft(stage="general_formulation", level1="variables", level2="integrality",
                                       condition="trucks, machines or people are hired as whole units",
                                       explanation="declare those counts as NonNegativeIntegers"),
                          status=Status.VERIFIED)
    at = app()
    at.text_area(key="problem").input("A company hires trucks to ship at least 115 tons of gravel; trucks are "
                                      "hired whole. Minimize cost.").run()
    llm.on("check_insights", "I0001").on("formulate", FORMULATION).on("write_program", LP_REPLY)
    ok(click(at, "Solve"))
    assert llm.prompt_names == ["check_insights", "formulate", "write_program"]
    steps = " ".join(m.value for m in at.markdown)
    assert "**Applies because:** trucks, machines or people are hired as whole units" in steps
    assert "NonNegativeIntegers" in llm.calls[1].user  # the insight went into the formulation prompt
    with LibraryStore(load_settings().library_db) as store:
        assert [e.used for e in store.evidence_for("I0001")][-1]


def test_typed_text_survives_a_page_switch(llm):
    at = app()
    at.text_area(key="problem").input(PROBLEM).run()
    ok(at.switch_page("alphaopt_app/library_page.py").run())
    ok(at.switch_page("alphaopt_app/solve_page.py").run())
    assert at.text_area(key="problem").value == PROBLEM


def test_sidebar_names_the_active_model(llm, monkeypatch):
    assert "**Embedded**" in " ".join(m.value for m in app().sidebar.markdown)
    monkeypatch.setenv("ALPHAOPT_BASE_URL", "http://localhost:11434/v1")
    monkeypatch.setenv("ALPHAOPT_MODEL", "qwen2.5-coder:7b")
    sidebar = " ".join(m.value for m in app().sidebar.markdown)
    assert "http://localhost:11434/v1" in sidebar and "qwen2.5-coder:7b" in sidebar


# -- Library -------------------------------------------------------------------------------------

@pytest.fixture
def library(llm):
    with LibraryStore(load_settings().library_db) as store:
        first = store.add_insight(InsightDraft(
            stage="general_formulation", level1="capacity", level2="shared machine",
            condition="a machine is shared by products", explanation="one constraint sums every use",
            example="x + y <= 150"), status=Status.VERIFIED, provenance={"source_tasks": ["nl4opt/F1"]})
        store.revise(first.id, condition="a machine or a team is shared by products", reason="broader")
        store.record_evidence(first.id, run_id="r1", used=True, success=True)
        store.record_evidence(first.id, run_id="r2", used=True, success=False)
        store.add_insight(InsightDraft(stage="code_implementation", level1="pyomo", level2="indexing",
                                       condition="sets are indexed from one", explanation="use RangeSet(1, n)"),
                          status=Status.VERIFIED)
    at = app()
    return ok(at.switch_page("alphaopt_app/library_page.py").run())


def test_library_search_filter_evidence_and_history(library):
    at = library
    assert list(at.dataframe[0].value.id) == ["I0001", "I0002"]
    at.text_input(key="lib_text").input("team").run()
    assert list(at.dataframe[0].value.id) == ["I0001"]
    at.text_input(key="lib_text").input("").run()
    at.selectbox(key="lib_stage").select("code_implementation").run()
    assert list(at.dataframe[0].value.id) == ["I0002"]
    assert at.selectbox(key="lib_label").options == ["all", "pyomo / indexing"]
    at.selectbox(key="lib_stage").select("all").run()
    at.selectbox(key="lib_choice").select("I0001").run()
    assert {m.label: m.value for m in at.metric} == {"retrieved": "2", "used": "2", "helped": "1", "hurt": "1"}
    diffs = [c.value for c in at.code if c.language == "diff"]
    assert "-condition: a machine is shared by products" in diffs[0]
    assert "+condition: a machine or a team is shared by products" in diffs[0]


def test_library_edit_retire_and_restore(library):
    at = library
    at.text_area(key="edit_I0001_2_explanation").input("write one constraint that sums every use")  # in a form
    ok(click(at, "Save as a new version"))
    assert "Saved I0001 v3" in at.success[0].value
    at.text_area(key="edit_I0001_3_condition").input("  ")
    ok(click(at, "Save as a new version"))
    assert "Not saved" in at.error[0].value
    ok(click(at, "Retire"))
    assert list(at.dataframe[0].value.id) == ["I0002"]
    at.multiselect(key="lib_status").select("retired").run()
    at.selectbox(key="lib_choice").select("I0001").run()
    ok(click(at, "Restore"))
    with LibraryStore(load_settings().library_db) as store:
        insight = store.get("I0001")
    assert insight.status == Status.VERIFIED and insight.version == 3


def test_library_import_and_export(library, tmp_path):
    at = library
    export = at.download_button[0]
    assert export.label == "Download JSONL"
    at.file_uploader(key="import_file").upload("broken.jsonl", b'{"id": 1}\n').run()
    ok(click(at, "Import"))
    assert "Nothing was imported from broken.jsonl" in at.error[0].value
    with LibraryStore(tmp_path / "other.db") as other:
        other.add_insight(InsightDraft(stage="domain_modeling", level1="units", level2="time",
                                       condition="hours and minutes are mixed", explanation="convert first"),
                          status=Status.VERIFIED)
        other.add_insight(InsightDraft(stage="domain_modeling", level1="units", level2="time",
                                       condition="a second one", explanation="x"), status=Status.VERIFIED)
        other.add_insight(InsightDraft(stage="domain_modeling", level1="units", level2="money",
                                       condition="cents and dollars", explanation="convert first"),
                          status=Status.VERIFIED)
        text = app_api.export_library(other)
    at.file_uploader(key="import_file").upload("fresh.jsonl", text.encode()).run()
    ok(click(at, "Import"))
    assert "I0001" in at.error[0].value  # ids collide with this library: all or nothing
    with LibraryStore(tmp_path / "other.db") as other:
        other.delete("I0001")
        other.delete("I0002")
        text = app_api.export_library(other)
    at.file_uploader(key="import_file").upload("fresh.jsonl", text.encode()).run()
    ok(click(at, "Import"))
    assert "Imported 1 insights from fresh.jsonl" in at.success[0].value
    assert "I0003" in list(at.dataframe[0].value.id)


# -- Learn ---------------------------------------------------------------------------------------

def test_learn_page_starts_a_background_job_shows_and_stops_it(llm, monkeypatch):
    script = "import sys, time; print('fake learn', *sys.argv[1:], flush=True); time.sleep(30)"
    monkeypatch.setattr(app_api, "LEARN_COMMAND", [sys.executable, "-c", script])
    at = ok(app().switch_page("alphaopt_app/learn_page.py").run())
    ok(click(at, "Start learning"))
    assert "Choose at least one training file" in at.error[0].value
    at.multiselect(key="learn_files").select("nl4opt_train.jsonl").run()
    at.number_input(key="learn_limit").set_value(2).run()
    ok(click(at, "Start learning"))
    [job] = app_api.learning_jobs(load_settings())
    try:
        assert "Started learning job" in at.success[0].value and "on 2 problems" in at.success[0].value
        assert job.command[-4:] == ["--home", str(load_settings().home), "--limit", "2"]
        at = ok(app().switch_page("alphaopt_app/learn_page.py").run())  # a reload finds it running
        assert any(s.value == f"Job {job.id}" for s in at.subheader)
        assert any(m.value.startswith("**running**") for m in at.markdown)
        assert [b.disabled for b in at.button if b.label == "Start learning"] == [True]
        ok(click(at, "Stop"))
        deadline = time.time() + 60  # generous: CI machines can be loaded
        while app_api.is_running(job) and time.time() < deadline:
            time.sleep(0.1)
        assert not app_api.is_running(job)
        at = ok(app().switch_page("alphaopt_app/learn_page.py").run())
        assert any(m.value.startswith("**stopped") for m in at.markdown)
        assert [b.disabled for b in at.button if b.label == "Start learning"] == [False]
    finally:
        if app_api.is_running(job):
            os.killpg(job.pid, signal.SIGKILL)


def test_learn_page_charts_past_runs(llm):
    with LibraryStore(load_settings().library_db) as store:
        store.add_insight(InsightDraft(stage="domain_modeling", level1="units", level2="time",
                                       condition="hours and minutes", explanation="convert"), status=Status.VERIFIED)
        run = store.start_run({"command": "alphaopt learn nl4opt_train.jsonl"})
        for n, outcome in enumerate(["solved", "learned", "unsolved: nothing learned"]):
            store.add_task("nl4opt", str(n), f"p{n}", n)
            store.record_attempt(f"nl4opt/{n}", kind="done", status=outcome, run_id=run.id)
        store.finish_run(run.id, counters={"seen": 3, "solved_before": 1, "solved_after": 2, "verified": 1},
                         tokens=4321)
    at = ok(app().switch_page("alphaopt_app/learn_page.py").run())
    runs = at.dataframe[0].value
    assert runs.run.tolist() == ["R0001"] and runs["solved after %"].tolist() == [66.7] and runs.tokens[0] == 4321
    assert len(chart_elements(at)) == 4  # accuracy per run, tokens per run, size by stage, growth


# -- pure helpers --------------------------------------------------------------------------------

def test_formulation_markdown_turns_formulas_into_math_and_keeps_prose():
    text = ("## Constraints\n- Carpentry: 2*x_chairs + 3*y <= 120  (hours)\n- x = number of chairs\n"
            "sum_i x_i >= 1 for all i in I")
    assert formulation_markdown(text).splitlines() == [
        "**Constraints**  ",
        r"- Carpentry: $2 \cdot x_{\mathrm{chairs}} + 3 \cdot y \le 120$ (hours)  ",
        "- x = number of chairs  ",
        r"$\sum_{i} x_{i} \ge 1 \quad\forall i \in I$  ",
    ]


def test_accuracy_curve_and_library_counts():
    from library import Attempt

    done = [Attempt(id=n, task_id=f"t{n}", run_id="R1", kind="done", status=s, program=None, objective=None,
                    error=None, tokens=0, created_at="2030-01-01T00:00:00")
            for n, s in enumerate(["solved", "learned", "unsolved: nothing learned", "solved"])]
    curve = charts.accuracy_curve(done)
    assert curve["solved as is %"].tolist() == [100.0, 50.0, 33.3, 50.0]
    assert curve["solved or learned %"].tolist() == [100.0, 100.0, 66.7, 75.0]
    assert charts.library_by_stage([]).sum().sum() == 0
