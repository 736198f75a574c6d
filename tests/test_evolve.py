"""The evolution job: diagnosis from evidence, and a refinement kept only on a solver-proven lift."""

from __future__ import annotations

import json

import pytest

from alphaopt.config import load_settings
from alphaopt.learning.evolve import ALIGNED, DUPLICATE, HARMFUL, TOO_SPECIFIC, EvolveConfig, Evolver, diagnose
from alphaopt.learning.learn import LearnConfig, Learner
from alphaopt.agent.retrieval import open_library
from library import InsightDraft, Status
from tests.fakes import FORMULATION, LP_REPLY, WRONG_LP_REPLY, RoutedLLM

PROBLEM = ("A plant of 40 workers makes x and y. Maximize 3x + 2y subject to x + y <= 4, x + 3y <= 6 and x at "
           "most 3, with x, y non-negative.")
SPECIFIC = "when the plant of 40 workers may make at most 3 of x"
GENERAL = "when the text gives an upper limit on a single decision variable of the problem"


@pytest.fixture
def library(tmp_path, runner):
    settings = load_settings(home=tmp_path / "home", use_library=True, starter_library="none")
    store, index = open_library(settings)
    task = store.add_task("toy_train", "t1", PROBLEM, 11.0)
    insight = store.add_insight(InsightDraft(
        stage="general_formulation", level1="constraints", level2="upper limits", condition=SPECIFIC,
        explanation="copy each limit exactly as stated; the common mistake is a wrong bound",
        example="wrong: x <= 2 right: x <= 3"), status=Status.VERIFIED, provenance={"source_tasks": [task.id]})
    index.upsert([insight])

    def evolver(llm):
        return Evolver(Learner(settings, store, index, llm, runner, LearnConfig()), EvolveConfig())

    yield store, index, evolver
    index.close()
    store.close()


def _arms(llm: RoutedLLM, *, with_reply: str) -> RoutedLLM:
    """The 'without' solve writes the wrong bound; the 'with' solve writes ``with_reply``."""
    llm.on("check_insights", "I0001")
    return llm.on("formulate", FORMULATION, FORMULATION).on("write_program", WRONG_LP_REPLY, with_reply)


def test_a_condition_naming_its_source_is_generalized_and_kept_on_a_lift(library):
    store, index, evolver = library
    llm = _arms(RoutedLLM().on("generalize", f'"{GENERAL}"'), with_reply=LP_REPLY)
    summary = evolver(llm).evolve(command="alphaopt library evolve")
    assert summary.diagnosed == {TOO_SPECIFIC: 1} and summary.refined == 1 and summary.reverted == 0
    insight = store.get("I0001")
    assert insight.condition == GENERAL and insight.status == Status.VERIFIED
    assert insight.provenance.evidence["refined"] == {"check": "evolve", "without": 0, "with": 1, "sources": 1}
    assert [v.reason for v in store.versions("I0001")][1:] == [
        "evolve: the condition in general words", "evolve: refinement verified"]
    # the 'with' arm went through retrieval: the insight was recalled and chosen, not forced
    check = next(c for c in llm.calls if c.prompt_name == "check_insights")
    assert "[I0001] When the text gives an upper limit on a single decision variable" in check.user
    without, with_ = [c for c in llm.calls if c.prompt_name == "formulate"]
    assert "[I0001]" not in without.user and "[I0001]" in with_.user
    assert [a.kind for a in store.attempts(task_id="toy_train/t1")] == ["evolve_without", "evolve_with"]
    assert index.recall(GENERAL)[0].insight_id == "I0001"
    run = store.runs()[-1]
    assert run.status.value == "finished" and run.counters["refined"] == 1


def test_a_refinement_without_lift_is_reverted(library):
    store, _, evolver = library
    llm = _arms(RoutedLLM().on("generalize", GENERAL), with_reply=WRONG_LP_REPLY)
    summary = evolver(llm).evolve()
    assert summary.reverted == 1 and summary.refined == 0
    versions = store.versions("I0001")
    assert [v.condition for v in versions] == [SPECIFIC, GENERAL, SPECIFIC]  # history keeps the attempt
    assert versions[-1].reason.startswith("evolve: refinement reverted (with 0, without 0)")
    assert store.get("I0001").status == Status.VERIFIED


