"""The compiled agent graph end to end: scripted LLM, real sandboxed HiGHS, real SQLite."""

from __future__ import annotations

import pytest

from alphaopt.agent.reading import read
from alphaopt.agent.run import Agent
from alphaopt.config import ExperimentalSettings, load_settings
from solvers import Proof, SolveStatus
from tests.fakes import (
    FORMULATION,
    INFEASIBLE_REPLY,
    LP_REPLY,
    MILP_REPLY,
    UNBOUNDED_REPLY,
    WRONG_LP_REPLY,
    Cut,
    ScriptedLLM,
    program,
)

PROBLEM = "Maximize 3x + 2y subject to x + y <= 4, x + 3y <= 6, x <= 3, x and y non-negative."


@pytest.fixture
def agent(settings, runner, fake_llm):
    """The shipped defaults: the program is written directly, with the shipped text rewrites."""
    with Agent(settings, llm=fake_llm, runner=runner) as a:
        yield a


@pytest.fixture
def patching(settings, runner, fake_llm):
    """Every text rewrite on, the patch signs included (off by default: see config.text_rewrites)."""
    with Agent(settings.with_experimental(text_rewrites=True), llm=fake_llm, runner=runner) as a:
        yield a


@pytest.fixture
def formulating(settings, runner, fake_llm):
    """The formulate step on: the math first, then the program."""
    with Agent(settings.with_experimental(formulate=True), llm=fake_llm, runner=runner) as a:
        yield a


def test_lp_straight_through(agent, fake_llm: ScriptedLLM):
    fake_llm.enqueue(LP_REPLY)
    solution = agent.solve(PROBLEM)
    assert solution.status is SolveStatus.OPTIMAL and solution.objective == pytest.approx(11)
    assert solution.variables == pytest.approx({"x": 3, "y": 1})
    assert solution.duals is not None and set(solution.duals) == {"c1", "c2", "c3"}
    assert not solution.is_mip and solution.formulation == ""
    assert fake_llm.prompt_names == ["write_program"]
    # the program prompt carries the problem and its question; the answer never reaches the model
    assert PROBLEM in fake_llm.calls[0].user and "<formulation>" not in fake_llm.calls[0].user
    assert [(a.stage, a.status) for a in solution.attempts] == [("write_program", SolveStatus.OPTIMAL)]
    assert solution.tokens.calls == 1 and solution.timings.total_s > 0


def test_lp_through_the_formulate_step(formulating, fake_llm: ScriptedLLM):
    fake_llm.enqueue(FORMULATION, LP_REPLY)
    solution = formulating.solve(PROBLEM)
    assert solution.status is SolveStatus.OPTIMAL and solution.objective == pytest.approx(11)
    assert solution.formulation == FORMULATION and fake_llm.prompt_names == ["formulate", "write_program"]
    # the program prompt carries the problem and the formulation
    assert PROBLEM in fake_llm.calls[1].user and FORMULATION in fake_llm.calls[1].user
    assert solution.tokens.calls == 2


def test_milp(agent, fake_llm):
    fake_llm.enqueue(MILP_REPLY)
    solution = agent.solve("An integer problem.")
    assert solution.status == "optimal" and solution.objective == pytest.approx(20) and solution.is_mip
    assert solution.duals is None


def test_repair_path_shows_error_to_model(agent, fake_llm):
    broken = program("model = pyo.ConcreteModel()\nmodel.x = pyo.Var(domain=pyo.NonNegativeReals)\n"
                     "model.obj = pyo.Objective(expr=model.z)")
    fake_llm.enqueue(broken, LP_REPLY)
    solution = agent.solve(PROBLEM)
    assert fake_llm.prompt_names == ["write_program", "repair"]
    assert "z" in fake_llm.calls[1].user and "AttributeError" in fake_llm.calls[1].user
    assert [a.stage for a in solution.attempts] == ["write_program", "repair"]
    assert solution.attempts[0].status == "error" and solution.status == "optimal"
    assert solution.objective == pytest.approx(11)


def test_repairs_are_bounded(agent, fake_llm, settings):
    no_objective = program("model = pyo.ConcreteModel()\nmodel.x = pyo.Var()")
    fake_llm.enqueue(*[no_objective] * (1 + settings.max_repairs))
    solution = agent.solve(PROBLEM)
    assert solution.status == "invalid_program" and solution.objective is None
    assert len(solution.attempts) == 1 + settings.max_repairs
    assert fake_llm.prompt_names.count("repair") == settings.max_repairs


def test_solver_misuse_is_fixed_without_a_model_call(agent, fake_llm):
    misuse = LP_REPLY.replace("    return model",
                              "    res = pyo.SolverFactory('highs').solve(model)\n    print(res.objective)")
    fake_llm.enqueue(misuse)
    solution = agent.solve(PROBLEM)
    assert solution.status == "optimal" and solution.objective == pytest.approx(11)
    assert any("solve call" in f for f in solution.attempts[0].fixes)
    assert fake_llm.prompt_names == ["write_program"]


def test_infeasible_goes_to_diagnose_then_reformulates(formulating, fake_llm):
    fake_llm.enqueue(FORMULATION, INFEASIBLE_REPLY, "## Variables\nx\n## Objective\n...\n## Constraints\nfixed",
                     LP_REPLY)
    solution = formulating.solve(PROBLEM)
    assert fake_llm.prompt_names == ["formulate", "write_program", "diagnose", "write_program"]
    assert "infeasible" in fake_llm.calls[2].user
    assert "fixed" in fake_llm.calls[3].user  # the new formulation reached the program writer
    assert [a.status for a in solution.attempts] == ["infeasible", "optimal"]
    assert solution.objective == pytest.approx(11)


