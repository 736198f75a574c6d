"""A lesson given with the program it should change: does the model then carry it out?

Run with: ALPHAOPT_HOME=.alphaopt/s22r python -m benchmarks.experiments.apply_ab --from .alphaopt/s22r

Told a lesson, the model writes its program anew (``following``): the lesson's line is often
there, and other lines change. Here each set of code-written lessons that a learning check told
(as ``following`` takes them, lessons whose edit the code makes left out; the parts of several
known edits together) is given to the model with the very program it was learned from (the
failed solve's program that holds the examples' wrong parts), under a candidate prompt
(``APPLY``, not shipped): change what the lessons say, keep the rest. Two arms, greedy, each
program run and scored: the lessons, and the placebo lesson (``prompts.PLACEBO``) in their
place. Beside them, the check's first told solve (from the home, no model call). Rows go to
``benchmarks/results/<run>/apply_ab.jsonl`` (resumable); the totals are printed.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

from alphaopt.agent import applied, prompts
from alphaopt.agent.run import solver_runner
from alphaopt.config import load_settings
from alphaopt.llm.client import OpenAIClient
from alphaopt.llm.runlog import RunLog
from benchmarks.experiments.following import followed, kind_of
from benchmarks.scoring import Tolerance
from benchmarks.stored import ab_arguments, answer_and_score, record, recorded, results_file

#: The candidate prompt under test (it moves to ``alphaopt/agent/prompts.py`` only if it ships).
APPLY = prompts.PROBLEM + """
This program for the problem:
```python
{program}
```
Lessons learned from similar problems:
{insight}
Apply the lessons to this program: change what they say to change, and keep every other line as \
it is. Answer with the complete corrected program in one ```python block only."""
APPLY_SHA = hashlib.sha256(APPLY.encode()).hexdigest()[:12]
ARMS = ("lesson", "placebo")


def lessons(homes: list[Path]) -> list[dict[str, Any]]:
    """Each set of code-written lessons that one check told on its source problem (a known edit,
    or the parts of several), once per problem text and lessons: their texts, the program they
    were learned from, and the check's first told solve."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for home in homes:
        with sqlite3.connect(home / "library.db") as db:
            tasks = {i: (t, a) for i, t, a in db.execute("select id, text, answer from training_tasks")}
            checked: dict[tuple[str, str], list[dict[str, Any]]] = {}
            for insight_id, condition, explanation, example, sources, run_id in db.execute(
                    "select insight_id, condition, explanation, example, source_tasks, run_id from insight_versions "
                    "where version = 1 order by insight_id"):
                source = (json.loads(sources or "[]") or [None])[0]
                if kind_of(explanation or "") is None or not (example or "").strip() or source not in tasks:
                    continue
                checked.setdefault((source, run_id), []).append(
                    {"id": insight_id, "condition": condition, "explanation": explanation, "example": example})
            for (source, run_id), group in checked.items():
                text, answer = tasks[source]
                key = (text, "".join(g["explanation"] + g["example"] for g in group))
                if answer is None or applied.edits(group, text) or key in found:
                    continue  # no answer, the code makes an edit of theirs, or seen already
                attempts = db.execute("select kind, program, objective from attempts where task_id = ? and run_id = ? "
                                      "order by created_at", (source, run_id)).fetchall()
                wrong = ["".join(_wrong_part(g["example"]).split()) for g in group]
                start = next((p for k, p, _ in attempts if k.startswith("solve") and p
                              and all(w in "".join(p.split()) for w in wrong)), None)
                told = next(((p, o) for k, p, o in attempts if k.startswith("verify_with")), None)
                if start is None or told is None:
                    continue
                found[key] = {"key": f"{home.name}/{'+'.join(g['id'] for g in group)}", "task": source,
                              "problem": text, "answer": answer, "kinds": [kind_of(g["explanation"]) for g in group],
                              "lessons": group, "program": start,
                              "told": {"right": told[1] is not None and Tolerance().correct(told[1], answer),
                                       "followed": all(followed(g["example"], told[0]) for g in group)}}
    return list(found.values())


def _wrong_part(example: str) -> str:
    """The code of an example's wrong part (its first, for an example of several)."""
    return example.split("right:", 1)[0].removeprefix("wrong:").split(";")[0].strip()


def main(argv: list[str] | None = None) -> int:
    args = ab_arguments(argv, __doc__, "apply-ab")
    settings = load_settings()
    tolerance = Tolerance()
    out, done = results_file(args.run, "apply_ab.jsonl", "key")
    llm = OpenAIClient(settings, RunLog(settings.runs_db))
    with solver_runner(settings) as runner:
        for item in lessons(args.homes):
            if item["key"] in done:
                continue
            row: dict[str, Any] = {k: item[k] for k in ("key", "task", "kinds", "answer", "told")}
            for arm, given in (("lesson", item["lessons"]), ("placebo", [prompts.PLACEBO])):
                user = APPLY.format(problem=item["problem"], program=item["program"],
                                    insight=prompts.format_insights(given))
                messages = [{"role": "system", "content": prompts.SYSTEM}, {"role": "user", "content": user}]
                program, row[arm] = answer_and_score(
                    llm, runner, messages, prompt_name="apply_ab", prompt_sha=APPLY_SHA, problem=item["problem"],
                    answer=item["answer"], max_tokens=settings.experimental.max_tokens_program, node="apply_ab",
                    tolerance=tolerance, temperature=0.0)
                row[arm]["followed"] = all(followed(g["example"], program) for g in item["lessons"])
                row[arm]["same_program"] = program.strip() == item["program"].strip()
            record(out, row, ARMS)
    rows = recorded(out)
    told = sum(r["told"]["right"] for r in rows)
    print(f"{len(rows)} lessons; the check's first told solve right {told}, followed "
          f"{sum(r['told']['followed'] for r in rows)}")
    for arm in ARMS:
        print(f"{arm:>8}: right {sum(r[arm]['right'] for r in rows)}, followed "
              f"{sum(r[arm]['followed'] for r in rows)}, program given back unchanged "
              f"{sum(r[arm]['same_program'] for r in rows)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
