"""Evolution quotes a condition more broadly where the solver says the quote helps far more than
it harms (``alphaopt.learning.broaden``): scripted model at the client boundary, real HiGHS,
SQLite and Chroma.

The scripted model writes every calorie constraint with ``<=``. The insight's edit turns it to
``>=`` where its quote matches: right for the two diet problems (a requirement), wrong for the
snack box (a capacity). A told lesson (count the vehicles) gets a quote of its source's goal.
"""

from __future__ import annotations

import re

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
    "q5": ("Sam keeps to a monthly requirement of 1,500 calories, from food A ($3 for 300 calories) and food B "
           "($2 for 150 calories). What is the least he can spend?"),
    "n3": ("A snack box holds 2,000 calories of nuts and dried fruit. A unit of nuts earns $5 and has 250 "
           "calories; a unit of fruit earns $4 and has 100 calories. Maximize the profit of a box."),
}
LUNCH = ("A lunch box holds 1,000 calories of bread and cheese. A unit of bread earns $2 and has 100 calories; a "
         "unit of cheese earns $3 and has 200 calories. Maximize the profit of a box.")  # added by one test
ANSWERS = {"s1": 22.0, "p2": 30.0, "q5": 15.0, "n3": 80.0, "n4": 20.0}
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
    "q5": program(DIET.format(need=1500)),  # 0 as written, 15 with >=
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


def _home(tmp_path, runner, tasks, draft, source, route_to):
    """A home holding ``tasks`` (name: text, answer) and one verified insight learned from
    ``source``, with a learner whose scripted model answers through ``route_to``."""
    settings = load_settings(home=tmp_path / "home", use_library=True, experimental={"starter_library": "none"})
    store, index = open_library(settings)
    for name, (text, answer) in tasks.items():
        store.add_task("toy_train", name, text, answer)
    insight = store.add_insight(draft, status=Status.VERIFIED, provenance={"source_tasks": [f"toy_train/{source}"]})
    index.upsert([insight])
    learner = Learner(settings, store, index, ThreadSafeLLM(route=route_to, delay=0.0), runner, LearnConfig())
    yield store, learner, insight
    index.close()
    store.close()


@pytest.fixture
def home(tmp_path, runner):
    draft = InsightDraft(stage="general_formulation", level1="constraints", level2="inequality direction",
                         condition=CONDITION, explanation="write it with >=, not <=", example=EXAMPLE)
    yield from _home(tmp_path, runner, {n: (t, ANSWERS[n]) for n, t in TEXTS.items()}, draft, "s1", route)


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
        ("N calories", ("toy_train/n3", "toy_train/p2", "toy_train/q5")),  # the broadest first
        ("requirement of N calories", ("toy_train/p2", "toy_train/q5")),  # the most specific quote with that reach
    ]
    assert found[1].condition == 'when the text says "requirement of N calories"'
    assert all(c.judged == c.matched and not c.sampled for c in found)
    # more newly reached problems than the cap: judged on a seeded sample, the same every time
    sampled = broaden.candidates(insight, tasks, n=3, max_problems=2)
    assert [(c.quote, len(c.judged), c.sampled) for c in sampled] == [
        ("N calories", 2, True), ("requirement of N calories", 2, False)]
    assert sampled[0].judged == broaden.candidates(insight, tasks, n=1, max_problems=2)[0].judged
    assert set(sampled[0].judged) < set(sampled[0].matched)
    unquoted = store.revise(insight.id, condition="when a diet sets a requirement", reason="test")
    assert broaden.candidates(unquoted, tasks, n=3, max_problems=8) == []  # no source texts to quote


