"""Runs and LLM calls in PostgreSQL (ALPHAOPT_RUNS_URL): the same schema as runs.db, written by
the real client over real HTTP to a fake endpoint on 127.0.0.1, listed by the CLI.

Start a server with: export ALPHAOPT_TEST_PG_URL="$(bash .ci/start-postgres.sh)"
"""

from __future__ import annotations

import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import httpx2
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from alphaopt.config import load_settings
from alphaopt.errors import LLMError
from alphaopt.interfaces import cli
from alphaopt.llm import runlog_postgres
from alphaopt.llm.client import OpenAIClient
from alphaopt.llm.runlog import RunLog, open_run_log
from benchmarks.fake_endpoint import FakeEndpoint
from tests.services import pg_schemas

MESSAGES = [{"role": "user", "content": "<problem>\nP\n</problem>\nhi"}]


@pytest.fixture
def pg_url():
    """An empty PostgreSQL schema (skipped without ALPHAOPT_TEST_PG_URL)."""
    with pg_schemas() as make:
        yield make()


def _columns(url: str, table: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(
                "SELECT column_name FROM information_schema.columns WHERE table_name = :t "
                "AND table_schema = current_schema() ORDER BY ordinal_position"), {"t": table}).scalars())
    finally:
        engine.dispose()


def test_postgres_schema_matches_the_pinned_runs_db(pg_url, tmp_path):
    RunLog(pg_url)
    sqlite_log = RunLog(tmp_path / "runs.db")
    db = sqlite3.connect(sqlite_log.path)
    for table in ("llm_calls", "runs", "_migrations"):
        assert _columns(pg_url, table) == [r[1] for r in db.execute(f"PRAGMA table_info({table})")]
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        assert runlog_postgres.migrate(conn) == []  # idempotent
        assert list(conn.execute(sa.text("SELECT name FROM _migrations ORDER BY name")).scalars()) == [
            "m001_llm_calls", "m002_runs"]
    engine.dispose()


def test_many_processes_opening_a_fresh_database_migrate_it_once(pg_url):
    """Workers of a cluster open the run log at once: each migration is applied once."""
    def open_fresh(_: int) -> list[str]:
        engine = sa.create_engine(pg_url)  # an engine of its own, as another process has
        try:
            with engine.begin() as conn:
                return runlog_postgres.migrate(conn)
        finally:
            engine.dispose()

    with ThreadPoolExecutor(6) as pool:
        applied = list(pool.map(open_fresh, range(6)))
    assert sorted(name for names in applied for name in names) == ["m001_llm_calls", "m002_runs"]


def test_calls_are_logged_cached_and_listed_in_postgres(pg_url, tmp_path):
    replies = iter(["", "first", "second"])
    with FakeEndpoint(lambda _body: next(replies)) as endpoint:
        settings = load_settings(home=tmp_path / "home", base_url=endpoint.url, model="fake", runs_url=pg_url,
                                 experimental={"max_retries": 0})
        log = open_run_log(settings)
        assert log.url == pg_url and log.path is None and "postgresql" in log.where
        client = OpenAIClient(settings, log, http_client=httpx2.Client())

        def ask():
            return client.complete(MESSAGES, prompt_name="p", prompt_sha="s", max_tokens=5)

        with pytest.raises(LLMError):
            ask()  # an empty reply: a fault, logged and never replayed
        first, again = ask(), ask()
        assert (first.text, again.text) == ("first", "first")
        assert not first.cached and again.cached and len(endpoint.requests) == 2
    rows = log.calls()
    assert [r["cached"] for r in rows] == [1, 0, 0] and json.loads(rows[1]["response"])["text"] == "first"
    assert rows[2]["error"] and "empty" in rows[2]["error"]
    assert log.call(rows[0]["id"][:20])["id"] == rows[0]["id"]
    assert not (tmp_path / "home" / "runs.db").exists()  # nothing went to the home


def test_a_saved_run_is_listed_by_the_cli_of_another_home(pg_url, tmp_path, monkeypatch):
    writer = RunLog(pg_url)
    solution = {"run_id": "01RUNSAVEDONWORKER", "problem": "Maximize x", "status": "optimal", "objective": 11.0}
    writer.save_run("01RUNSAVEDONWORKER", "Maximize x with x <= 11", "optimal", 11.0, json.dumps(solution))
    writer.save_run("01RUNSAVEDONWORKER", "Maximize x with x <= 11", "optimal", 11.0, json.dumps(solution))  # replaced
    monkeypatch.setenv("ALPHAOPT_RUNS_URL", pg_url)
    listed = CliRunner().invoke(cli.cli, ["runs", "list", "--home", str(tmp_path / "elsewhere")])
    assert listed.exit_code == 0, listed.output
    assert listed.output.count("01RUNSAVEDONWORKER") == 1 and "optimal" in listed.output
    assert writer.run("01RUNSAVED")["objective"] == pytest.approx(11.0)


def test_an_unreachable_runs_url_names_the_setting(tmp_path):
    from alphaopt.errors import ConfigError

    with pytest.raises(ConfigError, match="ALPHAOPT_RUNS_URL"):
        RunLog("postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=2")


def test_runs_and_the_library_share_one_database(pg_url):
    """ALPHAOPT_RUNS_URL may name the library's own database: the two keep apart, one migration list."""
    from library import LibraryStore

    with LibraryStore(pg_url) as store:
        log = RunLog(pg_url)
        log.save_run("01SHARED", "Maximize x", "optimal", 1.0, "{}")
        store.add_task("toy", "t1", "Maximize x", 1.0)
        assert log.run("01SHARED")["status"] == "optimal" and store.get_task("toy/t1").answer == 1.0
    with LibraryStore(pg_url):  # reopening migrates nothing, whichever opens first
        assert RunLog(pg_url).runs()[0]["id"] == "01SHARED"
