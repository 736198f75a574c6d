"""Every learning run reports its funnel: in the run's counters after each problem, in the
progress line and at the end of ``alphaopt learn`` (scripted model, real HiGHS, SQLite, Chroma)."""

from __future__ import annotations

import json

from alphaopt.learning.funnel import LearnSummary, funnel_lines, progress_line
from tests.fakes import LP_REPLY, WRONG_LP_REPLY, RoutedLLM
from tests.test_learn import DRAFT, ITEM, PROBLEM, setup  # noqa: F401 (the fixture)

SOLVED = ("toy_train", "t2", PROBLEM + " (again)", 11.0)
NEVER = ("toy_train", "t3", PROBLEM + " (once more)", 12.5)  # no program reaches this answer


def test_the_funnel_is_in_the_runs_counters_after_each_problem(setup):  # noqa: F811
    store, _, learner = setup
    llm = RoutedLLM().on("write_program", WRONG_LP_REPLY).on("explore", LP_REPLY).on("extract", json.dumps(DRAFT))
    llm.on("write_program", LP_REPLY)  # t1: with the candidate
    llm.on("write_program", LP_REPLY)  # t2: right at first try
    llm.on("write_program", WRONG_LP_REPLY).on("explore", WRONG_LP_REPLY)  # t3: exploration reaches nothing
    llm.on("check_insights", "NONE", "NONE")  # t1's lesson is recalled for its near twins t2 and t3
    after_each = []
    summary = learner(llm, explore_tries=1).learn(
        [ITEM, SOLVED, NEVER], on_task=lambda task, outcome, s: after_each.append(dict(s.as_dict())))
    counters = store.get_run(summary.run_id).counters
    funnel = {k: counters[k] for k in ("seen", "right_first", "failed", "explored", "reached", "drafted", "added",
                                       "verified", "merged", "retired")}
    assert funnel == {"seen": 3, "right_first": 1, "failed": 2, "explored": 2, "reached": 1, "drafted": 1,
                      "added": 1, "verified": 1, "merged": 0, "retired": 0}
    assert counters["sources"] == {"explore": {"reached": 1, "drafted": 1, "verified": 1}}
    assert counters["verified_per_failed"] == 0.5
    assert counters["tokens"] == summary.tokens > 0 and counters["calls"] == len(llm.calls)
    assert counters["tokens_per_problem"] == round(summary.tokens / 3, 1) and counters["seconds_per_problem"] > 0
    assert counters["tokens_per_s"] > 0  # generated tokens per second of model time
    assert [c["seen"] for c in after_each] == [1, 2, 3] and after_each[0]["verified"] == 1


def test_funnel_lines_and_progress_line():
    summary = LearnSummary(run_id="R0001", seen=20, right_first=6, solved_before=8, solved_after=9, failed=12,
                           explored=12, reached=5, drafted=4, added=6, verified=2, rejected=4, merged=1, retired=6,
                           tokens=400_000, calls=300, cached_calls=30, model_s=4000.0, fresh_output_tokens=40_000,
                           seconds=5000.0, sources={"explore": {"reached": 3, "drafted": 3, "verified": 1},
                                                    "line_edit": {"reached": 2, "drafted": 3, "verified": 1}})
    lines = funnel_lines(summary)
    assert lines[0] == ("Funnel: 20 problems, right at first try 6, solved 8 (after learning 9), failed 12, explored "
                        "12, reached the answer 5, drafted 4; insights drafted 6, verified 2, rejected 4, merged 1, "
                        "retired 6.")
    assert lines[1] == "Verified insights per failed problem: 0.17 (2 of 12)."
    assert lines[2] == ("By source: explore reached 3, drafted 3, verified 1; line_edit reached 2, drafted 3, "
                        "verified 1.")
    assert lines[3] == ("Cost: 400,000 tokens in 300 calls (30 from the cache), 20,000 tokens and 250 s per problem, "
                        "10.0 tokens/s generated.")
    assert progress_line(summary) == "failed 12, reached 5, drafted 4, verified 2; 20,000 tok/problem, 10.0 tok/s"
    summary.unplaced = 3
    assert funnel_lines(summary)[1] == ("Drafts dropped unchecked, their condition saying nothing about where they "
                                        "apply: 3.")
