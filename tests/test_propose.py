"""Proposed insights checked on training problems (``alphaopt library propose``), with a scripted
model at the client boundary and the real solver (HiGHS), SQLite and Chroma.

Three training problems share one model (optimum 11). Without a lesson the scripted model gets
``t1`` wrong and ``t2``, ``t3`` right. The lesson HELP turns ``t1`` right; the lesson HARM turns
``t1`` right too but ``t3`` wrong; the lesson IDLE changes nothing. Recall reaches every insight
(any distance), so the applicability check decides: it lets each lesson in for the
problems ``CHECK`` names.
"""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from alphaopt.agent.retrieval import open_library
from alphaopt.config import load_settings
from alphaopt.errors import InputError, LLMError
from alphaopt.interfaces import cli, cli_library
from alphaopt.learning.learn import LearnConfig, Learner
from alphaopt.learning.propose import NOTHING_TO_CHECK, ProposeConfig, Proposer, read_offers, table
from library import InsightDraft, LibraryStore, Status
from tests.fakes import FORMULATION, LP_REPLY, WRONG_LP_REPLY, ThreadSafeLLM
from tests.test_evolve import TEXTS as EVOLVE_TEXTS

TEXTS = {name: EVOLVE_TEXTS[name] for name in ("t1", "t2", "t3")}  # two furniture plants and a kitchen
RIGHT_WITHOUT = {"t1": False, "t2": True, "t3": True}
HELP = "the text gives an upper limit on a single decision variable"
HARM = "the text names a product made from wood"
IDLE = "the text mentions a plant"
LESSONS = {  # condition -> (explanation, what it does: problem -> right with it)
    HELP: ("copy the limit exactly as stated; a wrong bound is the common mistake", {"t1": True}),
    HARM: ("bound every product by its wood use alone", {"t1": True, "t3": False}),
    IDLE: ("name each product's variable after the product", {}),
}
CHECK = {HELP: {"t1", "t3"}, HARM: {"t1", "t3"}, IDLE: {"t1", "t2", "t3"}}  # the applicability check's answers


def route(prompt: str, user: str) -> str | BaseException:
    """The scripted model: one reply per (prompt, content), whatever the order of the calls."""
    problem = next((name for name, text in TEXTS.items() if text in user), None)
    if prompt == "check_insights":
        shown = re.findall(r"\[(I\d+)\] When (.*?): ", user)
        return " ".join(i for i, condition in shown if problem in CHECK[condition]) or "NONE"
    if prompt == "formulate":  # what the lessons in its prompt did travels on to the program
        return FORMULATION + "".join(f"\n(applied: {c})" for c in LESSONS if LESSONS[c][0] in user)
    if prompt == "write_program":  # a lesson that makes the problem wrong outweighs one that makes it right
        given = [c for c, (explanation, _) in LESSONS.items() if explanation in user or f"(applied: {c})" in user]
        effects = [LESSONS[c][1][problem] for c in given if problem in LESSONS[c][1]]
        right = all(effects) if effects else RIGHT_WITHOUT[problem]
        return LP_REPLY if right else WRONG_LP_REPLY
    return AssertionError(f"no scripted reply for a {prompt!r} call")


def proposals(path, *conditions: str, note: str | None = None, broken_line: bool = False):
    """A proposal file as `alphaopt library export` writes one (from another library)."""
    with LibraryStore(":memory:") as other:
        for condition in conditions:
            other.add_insight(InsightDraft(stage="general_formulation", level1="constraints", level2="upper limits",
                                           condition=condition, explanation=LESSONS[condition][0],
                                           example="wrong: x <= 2 right: x <= 3"),
                              status=Status.VERIFIED, provenance={"evidence": {"note": note} if note else {}})
        other.export_jsonl(path, header={"written_by": "a person"})
    if broken_line:
        with open(path, "a") as f:
            f.write('{"id": "I0009", "condition": "half a record"}\n')
    return path


def program_calls(llm: ThreadSafeLLM) -> int:
    return sum(c.prompt_name == "write_program" for c in llm.calls)


