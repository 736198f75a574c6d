"""The Python API: ``solve`` one problem, ``solve_batch`` many. The CLI and app call these.

Run with: python -c "import alphaopt; print(alphaopt.solve('Maximize 3x + 2y with x + y <= 4, x, y >= 0').objective)"
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from alphaopt.agent.run import Agent
from alphaopt.agent.state import BatchItem, Solution
from alphaopt.config import Settings, load_settings
from alphaopt.jsonl import check_text

__all__ = ["ANSWER_STATUSES", "Agent", "answered", "solve", "solve_batch"]

#: The statuses that answer a problem: a plan (optimal, or feasible when a limit stopped the
#: solver with one in hand) or a solver's proof that there is none (infeasible, unbounded).
#: Everything else (a program that raised or broke the contract, a sandbox limit, a solver
#: limit without a plan, an objective that depends on no variable, a plan that failed its check
#: against the model file, an unmapped status) ends a run without an answer.
ANSWER_STATUSES = frozenset({"optimal", "feasible", "infeasible", "unbounded", "infeasible_or_unbounded"})


def answered(outcome: Solution | BaseException) -> bool:
    """True when ``outcome`` is a ``Solution`` whose status is in ``ANSWER_STATUSES``."""
    return isinstance(outcome, Solution) and outcome.status in ANSWER_STATUSES


def solve(problem: str, *, settings: Settings | None = None, **options: Any) -> Solution:
    """Solve one plain-language optimization problem.

    ``options`` override settings by name (for example ``model=``, ``base_url=``,
    ``max_repairs=``); ``llm=``, ``runner=`` and ``library=`` replace the default clients.

    Raises:
        InputError: the text is unusable (empty, too long, or not valid Unicode).
        LLMError: the model endpoint failed (unreachable, misconfigured, timing out, or sending
            replies that are not answers).
    """
    clients = {k: options.pop(k) for k in ("llm", "runner", "library") if k in options}
    settings = settings.model_copy(update=options) if settings else load_settings(**options)
    with Agent(settings, **clients) as agent:
        return agent.solve(check_text(problem, "The problem text"))


def solve_batch(
    problems: Iterable[str | BatchItem],
    *,
    concurrency: int = 1,
    settings: Settings | None = None,
    on_result: Callable[[BatchItem, Solution | Exception], None] | None = None,
    cluster: str | None = None,
    **options: Any,
) -> list[Solution | Exception]:
    """Solve many problems with one agent; one item's failure is returned in its place, not raised.

    Any exception while solving one item (unusable text, an endpoint fault, a solver crash, a
    bug) becomes that item's result; the other items go on. Results come back in input order;
    ``on_result`` is called, in the calling thread, as each one finishes.

    With ``cluster`` (a Dask scheduler address, or ``local:N`` for N worker processes here) the
    items run on that cluster: each worker builds one agent from ``settings`` and reuses it, and
    ``concurrency`` is the threads per worker of a ``local:N`` cluster (see ``alphaopt.cluster``).
    """
    items = [p if isinstance(p, BatchItem) else BatchItem(id=str(i), problem=p) for i, p in enumerate(problems)]
    clients = {k: options.pop(k) for k in ("llm", "runner", "library") if k in options}
    settings = settings.model_copy(update=options) if settings else load_settings(**options)
    if cluster is not None:
        return _solve_on_cluster(items, settings, cluster, concurrency, on_result, sorted(clients))
    results: dict[int, Solution | Exception] = {}
    with Agent(settings, **clients) as agent, ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        futures = {pool.submit(_solve_one, agent, item): n for n, item in enumerate(items)}
        try:
            for future in as_completed(futures):
                n = futures[future]
                results[n] = future.result()
                if on_result:
                    on_result(items[n], results[n])
        except BaseException:  # Ctrl-C, or on_result failed (a full disk): start no more items
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return [results[n] for n in range(len(items))]


def _solve_one(agent: Agent, item: BatchItem) -> Solution | Exception:
    """One item's solution, or the exception that ended it (returned, to be recorded as its failure)."""
    try:
        return agent.solve(check_text(item.problem, f"The problem text of item {item.id!r}"))
    except Exception as exc:  # noqa: BLE001 - recorded as this item's failure by the caller; Ctrl-C stops the batch
        return exc


# -- on a Dask cluster (alphaopt.cluster does the Dask part) ---------------------------------------


def _solve_on_cluster(items: list[BatchItem], settings: Settings, cluster: str, threads: int,
                      on_result: Callable[[BatchItem, Solution | Exception], None] | None,
                      clients: list[str]) -> list[Solution | Exception]:
    """``solve_batch`` on a cluster: one agent per worker, results as they finish."""
    from alphaopt.cluster import connect, each_result, worker_cache
    from alphaopt.errors import ClusterError

    if clients:
        raise ClusterError(f"{'=, '.join(clients)}= cannot go to a cluster's workers: each worker builds "
                           "its own clients from the settings (point them at an endpoint with base_url).")
    if settings.use_library:  # once here, so that the workers find it ready (starter loaded, index synced)
        from alphaopt.agent.retrieval import open_library

        for part in open_library(settings):
            part.close()
    results: dict[int, Solution | Exception] = {}
    with connect(cluster, settings, threads_per_worker=max(1, threads)) as (client, worker_settings), \
            worker_cache(client, "agent", Agent, worker_settings) as agents:
        for n, outcome in each_result(client, _solve_on_worker, items, agents, kind="solve"):
            results[n] = outcome
            if on_result:
                on_result(items[n], outcome)
    return [results[n] for n in range(len(items))]


def _solve_on_worker(item: BatchItem, agents: str) -> Solution | Exception:
    """On a worker: solve one item with the agent this worker built (the first task builds it)."""
    from alphaopt.cluster import worker_object

    return _solve_one(worker_object(agents), item)
