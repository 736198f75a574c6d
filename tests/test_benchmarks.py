"""The benchmark runner: scoring, resume, honesty checks, and that answers never reach the model."""

from __future__ import annotations

import json

import pytest

from alphaopt.agent.run import Agent
from alphaopt.config import STARTER_LIBRARY
from benchmarks import honesty, registry
from benchmarks.report import stats, write_summary
from benchmarks.run import run
from benchmarks.scoring import Tolerance, wilson
from tests.fakes import FORMULATION, LP_REPLY, RoutedLLM, ScriptedLLM
from tests.test_learn import setup  # noqa: F401 (the fixture)

SECRET_ANSWER = 987654.321  # appears nowhere in the text


def test_tolerance_is_relative_plus_absolute():
    tol = Tolerance()
    assert tol.correct(100.009, 100.0) and not tol.correct(100.02, 100.0)
    assert tol.correct(5e-7, 0.0) and not tol.correct(0.1, 0.0)  # no absolute 0.1 slack
    assert not tol.correct(None, 1.0)
    assert "1e-06" in tol.describe() and "0.0001" in tol.describe()


def test_wilson_interval():
    low, high = wilson(7, 10)
    assert 0.39 < low < 0.40 and 0.89 < high < 0.90
    assert wilson(0, 0) == (0.0, 0.0)


def test_bundled_datasets_load():
    assert set(registry.names("test")) == {"industryor_test", "mamo_complex_test", "nl4opt_test", "nlp4lp_test"}
    items = registry.load("nl4opt_test")
    assert len(items) == 64 and all(i.description and i.key.startswith("nl4opt_test/") for i in items)


def test_bad_dataset_names_the_line(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"id": 1, "description": "d", "answer": 1}\n{"id": 2}\n')
    with pytest.raises(SystemExit, match="line 2"):
        registry.load(str(path))
    with pytest.raises(SystemExit, match="Unknown dataset"):
        registry.load("nope")


def test_twins_and_suspects():
    a = registry.Item("x_train", "1", "A bakery makes 3 kinds of bread and sells them for 2 dollars each day", 1.0)
    b = registry.Item("x_test", "1", "A bakery makes 3 kinds of bread and sells them for 2 dollars each day", 0.0)
    c = registry.Item("x_test", "2", "Entirely different words about trucks and gravel shipping costs here", 5.0)
    twins = honesty.find_twins([a], [b, c])
    assert [(t.test, t.train, t.similarity) for t in twins] == [("x_test/1", "x_train/1", 1.0)]
    assert honesty.suspect_labels([b, c]) == {"x_test/1": "answer is 0.0"}
    assert honesty.suspect_labels([b, c], [a]) == {
        "x_test/1": "answer is 0.0; identical train item x_train/1 is labelled 1"}


def test_run_scores_resumes_and_never_shows_the_answer(tmp_path, settings, runner):
    data = tmp_path / "tiny_test.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in [
        {"id": "a", "description": "Maximize 3x + 2y with x + y <= 4, x + 3y <= 6, x <= 3.", "answer": 11},
        {"id": "b", "description": "Same problem, but the label is wrong.", "answer": SECRET_ANSWER},
    ]) + "\n")
    items = registry.load(str(data))
    llm = ScriptedLLM().enqueue(FORMULATION, LP_REPLY, FORMULATION, LP_REPLY)
    with Agent(settings, llm=llm, runner=runner) as agent:
        rows = run(items, tmp_path / "out", settings, tol=Tolerance(), progress=False, agent=agent)
    assert [(r["id"], r["correct"]) for r in rows] == [("a", True), ("b", False)]
    assert rows[0]["tokens_in"] > 0 and rows[0]["status"] == "optimal"
    assert rows[0]["attempts"][0]["stage"] == "write_program"
    for call in llm.calls:  # neither answer is ever shown to the model
        text = json.dumps(call.messages)
        assert str(SECRET_ANSWER) not in text and "987654" not in text

    with Agent(settings, llm=ScriptedLLM(), runner=runner) as agent:  # resume: nothing left to solve
        again = run(items, tmp_path / "out", settings, tol=Tolerance(), progress=False, agent=agent)
    assert again == rows

    summary = write_summary(tmp_path / "out", rows)
    assert "| tiny_test | 2 | 50.0" in summary and "|got - answer|" in summary
    # the resumed session kept the first one's settings, and the summary names both sessions
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["rows_at_start"] == 2 and [m["rows_at_start"] for m in meta["earlier"]] == [0]
    assert meta["retrieval_source_similarity"] is None  # no library: retrieval settings do not apply
    assert "- sessions: " in summary and "from row 0" in summary and "warning" not in summary

    changed = settings.model_copy(update={"max_repairs": 5})
    with Agent(changed, llm=ScriptedLLM(), runner=runner) as agent:
        run(items, tmp_path / "out", changed, tol=Tolerance(), progress=False, agent=agent)
    assert "**warning: the sessions differ in max_repairs**" in write_summary(tmp_path / "out", rows)
    s = stats(rows)
    assert s["accuracy"] == 0.5 and s["execution_rate"] == 1.0


