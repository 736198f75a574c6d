"""The library store on real SQLite, and on real PostgreSQL when ALPHAOPT_TEST_PG_URL is set.

Start a server for the PostgreSQL half with: export ALPHAOPT_TEST_PG_URL="$(bash .ci/start-postgres.sh)"
"""

from __future__ import annotations

import io
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

from library import (
    ImportLineError,
    InsightDraft,
    InvalidInsightError,
    LibraryError,
    LibraryStore,
    NotFoundError,
    Stage,
    Status,
    canonical,
    read_header,
)
from library.migrations import migrate
from library.tables import Base

PG_URL = os.environ.get("ALPHAOPT_TEST_PG_URL")
BACKENDS = [
    "sqlite",
    pytest.param("postgresql", marks=pytest.mark.skipif(
        not PG_URL, reason="set ALPHAOPT_TEST_PG_URL (bash .ci/start-postgres.sh) to test PostgreSQL")),
]

MakeStore = Callable[[], LibraryStore]
MakeLocation = Callable[[], str]


@pytest.fixture(params=BACKENDS)
def make_location(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeLocation]:
    """A factory of empty library databases: SQLite files in tmp_path, or fresh PostgreSQL schemas.

    Each call gives a new location; several stores (workers) may open the same one.
    """
    schemas: list[str] = []
    admin = sa.create_engine(PG_URL) if request.param == "postgresql" and PG_URL else None
    made = 0

    def make() -> str:
        nonlocal made
        made += 1
        if admin is None:
            return str(tmp_path / f"library-{made}.db")
        schema = f"t_{uuid.uuid4().hex[:12]}"
        with admin.begin() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
        schemas.append(schema)
        url = sa.make_url(str(PG_URL)).update_query_dict({"options": f"-csearch_path={schema}"})
        return url.render_as_string(hide_password=False)

    yield make
    if admin is not None:
        with admin.begin() as conn:
            for schema in schemas:
                conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture
def make_store(make_location: MakeLocation) -> Iterator[MakeStore]:
    """A factory of empty stores, each on a location of its own."""
    made: list[LibraryStore] = []

    def make() -> LibraryStore:
        made.append(LibraryStore(make_location()))
        return made[-1]

    yield make
    for store in made:
        store.close()


@pytest.fixture
def store(make_store: MakeStore) -> LibraryStore:
    return make_store()


def draft(condition: str = "The text says 'at least' a share of the total.", *,
          stage: str = "general_formulation", level1: str = "constraints",
          level2: str = "ratio or percentage constraints") -> InsightDraft:
    return InsightDraft(stage=stage, level1=level1, level2=level2, condition=condition,
                        explanation="Best practice: x >= p * sum(...). Mistake: x >= p. Why: p is a share.",
                        example="wrong: m.c = Constraint(expr=m.x >= 0.3)\n"
                                "correct: m.c = Constraint(expr=m.x >= 0.3 * m.total)")


SCHEMA = {
    "_migrations": ["name", "applied_at"],
    "library_meta": ["key", "value"],
    "counters": ["name", "value"],
    "taxonomy_labels": ["id", "stage", "level1", "level2", "display", "definition", "origin", "created_at",
                        "retired_at"],
    "insights": ["id", "status", "current_version", "created_at", "updated_at"],
    "insight_versions": ["insight_id", "version", "label_id", "condition", "explanation", "example", "source_tasks",
                         "model", "prompt_version", "evidence", "run_id", "reason", "created_at"],
    "training_tasks": ["id", "dataset", "item_id", "text", "answer", "created_at"],
    "learning_runs": ["id", "status", "started_at", "finished_at", "settings", "counters", "tokens"],
    "attempts": ["id", "task_id", "run_id", "kind", "status", "program", "objective", "error", "tokens", "created_at"],
    "retrieval_evidence": ["id", "insight_id", "version", "stage", "task_id", "run_id", "retrieved", "used",
                           "success", "created_at"],
    "library_versions": ["number", "created_at", "reason", "actor"],
    "insight_states": ["library_version", "insight_id", "version", "status"],
    "label_states": ["library_version", "label_id", "display", "definition", "retired"],
    "task_claims": ["task_id", "worker_id", "status", "lease_until", "attempts", "outcome", "claimed_at",
                    "finished_at"],
}


