"""The counterfactual check on more than one solve per arm: greedy first, then sampled, and no
single lucky sample verifies (scripted model, real HiGHS, SQLite, Chroma)."""

from __future__ import annotations

import json

from library import Status
from tests.fakes import LP_REPLY, WRONG_LP_REPLY, RoutedLLM
from tests.test_learn import DRAFT, ITEM, setup  # noqa: F401 (the fixture)


def _failing_then_explored(llm: RoutedLLM) -> RoutedLLM:
    """k=2 solves without the candidate, both wrong; exploration reaches the answer; a draft."""
    return llm.on("write_program", WRONG_LP_REPLY, WRONG_LP_REPLY).on("explore", LP_REPLY).on(
        "extract", json.dumps(DRAFT))


def test_two_solves_per_arm_the_first_greedy_the_second_sampled(setup):  # noqa: F811
    store, _, learner = setup
    llm = _failing_then_explored(RoutedLLM())
    llm.on("write_program", LP_REPLY, LP_REPLY)  # with: both right
    llm.on("write_program", LP_REPLY, WRONG_LP_REPLY)  # placebo: one right
    summary = learner(llm, k=2, explore_tries=1, placebo=True).learn([ITEM])
    assert summary.verified == 1
    evidence = store.get("I0001").provenance.evidence
    assert (evidence["without"], evidence["with"], evidence["placebo"], evidence["k"]) == (0, 2, 1, 2)
    assert evidence["solves"] == {"without": [0, 0], "with": [1, 1], "placebo": [1, 0]}
    programs = [c for c in llm.calls if c.prompt_name == "write_program"]
    assert [(c.temperature, c.seed) for c in programs] == [(None, None), (0.7, 1)] * 3  # without, with, placebo
    kinds = [a.kind for a in store.attempts(task_id="toy_train/t1")]
    assert [k for k in kinds if k.startswith(("solve", "verify"))] == [  # a sampled solve says so
        "solve", "solve_sampled", "verify_with", "verify_with_sampled", "verify_placebo", "verify_placebo_sampled"]


def test_one_lucky_sample_does_not_verify(setup):  # noqa: F811
    store, index, learner = setup
    llm = _failing_then_explored(RoutedLLM())
    llm.on("write_program", LP_REPLY, WRONG_LP_REPLY)  # with: one right of two, against none without
    summary = learner(llm, k=2, explore_tries=1, placebo=True).learn([ITEM])
    assert (summary.verified, summary.rejected, summary.retired) == (0, 1, 1)
    insight = store.get("I0001")
    assert insight.status == Status.RETIRED and insight.reason == "rejected by the counterfactual check"
    # two right solves are needed: the placebo arm never ran
    assert insight.provenance.evidence["solves"] == {"without": [0, 0], "with": [1, 0]}
    assert index.recall("an upper limit on one variable") == []


def test_with_one_win_allowed_a_placebo_that_does_as_well_rejects(setup):  # noqa: F811
    store, _, learner = setup
    llm = _failing_then_explored(RoutedLLM())
    llm.on("write_program", LP_REPLY, WRONG_LP_REPLY)  # with: one right of two
    llm.on("write_program", WRONG_LP_REPLY, LP_REPLY)  # placebo: one right of two as well
    summary = learner(llm, k=2, explore_tries=1, placebo=True, min_wins=1).learn([ITEM])
    assert (summary.verified, summary.rejected) == (0, 1)
    assert store.get("I0001").provenance.evidence["solves"] == {"without": [0, 0], "with": [1, 0], "placebo": [0, 1]}


def test_an_arm_stops_once_its_verdict_is_decided(setup):  # noqa: F811
    store, _, learner = setup
    llm = RoutedLLM().on("write_program", LP_REPLY, WRONG_LP_REPLY)  # without: one right of two
    llm.on("extract", json.dumps(DRAFT))
    llm.on("write_program", WRONG_LP_REPLY)  # with: the first solve wrong, so 2 of 2 is out of reach
    summary = learner(llm, k=2, explore_tries=0, placebo=True).learn([ITEM])
    assert (summary.rejected, summary.solves_skipped) == (1, 1)
    assert store.get("I0001").provenance.evidence["solves"] == {"without": [1, 0], "with": [0]}

    llm = RoutedLLM().on("write_program", WRONG_LP_REPLY, WRONG_LP_REPLY).on("explore", LP_REPLY)
    llm.on("extract", json.dumps(DRAFT)).on("write_program", LP_REPLY, LP_REPLY)  # with: 2 of 2
    llm.on("write_program", WRONG_LP_REPLY)  # placebo: the first wrong, so it can win 1 of 2 at most
    again = ("toy_train", "t2", ITEM[2] + " (again)", 11.0)
    summary = learner(llm, k=2, explore_tries=1, placebo=True).learn([again])
    assert (summary.verified, summary.solves_skipped) == (1, 1)
    evidence = store.get("I0002").provenance.evidence
    assert evidence["solves"] == {"without": [0, 0], "with": [1, 1], "placebo": [0]} and evidence["skipped"] == 1


def test_over_a_baseline_that_sometimes_succeeds_a_placebo_win_rejects(setup):  # noqa: F811
    """Without the candidate one solve of two is right, with it both are: the placebo may win
    none (one right of two rejects, as it would not over a baseline that never succeeds)."""
    store, _, learner = setup
    llm = RoutedLLM().on("write_program", LP_REPLY, WRONG_LP_REPLY)  # without: one right of two
    llm.on("extract", json.dumps(DRAFT)).on("write_program", LP_REPLY, LP_REPLY)  # with: 2 of 2
    llm.on("write_program", LP_REPLY, WRONG_LP_REPLY)  # placebo: one right of two (decided after the first)
    summary = learner(llm, k=2, explore_tries=0, placebo=True).learn([ITEM])
    assert (summary.verified, summary.rejected) == (0, 1)
    assert store.get("I0001").provenance.evidence["solves"] == {"without": [1, 0], "with": [1, 1], "placebo": [1]}


def test_no_placebo_arm_when_the_candidate_does_not_beat_the_run_without_it(setup):  # noqa: F811
    store, _, learner = setup
    llm = _failing_then_explored(RoutedLLM())
    llm.on("write_program", WRONG_LP_REPLY, WRONG_LP_REPLY)  # with: no better
    summary = learner(llm, k=2, explore_tries=1, placebo=True).learn([ITEM])
    assert summary.rejected == 1 and "placebo" not in store.get("I0001").provenance.evidence
    assert not any(a.kind.startswith("verify_placebo") for a in store.attempts(task_id="toy_train/t1"))


def test_a_verification_is_one_library_version(setup):  # noqa: F811
    store, _, learner = setup
    two = {"insights": [DRAFT["insights"][0], {**DRAFT["insights"][0], "condition": "a limit binds one variable"}]}
    llm = RoutedLLM().on("write_program", WRONG_LP_REPLY).on("explore", LP_REPLY).on("extract", json.dumps(two))
    llm.on("write_program", LP_REPLY)
    before = store.library_version()
    learner(llm, explore_tries=1).learn([ITEM])
    checks = [v for v in store.library_versions(since=before) if "counterfactual check" in v.reason]
    assert len(checks) == 1 and sorted(checks[0].insights) == ["I0001", "I0002"]  # both candidates, one commit
