"""What an export's header says about how its library was learned.

The header travels with the insights (``library export``, the app's Export) so that learning can
go on in another home, on another machine: the training problems learned from, those whose
learning ended unsolved (``learn --skip-learned FILE --retry-unsolved`` learns from them again),
their datasets, and the learning runs with their funnels. Chained onto the export a home went on
from, it keeps that export's problems and runs, each run listed once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alphaopt.learning.learn import ended_tasks
from library import LibraryStore, read_header


def export_header(store: LibraryStore, continues: Path | None = None) -> dict[str, Any]:
    """The header for an export of ``store``, continuing the export ``continues`` when the home
    went on from it (``learn --skip-learned``)."""
    earlier = (read_header(continues) or {}) if continues is not None else None
    done = store.done_tasks()
    learned = {t.id: t.dataset for t in store.tasks() if t.id in done}
    unsolved = ended_tasks(store, ["unsolved"])
    runs = [{"id": r.id, "command": r.settings.get("command"), "model": r.settings.get("model"),
             "settings": {k: v for k, v in r.settings.items() if k not in ("command", "model")},
             "counters": r.counters, "status": r.status.value, "started_at": r.started_at,
             "finished_at": r.finished_at} for r in store.runs()]
    if earlier is not None:
        for task_id in earlier.get("learned_tasks", []):
            learned.setdefault(task_id, task_id.rpartition("/")[0])
        # left unsolved there and not learned from again here (here's last word wins)
        unsolved |= set(earlier.get("unsolved_tasks", [])) - done
        # this home's own runs, when it made the earlier export too (or an export the earlier one
        # went on from, which marked them "earlier"), are listed once, as they are now
        seen = {run_key(r) for r in runs}
        kept = []
        for run in earlier.get("runs", []):
            if run_key(run) not in seen:
                seen.add(run_key(run))
                kept.append({**run, "home": "earlier"})
        runs = [*kept, *runs]
    header: dict[str, Any] = {
        "training_problems": len(learned),
        "learned_tasks": sorted(learned),
        "unsolved_tasks": sorted(unsolved & set(learned)),
        "datasets": sorted(set(learned.values())),
        "runs": runs,
    }
    if continues is not None:
        header["continues"] = continues.name
    return header


def run_key(run: dict[str, Any]) -> tuple[str, ...]:
    """What identifies an exported learning run across exports: its id and start time (its
    counters and status change while it runs or when it is closed); older runs carry no times."""
    if run.get("started_at"):
        return (str(run.get("id")), str(run["started_at"]))
    return tuple(json.dumps(run.get(k), sort_keys=True) for k in ("id", "command", "settings", "counters", "status"))


def tasks_to_skip(header: dict[str, Any], *, retry_unsolved: bool) -> tuple[set[str], set[str]]:
    """From an earlier export's header: the tasks learned from there (to skip here), and of those
    the ones that ended unsolved, to learn from again when ``retry_unsolved``."""
    learned = set(header.get("learned_tasks", []))
    again = set(header.get("unsolved_tasks", [])) & learned if retry_unsolved else set()
    return learned - again, again
