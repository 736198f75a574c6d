"""The mechanical contract fixes applied to a model's reply before it runs."""

from __future__ import annotations

import ast

import pytest

from alphaopt.agent.program import (
    apply_lines,
    cut_repetition,
    extract_code,
    integrality_variants,
    normalize,
    numeric_constants,
    weighted_objective,
)
from tests.fakes import program


def _fixed(code: str) -> tuple[str, list[str]]:
    program, fixes = normalize(code)
    ast.parse(program)
    return program, fixes


def test_extract_prefers_block_with_build_model():
    reply = "Here:\n```python\nx = 1\n```\nand\n```python\ndef build_model():\n    return 1\n```\nDone."
    assert extract_code(reply) == "def build_model():\n    return 1"


def test_extract_unterminated_fence_and_plain_text():
    assert extract_code("```python\ndef build_model():\n    pass") == "def build_model():\n    pass"
    assert extract_code("def build_model():\n    pass") == "def build_model():\n    pass"


def test_clean_program_is_unchanged():
    code = "import pyomo.environ as pyo\n\ndef build_model():\n    model = pyo.ConcreteModel()\n    return model\n"
    assert normalize(code) == (code, [])


def test_cuts_before_solve_and_adds_return():
    code = """
import pyomo.environ as pyo
def build_model():
    model = pyo.ConcreteModel()
    model.x = pyo.Var()
    solver = pyo.SolverFactory('highs')
    results = solver.solve(model)
    print(results.objective)
"""
    program, fixes = _fixed(code)
    assert "solve" not in program and "SolverFactory" not in program and "print" not in program
    assert program.rstrip().endswith("return model")
    assert any("solve call" in f for f in fixes) and any("return model" in f for f in fixes)


def test_wraps_module_level_model_and_drops_main():
    code = """
from pyomo.environ import *
model = ConcreteModel()
model.x = Var(domain=NonNegativeReals)
model.obj = Objective(expr=model.x)
opt = SolverFactory('glpk')
opt.solve(model)
model.display()
if __name__ == '__main__':
    print(value(model.obj))
"""
    program, fixes = _fixed(code)
    tree = ast.parse(program)
    funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert [f.name for f in funcs] == ["build_model"]
    assert "__main__" not in program and "display" not in program
    assert "wrapped the module-level model into build_model()" in fixes


def test_adds_missing_imports():
    code = ("def build_model():\n    model = pyo.ConcreteModel()\n    model.x = Var(domain=NonNegativeReals)\n"
            "    model.s = math.sqrt(4)\n    return model\n")
    program, fixes = _fixed(code)
    assert "import pyomo.environ as pyo" in program
    assert "from pyomo.environ import NonNegativeReals, Var" in program
    assert "import math" in program
    assert fixes and fixes[0].startswith("added missing imports")


def test_syntax_error_is_left_for_the_repair_loop():
    code = "def build_model(:\n    pass"
    assert normalize(code) == (code, [])


def test_star_import_from_pyomo_counts_as_binding():
    code = "from pyomo.environ import *\n\ndef build_model():\n    model = ConcreteModel()\n    return model\n"
    assert normalize(code) == (code, [])


def test_renames_components_that_clash_with_pyomo_attributes():
    code = """import pyomo.environ as pyo

def build_model():
    model = pyo.ConcreteModel()
    model.active = pyo.Var(domain=pyo.NonNegativeReals)
    model.type = pyo.Constraint(expr=model.active <= 3)
    model.obj = pyo.Objective(expr=model.active, sense=pyo.maximize)
    return model
"""
    program, fixes = _fixed(code)
    assert "model.active_" in program and "model.type_ =" in program and "model.active <=" not in program
    assert fixes == ["renamed components that clash with Pyomo's own attributes: active, type"]


SUMS_INDEXES = """import pyomo.environ as pyo

def build_model():
    model = pyo.ConcreteModel()
    model.x = pyo.Var(range(5), domain=pyo.NonNegativeReals)
    model.y = pyo.Var(domain=pyo.NonNegativeReals)
    model.obj = pyo.Objective(expr=sum(model.x) + model.y, sense=pyo.maximize)
    model.cap = pyo.Constraint(expr=sum(model.x) <= 8)
    model.ylim = pyo.Constraint(expr=model.y <= 1)
    return model
"""


