"""Vector recall over insight conditions: real Chroma in a temp dir, real SQLite, the offline embedder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from library import InsightDraft, LibraryIndex, LibraryStore, Status

CONDITIONS = {
    ("general_formulation", "variables", "integrality"):
        "Items such as cars, workers or machines can only be bought or produced in whole units.",
    ("general_formulation", "constraints", "ratio or percentage constraints"):
        "A quantity must be at least or at most a given percentage of a total.",
    ("code_implementation", "pyomo api", "indexing"):
        "The Pyomo model declares variables and constraints indexed over a set of products or periods.",
    ("domain_modeling", "network flow", "flow conservation"):
        "Goods are shipped from factories through intermediate warehouses to customers.",
}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def store(tmp_path: Path) -> LibraryStore:
    store = LibraryStore(tmp_path / "library.db")
    for (stage, level1, level2), condition in CONDITIONS.items():
        store.add_insight(InsightDraft(stage=stage, level1=level1, level2=level2, condition=condition,
                                       explanation="..."), status=Status.VERIFIED)
    return store  # I0001 integrality, I0002 ratio, I0003 pyomo indexing, I0004 flow conservation


def test_recall_finds_the_insight_for_a_paraphrase(store: LibraryStore, tmp_path: Path):
    with LibraryIndex(tmp_path / "chroma") as index:
        assert index.rebuild(store) == 4
        hits = index.recall("No more than 40% of the total budget may be spent on advertising.", k=2)
        assert hits[0].insight_id == "I0002" and hits[0].distance < hits[1].distance
        assert index.recall("The company buys trucks; a fraction of a truck is impossible.")[0].insight_id == "I0001"
        assert index.recall("Products move from plants via depots to retail stores.")[0].insight_id == "I0004"


def test_filters_by_stage_label_and_status(store: LibraryStore, tmp_path: Path):
    with LibraryIndex(tmp_path / "chroma") as index:
        index.rebuild(store)
        query = "No more than 40% of the total budget may be spent on advertising."
        assert [h.insight_id for h in index.recall(query, stage="code_implementation")] == ["I0003"]
        assert [h.insight_id for h in index.recall(query, stage="domain_modeling")] == ["I0004"]
        labels: list[tuple[str, str, str] | str] = [("General Formulation", "Variables", "Integrality"),
                                                    "domain_modeling/network flow/flow conservation"]
        assert {h.insight_id for h in index.recall(query, labels=labels)} == {"I0001", "I0004"}
        assert index.recall(query, labels=[]) == []
        store.set_status("I0002", Status.RETIRED)
        index.upsert(store.get("I0002"))
        assert "I0002" not in [h.insight_id for h in index.recall(query)]  # verified only by default
        assert index.recall(query, status=None)[0].insight_id == "I0002"
        candidate = store.add_insight(InsightDraft(stage="general_formulation", level1="constraints",
                                                   level2="ratio", condition="The budget share for ads is capped.",
                                                   explanation="..."))
        index.upsert(candidate)
        assert candidate.id not in [h.insight_id for h in index.recall(query)]
        assert index.recall(query, status=["candidate"])[0].insight_id == candidate.id


def test_upsert_follows_revisions_and_remove_drops(store: LibraryStore, tmp_path: Path):
    with LibraryIndex(tmp_path / "chroma") as index:
        index.rebuild(store)
        revised = store.revise("I0003", condition="Several staff shifts overlap and each hour needs enough workers.")
        index.upsert(revised)
        assert index.recall("How many nurses per overlapping shift?")[0].insight_id == "I0003"
        index.remove("I0003")
        index.remove("I0003")  # idempotent
        assert index.count() == 3 and "I0003" not in [h.insight_id for h in index.recall("nurses per shift")]


def test_rebuild_after_deleting_the_chroma_dir_restores_recall(store: LibraryStore, tmp_path: Path):
    path = tmp_path / "chroma"
    query = "Products move from plants via depots to retail stores."
    with LibraryIndex(path) as index:
        index.rebuild(store)
        before = index.recall(query)
        assert index.stamp == store.version_stamp() and index.sync(store) is False
    shutil.rmtree(path)
    with LibraryIndex(path) as index:
        assert index.recall(query) == [] and index.stamp is None
        assert index.sync(store) is True
        after = index.recall(query)
    assert [h.insight_id for h in after] == [h.insight_id for h in before]
    assert [h.distance for h in after] == pytest.approx([h.distance for h in before], abs=1e-4)
    with LibraryIndex(path) as reopened:  # persisted: a new client sees the same collection
        assert reopened.count() == 4 and reopened.sync(store) is False


def test_an_index_rebuilt_by_another_user_of_the_same_folder_keeps_working(store: LibraryStore, tmp_path: Path):
    """A `library` command while `learn` runs rebuilds the index (delete + re-create the collection);
    the running process must follow the new collection, not fail on the deleted one."""
    query = "Products move from plants via depots to retail stores."
    with LibraryIndex(tmp_path / "chroma") as running:
        running.rebuild(store)
        store.set_status("I0001", Status.RETIRED)  # the store moves on: the next opener rebuilds
        with LibraryIndex(tmp_path / "chroma") as other:
            assert other.sync(store) is True
        assert running.recall(query)[0].insight_id == "I0004" and running.count() == 4
        running.remove("I0002")
        assert running.count() == 3


@pytest.mark.parametrize("where", ["folder", "server"])
def test_a_rebuild_another_rebuild_overtakes_still_finishes(store: LibraryStore, tmp_path: Path, where: str,
                                                             request: pytest.FixtureRequest):
    """Two learners starting at once rebuild the shared index together: the second deletes and
    re-creates the collection after the first filled it, and the first must still record its stamp
    (a Chroma server refused it: the collection no longer exists)."""
    address = tmp_path / "chroma" if where == "folder" else request.getfixturevalue("chroma_server")
    with LibraryIndex(address) as first, LibraryIndex(address) as second:
        upsert = first.upsert

        def overtaken(insights):
            upsert(insights)
            second.rebuild(store)  # deletes the collection the first one just filled

        first.upsert = overtaken  # type: ignore[method-assign]
        assert first.rebuild(store) == 4
        assert first.stamp == store.version_stamp() and first.count() == 4


@pytest.fixture
def chroma_server(tmp_path: Path):
    """A real Chroma server (the `chroma` command that chromadb installs) on a free local port."""
    import subprocess
    import sys

    from tests.servers import free_port, wait_for_server

    command = Path(sys.executable).parent / "chroma"
    if not command.exists():
        pytest.skip("the `chroma` command is not installed next to this Python")
    port = free_port()
    server = subprocess.Popen([str(command), "run", "--path", str(tmp_path / "server"), "--host", "127.0.0.1",
                               "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_server(f"{url}/api/v2/heartbeat", server, timeout_s=120,  # generous: CI machines can be loaded
                        failure=lambda: f"the Chroma server did not start (exit code {server.poll()})")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_chroma_server_by_url_indexes_recalls_and_rebuilds(store: LibraryStore, chroma_server: str):
    trucks = "The company buys trucks; a fraction of a truck is impossible."
    with LibraryIndex(chroma_server) as index:
        index.rebuild(store)
        assert index.count() == 4
        assert index.recall(trucks, k=1)[0].insight_id == "I0001"
    with LibraryIndex(chroma_server) as again:  # another client of the same server sees the same collection
        assert again.count() == 4
        again.remove("I0001")
        assert "I0001" not in [h.insight_id for h in again.recall(trucks)]
