"""Learn page: start ``alphaopt learn`` in the background, follow it live, and chart past runs;
start ``alphaopt library evolve`` the same way, see its per-round metrics, and roll the library back."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from alphaopt.errors import AlphaoptError
from alphaopt.interfaces import app_api
from alphaopt_app import charts, services
from library import LibraryError, LibraryStore

REFRESH_S = 2.0


def _flash(message: str, kind: str = "success") -> None:
    st.session_state["learn_msg"] = (kind, message)


def _start() -> None:
    """Start a job from the form's choices (a button callback: runs before the page redraws)."""
    settings = services.settings()
    files = [services.TRAINING / name for name in st.session_state.get("learn_files", [])]
    try:
        upload = st.session_state.get("learn_upload")
        if upload is not None:
            files.append(app_api.save_upload(settings, upload.name, upload.getvalue()))
        feedback = app_api.feedback_path(settings)
        if st.session_state.get("learn_feedback") and feedback.is_file():
            files.append(feedback)
        job = app_api.start_learning(settings, files, limit=st.session_state.get("learn_limit") or None,
                                     max_tokens=st.session_state.get("learn_tokens") or None,
                                     concurrency=st.session_state.get("learn_concurrency") or 1)
    except (AlphaoptError, LibraryError, OSError) as exc:
        _flash(f"Not started: {exc}", "error")
    else:
        _flash(f"Started learning job {job.id} on {job.total} problems (pid {job.pid}); "
               "it goes on if you close or reload this page.")


def _form(running: bool) -> None:
    settings = services.settings()
    st.subheader("Start a learning run")
    bundled = sorted(p.name for p in services.TRAINING.glob("*_train.jsonl")) if services.TRAINING.is_dir() else []
    st.multiselect("Bundled training files", bundled, key="learn_files")
    st.file_uploader('…and/or a JSONL file of your own: {"id", "description", "answer"} on each line',
                     type=["jsonl"], key="learn_upload")
    feedback = app_api.feedback_path(settings)
    if feedback.is_file():
        count = sum(1 for line in feedback.read_text().splitlines() if line.strip())
        st.checkbox(f"Include the {count} answers marked on the Solve page", key="learn_feedback")
    left, right = st.columns(2)
    left.number_input("At most this many problems", min_value=1, value=5, key="learn_limit")
    right.number_input("Token budget (0: none; the run stops there and resumes later)", min_value=0, value=0,
                       step=10_000, key="learn_tokens")
    if not settings.embedded:
        st.number_input("Problems at once (as many as the endpoint serves together)", min_value=1, max_value=32,
                        value=1, key="learn_concurrency")
    st.button("Start learning", type="primary", on_click=_start, disabled=running)
    if settings.embedded:
        st.caption("The embedded model learns at a few minutes per problem on 2 cores, in a second process: "
                   "solving here at the same time halves both.")


def _job(store: LibraryStore) -> None:
    """The newest job: state, progress, counters, running accuracy and the end of its log."""
    settings = services.settings()
    jobs = app_api.learning_jobs(settings)
    if not jobs:
        return
    job = jobs[0]
    alive = app_api.is_running(job)
    if not alive and st.session_state.get("learn_alive"):
        st.session_state["learn_alive"] = False
        st.rerun(scope="app")  # redraw the form and the charts without the timer
    st.session_state["learn_alive"] = alive
    run = app_api.run_of(job, store.runs())
    st.subheader(f"Job {job.id}")
    state = "running" if alive else ("stopped (a rerun on the same files resumes it)" if job.stopped else "ended")
    if job.returncode not in (None, 0) and not job.stopped:
        state += f" with exit code {job.returncode}"
    st.markdown(f"**{state}** · pid {job.pid} · started {job.started_at[:19].replace('T', ' ')} UTC"
                + (f" · library run `{run.id}` ({run.status.value})" if run else " · starting…"))
    seen = run.counters.get("seen", 0) if run else 0
    st.progress(min(seen / max(job.total, 1), 1.0), text=f"{seen} of {job.total} problems")
    if run:
        c = run.counters
        numbers = [("verified", c.get("verified", 0)), ("added", c.get("added", 0)),
                   ("rejected", c.get("rejected", 0)), ("tokens", f"{run.tokens:,}")]
        for column, (name, value) in zip(st.columns(4), numbers, strict=True):
            column.metric(name, value)
        curve = charts.accuracy_curve(store.attempts(run_id=run.id, kind="done"))
        if not curve.empty:
            st.markdown("**Accuracy over this run**")
            st.line_chart(curve)
    if alive and st.button("Stop", help="Interrupt it: the run is recorded, and a rerun on the same files resumes."):
        app_api.stop_learning(job)
        st.session_state["learn_alive"] = False
        st.rerun(scope="app")  # the whole page: the form and the charts, without the timer
    st.code(app_api.log_tail(job) or "(no output yet)", language="text")
    st.caption(f"Log: `{job.log}`")


