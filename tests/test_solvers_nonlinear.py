"""solvers: models HiGHS cannot solve go to SCIP (real solvers, real sandbox); linear ones still go to HiGHS."""

from __future__ import annotations

import pytest

from solvers import Limits, Proof, SolverRunner, SolveStatus, highs_available, scip_available

pytestmark = pytest.mark.skipif(not (highs_available() and scip_available()),
                                reason="HiGHS (highspy) and SCIP (pyscipopt) are both needed")

HEAD = "import pyomo.environ as pyo\n\ndef build_model():\n    m = pyo.ConcreteModel()\n"


def _program(body: str) -> str:
    return HEAD + "".join(f"    {line.strip()}\n" for line in body.strip().splitlines()) + "    return m\n"


@pytest.fixture(scope="module")
def runner():
    with SolverRunner(Limits(wall_time_s=20, cpu_time_s=20)) as r:
        yield r


def test_minlp_with_a_product_of_variables_is_solved_to_proven_optimality(runner):
    res = runner.run(_program("""
        m.x = pyo.Var(bounds=(0, 4), domain=pyo.Integers)
        m.y = pyo.Var(bounds=(0, 3))
        m.budget = pyo.Constraint(expr=m.x + m.y <= 4.5)
        m.o = pyo.Objective(expr=m.x * m.y, sense=pyo.maximize)
    """))
    assert res.status is SolveStatus.OPTIMAL and res.ok
    assert res.solver == "scip" and res.proof is Proof.GLOBAL and res.model_class == "miqp" and res.is_mip
    assert res.objective == pytest.approx(5.0, rel=1e-6)  # x = 2, y = 2.5
    assert res.variables == pytest.approx({"x": 2.0, "y": 2.5}, rel=1e-5)
    assert res.check.passed and res.check.objective == pytest.approx(5.0, rel=1e-6)
    assert res.model_text.splitlines()[:3] == ["maximize  x*y", "subject to", "  budget:  x + y <= 4.5"]
    assert "  x  in [0, 4], integer" in res.model_text
    assert "SCIP Status" in res.log_tail and res.termination_condition == "optimal"


@pytest.mark.parametrize(("objective", "sense", "optimum", "plan"), [
    ("m.x * m.y", "maximize", 4.0, {"x": 2.0, "y": 2.0}),  # HiGHS alone would answer 0 here
    ("-(m.x - 0.5) ** 2", "minimize", -2.25, {"x": 2.0}),  # concave: the optimum sits at a corner
])
def test_nonconvex_quadratic_objective_goes_to_scip(runner, objective, sense, optimum, plan):
    res = runner.run(_program(f"""
        m.x = pyo.Var(bounds=(0, 2))
        m.y = pyo.Var(bounds=(0, 3))
        m.c = pyo.Constraint(expr=m.x + m.y <= 4)
        m.o = pyo.Objective(expr={objective}, sense=pyo.{sense})
    """))
    assert res.status is SolveStatus.OPTIMAL and res.solver == "scip" and res.model_class == "nonconvex_qp"
    assert res.objective == pytest.approx(optimum, abs=1e-5) and res.proof is Proof.GLOBAL
    assert {k: res.variables[k] for k in plan} == pytest.approx(plan, abs=1e-3)  # within the default 1e-4 gap


def test_convex_quadratic_objective_stays_with_highs(runner):
    res = runner.run(_program("""
        m.x = pyo.Var()
        m.y = pyo.Var()
        m.c = pyo.Constraint(expr=m.x + m.y <= 2)
        m.o = pyo.Objective(expr=(m.x - 1) ** 2 + (m.y - 2) ** 2)
    """))
    assert res.status is SolveStatus.OPTIMAL and res.solver == "highs" and res.model_class == "qp"
    assert res.objective == pytest.approx(0.5, abs=1e-6)
    assert res.variables == pytest.approx({"x": 0.5, "y": 1.5}, abs=1e-5)
    assert res.proof is Proof.GLOBAL and res.duals is None


