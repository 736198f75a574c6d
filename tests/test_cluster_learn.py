"""``alphaopt learn --cluster`` on a real Dask LocalCluster (2 worker processes) against one shared
library: a real PostgreSQL store and a real Chroma server. The workers' real client calls a fake
OpenAI-compatible endpoint on 127.0.0.1 whose replies depend only on the prompt (so every order
of work gets the same replies); HiGHS and the sandbox are real.

Skipped, with the reason, when ALPHAOPT_TEST_PG_URL is unset
(``export ALPHAOPT_TEST_PG_URL="$(bash .ci/start-postgres.sh)"``).
"""

from __future__ import annotations

import importlib
import json
import string
import threading
from collections import Counter
from typing import Any

import httpx2
import pytest
from click.testing import CliRunner
from distributed import Client, LocalCluster

from alphaopt.agent import prompts
from alphaopt.agent.retrieval import open_library
from alphaopt.config import load_settings
from alphaopt.errors import ClusterError
from alphaopt.interfaces import cli
from alphaopt.learning.cluster import learn_on_cluster
from alphaopt.learning.cluster_evolve import evolve_on_cluster
from alphaopt.learning.evolve import EvolveConfig, Evolver
from alphaopt.learning.funnel import LearnSummary
from alphaopt.learning.learn import DONE, LearnConfig, Learner
from alphaopt.llm.client import OpenAIClient
from alphaopt.llm.runlog import RunLog
from benchmarks.fake_endpoint import FakeEndpoint, problem_of
from library import ClaimStatus, InsightDraft, LibraryStore, Status
from tests.fakes import LP_REPLY, WRONG_LP_REPLY
from tests.services import PG_SKIP, PG_URL, chroma_server, pg_schemas

needs_pg = pytest.mark.skipif(not PG_URL, reason=PG_SKIP)

BASE = "Maximize 3x + 2y subject to x + y <= 4, x + 3y <= 6 and x at most 3, with x, y non-negative"
# alpha and bravo teach the same lesson (merged into one); charlie another; delta is right at once;
# echo is never reached
NAMES = ["alpha", "bravo", "charlie", "delta", "echo"]
ITEMS = [("toy", name, f"{BASE}, for the {name} plant.", 11.0) for name in NAMES]
LESSON_A = {"stage": "general_formulation", "level1": "constraints", "level2": "upper limits",
            "condition": "the text gives an upper limit on a single decision variable",
            "explanation": "copy the limit exactly as stated; the common mistake is a wrong bound",
            "example": "wrong: x <= 2 right: x <= 3"}
LESSON_B = {"stage": "general_formulation", "level1": "objective", "level2": "objective sense and terms",
            "condition": "the problem asks for the largest total profit of two products",
            "explanation": "add the profit of every product to the objective; leaving one out changes the plan",
            "example": "wrong: 3 * model.x right: 3 * model.x + 2 * model.y"}
MERGED = {**LESSON_A, "condition": "the text caps one decision variable at a stated value",
          "explanation": "write that cap as a bound with exactly the stated value"}
CONFIG = LearnConfig(k=1, explore_tries=1, line_variants=False)  # the placebo arm stays on


def _pieces(template: str) -> list[str]:
    return [lit.strip() for lit, *_ in string.Formatter().parse(template) if lit and len(lit.strip()) >= 12]


def prompt_name(user: str) -> str | None:
    """Which prompt a user message was rendered from: the one all of whose fixed text it holds."""
    best: tuple[int, str] | None = None
    for name, template in prompts.PROMPTS.items():
        pieces = [p for p in _pieces(template) if p not in prompts.PROBLEM]
        if pieces and all(p in user for p in pieces) and (best is None or sum(map(len, pieces)) > best[0]):
            best = (sum(map(len, pieces)), name)
    return best[1] if best else None


def route(body: dict[str, Any]) -> str:
    """The model's reply, from the prompt alone."""
    user, words = body["messages"][-1]["content"], problem_of(body["messages"]).split()
    plant = words[-2] if len(words) > 2 else ""
    name = prompt_name(user)
    taught = any(lesson["condition"] in user for lesson in (LESSON_A, LESSON_B, MERGED))
    if name == "write_program":
        return LP_REPLY if plant == "delta" or (taught and plant != "echo") else WRONG_LP_REPLY
    if name == "check_insights":
        return "none"  # the library's own insights never apply: each problem learns the same whatever the order
    if name == "explore":
        return WRONG_LP_REPLY if plant == "echo" else LP_REPLY
    if name == "extract":
        return json.dumps({"insights": [LESSON_B if plant == "charlie" else LESSON_A]})
    if name == "merge":
        return json.dumps(MERGED)
    raise AssertionError(f"no reply scripted for a {name!r} call about the {plant} plant")


