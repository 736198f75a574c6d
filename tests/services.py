"""Real services for the scale-out tests: fresh PostgreSQL schemas and a Chroma server.

PostgreSQL comes from ALPHAOPT_TEST_PG_URL (start one with
``export ALPHAOPT_TEST_PG_URL="$(bash .ci/start-postgres.sh)"``); without it, a test that asks
for a schema is skipped with that reason.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.servers import free_port, wait_for_server

PG_URL = os.environ.get("ALPHAOPT_TEST_PG_URL")
PG_SKIP = "set ALPHAOPT_TEST_PG_URL (bash .ci/start-postgres.sh) to test PostgreSQL"


@contextmanager
def pg_schemas() -> Iterator[Callable[[], str]]:
    """A factory of URLs, each to an empty schema of its own (all dropped at the end); skips the
    test when ALPHAOPT_TEST_PG_URL is unset."""
    if not PG_URL:
        pytest.skip(PG_SKIP)
    admin = sa.create_engine(PG_URL)
    schemas: list[str] = []

    def make() -> str:
        schema = f"t_{uuid.uuid4().hex[:12]}"
        with admin.begin() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
        schemas.append(schema)
        url = sa.make_url(str(PG_URL)).update_query_dict({"options": f"-csearch_path={schema}"})
        return url.render_as_string(hide_password=False)

    try:
        yield make
    finally:
        with admin.begin() as conn:
            for schema in schemas:
                conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@contextmanager
def chroma_server(path: Path) -> Iterator[str]:
    """A real Chroma server (the ``chroma`` command chromadb installs) on a free local port; its URL."""
    command = Path(sys.executable).parent / "chroma"
    if not command.exists():
        pytest.skip("the `chroma` command is not installed next to this Python")
    port = free_port()
    server = subprocess.Popen([str(command), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_server(f"{url}/api/v2/heartbeat", server, timeout_s=120,
                        failure=lambda: f"the Chroma server did not start (exit code {server.poll()})")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