def test_division_by_a_variable_and_sqrt(runner):
    res = runner.run(_program("""
        m.x = pyo.Var(bounds=(0.5, 3))
        m.y = pyo.Var(bounds=(0, 10))
        m.cap = pyo.Constraint(expr=m.x + m.y <= 100)
        m.ratio = pyo.Constraint(expr=m.y / m.x <= 2)
        m.root = pyo.Constraint(expr=pyo.sqrt(m.x) >= 1.5)
        m.o = pyo.Objective(expr=m.y - m.x, sense=pyo.maximize)
    """))
    assert res.status is SolveStatus.OPTIMAL and res.solver == "scip" and res.model_class == "nlp"
    assert res.objective == pytest.approx(3.0, abs=1e-5)
    assert res.variables == pytest.approx({"x": 3.0, "y": 6.0}, abs=1e-5)
    lines = res.model_text.splitlines()  # in declaration order, though the NL file puts nonlinear rows first
    assert lines[2:5] == ["  cap:  x + y <= 100", "  ratio:  y/x <= 2", "  root:  sqrt(x) >= 1.5"]


def test_nonlinear_infeasible(runner):
    res = runner.run(_program("""
        m.x = pyo.Var(bounds=(1, 2))
        m.on = pyo.Var(domain=pyo.Binary)
        m.need = pyo.Constraint(expr=m.x * m.on >= 5)
        m.o = pyo.Objective(expr=pyo.exp(m.x))
    """))
    assert res.status is SolveStatus.INFEASIBLE and res.solver == "scip"
    assert res.objective is None and res.variables == {} and res.proof is Proof.NONE


def test_nonlinear_unbounded(runner):
    res = runner.run(_program("""
        m.x = pyo.Var(within=pyo.NonNegativeReals)
        m.y = pyo.Var(within=pyo.NonNegativeReals)
        m.c = pyo.Constraint(expr=m.x * m.y >= 1)
        m.o = pyo.Objective(expr=m.x * m.y + m.x, sense=pyo.maximize)
    """))
    assert res.status is SolveStatus.UNBOUNDED and res.solver == "scip"
    assert res.objective is None and not res.ok


def test_nonlinear_time_limit(runner):
    res = runner.run(_program("""
        import random
        rng = random.Random(1)
        n = 40
        q = [[rng.randint(-50, 50) for _ in range(n)] for _ in range(n)]
        m.x = pyo.Var(range(n), domain=pyo.Binary)
        m.z = pyo.Var(range(n), bounds=(0, 10))
        m.half = pyo.Constraint(expr=sum(m.x[i] for i in range(n)) == n // 2)
        m.o = pyo.Objective(expr=sum(q[i][j] * m.x[i] * m.x[j] for i in range(n) for j in range(n))
                            + sum(m.z[i] * m.x[i] for i in range(n)) - sum(pyo.sqrt(m.z[i] + 1) for i in range(n)))
    """), time_limit_s=1.0)
    assert res.solver == "scip" and res.termination_condition == "timelimit"
    assert res.status in (SolveStatus.FEASIBLE, SolveStatus.TIME_LIMIT)
    if res.status is SolveStatus.FEASIBLE:
        assert res.proof is Proof.FEASIBLE and res.objective is not None and res.check.passed
    assert res.wall_time_s < 10


def test_a_linear_program_still_goes_to_highs(runner):
    res = runner.run(_program("""
        m.x = pyo.Var(within=pyo.NonNegativeReals)
        m.y = pyo.Var(within=pyo.NonNegativeReals)
        m.c1 = pyo.Constraint(expr=m.x + m.y <= 4)
        m.c2 = pyo.Constraint(expr=m.x + 3 * m.y <= 6)
        m.o = pyo.Objective(expr=3 * m.x + 5 * m.y, sense=pyo.maximize)
    """))
    assert res.status is SolveStatus.OPTIMAL and res.solver == "highs" and res.model_class == "lp"
    assert res.objective == pytest.approx(14.0) and res.duals == pytest.approx({"c1": 2.0, "c2": 1.0})
    assert res.stage_ms["route"] >= 0 and {"build", "export", "solve", "check"} <= set(res.stage_ms)


def test_the_mip_gap_limit_reaches_both_solvers():
    program = _program("""
        m.x = pyo.Var(range(30), domain=pyo.Binary)
        m.cap = pyo.Constraint(expr=sum((i % 7 + 3) * m.x[i] for i in range(30)) <= 41)
        m.o = pyo.Objective(expr=sum((i % 5 + 1) * (i % 3 + 1) * m.x[i] for i in range(30)) {extra}, sense=pyo.maximize)
    """)
    with SolverRunner(Limits(wall_time_s=20, mip_gap=0.5)) as loose:
        for extra, solver in (("", "highs"), ("+ 0.01 * m.x[0] * m.x[1]", "scip")):
            res = loose.run(program.replace("{extra}", extra))
            assert res.status is SolveStatus.OPTIMAL and res.solver == solver
            assert res.gap is not None and 0 <= res.gap <= 0.5
