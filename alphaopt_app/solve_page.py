"""Solve page: a problem in → the steps as they happen → the answer; edit and re-run; mark it right or wrong."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import streamlit as st

from alphaopt.agent.run import Step
from alphaopt.agent.state import Solution
from alphaopt.errors import AlphaoptError, InputError
from alphaopt.interfaces import app_api
from alphaopt.interfaces.render import fmt_number, render_solution
from alphaopt_app import services, views
from alphaopt_app.mathfmt import formulation_markdown
from library import LibraryError
from solvers.result import SolverHarnessError

_log = logging.getLogger(__name__)


def _load_example() -> None:
    name = st.session_state.get("example")
    if name:
        st.session_state["problem"] = (services.EXAMPLES / name).read_text(encoding="utf-8")


def _request(kind: str) -> None:
    st.session_state["pending"] = kind


def _follow(stream: Iterator[Step]) -> tuple[Solution, list[tuple[str, dict]]]:
    """Show each step as the agent finishes it; return the solution and the steps."""
    steps: list[tuple[str, dict]] = []
    with st.status("Solving…", expanded=True) as box:
        try:
            for step in stream:
                if step.solution is not None:
                    box.update(label=f"Done: {step.solution.status} after {len(steps)} steps",
                               state="complete" if step.solution.ok else "error", expanded=False)
                    return step.solution, steps
                steps.append((step.node, step.update))
                views.show_step(step.node, step.update)
                box.update(label=f"{views.TITLES.get(step.node, step.node)} done, working…")
        except Exception:  # re-raised for _run to report; Streamlit's own stop/rerun signals pass by
            box.update(label="Failed", state="error")
            raise
    raise AlphaoptError("The run ended without an answer.")


def _run(kind: str) -> None:
    """Solve, re-run from the edited formulation, or run the edited program; keep the outcome."""
    settings = services.settings()
    previous: Solution | None = st.session_state.get("solution")
    st.session_state.pop("solve_error", None)
    try:
        agent = services.agent(settings)
        if kind in ("formulation", "program") and previous is None:
            raise InputError("Solve a problem first.")
        if kind == "program":
            assert previous is not None
            with st.spinner("Running the edited program…"):
                solution = app_api.run_program(agent, previous.problem, st.session_state.get("program_edit", ""),
                                               formulation=previous.formulation, insights=previous.insights)
            steps = [("run_program", {"attempts": [a.model_dump() for a in solution.attempts]})]
        elif kind == "formulation":
            assert previous is not None
            text = st.session_state.get("formulation_edit", "")
            if not text.strip():
                raise InputError("The formulation is empty: write the model (variables, objective, constraints).")
            solution, steps = _follow(agent.stream(previous.problem, formulation=text, insights=previous.insights))
        else:
            app_api.sync_library(agent)
            solution, steps = _follow(agent.stream(st.session_state.get("problem", "")))
    except (AlphaoptError, LibraryError, SolverHarnessError) as exc:
        st.session_state["solve_error"] = str(exc)
        return
    except Exception as exc:  # noqa: BLE001 - shown and logged; the typed text stays in session state
        _log.exception("solve failed")
        st.session_state["solve_error"] = f"Unexpected error: {exc!r} (details in the app's log)"
        return
    st.session_state.update(solution=solution, steps=steps,
                            formulation_edit=solution.formulation or solution.model_text, program_edit=solution.program)
    st.session_state.pop("feedback_msg", None)


def _feedback(solution: Solution) -> None:
    """Mark the answer right or wrong; it becomes a training problem for ``alphaopt learn``."""
    st.markdown("**Is this answer right?** Marked answers become training problems for the library.")
    with st.form("feedback"):
        verdict = st.radio("Verdict", ["Right", "Wrong"], horizontal=True, key="verdict",
                           label_visibility="collapsed")
        value = st.number_input("The correct optimal value (when the answer is wrong)", value=None,
                                key="correct_value", format="%.6f")
        if st.form_submit_button("Save as a training example"):
            settings = services.settings()
            try:
                task = app_api.record_feedback(services.store(settings), settings, solution,
                                               right=verdict == "Right", answer=value)
            except (InputError, LibraryError) as exc:
                st.error(str(exc))
            else:
                path = app_api.feedback_path(settings)
                st.success(f"Saved training problem `{task.id}` with answer {fmt_number(task.answer)}, and in "
                           f"`{path}`. Learn from it with `alphaopt learn {path}` or on the Learn page.")


def _result(solution: Solution, just_ran: bool) -> None:
    steps = st.session_state.get("steps") or []
    if steps and not just_ran:
        with st.expander(f"Steps ({len(steps)})"):
            for node, update in steps:
                views.show_step(node, update)
    answer, formulation, program, attempts, log, report = st.tabs(
        ["Answer", "Formulation", "Program", "Attempts", "Solver log", "Report"])
    with answer:
        views.show_answer(solution)
        _feedback(solution)
    with formulation:
        if solution.formulation:
            st.markdown(formulation_markdown(solution.formulation))
        else:
            st.caption("The model wrote the program directly (no separate formulation step).")
        if solution.model_text:
            st.markdown("**Model as solved** (built by the program, as the solver read it from the model file)")
            st.code(solution.model_text, language="text")
        st.text_area("Edit the formulation", key="formulation_edit", height=240)
        st.button("Re-run from this formulation", on_click=_request, args=("formulation",))
        st.caption("Writes a new program for the edited model, then runs, repairs and diagnoses it as usual.")
    with program:
        st.text_area("Edit the program", key="program_edit", height=380)
        st.button("Run this program", on_click=_request, args=("program",))
        st.caption("Runs the program as it is, in the sandbox, with no model call.")
    with attempts:
        st.dataframe(views.attempts_frame(solution), hide_index=True)
    with log:
        st.code(solution.log_tail or "(no solver output)", language="text")
    with report:
        st.code(render_solution(solution, show_code=True), language="text")


st.title("Solve an optimization problem")
examples = sorted(p.name for p in services.EXAMPLES.glob("*.txt")) if services.EXAMPLES.is_dir() else []
st.selectbox("Example", examples, index=None, placeholder="Pick an example problem…", key="example",
             on_change=_load_example)
st.text_area("Problem", key="problem", height=200,
             placeholder="Describe the problem in plain language: the decisions, the goal, the limits and the data.")
st.button("Solve", type="primary", on_click=_request, args=("solve",))
pending = st.session_state.pop("pending", None)
if pending:
    _run(pending)
if st.session_state.get("solve_error"):
    st.error(st.session_state["solve_error"])
if st.session_state.get("solution") is not None:
    _result(st.session_state["solution"], just_ran=bool(pending) and "solve_error" not in st.session_state)
