"""Nonlinear models through the agent: routed to SCIP by the solver layer, answered with their proof.

The compiled graph end to end with a scripted LLM and the real sandbox, HiGHS and SCIP: a
nonconvex quadratic, a product of an integer and a continuous variable, a division by a
variable, an LP that stays with HiGHS, an objective that depends on no variable (diagnosed,
and never an answer), and a plan that fails its check (reported, never repaired).
"""

from __future__ import annotations

import functools
import math

import pytest
from click.testing import CliRunner
from langgraph.runtime import Runtime

from alphaopt import api
from alphaopt.agent import nodes
from alphaopt.agent.run import Agent, to_solution
from alphaopt.agent.state import AgentContext
from alphaopt.interfaces import cli
from alphaopt.interfaces.render import render_solution
from solvers import Proof, SolveStatus, scip_available
from tests.fakes import LP_REPLY, ScriptedLLM, program

pytestmark = pytest.mark.skipif(not scip_available(), reason="SCIP (pyscipopt) is not installed")

PROBLEM = "Maximize 3x + 2y subject to x + y <= 4, x + 3y <= 6, x <= 3, x and y non-negative."

SADDLE = "Choose x and y between -1 and 2 with x + y at most 1 to minimize the product of x and y."
SADDLE_REPLY = program("""
model = pyo.ConcreteModel()
model.x = pyo.Var(bounds=(-1, 2))
model.y = pyo.Var(bounds=(-1, 2))
model.obj = pyo.Objective(expr=model.x * model.y, sense=pyo.minimize)
model.c1 = pyo.Constraint(expr=model.x + model.y <= 1)
""")  # nonconvex: the local optimum at a corner is -2 (x=2, y=-1 or x=-1, y=2); x*y is 0 along the axes

PRICE = ("A seller chooses how many lots n to offer (a whole number) and a price p; together n + p is at most 5. "
         "Maximize the revenue n times p.")
PRICE_REPLY = program("""
model = pyo.ConcreteModel()
model.n = pyo.Var(domain=pyo.NonNegativeIntegers)
model.p = pyo.Var(domain=pyo.NonNegativeReals)
model.obj = pyo.Objective(expr=model.n * model.p, sense=pyo.maximize)
model.total = pyo.Constraint(expr=model.n + model.p <= 5)
""")  # n=2, p=3 or n=3, p=2: revenue 6 (the continuous optimum 6.25 needs n=2.5)

BATCH = ("Orders of 10 units a year are made in batches of size q between 1 and 10; each batch costs 10 / q per "
         "unit in setup and q in storage. Minimize the cost 10 / q + q.")
BATCH_REPLY = program("""
model = pyo.ConcreteModel()
model.q = pyo.Var(bounds=(1, 10))
model.obj = pyo.Objective(expr=10 / model.q + model.q, sense=pyo.minimize)
""")  # q = sqrt(10): 2 * sqrt(10)

CONSTANT_REPLY = program("""
model = pyo.ConcreteModel()
model.x = pyo.Var(domain=pyo.NonNegativeReals)
model.y = pyo.Var(domain=pyo.NonNegativeReals)
model.obj = pyo.Objective(expr=42 + 0 * model.x, sense=pyo.maximize)
model.c1 = pyo.Constraint(expr=model.x + model.y <= 4)
model.c2 = pyo.Constraint(expr=model.x + 3 * model.y <= 6)
model.c3 = pyo.Constraint(expr=model.x <= 3)
""")  # every plan scores 42: the objective names no decision variable


@pytest.fixture
def agent(settings, runner, fake_llm):
    with Agent(settings, llm=fake_llm, runner=runner) as a:
        yield a


def test_a_nonconvex_quadratic_is_answered_by_scip_with_a_global_proof(agent, fake_llm):
    fake_llm.enqueue(SADDLE_REPLY)
    solution = agent.solve(SADDLE)
    assert fake_llm.prompt_names == ["write_program"]  # no repair: a nonlinear model is no error
    assert solution.status is SolveStatus.OPTIMAL and solution.objective == pytest.approx(-2)
    assert solution.solver == "scip" and solution.proof is Proof.GLOBAL and solution.model_class == "nonconvex_qp"
    assert solution.check is not None and solution.check.passed and solution.check.objective == pytest.approx(-2)
    assert solution.attempts[0].solver == "scip" and api.answered(solution)
    text = render_solution(solution)
    assert "Solver: SCIP (nonconvex_qp model): global optimum, proven" in text
    assert "Plan check: passed against the model file" in text and "Whole-run caps: " in text


