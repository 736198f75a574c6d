"""The learner's steps (verify, retire, merge, rollback) commit whole or not at all, even under kill -9.

The crash tests run each step in a real (forked) child process that stops at every flush and commit of
the step's transaction in turn (an SQLAlchemy event listener in the child, not a hook in the
library) and is killed there with SIGKILL; reopening the library must show the state just
before the step or just after it, never a mix. Real SQLite, and PostgreSQL with ALPHAOPT_TEST_PG_URL.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from library import (
    ConflictError,
    InsightDraft,
    InvalidInsightError,
    LibraryStore,
    NotFoundError,
    Status,
)
from tests.test_library_store import (
    MakeLocation,
    draft,
    make_location,
    make_store,
    store,
)

FIXTURES = (make_location, make_store, store)  # shared with the store tests

def test_merge_adds_the_merged_insight_and_retires_its_members_as_one_version(store: LibraryStore):
    a = store.add_insight(draft("A"), status="verified", provenance={"source_tasks": ["nl4opt/2"],
                                                                     "evidence": {"with": 1}})
    b = store.add_insight(draft("B"), status="verified", provenance={"source_tasks": ["nl4opt/1", "nl4opt/2"]})
    start = store.library_version()
    merged = store.merge([a.id, b.id], draft("A or B"), evidence={"sources": 2, "with": 2},
                         provenance={"model": "m", "prompt_version": "merge:abc", "run_id": "R0001"})
    assert (merged.id, merged.status, merged.version) == ("I0003", Status.VERIFIED, 1)
    assert merged.provenance.source_tasks == ("nl4opt/1", "nl4opt/2")
    assert merged.provenance.evidence == {"sources": 2, "with": 2, "merge_of": [a.id, b.id]}
    assert (merged.provenance.model, merged.provenance.run_id) == ("m", "R0001")
    for member in (store.get(a.id), store.get(b.id)):
        assert (member.status, member.version, member.reason) == (Status.RETIRED, 2, "merged into I0003")
        assert member.provenance.evidence["merged_into"] == "I0003"
    assert store.get(a.id).provenance.evidence["with"] == 1  # earlier evidence kept
    [version] = store.library_versions(since=start)
    assert (version.reason, version.insights) == ("merge I0001, I0002", ("I0001", "I0002", "I0003"))


def test_merge_refuses_what_it_cannot_do_and_writes_nothing(store: LibraryStore):
    a = store.add_insight(draft("A"), status="verified")
    b = store.add_insight(draft("B"), status="verified")
    c = store.add_insight(draft("C"), status="retired")
    stamp = store.version_stamp()
    with pytest.raises(InvalidInsightError, match="two or more"):
        store.merge([a.id, a.id], draft("AA"), evidence={})
    with pytest.raises(ConflictError, match=r"\['I0003'\] already retired.*merge what is left"):
        store.merge([a.id, b.id, c.id], draft("ABC"), evidence={})
    with pytest.raises(NotFoundError, match="I0009"):
        store.merge([a.id, "I0009"], draft("A?"), evidence={})
    assert store.version_stamp() == stamp
    assert [(i.id, i.status.value) for i in store.list()] == [(a.id, "verified"), (b.id, "verified"),
                                                              (c.id, "retired")]
    assert store.add_insight(draft("D")).id == "I0004"  # no id was spent on a refused merge


def test_verify_records_evidence_and_status_together(store: LibraryStore):
    candidate = store.add_insight(draft(), provenance={"evidence": {"origin": "explore"}})
    start = store.library_version()
    verified = store.verify(candidate.id, {"without": 0, "with": 2, "k": 2})
    assert (verified.status, verified.version, verified.reason) == (Status.VERIFIED, 2, "counterfactual check")
    assert verified.provenance.evidence == {"origin": "explore", "without": 0, "with": 2, "k": 2}
    assert [v.reason for v in store.library_versions(since=start)] == [f"verify {candidate.id}"]
    store.retire(candidate.id, reason="recheck: no lift", evidence={"kept": False})
    with pytest.raises(InvalidInsightError, match=r"retired.*new candidate"):
        store.verify(candidate.id, {"with": 1})


def test_two_workers_merging_the_same_insights_merge_once(make_location: MakeLocation):
    location = make_location()
    with LibraryStore(location) as setup:
        a = setup.add_insight(draft("A"), status="verified")
        b = setup.add_insight(draft("B"), status="verified")
    stores = [LibraryStore(location), LibraryStore(location)]
    barrier = threading.Barrier(2)
    results: list[Any] = [None, None]

    def work(n: int) -> None:
        barrier.wait()
        try:
            results[n] = stores[n].merge([b.id, a.id] if n else [a.id, b.id], draft(f"merged by {n}"), evidence={})
        except ConflictError as e:
            results[n] = e

    threads = [threading.Thread(target=work, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    try:
        assert sorted(type(r).__name__ for r in results) == ["ConflictError", "Insight"]
        assert [i.id for i in stores[0].list(status="verified")] == ["I0003"]
        assert stores[0].get(a.id).version == 2  # retired once, not twice
    finally:
        for s in stores:
            s.close()


# -- kill -9 inside a step ------------------------------------------------------------------

def _child(location: str, step: str, stop_at: int, checkpoint: int, out: Connection) -> None:
    """The step, in a forked process that reports each flush and commit and stalls at ``stop_at``."""
    store = LibraryStore(location)
    merged = InsightDraft(stage="general_formulation", level1="constraints",
                          level2="ratio or percentage constraints", condition="A share of a total, merged",
                          explanation="x >= p * total")
    count = 0

    def pause(*_: Any) -> None:
        nonlocal count
        count += 1
        out.send(f"point {count}")
        if count == stop_at:
            time.sleep(120)

    for name in ("after_flush_postexec", "before_commit", "after_commit"):
        event.listen(Session, name, pause)
    if step == "merge":
        store.merge(["I0001", "I0002"], merged, evidence={"sources": 2, "with": 2}, provenance={"run_id": "R0001"})
    elif step == "verify":
        with store.transaction():  # the learner verifies its candidates together
            store.verify("I0003", {"without": 0, "with": 1})
            store.verify("I0004", {"without": 0, "with": 1})
    elif step == "retire":
        store.retire("I0001", reason="misled three problems", evidence={"misled": 3})
    elif step == "rollback":
        store.rollback(checkpoint)
    elif step == "two_transactions":  # how the learner merged before merge(): the harness must see the mix
        store.add_insight(merged, status="verified")
        with store.transaction():
            store.set_status("I0001", "retired")
            store.set_status("I0002", "retired")
    out.send("done")


def _setup(store: LibraryStore) -> int:
    store.add_insight(draft("A share of a total"), status="verified", provenance={"source_tasks": ["t/1"]})
    checkpoint = store.library_version()
    store.add_insight(draft("A percentage of the sum"), status="verified", provenance={"source_tasks": ["t/2"]})
    store.add_insight(draft("candidate one"))
    store.add_insight(draft("candidate two"))
    store.ensure_label("domain_modeling", "blending", "quality specs", definition="Specs.")
    return checkpoint


def _snapshot(store: LibraryStore) -> Any:
    return (
        [(i.id, i.status.value, i.version, i.condition, i.provenance.model_dump_json()) for i in store.list()],
        [(v.number, v.reason, v.insights, v.labels) for v in store.library_versions()],
        [(lb.key.path, lb.definition, lb.retired) for lb in store.labels(include_retired=True)],
        store.version_stamp().split(":")[1],
    )


def _run_child(location: str, step: str, stop_at: int, checkpoint: int) -> str:
    """Run the step in a child process; kill it with SIGKILL when it reaches point ``stop_at``.

    Returns ``"done"`` when the step finished before reaching that point, else ``"killed"``.
    """
    context = multiprocessing.get_context("fork")  # a real process, without importing the library again
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(location, step, stop_at, checkpoint, send), daemon=True)
    child.start()
    send.close()
    try:
        while True:
            if not receive.poll(60):
                raise AssertionError(f"the child never reached point {stop_at}")
            try:
                message = receive.recv()
            except EOFError:
                raise AssertionError(f"the child ended early with exit code {child.exitcode}") from None
            if message == f"point {stop_at}":
                os.kill(child.pid, signal.SIGKILL)
                child.join(timeout=30)
                return "killed"
            if message == "done":
                child.join(timeout=30)
                assert child.exitcode == 0
                return "done"
    finally:
        if child.is_alive():
            child.kill()
            child.join()
        receive.close()


def _kill_at_every_point(make_location: MakeLocation, step: str) -> list[str]:
    """The state found after killing the step at each of its points in turn: "before" or "after"."""
    reference = make_location()
    with LibraryStore(reference) as store:
        checkpoint = _setup(store)
        before = _snapshot(store)
    assert _run_child(reference, step, 0, checkpoint) == "done"
    with LibraryStore(reference) as store:
        after = _snapshot(store)
    assert after != before
    found: list[str] = []
    location = None
    for stop_at in range(1, 100):
        if location is None:  # a library left as before the step serves the next kill as well
            location = make_location()
            with LibraryStore(location) as store:
                _setup(store)
        if _run_child(location, step, stop_at, checkpoint) == "done":
            break
        with LibraryStore(location) as store:
            state = _snapshot(store)
        found.append("before" if state == before else "after" if state == after else f"mixed at {stop_at}")
        if state != before:
            location = None
    return found


@pytest.mark.parametrize("step", ["merge", "verify", "retire", "rollback"])
def test_a_step_killed_at_any_point_leaves_the_state_before_or_after_it(make_location: MakeLocation, step: str):
    found = _kill_at_every_point(make_location, step)
    # every point up to the commit leaves the library as before; the one after the commit, as after
    assert found == ["before"] * (len(found) - 1) + ["after"], found
    assert len(found) >= 3


def test_the_harness_sees_a_step_split_over_two_transactions(tmp_path: Path):
    counter = iter(range(100))
    found = _kill_at_every_point(lambda: str(tmp_path / f"split-{next(counter)}.db"), "two_transactions")
    assert any(f.startswith("mixed") for f in found), found