def test_evolve_broadens_to_the_quote_that_helps_and_harms_nothing(home):
    store, learner, insight = home
    summary = Evolver(learner, EvolveConfig(unretrieved_tries=0, merge=False)).evolve()
    report = summary.rounds[0]
    assert report.before.right == 2  # s1 with its insight, n3 without one; p2 wrong (its quote did not match)
    # replay: s1 with and without its insight, p2 and n3 with none; broaden: p2 and n3 given each candidate
    # (their runs without it reused from the replay)
    assert report.solved >= 4 + 3 and report.reused >= 3
    assert report.broadened[insight.id]["to"] == 'when the text says "requirement of N calories"'
    assert report.broadened[insight.id]["positive"] == ["toy_train/p2", "toy_train/q5"]
    now = store.get(insight.id)
    assert now.condition == 'when the text says "requirement of N calories"' and now.version == insight.version + 1
    judged = {c["quote"]: c for c in now.provenance.evidence["broaden"]["candidates"]}
    assert judged["N calories"]["negative"] == ["toy_train/n3"]  # it would have turned the snack box wrong
    assert judged["N calories"]["positive"] == ["toy_train/p2", "toy_train/q5"]  # +2 -1: not three to one
    assert report.after is not None and report.after.right == 4
    # the candidates' solves (n3 was solved only by one) left no evidence on the insight
    assert "toy_train/n3" not in {e.task_id for e in store.evidence_for(insight.id) if e.used}
    assert {a.task_id for a in store.attempts() if a.kind == broaden.KIND} == {"toy_train/n3", "toy_train/p2",
                                                                            "toy_train/q5"}


def test_no_quote_is_kept_when_every_candidate_harms_a_problem_it_reaches(home):
    store, learner, insight = home
    store.add_task("toy_train", "n4", LUNCH, ANSWERS["n4"])
    store.revise(insight.id, condition='when the text says "picnic box holds N calories"', reason="test")
    lines: list[str] = []
    report = Evolver(learner, EvolveConfig(unretrieved_tries=0, merge=False)).evolve(on_event=lines.append).rounds[0]
    assert report.broadened == {}
    # the quotes judged are in the run's record all the same
    record = report.judged[insight.id]
    assert record["chosen"] is None and [c["quote"] for c in record["candidates"]] == ["N calories",
                                                                                       "box holds N calories"]
    assert store.runs()[-1].counters["rounds"][0]["judged"][insight.id] == record
    now = store.get(insight.id)
    assert now.condition == 'when the text says "picnic box holds N calories"'
    assert (f'  {insight.id} not broadened: no quote turned two right and three for each wrong ("N calories" +2 -2 '
            'of 4; "box holds N calories" +0 -2 of 2)') in lines


# -- a told lesson gets a quote of its source's goal -------------------------------------------

FLEET = ("Trucks carry {big} boxes and vans {small} boxes. At least {boxes} boxes must be shipped and at least "
         "{vans} vans used. Minimize the total number of vehicles needed.")
FLEETS = {"src": {"big": 20, "small": 10, "boxes": 100, "vans": 2},
          "f1": {"big": 30, "small": 15, "boxes": 150, "vans": 3},
          "f2": {"big": 25, "small": 5, "boxes": 100, "vans": 1}}
HOURS = ("Product A takes 3 labor hours and product B 2. At least 10 units must be made, at least 2 of them A. "
         "Minimize the total number of labor hours used.")
COUNTS = {"src": 6.0, "f1": 7.0, "f2": 5.0, "h1": 22.0}  # the optimum of each (the hours are weighted)
LESSON = "make the objective the plain count of the vehicles, every one weighing 1"
FLEET_PROGRAM = """
model = pyo.ConcreteModel()
model.x = pyo.Var(domain=pyo.NonNegativeIntegers)
model.y = pyo.Var(domain=pyo.NonNegativeIntegers)
model.obj = pyo.Objective(expr={objective}, sense=pyo.minimize)
model.ship = pyo.Constraint(expr={big} * model.x + {small} * model.y >= {boxes})
model.vans = pyo.Constraint(expr=model.y >= {vans})
"""
HOURS_PROGRAM = """
model = pyo.ConcreteModel()
model.a = pyo.Var(domain=pyo.NonNegativeIntegers)
model.b = pyo.Var(domain=pyo.NonNegativeIntegers)
model.obj = pyo.Objective(expr={objective}, sense=pyo.minimize)
model.units = pyo.Constraint(expr=model.a + model.b >= 10)
model.least_a = pyo.Constraint(expr=model.a >= 2)
"""


ANY_LESSON = {"counts": False}  # one test: any lesson in the prompt, the placebo too, makes the model count