def test_a_product_of_an_integer_and_a_continuous_variable_is_a_minlp_for_scip(agent, fake_llm):
    fake_llm.enqueue(PRICE_REPLY)
    solution = agent.solve(PRICE)
    assert fake_llm.prompt_names == ["write_program"]
    assert solution.status == "optimal" and solution.objective == pytest.approx(6) and solution.is_mip
    assert solution.solver == "scip" and solution.proof is Proof.GLOBAL
    assert solution.model_class is not None and solution.model_class.startswith("mi")
    assert solution.variables["n"] in (pytest.approx(2), pytest.approx(3))


def test_a_division_by_a_variable_is_solved_by_scip(agent, fake_llm):
    fake_llm.enqueue(BATCH_REPLY)
    solution = agent.solve(BATCH)
    assert fake_llm.prompt_names == ["write_program"]
    assert solution.status == "optimal" and solution.objective == pytest.approx(2 * math.sqrt(10), rel=1e-4)
    assert solution.solver == "scip" and solution.proof is Proof.GLOBAL and solution.model_class == "nlp"
    assert solution.variables["q"] == pytest.approx(math.sqrt(10), rel=1e-3)


def test_an_lp_still_goes_to_highs_with_its_duals(agent, fake_llm):
    fake_llm.enqueue(LP_REPLY)
    solution = agent.solve(PROBLEM)
    assert solution.solver == "highs" and solution.model_class == "lp" and solution.proof is Proof.GLOBAL
    assert solution.objective == pytest.approx(11) and solution.duals is not None
    assert solution.check is not None and solution.check.passed
    assert "Solver: HiGHS (lp model): global optimum, proven\n" in render_solution(solution)


def test_a_constant_objective_is_diagnosed_as_such_and_the_corrected_program_runs(agent, fake_llm):
    fake_llm.enqueue(CONSTANT_REPLY, LP_REPLY)
    solution = agent.solve(PROBLEM)
    assert fake_llm.prompt_names == ["write_program", "diagnose_program"]
    diagnose = fake_llm.calls[1].user
    assert "the solver says is feasible, but its objective is a constant." in diagnose
    assert "Its objective depends on no decision variable" in diagnose and "42 + 0 * model.x" in diagnose
    assert [(a.stage, a.status) for a in solution.attempts] == [("write_program", "constant_objective"),
                                                                ("diagnose", "optimal")]
    assert solution.status == "optimal" and solution.objective == pytest.approx(11)


def test_a_constant_objective_that_stays_is_reported_as_such_not_as_an_optimum(agent, fake_llm):
    fake_llm.enqueue(CONSTANT_REPLY, CONSTANT_REPLY)
    solution = agent.solve(PROBLEM)
    assert fake_llm.prompt_names == ["write_program", "diagnose_program"]  # one diagnosis, then stop
    assert solution.status is SolveStatus.CONSTANT_OBJECTIVE and solution.objective is None and not solution.ok
    assert solution.proof is Proof.NONE and not api.answered(solution)
    assert [c.objective for c in solution.candidates] == [None]
    text = render_solution(solution)
    assert text.startswith("Status: constant_objective (the objective depends on no decision variable")
    assert "Objective (" not in text and "global optimum" not in text
    assert "Why there is no answer:\nthe objective depends on no decision variable: it is the constant 42" in text
    assert "Decision values the solver reported (not an answer):" in text


def test_with_the_formulate_step_a_constant_objective_is_named_to_the_diagnosis(settings, runner, fake_llm):
    fake_llm.enqueue("## Variables\nx, y >= 0\n## Objective\nmaximize 42\n## Constraints\n...", CONSTANT_REPLY,
                     "CONFIRMED")
    with Agent(settings.with_experimental(formulate=True), llm=fake_llm, runner=runner) as agent:
        solution = agent.solve(PROBLEM)
    assert fake_llm.prompt_names == ["formulate", "write_program", "diagnose"]
    assert "The solver says the model is feasible, but its objective is a constant." in fake_llm.calls[2].user
    assert solution.status == "constant_objective" and solution.objective is None  # confirmed: still no answer


