"""Accuracy runs on the benchmark datasets, written as they go and resumable.

Run with: python -m benchmarks.run --dataset nl4opt_test --limit 10

Each item's text goes to ``Agent.solve``; its answer stays here and is used only to score the
returned objective. Results land in ``benchmarks/results/<run>/items.jsonl`` (one line per item,
appended as each finishes; rerunning the same ``--run`` skips what is done) and a Markdown
summary beside it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import UTC, datetime
from itertools import zip_longest
from pathlib import Path
from typing import Any

from tqdm import tqdm

from alphaopt.agent import prompts
from alphaopt.agent.run import Agent
from alphaopt.agent.state import Solution
from alphaopt.config import Settings, load_settings
from alphaopt.errors import AlphaoptError
from benchmarks import honesty, registry
from benchmarks.report import RESULTS, write_summary
from benchmarks.scoring import Tolerance


def git_sha() -> str:
    """The commit the run was made from ('unknown' outside a checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def item_record(item: registry.Item, outcome: Solution | AlphaoptError, tol: Tolerance,
                twins: set[str], suspects: dict[str, str]) -> dict[str, Any]:
    """One result line: what happened, whether it was right, and what it cost."""
    base = {"key": item.key, "dataset": item.dataset, "id": item.id, "answer": item.answer,
            "twin": item.key in twins, "suspect": suspects.get(item.key)}
    if isinstance(outcome, AlphaoptError):
        return {**base, "status": "failure", "objective": None, "correct": False,
                "error": f"{type(outcome).__name__}: {outcome}"}
    s = outcome
    return {
        **base,
        "status": s.status,
        "objective": s.objective,
        "correct": tol.correct(s.objective, item.answer) if s.status in ("optimal", "feasible") else False,
        "run_id": s.run_id,
        "attempts": [{"stage": a.stage, "sample": a.sample, "status": a.status, "error": _short(a.error or ""),
                      "fixes": a.fixes} for a in s.attempts],
        # each sample's own answer: the first is what a single greedy sample would have answered
        "samples": [{"status": c.status, "objective": c.objective, "chosen": c.chosen,
                     "correct": tol.correct(c.objective, item.answer) if c.status in ("optimal", "feasible") else False}
                    for c in s.candidates],
        "insights": [i["id"] for i in s.insights],
        "tokens_in": s.tokens.input,
        "tokens_out": s.tokens.output,
        "llm_calls": s.tokens.calls,
        "cached_calls": s.tokens.cached_calls,
        "llm_s": round(s.timings.llm_s, 3),
        "solver_s": round(s.timings.solver_s, 3),
        "overhead_s": round(max(0.0, s.timings.total_s - s.timings.llm_s - s.timings.solver_s), 3),
        "total_s": round(s.timings.total_s, 3),
        "model": s.model,
    }


def read_done(path: Path) -> dict[str, dict[str, Any]]:
    """Items already recorded (a line cut short by a crash is redone)."""
    done = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if row.get("status") != "failure":
                done[row["key"]] = row
    return done


def run(items: list[registry.Item], out_dir: Path, settings: Settings, *, tol: Tolerance, concurrency: int = 1,
        progress: bool = True, agent: Agent | None = None, library_name: str = "none") -> list[dict[str, Any]]:
    """Solve the items not yet in ``out_dir/items.jsonl``; return every recorded row."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "items.jsonl"
    twins, suspects = honesty.honesty_flags(items)
    done = read_done(path)
    for row in done.values():  # the honesty checks may have grown since the row was written
        row["twin"], row["suspect"] = row["key"] in twins, suspects.get(row["key"])
    path.write_text("".join(json.dumps(r) + "\n" for r in done.values()))
    todo = [i for i in items if i.key not in done]
    meta = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"), "git_sha": git_sha(),
        "model": settings.model_name, "endpoint": settings.base_url or "embedded",
        "library": library_name, "tolerance": tol.describe(), "temperature": settings.experimental.temperature,
        "max_repairs": settings.max_repairs, "max_diagnoses": settings.experimental.max_diagnoses,
        "formulate": settings.experimental.formulate,
        "apply_edits": settings.experimental.apply_edits,
        "tell_applied": settings.experimental.tell_applied, "samples": settings.samples,
        "resample_failed": settings.experimental.resample_failed,
        "retry_temperature": settings.experimental.retry_temperature,
        "max_tokens_program": settings.experimental.max_tokens_program,
        "quote_max_words": settings.experimental.quote_max_words,
        "patch_lines": settings.experimental.text_rewrites, "text_rewrites": settings.experimental.text_rewrites,
        "retrieval_source_similarity":
            None if library_name == "none" else settings.experimental.retrieval_source_similarity,
        "prompt_shas": {n: prompts.prompt_sha(n) for n in prompts.PROMPTS},
        "datasets": sorted({i.dataset for i in items}), "items": len(items), "rows_at_start": len(done),
    }
    meta_path = out_dir / "meta.json"
    if meta_path.is_file():  # a resumed run keeps what the earlier sessions ran with
        earlier = json.loads(meta_path.read_text())
        meta["earlier"] = [*earlier.pop("earlier", []), earlier]
    meta_path.write_text(json.dumps(meta, indent=2))
    lock = threading.Lock()
    own = agent is None
    agent = agent or Agent(settings)
    bar = tqdm(total=len(items), initial=len(items) - len(todo), disable=not progress, file=sys.stderr, unit="item")
    try:
        with path.open("a") as sink, ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            futures = {pool.submit(_solve, agent, item): item for item in todo}
            for future in as_completed(futures):
                item = futures[future]
                row = item_record(item, future.result(), tol, twins, suspects)
                with lock:
                    sink.write(json.dumps(row) + "\n")
                    sink.flush()
                    done[item.key] = row
                bar.update(1)
                bar.set_postfix_str(f"{item.key}: {row['status']}{' ✓' if row['correct'] else ''}")
    finally:
        bar.close()
        if own:
            agent.close()
    return [done[i.key] for i in items if i.key in done]


def bench_agent(settings: Settings, out_dir: Path, library_path: Path | None) -> Agent:
    """An agent whose library is exactly the given export (loaded into the run's own folder), or none."""
    if library_path is None:
        return Agent(settings.model_copy(update={"use_library": False}))
    lib_settings = settings.model_copy(update={
        "use_library": True, "library_url": f"sqlite:///{out_dir / 'library.db'}",
        "chroma_url": str(out_dir / "chroma"),
    }).with_experimental(starter_library=library_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    return Agent(lib_settings)  # opens that library, loading the export into the run's empty store


def library_description(path: Path | None) -> str:
    """'none', or the export's name, size and provenance header, for the report."""
    if path is None:
        return "none"
    from library import jsonl

    header, records = jsonl.read(path)  # the whole file, read once
    described = (f"{path.name}: {len(records)} insights learned from "
                 f"{(header or {}).get('training_problems', '?')} training problems")
    copies = learned_test_twins(header, [r for _, r in records])
    if copies:
        described += (f"; {len(copies)} of them nearly copy a test item ({', '.join(copies)}), so the"
                      " library may know those test items")
    return described


def learned_test_twins(header: dict[str, Any] | None, records: list[Any]) -> list[str]:
    """The training problems a library export learned from (its header's list and its insights'
    sources) that nearly copy a test item."""
    learned = set((header or {}).get("learned_tasks") or [])
    learned |= {t for r in records for t in r.provenance.source_tasks}
    train = [i for n in registry.names("train") for i in registry.load(n) if i.key in learned]
    test = [i for n in registry.names("test") for i in registry.load(n)]
    return sorted({t.train for t in honesty.find_twins(train, test)})


def _solve(agent: Agent, item: registry.Item) -> Solution | AlphaoptError:
    try:
        return agent.solve(item.description)  # the text only: item.answer never goes in
    except AlphaoptError as exc:
        return exc



def _short(error: str, head: int = 200, tail: int = 200) -> str:
    """An error for a result row: its first line (type and message) and its last lines."""
    return error if len(error) <= head + tail else error[:head] + " … " + error[-tail:]


def select_items(datasets: list[str], *, limit: int | None = None, offset: int = 0,
                 skip_test_twins: bool = False) -> list[registry.Item]:
    """The items of the named datasets ("test" and "train" name all splits of that kind), the
    first ``limit`` of each after its first ``offset`` (after leaving out near-copies of test
    items when asked), interleaved so that a run stopped early still covers every dataset."""
    names = [n for d in datasets for n in (registry.names(d) if d in ("test", "train") else [d])]
    per_dataset = [registry.load(n) for n in names]
    if skip_test_twins:
        test = [i for n in registry.names("test") for i in registry.load(n)]
        twins = {t.train for t in honesty.find_twins([i for d in per_dataset for i in d], test)}
        per_dataset = [[i for i in d if i.key not in twins] for d in per_dataset]
    per_dataset = [d[offset:][:limit] for d in per_dataset]
    return [i for group in zip_longest(*per_dataset) for i in group if i is not None]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description="Accuracy on benchmark datasets.")
    parser.add_argument("--dataset", action="append", required=True,
                        help=f"bundled name ({', '.join(registry.names())}), 'test' or 'train' for all splits of "
                             "that kind, or a .jsonl path")
    parser.add_argument("--run", help="results folder name under benchmarks/results (reuse it to resume)")
    parser.add_argument("--limit", type=int, help="first N items of each dataset")
    parser.add_argument("--offset", type=int, default=0, help="skip the first N items of each dataset")
    parser.add_argument("--library", default="none",
                        help="'none', 'starter' (the shipped library/starter.jsonl) or a path to a library JSONL "
                             "export")
    parser.add_argument("--model", help="model id at the endpoint (default: embedded model)")
    parser.add_argument("--base-url", help="OpenAI-compatible endpoint (default: embedded model)")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--atol", type=float, default=Tolerance().atol)
    parser.add_argument("--rtol", type=float, default=Tolerance().rtol)
    parser.add_argument("--skip-test-twins", action="store_true",
                        help="leave out items that are near-copies of a test item (for decisions made on training "
                             "data)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    items = select_items(args.dataset, limit=args.limit, offset=args.offset, skip_test_twins=args.skip_test_twins)
    settings = load_settings(model=args.model, base_url=args.base_url)
    library_path = (None if args.library == "none" else settings.experimental.starter_library
                    if args.library == "starter" else Path(args.library))
    if library_path is not None and not Path(library_path).is_file():
        raise SystemExit(f"--library: no library file at {library_path}; give a JSONL export, 'starter' or 'none'.")
    label = args.library if args.library in ("none", "starter") else Path(args.library).stem
    run_name = args.run or f"{'embedded' if settings.embedded else settings.model_name}-{label}"
    out_dir = RESULTS / run_name
    tol = Tolerance(args.atol, args.rtol)
    agent = bench_agent(settings, out_dir, library_path)
    try:
        rows = run(items, out_dir, settings, tol=tol, concurrency=args.concurrency, progress=not args.no_progress,
                   agent=agent, library_name=library_description(library_path))
    finally:
        agent.close()
    print(write_summary(out_dir, rows))


if __name__ == "__main__":
    main()