def _history(store: LibraryStore) -> None:
    runs = store.runs()
    st.subheader("Past runs")
    if not runs:
        st.caption("No learning run yet.")
    else:
        st.dataframe(charts.runs_frame(runs), hide_index=True)
        accuracy = charts.accuracy_by_run(runs)
        left, right = st.columns(2)
        if not accuracy.empty:
            left.markdown("**Accuracy per run**")
            left.line_chart(accuracy)
        right.markdown("**Tokens per run**")
        right.bar_chart(charts.tokens_by_run(runs))
    insights = store.list(status=None)
    st.subheader("Library size by stage")
    left, right = st.columns(2)
    left.bar_chart(charts.library_by_stage(insights))
    growth = charts.library_growth(insights)
    if not growth.empty:
        right.markdown("**Verified insights over time**")
        right.line_chart(growth)



def _start_evolve() -> None:
    """Start an evolution job from the form's choices (a button callback)."""
    try:
        job = app_api.start_evolve(services.settings(), rounds=st.session_state.get("evolve_rounds") or 1,
                                   candidates=st.session_state.get("evolve_candidates") or 3,
                                   max_problems=st.session_state.get("evolve_max_problems") or None)
    except (AlphaoptError, LibraryError, OSError) as exc:
        _flash(f"Evolution not started: {exc}", "error")
    else:
        _flash(f"Started evolution job {job.id} ({job.total} round(s), pid {job.pid}); it goes on if you close or "
               "reload this page.")


def _evolve_form(busy: bool) -> None:
    st.subheader("Evolve the library")
    st.caption("Replays retrieval on the training problems the library holds with answers, labels each (insight, "
               "problem) pair by solving with and without the insight, rewrites misaligned conditions (the best of "
               "several, judged by retrieval) and re-tags insights. Every change is a library version you can roll "
               "back.")
    left, middle, right = st.columns(3)
    left.number_input("Rounds", min_value=1, max_value=10, value=1, key="evolve_rounds")
    middle.number_input("Candidate conditions", min_value=1, max_value=8, value=3, key="evolve_candidates")
    right.number_input("At most this many problems (0: all)", min_value=0, value=0, key="evolve_max_problems")
    st.button("Start evolving", on_click=_start_evolve, disabled=busy)


def rounds_frame(counters: dict[str, Any]) -> pd.DataFrame:
    """One row per round of an evolution run: its metrics before and after, and what it changed."""
    rows = []
    for r in counters.get("rounds", []):
        for when in ("before", "after"):
            m = r.get(when)
            if m:
                rows.append({"round": r["round"], "when": when, "accuracy": m["accuracy"], "precision": m["precision"],
                             "recall": m["recall"], "positive": m["positive"], "negative": m["negative"],
                             "unretrieved": m["unretrieved"], "refined": len(r["refined"]),
                             "broadened": len(r.get("broadened", {})),  # runs before session 20 had none
                             "re-tagged": len(r["retagged"]), "retired": len(r["retired"])})
    return pd.DataFrame(rows)