def test_confirmed_infeasible_is_answered_as_infeasible(formulating, fake_llm):
    fake_llm.enqueue(FORMULATION, INFEASIBLE_REPLY, "CONFIRMED")
    solution = formulating.solve("An impossible problem.")
    assert solution.status == "infeasible" and solution.objective is None
    assert fake_llm.prompt_names == ["formulate", "write_program", "diagnose"]


def test_unbounded_is_reported_not_zero(formulating, fake_llm, settings):
    fake_llm.enqueue(FORMULATION, UNBOUNDED_REPLY, "CONFIRMED")
    solution = formulating.solve("Unbounded.")
    assert solution.status in ("unbounded", "infeasible_or_unbounded") and solution.objective is None


def test_implausible_all_zero_plan_is_diagnosed(formulating, fake_llm):
    zero = program("""
model = pyo.ConcreteModel()
model.x = pyo.Var(domain=pyo.NonNegativeReals)
model.obj = pyo.Objective(expr=2 * model.x, sense=pyo.minimize)
""")
    fake_llm.enqueue(FORMULATION, zero, "CONFIRMED")
    solution = formulating.solve("Zero.")
    assert fake_llm.prompt_names[-1] == "diagnose" and "does nothing" in fake_llm.calls[-1].user
    assert solution.status == "optimal" and solution.objective == 0


def test_timeout_program_is_repaired(settings, fake_llm):
    from solvers import Limits, SolverRunner

    loop = program("model = pyo.ConcreteModel()\nwhile True:\n    pass")
    fake_llm.enqueue(loop, LP_REPLY)
    with (SolverRunner(Limits(wall_time_s=2, cpu_time_s=2)) as runner,
          Agent(settings, llm=fake_llm, runner=runner) as agent):
        solution = agent.solve(PROBLEM)
    assert solution.attempts[0].status == "timeout"
    assert fake_llm.prompt_names[-1] == "repair" and solution.status == "optimal"


def test_run_is_saved_and_checkpointed(agent, fake_llm, settings):
    fake_llm.enqueue(LP_REPLY)
    solution = agent.solve(PROBLEM)
    row = agent.log.run(solution.run_id)
    assert row["status"] == "optimal" and row["objective"] == pytest.approx(11)
    snapshot = agent.graph.get_state({"configurable": {"thread_id": solution.run_id}})
    # the checkpoint keeps the state's own types: the solver's status and the text's reading
    assert snapshot.values["result"]["status"] is SolveStatus.OPTIMAL and not snapshot.next
    assert snapshot.values["reading"] == read(PROBLEM) and snapshot.values["reading"].sense == "maximize"
    assert snapshot.values["attempts"][0]["status"] is SolveStatus.OPTIMAL
    assert snapshot.values["result"]["proof"] is Proof.GLOBAL and snapshot.values["result"]["solver"] == "highs"
    assert snapshot.values["result"]["check"]["passed"] and snapshot.values["attempts"][0]["solver"] == "highs"
    resumed = agent.resume(solution.run_id)  # finished: no new calls
    assert resumed.objective == pytest.approx(11) and resumed.proof is Proof.GLOBAL and resumed.solver == "highs"
    assert resumed.check == solution.check and resumed.isolation == solution.isolation != ""
    assert len(fake_llm.calls) == 1


def test_interrupted_run_resumes_from_checkpoint(settings, runner):
    class Crash(Exception):
        pass

    def crash(_messages):
        raise Crash("endpoint died mid-run")

    llm = ScriptedLLM().enqueue(FORMULATION, crash)
    with Agent(settings.with_experimental(formulate=True), llm=llm, runner=runner) as agent:
        with pytest.raises(Crash):
            agent.solve(PROBLEM, run_id="run-1")
        llm.enqueue(LP_REPLY)
        solution = agent.resume("run-1")
    assert solution.objective == pytest.approx(11)
    assert llm.prompt_names == ["formulate", "write_program", "write_program"]  # formulate not repeated


def test_insights_from_library_reach_the_prompts(settings, runner, fake_llm):
    class Library:
        def retrieve(self, problem, *, llm, run_id):
            return [
                {"id": "I7", "stage": "general_formulation", "condition": "the text says 'at least'",
                 "explanation": "use >="},
                {"id": "I8", "stage": "code_implementation", "condition": "sums over dicts",
                 "explanation": "use sum()"},
            ]

    fake_llm.enqueue(FORMULATION, LP_REPLY)
    with Agent(settings.with_experimental(formulate=True), llm=fake_llm, runner=runner, library=Library()) as agent:
        solution = agent.solve(PROBLEM)
    formulate, write = fake_llm.calls[0].user, fake_llm.calls[1].user
    assert "[I7] When the text says 'at least': use >=" in formulate and "[I8]" not in formulate
    assert "[I8] When sums over dicts: use sum()" in write and "[I7]" not in write
    assert [i["id"] for i in solution.insights] == ["I7", "I8"]
    # writing the program directly, the one program prompt carries every insight
    fake_llm.enqueue(LP_REPLY)
    with Agent(settings, llm=fake_llm, runner=runner, library=Library()) as agent:
        agent.solve(PROBLEM)
    assert "[I7]" in fake_llm.calls[-1].user and "[I8]" in fake_llm.calls[-1].user


