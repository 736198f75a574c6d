"""Evolution broadens a quoted condition where the solver says a shorter quote helps and harms
nothing (``alphaopt.learning.broaden``): scripted model at the client boundary, real HiGHS,
SQLite and Chroma.

The scripted model writes every calorie constraint with ``<=``. The insight's edit turns it to
``>=`` where its quote matches: right for the two diet problems (a requirement), wrong for the
snack box (a capacity).
"""

from __future__ import annotations

import pytest

from alphaopt.agent import prompts
from alphaopt.agent.retrieval import open_library
from alphaopt.config import load_settings
from alphaopt.learning import broaden
from alphaopt.learning.evolve import EvolveConfig, Evolver
from alphaopt.learning.learn import LearnConfig, Learner
from library import InsightDraft, Status
from tests.fakes import ThreadSafeLLM, program

TEXTS = {
    "s1": ("Mary has a daily requirement of 2,200 calories. Food A costs $3 and has 300 calories; food B costs $2 "
           "and has 150 calories. Minimize the cost of her food."),
    "p2": ("Tom has a weekly requirement of 3,000 calories. Food A costs $3 and has 300 calories; food B costs $2 "
           "and has 150 calories. Minimize the cost of his food."),
    "n3": ("A snack box holds 2,000 calories of nuts and dried fruit. A unit of nuts earns $5 and has 250 "
           "calories; a unit of fruit earns $4 and has 100 calories. Maximize the profit of a box."),
}
LUNCH = ("A lunch box holds 1,000 calories of bread and cheese. A unit of bread earns $2 and has 100 calories; a "
         "unit of cheese earns $3 and has 200 calories. Maximize the profit of a box.")  # added by one test
ANSWERS = {"s1": 22.0, "p2": 30.0, "n3": 80.0, "n4": 20.0}
DIET = """
model = pyo.ConcreteModel()
model.a = pyo.Var(domain=pyo.NonNegativeReals)
model.b = pyo.Var(domain=pyo.NonNegativeReals)
model.obj = pyo.Objective(expr=3 * model.a + 2 * model.b, sense=pyo.minimize)
model.cal = pyo.Constraint(expr=300 * model.a + 150 * model.b <= {need})
"""
BOX = """
model = pyo.ConcreteModel()
model.x = pyo.Var(domain=pyo.NonNegativeReals)
model.y = pyo.Var(domain=pyo.NonNegativeReals)
model.obj = pyo.Objective(expr={earn}, sense=pyo.maximize)
model.cal = pyo.Constraint(expr={calories} <= {holds})
"""
PROGRAMS = {
    "s1": program(DIET.format(need=2200)),  # 0 as written, 22 with >=
    "p2": program(DIET.format(need=3000)),  # 0 as written, 30 with >=
    "n3": program(BOX.format(earn="5 * model.x + 4 * model.y", calories="250 * model.x + 100 * model.y",
                             holds=2000)),  # 80 as written, unbounded with >=
    "n4": program(BOX.format(earn="2 * model.x + 3 * model.y", calories="100 * model.x + 200 * model.y",
                             holds=1000)),  # 20 as written, unbounded with >=
}
CONDITION = 'when the text says "a daily requirement of N calories"'
EXAMPLE = "wrong: model.a * 300 + model.b * 150 <= 2200 right: model.a * 300 + model.b * 150 >= 2200"


def route(prompt: str, user: str) -> str | BaseException:
    problem = next((name for name, text in {**TEXTS, "n4": LUNCH}.items() if text in user), None)
    if prompt == "check_insights":
        return "NONE"
    if prompt == "formulate":
        return "## Variables\na, b >= 0\n## Objective\nthe cost\n## Constraints\nthe calories"
    if prompt in ("write_program", "repair") and problem is not None:  # a repair writes the same again
        return PROGRAMS[problem]
    if prompt.startswith("diagnose"):  # an objective of 0, or no optimum: the program stands
        return prompts.CONFIRMED
    return AssertionError(f"no scripted reply for a {prompt!r} call")


