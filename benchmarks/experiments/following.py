"""Does the model write what a lesson tells it? Told lessons against the programs written with them.

Run with: python -m benchmarks.experiments.following --from .alphaopt/s22r --from .alphaopt/s21l

Reads the checks that learning ran in the given homes (their ``library.db``, no model call):
every candidate whose lesson the code wrote (a known edit's: ``prompts.EDIT_LESSONS``, or an
integrality flip's), and each solve of its source problem that had it in the prompt, told (the
check's "with" arm and rechecks). Where the code makes the lesson's edit (a quoted relation
edit whose quote the problem matches: ``agent/applied.py``), the program that ran holds the
edit whatever the model wrote: those lessons are left out. A solve **followed** the lesson
when its program holds the code of the example's right part (each part, for an example of
several), spaces aside, and, for a dropped constraint, no longer holds it. **Right** is the
answer within the one tolerance (``alphaopt.answers``). Homes copied from one another, and
later runs that replayed the same model calls from the cache, hold the same solves: a program
written for a lesson on its problem is counted once. The table (printed, and in
``benchmarks/results/<run>/summary.md``) gives, per kind of lesson, the candidates, the told
solves, how many followed it, how many were right, and how many were right when they followed
it and when they did not.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections import defaultdict
from pathlib import Path
from typing import Any

from alphaopt.agent import applied, prompts
from alphaopt.answers import ANSWER
from benchmarks.stored import ab_arguments

#: The kinds of lessons the code writes, by the opening words of their explanation.
KINDS = {**{kind: template.split("{")[0].split(",")[0].strip() for kind, (_, _, template) in
            prompts.EDIT_LESSONS.items()}, "integrality": "declare these quantities with domain="}
_TOLD_KINDS = ("verify_with", "recheck_with")  # the "with" arms that tell the lesson (untold: verify_untold)
_NOTHING = "(no such constraint)"


def kind_of(explanation: str) -> str | None:
    """The kind of a code-written lesson, from its explanation; None for a lesson a model wrote."""
    return next((kind for kind, opening in KINDS.items() if explanation.startswith(opening)), None)


def followed(example: str, program: str) -> bool:
    """Whether a program holds the code of the example's right part (``wrong: ... right: ...``,
    parts joined by "; "), spaces aside; for a dropped constraint, whether it no longer holds
    the wrong part."""
    parts = re.fullmatch(r"\s*wrong:\s*(.*?)\s+right:\s*(.*?)\s*", example, re.DOTALL)
    if parts is None:
        return False
    code = _bare(program)
    wrong, right = parts.groups()
    if right.strip() == _NOTHING:
        return _bare(wrong) not in code
    return all(_bare(piece) in code for piece in right.split("; ") if piece.strip())


def _bare(code: str) -> str:
    return re.sub(r"\s+", "", code)


def told_solves(homes: list[Path]) -> list[dict[str, Any]]:
    """Each told solve of a code-written lesson's source problem, once: the lesson's key, kind
    and example, whether the program followed it and whether it was right."""
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for home in homes:
        with sqlite3.connect(home / "library.db") as db:
            tasks = {i: (text, answer) for i, text, answer in db.execute("select id, text, answer from training_tasks")}
            answers = {i: answer for i, (_, answer) in tasks.items()}
            lessons: dict[str, tuple[str, str, str]] = {}
            made: set[tuple[str, str]] = set()  # (lesson, problem) where the code makes the edit
            for insight_id, condition, explanation, example, sources in db.execute(
                    "select insight_id, condition, explanation, example, source_tasks from insight_versions "
                    "order by version"):
                kind = kind_of(explanation or "")
                if kind is not None and (example or "").strip():
                    lessons.setdefault(insight_id, (kind, example, explanation))
                    lesson = {"id": insight_id, "condition": condition, "example": example}
                    made |= {(insight_id, t) for t in json.loads(sources or "[]")
                             if applied.edits([lesson], tasks.get(t, ("", None))[0])}
            evidence = db.execute(
                "select insight_id, task_id, run_id, created_at from retrieval_evidence where used = 1").fetchall()
            attempts: dict[tuple[str, str], list[tuple[str, str, str, float | None, str]]] = defaultdict(list)
            for task_id, run_id, kind, program, objective, created in db.execute(
                    "select task_id, run_id, kind, program, objective, created_at from attempts order by created_at"):
                attempts[(task_id, run_id)].append((kind, program or "", created, objective, task_id))
            for insight_id, task_id, run_id, created in evidence:
                if insight_id not in lessons or answers.get(task_id) is None or (insight_id, task_id) in made:
                    continue  # not a lesson of the code's, no answer, or the code makes its edit: not the model's
                after = next((a for a in attempts[(task_id, run_id)] if a[2] >= created), None)
                if after is None or not after[0].startswith(_TOLD_KINDS):
                    continue
                kind, example, explanation = lessons[insight_id]
                # the same program for the same lesson is one solve: a copied home's, or a later run's
                # that replayed the same model call from the cache
                key = (task_id, explanation + example, after[1])
                rows.setdefault(key, {"lesson": f"{home.name}/{insight_id}", "task": task_id, "kind": kind,
                                      "example": example, "followed": followed(example, after[1]),
                                      "right": after[3] is not None and ANSWER.correct(after[3], answers[task_id])})
    return list(rows.values())


def table(rows: list[dict[str, Any]]) -> str:
    """The summary table, one line per kind of lesson and a total."""
    lines = ["| lesson kind | candidates | told solves | followed | right | right when followed | right when not |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[row["kind"]].append(row)
    for kind, group in [*sorted(groups.items()), ("all", rows)]:
        yes = [r for r in group if r["followed"]]
        no = [r for r in group if not r["followed"]]
        lines.append(f"| {kind} | {len({(r['task'], r['example']) for r in group})} | {len(group)} | {len(yes)} | "
                     f"{sum(r['right'] for r in group)} | {sum(r['right'] for r in yes)} of {len(yes)} | "
                     f"{sum(r['right'] for r in no)} of {len(no)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = ab_arguments(argv, __doc__, "following")
    rows = told_solves(args.homes)
    text = table(rows)
    print(text)
    out = Path(__file__).parents[1] / "results" / args.run
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.md").write_text(
        f"# Told lessons followed\n\nHomes: {', '.join(str(h) for h in args.homes)}\n\n{text}\n\n"
        + "\n".join(f"- {r['lesson']} on {r['task']} ({r['kind']}): followed {r['followed']}, right {r['right']}"
                    for r in rows) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
