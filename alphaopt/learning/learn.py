"""Learning solver-verified insights from training problems (text + optimal objective only).

Run with: alphaopt learn benchmarks/data/nl4opt_train.jsonl --limit 20

For each training problem:

1. solve it ``k`` times with the current library (the first solve greedy, the others sampled);
2. collect contrasts, a wrong and a right program (``alphaopt.learning.contrasts``): from the
   solves themselves (a repair that made a failing program run, a repair, diagnosis or patch
   that turned a wrong program right, a right solve beside a wrong one) and, when no solve was
   right, from answer-guided exploration (``alphaopt.learning.explore``: integrality flips,
   single-line variants screened by the solver, sampled model tries cut down to the smallest
   edit that reaches the target); a program that writes the target never counts;
3. draft candidate insights from each contrast (``alphaopt.learning.drafts``);
4. check each contrast's candidates counterfactually (``alphaopt.learning.verify``): ``k``
   solves with them against the ``k`` without and ``k`` with a placebo lesson; verified or
   retired, with the evidence, in one transaction;
5. merge a verified insight with a near-duplicate (``alphaopt.learning.merge``), re-verified on
   the source problems, in one transaction under the store's merge lock.

Each finished problem is marked in the library, so a rerun resumes where a run stopped; the
run's counters hold its funnel (``alphaopt.learning.funnel``). On a remote endpoint several
problems can be learned at once (``concurrency``): each keeps its own counts, the token ledger
is shared, and merges take turns.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import Any

from alphaopt.agent import prompts
from alphaopt.agent.program import extract_code
from alphaopt.agent.reading import read
from alphaopt.agent.retrieval import LibraryRetriever
from alphaopt.agent.rewrites import prepare
from alphaopt.agent.run import Agent
from alphaopt.agent.state import Solution
from alphaopt.answers import ANSWER
from alphaopt.config import Settings
from alphaopt.errors import InputError
from alphaopt.learning.contrasts import Contrast, Criterion, solve_contrasts, with_known_edit
from alphaopt.learning.drafts import Drafter, diff_example, specific
from alphaopt.learning.explore import ExploreConfig, Explorer, outcome_line
from alphaopt.learning.funnel import LearningStopped, LearnSummary
from alphaopt.learning.ledger import BudgetExceeded, Ledger, RunStopping
from alphaopt.learning.merge import PENDING_ID, Merger
from alphaopt.learning.verify import Checker
from alphaopt.llm.client import CallContext, LLMClient
from library import Insight, InsightDraft, LibraryStore, Status, Task
from library.index import LibraryIndex
from solvers import SolverRunner

__all__ = ["BudgetExceeded", "LearnConfig", "LearnSummary", "Learner", "RunStopping", "diff_example",
           "ended_tasks", "outcome_line", "specific"]

DONE = "done"
_ENDINGS = {"unsolved": ("unsolved",), "solved": ("solved", "learned")}  # how a task's learning ended
_NOT_IN_LIBRARY = {prompts.PLACEBO["id"], PENDING_ID}  # forced lessons that are no insight of the library


@dataclass
class LearnConfig:
    """How hard to try per problem. Learning is offline work: the defaults spend what a verified
    insight needs (``benchmarks/learn_yield.py`` measures them); ``k=1, explore_tries=0`` is the
    cheap setting."""

    k: int = 2  # solves per arm of the check: the first greedy, the others sampled
    # sampled model tries per failed problem, each with its own seed: with the embedded model 106 tries
    # on 25 failed training problems reached no answer (a quarter of learning's model time; the
    # benchmarks README); raise it for a model that corrects programs more often
    explore_tries: int = 1
    accept_margin: int = 1
    min_wins: int = 2  # right solves with the candidate, at least (at most k): never one lucky sample
    sample_temperature: float = 0.7
    merge_distance: float = 0.12
    max_tokens: int | None = None
    flip_integrality: bool = True
    line_variants: bool = True  # single-line variants (and pairs) screened by the solver
    max_pairs: int = 200
    solve_contrasts: bool = True  # learn from every fix during a solve and from right vs wrong samples
    max_contrasts: int = 3  # contrasts drafted and checked per problem
    placebo: bool = True  # a candidate must also beat a placebo lesson, not only the run without it

    def correct(self, objective: float | None, answer: float) -> bool:
        """Whether an objective is the answer, within the one answer tolerance (``alphaopt.answers``)."""
        return ANSWER.correct(objective, answer)



def solver_of(settings: Settings) -> dict[str, str]:
    """What a run records of how it solved: the model, and how lessons reached it. A solve it
    recorded is reused only by a run that solves the same way (``replay.Outcomes``)."""
    return {"model": settings.model_name, "insight_delivery": settings.experimental.insight_delivery}

class Learner:
    """Runs the learning loop over training tasks against one library."""

    def __init__(self, settings: Settings, store: LibraryStore, index: LibraryIndex, llm: LLMClient,
                 runner: SolverRunner, config: LearnConfig | None = None) -> None:
        # one sample per solve, none drawn again after a failure: the learner draws its own k samples
        # to compare with and without insights
        self.settings = settings.model_copy(update={"use_library": True, "samples": 1}).with_experimental(
            resample_failed=0)
        # a check whose success needs a first program that runs needs no repair of one that does not,
        # and one that counts only the first program needs no diagnosis or patch after it either
        no_repair = self.settings.model_copy(update={"max_repairs": 0})
        self._settings_for: dict[Criterion, Settings] = {
            "final": self.settings, "runs_first": no_repair,
            "runs": no_repair.with_experimental(max_diagnoses=0),
            "right_first": no_repair.with_experimental(max_diagnoses=0)}
        self.store, self.index = store, index
        self.config = config or LearnConfig()
        self.ledger = Ledger(llm, self.config.max_tokens)
        self.runner = runner
        self.retriever = LibraryRetriever(self.settings, store, index)
        c, knobs = self.config, self.settings.experimental
        self.explorer = Explorer(ExploreConfig(tries=c.explore_tries, temperature=c.sample_temperature,
                                               flip_integrality=c.flip_integrality, line_variants=c.line_variants,
                                               max_pairs=c.max_pairs, max_tokens=knobs.max_tokens_program),
                                 self.ledger, runner, store, c.correct, self._prepare)
        self.drafter = Drafter(store, self.retriever, self.ledger)
        self.merger = Merger(store, index, self.ledger, c.merge_distance, self.settings.model_name, self.solve,
                             c.correct)
        self.checker = Checker(self.solve, c.k, c.accept_margin, c.placebo, c.correct, min_wins=c.min_wins)

    def _prepare(self, reply: str, problem: str) -> str:
        """A model's program as the solve path would run it (contract fixes, text rewrites)."""
        return prepare(extract_code(reply), read(problem), enabled=self.settings.experimental.rewrites)[0]

    # -- the loop ---------------------------------------------------------------------------
    def learn(self, items: list[tuple[str, str, str, float]], *, command: str = "",
              on_task: Callable[[Task, str, LearnSummary], None] | None = None,
              revisit: Collection[str] = (), concurrency: int = 1) -> LearnSummary:
        """Learn from ``(dataset, item_id, text, answer)`` items; skip those done in earlier runs,
        except those that ended as ``revisit`` names: ``"unsolved"`` (to learn again after the
        pipeline changed) or ``"solved"`` (solved or learned from: to gather fresh evidence on
        the library's insights against known answers). ``concurrency`` problems are learned at
        once (for a remote endpoint; each finished one is recorded as it ends)."""
        self._close_orphaned_runs()
        run = self.store.start_run({"command": command, **solver_of(self.settings), "pid": os.getpid(),
                                    "concurrency": concurrency, **self.config.__dict__})
        summary = LearnSummary(run_id=run.id)
        start = time.perf_counter()
        done = self.store.done_tasks(DONE) - self.ended(revisit)
        try:
            todo = []
            for dataset, item_id, text, answer in items:
                task = self.store.add_task(dataset, item_id, text, answer)
                if task.id in done:
                    summary.skipped += 1
                else:
                    todo.append(task)
            for task, outcome, counts in self._each(todo, run.id, concurrency):
                summary.absorb(counts)
                self.store.record_attempt(task.id, kind=DONE, status=outcome, run_id=run.id)
                summary.seen += 1
                summary.spend(self.ledger.usage, time.perf_counter() - start)
                self.store.update_run(run.id, counters=summary.as_dict(), tokens=self.ledger.spent)
                if on_task:
                    on_task(task, outcome, summary)
        except BudgetExceeded as exc:
            summary.stopped = str(exc)
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM from the CLI's handler: a stop, not a failure
            summary.spend(self.ledger.usage, time.perf_counter() - start)
            summary.stopped = str(exc) or "interrupted"
            self.store.finish_run(run.id, status="stopped", tokens=self.ledger.spent, counters=summary.as_dict())
            raise LearningStopped(summary.stopped, summary) from exc
        except BaseException as exc:  # recorded on the run, then re-raised: a rerun resumes
            summary.spend(self.ledger.usage, time.perf_counter() - start)
            self.store.finish_run(run.id, status="failed", counters={**summary.as_dict(), "error": repr(exc)},
                                  tokens=self.ledger.spent)
            raise
        summary.spend(self.ledger.usage, time.perf_counter() - start)
        self.store.finish_run(run.id, status="finished" if summary.stopped is None else "stopped",
                              counters=summary.as_dict(), tokens=summary.tokens)
        return summary

    def _each(self, tasks: list[Task], run_id: str, concurrency: int) -> Iterator[tuple[Task, str, LearnSummary]]:
        """Learn from each task, yielding ``(task, outcome, its counts)`` as each ends: one at a
        time, or ``concurrency`` at once. When one fails or the run is stopped, the others stop
        at their next model call, those that ended are still yielded, then the error is raised."""
        if concurrency <= 1:
            for task in tasks:
                counts = LearnSummary(run_id=run_id)
                yield task, self.learn_task(task, run_id, counts), counts
            return
        pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="learn")
        pending = iter(tasks)
        running: dict[Future[str], tuple[Task, LearnSummary]] = {}
        error: BaseException | None = None

        def submit() -> None:
            task = next(pending, None)
            if task is not None:
                counts = LearnSummary(run_id=run_id)
                running[pool.submit(self.learn_task, task, run_id, counts)] = (task, counts)

        try:
            for _ in range(concurrency):
                submit()
            while running:
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    task, counts = running.pop(future)
                    exc = future.exception()
                    if exc is None:
                        yield task, future.result(), counts
                        if error is None:
                            submit()
                    elif not isinstance(exc, RunStopping) and error is None:
                        error = exc
                        self.ledger.stopping.set()
        except BaseException:  # Ctrl-C or a stop signal in this thread: the workers stop at their next call
            self.ledger.stopping.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            self.ledger.stopping.clear()
        if error is not None:
            raise error

    def ended(self, outcomes: Collection[str]) -> set[str]:
        """Tasks whose last finished attempt ended as one of ``outcomes`` (see ``ended_tasks``)."""
        return ended_tasks(self.store, outcomes)

    def _close_orphaned_runs(self) -> None:
        """Runs still marked running whose process is gone were killed: record them as failed.
        A run started on another machine (a cluster's learning run names its host) is left alone."""
        for run in self.store.runs():
            pid = run.settings.get("pid")
            if run.settings.get("host", socket.gethostname()) != socket.gethostname():
                continue  # its pid means nothing here
            if run.status.value == "running" and (pid is None or not _alive(int(pid))):
                self.store.finish_run(run.id, status="failed", counters={**run.counters, "interrupted": True})

    # -- one problem --------------------------------------------------------------------------
    def learn_task(self, task: Task, run_id: str, summary: LearnSummary) -> str:
        """One training problem, start to end; returns what happened to it."""
        summary.retired += self._retire_leftovers(task)
        answer = float(task.answer)
        without = [self.solve(task, run_id, "solve", sample) for sample in range(self.config.k)]
        right = [s for s in without if self.config.correct(s.objective, answer)]
        first = without[0].attempts[0] if without[0].attempts else None
        summary.right_first += int(first is not None and first.status in ("optimal", "feasible")
                                   and self.config.correct(first.objective, answer))
        if right:
            summary.solved_before += 1
            summary.solved_after += 1
        else:
            summary.failed += 1
        contrasts = self._contrasts(task, without, run_id, summary, solved=bool(right))
        if not contrasts:
            return "solved" if right else "unsolved: nothing reached"
        summary.reached += 1
        for contrast in contrasts:
            summary.count(contrast.source, "reached")
        verdicts: list[str] = []
        drafted, reached_after = False, False
        placebos: dict[tuple[str, ...], list[Solution]] = {}
        for contrast in contrasts[: self.config.max_contrasts]:
            drafts = self.drafter.drafts(task, contrast, run_id)
            summary.unplaced += self.drafter.take_unplaced(task.id)
            if not drafts:
                continue
            drafted = True
            summary.count(contrast.source, "drafted", len(drafts))
            verdict, with_runs = self._verify(task, run_id, summary, contrast, drafts, without, placebos)
            verdicts.append(verdict)
            reached_after |= verdict == "learned" and any(self.config.correct(s.objective, answer) for s in with_runs)
        summary.drafted += int(drafted)
        if not drafted:
            return "solved" if right else "unsolved: nothing learned"
        if any(v == "learned" for v in verdicts):
            summary.solved_after += int(not right and reached_after)
            return "solved; learned" if right else "learned"
        why = next((v for v in verdicts if v != "candidates rejected"), verdicts[0])
        return f"solved; {why}" if right else f"unsolved: {why}"

    def _contrasts(self, task: Task, without: list[Solution], run_id: str, summary: LearnSummary, *,
                   solved: bool) -> list[Contrast]:
        """The problem's contrasts: from its solves (every fix, and right against wrong solves;
        only repaired run errors when ``solve_contrasts`` is off), then, when no solve was
        right, exploration's; each cut down to the one changed hunk that alone turns its wrong
        program right (when one does), and with its edit when one known edit separates them. When
        no solve was right, a code lesson is judged by whether the first program runs (no lesson
        about code can make such an answer right). A contrast whose success no check could lift
        (every solve without it already counts as one) is left out."""
        answer = float(task.answer)
        found = solve_contrasts(without, lambda objective: self.config.correct(objective, answer))
        if not self.config.solve_contrasts:
            found = [c for c in found if c.source == "repair"][:1]
        if not solved:  # no code lesson can make the answer right here: it must make the first program run
            found = [replace(c, criterion="runs") if c.criterion == "runs_first" else c for c in found]
        found = [self.explorer.narrow(task, c, run_id) for c in found
                 if sum(self.checker.success(s, answer, c.criterion) for s in without) < len(without)]
        if not solved:
            summary.explored += 1
            explored = self.explorer.explore(task, without, run_id)  # already cut down
            if explored is not None:
                found.append(explored)
        return [with_known_edit(c, task.text) for c in found]

    def _verify(self, task: Task, run_id: str, summary: LearnSummary, contrast: Contrast, drafts: list[InsightDraft],
                without: list[Solution], placebos: dict[tuple[str, ...], list[Solution]]) -> tuple[str, list[Solution]]:
        """Add the drafts as candidates, check them, and verify or retire them in one transaction;
        then index and merge the verified ones. Returns "learned" or why they were rejected, and
        the solves with the candidates."""
        version = "; ".join(f"{step}:{prompts.prompt_sha(step)}" for step in contrast.steps)
        candidates = [self.store.add_insight(d, provenance={
            "source_tasks": [task.id], "model": self.settings.model_name,
            "prompt_version": version, "run_id": run_id}) for d in drafts]
        summary.added += len(candidates)
        verdict = self.checker.check(task, run_id, candidates, without, contrast.criterion, placebos)
        summary.solves_skipped += verdict.skipped
        with self.store.transaction(reason=f"counterfactual check on {task.id}"):
            for c in candidates:
                evidence = {**verdict.evidence_for(c.id), "source": contrast.source}
                if verdict.accepted:
                    self.store.verify(c.id, evidence)
                else:
                    self.store.retire(c.id, reason="rejected by the counterfactual check", evidence=evidence)
        if not verdict.accepted:
            summary.rejected += len(candidates)
            summary.retired += len(candidates)
            return "candidates rejected" + (f": {verdict.why}" if verdict.why else ""), verdict.with_runs
        summary.verified += len(candidates)
        summary.count(contrast.source, "verified", len(candidates))
        if verdict.untold:  # verified with the code's edit, the lesson untold
            summary.count(contrast.source, "verified untold", len(verdict.untold))
        with self.store.merge_lock():  # one worker at a time indexes and merges
            self.index.upsert([self.store.get(c.id) for c in candidates])
            for c in candidates:
                merged = self.merger.merge(self.store.get(c.id), run_id)
                summary.merged += merged
                summary.retired += 2 * merged
        return "learned", verdict.with_runs

    # -- solving -------------------------------------------------------------------------------
    def solve(self, task: Task, run_id: str, kind: str, sample: int,
              forced: list[dict[str, Any]] | None = None, *, library: Any = None,
              without: Collection[str] = (), judged: Criterion = "final") -> Solution:
        """Solve a task with the library (plus ``forced`` candidates, leaving out the insights in
        ``without``, or through another ``library`` retriever) and record the attempt. Solve 0
        is greedy, as a user's solve is; later ones are sampled, each with its own seed. A solve
        ``judged`` by its first program stops where nothing after could change that judgement:
        no repair (``runs_first``), nor diagnosis or patch (``runs``, ``right_first``). The attempt's kind
        says so (``_sampled``, ``_first``): only a plain ``kind`` is a solve as a user gets it."""
        library = library or self.retriever
        if forced is not None:
            library = _Combined(library, forced, frozenset(without))
        llm = self.ledger.solver(sample, self.config.sample_temperature)
        with Agent(self._settings_for[judged], llm=llm, runner=self.runner, library=_Judged(library)) as agent:
            solution = agent.solve(task.text)
        if solution.insights and task.answer is not None:
            # the outcome of each insight in the prompt, judged against the known answer (a
            # user's solve can only record whether it ran)
            right = self.config.correct(solution.objective, float(task.answer))
            with self.store.transaction():
                for insight in solution.insights:
                    if insight["id"] in _NOT_IN_LIBRARY:
                        continue
                    self.store.record_evidence(insight["id"], task_id=task.id, run_id=run_id,
                                               version=insight.get("version"), retrieved=True, used=True,
                                               success=right)
        kind += ("_sampled" if sample else "") + ("" if judged == "final" else "_first")
        self.store.record_attempt(task.id, kind=kind, status=solution.status, run_id=run_id,
                                  program=solution.program, objective=solution.objective,
                                  error=solution.error, tokens=solution.tokens.input + solution.tokens.output)
        return solution

    # -- the library's own steps (also used by the evolution job and `library recheck`) --------
    def near_duplicate(self, insight: Insight) -> Insight | None:
        """A verified insight that says nearly the same (see ``Merger.near_duplicate``)."""
        return self.merger.near_duplicate(insight)

    def merge(self, insight: Insight, run_id: str) -> int:
        """Merge a verified insight with a near-duplicate; returns 1 when a merge replaced them."""
        return self.merger.merge(insight, run_id)

    def general_condition(self, condition: str, explanation: str, context: CallContext) -> str:
        """One ``generalize`` call: the condition rewritten in general words (may be empty)."""
        return self.drafter.general_condition(condition, explanation, context)

    def rewrite_condition(self, prompt_name: str, context: CallContext, *, max_tokens: int, **fields: str) -> str:
        """One call of a prompt that answers with a condition only (see ``Drafter.rewrite_condition``)."""
        return self.drafter.rewrite_condition(prompt_name, context, max_tokens=max_tokens, **fields)

    def recheck(self, insight: Insight, run_id: str) -> dict[str, Any]:
        """The counterfactual check again, on a verified insight's source problems held with an
        answer: k solves each without it (the rest of the library stays), with it, and with the
        placebo lesson in its place. It stays verified only when, summed over those problems, it
        beats both others by the margin with at least one success; otherwise it is retired. The
        evidence becomes a new version either way, in one transaction. Returns the evidence.

        Raises:
            InputError: the insight is not verified, or no source problem has an answer here.
        """
        if insight.status != Status.VERIFIED:
            raise InputError(f"{insight.id} is {insight.status.value}; only a verified insight is rechecked")
        tasks = self.store.answered_tasks(insight.provenance.source_tasks)
        if not tasks:
            raise InputError(f"{insight.id}'s source problems have no answer in this library: give the training "
                             "files they came from (`alphaopt library recheck --answers FILE`)")
        evidence = self.checker.recheck(insight, tasks, run_id)
        reason = "recheck against the run without it and a placebo"
        if evidence["kept"]:  # the version's evidence keeps the first check's beside the recheck's
            self.store.verify(insight.id, {"recheck": evidence}, reason=reason)
        else:
            self.store.retire(insight.id, reason=reason, evidence={"recheck": evidence})
            self.index.remove(insight.id)
        return evidence

    def _retire_leftovers(self, task: Task) -> int:
        """Candidates from an interrupted attempt at this task never stay half-verified; returns
        how many were retired."""
        leftovers = [i for i in self.store.list(status=Status.CANDIDATE) if task.id in i.provenance.source_tasks]
        for insight in leftovers:
            self.store.retire(insight.id, reason="left over from an interrupted attempt",
                              evidence={"interrupted": True})
        return len(leftovers)