def test_a_general_condition_that_still_names_the_problem_is_not_tried(library):
    store, _, evolver = library
    llm = RoutedLLM().on("generalize", "when the 40 workers make x")
    summary = evolver(llm).evolve()
    assert summary.unchanged == 1 and llm.prompt_names == ["generalize"]
    assert len(store.versions("I0001")) == 1


def test_dry_run_only_diagnoses(library):
    store, _, evolver = library
    llm = RoutedLLM()
    summary = evolver(llm).evolve(dry_run=True)
    assert summary.diagnosed == {TOO_SPECIFIC: 1} and llm.calls == []
    assert "repeats numbers" in summary.outcomes["I0001"] and len(store.versions("I0001")) == 1


def test_diagnosis_from_evidence(library):
    store, _, _ = library
    general = store.add_insight(InsightDraft(
        stage="general_formulation", level1="constraints", level2="upper limits", condition=GENERAL,
        explanation="copy each limit"), status=Status.VERIFIED, provenance={"source_tasks": ["toy_train/t1"]})
    sources = [store.get_task("toy_train/t1")]
    config = EvolveConfig(min_recalls=3, min_uses=3)

    def verdict() -> str:
        return diagnose(store.get(general.id), store.evidence_for(general.id), sources, config).verdict

    assert verdict() == ALIGNED  # no evidence yet
    for n in range(3):
        store.record_evidence(general.id, run_id=f"r{n}", retrieved=True, used=False)
    assert verdict() == TOO_SPECIFIC  # recalled three times, never chosen
    for n in range(3):
        store.record_evidence(general.id, run_id=f"x{n}", retrieved=True, used=True, success=False)
    assert verdict() == TOO_SPECIFIC  # a user's solve (no task) says only whether it ran: not counted
    for n in range(3):
        store.add_task("toy_train", f"o{n}", f"other problem {n}", 1.0)
        store.record_evidence(general.id, task_id=f"toy_train/o{n}", run_id=f"u{n}", retrieved=True, used=True,
                              success=False)
    assert verdict() == HARMFUL  # chosen for other training problems, never right
    for n in range(2):
        store.record_evidence(general.id, task_id=f"toy_train/o{n}", run_id=f"v{n}", retrieved=True, used=True,
                              success=True)
    assert verdict() == HARMFUL  # right 2 times, wrong 3 times: a with/without check will decide
    store.record_evidence(general.id, task_id="toy_train/o2", run_id="v2", retrieved=True, used=True, success=True)
    assert verdict() == ALIGNED  # as often right as wrong


def test_an_imported_insight_without_its_source_problems_is_left_unchanged(library):
    store, _, evolver = library
    store.set_status("I0001", Status.RETIRED)
    store.add_task("elsewhere", "x2", "A problem text that came with an imported library, without its answer")
    imported = store.add_insight(InsightDraft(
        stage="general_formulation", level1="constraints", level2="upper limits", condition=GENERAL,
        explanation="copy each limit"), status=Status.VERIFIED,
        provenance={"source_tasks": ["elsewhere/x1", "elsewhere/x2"]})  # one not held, one held as text only
    for n in range(3):
        store.record_evidence(imported.id, run_id=f"r{n}", retrieved=True, used=False)
    llm = RoutedLLM()
    summary = evolver(llm).evolve()
    assert summary.unchanged == 1 and llm.calls == []
    assert "not in this home" in summary.outcomes[imported.id]


NARROWED = GENERAL + ", but not when the limit is on a sum of several variables"


@pytest.fixture
def harmful(library):
    """I0001 in general words (aligned with its source), chosen three times for another
    training problem that was then answered wrong."""
    store, index, evolver = library
    store.revise("I0001", condition=GENERAL, reason="test: general")
    index.upsert([store.get("I0001")])
    other = store.add_task("toy_train", "t2", PROBLEM.replace("A plant", "Another plant"), 11.0)
    for n in range(3):
        store.record_evidence("I0001", task_id=other.id, run_id=f"u{n}", retrieved=True, used=True, success=False)
    return store, index, evolver


def _solves(llm: RoutedLLM, *programs: str) -> RoutedLLM:
    for reply in programs:
        llm.on("formulate", FORMULATION).on("write_program", reply)
    return llm


