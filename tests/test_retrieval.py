"""Retrieval: taxonomy labels + vector recall + one capped LLM check, with evidence and a cache."""

from __future__ import annotations

import pytest

from alphaopt.agent.retrieval import LibraryRetriever, open_library
from alphaopt.config import load_settings
from library import InsightDraft, Status
from tests.fakes import ScriptedLLM

INSIGHTS = [
    ("general_formulation", "constraints", "minimum requirements",
     "the problem says a quantity must be at least some amount",
     "write a >= constraint, not <="),
    ("general_formulation", "variables", "integrality",
     "the decision counts whole items such as trucks, workers or machines",
     "declare the variable NonNegativeIntegers"),
    ("domain_modeling", "resource allocation", "ratios",
     "the text requires one product to be a percentage of the total production",
     "write p >= 0.3 * (sum of all products), linear in the variables"),
    ("code_implementation", "pyomo api", "summation", "the program sums a variable over an index set",
     "use sum(model.x[i] for i in I) inside the expression"),
]


@pytest.fixture
def library(tmp_path):
    settings = load_settings(home=tmp_path / "home", use_library=True,
                             experimental={"retrieval_check_cap": 3, "starter_library": "none"})
    store, index = open_library(settings)
    for stage, l1, l2, condition, explanation in INSIGHTS:
        insight = store.add_insight(InsightDraft(stage=stage, level1=l1, level2=l2, condition=condition,
                                                 explanation=explanation), status=Status.VERIFIED)
        index.upsert(insight)
    retired = store.add_insight(InsightDraft(stage="general_formulation", level1="variables", level2="integrality",
                                             condition="the problem counts whole trucks", explanation="old advice"),
                                status=Status.RETIRED)
    index.upsert(retired)
    retriever = LibraryRetriever(settings, store, index)
    yield retriever
    retriever.close()


PROBLEM = "A company hires trucks to ship at least 115 tons of gravel; trucks are hired whole. Minimize cost."


def test_labels_come_from_the_problem(library):
    labels = library.labels_for(PROBLEM, 3)
    assert len(labels) == 3 and all(len(label) == 3 for label in labels)


def test_recall_is_capped_and_never_the_whole_library(library):
    found = library.candidates(PROBLEM)
    ids = [i.id for i in found]
    assert 1 <= len(ids) <= 3 and "I0005" not in ids  # cap 3; retired never recalled
    assert "I0002" in ids  # integrality: trucks hired whole


def test_check_chooses_among_candidates_and_records_evidence(library):
    llm = ScriptedLLM().enqueue("I0002, I0099")  # an id that was not offered is ignored
    chosen = library.retrieve(PROBLEM, llm=llm, run_id="run-1")
    assert [c["id"] for c in chosen] == ["I0002"]
    prompt = llm.calls[0].user
    offered = [i.id for i in library.candidates(PROBLEM)]
    assert all(f"[{i}]" in prompt for i in offered) and prompt.count("[I0") == len(offered)
    evidence = library.store.evidence_for("I0002")
    assert evidence and evidence[0].used and evidence[0].run_id == "run-1"

    again = library.retrieve(PROBLEM, llm=llm, run_id="run-2")  # cached per (problem, library version)
    assert again == chosen and len(llm.calls) == 1


def test_none_chosen_and_cache_invalidated_by_library_change(library):
    llm = ScriptedLLM().enqueue("NONE", "I0001")
    assert library.retrieve(PROBLEM, llm=llm, run_id="r") == []
    library.store.revise("I0001", condition="the problem says shipments must be at least an amount")
    library.index.sync(library.store)
    chosen = library.retrieve(PROBLEM, llm=llm, run_id="r")
    assert len(llm.calls) == 2  # the library changed: the check ran again
    assert [c["id"] for c in chosen] == ["I0001"]  # offered again after the change, and chosen


def test_a_quoted_condition_is_recalled_where_its_quote_matches_without_the_check(library):
    quoted = library.store.add_insight(InsightDraft(
        stage="general_formulation", level1="constraints", level2="inequality direction",
        condition='when the text says "ship at least N tons of"', explanation="write >=",
        example="wrong: m.x <= 115 right: m.x >= 115"), status=Status.VERIFIED)
    library.index.upsert(quoted)
    llm = ScriptedLLM().enqueue("NONE", "NONE")  # the model's check declines every other candidate
    chosen = library.retrieve(PROBLEM, llm=llm, run_id="r")
    assert [c["id"] for c in chosen] == [quoted.id]
    assert len(llm.calls) == 1 and f"[{quoted.id}]" not in llm.calls[0].user  # not offered to the check
    assert library.quoted(PROBLEM.replace("115 tons", "many tons")) == []
    assert quoted.id not in [c["id"] for c in library.retrieve(PROBLEM, llm=llm, run_id="r", exclude=[quoted.id])]
    library.store.retire(quoted.id, reason="test", evidence={})  # retired: never recalled, quote or not
    assert library.quoted(PROBLEM) == []


