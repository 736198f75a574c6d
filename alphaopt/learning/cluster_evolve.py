"""The evolution job with its replays on a Dask cluster, against one shared library.

Run with: alphaopt library evolve --cluster tcp://scheduler:8786

A round's replay (``alphaopt.learning.replay``) is one unit per training problem: retrieval as a
user gets it, then the solves with and without each chosen insight. Each problem's replay goes
to the cluster as one task; each worker replays with its own tools (``WorkerTools``) and a fresh
``Learner`` per problem, and every solve is recorded in the shared store as a local run records
it. This process keeps the rest of the run as it is: the merges before the rounds, the
refinements and re-tagging (one at a time, under the run's lock), and the measurement after a
round (which reuses the solves the workers recorded).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import Any

from alphaopt.cluster import connect, each_result, worker_cache, worker_object
from alphaopt.config import Settings
from alphaopt.learning.cluster import WorkerTools, require_shared_library
from alphaopt.learning.evolve import EvolveConfig, Evolver, EvolveSummary
from alphaopt.learning.learn import Learner
from alphaopt.learning.ledger import Usage
from alphaopt.learning.replay import Outcomes, ProblemReplay, Replay, Replayer
from library import Task


def evolve_on_cluster(learner: Learner, cluster: str, config: EvolveConfig | None = None, *, command: str = "",
                      dry_run: bool = False, threads: int = 1,
                      on_event: Callable[[str], None] | None = None) -> EvolveSummary:
    """``Evolver(learner, config).evolve(...)`` with each round's replays on the cluster at
    ``cluster`` (an address, or ``local:N`` with ``threads`` per worker).

    Raises:
        ClusterError: no shared library, or the cluster cannot be used.
    """
    settings: Settings = learner.settings
    require_shared_library(settings)
    with connect(cluster, settings, threads_per_worker=threads) as (client, worker_settings), \
            worker_cache(client, "evolve", WorkerTools, worker_settings, learner.config) as tools:
        evolver = ClusterEvolver(learner, config, client=client, tools=tools)
        return evolver.evolve(command=command, dry_run=dry_run, on_event=on_event)


class ClusterEvolver(Evolver):
    """An ``Evolver`` whose replays run on a cluster's workers."""

    def __init__(self, learner: Learner, config: EvolveConfig | None = None, *, client: Any, tools: str) -> None:
        super().__init__(learner, config)
        self.client, self.tools = client, tools

    def replayer(self, run_id: str, outcomes: Outcomes) -> Replayer:
        return ClusterReplayer(self.learner, run_id, outcomes, unretrieved_tries=self.config.unretrieved_tries,
                               client=self.client, tools=self.tools, reuse=self.config.reuse)


class ClusterReplayer(Replayer):
    """Replays each problem on a worker; what the workers solved is remembered here too, and their
    model usage counts in the run's ledger."""

    def __init__(self, learner: Learner, run_id: str, outcomes: Outcomes, *, unretrieved_tries: int, client: Any,
                 tools: str, reuse: bool) -> None:
        super().__init__(learner, run_id, outcomes, unretrieved_tries=unretrieved_tries)
        self.client, self.tools, self.reuse = client, tools, reuse

    def replay(self, tasks: list[Task], *, on_problem: Callable[[ProblemReplay], None] | None = None) -> Replay:
        parts: dict[int, Replay] = {}
        round_id = uuid.uuid4().hex  # the workers read the solves recorded so far once per round
        for n, found in each_result(self.client, replay_on_worker, [t.id for t in tasks], self.tools, self.run_id,
                                    self.unretrieved_tries, self.reuse, round_id, kind="replay"):
            if isinstance(found, BaseException):
                raise found
            part, solved, usage = found
            parts[n] = part
            self.solved, self.reused = self.solved + part.solved, self.reused + part.reused
            for task, insights, right in solved:
                self.outcomes.put(task, insights, right)
            _add(self.learner.ledger.usage, usage)
            for problem in part.problems:
                if on_problem:
                    on_problem(problem)
        result = Replay()
        for n in sorted(parts):  # in the order of the problems, as a local replay lists them
            result.problems += parts[n].problems
            result.pairs += parts[n].pairs
            result.placebo += parts[n].placebo
            result.solved += parts[n].solved
            result.reused += parts[n].reused
        return result


def _add(total: Usage, usage: Usage) -> None:
    for name in ("calls", "cached_calls", "input_tokens", "output_tokens", "model_s", "fresh_output_tokens"):
        setattr(total, name, getattr(total, name) + getattr(usage, name))


class _Noted:
    """The round's outcomes on this worker, noting each solve made now (to send it back)."""

    def __init__(self, base: Outcomes) -> None:
        self.base = base
        self.noted: list[tuple[Task, list[dict[str, Any]], bool]] = []

    def get(self, task: Task, insights: Iterable[dict[str, Any]]) -> bool | None:
        return self.base.get(task, insights)

    def put(self, task: Task, insights: Iterable[dict[str, Any]], right: bool) -> None:
        insights = list(insights)
        self.base.put(task, insights, right)
        self.noted.append((task, insights, right))


def replay_on_worker(task_id: str, tools: str, run_id: str, unretrieved_tries: int, reuse: bool,
                     round_id: str) -> tuple[Replay, list[tuple[Task, list[dict[str, Any]], bool]], Usage]:
    """On a worker: one problem's replay; with the solves made for it and the model usage."""
    kit: WorkerTools = worker_object(tools)
    learner = kit.learner()
    with kit.lock:  # the solves recorded so far are read once per round and worker, shared by its threads
        known = kit.state.get(("outcomes", round_id))
        if known is None:
            kit.state.clear()  # an earlier round's view is stale
            known = kit.state[("outcomes", round_id)] = Outcomes(
                kit.store, learner.settings.model_name, learner.config.correct, reuse=reuse,
                delivery=learner.settings.experimental.insight_delivery)
    outcomes = _Noted(known)
    replayer = Replayer(learner, run_id, outcomes, unretrieved_tries=unretrieved_tries)  # type: ignore[arg-type]
    replay = replayer.replay([kit.store.get_task(task_id)])
    return replay, outcomes.noted, learner.ledger.usage
