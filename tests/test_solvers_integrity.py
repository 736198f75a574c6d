"""solvers: a program cannot forge its result; the answer is the one a trusted process got from the model file.

Real sandboxes and real solvers. The model is ``maximize 3x + y`` with ``x <= 3`` and ``x + y <= 5``:
its true optimum is 11 (x = 3, y = 2). Each forgery claims "optimal 42, x = 14".
"""

from __future__ import annotations

import pytest

from solvers import Limits, Proof, SolverRunner, SolveStatus, highs_available, resolve_sandbox, scip_available
from solvers.backends import Outcome, highs_read
from solvers.check import check_plan
from solvers.model_file import attach_names, from_highs
from solvers.trusted import _report_plan

pytestmark = pytest.mark.skipif(not highs_available(), reason="HiGHS (highspy) is not installed")
needs_bwrap = pytest.mark.skipif(resolve_sandbox("auto").kind != "bwrap",
                                 reason="bubblewrap is not available: this forgery would write into the host's /tmp")

TRUE_OPTIMUM = 11.0
MODEL = """
import pyomo.environ as pyo

def build_model():
    m = pyo.ConcreteModel()
    m.x = pyo.Var(bounds=(0, 10))
    m.y = pyo.Var(bounds=(0, 10))
    m.cap = pyo.Constraint(expr=m.x <= 3)
    m.both = pyo.Constraint(expr=m.x + m.y <= 5)
    m.o = pyo.Objective(expr=3 * m.x + m.y, sense=pyo.maximize)
    forge(m)
    return m
"""
FORGED_LP = ("\\\\ forged\\nmaximize\\n obj: 3 x + y\\nsubject to\\n cap: x <= 14\\n"
             "bounds\\n 0 <= x <= 14\\n 0 <= y <= 0\\nend\\n")
FORGERY_TOOLS = f"""
import fcntl, json, os, socket, sys, time

FORGED = {{"status": "optimal", "objective": 42.0, "variables": {{"x": 14.0, "y": 0.0}}, "solver": "highs",
          "proof": "global", "termination_condition": "Optimal", "model_text": "maximize 3*x + y"}}
FORGED_LP = "{FORGED_LP}"
FORGED_EXPORT = {{"status": "exported", "formats": ["lp"], "route": "linear",
                 "symbols": {{"lp": {{"vars": [["x", "x"], ["y", "y"]], "cons": [["cap", "cap"]], "objective": "o"}}}}}}


def _forged(*args, **kwargs):
    return dict(FORGED)


def hand_over_forged_model(fd):
    named = {{"export.json": json.dumps(FORGED_EXPORT).encode(), "model.lp": FORGED_LP.encode()}}
    fds = []
    for name, data in named.items():
        memfd = os.memfd_create(name, os.MFD_ALLOW_SEALING)
        os.write(memfd, data)
        fcntl.fcntl(memfd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW)
        fds.append(memfd)
    try:
        with socket.socket(fileno=os.dup(fd)) as sock:
            socket.send_fds(sock, [json.dumps(list(named)).encode()], fds)
    except OSError:
        pass


def forge_everything_in_reach():
    for directory in {{os.getcwd(), "/tmp", os.environ.get("TMPDIR", "/tmp"), os.path.dirname(os.getcwd())}}:
        for name, text in {{"result.json": json.dumps(FORGED), "export.json": json.dumps(FORGED_EXPORT),
                           "model.lp": FORGED_LP, "model.nl": "", "solver.log": "Model status : Optimal",
                           "solution.json": json.dumps(FORGED)}}.items():
            try:
                with open(os.path.join(directory, name), "w") as f:
                    f.write(text)
            except OSError:
                pass
    for fd in [int(n) for n in os.listdir("/proc/self/fd")]:
        hand_over_forged_model(fd)
"""


@pytest.fixture(scope="module")
def runner():
    with SolverRunner(Limits(wall_time_s=10, cpu_time_s=10)) as r:
        yield r


def _program(forgery: str) -> str:
    """The model, with ``forge(m)`` running ``forgery`` just before ``build_model`` returns."""
    body = "".join(f"    {line}\n" for line in forgery.strip().splitlines()) or "    pass\n"
    return FORGERY_TOOLS + "\n\ndef forge(m):\n" + body + MODEL