def content(store: LibraryStore) -> list[tuple]:
    """The library as a reader sees it: each insight's status, label, text and sources (no ids)."""
    return sorted((i.status.value, i.stage.value, i.level1, i.level2, i.condition, i.explanation, i.example,
                   tuple(sorted(i.provenance.source_tasks))) for i in store.list(status=None))


@pytest.fixture(scope="module")
def endpoint():
    with FakeEndpoint(route) as fake:
        yield fake


@pytest.fixture(scope="module")
def chroma(tmp_path_factory):
    with chroma_server(tmp_path_factory.mktemp("chroma-server")) as url:
        yield url


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as local:
        yield local.scheduler_address


def _settings(tmp_path, endpoint, library_url=None, chroma_url=None, **more):
    return load_settings(home=tmp_path / "home", base_url=endpoint.url, model="fake", use_library=True,
                         library_url=library_url, **more,
                         chroma_url=chroma_url, experimental={"text_rewrites": False, "max_retries": 0})


@needs_pg
def test_two_concurrent_learners_claim_disjoint_problems_and_learn_what_one_learner_learns(
        tmp_path, endpoint, chroma, cluster, runner):
    # one learner, in this process, on SQLite and an embedded index
    alone = _settings(tmp_path / "alone", endpoint)
    store, index = open_library(alone)
    llm = OpenAIClient(alone, RunLog(alone.runs_db), http_client=httpx2.Client())
    single = Learner(alone, store, index, llm, runner, CONFIG).learn(ITEMS)
    assert (single.seen, single.verified, single.merged) == (5, 3, 1)
    expected = content(store)
    assert [(c[0], c[4]) for c in expected if c[0] == "verified"] == [
        ("verified", MERGED["condition"]), ("verified", LESSON_B["condition"])]
    index.close()
    store.close()

    # two learners at once on one PostgreSQL store and one Chroma server: the 2-worker cluster takes
    # the problems in order, a 1-worker cluster of its own in reverse order, so they meet midway
    with pg_schemas() as make, LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                            dashboard_address=None) as other:
        shared = _settings(tmp_path / "shared", endpoint, make(), chroma)
        for address in (cluster, other.scheduler_address):  # both warm (imports done) before either starts
            with Client(address) as client:
                client.run(importlib.import_module, "alphaopt.learning.cluster")
        summaries: dict[str, LearnSummary] = {}

        def learner(address: str, items: list) -> None:
            summaries[address] = learn_on_cluster(shared, items, address, CONFIG, command="test", lease_s=10)

        endpoint.latency_s = 0.1  # each problem takes a few seconds: the two runs overlap
        threads = [threading.Thread(target=learner, args=(cluster, ITEMS)),
                   threading.Thread(target=learner, args=(other.scheduler_address, ITEMS[::-1]))]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=900)
        finally:
            endpoint.latency_s = 0.0
        assert len(summaries) == 2, "a learner failed (see the captured output)"
        with LibraryStore(shared.library_url) as library:
            assert content(library) == expected
            done = Counter(a.task_id for a in library.attempts(kind=DONE))
            assert done == {f"toy/{name}": 1 for name in NAMES}  # each problem learned once in all
            claims = library.claims()
            assert sorted(c.task_id for c in claims) == sorted(f"learn:toy/{name}:0" for name in NAMES)
            assert all(c.status == ClaimStatus.DONE and c.attempts == 1 for c in claims)  # handed out once each
            runs = {address: library.get_run(s.run_id) for address, s in summaries.items()}
            assert all(r.status.value == "finished" and r.settings["cluster"] == a for a, r in runs.items())
    assert all(s.seen >= 1 for s in summaries.values())  # both learned, each what the other did not
    assert sum(s.seen for s in summaries.values()) == 5 and sum(s.skipped for s in summaries.values()) == 5


