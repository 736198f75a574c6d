"""The embedded model's loop guard: the model time it saves, and that only the wasted tail changes.

Run with: python -m benchmarks.experiments.loop_guard --runs-db .alphaopt/learn/runs.db [--runs-db ...]

Reads the LLM call logs (``runs.db``) of learning homes, whose calls are all about **training**
problems. A free-text reply that ran to the token limit was cut there (``finish_reason``
"length").

1. Offline, no model: every logged free-text reply is checked as the guard checks a growing
   reply (:func:`alphaopt.llm.local_model.loop_period`, here at every 32nd character, where the
   guard checks every 8th token). A reply that ended by itself and would have been cut is a false
   alarm (the guard would have changed it); a reply that ran to the limit and would have been cut
   is one the guard shortens.
2. The embedded model (``--replay``): each logged request whose reply ran to the limit and would
   have been cut is sent again with the guard on, with its own temperature and seed, then
   without the guard for as many tokens (the control). Checked: the guarded reply is the
   control's text (the guard leaves the scores alone until it fires); whether it is a prefix of
   the logged reply (llama.cpp need not repeat a reply exactly: a prompt evaluated in other
   chunks, after another cached prefix, can shift the scores a little); and the program the
   agent would run from it (``nodes.program_update``: a reply cut before its end is cut where it
   began to repeat itself) against the logged reply's: the same program, or the same next step
   (both unfinished, so the agent asks for a shorter program without showing either).
   Completion tokens and model seconds are compared with the logged call's.

Writes ``benchmarks/results/<run>/loop_guard.json``.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path
from typing import Any

from alphaopt.agent.nodes import program_update
from alphaopt.agent.reading import read
from alphaopt.config import Settings, load_settings
from alphaopt.llm.client import LLMResult
from alphaopt.llm.local_model import loop_period
from benchmarks.fake_endpoint import problem_of

RESULTS = Path(__file__).resolve().parents[1] / "results"


def logged_calls(runs_dbs: list[Path]) -> list[dict[str, Any]]:
    """Free-text calls answered by the model (not replayed from the cache), one per request."""
    calls: dict[str, dict[str, Any]] = {}
    for db_path in runs_dbs:
        db = sqlite3.connect(db_path)
        for messages, params, response, tokens_out, ms, key in db.execute(
                "SELECT messages, params, response, output_tokens, latency_ms, cache_key FROM llm_calls "
                "WHERE error IS NULL AND cached = 0 AND response IS NOT NULL"):
            params = json.loads(params)
            if params.get("response_format"):
                continue
            reply = json.loads(response)
            calls.setdefault(key, {"messages": json.loads(messages), "params": params, "text": reply["text"],
                                   "finish_reason": reply.get("finish_reason"), "tokens": tokens_out or 0,
                                   "seconds": (ms or 0) / 1000, "db": str(db_path)})
    return list(calls.values())


def would_cut(text: str, step: int = 32) -> int | None:
    """Where the guard would first fire on ``text`` as it grows (a character offset), or None."""
    for end in range(step, len(text) + step, step):
        if loop_period(text[:end]) is not None:
            return min(end, len(text))
    return None


def program(reply: str, tokens: int, finish_reason: str | None, messages: list[dict[str, str]],
            settings: Settings) -> dict[str, Any]:
    """The program the agent would run from a reply, and whether it counts it truncated
    (``alphaopt.agent.nodes.program_update``)."""
    result = LLMResult(reply, 0, tokens, 0.0, "", finish_reason=finish_reason)
    update = program_update(result, settings, read(problem_of(messages)))
    return {"program": update["program"], "truncated": update["truncated"]}


def compare(guarded: dict[str, Any], logged: dict[str, Any]) -> dict[str, bool]:
    """The guarded reply's program against the logged reply's: the same, or both unfinished
    (the agent then asks for a shorter program without showing either: the same next call)."""
    same = guarded == logged
    return {"same_program_as_logged": same, "same_next_step": same or (guarded["truncated"] and logged["truncated"])}


def offline(calls: list[dict[str, Any]]) -> dict[str, Any]:
    """Part 1: where the guard would fire on the logged replies."""
    ended = [c for c in calls if c["finish_reason"] != "length"]
    limited = [c for c in calls if c["finish_reason"] == "length"]
    false_alarms = [c for c in ended if would_cut(c["text"]) is not None]
    cut = [c for c in limited if would_cut(c["text"]) is not None]
    seconds = sum(c["seconds"] for c in calls)
    return {"calls": len(calls), "ended": len(ended), "false_alarms": len(false_alarms), "to_the_limit": len(limited),
            "would_cut": len(cut), "seconds": seconds, "seconds_to_the_limit": sum(c["seconds"] for c in limited),
            "kept_share_of_cut_text": (sum(would_cut(c["text"]) or 0 for c in cut)
                                       / max(sum(len(c["text"]) for c in cut), 1))}


def replay(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Part 2: the requests that ran to the limit and would have been cut, again through the
    embedded model with the guard, then without it for as many tokens as the guarded reply got
    (the control: the same text, when the guard left the scores alone until it fired)."""
    import httpx2

    from alphaopt.llm.embedded import embedded_model_path
    from alphaopt.llm.local_model import LlamaTransport

    settings = load_settings()
    path = Path(embedded_model_path(settings))
    arms = {guard: httpx2.Client(timeout=3600, transport=LlamaTransport(
        path, n_ctx=settings.experimental.n_ctx, n_threads=settings.experimental.n_threads or 1,
        seed=settings.experimental.seed, loop_guard=guard)) for guard in (True, False)}

    def ask(guard: bool, call: dict[str, Any], **params: Any) -> dict[str, Any]:
        return arms[guard].post("http://embedded.local/v1/chat/completions",
                                json={"messages": call["messages"], **call["params"], **params}).json()

    rows = []
    try:
        cut = [c for c in calls if c["finish_reason"] == "length" and would_cut(c["text"]) is not None]
        for n, call in enumerate(cut):
            guarded = ask(True, call)
            text = guarded["choices"][0]["message"]["content"] or ""
            tokens = guarded["usage"]["completion_tokens"]
            control = ask(False, call, max_tokens=tokens)["choices"][0]["message"]["content"] or ""
            timings = guarded.get("timings") or {}
            row = {"period": (guarded.get("loop_guard") or {}).get("period"), "same_as_control": text == control,
                   "prefix_of_logged": call["text"].startswith(text),
                   **compare(program(text, tokens, "length", call["messages"], settings),
                             program(call["text"], call["tokens"], call["finish_reason"], call["messages"], settings)),
                   "tokens": [call["tokens"], tokens],
                   "seconds": [round(call["seconds"], 1),
                               round((timings.get("prompt_ms", 0) + timings.get("predicted_ms", 0)) / 1000, 1)],
                   "text": text, "logged": call["text"]}
            rows.append(row)
            print(f"{n + 1}: {json.dumps({k: v for k, v in row.items() if k not in ('text', 'logged')})}", flush=True)
    finally:
        for client in arms.values():
            client.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.experiments.loop_guard",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--runs-db", type=Path, action="append", required=True, help="a learning home's call log")
    parser.add_argument("--replay", action="store_true", help="send the requests that ran to the limit again")
    parser.add_argument("--run", default="loop-guard", help="results folder name")
    args = parser.parse_args(argv)
    calls = logged_calls(args.runs_db)
    found: dict[str, Any] = {"offline": offline(calls)}
    o = found["offline"]
    print(f"{o['calls']} free-text replies: {o['ended']} ended by themselves, {o['false_alarms']} of them would have "
          f"been cut (false alarms); {o['to_the_limit']} ran to the token limit ({o['seconds_to_the_limit']:.0f} of "
          f"{o['seconds']:.0f} model seconds), {o['would_cut']} of them would have been cut, keeping "
          f"{o['kept_share_of_cut_text']:.0%} of their text")
    if args.replay:
        rows = found["replay"] = replay(calls)
        before, after = (sum(r["seconds"][i] for r in rows) for i in (0, 1))
        print(f"replayed {len(rows)}: the same as the control {sum(r['same_as_control'] for r in rows)}, a prefix of "
              f"the logged reply {sum(r['prefix_of_logged'] for r in rows)}, the same program as the logged reply "
              f"{sum(r['same_program_as_logged'] for r in rows)}, the same next step "
              f"{sum(r['same_next_step'] for r in rows)}; completion tokens "
              f"{sum(r['tokens'][0] for r in rows)} -> {sum(r['tokens'][1] for r in rows)}, model seconds "
              f"{before:.0f} -> {after:.0f}")
    out = RESULTS / args.run
    out.mkdir(parents=True, exist_ok=True)
    (out / "loop_guard.json").write_text(json.dumps(found, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