@pytest.fixture
def home(tmp_path, runner):
    settings = load_settings(home=tmp_path / "home", use_library=True,
                             experimental={"starter_library": "none", "retrieval_max_distance": 2.0})
    store, index = open_library(settings)
    for name, text in TEXTS.items():
        store.add_task("toy_train", name, text, 11.0)
    llm = ThreadSafeLLM(route=route, delay=0.0)

    def proposer(limit: int = 6) -> Proposer:
        return Proposer(Learner(settings, store, index, llm, runner, LearnConfig(k=1)), ProposeConfig(limit=limit))

    yield SimpleNamespace(store=store, index=index, llm=llm, proposer=proposer, path=tmp_path / "offers.jsonl")
    index.close()
    store.close()


def test_the_scripted_model_does_what_the_module_docstring_says():
    lesson = {c: f"[I0001] When {c}: {LESSONS[c][0]}" for c in LESSONS}
    written = {(c, p): route("write_program", f"{TEXTS[p]}\n{lesson[c]}") == LP_REPLY for c in LESSONS for p in TEXTS}
    assert [p for p in TEXTS if route("write_program", TEXTS[p]) == LP_REPLY] == ["t2", "t3"]
    assert [p for p in TEXTS if written[(HELP, p)]] == ["t1", "t2", "t3"]
    assert [p for p in TEXTS if written[(HARM, p)]] == ["t1", "t2"]
    assert [p for p in TEXTS if written[(IDLE, p)]] == ["t2", "t3"]


def test_a_proposal_that_turns_a_wrong_problem_right_is_verified_with_its_evidence(home):
    offers = read_offers(proposals(home.path, HELP, note="replaces the upper-limit text heuristic"))
    lines: list[str] = []
    summary = home.proposer().propose(offers, source="offers.jsonl", command="test", on_event=lines.append)
    insight = home.store.get("I0001")
    assert insight.status == Status.VERIFIED and insight.condition == HELP
    evidence = insight.provenance.evidence
    assert (evidence["origin"], evidence["note"], evidence["proposed_as"]) == (
        "proposed", "replaces the upper-limit text heuristic", "I0001")
    check = evidence["proposed_check"]
    assert (check["checked"], check["wins"], check["losses"]) == (["toy_train/t1", "toy_train/t3"],
                                                                  ["toy_train/t1"], [])
    t1, t3 = check["problems"]["toy_train/t1"], check["problems"]["toy_train/t3"]
    assert (t1["without"], t1["with"], t1["placebo"], t1["won"]) == (0, 1, 0, True)
    # t3 was right without it: the check itself stops at once (no margin to reach), and the one
    # "with" solve that tells a loss from no change is run: right, so no loss
    assert (t3["without"], t3["with"], t3["won"], t3["lost"]) == (1, 1, False, False)
    assert insight.provenance.source_tasks == ("toy_train/t1",)  # where it won, as a learned insight's source
    assert [h.insight_id for h in home.index.recall(HELP)] == ["I0001"]  # indexed as verified
    kinds = [(a.task_id[-2:], a.kind) for a in home.store.attempts(run_id=summary.run_id)]
    assert kinds == [("t1", "solve"), ("t1", "verify_with"), ("t1", "verify_placebo"), ("t3", "solve"),
                     ("t3", "verify_with")]
    run = home.store.get_run(summary.run_id)
    assert (run.status.value, run.settings["job"], run.counters["verified"]) == ("finished", "propose", 1)
    assert any("toy_train/t1: right without it 0, with it 1, placebo 0 (of 1) -> win" in line for line in lines)
    assert table(summary)[1].split()[0] == "I0001" and table(summary)[1].split()[-4:] == ["2", "1", "0", "verified"]


def test_a_proposal_that_makes_a_right_problem_wrong_is_retired_though_it_won_elsewhere(home):
    offers = read_offers(proposals(home.path, HARM))
    summary = home.proposer().propose(offers, source="offers.jsonl")
    insight = home.store.get("I0001")
    assert insight.status == Status.RETIRED
    check = insight.provenance.evidence["proposed_check"]
    assert (check["wins"], check["losses"]) == (["toy_train/t1"], ["toy_train/t3"])
    assert check["problems"]["toy_train/t3"]["without"] == 1 and check["problems"]["toy_train/t3"]["with"] == 0
    assert insight.reason == "made 1 training problem(s) wrong that were right without it: toy_train/t3"
    assert (summary.outcomes[0].verdict, summary.count("verified")) == ("retired", 0)
    assert all(h.insight_id != "I0001" for h in home.index.recall(HARM, status=None))  # out of the index