def test_a_recalled_known_edit_is_applied_where_its_quote_matches(settings, runner, fake_llm):
    """The model ignores the lesson (writes <= 2000); the code turns the constraint the lesson's
    quote points at, and says so in the attempt's fixes."""
    diet = ("A diet must meet a daily requirement of 2000 calories. Food A has 400 calories and costs $2. "
            "Minimize the cost.")
    lesson = {"id": "I0105", "version": 1, "stage": "general_formulation",
              "label": "constraints / inequality direction",
              "condition": 'when the text says "a daily requirement of N calories"', "explanation": "use >=",
              "example": "wrong: model.a * 400 <= 2000 right: model.a * 400 >= 2000"}
    reply = program("""
model = pyo.ConcreteModel()
model.a = pyo.Var(domain=pyo.NonNegativeReals)
model.cal = pyo.Constraint(expr=400 * model.a <= 2000)
model.least = pyo.Constraint(expr=model.a >= 1)
model.cost = pyo.Objective(expr=2 * model.a, sense=pyo.minimize)
""")

    class Library:
        def __init__(self, insights):
            self.insights = insights

        def retrieve(self, problem, *, llm, run_id):
            return self.insights

    fake_llm.enqueue(reply, reply)
    with Agent(settings, llm=fake_llm, runner=runner, library=Library([lesson])) as agent:
        applied = agent.solve(diet)
    with Agent(settings, llm=fake_llm, runner=runner, library=Library([])) as agent:
        plain = agent.solve(diet)
    fake_llm.enqueue(reply)
    with Agent(settings.with_experimental(apply_edits=False), llm=fake_llm, runner=runner,
               library=Library([lesson])) as agent:
        switched_off = agent.solve(diet)  # the lesson reaches the prompt only
    assert applied.objective == pytest.approx(10) and plain.objective == pytest.approx(2)
    assert switched_off.objective == pytest.approx(2) and "I0105" in fake_llm.calls[-1].user
    assert any(f.startswith("applied insight I0105") for f in applied.attempts[0].fixes)
    assert "400 * model.a >= 2000" in applied.attempts[0].program


def test_an_applied_lesson_is_not_told_when_tell_applied_is_off(settings, runner, fake_llm):
    """The code makes the edit either way; with ``tell_applied`` off the lesson whose edit it
    makes stays out of the prompt, while a recalled lesson the code cannot apply stays in."""
    diet = "A diet must meet a daily requirement of 2000 calories. Food A has 400 calories and costs $2. Minimize."
    applied_lesson = {"id": "I0105", "version": 1, "stage": "general_formulation", "label": "constraints / direction",
                      "condition": 'when the text says "a daily requirement of N calories"', "explanation": "use >=",
                      "example": "wrong: model.a * 400 <= 2000 right: model.a * 400 >= 2000"}
    told_lesson = {"id": "I0018", "version": 1, "stage": "domain_modeling", "label": "variables / integrality",
                   "condition": "the problem counts things", "explanation": "use integers", "example": ""}
    reply = program("""
model = pyo.ConcreteModel()
model.a = pyo.Var(domain=pyo.NonNegativeReals)
model.cal = pyo.Constraint(expr=400 * model.a <= 2000)
model.cost = pyo.Objective(expr=2 * model.a, sense=pyo.minimize)
""")

    class Library:
        def retrieve(self, problem, *, llm, run_id):
            return [applied_lesson, told_lesson]

    for tell in (True, False):
        fake_llm.enqueue(reply)
        with Agent(settings.with_experimental(tell_applied=tell), llm=fake_llm, runner=runner,
                   library=Library()) as agent:
            solution = agent.solve(diet)
        prompt = fake_llm.calls[-1].user
        assert solution.objective == pytest.approx(10)  # the edit is made either way
        assert ("[I0105]" in prompt) is tell and "[I0018]" in prompt


def test_second_repair_of_the_same_program_samples(agent, fake_llm):
    broken = program("model = pyo.ConcreteModel()\nmodel.x = pyo.Var(domain=pyo.NonNegativeReals)\n"
                     "model.obj = pyo.Objective(expr=model.z)")
    fake_llm.enqueue(broken, broken, LP_REPLY)  # the first repair changes nothing
    solution = agent.solve(PROBLEM)
    repairs = [c for c in fake_llm.calls if c.prompt_name == "repair"]
    assert repairs[0].temperature is None and repairs[1].temperature == 0.6 and repairs[1].seed == 1
    assert solution.status == "optimal"


def test_reserved_component_names_are_fixed_before_the_run(agent, fake_llm):
    clash = LP_REPLY.replace("model.c1", "model.name").replace("model.c2", "model.index")
    fake_llm.enqueue(clash)
    solution = agent.solve(PROBLEM)
    assert solution.status == "optimal" and solution.objective == pytest.approx(11)
    assert fake_llm.prompt_names == ["write_program"]  # no repair round needed


# -- samples and the vote ----------------------------------------------------------------------
def sampled_agent(settings, runner, llm, *, samples=1, max_repairs=2, **knobs):
    """The shipped pipeline with ``samples`` and ``max_repairs`` set, and experimental ``knobs``."""
    chosen = settings.model_copy(update={"samples": samples, "max_repairs": max_repairs}).with_experimental(**knobs)
    return Agent(chosen, llm=llm, runner=runner)


def test_two_agreeing_samples_decide_a_vote_of_three(settings, runner, fake_llm):
    fake_llm.enqueue(LP_REPLY, LP_REPLY)
    with sampled_agent(settings, runner, fake_llm, samples=3) as agent:
        solution = agent.solve(PROBLEM)
    assert fake_llm.prompt_names == ["write_program", "write_program"]  # the third sample is not needed
    # the first sample is greedy, the second samples with a seed of its own
    knobs = settings.experimental
    assert fake_llm.calls[0].temperature is None and fake_llm.calls[1].temperature == knobs.retry_temperature
    assert fake_llm.calls[1].seed == knobs.seed + 100
    assert [(c.sample, c.objective, c.chosen) for c in solution.candidates] == [(0, pytest.approx(11), True),
                                                                               (1, pytest.approx(11), False)]
    assert [a.sample for a in solution.attempts] == [0, 1] and solution.objective == pytest.approx(11)


def test_the_majority_beats_the_greedy_sample(settings, runner, fake_llm):
    fake_llm.enqueue(WRONG_LP_REPLY, LP_REPLY, LP_REPLY)
    with sampled_agent(settings, runner, fake_llm, samples=3) as agent:
        solution = agent.solve(PROBLEM)
    assert fake_llm.prompt_names == ["write_program"] * 3
    assert solution.objective == pytest.approx(11) and "model.x <= 3" in solution.program
    assert [c.chosen for c in solution.candidates] == [False, True, False]
    assert solution.variables == pytest.approx({"x": 3, "y": 1})  # the plan is the chosen sample's


