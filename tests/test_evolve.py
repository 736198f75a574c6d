"""The evolution job piece by piece, with a scripted model at the client boundary and the real
solver, SQLite and Chroma (the CLI's learn → revisit → evolve → rollback is in
tests/test_evolution_cli.py).

The problems share one model (optimum 11). The scripted model writes the right program or the
wrong one depending on the problem and on whether the lesson I0001 is in its prompt, and the
applicability check answers from a table of (condition, problem).
"""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest

from alphaopt.agent import prompts
from alphaopt.agent.retrieval import insight_dict, open_library
from alphaopt.config import load_settings
from alphaopt.learning.evolve import EvolveBusy, EvolveConfig, Evolver, evolve_lock, evolve_running
from alphaopt.learning.learn import LearnConfig, Learner
from alphaopt.learning.replay import (
    NEGATIVE,
    NEUTRAL,
    POSITIVE,
    UNRETRIEVED,
    Outcomes,
    Pair,
    Replayer,
    _Fixed,
    retrieval_scores,
)
from alphaopt.learning.scratch import Scratch
from library import InsightDraft, LibraryStore, Status
from tests.fakes import FORMULATION, LP_REPLY, WRONG_LP_REPLY, ThreadSafeLLM

MATH = "Maximize 3x + 2y subject to x + y <= 4, x + 3y <= 6 and x at most 3, with x, y non-negative."
TEXTS = {
    "t1": "A furniture plant makes chairs (x) and tables (y) from wood and labour. " + MATH,
    "t2": ("A hospital kitchen plans how many litres of soup (x) and of broth (y) to cook for the wards tonight, "
           "within its stock of vegetables and the hours of its cooks. " + MATH),
    "t3": "A furniture plant makes desks (x) and shelves (y) from wood and labour. " + MATH,
    "t4": "A furniture plant makes stools (x) and tables (y) from wood and labour. " + MATH,  # added by one test
}
CONDITION = "when the text gives an upper limit on a single decision variable"
EXPLANATION = "copy the limit exactly as stated; the common mistake is a wrong bound"


class Script:
    """The scripted model: ``helped[problem]`` is True when the lesson makes it right, False when
    it makes it wrong, None when it is right either way; ``check[condition]`` is the set of
    problems the applicability check lets the lesson in for; ``replies`` answer other prompts
    in turn."""

    def __init__(self, helped: dict[str, bool | None], check: dict[str, set[str]], *,
                 placebo: frozenset[str] = frozenset(), **replies: list[str]) -> None:
        self.helped, self.check, self.replies = helped, check, replies
        self.placebo = placebo  # problems where the placebo lesson moves the answer as I0001 does
        self.llm = ThreadSafeLLM(route=self.route, delay=0.0)

    def route(self, prompt: str, user: str) -> str | BaseException:
        problem = next((name for name, text in TEXTS.items() if text in user), None)
        if prompt == "check_insights":
            shown = re.search(r"\[I0001\] When (.*?): ", user).group(1)
            condition = next(c for c in self.check if c.removeprefix("when ") == shown)
            return "I0001" if problem in self.check[condition] else "NONE"
        lesson = "[I0001]" in user or "lesson I0001 applied" in user or (problem in self.placebo and "[I0000]" in user)
        if prompt == "formulate":
            return FORMULATION + ("\n(lesson I0001 applied)" if lesson else "")
        if prompt == "write_program":
            helped = self.helped[problem]
            return LP_REPLY if helped is None or helped == lesson else WRONG_LP_REPLY
        if self.replies.get(prompt):
            return self.replies[prompt].pop(0)
        return AssertionError(f"no scripted reply for a {prompt!r} call")

    def names(self) -> list[str]:
        return [c.prompt_name for c in self.llm.calls]