@pytest.fixture
def home(tmp_path, runner):
    settings = load_settings(home=tmp_path / "home", use_library=True, experimental={"starter_library": "none"})
    store, index = open_library(settings)
    for name, text in TEXTS.items():
        store.add_task("toy_train", name, text, ANSWERS[name])
    insight = store.add_insight(InsightDraft(stage="general_formulation", level1="constraints",
                                             level2="inequality direction", condition=CONDITION,
                                             explanation="write it with >=, not <=", example=EXAMPLE),
                                status=Status.VERIFIED, provenance={"source_tasks": ["toy_train/s1"]})
    index.upsert([insight])
    llm = ThreadSafeLLM(route=route, delay=0.0)
    learner = Learner(settings, store, index, llm, runner, LearnConfig())
    yield store, learner, insight
    index.close()
    store.close()


def test_shorter_quotes_keep_a_number_and_a_content_word():
    found = broaden.spans("a daily requirement of N calories")
    assert found[0] == "daily requirement of N calories"  # longest first, the whole quote left out
    assert "requirement of N calories" in found and "N calories" in found and "requirement of N" in found
    assert "of N calories" not in found and "a daily requirement" not in found  # a stop word at an end; no N
    assert broaden.spans("and N calories") == ["N calories"]
    assert broaden.spans("for all of the N") == []  # no content word besides the N


def test_candidates_differ_in_what_they_reach_and_respect_the_cap(home):
    store, _, insight = home
    tasks = store.tasks()
    found = broaden.candidates(insight, tasks, n=3, max_problems=8)
    assert [(c.quote, c.matched) for c in found] == [
        ("N calories", ("toy_train/n3", "toy_train/p2")),  # the broadest first
        ("requirement of N calories", ("toy_train/p2",)),  # the most specific quote with that reach
    ]
    assert found[1].condition == 'when the text says "requirement of N calories"'
    assert [c.quote for c in broaden.candidates(insight, tasks, n=3, max_problems=1)] == ["requirement of N calories"]
    unquoted = store.revise(insight.id, condition="when a diet sets a requirement", reason="test")
    assert broaden.candidates(unquoted, tasks, n=3, max_problems=8) == []


def test_evolve_broadens_to_the_quote_that_helps_and_harms_nothing(home):
    store, learner, insight = home
    summary = Evolver(learner, EvolveConfig(unretrieved_tries=0, merge=False)).evolve()
    report = summary.rounds[0]
    assert report.before.right == 2  # s1 with its insight, n3 without one; p2 wrong (its quote did not match)
    # replay: s1 with and without its insight, p2 and n3 with none; broaden: p2 and n3 given each candidate
    # (their runs without it reused from the replay)
    assert report.solved >= 4 + 3 and report.reused >= 3
    assert report.broadened[insight.id]["to"] == 'when the text says "requirement of N calories"'
    assert report.broadened[insight.id]["positive"] == ["toy_train/p2"]
    now = store.get(insight.id)
    assert now.condition == 'when the text says "requirement of N calories"' and now.version == insight.version + 1
    judged = {c["quote"]: c for c in now.provenance.evidence["broaden"]["candidates"]}
    assert judged["N calories"]["negative"] == ["toy_train/n3"]  # it would have turned the snack box wrong
    assert judged["N calories"]["positive"] == ["toy_train/p2"]
    assert report.after is not None and report.after.right == 3
    # the candidates' solves (n3 was solved only by one) left no evidence on the insight
    assert "toy_train/n3" not in {e.task_id for e in store.evidence_for(insight.id) if e.used}
    assert {a.task_id for a in store.attempts() if a.kind == broaden.KIND} == {"toy_train/n3", "toy_train/p2"}


def test_no_quote_is_kept_when_every_candidate_harms_a_problem_it_reaches(home):
    store, learner, insight = home
    store.add_task("toy_train", "n4", LUNCH, ANSWERS["n4"])
    store.revise(insight.id, condition='when the text says "picnic box holds N calories"', reason="test")
    lines: list[str] = []
    report = Evolver(learner, EvolveConfig(unretrieved_tries=0, merge=False)).evolve(on_event=lines.append).rounds[0]
    assert report.broadened == {}
    now = store.get(insight.id)
    assert now.condition == 'when the text says "picnic box holds N calories"'
    assert (f'  {insight.id} not broadened: no shorter quote helped without harm ("N calories" +1 -2 of 3; '
            '"box holds N calories" +0 -2 of 2)') in lines
