"""Replaying retrieval on the training problems with known answers, and labelling each
(insight, problem) pair by what the insight did there (the evolution phase's diagnosis).

For each training problem the library holds with an answer:

1. retrieval runs as a user gets it (labels, vector recall, the source gate and the
   applicability check): the insights it chooses, ``R``;
2. the problem is solved with ``R`` in the prompts: right or wrong "with the library";
3. for each insight ``i`` in ``R``, it is solved with ``R`` less ``i``: ``i`` is **positive**
   when the problem is right with it and wrong without it, **negative** when wrong with it and
   right without it, **neutral** otherwise;
4. when the problem is wrong with the library, a few insights that were not chosen (those it
   was learned from first, then those recall found but the check left out, then the nearest by
   condition) are each given with ``R``: one that turns it right is **unretrieved**;
5. a pair that would be positive or unretrieved is solved once more with the placebo lesson in
   the insight's place (``prompts.PLACEBO``, as the learner's check and broadening do): where
   that is right too, any lesson in the prompt turned the answer, not this one's advice (on the
   embedded model a lesson the program then ignores can move a greedy answer), and the pair is
   **neutral** (counted in ``Replay.placebo``). A negative stays negative: the insight was
   recalled and the answer turned wrong, whatever turned it.

Every solve is recorded as an attempt, with evidence for each insight in the prompt, as the
learner records its own. An outcome is solved only once per prompt content: a solve recorded
earlier (by ``alphaopt learn``, ``learn --revisit-solved``, a recheck or an earlier evolution)
with the same model and the same insights in the prompt (id and text: condition, explanation,
example) is reused instead (``Outcomes``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from alphaopt.agent import prompts
from alphaopt.agent.retrieval import insight_dict, told
from alphaopt.learning.learn import Learner
from alphaopt.llm.client import LLMClient
from library import Evidence, LibraryStore, Status, Task

POSITIVE, NEGATIVE, UNRETRIEVED, NEUTRAL = "positive", "negative", "unretrieved", "neutral"
PLACEBO_KIND = "evolve_placebo"  # a solve with the placebo lesson in an insight's place (never reused: no evidence)
#: Attempt kinds that are solves of the task with just the insights their evidence names in the
#: prompt (a placebo arm's lesson, or a merge's lesson before it is stored, is no library insight
#: and leaves no evidence: those solves are never reused).
REUSABLE = frozenset({"solve", "verify_with", "recheck_with", "recheck_without", "evolve_with", "evolve_without",
                      "evolve_given"})

Content = frozenset[tuple[str, str, str, str, bool]]  # (id, condition, explanation, example, told) of each


def content(insights: Iterable[dict[str, Any]]) -> Content:
    """What of the insights reaches the solve, as a key (an untold insight's edit, not its text)."""
    return frozenset((i["id"], i["condition"], i["explanation"], i.get("example") or "",
                      i.get("told", True) is not False) for i in insights)


@dataclass(frozen=True)
class Pair:
    """One (insight, problem) pair and what the insight did there."""

    insight_id: str
    task_id: str
    label: str
    retrieved: bool


@dataclass
class Metrics:
    """Retrieval against the pair labels, and training accuracy with the library.

    Precision: of the labelled pairs retrieval chose, the share where the insight helps
    (positive or unretrieved); recall: of the pairs where it helps, the share retrieval chose.
    Neutral pairs count in neither (the insight changed nothing there). ``None``: nothing to
    divide by.
    """

    problems: int = 0
    right: int = 0
    positive: int = 0
    negative: int = 0
    unretrieved: int = 0
    neutral: int = 0
    precision: float | None = None
    recall: float | None = None

    @property
    def accuracy(self) -> float | None:
        return self.right / self.problems if self.problems else None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "accuracy": self.accuracy}

    def line(self) -> str:
        """One line for a terminal or a log."""
        def share(x: float | None) -> str:
            return "-" if x is None else f"{x:.2f}"

        return (f"accuracy {self.right}/{self.problems}, retrieval precision {share(self.precision)}, recall "
                f"{share(self.recall)} (pairs: {self.positive} positive, {self.negative} negative, "
                f"{self.unretrieved} unretrieved, {self.neutral} neutral)")


def retrieval_scores(pairs: Iterable[Pair], chose: Callable[[Pair], bool]) -> tuple[float | None, float | None]:
    """Precision and recall of a retrieval (``chose``) against the labels of ``pairs``."""
    labelled = [p for p in pairs if p.label != NEUTRAL]
    chosen = [p for p in labelled if chose(p)]
    helps = [p for p in labelled if p.label in (POSITIVE, UNRETRIEVED)]
    hits = sum(p.label in (POSITIVE, UNRETRIEVED) for p in chosen)
    return (hits / len(chosen) if chosen else None), (hits / len(helps) if helps else None)


