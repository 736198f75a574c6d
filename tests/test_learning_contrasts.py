"""Contrasts learning draws from its own solves: a diagnosis or a patch that turned a wrong
program right, and a right solve beside a wrong one (scripted model, real HiGHS, SQLite, Chroma)."""

from __future__ import annotations

import json

from alphaopt.agent.retrieval import open_library
from alphaopt.config import load_settings
from alphaopt.learning.contrasts import solve_contrasts
from alphaopt.learning.learn import LearnConfig, Learner
from library import Status
from tests.fakes import LP_REPLY, WRONG_LP_REPLY, RoutedLLM, program
from tests.test_learn import DRAFT, ITEM, setup  # noqa: F401 (the fixture)

INFEASIBLE_LP = LP_REPLY.replace("model.x <= 3", "model.x >= 5")  # x + y <= 4 and x >= 5 cannot hold


def test_a_diagnosis_that_turned_the_program_right_is_learned_from(setup):  # noqa: F811
    store, _, learner = setup
    llm = RoutedLLM().on("write_program", INFEASIBLE_LP).on("diagnose_program", LP_REPLY)  # right after a diagnosis
    llm.on("extract", json.dumps(DRAFT))
    llm.on("write_program", LP_REPLY)  # with the candidate: right at the first program
    summary = learner(llm, explore_tries=0).learn([ITEM])
    assert (summary.solved_before, summary.right_first, summary.failed, summary.reached) == (1, 0, 0, 1)
    assert (summary.drafted, summary.verified) == (1, 1) and summary.sources == {
        "diagnose": {"reached": 1, "drafted": 1, "verified": 1}}
    extract = next(c for c in llm.calls if c.prompt_name == "extract")
    assert "model.x >= 5" in extract.user and "status infeasible" in extract.user  # the program before the fix
    insight = store.get("I0001")
    assert insight.status == Status.VERIFIED
    evidence = insight.provenance.evidence
    assert (evidence["criterion"], evidence["without"], evidence["with"], evidence["source"]) == (
        "right_first", 0, 1, "diagnose")  # the first program of the solve without it was wrong
    assert store.attempts(task_id="toy_train/t1")[-1].status == "solved; learned"


def test_a_lesson_from_a_fix_must_make_the_first_program_right(setup):  # noqa: F811
    store, _, learner = setup
    llm = RoutedLLM().on("write_program", INFEASIBLE_LP).on("diagnose_program", LP_REPLY)
    llm.on("extract", json.dumps(DRAFT))
    llm.on("write_program", INFEASIBLE_LP)  # with it: wrong again at the first program
    summary = learner(llm, explore_tries=0).learn([ITEM])
    assert (summary.verified, summary.rejected) == (0, 1)
    assert llm.prompt_names.count("diagnose_program") == 1  # the check counts the first program: no fix after it
    assert "verify_with_first" in [a.kind for a in store.attempts(task_id="toy_train/t1")]  # not a user's solve
    assert store.get("I0001").status == Status.RETIRED
    assert store.attempts(task_id="toy_train/t1")[-1].status == "solved; candidates rejected"


PATCH_PROBLEM = "Maximize 3x + 2y subject to x + y <= 4 and x + 3y <= 6, with x at most 3.5 and x, y non-negative."
MISSING_LIMIT = LP_REPLY.replace("    model.c3 = pyo.Constraint(expr=model.x <= 3)\n", "")  # 12 at x=4, y=0


def test_a_patch_that_turned_the_program_right_is_learned_from(tmp_path, runner):
    settings = load_settings(home=tmp_path / "home", use_library=True,
                             experimental={"text_rewrites": ["unused"]})  # the patch sign on: 3.5 is unused
    store, index = open_library(settings)
    item = ("toy_train", "p1", PATCH_PROBLEM, 11.5)
    llm = RoutedLLM().on("write_program", MISSING_LIMIT)
    llm.on("patch_unused", "model.c3 = pyo.Constraint(expr=model.x <= 3.5)")
    llm.on("write_program", MISSING_LIMIT.replace("x + 3 * model.y <= 6)", "x + 3 * model.y <= 6)\n    "
                                                  "model.c3 = pyo.Constraint(expr=model.x <= 3.5)"))
    learner = Learner(settings, store, index, llm, runner, LearnConfig(k=1, placebo=False, line_variants=False))
    summary = learner.learn([item])
    assert summary.sources == {"patch": {"reached": 1, "drafted": 1, "verified": 1}}
    insight = store.get("I0001")  # the patch added one constraint: a known edit, the words it says quoted
    assert insight.condition == 'when the text says "with x at most N and x"'
    assert insight.provenance.evidence["criterion"] == "right_first"
    assert insight.example == "wrong: (missing) right: model.c3 = pyo.Constraint(expr=model.x <= 3.5)"
    assert insight.explanation.startswith("write this limit as a constraint of its own")
    assert insight.stage.value != "code_implementation"  # the modeling label nearest to the lesson
    index.close()
    store.close()