def test_schema_is_pinned(store: LibraryStore):
    inspector = sa.inspect(store.engine)
    assert sorted(inspector.get_table_names()) == sorted(SCHEMA)
    for table, columns in SCHEMA.items():
        assert [c["name"] for c in inspector.get_columns(table)] == columns, table
    for mapped in Base.metadata.sorted_tables:  # the ORM mappings agree with the migrated schema
        db = {c["name"]: c["nullable"] for c in inspector.get_columns(mapped.name)}
        assert db == {c.name: c.nullable for c in mapped.columns}, mapped.name
    assert migrate(store.engine) == []  # idempotent
    with store.engine.connect() as conn:
        names = conn.execute(sa.text("SELECT name FROM _migrations ORDER BY name")).scalars().all()
        assert names == ["m001_initial", "m002_history_and_claims"]


def test_ids_are_allocated_from_a_counter_and_never_reused(make_store: MakeStore):
    store = make_store()
    first, second = store.add_insight(draft("one")), store.add_insight(draft("two"))
    assert (first.id, second.id) == ("I0001", "I0002")
    store.set_status(second.id, Status.RETIRED)
    store.delete(second.id)
    with pytest.raises(NotFoundError, match="I0002"):
        store.get("I0002")
    assert store.add_insight(draft("three")).id == "I0003"
    store.delete("I0003")  # deleting the highest id does not free it either
    assert store.add_insight(draft("four")).id == "I0004"
    assert [i.id for i in store.list()] == ["I0001", "I0004"]


def test_versions_are_immutable_and_ordered(store: LibraryStore):
    v1 = store.add_insight(draft("first wording"), provenance={"source_tasks": ["nl4opt/3"], "model": "m1"})
    v2 = store.revise(v1.id, condition="second wording", reason="too broad", source_tasks=["nl4opt/3", "nl4opt/9"])
    v3 = store.revise(v1.id, explanation="clearer explanation", reason="wording")
    assert (v2.version, v3.version) == (2, 3)
    assert store.revise(v1.id, explanation="clearer explanation") == v3  # no change, no version
    history = store.versions(v1.id)
    assert [(v.version, v.is_current) for v in history] == [(1, False), (2, False), (3, True)]
    assert history[0].condition == "first wording" and history[0].provenance.source_tasks == ("nl4opt/3",)
    assert history[1].reason == "too broad" and history[1].provenance.source_tasks == ("nl4opt/3", "nl4opt/9")
    assert history[2].condition == "second wording" and history[2].provenance.model == "m1"
    assert store.get(v1.id) == history[2]
    moved = store.revise(v1.id, stage="code_implementation", level1="Pyomo API", level2="Indexing")
    assert moved.label.path == "code_implementation/pyomo api/indexing"
    assert store.versions(v1.id)[2].stage is Stage.GENERAL_FORMULATION
    with pytest.raises(InvalidInsightError, match="status"):
        store.revise(v1.id, status="verified")  # type: ignore[call-arg]


def test_labels_match_by_canonical_form(store: LibraryStore):
    seeded = len(store.labels())
    assert seeded >= 15 and {lb.stage for lb in store.labels()} == set(Stage)
    a = store.ensure_label("domain_modeling", "Network Flow", "Flow Conservation", definition="ignored: exists")
    b = store.ensure_label("Domain Modeling", " network-flow", "flow_conservation ")
    assert a == b and a.origin == "seed" and a.display == "Flow conservation"
    new = store.ensure_label("general_formulation", "Objective", "Piecewise  Linear Costs", definition="Kinked costs.")
    assert (new.level2, new.display, new.origin) == ("piecewise linear costs", "Piecewise Linear Costs", "learned")
    assert len(store.labels()) == seeded + 1
    insight = store.add_insight(draft(stage="code-implementation", level1="PYOMO api", level2="indexing"))
    assert insight.label.path == "code_implementation/pyomo api/indexing"
    assert len(store.labels()) == seeded + 1
    assert store.list(label=("Code Implementation", "pyomo_api", "Indexing")) == [insight]
    assert canonical("  Flow\tConservation_-x ") == "flow conservation x"
    with pytest.raises(InvalidInsightError, match="stage"):
        store.ensure_label("modelling", "a", "b")
    with pytest.raises(InvalidInsightError, match="empty"):
        store.ensure_label("domain_modeling", " _ ", "b")