@pytest.fixture
def home(tmp_path, runner):
    settings = load_settings(home=tmp_path / "home", use_library=True, experimental={"starter_library": "none"})
    store, index = open_library(settings)
    for name in ("t1", "t2", "t3"):
        store.add_task("toy_train", name, TEXTS[name], 11.0)

    def add(condition: str = CONDITION, *, stage: str = "general_formulation", level1: str = "constraints",
            level2: str = "upper limits", sources: tuple[str, ...] = ("toy_train/t1",)):
        insight = store.add_insight(InsightDraft(stage=stage, level1=level1, level2=level2, condition=condition,
                                                 explanation=EXPLANATION, example="wrong: x <= 2 right: x <= 3"),
                                    status=Status.VERIFIED, provenance={"source_tasks": list(sources)})
        index.upsert([insight])
        return insight

    def evolver(script: Script, *, gate: bool = True, **config):
        """An evolver; ``gate=False`` turns the source gate off (recall by conditions and labels)."""
        chosen = settings if gate else settings.with_experimental(retrieval_source_similarity=0.0)
        learner = Learner(chosen, store, index, script.llm, runner, LearnConfig())
        return Evolver(learner, EvolveConfig(**config))

    yield SimpleNamespace(settings=settings, store=store, index=index, add=add, evolver=evolver)
    index.close()
    store.close()


def test_precision_and_recall_against_the_pair_labels():
    pairs = [Pair("I1", "a", POSITIVE, True), Pair("I1", "b", NEGATIVE, True), Pair("I1", "c", UNRETRIEVED, False),
             Pair("I2", "a", NEUTRAL, True)]
    assert retrieval_scores(pairs, lambda p: p.retrieved) == (0.5, 0.5)  # neutral pairs count in neither
    assert retrieval_scores(pairs, lambda p: p.label != NEGATIVE) == (1.0, 1.0)
    assert retrieval_scores(pairs[3:], lambda p: True) == (None, None)


def test_a_solve_recorded_earlier_is_reused_only_for_the_same_prompt_content_and_model(home):
    settings, store, add, evolver = home.settings, home.store, home.add, home.evolver
    insight = add()
    script = Script({"t1": True}, {CONDITION: {"t1"}})
    learner = evolver(script).learner
    run = store.start_run({"model": settings.model_name})
    t1 = store.get_task("toy_train/t1")
    lesson = insight_dict(insight)
    assert learner.solve(t1, run.id, "solve", 0, library=_Fixed([lesson])).objective == pytest.approx(11)
    learner.solve(t1, run.id, "verify_placebo", 0, [{**prompts.PLACEBO, "stage": "general_formulation"}],
                  library=_Fixed([]))  # the placebo's lesson leaves no evidence: this solve is never reused
    learner.solve(t1, run.id, "solve", 0, library=_Fixed([]))  # without it: wrong
    outcomes = Outcomes(store, settings.model_name, learner.config.correct)
    assert outcomes.get(t1, [lesson]) is True and outcomes.get(t1, []) is False
    assert Outcomes(store, "another-model", learner.config.correct).get(t1, [lesson]) is None
    # a lesson shown in the prompt is not the same solve as one shown by review
    assert Outcomes(store, settings.model_name, learner.config.correct, delivery="review").get(t1, [lesson]) is None
    reviewed = store.start_run({"model": settings.model_name, "insight_delivery": "review"})
    learner.solve(t1, reviewed.id, "solve", 0, library=_Fixed([]))
    assert Outcomes(store, settings.model_name, learner.config.correct, delivery="review").get(t1, []) is False
    assert Outcomes(store, settings.model_name, learner.config.correct, reuse=False).get(t1, [lesson]) is None
    # a new version with the same text (new evidence) is the same prompt; a new condition is not
    store.revise(insight.id, evidence={"with": 1}, reason="test: evidence only")
    assert Outcomes(store, settings.model_name, learner.config.correct).get(t1, [insight_dict(store.get(insight.id))])
    changed = store.revise(insight.id, condition="when a variable has an upper limit", reason="test")
    assert Outcomes(store, settings.model_name, learner.config.correct).get(t1, [insight_dict(changed)]) is None