def test_a_right_solve_beside_a_wrong_one_is_a_contrast(setup):  # noqa: F811
    store, _, learner = setup
    llm = RoutedLLM().on("write_program", LP_REPLY, WRONG_LP_REPLY)  # k=2: the greedy solve right, the sampled wrong
    llm.on("extract", json.dumps(DRAFT))
    llm.on("write_program", LP_REPLY, LP_REPLY)  # with it: both right
    summary = learner(llm, k=2, explore_tries=0).learn([ITEM])
    assert (summary.right_first, summary.solved_before, summary.verified) == (1, 1, 1)
    assert summary.sources == {"samples": {"reached": 1, "drafted": 1, "verified": 1}}
    evidence = store.get("I0001").provenance.evidence
    assert evidence["solves"] == {"without": [1, 0], "with": [1, 1]} and evidence["criterion"] == "final"
    extract = next(c for c in llm.calls if c.prompt_name == "extract")
    assert "model.x <= 2" in extract.user.split("This corrected program")[0]  # the wrong sample's program first


def test_solve_contrasts_find_each_fix_once():
    from alphaopt.agent.state import Attempt, Solution

    def attempt(status, objective=None, stage="write_program", program="p0", error=None, fixes=()):
        return Attempt(stage=stage, program=program, status=status, objective=objective, error=error,
                       fixes=list(fixes))

    broken = Solution(run_id="r", problem="P", status="optimal", objective=8.0, program="p1", attempts=[
        attempt("error", error="NameError: z", program="p0"), attempt("optimal", 8.0, "repair", "p1")])
    fixed = Solution(run_id="r", problem="P", status="optimal", objective=11.0, program="p3", attempts=[
        attempt("optimal", 8.0, program="p2"),
        attempt("optimal", 11.0, "diagnose", "p3", fixes=["added: model.c3 = pyo.Constraint(expr=model.x <= 3)"])])
    found = solve_contrasts([broken, fixed, fixed], lambda objective: objective == 11.0)
    assert [(c.source, c.step, c.wrong, c.right, c.criterion) for c in found] == [
        ("repair", "extract_code", "p0", "p1", "runs_first"),  # a run error fixed, though the answer stayed wrong
        ("patch", "extract", "p2", "p3", "right_first"),
        ("samples", "extract", "p1", "p3", "final"),  # the wrong solve's program against the right one's
    ]
    assert found[0].outcome == "NameError: z"


def test_solve_contrasts_of_one_program_or_none_right():
    from alphaopt.agent.state import Attempt, Solution

    wrong = Solution(run_id="r", problem="P", status="optimal", objective=8.0, program=program("x = 1"),
                     attempts=[Attempt(stage="write_program", program=program("x = 1"), status="optimal",
                                       objective=8.0)])
    assert solve_contrasts([wrong, wrong], lambda objective: objective == 11.0) == []


def test_a_solves_contrast_is_cut_down_to_the_change_that_turns_it_right(setup):  # noqa: F811
    from tests.test_learning_variants import COST, RIGHT, TURNED

    store, _, learner = setup
    sampled = TURNED.replace("model.x = pyo.Var(domain=", "model.x = pyo.Var(within=")  # two changes apart
    llm = RoutedLLM().on("write_program", RIGHT, sampled)  # the greedy solve right, the sampled one wrong
    llm.on("diagnose_program", sampled)  # its plan does nothing: the diagnosis gives it back
    llm.on("write_program", RIGHT, RIGHT)  # with the candidate
    summary = learner(llm, k=2, explore_tries=0).learn([("toy_train", "c1", COST, 24.0)])
    assert summary.verified == 1 and summary.sources == {"samples": {"reached": 1, "drafted": 1, "verified": 1}}
    assert "extract" not in llm.prompt_names  # the direction alone turned it right: a known edit
    insight = store.get("I0001")
    assert insight.example == "wrong: model.x + model.y <= 10 right: model.x + model.y >= 10"
    assert [a.kind for a in store.attempts(task_id="toy_train/c1")].count("explore_hunk") == 1