def test_a_failed_sample_leaves_the_vote_to_the_others(settings, runner, fake_llm):
    broken = program("model = pyo.ConcreteModel()\nmodel.x = pyo.Var()")  # no objective
    fake_llm.enqueue(broken, WRONG_LP_REPLY, LP_REPLY)
    with sampled_agent(settings, runner, fake_llm, samples=3, max_repairs=0) as agent:
        solution = agent.solve(PROBLEM)
    # no majority: the first optimal sample wins the tie
    assert [c.status for c in solution.candidates] == ["invalid_program", "optimal", "optimal"]
    assert solution.objective == pytest.approx(26 / 3) and solution.candidates[1].chosen


def test_no_optimal_sample_answers_the_first_failure(settings, runner, fake_llm):
    fake_llm.enqueue(INFEASIBLE_REPLY, UNBOUNDED_REPLY)
    with sampled_agent(settings, runner, fake_llm, samples=2, max_diagnoses=0) as agent:
        solution = agent.solve(PROBLEM)
    assert solution.status == "infeasible" and solution.objective is None
    assert [c.status for c in solution.candidates] == ["infeasible", "unbounded"]


def test_a_failed_sample_is_followed_by_a_fresh_one(settings, runner, fake_llm):
    broken = program("model = pyo.ConcreteModel()\nmodel.x = pyo.Var()")  # no objective
    fake_llm.enqueue(broken, INFEASIBLE_REPLY, LP_REPLY)
    with sampled_agent(settings, runner, fake_llm, resample_failed=2, max_repairs=0, max_diagnoses=0) as agent:
        solution = agent.solve(PROBLEM)
    assert fake_llm.prompt_names == ["write_program"] * 3
    # the fresh samples are drawn at the retry temperature, each with its own seed
    knobs = settings.experimental
    assert [c.temperature for c in fake_llm.calls] == [None, knobs.retry_temperature, knobs.retry_temperature]
    assert [c.seed for c in fake_llm.calls[1:]] == [knobs.seed + 100, knobs.seed + 200]
    assert [c.status for c in solution.candidates] == ["invalid_program", "infeasible", "optimal"]
    assert solution.objective == pytest.approx(11) and solution.candidates[2].chosen


def test_resampling_stops_at_the_first_optimum_and_at_its_cap(settings, runner, fake_llm):
    fake_llm.enqueue(LP_REPLY)
    with sampled_agent(settings, runner, fake_llm, resample_failed=2) as agent:
        assert agent.solve(PROBLEM).objective == pytest.approx(11) and len(fake_llm.calls) == 1
    fake_llm.enqueue(INFEASIBLE_REPLY, INFEASIBLE_REPLY)
    with sampled_agent(settings, runner, fake_llm, resample_failed=1, max_diagnoses=0) as agent:
        solution = agent.solve(PROBLEM)
    # both samples proved it infeasible: reported as infeasible
    assert len(fake_llm.calls) == 3 and solution.status == "infeasible" and len(solution.candidates) == 2


def test_vote_rules():
    from alphaopt.agent.vote import decided, vote

    def c(status, objective=None):
        return {"status": status, "objective": objective}

    assert vote([c("error"), c("feasible", 3), c("optimal", 5)]) == 2
    assert vote([c("error"), c("feasible", 3)]) == 1 and vote([c("error"), c("infeasible")]) == 0
    assert vote([c("optimal", 1), c("optimal", 2), c("optimal", 2.0000000001)]) == 1
    assert decided([c("optimal", 7), c("optimal", 7)], 3) and not decided([c("optimal", 7), c("optimal", 8)], 3)
    assert not decided([c("optimal", 7), c("optimal", 7)], 5) and decided([c("error")], 1)
    # infeasible wins only with a strict majority of the samples drawn; otherwise an optimum does
    assert vote([c("infeasible"), c("optimal", 4), c("infeasible")]) == 0
    assert vote([c("infeasible"), c("optimal", 4)]) == 1 and vote([c("infeasible"), c("error")]) == 0
    assert decided([c("infeasible"), c("infeasible")], 3) and not decided([c("infeasible"), c("unbounded")], 3)


def test_a_majority_of_infeasible_samples_reports_infeasible(settings, runner, fake_llm):
    fake_llm.enqueue(INFEASIBLE_REPLY, INFEASIBLE_REPLY)
    with sampled_agent(settings, runner, fake_llm, samples=3, max_diagnoses=0) as agent:
        solution = agent.solve(PROBLEM)
    assert solution.status == "infeasible" and len(solution.candidates) == 2 and solution.candidates[0].chosen


@pytest.fixture
def direct_agent(settings, runner, fake_llm):
    """The shipped pipeline with a short reply cap (so that a long reply reaches it)."""
    with Agent(load_settings(home=settings.home, solver_wall_time_s=10, experimental={"max_tokens_program": 120}),
               llm=fake_llm, runner=runner) as a:
        yield a


def test_direct_infeasible_is_diagnosed_into_a_corrected_program(direct_agent, fake_llm):
    fake_llm.enqueue(INFEASIBLE_REPLY, LP_REPLY)
    solution = direct_agent.solve(PROBLEM)
    assert fake_llm.prompt_names == ["write_program", "diagnose_program"]
    diagnose = fake_llm.calls[1].user
    assert "infeasible" in diagnose and "model.x >= 10" in diagnose and "CONFIRMED" not in diagnose
    # the solver's conflict: the two constraints that cannot hold together, as built
    assert "cannot all hold together" in diagnose and "- c1: x >= 10\n- c2: x <= 5" in diagnose
    assert [(a.stage, a.status) for a in solution.attempts] == [("write_program", "infeasible"),
                                                                 ("diagnose", "optimal")]
    assert solution.objective == pytest.approx(11)


