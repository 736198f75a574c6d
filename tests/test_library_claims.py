"""Leased task claims and the merge lock: several workers (each with its own store) on one library.

Real SQLite files, and real PostgreSQL with ALPHAOPT_TEST_PG_URL (``FOR UPDATE SKIP LOCKED``).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy.exc import SQLAlchemyError

from library import (
    ClaimStatus,
    ConflictError,
    InvalidInsightError,
    LibraryError,
    LibraryStore,
    LockTimeoutError,
    Status,
)
from tests.test_library_store import MakeLocation, draft, make_location

FIXTURES = (make_location,)  # shared with the store tests
TASKS = [f"nl4opt/{n}" for n in range(40)]

Workers = Callable[[int], list[LibraryStore]]


@pytest.fixture
def workers(make_location: MakeLocation) -> Iterator[Workers]:
    """``workers(n)``: n stores on one new library, as n worker processes would open it."""
    opened: list[LibraryStore] = []

    def open_workers(n: int) -> list[LibraryStore]:
        location = make_location()
        stores = [LibraryStore(location, actor=f"worker-{i}") for i in range(n)]
        opened.extend(stores)
        return stores

    yield open_workers
    for store in opened:
        store.close()


def _together(work: Callable[[int], Any], n: int) -> list[Any]:
    """Run ``work(0..n-1)`` in n threads released at once; return the results (or exceptions)."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except (LibraryError, SQLAlchemyError) as e:  # returned to the test, which asserts on it
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def test_concurrent_workers_claim_disjoint_tasks(workers: Workers):
    stores = workers(4)

    def claim_until_none_left(i: int) -> list[str]:
        mine: list[str] = []
        order = TASKS if i % 2 else TASKS[::-1]  # workers may prefer different orders
        while got := stores[i].claim_tasks(f"w{i}", order, n=3, lease_s=300):
            mine += got
        return mine

    claimed = _together(claim_until_none_left, 4)
    assert all(isinstance(c, list) for c in claimed), claimed
    every = [t for c in claimed for t in c]
    assert sorted(every) == sorted(TASKS)  # all claimed, none twice
    held = {c.task_id: c.worker_id for c in stores[0].claims()}
    assert held == {t: f"w{i}" for i, c in enumerate(claimed) for t in c}
    assert stores[1].claim_tasks("w9", TASKS) == []  # every lease is live


def test_concurrent_workers_complete_every_task_once(workers: Workers):
    stores = workers(3)

    def learn(i: int) -> list[str]:
        done: list[str] = []
        while got := stores[i].claim_tasks(f"w{i}", TASKS, n=1, lease_s=300):
            with stores[i].transaction():  # the task's results and its completion commit together
                stores[i].complete(f"w{i}", got[0], outcome="learned")
            done += got
        return done

    finished = _together(learn, 3)
    assert sorted(t for f in finished for t in f) == sorted(TASKS)
    claims = stores[0].claims(status="done")
    assert len(claims) == len(TASKS) and {c.outcome for c in claims} == {"learned"}
    assert {c.attempts for c in claims} == {1}


def test_an_expired_lease_is_claimable_and_a_completed_task_never_again(workers: Workers):
    a, b = workers(2)
    assert a.claim_tasks("a", ["t/1", "t/2"], n=1, lease_s=0.5) == ["t/1"]
    assert b.claim_tasks("b", ["t/1"], lease_s=60) == []  # live lease
    assert a.renew("a", ["t/1"], lease_s=0.5) == ["t/1"]
    time.sleep(0.7)  # a "died": its lease runs out
    [expired] = b.claims()
    assert expired.expired and expired.worker_id == "a"
    assert b.claim_tasks("b", ["t/1"], lease_s=60) == ["t/1"]
    assert a.renew("a", ["t/1"]) == []  # lost: a stops working on it
    with pytest.raises(ConflictError, match=r"held by 'b'.*renew"):
        a.complete("a", "t/1")
    done = b.complete("b", "t/1", outcome="unsolved")
    assert (done.status, done.outcome, done.attempts, done.finished_at is not None) == (
        ClaimStatus.DONE, "unsolved", 2, True)
    assert b.complete("b", "t/1", outcome="unsolved") == done  # twice is harmless
    assert a.claim_tasks("a", ["t/1", "t/2"], n=2) == ["t/2"]  # t/1 is done for good
    assert b.claim_tasks("b", ["t/1"], lease_s=0.01) == []
    time.sleep(0.05)
    assert b.claim_tasks("b", ["t/1"]) == []  # however long ago
    assert b.renew("b", ["t/1"]) == []


