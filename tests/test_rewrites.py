"""The program rewrites that follow from what the text says (``alphaopt.agent.rewrites``): the
objective's sense, a bound's direction, the signs that ask for a line, and the one switch."""

from __future__ import annotations

import pytest

from alphaopt.agent.program import extract_code, normalize
from alphaopt.agent.reading import Reading, read
from alphaopt.agent.rewrites import counted_objective, patch_fell_short, prepare, unused, wants_patch
from tests.fakes import program


def test_the_objective_gets_the_sense_the_problem_asks_for(runner):
    diet = extract_code(program("""
model = pyo.ConcreteModel()
model.a = pyo.Var(domain=pyo.NonNegativeReals)
model.b = pyo.Var(domain=pyo.NonNegativeReals)
model.cost = pyo.Objective(expr=6.5 * model.a + 4 * model.b, sense=pyo.maximize)
model.calories = pyo.Constraint(expr=800 * model.a + 450 * model.b >= 2200)
"""))
    assert runner.run(prepare(diet, Reading())[0]).status in ("unbounded", "infeasible_or_unbounded")
    fixed, fixes = prepare(diet, Reading(sense="minimize"))
    assert "sense=pyo.minimize" in fixed and "maximize" not in fixed
    assert fixes == ["set the objective's sense to minimize, as the problem asks (it said maximize)"]
    result = runner.run(fixed)
    assert result.status == "optimal" and result.objective == pytest.approx(6.5 * 2200 / 800)
    assert prepare(diet, Reading(sense="maximize")) == (diet, [])  # already right: untouched

    profit = extract_code(program("""
from pyomo.environ import ConcreteModel, Var, Objective, NonNegativeReals
model = ConcreteModel()
model.x = Var(domain=NonNegativeReals, bounds=(0, 10))
model.obj = Objective(expr=3 * model.x)
"""))
    fixed, fixes = prepare(profit, Reading(sense="maximize"))
    assert "sense=maximize" in fixed and "Pyomo minimizes by default" in fixes[0]
    assert runner.run(fixed).objective == pytest.approx(30)
    with_sense = profit.replace("3 * model.x)", "3 * model.x, sense=1)")
    assert prepare(with_sense, Reading(sense="maximize"))[0].count("sense=") == 1


def test_a_bound_written_the_other_way_than_the_text_states_it_is_turned_around(runner):
    # "at least 2000 units must be sent": the model wrote <= 2000 and got an empty plan
    code = extract_code(program("""
model = pyo.ConcreteModel()
model.c = pyo.Var(domain=pyo.NonNegativeIntegers)
model.t = pyo.Var(domain=pyo.NonNegativeIntegers)
model.obj = pyo.Objective(expr=model.c + model.t, sense=pyo.minimize)
model.oil = pyo.Constraint(expr=30 * model.c + 40 * model.t <= 2000)
model.cs = pyo.ConstraintList()
model.cs.add(15 >= model.c)
model.cs.add(model.t <= 0.5 * model.c)
"""))
    assert runner.run(code).objective == pytest.approx(0)
    fixed, fixes = prepare(code, Reading(bounds={2000.0: ">=", 15.0: ">=", 0.5: "<="}))
    assert "30 * model.c + 40 * model.t >= 2000" in fixed and "15 <= model.c" in fixed
    assert "model.t <= 0.5 * model.c" in fixed  # not a plain number on one side: untouched
    assert fixes == ["turned around the relation the text states for its number: "
                     "30 * model.c + 40 * model.t >= 2000; 15 <= model.c"]
    assert runner.run(fixed).objective == pytest.approx(60)
    assert prepare(fixed, Reading(bounds={2000.0: ">=", 15.0: ">="})) == (fixed, [])  # already right


def test_the_objective_sense_is_left_alone_when_it_is_not_one_plain_objective():
    two = extract_code(program("""
model = pyo.ConcreteModel()
model.x = pyo.Var(domain=pyo.NonNegativeReals)
model.o1 = pyo.Objective(expr=model.x, sense=pyo.maximize)
model.o2 = pyo.Objective(expr=model.x)
"""))
    assert prepare(two, Reading(sense="minimize")) == (two, [])
    assigned = extract_code(program("""
model = pyo.ConcreteModel()
model.x = pyo.Var(domain=pyo.NonNegativeReals)
model.obj = pyo.Objective(expr=model.x)
model.obj.sense = pyo.maximize
"""))
    assert prepare(assigned, Reading(sense="minimize")) == (assigned, [])
    chosen = extract_code(program("""
model = pyo.ConcreteModel()
model.x = pyo.Var(domain=pyo.NonNegativeReals)
model.obj = pyo.Objective(expr=model.x, sense=SENSE)
"""))
    assert prepare(chosen, Reading(sense="maximize")) == (chosen, [])


