"""Learning solver-verified insights from solved problems (text + optimal objective only).

Run with: alphaopt learn benchmarks/data/nl4opt_train.jsonl --limit 20

For each training problem: solve it k times with the current library. If one is right but only
after the repair loop fixed a run error, that error becomes a candidate code insight (step 4
checks that the first program now runs and is right). If none is right,
1. a run error that the repair loop fixed becomes a candidate code insight;
2. answer-guided exploration: first the failed program is solved with its variables' integrality
   flipped (no model call); then the model sees its failed program, how its objective compares
   with the target value, and tries to reach it, each try editing the latest program that ran
   (the solver computes the objective; a program that writes the target is rejected);
3. contrasting the failed and the successful program gives candidate insights;
4. counterfactual check: the problem is solved k times with the candidates, compared with the k
   runs without; only a lift (``with >= without + margin`` and at least one success) verifies,
   and only if the candidates also beat a placebo lesson (one that restates the prompts) by the
   margin: any change to the prompt can turn a slip into a right answer;
5. a verified insight close to an existing one is merged, and the merge is re-verified on the
   source problems before it replaces its members.
Each finished problem is marked in the library, so a rerun resumes where a run stopped. On a
remote endpoint, several problems can be learned at once (``concurrency``): each keeps its own
counts, the token ledger is shared, and merges take turns.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from alphaopt.agent import prompts
from alphaopt.agent.run import Agent
from alphaopt.config import Settings
from alphaopt.errors import AlphaoptError, InputError
from alphaopt.llm.client import CallContext, LLMClient, LLMResult, Message
from alphaopt.agent.nodes import REPAIRABLE
from alphaopt.agent.program import extract_code, hardcodes, integrality_variants, normalize_for
from alphaopt.agent.retrieval import LibraryRetriever, insight_dict
from alphaopt.agent.state import Solution
from library import Insight, InsightDraft, LibraryStore, Status, Task
from library.taxonomy import canonical
from library.index import LibraryIndex
from solvers import SolverRunner

DONE = "done"
_ENDINGS = {"unsolved": ("unsolved",), "solved": ("solved", "learned")}  # how a task's learning ended


class BudgetExceeded(AlphaoptError):
    """The token budget of a learning run is spent."""


class RunStopping(AlphaoptError):
    """Raised at a worker's next model call once a concurrent run is stopping (its problem is
    left unfinished, and a rerun learns from it)."""


@dataclass
class LearnConfig:
    """How hard to try per problem (defaults are frugal: every embedded-model call is slow)."""

    k: int = 1
    explore_tries: int = 2
    accept_margin: int = 1
    sample_temperature: float = 0.7
    merge_distance: float = 0.12
    max_tokens: int | None = None
    flip_integrality: bool = True
    placebo: bool = True  # a candidate must also beat a placebo lesson, not only the run without it
    atol: float = 1e-6
    rtol: float = 1e-4

    def correct(self, objective: float | None, answer: float) -> bool:
        return objective is not None and abs(objective - answer) <= self.atol + self.rtol * abs(answer)


class _Drafts(BaseModel):
    insights: list[InsightDraft] = Field(default_factory=list, max_length=3)


@dataclass
class Ledger:
    """Wraps the LLM client: counts tokens, enforces the budget, samples with a seed when asked."""

    base: LLMClient
    max_tokens: int | None = None
    spent: int = 0
    stopping: threading.Event = field(default_factory=threading.Event, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def complete(self, messages: list[Message], **kwargs: Any) -> LLMResult:
        if self.stopping.is_set():
            raise RunStopping("the run is stopping")
        if self.max_tokens is not None and self.spent >= self.max_tokens:
            raise BudgetExceeded(f"token budget of {self.max_tokens:,} spent; rerun with a larger --max-tokens to go on")
        result = self.base.complete(messages, **kwargs)
        with self._lock:  # workers of a concurrent run share the count
            self.spent += result.input_tokens + result.output_tokens
        return result

    def sampling(self, sample: int, temperature: float) -> _SampledLedger:
        """A view that samples at ``temperature`` with seed ``sample`` and shares the count."""
        return _SampledLedger(self, temperature, sample)


@dataclass
class _SampledLedger:
    parent: Ledger
    temperature: float
    seed: int

    def complete(self, messages: list[Message], **kwargs: Any) -> LLMResult:
        kwargs.setdefault("temperature", self.temperature)
        kwargs.setdefault("seed", self.seed)
        return self.parent.complete(messages, **kwargs)


@dataclass
class LearnSummary:
    """What a learning run did."""

    run_id: str
    seen: int = 0
    skipped: int = 0
    solved_before: int = 0
    solved_after: int = 0
    added: int = 0
    verified: int = 0
    rejected: int = 0
    merged: int = 0
    tokens: int = 0
    seconds: float = 0.0
    stopped: str | None = None
    counters: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("run_id", "counters")}

    def absorb(self, task: LearnSummary) -> None:
        """Add what one problem's learning counted (kept apart while it ran, so that concurrent
        problems never write the run's counters at once)."""
        for name in ("solved_before", "solved_after", "added", "verified", "rejected", "merged"):
            setattr(self, name, getattr(self, name) + getattr(task, name))