def test_direct_infeasible_rewritten_unchanged_stays_infeasible(direct_agent, fake_llm):
    fake_llm.enqueue(INFEASIBLE_REPLY, INFEASIBLE_REPLY)
    solution = direct_agent.solve("An impossible problem.")
    assert fake_llm.prompt_names == ["write_program", "diagnose_program"]  # one diagnosis, then stop
    assert solution.status == "infeasible" and solution.objective is None
    assert solution.conflict == [{"name": "c1", "text": "x >= 10"}, {"name": "c2", "text": "x <= 5"}]


def test_direct_unbounded_diagnosis_names_the_variables_that_grow(direct_agent, fake_llm):
    fake_llm.enqueue(UNBOUNDED_REPLY, LP_REPLY)
    solution = direct_agent.solve(PROBLEM)
    assert fake_llm.prompt_names == ["write_program", "diagnose_program"]
    assert "is unbounded" in fake_llm.calls[1].user and "These variables can grow without limit: x\n" in (
        fake_llm.calls[1].user)
    assert [a.status for a in solution.attempts] == ["unbounded", "optimal"]


def test_reply_looping_to_the_token_limit_is_cut_and_runs(direct_agent, fake_llm):
    loop = "\n".join(["model.c3 = pyo.Constraint(expr=model.x <= 3)"] * 12)
    looping = LP_REPLY.replace("    return model\n```", "    " + loop.replace("\n", "\n    ") + "\n    model.c")
    fake_llm.enqueue(looping)
    solution = direct_agent.solve(PROBLEM)
    assert fake_llm.prompt_names == ["write_program"]
    assert solution.status == "optimal" and solution.objective == pytest.approx(11)
    assert any("repeated" in f for f in solution.attempts[0].fixes)


def test_a_reply_cut_short_in_a_loop_is_cut_where_the_loop_began(settings, runner, fake_llm):
    loop = "\n    ".join(["model.c3 = pyo.Constraint(expr=model.x <= 3)"] * 3)
    looping = LP_REPLY.replace("    return model\n```", "    " + loop + "\n    model.c")  # far under the cap
    fake_llm.enqueue(Cut(looping))  # the loop guard ended it: finish_reason "length"
    with Agent(load_settings(home=settings.home, experimental={"max_tokens_program": 1000}), llm=fake_llm,
               runner=runner) as agent:
        solution = agent.solve(PROBLEM)
    assert fake_llm.prompt_names == ["write_program"]
    assert solution.status == "optimal" and any("repeated" in f for f in solution.attempts[0].fixes)


def test_unfinished_long_reply_asks_for_a_shorter_program(direct_agent, fake_llm):
    scalars = "\n".join(f"model.y{i} = pyo.Var(domain=pyo.NonNegativeReals)" for i in range(30))
    unfinished = program("model = pyo.ConcreteModel()\n" + scalars).replace("    return model\n```",
                                                                            "    model.obj = pyo.Obj")
    fake_llm.enqueue(unfinished, LP_REPLY)
    solution = direct_agent.solve(PROBLEM)
    assert fake_llm.prompt_names == ["write_program", "rewrite_shorter"]
    rewrite = fake_llm.calls[1]
    assert "cut off" in rewrite.user and "model.y29" not in rewrite.user  # the unfinished program is not shown
    assert rewrite.temperature is not None and rewrite.temperature > 0  # not the greedy reply again
    assert solution.status == "optimal" and solution.objective == pytest.approx(11)


def test_a_second_shorter_rewrite_draws_a_new_sample(direct_agent, fake_llm):
    scalars = "\n".join(f"model.y{i} = pyo.Var(domain=pyo.NonNegativeReals)" for i in range(30))
    unfinished = program("model = pyo.ConcreteModel()\n" + scalars).replace("    return model\n```",
                                                                            "    model.obj = pyo.Obj")
    fake_llm.enqueue(unfinished, unfinished, LP_REPLY)
    solution = direct_agent.solve(PROBLEM)
    assert fake_llm.prompt_names == ["write_program", "rewrite_shorter", "rewrite_shorter"]
    assert fake_llm.calls[1].seed != fake_llm.calls[2].seed  # not a replay of the first rewrite
    assert solution.objective == pytest.approx(11)


def test_direct_prompt_repeats_the_question_and_repair_gets_a_hint(direct_agent, fake_llm):
    problem = "A shop sells x and y. Each x earns 3 and each y earns 2. How much should it sell to maximize profit?"
    broken = program("""model = pyo.ConcreteModel()
model.x = pyo.Var(domain=pyo.NonNegativeReals)
model.y = pyo.Var(domain=pyo.NonNegativeReals)
model.total = pyo.Constraint(expr=model.x + model.y <= 4)
model.obj = pyo.Objective(expr=3 * model.x + 2 * model.y, sense=pyo.maximize)
model.half = pyo.Constraint(expr=model.x <= 0.5 * model.total)""")
    fake_llm.enqueue(broken, LP_REPLY)
    solution = direct_agent.solve(problem)
    assert fake_llm.prompt_names == ["write_program", "repair"]
    write = fake_llm.calls[0].user
    assert 'The question: "How much should it sell to maximize profit?"' in write and "<formulation>" not in write
    assert "Hint: A constraint is a condition, not a quantity" in fake_llm.calls[1].user
    assert solution.objective == pytest.approx(11)


