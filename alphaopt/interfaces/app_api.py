"""What the Streamlit app needs beyond ``Agent``: no Streamlit here, and no agent logic in the app.

- ``run_program``: run a hand-edited program and answer with a ``Solution`` (saved like a solve);
- ``record_feedback``: an answer marked right or wrong becomes a training task in the library and
  a line of ``$ALPHAOPT_HOME/feedback.jsonl`` (the training JSONL format ``alphaopt learn`` reads);
- ``open_store``, ``export_library``, ``import_library``, ``sync_library``: the library store;
- learning jobs: ``alphaopt learn`` as a detached subprocess with a log and a job file under
  ``$ALPHAOPT_HOME/learn-runs/``, so a page reload (or a restarted app) still finds it;
- evolution jobs: ``alphaopt library evolve`` the same way, under ``$ALPHAOPT_HOME/evolve-runs/``
  (one at a time per home), and ``rollback_library`` to undo one.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ulid import ULID

from alphaopt.agent.run import Agent
from alphaopt.agent.state import Solution
from alphaopt.config import Settings
from alphaopt.errors import InputError
from alphaopt.learning.header import export_header
from alphaopt.learning.training import read_training
from library import LearningRun, LibraryStore, LibraryVersion, Status, Task

FEEDBACK_DATASET = "feedback"  # = the stem of feedback.jsonl, so `alphaopt learn feedback.jsonl` sees the same task ids
#: The learning command; tests replace it with a harmless one.
LEARN_COMMAND: list[str] = [sys.executable, "-u", "-m", "alphaopt", "learn"]
#: The evolution command; tests replace it with a harmless one.
EVOLVE_COMMAND: list[str] = [sys.executable, "-u", "-m", "alphaopt", "library", "evolve"]
_PROCESSES: dict[int, subprocess.Popen[bytes]] = {}  # children of this app process, reaped on poll


def run_program(agent: Agent, problem: str, program: str, *, formulation: str = "",
                insights: list[dict[str, Any]] | None = None) -> Solution:
    """Run ``program`` (edited by hand) for ``problem`` without a model call; save and return the
    run (``Agent.run_program``).

    Raises:
        InputError: the text is unusable or the program is empty.
    """
    return agent.run_program(problem, program, formulation=formulation, insights=insights)


def open_store(settings: Settings) -> LibraryStore:
    """The configured library store (no vector index); an empty one gets the starter library."""
    store = LibraryStore(settings.library_url or settings.library_db)
    starter = settings.experimental.starter_library
    if not store.list(status=None) and starter and Path(starter).is_file():
        store.import_jsonl(starter)
    return store


def record_feedback(store: LibraryStore, settings: Settings, solution: Solution, *, right: bool,
                    answer: float | None = None) -> Task:
    """Store a marked answer as a training task and append it to ``feedback.jsonl``.

    Args:
        store: The library store (``open_store``).
        settings: For ``$ALPHAOPT_HOME``.
        solution: The answer the user judged.
        right: True when its objective is correct.
        answer: The correct optimum; required when ``right`` is False.

    Raises:
        InputError: no value to store, or the run was already marked with another value.
    """
    value = solution.objective if right else answer
    if value is None:
        raise InputError("There is no objective to confirm: mark the answer wrong and give the correct value."
                         if right else "Give the correct optimal value to mark the answer wrong.")
    task = store.add_task(FEEDBACK_DATASET, solution.run_id, solution.problem, float(value))
    if task.answer != float(value):
        raise InputError(f"Run {solution.run_id!r} was already marked with the answer {task.answer}; "
                         "solve the problem again to mark a new run.")
    line = {"id": solution.run_id, "description": solution.problem, "answer": float(value)}
    with open(feedback_path(settings), "a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")
    return task


def feedback_path(settings: Settings) -> Path:
    """``$ALPHAOPT_HOME/feedback.jsonl``: the marked answers, one training problem a line."""
    return settings.home / "feedback.jsonl"


def export_library(store: LibraryStore, *, statuses: tuple[Status, ...] = (Status.VERIFIED,)) -> str:
    """The insights as JSONL text, with a header naming the training problems and runs behind them."""
    header = export_header(store)
    out = io.StringIO()
    store.export_jsonl(out, status=statuses, header=header)
    return out.getvalue()


def import_library(store: LibraryStore, data: bytes | str) -> int:
    """Load an exported JSONL file (all or nothing); returns the number of insights imported.

    Raises:
        InputError: the file is not UTF-8 text.
        library.ImportLineError: a line is not a valid insight (nothing was stored).
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise InputError(f"The file is not UTF-8 text (byte {exc.start}): upload a JSONL library export.") from exc
    return store.import_jsonl(io.StringIO(text))