def test_replay_labels_each_pair_by_solving_with_and_without(home):
    settings, store, add, evolver = home.settings, home.store, home.add, home.evolver
    add()
    script = Script({"t1": True, "t2": True, "t3": False}, {CONDITION: {"t1", "t3"}})
    learner = evolver(script).learner
    run = store.start_run({"model": settings.model_name})
    tasks = [store.get_task(f"toy_train/{n}") for n in ("t1", "t2", "t3")]
    replay = Replayer(learner, run.id, Outcomes(store, settings.model_name, learner.config.correct)).replay(tasks)
    assert replay.groups() == {"I0001": {POSITIVE: ["toy_train/t1"], UNRETRIEVED: ["toy_train/t2"],
                                         NEGATIVE: ["toy_train/t3"]}}
    metrics = replay.metrics()
    assert (metrics.right, metrics.problems, metrics.precision, metrics.recall) == (1, 3, 0.5, 0.5)
    # t1 with and without, t2 with the library (no lesson: the source gate keeps it away) and given it,
    # t3 with and without; t2's "without" is the library's own answer, solved once
    # t1 and t2 each once more with the placebo lesson in I0001's place (wrong there: they stay labelled)
    assert (replay.solved, replay.reused) == (8, 0) and replay.placebo == []
    kinds = [(a.task_id[-2:], a.kind) for a in store.attempts(run_id=run.id)]
    assert kinds == [("t1", "evolve_with"), ("t1", "evolve_without"), ("t1", "evolve_placebo"), ("t2", "evolve_with"),
                     ("t2", "evolve_given"), ("t2", "evolve_placebo"), ("t3", "evolve_with"), ("t3", "evolve_without")]
    again = Replayer(learner, run.id, Outcomes(store, settings.model_name, learner.config.correct)).replay(tasks)
    # all from the records but the placebo's solves (its lesson leaves no evidence to find them by)
    assert again.groups() == replay.groups() and (again.solved, again.reused) == (2, 6)
    assert script.names().count("write_program") == 10


def test_a_pair_the_placebo_lesson_turns_right_too_is_neutral(home):
    settings, store, add, evolver = home.settings, home.store, home.add, home.evolver
    add()
    # on t1 (recalled) and t2 (not recalled) any lesson in the prompt turns the answer right; on t3 only I0001 does
    store.add_task("toy_train", "t4", TEXTS["t4"], 11.0)
    script = Script({"t1": True, "t2": True, "t3": False, "t4": True}, {CONDITION: {"t1", "t3"}},
                    placebo=frozenset({"t1", "t2"}))
    learner = evolver(script).learner
    run = store.start_run({"model": settings.model_name})
    tasks = [store.get_task(f"toy_train/{n}") for n in ("t1", "t2", "t3", "t4")]
    replay = Replayer(learner, run.id, Outcomes(store, settings.model_name, learner.config.correct)).replay(tasks)
    assert replay.groups() == {"I0001": {NEUTRAL: ["toy_train/t1", "toy_train/t2"], NEGATIVE: ["toy_train/t3"],
                                         UNRETRIEVED: ["toy_train/t4"]}}
    assert replay.placebo_groups() == {"I0001": ["toy_train/t1", "toy_train/t2"]}
    assert [p.retrieved for p in replay.placebo] == [True, False]
    # no positive pair is left, and the one unretrieved is t4's
    metrics = replay.metrics()
    assert (metrics.positive, metrics.unretrieved, metrics.neutral, metrics.precision, metrics.recall) == (
        0, 1, 2, 0.0, 0.0)


def test_a_problem_the_source_gate_kept_away_becomes_a_source_when_that_wins(home):
    store, add, evolver = home.store, home.add, home.evolver
    add()
    narrow = "when a plant or a kitchen limits one of its products"
    script = Script({"t1": True, "t2": True, "t3": False}, {CONDITION: {"t1", "t3"}, narrow: {"t1", "t2"}},
                    evolve_condition=[narrow])
    summary = evolver(script, candidates=1).evolve()
    report = summary.rounds[0]
    assert report.pairs["I0001"] == {POSITIVE: ["toy_train/t1"], UNRETRIEVED: ["toy_train/t2"],
                                     NEGATIVE: ["toy_train/t3"]}
    # t2 is far from t1: no condition alone reaches it, so each variant is also tried with t2 as a source
    # (a source problem gets its insight without the model's check: the current condition reaches t2 so)
    scores = store.get("I0001").provenance.evidence["evolve"]["scores"]
    assert [(s["origin"], s["add_sources"], s["kept"] + s["excluded"] + s["reached"]) for s in scores] == [
        ("current", [], 1), ("candidate 1", [], 2), ("current", ["toy_train/t2"], 2),
        ("candidate 1", ["toy_train/t2"], 3)]
    insight = store.get("I0001")
    assert insight.condition == narrow and insight.provenance.source_tasks == ("toy_train/t1", "toy_train/t2")
    assert report.retagged == {}  # recalled by its source problems: its label plays no part
    assert (report.after.precision, report.after.recall, report.after.right) == (1.0, 1.0, 3)
    assert [h.insight_id for h in home.index.recall(narrow)] == ["I0001"]


