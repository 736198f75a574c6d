"""Plain-text views of a ``Solution`` and of log rows, shared by the CLI and the app."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterable, Mapping
from typing import Any

from alphaopt.agent.program import LINE_CHANGES, REVIEW_FIX
from alphaopt.agent.state import Solution
from solvers import Proof

_STATUS_WORDS = {
    "optimal": "optimal plan found",
    "feasible": "a feasible plan, not proven optimal: a limit stopped the solver",
    "constant_objective": "the objective depends on no decision variable, so no plan is better than another: "
                          "no optimum to report",
    "check_failed": "the solver's plan fails the check against the model file: no answer",
    "infeasible": "the model is infeasible: no plan meets every constraint",
    "unbounded": "the model is unbounded: a limit is missing",
    "infeasible_or_unbounded": "the model is infeasible or unbounded",
    "time_limit": "the solver reached its time limit without a plan",
    "error": "the program failed",
    "invalid_program": "the program broke the build_model() contract",
    "timeout": "the program ran out of time",
    "memory_limit": "the run ran out of memory",
}
_SOLVER_NAMES = {"highs": "HiGHS", "scip": "SCIP"}
#: Statuses whose error is not a program failure: the model built and solved, but gives no answer.
_NOT_THE_PROGRAM = ("constant_objective", "check_failed")


def fmt_number(value: float | None) -> str:
    """A number without float noise: 17.0 -> 17, 0.30000000000000004 -> 0.3."""
    if value is None:
        return "-"
    if abs(value - round(value)) < 1e-9:
        return str(round(value))
    return f"{value:.6g}"


def table(rows: Iterable[tuple[str, str]], headers: tuple[str, str]) -> str:
    """A two-column text table."""
    rows = list(rows)
    width = max([len(headers[0]), *(len(r[0]) for r in rows)])
    lines = [f"  {headers[0]:<{width}}  {headers[1]}", f"  {'-' * width}  {'-' * len(headers[1])}"]
    lines += [f"  {a:<{width}}  {b}" for a, b in rows]
    return "\n".join(lines)


def solver_line(solution: Solution) -> str | None:
    """Which solver ran on which kind of model, and what it proved about the plan (None when no
    model reached a solver)."""
    if not solution.solver:
        return None
    line = f"Solver: {_SOLVER_NAMES.get(solution.solver, solution.solver)}"
    if solution.model_class:
        line += f" ({solution.model_class} model)"
    if solution.status not in ("optimal", "feasible"):
        return line
    gap = f"relative gap {solution.gap:.3g}" if solution.gap is not None else None
    if solution.proof is Proof.GLOBAL:
        return line + ": global optimum, proven" + (f" (within the {gap})" if solution.gap else "")
    if solution.proof is Proof.LOCAL:
        return line + ": a local optimum only, not proven global"
    if solution.proof is Proof.FEASIBLE:
        return line + ": a feasible plan found before a time or gap limit stopped the solver, not proven optimal" + (
            f" ({gap} to the best bound)" if gap else " (no bound on the gap)")
    return line + ": nothing proven about the plan"


def check_line(solution: Solution) -> str | None:
    """The plan checked against the model file: passed, or failed where (None when not checked)."""
    check = solution.check
    if check is None:
        return None
    size = f"scaled violation {check.max_violation:.3g}, tolerance {check.tolerance:g}"
    if check.passed:
        return f"Plan check: passed against the model file (largest {size})"
    return (f"Plan check: FAILED against the model file at {check.worst or 'an unnamed row'} ({size}): "
            "the solver's plan is not an answer")


def isolation_line(solution: Solution) -> str | None:
    """The caps that held for the run as a whole, or that none were available (None when unknown)."""
    if not solution.isolation:
        return None
    if solution.isolation.startswith("cgroup"):
        return f"Whole-run caps: {solution.isolation}"
    return f"Whole-run caps: no whole-run cap available ({solution.isolation})"


def sandbox_text(solution: Solution) -> str:
    """How the program was isolated, without the isolation line that ``isolation_line`` shows."""
    suffix = f"; {solution.isolation}"
    if solution.isolation and solution.sandbox.endswith(suffix):
        return solution.sandbox[: -len(suffix)]
    return solution.sandbox


def plan_heading(solution: Solution) -> str:
    """The heading of the decision values: a plan that answers, or one the solver reported that does not."""
    if solution.status in ("optimal", "feasible"):
        return "Decision values"
    return "Decision values the solver reported (not an answer)"


def render_solution(solution: Solution, *, show_code: bool = False, saved_to: str | None = None) -> str:
    """The human-readable answer: status, objective, solver and proof, plan, formulation, how it got there."""
    out = [f"Status: {solution.status} ({_STATUS_WORDS.get(solution.status, solution.status)})"]
    if solution.objective is not None:
        proven = "" if solution.status == "optimal" else ", not proven optimal"
        out.append(f"Objective ({solution.sense or 'optimum'}{proven}): {fmt_number(solution.objective)}")
    out += filter(None, [solver_line(solution), check_line(solution)])
    if solution.variables:
        plan = sorted(solution.variables.items())
        out += ["", plan_heading(solution) + ":", table(((k, fmt_number(v)) for k, v in plan), ("variable", "value"))]
    if solution.duals:
        rows = ((k, f"{fmt_number(v)}  (slack {fmt_number((solution.slacks or {}).get(k))})")
                for k, v in sorted(solution.duals.items()))
        out += ["", "Constraints (LP duals):", table(rows, ("constraint", "dual"))]
    if solution.conflict:
        out += ["", "These constraints cannot all hold together (remove or relax one of them):",
                table(((c["name"], c["text"]) for c in solution.conflict), ("constraint", "as built"))]
    if solution.unbounded:
        out += ["", "These variables can grow without limit (a limit on them is missing): "
                + ", ".join(solution.unbounded)]
    if solution.error and not solution.ok:
        heading = "Why there is no answer:" if solution.status in _NOT_THE_PROGRAM else "Error:"
        out += ["", heading, solution.error.strip()[-1500:]]
    if solution.formulation:
        out += ["", "Formulation (as the model wrote it):", solution.formulation.strip()]
    if solution.model_text:
        out += ["", "Model as solved:", textwrap.indent(solution.model_text.rstrip(), "  ")]
    if len(solution.candidates) > 1:
        out += ["", f"Samples: {len(solution.candidates)}, answer by majority vote:"]
        out += [f"  {'*' if c.chosen else ' '} sample {c.sample + 1}: {c.status}"
                + (f" {fmt_number(c.objective)}" if c.objective is not None else "") for c in solution.candidates]
    patched = [(a, [f for f in a.fixes if f.startswith(LINE_CHANGES)]) for a in solution.attempts
               if a.stage == "diagnose"]
    patched = [(a, lines) for a, lines in patched if lines]
    if patched:
        kept = patched[-1][0].program == solution.program
        out += ["", "Lines the model wrote after checking its program against the text"
                + ("" if kept else " (not used: the first optimum stood)") + ":"]
        out += [f"  {line}" for _, lines in patched for line in lines]
    reviewed = [f for a in solution.attempts if a.stage == "review" for f in a.fixes if f.startswith(REVIEW_FIX)]
    if reviewed:
        used = any(a.stage == "review" and a.program == solution.program for a in solution.attempts)
        out += ["", "Lines the model corrected when shown its program with each lesson"
                + ("" if used else " (not used: the first optimum stood)") + ":"]
        out += [f"  {line}" for line in reviewed]
    if solution.insights:
        out += ["", "Insights used:"] + [f"  [{i['id']}] {i['condition']}" for i in solution.insights]
    if show_code and solution.program:
        out += ["", "Program:", solution.program.rstrip()]
    repairs = sum(a.stage == "repair" for a in solution.attempts)
    diagnoses = sum(a.stage == "diagnose" for a in solution.attempts)
    reviews = sum(a.stage == "review" for a in solution.attempts)
    t, tok = solution.timings, solution.tokens
    out += [
        "",
        f"Attempts: {len(solution.attempts)} (repairs {repairs}, after diagnosis {diagnoses}"
        + (f", after review {reviews}" if reviews else "") + "); "
        f"model {solution.model}; tokens {tok.input} in / {tok.output} out in {tok.calls} calls "
        f"({tok.cached_calls} from cache); time {t.total_s:.1f}s (LLM {t.llm_s:.1f}s, solver {t.solver_s:.2f}s)",
        f"Sandbox: {sandbox_text(solution) or '-'}",
    ]
    out += filter(None, [isolation_line(solution)])
    if saved_to:
        out.append(f"Saved: run {solution.run_id} in {saved_to} (alphaopt runs show {solution.run_id})")
    return "\n".join(out)


def render_call_row(row: Mapping[str, Any]) -> str:
    """One line per LLM call for ``alphaopt logs list``."""
    status = "error: " + row["error"][:60] if row["error"] else ("cache" if row["cached"] else "ok")
    return (
        f"{row['id']}  {row['created_at'][:19]}  {row['prompt_name']:<13} {row['model'][:34]:<34} "
        f"{row['input_tokens'] or 0:>6} in {row['output_tokens'] or 0:>5} out "
        f"{(row['latency_ms'] or 0) / 1000:>7.1f}s  {status}"
    )


def render_call(row: Mapping[str, Any]) -> str:
    """One LLM call in full for ``alphaopt logs show``."""
    out = [f"{k}: {row[k]}" for k in row if k not in ("messages", "response")]
    for message in json.loads(row["messages"]):
        out += [f"--- {message['role']}", message["content"]]
    if row["response"]:
        out += ["--- response", json.loads(row["response"])["text"]]
    return "\n".join(out)
