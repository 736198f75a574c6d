"""Where a learning run's model time goes, and what the prompt cache saves: arms side by side.

Run with: python -m benchmarks.learn_speed --runs-db /tmp/learn-yield/runs.db [--replay 40]

Reads the LLM call log of learning runs on **training** problems (``runs.db``, e.g. the one
``benchmarks.learn_yield learn`` writes): per prompt, the calls, prompt and completion tokens and
model seconds, and for the whole log tokens per problem and completion tokens per second of
model time (calls replayed from the call cache left out). Tokens per problem do not depend on
the machine's load; tokens per second do (say how loaded the machine was).

``--replay N`` sends the first N logged requests again, in their order, to the embedded model
(``LlamaTransport``, one thread unless ``ALPHAOPT_EXPERIMENTAL__N_THREADS`` says otherwise),
each with ``max_tokens=1``: only the prompt is processed. llama.cpp reports how many prompt
tokens it evaluated; the rest were reused from the KV cache (the prefix a request shares with
the one before it, or with an earlier one kept in the RAM cache). Every arm has its own model
and the arms take turns request by request, so they run under the same load. Arms:
``ram_cache`` (the transport's default: 1 GiB of saved prompt states, batches of 128 tokens, a
reused prefix cut back to a batch boundary and never into a reply, so a request's reply does
not depend on the ones before), ``batch_256`` and ``batch_512`` (the same with larger batches:
more is cut back), ``ram_cache_longest`` (llama-cpp-python's own reuse: the longest shared
prefix, batches of 512; the same request can get another greedy reply after other requests),
``live_only`` (no RAM cache), and ``none`` (every prompt evaluated in full, computed).
Pick arms with ``--arms``.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from alphaopt.llm.local_model import N_BATCH

# arm: (RAM cache bytes, repeatable, batch size)
ARMS = {"ram_cache": (1 << 30, True, N_BATCH), "batch_256": (1 << 30, True, 256),
        "batch_512": (1 << 30, True, 512), "ram_cache_longest": (1 << 30, False, 512), "live_only": (0, True, N_BATCH)}


def usage(runs_db: Path) -> dict[str, Any]:
    """Per prompt and in all: calls, tokens, model seconds; tokens per problem; tokens per second."""
    db = sqlite3.connect(runs_db)
    rows = db.execute("SELECT prompt_name, task_id, input_tokens, output_tokens, latency_ms, cached FROM llm_calls "
                      "WHERE error IS NULL").fetchall()
    per: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    problems = {task for _, task, *_ in rows if task}
    for name, _, tokens_in, tokens_out, ms, cached in rows:
        p = per[name]
        p["calls"] += 1
        p["cached"] += cached
        p["input_tokens"] += tokens_in or 0
        p["output_tokens"] += tokens_out or 0
        if not cached:
            p["model_s"] += (ms or 0) / 1000
            p["fresh_output_tokens"] += tokens_out or 0
    total = {k: sum(p[k] for p in per.values()) for k in ("calls", "cached", "input_tokens", "output_tokens",
                                                           "model_s", "fresh_output_tokens")}
    return {"per_prompt": {k: dict(v) for k, v in per.items()}, "total": total, "problems": len(problems),
            "tokens_per_problem": (total["input_tokens"] + total["output_tokens"]) / max(len(problems), 1),
            "tok_s": total["fresh_output_tokens"] / total["model_s"] if total["model_s"] else 0.0}


def replay(runs_db: Path, n: int, arms: list[str]) -> dict[str, dict[str, float]]:
    """The first ``n`` logged requests, prompt only, through the embedded model in each arm,
    the arms taking turns request by request."""
    import httpx2

    from alphaopt.config import load_settings
    from alphaopt.llm.embedded import embedded_model_path
    from alphaopt.llm.local_model import LlamaTransport

    settings = load_settings()
    db = sqlite3.connect(runs_db)
    requests = [json.loads(m) for (m,) in db.execute(
        "SELECT messages FROM llm_calls WHERE error IS NULL AND cached = 0 ORDER BY created_at LIMIT ?", (n,))]
    clients = {}
    for arm in arms:
        cache_bytes, repeatable, n_batch = ARMS[arm]
        transport = LlamaTransport(Path(embedded_model_path(settings)), n_ctx=settings.experimental.n_ctx,
                                   n_threads=settings.experimental.n_threads or 1, cache_bytes=cache_bytes,
                                   repeatable=repeatable, n_batch=n_batch)
        clients[arm] = httpx2.Client(transport=transport, timeout=3600)
    out: dict[str, dict[str, float]] = {arm: defaultdict(float) for arm in arms}
    for messages in requests:
        for arm, client in clients.items():
            start = time.perf_counter()
            body = client.post("http://embedded.local/v1/chat/completions",
                               json={"messages": messages, "max_tokens": 1, "temperature": 0}).json()
            totals = out[arm]
            totals["wall_s"] += time.perf_counter() - start
            timings = body.get("timings") or {}
            totals["prompt_tokens"] += body["usage"]["prompt_tokens"]
            totals["evaluated"] += timings.get("prompt_n", 0)
            totals["prompt_s"] += timings.get("prompt_ms", 0) / 1000
            totals["requests"] += 1
    for arm, client in clients.items():
        client.close()
        totals = out[arm]
        print(f"{arm:>17}: {totals['evaluated']:,.0f} of {totals['prompt_tokens']:,.0f} prompt tokens evaluated "
              f"({1 - totals['evaluated'] / max(totals['prompt_tokens'], 1):.0%} reused), prompt time "
              f"{totals['prompt_s']:.0f} s ({1000 * totals['prompt_s'] / max(totals['evaluated'], 1):.1f} ms a token), "
              f"wall {totals['wall_s']:.0f} s", flush=True)
    first = out[arms[0]]
    print(f"{'none':>17}: every prompt token evaluated ({first['prompt_tokens']:,.0f})")
    return {arm: dict(totals) for arm, totals in out.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs-db", type=Path, required=True, help="the call log of learning runs")
    parser.add_argument("--replay", type=int, default=0, help="replay the first N requests, prompt only")
    parser.add_argument("--arms", default="ram_cache,ram_cache_longest,live_only",
                        help=f"comma-separated arms for --replay, of: {', '.join(ARMS)}")
    parser.add_argument("--out", type=Path, help="write the numbers as JSON here")
    args = parser.parse_args(argv)
    found = usage(args.runs_db)
    for name, p in sorted(found["per_prompt"].items(), key=lambda kv: -kv[1]["output_tokens"]):
        print(f"{name:>22}: {p['calls']:>4.0f} calls ({p['cached']:.0f} cached), {p['input_tokens']:>8,.0f} prompt "
              f"and {p['output_tokens']:>7,.0f} completion tokens, {p['model_s']:>6.0f} s")
    t = found["total"]
    print(f"{'all':>22}: {t['calls']:.0f} calls, {found['problems']} problems, {found['tokens_per_problem']:,.0f} "
          f"tokens per problem, {found['tok_s']:.2f} completion tokens/s of model time")
    if args.replay:
        arms = args.arms.split(",")
        unknown = [a for a in arms if a not in ARMS]
        if unknown:
            parser.error(f"--arms: unknown {', '.join(unknown)}; choose from {', '.join(ARMS)}")
        found["replay"] = replay(args.runs_db, args.replay, arms)
    if args.out:
        args.out.write_text(json.dumps(found, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
