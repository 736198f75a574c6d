"""A real browser against the running app: pick an example, solve it, see the answer, save a screenshot.

The app runs as ``streamlit run app.py`` in a subprocess; its LLM is a scripted OpenAI-compatible
stub served from this test (the client boundary), the solver is real. Needs Debian's ``chromium``
(``/usr/bin/chromium``) and PyPI ``playwright`` (not ``playwright install``); skipped without them.
Refresh the README screenshot with: UPDATE_SCREENSHOT=1 python -m pytest tests/test_app_browser.py
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.fakes import program
from tests.servers import free_port, wait_for_server

FORMULATION = """## Variables
chairs >= 0, tables >= 0
## Objective
maximize 30*chairs + 50*tables
## Constraints
Carpentry: 2*chairs + 3*tables <= 120
Finishing: chairs + 2*tables <= 70"""
PROGRAM = program("""
model = pyo.ConcreteModel()
model.chairs = pyo.Var(domain=pyo.NonNegativeReals)
model.tables = pyo.Var(domain=pyo.NonNegativeReals)
model.profit = pyo.Objective(expr=30 * model.chairs + 50 * model.tables, sense=pyo.maximize)
model.carpentry = pyo.Constraint(expr=2 * model.chairs + 3 * model.tables <= 120)
model.finishing = pyo.Constraint(expr=model.chairs + 2 * model.tables <= 70)
""")  # examples/furniture.txt: profit 1900 with 30 chairs and 20 tables

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--no-first-run", "--disable-sync"]


class _Stub(BaseHTTPRequestHandler):
    """POST /v1/chat/completions: the formulation first, then the program (it follows a <formulation>)."""

    requests: ClassVar[list[dict]] = []

    def do_POST(self) -> None:  # http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Stub.requests.append(body)
        if self.path.rstrip("/") != "/v1/chat/completions":
            self.send_error(404)
            return
        prompt = body["messages"][-1]["content"]
        text = PROGRAM if "<formulation>" in prompt else FORMULATION
        reply = {
            "id": f"chatcmpl-{len(_Stub.requests)}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "stub"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": len(prompt) // 4, "completion_tokens": len(text) // 4,
                      "total_tokens": (len(prompt) + len(text)) // 4},
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stub_llm() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


@pytest.fixture
def sync_api() -> Any:
    """Playwright's sync API, or a clean skip when the browser or the package is missing."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    return pytest.importorskip("playwright.sync_api",
                               reason="PyPI playwright is not installed (pip install playwright)")


@pytest.fixture
def app_url(sync_api: Any, stub_llm: str, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "ALPHAOPT_HOME": str(tmp_path / "home"), "ALPHAOPT_BASE_URL": stub_llm,
           "ALPHAOPT_MODEL": "stub", "ALPHAOPT_API_KEY": "stub-key", "ALPHAOPT_USE_LIBRARY": "0",
           "ALPHAOPT_EXPERIMENTAL__MAX_RETRIES": "0",
           "ALPHAOPT_EXPERIMENTAL__FORMULATE": "1"}  # the stub answers a formulation, then the program
    with open(tmp_path / "streamlit.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
             "--client.toolbarMode", "viewer"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for_server(
                f"{url}/_stcore/health", proc, timeout_s=90, ok=lambda body: body == b"ok",
                failure=lambda: f"streamlit did not start:\n{(tmp_path / 'streamlit.log').read_text()[-3000:]}")
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_solve_an_example_in_a_real_browser(sync_api: Any, app_url: str, tmp_path: Path) -> None:
    _Stub.requests.clear()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2300})
            page.goto(app_url)
            page.get_by_text("Solve an optimization problem").wait_for(timeout=60_000)
            assert "stub" in page.locator("section[data-testid='stSidebar']").inner_text()
            page.get_by_role("combobox", name="Example").click()
            page.get_by_role("option", name="furniture.txt").click()
            problem = page.get_by_label("Problem", exact=True)
            sync_api.expect(problem).to_have_value(re.compile("chairs and tables"), timeout=30_000)
            page.get_by_role("button", name="Solve", exact=True).click()
            page.get_by_text("Done: optimal", exact=False).first.wait_for(timeout=120_000)
            page.get_by_text("Decision values", exact=True).wait_for(timeout=30_000)
            metric = page.locator("[data-testid='stMetricValue']").first
            sync_api.expect(metric).to_have_text("1900")
            page.get_by_text("Done: optimal", exact=False).first.click()  # open the step log
            page.get_by_text("Pyomo program", exact=True).wait_for(timeout=10_000)
            page.wait_for_timeout(800)  # let the tables and the math finish drawing
            shot = tmp_path / "solve.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    assert [r["model"] for r in _Stub.requests] == ["stub", "stub"]
    if os.environ.get("UPDATE_SCREENSHOT"):
        (ROOT / "docs").mkdir(exist_ok=True)
        shutil.copy(shot, ROOT / "docs" / "screenshot.png")