def ended_tasks(store: LibraryStore, outcomes: Collection[str]) -> set[str]:
    """Tasks whose last finished attempt ended as one of ``outcomes``: ``"unsolved"``, or
    ``"solved"`` (which includes "learned": solved with a newly verified insight)."""
    prefixes = tuple(p for o in outcomes for p in _ENDINGS[o])
    last: dict[str, str] = {}
    for attempt in store.attempts(kind=DONE):
        last[attempt.task_id] = attempt.status
    return {task for task, status in last.items() if prefixes and status.startswith(prefixes)}


@dataclass
class _Judged:
    """A library for a training solve: retrieval only, so the agent does not record a
    "ran or not" outcome; ``Learner.solve`` records right or wrong against the answer."""

    base: Any

    def retrieve(self, problem: str, *, llm: LLMClient, run_id: str) -> list[dict[str, Any]]:
        return self.base.retrieve(problem, llm=llm, run_id=run_id)


@dataclass
class _Combined:
    """The library's own retrieval plus forced candidates (the 'with' arm of the check); the
    forced ones and those in ``without`` (a merge's members) are not offered again."""

    base: LibraryRetriever
    forced: list[dict[str, Any]]
    without: frozenset[str] = frozenset()

    def retrieve(self, problem: str, *, llm: LLMClient, run_id: str) -> list[dict[str, Any]]:
        ids = {f["id"] for f in self.forced} | self.without
        found = self.base.retrieve(problem, llm=llm, run_id=run_id, exclude=ids)
        return [*self.forced, *found]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
