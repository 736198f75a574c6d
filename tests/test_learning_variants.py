"""Single-line variants of a wrong program, screened by the real solver during exploration."""

from __future__ import annotations

import json

import pytest

from alphaopt.learning.variants import apply_hunk, combine, hunks, line_variants, text_numbers
from library import Status
from tests.fakes import RoutedLLM, program
from tests.test_learn import DRAFT, setup  # noqa: F401 (the fixture)

COST = "Minimize the cost 2x + 3y when x + y must be at least 10 and x is at most 6, with x, y non-negative."
RIGHT = program("""
model = pyo.ConcreteModel()
model.x = pyo.Var(domain=pyo.NonNegativeReals)
model.y = pyo.Var(domain=pyo.NonNegativeReals)
model.cost = pyo.Objective(expr=2 * model.x + 3 * model.y, sense=pyo.minimize)
model.demand = pyo.Constraint(expr=model.x + model.y >= 10)
model.cap = pyo.Constraint(expr=model.x <= 6)
""")  # 24 at x=6, y=4
TURNED = RIGHT.replace("model.y >= 10", "model.y <= 10")  # 0: the demand turned around
ITEM = ("toy_train", "c1", COST, 24.0)


def _code(reply: str) -> str:
    return reply.split("```python\n")[1].split("```")[0]


def test_each_kind_of_single_line_variant():
    code = _code(TURNED).replace("model.x <= 6", "model.x <= 60")
    found = {(v.kind, v.example) for v in line_variants(code, COST)}
    assert ("sense", "wrong: sense=pyo.minimize right: sense=pyo.maximize") in found
    assert ("integrality", "wrong: domain=pyo.NonNegativeReals right: domain=pyo.NonNegativeIntegers") in found
    assert ("direction", "wrong: model.x + model.y <= 10 right: model.x + model.y >= 10") in found
    assert ("number", "wrong: 60 right: 6") in found  # 60 is no number of the text; 6 is
    assert ("drop", "wrong: model.cap = pyo.Constraint(expr=model.x <= 60) right: (no such constraint)") in found
    assert not any(v.kind == "number" and "10" in v.before for v in line_variants(code, COST))  # 10 is in the text
    for v in line_variants(code, COST):  # every other line as the model wrote it
        assert len(hunks(code, v.program)) == 1


def test_variants_are_edits_of_the_text_that_combine():
    code = ("def build_model():\n    m.c = pyo.Constraint(expr=m.x == 1)  # one\n"
            "    m.d = pyo.Constraint(expr=m.y >= 2)\n")
    variants = line_variants(code)
    equality = [v for v in variants if v.kind == "equality"]
    assert [v.after for v in equality] == ["m.x <= 1", "m.x >= 1"]
    direction = next(v for v in variants if v.kind == "direction")
    both = combine(code, equality[0], direction)
    assert both == code.replace("== 1", "<= 1").replace(">= 2", "<= 2")
    assert combine(code, equality[0], equality[1]) is None  # the same place
    assert line_variants("def broken(:") == []


def test_hunks_and_text_numbers():
    wrong, right = "a = 1\nb = 2\nc = 3\nd = 4\n", "a = 1\nb = 5\nc = 3\nd = 6\n"
    assert [apply_hunk(wrong, h) for h in hunks(wrong, right)] == ["a = 1\nb = 5\nc = 3\nd = 4\n",
                                                                   "a = 1\nb = 2\nc = 3\nd = 6\n"]
    assert text_numbers("At least 60% of 1,200 trips, 2.5 hours each; 60 more.") == [60.0, 0.6, 1200.0, 2.5]


def test_a_single_line_variant_that_reaches_the_answer_is_the_insights_example(setup):  # noqa: F811
    store, _, learner = setup
    llm = RoutedLLM().on("write_program", TURNED).on("diagnose_program", TURNED)  # 0 (a plan doing nothing), twice
    llm.on("extract", json.dumps(DRAFT))
    llm.on("write_program", RIGHT)  # with the candidate
    summary = learner(llm, explore_tries=2, line_variants=True).learn([ITEM])
    assert summary.verified == 1 and "explore" not in llm.prompt_names  # no model try was needed
    assert summary.sources == {"line_edit": {"reached": 1, "drafted": 1, "verified": 1}}
    insight = store.get("I0001")
    assert insight.status == Status.VERIFIED
    assert insight.example == "wrong: model.x + model.y <= 10 right: model.x + model.y >= 10"  # the precise edit
    extract = next(c for c in llm.calls if c.prompt_name == "extract")
    assert "The lines that differ, which hold the mistake: wrong: model.x + model.y <= 10" in extract.user
    screened = [a for a in store.attempts(task_id="toy_train/c1") if a.kind == "explore_line"]
    assert [(a.status, a.objective) for a in screened] == [("optimal", pytest.approx(24.0))]  # only the reaching one


def test_two_edits_together_when_no_single_one_reaches(setup):  # noqa: F811
    store, _, learner = setup
    two = TURNED.replace("model.x <= 6", "model.x <= 60")  # turned around, and a limit copied wrong
    llm = RoutedLLM().on("write_program", two).on("diagnose_program", two)
    llm.on("extract", json.dumps(DRAFT)).on("write_program", RIGHT)
    summary = learner(llm, explore_tries=0, line_variants=True).learn([ITEM])
    assert summary.verified == 1
    assert store.get("I0001").example == ("wrong: model.x + model.y <= 10 right: model.x + model.y >= 10; "
                                          "wrong: 60 right: 6")


def test_a_model_correction_is_cut_down_to_the_change_that_reaches(setup):  # noqa: F811
    store, _, learner = setup
    extra = "\n    model.extra = pyo.Constraint(expr=model.y <= 100)"
    noisy = RIGHT.replace("model.cap = pyo.Constraint(expr=model.x <= 6)",
                          "model.cap = pyo.Constraint(expr=model.x <= 6)" + extra)
    llm = RoutedLLM().on("write_program", TURNED).on("diagnose_program", TURNED)
    llm.on("explore", noisy).on("extract", json.dumps(DRAFT))
    llm.on("write_program", RIGHT)
    summary = learner(llm, explore_tries=1).learn([ITEM])
    assert summary.sources == {"explore": {"reached": 1, "drafted": 1, "verified": 1}}
    extract = next(c for c in llm.calls if c.prompt_name == "extract")
    right_part = extract.user.split("This corrected program is right:")[1]
    assert "model.y >= 10" in right_part and "model.extra" not in right_part  # the hunk that reached, alone
    assert [a.kind for a in store.attempts(task_id="toy_train/c1")][:4] == [
        "solve", "explore_integrality", "explore", "explore_hunk"]



def test_each_failed_solves_program_is_screened(setup):  # noqa: F811
    _, _, learner = setup
    no_y = RIGHT.replace("2 * model.x + 3 * model.y", "2 * model.x")  # no single or double edit reaches 24
    llm = RoutedLLM().on("write_program", no_y, TURNED).on("diagnose_program", TURNED)  # greedy, then sampled
    llm.on("extract", json.dumps(DRAFT)).on("write_program", RIGHT, RIGHT)
    summary = learner(llm, k=2, explore_tries=0, line_variants=True).learn([ITEM])
    assert summary.verified == 1 and summary.sources["line_edit"]["verified"] == 1
    extract = next(c for c in llm.calls if c.prompt_name == "extract")
    assert "model.x + model.y <= 10" in extract.user.split("This corrected program")[0]  # the sampled solve's
