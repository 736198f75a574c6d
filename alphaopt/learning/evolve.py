"""The library's evolution job: find verified insights that retrieval misses, refine their
conditions, and keep a refinement only when a solver run proves it.

Run with: alphaopt library evolve --dry-run

For each verified insight it reads the retrieval evidence the library recorded and diagnoses:

- ``too specific``: the condition repeats numbers from its source problem, or recall returned
  the insight ``min_recalls`` times or more and the applicability check never chose it. Such a
  condition only ever matches its source, so the lesson never reaches another problem. The
  condition is rewritten in general words (the ``generalize`` prompt) as a new version; then
  each source problem is solved without the insight and with the library as a user gets it (the
  insight has to be recalled and chosen, not forced). The new version stays only on a lift
  (``with >= without + margin`` and at least one success); otherwise the old condition is
  restored as a newer version, so the history shows both.
- ``harmful``: chosen ``min_uses`` times or more for other training problems and wrong more
  often than right there (only training problems count: their answer is known). That is only a
  suspicion, settled by a with/without comparison on the training problems this home holds (up
  to ``max_sources`` of each kind): those it was chosen for and answered wrong are solved
  without it (right now: it misled them), and those it was chosen for and answered right are
  solved without it too (wrong now: it helped them). Unless it misled more than it helped,
  nothing changes. Otherwise the condition is narrowed ("... but not when ...", the ``narrow``
  prompt, shown one problem it misled) as a new version, and the misled problems are solved
  again with the library: the narrowed condition stays only if none of them is wrong any more
  and its own source problems (where this home holds them) are still solved with it. If the
  narrowing does not hold, the old condition is restored and the insight is retired, with the
  with/without counts in its evidence.
- ``aligned``: nothing to do.

Before those, verified insights that say nearly the same (a lesson learned twice in other words)
are merged by the learner's merge, which keeps the merged lesson only if it solves all their
source problems.

Every step commits on its own; the job is recorded as a learning run, so it shows in the runs
list with its counters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from alphaopt.learning.learn import Learner, specific
from alphaopt.llm.client import CallContext, LLMClient
from alphaopt.agent.retrieval import LibraryRetriever
from library import Insight, Status, Task
from library.errors import NotFoundError

TOO_SPECIFIC, HARMFUL, ALIGNED, DUPLICATE = "too specific", "harmful", "aligned", "duplicate"


@dataclass
class EvolveConfig:
    """When a diagnosis fires, and how many source problems a refinement is checked on."""

    min_recalls: int = 3
    min_uses: int = 3
    max_sources: int = 3


@dataclass
class Diagnosis:
    """What the evidence says about one insight."""

    insight_id: str
    verdict: str
    reason: str
    recalled: int = 0
    used_elsewhere: int = 0
    right_elsewhere: int = 0


@dataclass
class EvolveSummary:
    """What one evolution run did."""

    run_id: str
    diagnosed: dict[str, int] = field(default_factory=dict)
    refined: int = 0
    reverted: int = 0
    narrowed: int = 0
    retired: int = 0
    merged: int = 0
    unchanged: int = 0
    outcomes: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def diagnose(insight: Insight, evidence: list[Any], sources: list[Task], config: EvolveConfig) -> Diagnosis:
    """The verdict on one insight from its evidence (no model call)."""
    source_ids = set(insight.provenance.source_tasks)
    elsewhere = [e for e in evidence if e.task_id not in source_ids]
    recalled = sum(e.retrieved and not e.used for e in elsewhere)
    # right or wrong is known only for a training problem (a user's solve records whether it ran)
    used = [e for e in elsewhere if e.used and e.success is not None and e.task_id]
    right = sum(bool(e.success) for e in used)
    counts = {"recalled": recalled, "used_elsewhere": len(used), "right_elsewhere": right}
    if any(specific(insight.condition, t.text) for t in sources):
        return Diagnosis(insight.id, TOO_SPECIFIC, "its condition repeats numbers from its source problem", **counts)
    if recalled >= config.min_recalls and not used:
        return Diagnosis(insight.id, TOO_SPECIFIC, f"recalled {recalled} times, never chosen", **counts)
    if len(used) >= config.min_uses and right < len(used) - right:
        return Diagnosis(insight.id, HARMFUL, f"chosen {len(used)} times for other problems, right on {right}",
                         **counts)
    return Diagnosis(insight.id, ALIGNED, "chosen where it applies, or too little evidence yet", **counts)


class Evolver:
    """Diagnoses and refines the verified insights of the learner's library."""

    def __init__(self, learner: Learner, config: EvolveConfig | None = None) -> None:
        self.learner = learner
        self.store, self.index = learner.store, learner.index
        self.config = config or EvolveConfig()

    def diagnoses(self) -> list[Diagnosis]:
        """The verdict on every verified insight."""
        found = []
        for insight in self.store.list(status=Status.VERIFIED):
            found.append(diagnose(insight, self.store.evidence_for(insight.id), self._sources(insight), self.config))
        return found

    def _sources(self, insight: Insight) -> list[Task]:
        """The insight's source problems that this home holds with their answers (an imported
        library brings their texts only)."""
        return self.store.answered_tasks(insight.provenance.source_tasks)

    def evolve(self, *, command: str = "", dry_run: bool = False,
               on_insight: Callable[[Diagnosis, str], None] | None = None) -> EvolveSummary:
        """Diagnose every verified insight, refine the too specific ones and narrow (or retire)
        the harmful ones (unless ``dry_run``)."""
        run = self.store.start_run({"command": command, "job": "evolve", "dry_run": dry_run,
                                    "model": self.learner.settings.model_name, **asdict(self.config)})
        summary = EvolveSummary(run_id=run.id)
        try:
            self.merge_duplicates(run.id, summary, dry_run=dry_run, on_insight=on_insight)
            for found in self.diagnoses():
                summary.diagnosed[found.verdict] = summary.diagnosed.get(found.verdict, 0) + 1
                outcome = found.reason
                if found.verdict == TOO_SPECIFIC and not dry_run:
                    outcome = self.refine(self.store.get(found.insight_id), run.id, summary)
                elif found.verdict == HARMFUL and not dry_run:
                    outcome = self.narrow(self.store.get(found.insight_id), run.id, summary)
                earlier = summary.outcomes.get(found.insight_id)
                summary.outcomes[found.insight_id] = (f"{earlier}; " if earlier else "") + f"{found.verdict}: {outcome}"
                self.store.update_run(run.id, counters=summary.as_dict(), tokens=self.learner.ledger.spent)
                if on_insight:
                    on_insight(found, outcome)
        except BaseException as exc:
            self.store.finish_run(run.id, status="stopped" if isinstance(exc, KeyboardInterrupt) else "failed",
                                  counters={**summary.as_dict(), "error": repr(exc)}, tokens=self.learner.ledger.spent)
            raise
        self.store.finish_run(run.id, status="finished", counters=summary.as_dict(), tokens=self.learner.ledger.spent)
        return summary

    def merge_duplicates(self, run_id: str, summary: EvolveSummary, *, dry_run: bool = False,
                         on_insight: Callable[[Diagnosis, str], None] | None = None) -> None:
        """Merge verified insights that say nearly the same (``Learner.near_duplicate``): the
        learner's merge writes one lesson for both and keeps it only if it solves all their
        source problems, then retires the two."""
        for insight in self.store.list(status=Status.VERIFIED):
            if self.store.get(insight.id).status != Status.VERIFIED:
                continue  # merged away earlier in this pass
            other = self.learner.near_duplicate(insight)
            if other is None:
                continue
            found = Diagnosis(insight.id, DUPLICATE, f"says nearly what {other.id} says")
            summary.diagnosed[DUPLICATE] = summary.diagnosed.get(DUPLICATE, 0) + 1
            outcome = found.reason
            sources = {t for m in (insight, other) for t in m.provenance.source_tasks}
            if len(self._sources(insight)) + len(self._sources(other)) < len(sources):
                outcome = "their source problems are not in this home (an imported library): both kept"
            elif not dry_run:
                merged = self.learner.merge(insight, run_id)
                summary.merged += merged
                outcome = ("merged with it into one re-verified lesson" if merged
                           else "the merged lesson did not solve their source problems: both kept")
            summary.outcomes[insight.id] = f"{DUPLICATE}: {outcome}"
            self.store.update_run(run_id, counters=summary.as_dict(), tokens=self.learner.ledger.spent)
            if on_insight:
                on_insight(found, outcome)

    def refine(self, insight: Insight, run_id: str, summary: EvolveSummary) -> str:
        """Rewrite a too specific condition and keep it only if it lifts its source problems."""
        sources = self._sources(insight)[: self.config.max_sources]
        if not sources:
            summary.unchanged += 1
            return "its source problems are not in this home (an imported library): unchanged"
        condition = self.learner.general_condition(insight.condition, insight.explanation,
                                                   CallContext(run_id=run_id, node="evolve"))
        if not condition or any(specific(condition, t.text) for t in sources):
            summary.unchanged += 1
            return "no general condition came back; unchanged"
        old = insight
        new = self.store.revise(insight.id, condition=condition, reason="evolve: the condition in general words")
        self.index.upsert([new])
        margin = self.learner.config.accept_margin
        without = with_ = 0
        for task in sources:
            without += self._right_without(insight.id, task, run_id)
            with_ += self._solved_with(insight.id, task, run_id, must_choose=True)
        evidence = {"check": "evolve", "without": without, "with": with_, "sources": len(sources)}
        if with_ >= without + margin and with_ >= 1:
            self.store.revise(insight.id, evidence={**old.provenance.evidence, "refined": evidence},
                              reason="evolve: refinement verified")
            summary.refined += 1
            return f"refined (with {with_}, without {without} on {len(sources)} source problem(s))"
        restored = self.store.revise(insight.id, condition=old.condition,
                                     reason=f"evolve: refinement reverted (with {with_}, without {without})")
        self.index.upsert([restored])
        summary.reverted += 1
        return f"reverted: no lift (with {with_}, without {without} on {len(sources)} source problem(s))"


    def narrow(self, insight: Insight, run_id: str, summary: EvolveSummary) -> str:
        """Compare with and without an insight where it was chosen; narrow its condition when it
        misled more problems than it helped, or retire it."""
        learner, old = self.learner, insight
        misled = self._chosen_for(insight, success=False)[: self.config.max_sources]
        if not misled:
            summary.unchanged += 1
            return "no problem it misled is in this home, or an earlier narrowing fixed them: unchanged"
        freed = [t for t in misled if self._right_without(insight.id, t, run_id)]
        if not freed:
            summary.unchanged += 1
            return f"the {len(misled)} problem(s) it was chosen for fail without it too: unchanged"
        aided = self._chosen_for(insight, success=True)[: self.config.max_sources]
        helped = sum(not self._right_without(insight.id, t, run_id) for t in aided)
        if helped >= len(freed):
            summary.unchanged += 1
            return (f"no net harm: right without it on {len(freed)} of {len(misled)} problem(s) it misled, "
                    f"wrong without it on {helped} of {len(aided)} it got right: unchanged")
        condition = learner.rewrite_condition("narrow", CallContext(run_id=run_id, node="evolve"), max_tokens=100,
                                              condition=insight.condition, explanation=insight.explanation,
                                              problem=freed[0].text)
        counts = {"check": "evolve-narrow", "misled": len(misled), "right_without": len(freed),
                  "aided": len(aided), "helped": helped, "tasks": [t.id for t in freed]}
        sources = self._sources(insight)[: self.config.max_sources]
        if condition and condition != old.condition and not any(specific(condition, t.text) for t in freed + sources):
            new = self.store.revise(insight.id, condition=condition,
                                    reason="evolve: narrowed, it misled problems it was chosen for")
            self.index.upsert([new])
            still_wrong = sum(not self._solved_with(insight.id, t, run_id) for t in freed)
            counts["still_wrong"] = still_wrong
            kept = 0
            if still_wrong == 0:  # only then is it worth checking its own sources
                kept = sum(self._solved_with(insight.id, t, run_id, must_choose=True) for t in sources)
                counts |= {"sources": len(sources), "sources_kept": kept}
            if still_wrong == 0 and (not sources or kept >= 1):
                self.store.revise(insight.id, evidence={**old.provenance.evidence, "narrowed": counts},
                                  reason="evolve: narrowing verified")
                summary.narrowed += 1
                return (f"narrowed (right on {len(freed)} problem(s) it had misled; "
                        f"{kept} of {len(sources)} source problem(s) still solved with it)")
        self.store.retire(insight.id, condition=old.condition, evidence={"retired": counts},
                          reason=f"evolve: retired, wrong with it and right without it on {len(freed)} problem(s)")
        self.index.remove(insight.id)
        summary.retired += 1
        return f"retired: right without it on {len(freed)} of {len(misled)} problem(s) it misled; narrowing did not hold"

    def _chosen_for(self, insight: Insight, *, success: bool) -> list[Task]:
        """Other training problems this home holds, where the insight was chosen and the answer was
        right (``success``) or wrong, each once (less those an earlier narrowing already fixed)."""
        handled = set(insight.provenance.evidence.get("narrowed", {}).get("tasks", []))
        sources, seen, found = set(insight.provenance.source_tasks) | handled, set(), []
        for e in self.store.evidence_for(insight.id):
            if e.used and e.success is success and e.task_id and e.task_id not in sources and e.task_id not in seen:
                seen.add(e.task_id)
                try:
                    task = self.store.get_task(e.task_id)
                except NotFoundError:
                    continue
                if task.answer is not None:
                    found.append(task)
        return found

    def _right_without(self, insight_id: str, task: Task, run_id: str) -> bool:
        """Solve with the library less this insight; True when right."""
        learner = self.learner
        tried = learner.solve(task, run_id, "evolve_without", 0, library=_Without(learner.retriever, insight_id))
        return learner.config.correct(tried.objective, float(task.answer))

    def _solved_with(self, insight_id: str, task: Task, run_id: str, *, must_choose: bool = False) -> bool:
        """Solve with the library as a user gets it (the learner records the evidence); True when
        right (and, with ``must_choose``, the insight was chosen)."""
        tried = self.learner.solve(task, run_id, "evolve_with", 0)
        chosen = any(i["id"] == insight_id for i in tried.insights)
        right = self.learner.config.correct(tried.objective, float(task.answer))
        return right and (chosen or not must_choose)


@dataclass
class _Without:
    """The library as retrieval returns it, minus one insight (the 'without' arm)."""

    base: LibraryRetriever
    insight_id: str

    def retrieve(self, problem: str, *, llm: LLMClient, run_id: str) -> list[dict[str, Any]]:
        return [i for i in self.base.retrieve(problem, llm=llm, run_id=run_id) if i["id"] != self.insight_id]