def test_the_summary_compares_the_vote_with_its_greedy_sample():
    from benchmarks.report import samples_line

    def row(correct, *samples):
        return {"correct": correct, "samples": [{"correct": c} for c in samples]}

    rows = [row(True, False, True, True), row(True, True, True), row(False, False, True, False), row(False, False)]
    assert samples_line(rows).startswith("Samples: 2.25 drawn per item on average. On these 4 items the first "
                                         "(greedy) sample alone was right 1/4 = 25.0%")
    assert "the majority vote 2/4 = 50.0%; at least one sample right 3/4" in samples_line(rows)
    assert samples_line([{"correct": True}]) == ""  # rows from runs before samples existed


def test_charts_are_written(tmp_path):
    pytest.importorskip("matplotlib")
    from benchmarks.charts import accuracy_by_dataset, learning_curve

    rows = [{"dataset": d, "key": f"{d}/{i}", "correct": i % 2 == 0, "status": "optimal"}
            for d in ("a_test", "b_test") for i in range(4)]
    bars = accuracy_by_dataset({"none": rows, "starter": rows[:6]}, tmp_path / "acc.png")
    curve = learning_curve([(0, 0.3, 60), (20, 0.35, 60)], tmp_path / "curve.png")
    for png in (bars, curve):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_pipeline_speed_from_the_call_log(tmp_path):
    from alphaopt.llm.runlog import CallRecord, RunLog
    from benchmarks.speed import pipeline_speed

    log = RunLog(tmp_path / "runs.db")
    calls = [("r1", 600, 100, 10_000, False), ("r1", 700, 50, 10_000, False),
             ("r2", 500, 200, 20_000, False), ("r2", 500, 200, 0, True)]
    for n, (run_id, tokens_in, out, ms, cached) in enumerate(calls):
        log.log_call(CallRecord(id=f"c{n}", prompt_name="p", prompt_sha="s", model="m", params={}, messages=[],
                                cache_key="k", run_id=run_id, input_tokens=tokens_in, output_tokens=out,
                                latency_ms=ms, cached=cached))
    speed = pipeline_speed(tmp_path / "runs.db")
    assert speed["calls"] == 3 and speed["completion_tok_s_median"] == 10.0
    assert speed["prompt_tokens_per_problem_mean"] == 900.0 and speed["problems"] == 2


def test_paired_comparison_of_two_runs():
    from benchmarks.compare import compare, mcnemar_p

    a = [{"key": k, "correct": c} for k, c in [("x", True), ("y", False), ("z", True), ("only_a", True)]]
    b = [{"key": k, "correct": c} for k, c in [("x", True), ("y", True), ("z", False), ("w", True)]]
    c = compare(a, b)
    assert (c["n"], c["a"], c["b"], c["only_a"], c["only_b"]) == (3, 2, 2, ["z"], ["y"])
    assert mcnemar_p(0, 0) == 1.0 and mcnemar_p(1, 1) == 1.0
    assert mcnemar_p(0, 6) == pytest.approx(2 / 64) and mcnemar_p(6, 0) == mcnemar_p(0, 6)


def test_result_rows_keep_an_errors_first_line_and_its_end():
    from benchmarks.run import _short

    error = "TypeError: the message\n" + "  frame\n" * 100 + "    the failing line"
    short = _short(error)
    assert short.startswith("TypeError: the message") and short.endswith("the failing line") and len(short) < 420
    assert _short("short") == "short"