def test_dry_run_reports_and_changes_nothing(home):
    store, add, evolver = home.store, home.add, home.evolver
    add()
    script = Script({"t1": True, "t2": True, "t3": False}, {CONDITION: {"t1", "t3"}})
    version = store.library_version()
    summary = evolver(script).evolve(dry_run=True)
    assert summary.rounds[0].before.negative == 1 and summary.rounds[0].after is None
    assert "evolve_condition" not in script.names() and store.library_version() == version
    run = store.get_run(summary.run_id)
    assert run.settings["dry_run"] is True and run.counters["rounds"][0]["before"]["recall"] == 0.5
    assert run.counters["step"] == ""  # while it ran: "round 1: replayed 3 of 3 problems", and so on


def test_candidates_that_do_not_beat_the_condition_leave_the_library_as_it_was(home):
    store, add, evolver = home.store, home.add, home.evolver
    add(level1="objective", level2="objective sense and terms")  # a label retrieval searches for t1: no re-tag
    wide, narrow = "when any limit is given", "when nothing is limited"
    # t1, its source, gets it whatever the condition: each candidate keeps t1 and, like the condition, lets t3 in
    script = Script({"t1": True, "t2": None, "t3": False},
                    {CONDITION: {"t1", "t3"}, wide: {"t1", "t3"}, narrow: {"t3"}},
                    evolve_condition=[wide, narrow, CONDITION])  # the third repeats the condition: not tried
    version = store.library_version()
    summary = evolver(script, retire_net_harm=5).evolve()
    assert "I0001" not in summary.rounds[0].refined and summary.rounds[0].after is None
    assert store.library_version() == version and len(store.versions("I0001")) == 1  # the trials stayed in the copy
    assert next(c.user for c in script.llm.calls if c.prompt_name == "evolve_condition").count(TEXTS["t3"]) == 1
    assert script.names().count("evolve_condition") == 3
    # the first candidate greedy, the others sampled with their own seeds
    calls = [c for c in script.llm.calls if c.prompt_name == "evolve_condition"]
    assert [(c.temperature, c.seed) for c in calls] == [(None, None), (0.7, 1), (0.7, 2)]


def test_an_insight_that_misleads_and_that_no_condition_keeps_away_is_retired(home):
    store, index, add, evolver = home.store, home.index, home.add, home.evolver
    add(sources=("toy_train/t3",))
    store.add_task("toy_train", "t4", TEXTS["t4"], 11.0)
    other = "when a plant makes furniture"
    script = Script({"t1": False, "t2": None, "t3": None, "t4": False}, {CONDITION: {"t1", "t4"}, other: {"t1", "t4"}},
                    evolve_condition=[other])
    summary = evolver(script, candidates=1).evolve()
    report = summary.rounds[0]
    # its source t3 gets it without the check (right either way)
    assert report.pairs["I0001"] == {NEGATIVE: ["toy_train/t1", "toy_train/t4"], NEUTRAL: ["toy_train/t3"]}
    assert report.retired == ["I0001"] and store.get("I0001").status == Status.RETIRED
    assert store.get("I0001").provenance.evidence["evolve"]["negative"] == ["toy_train/t1", "toy_train/t4"]
    assert all(h.insight_id != "I0001" for h in index.recall(CONDITION))
    assert report.after.right == 4 and report.after.precision is None  # nothing recalled any more
    assert "constraints/upper limits" in " ".join(report.labels_retired)