def sync_library(agent: Agent) -> bool:
    """Bring the agent's vector index up to date with its store (after edits, imports or learning)."""
    library = agent.library
    index, store = getattr(library, "index", None), getattr(library, "store", None)
    return bool(index is not None and store is not None and index.sync(store))


# -- learning jobs -------------------------------------------------------------------------------

@dataclass
class LearnJob:
    """A background ``alphaopt learn`` process, as written to its job file."""

    id: str
    pid: int
    command: list[str]
    log: str
    started_at: str
    total: int
    start_ticks: int | None = None  # the process's start time in /proc, against pid reuse
    returncode: int | None = None
    stopped: bool = False

    @property
    def path(self) -> Path:
        """The job file next to the log."""
        return Path(self.log).with_suffix(".json")

    def save(self) -> None:
        """Write the job file, keeping a stop that another copy of this job recorded there (the
        app's page and a poller each hold one)."""
        self.stopped = self.stopped or _saved_stopped(self)
        self.path.write_text(json.dumps(asdict(self), indent=1))


def jobs_dir(settings: Settings) -> Path:
    """``$ALPHAOPT_HOME/learn-runs``: logs, job files and uploaded training files."""
    path = settings.home / "learn-runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_upload(settings: Settings, name: str, data: bytes) -> Path:
    """Keep an uploaded training file (its stem names the dataset) after checking every line."""
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(name).stem) or "upload"
    path = jobs_dir(settings) / "uploads" / f"{stem}.jsonl"
    path.parent.mkdir(exist_ok=True)
    try:
        path.write_text(data.decode("utf-8"), encoding="utf-8")
        read_training([path])
    except (UnicodeDecodeError, InputError) as exc:
        path.unlink(missing_ok=True)
        reason = str(exc) if isinstance(exc, InputError) else "it is not UTF-8 text"
        raise InputError(f"Cannot use {name!r} for learning: {reason}") from exc
    return path


def start_learning(settings: Settings, files: list[Path], *, limit: int | None = None,
                   max_tokens: int | None = None, concurrency: int = 1) -> LearnJob:
    """Start ``alphaopt learn FILES`` detached from the app; it goes on after a reload.
    ``concurrency`` problems are learned at once (a remote endpoint only).

    Raises:
        InputError: no file, a bad training file, nothing left to learn, a job already running,
            or concurrency on the embedded model.
    """
    if not files:
        raise InputError("Choose at least one training file.")
    if concurrency > 1 and settings.embedded:
        raise InputError("Learning several problems at once needs a remote endpoint: the embedded model answers "
                         "one request at a time.")
    running = [j for j in learning_jobs(settings) if is_running(j)]
    if running:
        raise InputError(f"Learning job {running[0].id} (pid {running[0].pid}) is still running: "
                         "wait for it or stop it first.")
    items = read_training(files)
    with open_store(settings) as store:
        done = store.done_tasks()
    total = len([i for i in items if f"{i[0]}/{i[1]}" not in done][:limit])
    if total == 0:
        raise InputError("Every problem in these files was learned from already: choose other files.")
    command = [*LEARN_COMMAND, *map(str, files), "--home", str(settings.home)]
    command += ["--limit", str(limit)] if limit else []
    command += ["--max-tokens", str(max_tokens)] if max_tokens else []
    command += ["--concurrency", str(concurrency)] if concurrency > 1 else []
    job_id = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + str(ULID())[-4:]
    log = jobs_dir(settings) / f"{job_id}.log"
    started_at = datetime.now(UTC).isoformat(timespec="milliseconds")  # before the run the child starts
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    _PROCESSES[proc.pid] = proc
    job = LearnJob(id=job_id, pid=proc.pid, command=command, log=str(log), started_at=started_at, total=total,
                   start_ticks=_start_ticks(proc.pid))
    job.save()
    return job


def learning_jobs(settings: Settings) -> list[LearnJob]:
    """Every job started from the app in this home, newest first."""
    jobs = []
    for path in sorted(jobs_dir(settings).glob("*.json"), reverse=True):
        try:
            jobs.append(LearnJob(**json.loads(path.read_text())))
        except (json.JSONDecodeError, TypeError):
            continue  # a job file from another version, or one being written
    return jobs


