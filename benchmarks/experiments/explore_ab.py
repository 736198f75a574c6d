"""Answer-guided exploration: does a sampled reply reach the target more often than the greedy one?

Run with: ALPHAOPT_HOME=.alphaopt/learn python -m benchmarks.experiments.explore_ab --from .alphaopt/learn

Takes, for each **training** problem (``benchmarks.stored``), the first program that learning
stored for it with an optimal but wrong objective: the program exploration starts from. Each is
run again (skipping those that now give the answer), then shown to the model with the
exploration prompt exactly as learning renders it, twice: at temperature 0 (what the first
exploration try sent) and sampled at the learner's temperature 0.7 with seed 1 (what a second
try sends). A program that writes the target value is rejected, as learning rejects it. Both
programs are run and scored. Prints one line per program and the totals, with how often each arm
gave the program back unchanged; writes them to ``benchmarks/results/<run>/explore_ab.jsonl``
(resumable).
"""

from __future__ import annotations

from typing import Any

from alphaopt.agent import prompts
from alphaopt.agent.program import hardcodes
from alphaopt.agent.run import solver_runner
from alphaopt.config import load_settings
from alphaopt.learning.learn import LearnConfig, outcome_line
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

ARMS = (("greedy", 0.0, None), ("sampled", LearnConfig().sample_temperature, 1))


def main(argv: list[str] | None = None) -> int:
    args = ab_arguments(argv, __doc__, "explore-ab")
    settings = load_settings()
    answers = training_answers()
    first = one_per_problem(stored_programs(args.homes, answers, ("optimal",)))  # the solve's program
    tolerance = Tolerance()
    out, done = results_file(args.run, "explore_ab.jsonl", "problem")
    llm = OpenAIClient(settings, RunLog(settings.runs_db))
    with solver_runner(settings) as runner:
        for problem, item in first.items():
            if problem in done:
                continue
            answer = answers[problem]
            result = runner.run(item["program"])
            if not result.ok or tolerance.correct(result.objective, answer):
                continue
            row: dict[str, Any] = {"problem": problem, "program": item["program"], "answer": answer,
                                   "objective": result.objective}
            messages, sha = prompts.render("explore", problem=problem, target=f"{answer:g}", program=item["program"],
                                           outcome=outcome_line(result.status.value, result.objective, answer))
            for arm, temperature, seed in ARMS:
                program, row[arm] = answer_and_score(
                    llm, runner, messages, prompt_name="explore", prompt_sha=sha, problem=problem, answer=answer,
                    max_tokens=settings.experimental.max_tokens_program, node="explore_ab", tolerance=tolerance,
                    temperature=temperature, seed=seed)
                row[arm]["same_program"] = program.strip() == item["program"].strip()
                if hardcodes(program, answer, problem):
                    row[arm].update(status="rejected: writes the target", right=False)
            record(out, row, tuple(arm for arm, _, _ in ARMS))
    rows = recorded(out)
    for arm, _, _ in ARMS:
        right = sum(r[arm]["right"] for r in rows)
        same = sum(r[arm]["same_program"] for r in rows)
        moved = sum(r[arm]["objective"] is not None and r[arm]["objective"] != r["objective"] for r in rows)
        print(f"{arm:>8}: {right} of {len(rows)} right, {same} gave the program back unchanged, "
              f"{moved} changed the objective")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