def test_sum_over_an_indexed_variable_sums_the_variables(runner):
    program, fixes = _fixed(SUMS_INDEXES)
    assert program.count("sum(model.x.values())") == 2 and fixes == [
        "summed the variables, not their indexes: sum(model.x.values())"]
    # as written, sum(model.x) is 0+1+2+3+4 = 10: the constraint is 'False' and Pyomo refuses it
    assert runner.run(SUMS_INDEXES).status.value == "error"
    result = runner.run(program)
    assert result.status.value == "optimal" and abs(result.objective - 9) < 1e-9


def test_sums_of_indexed_expressions_are_left_alone():
    code = SUMS_INDEXES.replace("sum(model.x)", "sum(model.x[i] for i in range(5))")
    assert _fixed(code) == (code, [])


def test_constraint_sense_argument_is_dropped_and_strict_relations_made_non_strict(runner):
    code = program("""
model = pyo.ConcreteModel()
model.x = pyo.Var(range(3), domain=pyo.NonNegativeReals)
model.obj = pyo.Objective(expr=sum(model.x[i] for i in range(3) if i < 2), sense=pyo.maximize)
model.c = pyo.Constraint(expr=model.x[0] < 5, sense=pyo.le)
model.cs = pyo.ConstraintList()
model.cs.add(sum(model.x[i] for i in range(3) if i > 0) < 1)
""")
    fixed, fixes = normalize(extract_code(code))
    assert "sense=pyo.le" not in fixed and "model.x[0] <= 5" in fixed
    assert "if i < 2" in fixed and "if i > 0" in fixed  # conditions inside sums are not relations
    assert any("sense=" in f for f in fixes) and any("2 strict" in f for f in fixes)
    result = runner.run(fixed)
    assert result.status == "optimal" and result.objective == pytest.approx(6)


def test_cut_repetition_keeps_the_first_copy_and_a_parsable_program(runner):
    looping = extract_code(program("""
model = pyo.ConcreteModel()
model.x = pyo.Var(domain=pyo.NonNegativeReals)
model.obj = pyo.Objective(expr=model.x, sense=pyo.maximize)
model.cap = pyo.Constraint(expr=model.x <= 50)
model.cap = pyo.Constraint(expr=model.x <= 50)
model.cap = pyo.Constraint(expr=model.x <= 50)
model.cap = pyo.Constraint(expr=model.x <= 50)
model.cap = pyo.Con""")).replace("    return model\n", "")
    cut, fixes = cut_repetition(looping)
    assert cut.count("model.cap") == 1 and "pyo.Con\n" not in cut and fixes
    result = runner.run(normalize(cut)[0])
    assert result.status == "optimal" and result.objective == pytest.approx(50)


def test_cut_repetition_leaves_programs_without_a_loop_alone():
    scalars = "\n".join(f"    model.y{i} = pyo.Var(domain=pyo.Binary)" for i in range(20))
    code = (f"import pyomo.environ as pyo\ndef build_model():\n    model = pyo.ConcreteModel()\n{scalars}\n"
            "    model.obj = pyo.Obj")
    assert cut_repetition(code) == (code, [])
    brackets = "x = [\n    [1, 2],\n    [1, 2],\n    [1, 2],\n]\n"
    assert cut_repetition(brackets) == (brackets, [])  # short repeated rows are data, but too short to count


