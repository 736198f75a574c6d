"""Broadening a condition to a quote of the text, judged by the solver on the training problems
the quote would newly reach.

A condition that quotes the text (``when the text says "..."``) is a test the code runs: the
insight is recalled and chosen wherever its quote matches a problem (N stands for any number),
with no model check. Two kinds of insight get candidate quotes here:

- one whose condition quotes the text and whose example is one relation edit
  (``alphaopt.agent.applied``: the code makes its edit). A quote learned from one problem names
  that problem's details ("the farmer needs to transport N chicken"), so it reaches little else.
  The candidates are shorter quotes cut from it ("needs to transport N"): runs of its words that
  keep a number (N), start and end on a content word and hold one besides N.
- one told to the model whose condition quotes nothing (a lesson in words, recalled for problems
  like its sources, ``retrieval_source_similarity``). The candidates are quotes cut from the
  sentence that states the goal in each of its source problems ("minimize the total number of"):
  runs of its words (numbers as N) that start and end on a content word and hold three. The
  lesson was verified on those problems; the question is where else the words that ask for it
  appear, and whether it helps there.

The candidates are up to ``n`` of them with different sets of newly matched training problems
(held with an answer, not matched by the current quote, neither a source nor a near-copy of one,
and of near-copies of each other only the first: the splits copy each other's problems), the
broadest first. A candidate is judged on every problem it newly matches, or on a seeded sample
of ``max_problems`` of them when it matches more (``Candidate.judged``).

Each judged problem is solved twice, greedy like the replay's arms: with what retrieval chooses for
it now, and with the insight under the candidate quote added. A problem retrieval already chooses
the insight for (the source gate and the model's check can) is not newly reached: it is left out
(``Judged.already``) and not solved. It is **positive**
when only the second is right, **negative** when only the first is. A positive is solved once
more with the placebo lesson in the insight's place (``prompts.PLACEBO``, as the learner's check
does): where that is right too, any lesson in the prompt turned the answer, not this one's advice
(on the embedded model a lesson the program then ignores can move a greedy answer), and the
problem counts as neutral (``Judged.placebo``).

A candidate wins with at least two positives and three for each negative (one problem turned
right is one lucky sample, which the learner's check does not accept either); of several, the one
with the most net positives over all it reaches (estimated from the sample), on a tie the
narrower. The candidate's solves carry the lesson under the pending id (``merge.PENDING_ID``):
its text is not the insight's, so they leave no evidence on the insight and are never reused as
its solves.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from alphaopt.agent import applied, prompts, reading
from alphaopt.agent.retrieval import insight_dict, told
from alphaopt.learning.dedup import near_duplicates
from alphaopt.learning.merge import PENDING_ID
from alphaopt.learning.replay import PLACEBO_KIND, Replayer
from library import Insight, Task

KIND = "evolve_broaden"  # the attempts of a candidate's solves (not reusable: see the module docstring)
MIN_POSITIVES = 2  # one problem turned right is one greedy sample: as in the check, never enough
_STOP = frozenset({"a", "an", "the", "and", "or", "of", "to", "in", "on", "at", "for", "per", "by", "with", "from",
                   "as", "is", "are", "be", "each", "every", "its", "their", "this", "that", "than", "then", "all",
                   "some", "any", "no", "not", "least", "most", "more", "less", "up"})
_N = re.compile(r"\bN\b")
_PUNCTUATION = ".,;:!?()\"'"
_NUMBER = re.compile(r"^\$?\d+(?:,\d{3})*(?:\.\d+)?%?$")
_GOAL_WORDS = (3, 8)  # a quote cut from a goal sentence: this many words, at least three of them content words


@dataclass(frozen=True)
class Candidate:
    """A candidate quote, the training problems it newly matches, and those it is judged on."""

    quote: str
    condition: str
    matched: tuple[str, ...]
    judged: tuple[str, ...]  # those solved to judge it: all of ``matched``, or a seeded sample

    @property
    def sampled(self) -> bool:
        return len(self.judged) < len(self.matched)

    def share(self, the: str = "") -> str:
        """How many it is judged on: "3 of 22" for a sample, else "22" (``the``: "3 of the 22")."""
        return f"{len(self.judged)} of {the}{len(self.matched)}" if self.sampled else f"{the}{len(self.matched)}"


@dataclass
class Judged:
    """A candidate's outcome on the problems it newly matches."""

    candidate: Candidate
    positive: list[str] = field(default_factory=list)
    negative: list[str] = field(default_factory=list)
    neutral: list[str] = field(default_factory=list)
    placebo: list[str] = field(default_factory=list)  # right with it and with the placebo: neutral, not positive
    already: list[str] = field(default_factory=list)  # retrieval chooses the insight there now: not judged

    @property
    def wins(self) -> bool:
        return len(self.positive) >= max(MIN_POSITIVES, 3 * len(self.negative))

    @property
    def net(self) -> float:
        """Positives less negatives over every problem the quote reaches (estimated from a sample)."""
        return (len(self.positive) - len(self.negative)) * len(self.candidate.matched) / len(self.candidate.judged)

    def as_dict(self) -> dict[str, Any]:
        return {"quote": self.candidate.quote, "matched": list(self.candidate.matched),
                "judged": list(self.candidate.judged), "positive": self.positive, "negative": self.negative,
                "neutral": self.neutral, "placebo": self.placebo, "already": self.already}

    def line(self) -> str:
        also = f" ({len(self.placebo)} right with a placebo too)" if self.placebo else ""
        return f'"{self.candidate.quote}" +{len(self.positive)} -{len(self.negative)} of {self.candidate.share()}{also}'


