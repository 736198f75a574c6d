"""Every learning path with a scripted LLM, the real solver, SQLite and Chroma."""

from __future__ import annotations

import json

import pytest

from alphaopt.agent import prompts
from alphaopt.agent.retrieval import open_library
from alphaopt.config import load_settings
from alphaopt.errors import LLMError
from alphaopt.learning.funnel import LearningStopped
from alphaopt.learning.learn import LearnConfig, Learner
from library import InsightDraft, Status
from tests.fakes import LP_REPLY, WRONG_LP_REPLY, RoutedLLM, ThreadSafeLLM, program

PROBLEM = "Maximize 3x + 2y subject to x + y <= 4, x + 3y <= 6 and x at most 3, with x, y non-negative."
ITEM = ("toy_train", "t1", PROBLEM, 11.0)
DRAFT = {"insights": [{"stage": "general_formulation", "level1": "constraints", "level2": "upper limits",
                       "condition": "the text gives an upper limit on a single decision variable",
                       "explanation": "copy the limit exactly as stated; the common mistake is a wrong bound",
                       "example": "wrong: x <= 2 right: x <= 3"}]}
CODE_DRAFT = {"insights": [{"stage": "code_implementation", "level1": "pyomo api", "level2": "attributes",
                            "condition": "the program refers to model components",
                            "explanation": "only use components that were declared on the model",
                            "example": "wrong: model.z right: model.x"}]}
BROKEN = program("model = pyo.ConcreteModel()\nmodel.x = pyo.Var(domain=pyo.NonNegativeReals)\n"
                 "model.obj = pyo.Objective(expr=model.z)")


@pytest.fixture
def setup(tmp_path, runner):
    # no line asked for when a scripted program leaves out a number of its text (the toy problems'
    # programs do); tests/test_learning_contrasts.py learns from such a patch
    settings = load_settings(home=tmp_path / "home", use_library=True, experimental={"text_rewrites": False})
    store, index = open_library(settings)

    def learner(llm, **config):
        # one solve per arm, no placebo arm and no single-line variants unless a test asks for them:
        # the tests below script one reply per solve (tests/test_learning_*.py cover the defaults)
        cheap = {"k": 1, "placebo": False, "line_variants": False}
        return Learner(settings, store, index, llm, runner, LearnConfig(**{**cheap, **config}))

    yield store, index, learner
    index.close()
    store.close()


def wrong_then(llm: RoutedLLM) -> RoutedLLM:
    """The first solve (without candidates) writes the wrong bound."""
    return llm.on("write_program", WRONG_LP_REPLY)


def test_exploration_extraction_and_counterfactual_accept(setup):
    store, index, learner = setup
    llm = wrong_then(RoutedLLM())
    llm.on("explore", LP_REPLY).on("extract", json.dumps(DRAFT))
    llm.on("write_program", LP_REPLY)  # the 'with' arm
    llm.on("write_program", WRONG_LP_REPLY)  # the placebo arm: still wrong
    summary = learner(llm, explore_tries=1, placebo=True).learn([ITEM])
    assert (summary.seen, summary.added, summary.verified, summary.rejected) == (1, 1, 1, 0)
    assert summary.solved_before == 0 and summary.solved_after == 1
    insight = store.get("I0001")
    assert insight.status == Status.VERIFIED
    assert insight.provenance.evidence == {"without": 0, "with": 1, "placebo": 0, "k": 1, "criterion": "final",
                                           "code_only": False, "source": "explore",
                                           "solves": {"without": [0], "with": [1], "placebo": [0]}, "skipped": 0}
    placebo_prompt = [c for c in llm.calls if c.prompt_name == "write_program"][-1].user
    assert "[I0000]" in placebo_prompt and "[I0001]" not in placebo_prompt
    assert store.evidence_for("I0000") == []  # the placebo is no insight of the library
    assert insight.provenance.source_tasks == ("toy_train/t1",)
    assert insight.provenance.prompt_version.startswith("extract:")
    # the target is shown to the explorer, never to the solve path
    explore = next(c for c in llm.calls if c.prompt_name == "explore")
    assert "The correct optimal objective value is 11" in explore.user
    assert all("11" not in c.user.replace(PROBLEM, "") for c in llm.calls if c.prompt_name == "write_program")
    # the verification run had the candidate in its prompt
    with_arm = [c for c in llm.calls if c.prompt_name == "write_program"][-2]
    assert "[I0001]" in with_arm.user
    assert [h.insight_id for h in index.recall("an upper limit on one variable")] == ["I0001"]
    kinds = [a.kind for a in store.attempts(task_id="toy_train/t1")]
    # the integer flip of the wrong program (objective 8, not 11) is tried first, without a model call
    assert kinds == ["solve", "explore_integrality", "explore", "verify_with", "verify_placebo", "done"]


def test_a_candidate_is_rejected_when_a_placebo_lesson_does_as_well(setup):
    store, index, learner = setup
    llm = wrong_then(RoutedLLM())
    llm.on("explore", LP_REPLY).on("extract", json.dumps(DRAFT))
    llm.on("write_program", LP_REPLY, LP_REPLY)  # with, and placebo: right
    summary = learner(llm, explore_tries=1, placebo=True).learn([ITEM])
    assert (summary.verified, summary.rejected) == (0, 1)
    insight = store.get("I0001")
    assert insight.status == Status.RETIRED and insight.provenance.evidence["placebo"] == 1
    assert store.attempts(task_id="toy_train/t1", kind="done")[0].status == (
        "unsolved: candidates rejected: a placebo did as well")
    assert index.recall("an upper limit on one variable") == []


CONTINUOUS_REPLY = program("""
model = pyo.ConcreteModel()
model.x = pyo.Var(domain=pyo.NonNegativeReals)
model.y = pyo.Var(domain=pyo.NonNegativeReals)
model.obj = pyo.Objective(expr=model.x + model.y, sense=pyo.maximize)
model.c1 = pyo.Constraint(expr=2 * model.x + 2 * model.y <= 7)
""")  # 3.5; with whole units 3


INTEGRAL_REPLY = CONTINUOUS_REPLY.replace("NonNegativeReals", "NonNegativeIntegers")


def _flip(first: str, right: str, condition: str) -> RoutedLLM:
    """The first program is wrong only in its integrality; the model writes ``condition``; the
    'with' arm of the check writes ``right``."""
    llm = RoutedLLM().on("write_program", first)
    llm.on("integrality_condition", condition)
    return llm.on("write_program", right)


def test_exploration_first_flips_integrality_without_a_model_call(setup):
    store, _, learner = setup
    item = ("toy_train", "t9", "How many whole boxes x and y fit in 7 units of space, each box 2 units?", 3.0)
    llm = _flip(CONTINUOUS_REPLY, INTEGRAL_REPLY, '"when the problem asks how many whole items to pack"')
    summary = learner(llm, explore_tries=2).learn([item])
    assert summary.verified == 1 and "explore" not in llm.prompt_names and "extract" not in llm.prompt_names
    flips = [a for a in store.attempts(task_id="toy_train/t9") if a.kind == "explore_integrality"]
    assert [(a.status, a.objective) for a in flips] == [("optimal", pytest.approx(3.0))]
    ask = next(c for c in llm.calls if c.prompt_name == "integrality_condition")
    assert "the correction made the continuous variables integer" in ask.user
    assert "3" not in ask.user.split("</problem>")[1]
    insight = store.get("I0001")
    assert insight.condition == "when the problem asks how many whole items to pack"
    assert (insight.stage.value, insight.level1, insight.level2) == ("general_formulation", "variables", "integrality")
    assert "NonNegativeIntegers" in insight.explanation
    assert insight.example.startswith("wrong: model.x = pyo.Var(domain=pyo.NonNegativeReals)")
    assert insight.provenance.prompt_version.startswith("integrality_condition:")


