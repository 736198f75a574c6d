"""Conditions that say nothing about where a lesson applies: how common, and what ``situate`` writes.

Run with: ALPHAOPT_HOME=.alphaopt/learn python -m benchmarks.experiments.situate --from .alphaopt/learn

Reads every candidate that learning checked in the given homes (their ``library.db``): its
condition as checked, its stage, its source problem, and the solves its check ran with it and
with the placebo. Counts the candidates whose condition ``alphaopt.learning.drafts.vacuous``
flags (it names the mistake, or a step of the program) and the check solves they took, and gives
each such condition to the drafter's ``situate`` step on the model, as learning now does before
a check; prints each old and new condition (or that the draft is dropped), then the totals. Rows
go to ``benchmarks/results/<run>/situate.jsonl`` (resumable). Only training problems are read:
candidates come from learning homes.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from alphaopt.config import load_settings
from alphaopt.learning.drafts import Drafter, unechoed, vacuous
from alphaopt.learning.ledger import Ledger
from alphaopt.llm.client import OpenAIClient
from alphaopt.llm.runlog import RunLog
from benchmarks.stored import ab_arguments, recorded, results_file
from library import Task
from library.models import parse_stage


def checked_candidates(homes: list[Path]) -> list[dict[str, Any]]:
    """Every candidate a check ran on (its first checked version), with its stage, source problem
    text and the solves its check spent on it (with it, and the placebo)."""
    found: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for home in homes:
        with sqlite3.connect(home / "library.db") as db:
            rows = db.execute(
                "select v.insight_id, v.version, v.condition, v.explanation, v.evidence, v.source_tasks, l.stage "
                "from insight_versions v join taxonomy_labels l on l.id = v.label_id order by v.created_at").fetchall()
            for insight_id, version, condition, explanation, evidence, sources, stage in rows:
                evidence, sources = json.loads(evidence), json.loads(sources)
                if "with" not in evidence or evidence.get("recheck") or not sources or (home.name, insight_id) in seen:
                    continue  # a later version (a review, a recheck) carries the first check's evidence again
                seen.add((home.name, insight_id))
                text = db.execute("select text from training_tasks where id = ?", (sources[0],)).fetchone()
                if text is None:
                    continue
                arms = evidence.get("solves", {})
                spent = sum(len(arms.get(arm, [])) for arm in ("with", "placebo"))
                spent += sum(len(evidence.get("told_check", {}).get("solves", {}).get(arm, [])) for arm in ("with",
                                                                                                           "placebo"))
                found.append({"key": f"{home.name}/{insight_id}/{version}", "condition": condition,
                              "explanation": explanation, "stage": stage, "task": sources[0], "problem": text[0],
                              "accepted": evidence.get("with", 0) > evidence.get("without", 0), "check_solves": spent})
    return found


def main(argv: list[str] | None = None) -> int:
    args = ab_arguments(argv, __doc__, "situate")
    settings = load_settings()
    out, done = results_file(args.run, "situate.jsonl", "key")
    candidates = checked_candidates(args.homes)
    drafter = Drafter(None, None, Ledger(OpenAIClient(settings, RunLog(settings.runs_db))))  # type: ignore[arg-type]
    for item in candidates:
        flaw = vacuous(unechoed(item["condition"]), parse_stage(item["stage"]))  # as ``Drafter.situated``
        if item["key"] in done or flaw is None:
            continue
        task = Task(id=item["task"], dataset=item["task"].split("/")[0], item_id=item["task"].split("/")[-1],
                    text=item["problem"])
        new = drafter.situated(item["condition"], item["explanation"], parse_stage(item["stage"]), task, "situate")
        row = {"key": item["key"], "stage": item["stage"], "flaw": flaw, "old": item["condition"], "new": new,
               "check_solves": item["check_solves"]}
        print(f"{item['key']}: {item['condition']!r}\n    -> {new or '(dropped)'!r}", flush=True)
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")
    rows = recorded(out)
    cut = [c["key"] for c in candidates if unechoed(c["condition"]) != c["condition"]]
    print(f"a last clause that echoes the prompt cut from {len(cut)}: {cut}")
    spent = sum(c["check_solves"] for c in candidates)
    print(f"{len(candidates)} checked candidates, {len(rows)} with a condition that says nothing "
          f"({sum(r['check_solves'] for r in rows)} of {spent} check solves with a lesson or the placebo); "
          f"situate wrote a usable condition for {sum(bool(r['new']) for r in rows)} of {len(rows)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
