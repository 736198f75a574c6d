"""How the Solve page shows a run: each step as it happens, then the answer."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from alphaopt.agent.state import Solution
from alphaopt.interfaces.render import (
    check_line,
    fmt_number,
    isolation_line,
    plan_heading,
    render_solution,
    sandbox_text,
    solver_line,
)
from alphaopt_app.mathfmt import formulation_markdown
from solvers import Proof

TITLES = {
    "retrieve_insights": "Insights from the library",
    "formulate": "Formulation",
    "write_program": "Pyomo program",
    "run_program": "Run",
    "repair": "Repair",
    "diagnose": "Diagnosis",
    "finish_sample": "Sample done",
    "answer": "Answer",
}
BINDING_TOL = 1e-7


def show_insights(insights: list[dict[str, Any]]) -> None:
    """The insights that went into the prompts, with the condition that made each one apply."""
    if not insights:
        st.caption("No insight from the library applies to this problem (or the library is off).")
    for i in insights:
        st.markdown(f"**[{i['id']}]** *{i.get('stage', '')} / {i.get('label', '')}*  \n"
                    f"**Applies because:** {i['condition']}  \n**So:** {i['explanation']}")


def show_step(node: str, update: dict[str, Any]) -> None:
    """One finished graph step, as the Solve page shows it live and in the step log."""
    if node == "answer":
        return  # the answer itself is shown below the steps
    st.markdown(f"**{TITLES.get(node, node)}**")
    if node == "retrieve_insights":
        show_insights(update.get("insights", []))
    elif node == "formulate":
        st.markdown(formulation_markdown(update.get("formulation", "")) or "_(no formulation written)_")
    elif node in ("write_program", "repair"):
        st.code(update.get("program", ""), language="python")
        if update.get("fixes"):
            st.caption("Mechanical fixes: " + "; ".join(update["fixes"]))
    elif node == "run_program":
        for attempt in update.get("attempts", []):
            line = f"status **{attempt['status']}**"
            if attempt.get("solver"):
                line += f" from {attempt['solver']}"
            if attempt.get("objective") is not None:
                line += f", objective **{fmt_number(attempt['objective'])}**"
            st.markdown(line + f" ({attempt.get('wall_time_s', 0):.2f} s)")
            if attempt.get("error"):
                st.code(attempt["error"][-1500:], language="text")
    elif node == "finish_sample":
        for c in update.get("candidates", []):
            value = f" {fmt_number(c['objective'])}" if c.get("objective") is not None else ""
            st.caption(f"Sample {c['sample'] + 1} ended {c['status']}{value}; "
                       "the answer is the majority among samples.")
    elif node == "diagnose":
        if update.get("confirmed"):
            st.markdown("The model matches the text: the result stands.")
        elif update.get("program"):
            st.markdown("Checked the program against the text and wrote it again:")
            st.code(update["program"], language="python")
        else:
            st.markdown("Rewrote the model:")
            st.markdown(formulation_markdown(update.get("formulation", "")))


def variables_frame(solution: Solution, nonzero_only: bool) -> pd.DataFrame:
    """Decision values, sorted by name."""
    values = solution.nonzero_variables() if nonzero_only else solution.variables
    return pd.DataFrame(sorted(values.items()), columns=["variable", "value"])


def constraints_frame(solution: Solution) -> pd.DataFrame:
    """LP constraints with dual, slack and whether each is binding (zero slack)."""
    slacks = solution.slacks or {}
    rows = [(name, dual, slacks.get(name), slacks.get(name) is not None and abs(slacks[name]) <= BINDING_TOL)
            for name, dual in sorted((solution.duals or {}).items())]
    return pd.DataFrame(rows, columns=["constraint", "dual", "slack", "binding"])


def show_answer(solution: Solution) -> None:
    """Status, objective, which solver and what it proved, plan, constraints, insights and cost of one solution."""
    status_line = render_solution(solution).splitlines()[0]
    (st.success if solution.ok else st.warning if solution.status == "feasible" else st.error)(status_line)
    proof = solver_line(solution)
    if proof:
        global_optimum = solution.ok and solution.proof is Proof.GLOBAL
        (st.info if global_optimum or solution.status not in ("optimal", "feasible") else st.warning)(proof)
    check = check_line(solution)
    if check:
        (st.caption if solution.check is not None and solution.check.passed else st.error)(check)
    left, mid, right = st.columns(3)
    unproven = ", not proven optimal" if solution.status == "feasible" else ""
    left.metric(f"Objective ({solution.sense or 'optimum'}{unproven})", fmt_number(solution.objective))
    mid.metric("Attempts", len(solution.attempts))
    right.metric("Time (s)", f"{solution.timings.total_s:.1f}")
    if solution.error and not solution.ok:
        st.code(solution.error.strip()[-1500:], language="text")
    if solution.variables:
        st.markdown(f"**{plan_heading(solution)}**")
        nonzero = st.checkbox("Only non-zero values", value=len(solution.variables) > 20, key="nonzero_only")
        st.dataframe(variables_frame(solution, nonzero), hide_index=True)
    if solution.duals:
        st.markdown("**Constraints** (LP duals and slacks; a binding constraint has zero slack)")
        st.dataframe(constraints_frame(solution), hide_index=True)
    elif solution.ok and (solution.is_mip or solution.solver != "highs"):
        st.caption("No duals: they are reported for linear programs without integers (HiGHS) only.")
    if solution.model_text:
        st.markdown("**Model as solved**")
        st.code(solution.model_text, language="text")
    if len(solution.candidates) > 1:
        votes = ", ".join(f"{c.status} {fmt_number(c.objective)}" + (" (chosen)" if c.chosen else "")
                          for c in solution.candidates)
        st.caption(f"{len(solution.candidates)} samples, answer by majority vote: {votes}")
    if solution.insights:
        st.markdown("**Insights used**")
        show_insights(solution.insights)
    tok, t = solution.tokens, solution.timings
    caps = f" · {isolation_line(solution)}" if solution.isolation else ""
    st.caption(f"Run `{solution.run_id}` · model {solution.model or '-'} · tokens {tok.input} in / {tok.output} out "
               f"in {tok.calls} calls ({tok.cached_calls} cached) · LLM {t.llm_s:.1f} s, solver {t.solver_s:.2f} s · "
               f"sandbox {sandbox_text(solution) or '-'}{caps}")


def attempts_frame(solution: Solution) -> pd.DataFrame:
    """One row per program run."""
    return pd.DataFrame(
        [(n, a.stage, a.status, a.solver or "-", fmt_number(a.objective), "; ".join(a.fixes), (a.error or "")[-200:],
          a.wall_time_s)
         for n, a in enumerate(solution.attempts, 1)],
        columns=["#", "stage", "status", "solver", "objective", "fixes", "error", "seconds"],
    )