def test_stored_programs_come_from_training_problems_only(tmp_path):
    """The A/B scripts read programs stored for training problems, never for test ones."""
    from alphaopt.llm.runlog import RunLog
    from benchmarks.stored import stored_programs
    from library import LibraryStore

    answers = {"train problem": 5.0}
    with LibraryStore(tmp_path / "library.db") as store:
        for item_id, text in (("1", "train problem"), ("2", "a test problem")):
            task = store.add_task("d", item_id, text)
            store.record_attempt(task.id, kind="solve", status="error", program=f"P{item_id}", error="E")
        store.record_attempt(store.tasks()[0].id, kind="solve", status="optimal", program="OK")
    RunLog(tmp_path / "runs.db").save_run("r1", "train problem", "infeasible", None, json.dumps({
        "problem": "train problem",
        "attempts": [{"program": "P1", "status": "error"}, {"program": "P3", "status": "infeasible", "error": ""}]}))
    found = stored_programs([tmp_path], answers, ("error", "infeasible"))
    assert [(f["program"], f["status"]) for f in found] == [("P1", "error"), ("P3", "infeasible")]
    assert all(f["problem"] == "train problem" for f in found)
    assert stored_programs([tmp_path], answers, ("infeasible",)) == [
        {"problem": "train problem", "program": "P3", "status": "infeasible", "error": ""}]


def test_one_stored_program_per_problem_first_or_last():
    from benchmarks.stored import one_per_problem

    programs = [{"problem": "A", "program": "a1"}, {"problem": "B", "program": "b1"}, {"problem": "A", "program": "a2"}]
    assert {p: i["program"] for p, i in one_per_problem(programs).items()} == {"A": "a1", "B": "b1"}
    assert {p: i["program"] for p, i in one_per_problem(programs, last=True).items()} == {"A": "a2", "B": "b1"}


def test_a_longer_run_also_reports_the_first_items_of_each_dataset():
    from benchmarks.report import first_items_line

    items = registry.load("nl4opt_test")[:20]
    rows = [{"key": i.key, "dataset": i.dataset, "correct": n < 3 or n == 19} for n, i in enumerate(items)]
    assert first_items_line(rows, first=15) == (
        "On the first 15 items of each dataset (15 items, the set shorter runs measured): 3/15 = 20.0% (7.0–45.2).")
    assert first_items_line(rows[:15], first=15) == ""  # nothing beyond them: the table says it all


def test_training_answers_leave_out_the_twins_of_test_items():
    from benchmarks.stored import training_answers

    answers = training_answers()
    test_texts = {i.description for n in registry.names("test") for i in registry.load(n)}
    train = [i for n in registry.names("train") for i in registry.load(n)]
    assert not test_texts & set(answers)  # the 75 verbatim copies are out
    assert 250 < len(answers) < len({i.description for i in train})  # distinct texts, less the twins


def test_items_are_interleaved_and_can_leave_out_the_twins_of_test_items():
    from benchmarks.run import select_items

    items = select_items(["train"], limit=6)
    assert [i.dataset for i in items[:4]] == sorted(registry.names("train")) and len(items) == 24
    clean = select_items(["train"], limit=6, skip_test_twins=True)
    test_texts = {i.description for n in registry.names("test") for i in registry.load(n)}
    assert len(clean) == 24 and not test_texts & {i.description for i in clean}
    assert test_texts & {i.description for i in items}  # the plain selection has some