def test_a_harmful_insight_is_narrowed_when_the_narrowing_holds(harmful):
    store, index, evolver = harmful
    llm = RoutedLLM().on("check_insights", "I0001", "NONE", "I0001").on("narrow", f'"{NARROWED}"')
    _solves(llm, LP_REPLY, LP_REPLY, LP_REPLY)  # without it: right; narrowed: not chosen, right; source: right
    summary = evolver(llm).evolve()
    assert summary.diagnosed == {HARMFUL: 1} and summary.narrowed == 1 and summary.retired == 0
    insight = store.get("I0001")
    assert insight.condition == NARROWED and insight.status == Status.VERIFIED
    assert insight.provenance.evidence["narrowed"] == {
        "check": "evolve-narrow", "misled": 1, "right_without": 1, "aided": 0, "helped": 0, "tasks": ["toy_train/t2"],
        "still_wrong": 0, "sources": 1, "sources_kept": 1}
    narrow = next(c for c in llm.calls if c.prompt_name == "narrow")
    assert "Another plant" in narrow.user and GENERAL in narrow.user
    assert [a.kind for a in store.attempts(task_id="toy_train/t2")] == ["evolve_without", "evolve_with"]
    assert summary.outcomes["I0001"].startswith("harmful: narrowed (right on 1 problem(s) it had misled")
    # the next run does not narrow again for the problems this narrowing fixed
    again = RoutedLLM()
    assert "narrowed" not in evolver(again).evolve().outcomes["I0001"] and again.calls == []


def test_a_harmful_insight_whose_narrowing_does_not_hold_is_retired(harmful):
    store, index, evolver = harmful
    llm = RoutedLLM().on("check_insights", "I0001", "I0001").on("narrow", NARROWED)
    _solves(llm, LP_REPLY, WRONG_LP_REPLY, LP_REPLY)  # still chosen for t2 and wrong with it
    summary = evolver(llm).evolve()
    assert summary.retired == 1 and summary.narrowed == 0
    insight = store.get("I0001")
    assert insight.status == Status.RETIRED and insight.condition == GENERAL  # the old condition, retired
    assert insight.provenance.evidence["retired"]["still_wrong"] == 1
    assert [v.condition for v in store.versions("I0001")][-3:] == [GENERAL, NARROWED, GENERAL]
    assert index.recall(GENERAL) == [] or all(r.insight_id != "I0001" for r in index.recall(GENERAL))


def test_problems_an_earlier_narrowing_fixed_are_not_narrowed_for_again(harmful):
    store, _, evolver = harmful
    store.revise("I0001", evidence={"narrowed": {"tasks": ["toy_train/t2"]}}, reason="test: narrowed before")
    llm = RoutedLLM()
    summary = evolver(llm).evolve()
    assert "an earlier narrowing fixed them" in summary.outcomes["I0001"] and llm.calls == []


def test_a_harmful_insight_is_kept_when_its_problems_fail_without_it_too(harmful):
    store, _, evolver = harmful
    llm = _solves(RoutedLLM().on("check_insights", "I0001"), WRONG_LP_REPLY)
    summary = evolver(llm).evolve()
    assert summary.unchanged == 1 and "fail without it too" in summary.outcomes["I0001"]
    assert "narrow" not in llm.prompt_names and store.get("I0001").status == Status.VERIFIED


@pytest.fixture
def mixed(harmful):
    """As ``harmful``, and chosen once for a third training problem that was answered right."""
    store, index, evolver = harmful
    third = store.add_task("toy_train", "t3", PROBLEM.replace("A plant", "A third plant"), 11.0)
    store.record_evidence("I0001", task_id=third.id, run_id="w0", retrieved=True, used=True, success=True)
    return store, index, evolver


def test_an_insight_that_helped_as_often_as_it_misled_is_kept(mixed):
    store, _, evolver = mixed
    # without it: t2 (misled) comes out right, but t3 (right with it) comes out wrong
    llm = _solves(RoutedLLM().on("check_insights", "I0001", "I0001"), LP_REPLY, WRONG_LP_REPLY)
    summary = evolver(llm).evolve()
    assert summary.diagnosed == {HARMFUL: 1} and summary.unchanged == 1 and summary.retired == 0
    assert "no net harm: right without it on 1 of 1 problem(s) it misled, wrong without it on 1 of 1" in (
        summary.outcomes["I0001"])
    assert "narrow" not in llm.prompt_names and store.get("I0001").condition == GENERAL
    assert [a.kind for a in store.attempts(task_id="toy_train/t3")] == ["evolve_without"]