def test_a_new_label_is_named_when_no_label_of_its_stage_is_searched_for_its_problems(home):
    store, add, evolver = home.store, home.add, home.evolver
    add(stage="code_implementation", level1="pyomo api", level2="misc")
    new_label = {"level1": "furniture production", "level2": "chairs and tables",
                 "definition": "A plant makes products such as chairs and tables and the text gives an upper limit on "
                               "a single decision variable; the program copies that limit exactly as stated."}
    # without the gate the condition is too far from t1 for recall: t1 is unretrieved, and the one
    # candidate the model writes is the condition again (not tried)
    script = Script({"t1": True, "t2": None, "t3": None}, {CONDITION: {"t1"}}, evolve_label=[json.dumps(new_label)],
                    evolve_condition=[CONDITION])
    summary = evolver(script, gate=False, candidates=1).evolve()
    moved = summary.rounds[0].retagged["I0001"]
    assert moved["created"] and moved["to"] == "code_implementation/furniture production/chairs and tables"
    insight = store.get("I0001")
    assert (insight.stage.value, insight.level1, insight.level2) == ("code_implementation", "furniture production",
                                                                     "chairs and tables")
    label = store.label(("code_implementation", "furniture production", "chairs and tables"))
    assert label.definition == new_label["definition"] and label.display == "chairs and tables"
    assert summary.rounds[0].labels_retired == ["code_implementation/pyomo api/misc"]
    label_prompt = next(c.user for c in script.llm.calls if c.prompt_name == "evolve_label")
    assert TEXTS["t1"] in label_prompt and "code_implementation / pyomo api / indexing" in label_prompt
    reasons = [v.reason for v in store.library_versions(since=summary.library_version)]
    assert all(r.startswith(f"evolve {summary.run_id} round 1") for r in reasons)
    store.rollback(summary.library_version)
    assert store.get("I0001").level1 == "pyomo api"
    assert ("code_implementation", "furniture production", "chairs and tables") not in {
        (lab.stage.value, lab.level1, lab.level2) for lab in store.labels()}


@pytest.mark.parametrize("named", [
    {"level1": "astronomy", "level2": "comets", "definition": "Orbits of comets around distant stars."},
    # near t1's wording, but it does not describe the lesson
    {"level1": "furniture production", "level2": "chairs and tables",
     "definition": "A furniture plant makes chairs and tables from wood and labour, with an upper limit on how many "
                   "of one product it makes."},
], ids=["not searched for its problems", "not near its lesson"])
def test_a_named_label_that_does_not_fit_is_not_created(home, named):
    store, add, evolver = home.store, home.add, home.evolver
    add(stage="code_implementation", level1="pyomo api", level2="misc")
    script = Script({"t1": True, "t2": None, "t3": None}, {CONDITION: {"t1"}}, evolve_label=[json.dumps(named)],
                    evolve_condition=[CONDITION])
    summary = evolver(script, gate=False, candidates=1).evolve()
    assert summary.rounds[0].retagged == {} and store.get("I0001").level1 == "pyomo api"
    assert named["level1"] not in {lab.level1 for lab in store.labels(include_retired=True)}


def test_the_scratch_copy_retrieves_as_the_library_does(home):
    settings, store, index, add, evolver = home.settings, home.store, home.index, home.add, home.evolver
    add()
    script = Script({}, {CONDITION: {"t1", "t3"}, "when x": {"t2"}})
    learner = evolver(script).learner
    t2 = store.get_task("toy_train/t2")
    with Scratch(settings, store, index) as scratch:
        assert [lab.key for lab in scratch.store.labels()] == [lab.key for lab in store.labels()]
        assert scratch.chooses("I0001", store.get_task("toy_train/t3"), script.llm, "r") is True
        assert scratch.chooses("I0001", t2, script.llm, "r") is False  # the source gate
        scratch.change("I0001", condition="when x", source_tasks=["toy_train/t1", "toy_train/t2"], sources=[t2])
        assert scratch.chooses("I0001", t2, script.llm, "r") is True
    assert store.get("I0001").condition == CONDITION and len(store.versions("I0001")) == 1
    assert learner.retriever.retrieve(t2.text, llm=script.llm, run_id="r") == []


