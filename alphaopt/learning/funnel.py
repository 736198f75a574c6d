"""What a learning run did, as a funnel from problems to verified insights.

Stages, in problems: seen → right at first try (the first solve's first program) → failed (no
solve right) → explored (exploration ran) → reached (some program reached the answer after a
wrong one: a repair, diagnosis or patch during a solve, another sample, a single-line variant,
an integrality flip or a model's exploration) → drafted (at least one candidate insight;
``unplaced`` counts drafts dropped unchecked because their condition says nothing about where
they apply, even asked once more).
Then, in insights: candidates added → verified → merged; retired counts every insight the run
retired (rejected candidates, merged members, failed merges, leftovers). ``sources`` breaks
reached, drafted and verified down by where the contrast came from. Cost: tokens and seconds
per problem, the model's generation speed (tokens per second of model time, calls replayed
from the cache left out), and the check's solves spared because its verdict was decided early.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from alphaopt.learning.ledger import Usage

#: Problem counts that add up across problems (and across concurrent workers).
_COUNTS = ("right_first", "solved_before", "solved_after", "failed", "explored", "reached", "drafted",
           "unplaced", "added", "verified", "rejected", "merged", "retired", "solves_skipped")


class LearningStopped(KeyboardInterrupt):
    """A learning run stopped by Ctrl-C or a signal, after recording itself as stopped (a rerun of
    the same command goes on); ``summary`` is what it did until then."""

    def __init__(self, reason: str, summary: LearnSummary) -> None:
        super().__init__(reason)
        self.summary = summary


@dataclass
class LearnSummary:
    """What a learning run did (one problem's share while it is learned)."""

    run_id: str
    seen: int = 0
    skipped: int = 0
    right_first: int = 0
    solved_before: int = 0
    solved_after: int = 0
    failed: int = 0
    explored: int = 0
    reached: int = 0
    drafted: int = 0
    unplaced: int = 0  # drafts dropped unchecked: a condition that says nothing about where they apply
    added: int = 0
    verified: int = 0
    rejected: int = 0
    merged: int = 0
    retired: int = 0
    solves_skipped: int = 0  # solves of a check that its verdict did not need (decided early)
    tokens: int = 0
    calls: int = 0
    cached_calls: int = 0
    model_s: float = 0.0
    fresh_output_tokens: int = 0
    seconds: float = 0.0
    stopped: str | None = None
    sources: dict[str, dict[str, int]] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)

    def count(self, source: str, stage: str, n: int = 1) -> None:
        """Count ``n`` at a stage ("reached", "drafted", "verified") for a contrast's source."""
        into = self.sources.setdefault(source, {})
        into[stage] = into.get(stage, 0) + n

    def absorb(self, task: LearnSummary) -> None:
        """Add what one problem's learning counted (kept apart while it ran, so that concurrent
        problems never write the run's counters at once)."""
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + getattr(task, name))
        for source, stages in task.sources.items():
            for stage, n in stages.items():
                self.count(source, stage, n)

    def spend(self, usage: Usage, seconds: float) -> None:
        """Take the run's model usage so far and its wall time."""
        self.tokens, self.calls, self.cached_calls = usage.tokens, usage.calls, usage.cached_calls
        self.model_s, self.fresh_output_tokens = usage.model_s, usage.fresh_output_tokens
        self.seconds = seconds

    @property
    def tokens_per_problem(self) -> float:
        return self.tokens / self.seen if self.seen else 0.0

    @property
    def seconds_per_problem(self) -> float:
        return self.seconds / self.seen if self.seen else 0.0

    @property
    def tokens_per_s(self) -> float:
        """Tokens the model generated per second of model time (replayed calls left out)."""
        return self.fresh_output_tokens / self.model_s if self.model_s else 0.0

    @property
    def verified_per_failed(self) -> float:
        return self.verified / self.failed if self.failed else 0.0

    def as_dict(self) -> dict[str, Any]:
        """The run's counters, as the library's ``LearningRun`` keeps them."""
        data = {k: v for k, v in self.__dict__.items() if k not in ("run_id", "counters")}
        data.update(tokens_per_problem=round(self.tokens_per_problem, 1),
                    seconds_per_problem=round(self.seconds_per_problem, 2),
                    tokens_per_s=round(self.tokens_per_s, 2), verified_per_failed=round(self.verified_per_failed, 3),
                    model_s=round(self.model_s, 2), seconds=round(self.seconds, 2))
        return data


def progress_line(summary: LearnSummary) -> str:
    """The funnel in one short line, for a progress bar."""
    return (f"failed {summary.failed}, reached {summary.reached}, drafted {summary.drafted}, verified "
            f"{summary.verified}; {summary.tokens_per_problem:,.0f} tok/problem, {summary.tokens_per_s:.1f} tok/s")


def funnel_lines(summary: LearnSummary) -> list[str]:
    """The funnel, the sources and the cost, a few lines for the end of a run."""
    lines = [
        f"Funnel: {summary.seen} problems, right at first try {summary.right_first}, solved {summary.solved_before} "
        f"(after learning {summary.solved_after}), failed {summary.failed}, explored {summary.explored}, reached "
        f"the answer {summary.reached}, drafted {summary.drafted}; insights drafted {summary.added}, verified "
        f"{summary.verified}, rejected {summary.rejected}, merged {summary.merged}, retired {summary.retired}.",
    ]
    if summary.unplaced:
        lines.append(f"Drafts dropped unchecked, their condition saying nothing about where they apply: "
                     f"{summary.unplaced}.")
    if summary.failed:
        lines.append(f"Verified insights per failed problem: {summary.verified_per_failed:.2f} "
                     f"({summary.verified} of {summary.failed}).")
    if summary.sources:
        lines.append("By source: " + "; ".join(
            f"{source} " + ", ".join(f"{stage} {n}" for stage, n in stages.items())
            for source, stages in sorted(summary.sources.items())) + ".")
    lines.append(
        f"Cost: {summary.tokens:,} tokens in {summary.calls} calls ({summary.cached_calls} from the cache), "
        f"{summary.tokens_per_problem:,.0f} tokens and {summary.seconds_per_problem:.0f} s per problem, "
        f"{summary.tokens_per_s:.1f} tokens/s generated"
        + (f"; {summary.solves_skipped} check solves spared (decided early)." if summary.solves_skipped else "."))
    return lines
