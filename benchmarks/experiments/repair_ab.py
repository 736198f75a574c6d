"""When a program keeps failing, is a fresh program better than another repair?

Run with: ALPHAOPT_HOME=.alphaopt/dev python -m benchmarks.experiments.repair_ab \
    --from .alphaopt/learn --from .alphaopt/dev

Takes, for each **training** problem, the last program that earlier runs stored with a Python or
Pyomo error (``benchmarks.stored``), runs it again (skipping those that now run), and answers the
error twice: with the repair prompt (the program and its error, as the repair step shows them)
and with ``REWRITE`` below (the error only, asking for a new program: the embedded model often
gives a failing program back unchanged when it is shown it). Both programs are run and scored
against the problem's answer. Prints one line per problem and the totals; writes them to
``benchmarks/results/<run>/repair_ab.jsonl`` (resumable).

The rewrite arm lost (2026-11-29: 0 of 15 right against 2 for the repair), so ``REWRITE`` lives
here, as the record of what was tried, and not in ``alphaopt.agent.prompts``.
"""

from __future__ import annotations

import hashlib
from typing import Any

from alphaopt.agent import prompts
from alphaopt.agent.nodes import REPAIRABLE, error_for_prompt
from alphaopt.agent.reading import read
from alphaopt.agent.run import solver_runner
from alphaopt.config import load_settings
from alphaopt.llm.client import OpenAIClient
from alphaopt.llm.runlog import RunLog
from benchmarks.scoring import Tolerance
from benchmarks.stored import (
    ab_arguments,
    answer_and_score,
    one_per_problem,
    record,
    recorded,
    results_file,
    stored_programs,
    training_answers,
)

REWRITE = prompts.PROBLEM + """{insights}
A program written for this problem failed, and fixing it did not help:
<error>
{error}
</error>
{goal}Write a new complete program from the start that avoids this error, following the rules. \
Answer with one ```python block only."""


def main(argv: list[str] | None = None) -> int:
    args = ab_arguments(argv, __doc__, "repair-ab")
    settings = load_settings()
    answers = training_answers()
    last = one_per_problem(stored_programs(args.homes, answers, REPAIRABLE), last=True)  # the last failed one
    tolerance = Tolerance()
    out, done = results_file(args.run, "repair_ab.jsonl", "problem")
    llm = OpenAIClient(settings, RunLog(settings.runs_db))
    with solver_runner(settings) as runner:
        for problem, item in last.items():
            if problem in done:
                continue
            first = runner.run(item["program"])
            if first.status.value not in REPAIRABLE:
                continue
            error = error_for_prompt(first.model_dump(mode="json"))
            row: dict[str, Any] = {"problem": problem, "program": item["program"], "answer": answers[problem],
                                   "error": error}
            goal = prompts.goal_block(read(problem))
            repair, repair_sha = prompts.render("repair", problem=problem, program=item["program"], error=error)
            rewrite = [repair[0], {"role": "user", "content": REWRITE.format(problem=problem, insights="", error=error,
                                                                             goal=goal)}]
            rewrite_sha = hashlib.sha256(f"{prompts.SYSTEM}\x00{REWRITE}".encode()).hexdigest()[:12]
            for arm, messages, name, sha in (("repair", repair, "repair", repair_sha),
                                             ("rewrite", rewrite, "rewrite_after_error", rewrite_sha)):
                program, row[arm] = answer_and_score(
                    llm, runner, messages, prompt_name=name, prompt_sha=sha, problem=problem, answer=row["answer"],
                    max_tokens=settings.experimental.max_tokens_program, node="repair_ab", tolerance=tolerance)
                row[arm]["same_program"] = program.strip() == item["program"].strip()
            record(out, row, ("repair", "rewrite"))
    rows = recorded(out)
    for arm in ("repair", "rewrite"):
        ran = sum(r[arm]["status"] not in REPAIRABLE for r in rows)
        right = sum(r[arm]["right"] for r in rows)
        same = sum(r[arm]["same_program"] for r in rows)
        print(f"{arm:>7}: {right} of {len(rows)} right, {ran} ran, {same} returned the program unchanged")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