@dataclass
class ProblemReplay:
    """One training problem: what retrieval chose and whether the library's answer was right."""

    task: Task
    chosen: list[dict[str, Any]]
    right: bool


@dataclass
class Replay:
    """The replay of one round: each problem, each labelled pair, and what it cost."""

    problems: list[ProblemReplay] = field(default_factory=list)
    pairs: list[Pair] = field(default_factory=list)
    solved: int = 0
    reused: int = 0
    placebo: list[Pair] = field(default_factory=list)  # would-be positive or unretrieved, right with the placebo too

    def metrics(self) -> Metrics:
        counts = {label: sum(p.label == label for p in self.pairs) for label in (POSITIVE, NEGATIVE, UNRETRIEVED,
                                                                                 NEUTRAL)}
        precision, recall = retrieval_scores(self.pairs, lambda p: p.retrieved)
        return Metrics(problems=len(self.problems), right=sum(p.right for p in self.problems), precision=precision,
                       recall=recall, **counts)

    def groups(self) -> dict[str, dict[str, list[str]]]:
        """Insight id → label → task ids, for the labelled pairs."""
        found: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        for p in self.pairs:
            found[p.insight_id][p.label].append(p.task_id)
        return {i: dict(g) for i, g in found.items()}

    def placebo_groups(self) -> dict[str, list[str]]:
        """Insight id → the problems where it would have helped but the placebo lesson did too."""
        found: dict[str, list[str]] = defaultdict(list)
        for p in self.placebo:
            found[p.insight_id].append(p.task_id)
        return dict(found)


class Outcomes:
    """Right or wrong, per training problem and prompt content, from the solves recorded so far.

    A learner's solve records an attempt (with the objective) right after the evidence of each
    insight in its prompt (same task and run), so the evidence before an attempt names what its
    prompt held. Only solves by ``model`` count; with ``reuse`` off, only those of this run.
    """

    def __init__(self, store: LibraryStore, model: str, correct: Callable[[float | None, float], bool], *,
                 reuse: bool = True, delivery: str = "prompt") -> None:
        self.store, self.model, self.correct, self.reuse = store, model, correct, reuse
        self.delivery = delivery  # how lessons reached the model (insight_delivery): solves under another are not
        self._known: dict[str, dict[Content, bool]] | None = None

    def get(self, task: Task, insights: Iterable[dict[str, Any]]) -> bool | None:
        """The outcome of a solve of ``task`` with exactly these insights, if one was recorded."""
        return self._memory().get(task.id, {}).get(content(insights))

    def put(self, task: Task, insights: Iterable[dict[str, Any]], right: bool) -> None:
        """Remember a solve made now."""
        self._memory().setdefault(task.id, {})[content(insights)] = right

    def _memory(self) -> dict[str, dict[Content, bool]]:
        if self._known is None:
            self._known = self._recorded() if self.reuse else {}
        return self._known

    def _recorded(self) -> dict[str, dict[Content, bool]]:
        models = {r.id: r.settings.get("model") for r in self.store.runs()
                  if r.settings.get("insight_delivery", "prompt") == self.delivery}
        evidence: dict[str, list[Evidence]] = defaultdict(list)
        texts: dict[tuple[str, int], tuple[str, str, str, str, bool]] = {}
        for insight in self.store.list(status=None):
            rows = [e for e in self.store.evidence_for(insight.id) if e.task_id and e.used and e.success is not None]
            if not rows:
                continue
            for v in self.store.versions(insight.id):
                texts[(v.id, v.version)] = (v.id, v.condition, v.explanation, v.example or "", told(v))
            for e in rows:
                evidence[e.task_id].append(e)  # type: ignore[index]
        known: dict[str, dict[Content, bool]] = {}
        for task in self.store.tasks():
            if task.answer is None:
                continue
            attempts = self.store.attempts(task_id=task.id)
            held: dict[int, list[Evidence]] = defaultdict(list)
            for e in evidence.get(task.id, []):
                after = next((a for a in attempts if a.run_id == e.run_id and a.created_at >= e.created_at), None)
                if after is not None:
                    held[after.id].append(e)
            for a in attempts:
                if a.kind in REUSABLE and a.run_id is not None and models.get(a.run_id) == self.model:
                    key = frozenset(texts[(e.insight_id, e.version)] for e in held[a.id] if (e.insight_id, e.version)
                                    in texts)
                    known.setdefault(task.id, {})[key] = self.correct(a.objective, float(task.answer))
        return known


