"""A fake OpenAI-compatible chat endpoint on 127.0.0.1: scripted replies, a fixed latency.

The scale-out benchmark (``benchmarks/scaleout.py``) and the cluster tests point alphaopt at it
with ``base_url``: Dask workers in other processes then call it through the real client, the
way they would call a model server. Nothing else is faked: the solver, the sandbox and the
databases are real.

Run with: python -m benchmarks.fake_endpoint --latency 0.5   (serves LP_REPLY-style answers until Ctrl-C)
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Message = dict[str, str]
Route = Callable[[list[Message]], str]


def problem_of(messages: list[Message]) -> str:
    """The problem text a prompt carries between ``<problem>`` tags ("" when none)."""
    user = messages[-1]["content"] if messages else ""
    start, end = user.find("<problem>\n"), user.find("\n</problem>")
    return user[start + len("<problem>\n"):end] if start >= 0 and end > start else ""


@dataclass
class FakeEndpoint:
    """Answers ``POST /v1/chat/completions`` with ``route(messages)`` after ``latency_s``.

    ``requests`` keeps every request body, ``most_in_flight`` the most answered at once. A route
    that raises makes that request fail with HTTP 500. Use as a context manager (or ``start``
    and ``close``); ``url`` is the ``base_url`` to give alphaopt.
    """

    route: Route
    latency_s: float = 0.0
    model: str = "fake"
    requests: list[dict[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    _server: ThreadingHTTPServer | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def url(self) -> str:
        """The base URL (``http://127.0.0.1:<port>/v1``)."""
        assert self._server is not None, "start the endpoint first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> FakeEndpoint:
        """Listen on a free port of 127.0.0.1, answering in background threads."""
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real server

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                status, answer = endpoint._answer(self.path, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="fake-endpoint", daemon=True).start()
        return self

    def close(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def problems(self) -> list[str]:
        """The problem text of each request so far, in arrival order."""
        with self._lock:
            return [problem_of(r.get("messages", [])) for r in self.requests]

    def _answer(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if not path.rstrip("/").endswith("/chat/completions"):
            return 404, {"error": {"message": f"{path} is not served here", "type": "invalid_request_error"}}
        with self._lock:
            self.requests.append(body)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(self.latency_s)
            messages = body.get("messages", [])
            try:
                text = self.route(messages)
            except Exception as exc:  # noqa: BLE001 - a route's failure is this request's HTTP 500
                return 500, {"error": {"message": f"route failed: {exc!r}", "type": "server_error"}}
        finally:
            with self._lock:
                self.in_flight -= 1
        prompt_tokens = sum(len(m.get("content", "")) for m in messages) // 4
        return 200, {
            "id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", self.model),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(text) // 4,
                      "total_tokens": prompt_tokens + len(text) // 4},
        }


LP_PROGRAM = """```python
import pyomo.environ as pyo

def build_model():
    model = pyo.ConcreteModel()
    model.x = pyo.Var(domain=pyo.NonNegativeReals)
    model.y = pyo.Var(domain=pyo.NonNegativeReals)
    model.obj = pyo.Objective(expr=3 * model.x + 2 * model.y, sense=pyo.maximize)
    model.c1 = pyo.Constraint(expr=model.x + model.y <= 4)
    model.c2 = pyo.Constraint(expr=model.x + 3 * model.y <= 6)
    model.c3 = pyo.Constraint(expr=model.x <= 3)
    return model
```"""  # optimum 11 at x=3, y=1


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=0.5, help="Seconds before each reply.")
    args = parser.parse_args()
    with FakeEndpoint(lambda _messages: LP_PROGRAM, latency_s=args.latency) as endpoint:
        print(f"Serving at {endpoint.url} (model 'fake'); Ctrl-C stops it.", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
