"""Does showing the solver's conflict help the diagnosis of an infeasible program?

Run with: ALPHAOPT_HOME=.alphaopt/dev python -m benchmarks.experiments.diagnose_ab \
    --from .alphaopt/learn --from .alphaopt/dev

Takes the infeasible programs that earlier runs stored for **training** problems (the learning
attempts in a home's ``library.db`` and the saved runs in its ``runs.db``; a problem counts only
when its text is in a bundled ``*_train.jsonl`` file, whose answer scores it). Each program is run
again (the solver now names a conflict: constraints that cannot hold together), then diagnosed
twice with the same prompt, once without and once with that conflict, and both corrected
programs are run and scored. Prints one line per program and the totals; writes them to
``benchmarks/results/<run>/diagnose_ab.jsonl``.
"""

from __future__ import annotations

from typing import Any

from alphaopt.agent import prompts
from alphaopt.agent.reading import read
from alphaopt.agent.run import solver_runner
from alphaopt.config import load_settings
from alphaopt.llm.client import OpenAIClient
from alphaopt.llm.runlog import RunLog
from benchmarks.scoring import Tolerance
from benchmarks.stored import (
    ab_arguments,
    answer_and_score,
    record,
    recorded,
    results_file,
    stored_programs,
    training_answers,
)


def main(argv: list[str] | None = None) -> int:
    args = ab_arguments(argv, __doc__, "diagnose-ab")
    settings = load_settings()
    answers = training_answers()
    items = stored_programs(args.homes, answers, ("infeasible", "infeasible_or_unbounded"))
    tolerance = Tolerance()
    out, done = results_file(args.run, "diagnose_ab.jsonl", "program")
    llm = OpenAIClient(settings, RunLog(settings.runs_db))
    with solver_runner(settings) as runner:
        for item in items:
            if item["program"] in done:
                continue
            first = runner.run(item["program"])
            if first.status.value != "infeasible" or not first.conflict:
                continue
            conflict = [c.model_dump() for c in first.conflict]
            row: dict[str, Any] = {"program": item["program"], "answer": answers[item["problem"]],
                                   "conflict": conflict}
            for arm, block in (("without", ""), ("with", prompts.no_optimum_block({"conflict": conflict}))):
                messages, sha = prompts.render(
                    "diagnose_program", problem=item["problem"], program=item["program"], status="infeasible",
                    hint=prompts.DIAGNOSE_HINTS["infeasible"], conflict=block,
                    goal=prompts.goal_block(read(item["problem"])))
                _, row[arm] = answer_and_score(
                    llm, runner, messages, prompt_name="diagnose_program", prompt_sha=sha, problem=item["problem"],
                    answer=row["answer"], max_tokens=settings.experimental.max_tokens_program, node="diagnose_ab",
                    tolerance=tolerance)
            record(out, row, ("without", "with"))
    rows = recorded(out)
    for arm in ("without", "with"):
        feasible = sum(r[arm]["status"] == "optimal" for r in rows)
        right = sum(r[arm]["right"] for r in rows)
        print(f"{arm:>7} the conflict: {right} of {len(rows)} right, {feasible} optimal")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