@dataclass
class _Fixed:
    """A library that answers every problem with the same insights (one arm of a comparison)."""

    insights: list[dict[str, Any]]

    def retrieve(self, problem: str, *, llm: LLMClient, run_id: str,
                 exclude: Collection[str] = ()) -> list[dict[str, Any]]:
        return [i for i in self.insights if i["id"] not in exclude]


class Replayer:
    """Replays retrieval and the with/without solves for one evolution run."""

    def __init__(self, learner: Learner, run_id: str, outcomes: Outcomes, *, unretrieved_tries: int = 2) -> None:
        self.learner, self.run_id, self.outcomes = learner, run_id, outcomes
        self.store = learner.store
        self.unretrieved_tries = unretrieved_tries
        self.solved = self.reused = 0

    def chosen(self, task: Task) -> list[dict[str, Any]]:
        """What retrieval chooses for the problem now (the real recall path, check included)."""
        return self.learner.retriever.retrieve(task.text, llm=self.learner.ledger, run_id=self.run_id)

    def outcome(self, task: Task, insights: list[dict[str, Any]], kind: str) -> bool:
        """Right or wrong with exactly ``insights`` in the prompt: recorded, or solved now."""
        known = self.outcomes.get(task, insights)
        if known is not None:
            self.reused += 1
            return known
        solution = self.learner.solve(task, self.run_id, kind, 0, library=_Fixed(insights))
        right = self.learner.config.correct(solution.objective, float(task.answer))
        self.outcomes.put(task, insights, right)
        self.solved += 1
        return right

    def replay(self, tasks: list[Task], *, on_problem: Callable[[ProblemReplay], None] | None = None) -> Replay:
        """Label every (insight, problem) pair the arms can tell apart (see the module docstring)."""
        result = Replay()
        start_solved, start_reused = self.solved, self.reused
        for task in tasks:
            chosen = self.chosen(task)
            right = self.outcome(task, chosen, "evolve_with")
            for insight in chosen:
                rest = [i for i in chosen if i["id"] != insight["id"]]
                without = self.outcome(task, rest, "evolve_without")
                label = POSITIVE if right and not without else NEGATIVE if without and not right else NEUTRAL
                if label == POSITIVE and self._placebo_too(task, rest, insight, result, retrieved=True):
                    label = NEUTRAL
                result.pairs.append(Pair(insight["id"], task.id, label, retrieved=True))
            if not right:
                for untried in self._untried(task, chosen):
                    given = self.outcome(task, [*chosen, insight_dict(untried)], "evolve_given")
                    label = UNRETRIEVED if given else NEUTRAL
                    if given and self._placebo_too(task, chosen, insight_dict(untried), result, retrieved=False):
                        label = NEUTRAL
                    result.pairs.append(Pair(untried.id, task.id, label, retrieved=False))
            problem = ProblemReplay(task, chosen, right)
            result.problems.append(problem)
            if on_problem:
                on_problem(problem)
        result.solved, result.reused = self.solved - start_solved, self.reused - start_reused
        return result

    def _placebo_too(self, task: Task, others: list[dict[str, Any]], insight: dict[str, Any], result: Replay, *,
                     retrieved: bool) -> bool:
        """Whether the problem is right with the placebo lesson in the insight's place (step 5)."""
        placebo = {**prompts.PLACEBO, "stage": insight["stage"]}
        if not self.outcome(task, [*others, placebo], PLACEBO_KIND):
            return False
        result.placebo.append(Pair(insight["id"], task.id, NEUTRAL, retrieved=retrieved))
        return True

    def _untried(self, task: Task, chosen: list[dict[str, Any]]) -> list[Any]:
        """Verified insights retrieval did not choose, most likely to help first: those learned
        from this problem, those recall found but the check left out, then the nearest."""
        skip = {i["id"] for i in chosen}
        verified = {i.id: i for i in self.store.list(status=Status.VERIFIED)}
        order = [i for i in verified.values() if task.id in i.provenance.source_tasks]
        order += self.learner.retriever.candidates(task.text)
        order += [verified[h.insight_id] for h in self.learner.index.recall(task.text, k=self.unretrieved_tries + 2)
                  if h.insight_id in verified]
        picked: dict[str, Any] = {}
        for insight in order:
            if insight.id not in skip and insight.id in verified:
                picked.setdefault(insight.id, verified[insight.id])
        return list(picked.values())[: self.unretrieved_tries]
