"""``alphaopt batch --cluster`` on a real Dask LocalCluster of 2 worker processes (1 thread each).

The workers' real client calls a fake OpenAI-compatible endpoint on 127.0.0.1 (the only fake);
HiGHS, the sandbox, PostgreSQL (runs, calls and the library) and a Chroma server are real. The
PostgreSQL tests are skipped, with the reason, when ALPHAOPT_TEST_PG_URL is unset
(``export ALPHAOPT_TEST_PG_URL="$(bash .ci/start-postgres.sh)"``).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from distributed import Client, LocalCluster

from alphaopt import api
from alphaopt.agent.state import BatchItem, Solution
from alphaopt.cluster import connect, each_result, fit_embedded, local_workers, worker_cache, worker_object
from alphaopt.config import load_settings
from alphaopt.errors import ClusterError
from alphaopt.interfaces import cli
from alphaopt.interfaces.batch import run_batch
from alphaopt.jsonl import read_jsonl
from alphaopt.llm.runlog import RunLog
from benchmarks.fake_endpoint import LP_PROGRAM, FakeEndpoint
from tests.services import chroma_server, pg_schemas

PROBLEM = "Maximize 3x + 2y subject to x + y <= 4, x + 3y <= 6, x <= 3."
NAMES = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]


@pytest.fixture
def databases():
    """Two empty PostgreSQL schemas: the library's and the runs' (skipped without ALPHAOPT_TEST_PG_URL)."""
    with pg_schemas() as make:
        yield make(), make()


@pytest.fixture
def chroma(tmp_path):
    with chroma_server(tmp_path / "chroma-server") as url:
        yield url


def _input(tmp_path: Path) -> Path:
    path = tmp_path / "problems.jsonl"
    path.write_text("".join(json.dumps({"id": name, "problem": f"{PROBLEM} Batch item {name}."}) + "\n"
                            for name in NAMES))
    return path


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_cli_batch_on_a_local_cluster_writes_each_problem_once_and_resumes(tmp_path, monkeypatch, databases,
                                                                                chroma):
    library_url, runs_url = databases
    with FakeEndpoint(lambda _body: LP_PROGRAM, latency_s=0.2) as endpoint:
        for name, value in {"BASE_URL": endpoint.url, "MODEL": "fake", "RUNS_URL": runs_url, "USE_LIBRARY": "1",
                            "LIBRARY_URL": library_url, "CHROMA_URL": chroma}.items():
            monkeypatch.setenv(f"ALPHAOPT_{name}", value)
        problems, out = _input(tmp_path), tmp_path / "out.jsonl"
        result = CliRunner().invoke(cli.cli, ["batch", str(problems), "-o", str(out), "--cluster", "local:2",
                                              "--no-progress"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert "6 problems: 0 already" in result.output and "6 answered (6 optimal), 0 failed" in result.output
        lines = _lines(out)
        assert sorted(line["id"] for line in lines) == sorted(NAMES)  # every problem, exactly once
        assert all(line["status"] == "optimal" and line["objective"] == pytest.approx(11) for line in lines)
        assert sorted(endpoint.problems()) == sorted(f"{PROBLEM} Batch item {n}." for n in NAMES)  # one call each
        again = CliRunner().invoke(cli.cli, ["batch", str(problems), "-o", str(out), "--cluster", "local:2",
                                             "--no-progress"], catch_exceptions=False)
        assert again.exit_code == 0 and "6 already in" in again.output and len(endpoint.requests) == 6
    assert _lines(out) == lines
    # the runs the workers saved are in PostgreSQL: listed from any home
    monkeypatch.setenv("ALPHAOPT_HOME", str(tmp_path / "another-home"))
    listed = CliRunner().invoke(cli.cli, ["runs", "list"], catch_exceptions=False)
    assert sorted(line.split()[0] for line in listed.output.splitlines()) == sorted(line["run_id"] for line in lines)
    assert len(RunLog(runs_url).calls(limit=50)) == 6


def _solve_in_thread(settings, items, address, outcomes):
    def target():
        outcomes.extend(api.solve_batch(items, settings=settings, cluster=address))
    thread = threading.Thread(target=target)
    thread.start()
    return thread


def test_a_worker_killed_mid_problem_has_its_problem_solved_elsewhere(tmp_path):
    """SIGKILL of a worker process while it waits on the endpoint: Dask runs the problem again on
    another worker, and the batch ends with every problem answered exactly once."""
    with FakeEndpoint(lambda _body: LP_PROGRAM, latency_s=1.5) as endpoint, \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as observer:
        settings = load_settings(home=tmp_path / "home", base_url=endpoint.url, model="fake")
        items = [BatchItem(id=name, problem=f"{PROBLEM} Batch item {name}.") for name in NAMES]
        outcomes: list = []
        batch = _solve_in_thread(settings, items, cluster.scheduler_address, outcomes)
        pids = observer.run(os.getpid)
        deadline = time.monotonic() + 120
        while endpoint.in_flight < 2:  # both workers wait on the endpoint, each in the middle of a problem
            assert time.monotonic() < deadline, "the two workers never had a problem in flight at once"
            time.sleep(0.02)
        victim = next(address for address, keys in observer.processing().items() if keys)
        os.kill(pids[victim], signal.SIGKILL)
        batch.join(timeout=300)
        assert not batch.is_alive()
    assert [type(o) for o in outcomes] == [Solution] * len(NAMES), outcomes
    assert all(o.status == "optimal" for o in outcomes) and len({o.run_id for o in outcomes}) == len(NAMES)
    asked = endpoint.problems()
    assert set(asked) == {item.problem for item in items}
    assert len(asked) > len(NAMES)  # the killed worker's problem was asked again, elsewhere


def _worker_token(_item: int, cache: str) -> tuple[int, str]:
    return os.getpid(), str(worker_object(cache))


def test_each_worker_builds_its_object_once_and_reuses_it(tmp_path):
    settings = load_settings(home=tmp_path / "home", base_url="http://127.0.0.1:9/v1", model="fake")
    with connect("local:2", settings) as (client, _), worker_cache(client, "token", uuid.uuid4) as cache:
        tokens = [value for _, value in each_result(client, _worker_token, list(range(12)), cache)]
    by_process: dict[int, set[str]] = {}
    for pid, token in tokens:
        by_process.setdefault(pid, set()).add(token)
    assert len(tokens) == 12 and all(len(built) == 1 for built in by_process.values())
    assert len({t for built in by_process.values() for t in built}) == len(by_process) <= 2


def test_a_failing_item_is_a_failure_line_not_a_failed_batch(tmp_path):
    def route(body):
        if "Batch item bravo." in body["messages"][-1]["content"]:
            raise RuntimeError("this one breaks the server")
        return LP_PROGRAM
    with FakeEndpoint(route) as endpoint:
        settings = load_settings(home=tmp_path / "home", base_url=endpoint.url, model="fake",
                                 experimental={"max_retries": 0})
        problems, out = _input(tmp_path), tmp_path / "out.jsonl"
        summary = run_batch(read_jsonl(problems.read_bytes(), "problems"), "problems", out, settings,
                            cluster="local:2")
    assert (summary.answered, summary.failed) == (5, 1)
    failed = [line for line in _lines(out) if line.get("failure")]
    assert [line["id"] for line in failed] == ["bravo"] and "LLMError" in failed[0]["error"]


def test_bad_addresses_and_an_embedded_model_too_big_for_the_machine_are_refused(tmp_path):
    assert local_workers("local:3") == 3 and local_workers("tcp://10.0.0.1:8786") is None
    with pytest.raises(ClusterError, match="local:N"):
        local_workers("local:many")
    embedded = load_settings(home=tmp_path / "home")
    assert embedded.embedded
    assert fit_embedded(embedded, 2, 1, available=8).experimental.n_threads == 4  # each copy: 8 cores / 2
    with pytest.raises(ClusterError, match="local:2 or fewer"):
        fit_embedded(embedded.with_experimental(n_threads=4), 3, 1, available=8)
    with pytest.raises(ClusterError, match="one thread"):
        fit_embedded(embedded, 2, 2, available=8)
    with pytest.raises(ClusterError, match="9 cores"):
        fit_embedded(embedded, 9, 1, available=8)
    remote = load_settings(home=tmp_path / "home", base_url="http://127.0.0.1:9/v1", model="m")
    assert fit_embedded(remote, 9, 4, available=2) is remote  # an endpoint's threads are not ours to count
    with pytest.raises(ClusterError, match="dask scheduler"), connect("tcp://127.0.0.1:9", remote):
        pass


def test_the_cli_refuses_an_embedded_model_that_does_not_fit(tmp_path):
    problems = _input(tmp_path)
    result = CliRunner().invoke(cli.cli, ["batch", str(problems), "-o", str(tmp_path / "o.jsonl"),
                                          "--cluster", f"local:{os.cpu_count() + 1}", "--no-progress"])
    assert result.exit_code == 1 and "with the embedded model needs" in result.output