def fleet_route(prompt: str, user: str) -> str | BaseException:
    told = LESSON in user or (ANY_LESSON["counts"] and prompts.PLACEBO["explanation"] in user)
    if prompt == "check_insights":
        return "NONE"
    if prompt == "formulate":
        return "## Variables\nx, y >= 0\n## Objective\nthe count\n## Constraints\nthe boxes"
    if prompt in ("write_program", "repair"):
        if "labor hours" in user:  # counting the units is wrong here: the hours are the goal
            return program(HOURS_PROGRAM.format(objective="model.a + model.b" if told else "3 * model.a + 2 * model.b"))
        for numbers in FLEETS.values():
            if FLEET.format(**numbers) in user:  # told, the model counts; untold, it weights by capacity
                weighted = f"{numbers['big']} * model.x + {numbers['small']} * model.y"
                return program(FLEET_PROGRAM.format(objective="model.x + model.y" if told else weighted, **numbers))
    if prompt.startswith("diagnose"):
        return prompts.CONFIRMED
    return AssertionError(f"no scripted reply for a {prompt!r} call")


@pytest.fixture
def fleet(tmp_path, runner):
    tasks = {name: (FLEET.format(**numbers), COUNTS[name]) for name, numbers in FLEETS.items()}
    draft = InsightDraft(stage="general_formulation", level1="objective", level2="counting",
                         condition="the question asks how many vehicles are used in all", explanation=LESSON,
                         example="wrong: 20 * model.x right: model.x")
    yield from _home(tmp_path, runner, {**tasks, "h1": (HOURS, COUNTS["h1"])}, draft, "src", fleet_route)


def test_goal_spans_quote_the_goal_sentence_with_three_content_words():
    found = broaden.goal_spans(FLEET.format(**FLEETS["f1"]))
    assert found[0] == "Minimize the total number of vehicles needed"  # the goal sentence, longest first
    assert "Minimize the total number" in found and "number of vehicles needed" in found
    assert "Minimize the total" not in found and "the total number of vehicles" not in found  # two; a stop word
    assert broaden.goal_spans("Ship at least 120 boxes to maximize profit.") == [
        "Ship at least N boxes to maximize profit", "Ship at least N boxes to maximize", "N boxes to maximize profit",
        "boxes to maximize profit"]  # a number is N, and not one of the three


def test_a_told_lesson_is_quoted_where_its_source_states_its_goal_and_not_where_it_harms(fleet):
    store, learner, insight = fleet
    tasks = store.tasks()
    source = {"toy_train/src": store.get_task("toy_train/src").text}
    found = broaden.candidates(insight, tasks, n=3, max_problems=8, sources=source)
    assert [(c.quote, c.matched) for c in found] == [
        ("Minimize the total number", ("toy_train/f1", "toy_train/f2", "toy_train/h1")),  # the hours too
        ("Minimize the total number of vehicles needed", ("toy_train/f1", "toy_train/f2")),
    ]
    assert found[1].condition == 'when the text says "Minimize the total number of vehicles needed"'
    lines: list[str] = []
    report = Evolver(learner, EvolveConfig(unretrieved_tries=0, merge=False)).evolve(on_event=lines.append).rounds[0]
    assert report.broadened[insight.id]["to"] == found[1].condition
    assert report.broadened[insight.id]["positive"] == ["toy_train/f1", "toy_train/f2"]
    now = store.get(insight.id)
    assert now.condition == found[1].condition and now.version == insight.version + 1
    judged = {c["quote"]: c for c in now.provenance.evidence["broaden"]["candidates"]}
    assert judged["Minimize the total number"]["negative"] == ["toy_train/h1"]  # +2 -1: not three to one
    # a near-copy of the source, or of another problem, would count one problem twice
    store.add_task("toy_train", "copy", FLEET.format(**FLEETS["src"]) + " ", COUNTS["src"])
    store.add_task("toy_train", "f1b", FLEET.format(**FLEETS["f1"]).replace("Trucks", "Lorries"), COUNTS["f1"])
    again = broaden.candidates(insight, store.tasks(), n=3, max_problems=8, sources=source)
    assert [c.matched for c in again] == [c.matched for c in found]  # neither copy is reached
    assert report.before.right == 2 and report.after is not None and report.after.right == 4  # both fleets now
    assert f'  {insight.id} broadened: {found[1].condition} ("Minimize the total number" +2 -1 of 3; ' \
           '"Minimize the total number of vehicles needed" +2 -0 of 2)' in lines
    assert f'  {insight.id}: judging "Minimize the total number" on the 3 training problems it newly reaches' in lines
    assert '    toy_train/h1: right without it, wrong with it under "Minimize the total number"' in lines