def test_an_ab_arm_runs_the_fixed_program_and_scores_it(runner):
    from benchmarks.stored import answer_and_score

    problem = "Maximize 3x + 2y with x + y <= 4, x + 3y <= 6, x <= 3."
    solving = LP_REPLY.replace("    return model", "    pyo.SolverFactory('highs').solve(model)\n    return model")
    llm = ScriptedLLM().enqueue(solving,
                                LP_REPLY)
    messages = [{"role": "user", "content": problem}]
    kwargs = {"prompt_name": "repair", "prompt_sha": "x", "problem": problem, "max_tokens": 100, "node": "test",
              "tolerance": Tolerance()}
    program, arm = answer_and_score(llm, runner, messages, answer=11, **kwargs)
    assert "SolverFactory" not in program  # the pipeline's fixes were applied before the run
    assert arm == {"status": "optimal", "objective": pytest.approx(11), "right": True}
    _, wrong = answer_and_score(llm, runner, messages, answer=12, temperature=0.7, seed=1, **kwargs)
    assert wrong["status"] == "optimal" and not wrong["right"]
    assert [c.prompt_name for c in llm.calls] == ["repair", "repair"]
    assert (llm.calls[0].temperature, llm.calls[1].temperature, llm.calls[1].seed) == (None, 0.7, 1)


def test_ab_results_are_appended_and_read_back(tmp_path, capsys):
    from benchmarks.stored import record, recorded

    out = tmp_path / "ab.jsonl"
    assert recorded(out) == []
    row = {"problem": "P", "answer": 5.0, "a": {"status": "optimal", "right": True},
           "b": {"status": "error", "right": False}}
    record(out, row, ("a", "b"))
    record(out, {**row, "problem": "Q"}, ("a", "b"))
    assert [r["problem"] for r in recorded(out)] == ["P", "Q"]
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split() == ["answer", "5", "a:", "optimal", "True", "b:", "error", "False"]


def test_a_training_item_is_flagged_a_twin_only_when_it_copies_a_test_item():
    from benchmarks.honesty import honesty_flags

    train = registry.load("nl4opt_train")
    test = [i for n in registry.names("test") for i in registry.load(n)]
    copies = {t.train for t in honesty.find_twins(train, test)}
    twins, _ = honesty_flags(train)
    assert twins == copies and 0 < len(twins) < len(train)  # not every training item (itself) any more
    test_twins, _ = honesty_flags(registry.load("nl4opt_test"))
    assert len(test_twins) == len({t.test for t in honesty.find_twins(
        [i for n in registry.names("train") for i in registry.load(n)], registry.load("nl4opt_test"))})


def test_a_library_learned_from_a_test_items_copy_is_named_in_the_run_description(tmp_path):
    from benchmarks.run import library_description

    train = [i for n in registry.names("train") for i in registry.load(n)]
    test = [i for n in registry.names("test") for i in registry.load(n)]
    copy = min({t.train for t in honesty.find_twins(train, test)})
    clean = next(i.key for i in train if i.key not in {t.train for t in honesty.find_twins([i], test)})
    export = tmp_path / "lib.jsonl"
    export.write_text(json.dumps({"_header": {"learned_tasks": [copy, clean], "training_problems": 2}}) + "\n")
    described = library_description(export)
    assert described.startswith("lib.jsonl: 0 insights learned from 2 training problems; 1 of them nearly copy")
    assert f"({copy})" in described and clean not in described


DIET = ("A student plans meals from chicken, rice and beans to get at least 60 g of protein and 2000 "
        "calories a day at the lowest cost; each serving has a price and its nutrients.")


def _diet_library(tmp_path, dataset: str, answer: float):
    """A library export holding one verified integrality insight whose source is DIET (``dataset``/E1)."""
    from library import InsightDraft, LibraryStore

    store = LibraryStore(tmp_path / "src.db")
    store.add_task(dataset, "E1", DIET, answer=answer)
    store.add_insight(InsightDraft(stage="general_formulation", level1="variables", level2="integrality",
                                   condition="The problem involves counting, buying, or choosing",
                                   explanation="declare servings NonNegativeIntegers"),
                      status="verified", provenance={"source_tasks": [f"{dataset}/E1"]})
    export = tmp_path / "lib.jsonl"
    store.export_jsonl(export, header={"training_problems": 1})
    store.close()
    return export


