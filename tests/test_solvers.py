"""solvers: programs run through the real HiGHS solver (never mocked); the model leaves the program's
process as a file, which a trusted process solves, checks and renders."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from solvers import Limits, Proof, SolveResult, SolverRunner, SolveStatus, highs_available, run_program, scip_available

pytestmark = pytest.mark.skipif(not highs_available(), reason="Pyomo's HiGHS interface (highspy) is not installed")

LP = """
import pyomo.environ as pyo

def build_model():
    m = pyo.ConcreteModel()
    m.x = pyo.Var(within=pyo.NonNegativeReals)
    m.y = pyo.Var(within=pyo.NonNegativeReals)
    m.c1 = pyo.Constraint(expr=m.x + m.y <= 4)
    m.c2 = pyo.Constraint(expr=m.x + 3 * m.y <= 6)
    m.c3 = pyo.Constraint(expr=m.x <= 10)
    m.profit = pyo.Objective(expr=3 * m.x + 5 * m.y, sense=pyo.maximize)
    print("model built")
    return m
"""

MILP = """
import pyomo.environ as pyo

def build_model():
    values, weights = [10, 13, 7, 8], [5, 6, 3, 4]
    m = pyo.ConcreteModel()
    m.I = pyo.RangeSet(0, 3)
    m.take = pyo.Var(m.I, within=pyo.Binary)
    m.cap = pyo.Constraint(expr=sum(weights[i] * m.take[i] for i in m.I) <= 10)
    m.value = pyo.Objective(expr=sum(values[i] * m.take[i] for i in m.I), sense=pyo.maximize)
    return m
"""

INFEASIBLE = """
import pyomo.environ as pyo

def build_model():
    m = pyo.ConcreteModel()
    m.x = pyo.Var(within=pyo.NonNegativeReals)
    m.c = pyo.Constraint(expr=m.x <= -1)
    m.o = pyo.Objective(expr=m.x)
    return m
"""

UNBOUNDED = """
import pyomo.environ as pyo

def build_model():
    m = pyo.ConcreteModel()
    m.x = pyo.Var(within=pyo.NonNegativeReals)
    m.c = pyo.Constraint(expr=m.x >= 1)
    m.o = pyo.Objective(expr=m.x, sense=pyo.maximize)
    return m
"""

# Market split (Cornuejols-Dawande): tiny, but branch and bound needs many seconds.
HARD_MILP = """
import random
import pyomo.environ as pyo