def test_a_nonlinear_constant_objective_goes_to_the_diagnosis_too(agent, fake_llm):
    nonlinear = CONSTANT_REPLY.replace("model.x + model.y <= 4", "model.x * model.y <= 4")
    fake_llm.enqueue(nonlinear, LP_REPLY)
    solution = agent.solve(PROBLEM)
    assert fake_llm.prompt_names == ["write_program", "diagnose_program"]
    assert solution.attempts[0].solver == "scip" and solution.attempts[0].status == "constant_objective"
    assert solution.solver == "highs" and solution.objective == pytest.approx(11)


def test_the_vote_never_answers_with_a_constant_objective_or_a_failed_check():
    from alphaopt.agent.vote import decided, vote

    def c(status, objective=None):
        return {"status": SolveStatus(status), "objective": objective}

    assert vote([c("constant_objective"), c("optimal", 5)]) == 1
    assert vote([c("check_failed"), c("constant_objective"), c("feasible", 3)]) == 2
    assert not decided([c("constant_objective"), c("constant_objective")], 3)
    assert not decided([c("check_failed"), c("check_failed")], 3)
    assert not {"constant_objective", "check_failed"} & api.ANSWER_STATUSES


def _failed_check_result() -> dict:
    """A real trusted-side result whose solver plan breaks the model file (the check's own data)."""
    import tempfile
    from pathlib import Path

    from solvers.backends import Outcome, highs_read
    from solvers.model_file import attach_names, from_highs
    from solvers.trusted import _report_plan

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.lp"
        path.write_text("maximize\n o: 3 x + y\nsubject to\n c_u_cap_: x <= 3\n"
                        "bounds\n 0 <= x <= 10\n 0 <= y <= 10\nend\n")
        model = from_highs(highs_read(str(path), quiet=True))
    attach_names(model, {"vars": [["x", "x"], ["y", "y"]], "cons": [["cap", "cap"]], "objective": "o"})
    out: dict = {"status": "optimal", "solver": "highs", "model_class": "lp", "proof": "none"}
    _report_plan(out, model, Outcome("highs", "optimal", "Optimal", objective=52.0, values=[14.0, 10.0],
                                     proof="global"), {})
    return {**out, "status": SolveStatus(out["status"]), "proof": Proof(out["proof"]), "wall_time_s": 0.1}


def test_a_failed_plan_check_ends_the_sample_unrepaired_and_is_shown_as_such(settings, runner, fake_llm):
    result = _failed_check_result()
    assert result["status"] is SolveStatus.CHECK_FAILED
    state = {"run_id": "r", "problem": PROBLEM, "result": result, "program": LP_REPLY}
    runtime = Runtime(context=AgentContext(settings=settings, llm=fake_llm, runner=runner))
    assert nodes.route_after_run(state, runtime) == "finish_sample"  # not the program's fault: no repair
    candidate = nodes.finish_sample(state, runtime)["candidates"][0]
    assert candidate["status"] is SolveStatus.CHECK_FAILED and candidate["objective"] is None
    solution = to_solution({**state, "candidates": [candidate], "chosen_sample": 0}, 0.1)
    assert solution.status is SolveStatus.CHECK_FAILED and solution.objective is None and not api.answered(solution)
    assert solution.check is not None and not solution.check.passed and solution.check.worst == "constraint cap"
    text = render_solution(solution)
    assert "the solver's plan fails the check against the model file: no answer" in text.splitlines()[0]
    assert "Plan check: FAILED against the model file at constraint cap" in text and "global optimum" not in text


def test_the_proof_and_the_new_statuses_survive_a_checkpoint_and_a_resumed_run(settings, runner):
    class Crash(Exception):
        pass

    def crash(_messages):
        raise Crash("endpoint died mid-run")

    constant = SADDLE_REPLY.replace("expr=model.x * model.y", "expr=7 + 0 * model.x")
    llm = ScriptedLLM().enqueue(constant, crash)
    with Agent(settings, llm=llm, runner=runner) as agent:
        with pytest.raises(Crash):
            agent.solve(SADDLE, run_id="nl-1")
        config = {"configurable": {"thread_id": "nl-1"}}
        held = agent.graph.get_state(config).values
        assert held["result"]["status"] is SolveStatus.CONSTANT_OBJECTIVE and held["result"]["proof"] is Proof.NONE
        llm.enqueue(SADDLE_REPLY)
        solution = agent.resume("nl-1")  # from the checkpoint: the diagnosis again, then SCIP
        assert llm.prompt_names == ["write_program", "diagnose_program", "diagnose_program"]
        assert solution.solver == "scip" and solution.proof is Proof.GLOBAL and solution.objective == pytest.approx(-2)
        done = agent.graph.get_state(config).values
        assert done["result"]["proof"] is Proof.GLOBAL and done["result"]["status"] is SolveStatus.OPTIMAL
        assert done["attempts"][0]["status"] is SolveStatus.CONSTANT_OBJECTIVE
        again = agent.resume("nl-1")  # finished: read back from the checkpoint, no new call
    assert again.proof is Proof.GLOBAL and again.check == solution.check and len(llm.calls) == 3


