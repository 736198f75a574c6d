"""A fake OpenAI-compatible chat endpoint on 127.0.0.1: scripted replies, faults, a latency.

The one fake model server of the project. Tests, the fault-injection benchmark
(``benchmarks/faults.py``) and the scale-out benchmark (``benchmarks/scaleout.py``) point
alphaopt at it with ``base_url``: the real client then calls it over HTTP, from this process or
from Dask workers in others, the way it calls a model server. Nothing else is faked: the
solver, the sandbox and the databases are real.

Run with: python -m benchmarks.fake_endpoint --latency 0.5   (serves LP_PROGRAM until Ctrl-C)
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


@dataclass
class Raw:
    """An HTTP answer as it is: a status, a body, a content type, and a delay in seconds before
    it is sent (longer than the client's timeout: a timeout)."""

    status: int = 200
    body: bytes | str = b""
    content_type: str = "application/json"
    delay: float = 0.0


#: ``route(request body)``: the completion's text, or a ``Raw`` answer (an HTTP error, garbage, a delay).
Route = Callable[[dict[str, Any]], "str | Raw"]


def completion_body(text: str | None, prompt_tokens: int = 11, completion_tokens: int = 5) -> dict[str, Any]:
    """An OpenAI chat completion holding ``text`` (``None``: no content at all)."""
    return {
        "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": "fake",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def problem_of(messages: list[Message]) -> str:
    """The problem text a prompt carries between ``<problem>`` tags ("" when none)."""
    user = messages[-1]["content"] if messages else ""
    start, end = user.find("<problem>\n"), user.find("\n</problem>")
    return user[start + len("<problem>\n"):end] if start >= 0 and end > start else ""


@dataclass
class FakeEndpoint:
    """Answers ``POST /v1/chat/completions`` with ``route(body)`` after ``latency_s``.

    ``requests`` keeps every request body, ``most_in_flight`` the most answered at once. A route
    that raises makes that request fail with HTTP 500; a ``Raw`` reply is sent as it is, after
    its delay. Use as a context manager (or ``start`` and ``close``); ``url`` is the
    ``base_url`` to give alphaopt.
    """

    route: Route
    latency_s: float = 0.0
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
                raw = endpoint._answer(self.path, body)
                time.sleep(raw.delay)
                data = raw.body.encode() if isinstance(raw.body, str) else raw.body
                try:
                    self.send_response(raw.status)
                    self.send_header("Content-Type", raw.content_type)
                    self.send_header("Content-Length", str(len(data)))
                    self.send_header("retry-after-ms", "10")  # a client's retry after a 429 or 5xx waits little
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up waiting (a timeout): nobody reads the answer
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False  # type: ignore[attr-defined]
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

    def user_texts(self) -> list[str]:
        """The last user message of each request so far, in arrival order."""
        with self._lock:
            return [r["messages"][-1]["content"] for r in self.requests]

    def _answer(self, path: str, body: dict[str, Any]) -> Raw:
        if not path.rstrip("/").endswith("/chat/completions"):
            error = {"message": f"{path} is not served here", "type": "invalid_request_error"}
            return Raw(status=404, body=json.dumps({"error": error}))
        with self._lock:
            self.requests.append(body)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(self.latency_s)
            reply = self.route(body)
        except Exception as exc:  # noqa: BLE001 - a route's failure is this request's HTTP 500
            return Raw(status=500, body=json.dumps({"error": {"message": f"route failed: {exc!r}",
                                                              "type": "server_error"}}))
        finally:
            with self._lock:
                self.in_flight -= 1
        if isinstance(reply, Raw):
            return reply
        prompt = sum(len(m.get("content", "")) for m in body.get("messages", [])) // 4
        return Raw(body=json.dumps(completion_body(reply, prompt, len(reply) // 4)))


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
    with FakeEndpoint(lambda _body: LP_PROGRAM, latency_s=args.latency) as endpoint:
        print(f"Serving at {endpoint.url} (model 'fake'); Ctrl-C stops it.", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
