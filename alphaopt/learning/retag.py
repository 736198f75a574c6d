"""Re-tagging: an insight goes to the taxonomy label under which retrieval searches for the
problems it helps, among the labels that describe its lesson.

Retrieval searches the ``n`` labels whose definitions are nearest to a problem (besides the
nearest conditions overall). For the problems an insight helps (its positive and unretrieved
pairs), count how often each label of its stage is among them. When its own label is among
them for fewer than half of those problems:

- another label of its stage that is, for at least half of them and more often than its own,
  and that is among the ``n`` labels of its stage nearest to the lesson itself (condition and
  explanation), becomes its label (a new version). Both are needed: a label near the problems'
  wording alone (a diet problem reads like "ratios and percentages") would file an integrality
  lesson under a topic it does not teach;
- when none is, the model names a new label with a definition (``evolve_label``); it is tried
  on the scratch copy first and created only if it meets the same two tests there.

An insight that retrieval recalls by its source problems (the source gate is on and the library
holds some of them) is not re-tagged: its label plays no part in how retrieval finds it. The
stage never changes: it decides which prompt an insight goes into. After re-tagging, a label
that carried an insight when the run started and carries none now is retired.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from alphaopt.agent import prompts
from alphaopt.learning.learn import Learner
from alphaopt.learning.scratch import Scratch
from alphaopt.llm.client import CallContext
from library import Insight, LabelKey, LibraryError, Status, Task

LabelPath = tuple[str, str, str]  # (stage, level1, level2), as retrieval's labels_for gives them


class _NewLabel(BaseModel):
    level1: str = Field(min_length=1, max_length=60)
    level2: str = Field(min_length=1, max_length=60)
    definition: str = Field(min_length=10, max_length=400)


def _path(insight: Insight) -> LabelPath:
    return (insight.stage.value, insight.level1, insight.level2)


def hits(labels_for: Any, tasks: list[Task], stage: str, n: int) -> Counter[LabelPath]:
    """For each label of ``stage``, how many of ``tasks`` retrieval searches it for."""
    found: Counter[LabelPath] = Counter()
    for task in tasks:
        found.update(label for label in labels_for(task, n) if label[0] == stage)
    return found


def _lesson(insight: Insight) -> str:
    return f"{insight.condition.strip()}: {insight.explanation.strip()}"


def lesson_labels(labels_for: Any, insight: Insight, n: int) -> list[LabelPath]:
    """The ``n`` labels of the insight's stage whose definitions are nearest to its lesson."""
    stage = insight.stage.value
    return [label for label in labels_for(_lesson(insight), 10_000) if label[0] == stage][:n]


def retag(learner: Learner, scratch: Scratch, insight: Insight, helped: list[Task], *, n: int, run_id: str,
          actor: str, reason: str) -> dict[str, Any] | None:
    """Move the insight to a better-fitting label, or a new one (see the module docstring).

    Returns what changed (``from``, ``to``, ``created``, the hit counts), or None.
    """
    if not helped:
        return None
    stage, current = insight.stage.value, _path(insight)
    need = (len(helped) + 1) // 2
    counts = hits(lambda t, k: learner.retriever.labels_for(t.text, k), helped, stage, n)
    if counts[current] >= need:
        return None
    fitting = lesson_labels(learner.retriever.labels_for, insight, n)
    moves = [(found, -fitting.index(label), label) for label, found in counts.items()
             if label in fitting and label != current and found >= need and found > counts[current]]
    created: dict[str, Any] | None = None
    if moves:
        found, _, target = max(moves)
    else:
        named = _new_label(learner, scratch, insight, helped, n=n, need=need, beat=counts[current], run_id=run_id)
        if named is None:
            return None
        target, created = named
        found = created["hits"]
    store = learner.store
    with store.transaction(reason=reason, actor=actor):
        if created is not None:
            store.ensure_label(*target, display=created["display"], definition=created["definition"])
        moved = store.relabel(insight.id, target, reason=reason)
    learner.index.upsert([moved])
    scratch.change(insight.id, stage=target[0], level1=target[1], level2=target[2])
    return {"from": "/".join(current), "to": "/".join(target), "created": created is not None,
            "hits_before": counts[current], "hits_after": found, "problems": len(helped)}


def _new_label(learner: Learner, scratch: Scratch, insight: Insight, helped: list[Task], *, n: int, need: int,
               beat: int, run_id: str) -> tuple[LabelPath, dict[str, Any]] | None:
    """A new label named by the model, kept only if, on the scratch copy, retrieval would search
    it for the problems the insight helps and it is among the labels nearest to the lesson."""
    stage = insight.stage.value
    listing = "\n".join(f"{lab.stage.value} / {lab.level1} / {lab.level2}: {lab.definition}"
                        for lab in learner.store.labels(stage))
    messages, sha = prompts.render("evolve_label", problem=helped[0].text, condition=insight.condition,
                                   explanation=insight.explanation, labels=listing)
    reply = learner.ledger.complete(messages, prompt_name="evolve_label", prompt_sha=sha, max_tokens=150,
                                    schema=_NewLabel, context=CallContext(run_id=run_id, node="evolve_label"))
    named = reply.parsed if isinstance(reply.parsed, _NewLabel) else _lenient(reply.text)
    if named is None:
        return None
    try:
        key = LabelKey.of(stage, named.level1, named.level2)
    except LibraryError:
        return None
    path: LabelPath = (key.stage.value, key.level1, key.level2)
    if key in {lab.key for lab in learner.store.labels(include_retired=True)}:
        return None  # an existing label: the counts above already considered it
    display = " ".join(named.level2.split())
    definition = " ".join(named.definition.split())
    scratch.add_label(key, display, definition)
    found = hits(scratch.labels_for, helped, stage, n)[path]
    fits = path in lesson_labels(lambda text, k: scratch.retriever.labels_for(text, k), insight, n)
    if found < need or found <= beat or not fits:
        scratch.store.retire_label(key)
        return None
    return path, {"display": display, "definition": definition, "hits": found}


def _lenient(text: str) -> _NewLabel | None:
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        return _NewLabel.model_validate_json(text[start : end + 1])
    except ValidationError:
        return None


def retire_emptied(learner: Learner, before: set[LabelPath], *, actor: str, reason: str) -> list[str]:
    """Retire each label in ``before`` that no candidate or verified insight carries any more."""
    store, retired = learner.store, []
    active = {lab.key for lab in store.labels()}
    for path in sorted(before):
        key = LabelKey.of(*path)
        if key in active and not store.list(label=key, status=[Status.CANDIDATE, Status.VERIFIED]):
            with store.transaction(reason=reason, actor=actor):
                store.retire_label(key)
            retired.append(key.path)
    return retired
