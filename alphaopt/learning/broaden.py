"""Broadening a quoted condition: shorter quotes, each judged by the solver on the training
problems it would newly reach.

An insight whose condition quotes the text (``when the text says "..."``) and whose example is
one relation edit (``alphaopt.agent.applied``) is recalled, and its edit made, wherever its quote
matches a problem. A quote learned from one problem names that problem's details ("the farmer
needs to transport N chicken"), so it reaches little else. Each evolution round tries shorter
quotes cut from it ("needs to transport N"): every run of its words that keeps a number (N),
starts and ends on a content word and holds one besides N. The candidates are up to ``n`` of
them with different sets of newly matched training problems (held with an answer, not matched
by the current quote, not a source), the broadest first; one that would newly reach more than
``max_problems`` problems is not tried, so that every problem a candidate reaches is judged.

Each newly matched problem is solved twice, greedy like the replay's arms: with what retrieval
chooses for it now (less the insight), and with the insight under the candidate quote added. It is **positive**
when only the second is right, **negative** when only the first is. A candidate wins with at
least one positive and no negative; of several, the one with the most positives, on a tie the
narrower. The candidate's solves carry the lesson under the pending id (``merge.PENDING_ID``):
its text is not the insight's, so they leave no evidence on the insight and are never reused
as its solves.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from alphaopt.agent import applied
from alphaopt.agent.retrieval import insight_dict
from alphaopt.learning.merge import PENDING_ID
from alphaopt.learning.replay import Replayer
from library import Insight, Task

KIND = "evolve_broaden"  # the attempts of a candidate's solves (not reusable: see the module docstring)
_STOP = frozenset({"a", "an", "the", "and", "or", "of", "to", "in", "on", "at", "for", "per", "by", "with", "from",
                   "as", "is", "are", "be", "each", "every", "its", "their", "this", "that", "than", "then", "all",
                   "some", "any", "no", "not", "least", "most", "more", "less", "up"})
_N = re.compile(r"\bN\b")


@dataclass(frozen=True)
class Candidate:
    """A shorter quote and the training problems it newly matches."""

    quote: str
    condition: str
    matched: tuple[str, ...]


@dataclass
class Judged:
    """A candidate's outcome on the problems it newly matches."""

    candidate: Candidate
    positive: list[str] = field(default_factory=list)
    negative: list[str] = field(default_factory=list)
    neutral: list[str] = field(default_factory=list)

    @property
    def wins(self) -> bool:
        return bool(self.positive) and not self.negative

    def as_dict(self) -> dict[str, Any]:
        return {"quote": self.candidate.quote, "matched": list(self.candidate.matched), "positive": self.positive,
                "negative": self.negative, "neutral": self.neutral}


def _content(word: str) -> bool:
    return word.strip(".,;:!?()\"'").lower() not in _STOP


def spans(quoted: str) -> list[str]:
    """The shorter quotes cut from ``quoted``: runs of its words that keep an N, start and end on
    a content word (or the N), and hold a content word besides the N; longest first."""
    words = quoted.split()
    found: dict[str, None] = {}
    for length in range(len(words) - 1, 1, -1):
        for start in range(len(words) - length + 1):
            part = words[start:start + length]
            numbered = [_N.search(w) is not None for w in part]
            if not any(numbered):
                continue
            ends = all(numbered[i] or _content(part[i]) for i in (0, -1))
            others = any(not numbered[i] and _content(w) for i, w in enumerate(part))
            if ends and others:
                found.setdefault(" ".join(part))
    return list(found)


def candidates(insight: Insight, tasks: Iterable[Task], *, n: int, max_problems: int) -> list[Candidate]:
    """Up to ``n`` shorter quotes for the insight with different sets of newly matched problems
    (each at least one, at most ``max_problems``), the broadest first; none for an insight the
    code cannot apply (no quote, or an example that is no relation edit)."""
    quoted = applied.quote(insight.condition)
    if quoted is None or applied.relation_edit(insight.example or "") is None or n <= 0:
        return []
    current = applied.pattern(quoted)
    sources = set(insight.provenance.source_tasks)
    pool = [t for t in tasks if t.answer is not None and t.id not in sources and not current.search(t.text)]
    options: dict[tuple[str, ...], str] = {}
    for part in spans(quoted):
        pattern = applied.pattern(part)
        matched = tuple(t.id for t in pool if pattern.search(t.text))
        if 0 < len(matched) <= max_problems and matched not in options:
            options[matched] = part  # longest first: of quotes with the same reach, the most specific
    ranked = sorted(options.items(), key=lambda item: -len(item[0]))[:n]
    return [Candidate(part, insight.condition.replace(f'"{quoted}"', f'"{part}"', 1), matched)
            for matched, part in ranked]


def judge(replayer: Replayer, insight: Insight, candidate: Candidate, tasks: dict[str, Task]) -> Judged:
    """Solve each problem the candidate newly matches with retrieval's choice and with the insight
    under the candidate added (see the module docstring)."""
    lesson = {**insight_dict(insight), "id": PENDING_ID, "condition": candidate.condition}
    result = Judged(candidate)
    for task_id in candidate.matched:
        task = tasks[task_id]
        chosen = [i for i in replayer.chosen(task) if i["id"] != insight.id]
        without = replayer.outcome(task, chosen, "evolve_with")
        given = replayer.outcome(task, [*chosen, lesson], KIND)
        group = result.positive if given and not without else result.negative if without and not given else \
            result.neutral
        group.append(task_id)
    return result


def best(judged: list[Judged]) -> Judged | None:
    """The winner: no negative and the most positives, on a tie the narrower quote; None when no
    candidate wins."""
    winners = [j for j in judged if j.wins]
    return max(winners, key=lambda j: (len(j.positive), -len(j.candidate.matched)), default=None)