def test_release_and_reclaiming_own_tasks(workers: Workers):
    a, b = workers(2)
    assert a.claim_tasks("a", ["t/1", "t/2", "t/3"], n=2) == ["t/1", "t/2"]
    assert a.claim_tasks("a", ["t/1", "t/2"], n=2) == []  # held: not handed out again, even to their holder
    resumed = [c.task_id for c in a.claims(worker_id="a", status="claimed")]  # a restarted worker resumes
    assert a.renew("a", resumed, lease_s=900) == ["t/1", "t/2"]
    assert a.release("a", ["t/1", "t/3"]) == ["t/1"]
    assert b.claim_tasks("b", ["t/1", "t/2"], n=2) == ["t/1"]  # released: at once
    assert a.renew("a", ["t/1", "t/2"]) == ["t/2"]
    assert [c.task_id for c in a.claims(status=ClaimStatus.CLAIMED, worker_id="b")] == ["t/1"]
    with pytest.raises(ConflictError, match="holds no claim"):
        a.complete("a", "t/9")
    with pytest.raises(InvalidInsightError, match="lease_s"):
        a.claim_tasks("a", ["t/4"], lease_s=0)
    assert a.claim_tasks("a", [], n=3) == [] and a.claim_tasks("a", ["t/4"], n=0) == []
    assert b.library_versions() == a.library_versions()  # claims are not library content
    assert [v.reason for v in a.library_versions()] == ["seed labels"]


def test_the_merge_lock_is_held_by_one_worker_at_a_time(workers: Workers):
    a, b = workers(2)
    with a.merge_lock():
        with a.merge_lock():  # nested in one thread: allowed
            pass
        started = time.monotonic()
        with pytest.raises(LockTimeoutError, match="merge lock"), b.merge_lock(timeout_s=0.3):
            pass
        assert time.monotonic() - started >= 0.3
    with b.merge_lock(timeout_s=5):
        assert a.claim_tasks("a", ["t/1"]) == ["t/1"]  # the lock holds no transaction: others write on


def test_the_evolve_lock_is_one_per_library_and_apart_from_the_merge_lock(workers: Workers):
    a, b = workers(2)
    with a.evolve_lock():
        with pytest.raises(LockTimeoutError, match="another evolution run"), b.evolve_lock():
            pass
        with b.merge_lock(timeout_s=5):  # merges go on while a library evolves
            pass
    with b.evolve_lock():
        pass


def test_merges_under_the_lock_never_collide(workers: Workers):
    stores = workers(3)
    for n in range(4):
        stores[0].add_insight(draft(f"near duplicate {n}"), status=Status.VERIFIED)

    def merge_two(i: int) -> str | None:
        with stores[i].merge_lock(timeout_s=60):
            verified = stores[i].list(status="verified")
            if len(verified) < 2:
                return None
            time.sleep(0.05)  # the merge prompt and its re-verification
            return stores[i].merge([v.id for v in verified[:2]], draft(f"merged by {i}"), evidence={}).id

    results = _together(merge_two, 3)
    assert sorted(results) == ["I0005", "I0006", "I0007"], results  # three merges, no conflict
    assert [i.id for i in stores[0].list(status="verified")] == ["I0007"]
    assert all(len(stores[0].versions(f"I000{n}")) == 2 for n in range(1, 7))  # each retired once


def _hold_lock(location: str, ready: Any) -> None:
    store = LibraryStore(location)
    with store.merge_lock():
        ready.send("held")
        time.sleep(120)


def test_a_dead_worker_leaves_the_merge_lock_free(workers: Workers):
    [store] = workers(1)
    location = str(store.url.render_as_string(hide_password=False)) if store.url.get_backend_name() != "sqlite" \
        else str(store.url.database)
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_hold_lock, args=(location, send), daemon=True)
    child.start()
    try:
        assert receive.poll(60) and receive.recv() == "held"
        with pytest.raises(LockTimeoutError), store.merge_lock(timeout_s=0.2):
            pass
        os.kill(child.pid, signal.SIGKILL)
        child.join(timeout=30)
        with store.merge_lock(timeout_s=30):
            pass
    finally:
        if child.is_alive():
            child.kill()
            child.join()


def test_an_in_memory_library_has_a_merge_lock_too():
    with LibraryStore(":memory:") as store, store.merge_lock(timeout_s=1), store.merge_lock():
        assert store.list() == []


def test_workers_adding_the_same_training_problem_at_once_all_get_it(workers: Workers):
    stores = workers(4)
    for round_ in range(5):
        item = f"p{round_}"
        results = _together(lambda i, item=item: stores[i].add_task("race", item, "Maximize x.", 1.0), 4)
        assert all(not isinstance(r, BaseException) for r in results), results
        assert {r.id for r in results} == {f"race/p{round_}"}
    assert len([t for t in stores[0].tasks() if t.dataset == "race"]) == 5
