"""Benchmark results as committed: summaries only; the per-item rows stay local, and the scripts
that read them say so plainly when they are absent. The finished A/B experiments run from
``benchmarks.experiments``."""

from __future__ import annotations

import importlib
import json
import subprocess
from pathlib import Path

import pytest

from benchmarks import compare, report

ROOT = Path(__file__).resolve().parent.parent


def _run(folder: Path, correct: dict[str, bool]) -> Path:
    folder.mkdir()
    (folder / "meta.json").write_text(json.dumps({"library": "none"}))
    (folder / "items.jsonl").write_text("".join(
        json.dumps({"key": key, "dataset": key.split("/")[0], "correct": ok}) + "\n" for key, ok in correct.items()))
    return folder


def test_a_run_without_its_rows_says_where_they_are(tmp_path):
    folder = tmp_path / "embedded-old"
    folder.mkdir()
    (folder / "summary.md").write_text("# a committed summary\n")
    with pytest.raises(SystemExit) as stopped:
        report.read_items(folder)
    message = str(stopped.value)
    assert str(folder / "items.jsonl") in message and "stay on the machine that made the run" in message
    assert f"git show {report.ROWS_IN_HISTORY}:benchmarks/results/embedded-old/items.jsonl" in message
    assert "--run embedded-old" in message


def test_compare_reads_two_local_run_folders(tmp_path, capsys):
    a = _run(tmp_path / "a", {"x_test/1": True, "x_test/2": False, "x_test/3": True})
    b = _run(tmp_path / "b", {"x_test/1": True, "x_test/2": True, "x_test/3": True})
    compare.main([str(a), str(b)])
    out = capsys.readouterr().out
    assert "3 items in both runs" in out and f"{a}: 2/3 = 66.7%" in out and f"right only in {b}: 1 ['x_test/2']" in out
    with pytest.raises(SystemExit, match="no per-item rows"):
        compare.main([str(a), str(tmp_path / "missing")])


def test_report_rewrites_a_summary_from_local_rows(tmp_path):
    folder = _run(tmp_path / "r", {"x_test/1": True, "x_test/2": False})
    for row_file in (folder / "items.jsonl",):
        rows = [json.loads(line) | {"status": "optimal", "id": "i"} for line in row_file.read_text().splitlines()]
        row_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report.main([str(folder)])
    assert "| x_test | 2 | 50.0" in (folder / "summary.md").read_text()


def test_no_raw_per_item_results_are_committed():
    listed = subprocess.run(["git", "ls-files", "benchmarks/results"], cwd=ROOT, capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    raw = [p for p in listed.stdout.splitlines() if p.endswith((".jsonl", ".db"))]
    assert raw == [], f"raw per-item results are committed (keep summary.md and meta.json only): {raw}"
    assert any(p.endswith("/summary.md") for p in listed.stdout.splitlines())


@pytest.mark.parametrize(("name", "option"), [("diagnose_ab", "--from"), ("explore_ab", "--from"),
                                              ("repair_ab", "--from"), ("rewrites_ab", "--base"),
                                              ("situate", "--from"), ("following", "--from"),
                                              ("apply_ab", "--from")])
def test_the_finished_experiments_run_from_their_package(name, option, capsys):
    module = importlib.import_module(f"benchmarks.experiments.{name}")
    doc = module.__doc__
    assert doc.splitlines()[2].startswith("Run with: ") and f"python -m benchmarks.experiments.{name}" in doc
    with pytest.raises(SystemExit) as stopped:
        module.main(["--help"])
    assert stopped.value.code == 0 and option in capsys.readouterr().out