def test_a_proposal_no_problem_recalls_stays_a_candidate_with_the_reason(home, monkeypatch):
    monkeypatch.setitem(CHECK, IDLE, set())
    summary = home.proposer().propose(read_offers(proposals(home.path, IDLE)), source="offers.jsonl")
    insight = home.store.get("I0001")
    assert insight.status == Status.CANDIDATE and insight.reason == NOTHING_TO_CHECK
    assert insight.provenance.evidence["proposed_check"]["checked"] == []
    assert (summary.outcomes[0].verdict, summary.outcomes[0].reason) == ("candidate", NOTHING_TO_CHECK)
    assert program_calls(home.llm) == 0  # nothing was solved
    assert [c.prompt_name for c in home.llm.calls] == ["check_insights"] * 3  # each problem asked once


def test_a_proposal_that_changes_nothing_stays_a_candidate_and_the_limit_caps_the_problems(home):
    summary = home.proposer(limit=2).propose(read_offers(proposals(home.path, IDLE)), source="offers.jsonl")
    insight = home.store.get("I0001")
    assert insight.status == Status.CANDIDATE
    # all three recall it: the limit keeps the two whose texts are nearest to its condition
    tasks = home.store.tasks()
    embed = home.index.embedder.embed
    near = embed([t.text for t in tasks]) @ embed([insight.condition])[0]
    nearest = [tasks[i].id for i in sorted(range(len(tasks)), key=lambda i: -float(near[i]))[:2]]
    assert summary.outcomes[0].checked == nearest and len(tasks) == 3
    assert (summary.outcomes[0].wins, summary.outcomes[0].losses) == ([], [])
    assert insight.reason == "turned none of the 2 checked training problem(s) right (nor wrong)"


def test_a_failure_mid_check_leaves_the_decided_proposals_decided(home, monkeypatch):
    def failing(prompt: str, user: str) -> str | BaseException:
        """As ``route``, but a solve with IDLE in its prompts fails (its recall works)."""
        if prompt != "check_insights" and (LESSONS[IDLE][0] in user or f"(applied: {IDLE})" in user):
            return LLMError("the endpoint went away")
        return route(prompt, user)

    monkeypatch.setattr(home.llm, "route", failing)
    offers = read_offers(proposals(home.path, HELP, IDLE))
    proposer = home.proposer()
    with pytest.raises(LLMError):
        proposer.propose(offers, source="offers.jsonl")
    assert [(i.id, i.status.value) for i in home.store.list(status=None)] == [("I0001", "verified"),
                                                                            ("I0002", "candidate")]
    assert home.store.get("I0002").version == 1  # added, never decided
    run = home.store.runs()[-1]
    assert run.status.value == "failed" and "the endpoint went away" in run.counters["error"]
    assert [o["verdict"] for o in run.counters["outcomes"]] == ["verified"]


def test_read_offers_refuses_a_bad_file_naming_the_fix(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_offers(tmp_path / "missing.jsonl")
    with pytest.raises(InputError, match=r"line 3: not a valid insight.*Fix that line"):
        read_offers(proposals(tmp_path / "bad.jsonl", HELP, broken_line=True))
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(InputError, match="holds no insight"):
        read_offers(tmp_path / "empty.jsonl")


def test_a_person_can_write_a_proposal_in_the_short_form(tmp_path):
    path = tmp_path / "short.jsonl"
    line = {"stage": "general formulation", "level1": "objective", "level2": "goal sense",
            "condition": "when the text asks for the least cost", "explanation": "minimize the cost",
            "example": "wrong: sense=maximize right: sense=minimize", "note": "was a text rewrite",
            "definition": "which way the objective goes"}
    path.write_text(json.dumps(line) + "\n\n" + json.dumps({**line, "condition": "when it asks for the most profit",
                                                            "example": None} | {"example": ""}) + "\n")
    first, second = read_offers(path)
    assert (first.line, second.line) == (1, 3)
    assert first.draft.condition == "when the text asks for the least cost" and first.note == "was a text rewrite"
    assert first.draft.label.level2 == "goal sense" and first.definition == "which way the objective goes"
    assert second.draft.example == ""
    path.write_text(json.dumps({**line, "stage": "cooking"}) + "\n")
    with pytest.raises(InputError, match=r"line 1: stage: .*nothing was added"):
        read_offers(path)
    path.write_text(json.dumps({**line, "advice": "x"}) + "\n")
    with pytest.raises(InputError, match=r"line 1: unknown keys \['advice'\]"):
        read_offers(path)


# -- through the CLI ----------------------------------------------------------------------------


@pytest.fixture
def cli_llm(monkeypatch):
    fake = ThreadSafeLLM(route=route, delay=0.0)
    monkeypatch.setattr(cli_library, "OpenAIClient", lambda settings, log: fake)
    monkeypatch.setenv("ALPHAOPT_USE_LIBRARY", "1")
    monkeypatch.setenv("ALPHAOPT_EXPERIMENTAL__RETRIEVAL_MAX_DISTANCE", "2.0")
    return fake


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli.cli, list(args))
    return result.exit_code, result.output