def test_status_changes_and_the_version_stamp(store: LibraryStore):
    stamps = [store.version_stamp()]
    insight = store.add_insight(draft())
    stamps.append(store.version_stamp())
    assert insight.status is Status.CANDIDATE
    assert store.set_status(insight.id, "verified").status is Status.VERIFIED
    stamps.append(store.version_stamp())
    store.set_status(insight.id, Status.VERIFIED)  # unchanged: the stamp stays
    assert store.version_stamp() == stamps[-1]
    other = store.add_insight(draft("other"), status=Status.VERIFIED)
    store.set_status(insight.id, Status.RETIRED)
    stamps.append(store.version_stamp())
    assert len(set(stamps)) == len(stamps)
    assert [i.id for i in store.list(status="verified")] == [other.id]
    assert [i.id for i in store.list(status=["retired", "candidate"])] == [insight.id]
    assert store.get(insight.id).version == 1  # status is not versioned
    assert [i.id for i in store.list(stage="general_formulation", text="OTHER")] == [other.id]
    with pytest.raises(ValueError):
        store.set_status(insight.id, "deleted")


def test_a_failed_step_rolls_back_completely(store: LibraryStore):
    stamp = store.version_stamp()
    with pytest.raises(RuntimeError, match="crash"), store.transaction():
        task = store.add_task("nl4opt", "7", "Maximise profit ...", answer=12.5)
        run = store.start_run({"k": 2})
        insight = store.add_insight(draft(), provenance={"source_tasks": [task.id], "run_id": run.id})
        store.record_attempt(task.id, kind="verify_with", status="optimal", run_id=run.id, objective=12.5)
        store.record_evidence(insight.id, task_id=task.id, used=True, success=True)
        store.ensure_label("domain_modeling", "blending", "quality specs")
        raise RuntimeError("crash mid-step")
    assert (store.list(), store.tasks(), store.attempts(), store.evidence_for("I0001")) == ([], [], [], [])
    assert store.version_stamp() == stamp
    assert not [lb for lb in store.labels() if lb.level1 == "blending"]
    with store.transaction():  # the rerun resumes with the same ids: none was ever committed
        assert store.start_run().id == "R0001"
        assert store.add_insight(draft()).id == "I0001"


def _populate(store: LibraryStore) -> None:
    a = store.add_insight(draft("Anteile »mindestens« 30 % — ratio 数学"), status="verified",
                          provenance={"source_tasks": ["nl4opt/1"], "model": "qwen", "prompt_version": "extract@ab12",
                                      "evidence": {"without": 0, "with": 2, "k": 2, "score": 0.5}})
    store.revise(a.id, condition="A share of a total is bounded", reason="generalised")
    store.add_insight(draft("candidate only"))
    b = store.add_insight(draft("new label", stage="domain_modeling", level1="Blending", level2="Quality Specs"),
                          status="verified", provenance={"run_id": "R0001"})
    store.revise(b.id, level2="quality specifications", reason="relabel")
    c = store.add_insight(draft("retired one"), status="verified")
    store.set_status(c.id, "retired")