def build_model():
    rng = random.Random(7)
    rows, n = 4, 34
    a = [[rng.randint(0, 99) for _ in range(n)] for _ in range(rows)]
    m = pyo.ConcreteModel()
    m.I, m.J = pyo.RangeSet(0, rows - 1), pyo.RangeSet(0, n - 1)
    m.x = pyo.Var(m.J, within=pyo.Binary)
    m.up = pyo.Var(m.I, within=pyo.NonNegativeReals)
    m.down = pyo.Var(m.I, within=pyo.NonNegativeReals)
    m.split = pyo.Constraint(m.I, rule=lambda m, i:
        sum(a[i][j] * m.x[j] for j in m.J) + m.up[i] - m.down[i] == sum(a[i]) // 2)
    m.o = pyo.Objective(expr=sum(m.up[i] + m.down[i] for i in m.I))
    return m
"""


@pytest.fixture(scope="module")
def runner():
    with SolverRunner(Limits(wall_time_s=10, cpu_time_s=10), workers=2) as r:
        yield r


def test_highs_available():
    assert highs_available() is True


def test_lp_optimum_with_duals_and_slacks(runner):
    res = runner.run(LP)
    assert res.status is SolveStatus.OPTIMAL and res.ok
    assert res.termination_condition == "Optimal"
    assert res.solver == "highs" and res.proof is Proof.GLOBAL and res.model_class == "lp"
    assert res.check is not None and res.check.passed and res.check.objective == pytest.approx(14.0)
    assert res.objective == pytest.approx(14.0)
    assert res.sense == "maximize"
    assert res.variables == pytest.approx({"x": 3.0, "y": 1.0})
    assert res.is_mip is False
    assert res.duals == pytest.approx({"c1": 2.0, "c2": 1.0, "c3": 0.0})
    assert res.slacks == pytest.approx({"c1": 0.0, "c2": 0.0, "c3": 7.0})
    assert res.reduced_costs is not None and set(res.reduced_costs) == {"x", "y"}
    assert res.solve_time_s is not None and 0 < res.solve_time_s <= res.wall_time_s
    assert "model built" in res.log_tail and "Optimal" in res.log_tail
    assert res.error is None and res.sandbox


def test_result_is_json_data(runner):
    data = runner.run(LP).model_dump(mode="json")
    assert data["status"] == "optimal" and isinstance(data["variables"], dict)
    assert SolveResult.model_validate(data).ok


def test_milp_has_no_duals(runner):
    res = runner.run(MILP)
    assert res.status is SolveStatus.OPTIMAL
    assert res.is_mip is True
    assert res.objective == pytest.approx(21.0)  # items 1 and 3: weight 10
    assert res.variables == pytest.approx({"take[0]": 0.0, "take[1]": 1.0, "take[2]": 0.0, "take[3]": 1.0})
    assert res.duals is None and res.slacks is None


def test_infeasible(runner):
    res = runner.run(INFEASIBLE)
    assert res.status in (SolveStatus.INFEASIBLE, SolveStatus.INFEASIBLE_OR_UNBOUNDED)
    assert res.objective is None and res.variables == {} and not res.ok
    assert res.model_text.startswith(("minimize", "maximize"))  # the model is shown even when no plan exists


CONFLICTING = """
import pyomo.environ as pyo

def build_model():
    m = pyo.ConcreteModel()
    m.a = pyo.Var(domain=pyo.NonNegativeIntegers)
    m.b = pyo.Var(domain=pyo.Reals)
    m.obj = pyo.Objective(expr=3 * m.a + 2 * m.b, sense=pyo.maximize)
    m.cap = pyo.Constraint(expr=m.a + m.b <= 10)
    m.extra = pyo.Constraint(expr=m.b <= 7)
    m.rows = pyo.ConstraintList()
    m.rows.add(m.b >= 1)
    m.rows.add(m.a >= 12)
    return m
"""


def test_infeasible_model_names_the_constraints_in_conflict(runner):
    res = runner.run(CONFLICTING)
    assert res.status is SolveStatus.INFEASIBLE
    # the irreducible subset: without any one of these three the rest is feasible; b <= 7 is not needed
    assert [(c.name, c.text) for c in res.conflict] == [
        ("cap", "a + b <= 10"), ("rows[1]", "b >= 1"), ("rows[2]", "a >= 12")]


def test_a_variable_whose_bounds_cross_is_the_conflict(runner):
    res = runner.run(INFEASIBLE.replace("m.c = pyo.Constraint(expr=m.x <= -1)",
                                        "m.x.setub(-1)\n    m.c = pyo.Constraint(expr=m.x <= 5)"))
    assert res.status is SolveStatus.INFEASIBLE
    assert [(c.name, c.text) for c in res.conflict] == [("x", "x >= 0 and x <= -1")]


def test_feasible_and_unbounded_models_have_no_conflict(runner):
    assert runner.run(MILP).conflict is None and runner.run(MILP).unbounded is None
    unbounded = runner.run(UNBOUNDED.replace("NonNegativeReals", "NonNegativeIntegers"))
    assert unbounded.status is SolveStatus.UNBOUNDED and unbounded.conflict is None


def test_unbounded_model_names_the_variables_that_grow(runner):
    res = runner.run("""
import pyomo.environ as pyo

def build_model():
    m = pyo.ConcreteModel()
    m.x = pyo.Var(range(3), domain=pyo.NonNegativeReals)
    m.y = pyo.Var(domain=pyo.NonNegativeIntegers)
    m.o = pyo.Objective(expr=m.x[0] + m.x[1] + m.x[2] + m.y, sense=pyo.maximize)
    m.c = pyo.Constraint(expr=m.x[0] + m.x[1] <= 4)
    m.d = pyo.Constraint(expr=m.y - m.x[2] <= 1)
    return m
""")
    assert res.status is SolveStatus.UNBOUNDED
    assert res.unbounded == ["x[2]", "y"] and res.objective is None and res.variables == {}


def test_model_text_is_the_model_as_built(runner):
    res = runner.run(MILP)
    lines = res.model_text.splitlines()
    assert lines[:5] == ["sets", "  I = {0, 1, 2, 3}", "maximize  10*take[0] + 13*take[1] + 7*take[2] + 8*take[3]",
                         "subject to", "  cap:  5*take[0] + 6*take[1] + 3*take[2] + 4*take[3] <= 10"]
    assert lines[5] == "variables" and "  take[2]  binary" in lines
    mixed = runner.run("""
import pyomo.environ as pyo

def build_model():
    m = pyo.ConcreteModel()
    m.n = pyo.Var(domain=pyo.NonNegativeIntegers)
    m.z = pyo.Var(bounds=(1, 5.5))
    m.r = pyo.Constraint(expr=(2, m.n + m.z, 8))
    m.e = pyo.Constraint(expr=m.n == 2 * m.z)
    m.o = pyo.Objective(expr=m.n - m.z)
    return m
""")
    assert mixed.model_text.splitlines() == [
        "minimize  n - z", "subject to", "  r:  2 <= n + z <= 8", "  e:  n - 2*z == 0",
        "variables", "  n  >= 0, integer", "  z  in [1, 5.5], continuous"]


def test_model_text_of_a_large_model_is_cut(runner):
    res = runner.run("""
import pyomo.environ as pyo

def build_model():
    m = pyo.ConcreteModel()
    m.x = pyo.Var(range(100), bounds=(0, 1))
    m.c = pyo.Constraint(range(100), rule=lambda m, i: m.x[i] <= 0.5)
    m.o = pyo.Objective(expr=sum(m.x[i] for i in range(100)), sense=pyo.maximize)
    return m
""")
    assert res.status is SolveStatus.OPTIMAL and res.objective == pytest.approx(50)
    assert "  ... and 40 more" in res.model_text and res.model_text.count("<= 0.5") == 60


def test_model_text_lists_declared_sets_and_parameters(runner):
    res = runner.run("""
import pyomo.environ as pyo

def build_model():
    m = pyo.ConcreteModel()
    m.S = pyo.Set(initialize=["a", "b"])
    m.cost = pyo.Param(m.S, initialize={"a": 2, "b": 3.5})
    m.cap = pyo.Param(initialize=10)
    m.x = pyo.Var(m.S, domain=pyo.NonNegativeReals)
    m.o = pyo.Objective(expr=sum(m.cost[s] * m.x[s] for s in m.S), sense=pyo.maximize)
    m.c = pyo.Constraint(expr=sum(m.x[s] for s in m.S) <= m.cap)
    return m
""")
    assert res.objective == pytest.approx(35)
    assert res.model_text.splitlines()[:6] == ["sets", "  S = {a, b}", "parameters", "  cost = {a: 2, b: 3.5}",
                                              "  cap = 10", "maximize  2*x[a] + 3.5*x[b]"]


def test_unbounded_is_not_reported_as_optimal(runner):
    res = runner.run(UNBOUNDED)
    assert res.status in (SolveStatus.UNBOUNDED, SolveStatus.INFEASIBLE_OR_UNBOUNDED)
    assert res.objective is None and not res.ok


def test_python_error_points_at_program_line(runner):
    program = "import pyomo.environ as pyo\n\ndef build_model():\n    m = pyo.ConcreteModel()\n    return 1 / 0\n"
    res = runner.run(program)
    assert res.status is SolveStatus.ERROR
    assert "ZeroDivisionError" in res.error
    assert 'File "program.py", line 5, in build_model' in res.error
    assert "return 1 / 0" in res.error


def test_syntax_error_reports_line(runner):
    res = runner.run("def build_model(:\n    pass\n")
    assert res.status is SolveStatus.ERROR
    assert "SyntaxError" in res.error and "program.py" in res.error and "line 1" in res.error


@pytest.mark.parametrize(
    ("program", "needle"),
    [
        ("import pyomo.environ as pyo\nx = 1\n", "build_model"),
        ("def build_model():\n    return {'x': 1}\n", "ConcreteModel"),
        (LP.replace("    m.profit = pyo.Objective(expr=3 * m.x + 5 * m.y, sense=pyo.maximize)\n", ""),
         "0 active objectives"),
        (LP.replace("    return m\n", "    m.other = pyo.Objective(expr=m.x)\n    return m\n"), "2 active objectives"),
    ],
    ids=["no-build_model", "not-a-model", "no-objective", "two-objectives"],
)
def test_contract_violations_are_invalid_program(runner, program, needle):
    res = runner.run(program)
    assert res.status is SolveStatus.INVALID_PROGRAM
    assert needle in res.error


def test_abstract_model_with_default_params(runner):
    program = """
import pyomo.environ as pyo

def build_model():
    m = pyo.AbstractModel()
    m.cost = pyo.Param(default=2.0)
    m.demand = pyo.Param(default=5.0)
    m.x = pyo.Var(within=pyo.NonNegativeReals)
    m.need = pyo.Constraint(rule=lambda m: m.x >= m.demand)
    m.o = pyo.Objective(rule=lambda m: m.cost * m.x)
    return m
"""
    res = runner.run(program)
    assert res.status is SolveStatus.OPTIMAL
    assert res.objective == pytest.approx(10.0) and res.variables == pytest.approx({"x": 5.0})


@pytest.mark.skipif(not scip_available(), reason="SCIP (pyscipopt) is not installed")
def test_nonlinear_objective_goes_to_scip(runner):
    program = """
import pyomo.environ as pyo

def build_model():
    m = pyo.ConcreteModel()
    m.x = pyo.Var(bounds=(1, 2))
    m.o = pyo.Objective(expr=pyo.exp(m.x))
    return m
"""
    res = runner.run(program)
    assert res.status is SolveStatus.OPTIMAL and res.solver == "scip" and res.proof is Proof.GLOBAL
    assert res.objective == pytest.approx(2.718281828, rel=1e-5) and res.variables == pytest.approx({"x": 1.0})
    assert res.model_text.splitlines()[:2] == ["minimize  exp(x)", "subject to"]


@pytest.mark.skipif(not scip_available(), reason="SCIP (pyscipopt) is not installed")
def test_quadratic_objective_with_integers_goes_to_scip(runner):
    res = runner.run("""
import pyomo.environ as pyo

def build_model():
    m = pyo.ConcreteModel()
    m.x = pyo.Var(range(2), domain=pyo.Binary)
    m.cost = pyo.Objective(expr=200 * m.x[0] * m.x[1] + m.x[0])
    m.c = pyo.Constraint(expr=m.x[0] + m.x[1] >= 1)
    return m
""")
    assert res.status is SolveStatus.OPTIMAL and res.solver == "scip" and res.model_class == "miqp"
    assert res.objective == pytest.approx(0.0, abs=1e-9) and res.variables == pytest.approx({"x[0]": 0.0, "x[1]": 1.0})


def test_variables_are_capped():
    program = """
import pyomo.environ as pyo

def build_model():
    m = pyo.ConcreteModel()
    m.x = pyo.Var(range(6000), bounds=(0, 1))
    m.o = pyo.Objective(expr=sum(m.x[i] for i in range(6000)))
    return m
"""
    res = run_program(program, Limits(wall_time_s=20))
    assert res.status is SolveStatus.OPTIMAL
    assert len(res.variables) == 5000 and res.variables_truncated


def test_solver_time_limit_returns_incumbent(runner):
    res = runner.run(HARD_MILP, time_limit_s=0.3)
    assert res.status in (SolveStatus.FEASIBLE, SolveStatus.TIME_LIMIT)
    assert res.termination_condition == "Time limit reached" and res.solver == "highs"
    if res.status is SolveStatus.FEASIBLE:
        assert res.objective is not None and res.variables
    assert res.wall_time_s < 5


def test_slow_build_hits_wall_clock_timeout():
    program = "import time\n\ndef build_model():\n    time.sleep(30)\n"
    with SolverRunner(Limits(wall_time_s=1.0, cpu_time_s=5)) as r:
        assert r.run(LP).ok  # the worker is up: the timed-out run below measures only itself
        res = r.run(program)
        assert res.status is SolveStatus.TIMEOUT
        assert 1.0 <= res.wall_time_s < 2.5
        assert r.run(LP).ok  # the worker survives a timed-out program


def test_two_runs_in_parallel(runner):
    slow_lp = LP.replace("def build_model():\n", "def build_model():\n    import time; time.sleep(1.0)\n")
    results: list[SolveResult] = []
    threads = [threading.Thread(target=lambda: results.append(runner.run(slow_lp))) for _ in range(2)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    assert [r.status for r in results] == [SolveStatus.OPTIMAL, SolveStatus.OPTIMAL]
    assert elapsed < 1.9  # ran side by side, not one after the other


def test_worker_killed_during_run_is_reported_and_restarted():
    program = "import os, time\n\ndef build_model():\n    os.kill(os.getppid(), 9)\n    time.sleep(5)\n"
    with SolverRunner(Limits(wall_time_s=5)) as r:
        res = r.run(program)
        assert res.status is SolveStatus.KILLED and "worker died" in res.error
        assert r.run(LP).ok


def test_worker_killed_between_runs_is_restarted_transparently():
    with SolverRunner(Limits(wall_time_s=5)) as r:
        assert r.run(LP).ok
        worker = r._slots[0].worker
        os.killpg(worker.proc.pid, signal.SIGKILL)
        worker.proc.wait()
        assert r.run(LP).ok


def test_cold_paths():
    res = run_program(LP, Limits(wall_time_s=20))
    assert res.ok and res.objective == pytest.approx(14.0)
    with SolverRunner(Limits(wall_time_s=20), warm=False) as r:
        assert r.run(MILP).objective == pytest.approx(21.0)


def test_closed_runner_refuses():
    r = SolverRunner(Limits(wall_time_s=5), warm=False)
    r.close()
    r.close()
    with pytest.raises(Exception, match="closed"):
        r.run(LP)


def test_unknown_status_strings_map_to_unknown():
    assert SolveStatus.parse("somethingNew") is SolveStatus.UNKNOWN
    assert SolveStatus.parse("OPTIMAL") is SolveStatus.OPTIMAL
    assert [s.value for s in SolveStatus] == [
        "optimal", "feasible", "constant_objective", "infeasible", "unbounded", "infeasible_or_unbounded",
        "time_limit", "check_failed", "error", "invalid_program", "timeout", "memory_limit", "output_limit",
        "killed", "unknown",
    ]
    assert [p.value for p in Proof] == ["global", "local", "feasible", "none"]
