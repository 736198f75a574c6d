"""The agent's nodes. Each takes the state and the runtime context and returns an update.

Model mistakes (no code, a Python or Pyomo error, an infeasible model, an optimal one with a
sign of a wrong model) are written into the state; the routing functions send them to
``repair`` or ``diagnose`` up to the caps in ``Settings``.
"""

from __future__ import annotations

from typing import Any, Literal

from langgraph.runtime import Runtime

from alphaopt.agent import prompts
from alphaopt.config import Settings
from alphaopt.llm.client import CallContext, LLMResult
from alphaopt.agent.program import (
    apply_lines,
    cut_repetition,
    extract_code,
    normalize_for,
    numeric_constants,
    weighted_objective,
)
from alphaopt.agent.reading import counted_goal, unused_numbers
from alphaopt.agent.state import AgentContext, SolveState
from alphaopt.agent.vote import decided, vote

_ERROR_CHARS = 1500
_PATCH_TOKENS = 150  # one constraint line
FORMULATION_STAGES = ("domain_modeling", "general_formulation")
CODE_STAGES = ("code_implementation",)
#: Statuses of a program that did not run to a solver answer: the repair step takes these.
REPAIRABLE = {"error", "invalid_program", "timeout", "memory_limit", "output_limit", "killed", "unknown"}
_DIAGNOSABLE = {"infeasible", "unbounded", "infeasible_or_unbounded"}


def _ask(runtime: Runtime[AgentContext], state: SolveState, node: str, max_tokens: int, *,
         retry: int = 0, **kwargs: Any) -> tuple[LLMResult, dict[str, Any]]:
    """One model call. The first sample's calls are greedy; later samples (``state["sample"]``)
    and ``retry > 0`` sample at ``retry_temperature`` with a seed of their own, so that a second
    repair of the same program, or a second sample, does not replay the first answer."""
    settings = runtime.context.settings
    quote = prompts.quotes(state["problem"], settings.quote_max_words)
    messages, sha = prompts.render(node, quote=quote, **kwargs)
    variant = 100 * state.get("sample", 0) + retry
    sampling = {"temperature": settings.retry_temperature, "seed": settings.seed + variant} if variant else {}
    result = runtime.context.llm.complete(
        messages, prompt_name=node, prompt_sha=sha, max_tokens=max_tokens,
        context=CallContext(run_id=state.get("run_id"), node=node), **sampling,
    )
    return result, _usage(result)


def _usage(result: LLMResult) -> dict[str, Any]:
    """One call's usage in the state's (additive) fields."""
    return {
        "tokens_in": result.input_tokens,
        "tokens_out": result.output_tokens,
        "llm_calls": 1,
        "cached_calls": int(result.cached),
        "llm_ms": result.latency_ms,
        "model": result.model,
    }


