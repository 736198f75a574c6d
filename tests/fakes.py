"""Test doubles at the LLM client boundary; the solver, SQLite and Chroma stay real."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from alphaopt.llm.client import CallContext, LLMResult, Message


@dataclass
class Cut:
    """A reply the server cut before its end (``finish_reason`` "length"), as the embedded
    model's loop guard cuts a reply that has fallen into a loop."""

    text: str


Reply = str | Cut | Callable[[list[Message]], str]


@dataclass
class Call:
    """One request the fake received."""

    prompt_name: str
    messages: list[Message]
    max_tokens: int
    context: CallContext | None
    temperature: float | None = None
    seed: int | None = None

    @property
    def user(self) -> str:
        return self.messages[-1]["content"]


@dataclass
class ScriptedLLM:
    """An ``LLMClient`` that answers from a queue and records the prompts it received."""

    replies: list[Reply] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)

    def enqueue(self, *replies: Reply) -> ScriptedLLM:
        self.replies.extend(replies)
        return self

    def complete(
        self,
        messages: list[Message],
        *,
        prompt_name: str,
        prompt_sha: str,
        max_tokens: int,
        schema: type[BaseModel] | None = None,
        context: CallContext | None = None,
        temperature: float | None = None,
        seed: int | None = None,
    ) -> LLMResult:
        self.calls.append(Call(prompt_name, messages, max_tokens, context, temperature, seed))
        if not self.replies:
            raise AssertionError(f"ScriptedLLM has no reply queued for a {prompt_name!r} call")
        reply = self.replies.pop(0)
        text = reply.text if isinstance(reply, Cut) else reply(messages) if callable(reply) else reply
        try:
            parsed = schema.model_validate_json(text) if schema else None
        except ValueError:
            parsed = None
        return LLMResult(text=text, input_tokens=sum(len(m["content"]) // 4 for m in messages),
                         output_tokens=len(text) // 4, latency_ms=1.0, call_id=f"fake-{len(self.calls)}",
                         parsed=parsed, model="scripted", finish_reason="length" if isinstance(reply, Cut) else "stop")

    @property
    def prompt_names(self) -> list[str]:
        return [c.prompt_name for c in self.calls]


def program(body: str, imports: str = "import pyomo.environ as pyo") -> str:
    """A fenced reply holding a build_model() program with the given (indented) body."""
    lines = "\n".join("    " + line for line in body.strip().splitlines())
    return f"```python\n{imports}\n\ndef build_model():\n{lines}\n    return model\n```"


LP_REPLY = program("""
model = pyo.ConcreteModel()
model.x = pyo.Var(domain=pyo.NonNegativeReals)
model.y = pyo.Var(domain=pyo.NonNegativeReals)
model.obj = pyo.Objective(expr=3 * model.x + 2 * model.y, sense=pyo.maximize)
model.c1 = pyo.Constraint(expr=model.x + model.y <= 4)
model.c2 = pyo.Constraint(expr=model.x + 3 * model.y <= 6)
model.c3 = pyo.Constraint(expr=model.x <= 3)
""")  # optimum 11 at x=3, y=1

MILP_REPLY = program("""
model = pyo.ConcreteModel()
model.x = pyo.Var(domain=pyo.NonNegativeIntegers)
model.y = pyo.Var(domain=pyo.NonNegativeIntegers)
model.obj = pyo.Objective(expr=5 * model.x + 4 * model.y, sense=pyo.maximize)
model.c1 = pyo.Constraint(expr=6 * model.x + 4 * model.y <= 24)
model.c2 = pyo.Constraint(expr=model.x + 2 * model.y <= 6)
""")  # optimum 20 (x=4, y=0 or x=2,y=2? 5*2+4*2=18) -> x=4,y=0 gives 20

INFEASIBLE_REPLY = program("""
model = pyo.ConcreteModel()
model.x = pyo.Var(domain=pyo.NonNegativeReals)
model.obj = pyo.Objective(expr=model.x, sense=pyo.minimize)
model.c1 = pyo.Constraint(expr=model.x >= 10)
model.c2 = pyo.Constraint(expr=model.x <= 5)
""")

UNBOUNDED_REPLY = program("""
model = pyo.ConcreteModel()
model.x = pyo.Var(domain=pyo.NonNegativeReals)
model.obj = pyo.Objective(expr=model.x, sense=pyo.maximize)
model.c1 = pyo.Constraint(expr=model.x >= 1)
""")

FORMULATION = ("## Variables\nx >= 0, y >= 0\n## Objective\nmaximize 3x + 2y\n"
               "## Constraints\nx + y <= 4\nx + 3y <= 6\nx <= 3")


@dataclass
class RoutedLLM(ScriptedLLM):
    """A ScriptedLLM with one reply queue per prompt name (for flows with many steps)."""

    routes: dict[str, list[Reply]] = field(default_factory=dict)

    def on(self, prompt_name: str, *replies: Reply) -> RoutedLLM:
        self.routes.setdefault(prompt_name, []).extend(replies)
        return self

    def complete(self, messages: list[Message], *, prompt_name: str, **kwargs: Any) -> LLMResult:
        queue = self.routes.get(prompt_name)
        if not queue:
            raise AssertionError(f"RoutedLLM has no reply queued for a {prompt_name!r} call")
        self.replies.insert(0, queue.pop(0))
        return super().complete(messages, prompt_name=prompt_name, **kwargs)


WRONG_LP_REPLY = LP_REPLY.replace("model.x <= 3", "model.x <= 2")  # optimum 26/3 instead of 11


@dataclass
class ThreadSafeLLM:
    """An ``LLMClient`` for concurrent callers: each reply is chosen by ``route(prompt_name, user
    message)`` (a string, or an exception to raise), every call waits ``delay`` seconds, and the
    most calls in flight at once is kept (to show that callers did overlap)."""

    route: Callable[[str, str], str | BaseException]
    delay: float = 0.05
    calls: list[Call] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def complete(self, messages: list[Message], *, prompt_name: str, prompt_sha: str, max_tokens: int,
                 schema: type[BaseModel] | None = None, context: CallContext | None = None,
                 temperature: float | None = None, seed: int | None = None) -> LLMResult:
        with self._lock:
            self.calls.append(Call(prompt_name, messages, max_tokens, context, temperature, seed))
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(self.delay)
            reply = self.route(prompt_name, messages[-1]["content"])
        finally:
            with self._lock:
                self.in_flight -= 1
        if isinstance(reply, BaseException):
            raise reply
        parsed = None
        if schema:
            try:
                parsed = schema.model_validate_json(reply)
            except ValueError:
                parsed = None
        return LLMResult(text=reply, input_tokens=10, output_tokens=len(reply) // 4, latency_ms=1.0,
                         call_id="fake", parsed=parsed, model="scripted")