def test_export_import_round_trip_is_byte_identical(make_store: MakeStore, tmp_path: Path):
    source, target = make_store(), make_store()
    _populate(source)
    header = {"command": "alphaopt learn --k 2", "settings": {"k": 2}, "training_problems": 40}
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert source.export_jsonl(first, status=None, header=header) == 4
    assert target.import_jsonl(first) == 4
    assert target.export_jsonl(second, status=None, header=read_header(first)) == 4
    assert first.read_bytes() == second.read_bytes()
    lines = first.read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0]) == {"_header": header}
    assert [json.loads(line)["id"] for line in lines[1:]] == ["I0001", "I0002", "I0003", "I0004"]
    assert "»mindestens«" in lines[1] and lines[1] == json.dumps(json.loads(lines[1]), sort_keys=True,
                                                                 ensure_ascii=False, separators=(",", ":"))
    assert target.get("I0003").level2 == "quality specifications" and len(target.versions("I0003")) == 2
    assert target.add_insight(draft()).id == "I0005"  # imported ids stay taken
    verified = io.StringIO()
    assert source.export_jsonl(verified) == 2  # default: verified only, no header
    assert [json.loads(line)["id"] for line in verified.getvalue().splitlines()] == ["I0001", "I0003"]


def test_a_bad_import_line_is_named_and_nothing_is_written(make_store: MakeStore, tmp_path: Path):
    source = make_store()
    _populate(source)
    good = tmp_path / "good.jsonl"
    source.export_jsonl(good, status=None, header={"n": 1})
    lines = good.read_text(encoding="utf-8").splitlines(keepends=True)
    broken = json.loads(lines[3])
    del broken["condition"]
    cases = {
        "not valid JSON": [*lines[:2], "{oops\n", *lines[2:]],
        "condition": [*lines[:3], json.dumps(broken) + "\n", *lines[4:]],
        "already appeared": [*lines, lines[2]],
        "first line": [lines[1], lines[0], *lines[2:]],
    }
    expected_line = {"not valid JSON": 3, "condition": 4, "already appeared": 6, "first line": 2}
    target = make_store()
    for message, content in cases.items():
        path = tmp_path / "bad.jsonl"
        path.write_text("".join(content), encoding="utf-8")
        with pytest.raises(ImportLineError, match=f"line {expected_line[message]}: .*{message}") as info:
            target.import_jsonl(path)
        assert info.value.line == expected_line[message]
        assert target.list() == []
    target.import_jsonl(io.StringIO(lines[2]))  # I0002 is now taken, so the whole file clashes on line 3
    with pytest.raises(ImportLineError, match=r"line 3: .*I0002"):
        target.import_jsonl(good)
    assert [i.id for i in target.list()] == ["I0002"]


def test_source_problems_travel_with_the_export(make_store: MakeStore, tmp_path: Path):
    source = make_store()
    source.add_task("nl4opt", "1", "A bakery makes bread and cakes ...", answer=30.0)
    source.add_task("nl4opt", "2", "Not a source of anything", answer=5.0)
    _populate(source)  # I0001 names nl4opt/1 as its source
    path = tmp_path / "lib.jsonl"
    source.export_jsonl(path, status=None, header={"training_problems": 2})
    assert read_header(path) == {"training_problems": 2,
                                 "source_problems": {"nl4opt/1": "A bakery makes bread and cakes ..."}}
    target = make_store()
    target.import_jsonl(path)
    task = target.get_task("nl4opt/1")
    assert (task.dataset, task.item_id, task.answer) == ("nl4opt", "1", None)  # text only: no answer travels
    assert [t.id for t in target.tasks()] == ["nl4opt/1"]
    assert target.add_task("nl4opt", "1", "A bakery makes bread and cakes ...", answer=30.0).answer == 30.0

    for bad in ({"nl4opt/1": 3}, ["nl4opt/1"], {"no-slash": "text"}, {"nl4opt/9": "  "}):
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        header = json.loads(lines[0])
        header["_header"]["source_problems"] = bad
        broken = tmp_path / "broken.jsonl"
        broken.write_text(json.dumps(header) + "\n" + "".join(lines[1:]), encoding="utf-8")
        fresh = make_store()
        with pytest.raises(ImportLineError, match="line 1: 'source_problems' must map task ids"):
            fresh.import_jsonl(broken)
        assert (fresh.list(status=None), fresh.tasks()) == ([], [])


