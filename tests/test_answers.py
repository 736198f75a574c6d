"""The one answer tolerance (``alphaopt.answers``) and every place that compares an objective with
an answer through it."""

from __future__ import annotations

import math

from alphaopt.agent.program import hardcodes
from alphaopt.agent.vote import decided, vote
from alphaopt.answers import ANSWER, Tolerance
from solvers import SolveStatus


def test_an_answer_matches_within_the_tolerance_relative_to_the_answer():
    assert Tolerance(atol=1e-6, rtol=1e-4) == ANSWER
    assert ANSWER.correct(1000.09, 1000) and not ANSWER.correct(1000.2, 1000)
    assert ANSWER.correct(5e-7, 0.0) and not ANSWER.correct(1e-5, 0.0)  # the absolute floor near zero
    assert not ANSWER.correct(None, 3.0) and not ANSWER.correct(math.nan, 3.0)
    assert ANSWER.same(1000, 1000.09) and ANSWER.same(1000.09, 1000) and not ANSWER.same(1000, 1001)
    assert ANSWER.describe() == "|got - answer| <= 1e-06 + 0.0001·|answer|"


def test_the_benchmarks_score_with_the_same_tolerance():
    from benchmarks import scoring

    assert scoring.Tolerance is Tolerance and scoring.Tolerance() == ANSWER


def test_samples_agree_when_their_optima_are_one_answer():
    def optimal(objective: float) -> dict[str, object]:
        return {"status": SolveStatus.OPTIMAL, "objective": objective}

    # a MIP optimum proved to the solver's default gap is the same answer
    assert vote([optimal(7), optimal(1000), optimal(1000.05)]) == 1
    assert decided([optimal(1000), optimal(1000.05)], 3) and not decided([optimal(1000), optimal(1001)], 3)


def test_a_program_that_writes_the_target_within_the_tolerance_hardcodes_it():
    program = "def build_model():\n    model.obj = Objective(expr={value} + 0 * model.x)\n"
    assert hardcodes(program.format(value="1234.05"), 1234.0, "Make chairs.")
    assert hardcodes(program.format(value="-1234"), 1234.0, "Make chairs.")  # a minimized negative profit
    assert not hardcodes(program.format(value="1240"), 1234.0, "Make chairs.")
    assert not hardcodes(program.format(value="1234"), 1234.0, "A budget of 1234 dollars.")  # data of the text