def test_reach_lists_the_items_a_library_can_reach_without_a_model_call(tmp_path, capsys, monkeypatch):
    from benchmarks import reach
    from library import InsightDraft, LibraryStore

    export = _diet_library(tmp_path, "diet_train", 12.0)
    data = tmp_path / "toy_test.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in [
        {"id": "near", "description": DIET.replace("chicken, rice and beans", "oats, milk and eggs"), "answer": 9},
        {"id": "far", "description": "A company hires trucks to ship at least 115 tons of gravel. Minimize cost.",
         "answer": 3150},
    ]) + "\n")
    reach.main(["--dataset", str(data), "--library", str(export), "--out", str(tmp_path / "out")])
    assert "1 of 2 items have a candidate insight" in capsys.readouterr().out
    written = [json.loads(line) for line in (tmp_path / "out" / "toy_test.jsonl").read_text().splitlines()]
    assert [(r["id"], r["answer"]) for r in written] == [("near", 9)]
    # an insight whose condition quotes the text reaches every item whose text it matches
    quoted = LibraryStore(tmp_path / "src.db")
    quoted.add_insight(InsightDraft(stage="general_formulation", level1="constraints", level2="inequality direction",
                                    condition='when the text says "ship at least N tons of"', explanation="use >=",
                                    example="wrong: m.x <= 115 right: m.x >= 115"), status="verified")
    quoted.export_jsonl(export, header={"training_problems": 1})
    quoted.close()
    monkeypatch.setenv("ALPHAOPT_EXPERIMENTAL__RETRIEVAL_MAX_DISTANCE", "0.01")  # no recall by conditions' vectors
    reach.main(["--dataset", str(data), "--library", str(export), "--out", str(tmp_path / "quoted")])
    assert "2 of 2 items have a candidate insight" in capsys.readouterr().out  # near: by its source; far: quoted
    assert [json.loads(line)["id"] for line in (tmp_path / "quoted" / "toy_test.jsonl").read_text().splitlines()] \
        == ["near", "far"]
    monkeypatch.delenv("ALPHAOPT_EXPERIMENTAL__RETRIEVAL_MAX_DISTANCE")
    reach.main(["--dataset", str(data), "--library", "starter"])  # the shipped library
    assert f"of 2 items have a candidate insight from {STARTER_LIBRARY}" in capsys.readouterr().out


def test_judge_forces_an_insight_on_training_problems_with_and_without_it_and_the_placebo(tmp_path, runner,
                                                                                          capsys):
    from benchmarks.experiments import judge
    from tests.fakes import WRONG_LP_REPLY, ThreadSafeLLM

    texts = {"E1": DIET,
             "E2": ("A student plans meals from oats, milk and eggs to get at least 70 g of protein and 1800 calories "
                    "each day at the lowest cost; every serving has its price and its nutrients."),
             "E3": ("An athlete plans meals from tuna, bread and peas to get at least 90 g of protein and 2500 "
                    "calories a day as cheaply as possible; each serving has a known price and nutrient content."),
             "E4": "A company hires trucks to ship at least 115 tons of gravel and wants to spend as little as it can."}
    train = tmp_path / "toy_train.jsonl"
    train.write_text("".join(json.dumps({"id": k, "description": v, "answer": 11}) + "\n" for k, v in texts.items()))
    export = _diet_library(tmp_path, "toy_train", 11.0)

    # the lesson turns E2 and E4 right; any lesson (the placebo too) turns E4 right; E3 turns wrong with it
    def route(prompt: str, user: str) -> str:
        name = next(k for k in ("E2", "E3", "E4") if texts[k] in user)
        lesson = "[I0001]" in user
        right = {"E2": lesson, "E3": not lesson, "E4": lesson or "[I0000]" in user}[name]
        if prompt == "formulate":
            return FORMULATION
        assert prompt == "write_program", prompt
        return LP_REPLY if right else WRONG_LP_REPLY

    llm = ThreadSafeLLM(route=route, delay=0.0)
    args = ["I0001", "--library", str(export), "--dataset", str(train), "--out", str(tmp_path / "out")]
    judge.main(args, llm=llm, runner=runner)  # E1 is its source; E2 and E3 its source gate reaches, E4 not
    out = capsys.readouterr().out
    assert "I0001: 2 of 2 training problems (reached): ['toy_train/E2', 'toy_train/E3']" in out
    assert ("I0001 on 2 problems: without 1, with 1; turned right 1 ['toy_train/E2'], of those right with the placebo "
            "too 0 []; turned wrong 1 ['toy_train/E3']") in out
    rows = [json.loads(line) for line in (tmp_path / "out" / "judge.jsonl").read_text().splitlines()]
    assert [(r["key"][-2:], r["arm"], r["right"]) for r in rows] == [
        ("E2", "without", False), ("E2", "with", True), ("E2", "placebo", False), ("E3", "without", True),
        ("E3", "with", False)]  # the placebo only where the lesson turned the answer right
    assert "turned wrong 1 ['toy_train/E3']" in (tmp_path / "out" / "summary.md").read_text()
    judge.main(args, llm=llm, runner=runner)  # resumes: nothing solved again
    assert len((tmp_path / "out" / "judge.jsonl").read_text().splitlines()) == 5
    calls = len(llm.calls)
    judge.main([*args, "--scope", "unreached"], llm=llm, runner=runner)
    out = capsys.readouterr().out
    assert "I0001: 1 of 1 training problems (unreached): ['toy_train/E4']" in out
    assert "turned right 1 ['toy_train/E4'], of those right with the placebo too 1 ['toy_train/E4']" in out
    assert len(llm.calls) > calls
    judge.main([*args, "--scope", "all", "--match", "trucks|athlete"], llm=llm, runner=runner)
    assert "I0001: 2 of 2 training problems (all, 'trucks|athlete'): ['toy_train/E3', 'toy_train/E4']" in \
        capsys.readouterr().out
    with pytest.raises(SystemExit, match="no such insight"):
        judge.main(["I0099", "--library", str(export), "--dataset", str(train), "--out", str(tmp_path / "out")])