def test_a_quote_needs_two_problems_turned_right_and_three_for_each_turned_wrong():
    one = broaden.Candidate("q", "c", ("a",), ("a",))
    assert not broaden.Judged(one, positive=["a"]).wins  # one problem turned right: one lucky greedy sample
    four = broaden.Candidate("q", "c", ("a", "b", "c", "d"), ("a", "b", "c", "d"))
    assert broaden.Judged(four, positive=["a", "b"]).wins
    assert not broaden.Judged(four, positive=["a", "b"], negative=["c"]).wins
    assert broaden.Judged(four, positive=["a", "b", "c"], negative=["d"]).wins
    sampled = broaden.Candidate("q", "c", ("a", "b", "c", "d"), ("a", "b", "c"))
    assert broaden.Judged(sampled, positive=["a", "b"]).net == 8 / 3  # estimated over all it reaches
    assert broaden.Judged(sampled, positive=["a", "b"]).line() == '"q" +2 -0 of 3 of 4'
    assert (sampled.share("the "), four.share("the ")) == ("3 of the 4", "the 4")


def test_a_quote_the_placebo_does_as_well_under_is_not_kept(fleet, monkeypatch):
    # here any lesson in the prompt makes the model count the vehicles: the answer turns with the
    # placebo too, so it is not this lesson's advice that turned it
    store, learner, insight = fleet
    monkeypatch.setitem(ANY_LESSON, "counts", True)
    lines: list[str] = []
    report = Evolver(learner, EvolveConfig(unretrieved_tries=0, merge=False)).evolve(on_event=lines.append).rounds[0]
    assert report.broadened == {} and store.get(insight.id).condition == insight.condition
    assert '    toy_train/f1: wrong without it, right with it under "Minimize the total number", and with a placebo' \
        in lines
    assert (f'  {insight.id} not broadened: no quote turned two right and three for each wrong ("Minimize the total '
            'number" +0 -1 of 3 (2 right with a placebo too); "Minimize the total number of vehicles needed" +0 -0 '
            'of 2 (2 right with a placebo too))') in lines
    # the source too: its replay pair (recalled, right only with the lesson) would be positive, and the
    # placebo turns it right there as well
    assert {a.task_id for a in store.attempts() if a.kind == broaden.PLACEBO_KIND} == {
        "toy_train/src", "toy_train/f1", "toy_train/f2"}
    assert report.placebo == {insight.id: ["toy_train/src"]}


def test_a_problem_retrieval_chooses_the_lesson_for_already_is_not_judged(tmp_path, runner):
    """Near its source, the gate makes the lesson a candidate and the model's check may choose it:
    that problem is reached already, so a quote cannot be credited with it."""
    f2 = FLEET.format(**FLEETS["f2"])

    def route_to(prompt: str, user: str) -> str | BaseException:
        if prompt == "check_insights" and f2 in user:
            return re.search(r"\[(I\d{4})\]", user).group(1)  # the check chooses the lesson for f2
        return fleet_route(prompt, user)

    tasks = {name: (FLEET.format(**numbers), COUNTS[name]) for name, numbers in FLEETS.items()}
    draft = InsightDraft(stage="general_formulation", level1="objective", level2="counting",
                         condition="the question asks how many vehicles are used in all", explanation=LESSON,
                         example="wrong: 20 * model.x right: model.x")
    for store, learner, insight in _home(tmp_path, runner, {**tasks, "h1": (HOURS, COUNTS["h1"])}, draft, "src",
                                         route_to):
        lines: list[str] = []
        report = Evolver(learner, EvolveConfig(unretrieved_tries=0, merge=False)).evolve(
            on_event=lines.append).rounds[0]
        record = {c["quote"]: c for c in report.judged[insight.id]["candidates"]}
        vehicles = record["Minimize the total number of vehicles needed"]
        assert vehicles["already"] == ["toy_train/f2"] and vehicles["positive"] == ["toy_train/f1"]
        assert "    toy_train/f2: recalled already, not judged" in lines
        assert report.broadened == {}  # one problem turned right by the quote alone: not enough
        assert store.get(insight.id).condition == draft.condition
