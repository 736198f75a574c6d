"""The agent's nodes. Each takes the state and the runtime context and returns an update.

Model mistakes (no code, a Python or Pyomo error, an infeasible model, an objective that depends
on no variable, an optimal one with a sign of a wrong model) are written into the state; the
routing functions send them to ``repair`` or ``diagnose`` up to the caps in ``Settings``. A
nonlinear model is no mistake: the solver layer routes it to SCIP. A plan that fails the check
against the model file (``check_failed``) is the solver's fault, not the program's: it ends the
sample as it is, with no repair.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, cast

from langgraph.runtime import Runtime

from alphaopt.agent import applied, prompts, rewrites
from alphaopt.agent.applied import Edit
from alphaopt.agent.program import REVIEW_FIX, REVIEWABLE, apply_lines, cut_repetition, extract_code
from alphaopt.agent.reading import Reading
from alphaopt.agent.state import AgentContext, SolveState
from alphaopt.agent.vote import decided, vote
from alphaopt.config import Settings
from alphaopt.llm.client import CallContext, LLMResult
from solvers import SolveStatus

_ERROR_CHARS = 1500
_PATCH_TOKENS = 150  # one constraint line
FORMULATION_STAGES = ("domain_modeling", "general_formulation")
CODE_STAGES = ("code_implementation",)
#: Statuses of a program that did not run to a solver answer: the repair step takes these.
REPAIRABLE = frozenset({SolveStatus.ERROR, SolveStatus.INVALID_PROGRAM, SolveStatus.TIMEOUT, SolveStatus.MEMORY_LIMIT,
                        SolveStatus.OUTPUT_LIMIT, SolveStatus.KILLED, SolveStatus.UNKNOWN})
#: Statuses with which the solver proved there is no optimum: the diagnosis step takes these.
NO_OPTIMUM = frozenset({SolveStatus.INFEASIBLE, SolveStatus.UNBOUNDED, SolveStatus.INFEASIBLE_OR_UNBOUNDED})
#: Statuses of a model that is feasible but surely wrong: the diagnosis step takes these too.
WRONG_MODEL = frozenset({SolveStatus.CONSTANT_OBJECTIVE})
#: Statuses of a run that found a plan.
PLANNED = frozenset({SolveStatus.OPTIMAL, SolveStatus.FEASIBLE})
#: Why a run is diagnosed: a status with no optimum, an objective that depends on no variable, an
#: optimal plan that does nothing, or an optimal program with a sign that one line can mend.
Reason = Literal["infeasible", "unbounded", "infeasible_or_unbounded", "constant_objective", "implausible", "patch",
                 "review"]


def _ask(runtime: Runtime[AgentContext], state: SolveState, node: str, max_tokens: int, *,
         retry: int = 0, **kwargs: Any) -> tuple[LLMResult, dict[str, Any]]:
    """One model call. The first sample's calls are greedy; later samples (``state["sample"]``)
    and ``retry > 0`` sample at the retry temperature with a seed of their own, so that a second
    repair of the same program, or a second sample, does not replay the first answer."""
    knobs = runtime.context.settings.experimental
    quote = prompts.quotes(state["reading"].words, knobs.quote_max_words)
    messages, sha = prompts.render(node, quote=quote, **kwargs)
    variant = 100 * state.get("sample", 0) + retry
    # no sampling arguments at all for a greedy call: a client wrapper may choose them (the learner's)
    sampling: dict[str, Any] = {"temperature": knobs.retry_temperature, "seed": knobs.seed + variant} if variant else {}
    result = runtime.context.llm.complete(
        messages, prompt_name=node, prompt_sha=sha, max_tokens=max_tokens,
        context=CallContext(run_id=state.get("run_id"), node=node), **sampling,
    )
    return result, _usage(result)


def _added(usage: dict[str, Any], used: dict[str, Any]) -> dict[str, Any]:
    """Two calls' usage (``_usage``) added up: the counts summed, the model's name kept."""
    return {k: usage.get(k, 0) + v if isinstance(v, (int, float)) else v for k, v in used.items()}


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
    The applicability check's tokens and time count toward the solve like any other call. The
    edits of those whose quoted condition matches the text are kept for every program the solve
    writes (``applied.edits``)."""
    library = runtime.context.library
    if library is None:
        return {"insights": [], "edits": []}
    meter = _Meter(runtime.context.llm)
    insights = library.retrieve(state["problem"], llm=meter, run_id=state["run_id"])
    edits = applied.edits(insights, state["problem"]) if runtime.context.settings.experimental.apply_edits else []
    return {"insights": insights, "edits": edits, **meter.usage}


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
    """Write the mathematical model as structured text, with the modeling lessons, when
    ``formulate`` is on (nothing otherwise)."""
    knobs = runtime.context.settings.experimental
    if not knobs.formulate:
        return {"formulation": ""}
    reply, usage = _ask(
        runtime, state, "formulate", knobs.max_tokens_formulation,
        problem=state["problem"], insights=_insights(state, FORMULATION_STAGES, runtime.context.settings),
    )
    return {"formulation": reply.text.strip(), **usage}


