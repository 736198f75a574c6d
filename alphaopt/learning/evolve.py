"""The library's evolution job (the AlphaOPT paper's evolution phase): find where retrieval and
the insights disagree with solver-checked outcomes, refine the conditions, and re-tag.

Run with: alphaopt library evolve --rounds 1

It works on the training problems the library holds with their answers. First, verified insights
that say nearly the same are merged (the learner's merge, kept only if the merged lesson solves
all their source problems). Then, each round:

1. **replay** (``learning.replay``): retrieval runs on every problem as a user gets it, and
   with/without solves label each (insight, problem) pair positive, negative, unretrieved or
   neutral (a pair the placebo lesson turns right too is neutral); solves recorded earlier with
   the same prompt content are reused. The round's
   metrics come from it: training accuracy with the library, and retrieval precision and recall
   against the pair labels.
2. **refine** (``learning.conditions``): for each insight with negative or unretrieved pairs,
   several candidate conditions are written and the one whose retrieval (on a scratch copy of
   the library, through the real recall path) best keeps its positives, leaves out its
   negatives and reaches its unretrieved problems replaces the condition, when it beats the
   current one. An insight that misled clearly more problems than it helped
   (``retire_net_harm``), and that no condition keeps from them, is retired.
3. **broaden** (``learning.broaden``): an insight whose condition quotes the text gets a
   shorter quote, and one told in words a quote of its source problems' goal sentences, when
   that quote turns at least two training problems it newly reaches right, and three times as
   many right as wrong (solved with and without it, and with a placebo lesson where it turned
   one right; a seeded sample of them where it reaches many).
4. **re-tag** (``learning.retag``): an insight moves to the label retrieval searches for the
   problems it helps (one that is also near its lesson), or to a new label with a definition;
   an insight recalled by its source problems keeps its label (the label is not how retrieval
   finds it). Labels left without an insight are retired.
5. the metrics again, on the same pairs, with the library as it is now.

Rounds stop early when one changes nothing. Every change is a new insight version and a library
version naming this run (``alphaopt library versions``); ``alphaopt library rollback N`` with
the version the run started from undoes it. The run is recorded with its process id and its
per-round metrics; one evolution runs at a time per home (a lock file in the home).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from alphaopt.errors import AlphaoptError
from alphaopt.learning import broaden, conditions, retag
from alphaopt.learning.learn import Learner, solver_of
from alphaopt.learning.replay import (
    NEGATIVE,
    POSITIVE,
    UNRETRIEVED,
    Metrics,
    Outcomes,
    ProblemReplay,
    Replay,
    Replayer,
    retrieval_scores,
)
from alphaopt.learning.scratch import Scratch
from alphaopt.llm.client import CallContext
from library import Insight, LockTimeoutError, NotFoundError, Status, Task

LOCK_FILE = "evolve.lock"


class EvolveBusy(AlphaoptError):
    """Another evolution run holds this home."""


@dataclass
class EvolveConfig:
    """How an evolution run works (defaults are frugal: every embedded-model call is slow)."""

    rounds: int = 1
    candidates: int = 3  # candidate conditions written per misaligned insight
    candidate_temperature: float = 0.7  # for the candidates after the first (greedy) one
    unretrieved_tries: int = 2  # insights given to each problem the library gets wrong
    max_problems: int | None = None  # training problems replayed (sources of insights first)
    retire_net_harm: int = 2  # retire when negatives exceed helped pairs by this many and no condition helps
    broaden_problems: int = 8  # a candidate quote is judged on at most N problems it newly reaches (0: never)
    reuse: bool = True  # reuse solves recorded earlier with the same model and prompt content
    merge: bool = True


@dataclass
class RoundReport:
    """What one round found and changed."""

    round: int
    before: Metrics
    after: Metrics | None = None
    solved: int = 0
    reused: int = 0
    pairs: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    # pairs labelled neutral because the placebo lesson turned the problem right too (``replay`` step 5)
    placebo: dict[str, list[str]] = field(default_factory=dict)
    refined: dict[str, dict[str, Any]] = field(default_factory=dict)
    retired: list[str] = field(default_factory=list)
    broadened: dict[str, dict[str, Any]] = field(default_factory=dict)
    # every insight's broadening, kept or not: its candidate quotes as judged, and the one chosen (or None)
    judged: dict[str, dict[str, Any]] = field(default_factory=dict)
    retagged: dict[str, dict[str, Any]] = field(default_factory=dict)
    labels_retired: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.refined or self.retired or self.broadened or self.retagged or self.labels_retired)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["before"] = self.before.as_dict()
        data["after"] = self.after.as_dict() if self.after else None
        return data


@dataclass
class EvolveSummary:
    """What one evolution run did."""

    run_id: str
    library_version: int  # the library version it started from (roll back to it to undo the run)
    merged: int = 0
    rounds: list[RoundReport] = field(default_factory=list)
    step: str = ""  # what it is doing now ("round 1: replayed 3 of 7 problems"), for a live view

    def as_dict(self) -> dict[str, Any]:
        return {"library_version": self.library_version, "merged": self.merged, "step": self.step,
                "rounds": [r.as_dict() for r in self.rounds],
                "solved": sum(r.solved for r in self.rounds), "reused": sum(r.reused for r in self.rounds)}


@contextmanager
def evolve_lock(home: Path) -> Iterator[IO[str]]:
    """Hold the home's evolution lock for the block (released when the process ends, too).

    Raises:
        EvolveBusy: another process holds it.
    """
    home.mkdir(parents=True, exist_ok=True)
    handle = open(home / LOCK_FILE, "a+")  # noqa: SIM115 - held open until the block ends (or the process does)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise EvolveBusy(f"An evolution run is already running on the library in {str(home)!r} ({holder}). One runs "
                         "at a time per home: wait for it to finish, or stop it first (Stop on the app's Learn "
                         "page, or kill its process).") from None
    try:
        _note(handle, f"pid {os.getpid()}")
        yield handle
    finally:
        _note(handle, "")
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def evolve_running(home: Path) -> str | None:
    """Who holds the home's evolution lock (``"pid 123, run R0004"``), or None when nobody does."""
    if not (home / LOCK_FILE).is_file():
        return None
    try:
        with evolve_lock(home):
            return None
    except EvolveBusy:
        return (home / LOCK_FILE).read_text().strip() or "another process"