def test_a_flip_to_continuous_says_so_in_the_insight(setup):
    store, _, learner = setup
    item = ("toy_train", "t8", "How much of x and y fits in 7 units of space, each unit 2?", 3.5)
    llm = _flip(INTEGRAL_REPLY, CONTINUOUS_REPLY, "when amounts can be split into fractions")
    summary = learner(llm, explore_tries=0).learn([item])
    assert summary.verified == 1
    insight = store.get("I0001")
    assert "NonNegativeReals" in insight.explanation and "NonNegativeIntegers" not in insight.explanation


def test_an_integrality_condition_that_names_the_problem_is_put_in_general_words(setup):
    store, _, learner = setup
    item = ("toy_train", "t9", "How many of the 12 boxes x and y fit in 7 units of space?", 3.0)
    llm = RoutedLLM().on("write_program", *[CONTINUOUS_REPLY] * 6)  # the check's solves too: all wrong
    llm.on("integrality_condition", "when packing 12 boxes")
    llm.on("generalize", "when packing 12 whole boxes into a space")  # still the problem's number
    learner(llm, explore_tries=0).learn([item])
    assert llm.prompt_names.count("generalize") == 1
    assert [i.condition for i in store.list(status=None)] == ["when packing a stated number whole boxes into a space"]


def test_a_condition_copied_from_the_prompts_instructions_is_dropped(setup):
    store, _, learner = setup
    copied = {"insights": [{**DRAFT["insights"][0], "condition": "when the problem itself is nonlinear (a price "
                            "and a quantity both decided, a ratio of two decisions, a square)"}]}
    llm = wrong_then(RoutedLLM())
    llm.on("explore", LP_REPLY).on("extract", json.dumps(copied))
    summary = learner(llm, explore_tries=1).learn([ITEM])
    assert summary.reached == 1 and summary.added == 0 and store.list(status=None) == []


@pytest.mark.parametrize(("text", "copied"), [
    ("when the problem itself is nonlinear (a price and a quantity both decided)", True),
    ("When the problem itself is NONLINEAR: a price and a quantity, both decided", True),  # case and punctuation
    ("the text gives an upper limit on a single decision variable", False),
    ("when the problem itself is nonlinear", False),  # a few words in common are no copy
])
def test_copies_instructions(text, copied):
    assert prompts.copies_instructions(text) is copied


def test_counterfactual_reject_retires_candidates(setup):
    store, index, learner = setup
    llm = wrong_then(RoutedLLM())
    llm.on("explore", LP_REPLY).on("extract", json.dumps(DRAFT))
    llm.on("write_program", WRONG_LP_REPLY)  # no lift with the candidate
    summary = learner(llm, explore_tries=1).learn([ITEM])
    assert (summary.added, summary.verified, summary.rejected) == (1, 0, 1)
    assert store.get("I0001").status == Status.RETIRED and index.recall("upper limit") == []


def test_hardcoded_answer_is_rejected_and_not_run(setup):
    store, _, learner = setup
    cheat = program("model = pyo.ConcreteModel()\nmodel.x = pyo.Var()\n"
                    "model.obj = pyo.Objective(expr=model.x * 0 + 11)")
    llm = wrong_then(RoutedLLM()).on("explore", cheat)
    summary = learner(llm, explore_tries=1).learn([ITEM])
    assert summary.added == 0
    explore = [a for a in store.attempts(task_id="toy_train/t1") if a.kind == "explore"]
    assert [a.status for a in explore] == ["rejected: writes the target value"]


def test_repaired_error_becomes_a_code_insight(setup):
    store, _, learner = setup
    llm = RoutedLLM().on("write_program", BROKEN).on("repair", WRONG_LP_REPLY)
    llm.on("extract_code", "Here it is:\n```json\n" + json.dumps(CODE_DRAFT) + "\n```")
    llm.on("write_program", LP_REPLY)  # with the code insight: right first time
    summary = learner(llm, explore_tries=0).learn([ITEM])
    assert summary.verified == 1
    insight = store.get("I0001")
    assert insight.stage.value == "code_implementation" and insight.provenance.evidence["code_only"] is True
    assert insight.provenance.evidence["criterion"] == "runs"  # no solve was right: its program must run
    extract = next(c for c in llm.calls if c.prompt_name == "extract_code")
    assert "AttributeError" in extract.user
    assert "Categories (level1 / level2):" in extract.user and "/" in extract.user.split("Categories")[-1]
    assert "<code>" in extract.user and "..." not in extract.user  # fields described, no template to copy


def test_a_code_lesson_where_no_solve_was_right_must_make_the_first_program_run(setup):
    store, _, learner = setup
    llm = RoutedLLM().on("write_program", BROKEN).on("repair", WRONG_LP_REPLY)  # runs after a repair, wrong
    llm.on("extract_code", json.dumps(CODE_DRAFT))
    llm.on("write_program", WRONG_LP_REPLY)  # with the code insight: it runs at once, still the wrong model
    llm.on("write_program", BROKEN)  # the placebo arm: the same error again
    summary = learner(llm, explore_tries=0, placebo=True).learn([ITEM])
    assert summary.verified == 1
    assert llm.prompt_names.count("repair") == 1 and "diagnose_program" not in llm.prompt_names  # first programs only
    evidence = store.get("I0001").provenance.evidence
    assert (evidence["criterion"], evidence["without"], evidence["with"], evidence["placebo"]) == ("runs", 0, 1, 0)
    assert store.attempts(task_id="toy_train/t1")[-1].status == "learned"


def test_a_code_lesson_judged_by_a_running_program_needs_one_that_never_ran_without_it(setup):
    store, _, learner = setup
    llm = RoutedLLM().on("write_program", BROKEN, WRONG_LP_REPLY)  # without it: the sampled program runs
    llm.on("repair", WRONG_LP_REPLY, WRONG_LP_REPLY).on("extract_code", json.dumps(CODE_DRAFT))
    summary = learner(llm, explore_tries=0, k=2).learn([ITEM])
    assert summary.verified == 0
    evidence = store.get("I0001").provenance.evidence
    assert (evidence["criterion"], evidence["without"], evidence["with"]) == ("runs", 1, 0)
    assert llm.prompt_names.count("write_program") == 2  # rejected before any solve with it


