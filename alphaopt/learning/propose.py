"""Insights a person offers, verified on training problems as learned insights are.

Run with: alphaopt library propose proposals.jsonl --limit 6

Modeling knowledge does not need to be hard-wired in code (a text heuristic, a prompt line): it
can be offered to the library and kept only if it helps. The file holds one insight a line,
either in the short form a person writes::

    {"stage": "general formulation", "level1": "objective", "level2": "goal sense",
     "condition": "when ...", "explanation": "...", "example": "wrong: ... right: ...",
     "note": "why it is offered", "definition": "what the label covers (for a new label)"}

(``example``, ``note`` and ``definition`` optional), or in the form ``alphaopt library export``
writes (a header line optional). An export's ids, statuses, provenance, history and timestamps are not kept: each
offered insight is added as a new candidate (one transaction for the whole file) whose evidence
says ``origin: "proposed"``, with the file's id as ``proposed_as`` and its ``note`` (the
record's ``provenance.evidence.note``, else its ``reason``). An offer whose label and text are
those of a candidate already in the library (an earlier run stopped before checking it) is
checked as that candidate; one that is already verified is not checked again.

Each candidate is then checked on the training problems the library holds with an answer:

1. **recall**: retrieval runs on each problem's text as a user's solve gets it (labels, vector
   recall, the source gate, the applicability check), on a scratch copy of the library in which
   the candidate is verified (``alphaopt.learning.scratch``); the first ``limit`` problems
   that retrieval chooses it for, the nearest to its condition first, are checked on. A
   candidate no problem recalls stays a candidate: there is nothing to check it on.
2. **check**: on each such problem, the learner's counterfactual check
   (``alphaopt.learning.verify``): ``k`` solves without it, with it, and with a placebo lesson.
   It **wins** a problem when the check accepts it there (with it beats without it and the
   placebo by the margin). It **loses** a problem when it has fewer successes with it than
   without it (the problem was right without it and wrong with it): where the check stopped
   its "with" solves early (they could no longer reach the margin), the rest are solved until
   that is decided.
3. **verdict** (one transaction per candidate, so a run stopped halfway leaves the candidates
   decided so far decided):

   - it lost on at least one problem: **retired** (a lesson that makes a right answer wrong is
     not kept, whatever else it helps), with the evidence;
   - it won on at least one problem and lost on none: **verified**, with the evidence, and the
     problems it won on as its source problems (as a learned insight's, so that retrieval
     recalls it for problems like them and ``alphaopt library recheck`` can check it again);
   - otherwise (no problem turned right, none turned wrong): it stays a **candidate**, with the
     evidence and why.

The whole job is recorded as a learning run (``job: "propose"``) with each candidate's outcome
in its counters; every solve is recorded as an attempt under it, as the learner records its own.
A verified proposal is not merged with near-duplicates here (``alphaopt library evolve`` does).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from alphaopt.agent.retrieval import insight_dict
from alphaopt.agent.state import Solution
from alphaopt.errors import InputError
from alphaopt.learning.contrasts import Criterion
from alphaopt.learning.learn import Learner, solver_of
from alphaopt.learning.scratch import Scratch
from alphaopt.learning.verify import Verdict
from library import ImportLineError, Insight, InsightDraft, Status, Task, jsonl

ORIGIN = "proposed"
VERIFIED, RETIRED, CANDIDATE, ALREADY = "verified", "retired", "candidate", "already verified"
NOTHING_TO_CHECK = "no training problem recalls it: nothing to check it on"
FORMAT = ("each line one insight: {stage, level1, level2, condition, explanation, example?, note?, definition?}, "
          "or as `alphaopt library export` writes it")
_SHORT_KEYS = {"stage", "level1", "level2", "condition", "explanation", "example", "note", "definition"}


@dataclass(frozen=True)
class Offer:
    """One insight of a proposal file."""

    line: int
    draft: InsightDraft
    display: str
    definition: str
    proposed_as: str  # the id the file gave it
    note: str | None = None


def read_offers(path: Path) -> list[Offer]:
    """The insights offered in ``path``, all validated before anything is written.

    Raises:
        InputError: No such file, a line that does not parse (named), or no insight in it.
    """
    if not path.is_file():
        raise InputError(f"{path}: no such file. Give a JSONL file of proposed insights ({FORMAT}).")
    short = _short_form(path)
    if short is not None:
        return short
    try:
        _, records = jsonl.read(path)
        offers = [Offer(number, InsightDraft(stage=r.stage, level1=r.level1, level2=r.level2, condition=r.condition,
                                             explanation=r.explanation, example=r.example),
                        r.label.display, r.label.definition, r.id, _note(r.provenance.evidence.get("note"), r.reason))
                  for number, r in records]
    except ImportLineError as exc:
        raise InputError(f"{path}, {exc}. Fix that line ({FORMAT}); nothing was added.") from None
    except ValidationError as exc:  # a label the library cannot store (blank once trimmed)
        raise InputError(f"{path}: not a valid insight ({exc.errors()[0]['msg']}). Fix its label; nothing was "
                         "added.") from None
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text. Give a JSONL file of proposed insights ({FORMAT}).") from None
    if not offers:
        raise InputError(f"{path} holds no insight. Give a JSONL file of proposed insights ({FORMAT}).")
    return offers


def _short_form(path: Path) -> list[Offer] | None:
    """The offers of a file in the short form (every line an object with a condition and no
    export fields), or None when it is not one (then it is read as an export).

    Raises:
        InputError: A short-form line that is not a valid insight (named), or an unknown key.
    """
    try:
        lines = [(n, line) for n, line in enumerate(path.read_text().splitlines(), 1) if line.strip()]
        objects = [(n, json.loads(line)) for n, line in lines]
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not objects or not all(isinstance(o, dict) and "condition" in o and "status" not in o and "id" not in o
                              for _, o in objects):
        return None
    offers = []
    for n, o in objects:
        unknown = sorted(set(o) - _SHORT_KEYS)
        if unknown:
            raise InputError(f"{path}, line {n}: unknown keys {unknown} ({FORMAT}); nothing was added.")
        try:
            draft = InsightDraft(**{k: o[k] for k in ("stage", "level1", "level2", "condition", "explanation",
                                                      "example") if k in o})
        except ValidationError as exc:
            problem = exc.errors()[0]
            raise InputError(f"{path}, line {n}: {'.'.join(str(p) for p in problem['loc']) or 'the insight'}: "
                             f"{problem['msg']} ({FORMAT}); nothing was added.") from None
        offers.append(Offer(n, draft, draft.level2, str(o.get("definition") or ""), f"line {n}", _note(o.get("note"))))
    return offers


def _note(*values: Any) -> str | None:
    return next((str(v).strip() for v in values if isinstance(v, str) and v.strip()), None)


@dataclass
class ProposeConfig:
    """How much checking each proposed insight gets."""

    limit: int = 6  # training problems that recall it, checked on at most (the learner's config gives k)


@dataclass
class Outcome:
    """What became of one proposed insight."""

    insight_id: str
    line: int
    condition: str
    verdict: str  # verified, retired, candidate or "already verified"
    reason: str
    checked: list[str] = field(default_factory=list)
    wins: list[str] = field(default_factory=list)
    losses: list[str] = field(default_factory=list)


@dataclass
class ProposeSummary:
    """What one propose run did."""

    run_id: str
    outcomes: list[Outcome] = field(default_factory=list)

    def count(self, verdict: str) -> int:
        return sum(o.verdict == verdict for o in self.outcomes)

    def as_dict(self) -> dict[str, Any]:
        return {"proposed": len(self.outcomes), **{v: self.count(v) for v in (VERIFIED, RETIRED, CANDIDATE, ALREADY)},
                "outcomes": [asdict(o) for o in self.outcomes]}


def answered_tasks(learner: Learner) -> list[Task]:
    """The training problems the library holds with an answer, by id.

    Raises:
        InputError: It holds none.
    """
    tasks = [t for t in learner.store.tasks() if t.answer is not None]
    if not tasks:
        raise InputError("This library holds no training problem with a known answer, so nothing can check a "
                         "proposed insight: fill it first with `alphaopt learn FILE` (same --home).")
    return tasks


class Proposer:
    """Adds offered insights as candidates and checks each (see the module docstring)."""

    def __init__(self, learner: Learner, config: ProposeConfig | None = None) -> None:
        self.learner = learner
        self.store, self.index = learner.store, learner.index
        self.config = config or ProposeConfig()
        self.k = learner.config.k
        # solves that do not depend on the candidate, per problem: dropped when one is verified (the
        # library, and so what the other arms retrieve, changed)
        self._without: dict[str, list[Solution]] = {}
        self._task_vectors: dict[str, Any] = {}  # each problem's text embedded once per run
        self._placebos: dict[str, dict[tuple[str, ...], list[Solution]]] = {}

    def propose(self, offers: Sequence[Offer], *, source: str = "", command: str = "",
                on_event: Callable[[str], None] | None = None) -> ProposeSummary:
        """Add ``offers`` as candidates (one transaction) and check each; returns what became of them.

        Raises:
            InputError: The library holds no training problem with an answer (nothing is added).
        """
        say = on_event or (lambda line: None)
        tasks = answered_tasks(self.learner)
        run = self.store.start_run({"command": command, "job": "propose", "file": source, "pid": os.getpid(),
                                    **solver_of(self.learner.settings), "k": self.k, **asdict(self.config)})
        summary = ProposeSummary(run_id=run.id)
        try:
            candidates = self._add(offers, source, run.id, summary, say)
            say(f"Checking {len(candidates)} proposed insight(s) on the training problems that recall them "
                f"({len(tasks)} with a known answer; at most {self.config.limit} each, k={self.k})")
            with Scratch(self.learner.settings, self.store, self.index) as scratch:
                for offer, insight in candidates:
                    summary.outcomes.append(self._check(offer, insight, tasks, scratch, run.id, say))
                    self.store.update_run(run.id, counters=summary.as_dict(), tokens=self.learner.ledger.spent)
        except BaseException as exc:
            status = "stopped" if isinstance(exc, KeyboardInterrupt) else "failed"
            self.store.finish_run(run.id, status=status, counters={**summary.as_dict(), "error": repr(exc)},
                                  tokens=self.learner.ledger.spent)
            raise
        self.store.finish_run(run.id, counters=summary.as_dict(), tokens=self.learner.ledger.spent)
        return summary

    # -- adding -------------------------------------------------------------------------------

    def _add(self, offers: Sequence[Offer], source: str, run_id: str, summary: ProposeSummary,
             say: Callable[[str], None]) -> list[tuple[Offer, Insight]]:
        """The candidates to check: new ones added in one transaction (and indexed), and those the
        library holds already with the same label and text."""
        held = {_content(i): i for i in self.store.list(status=[Status.CANDIDATE, Status.VERIFIED])}
        found: list[tuple[Offer, Insight | None]] = []
        lines: dict[tuple[Any, ...], int] = {}
        for offer in offers:
            if _content(offer.draft) in lines:
                say(f"line {offer.line} repeats line {lines[_content(offer.draft)]}: skipped")
                continue
            lines[_content(offer.draft)] = offer.line
            same = held.get(_content(offer.draft))
            if same is not None and same.status == Status.VERIFIED:
                say(f"{same.id} (line {offer.line}): already verified in this library; not checked again")
                summary.outcomes.append(Outcome(same.id, offer.line, same.condition, ALREADY,
                                                "already verified in this library"))
                continue
            if same is not None:
                say(f"{same.id} (line {offer.line}): already a candidate in this library; checking it")
            found.append((offer, same))
        with self.store.transaction(reason=f"propose {sum(i is None for _, i in found)} insight(s) from {source}"):
            added = [(offer, insight or self._add_one(offer, source, run_id)) for offer, insight in found]
        self.index.upsert([insight for _, insight in added])
        return added

    def _add_one(self, offer: Offer, source: str, run_id: str) -> Insight:
        d = offer.draft
        self.store.ensure_label(d.stage, d.level1, d.level2, offer.display or None, offer.definition or None)
        evidence: dict[str, Any] = {"origin": ORIGIN, "proposed_as": offer.proposed_as,
                                    "proposed_in": f"{source} line {offer.line}"}
        if offer.note:
            evidence["note"] = offer.note
        return self.store.add_insight(d, provenance={"run_id": run_id, "evidence": evidence})

    # -- checking -----------------------------------------------------------------------------

    def _check(self, offer: Offer, insight: Insight, tasks: Sequence[Task], scratch: Scratch, run_id: str,
               say: Callable[[str], None]) -> Outcome:
        say(f"{insight.id} (line {offer.line}): {_short(insight.condition, 100)}")
        problems = self._recalling(insight, tasks, scratch, run_id)
        if not problems:
            say(f"  {NOTHING_TO_CHECK}; it stays a candidate")
            self._keep_candidate(insight, {"run_id": run_id, "checked": [], "wins": [], "losses": []},
                                 NOTHING_TO_CHECK)
            self._drop_from(scratch, insight.id)
            return Outcome(insight.id, offer.line, insight.condition, CANDIDATE, NOTHING_TO_CHECK)
        say(f"  recalled by {len(problems)} training problem(s) (at most {self.config.limit}): "
            + ", ".join(t.id for t in problems))
        criterion: Criterion = "runs_first" if insight.stage.value == "code_implementation" else "final"
        checks: dict[str, dict[str, Any]] = {}
        wins: list[str] = []
        losses: list[str] = []
        for task in problems:
            verdict = self._check_on(insight, task, run_id, criterion)
            e = verdict.evidence
            lost = e["with"] < e["without"]
            checks[task.id] = {**e, "won": verdict.accepted, "lost": lost}
            wins += [task.id] * verdict.accepted
            losses += [task.id] * lost
            placebo = f", placebo {e['placebo']}" if "placebo" in e else ""
            say(f"  {task.id}: right without it {e['without']}, with it {e['with']}{placebo} (of {e['k']}) -> "
                + ("win" if verdict.accepted else "loss" if lost else "no change"))
        record = {"run_id": run_id, "criterion": criterion, "checked": [t.id for t in problems], "wins": wins,
                  "losses": losses, "problems": checks}
        totals = {"without": sum(c["without"] for c in checks.values()),
                  "with": sum(c["with"] for c in checks.values()), "k": self.k, "criterion": criterion,
                  "source": ORIGIN}
        outcome = Outcome(insight.id, offer.line, insight.condition, CANDIDATE, "", [t.id for t in problems], wins,
                          losses)
        if losses:
            outcome.verdict = RETIRED
            outcome.reason = (f"made {len(losses)} training problem(s) wrong that were right without it: "
                              + ", ".join(losses))
            with self.store.transaction(reason=f"proposed {insight.id} retired: {outcome.reason}"):
                self.store.retire(insight.id, reason=outcome.reason, run_id=run_id,
                                  evidence={**totals, "proposed_check": record})
            self.index.remove(insight.id)
            self._drop_from(scratch, insight.id)
        elif wins:
            outcome.verdict = VERIFIED
            outcome.reason = f"turned {len(wins)} training problem(s) right and none wrong"
            note = f"verified on proposed training problems: {outcome.reason}"
            with self.store.transaction(reason=f"proposed {insight.id} verified: {outcome.reason}"):
                current = self.store.get(insight.id)
                self.store.revise(insight.id, source_tasks=wins, run_id=run_id, reason=note,
                                  evidence={**current.provenance.evidence, **totals, "proposed_check": record})
                self.store.set_status(insight.id, Status.VERIFIED)
            self.index.upsert([self.store.get(insight.id)])
            self._without.clear()  # retrieval may choose it now: the other arms' solves are out of date
            self._placebos.clear()
        else:
            outcome.reason = f"turned none of the {len(problems)} checked training problem(s) right (nor wrong)"
            self._keep_candidate(insight, {**totals, **record}, outcome.reason)
            self._drop_from(scratch, insight.id)
        say(f"  -> {outcome.verdict}: {outcome.reason}")
        return outcome

    def _recalling(self, insight: Insight, tasks: Sequence[Task], scratch: Scratch, run_id: str) -> list[Task]:
        """The first ``limit`` problems retrieval chooses the insight for, were it verified: on the
        scratch copy, through the real recall path (the model's applicability check only where
        recall lists it)."""
        history = [v for v in self.store.versions(insight.id) if not v.is_current]
        record = jsonl.to_record(insight.model_copy(update={"status": Status.VERIFIED}), history,
                                 self.store.label(insight.label))
        scratch.store.import_jsonl(io.StringIO(jsonl.dump_line(record)))  # under the same id
        scratch.index.upsert([scratch.store.get(insight.id)])
        found: list[Task] = []
        for task in self._nearest_first(insight, tasks):
            if len(found) == self.config.limit:
                break
            near = any(i.id == insight.id for i in scratch.retriever.candidates(task.text))
            if near and scratch.chooses(insight.id, task, self.learner.ledger, run_id):
                found.append(task)
        return found

    def _nearest_first(self, insight: Insight, tasks: Sequence[Task]) -> list[Task]:
        """The problems ordered by how near their text is to the insight's condition (then by id), so
        that the limit keeps those the insight speaks to most, from whichever split."""
        embed = self.index.embedder.embed
        missing = [t for t in tasks if t.id not in self._task_vectors]
        if missing:
            self._task_vectors.update(zip([t.id for t in missing], embed([t.text for t in missing]), strict=True))
        condition = embed([insight.condition])[0]
        scores = [float(self._task_vectors[t.id] @ condition) for t in tasks]
        order = sorted(range(len(tasks)), key=lambda i: (-scores[i], tasks[i].id))
        return [tasks[i] for i in order]

    def _check_on(self, insight: Insight, task: Task, run_id: str, criterion: Criterion) -> Verdict:
        """The counterfactual check on one problem, with the "with" solves completed where the
        check stopped them early and they could still show a loss."""
        learner, k = self.learner, self.k
        without = self._without.get(task.id)
        if without is None:
            without = [learner.solve(task, run_id, "solve", sample) for sample in range(k)]
            self._without[task.id] = without
        verdict = learner.checker.check(task, run_id, [insight], without, criterion,
                                        self._placebos.setdefault(task.id, {}))
        e = verdict.evidence
        runs: list[int] = list(e["solves"]["with"])
        before = len(runs)
        forced = [insight_dict(insight)]
        while len(runs) < k and e["without"] > sum(runs) >= e["without"] - (k - len(runs)):
            solution = learner.solve(task, run_id, "verify_with", len(runs), forced, judged=criterion)
            runs.append(int(learner.checker.success(solution, float(task.answer), criterion)))
        if len(runs) > before:
            e["solves"]["with"], e["with"] = runs, sum(runs)
            e["skipped"] = max(int(e.get("skipped", 0)) - (len(runs) - before), 0)
        return verdict

    def _keep_candidate(self, insight: Insight, record: dict[str, Any], reason: str) -> None:
        with self.store.transaction(reason=f"proposed {insight.id} stays a candidate: {reason}"):
            current = self.store.get(insight.id)
            self.store.revise(insight.id, reason=reason, run_id=record.get("run_id"),
                              evidence={**current.provenance.evidence, "proposed_check": record})
        self.index.upsert([self.store.get(insight.id)])

    @staticmethod
    def _drop_from(scratch: Scratch, insight_id: str) -> None:
        """Take a candidate that was not verified out of the scratch copy's retrieval again."""
        scratch.store.set_status(insight_id, Status.RETIRED)
        scratch.index.remove(insight_id)


def _content(item: Insight | InsightDraft) -> tuple[Any, ...]:
    return (item.label, " ".join(item.condition.split()), " ".join(item.explanation.split()),
            " ".join(item.example.split()))


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def table(summary: ProposeSummary, *, width: int = 48) -> list[str]:
    """The run's outcomes as a table: id, condition (short), problems checked, wins, losses, verdict."""
    rows = [("id", "condition", "checked", "wins", "losses", "verdict")]
    rows += [(o.insight_id, _short(o.condition, width), str(len(o.checked)), str(len(o.wins)), str(len(o.losses)),
              o.verdict) for o in summary.outcomes]
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return ["  ".join(cell.rjust(w) if 2 <= c <= 4 else cell.ljust(w) for c, (cell, w) in
                      enumerate(zip(row, widths, strict=True))).rstrip() for row in rows]
