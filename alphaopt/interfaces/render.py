"""Plain-text views of a ``Solution`` and of log rows, shared by the CLI and the app."""

from __future__ import annotations

import json
import sqlite3
import textwrap
from collections.abc import Iterable

from alphaopt.agent.program import LINE_CHANGES
from alphaopt.agent.state import Solution

_STATUS_WORDS = {
    "optimal": "optimal plan found",
    "feasible": "a feasible plan, not proven optimal",
    "infeasible": "the model is infeasible: no plan meets every constraint",
    "unbounded": "the model is unbounded: a limit is missing",
    "infeasible_or_unbounded": "the model is infeasible or unbounded",
    "error": "the program failed",
    "invalid_program": "the program broke the build_model() contract",
    "timeout": "the program ran out of time",
}


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


def render_solution(solution: Solution, *, show_code: bool = False, saved_to: str | None = None) -> str:
    """The human-readable answer: status, objective, plan, formulation, how it got there."""
    out = [f"Status: {solution.status} ({_STATUS_WORDS.get(solution.status, solution.status)})"]
    if solution.objective is not None:
        out.append(f"Objective ({solution.sense or 'optimum'}): {fmt_number(solution.objective)}")
    if solution.variables:
        plan = sorted(solution.variables.items())
        out += ["", "Decision values:", table(((k, fmt_number(v)) for k, v in plan), ("variable", "value"))]
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
        out += ["", "Error:", solution.error.strip()[-1500:]]
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
    if solution.insights:
        out += ["", "Insights used:"] + [f"  [{i['id']}] {i['condition']}" for i in solution.insights]
    if show_code and solution.program:
        out += ["", "Program:", solution.program.rstrip()]
    repairs = sum(a.stage == "repair" for a in solution.attempts)
    diagnoses = sum(a.stage == "diagnose" for a in solution.attempts)
    t, tok = solution.timings, solution.tokens
    out += [
        "",
        f"Attempts: {len(solution.attempts)} (repairs {repairs}, after diagnosis {diagnoses}); "
        f"model {solution.model}; tokens {tok.input} in / {tok.output} out in {tok.calls} calls "
        f"({tok.cached_calls} from cache); time {t.total_s:.1f}s (LLM {t.llm_s:.1f}s, solver {t.solver_s:.2f}s)",
        f"Sandbox: {solution.sandbox or '-'}",
    ]
    if saved_to:
        out.append(f"Saved: run {solution.run_id} in {saved_to} (alphaopt runs show {solution.run_id})")
    return "\n".join(out)


def render_call_row(row: sqlite3.Row) -> str:
    """One line per LLM call for ``alphaopt logs list``."""
    status = "error: " + row["error"][:60] if row["error"] else ("cache" if row["cached"] else "ok")
    return (
        f"{row['id']}  {row['created_at'][:19]}  {row['prompt_name']:<13} {row['model'][:34]:<34} "
        f"{row['input_tokens'] or 0:>6} in {row['output_tokens'] or 0:>5} out "
        f"{(row['latency_ms'] or 0) / 1000:>7.1f}s  {status}"
    )


def render_call(row: sqlite3.Row) -> str:
    """One LLM call in full for ``alphaopt logs show``."""
    out = [f"{k}: {row[k]}" for k in row if k not in ("messages", "response")]
    for message in json.loads(row["messages"]):
        out += [f"--- {message['role']}", message["content"]]
    if row["response"]:
        out += ["--- response", json.loads(row["response"])["text"]]
    return "\n".join(out)