def test_tasks_attempts_evidence_and_runs(store: LibraryStore):
    task = store.add_task("nl4opt", "12", "A bakery makes bread ...", answer={"objective": 30})
    assert store.add_task("nl4opt", "12", "A bakery makes bread ...") == task  # idempotent
    assert task.id == "nl4opt/12" and store.get_task(task.id).answer == {"objective": 30}
    with pytest.raises(LibraryError, match="different text"):
        store.add_task("nl4opt", "12", "Another text")
    run = store.start_run({"model": "m", "k": 2})
    assert (run.id, run.status) == ("R0001", "running")
    attempt = store.record_attempt(task.id, kind="explore", status="optimal", run_id=run.id, program="print(1)",
                                   objective=30.0, tokens=900)
    store.record_attempt(task.id, kind="verify_without", status="error", run_id=run.id, error="boom")
    assert [a.kind for a in store.attempts(run_id=run.id)] == ["explore", "verify_without"]
    assert store.attempts(task_id=task.id, kind="explore") == [attempt]
    with pytest.raises(NotFoundError, match="nl4opt/99"):
        store.record_attempt("nl4opt/99", kind="solve", status="optimal")
    insight = store.add_insight(draft())
    store.revise(insight.id, condition="refined")
    first = store.record_evidence(insight.id, task_id=task.id, version=1, used=False)
    second = store.record_evidence(insight.id, run_id=run.id, used=True, success=True)
    assert (first.version, second.version, second.stage) == (1, 2, Stage.GENERAL_FORMULATION)
    assert store.evidence_for(insight.id) == [first, second]
    with pytest.raises(InvalidInsightError, match="task_id or a run_id"):
        store.record_evidence(insight.id)
    store.update_run(run.id, counters={"tasks": 1}, tokens=900)
    done = store.finish_run(run.id, counters={"tasks": 1, "insights": 1}, tokens=1500)
    assert (done.status, done.counters, done.tokens, done.finished_at is not None) == (
        "finished", {"tasks": 1, "insights": 1}, 1500, True)
    assert store.get_run(run.id) == done


def test_a_reopened_store_keeps_its_data_and_counters(tmp_path: Path):
    path = tmp_path / "lib" / "library.db"
    with LibraryStore(path) as store:
        store.add_insight(draft())
        stamp = store.version_stamp()
    with LibraryStore(f"sqlite:///{path}") as again:
        assert again.version_stamp() == stamp
        assert again.add_insight(draft("next")).id == "I0002"
    assert LibraryStore(":memory:").list() == []


def test_concurrent_writers_get_distinct_ids(store: LibraryStore):
    def add_five(worker: int) -> list[str]:
        return [store.add_insight(draft(f"worker {worker} insight {n}")).id for n in range(5)]

    with ThreadPoolExecutor(max_workers=4) as pool:
        ids = [i for batch in pool.map(add_five, range(4)) for i in batch]
    assert sorted(ids) == [f"I{n:04d}" for n in range(1, 21)]


def test_sqlite_readers_do_not_wait_for_an_open_write(tmp_path: Path):
    path = tmp_path / "library.db"
    with LibraryStore(path) as writer, LibraryStore(path) as reader, writer.transaction():
        writer.add_insight(draft())
        started = time.monotonic()
        assert reader.list() == [] and reader.version_stamp()  # sees the last commit, at once
        assert time.monotonic() - started < 5


def test_retire_writes_why_as_a_version_then_the_status(store: LibraryStore):
    insight = store.add_insight(draft(), status=Status.VERIFIED, provenance={"evidence": {"with": 1}})
    retired = store.retire(insight.id, reason="misled three problems", evidence={"retired": {"misled": 3}},
                           condition="when something narrower")
    assert retired.status is Status.RETIRED and retired.version == 2
    assert retired.provenance.evidence == {"with": 1, "retired": {"misled": 3}}  # earlier evidence kept
    assert retired.condition == "when something narrower" and retired.reason == "misled three problems"
    assert [v.condition for v in store.versions(insight.id)] == [insight.condition, "when something narrower"]