def test_an_insight_that_misled_more_than_it_helped_is_narrowed(mixed):
    store, _, evolver = mixed
    # without it both are right: it helped none; narrowed: not chosen for t2 and right; its source still right
    llm = RoutedLLM().on("check_insights", "I0001", "I0001", "NONE", "I0001").on("narrow", NARROWED)
    summary = evolver(_solves(llm, LP_REPLY, LP_REPLY, LP_REPLY, LP_REPLY)).evolve()
    assert summary.narrowed == 1 and store.get("I0001").condition == NARROWED
    assert store.get("I0001").provenance.evidence["narrowed"]["aided"] == 1
    assert store.get("I0001").provenance.evidence["narrowed"]["helped"] == 0


INTEGER = ("declare these quantities with domain=pyo.NonNegativeIntegers; the common mistake is continuous "
           "variables, whose optimum is fractional and differs from the whole-number optimum")


def test_a_lesson_learned_twice_in_other_words_is_merged(library):
    store, index, evolver = library
    store.set_status("I0001", Status.RETIRED)
    draft = {"stage": "general_formulation", "level1": "variables", "level2": "integrality", "explanation": INTEGER}
    first = store.add_insight(InsightDraft(condition="The problem involves counting, buying, or choosing", **draft),
                              status=Status.VERIFIED, provenance={"source_tasks": ["toy_train/t1"]})
    second = store.add_insight(InsightDraft(
        condition="When the problem involves counting, buying, or choosing, a program should use integer variables.",
        **draft), status=Status.VERIFIED, provenance={"source_tasks": ["toy_train/t1"]})
    other = store.add_insight(InsightDraft(
        condition="when a share of the total is bounded", explanation="relate the variables, not a constant",
        stage="general_formulation", level1="variables", level2="integrality"), status=Status.VERIFIED,
        provenance={"source_tasks": ["toy_train/t1"]})
    index.upsert([first, second, other])
    # the conditions alone are too far apart for a merge; the lessons are not
    assert index.recall(first.condition, k=3)[1].distance > 0.12
    merged = {**draft, "condition": "when things are counted, bought or chosen", "example": ""}
    llm = RoutedLLM().on("merge", json.dumps(merged)).on("check_insights", "NONE")
    llm = _solves(llm, LP_REPLY)  # the merged lesson re-verified on the source problem
    summary = evolver(llm).evolve()
    assert summary.merged == 1 and summary.diagnosed[DUPLICATE] == 1
    assert summary.outcomes[first.id] == "duplicate: merged with it into one re-verified lesson"
    verified = store.list(status=Status.VERIFIED)
    assert [i.condition for i in verified] == ["when a share of the total is bounded", merged["condition"]]
    assert store.get(verified[1].id).provenance.evidence["merge_of"] == [first.id, second.id]
    assert {store.get(i).status for i in (first.id, second.id)} == {Status.RETIRED}


def test_duplicates_whose_source_problems_are_not_here_are_not_merged(library):
    store, index, evolver = library
    store.set_status("I0001", Status.RETIRED)
    draft = {"stage": "general_formulation", "level1": "variables", "level2": "integrality", "explanation": INTEGER}
    pair = [store.add_insight(InsightDraft(condition=c, **draft), status=Status.VERIFIED,
                              provenance={"source_tasks": ["elsewhere/x1"]})
            for c in ("The problem involves counting", "When the problem involves counting, use integer variables.")]
    index.upsert(pair)
    llm = RoutedLLM()
    summary = evolver(llm).evolve()
    assert summary.merged == 0 and llm.calls == []  # an imported library: nothing to re-verify a merge on
    assert summary.outcomes[pair[0].id].startswith("duplicate: their source problems are not in this home")


def test_a_training_solve_records_right_or_wrong_against_the_answer(library):
    store, _, evolver = library
    llm = _solves(RoutedLLM().on("check_insights", "I0001"), WRONG_LP_REPLY)
    learner = evolver(llm).learner
    run = store.start_run({"job": "test"})
    solution = learner.solve(store.get_task("toy_train/t1"), run.id, "solve", 0)
    assert solution.status == "optimal" and [i["id"] for i in solution.insights] == ["I0001"]
    outcomes = [(e.task_id, e.used, e.success) for e in store.evidence_for("I0001") if e.success is not None]
    assert outcomes == [("toy_train/t1", True, False)]  # it ran, but it was wrong: not a task-less "ran" row