def test_expression_given_as_the_index_argument_becomes_expr(runner):
    code = program("""
model = pyo.ConcreteModel()
model.x = pyo.Var(domain=pyo.NonNegativeReals)
model.y = pyo.Var(domain=pyo.NonNegativeReals)
model.obj = pyo.Objective(3 * model.x + 2 * model.y, sense=pyo.maximize)
model.c1 = pyo.Constraint(model.x + model.y <= 4)
model.c2 = pyo.Constraint(model.x <= 3)
model.idx = pyo.Constraint(range(2), rule=lambda m, i: m.y >= 0)
""")
    fixed, fixes = normalize(extract_code(code))
    assert "Constraint(expr=model.x + model.y <= 4)" in fixed and "Objective(expr=3 * model.x" in fixed
    assert "Constraint(range(2), rule=" in fixed  # a real index set stays
    assert any("3 expression(s)" in f for f in fixes)
    result = runner.run(fixed)
    assert result.status == "optimal" and result.objective == pytest.approx(11)


def test_a_loop_that_only_counts_up_constraint_names_is_cut(runner):
    copies = "\n".join(f"model.cap{i} = pyo.Constraint(expr=model.x <= 50)" for i in range(1, 9))
    looping = extract_code(program(f"""
model = pyo.ConcreteModel()
model.x = pyo.Var(domain=pyo.NonNegativeReals)
model.obj = pyo.Objective(expr=model.x, sense=pyo.maximize)
{copies}
model.cap9 = pyo.Constraint(expr=model.x""")).replace("\n    return model", "")
    cut, fixes = cut_repetition(looping)
    assert "model.cap1 " in cut and "model.cap2" not in cut and fixes
    result = runner.run(normalize(cut)[0])
    assert result.status == "optimal" and result.objective == pytest.approx(50)
    # different constraints that share a bound, followed by more code, are not a loop
    distinct = "\n".join(f"    model.cap{i} = pyo.Constraint(expr=model.x{i} <= 50)" for i in range(1, 9))
    listed = f"def build_model():\n{distinct}\n    model.obj = pyo.Obj"
    assert cut_repetition(listed) == (listed, [])


def test_two_index_variable_indexed_twice_becomes_one_tuple(runner):
    code = program("""
model = pyo.ConcreteModel()
cost = [[2, 3], [4, 1]]
model.x = pyo.Var(range(2), range(2), domain=pyo.NonNegativeReals)
model.y = pyo.Var(range(2), domain=pyo.NonNegativeReals)
model.obj = pyo.Objective(expr=sum(cost[i][j] * model.x[i][j] for i in range(2) for j in range(2)) """
                   """+ model.y[0], sense=pyo.minimize)
model.c = pyo.ConstraintList()
for i in range(2):
    model.c.add(sum(model.x[i][j] for j in range(2)) >= 1)
""")
    fixed, fixes = _fixed(extract_code(code))
    assert "model.x[i, j]" in fixed and "model.x[i][j]" not in fixed and "cost[i][j]" in fixed
    assert any("model.x[i, j]" in f for f in fixes)
    result = runner.run(fixed)
    assert result.status == "optimal" and result.objective == pytest.approx(3)


def test_constraint_assigned_in_a_loop_becomes_a_constraint_list(runner):
    code = program("""
model = pyo.ConcreteModel()
model.x = pyo.Var(range(3), domain=pyo.NonNegativeReals)
model.obj = pyo.Objective(expr=sum(model.x[i] for i in range(3)), sense=pyo.maximize)
caps = [1, 2, 3]
for i in range(3):
    if caps[i] > 0:
        model.cap = pyo.Constraint(expr=model.x[i] <= caps[i], name=f"cap_{i}")
for i in range(3):
    model.cap = pyo.Constraint(expr=model.x[i] <= 10)
model.total = pyo.Constraint(expr=sum(model.x[i] for i in range(3)) <= 100)
""")
    fixed, fixes = _fixed(extract_code(code))
    assert fixed.count("model.cap = pyo.ConstraintList()") == 1 and "model.cap.add(model.x[i] <= caps[i])" in fixed
    assert "model.total = pyo.Constraint(expr=" in fixed  # not in a loop: left alone
    assert any("ConstraintList" in f for f in fixes)
    result = runner.run(fixed)
    assert result.status == "optimal" and result.objective == pytest.approx(6)  # without the fix: 10 + 10 + 3
    # a name also assigned outside any loop is left alone
    mixed = ("def build_model():\n    model = ConcreteModel()\n    model.c = Constraint(expr=x <= 1)\n    for i in I:\n"
             "        model.c = Constraint(expr=x <= i)\n    return model\n")
    assert "ConstraintList" not in normalize(mixed)[0]