def test_one_evolution_at_a_time_per_home_and_killed_runs_are_closed(home):
    settings, store, evolver = home.settings, home.store, home.evolver
    orphan = store.start_run({"job": "evolve", "pid": 2**22 + 12345})  # no such process
    script = Script({"t1": None}, {})
    with evolve_lock(settings.home):
        assert evolve_running(settings.home).startswith("pid ")
        with pytest.raises(EvolveBusy, match="already running on the library"):
            evolver(script).evolve()
    assert evolve_running(settings.home) is None
    summary = evolver(script, max_problems=1).evolve(dry_run=True)
    assert store.get_run(orphan.id).status.value == "failed"
    assert store.get_run(summary.run_id).status.value == "finished"


def test_one_evolution_at_a_time_per_library_when_homes_share_it(home):
    # another home (or machine) evolving the same library holds the store's evolve lock
    script = Script({"t1": None}, {})
    with LibraryStore(home.store.url.render_as_string(hide_password=False)) as elsewhere, elsewhere.evolve_lock():
        with pytest.raises(EvolveBusy, match="already running on this library"):
            home.evolver(script).evolve()
        assert evolve_running(home.settings.home) is None  # this home's own lock was given back
    summary = home.evolver(script, max_problems=1).evolve(dry_run=True)
    assert home.store.get_run(summary.run_id).status.value == "finished"


def test_a_stopped_run_is_recorded_as_stopped(home):
    settings, store, add, evolver = home.settings, home.store, home.add, home.evolver
    add()
    script = Script({}, {CONDITION: {"t1"}})
    script.route = lambda prompt, user: KeyboardInterrupt("stopped by signal 15")  # type: ignore[method-assign]
    script.llm.route = script.route
    with pytest.raises(KeyboardInterrupt):
        evolver(script).evolve()
    run = store.runs()[-1]
    assert run.status.value == "stopped" and "stopped by signal 15" in run.counters["error"]
    assert evolve_running(settings.home) is None  # the lock went with the run


INTEGER = ("declare these quantities with domain=pyo.NonNegativeIntegers; the common mistake is continuous "
           "variables, whose optimum is fractional and differs from the whole-number optimum")


def test_a_lesson_learned_twice_in_other_words_is_merged_first(home):
    store, index, evolver = home.store, home.index, home.evolver
    draft = {"stage": "general_formulation", "level1": "variables", "level2": "integrality", "explanation": INTEGER}
    first = store.add_insight(InsightDraft(condition="The problem involves counting, buying, or choosing", **draft),
                              status=Status.VERIFIED, provenance={"source_tasks": ["toy_train/t1"]})
    second = store.add_insight(InsightDraft(
        condition="When the problem involves counting, buying, or choosing, a program should use integer variables.",
        **draft), status=Status.VERIFIED, provenance={"source_tasks": ["toy_train/t1"]})
    index.upsert([first, second])
    merged = {**draft, "condition": "when things are counted, bought or chosen", "example": ""}
    script = Script({"t1": None}, {}, merge=[json.dumps(merged)])
    lines: list[str] = []
    run = store.start_run({"job": "evolve"})
    assert evolver(script).merge_duplicates(run.id, lines.append) == 1
    assert "merged into one re-verified lesson" in lines[0]
    assert [i.condition for i in store.list(status=Status.VERIFIED)] == [merged["condition"]]
    assert {store.get(i).status for i in (first.id, second.id)} == {Status.RETIRED}


def test_duplicates_whose_source_problems_are_not_here_are_not_merged(home):
    store, index, evolver = home.store, home.index, home.evolver
    draft = {"stage": "general_formulation", "level1": "variables", "level2": "integrality", "explanation": INTEGER}
    pair = [store.add_insight(InsightDraft(condition=c, **draft), status=Status.VERIFIED,
                              provenance={"source_tasks": ["elsewhere/x1"]})
            for c in ("The problem involves counting", "When the problem involves counting, use integer variables.")]
    index.upsert(pair)
    script = Script({}, {})
    lines: list[str] = []
    assert evolver(script).merge_duplicates("R0000", lines.append) == 0
    assert script.llm.calls == [] and "not all held with an answer" in lines[0]