class Learner:
    """Runs the learning loop over training tasks against one library."""

    def __init__(self, settings: Settings, store: LibraryStore, index: LibraryIndex, llm: LLMClient,
                 runner: SolverRunner, config: LearnConfig | None = None) -> None:
        # one sample per solve, none drawn again after a failure: the learner draws its own k samples
        # to compare with and without insights
        self.settings = settings.model_copy(update={"use_library": True, "samples": 1, "resample_failed": 0})
        self.store, self.index = store, index
        self.config = config or LearnConfig()
        self.ledger = Ledger(llm, self.config.max_tokens)
        self.runner = runner
        self.retriever = LibraryRetriever(self.settings, store, index)
        self._library_lock = threading.Lock()  # one merge at a time when problems are learned concurrently

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
        run = self.store.start_run({"command": command, "model": self.settings.model_name, "pid": os.getpid(),
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
                summary.tokens, summary.seconds = self.ledger.spent, time.perf_counter() - start
                self.store.update_run(run.id, counters=summary.as_dict(), tokens=self.ledger.spent)
                if on_task:
                    on_task(task, outcome, summary)
        except BudgetExceeded as exc:
            summary.stopped = str(exc)
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM from the CLI's handler: a stop, not a failure
            summary.seconds = time.perf_counter() - start
            self.store.finish_run(run.id, status="stopped", tokens=self.ledger.spent,
                                  counters={**summary.as_dict(), "stopped": str(exc) or "interrupted"})
            raise
        except BaseException as exc:  # recorded on the run, then re-raised: a rerun resumes
            summary.seconds = time.perf_counter() - start
            self.store.finish_run(run.id, status="failed", counters={**summary.as_dict(), "error": repr(exc)},
                                  tokens=self.ledger.spent)
            raise
        summary.tokens, summary.seconds = self.ledger.spent, time.perf_counter() - start
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
        """Tasks whose last finished attempt ended as one of ``outcomes``: ``"unsolved"``, or
        ``"solved"`` (which includes "learned": solved with a newly verified insight)."""
        prefixes = tuple(p for o in outcomes for p in _ENDINGS[o])
        last: dict[str, str] = {}
        for attempt in self.store.attempts(kind=DONE):
            last[attempt.task_id] = attempt.status
        return {task for task, status in last.items() if prefixes and status.startswith(prefixes)}

    def _close_orphaned_runs(self) -> None:
        """Runs still marked running whose process is gone were killed: record them as failed."""
        for run in self.store.runs():
            pid = run.settings.get("pid")
            if run.status.value == "running" and (pid is None or not _alive(int(pid))):
                self.store.finish_run(run.id, status="failed", counters={**run.counters, "interrupted": True})

    def learn_task(self, task: Task, run_id: str, summary: LearnSummary) -> str:
        """One training problem, start to end; returns what happened to it."""
        self._retire_leftovers(task)
        answer = float(task.answer)
        without = [self.solve(task, run_id, "solve", sample) for sample in range(self.config.k)]
        wins = [s for s in without if self.config.correct(s.objective, answer)]
        if wins:
            summary.solved_before += 1
            summary.solved_after += 1
            # Right only after a repair: a code insight that makes the first program run is a lift.
            clean = any(self._success(s, answer, code_only=True) for s in wins)
            fixed = None if clean else next((s for s in wins if _repaired(s)), None)
            if fixed is None:
                return "solved"
            drafts = [(d, "extract_code") for d in self._extract_code(task, fixed, run_id)]
            if not drafts:
                return "solved"
            return "solved; " + self._verify(task, run_id, summary, drafts, without, solved=True)
        drafts: list[tuple[InsightDraft, str]] = []
        fixed = next((s for s in without if _repaired(s)), None)
        if fixed is not None:
            drafts += [(d, "extract_code") for d in self._extract_code(task, fixed, run_id)]
        found = self._explore(task, without[0], run_id)
        if found is not None:
            right, change = found
            if change:
                drafts += [(d, "integrality_condition") for d in self._integrality(task, without[0], right, change, run_id)]
            else:
                drafts += [(d, "extract") for d in self._extract(task, without[0], right, run_id)]
        if not drafts:
            return "unsolved: nothing learned"
        return self._verify(task, run_id, summary, drafts, without)

    def _verify(self, task: Task, run_id: str, summary: LearnSummary, drafts: list[tuple[InsightDraft, str]],
                without: list[Solution], *, solved: bool = False) -> str:
        """The counterfactual check: solve k times with the candidates and compare with ``without``."""
        answer = float(task.answer)
        code_only = all(d.stage.value == "code_implementation" for d, _ in drafts)
        base = sum(self._success(s, answer, code_only) for s in without)
        candidates = [self.store.add_insight(d, provenance={
            "source_tasks": [task.id], "model": self.settings.model_name,
            "prompt_version": f"{step}:{prompts.prompt_sha(step)}", "run_id": run_id}) for d, step in drafts]
        summary.added += len(candidates)
        forced = [insight_dict(c) for c in candidates]
        with_runs = [self.solve(task, run_id, "verify_with", sample, forced) for sample in range(self.config.k)]
        lift = sum(self._success(s, answer, code_only) for s in with_runs)
        evidence: dict[str, Any] = {"without": base, "with": lift, "k": self.config.k, "code_only": code_only}
        accepted = lift >= base + self.config.accept_margin and lift >= 1
        if accepted and self.config.placebo:
            # the same prompt change with a lesson that says nothing new: did any change do it?
            placebo = [{**prompts.PLACEBO, "stage": stage} for stage in dict.fromkeys(c.stage.value for c in candidates)]
            control = sum(self._success(self.solve(task, run_id, "verify_placebo", sample, placebo), answer, code_only)
                          for sample in range(self.config.k))
            evidence["placebo"] = control
            accepted = lift >= control + self.config.accept_margin
        with self.store.transaction():
            for c in candidates:
                self.store.revise(c.id, evidence=evidence, reason="counterfactual check")
                self.store.set_status(c.id, Status.VERIFIED if accepted else Status.RETIRED)
        if not accepted:
            summary.rejected += len(candidates)
            why = "candidates rejected" + (": a placebo did as well" if "placebo" in evidence else "")
            return why if solved else f"unsolved: {why}"
        summary.verified += len(candidates)
        if not solved:
            summary.solved_after += int(any(self.config.correct(s.objective, answer) for s in with_runs))
        with self._library_lock:
            self.index.upsert([self.store.get(c.id) for c in candidates])
            for c in candidates:
                summary.merged += self.merge(self.store.get(c.id), run_id)
        return "learned"

    # -- steps -------------------------------------------------------------------------------
    def _agent(self, library: Any, sample: int) -> Agent:
        llm: Any = self.ledger if self.config.k == 1 else self.ledger.sampling(sample, self.config.sample_temperature)
        return Agent(self.settings, llm=llm, runner=self.runner, library=library)

    def solve(self, task: Task, run_id: str, kind: str, sample: int,
              forced: list[dict[str, Any]] | None = None, *, library: Any = None,
              without: Collection[str] = ()) -> Solution:
        """Solve a task with the library (plus ``forced`` candidates, leaving out the insights in
        ``without``, or through another ``library`` retriever) and record the attempt."""
        library = library or self.retriever
        if forced is not None:
            library = _Combined(library, forced, frozenset(without))
        with self._agent(_Judged(library), sample) as agent:
            solution = agent.solve(task.text)
        if solution.insights and task.answer is not None:
            # the outcome of each insight in the prompt, judged against the known answer (a
            # user's solve can only record whether it ran)
            right = self.config.correct(solution.objective, float(task.answer))
            with self.store.transaction():
                for insight in solution.insights:
                    if insight["id"] == prompts.PLACEBO["id"]:
                        continue  # not an insight of the library
                    self.store.record_evidence(insight["id"], task_id=task.id, run_id=run_id,
                                               version=insight.get("version"), retrieved=True, used=True,
                                               success=right)
        self.store.record_attempt(task.id, kind=kind, status=solution.status, run_id=run_id,
                                  program=solution.program, objective=solution.objective,
                                  error=solution.error, tokens=solution.tokens.input + solution.tokens.output)
        return solution

    def _success(self, solution: Solution, answer: float, code_only: bool) -> bool:
        right = self.config.correct(solution.objective, answer)
        if code_only:  # a code insight must make the first program run, not only the final one
            return right and bool(solution.attempts) and solution.attempts[0].status not in REPAIRABLE
        return right

    def _explore(self, task: Task, failed: Solution, run_id: str) -> tuple[str, str] | None:
        """Answer-guided exploration: a program whose solved objective hits the target, and what
        changed when the change is known (an integrality flip), else "".

        First, without a model call, the failed program is run with its variables' domains
        flipped (continuous to integer, integer to continuous): a wrong integrality is a common
        mistake, and the flip costs a solve. Then each model try, sampled, edits the latest program
        that ran (the solve's at first), told how its result compares with the target; a try that
        errors or writes the target leaves the chain where it was."""
        answer = float(task.answer)
        program, outcome = failed.program or failed.model_text, outcome_line(failed.status, failed.objective, answer)
        if self.config.flip_integrality and failed.status in ("optimal", "feasible"):
            for change, variant in integrality_variants(program):
                result = self.runner.run(variant)
                self.store.record_attempt(task.id, kind="explore_integrality", status=result.status.value,
                                          run_id=run_id, program=variant, objective=result.objective,
                                          error=result.error)
                if result.ok and self.config.correct(result.objective, answer):
                    return variant, change
        for attempt in range(self.config.explore_tries):
            # sampled from the first try: at temperature 0 the model gave the program back unchanged
            # in 15 of 22 training problems (benchmarks/explore_ab.py), which cannot reach the target
            llm: Any = self.ledger.sampling(attempt + 1, self.config.sample_temperature)
            messages, sha = prompts.render("explore", problem=task.text, target=f"{answer:g}", outcome=outcome,
                                           program=program)
            reply = llm.complete(messages, prompt_name="explore", prompt_sha=sha,
                                 max_tokens=self.settings.max_tokens_program,
                                 context=CallContext(run_id=run_id, task_id=task.id, node="explore"))
            candidate, _ = normalize_for(extract_code(reply.text), task.text)
            if hardcodes(candidate, answer, task.text):
                self.store.record_attempt(task.id, kind="explore", status="rejected: writes the target value",
                                          run_id=run_id, program=candidate)
                continue
            result = self.runner.run(candidate)
            self.store.record_attempt(task.id, kind="explore", status=result.status.value, run_id=run_id,
                                      program=candidate, objective=result.objective, error=result.error)
            if result.ok and self.config.correct(result.objective, answer):
                return candidate, ""
            if result.ok or result.status.value in ("infeasible", "unbounded", "infeasible_or_unbounded"):
                program, outcome = candidate, outcome_line(result.status.value, result.objective, answer)
        return None

    def _integrality(self, task: Task, failed: Solution, right: str, change: str, run_id: str) -> list[InsightDraft]:
        """The draft after an integrality flip: the change itself is known, so the explanation and
        the example state it; the model is asked only when the lesson applies (the condition),
        which is what a small model could not isolate from a whole-program contrast."""
        messages, sha = prompts.render("integrality_condition", problem=task.text, change=change)
        reply = self.ledger.complete(messages, prompt_name="integrality_condition", prompt_sha=sha, max_tokens=80,
                                     context=CallContext(run_id=run_id, task_id=task.id, node="integrality_condition"))
        condition = " ".join(reply.text.strip().strip('"').split())
        if not condition.lower().startswith("when") or specific(condition, task.text):
            return []
        integer = change.endswith("integer")  # "made the continuous variables integer", or "... continuous"
        explanation = (
            "declare these quantities with domain=pyo.NonNegativeIntegers; the common mistake is continuous "
            "variables, whose optimum is fractional and differs from the whole-number optimum" if integer else
            "declare these quantities with domain=pyo.NonNegativeReals; the common mistake is integer variables "
            "where fractional amounts are allowed, which makes the optimum worse")
        example = diff_example(failed.program, right) or (
            "wrong: domain=pyo.NonNegativeReals right: domain=pyo.NonNegativeIntegers" if integer else
            "wrong: domain=pyo.NonNegativeIntegers right: domain=pyo.NonNegativeReals")
        draft = InsightDraft(stage="general_formulation", level1="variables", level2="integrality",
                             condition=condition, explanation=explanation, example=example)
        return [draft]

    def _extract(self, task: Task, failed: Solution, right: str, run_id: str) -> list[InsightDraft]:
        labels = self._label_lines(with_stage=True)
        outcome = f"status {failed.status}" + (f", objective {failed.objective:g}" if failed.objective is not None else "")
        diff = diff_example(failed.program, right, max_lines=6, max_chars=800) or "(only the layout)"
        return self._drafts("extract", task, run_id, (failed.program, right),
                            outcome=outcome, wrong=failed.program, right=right, labels=labels, diff=diff)

    def _extract_code(self, task: Task, fixed: Solution, run_id: str) -> list[InsightDraft]:
        broken = next(a for a in fixed.attempts if a.status in REPAIRABLE)
        labels = self._label_lines(with_stage=False, stage="code_implementation")
        return [d for d in self._drafts("extract_code", task, run_id, (broken.program, fixed.program),
                                        error=(broken.error or broken.status)[-1200:], right=fixed.program,
                                        labels=labels) if d.stage.value == "code_implementation"]

    def _label_lines(self, *, with_stage: bool, stage: str | None = None) -> str:
        """The taxonomy labels (of one stage, or all) for an extraction prompt, one per line."""
        return "\n".join((f"{lab.stage.value} / " if with_stage else "") + f"{lab.level1} / {lab.level2}"
                         for lab in self.store.labels() if (stage is None or lab.stage.value == stage)
                         and not {canonical(lab.level1), canonical(lab.level2)} & _PLACEHOLDER_LABELS)

    def _drafts(self, step: str, task: Task, run_id: str, programs: tuple[str, str], **kwargs: str) -> list[InsightDraft]:
        """Drafts from one extraction call, mended where the model left the template's placeholders
        (see ``_mend``) and dropped where they still say nothing. ``programs`` is (wrong, right)."""
        messages, sha = prompts.render(step, problem=task.text, **kwargs)
        reply = self.ledger.complete(messages, prompt_name=step, prompt_sha=sha, max_tokens=500, schema=_Drafts,
                                     context=CallContext(run_id=run_id, task_id=task.id, node=step))
        parsed = reply.parsed if isinstance(reply.parsed, _Drafts) else _lenient(reply.text)
        if not parsed:
            return []
        drafts = [d for d in (self._mend(d, *programs) for d in parsed.insights) if _meaningful(d)]
        return [self._generalize(d, task, run_id) for d in drafts]

    def _generalize(self, draft: InsightDraft, task: Task, run_id: str) -> InsightDraft:
        """A condition that repeats numbers from its source problem would only ever match that
        problem: ask once for it in general words (the counterfactual check still follows)."""
        if not specific(draft.condition, task.text):
            return draft
        condition = self.general_condition(draft.condition, draft.explanation,
                                           CallContext(run_id=run_id, task_id=task.id, node="generalize"))
        if not condition or specific(condition, task.text):
            return draft
        return draft.model_copy(update={"condition": condition})

    def general_condition(self, condition: str, explanation: str, context: CallContext) -> str:
        """One ``generalize`` call: the condition rewritten in general words (may be empty)."""
        return self.rewrite_condition("generalize", context, max_tokens=80, condition=condition,
                                      explanation=explanation)

    def rewrite_condition(self, prompt_name: str, context: CallContext, *, max_tokens: int, **fields: str) -> str:
        """One call of a prompt that answers with a condition only; the condition, on one line
        and unquoted (may be empty)."""
        messages, sha = prompts.render(prompt_name, **fields)
        reply = self.ledger.complete(messages, prompt_name=prompt_name, prompt_sha=sha, max_tokens=max_tokens,
                                     context=context)
        return " ".join(reply.text.strip().strip('"').split())

    def _mend(self, draft: InsightDraft, wrong: str, right: str) -> InsightDraft:
        """A small model often copies the prompt's placeholders. Labels copied from the template
        become the taxonomy label (of the draft's stage) whose definition is nearest to the
        draft's text; an example with nothing in it ("wrong: ... right: ...") becomes the lines
        that differ between the wrong and the right program."""
        update: dict[str, str] = {}
        if {canonical(draft.level1), canonical(draft.level2)} & _PLACEHOLDER_LABELS:
            near = self.retriever.labels_for(f"{draft.condition} {draft.explanation}", 100)
            label = next((lab for lab in near if lab[0] == draft.stage.value), None)
            if label is not None:
                update.update(level1=label[1], level2=label[2])
        if not _informative(draft.example):
            example = diff_example(wrong, right)
            if example:
                update["example"] = example
        return draft.model_copy(update=update) if update else draft

    def near_duplicate(self, insight: Insight) -> Insight | None:
        """A verified insight that says nearly the same: its condition within ``merge_distance``
        of this one's, or, under the same taxonomy label, its whole lesson (condition and
        explanation) within it. Conditions alone miss a lesson learned twice in other words
        ("the problem involves counting" against "when ... counting, use integer variables")."""
        hits = [h for h in self.index.recall(insight.condition, k=3, stage=insight.stage)
                if h.insight_id != insight.id and h.distance <= self.config.merge_distance]
        if hits:
            return self.store.get(hits[0].insight_id)
        label = (insight.stage, insight.level1, insight.level2)
        peers = [i for i in self.store.list(status=Status.VERIFIED)
                 if i.id != insight.id and (i.stage, i.level1, i.level2) == label]
        if not peers:
            return None
        vectors = self.index.embedder.embed([_lesson(insight), *(_lesson(i) for i in peers)])
        distances = 1.0 - vectors[1:] @ vectors[0]
        best = int(distances.argmin())
        return peers[best] if distances[best] <= self.config.merge_distance else None

    def merge(self, insight: Insight, run_id: str) -> int:
        """Merge a verified insight with a near-duplicate; returns 1 when a merge replaced them."""
        other = self.near_duplicate(insight)
        if other is None:
            return 0
        members = [insight, other]
        sources = sorted({t for m in members for t in m.provenance.source_tasks})
        if len(self.store.answered_tasks(sources)) < len(sources):  # e.g. an imported insight's sources
            return 0  # a merge could not be re-verified on them
        lessons = prompts.format_insights([insight_dict(m) for m in members])
        messages, sha = prompts.render("merge", lessons=lessons, stage=insight.stage.value,
                                       level1=insight.level1, level2=insight.level2)
        reply = self.ledger.complete(messages, prompt_name="merge", prompt_sha=sha, max_tokens=400, schema=InsightDraft,
                                     context=CallContext(run_id=run_id, node="merge"))
        if not isinstance(reply.parsed, InsightDraft):
            return 0
        merged = self.store.add_insight(reply.parsed, provenance={
            "source_tasks": sources, "model": self.settings.model_name,
            "prompt_version": f"merge:{sha}", "run_id": run_id})
        wins = 0
        for task_id in sources:  # re-verify on every source problem before replacing the members
            task = self.store.get_task(task_id)
            solution = self.solve(task, run_id, "verify_merge", 0, [insight_dict(merged)],
                                  without=[m.id for m in members])  # the lesson alone, not its members
            wins += self.config.correct(solution.objective, float(task.answer))
        ok = wins == len(sources)
        with self.store.transaction():
            self.store.revise(merged.id, evidence={"merge_of": [m.id for m in members], "sources": len(sources),
                                                   "with": wins}, reason="merge check")
            self.store.set_status(merged.id, Status.VERIFIED if ok else Status.RETIRED)
            if ok:
                for m in members:  # the merged insight's evidence names them ("merge_of")
                    self.store.set_status(m.id, Status.RETIRED)
        if ok:
            self.index.upsert([self.store.get(merged.id), *[self.store.get(m.id) for m in members]])
        return int(ok)

    def recheck(self, insight: Insight, run_id: str) -> dict[str, Any]:
        """The counterfactual check again, on a verified insight's source problems held with an
        answer: k solves each without it (the rest of the library stays), with it, and with the
        placebo lesson in its place. It stays verified only when, summed over those problems, it
        beats both others by the margin with at least one success; otherwise it is retired. The
        evidence becomes a new version either way. Returns the evidence.

        Raises:
            InputError: the insight is not verified, or no source problem has an answer here.
        """
        if insight.status != Status.VERIFIED:
            raise InputError(f"{insight.id} is {insight.status.value}; only a verified insight is rechecked")
        tasks = self.store.answered_tasks(insight.provenance.source_tasks)
        if not tasks:
            raise InputError(f"{insight.id}'s source problems have no answer in this library: give the training "
                             "files they came from (`alphaopt library recheck --answers FILE`)")
        code_only = insight.stage.value == "code_implementation"
        arms = {"without": [], "with": [insight_dict(insight)],
                "placebo": [{**prompts.PLACEBO, "stage": insight.stage.value}]}
        counts = dict.fromkeys(arms, 0)
        for task in tasks:
            for sample in range(self.config.k):
                for arm, forced in arms.items():
                    solution = self.solve(task, run_id, f"recheck_{arm}", sample, forced, without=[insight.id])
                    counts[arm] += self._success(solution, float(task.answer), code_only)
        margin = self.config.accept_margin
        kept = counts["with"] >= max(counts["without"], counts["placebo"]) + margin and counts["with"] >= 1
        evidence = {**counts, "k": self.config.k, "sources": len(tasks), "code_only": code_only, "recheck": True,
                    "kept": kept}
        with self.store.transaction():
            self.store.revise(insight.id, evidence=evidence, reason="recheck against the run without it and a placebo")
            if not kept:
                self.store.set_status(insight.id, Status.RETIRED)
        if not kept:
            self.index.remove(insight.id)
        return evidence

    def _retire_leftovers(self, task: Task) -> None:
        """Candidates from an interrupted attempt at this task never stay half-verified."""
        for insight in self.store.list(status=Status.CANDIDATE):
            if task.id in insight.provenance.source_tasks:
                self.store.set_status(insight.id, Status.RETIRED)


def _lesson(insight: Insight) -> str:
    """The text two insights are compared on for a merge: condition and explanation."""
    return f"{insight.condition.strip()}: {insight.explanation.strip()}"


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


def outcome_line(status: str, objective: float | None, answer: float) -> str:
    """How a program's result compares with the target, as the exploration prompt says it."""
    if objective is None or status not in ("optimal", "feasible"):
        return f"no optimal solution (status: {status.replace('_', ' ')})"
    side = "lower" if objective < answer else "higher"
    return f"the optimal objective {objective:g}, {side} than the correct value"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _repaired(solution: Solution) -> bool:
    """A run error that the repair loop fixed: an error attempt followed by a program that ran."""
    statuses = [a.status for a in solution.attempts]
    return any(s in REPAIRABLE for s in statuses) and statuses[-1] not in REPAIRABLE


_PLACEHOLDER_LABELS = {"category", "subcategory"}  # the prompt's own example values, copied


def _meaningful(draft: InsightDraft) -> bool:
    """Drop drafts that say nothing: labels, a condition or an explanation copied from the prompt's
    template, or an example with nothing in it."""
    if {canonical(draft.level1), canonical(draft.level2)} & _PLACEHOLDER_LABELS:
        return False
    if "..." in draft.condition or "..." in draft.explanation:  # the template's own text, copied
        return False
    return _informative(draft.example)


_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")


def specific(condition: str, problem: str) -> bool:
    """True when the condition repeats a number (of two or more digits) from the problem text."""
    numbers = {n for n in _NUMBER.findall(problem) if len(n.replace(".", "").replace(",", "")) >= 2}
    return any(n in numbers for n in _NUMBER.findall(condition))


def _informative(example: str) -> bool:
    """False for an example with no content: its 'wrong' and 'right' parts empty, dots or equal."""
    parts = re.split(r"\b(?:wrong|right)\s*:", example, flags=re.IGNORECASE)
    if len(parts) != 3:
        return bool(example.strip(" .…"))
    wrong, right = (" ".join(p.split()).strip(" ,;.…") for p in parts[1:])
    return bool(wrong) and bool(right) and wrong != right


def diff_example(wrong: str, right: str, *, max_lines: int = 3, max_chars: int = 400) -> str:
    """'wrong: <lines only in the wrong program> right: <lines only in the right one>', from a line diff."""
    import difflib

    removed, added = [], []
    for line in difflib.ndiff(wrong.splitlines(), right.splitlines()):
        text = line[2:].strip()
        if not text or text.startswith("#"):
            continue
        if line.startswith("- "):
            removed.append(text)
        elif line.startswith("+ "):
            added.append(text)
    if not added:
        return ""
    example = f"wrong: {'; '.join(removed[:max_lines]) or '(missing)'} right: {'; '.join(added[:max_lines])}"
    return example[:max_chars]


def _lenient(text: str) -> _Drafts | None:
    """Parse drafts from a reply that wrapped its JSON in prose or a code fence."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        return _Drafts.model_validate_json(text[start : end + 1])
    except ValidationError:
        return None