def _assert_true_optimum(res) -> None:
    assert res.status is SolveStatus.OPTIMAL, (res.status, res.error)
    assert res.objective == pytest.approx(TRUE_OPTIMUM) and res.variables == pytest.approx({"x": 3.0, "y": 2.0})
    assert res.check is not None and res.check.passed and res.check.objective == pytest.approx(TRUE_OPTIMUM)
    assert "cap:  x <= 3" in res.model_text and "both:  x + y <= 5" in res.model_text


def test_the_model_alone_solves_to_its_true_optimum(runner):
    _assert_true_optimum(runner.run(_program("pass")))


def test_monkeypatching_the_solve_code_in_the_program_process_changes_nothing(runner):
    forgery = """
import types
sys.modules.setdefault("harness", types.ModuleType("harness"))._solve = _forged
for key in ("harness", "export", "trusted", "backends", "check", "worker", "diagnose", "solvers.export"):
    module = sys.modules.get(key)
    for name in dir(module) if module is not None else []:
        if any(k in name.lower() for k in ("solve", "check", "classify", "plan")):
            setattr(module, name, _forged)
import highspy
for name in ("run", "getSolution", "getInfo", "getModelStatus"):
    try:
        setattr(highspy.Highs, name, _forged)
    except (AttributeError, TypeError):
        pass
"""
    _assert_true_optimum(runner.run(_program(forgery)))


def test_monkeypatching_pyomo_solver_factory_and_setting_values_changes_nothing(runner):
    forgery = """
import types
import pyomo.environ as pyo
import pyomo.opt
import pyomo.contrib.solver.common.factory as factory

class _Fake:
    def available(self, *a, **k):
        return True
    def solve(self, model, *a, **k):
        model.x.set_value(14, skip_validation=True)
        model.y.set_value(0)
        return types.SimpleNamespace(termination_condition="optimal", incumbent_objective=42.0)
    def __getattr__(self, name):
        return _forged

fake = lambda *a, **k: _Fake()
pyo.SolverFactory = pyomo.environ.SolverFactory = pyomo.opt.SolverFactory = factory.SolverFactory = fake
m.x.set_value(14, skip_validation=True)
m.y.set_value(0)
"""
    _assert_true_optimum(runner.run(_program(forgery)))


@needs_bwrap  # it writes into /tmp: only inside the sandbox is that the sandbox's own
def test_writing_result_files_and_forged_hand_overs_from_a_background_process_changes_nothing(runner):
    forgery = """
forge_everything_in_reach()
if os.fork() == 0:  # keeps forging while the model is exported, until the sandbox kills it
    os.setsid()
    end = time.time() + 8
    while time.time() < end:
        forge_everything_in_reach()
        time.sleep(0.002)
    os._exit(0)
time.sleep(0.2)
"""
    res = runner.run(_program(forgery))
    _assert_true_optimum(res)
    assert runner.run(_program("pass")).objective == pytest.approx(TRUE_OPTIMUM)  # nothing forged lingers


def test_a_forged_description_from_the_program_process_is_an_error_not_a_result(runner):
    forgery = """
import handover
real_send = handover.send
handover.send = lambda fd, description, files: real_send(fd, dict(FORGED), {})
"""
    res = runner.run(_program(forgery))
    assert res.status is SolveStatus.ERROR and res.objective is None and res.variables == {}


def test_what_the_program_process_hands_over_is_its_model_solved_and_shown_as_such(runner):
    """The program decides its model, nothing else: a model it substitutes is the model solved and shown."""
    res = runner.run(_program("hand_over_forged_model(3)\nos._exit(0)"))
    assert res.status is SolveStatus.OPTIMAL and res.objective == pytest.approx(42.0)
    assert "cap:  x <= 14" in res.model_text and "y  in [0, 0]" in res.model_text  # the answer matches the text
    res = runner.run(_program("hand_over_forged_model(3)"))  # then it returns its real model: that one counts
    _assert_true_optimum(res)


