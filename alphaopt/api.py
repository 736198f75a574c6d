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
#: limit without a plan, an unmapped status) ends a run without an answer.
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
    **options: Any,
) -> list[Solution | Exception]:
    """Solve many problems with one agent; one item's failure is returned in its place, not raised.

    Any exception while solving one item (unusable text, an endpoint fault, a solver crash, a
    bug) becomes that item's result; the other items go on. Results come back in input order;
    ``on_result`` is called, in the calling thread, as each one finishes.
    """
    items = [p if isinstance(p, BatchItem) else BatchItem(id=str(i), problem=p) for i, p in enumerate(problems)]
    clients = {k: options.pop(k) for k in ("llm", "runner", "library") if k in options}
    settings = settings.model_copy(update=options) if settings else load_settings(**options)
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