def test_the_quote_rule_reaches_every_call_of_a_short_problem_only(settings, runner, fake_llm):
    quoting = settings.with_experimental(quote_max_words=25)
    with Agent(quoting, llm=fake_llm, runner=runner) as agent:
        fake_llm.enqueue(UNBOUNDED_REPLY, LP_REPLY)
        agent.solve(PROBLEM)  # 23 words: unbounded, then diagnosed, both with the rule
        assert fake_llm.prompt_names == ["write_program", "diagnose_program"]
        assert all("quotes the words of the problem" in c.messages[0]["content"] for c in fake_llm.calls)
        fake_llm.enqueue(LP_REPLY)
        agent.solve(PROBLEM + " Answer with the plan and its value.")  # 30 words
        assert "quotes the words of the problem" not in fake_llm.calls[-1].messages[0]["content"]


FURNITURE = ("A shop makes chairs and tables. A chair earns $5 and a table $8. A chair takes 1 hour and a table "
             "2 hours, and 40 hours are available. At most 12 chairs can be sold. Maximize the profit.")
NO_CHAIR_LIMIT = program("""
model = pyo.ConcreteModel()
model.chairs = pyo.Var(domain=pyo.NonNegativeReals)
model.tables = pyo.Var(domain=pyo.NonNegativeReals)
model.obj = pyo.Objective(expr=5 * model.chairs + 8 * model.tables, sense=pyo.maximize)
model.hours = pyo.Constraint(expr=model.chairs + 2 * model.tables <= 40)
""")  # optimum 200: all chairs
WITH_CHAIR_LIMIT = NO_CHAIR_LIMIT.replace("    return model",
                                         "    model.sold = pyo.Constraint(expr=model.chairs <= 12)\n    return model")


SOLD = "```python\nmodel.sold = pyo.Constraint(expr=model.chairs <= 12)\n```"


def test_an_optimal_program_that_leaves_a_number_unused_gets_the_line_for_it(patching, fake_llm):
    fake_llm.enqueue(NO_CHAIR_LIMIT, SOLD)
    solution = patching.solve(FURNITURE)
    assert fake_llm.prompt_names == ["write_program", "patch_unused"]
    prompt = fake_llm.calls[1].user
    assert 'never uses this part of the problem: "At most 12 chairs can be sold." (the number 12)' in prompt
    assert "model.hours" in prompt  # the program, for its variable names
    assert [(a.stage, a.status) for a in solution.attempts] == [("write_program", "optimal"), ("diagnose", "optimal")]
    assert solution.status == "optimal" and solution.objective == pytest.approx(172)
    assert "model.sold" in solution.program and "model.hours" in solution.program
    assert solution.attempts[1].fixes[0] == "added: model.sold = pyo.Constraint(expr=model.chairs <= 12)"
    from alphaopt.interfaces.render import render_solution

    assert ("Lines the model wrote after checking its program against the text:\n"
            "  added: model.sold = pyo.Constraint(expr=model.chairs <= 12)") in render_solution(solution)


def test_the_optimum_stands_when_the_patched_program_fails(patching, fake_llm):
    fake_llm.enqueue(NO_CHAIR_LIMIT, SOLD.replace("model.chairs", "model.chair"))
    solution = patching.solve(FURNITURE)
    assert fake_llm.prompt_names == ["write_program", "patch_unused"]  # no repair of the patch
    assert [a.status for a in solution.attempts] == ["optimal", "error"]
    assert solution.status == "optimal" and solution.objective == pytest.approx(200)
    assert "model.sold" not in solution.program
    from alphaopt.interfaces.render import render_solution

    assert "against the text (not used: the first optimum stood):\n  added: model.sold" in render_solution(solution)


def test_the_optimum_stands_when_the_patch_leaves_more_numbers_unused(patching, fake_llm):
    fake_llm.enqueue(NO_CHAIR_LIMIT,
                     "```python\nmodel.hours = pyo.Constraint(expr=model.chairs + 2 * model.tables <= 50)\n```")
    solution = patching.solve(FURNITURE)  # the line replaced model.hours; now 40 is unused too
    assert solution.attempts[1].fixes[0].startswith("replaced: model.hours")
    assert solution.objective == pytest.approx(200) and "<= 40" in solution.program


def test_a_line_is_asked_for_each_unused_number_but_not_when_too_many_are_unused(settings, runner, fake_llm):
    bare = NO_CHAIR_LIMIT.replace("<= 40", "<= 4")  # 40 and 12 unused
    for cap, replies in ((2, [bare, SOLD,
                              "```python\nmodel.hours = pyo.Constraint(expr=model.chairs + 2 * model.tables <= 40)"
                              "\n```"]),
                         (1, [bare])):
        fake_llm.calls.clear()
        with Agent(load_settings(home=settings.home, experimental={"max_unused_patches": cap, "text_rewrites": True}),
                   llm=fake_llm, runner=runner) as agent:
            fake_llm.enqueue(*replies)
            solution = agent.solve(FURNITURE)
        if cap == 2:
            assert fake_llm.prompt_names == ["write_program", "patch_unused", "patch_unused"]
            assert "(the number 40)" in fake_llm.calls[1].user and "(the number 12)" in fake_llm.calls[2].user
            assert solution.objective == pytest.approx(172)
        else:
            assert fake_llm.prompt_names == ["write_program"] and solution.objective == pytest.approx(20)


WORKERS = ("A firm hires seniors at $300 a week and juniors at $100 a week, with a budget of $15000. At least "
           "40 workers are needed. How many of each should be hired to minimize the total number of workers?")
WAGES = program("""
model = pyo.ConcreteModel()
model.seniors = pyo.Var(domain=pyo.NonNegativeIntegers)
model.juniors = pyo.Var(domain=pyo.NonNegativeIntegers)
model.cost = pyo.Objective(expr=300 * model.seniors + 100 * model.juniors, sense=pyo.minimize)
model.budget = pyo.Constraint(expr=300 * model.seniors + 100 * model.juniors <= 15000)
model.need = pyo.Constraint(expr=model.seniors + model.juniors >= 40)
""")  # minimizes the wages: 4000, where the count asked for is 40


