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
from alphaopt.errors import AlphaoptError

__all__ = ["Agent", "solve", "solve_batch"]


def solve(problem: str, *, settings: Settings | None = None, **options: Any) -> Solution:
    """Solve one plain-language optimization problem.

    ``options`` override settings by name (for example ``model=``, ``base_url=``,
    ``max_repairs=``); ``llm=``, ``runner=`` and ``library=`` replace the default clients.
    """
    clients = {k: options.pop(k) for k in ("llm", "runner", "library") if k in options}
    settings = settings.model_copy(update=options) if settings else load_settings(**options)
    with Agent(settings, **clients) as agent:
        return agent.solve(problem)


def solve_batch(
    problems: Iterable[str | BatchItem],
    *,
    concurrency: int = 1,
    settings: Settings | None = None,
    on_result: Callable[[BatchItem, Solution | AlphaoptError], None] | None = None,
    **options: Any,
) -> list[Solution | AlphaoptError]:
    """Solve many problems with one agent; a failure is returned in place, not raised.

    Results come back in input order; ``on_result`` is called as each one finishes.
    """
    items = [p if isinstance(p, BatchItem) else BatchItem(id=str(i), problem=p) for i, p in enumerate(problems)]
    clients = {k: options.pop(k) for k in ("llm", "runner", "library") if k in options}
    settings = settings.model_copy(update=options) if settings else load_settings(**options)
    results: dict[int, Solution | AlphaoptError] = {}
    with Agent(settings, **clients) as agent, ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        futures = {pool.submit(agent.solve, item.problem): n for n, item in enumerate(items)}
        for future in as_completed(futures):
            n = futures[future]
            try:
                outcome: Solution | AlphaoptError = future.result()
            except AlphaoptError as exc:
                outcome = exc
            results[n] = outcome
            if on_result:
                on_result(items[n], outcome)
    return [results[n] for n in range(len(items))]