def test_a_component_declared_after_its_first_use_is_moved_up(runner):
    code = program("""
model = pyo.ConcreteModel()
model.x = pyo.Var(range(2), domain=pyo.NonNegativeReals)
model.obj = pyo.Objective(expr=sum(model.price[i] * model.x[i] for i in range(2)), sense=pyo.maximize)
model.cap = pyo.Constraint(expr=sum(model.x[i] for i in range(2)) <= 4)
prices = {0: 3, 1: 2}
model.price = pyo.Param(range(2), initialize=prices)
""")
    fixed, fixes = _fixed(extract_code(code))
    assert fixed.index("prices = {") < fixed.index("model.price = pyo.Param") < fixed.index("model.obj =")
    assert fixes == ["declared model.price before its first use"]
    result = runner.run(fixed)
    assert result.status == "optimal" and result.objective == pytest.approx(12)
    # a declaration that needs something computed in between stays where it is (the repair shows the error)
    computed = program("""
model = pyo.ConcreteModel()
model.x = pyo.Var(domain=pyo.NonNegativeReals)
model.obj = pyo.Objective(expr=model.k * model.x)
k = max(1, 2)
model.k = pyo.Param(initialize=k)
""")
    assert "before its first use" not in " ".join(normalize(extract_code(computed))[1])


def test_integrality_variants_flip_declared_domains_both_ways():
    code = "x = Var(domain=NonNegativeReals)\ny = Var(domain=pyo.NonNegativeIntegers)\nz = Var(domain=Binary)\n"
    (what_int, to_int), (what_real, to_real) = integrality_variants(code)
    assert "integer" in what_int and to_int.count("NonNegativeIntegers") == 2 and "Binary" in to_int
    assert "continuous" in what_real and to_real.count("NonNegativeReals") == 2
    assert integrality_variants("z = Var(domain=Binary)\n") == []


def test_numeric_constants_are_the_numbers_in_the_code_not_in_comments_or_strings():
    code = 'import pyomo.environ as pyo\nx = 3 * 2.5  # 500 acres\nname = "40"\nflag = True\ny = -7\n'
    assert numeric_constants(code) == {3.0, 2.5, 7.0}
    assert numeric_constants("def (:") == set()


def test_apply_lines_adds_a_constraint_or_replaces_the_one_of_the_same_name():
    code = extract_code(program("m = pyo.ConcreteModel()\nm.x = pyo.Var()\nm.cap = pyo.Constraint(expr=m.x <= 4)"))
    added, changes = apply_lines(code, "model.low = pyo.Constraint(expr=model.x >= 1)\nprint('hi')")
    assert changes == ["added: m.low = pyo.Constraint(expr=m.x >= 1)"]  # on the program's own model name
    assert added.index("m.low") < added.index("return m") and "print" not in added
    replaced, changes = apply_lines(code, "m.cap = pyo.Constraint(expr=m.x <= 5)")
    assert changes == ["replaced: m.cap = pyo.Constraint(expr=m.x <= 5)"] and "<= 4" not in replaced
    # nothing to apply: the same line, a variable, or text that does not parse
    for lines in ("m.cap = pyo.Constraint(expr=m.x <= 4)", "m.y = pyo.Var()", "the constraint is x <= 5"):
        assert apply_lines(code, lines) == (code, [])


def test_weighted_objective_is_the_expression_when_a_term_has_a_weight():
    body = "model = pyo.ConcreteModel()\nmodel.a = pyo.Var()\nmodel.b = pyo.Var()\nmodel.o = pyo.Objective(expr={})"
    assert (weighted_objective(extract_code(program(body.format("120 * model.a + model.b * 30"))))
            == "120 * model.a + model.b * 30")
    assert weighted_objective(extract_code(program(body.format("model.a + 1 * model.b")))) is None
    assert weighted_objective("x = (") is None
