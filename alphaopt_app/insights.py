"""Plain views of an insight for the Library page: version diffs and evidence (no Streamlit here)."""

from __future__ import annotations

import difflib
import json
from collections import Counter
from dataclasses import dataclass

import pandas as pd

from library import Evidence, Insight


def version_text(insight: Insight) -> list[str]:
    """The fields of one version as lines, for diffing."""
    prov = insight.provenance
    return [
        f"label: {insight.stage.value} / {insight.level1} / {insight.level2}",
        f"condition: {insight.condition}",
        f"explanation: {insight.explanation}",
        *[f"example: {line}" for line in (insight.example or "").splitlines() or [""]],
        f"source_tasks: {', '.join(prov.source_tasks)}",
        f"model: {prov.model or ''}",
        f"prompt_version: {prov.prompt_version or ''}",
        f"evidence: {json.dumps(prov.evidence, sort_keys=True)}",
        f"run_id: {prov.run_id or ''}",
    ]


@dataclass
class VersionDiff:
    """One version and what changed from the one before it."""

    version: int
    reason: str
    created_at: str
    diff: str


def version_diffs(versions: list[Insight]) -> list[VersionDiff]:
    """Newest first: each version with a unified diff against its predecessor (v1 against nothing)."""
    out = []
    previous: list[str] = []
    for v in versions:
        lines = version_text(v)
        diff = "\n".join(difflib.unified_diff(previous, lines, f"v{v.version - 1}" if previous else "(new)",
                                              f"v{v.version}", lineterm="", n=0))
        out.append(VersionDiff(v.version, v.reason or ("created" if v.version == 1 else ""),
                               v.version_created_at[:19].replace("T", " "), diff))
        previous = lines
    return out[::-1]


def outcome(e: Evidence) -> str:
    """What one evidence record says: helped, hurt, used (outcome unknown) or only retrieved."""
    if not e.used:
        return "retrieved, not used"
    return {True: "helped", False: "hurt", None: "used"}[e.success]


def evidence_summary(evidence: list[Evidence]) -> dict[str, int]:
    """Counts by outcome, plus how often it was retrieved."""
    counts = Counter(outcome(e) for e in evidence)
    return {"retrieved": len(evidence), "used": sum(e.used for e in evidence), "helped": counts["helped"],
            "hurt": counts["hurt"]}


def evidence_frame(evidence: list[Evidence]) -> pd.DataFrame:
    """One row per evidence record, newest first: where the insight helped or hurt."""
    rows = [(e.created_at[:19].replace("T", " "), outcome(e), e.task_id or "", e.run_id or "", e.version)
            for e in reversed(evidence)]
    return pd.DataFrame(rows, columns=["when", "outcome", "task", "run", "version"])


def insights_frame(insights: list[Insight]) -> pd.DataFrame:
    """The search results as a table."""
    rows = [(i.id, i.version, i.status.value, i.stage.value, f"{i.level1} / {i.level2}", i.condition)
            for i in insights]
    return pd.DataFrame(rows, columns=["id", "version", "status", "stage", "label", "condition"])
