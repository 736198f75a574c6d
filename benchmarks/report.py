"""Summaries of a benchmark run: accuracy with 95% intervals, twins and suspect labels apart.

Run with: python -m benchmarks.report RUN  (a folder name under benchmarks/results, or a path)
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks import honesty, registry
from benchmarks.scoring import wilson

RESULTS = Path(__file__).parent / "results"

#: The last commit that still held the per-item rows of the runs made before them (sessions 1–11).
ROWS_IN_HISTORY = "2cb4c3b"

#: Earlier runs, and the issue's 31.7% floor, are on 60 items: the first 15 of each test split.
FIRST = 15
RAN = {"optimal", "feasible", "infeasible", "unbounded", "infeasible_or_unbounded", "time_limit"}


def run_dir(run: str | Path) -> Path:
    """A run's folder: ``run`` itself when it is a folder, else ``benchmarks/results/<run>``."""
    path = Path(run)
    return path if path.is_dir() else RESULTS / path


def read_items(run_dir: Path) -> list[dict[str, Any]]:
    """A run's per-item rows (``items.jsonl``). They are not committed: they stay on the machine
    that made the run, so a fresh checkout has only each run's ``summary.md`` and ``meta.json``."""
    path = run_dir / "items.jsonl"
    if not path.is_file():
        raise SystemExit(
            f"{path}: no per-item rows here. They stay on the machine that made the run (only summary.md and "
            f"meta.json are committed). Make them with `python -m benchmarks.run ... --run {run_dir.name}`, or, for a "
            f"run made before they left git, take them from history: "
            f"`git show {ROWS_IN_HISTORY}:benchmarks/results/{run_dir.name}/items.jsonl > {path}`.")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_run(run_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A run's meta (``meta.json``, empty when missing) and its per-item rows (``read_items``)."""
    meta_path = run_dir / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    return meta, read_items(run_dir)


def stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy (with Wilson 95% CI), execution rate, status mix, mean tokens and times."""
    n = len(rows)
    correct = sum(r["correct"] for r in rows)
    low, high = wilson(correct, n)
    clean = [r for r in rows if not r.get("twin")]
    trusted = [r for r in rows if not r.get("suspect")]

    def mean(key: str) -> float:
        values = [r.get(key) or 0 for r in rows if r["status"] != "failure"]
        return sum(values) / len(values) if values else 0.0

    return {
        "n": n,
        "correct": correct,
        "accuracy": correct / n if n else 0.0,
        "ci": (low, high),
        "n_no_twins": len(clean),
        "accuracy_no_twins": sum(r["correct"] for r in clean) / len(clean) if clean else 0.0,
        "n_no_suspects": len(trusted),
        "accuracy_no_suspects": sum(r["correct"] for r in trusted) / len(trusted) if trusted else 0.0,
        "execution_rate": sum(r["status"] in RAN for r in rows) / n if n else 0.0,
        "status_mix": dict(Counter(r["status"] for r in rows).most_common()),
        **{f"mean_{k}": mean(k)
           for k in ("tokens_in", "tokens_out", "llm_calls", "llm_s", "solver_s", "overhead_s", "total_s")},
    }


def samples_line(rows: list[dict[str, Any]]) -> str:
    """How the vote compares with its own first (greedy) sample on the same items."""
    voted = [r for r in rows if r.get("samples")]
    if not voted:
        return ""
    n = len(voted)
    first = sum(r["samples"][0]["correct"] for r in voted)
    vote = sum(r["correct"] for r in voted)
    any_right = sum(any(c["correct"] for c in r["samples"]) for r in voted)
    drawn = sum(len(r["samples"]) for r in voted) / n
    lo, hi = wilson(first, n)
    return (f"Samples: {drawn:.2f} drawn per item on average. On these {n} items the first (greedy) sample alone "
            f"was right {first}/{n} = {_pct(first / n)}% ({_pct(lo)}–{_pct(hi)}); the majority vote {vote}/{n} = "
            f"{_pct(vote / n)}%; at least one sample right {any_right}/{n} (an upper bound for any vote).")


_SAME_PIPELINE = ("model", "endpoint", "library", "temperature", "max_repairs", "max_diagnoses",
                  "formulate", "formulate_lessons", "apply_edits", "tell_applied", "samples", "resample_failed",
                  "retry_temperature",
                  "max_tokens_program", "quote_max_words", "patch_lines", "retrieval_source_similarity", "prompt_shas")
#: What a run's metadata meant by a setting it predates.
_BEFORE_IT_EXISTED = {"quote_max_words": 0, "patch_lines": False, "retrieval_source_similarity": None,
                      "formulate_lessons": False, "apply_edits": False, "tell_applied": True}


def _setting(meta: dict[str, Any], key: str) -> Any:
    return meta.get(key, _BEFORE_IT_EXISTED.get(key))


def sessions_lines(meta: dict[str, Any]) -> list[str]:
    """For a resumed run: when each session started, at which commit, from which row; and a
    warning naming what differed, since rows from different pipelines are not one measurement."""
    sessions = [*meta.get("earlier", []), meta]
    if len(sessions) < 2:
        return []
    lines = ["- sessions: " + "; ".join(
        f"{m.get('started')} at git {m.get('git_sha')} from row {m.get('rows_at_start', '?')}" for m in sessions)]
    changed = sorted({k for m in sessions[:-1] for k in _SAME_PIPELINE if _setting(m, k) != _setting(meta, k)})
    if changed:
        lines.append(f"- **warning: the sessions differ in {', '.join(changed)}**; the rows are not one pipeline")
    return lines


def first_items_line(rows: list[dict[str, Any]], first: int = FIRST) -> str:
    """Accuracy on the first ``first`` items of each bundled dataset, when the run went further:
    the subset that runs with ``--limit 15`` measured, so that a longer run stays comparable."""
    datasets = {r["dataset"] for r in rows}
    if not any(sum(r["dataset"] == d for r in rows) > first for d in datasets):
        return ""
    leading = {i.key for d in datasets if d in registry.names() for i in registry.load(d)[:first]}
    subset = [r for r in rows if r["key"] in leading]
    if not subset:
        return ""
    right = sum(r["correct"] for r in subset)
    lo, hi = wilson(right, len(subset))
    return (f"On the first {first} items of each dataset ({len(subset)} items, the set shorter runs measured): "
            f"{right}/{len(subset)} = {_pct(right / len(subset))}% ({_pct(lo)}–{_pct(hi)}).")


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def table(rows: list[dict[str, Any]]) -> str:
    """The Markdown table: one line per dataset and one overall."""
    head = ("| dataset | n | accuracy % (95% CI) | without train/test twins % (n) | without suspect labels % (n) "
            "| executed % | prompt tokens | completion tokens | LLM s | solver s | overhead s |")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    groups = sorted({r["dataset"] for r in rows})
    for name in [*groups, "overall"] if len(groups) > 1 else groups:
        subset = rows if name == "overall" else [r for r in rows if r["dataset"] == name]
        s = stats(subset)
        lines.append(
            f"| {name} | {s['n']} | {_pct(s['accuracy'])} ({_pct(s['ci'][0])}–{_pct(s['ci'][1])}) "
            f"| {_pct(s['accuracy_no_twins'])} ({s['n_no_twins']}) "
            f"| {_pct(s['accuracy_no_suspects'])} ({s['n_no_suspects']}) "
            f"| {_pct(s['execution_rate'])} | {s['mean_tokens_in']:.0f} | {s['mean_tokens_out']:.0f} "
            f"| {s['mean_llm_s']:.1f} | {s['mean_solver_s']:.2f} | {s['mean_overhead_s']:.2f} |"
        )
    return "\n".join(lines)


def write_summary(out_dir: Path, rows: list[dict[str, Any]]) -> str:
    """Write ``summary.md`` beside the items and return it."""
    meta = json.loads((out_dir / "meta.json").read_text()) if (out_dir / "meta.json").exists() else {}
    mix = stats(rows)["status_mix"] if rows else {}
    suspects = sorted(r["key"] for r in rows if r.get("suspect"))
    text = "\n".join([
        f"# Benchmark run `{out_dir.name}`",
        "",
        f"- model: {meta.get('model')} ({meta.get('endpoint')}), temperature {meta.get('temperature')}",
        f"- library: {meta.get('library')}",
        f"- correctness: {meta.get('tolerance')}",
        f"- git: {meta.get('git_sha')}, started {meta.get('started')}",
        f"- settings: max_repairs {meta.get('max_repairs')}, max_diagnoses {meta.get('max_diagnoses')}, "
        f"formulate {meta.get('formulate')}, "
        + (f"formulate_lessons {meta['formulate_lessons']} (a switch since removed), " if "formulate_lessons" in meta
           else "")
        + f"apply_edits {_setting(meta, 'apply_edits')}, tell_applied {_setting(meta, 'tell_applied')}, "
        f"samples {meta.get('samples', 1)}, "
        f"resample_failed {meta.get('resample_failed', 0)} (retry temperature {meta.get('retry_temperature')}), "
        f"quote_max_words {meta.get('quote_max_words', 0)}, "
        f"patch_lines {meta.get('patch_lines', False)}"
        + (f", retrieval_source_similarity {meta['retrieval_source_similarity']}"
           if meta.get("retrieval_source_similarity") is not None else "")
        + f"; prompts {meta.get('prompt_shas')}",
        f"- items finished: {len(rows)} of {meta.get('items')}",
        *sessions_lines(meta),
        "",
        table(rows) if rows else "(no items finished yet)",
        "",
        f"Status mix: {mix}",
        "",
        *([first, ""] if (first := first_items_line(rows)) else []),
        samples_line(rows),
        "",
        f"Suspect labels (reported apart, never edited): {', '.join(suspects) or 'none'}",
        "",
    ])
    (out_dir / "summary.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description="Rewrite a run's summary.md.")
    parser.add_argument("run", help="a folder name under benchmarks/results, or a path to a run's folder")
    out_dir = run_dir(parser.parse_args(argv).run)
    rows = read_items(out_dir)
    bundled = {d: {i.key: i for i in registry.load(d)} for d in {r["dataset"] for r in rows} if d in registry.names()}
    twins, suspects = honesty.honesty_flags([item for items in bundled.values() for item in items.values()])
    for row in rows:  # current honesty checks, for rows written by an older version
        if row["dataset"] in bundled:
            row["twin"], row["suspect"] = row["key"] in twins, suspects.get(row["key"])
    print(write_summary(out_dir, rows))


if __name__ == "__main__":
    main()