def test_an_insight_verified_untold_is_recalled_by_its_quote_only(library):
    """Near the problem by its condition, an untold insight is no candidate of the check (its
    lesson never reaches a prompt); where its quote matches it is chosen, for the code's edit."""
    draft = InsightDraft(stage="general_formulation", level1="constraints", level2="inequality direction",
                         condition='when the text says "ship at least N tons of"', explanation="write >=",
                         example="wrong: m.x <= 115 right: m.x >= 115")
    untold = library.store.add_insight(draft, status=Status.VERIFIED, provenance={"evidence": {"told": False}})
    library.index.upsert(untold)
    elsewhere = PROBLEM.replace("115 tons", "many tons")  # the quote no longer matches
    assert untold.id not in {i.id for i in [*library.candidates(PROBLEM), *library.candidates(elsewhere)]}
    llm = ScriptedLLM().enqueue("NONE", "NONE")  # the model's check declines every other candidate
    assert [c["id"] for c in library.retrieve(PROBLEM, llm=llm, run_id="r")] == [untold.id]
    assert library.retrieve(elsewhere, llm=llm, run_id="r") == []
    assert all(f"[{untold.id}]" not in c.user for c in llm.calls)  # never offered to the check


def test_empty_library_makes_no_call(tmp_path):
    settings = load_settings(home=tmp_path / "h2", use_library=True, experimental={"starter_library": "none"})
    retriever = LibraryRetriever.open(settings)
    try:
        assert retriever.retrieve(PROBLEM, llm=ScriptedLLM(), run_id="r") == []
    finally:
        retriever.close()


def test_starter_library_loads_into_a_fresh_home(tmp_path):
    starter = tmp_path / "starter.jsonl"
    src = load_settings(home=tmp_path / "src", use_library=True, experimental={"starter_library": "none"})
    store, _index = open_library(src)
    store.add_insight(InsightDraft(stage="general_formulation", level1="a", level2="b", condition="c", explanation="e"),
                      status=Status.VERIFIED)
    store.export_jsonl(starter, header={"training_problems": 1})
    fresh = load_settings(home=tmp_path / "fresh", use_library=True, experimental={"starter_library": starter})
    store2, index2 = open_library(fresh)
    assert [i.id for i in store2.list(status="verified")] == ["I0001"] and index2.count() == 1