def _content(word: str) -> bool:
    return word.strip(_PUNCTUATION).lower() not in _STOP


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


def goal_spans(problem: str) -> list[str]:
    """Quotes cut from the sentence of ``problem`` that states its goal (``reading.read``): runs of
    3 to 8 of its words, numbers written N, that start and end on a content word and hold three;
    longest first."""
    bare = (w.strip(_PUNCTUATION) for w in reading.read(problem).goal.split())
    words = ["N" if _NUMBER.match(w) else w for w in bare if w]
    found: dict[str, None] = {}
    low, high = _GOAL_WORDS
    for length in range(min(high, len(words)), low - 1, -1):
        for start in range(len(words) - length + 1):
            part = words[start:start + length]
            if _content(part[0]) and _content(part[-1]) and sum(_content(w) and w != "N" for w in part) >= 3:
                found.setdefault(" ".join(part))
    return list(found)


def candidates(insight: Insight, tasks: Iterable[Task], *, n: int, max_problems: int,
               sources: Mapping[str, str] | None = None) -> list[Candidate]:
    """Up to ``n`` quotes for the insight with different sets of newly matched problems, the
    broadest first, each judged on all of them or on a seeded sample of ``max_problems``: shorter
    quotes of a quoted relation edit, or quotes of the goal sentences of a told insight's source
    problems (``sources``: their texts by id). None for any other insight."""
    if n <= 0 or max_problems <= 0:
        return []
    quoted = applied.quote(insight.condition)
    if quoted is not None and applied.relation_edit(insight.example or "") is not None:
        parts, current = spans(quoted), applied.pattern(quoted)
    elif quoted is None and sources and told(insight):
        parts = list(dict.fromkeys(p for text in sources.values() for p in goal_spans(text)))
        current = None
    else:
        return []
    skip = set(insight.provenance.source_tasks) | set(sources or ())
    pool = [t for t in tasks if t.answer is not None and t.id not in skip
            and (current is None or not current.search(t.text))]
    copies = near_duplicates([t.text for t in pool], (sources or {}).values(), among=True)
    pool = [t for i, t in enumerate(pool) if i not in copies]  # a copy would count one problem twice
    options: dict[tuple[str, ...], str] = {}
    for part in parts:
        pattern = applied.pattern(part)
        matched = tuple(t.id for t in pool if pattern.search(t.text))
        if matched and matched not in options:
            options[matched] = part  # longest first: of quotes with the same reach, the most specific
    ranked = sorted(options.items(), key=lambda item: -len(item[0]))[:n]
    return [Candidate(part, _requoted(insight.condition, quoted, part), matched,
                      _sample(matched, max_problems, f"{insight.id} {part}"))
            for matched, part in ranked]


def _requoted(condition: str, quoted: str | None, part: str) -> str:
    return condition.replace(f'"{quoted}"', f'"{part}"', 1) if quoted is not None else applied.quoted_condition(part)


def _sample(matched: tuple[str, ...], size: int, seed: str) -> tuple[str, ...]:
    """All of ``matched``, or ``size`` of them drawn with a seed (the same on every run), in their order."""
    if len(matched) <= size:
        return matched
    chosen = set(random.Random(seed).sample(matched, size))
    return tuple(t for t in matched if t in chosen)


def judge(replayer: Replayer, insight: Insight, candidate: Candidate, tasks: dict[str, Task],
          on_event: Callable[[str], None] | None = None) -> Judged:
    """Solve each problem the candidate is judged on with retrieval's choice and with the insight
    under the candidate added (see the module docstring)."""
    lesson = {**insight_dict(insight), "id": PENDING_ID, "condition": candidate.condition}
    placebo = {**prompts.PLACEBO, "stage": insight.stage.value}
    result = Judged(candidate)
    for task_id in candidate.judged:
        task = tasks[task_id]
        recalled = replayer.chosen(task)
        if any(i["id"] == insight.id for i in recalled):  # retrieval chooses it here already: nothing new
            result.already.append(task_id)
            if on_event is not None:
                on_event(f"    {task_id}: recalled already, not judged")
            continue
        chosen = list(recalled)
        without = replayer.outcome(task, chosen, "evolve_with")
        given = replayer.outcome(task, [*chosen, lesson], KIND)
        group = result.positive if given and not without else result.negative if without and not given else \
            result.neutral
        if group is result.positive and replayer.outcome(task, [*chosen, placebo], PLACEBO_KIND):
            group = result.placebo
        group.append(task_id)
        if on_event is not None:
            also = ", and with a placebo" if group is result.placebo else ""
            on_event(f"    {task_id}: {'right' if without else 'wrong'} without it, {'right' if given else 'wrong'} "
                     f'with it under "{candidate.quote}"{also}')
    return result


def best(judged: list[Judged]) -> Judged | None:
    """The winner: of the candidates that win, the most net positives over all they reach, on a
    tie the narrower quote; None when no candidate wins."""
    winners = [j for j in judged if j.wins]
    return max(winners, key=lambda j: (j.net, -len(j.candidate.matched)), default=None)