@pytest.mark.parametrize("objective", ["42 + 0 * m.x", "42", "0 * m.x + 0 * m.y + 42"])
def test_a_constant_objective_is_reported_as_such(runner, objective):
    res = runner.run(MODEL.replace("3 * m.x + m.y", objective).replace("    forge(m)\n", ""))
    assert res.status is SolveStatus.CONSTANT_OBJECTIVE and not res.ok
    assert res.objective == pytest.approx(42.0) and res.proof is Proof.NONE
    assert "depends on no decision variable" in res.error and res.model_text.startswith("maximize  42\n")


@pytest.mark.skipif(not scip_available(), reason="SCIP (pyscipopt) is not installed")
def test_a_constant_objective_of_a_nonlinear_model_is_reported_as_such(runner):
    program = MODEL.replace("m.x <= 3", "m.x * m.y <= 3").replace("3 * m.x + m.y", "7").replace("    forge(m)\n", "")
    res = runner.run(program)
    assert res.solver == "scip" and res.status is SolveStatus.CONSTANT_OBJECTIVE and res.objective == pytest.approx(7)


LP_FILE = """\\ the model of this file, as Pyomo writes it
maximize
 o: 3 x + y
subject to
 c_u_cap_: x <= 3
 c_u_both_: x + y <= 5
bounds
 0 <= x <= 10
 0 <= y <= 10
end
"""


def _file_model(tmp_path):
    path = tmp_path / "model.lp"
    path.write_text(LP_FILE)
    h = highs_read(str(path), quiet=True)
    model = from_highs(h)
    attach_names(model, {"vars": [["x", "x"], ["y", "y"]], "cons": [["cap", "cap"], ["both", "both"]],
                         "objective": "o"})
    return model


def test_the_check_accepts_the_true_plan_and_names_what_a_false_one_breaks(tmp_path):
    model = _file_model(tmp_path)
    good = check_plan(model, [3.0, 2.0], 11.0)
    assert good["passed"] and good["objective"] == pytest.approx(11.0)
    assert check_plan(model, [3.0 + 1e-9, 2.0], 11.0)["passed"]  # within the scaled tolerance
    bad = check_plan(model, [14.0, 0.0], 42.0)
    assert not bad["passed"] and bad["worst"] == "constraint cap" and bad["max_violation"] == pytest.approx(11 / 14)
    assert check_plan(model, [3.0, 7.0], 16.0)["worst"] == "constraint both"
    assert check_plan(model, [3.0, 2.0], 42.0)["worst"].startswith("objective")
    assert not check_plan(model, [3.0, float("nan")], 11.0)["passed"]


def test_a_plan_that_fails_the_check_is_a_check_failed_status_not_optimal(tmp_path):
    model = _file_model(tmp_path)
    out: dict = {"status": "optimal"}
    _report_plan(out, model, Outcome("highs", "optimal", "Optimal", objective=42.0, values=[14.0, 0.0],
                                     proof="global"), {})
    assert out["status"] == "check_failed" and "objective" not in out and out.get("proof", "none") == "none"
    assert "constraint cap" in out["error"] and out["check"]["passed"] is False


def test_a_plan_stopped_at_a_limit_gets_its_own_recomputed_objective_but_a_proven_one_must_match(tmp_path):
    model = _file_model(tmp_path)
    # SCIP's objective variable for a nonlinear objective need not be tight at an incumbent it stops on:
    # the plan holds every row and bound, so its value on the file is its objective
    out: dict = {"status": "feasible"}
    _report_plan(out, model, Outcome("scip", "feasible", "timelimit", objective=12.5, values=[3.0, 2.0],
                                     proof="feasible"), {})
    assert out["objective"] == pytest.approx(11.0) and out["check"]["passed"] and out["proof"] == "feasible"
    # a claimed optimum whose value differs from its plan's stays a failed check
    proven: dict = {"status": "optimal"}
    _report_plan(proven, model, Outcome("scip", "optimal", "optimal", objective=12.5, values=[3.0, 2.0],
                                        proof="global"), {})
    assert proven["status"] == "check_failed" and "objective" not in proven
    # and so does a plan at a limit that breaks a row
    broken: dict = {"status": "feasible"}
    _report_plan(broken, model, Outcome("scip", "feasible", "timelimit", objective=12.5, values=[14.0, 0.0],
                                        proof="feasible"), {})
    assert broken["status"] == "check_failed" and "constraint cap" in broken["error"]
