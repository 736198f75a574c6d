"""Library versions, rollback and label re-tagging, on real SQLite and (with ALPHAOPT_TEST_PG_URL) PostgreSQL."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import sqlalchemy as sa

from library import (
    ConflictError,
    InvalidInsightError,
    LibraryStore,
    NotFoundError,
    Status,
    migrations,
)
from library.db import make_engine, to_url
from library.migrations import MIGRATIONS, _apply_pending
from tests.test_library_store import (
    MakeLocation,
    draft,
    make_location,
    make_store,
    store,
)

FIXTURES = (make_location, make_store, store)  # shared with the store tests


def content(store: LibraryStore) -> dict[str, Any]:
    """What a rollback restores: each insight's status, label and content; each label's definition."""
    return {
        "insights": {i.id: (i.status.value, i.label.path, i.condition, i.explanation, i.example,
                            i.provenance.model_dump_json()) for i in store.list()},
        "labels": {lb.key.path: (lb.display, lb.definition) for lb in store.labels()},
    }


def test_every_change_is_a_library_version_with_its_reason(store: LibraryStore):
    start = store.library_version()
    assert [v.reason for v in store.library_versions()] == ["seed labels"]
    stamp = store.version_stamp()
    a = store.add_insight(draft("one"))
    store.revise(a.id, condition="one, refined")
    store.revise(a.id, condition="one, refined")  # no change: no version
    store.set_status(a.id, "verified")
    store.set_status(a.id, "verified")  # no change: no version
    with store.transaction(reason="a learning step", actor="worker-1"):
        b = store.add_insight(draft("two"))
        store.verify(b.id, {"with": 1})
    label = store.ensure_label("domain_modeling", "Blending", "Quality Specs", definition="Mixes meet specs.")
    store.ensure_label("domain_modeling", "blending", "quality specs")  # exists: no version
    versions = store.library_versions(since=start)
    assert [v.number for v in versions] == list(range(start + 1, start + 6))
    assert store.library_version() == versions[-1].number
    assert [v.reason for v in versions] == [f"add {a.id}", f"revise {a.id}", f"{a.id} verified", "a learning step",
                                            "label domain_modeling/blending/quality specs added"]
    assert [v.insights for v in versions] == [(a.id,), (a.id,), (a.id,), (b.id,), ()]
    assert versions[3].actor == "worker-1" and versions[0].actor is None
    assert versions[4].labels == (label.key.path,)
    assert all(x.created_at <= y.created_at for x, y in itertools.pairwise(versions))
    assert store.version_stamp() != stamp
    with pytest.raises(RuntimeError), store.transaction():  # rolled back: no version either
        store.add_insight(draft("three"))
        raise RuntimeError("crash")
    assert store.library_version() == versions[-1].number


def test_the_store_actor_names_its_versions(make_location: MakeLocation):
    location = make_location()
    with LibraryStore(location, actor="learn R0001") as store:
        store.add_insight(draft())
        assert store.library_versions()[-1].actor == "learn R0001"


def test_rollback_restores_content_and_is_itself_a_version(store: LibraryStore):
    a = store.add_insight(draft("A"), status="verified")
    b = store.add_insight(draft("B"), status="verified")
    store.define_label(("general_formulation", "constraints", "ratio or percentage constraints"), "Shares of totals.")
    checkpoint, before = store.library_version(), content(store)
    store.revise(a.id, condition="A, rewritten badly", reason="evolve")
    store.merge([a.id, b.id], draft("A and B"), evidence={"with": 2})
    store.ensure_label("domain_modeling", "blending", "quality specs", definition="Specs.")
    store.relabel("I0003", ("domain_modeling", "blending", "quality specs"))
    store.define_label(("general_formulation", "constraints", "ratio or percentage constraints"), "Changed.")
    after = content(store)
    last = store.library_version()

    version = store.rollback(checkpoint)
    assert version.number == last + 1 and version.reason == f"rollback to library version {checkpoint}"
    assert set(version.insights) == {"I0001", "I0002", "I0003"}
    merged = after["insights"]["I0003"]
    assert content(store) == {**before, "insights": {**before["insights"], "I0003": ("retired", *merged[1:])}}
    restored = store.get(a.id)  # history is kept: the old content comes back as a new version
    assert restored.condition == "A" and restored.version == 4
    assert [v.condition for v in store.versions(a.id)] == ["A", "A, rewritten badly", "A, rewritten badly", "A"]
    assert "rollback to library version" in (restored.reason or "")
    assert store.get("I0003").status is Status.RETIRED  # added after the checkpoint
    assert store.label(("domain_modeling", "blending", "quality specs")).retired

    store.rollback(last)  # and forward again
    assert content(store) == after
    assert store.library_version() == last + 2
    with pytest.raises(NotFoundError, match="library_versions"):
        store.rollback(999)


def test_revisions_after_a_rollback_continue_the_numbering(store: LibraryStore):
    a = store.add_insight(draft("v1"))
    checkpoint = store.library_version()
    store.revise(a.id, condition="v2")
    store.rollback(checkpoint)
    assert store.revise(a.id, condition="v4").version == 4
    assert [v.version for v in store.versions(a.id)] == [1, 2, 3, 4]


def test_relabel_define_and_retire_labels(store: LibraryStore):
    old = ("general_formulation", "constraints", "ratio or percentage constraints")
    a = store.add_insight(draft("A"), status="verified")
    b = store.add_insight(draft("B"))
    new = store.ensure_label("general_formulation", "Constraints", "Share of total", definition="x >= p * total")
    with pytest.raises(ConflictError, match=r"still on \['I0001', 'I0002'\].*relabel"):
        store.retire_label(old)
    moved = store.relabel(a.id, ("general formulation", "constraints", "share-of-total"))
    assert (moved.version, moved.label.path, moved.condition) == (2, new.key.path, "A")
    assert moved.reason == f"relabel to {new.key.path}"
    store.retire(b.id, reason="rejected", evidence={})  # a retired insight may keep a retired label
    retired = store.retire_label(old)
    assert retired.retired and store.retire_label(old) == retired
    assert old not in [(lb.stage.value, lb.level1, lb.level2) for lb in store.labels()]
    assert retired in store.labels(include_retired=True)
    with pytest.raises(InvalidInsightError, match=r"retired.*ensure_label"):
        store.relabel(a.id, old)
    with pytest.raises(NotFoundError, match="ensure_label"):
        store.relabel(a.id, ("general_formulation", "constraints", "no such label"))
    defined = store.define_label(new.key, "A share of a total: x >= p * total.", display="Share of total")
    assert (defined.definition, defined.display) == ("A share of a total: x >= p * total.", "Share of total")
    with pytest.raises(InvalidInsightError, match="blank"):
        store.define_label(new.key, "  ")
    back = store.ensure_label(*old)  # in use again
    assert not back.retired and back.definition == retired.definition
    reasons = [v.reason for v in store.library_versions()[-4:]]
    assert reasons == [f"retire {b.id}: rejected", f"label {'/'.join(old)} retired",
                       f"label {new.key.path} defined", f"label {'/'.join(old)} back in use"]


def test_a_retired_seed_label_is_not_seeded_again(make_location: MakeLocation):
    location = make_location()
    key = ("domain_modeling", "scheduling", "staffing and shifts")
    with LibraryStore(location) as store:
        store.retire_label(key)
        number = store.library_version()
    with LibraryStore(location) as again:
        assert again.label(key).retired and again.library_version() == number


def test_an_existing_database_migrates_forward_with_a_baseline_version(make_location: MakeLocation,
                                                                        monkeypatch: pytest.MonkeyPatch):
    location = make_location()
    engine = make_engine(to_url(location))
    with monkeypatch.context() as patch, engine.begin() as conn:  # a library written before m002
        patch.setattr(migrations, "MIGRATIONS", MIGRATIONS[:1])
        assert _apply_pending(conn) == ["m001_initial"]
        label_id = conn.execute(sa.text(
            "INSERT INTO taxonomy_labels (stage, level1, level2, display, definition, origin, created_at) VALUES "
            "('general_formulation', 'variables', 'integrality', 'Integrality', 'Whole numbers.', 'seed', "
            "'2025-01-01T00:00:00.000+00:00') RETURNING id")).scalar_one()
        conn.execute(sa.text("INSERT INTO insights VALUES ('I0001', 'verified', 1, '2025-01-01T00:00:00.000+00:00', "
                             "'2025-01-01T00:00:00.000+00:00')"))
        conn.execute(sa.text("INSERT INTO insight_versions (insight_id, version, label_id, condition, explanation, "
                             "example, source_tasks, evidence, created_at) VALUES ('I0001', 1, :label, 'counting', "
                             "'use integers', '', '[]', '{}', '2025-01-01T00:00:00.000+00:00')"), {"label": label_id})
        conn.execute(sa.text("UPDATE counters SET value = 1 WHERE name = 'insight'"))
    engine.dispose()
    with LibraryStore(location) as store:
        first, seeds = store.library_versions()
        assert (first.number, first.actor, first.insights) == (1, "migration m002", ("I0001",))
        assert first.labels == ("general_formulation/variables/integrality",)
        assert seeds.reason == "seed labels"  # the other seed labels, missing before
        store.revise("I0001", condition="counting things", reason="wording")
        store.set_status("I0001", Status.RETIRED)
        store.rollback(1)
        restored = store.get("I0001")
        assert (restored.status, restored.condition, restored.version) == (Status.VERIFIED, "counting", 3)
        assert store.label(("general_formulation", "variables", "integrality")).definition == "Whole numbers."
