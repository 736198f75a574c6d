"""Programs that earlier runs stored for **training** problems, for the A/B scripts.

They come from a home's learning attempts (``library.db``) and its saved runs (``runs.db``); a
problem counts only when its text is in a bundled ``*_train.jsonl`` file, whose answer scores it,
and is not a twin of a test item (``benchmarks.honesty``: 77 test items have a near-copy in the
training files), so the A/B scripts decide on training data alone.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from collections.abc import Collection
from pathlib import Path
from typing import Any

from alphaopt.agent.program import extract_code
from alphaopt.agent.reading import read
from alphaopt.agent.rewrites import prepare
from alphaopt.llm.client import CallContext, LLMClient
from benchmarks import honesty, registry
from benchmarks.scoring import Tolerance


def training_answers() -> dict[str, float]:
    """Problem text -> answer, for every bundled training item that is no test item's twin."""
    train = [i for n in registry.names("train") for i in registry.load(n)]
    test = [i for n in registry.names("test") for i in registry.load(n)]
    twins = {t.train for t in honesty.find_twins(train, test)}
    return {item.description: item.answer for item in train if item.key not in twins}


def stored_programs(homes: list[Path], answers: dict[str, float], statuses: Collection[str]) -> list[dict[str, Any]]:
    """Distinct programs for training problems that ended with one of ``statuses``, in the order
    they were stored: ``{"problem", "program", "status", "error"}`` each."""
    found: dict[str, dict[str, Any]] = {}

    def keep(problem: str, program: str, status: str, error: str | None) -> None:
        if problem in answers and status in statuses and program.strip():
            found.setdefault(program, {"problem": problem, "program": program, "status": status, "error": error or ""})

    for home in homes:
        library = home / "library.db"
        if library.is_file():
            with sqlite3.connect(library) as db:
                if db.execute("select 1 from sqlite_master where name = 'attempts'").fetchone():
                    for row in db.execute(
                            "select t.text, a.program, a.status, a.error from attempts a "
                            "join training_tasks t on a.task_id = t.id order by a.created_at"):
                        keep(*row)
        runs = home / "runs.db"
        if runs.is_file():
            with sqlite3.connect(runs) as db:
                for (solution,) in db.execute("select solution from runs order by created_at"):
                    data = json.loads(solution)
                    for attempt in data.get("attempts", []):
                        keep(data.get("problem", ""), attempt.get("program", ""), attempt.get("status", ""),
                             attempt.get("error"))
    return list(found.values())


def one_per_problem(programs: list[dict[str, Any]], *, last: bool = False) -> dict[str, dict[str, Any]]:
    """Problem text -> one of its stored programs (``stored_programs`` keeps their order): the
    first one stored, or the last when ``last``."""
    chosen: dict[str, dict[str, Any]] = {}
    for item in programs:
        if last or item["problem"] not in chosen:
            chosen[item["problem"]] = item
    return chosen


def ab_arguments(argv: list[str] | None, doc: str, default_run: str) -> argparse.Namespace:
    """The A/B scripts' command line: ``--from HOME`` (repeatable) and ``--run NAME``."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--from", dest="homes", type=Path, action="append", required=True,
                        help="an alphaopt home whose stored programs to take (repeatable)")
    parser.add_argument("--run", default=default_run, help="results folder name")
    return parser.parse_args(argv)


def results_file(run: str, name: str, key: str) -> tuple[Path, set[str]]:
    """An A/B script's JSONL of results under ``benchmarks/results/<run>/``, and the ``key``
    values of the rows it already holds (the script skips those: a rerun resumes)."""
    out = Path(__file__).parent / "results" / run / name
    out.parent.mkdir(parents=True, exist_ok=True)
    return out, {row[key] for row in recorded(out)}


def answer_and_score(llm: LLMClient, runner: Any, messages: list[dict[str, str]], *, prompt_name: str,
                     prompt_sha: str, problem: str, answer: float, max_tokens: int, node: str,
                     tolerance: Tolerance, temperature: float | None = None,
                     seed: int | None = None) -> tuple[str, dict[str, Any]]:
    """One arm of an A/B: ask the model (at the settings' temperature unless given), take its
    program with the fixes the pipeline applies, run it and score it. Returns the program and
    ``{"status", "objective", "right"}``."""
    reply = llm.complete(messages, prompt_name=prompt_name, prompt_sha=prompt_sha, max_tokens=max_tokens,
                         context=CallContext(node=node), temperature=temperature, seed=seed)
    program, _ = prepare(extract_code(reply.text), read(problem))
    result = runner.run(program)
    return program, {"status": result.status.value, "objective": result.objective,
                     "right": result.ok and tolerance.correct(result.objective, answer)}


def record(out: Path, row: dict[str, Any], arms: tuple[str, ...]) -> None:
    """Print one A/B row (the answer, then each arm's status and whether it was right) and
    append it to the results file."""
    print(f"answer {row['answer']:>12g}  " + "  ".join(
        f"{arm}: {row[arm]['status']:<16} {row[arm]['right']!s:<5}" for arm in arms), flush=True)
    with out.open("a") as f:
        f.write(json.dumps(row) + "\n")


def recorded(out: Path) -> list[dict[str, Any]]:
    """Every row of a results file (none when it does not exist yet)."""
    return [json.loads(line) for line in out.read_text().splitlines()] if out.is_file() else []
