"""Library page: search and filter insights; see evidence and history; edit, retire, restore; import/export."""

from __future__ import annotations

import streamlit as st
from pydantic import ValidationError

from alphaopt.errors import InputError
from alphaopt.interfaces import app_api
from alphaopt_app import insights as views
from alphaopt_app import services
from library import Insight, LibraryError, LibraryStore, Stage, Status


def _flash(message: str, kind: str = "success") -> None:
    st.session_state["lib_msg"] = (kind, message)


def _set_status(store: LibraryStore, insight_id: str, status: Status) -> None:
    try:
        store.set_status(insight_id, status)
        _flash(f"{insight_id} is now {status.value}.")
    except LibraryError as exc:
        _flash(str(exc), "error")


def _overview(store: LibraryStore, insight: Insight) -> None:
    st.markdown(f"**Label:** {insight.stage.value} / {insight.level1} / {insight.level2}")
    st.markdown("**Condition** (when it applies)")
    st.write(insight.condition)
    st.markdown("**Explanation** (what to do)")
    st.write(insight.explanation)
    if insight.example:
        st.markdown("**Example**")
        st.code(insight.example, language="text")
    st.markdown("**Provenance**")
    st.json(insight.provenance.model_dump(mode="json"), expanded=False)
    st.caption(f"Created {insight.created_at[:19]} · updated {insight.updated_at[:19]}")
    if insight.status == Status.RETIRED:
        st.button("Restore", key=f"restore_{insight.id}", on_click=_set_status,
                  args=(store, insight.id, Status.VERIFIED), help="Make it verified again, so retrieval offers it.")
    else:
        st.button("Retire", key=f"retire_{insight.id}", on_click=_set_status,
                  args=(store, insight.id, Status.RETIRED), help="Retrieval stops offering it; history is kept.")


def _evidence(store: LibraryStore, insight: Insight) -> None:
    evidence = store.evidence_for(insight.id)
    if not evidence:
        st.caption("No evidence yet: it has not been retrieved for a problem.")
        return
    for column, (name, count) in zip(st.columns(4), views.evidence_summary(evidence).items(), strict=True):
        column.metric(name, count)
    st.dataframe(views.evidence_frame(evidence), hide_index=True)


def _history(store: LibraryStore, insight: Insight) -> None:
    for d in views.version_diffs(store.versions(insight.id)):
        st.markdown(f"**v{d.version}** · {d.created_at} · {d.reason}")
        st.code(d.diff or "(no change)", language="diff")


def _edit(store: LibraryStore, insight: Insight) -> None:
    key = f"edit_{insight.id}_{insight.version}"
    with st.form(key):
        stages = [s.value for s in Stage]
        stage = st.selectbox("Stage", stages, index=stages.index(insight.stage.value), key=f"{key}_stage")
        level1 = st.text_input("Level 1 label", insight.level1, key=f"{key}_level1")
        level2 = st.text_input("Level 2 label", insight.level2, key=f"{key}_level2")
        condition = st.text_area("Condition", insight.condition, key=f"{key}_condition")
        explanation = st.text_area("Explanation", insight.explanation, key=f"{key}_explanation")
        example = st.text_area("Example", insight.example, key=f"{key}_example")
        reason = st.text_input("Why this change", "edited in the app", key=f"{key}_reason")
        if not st.form_submit_button("Save as a new version"):
            return
    if not condition.strip() or not explanation.strip():
        st.error("Not saved: the condition and the explanation must not be empty.")
        return
    try:
        new = store.revise(insight.id, stage=stage, level1=level1, level2=level2, condition=condition.strip(),
                           explanation=explanation.strip(), example=example.strip(), reason=reason.strip() or None)
    except (LibraryError, ValidationError) as exc:
        message = "; ".join(e["msg"] for e in exc.errors()) if isinstance(exc, ValidationError) else str(exc)
        st.error(f"Not saved: {message}.")
        return
    _flash(f"Saved {insight.id} v{new.version}." if new.version != insight.version else "Nothing changed.")
    st.rerun()


def _import(store: LibraryStore) -> None:
    upload = st.session_state.get("import_file")
    if upload is None:
        _flash("Choose a JSONL file to import first.", "error")
        return
    try:
        count = app_api.import_library(store, upload.getvalue())
    except (InputError, LibraryError) as exc:
        _flash(f"Nothing was imported from {upload.name}: {exc}", "error")
    else:
        _flash(f"Imported {count} insights from {upload.name}; retrieval re-indexes them on the next solve.")


def _transfer(store: LibraryStore) -> None:
    st.subheader("Import and export")
    left, right = st.columns(2)
    statuses = left.multiselect("Export these statuses", [s.value for s in Status], default=["verified"],
                                key="export_status")
    left.download_button("Download JSONL", app_api.export_library(store, statuses=tuple(map(Status, statuses))),
                         file_name="alphaopt-library.jsonl", mime="application/jsonl", on_click="ignore",
                         disabled=not statuses)
    right.file_uploader("Import a JSONL export (all or nothing)", type=["jsonl", "json", "txt"], key="import_file")
    right.button("Import", on_click=_import, args=(store,))


settings = services.settings()
st.title("Experience library")
store = services.store_or_stop(settings)
services.flash("lib_msg")

c1, c2, c3, c4 = st.columns([3, 2, 3, 2])
text = c1.text_input("Search", key="lib_text", placeholder="words in the condition, explanation or example")
stage = c2.selectbox("Stage", ["all", *[s.value for s in Stage]], key="lib_stage")
used = {i.label for i in store.list(status=None, stage=None if stage == "all" else stage)}
labels = {f"{lab.level1} / {lab.level2}" + (f" ({lab.stage.value})" if stage == "all" else ""): lab.key
          for lab in store.labels(None if stage == "all" else stage) if lab.key in used}
label = c3.selectbox("Label", ["all", *labels], key="lib_label")
statuses = c4.multiselect("Status", [s.value for s in Status], default=["verified", "candidate"], key="lib_status",
                          help="None chosen: every status.")
found = store.list(status=statuses or None, stage=None if stage == "all" else stage,
                   label=labels.get(label), text=text.strip() or None)
st.caption(f"{len(found)} insights match; {len(store.list(status=None))} in the library.")
st.dataframe(views.insights_frame(found), hide_index=True)
if found:
    by_id = {i.id: i for i in found}
    choice = st.selectbox("Insight", list(by_id), key="lib_choice",
                          format_func=lambda i: f"{i} · {by_id[i].condition[:90]}")
    current = by_id[choice or found[0].id]
    st.subheader(f"{current.id} · v{current.version} · {current.status.value}")
    overview, evidence, history, edit = st.tabs(["Insight", "Evidence", "History", "Edit"])
    with overview:
        _overview(store, current)
    with evidence:
        _evidence(store, current)
    with history:
        _history(store, current)
    with edit:
        _edit(store, current)
else:
    st.info("No insight matches: change the search or the filters, or import a library below.")
_transfer(store)