def _note(handle: IO[str], text: str) -> None:
    handle.seek(0)
    handle.truncate()
    handle.write(text)
    handle.flush()


class Evolver:
    """Evolves the library of a learner (its store, index, model and solver)."""

    def __init__(self, learner: Learner, config: EvolveConfig | None = None) -> None:
        self.learner = learner
        self.store, self.index = learner.store, learner.index
        self.config = config or EvolveConfig()

    def tasks(self) -> list[Task]:
        """The training problems held with an answer, the insights' source problems first."""
        answered = [t for t in self.store.tasks() if t.answer is not None]
        sources = {s for i in self.store.list(status=Status.VERIFIED) for s in i.provenance.source_tasks}
        ordered = sorted(answered, key=lambda t: t.id not in sources)
        return ordered[: self.config.max_problems] if self.config.max_problems else ordered

    def evolve(self, *, command: str = "", dry_run: bool = False,
               on_event: Callable[[str], None] | None = None) -> EvolveSummary:
        """Merge, then replay, refine and re-tag for ``config.rounds`` rounds (only replay and
        report with ``dry_run``).

        Raises:
            EvolveBusy: another evolution run holds this home.
        """
        say = on_event or (lambda line: None)
        with evolve_lock(self.learner.settings.home) as lock, self._library_lock():
            self._close_orphaned_runs()
            version = self.store.library_version()
            run = self.store.start_run({"command": command, "job": "evolve", "dry_run": dry_run, "pid": os.getpid(),
                                        **solver_of(self.learner.settings), "library_version": version,
                                        **asdict(self.config)})
            _note(lock, f"pid {os.getpid()}, run {run.id}")
            summary = EvolveSummary(run_id=run.id, library_version=version)
            try:
                self._run(run.id, summary, dry_run, say)
            except BaseException as exc:
                status = "stopped" if isinstance(exc, KeyboardInterrupt) else "failed"
                self.store.finish_run(run.id, status=status, counters={**summary.as_dict(), "error": repr(exc)},
                                      tokens=self.learner.ledger.spent)
                raise
            summary.step = ""
            self.store.finish_run(run.id, status="finished", counters=summary.as_dict(),
                                  tokens=self.learner.ledger.spent)
        return summary

    @contextmanager
    def _library_lock(self) -> Iterator[None]:
        """The store's evolve lock: one evolution run per library, also when several homes (or
        machines) share one PostgreSQL library."""
        try:
            with self.store.evolve_lock():
                yield
        except LockTimeoutError as exc:
            raise EvolveBusy(f"An evolution run is already running on this library ({exc}). One runs at a time "
                             "per library: wait for it to finish, or stop it first.") from None

    def _save(self, summary: EvolveSummary) -> None:
        self.store.update_run(summary.run_id, counters=summary.as_dict(), tokens=self.learner.ledger.spent)

    def _run(self, run_id: str, summary: EvolveSummary, dry_run: bool, say: Callable[[str], None]) -> None:
        actor = f"evolve {run_id}"
        if self.config.merge and not dry_run:
            summary.merged = self.merge_duplicates(run_id, say)
            self._save(summary)
        tasks = self.tasks()
        if not tasks:
            say("No training problem with a known answer in this library: add some with `alphaopt learn FILE`.")
            return
        labels_before = {(i.stage.value, i.level1, i.level2)
                         for i in self.store.list(status=[Status.CANDIDATE, Status.VERIFIED])}
        outcomes = Outcomes(self.store, self.learner.settings.model_name, self.learner.config.correct,
                            reuse=self.config.reuse, delivery=self.learner.settings.experimental.insight_delivery)
        replayer = self.replayer(run_id, outcomes)
        for number in range(1, self.config.rounds + 1):
            say(f"Round {number}: replaying retrieval on {len(tasks)} training problems")
            done: list[str] = []

            def replayed(p: ProblemReplay, number: int = number, done: list[str] = done) -> None:
                done.append(p.task.id)
                summary.step = f"round {number}: replayed {len(done)} of {len(tasks)} problems"
                self._save(summary)
                say(f"  {p.task.id}: {'right' if p.right else 'wrong'} with "
                    f"{[i['id'] for i in p.chosen] or 'no insight'}")

            replay = replayer.replay(tasks, on_problem=replayed)
            report = RoundReport(number, replay.metrics(), solved=replay.solved, reused=replay.reused,
                                 pairs=replay.groups(), placebo=replay.placebo_groups())
            summary.rounds.append(report)
            say(f"Round {number} before: {report.before.line()}; {replay.solved} solves, {replay.reused} reused")
            for insight_id, groups in sorted(report.pairs.items()):
                say(f"  {insight_id}: " + ", ".join(f"{label} {ids}" for label, ids in sorted(groups.items())))
            for insight_id, ids in sorted(report.placebo.items()):
                say(f"  {insight_id}: neutral, right with the placebo lesson too: {ids}")
            self._save(summary)
            if dry_run:
                return
            reason = f"evolve {run_id} round {number}"
            summary.step = f"round {number}: refining and re-tagging"
            self._save(summary)
            with Scratch(self.learner.settings, self.store, self.index) as scratch:
                self._refine(replay, report, scratch, run_id, actor, reason, say)
                with _counted(report, replayer):
                    self._broaden(replayer, report, scratch, actor, reason, say)
                self._retag(replay, report, scratch, run_id, actor, reason, say)
            report.labels_retired = retag.retire_emptied(self.learner, labels_before, actor=actor,
                                                         reason=f"{reason}: label left without insights")
            for path in report.labels_retired:
                say(f"  label {path} retired: no insight carries it any more")
            if report.changed:
                summary.step = f"round {number}: measuring the evolved library"
                self._save(summary)
                with _counted(report, replayer) as spent:
                    report.after = self._measure(replayer, tasks, replay)
                say(f"Round {number} after: {report.after.line()}; {spent[0]} solves, {spent[1]} reused")
            else:
                say(f"Round {number}: nothing to change")
            self._save(summary)
            if not report.changed:
                return

    def replayer(self, run_id: str, outcomes: Outcomes) -> Replayer:
        """What replays the rounds (``alphaopt.learning.cluster_evolve`` spreads it over a cluster)."""
        return Replayer(self.learner, run_id, outcomes, unretrieved_tries=self.config.unretrieved_tries)

    # -- the steps of a round ----------------------------------------------------------------

    def _groups(self, replay: Replay, insight_id: str) -> conditions.Groups:
        tasks = {p.task.id: p.task for p in replay.problems}
        found = replay.groups().get(insight_id, {})
        return conditions.Groups(*([tasks[t] for t in found.get(label, [])]
                                   for label in (POSITIVE, NEGATIVE, UNRETRIEVED)))

    def _refine(self, replay: Replay, report: RoundReport, scratch: Scratch, run_id: str, actor: str, reason: str,
                say: Callable[[str], None]) -> None:
        for insight_id in sorted(report.pairs):
            groups = self._groups(replay, insight_id)
            insight = self.store.get(insight_id)
            if insight.status == Status.VERIFIED and (groups.negative or groups.unretrieved):
                say(self._refine_one(insight, groups, replay, report, scratch, run_id, actor, reason))

    def _refine_one(self, insight: Insight, groups: conditions.Groups, replay: Replay, report: RoundReport,
                    scratch: Scratch, run_id: str, actor: str, reason: str) -> str:
        """Write candidates, score every variant by retrieval, and keep the best, retire the
        insight, or leave it; returns what happened, as a line."""
        tasks = {p.task.id: p.task for p in replay.problems}
        context = CallContext(run_id=run_id, node="evolve_condition")
        candidates = conditions.write_candidates(self.learner, insight, groups, self.config.candidates,
                                                 self.config.candidate_temperature, context,
                                                 sources=self._sources(insight))
        threshold = self.learner.settings.experimental.retrieval_source_similarity
        gated = conditions.gated_out(self.learner, insight, groups.unretrieved, threshold)
        scores = conditions.score(scratch, insight, conditions.variants(insight, candidates, gated), groups, tasks,
                                  self.learner, run_id)
        win, base = conditions.best(scores), scores[0]
        record = {"round": report.round, "run_id": run_id, "positive": [t.id for t in groups.positive],
                  "negative": [t.id for t in groups.negative], "unretrieved": [t.id for t in groups.unretrieved],
                  "candidates": candidates, "scores": [s.as_dict() for s in scores],
                  "chosen": win.variant.origin if win is not base else "current"}
        helped = len(groups.positive) + len(groups.unretrieved)
        if win is not base:
            self._keep(insight, win, record, scratch, actor, reason)
            report.refined[insight.id] = {"from": insight.condition, "to": win.variant.condition,
                                          "origin": win.variant.origin, "add_sources": list(win.variant.add_sources),
                                          "score": [base.total, win.total], "candidates": len(candidates)}
            return (f"  {insight.id} refined ({win.variant.origin} of {len(candidates)}; retrieval right on "
                    f"{win.total} of {len(groups.all)} labelled problems, {base.total} before): "
                    f"{win.variant.condition}")
        if len(groups.negative) - helped >= self.config.retire_net_harm and base.excluded < len(groups.negative):
            note = (f"{reason}: misled {len(groups.negative)} problem(s), helped {helped}; no condition kept it "
                    "from them")
            with self.store.transaction(reason=note, actor=actor):
                self.store.retire(insight.id, evidence={"evolve": record}, reason=note)
            self.index.remove(insight.id)
            scratch.store.set_status(insight.id, Status.RETIRED)
            scratch.index.remove(insight.id)
            report.retired.append(insight.id)
            return f"  {insight.id} retired: misled {len(groups.negative)}, helped {helped}; no candidate kept it away"
        scratch.change(insight.id, condition=insight.condition, source_tasks=list(insight.provenance.source_tasks))
        return (f"  {insight.id} unchanged: no candidate ({len(candidates)} written) beat its condition (right on "
                f"{base.total} of {len(groups.all)} labelled problems)")

    def _keep(self, insight: Insight, win: conditions.Score, record: dict[str, Any], scratch: Scratch, actor: str,
              reason: str) -> None:
        """Write the chosen variant to the library as a new version (and leave the copy at it)."""
        sources = [*insight.provenance.source_tasks,
                   *(t for t in win.variant.add_sources if t not in insight.provenance.source_tasks)]
        note = (f"{reason}: condition chosen by retrieval from {len(record['candidates'])} candidate(s) "
                f"({win.kept} positive kept, {win.excluded} negative left out, {win.reached} unretrieved reached)")
        with self.store.transaction(reason=note, actor=actor):
            new = self.store.revise(insight.id, condition=win.variant.condition, source_tasks=sources,
                                    evidence={**insight.provenance.evidence, "evolve": record}, reason=note)
        self.index.upsert([new])
        scratch.change(insight.id, condition=new.condition, source_tasks=list(new.provenance.source_tasks))

    def _broaden(self, replayer: Replayer, report: RoundReport, scratch: Scratch, actor: str, reason: str,
                 say: Callable[[str], None]) -> None:
        """Try quotes for each verified insight whose condition quotes the text (shorter ones) or
        that is told in words (quotes of its source problems' goals), judged on the training
        problems held with an answer that they newly reach (``learning.broaden``)."""
        if self.config.broaden_problems <= 0:
            return
        held = {t.id: t for t in self.store.tasks() if t.answer is not None}
        for insight in self.store.list(status=Status.VERIFIED):
            sources = {t.id: t.text for t in self._sources(insight)}
            found = broaden.candidates(insight, held.values(), n=self.config.candidates,
                                       max_problems=self.config.broaden_problems, sources=sources)
            if not found:
                continue
            judged = []
            for c in found:
                say(f'  {insight.id}: judging "{c.quote}" on {c.share("the ")} training problems it newly reaches')
                judged.append(broaden.judge(replayer, insight, c, held, on_event=say))
            win = broaden.best(judged)
            record = {"round": report.round, "candidates": [j.as_dict() for j in judged],
                      "chosen": win.candidate.quote if win else None}
            report.judged[insight.id] = record  # in the run's record, whether or not the condition changes
            tried = "; ".join(j.line() for j in judged)
            if win is None:
                say(f"  {insight.id} not broadened: no quote turned two right and three for each wrong ({tried})")
                continue
            note = (f"{reason}: condition quoted as \"{win.candidate.quote}\" ({len(win.positive)} right and "
                    f"{len(win.negative)} wrong of {len(win.candidate.judged)} judged, "
                    f"{len(win.candidate.matched)} newly reached training problems; {len(judged)} candidate(s))")
            with self.store.transaction(reason=note, actor=actor):
                new = self.store.revise(insight.id, condition=win.candidate.condition,
                                        evidence={**insight.provenance.evidence, "broaden": record}, reason=note)
            self.index.upsert([new])
            scratch.change(insight.id, condition=new.condition, source_tasks=list(new.provenance.source_tasks))
            report.broadened[insight.id] = {"from": insight.condition, "to": new.condition,
                                            "positive": win.positive, "negative": win.negative,
                                            "judged": list(win.candidate.judged),
                                            "matched": list(win.candidate.matched)}
            say(f"  {insight.id} broadened: {new.condition} ({tried})")

    def _retag(self, replay: Replay, report: RoundReport, scratch: Scratch, run_id: str, actor: str, reason: str,
               say: Callable[[str], None]) -> None:
        n = self.learner.settings.experimental.retrieval_labels
        gate = self.learner.settings.experimental.retrieval_source_similarity > 0
        for insight_id in sorted(report.pairs):
            insight = self.store.get(insight_id)
            groups = self._groups(replay, insight_id)
            if insight.status != Status.VERIFIED or (gate and self._sources(insight)):
                continue  # an insight recalled by its source problems: its label is not how retrieval finds it
            moved = retag.retag(self.learner, scratch, insight, [*groups.positive, *groups.unretrieved], n=n,
                                run_id=run_id, actor=actor, reason=f"{reason}: re-tag {insight_id}")
            if moved:
                report.retagged[insight_id] = moved
                say(f"  {insight_id} re-tagged {moved['from']} -> {moved['to']}"
                    + (" (a new label)" if moved["created"] else "")
                    + f": searched for {moved['hits_after']} of its {moved['problems']} helped problem(s), "
                      f"{moved['hits_before']} before")

    def _measure(self, replayer: Replayer, tasks: list[Task], replay: Replay) -> Metrics:
        """The metrics with the library as it is now, on the round's pair labels."""
        chosen: dict[str, set[str]] = {}
        right = 0
        for task in tasks:
            found = replayer.chosen(task)
            chosen[task.id] = {i["id"] for i in found}
            right += replayer.outcome(task, found, "evolve_with")
        precision, recall = retrieval_scores(replay.pairs, lambda p: p.insight_id in chosen[p.task_id])
        before = replay.metrics()
        return Metrics(problems=len(tasks), right=right, positive=before.positive, negative=before.negative,
                       unretrieved=before.unretrieved, neutral=before.neutral, precision=precision, recall=recall)

    def _sources(self, insight: Insight) -> list[Task]:
        """The insight's source problems held here (with or without an answer)."""
        found = []
        for task_id in insight.provenance.source_tasks:
            try:
                found.append(self.store.get_task(task_id))
            except NotFoundError:
                continue
        return found

    # -- merging and bookkeeping -------------------------------------------------------------

    def merge_duplicates(self, run_id: str, say: Callable[[str], None]) -> int:
        """Merge verified insights that say nearly the same (``Learner.near_duplicate``): the
        learner's merge writes one lesson for both and keeps it only if it solves all their
        source problems held with an answer. Returns how many merges were kept."""
        merged = 0
        for insight in self.store.list(status=Status.VERIFIED):
            if self.store.get(insight.id).status != Status.VERIFIED:
                continue  # merged away earlier in this pass
            other = self.learner.near_duplicate(insight)
            if other is None:
                continue
            sources = {t for m in (insight, other) for t in m.provenance.source_tasks}
            if len(self.store.answered_tasks(sorted(sources))) < len(sources):
                say(f"  {insight.id} says nearly what {other.id} says; their source problems are not all held "
                    "with an answer (an imported library): both kept")
                continue
            done = self.learner.merge(insight, run_id)
            merged += done
            say(f"  {insight.id} and {other.id} say nearly the same: "
                + ("merged into one re-verified lesson" if done else "the merged lesson did not solve their "
                   "source problems; both kept"))
        return merged

    def _close_orphaned_runs(self) -> None:
        """Evolution runs still marked running, whose process is gone, were killed: mark them failed
        (only called while holding the lock, so no other evolution is alive on this home)."""
        for run in self.store.runs():
            pid = run.settings.get("pid")
            if run.status.value == "running" and run.settings.get("job") == "evolve" and not _alive(pid):
                self.store.finish_run(run.id, status="failed", counters={**run.counters, "interrupted": True})


@contextmanager
def _counted(report: RoundReport, replayer: Replayer) -> Iterator[list[int]]:
    """Add the solves made and reused inside the block to the round's counts; the list it yields
    holds them, ``[solved, reused]``, once the block ends."""
    solved, reused = replayer.solved, replayer.reused
    spent = [0, 0]
    yield spent
    spent[:] = [replayer.solved - solved, replayer.reused - reused]
    report.solved += spent[0]
    report.reused += spent[1]


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