def write_program(state: SolveState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Write the Pyomo program for the formulation, then apply the fixes and rewrites."""
    knobs = runtime.context.settings.experimental
    stages = CODE_STAGES if state.get("formulation") else None  # the math has the rest
    reply, usage = _ask(
        runtime, state, "write_program", knobs.max_tokens_program,
        problem=state["problem"],
        insights=_insights(state, stages, runtime.context.settings),
        formulation=prompts.formulation_block(state.get("formulation") or ""),
        goal=prompts.goal_block(state["reading"]),
    )
    update = program_update(reply, runtime.context.settings, state["reading"], edits=state.get("edits", ()))
    return {**update, "stage": "write_program", **usage}


def program_update(reply: LLMResult, settings: Settings, reading: Reading, fallback: str = "",
                   edits: Sequence[Edit] = ()) -> dict[str, Any]:
    """The program in a reply, with the fixes, the text's rewrites and the recalled insights'
    ``edits`` applied (``rewrites.prepare``).
    A reply cut before its end (at the token limit, or by the embedded model's loop guard) is cut
    where it started repeating itself; if it did not repeat, it is marked ``truncated`` so that
    the repair asks for a shorter program instead of fixing this one."""
    code = extract_code(reply.text)
    if not code.strip():
        return {"program": fallback, "fixes": [], "truncated": False}
    truncated = reply.finish_reason == "length" or reply.output_tokens >= settings.experimental.max_tokens_program
    cut: list[str] = []
    if truncated:
        code, cut = cut_repetition(code)
    program, fixes = rewrites.prepare(code, reading, enabled=settings.experimental.rewrites, edits=edits)
    return {"program": program, "fixes": cut + fixes, "truncated": truncated and not cut}


def run_program(state: SolveState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Run the program in the sandbox and record the attempt."""
    return run_update(runtime.context.runner, state.get("program", ""), stage=state.get("stage", "write_program"),
                      fixes=state.get("fixes", []), sample=state.get("sample", 0))


def run_update(runner: Any, program: str, *, stage: str, fixes: list[str], sample: int = 0) -> dict[str, Any]:
    """Run ``program`` and return the state update: the result (its ``status`` a ``SolveStatus``)
    and the attempt."""
    data = runner.run(program).model_dump()
    attempt = {"stage": stage, "program": program, "status": data["status"], "objective": data["objective"],
               "error": data["error"], "fixes": fixes, "wall_time_s": data["wall_time_s"], "sample": sample,
               "solver": data["solver"]}
    return {"result": data, "attempts": [attempt]}


def repair(state: SolveState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Show the failed program and its error to the model and take its corrected program."""
    result = state["result"]
    settings = runtime.context.settings
    max_tokens = settings.experimental.max_tokens_program
    if state.get("truncated"):
        # Fixing an unfinished program would run into the same limit: ask for a shorter one,
        # sampled with a seed per round, so that a second rewrite is not the first one replayed.
        reply, usage = _ask(runtime, state, "rewrite_shorter", max_tokens,
                            retry=state.get("repairs", 0) + 1,
                            problem=state["problem"], insights=_insights(state, CODE_STAGES, runtime.context.settings),
                            goal=prompts.goal_block(state["reading"]))
    else:
        previous = [a["program"] for a in state.get("attempts", [])[:-1]]
        retry = int(state.get("program", "") in previous)  # the same failing program again: sample
        reply, usage = _ask(runtime, state, "repair", max_tokens, retry=retry,
                            problem=state["problem"], program=state.get("program", ""),
                            error=error_for_prompt(result))
    update = program_update(reply, settings, state["reading"], fallback=state.get("program", ""),
                            edits=state.get("edits", ()))
    return {**update, "stage": "repair", "repairs": state.get("repairs", 0) + 1, **usage}


def error_for_prompt(result: dict[str, Any]) -> str:
    """A failed run as the model is shown it: the error's last ``_ERROR_CHARS`` (or the status and
    the solver log's tail), then the hints that match it."""
    error = result.get("error") or f"status {result['status']}: {result.get('log_tail', '')[-400:]}"
    return "\n".join(filter(None, [error[-_ERROR_CHARS:], prompts.repair_hints(error)]))


def diagnose(state: SolveState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Check the model against the text after an infeasible, unbounded or empty result or an
    objective that depends on no variable, or mend an optimal one with a sign of a wrong model one
    line at a time (``_patch``).

    Writing the program directly (the default), the model is shown its program and asked for a
    corrected one, which runs next; if it writes the same model again, the same status stands.
    With ``formulate`` on, it checks the formulation and may answer CONFIRMED, or rewrites the
    math for ``write_program``."""
    settings = runtime.context.settings
    knobs = settings.experimental
    reason = _diagnosis_reason(state, settings) or SolveStatus(state["result"]["status"]).value
    if reason == "patch":
        return _patch(state, runtime)
    if reason == "review":
        return _review(state, runtime)
    words = prompts.status_words(reason)
    if not knobs.formulate:
        reply, usage = _ask(
            runtime, state, "diagnose_program", knobs.max_tokens_program,
            problem=state["problem"], program=state.get("program", ""),
            status=words, hint=prompts.DIAGNOSE_HINTS.get(reason, ""),
            conflict=prompts.no_optimum_block(state["result"]),
            goal=prompts.goal_block(state["reading"]),
        )
        update = program_update(reply, settings, state["reading"], fallback=state.get("program", ""),
                                edits=state.get("edits", ()))
        return {**update, "stage": "diagnose", "diagnoses": state.get("diagnoses", 0) + 1, **usage}
    reply, usage = _ask(
        runtime, state, "diagnose", knobs.max_tokens_formulation,
        problem=state["problem"],
        formulation=state.get("formulation") or state["result"].get("model_text") or state.get("program", ""),
        status=words, hint=prompts.DIAGNOSE_HINTS.get(reason, ""),
        conflict=prompts.no_optimum_block(state["result"]),
    )
    counted: dict[str, Any] = {"diagnoses": state.get("diagnoses", 0) + 1, **usage}
    text = reply.text.strip()
    if text.upper().startswith(prompts.CONFIRMED) or not text:
        return {**counted, "confirmed": True}
    return {**counted, "formulation": text}


def _patch(state: SolveState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """An optimal program with a sign of a wrong model that one line can mend
    (``rewrites.wants_patch``): the model writes that line, which goes into the program (replacing
    a line of the same name, or the objective). First the objective, when the goal asks to
    minimize a count of things and the program weights them; then one constraint line for each
    of the text's quantities the program never writes. One line at a time, because a small model
    asked for a whole corrected program tends to hand the same one back. The optimal result is
    kept, and stands if the patched program reaches no optimum or leaves more quantities unused."""
    settings = runtime.context.settings
    reading = state["reading"]
    program = original = state.get("program", "")
    fixes: list[str] = []
    usage: dict[str, Any] = {}

    def ask(node: str, **kwargs: Any) -> None:
        nonlocal program, usage
        reply, used = _ask(runtime, state, node, _PATCH_TOKENS, problem=state["problem"], program=program, **kwargs)
        usage = _added(usage, used)
        program, changed = apply_lines(program, extract_code(reply.text))
        fixes.extend(changed)

    on = settings.experimental.rewrites
    objective = rewrites.counted_objective(reading, program) if "counted" in on else None
    if objective and reading.counted_goal:
        ask("patch_objective", objective=objective, goal=reading.counted_goal)
    unused = rewrites.unused(reading, program) if "unused" in on else []
    if len(unused) <= settings.experimental.max_unused_patches:
        for number in unused:
            ask("patch_unused", phrase=number.phrase, number=number.written)
    program, normalized = rewrites.prepare(program, reading, enabled=settings.experimental.rewrites,
                                           edits=state.get("edits", ()))
    return {"program": program, "fixes": fixes + normalized, "truncated": False, "stage": "diagnose",
            "diagnoses": state.get("diagnoses", 0) + 1, "kept": {"result": state["result"], "program": original},
            **usage}


def _review(state: SolveState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """A program that reached an optimum, shown to the model with each told lesson in turn
    (``insight_delivery`` "review" or "both"): it may answer OK or correct one objective,
    constraint or variable line, which goes into the program (``apply_lines``). The program the
    model wrote first is the one it writes without the library, so a lesson acts here on that
    program alone, a line at a time. The optimal result is kept, and stands if the reviewed
    program reaches no optimum. Once per sample; it does not count as a diagnosis."""
    settings = runtime.context.settings
    program = original = state.get("program", "")
    fixes: list[str] = []
    usage: dict[str, Any] = {}
    for insight in _told(state, None, settings):
        reply, used = _ask(runtime, state, "review_insight", _PATCH_TOKENS, problem=state["problem"],
                           program=program, insight=prompts.format_insights([insight]))
        usage = _added(usage, used)
        program, changed = apply_lines(program, extract_code(reply.text), kinds=REVIEWABLE)
        fixes.extend(f"{REVIEW_FIX}{insight.get('id')}: {c}" for c in changed)
    if program == original:
        return {"reviewed": True, "stage": "review", **usage}
    program, normalized = rewrites.prepare(program, state["reading"], enabled=settings.experimental.rewrites,
                                           edits=state.get("edits", ()))
    return {"program": program, "fixes": fixes + normalized, "truncated": False, "stage": "review",
            "reviewed": True, "kept": {"result": state["result"], "program": original}, **usage}


def finish_sample(state: SolveState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Keep this sample's final outcome as a candidate and reset the per-sample counters. After a
    patch (``_patch``), the optimal result before it stands when the patched program reached no
    optimum or leaves more of the text's quantities unused."""
    result = state.get("result") or {}
    program = state.get("program", "")
    kept = state.get("kept")
    if kept and (result.get("status") not in PLANNED
                 or rewrites.patch_fell_short(state["reading"], program, kept["program"])):
        result, program = kept["result"], kept["program"]
    status = result.get("status", SolveStatus.ERROR)
    candidate = {
        "sample": state.get("sample", 0),
        "status": status,
        "objective": result.get("objective") if status in PLANNED else None,
        "result": result,
        "program": program,
        "formulation": state.get("formulation", ""),
    }
    return {"candidates": [candidate], "sample": state.get("sample", 0) + 1,
            "repairs": 0, "diagnoses": 0, "confirmed": False, "truncated": False, "kept": None, "reviewed": False}


def answer(state: SolveState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Choose the answer among the samples by majority vote on the optimal objective."""
    candidates = state.get("candidates", [])
    if not candidates:
        return {}
    chosen = candidates[vote(candidates)]
    return {"result": chosen["result"], "program": chosen["program"], "formulation": chosen["formulation"],
            "chosen_sample": chosen["sample"]}


def _insights(state: SolveState, stages: tuple[str, ...] | None, settings: Settings) -> str:
    """The insights block for a prompt: the told ones of the given stages (``_told``), none when
    lessons reach the model by review only (``insight_delivery`` "review")."""
    if settings.experimental.insight_delivery == "review":
        return ""
    return prompts.insights_block(_told(state, stages, settings))


def _told(state: SolveState, stages: tuple[str, ...] | None, settings: Settings) -> list[dict[str, Any]]:
    """The chosen insights of the given stages (all when None) the model is told, less those
    never told: an insight verified untold, and every one whose edit the code makes when
    ``tell_applied`` is off."""
    untold = {i.get("id") for i in state.get("insights", []) if i.get("told", True) is False}
    if not settings.experimental.tell_applied:
        untold |= {e.insight_id for e in state.get("edits", ())}
    return [i for i in state.get("insights", [])
            if (stages is None or i.get("stage") in stages) and i.get("id") not in untold]


def _diagnosis_reason(state: SolveState, settings: Settings) -> Reason | None:
    result = state.get("result") or {}
    status = result.get("status")
    if status in NO_OPTIMUM or status in WRONG_MODEL:
        return cast(Reason, SolveStatus(status).value)
    if status == SolveStatus.OPTIMAL and is_implausible(result):
        return "implausible"
    knobs = settings.experimental
    if (status == SolveStatus.OPTIMAL and knobs.insight_delivery != "prompt" and not state.get("reviewed")
            and _told(state, None, settings)):
        return "review"
    if status == SolveStatus.OPTIMAL and rewrites.wants_patch(state["reading"], state.get("program", ""),
                                                              max_unused=knobs.max_unused_patches,
                                                              enabled=knobs.rewrites):
        return "patch"
    return None


def _diagnosis_due(state: SolveState, settings: Settings) -> bool:
    """Whether the optimum or failure in hand goes to ``diagnose``: a review once per sample,
    anything else while diagnoses are left (``max_diagnoses``)."""
    reason = _diagnosis_reason(state, settings)
    left = state.get("diagnoses", 0) < settings.experimental.max_diagnoses
    return reason == "review" or (reason is not None and left)


def is_implausible(result: dict[str, Any]) -> bool:
    """An optimal plan in which nothing happens: every variable and the objective are zero."""
    values = result.get("variables") or {}
    return bool(values) and abs(result.get("objective") or 0.0) < 1e-9 and all(abs(v) < 1e-9 for v in values.values())


def route_after_diagnose(state: SolveState, runtime: Runtime[AgentContext]) -> Literal[
        "write_program", "run_program", "diagnose", "finish_sample"]:
    """The diagnosis wrote a corrected or patched program (run it), confirmed the result (keep
    it) or rewrote the formulation (program it). A review that changed nothing leaves the optimum
    as it was: on to a patch when one is due (as after the run), else the sample ends."""
    settings = runtime.context.settings
    if state.get("stage") == "review" and not state.get("kept"):
        return "diagnose" if _diagnosis_due(state, settings) else "finish_sample"
    if not settings.experimental.formulate or state.get("kept"):  # kept: a patched or reviewed program
        return "run_program"
    return "finish_sample" if state.get("confirmed") else "write_program"


def route_after_run(state: SolveState, runtime: Runtime[AgentContext]) -> Literal[
        "repair", "diagnose", "finish_sample"]:
    """Repair a broken program, diagnose a wrong model, or end this sample (an answer, a model
    still wrong when the caps are spent, or a plan that failed its check: no program change
    mends the solver)."""
    settings = runtime.context.settings
    status = state["result"]["status"]
    if state.get("kept") and status not in PLANNED:
        return "finish_sample"  # the patched program failed: the kept optimum stands
    if status in REPAIRABLE:
        return "repair" if state.get("repairs", 0) < settings.max_repairs else "finish_sample"
    return "diagnose" if _diagnosis_due(state, settings) else "finish_sample"


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
    extra = state.get("resample", settings.experimental.resample_failed)
    if samples <= len(candidates) < samples + extra and not any(c["status"] == SolveStatus.OPTIMAL for c in candidates):
        return "formulate"
    return "answer"
