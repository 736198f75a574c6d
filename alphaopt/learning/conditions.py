"""Refining an insight's condition: several candidates, the best chosen by retrieval.

For an insight whose pairs include negatives (recalled and hurt) or unretrieved ones (not
recalled, and the problem turns right when it is given), the model writes ``n`` candidate
conditions (``evolve_condition``; the first greedy, the others sampled), shown a problem the
lesson should apply to and, when there is one, a problem it misled. Each variant, the current
condition included, is scored by retrieval on a scratch copy of the library over all its
labelled problems: a positive or unretrieved problem counts when retrieval chooses the insight,
a negative one when it leaves it out. When some unretrieved problems are held out by the source
gate (the insight is recalled only for problems like those it was learned or verified on), each
variant is tried with them added to its source problems too: forcing the insight turned them
right, so it was verified on them. The best variant wins only when it scores higher than the
current condition (ties keep the current one); a candidate that repeats a number from any of the
problems is not tried.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from alphaopt.agent import prompts
from alphaopt.learning.learn import Learner, specific
from alphaopt.learning.scratch import Scratch
from alphaopt.llm.client import CallContext
from library import Insight, Task


@dataclass(frozen=True)
class Variant:
    """A condition (and the source problems to add) tried for an insight."""

    condition: str
    add_sources: tuple[str, ...] = ()
    origin: str = "current"  # "current" or "candidate N"


@dataclass
class Score:
    """How retrieval on the scratch copy treats the insight's labelled problems under a variant."""

    variant: Variant
    kept: int = 0  # positives still chosen
    excluded: int = 0  # negatives left out
    reached: int = 0  # unretrieved ones now chosen
    chosen: dict[str, bool] = field(default_factory=dict)  # task id → chosen

    @property
    def total(self) -> int:
        return self.kept + self.excluded + self.reached

    def as_dict(self) -> dict[str, Any]:
        return {"condition": self.variant.condition, "origin": self.variant.origin,
                "add_sources": list(self.variant.add_sources), "kept": self.kept, "excluded": self.excluded,
                "reached": self.reached}


@dataclass
class Groups:
    """An insight's labelled problems."""

    positive: list[Task]
    negative: list[Task]
    unretrieved: list[Task]

    @property
    def all(self) -> list[Task]:
        return [*self.positive, *self.negative, *self.unretrieved]


def write_candidates(learner: Learner, insight: Insight, groups: Groups, n: int, temperature: float,
                     context: CallContext, *, sources: list[Task]) -> list[str]:
    """Up to ``n`` distinct candidate conditions in general words (none that repeats a number of
    the problems involved, nor the current condition)."""
    apply = next(iter(groups.unretrieved or groups.positive or sources), None)
    if apply is None:
        return []
    avoid = prompts.AVOID.format(problem=groups.negative[0].text) if groups.negative else ""
    messages, sha = prompts.render("evolve_condition", problem=apply.text, condition=insight.condition,
                                   explanation=insight.explanation, avoid=avoid,
                                   avoid_clause=prompts.AVOID_CLAUSE if avoid else "")
    texts = [t.text for t in [*groups.all, *sources]]
    found: list[str] = []
    for sample in range(n):
        llm: Any = learner.ledger if sample == 0 else learner.ledger.sampling(sample, temperature)
        reply = llm.complete(messages, prompt_name="evolve_condition", prompt_sha=sha, max_tokens=80,
                             context=context)
        condition = " ".join(reply.text.strip().strip('"').split())
        if (condition and condition != insight.condition and condition not in found
                and not any(specific(condition, t) for t in texts)):
            found.append(condition)
    return found


def variants(insight: Insight, candidates: list[str], gated: list[Task]) -> list[Variant]:
    """The current condition and each candidate; each also with ``gated`` added to the source
    problems when some unretrieved problems are held out by the source gate."""
    plain = [Variant(insight.condition), *(Variant(c, origin=f"candidate {n}") for n, c in enumerate(candidates, 1))]
    if not gated:
        return plain
    extra = tuple(t.id for t in gated)
    return [*plain, *(Variant(v.condition, extra, v.origin) for v in plain)]


def score(scratch: Scratch, insight: Insight, tried: list[Variant], groups: Groups, tasks: dict[str, Task],
          learner: Learner, run_id: str) -> list[Score]:
    """Retrieval on the scratch copy with the insight under each variant, over its labelled
    problems. Problem by problem, so that the applicability checks of one problem follow each
    other (a local model reuses the prompt they share: the system prompt and the problem)."""
    scores = [Score(v) for v in tried]
    for label, group in (("kept", groups.positive), ("excluded", groups.negative), ("reached", groups.unretrieved)):
        for task in group:
            for result in scores:
                _apply(scratch, insight, result.variant, tasks)
                chosen = scratch.chooses(insight.id, task, learner.ledger, run_id)
                result.chosen[task.id] = chosen
                setattr(result, label, getattr(result, label) + (not chosen if label == "excluded" else chosen))
    return scores


def _apply(scratch: Scratch, insight: Insight, variant: Variant, tasks: dict[str, Task]) -> None:
    """Put the scratch copy's insight under ``variant``."""
    sources = [*insight.provenance.source_tasks,
               *(t for t in variant.add_sources if t not in insight.provenance.source_tasks)]
    scratch.change(insight.id, condition=variant.condition, source_tasks=sources,
                   sources=[tasks[t] for t in variant.add_sources])


def best(scores: list[Score]) -> Score:
    """The highest total; on a tie the earlier variant (the current condition comes first, a
    variant without added source problems before one with them)."""
    return max(scores, key=lambda s: (s.total, -scores.index(s)))


def gated_out(learner: Learner, insight: Insight, unretrieved: list[Task], threshold: float) -> list[Task]:
    """The unretrieved problems the source gate keeps the insight from (when it has source
    problems held here and the gate is on)."""
    if threshold <= 0 or not unretrieved:
        return []
    held = learner.retriever.source_similarities(unretrieved[0].text)
    if insight.id not in held:
        return []
    return [t for t in unretrieved if learner.retriever.source_similarities(t.text).get(insight.id, 0.0) < threshold]
