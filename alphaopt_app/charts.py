"""Chart data for the Learn page, as pandas frames (no Streamlit here)."""

from __future__ import annotations

import pandas as pd

from library import Attempt, Insight, LearningRun, Stage, Status

#: Outcomes the learner writes on a finished problem ("done" attempts) that count as solved.
SOLVED_AS_IS = {"solved"}
SOLVED_AFTER = {"solved", "learned"}


def _pct(part: float, whole: float) -> float | None:
    return round(100 * part / whole, 1) if whole else None


def runs_frame(runs: list[LearningRun]) -> pd.DataFrame:
    """One row per learning run, newest first, with its counters and accuracy."""
    rows = []
    for r in reversed(runs):
        c = r.counters
        seen = c.get("seen", 0)
        rows.append({
            "run": r.id, "status": r.status.value, "started": r.started_at[:19].replace("T", " "),
            "problems": seen, "solved before %": _pct(c.get("solved_before", 0), seen),
            "solved after %": _pct(c.get("solved_after", 0), seen), "added": c.get("added", 0),
            "verified": c.get("verified", 0), "rejected": c.get("rejected", 0), "merged": c.get("merged", 0),
            "tokens": r.tokens, "minutes": round(c.get("seconds", 0) / 60, 1),
            "command": r.settings.get("command", ""),
        })
    return pd.DataFrame(rows)


def accuracy_by_run(runs: list[LearningRun]) -> pd.DataFrame:
    """Accuracy before and after learning, per run in order (runs that saw no problem are left out)."""
    rows = [(r.id, _pct(r.counters.get("solved_before", 0), r.counters["seen"]),
             _pct(r.counters.get("solved_after", 0), r.counters["seen"]))
            for r in runs if r.counters.get("seen")]
    return pd.DataFrame(rows, columns=["run", "solved before %", "solved after %"]).set_index("run")


def accuracy_curve(done: list[Attempt]) -> pd.DataFrame:
    """Running accuracy over the problems of one run, from its finished-problem records."""
    rows, as_is, after = [], 0, 0
    for n, attempt in enumerate(done, 1):
        as_is += attempt.status in SOLVED_AS_IS
        after += attempt.status in SOLVED_AFTER
        rows.append((n, _pct(as_is, n), _pct(after, n)))
    return pd.DataFrame(rows, columns=["problem", "solved as is %", "solved or learned %"]).set_index("problem")


def library_by_stage(insights: list[Insight]) -> pd.DataFrame:
    """Insight counts: one row per stage, one column per status."""
    counts = {stage.value: {status.value: 0 for status in Status} for stage in Stage}
    for i in insights:
        counts[i.stage.value][i.status.value] += 1
    return pd.DataFrame.from_dict(counts, orient="index")


def library_growth(insights: list[Insight]) -> pd.DataFrame:
    """How many of today's verified insights existed over time, per stage (by creation time)."""
    verified = sorted((i for i in insights if i.status == Status.VERIFIED), key=lambda i: i.created_at)
    totals = {stage.value: 0 for stage in Stage}
    rows = []
    for i in verified:
        totals[i.stage.value] += 1
        rows.append({"time": pd.Timestamp(i.created_at), **totals})
    return pd.DataFrame(rows).set_index("time") if rows else pd.DataFrame()


def tokens_by_run(runs: list[LearningRun]) -> pd.DataFrame:
    """Tokens spent per run."""
    return pd.DataFrame([(r.id, r.tokens) for r in runs], columns=["run", "tokens"]).set_index("run")
