"""The agent's run path: an ``Agent`` holds the settings, clients and compiled graph, and solves,
streams or resumes one problem at a time. ``alphaopt.api`` and the learner build on it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ulid import ULID

from alphaopt.agent.graph import build_graph, sqlite_checkpointer
from alphaopt.agent.nodes import PLANNED, run_update
from alphaopt.agent.program import extract_code, normalize
from alphaopt.agent.reading import read
from alphaopt.agent.state import AgentContext, Attempt, Candidate, InsightSource, Solution, Timings, TokenUsage
from alphaopt.config import Settings, load_settings
from alphaopt.errors import InputError
from alphaopt.llm.client import LLMClient, OpenAIClient
from alphaopt.llm.runlog import open_run_log
from solvers import Limits, PlanCheck, Proof, SolverRunner, SolveStatus

#: The model named on a run of a program edited by hand (no model wrote it).
EDITED_PROGRAM = "(edited program)"


def check_problem(text: str, settings: Settings) -> str:
    """Validate problem text; returns it stripped.

    Raises:
        InputError: empty, binary-looking, or longer than ``max_problem_chars``.
    """
    if "\x00" in text:
        raise InputError("The problem text contains NUL bytes: it looks like a binary file. Pass a UTF-8 text file.")
    text = text.strip()
    if not text:
        raise InputError("The problem text is empty: describe the optimization problem in plain language.")
    if len(text) > settings.max_problem_chars:
        raise InputError(
            f"The problem text has {len(text):,} characters; the limit is {settings.max_problem_chars:,}. "
            "Shorten it or raise ALPHAOPT_MAX_PROBLEM_CHARS."
        )
    return text


@dataclass
class Step:
    """One finished step of a streamed solve: a graph node and the state update it returned.

    The last step of ``Agent.stream`` has ``node == "done"`` and carries the ``solution``.
    """

    node: str
    update: dict[str, Any] = field(default_factory=dict)
    solution: Solution | None = None


def solver_runner(settings: Settings) -> SolverRunner:
    """The sandboxed runner with the limits and workers the settings ask for."""
    limits = Limits(wall_time_s=settings.solver_wall_time_s, cpu_time_s=settings.solver_wall_time_s,
                    memory_mb=settings.solver_memory_mb)
    knobs = settings.experimental
    return SolverRunner(limits, workers=knobs.solver_workers, use_bwrap=knobs.sandbox)


class Agent:
    """A ready-to-use solver: settings, LLM client, sandboxed runner, checkpointer and graph.

    Build one and reuse it for many problems (``solve_batch`` does); ``close()`` stops the
    solver workers. Pass ``llm``/``runner``/``library`` to replace the defaults.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        llm: LLMClient | None = None,
        runner: SolverRunner | None = None,
        library: InsightSource | str | None = "default",
    ) -> None:
        self.settings = settings or load_settings()
        self.log = open_run_log(self.settings)  # runs.db, or PostgreSQL by ALPHAOPT_RUNS_URL
        self.llm = llm or OpenAIClient(self.settings, self.log)
        self._own_runner = runner is None
        self.runner = runner or solver_runner(self.settings)
        self._own_library = library == "default"
        if library == "default":
            library = self._open_library()
        self.library: InsightSource | None = library  # type: ignore[assignment]
        self._checkpointer = sqlite_checkpointer(self.settings.checkpoints_db)
        self.graph = build_graph(self._checkpointer)

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open_library(self) -> InsightSource | None:
        if not self.settings.use_library:
            return None
        from alphaopt.agent.retrieval import LibraryRetriever

        return LibraryRetriever.open(self.settings)

    def close(self) -> None:
        """Stop the solver workers and close the library this agent opened."""
        self._checkpointer.conn.close()
        if self._own_runner:
            self.runner.close()
        if self._own_library and self.library is not None:
            self.library.close()  # type: ignore[attr-defined]

    def _context(self) -> AgentContext:
        return AgentContext(settings=self.settings, llm=self.llm, runner=self.runner, library=self.library)

    def solve(self, problem: str, *, run_id: str | None = None) -> Solution:
        """Solve one plain-language problem and save the run.

        Raises:
            InputError: the text is unusable.
            LLMError: the model endpoint is unreachable or misconfigured.
        """
        *_, last = self.stream(problem, run_id=run_id)
        assert last.solution is not None
        return last.solution

    def stream(self, problem: str, *, formulation: str | None = None, insights: list[dict[str, Any]] | None = None,
               run_id: str | None = None) -> Iterator[Step]:
        """Solve like ``solve``, yielding each step as it finishes, then ``Step("done", solution=...)``.

        With ``formulation``, the run starts from that model (as if ``formulate`` had written it,
        with ``insights`` as retrieved): write_program → run_program → repair/diagnose → answer,
        one sample only (more samples would formulate afresh and lose the edit).

        Raises:
            InputError: the text is unusable.
            LLMError: the model endpoint is unreachable or misconfigured.
        """
        text = check_problem(problem, self.settings)
        run_id = run_id or str(ULID())
        config = {"configurable": {"thread_id": run_id}}
        start = time.perf_counter()
        reading = read(text)  # once: every node and rewrite uses it
        first: dict[str, Any] | None = {"run_id": run_id, "problem": text, "reading": reading,
                                        "samples": self.settings.samples,
                                        "resample": self.settings.experimental.resample_failed}
        if formulation is not None:
            seed = {"run_id": run_id, "problem": text, "reading": reading, "insights": insights or [],
                    "formulation": formulation.strip(), "samples": 1, "resample": 0}
            self.graph.update_state(config, seed, as_node="formulate")
            first = None
        for chunk in self.graph.stream(first, config, context=self._context(), stream_mode="updates"):
            for node, update in chunk.items():
                yield Step(node, dict(update or {}))
        state = self.graph.get_state(config).values
        yield Step("done", solution=self._finish(state, time.perf_counter() - start))

    def resume(self, run_id: str) -> Solution:
        """Continue an interrupted run from its last checkpoint (or return it if it finished)."""
        config = {"configurable": {"thread_id": run_id}}
        snapshot = self.graph.get_state(config)
        if not snapshot.values:
            raise InputError(f"No checkpointed run {run_id!r}: see 'alphaopt runs' for run ids.")
        start = time.perf_counter()
        state = self.graph.invoke(None, config, context=self._context()) if snapshot.next else snapshot.values
        return self._finish(state, time.perf_counter() - start)

    def run_program(self, problem: str, program: str, *, formulation: str = "",
                    insights: list[dict[str, Any]] | None = None, run_id: str | None = None) -> Solution:
        """Run a program edited by hand for ``problem``, without a model call, and save the run
        like a solve. Only the mechanical fixes apply (``program.normalize``): the text's rewrites
        would second-guess the person who edited it. ``formulation`` and ``insights`` are kept
        with the answer; no evidence is recorded for the insights (no prompt carried them).

        Raises:
            InputError: the text is unusable or the program is empty.
        """
        text = check_problem(problem, self.settings)
        if not program.strip():
            raise InputError("The program is empty: write a build_model() function that returns a Pyomo model.")
        start = time.perf_counter()
        code, fixes = normalize(extract_code(program))
        state = {"run_id": run_id or str(ULID()), "problem": text, "reading": read(text), "formulation": formulation,
                 "program": code, "insights": insights or [], "model": EDITED_PROGRAM,
                 **run_update(self.runner, code, stage="write_program", fixes=fixes)}
        return self._finish(state, time.perf_counter() - start, evidence=False)

    def _finish(self, state: dict[str, Any], total_s: float, *, evidence: bool = True) -> Solution:
        """The run's ``Solution``: the insights' evidence recorded (when they went into prompts),
        and the run saved."""
        solution = to_solution(state, total_s)
        record = getattr(self.library, "record_outcome", None)
        if evidence and record is not None and solution.insights:
            record(solution.run_id, solution.insights, solution.ok)
        self.log.save_run(solution.run_id, solution.problem, solution.status, solution.objective,
                          solution.model_dump_json())
        return solution