def _evolve_job(store: LibraryStore) -> None:
    """The newest evolution job: state, per-round metrics, how to undo it, and its log."""
    jobs = app_api.evolve_jobs(services.settings())
    if not jobs:
        return
    job = jobs[0]
    alive = app_api.is_running(job)
    if not alive and st.session_state.get("evolve_alive"):
        st.session_state["evolve_alive"] = False
        st.rerun(scope="app")
    st.session_state["evolve_alive"] = alive
    run = app_api.evolve_run_of(job, store.runs())
    state = "running" if alive else ("stopped" if job.stopped else "ended")
    if job.returncode not in (None, 0) and not job.stopped:
        state += f" with exit code {job.returncode}"
    st.markdown(f"**Evolution job {job.id}: {state}** · pid {job.pid} · {job.total} round(s)"
                + (f" · library run `{run.id}` ({run.status.value})" if run else " · starting…"))
    if run:
        if alive and run.counters.get("step"):
            st.caption(f"Now: {run.counters['step']}")
        frame = rounds_frame(run.counters)
        if not frame.empty:
            st.dataframe(frame, hide_index=True)
        version = run.counters.get("library_version", run.settings.get("library_version"))
        if version is not None and not alive:
            st.caption(f"To undo this run, roll the library back to version {version} (below).")
    if alive and st.button("Stop evolving", help="Interrupt it: the run is recorded as stopped."):
        app_api.stop_learning(job)
        st.session_state["evolve_alive"] = False
        st.rerun(scope="app")
    st.code(app_api.log_tail(job) or "(no output yet)", language="text")


def _rollback() -> None:
    version = int(st.session_state.get("rollback_version") or 0)
    try:
        restored = app_api.rollback_library(services.settings(), version)
    except (AlphaoptError, LibraryError) as exc:
        _flash(f"Not rolled back: {exc}", "error")
    else:
        _flash(f"Restored library version {version} as version {restored.number}.")


def _versions(store: LibraryStore, busy: bool) -> None:
    versions = store.library_versions()
    with st.expander(f"Library versions ({len(versions)})"):
        if versions:
            st.dataframe(pd.DataFrame([{"version": v.number, "at": v.created_at[:19].replace("T", " "),
                                        "by": v.actor or "", "reason": v.reason,
                                        "changed": ", ".join([*v.insights, *v.labels])} for v in versions[::-1][:50]]),
                         hide_index=True)
            st.number_input("Roll back to version", min_value=1, max_value=versions[-1].number,
                            value=versions[-1].number, key="rollback_version")
            st.button("Roll back", on_click=_rollback, disabled=busy,
                      help="Restore the library as it was at that version (itself a new version: nothing is lost).")
        else:
            st.caption("No change recorded yet.")


settings = services.settings()
st.title("Learn from solved problems")
store = services.store_or_stop(settings)
services.flash("learn_msg")
jobs = app_api.learning_jobs(settings)
running = bool(jobs) and app_api.is_running(jobs[0])
evolving_jobs = app_api.evolve_jobs(settings)
evolving = bool(evolving_jobs) and app_api.is_running(evolving_jobs[0])
_form(running or evolving)
st.fragment(_job, run_every=REFRESH_S if running else None)(store)
_evolve_form(running or evolving)
st.fragment(_evolve_job, run_every=REFRESH_S if evolving else None)(store)
ours = [app_api.run_of(jobs[0], store.runs()) if jobs and running else None,
        app_api.evolve_run_of(evolving_jobs[0], store.runs()) if evolving else None]
others = [r for r in store.runs() if r.status.value == "running" and r not in ours]
if others:
    st.info(f"Learning run(s) {', '.join(r.id for r in others)} marked running in the library were not started "
            "here (the CLI, or an interrupted run).")
_history(store)
_versions(store, running or evolving)