def test_a_code_lesson_is_rechecked_by_what_its_first_check_counted(setup):
    store, _, learner = setup
    llm = RoutedLLM().on("write_program", BROKEN).on("repair", WRONG_LP_REPLY)
    llm.on("extract_code", json.dumps(CODE_DRAFT)).on("write_program", WRONG_LP_REPLY)
    learner(llm, explore_tries=0).learn([ITEM])
    insight = store.get("I0001")
    assert insight.status == Status.VERIFIED and insight.provenance.evidence["criterion"] == "runs"
    again = RoutedLLM().on("write_program", BROKEN, WRONG_LP_REPLY, BROKEN)  # without, with, placebo
    evidence = learner(again).recheck(insight, store.start_run({}).id)
    assert (evidence["criterion"], evidence["without"], evidence["with"], evidence["placebo"], evidence["kept"]) == (
        "runs", 0, 1, 0, True)  # judged as first checked: a wrong answer does not retire a lesson about code
    assert "repair" not in again.prompt_names  # only the first program counts
    assert store.get("I0001").status == Status.VERIFIED
    # two solves an arm: a program that ran once without it is enough to not keep it (runs is a weak sign)
    once = RoutedLLM().on("write_program", WRONG_LP_REPLY, WRONG_LP_REPLY, BROKEN, BROKEN, WRONG_LP_REPLY, BROKEN)
    evidence = learner(once, k=2).recheck(insight, store.start_run({}).id)
    assert (evidence["without"], evidence["with"], evidence["placebo"], evidence["kept"]) == (1, 2, 0, False)


def test_placeholder_labels_and_an_empty_example_are_mended(setup):
    store, _, learner = setup
    lazy = {"insights": [{**CODE_DRAFT["insights"][0], "level1": "category", "level2": "subcategory",
                          "example": "wrong: ... right: ..."}]}
    llm = RoutedLLM().on("write_program", BROKEN).on("repair", WRONG_LP_REPLY)
    llm.on("extract_code", json.dumps(lazy))
    llm.on("write_program", LP_REPLY)
    summary = learner(llm, explore_tries=0).learn([ITEM])
    assert summary.added == 1
    insight = store.get("I0001")
    code_labels = {(lab.level1, lab.level2) for lab in store.labels() if lab.stage.value == "code_implementation"}
    assert (insight.level1, insight.level2) in code_labels  # the nearest real label, not the placeholder
    # the example is the diff of the broken and the repaired program
    assert insight.example.startswith("wrong: model.obj = pyo.Objective(expr=model.z") and "right: " in insight.example


@pytest.mark.parametrize(("example", "informative"), [
    ("wrong: x <= 2 right: x <= 3", True), ("wrong: ... right: ...", False), ("wrong: a right: a", False),
    ("", False), ("use <= for 'at most'", True)])
def test_an_example_must_say_something(example, informative):
    from alphaopt.learning.drafts import _informative

    assert _informative(example) is informative


def test_diff_example():
    from alphaopt.learning.drafts import diff_example

    wrong = "a = 1\n# note\nb = 2\nc = 3"
    right = "a = 1\nb = 5\nc = 3\nd = 4"
    assert diff_example(wrong, right) == "wrong: b = 2 right: b = 5; d = 4"
    assert diff_example("a = 1", "a = 1") == ""


def test_already_solved_problem_learns_nothing(setup):
    store, _, learner = setup
    llm = RoutedLLM().on("write_program", LP_REPLY)
    summary = learner(llm).learn([ITEM])
    assert summary.solved_before == 1 and summary.added == 0 and store.list(status=None) == []


def test_retry_unsolved_learns_again_only_from_problems_that_ended_unsolved(setup):
    _, _, learner = setup
    solved = ("toy_train", "t2", PROBLEM + " (again)", 11.0)
    llm = wrong_then(RoutedLLM()).on("write_program", LP_REPLY)
    first = learner(llm, explore_tries=0).learn([ITEM, solved])
    assert (first.seen, first.solved_before) == (2, 1)
    assert learner(RoutedLLM()).ended(["unsolved"]) == {"toy_train/t1"}
    assert learner(RoutedLLM()).ended(["solved"]) == {"toy_train/t2"}
    again = learner(RoutedLLM(), explore_tries=0).learn([ITEM, solved])
    assert (again.seen, again.skipped) == (0, 2)  # a plain rerun resumes: nothing to do
    llm = RoutedLLM().on("write_program", LP_REPLY)  # the pipeline got better
    retried = learner(llm, explore_tries=0).learn([ITEM, solved], revisit=["unsolved"])
    assert (retried.seen, retried.skipped, retried.solved_before) == (1, 1, 1)
    assert learner(RoutedLLM()).ended(["unsolved"]) == set()


def test_revisit_solved_solves_again_with_the_library_and_records_the_evidence(setup):
    store, index, learner = setup
    solved = ("toy_train", "t2", PROBLEM + " (again)", 11.0)
    llm = RoutedLLM().on("write_program", LP_REPLY)
    assert learner(llm, explore_tries=0).learn([solved]).solved_before == 1
    near = "when the problem maximizes 3x + 2y subject to limits on x + y, x + 3y and on x alone"
    insight = store.add_insight(InsightDraft(**{**DRAFT["insights"][0], "condition": near}), status=Status.VERIFIED,
                                provenance={"source_tasks": ["x/y"]})
    index.upsert([insight])
    # now the library's insight is chosen, and the answer comes out wrong with it
    llm = wrong_then(RoutedLLM().on("check_insights", insight.id))
    revisited = learner(llm, explore_tries=0).learn([solved], revisit=["solved"])
    assert (revisited.seen, revisited.solved_before) == (1, 0)
    judged = [(e.task_id, e.used, e.success) for e in store.evidence_for(insight.id) if e.task_id]
    assert judged == [("toy_train/t2", True, False)]


def test_near_duplicate_is_merged_and_reverified(setup):
    store, _, learner = setup
    second = ("toy_train", "t2", PROBLEM + " (again)", 11.0)
    llm = RoutedLLM()
    for _ in range(2):
        wrong_then(llm).on("explore", LP_REPLY).on("extract", json.dumps(DRAFT))
        llm.on("write_program", LP_REPLY)
    # t2 nearly copies t1, so t1's verified lesson is chosen for t2's solves without the model's check
    merged = dict(DRAFT["insights"][0], condition="the text limits one decision variable from above")
    llm.on("merge", json.dumps(merged))
    for _ in range(2):  # re-verification on both source problems
        llm.on("write_program", LP_REPLY)
    summary = learner(llm, explore_tries=1).learn([ITEM, second])
    assert summary.merged == 1
    assert [i.id for i in store.list(status="verified")] == ["I0003"]
    assert store.get("I0003").provenance.source_tasks == ("toy_train/t1", "toy_train/t2")
    assert {store.get(i).status for i in ("I0001", "I0002")} == {Status.RETIRED}
    assert store.get("I0003").provenance.evidence == {"merge_of": ["I0002", "I0001"], "sources": 2, "with": 2}
    assert "check_insights" not in llm.prompt_names
    reverified = [c.user for c in llm.calls if c.prompt_name == "write_program"][-2:]
    assert all("[new]" in p and "[I0001]" not in p and "[I0002]" not in p for p in reverified)  # no member again


def test_no_merge_with_an_imported_insight_whose_sources_have_no_answer(setup):
    store, index, learner = setup
    store.add_task("elsewhere", "x1", "A shipping company routes containers between ports at least cost.")
    imported = store.add_insight(InsightDraft(**DRAFT["insights"][0]), status=Status.VERIFIED,
                                 provenance={"source_tasks": ["elsewhere/x1"]})  # as an import brings it
    index.upsert([imported])
    llm = wrong_then(RoutedLLM())
    llm.on("explore", LP_REPLY).on("extract", json.dumps(DRAFT))
    llm.on("write_program", LP_REPLY)
    summary = learner(llm, explore_tries=1).learn([ITEM])
    assert (summary.verified, summary.merged) == (1, 0)  # it could not be re-verified on x1: no merge
    assert "merge" not in llm.prompt_names and "check_insights" not in llm.prompt_names  # x1 is unlike t1
    assert {i.id for i in store.list(status="verified")} == {imported.id, "I0002"}


