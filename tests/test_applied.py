"""Insights the code applies: a quoted condition matched in the text, a relation edit carried out."""

from __future__ import annotations

import pytest

from alphaopt.agent import applied, rewrites
from alphaopt.agent.reading import read

LESSON = {"id": "I0105", "condition": 'when the text says "a daily requirement of N calories"',
          "example": "wrong: model.a * 275 + model.b * 151 <= 2000 right: model.a * 275 + model.b * 151 >= 2000"}
PROBLEM = ("Mary has a daily requirement of 2,200 calories. Food A costs $3 and has 300 calories; food B costs $2 "
           "and has 150 calories. Minimize the cost.")
PROGRAM = """import pyomo.environ as pyo
def build_model():
    model = pyo.ConcreteModel()
    model.a = pyo.Var(domain=pyo.NonNegativeReals)
    model.b = pyo.Var(domain=pyo.NonNegativeReals)
    need = 2200
    model.cal = pyo.Constraint(expr=300 * model.a + 150 * model.b <= need)
    model.cost = pyo.Objective(expr=3 * model.a + 2 * model.b, sense=pyo.minimize)
    return model
"""


def test_quote_and_pattern():
    assert applied.quote(LESSON["condition"]) == "a daily requirement of N calories"
    assert applied.quote("when the problem counts trucks") is None
    found = applied.pattern("a daily requirement of N calories").search("A Daily  requirement of 1,500.5 calories")
    assert found is not None and found.group(1) == "1,500.5"
    percent = applied.pattern("at least N% of the N units")
    assert percent.search("at least 30 percent of the 200 units").groups() == ("30", "200")
    assert not applied.pattern("of N calories").search("of 2000 caloriesx")  # whole words only


@pytest.mark.parametrize(("example", "to"), [
    (LESSON["example"], ">="),
    ("wrong: model.bus * 100 + model.car * 40 == 1200 right: model.bus * 100 + model.car * 40 >= 1200", ">="),
    ("wrong: 50 <= m.x + m.y right: 50 >= m.x + m.y", "<="),  # number first: read as "expression <= 50"
    ("wrong: m.x >= 5 right: m.y <= 5", None),  # another expression: not one relation edit
    ("wrong: m.x >= 5 right: m.x >= 6", None),  # a number changed, not a relation
    ("wrong: (missing) right: m.x >= 5", None),
    ("wrong: sense=pyo.maximize right: sense=pyo.minimize", None),
])
def test_relation_edit_reads_only_one_turned_relation(example, to):
    assert applied.relation_edit(example) == to


def test_a_matching_quote_turns_the_constraint_on_its_number():
    edits = applied.edits([LESSON], PROBLEM)
    assert edits == [applied.Edit(insight_id="I0105", to=">=", numbers=(2200.0,),
                                  quote="a daily requirement of N calories")]
    program, fixes = rewrites.prepare(PROGRAM, read(PROBLEM), edits=edits)
    assert "300 * model.a + 150 * model.b >= need" in program
    assert any(f.startswith("applied insight I0105") for f in fixes)
    # no match in the text, no example that is a relation edit, or nothing recalled: unchanged
    assert applied.edits([LESSON], PROBLEM.replace("daily requirement", "daily budget")) == []
    assert applied.edits([{**LESSON, "example": "wrong: x right: y"}], PROBLEM) == []
    assert rewrites.prepare(PROGRAM, read(PROBLEM), edits=[])[0] == PROGRAM


def test_the_edit_never_overrides_what_the_text_states():
    problem = PROBLEM.replace("has a daily requirement of 2,200 calories", "may eat at most 2,200 calories a day")
    edits = applied.edits([{**LESSON, "condition": 'when the text says "N calories"'}], problem)
    assert edits and read(problem).bounds.get(2200.0) == "<="
    program, fixes = rewrites.prepare(PROGRAM, read(problem), enabled=[], edits=edits)
    assert "<= need" in program and not any("I0105" in f for f in fixes)


def test_rules_equalities_and_numbers_written_first_are_turned():
    code = PROGRAM.replace("    model.cal = pyo.Constraint(expr=300 * model.a + 150 * model.b <= need)\n",
                           "    def cal_rule(m):\n        return 2200 == 300 * m.a + 150 * m.b\n"
                           "    model.cal = pyo.Constraint(rule=cal_rule)\n"
                           "    model.other = pyo.Constraint(expr=2200 >= model.a * 10)\n"
                           "    model.lam = pyo.Constraint(rule=lambda m: m.b * 3 <= 2200)\n"
                           "    model.keep = pyo.Constraint(expr=model.a <= 7)\n")
    program, _ = rewrites.prepare(code, read(PROBLEM), enabled=[], edits=applied.edits([LESSON], PROBLEM))
    assert "return 2200 <= 300 * m.a + 150 * m.b" in program  # "expression >= 2200", the number written first
    assert "2200 <= model.a * 10" in program and "model.a <= 7" in program
    assert "lambda m: m.b * 3 >= 2200" in program


def test_bounds_the_program_names_are_read_through_their_names():
    code = PROGRAM.replace("    need = 2200\n", "    need = {'calories': 2200, 'fat': 70}\n    model.top = pyo.Param("
                           "initialize=2200)\n    twice = 1\n    twice = 2200\n").replace(
        "<= need)", "<= need['calories'])\n    model.p = pyo.Constraint(expr=model.a <= model.top)\n"
                    "    model.q = pyo.Constraint(expr=model.b <= twice)\n    model.f = pyo.Constraint(expr=model.b <= "
                    "need['fat'])")
    program, _ = rewrites.prepare(code, read(PROBLEM), enabled=[], edits=applied.edits([LESSON], PROBLEM))
    assert "300 * model.a + 150 * model.b >= need['calories']" in program and "model.a >= model.top" in program
    assert "model.b <= twice" in program  # assigned twice: not read as a number
    assert "model.b <= need['fat']" in program  # another number
