"""The learner's view of the LLM client: a token budget, a stop signal and the run's usage.

Every model call of a learning run goes through one ``Ledger``: it refuses calls once the token
budget is spent or the run is stopping, samples with a seed when asked (``sampling``), and adds
up what the calls cost (tokens, calls, calls replayed from the cache, and the seconds the model
took) for the run's funnel.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from alphaopt.errors import AlphaoptError
from alphaopt.llm.client import LLMClient, LLMResult, Message


class BudgetExceeded(AlphaoptError):
    """The token budget of a learning run is spent."""


class RunStopping(AlphaoptError):
    """Raised at a worker's next model call once a concurrent run is stopping (its problem is
    left unfinished, and a rerun learns from it)."""


@dataclass
class Usage:
    """What the model calls of a run cost."""

    calls: int = 0
    cached_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    model_s: float = 0.0  # seconds the model took on the calls it answered (not replayed)
    fresh_output_tokens: int = 0  # tokens the model generated in those seconds

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def add(self, result: LLMResult) -> None:
        self.calls += 1
        self.input_tokens += result.input_tokens
        self.output_tokens += result.output_tokens
        if result.cached:
            self.cached_calls += 1
        else:
            self.model_s += result.latency_ms / 1000
            self.fresh_output_tokens += result.output_tokens


@dataclass
class Ledger:
    """Wraps the LLM client: counts tokens, enforces the budget, samples with a seed when asked."""

    base: LLMClient
    max_tokens: int | None = None
    usage: Usage = field(default_factory=Usage)
    stopping: threading.Event = field(default_factory=threading.Event, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def spent(self) -> int:
        """Tokens spent so far (prompt and completion)."""
        return self.usage.tokens

    def complete(self, messages: list[Message], **kwargs: Any) -> LLMResult:
        if self.stopping.is_set():
            raise RunStopping("the run is stopping")
        if self.max_tokens is not None and self.spent >= self.max_tokens:
            raise BudgetExceeded(f"token budget of {self.max_tokens:,} spent; "
                                 "rerun with a larger --max-tokens to go on")
        result = self.base.complete(messages, **kwargs)
        with self._lock:  # workers of a concurrent run share the count
            self.usage.add(result)
        return result

    def sampling(self, sample: int, temperature: float) -> SampledLedger:
        """A view that samples at ``temperature`` with seed ``sample`` and shares the count."""
        return SampledLedger(self, temperature, sample)

    def solver(self, sample: int, temperature: float) -> Ledger | SampledLedger:
        """The client for solve number ``sample`` of a problem: the first is greedy (the
        settings' temperature, as a user's solve), later ones are sampled with their own seed."""
        return self if sample == 0 else self.sampling(sample, temperature)


@dataclass
class SampledLedger:
    """Samples at a temperature with a seed (unless a call names its own) through a ledger."""

    parent: Ledger
    temperature: float
    seed: int

    def complete(self, messages: list[Message], **kwargs: Any) -> LLMResult:
        kwargs.setdefault("temperature", self.temperature)
        kwargs.setdefault("seed", self.seed)
        return self.parent.complete(messages, **kwargs)