def test_crash_mid_run_then_resume(setup):
    store, _, learner = setup
    second = ("toy_train", "t2", PROBLEM + " (again)", 11.0)
    llm = RoutedLLM().on("write_program", LP_REPLY)  # t1 solved
    wrong_then(llm).on("explore", LP_REPLY).on("extract", json.dumps(DRAFT))

    def die(_messages):
        raise LLMError("endpoint went away")

    llm.on("write_program", die)  # crash during t2's verification
    with pytest.raises(LLMError):
        learner(llm, explore_tries=1).learn([ITEM, second])
    assert store.get("I0001").status == Status.CANDIDATE  # left half-done by the crash

    llm2 = wrong_then(RoutedLLM()).on("explore", LP_REPLY).on("extract", json.dumps(DRAFT))
    llm2.on("write_program", LP_REPLY)
    summary = learner(llm2, explore_tries=1).learn([ITEM, second])
    assert summary.skipped == 1 and summary.seen == 1 and summary.verified == 1
    assert store.get("I0001").status == Status.RETIRED  # the leftover candidate
    assert store.get("I0002").status == Status.VERIFIED


def test_token_budget_stops_the_run(setup):
    store, _, learner = setup
    second = ("toy_train", "t2", PROBLEM + " (again)", 11.0)
    llm = RoutedLLM().on("write_program", LP_REPLY)
    summary = learner(llm, max_tokens=1).learn([ITEM, second])
    assert summary.seen == 1 and "budget" in summary.stopped  # stopped before t2's program was written
    assert store.get_run(summary.run_id).status.value == "stopped" and store.done_tasks() == {"toy_train/t1"}
    llm.on("write_program", LP_REPLY)
    assert learner(llm, max_tokens=10_000).learn([ITEM, second]).seen == 1  # the rerun goes on