def test_an_objective_that_weights_a_count_to_minimize_gets_the_models_objective_line(patching, fake_llm):
    fake_llm.enqueue(WAGES,
                     "```python\nmodel.obj = pyo.Objective(expr=model.seniors + model.juniors, sense=pyo.minimize)"
                     "\n```")
    solution = patching.solve(WORKERS)
    assert fake_llm.prompt_names == ["write_program", "patch_objective"]
    prompt = fake_llm.calls[1].user
    assert "minimizes `300 * model.seniors + 100 * model.juniors`" in prompt
    assert "the question asks to minimize the total number of workers:" in prompt
    # the program's objective (named cost) is replaced, not joined by a second one
    assert solution.objective == pytest.approx(40) and "model.cost" not in solution.program
    assert solution.attempts[1].fixes == [
        "replaced: model.obj = pyo.Objective(expr=model.seniors + model.juniors, sense=pyo.minimize)"
    ]


def test_with_the_formulate_step_the_patched_program_runs_too(settings, runner, fake_llm):
    with Agent(settings.with_experimental(formulate=True, text_rewrites=True), llm=fake_llm, runner=runner) as agent:
        fake_llm.enqueue(FORMULATION, NO_CHAIR_LIMIT, SOLD)
        solution = agent.solve(FURNITURE)
    assert fake_llm.prompt_names == ["formulate", "write_program", "patch_unused"]
    assert solution.objective == pytest.approx(172) and "model.sold" in solution.program


def test_a_program_that_uses_every_number_is_not_diagnosed(agent, fake_llm):
    fake_llm.enqueue(WITH_CHAIR_LIMIT)
    assert agent.solve(FURNITURE).objective == pytest.approx(172)
    assert fake_llm.prompt_names == ["write_program"]


def test_only_the_bound_rewrite_ships_and_one_switch_sets_them_all(settings, runner, fake_llm, monkeypatch):
    # measured on training problems they were not written from: only "bounds" helped
    assert ExperimentalSettings().rewrites == {"bounds"}
    wrong_sense = WITH_CHAIR_LIMIT.replace("sense=pyo.maximize", "sense=pyo.minimize")  # optimum 0
    monkeypatch.setenv("ALPHAOPT_EXPERIMENTAL__TEXT_REWRITES", "1")
    with Agent(load_settings(home=settings.home), llm=fake_llm, runner=runner) as agent:
        fake_llm.enqueue(wrong_sense)
        solution = agent.solve(FURNITURE)
    assert solution.objective == pytest.approx(172) and "sense to maximize" in solution.attempts[0].fixes[0]
    monkeypatch.setenv("ALPHAOPT_EXPERIMENTAL__TEXT_REWRITES", "0")
    fake_llm.calls.clear()
    with Agent(load_settings(home=settings.home), llm=fake_llm, runner=runner) as agent:
        fake_llm.enqueue(NO_CHAIR_LIMIT)  # a number left out: no line asked for
        assert agent.solve(FURNITURE).objective == pytest.approx(200)
        fake_llm.enqueue(wrong_sense, wrong_sense)  # the sense the text asks for: not set
        solution = agent.solve(FURNITURE)
    # the empty plan is diagnosed as usual, and the same program comes back
    assert fake_llm.prompt_names == ["write_program", "write_program", "diagnose_program"]
    assert solution.attempts[0].fixes == [] and "sense=pyo.minimize" in solution.program
    assert solution.objective == pytest.approx(0)
    monkeypatch.delenv("ALPHAOPT_EXPERIMENTAL__TEXT_REWRITES")
    fake_llm.calls.clear()
    with Agent(load_settings(home=settings.home), llm=fake_llm, runner=runner) as agent:  # the shipped default
        fake_llm.enqueue(NO_CHAIR_LIMIT, wrong_sense, wrong_sense)
        assert agent.solve(FURNITURE).objective == pytest.approx(200)  # no line asked for the unused number
        assert agent.solve(FURNITURE).objective == pytest.approx(0)  # the sense is the model's
    assert fake_llm.prompt_names == ["write_program", "write_program", "diagnose_program"]


COUNT_LESSON = {"id": "I0112", "version": 1, "stage": "general_formulation", "label": "objective / count",
                "condition": "the problem asks for the plain count of its decisions",
                "explanation": "make the objective the plain count of these things, every one weighing 1",
                "example": "wrong: 25 * model.a + 45 * model.b right: model.a + model.b"}
COUNT_LINE = "```python\nmodel.obj = pyo.Objective(expr=model.seniors + model.juniors, sense=pyo.minimize)\n```"


class _Lessons:
    def __init__(self, *insights):
        self.insights = list(insights)

    def retrieve(self, problem, *, llm, run_id):
        return self.insights


def test_a_reviewed_lesson_corrects_one_line_of_the_program_written_without_it(settings, runner, fake_llm):
    """Delivered by review, the lesson stays out of the program prompt (the model writes what it
    writes without the library); the optimal program is then shown with the lesson, and the line
    the model corrects goes in."""
    fake_llm.enqueue(WAGES, COUNT_LINE)
    with Agent(settings.with_experimental(insight_delivery="review"), llm=fake_llm, runner=runner,
               library=_Lessons(COUNT_LESSON)) as agent:
        solution = agent.solve(WORKERS)
    assert fake_llm.prompt_names == ["write_program", "review_insight"]
    assert "I0112" not in fake_llm.calls[0].user
    review = fake_llm.calls[1].user
    assert "[I0112] When the problem asks for the plain count of its decisions:" in review
    assert "300 * model.seniors + 100 * model.juniors" in review  # the program it reviews
    assert solution.objective == pytest.approx(40)
    assert [(a.stage, a.objective) for a in solution.attempts] == [("write_program", 4000), ("review", 40)]
    assert solution.attempts[1].fixes[0].startswith("review by insight I0112: replaced: model.obj")
    from alphaopt.interfaces.render import render_solution

    shown = render_solution(solution)
    assert ("Lines the model corrected when shown its program with each lesson:\n"
            "  review by insight I0112: replaced: model.obj = pyo.Objective(expr=model.seniors") in shown
    assert "(repairs 0, after diagnosis 0, after review 1)" in shown