def is_running(job: LearnJob) -> bool:
    """Whether the job's process is still alive (records its exit code when this app started it)."""
    proc = _PROCESSES.get(job.pid)
    if proc is not None:
        code = proc.poll()
        if code is None:
            return True
        _PROCESSES.pop(job.pid, None)
        job.returncode = code
        job.save()
        return False
    if job.returncode is not None:
        return False
    if Path("/proc").is_dir():
        ticks = _start_ticks(job.pid)
        return ticks is not None and job.start_ticks in (None, ticks)
    try:
        os.kill(job.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _saved_stopped(job: LearnJob) -> bool:
    """Whether the job file says the job was stopped (``stop_learning``, on any copy of it)."""
    try:
        return bool(json.loads(job.path.read_text()).get("stopped"))
    except (OSError, json.JSONDecodeError, AttributeError):
        return False


def stop_learning(job: LearnJob) -> None:
    """Stop the job (SIGTERM to its process group): the run is recorded and a rerun resumes.

    SIGTERM rather than SIGINT: a process started from a non-interactive shell's background job
    inherits SIGINT ignored, and would never stop.
    """
    if is_running(job):
        os.killpg(job.pid, signal.SIGTERM)
        job.stopped = True
        job.save()


def run_of(job: LearnJob, runs: list[LearningRun]) -> LearningRun | None:
    """The library's learning run that ``job`` started (the first one after it), if it got that far."""
    return next((r for r in runs if r.started_at >= job.started_at), None)


def log_tail(job: LearnJob, chars: int = 4000) -> str:
    """The end of the job's log, progress-bar redraws collapsed to their latest state."""
    path = Path(job.log)
    if not path.is_file():
        return ""
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - chars))
        text = f.read().decode("utf-8", "replace")
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.replace("\r\n", "\n").split("\n"))


def _start_ticks(pid: int) -> int | None:
    """A live process's start time (clock ticks since boot), or None: ended, a zombie, or no /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else int(fields[19])


# -- evolution jobs ------------------------------------------------------------------------------

def evolve_dir(settings: Settings) -> Path:
    """``$ALPHAOPT_HOME/evolve-runs``: the logs and job files of evolution jobs."""
    path = settings.home / "evolve-runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def evolve_jobs(settings: Settings) -> list[LearnJob]:
    """Every evolution job started from the app in this home, newest first."""
    jobs = []
    for path in sorted(evolve_dir(settings).glob("*.json"), reverse=True):
        try:
            jobs.append(LearnJob(**json.loads(path.read_text())))
        except (json.JSONDecodeError, TypeError):
            continue  # a job file being written
    return jobs


def start_evolve(settings: Settings, *, rounds: int = 1, candidates: int = 3,
                 max_problems: int | None = None) -> LearnJob:
    """Start ``alphaopt library evolve`` detached from the app; it goes on after a reload. The
    job's ``total`` is its number of rounds.

    Raises:
        InputError: an evolution is already running on this home (from here or elsewhere), a
            learning job is running, or the library holds no training problem with an answer.
    """
    from alphaopt.learning.evolve import evolve_running

    running = [j for j in evolve_jobs(settings) if is_running(j)]
    busy = evolve_running(settings.home)
    if running or busy:
        who = f"job {running[0].id} (pid {running[0].pid})" if running else busy
        raise InputError(f"An evolution run is already running on this library ({who}): one runs at a time per "
                         "home. Wait for it to finish or stop it first.")
    learning = [j for j in learning_jobs(settings) if is_running(j)]
    if learning:
        raise InputError(f"Learning job {learning[0].id} (pid {learning[0].pid}) is still running and changing the "
                         "library: evolve it after the job ends, or stop the job first.")
    with open_store(settings) as store:
        answered = sum(t.answer is not None for t in store.tasks())
    if answered == 0:
        raise InputError("The library holds no training problem with a known answer to evolve on: learn from a "
                         "training file first (evolution replays retrieval on those problems).")
    command = [*EVOLVE_COMMAND, "--home", str(settings.home), "--rounds", str(rounds), "--candidates", str(candidates)]
    command += ["--max-problems", str(max_problems)] if max_problems else []
    job_id = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + str(ULID())[-4:]
    log = evolve_dir(settings) / f"{job_id}.log"
    started_at = datetime.now(UTC).isoformat(timespec="milliseconds")
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    _PROCESSES[proc.pid] = proc
    job = LearnJob(id=job_id, pid=proc.pid, command=command, log=str(log), started_at=started_at, total=rounds,
                   start_ticks=_start_ticks(proc.pid))
    job.save()
    return job


def evolve_run_of(job: LearnJob, runs: list[LearningRun]) -> LearningRun | None:
    """The library's evolution run that ``job`` started (the first one after it), if it got that far."""
    return next((r for r in runs if r.started_at >= job.started_at and r.settings.get("job") == "evolve"), None)


def rollback_library(settings: Settings, version: int) -> LibraryVersion:
    """Restore the library to library ``version`` (a new version; the vector index follows on its
    next sync).

    Raises:
        InputError: an evolution run is changing the library right now.
        library.NotFoundError: no such version.
    """
    from alphaopt.learning.evolve import evolve_running

    busy = evolve_running(settings.home)
    if busy:
        raise InputError(f"An evolution run is changing this library ({busy}): wait for it or stop it first.")
    with open_store(settings) as store:
        return store.rollback(version)