def test_following_reads_whether_a_told_lesson_was_written(setup, tmp_path):  # noqa: F811
    """A sense lesson the model wrote when told (right) is counted; a quoted direction lesson,
    whose edit the code makes in every solve whatever the model writes, is left out."""
    from benchmarks.experiments import following
    from tests.test_learning_variants import ITEM, PLAN, RIGHT, SHOP_ITEM, TURNED, _code

    _, _, learner = setup
    unsensed = PLAN.replace("pyo.maximize", "pyo.minimize")  # 6: only the sense is wrong
    llm = RoutedLLM().on("write_program", TURNED).on("diagnose_program", TURNED).on("write_program", RIGHT)
    llm.on("write_program", unsensed, PLAN).on("edit_condition", "when the question asks for the most profit")
    summary = learner(llm, explore_tries=0, line_variants=True).learn([ITEM, SHOP_ITEM])
    assert summary.verified == 2
    rows = following.told_solves([tmp_path / "home"])  # the learner's home (tests/test_learn.py)
    assert [(r["task"], r["kind"], r["followed"], r["right"]) for r in rows] == [("toy_train/s1", "sense", True, True)]
    assert "| sense | 1 | 1 | 1 | 1 | 1 of 1 | 0 of 0 |" in following.table(rows)
    assert not following.followed("wrong: sense=pyo.minimize right: sense=pyo.maximize", _code(unsensed))
    assert following.followed("wrong: m.c = pyo.Constraint(expr=m.x <= 6) right: (no such constraint)",
                              "m.d = pyo.Constraint(expr=m.y >= 1)")  # a drop: the constraint gone
    assert following.kind_of("write the number the text states, 6, where the example does") == "number"
    assert following.kind_of("Use integer variables for counts.") is None  # a model's own words


def test_apply_ab_takes_each_told_lesson_with_the_program_it_was_learned_from(setup, tmp_path):  # noqa: F811
    from benchmarks.experiments import apply_ab
    from tests.test_learning_variants import PLAN, SHOP_ITEM, _code

    _, _, learner = setup
    unsensed = PLAN.replace("pyo.maximize", "pyo.minimize")
    llm = RoutedLLM().on("write_program", unsensed, PLAN).on("edit_condition", "when the question asks for the most")
    assert learner(llm, explore_tries=0, line_variants=True).learn([SHOP_ITEM]).verified == 1
    [item] = apply_ab.lessons([tmp_path / "home"])
    assert (item["task"], item["kinds"], item["told"]) == ("toy_train/s1", ["sense"], {"right": True, "followed": True})
    assert item["program"].strip() == _code(unsensed).strip() and item["answer"] == 40.0
    assert [g["example"] for g in item["lessons"]] == ["wrong: sense=pyo.minimize right: sense=pyo.maximize"]