def test_the_check_call_counts_toward_the_solve(library, runner):
    from alphaopt.agent.run import Agent
    from tests.fakes import program

    trucks = program("""
model = pyo.ConcreteModel()
model.trucks = pyo.Var(domain=pyo.NonNegativeIntegers)
model.obj = pyo.Objective(expr=100 * model.trucks, sense=pyo.minimize)
model.gravel = pyo.Constraint(expr=20 * model.trucks >= 115)
""")
    llm = ScriptedLLM().enqueue("NONE", trucks)
    with Agent(library.settings, llm=llm, runner=runner, library=library) as agent:
        solution = agent.solve(PROBLEM)
    assert llm.prompt_names == ["check_insights", "write_program"]
    assert solution.tokens.calls == 2 and solution.insights == []
    assert solution.tokens.input == sum(len(m["content"]) // 4 for c in llm.calls for m in c.messages)


def test_starter_library_none_starts_empty(tmp_path, monkeypatch):
    monkeypatch.delenv("ALPHAOPT_EXPERIMENTAL__STARTER_LIBRARY")
    assert load_settings(home=tmp_path / "a").experimental.starter_library is not None  # the shipped one by default
    empty = load_settings(home=tmp_path / "b", experimental={"starter_library": "none"})
    assert empty.experimental.starter_library is None
    monkeypatch.setenv("ALPHAOPT_EXPERIMENTAL__STARTER_LIBRARY", "none")
    assert load_settings(home=tmp_path / "c").experimental.starter_library is None


DIET = ("A student plans meals from chicken, rice and beans to get at least 60 g of protein and 2000 "
        "calories a day at the lowest cost; each serving has a price and its nutrients.")
DIET_LIKE = ("Plan a day's meals from oats, milk and eggs: at least 50 g of protein and 1800 calories, "
             "at the lowest cost; each serving has a price and its nutrients.")


def test_an_insight_reaches_only_problems_like_its_sources(tmp_path):
    settings = load_settings(home=tmp_path / "h", use_library=True,
                             experimental={"starter_library": "none", "retrieval_source_similarity": 0.7})
    store, index = open_library(settings)
    store.add_task("diet_train", "E1", DIET, answer=12.0)
    general = "The problem involves counting, buying, or choosing"  # near everything, far from a diet text
    sourced = store.add_insight(InsightDraft(
        stage="general_formulation", level1="variables", level2="integrality", condition=general,
        explanation="declare the variable NonNegativeIntegers"),
        status=Status.VERIFIED, provenance={"source_tasks": ["diet_train/E1"]})
    unsourced = store.add_insight(InsightDraft(
        stage="general_formulation", level1="variables", level2="integrality", condition=general,
        explanation="declare the variable NonNegativeIntegers"),
        status=Status.VERIFIED, provenance={"source_tasks": ["elsewhere/x"]})  # its source is not held
    index.upsert([sourced, unsourced])
    retriever = LibraryRetriever(settings, store, index)
    try:
        similarity = retriever.source_similarities
        assert set(similarity(PROBLEM)) == {sourced.id}  # only where a source text is held
        assert similarity(PROBLEM)[sourced.id] < 0.7 <= similarity(DIET_LIKE)[sourced.id]
        assert [i.id for i in retriever.candidates(PROBLEM)] == [unsourced.id]  # trucks: not like the diet
        assert [i.id for i in retriever.candidates(DIET_LIKE)] == [sourced.id]  # by its source, not its condition
        off = LibraryRetriever(settings.with_experimental(retrieval_source_similarity=0.0), store, index)
        assert {i.id for i in off.candidates(PROBLEM)} == {sourced.id, unsourced.id}  # 0: conditions alone
        assert off.candidates(DIET_LIKE) == []
    finally:
        retriever.close()


def test_a_near_copy_of_a_source_problem_gets_its_insight_without_the_check(tmp_path):
    settings = load_settings(home=tmp_path / "h", use_library=True, experimental={"starter_library": "none"})
    store, index = open_library(settings)
    store.add_task("diet_train", "E1", DIET, answer=12.0)
    insight = store.add_insight(InsightDraft(
        stage="general_formulation", level1="variables", level2="integrality",
        condition="The problem involves counting, buying, or choosing", explanation="declare servings integer"),
        status=Status.VERIFIED, provenance={"source_tasks": ["diet_train/E1"]})
    index.upsert([insight])
    retriever = LibraryRetriever(settings, store, index)
    try:
        llm = ScriptedLLM().enqueue("NONE", "NONE")  # the model's check would decline it everywhere
        copy = DIET.replace("2000 calories", "2100 calories")  # the source with another number
        assert retriever.twinned(copy) == {insight.id} and retriever.twinned(DIET_LIKE) == set()
        assert [c["id"] for c in retriever.retrieve(copy, llm=llm, run_id="r")] == [insight.id]
        assert llm.calls == []  # chosen without asking
        assert retriever.retrieve(DIET_LIKE, llm=llm, run_id="r") == []  # only like it: the check decides
        assert len(llm.calls) == 1 and f"[{insight.id}]" in llm.calls[0].user
        off = LibraryRetriever(settings.with_experimental(retrieval_source_twin=1.01), store, index)
        assert off.retrieve(copy, llm=llm, run_id="r") == [] and len(llm.calls) == 2
    finally:
        retriever.close()


def test_a_home_that_loaded_an_older_starter_gets_its_source_problems(tmp_path):
    src = load_settings(home=tmp_path / "src", use_library=True, experimental={"starter_library": "none"})
    store, _index = open_library(src)
    store.add_task("diet_train", "E1", DIET, answer=12.0)
    store.add_insight(InsightDraft(stage="general_formulation", level1="variables", level2="integrality",
                                   condition="The problem involves counting, buying, or choosing",
                                   explanation="declare servings NonNegativeIntegers"),
                      status=Status.VERIFIED, provenance={"source_tasks": ["diet_train/E1"]})
    starter = tmp_path / "starter.jsonl"
    store.export_jsonl(starter, header={"training_problems": 1})
    lines = starter.read_text().splitlines(keepends=True)
    older = tmp_path / "older.jsonl"  # the same library as exported before headers carried source texts
    older.write_text('{"_header":{"training_problems":1}}\n' + "".join(lines[1:]))

    home = tmp_path / "user"
    first = LibraryRetriever.open(load_settings(home=home, use_library=True,
                                                experimental={"starter_library": older}))
    assert first.source_similarities(DIET_LIKE) == {} and first.store.tasks() == []
    first.close()
    later = LibraryRetriever.open(load_settings(home=home, use_library=True,
                                                experimental={"starter_library": starter}))
    try:
        assert [t.id for t in later.store.tasks()] == ["diet_train/E1"]
        assert later.source_similarities(DIET_LIKE)["I0001"] >= 0.7
        assert [i.id for i in later.candidates(PROBLEM)] == []  # recalled by its source now, not its condition
    finally:
        later.close()


def test_the_problem_is_embedded_once_per_recall(library, monkeypatch):
    """The condition recall, the label recall, the labels and the source check share one vector."""
    embedder = library.index.embedder
    texts: list[list[str]] = []
    real = embedder.embed

    def counting(batch):
        texts.append(list(batch))
        return real(batch)

    monkeypatch.setattr(embedder, "embed", counting)
    found = library.candidates(PROBLEM)
    assert "I0002" in [i.id for i in found]
    assert sum(PROBLEM in batch for batch in texts) == 1
    texts.clear()  # a whole retrieval (recall, the twin test, the check) too
    library.retrieve(PROBLEM, llm=ScriptedLLM().enqueue("NONE"), run_id="r")
    assert sum(PROBLEM in batch for batch in texts) == 1