def retrieve_insights(state: SolveState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Ask the experience library for insights that apply; none when no library is attached.
    The applicability check's tokens and time count toward the solve like any other call."""
    library = runtime.context.library
    if library is None:
        return {"insights": []}
    meter = _Meter(runtime.context.llm)
    insights = library.retrieve(state["problem"], llm=meter, run_id=state["run_id"])
    return {"insights": insights, **meter.usage}


class _Meter:
    """Passes calls to the LLM client and adds up their usage in the state's terms."""

    def __init__(self, llm: Any) -> None:
        self.llm = llm
        self.usage: dict[str, Any] = {}

    def complete(self, messages: Any, **kwargs: Any) -> LLMResult:
        result = self.llm.complete(messages, **kwargs)
        for key, value in _usage(result).items():
            self.usage[key] = value if key == "model" else self.usage.get(key, 0) + value
        return result


def formulate(state: SolveState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Write the mathematical model as structured text (nothing when ``formulate`` is off)."""
    if not runtime.context.settings.formulate:
        return {"formulation": ""}
    reply, usage = _ask(
        runtime, state, "formulate", runtime.context.settings.max_tokens_formulation,
        problem=state["problem"], insights=_insights(state, FORMULATION_STAGES),
    )
    return {"formulation": reply.text.strip(), **usage}


def write_program(state: SolveState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Write the Pyomo program for the formulation, then apply the contract fixes."""
    reply, usage = _ask(
        runtime, state, "write_program", runtime.context.settings.max_tokens_program,
        problem=state["problem"],
        insights=_insights(state, CODE_STAGES if runtime.context.settings.formulate else None),
        formulation=prompts.formulation_block(state.get("formulation") or ""),
        goal=prompts.goal_block(state["problem"]),
    )
    update = _program_update(reply, runtime.context.settings.max_tokens_program, state["problem"])
    return {**update, "stage": "write_program", **usage}


def _program_update(reply: LLMResult, max_tokens: int, problem: str, fallback: str = "") -> dict[str, Any]:
    """The program in a reply, with the contract fixes applied. A reply that stopped at the token
    limit is cut where it started repeating itself; if it did not repeat, it is marked
    ``truncated`` so that the repair asks for a shorter program instead of fixing this one."""
    code = extract_code(reply.text)
    if not code.strip():
        return {"program": fallback, "fixes": [], "truncated": False}
    truncated = reply.output_tokens >= max_tokens
    cut: list[str] = []
    if truncated:
        code, cut = cut_repetition(code)
    program, fixes = normalize_for(code, problem)
    return {"program": program, "fixes": cut + fixes, "truncated": truncated and not cut}


def run_program(state: SolveState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Run the program in the sandbox and record the attempt."""
    result = runtime.context.runner.run(state.get("program", ""))
    data = result.model_dump(mode="json")
    attempt = {
        "stage": state.get("stage", "write_program"),
        "program": state.get("program", ""),
        "status": data["status"],
        "objective": data["objective"],
        "error": data["error"],
        "fixes": state.get("fixes", []),
        "wall_time_s": data["wall_time_s"],
        "sample": state.get("sample", 0),
    }
    return {"result": data, "attempts": [attempt]}


def repair(state: SolveState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Show the failed program and its error to the model and take its corrected program."""
    result = state["result"]
    settings = runtime.context.settings
    if state.get("truncated"):
        # Fixing an unfinished program would run into the same limit: ask for a shorter one,
        # sampled with a seed per round, so that a second rewrite is not the first one replayed.
        reply, usage = _ask(runtime, state, "rewrite_shorter", settings.max_tokens_program,
                            retry=state.get("repairs", 0) + 1,
                            problem=state["problem"], insights=_insights(state, CODE_STAGES),
                            goal=prompts.goal_block(state["problem"]))
    else:
        previous = [a["program"] for a in state.get("attempts", [])[:-1]]
        retry = int(state.get("program", "") in previous)  # the same failing program again: sample
        reply, usage = _ask(runtime, state, "repair", settings.max_tokens_program, retry=retry,
                            problem=state["problem"], program=state.get("program", ""),
                            error=error_for_prompt(result))
    update = _program_update(reply, settings.max_tokens_program, state["problem"], fallback=state.get("program", ""))
    return {**update, "stage": "repair", "repairs": state.get("repairs", 0) + 1, **usage}


def error_for_prompt(result: dict[str, Any]) -> str:
    """A failed run as the model is shown it: the error's last ``_ERROR_CHARS`` (or the status and
    the solver log's tail), then the hints that match it."""
    error = result.get("error") or f"status {result['status']}: {result.get('log_tail', '')[-400:]}"
    return "\n".join(filter(None, [error[-_ERROR_CHARS:], prompts.repair_hints(error)]))


def diagnose(state: SolveState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Check the model against the text after an infeasible, unbounded or empty result, or mend
    an optimal one with a sign of a wrong model one line at a time (``_patch``).

    Writing the program directly (the default), the model is shown its program and asked for a
    corrected one, which runs next; if it writes the same model again, the same status stands.
    With ``formulate`` on, it checks the formulation and may answer CONFIRMED, or rewrites the
    math for ``write_program``. (Offered CONFIRMED, the embedded model took it 27 times of 27.)"""
    settings = runtime.context.settings
    status = _diagnosis_reason(state, settings) or state["result"]["status"]
    if status == "patch":
        return _patch(state, runtime)
    if not settings.formulate:
        reply, usage = _ask(
            runtime, state, "diagnose_program", settings.max_tokens_program,
            problem=state["problem"], program=state.get("program", ""),
            status=status.replace("_", " "), hint=prompts.DIAGNOSE_HINTS.get(status, ""),
            conflict=prompts.no_optimum_block(state["result"]),
            goal=prompts.goal_block(state["problem"]),
        )
        update = _program_update(reply, settings.max_tokens_program, state["problem"], fallback=state.get("program", ""))
        return {**update, "stage": "diagnose", "diagnoses": state.get("diagnoses", 0) + 1, **usage}
    reply, usage = _ask(
        runtime, state, "diagnose", runtime.context.settings.max_tokens_formulation,
        problem=state["problem"],
        formulation=state.get("formulation") or state["result"].get("model_text") or state.get("program", ""),
        status=status.replace("_", " "), hint=prompts.DIAGNOSE_HINTS.get(status, ""),
        conflict=prompts.no_optimum_block(state["result"]),
    )
    update: dict[str, Any] = {"diagnoses": state.get("diagnoses", 0) + 1, **usage}
    text = reply.text.strip()
    if text.upper().startswith(prompts.CONFIRMED) or not text:
        return {**update, "confirmed": True}
    return {**update, "formulation": text}


def _patch(state: SolveState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """An optimal program with a sign of a wrong model that one line can mend (``_patches``):
    the model writes that line, which goes into the program (replacing a line of the same name,
    or the objective). First the objective, when the question asks to minimize a number of
    things and the program weights them; then one constraint line for each of the text's
    numbers the program never writes. Asked for a whole corrected program instead, the embedded
    model handed the same one back. The optimal result is kept, and stands if the patched
    program reaches no optimum or leaves more of the text's numbers unused."""
    settings = runtime.context.settings
    problem = state["problem"]
    program = original = state.get("program", "")
    fixes: list[str] = []
    usage: dict[str, Any] = {}

    def ask(node: str, **kwargs: str) -> None:
        nonlocal program, usage
        reply, used = _ask(runtime, state, node, _PATCH_TOKENS, problem=problem, program=program, **kwargs)
        usage = {k: usage.get(k, 0) + v if isinstance(v, (int, float)) else v for k, v in used.items()}
        program, changed = apply_lines(program, extract_code(reply.text))
        fixes.extend(changed)

    goal, objective = _count_objective(problem, program)
    if goal and objective:
        ask("patch_objective", objective=objective, goal=goal)
    unused = unused_numbers(problem, numeric_constants(program))
    if len(unused) <= settings.max_unused_patches:
        for number, phrase in unused:
            ask("patch_unused", phrase=phrase, number=number)
    program, normalized = normalize_for(program, problem)
    return {"program": program, "fixes": fixes + normalized, "truncated": False, "stage": "diagnose",
            "diagnoses": state.get("diagnoses", 0) + 1, "kept": {"result": state["result"], "program": original},
            **usage}


def _count_objective(problem: str, program: str) -> tuple[str | None, str | None]:
    """The goal when it asks to minimize a number of things, and the program's objective when
    it weights its terms; either may be None."""
    goal = counted_goal(problem)
    return goal, weighted_objective(program) if goal else None


def _patches(state: SolveState, settings: Settings) -> bool:
    """Whether an optimal program shows a sign that ``_patch`` can mend: it weights a count the
    question asks to minimize, or leaves out 1 to ``max_unused_patches`` of the text's numbers
    (more: too far off for a line each, most often a table's data left out)."""
    problem, program = state["problem"], state.get("program", "")
    if all(_count_objective(problem, program)):
        return True
    return 0 < _unused_count(problem, program) <= settings.max_unused_patches


def finish_sample(state: SolveState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Keep this sample's final outcome as a candidate and reset the per-sample counters. After a
    patch (``_patch``), the optimal result before it stands when the patched program reached no
    optimum or leaves more of the text's numbers unused."""
    result = state.get("result") or {}
    program = state.get("program", "")
    kept = state.get("kept")
    if kept and (result.get("status") not in ("optimal", "feasible")
                 or _unused_count(state["problem"], program) > _unused_count(state["problem"], kept["program"])):
        result, program = kept["result"], kept["program"]
    candidate = {
        "sample": state.get("sample", 0),
        "status": result.get("status", "error"),
        "objective": result.get("objective") if result.get("status") in ("optimal", "feasible") else None,
        "result": result,
        "program": program,
        "formulation": state.get("formulation", ""),
    }
    return {"candidates": [candidate], "sample": state.get("sample", 0) + 1,
            "repairs": 0, "diagnoses": 0, "confirmed": False, "truncated": False, "kept": None}


def answer(state: SolveState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Choose the answer among the samples by majority vote on the optimal objective."""
    candidates = state.get("candidates", [])
    if not candidates:
        return {}
    chosen = candidates[vote(candidates)]
    return {"result": chosen["result"], "program": chosen["program"], "formulation": chosen["formulation"],
            "chosen_sample": chosen["sample"]}


def _unused_count(problem: str, program: str) -> int:
    return len(unused_numbers(problem, numeric_constants(program)))


def _insights(state: SolveState, stages: tuple[str, ...] | None) -> str:
    """The insights block for a prompt: only those of the given stages (all when None)."""
    chosen = [i for i in state.get("insights", []) if stages is None or i.get("stage") in stages]
    return prompts.insights_block(chosen)


def _diagnosis_reason(state: SolveState, settings: Settings) -> str | None:
    result = state.get("result") or {}
    status = result.get("status")
    if status in _DIAGNOSABLE:
        return str(status)
    if status == "optimal" and is_implausible(result):
        return "implausible"
    if status == "optimal" and settings.patch_lines and _patches(state, settings):
        return "patch"
    return None


def is_implausible(result: dict[str, Any]) -> bool:
    """An optimal plan in which nothing happens: every variable and the objective are zero."""
    values = result.get("variables") or {}
    return bool(values) and abs(result.get("objective") or 0.0) < 1e-9 and all(abs(v) < 1e-9 for v in values.values())


def route_after_diagnose(state: SolveState, runtime: Runtime[AgentContext]) -> Literal[
        "write_program", "run_program", "finish_sample"]:
    """The diagnosis wrote a corrected or patched program (run it), confirmed the result (keep
    it) or rewrote the formulation (program it)."""
    if not runtime.context.settings.formulate or state.get("kept"):  # kept: a patched program
        return "run_program"
    return "finish_sample" if state.get("confirmed") else "write_program"


def route_after_run(state: SolveState, runtime: Runtime[AgentContext]) -> Literal["repair", "diagnose", "finish_sample"]:
    """Repair a broken program, diagnose a wrong model, or end this sample."""
    settings = runtime.context.settings
    status = state["result"]["status"]
    if state.get("kept") and status not in ("optimal", "feasible"):
        return "finish_sample"  # the patched program failed: the kept optimum stands
    if status in REPAIRABLE:
        return "repair" if state.get("repairs", 0) < settings.max_repairs else "finish_sample"
    if _diagnosis_reason(state, settings) and state.get("diagnoses", 0) < settings.max_diagnoses:
        return "diagnose"
    return "finish_sample"


def route_after_sample(state: SolveState, runtime: Runtime[AgentContext]) -> Literal["formulate", "answer"]:
    """Draw another sample until the vote is decided or ``samples`` are spent; then, when all
    were drawn and none has ended optimal (a program that never ran, a model still infeasible
    or unbounded after its diagnosis), up to ``resample`` more, each from scratch at the retry
    temperature."""
    settings = runtime.context.settings
    samples = state.get("samples") or settings.samples
    candidates = state.get("candidates", [])
    if not decided(candidates, samples):
        return "formulate"
    extra = state.get("resample", settings.resample_failed)
    if samples <= len(candidates) < samples + extra and not any(c["status"] == "optimal" for c in candidates):
        return "formulate"
    return "answer"