def test_a_review_answered_ok_changes_nothing_and_a_failing_one_leaves_the_optimum(settings, runner, fake_llm):
    knobs = settings.with_experimental(insight_delivery="review")
    fake_llm.enqueue(WAGES, "OK.")
    with Agent(knobs, llm=fake_llm, runner=runner, library=_Lessons(COUNT_LESSON)) as agent:
        kept = agent.solve(WORKERS)
    assert kept.objective == pytest.approx(4000) and fake_llm.prompt_names == ["write_program", "review_insight"]
    assert [a.stage for a in kept.attempts] == ["write_program"]  # nothing changed: nothing run again
    fake_llm.calls.clear()
    fake_llm.enqueue(WAGES, COUNT_LINE.replace("model.juniors", "model.junior"))  # no such variable
    with Agent(knobs, llm=fake_llm, runner=runner, library=_Lessons(COUNT_LESSON)) as agent:
        failed = agent.solve(WORKERS)
    assert fake_llm.prompt_names == ["write_program", "review_insight"]  # no repair of the review's line
    assert [a.status for a in failed.attempts] == ["optimal", "error"]
    assert failed.objective == pytest.approx(4000) and "300 * model.seniors" in failed.program
    from alphaopt.interfaces.render import render_solution

    assert "each lesson (not used: the first optimum stood):" in render_solution(failed)


def test_review_reaches_only_told_lessons_and_both_also_tells_the_prompt(settings, runner, fake_llm):
    untold = {**COUNT_LESSON, "id": "I0113", "told": False}
    fake_llm.enqueue(WAGES, "OK.")
    with Agent(settings.with_experimental(insight_delivery="both"), llm=fake_llm, runner=runner,
               library=_Lessons(COUNT_LESSON, untold)) as agent:
        agent.solve(WORKERS)
    assert fake_llm.prompt_names == ["write_program", "review_insight"]  # one review: I0113 is never told
    assert "[I0112]" in fake_llm.calls[0].user and "I0113" not in fake_llm.calls[0].user
    assert "[I0112]" in fake_llm.calls[1].user and "I0113" not in fake_llm.calls[1].user
    fake_llm.calls.clear()
    fake_llm.enqueue(WAGES)
    with Agent(settings, llm=fake_llm, runner=runner, library=_Lessons(COUNT_LESSON)) as agent:
        agent.solve(WORKERS)  # the default: the prompt only, no review
    assert fake_llm.prompt_names == ["write_program"]


def test_a_review_may_turn_a_variable_integer_but_never_adds_one():
    from alphaopt.agent.program import REVIEWABLE, apply_lines

    code = program("""
model = pyo.ConcreteModel()
model.x = pyo.Var(domain=pyo.NonNegativeReals)
model.c = pyo.Constraint(expr=2 * model.x <= 7)
model.obj = pyo.Objective(expr=model.x, sense=pyo.maximize)
""").split("```python\n")[1].split("```")[0]
    turned, changes = apply_lines(code, "model.x = pyo.Var(domain=pyo.NonNegativeIntegers)", kinds=REVIEWABLE)
    assert "model.x = pyo.Var(domain=pyo.NonNegativeIntegers)" in turned and changes[0].startswith("replaced:")
    assert apply_lines(code, "model.y = pyo.Var(domain=pyo.NonNegativeIntegers)", kinds=REVIEWABLE) == (code, [])
    assert apply_lines(code, "model.x = pyo.Var(domain=pyo.NonNegativeIntegers)") == (code, [])  # a patch: no Var


def test_after_a_review_that_changes_nothing_a_due_patch_still_comes(settings, runner, fake_llm):
    knobs = settings.with_experimental(insight_delivery="review", text_rewrites=True)
    fake_llm.enqueue(WAGES, "OK.", COUNT_LINE)
    with Agent(knobs, llm=fake_llm, runner=runner, library=_Lessons(COUNT_LESSON)) as agent:
        solution = agent.solve(WORKERS)
    assert fake_llm.prompt_names == ["write_program", "review_insight", "patch_objective"]
    assert [(a.stage, a.objective) for a in solution.attempts] == [("write_program", 4000), ("diagnose", 40)]


def test_the_checkpointer_setup_waits_out_another_process_switching_the_file_to_wal(tmp_path, monkeypatch):
    """Two cluster workers opening one fresh checkpoint file: SQLite refuses the second WAL switch
    at once ("database is locked", seen in the local-cluster batch test); the setup is tried again.
    Any other database error is raised at once."""
    import sqlite3

    from langgraph.checkpoint.sqlite import SqliteSaver

    from alphaopt.agent.graph import sqlite_checkpointer

    real, calls = SqliteSaver.setup, []

    def busy_twice(self):
        calls.append(1)
        if len(calls) <= 2:
            raise sqlite3.OperationalError("database is locked")
        return real(self)

    monkeypatch.setattr(SqliteSaver, "setup", busy_twice)
    saver = sqlite_checkpointer(tmp_path / "checkpoints.db")
    assert len(calls) == 3 and saver.is_setup
    assert {"checkpoints", "writes"} <= {r[0] for r in saver.conn.execute("select name from sqlite_master")}

    def broken(self):
        calls.append(1)
        raise sqlite3.OperationalError("no such table: checkpoints")

    monkeypatch.setattr(SqliteSaver, "setup", broken)
    calls.clear()
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        sqlite_checkpointer(tmp_path / "other.db")
    assert len(calls) == 1