def to_solution(state: dict[str, Any], total_s: float) -> Solution:
    """Assemble the public ``Solution`` from the graph's final state."""
    result = state.get("result") or {}
    status = SolveStatus(result.get("status", SolveStatus.ERROR))
    attempts = [Attempt(**a) for a in state.get("attempts", [])]
    return Solution(
        run_id=state["run_id"],
        problem=state["problem"],
        status=status,
        objective=result.get("objective") if status in PLANNED else None,
        sense=result.get("sense"),
        variables=result.get("variables") or {},
        duals=result.get("duals"),
        slacks=result.get("slacks"),
        is_mip=bool(result.get("is_mip")),
        solver=result.get("solver"),
        model_class=result.get("model_class"),
        proof=Proof(result.get("proof") or Proof.NONE),
        gap=result.get("gap"),
        check=PlanCheck.model_validate(result["check"]) if result.get("check") else None,
        conflict=result.get("conflict"),
        unbounded=result.get("unbounded"),
        formulation=state.get("formulation", ""),
        model_text=result.get("model_text", ""),
        program=state.get("program", ""),
        attempts=attempts,
        candidates=[Candidate(sample=c["sample"], status=c["status"], objective=c["objective"],
                              chosen=c["sample"] == state.get("chosen_sample")) for c in state.get("candidates", [])],
        insights=state.get("insights", []),
        tokens=TokenUsage(input=state.get("tokens_in", 0), output=state.get("tokens_out", 0),
                          calls=state.get("llm_calls", 0), cached_calls=state.get("cached_calls", 0)),
        timings=Timings(llm_s=state.get("llm_ms", 0.0) / 1000, solver_s=sum(a.wall_time_s for a in attempts),
                        total_s=total_s),
        model=state.get("model", ""),
        sandbox=result.get("sandbox", ""),
        isolation=result.get("isolation", ""),
        error=result.get("error"),
        log_tail=result.get("log_tail", ""),
    )