@needs_pg
def test_a_problem_whose_worker_died_is_freed_when_its_lease_runs_out(tmp_path, endpoint, chroma, cluster,
                                                                      monkeypatch):
    """A claim left by a dead worker (never renewed) runs out and the problem is learned; the CLI
    runs on the cluster by its address."""
    with pg_schemas() as make:
        library_url = make()
        with LibraryStore(library_url) as library:
            task = library.add_task(*ITEMS[1])
            assert library.claim_tasks("ghost:1:1", [f"learn:{task.id}:0"], lease_s=4) == [f"learn:{task.id}:0"]
        data = tmp_path / "toy.jsonl"
        data.write_text("".join(json.dumps({"id": n, "description": t, "answer": a}) + "\n"
                                for _, n, t, a in ITEMS[:2]))
        for name, value in {"BASE_URL": endpoint.url, "MODEL": "fake", "USE_LIBRARY": "1",
                            "LIBRARY_URL": library_url, "CHROMA_URL": chroma,
                            "EXPERIMENTAL__TEXT_REWRITES": "0"}.items():
            monkeypatch.setenv(f"ALPHAOPT_{name}", value)
        result = CliRunner().invoke(cli.cli, ["learn", str(data), "--cluster", cluster, "-k", "1", "--twins",
                                              "--explore-tries", "1", "--no-line-variants", "--no-progress"],
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert "2 problems (0 done earlier)" in result.output and "merged 1" in result.output
        with LibraryStore(library_url) as library:
            claim = next(c for c in library.claims() if c.task_id == f"learn:{task.id}:0")
            assert claim.status == ClaimStatus.DONE and claim.worker_id != "ghost:1:1" and claim.attempts == 2
            assert {a.task_id for a in library.attempts(kind=DONE)} == {"toy/alpha", "toy/bravo"}


def test_learning_on_a_cluster_needs_one_shared_library(tmp_path):
    data = tmp_path / "toy.jsonl"
    data.write_text(json.dumps({"id": "alpha", "description": ITEMS[0][2], "answer": 11}) + "\n")
    result = CliRunner().invoke(cli.cli, ["learn", str(data), "--cluster", "local:2", "--home", str(tmp_path / "h")])
    assert result.exit_code == 1
    assert "ALPHAOPT_LIBRARY_URL and ALPHAOPT_CHROMA_URL" in result.output
    settings = load_settings(home=tmp_path / "h", library_url="postgresql+psycopg://x@127.0.0.1:9/x")
    with pytest.raises(ClusterError, match="ALPHAOPT_CHROMA_URL"):
        learn_on_cluster(settings, [ITEMS[0]], "local:2")


def _evolvable(store: LibraryStore, index) -> None:
    """Five training problems with answers and two verified lessons (learned on alpha and charlie)."""
    for item in ITEMS:
        store.add_task(*item)
    for lesson, source in ((LESSON_A, "toy/alpha"), (LESSON_B, "toy/charlie")):
        insight = store.add_insight(InsightDraft(**lesson), status=Status.VERIFIED,
                                    provenance={"source_tasks": [source], "model": "fake"})
        index.upsert(insight)


@needs_pg
def test_evolve_replays_on_the_cluster_label_every_pair_as_a_local_evolve_does(tmp_path, endpoint, chroma, cluster,
                                                                              runner):
    reports = {}
    with pg_schemas() as make:
        for where in ("local", "cluster"):
            settings = (_settings(tmp_path / where, endpoint) if where == "local"
                        else _settings(tmp_path / where, endpoint, make(), chroma))
            store, index = open_library(settings)
            _evolvable(store, index)
            learner = Learner(settings, store, index, OpenAIClient(settings, RunLog(settings.runs_db),
                                                                     http_client=httpx2.Client()), runner, CONFIG)
            asked = len(endpoint.requests)
            if where == "local":
                summary = Evolver(learner, EvolveConfig()).evolve(dry_run=True)
            else:
                summary = evolve_on_cluster(learner, cluster, EvolveConfig(), dry_run=True)
                # every solve was a worker's: the run's ledger counts all the endpoint answered
                assert learner.ledger.usage.calls == len(endpoint.requests) - asked > 0
                assert len(store.attempts(kind="evolve_with")) == len(ITEMS)
            reports[where] = summary.rounds[0]
            index.close()
            store.close()
    local, spread = reports["local"], reports["cluster"]
    assert spread.pairs == local.pairs and spread.before == local.before
    assert spread.solved == local.solved > 0
    # each lesson is chosen, with no check, for its own source and turns it right; either lesson, given to
    # a problem retrieval left without one, turns it right (echo stays wrong)
    assert local.pairs == {"I0001": {"positive": ["toy/alpha"], "unretrieved": ["toy/bravo"], "neutral": ["toy/echo"]},
                           "I0002": {"positive": ["toy/charlie"], "unretrieved": ["toy/bravo"],
                                     "neutral": ["toy/echo"]}}