AT_MOST_2000 = """
model = pyo.ConcreteModel()
model.x = pyo.Var(domain=pyo.NonNegativeReals)
model.obj = pyo.Objective(expr=3 * model.x, sense=pyo.maximize)
model.cap = pyo.Constraint(expr=model.x <= 2000)
"""  # for a text that asks for at least 2000 at the least cost: both the sense and the bound are off


def test_the_switch_turns_every_text_rewrite_off_and_leaves_the_mechanical_fixes():
    code = extract_code(program(AT_MOST_2000 + "print(model)\n"))
    reading = read("At least 2000 units must be made. Minimize the cost.")
    on, on_fixes = prepare(code, reading)
    assert "sense=pyo.minimize" in on and "model.x >= 2000" in on and len(on_fixes) == 3
    off, off_fixes = prepare(code, reading, enabled=False)
    assert (off, off_fixes) == normalize(code)  # only the mechanical fix: the print is dropped
    assert "sense=pyo.maximize" in off and "model.x <= 2000" in off
    assert off_fixes == ["dropped a print statement in build_model"]
    assert not wants_patch(read("Make 500 chairs at most. Maximize profit."), off, max_unused=3, enabled=False)


WAGES = extract_code(program("""
model = pyo.ConcreteModel()
model.seniors = pyo.Var(domain=pyo.NonNegativeIntegers)
model.juniors = pyo.Var(domain=pyo.NonNegativeIntegers)
model.cost = pyo.Objective(expr=300 * model.seniors + 100 * model.juniors, sense=pyo.minimize)
model.need = pyo.Constraint(expr=model.seniors + model.juniors >= 40)
"""))


def test_a_weighted_objective_for_a_count_to_minimize_wants_a_patch():
    counted = read("Seniors cost $300 and juniors $100. At least 40 are needed. Minimize the total number of workers.")
    assert counted_objective(counted, WAGES) == "300 * model.seniors + 100 * model.juniors"
    assert wants_patch(counted, WAGES, max_unused=3)
    costed = read("Seniors cost $300 and juniors $100. At least 40 are needed. Minimize the total cost.")
    assert counted_objective(costed, WAGES) is None and not wants_patch(costed, WAGES, max_unused=3)


def test_unused_quantities_want_a_patch_only_up_to_the_cap():
    text = read("Seniors cost $300 and juniors $100. At least 40 are needed, at most 25 seniors and 30 juniors. "
                "Minimize the total cost.")
    assert [n.written for n in unused(text, WAGES)] == ["25", "30"]
    assert wants_patch(text, WAGES, max_unused=2) and not wants_patch(text, WAGES, max_unused=1)
    line = "    model.s = pyo.Constraint(expr=model.seniors <= 25)\n"
    capped = WAGES.replace("    return model", line + "    return model")
    assert not patch_fell_short(text, capped, WAGES) and patch_fell_short(text, WAGES, capped)


def test_each_rewrite_has_its_own_name_in_the_one_switch():
    code = extract_code(program(AT_MOST_2000))
    reading = read("At least 2000 units must be made. Minimize the cost.")
    sense_only, fixes = prepare(code, reading, enabled=["sense"])
    assert "sense=pyo.minimize" in sense_only and "model.x <= 2000" in sense_only and len(fixes) == 1
    bounds_only, fixes = prepare(code, reading, enabled=["bounds"])
    assert "sense=pyo.maximize" in bounds_only and "model.x >= 2000" in bounds_only and len(fixes) == 1
    assert prepare(code, reading, enabled=["counted", "unused"]) == prepare(code, reading, enabled=False)
    counted = read("Seniors cost $300 and juniors $100. At least 40 are needed. Minimize the total number of workers.")
    assert wants_patch(counted, WAGES, max_unused=3, enabled=["counted"])
    assert not wants_patch(counted, WAGES, max_unused=3, enabled=["sense", "bounds", "unused"])
    left_out = read("Make chairs and tables. Each chair earns $30. At most 500 chairs. Maximize profit.")
    chairs = extract_code(program("""
model = pyo.ConcreteModel()
model.chairs = pyo.Var(domain=pyo.NonNegativeReals)
model.obj = pyo.Objective(expr=30 * model.chairs, sense=pyo.maximize)
model.cap = pyo.Constraint(expr=model.chairs <= 10)
"""))
    assert unused(left_out, chairs) and wants_patch(left_out, chairs, max_unused=3, enabled=["unused"])
    assert not wants_patch(left_out, chairs, max_unused=3, enabled=["counted"])
    with pytest.raises(ValueError, match=r"unknown text rewrites.*sense, bounds, counted, unused"):
        prepare(code, reading, enabled=["sence"])