def test_learn_cli_export_import_and_skip(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from alphaopt.interfaces import cli, cli_library

    data = tmp_path / "toy_train.jsonl"
    data.write_text(json.dumps({"id": "t1", "description": PROBLEM, "answer": 11}) + "\n")
    llm = wrong_then(RoutedLLM()).on("explore", LP_REPLY).on("extract", json.dumps(DRAFT))
    llm.on("write_program", LP_REPLY, WRONG_LP_REPLY)  # with; placebo
    monkeypatch.setattr(cli_library, "OpenAIClient", lambda settings, log: llm)
    monkeypatch.setenv("ALPHAOPT_USE_LIBRARY", "1")
    monkeypatch.setenv("ALPHAOPT_EXPERIMENTAL__STARTER_LIBRARY", "")
    run = CliRunner().invoke(cli.cli, ["learn", str(data), "-k", "1", "--explore-tries", "1", "--no-line-variants",
                                         "--no-progress"], catch_exceptions=False)
    assert "verified 1" in run.output and "solved before 0, after 1" in run.output
    assert ("Funnel: 1 problems, right at first try 0, solved 0 (after learning 1), failed 1, explored 1, reached "
            "the answer 1, drafted 1; insights drafted 1, verified 1, rejected 0, merged 0, retired 0.") in run.output
    assert "Verified insights per failed problem: 1.00 (1 of 1)." in run.output
    assert "By source: explore reached 1, drafted 1, verified 1." in run.output

    export = tmp_path / "lib.jsonl"
    out = CliRunner().invoke(cli.cli, ["library", "export", str(export)], catch_exceptions=False).output
    assert "Exported 1 verified insights learned from 1 training problems" in out
    header = json.loads(export.read_text().splitlines()[0])["_header"]
    assert header["learned_tasks"] == ["toy_train/t1"] and header["runs"][0]["command"].startswith("alphaopt learn")

    other = tmp_path / "other"
    assert "Imported 1" in CliRunner().invoke(cli.cli, ["library", "import", str(export), "--home", str(other)]).output
    assert "I0001" in CliRunner().invoke(cli.cli, ["library", "list", "--home", str(other)]).output
    again = CliRunner().invoke(cli.cli, ["learn", str(data), "--skip-learned", str(export), "--home", str(other),
                                         "--no-progress"], catch_exceptions=False)
    assert "0 problems (1 done earlier)" in again.output
    went_on = tmp_path / "went_on.jsonl"  # a new home's export keeps what the earlier home learned
    out = CliRunner().invoke(cli.cli, ["library", "export", str(went_on), "--home", str(other),
                                       "--continues", str(export)], catch_exceptions=False).output
    assert "learned from 1 training problems" in out
    later = json.loads(went_on.read_text().splitlines()[0])["_header"]
    assert later["learned_tasks"] == ["toy_train/t1"] and later["continues"] == "lib.jsonl"
    assert [r["home"] for r in later["runs"][:1]] == ["earlier"] and len(later["runs"]) == 2
    assert later["source_problems"] == {"toy_train/t1": PROBLEM}  # the source text came along with the import
    assert later["runs"][1]["started_at"] and later["runs"][1]["finished_at"]
    twice = tmp_path / "twice.jsonl"  # the same home again, going on from its own export: no run twice
    CliRunner().invoke(cli.cli, ["library", "export", str(twice), "--home", str(other), "--continues", str(went_on)],
                       catch_exceptions=False)
    runs = json.loads(twice.read_text().splitlines()[0])["_header"]["runs"]
    assert [r.get("home") for r in runs] == ["earlier", None]
    back = tmp_path / "back.jsonl"  # the first home again, going on from the chain that marked its run "earlier"
    CliRunner().invoke(cli.cli, ["library", "export", str(back), "--continues", str(twice)], catch_exceptions=False)
    runs = json.loads(back.read_text().splitlines()[0])["_header"]["runs"]
    assert sorted((r["id"], r["started_at"]) for r in runs) == sorted({(r["id"], r["started_at"]) for r in runs})
    assert [r.get("home") for r in runs] == ["earlier", None] and runs[1]["command"] == header["runs"][0]["command"]


def test_an_export_carries_the_unsolved_problems_to_retry_in_another_home(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from alphaopt.interfaces import cli, cli_library

    data = tmp_path / "toy_train.jsonl"
    data.write_text(json.dumps({"id": "t1", "description": PROBLEM, "answer": 11}) + "\n"
                    + json.dumps({"id": "t2", "description": PROBLEM + " (again)", "answer": 11}) + "\n")
    model = {"llm": wrong_then(RoutedLLM()).on("write_program", LP_REPLY)}  # t1 wrong and nothing reached; t2 right
    monkeypatch.setattr(cli_library, "OpenAIClient", lambda settings, log: model["llm"])
    monkeypatch.setenv("ALPHAOPT_USE_LIBRARY", "1")
    monkeypatch.setenv("ALPHAOPT_EXPERIMENTAL__STARTER_LIBRARY", "")

    def learn(*args: str) -> str:
        argv = ["learn", str(data), "--twins", "-k", "1", "--explore-tries", "0", "--no-line-variants", "--no-progress"]
        return CliRunner().invoke(cli.cli, [*argv, *args], catch_exceptions=False).output

    assert "2 problems (0 done earlier), solved before 1, after 1" in learn()
    first = tmp_path / "first.jsonl"
    out = CliRunner().invoke(cli.cli, ["library", "export", str(first)], catch_exceptions=False).output
    assert "learned from 2 training problems (1 left unsolved)" in out
    header = json.loads(first.read_text().splitlines()[0])["_header"]
    assert header["learned_tasks"] == ["toy_train/t1", "toy_train/t2"] and header["unsolved_tasks"] == ["toy_train/t1"]

    other = str(tmp_path / "other")  # a new home (another machine): only the export came along
    assert "0 problems (2 done earlier)" in learn("--skip-learned", str(first), "--home", other)
    model["llm"] = RoutedLLM().on("write_program", LP_REPLY)  # the pipeline got better
    retried = learn("--skip-learned", str(first), "--retry-unsolved", "--home", other)
    assert "1 problems (1 done earlier), solved before 1" in retried
    assert "0 problems (2 done earlier)" in learn("--skip-learned", str(first), "--retry-unsolved", "--home", other)
    went_on = tmp_path / "went_on.jsonl"
    out = CliRunner().invoke(cli.cli, ["library", "export", str(went_on), "--home", other, "--continues", str(first)],
                             catch_exceptions=False).output
    assert "learned from 2 training problems (0 left unsolved)" in out  # solved here: no longer listed
    later = json.loads(went_on.read_text().splitlines()[0])["_header"]
    assert later["learned_tasks"] == ["toy_train/t1", "toy_train/t2"] and later["unsolved_tasks"] == []


def test_runs_left_running_by_a_killed_process_are_closed(setup):
    store, _, learner = setup
    orphan = store.start_run({"pid": 2**22 + 12345})  # no such process
    llm = RoutedLLM().on("write_program", LP_REPLY)
    learner(llm).learn([ITEM])
    closed = store.get_run(orphan.id)
    assert closed.status.value == "failed" and closed.counters["interrupted"] is True


def test_learn_skips_training_problems_that_copy_an_excluded_one(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from alphaopt.interfaces import cli, cli_library

    train = tmp_path / "toy_train.jsonl"
    other = "A baker makes bread and cakes from 40 kg of flour; bread earns 2 dollars, a cake 5."
    train.write_text(json.dumps({"id": "t1", "description": PROBLEM, "answer": 11}) + "\n"
                     + json.dumps({"id": "t2", "description": other, "answer": 11}) + "\n")
    test = tmp_path / "toy_test.jsonl"
    twin = {"id": "x", "description": PROBLEM.replace("Maximize", "maximize"), "answer": 11}
    test.write_text(json.dumps(twin) + "\n")
    llm = RoutedLLM().on("write_program", LP_REPLY)
    monkeypatch.setattr(cli_library, "OpenAIClient", lambda settings, log: llm)
    monkeypatch.setenv("ALPHAOPT_USE_LIBRARY", "1")
    monkeypatch.setenv("ALPHAOPT_EXPERIMENTAL__STARTER_LIBRARY", "")
    monkeypatch.setenv("ALPHAOPT_EXPERIMENTAL__TEXT_REWRITES", "0")  # no line asked for the baker's unused numbers
    run = CliRunner().invoke(cli.cli, ["learn", str(train), "-k", "1", "--exclude", str(test), "--no-progress"],
                             catch_exceptions=False)
    assert "Skipping 1 training problems that nearly copy a problem in --exclude" in run.output
    assert "Run " in run.output and ": 1 problems" in run.output
    assert len(llm.calls) == 1 and all(other in c.user and PROBLEM not in c.user for c in llm.calls)  # only t2


def test_learn_learns_once_from_training_problems_that_copy_each_other(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from alphaopt.interfaces import cli, cli_library

    other = "A baker makes bread and cakes from 40 kg of flour; bread earns 2 dollars, a cake 5."
    train = tmp_path / "toy_train.jsonl"
    train.write_text("".join(json.dumps(d) + "\n" for d in [
        {"id": "t1", "description": PROBLEM, "answer": 11}, {"id": "t2", "description": other, "answer": 11},
        {"id": "t3", "description": PROBLEM.replace("Maximize", "maximize"), "answer": 11}]))  # t1's twin
    llm = RoutedLLM().on("write_program", LP_REPLY, LP_REPLY, LP_REPLY)
    monkeypatch.setattr(cli_library, "OpenAIClient", lambda settings, log: llm)
    monkeypatch.setenv("ALPHAOPT_USE_LIBRARY", "1")
    monkeypatch.setenv("ALPHAOPT_EXPERIMENTAL__STARTER_LIBRARY", "")
    monkeypatch.setenv("ALPHAOPT_EXPERIMENTAL__TEXT_REWRITES", "0")
    home = ["--home", str(tmp_path / "home"), "-k", "1", "--no-progress"]
    first = CliRunner().invoke(cli.cli, ["learn", str(train), "--limit", "1", *home], catch_exceptions=False)
    assert "Skipping 1 training problems that nearly copy one learned from already or earlier" in first.output
    rest = CliRunner().invoke(cli.cli, ["learn", str(train), *home], catch_exceptions=False)
    assert "Skipping 1 training problems that nearly copy one learned" in rest.output and ": 1 problems" in rest.output
    assert [PROBLEM in c.user for c in llm.calls] == [True, False]  # t1, then t2; never t3
    both = CliRunner().invoke(cli.cli, ["learn", str(train), "--twins", *home], catch_exceptions=False)
    assert "Skipping" not in both.output and ": 1 problems" in both.output  # t3 at last


def test_a_retry_skips_a_new_problem_that_copies_one_it_learns_from_again(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from alphaopt.interfaces import cli, cli_library

    train = tmp_path / "toy_train.jsonl"
    train.write_text("".join(json.dumps(d) + "\n" for d in [
        {"id": "t1", "description": PROBLEM, "answer": 11},
        {"id": "t3", "description": PROBLEM.replace("Maximize", "maximize"), "answer": 11}]))  # t1's twin
    model = {"llm": wrong_then(RoutedLLM())}  # t1 wrong, nothing reached
    monkeypatch.setattr(cli_library, "OpenAIClient", lambda settings, log: model["llm"])
    monkeypatch.setenv("ALPHAOPT_USE_LIBRARY", "1")
    monkeypatch.setenv("ALPHAOPT_EXPERIMENTAL__STARTER_LIBRARY", "")
    monkeypatch.setenv("ALPHAOPT_EXPERIMENTAL__TEXT_REWRITES", "0")
    home = ["--home", str(tmp_path / "home"), "-k", "1", "--explore-tries", "0", "--no-line-variants", "--no-progress"]
    first = CliRunner().invoke(cli.cli, ["learn", str(train), *home], catch_exceptions=False)
    assert ": 1 problems" in first.output and "after 0" in first.output
    model["llm"] = RoutedLLM().on("write_program", LP_REPLY)  # one reply: t1 learned from again, t3 not
    again = CliRunner().invoke(cli.cli, ["learn", str(train), "--retry-unsolved", *home], catch_exceptions=False)
    assert "Skipping 1 training problems that nearly copy one learned" in again.output
    assert ": 1 problems" in again.output and "solved before 1" in again.output
    assert ["Maximize 3x" in c.user for c in model["llm"].calls] == [True]  # t1 (t3 writes "maximize")


def test_learn_cli_revisits_solved_problems_first(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from alphaopt.interfaces import cli, cli_library

    other = "A baker makes bread and cakes from 40 kg of flour; bread earns 2 dollars, a cake 5."
    new, solved = {"id": "t1", "description": other, "answer": 11}, {"id": "t2", "description": PROBLEM, "answer": 11}
    train = tmp_path / "toy_train.jsonl"
    train.write_text(json.dumps(solved) + "\n")
    llm = RoutedLLM().on("write_program", LP_REPLY, LP_REPLY)
    monkeypatch.setattr(cli_library, "OpenAIClient", lambda settings, log: llm)
    monkeypatch.setenv("ALPHAOPT_EXPERIMENTAL__STARTER_LIBRARY", "")
    assert "solved before 1" in CliRunner().invoke(cli.cli, ["learn", str(train), "-k", "1", "--no-progress"]).output
    train.write_text(json.dumps(new) + "\n" + json.dumps(solved) + "\n")  # a new problem comes first in the file
    run = CliRunner().invoke(cli.cli, ["learn", str(train), "-k", "1", "--revisit-solved", "--limit", "1",
                                         "--no-progress"],
                             catch_exceptions=False)
    assert ": 1 problems" in run.output and "solved before 1" in run.output
    assert len(llm.calls) == 2 and PROBLEM in llm.calls[-1].user  # the solved one, solved again


def test_near_duplicates():
    from alphaopt.learning.dedup import near_duplicates

    base = "A farmer has 50 acres to plant wheat and corn; wheat earns 200 dollars per acre and corn 300."
    assert near_duplicates([base, base.replace("50", "60"), "Something else entirely."], [base.upper()]) == {0, 1}
    assert near_duplicates([base], []) == set()


def test_right_only_after_a_repair_learns_a_code_insight(setup):
    store, _, learner = setup
    llm = RoutedLLM().on("write_program", BROKEN).on("repair", LP_REPLY)
    llm.on("extract_code", json.dumps(CODE_DRAFT))
    llm.on("write_program", LP_REPLY)  # with the insight: right first time
    summary = learner(llm, explore_tries=1).learn([ITEM])
    assert (summary.solved_before, summary.solved_after, summary.verified) == (1, 1, 1)
    assert "explore" not in llm.prompt_names  # it was solved: nothing to explore
    assert store.get("I0001").provenance.evidence == {"without": 0, "with": 1, "k": 1, "criterion": "runs_first",
                                                      "code_only": True, "source": "repair",
                                                      "solves": {"without": [0], "with": [1]}, "skipped": 0}
    assert store.attempts(task_id="toy_train/t1")[-1].status == "solved; learned"


def test_right_first_time_after_all_learns_nothing_new(setup):
    store, _, learner = setup
    llm = RoutedLLM().on("write_program", BROKEN).on("repair", LP_REPLY)
    llm.on("extract_code", json.dumps(CODE_DRAFT))
    llm.on("write_program", BROKEN).on("repair", LP_REPLY)  # the insight did not help
    summary = learner(llm, explore_tries=1).learn([ITEM])
    assert (summary.solved_after, summary.verified, summary.rejected) == (1, 0, 1)
    assert store.get("I0001").status == Status.RETIRED


def test_exploration_edits_the_latest_program_that_ran(setup):
    _, _, learner = setup
    worse = WRONG_LP_REPLY.replace("model.x + 3 * model.y <= 6", "model.x + 3 * model.y <= 3")  # 20/3 instead of 26/3
    llm = wrong_then(RoutedLLM())
    llm.on("explore", worse, LP_REPLY).on("extract", json.dumps(DRAFT))
    llm.on("write_program", LP_REPLY)
    summary = learner(llm, explore_tries=2).learn([ITEM])
    assert summary.verified == 1
    first, second = [c for c in llm.calls if c.prompt_name == "explore"]
    assert "model.x <= 2" in first.user and "the optimal objective 8.66667, lower than the correct value" in first.user
    assert "<= 3)" in second.user and "the optimal objective 6.66667, lower than the correct value" in second.user
    assert first.temperature == second.temperature == 0.7  # sampled: greedy gives the program back unchanged
    assert first.seed != second.seed


def test_an_interrupted_run_is_recorded_as_stopped(setup):
    store, _, learner = setup
    second = ("toy_train", "t2", PROBLEM + " (again)", 11.0)
    llm = RoutedLLM().on("write_program", LP_REPLY)  # t1 solved

    def interrupt(_messages):
        raise KeyboardInterrupt("stopped by signal 15")

    llm.on("write_program", interrupt)
    with pytest.raises(LearningStopped) as stopped:  # a KeyboardInterrupt still
        learner(llm).learn([ITEM, second])
    assert stopped.value.summary.seen == 1 and stopped.value.summary.stopped == "stopped by signal 15"
    run = store.runs()[-1]
    assert run.status.value == "stopped" and run.counters["stopped"] == "stopped by signal 15"
    assert run.counters["seen"] == 1 and store.done_tasks() == {"toy_train/t1"}
    assert run.counters["seconds"] > 0  # the time spent is kept, not only for runs that finish


def test_a_stopped_learn_command_prints_its_funnel_and_how_to_go_on(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from alphaopt.interfaces import cli, cli_library

    data = tmp_path / "toy_train.jsonl"
    data.write_text(json.dumps({"id": "t1", "description": PROBLEM, "answer": 11}) + "\n"
                    + json.dumps({"id": "t2", "description": PROBLEM + " (again)", "answer": 11}) + "\n")

    def interrupt(_messages):
        raise KeyboardInterrupt("stopped by signal 15")  # what the CLI's SIGTERM handler raises

    llm = RoutedLLM().on("write_program", LP_REPLY).on("write_program", interrupt)  # t1 solved, then the stop
    monkeypatch.setattr(cli_library, "OpenAIClient", lambda settings, log: llm)
    monkeypatch.setenv("ALPHAOPT_EXPERIMENTAL__STARTER_LIBRARY", "")
    argv = ["learn", str(data), "--twins", "-k", "1", "--explore-tries", "0", "--no-line-variants", "--no-progress",
            "--home", str(tmp_path / "h")]
    result = CliRunner().invoke(cli.cli, argv)
    assert result.exit_code == 130, result.output
    assert "1 problems (0 done earlier), solved before 1" in result.output, llm.prompt_names
    assert "Stopped: stopped by signal 15" in result.output and "Funnel: 1 problems" in result.output
    assert "run the same command again to go on" in result.stderr
    llm.on("write_program", LP_REPLY)
    again = CliRunner().invoke(cli.cli, argv)
    assert again.exit_code == 0 and "1 problems (1 done earlier)" in again.output


def _learn_condition(setup, condition: str, step: str, reply: str, item=ITEM):
    """Learn ``item`` from a draft with ``condition``, the condition-rewriting ``step`` answering
    ``reply``; returns the store, the scripted model and the run's summary."""
    store, _, learner = setup
    draft = {"insights": [{**DRAFT["insights"][0], "condition": condition}]}
    llm = wrong_then(RoutedLLM())
    llm.on("explore", LP_REPLY).on("extract", json.dumps(draft)).on(step, reply)
    llm.on("write_program", LP_REPLY)
    return store, llm, learner(llm, explore_tries=1).learn([item])


def test_a_condition_naming_its_problems_numbers_is_generalized(setup):
    item = ("toy_train", "t9", PROBLEM + " The plant has 40 workers.", 11.0)
    store, llm, summary = _learn_condition(setup, "when the plant has 40 workers and x is at most 3", "generalize",
                                           '"when one decision variable has its own upper limit"', item)
    assert summary.verified == 1
    assert store.get("I0001").condition == "when one decision variable has its own upper limit"
    generalize = next(c for c in llm.calls if c.prompt_name == "generalize")
    assert "40 workers" in generalize.user and PROBLEM not in generalize.user


def test_a_condition_that_names_the_mistake_is_situated_before_the_check(setup):
    store, llm, summary = _learn_condition(setup, "when the variable bounds are not correctly specified", "situate",
                                           '"when the text caps one decision on its own"')
    assert summary.verified == 1
    assert store.get("I0001").condition == "when the text caps one decision on its own"
    situate = next(c for c in llm.calls if c.prompt_name == "situate")
    assert PROBLEM in situate.user and "names the mistake" in situate.user
    assert "not correctly specified" not in situate.user  # a small model given it writes it back
    assert "what the text of problems like this one says" in situate.user and '"when the problem"' in situate.user


def test_a_draft_whose_condition_still_says_nothing_is_dropped_unchecked(setup):
    store, _, learner = setup
    vague = {"insights": [{**CODE_DRAFT["insights"][0], "condition": "when defining the variables"}]}
    llm = wrong_then(RoutedLLM())
    llm.on("explore", LP_REPLY).on("extract", json.dumps(vague))
    llm.on("situate", "when creating the model, make sure the bounds are right")  # names the mistake again
    summary = learner(llm, explore_tries=1).learn([ITEM])
    assert summary.added == 0 and store.list(status=None) == [] and summary.unplaced == 1
    assert llm.prompt_names[-1] == "situate"  # no solve "with" a draft no retrieval could place
    situate = next(c for c in llm.calls if c.prompt_name == "situate")
    assert "names a step that every program takes" in situate.user and "a program for problems like" in situate.user


def test_a_last_clause_that_echoes_the_question_is_cut():
    from alphaopt.learning.drafts import unechoed

    assert unechoed("When the problem asks for the plain count of its decisions, it calls for that correction.") \
        == "When the problem asks for the plain count of its decisions"
    assert unechoed("when the program expresses that calls for the lesson") \
        == "when the program expresses that calls for the lesson"  # nothing left without it: vacuous instead
    assert unechoed("when a limit is stated, as a bound") == "when a limit is stated, as a bound"


@pytest.mark.parametrize(("condition", "stage", "flaw"), [
    ("when the variable domains are not correctly specified", "code_implementation", "names the mistake"),
    ("when defining variables, using the wrong domain", "general_formulation", "names the mistake"),
    ("when creating variables, make sure to specify the domain correctly", "code_implementation",
     "names the mistake"),
    ("when defining the variables", "code_implementation", "names a step that every program takes"),
    ("when the program defines a variable, it must specify its domain.", "code_implementation",
     "names a step that every program takes"),
    ("when the program expresses that calls for the lesson", "code_implementation", "speaks of the lesson"),
    ("when creating variables for product quantities", "code_implementation", None),
    ("when the program declares `model.sunny_z1` as pyo.NonNegativeReals", "code_implementation",
     "names the program's own components"),
    ("when creating the objective function", "general_formulation", "names a step that every program takes"),
    ("when defining the supply capacity parameter", "general_formulation", "describes a step of the program"),
    ("when defining the supply capacity parameter", "code_implementation", None),  # a code lesson may
    ("when using a Var in a Boolean context such as an 'if' statement", "code_implementation", None),
    ("when the total number of trips must be at least a stated percentage", "general_formulation", None),
    ('when the text says "the wrong N items are returned"', "general_formulation", None),  # quoted: not read
    ("The problem involves counting, buying, or choosing", "general_formulation", None),
])
def test_vacuous_conditions(condition, stage, flaw):
    from alphaopt.learning.drafts import vacuous
    from library.models import parse_stage

    found = vacuous(condition, parse_stage(stage))
    assert (found is None) if flaw is None else (found is not None and found.startswith(flaw))


def test_specific_conditions():
    from alphaopt.learning.learn import specific as _specific

    problem = "A plant has 40 workers and makes 1,200 units at 2.5 hours each."
    assert _specific("when the plant has 40 workers", problem)
    assert _specific("when 1,200 units are made", problem)
    assert not _specific("when a plant has a fixed workforce", problem)
    assert not _specific("when there are 2 products", problem)  # one digit: too common to count


def test_a_draft_that_copies_the_template_is_dropped_before_verification(setup):
    store, _, learner = setup
    template = {"insights": [{"stage": "domain_modeling", "level1": "category", "level2": "subcategory",
                              "condition": "when the problem text says or implies ... (the situation in general words)",
                              "explanation": "do ...; the common mistake is ...; because ...",
                              "example": "wrong: ... right: ..."}]}
    llm = wrong_then(RoutedLLM()).on("explore", LP_REPLY).on("extract", json.dumps(template))
    summary = learner(llm, explore_tries=1).learn([ITEM])
    assert summary.added == 0 and store.list(status=None) == []
    assert llm.prompt_names[-1] == "extract"  # no solve "with" a draft that says nothing


def _solving(fail_on: str | None = None):
    """A thread-safe fake that solves every problem right, except that calls for the problem whose
    text contains ``fail_on`` raise (the endpoint went away while it was being learned)."""
    def route(prompt_name: str, user: str) -> str | BaseException:
        if fail_on and fail_on in user:
            return LLMError("endpoint went away")
        return {"write_program": LP_REPLY}[prompt_name]
    return ThreadSafeLLM(route)


THREE = [("toy_train", f"t{n}", f"{PROBLEM} (copy {n})", 11.0) for n in (1, 2, 3)]


def test_problems_are_learned_concurrently(setup):
    store, _, learner = setup
    llm = _solving()
    seen = []
    summary = learner(llm).learn(THREE, concurrency=3, on_task=lambda task, outcome, s: seen.append(task.id))
    assert summary.seen == 3 and summary.solved_before == summary.solved_after == 3
    assert llm.most_in_flight >= 2  # the problems overlapped
    assert sorted(seen) == ["toy_train/t1", "toy_train/t2", "toy_train/t3"] and len(store.done_tasks()) == 3
    run = store.get_run(summary.run_id)
    assert run.status.value == "finished" and run.settings["concurrency"] == 3 and run.counters["seen"] == 3
    assert summary.tokens == sum(10 + len(LP_REPLY) // 4 for c in llm.calls)  # each call once


def test_a_concurrent_run_that_fails_stops_every_worker_and_resumes(setup):
    store, _, learner = setup
    with pytest.raises(LLMError):
        learner(_solving(fail_on="(copy 2)")).learn(THREE, concurrency=3)
    run = store.runs()[-1]
    assert run.status.value == "failed" and "endpoint went away" in run.counters["error"]
    assert "toy_train/t2" not in store.done_tasks()  # left for the rerun, like the others that were stopped
    again = learner(_solving()).learn(THREE)
    assert again.seen + again.skipped == 3 and store.done_tasks() == {f"toy_train/t{n}" for n in (1, 2, 3)}


def test_a_concurrent_run_stops_on_its_token_budget(setup):
    store, _, learner = setup
    summary = learner(_solving(), max_tokens=1).learn(THREE, concurrency=2)
    assert summary.stopped and "budget" in summary.stopped
    assert store.get_run(summary.run_id).status.value == "stopped" and summary.seen < 3


def test_learn_cli_refuses_concurrency_on_the_embedded_model(tmp_path):
    from click.testing import CliRunner

    from alphaopt.interfaces import cli

    data = tmp_path / "toy_train.jsonl"
    data.write_text(json.dumps({"id": "t1", "description": PROBLEM, "answer": 11}) + "\n")
    result = CliRunner().invoke(cli.cli, ["learn", str(data), "--concurrency", "2", "--home", str(tmp_path / "h")])
    assert result.exit_code != 0 and "--concurrency needs a remote endpoint" in result.output


def _verified_from_t1(store, index, stage="general_formulation"):
    store.add_task(*ITEM[:3])  # text only, as an import holds its source problems
    store.add_task(*ITEM)
    draft = InsightDraft(**{**DRAFT["insights"][0], "stage": stage})
    insight = store.add_insight(draft, provenance={"source_tasks": ["toy_train/t1"], "model": "m"},
                                status=Status.VERIFIED)
    index.upsert(insight)
    return insight


def test_recheck_keeps_an_insight_that_beats_the_run_without_it_and_the_placebo(setup):
    store, index, learner = setup
    insight = _verified_from_t1(store, index)
    llm = RoutedLLM()
    llm.on("write_program", WRONG_LP_REPLY, LP_REPLY, WRONG_LP_REPLY)  # without, with, placebo
    run = store.start_run({})
    evidence = learner(llm).recheck(insight, run.id)
    assert (evidence["without"], evidence["with"], evidence["placebo"], evidence["kept"]) == (0, 1, 0, True)
    after = store.get(insight.id)
    assert after.status == Status.VERIFIED and after.version == 2
    assert after.provenance.evidence["recheck"] == {**evidence, "recheck": True}
    prompts_seen = [c.user for c in llm.calls if c.prompt_name == "write_program"]
    assert "[I0001]" not in prompts_seen[0] and "[I0001]" in prompts_seen[1]
    assert "[I0000]" in prompts_seen[2] and "[I0001]" not in prompts_seen[2]  # the placebo in its place
    assert [a.kind for a in store.attempts(task_id="toy_train/t1")] == [
        "recheck_without", "recheck_with", "recheck_placebo"]


def test_recheck_retires_an_insight_the_placebo_matches(setup):
    store, index, learner = setup
    insight = _verified_from_t1(store, index)
    llm = RoutedLLM()
    llm.on("write_program", WRONG_LP_REPLY, LP_REPLY, LP_REPLY)
    evidence = learner(llm).recheck(insight, store.start_run({}).id)
    assert evidence["placebo"] == 1 and not evidence["kept"]
    assert store.get(insight.id).status == Status.RETIRED and index.count() == 0


@pytest.mark.parametrize(("sampled", "counts"), [
    # without it 1 right, with it 2, the placebo 1: a margin of one over a baseline that sometimes
    # succeeds, matched once by the placebo, keeps nothing (as in the first check)
    (LP_REPLY, (1, 2, 1)),
    # with it 1 right of 2, without it and with the placebo none: one lucky sample keeps nothing
    (WRONG_LP_REPLY, (0, 1, 0)),
])
def test_recheck_with_two_solves_per_arm_keeps_nothing_a_lucky_sample_or_a_placebo_explains(setup, sampled, counts):
    store, index, learner = setup
    insight = _verified_from_t1(store, index)
    llm = RoutedLLM()
    llm.on("write_program", WRONG_LP_REPLY, LP_REPLY, WRONG_LP_REPLY)  # greedy: without, with, placebo
    llm.on("write_program", sampled, sampled, sampled)  # sampled: all the same
    evidence = learner(llm, k=2).recheck(insight, store.start_run({}).id)
    assert (evidence["without"], evidence["with"], evidence["placebo"], evidence["kept"]) == (*counts, False)
    assert store.get(insight.id).status == Status.RETIRED


def test_recheck_with_one_solve_over_two_sources_does_not_keep_one_lucky_sample(setup):
    # k=1 caps the first check's min_wins at 1, but a recheck over two sources has two solves per
    # arm: one right solve of them is the lucky sample the check refuses
    store, index, learner = setup
    store.add_task("toy_train", "t2", f"{PROBLEM} (copy 2)", 11.0)
    insight = _verified_from_t1(store, index)
    store.revise(insight.id, source_tasks=["toy_train/t1", "toy_train/t2"], reason="two sources")
    llm = RoutedLLM()
    # t1: without, with, placebo; then t2 the same: with it right once in 2, the others never
    llm.on("write_program", WRONG_LP_REPLY, LP_REPLY, WRONG_LP_REPLY, WRONG_LP_REPLY, WRONG_LP_REPLY, WRONG_LP_REPLY)
    evidence = learner(llm, k=1).recheck(store.get(insight.id), store.start_run({}).id)
    assert (evidence["sources"], evidence["without"], evidence["with"], evidence["placebo"]) == (2, 0, 1, 0)
    assert not evidence["kept"] and store.get(insight.id).status == Status.RETIRED


def test_recheck_refuses_what_it_cannot_check(setup):
    from alphaopt.errors import InputError

    store, _, learner = setup
    orphan = store.add_insight(InsightDraft(**DRAFT["insights"][0]), provenance={"source_tasks": ["elsewhere/x"]},
                               status=Status.VERIFIED)
    with pytest.raises(InputError, match="have no answer in this library"):
        learner(RoutedLLM()).recheck(orphan, "R0001")
    store.set_status(orphan.id, Status.RETIRED)
    with pytest.raises(InputError, match="only a verified insight"):
        learner(RoutedLLM()).recheck(store.get(orphan.id), "R0001")


def test_library_recheck_cli(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from alphaopt.interfaces import cli, cli_library

    monkeypatch.setenv("ALPHAOPT_EXPERIMENTAL__STARTER_LIBRARY", "")
    settings = load_settings(home=tmp_path / "home")
    store, index = open_library(settings)
    insight = store.add_insight(InsightDraft(**{**DRAFT["insights"][0], "stage": "code_implementation"}),
                                provenance={"source_tasks": ["toy_train/t1"]}, status=Status.VERIFIED)
    store.add_task(*ITEM[:3])  # the source problem as an import holds it: text only
    index.upsert(insight)
    index.close()
    store.close()
    home = str(tmp_path / "home")
    refused = CliRunner().invoke(cli.cli, ["library", "recheck", "I0001", "--home", home])
    assert refused.exit_code != 0 and "--answers FILE" in refused.output
    data = tmp_path / "toy_train.jsonl"
    data.write_text(json.dumps({"id": "t1", "description": PROBLEM, "answer": 11}) + "\n")
    llm = RoutedLLM()
    llm.on("write_program", BROKEN, LP_REPLY, LP_REPLY).on("repair", LP_REPLY)  # without: right after a repair
    monkeypatch.setattr(cli_library, "OpenAIClient", lambda settings, log: llm)
    result = CliRunner().invoke(cli.cli, ["library", "recheck", "I0001", "--home", home, "--answers", str(data)],
                                catch_exceptions=False)
    assert "I0001: right without it 0, with it 1, with the placebo 1 (of 1) -> retired" in result.output
    missing = CliRunner().invoke(cli.cli, ["library", "recheck", "I0404", "--home", str(tmp_path / "home")])
    assert missing.exit_code != 0 and "I0404" in missing.output