def test_propose_through_the_cli_then_again(tmp_path, cli_llm, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    with LibraryStore(home / "library.db") as store:
        for name, text in TEXTS.items():
            store.add_task("toy_train", name, text, 11.0)
    monkeypatch.setitem(CHECK, IDLE, set())
    offers = proposals(tmp_path / "offers.jsonl", HELP, IDLE)
    code, out = invoke("library", "propose", str(offers), "-k", "1", "--limit", "1", "--home", str(home))
    assert code == 0, out
    assert "I0001 (line 2): " + HELP in out and f"I0002 (line 3): {IDLE}" in out
    rows = [line.split() for line in out.splitlines() if line.startswith("I000") and line.split()[-1] in (
        "verified", "candidate")]
    assert [(r[0], r[-4:]) for r in rows] == [("I0001", ["1", "1", "0", "verified"]),
                                              ("I0002", ["0", "0", "0", "candidate"])]
    assert "verified 1, retired 0, left candidates 1" in out
    with LibraryStore(home / "library.db") as store:
        assert [(i.id, i.status.value) for i in store.list(status=None)] == [("I0001", "verified"),
                                                                            ("I0002", "candidate")]
        assert [r.settings["job"] for r in store.runs()] == ["propose"]
    # the same file again: nothing added; the verified one is not checked again, the candidate is
    code, out = invoke("library", "propose", str(offers), "-k", "1", "--home", str(home))
    assert code == 0, out
    assert "already verified" in out and "I0002 (line 3): already a candidate in this library; checking it" in out
    with LibraryStore(home / "library.db") as store:
        assert len(store.list(status=None)) == 2 and len(store.runs()) == 2


def test_propose_refuses_bad_input_with_one_line_and_adds_nothing(tmp_path, cli_llm):
    home = tmp_path / "home"
    code, out = invoke("library", "propose", str(tmp_path / "missing.jsonl"), "--home", str(home))
    assert code == 1 and "no such file" in out and len(out.strip().splitlines()) == 1
    home.mkdir()
    with LibraryStore(home / "library.db") as store:
        for name, text in TEXTS.items():
            store.add_task("toy_train", name, text, 11.0)
    bad = proposals(tmp_path / "bad.jsonl", HELP, broken_line=True)
    code, out = invoke("library", "propose", str(bad), "--home", str(home))
    assert code == 1 and "line 3: not a valid insight" in out and "nothing was added" in out
    assert len(out.strip().splitlines()) == 1
    unanswered = tmp_path / "unanswered"
    unanswered.mkdir()
    with LibraryStore(unanswered / "library.db") as store:
        store.add_task("toy_train", "t1", TEXTS["t1"])  # a source problem's text only, as an import brings
    code, out = invoke("library", "propose", str(proposals(tmp_path / "good.jsonl", HELP)), "--home", str(unanswered))
    assert code == 1 and "no training problem with a known answer" in out and "alphaopt learn FILE" in out
    for place in (home, unanswered):
        with LibraryStore(place / "library.db") as store:
            assert store.list(status=None) == [] and store.runs() == []
    assert cli_llm.calls == []


def test_the_text_rewrites_that_do_not_ship_are_offered_to_the_library():
    from pathlib import Path

    from alphaopt.config import REWRITES, SHIPPED_REWRITES

    path = Path(__file__).resolve().parent.parent / "library" / "proposals" / "text_rewrites.jsonl"
    offers = read_offers(path)
    named = {re.search(r"'(\w+)'", o.note or "").group(1) for o in offers}  # type: ignore[union-attr]
    assert named == set(REWRITES) - set(SHIPPED_REWRITES)
    assert all(o.draft.example and o.definition for o in offers)