@pytest.fixture
def scripted(monkeypatch, runner):
    llm = ScriptedLLM()
    agent = functools.partial(api.Agent, llm=llm, runner=runner)
    monkeypatch.setattr(cli, "Agent", agent)
    monkeypatch.setattr(api, "Agent", agent)
    return llm


def test_the_cli_shows_the_solver_the_proof_and_the_caps(scripted):
    scripted.enqueue(SADDLE_REPLY)
    result = CliRunner().invoke(cli.cli, ["solve", SADDLE], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Status: optimal" in out and "Objective (minimize): -2" in out
    assert "Solver: SCIP (nonconvex_qp model): global optimum, proven" in out
    assert "Plan check: passed against the model file" in out
    assert "\nSandbox: " in out and "\nWhole-run caps: " in out
    scripted.enqueue(CONSTANT_REPLY, CONSTANT_REPLY)
    result = CliRunner().invoke(cli.cli, ["solve", PROBLEM], catch_exceptions=False)
    assert result.exit_code == 3 and "Status: constant_objective" in result.output  # no answer


def test_no_whole_run_cap_is_said_in_so_many_words(agent, fake_llm):
    fake_llm.enqueue(LP_REPLY)
    solution = agent.solve(PROBLEM)
    reason = ("no cgroup (no cgroup v2 with memory and pids controllers): memory, process and CPU limits hold "
              "per process (rlimits), not for the run as a whole")
    uncapped = solution.model_copy(update={"isolation": reason, "sandbox": f"bwrap: no network; {reason}"})
    text = render_solution(uncapped)
    assert f"Whole-run caps: no whole-run cap available ({reason})" in text and "Sandbox: bwrap: no network\n" in text


def test_a_batch_line_carries_the_solver_and_proof_and_a_constant_objective_is_no_answer(scripted, tmp_path):
    import json

    problems = tmp_path / "in.jsonl"
    problems.write_text(json.dumps({"id": "saddle", "problem": SADDLE}) + "\n"
                        + json.dumps({"id": "constant", "problem": PROBLEM}) + "\n")
    out = tmp_path / "out.jsonl"
    scripted.enqueue(SADDLE_REPLY, CONSTANT_REPLY, CONSTANT_REPLY)
    result = CliRunner().invoke(cli.cli, ["batch", str(problems), "-o", str(out), "--no-progress"])
    assert "2 problems: 0 already" in result.stdout and "1 answered (1 optimal), 0 failed" in result.stdout
    assert result.exit_code == 3 and "1 of 2 problems have no answer" in result.stderr
    lines = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    saddle, constant = lines["saddle"], lines["constant"]
    assert saddle["solver"] == "scip" and saddle["proof"] == "global" and saddle["model_class"] == "nonconvex_qp"
    assert saddle["check"]["passed"] is True and saddle["isolation"]
    assert constant["status"] == "constant_objective" and constant["objective"] is None
    assert constant["proof"] == "none" and "depends on no decision variable" in constant["error"]


def test_the_nonlinear_benchmark_names_the_items_highs_refused(agent, fake_llm):
    from benchmarks import nonlinear

    items = nonlinear.select()
    assert [i.key for i in items] == list(nonlinear.ITEMS)
    earlier = nonlinear.earlier_rows()
    if earlier:  # the earlier run's results are in the checkout: each item met HiGHS's refusal there
        assert all(any("IncompatibleModelError" in (a["error"] or "") for a in row["attempts"])
                   for row in earlier.values())
    fake_llm.enqueue(SADDLE_REPLY)
    row = nonlinear.record(items[0], agent.solve(SADDLE), nonlinear.Tolerance())
    assert row["solver"] == "scip" and row["proof"] == "global" and row["attempts"][0]["solver"] == "scip"
    assert row["correct"] is False and "| nlp4lp_test/A149 |" in nonlinear.table([row], earlier)
