"""A real ``alphaopt learn`` process killed with SIGKILL during a merge leaves the library as it
was before the merge or as it is after it, never in between.

The learner's model is a scripted OpenAI-compatible endpoint (``benchmarks.fake_endpoint.FakeEndpoint``); the
solver, SQLite and Chroma are real. The home holds two verified insights, one of them learned
from ``t1``; learning ``t2`` (its near twin) verifies the same lesson again, which is then merged
with the first and re-verified on both source problems. The endpoint kills the process at a
point of that merge.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from alphaopt.agent.retrieval import open_library
from alphaopt.config import load_settings
from benchmarks.fake_endpoint import FakeEndpoint
from library import InsightDraft, LibraryStore, Status
from tests.fakes import LP_REPLY, WRONG_LP_REPLY
from tests.test_learn import CODE_DRAFT, DRAFT, PROBLEM

ROOT = Path(__file__).resolve().parents[1]
MERGED = {**DRAFT["insights"][0], "condition": "when the text limits one decision variable from above"}
BEFORE = {"I0001": "verified", "I0002": "verified", "I0003": "verified"}  # t2's lesson verified, not merged yet
AFTER = {"I0001": "retired", "I0002": "verified", "I0003": "retired", "I0004": "verified"}


def _home(tmp_path: Path) -> Path:
    """A home with two verified insights: I0001 learned from t1 (held with its answer), I0002 a code lesson."""
    home = tmp_path / "home"
    store, index = open_library(load_settings(home=home, use_library=True))
    store.add_task("toy_train", "t1", PROBLEM, 11.0)
    first = store.add_insight(InsightDraft(**DRAFT["insights"][0]), status=Status.VERIFIED,
                              provenance={"source_tasks": ["toy_train/t1"], "model": "fake"})
    code = store.add_insight(InsightDraft(**CODE_DRAFT["insights"][0]), status=Status.VERIFIED,
                             provenance={"source_tasks": ["elsewhere/x1"], "model": "fake"})
    index.upsert([first, code])
    index.close()
    store.close()
    return home


class _Script:
    """The endpoint's replies, by what each prompt asks; ``kill_at`` names the request at which the
    learner is killed: ``"merge"`` (the merge prompt), ``"recheck"`` (the merge's last re-verifying
    solve, before its answer) or ``"commit"`` (just after that answer, while the merge commits)."""

    def __init__(self, kill_at: str, delay: float = 0.0) -> None:
        self.kill_at, self.delay = kill_at, delay
        self.pid: int | None = None
        self.rechecks = 0
        self.killed = threading.Event()

    def kill(self) -> None:
        if self.pid is not None and not self.killed.is_set():
            os.kill(self.pid, signal.SIGKILL)
            self.killed.set()

    def __call__(self, request: dict[str, Any]) -> str:
        user = request["messages"][-1]["content"]
        if "Lessons learned from other problems" in user:
            return "NONE"
        if "The correct optimal objective value is" in user:
            return LP_REPLY
        if "Write 1 or 2 lessons" in user:
            return json.dumps(DRAFT)
        if "These lessons say nearly the same thing" in user:
            if self.kill_at == "merge":
                self.kill()
            return json.dumps(MERGED)
        if "[new]" in user:  # the merged lesson, re-verified on t1 and t2 before it is stored
            self.rechecks += 1
            if self.rechecks == 2 and self.kill_at == "recheck":
                self.kill()
            if self.rechecks == 2 and self.kill_at == "commit":
                threading.Timer(self.delay, self.kill).start()
            return LP_REPLY
        return LP_REPLY if "[I0003]" in user else WRONG_LP_REPLY  # right only with t2's candidate


def _statuses(home: Path) -> dict[str, str]:
    with LibraryStore(home / "library.db") as store:
        return {i.id: i.status.value for i in store.list(status=None)}


@pytest.mark.parametrize(("kill_at", "delay"), [("merge", 0.0), ("recheck", 0.0), ("commit", 0.0), ("commit", 0.3)])
def test_a_learner_killed_during_a_merge_leaves_the_library_before_or_after_it(tmp_path, kill_at, delay):
    home = _home(tmp_path)
    data = tmp_path / "toy_train.jsonl"
    data.write_text(json.dumps({"id": "t2", "description": PROBLEM + " (again)", "answer": 11}) + "\n")
    script = _Script(kill_at, delay)
    with FakeEndpoint(script) as endpoint:
        env = {**os.environ, "ALPHAOPT_HOME": str(home), "ALPHAOPT_BASE_URL": endpoint.url,
               "ALPHAOPT_MODEL": "fake", "ALPHAOPT_API_KEY": "fake-key", "ALPHAOPT_USE_LIBRARY": "1",
               "ALPHAOPT_EXPERIMENTAL__STARTER_LIBRARY": "none", "ALPHAOPT_EXPERIMENTAL__MAX_RETRIES": "0"}
        proc = subprocess.Popen([sys.executable, "-m", "alphaopt", "learn", str(data), "-k", "1", "--explore-tries",
                                 "1", "--no-line-variants", "--no-progress"], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        script.pid = proc.pid
        out, _ = proc.communicate(timeout=600)
    assert script.killed.is_set() and proc.returncode == -signal.SIGKILL, f"the learner was not killed:\n{out}"
    statuses = _statuses(home)
    assert statuses in (BEFORE, AFTER), statuses  # never a third verified insight, nor a half-stored merge
    if kill_at in ("merge", "recheck"):
        assert statuses == BEFORE  # nothing of the merge is stored before its check is done
    with LibraryStore(home / "library.db") as store:
        last = store.library_versions()[-1]
        assert last.reason in ("counterfactual check on toy_train/t2", "merge I0003, I0001")
        if statuses == AFTER:
            merged = store.get("I0004")
            assert merged.provenance.evidence == {"merge_of": ["I0003", "I0001"], "sources": 2, "with": 2}
            assert {store.get(i).provenance.evidence.get("merged_into") for i in ("I0001", "I0003")} == {"I0004"}
