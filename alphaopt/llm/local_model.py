"""Embedded llama.cpp model served in-process on the OpenAI chat-completions protocol.

:class:`LlamaTransport` is an ``httpx2`` transport (openai>=3 is built on httpx2), so the
project's single OpenAI client talks to the embedded model without a server or network::

    client = openai.OpenAI(base_url="http://embedded.local/v1", api_key="embedded",
                           http_client=httpx2.Client(transport=LlamaTransport(path)))

This is the only module that imports ``llama_cpp`` (lazily, on first use).
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2

__all__ = ["N_BATCH", "LlamaTransport", "LoopGuard", "default_threads", "llama_speed", "loop_period",
           "translate_response_format"]

N_BATCH = 128  # prompt tokens evaluated together: as fast per token here as llama.cpp's 512, less cut back on reuse
_NO_RETRY = {"x-should-retry": "false"}  # honoured by the openai SDK: errors here are final
_PASSTHROUGH = ("temperature", "top_p", "stop", "seed", "presence_penalty", "frequency_penalty")
_UNSUPPORTED = ("tools", "functions", "tool_choice", "function_call", "logprobs", "audio")


def default_threads() -> int:
    """Number of CPU threads to use: the CPUs this process may run on, at most 16."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 16))


def _load_llama(
    model_path: Path, *, n_ctx: int, n_threads: int, seed: int, verbose: bool, cache_bytes: int = 0,
    repeatable: bool = True, n_batch: int = N_BATCH,
) -> Any:
    import llama_cpp  # the one place the project imports llama_cpp

    class Llama(llama_cpp.Llama):
        # How many leading KV positions of the live state were computed exactly as a fresh
        # evaluation of the prompt computes them: in batches of n_batch starting at 0 (a
        # generated token is evaluated alone, so a later prompt that repeats a reply is not).
        _exact = 0

        def generate(self, tokens: Any, *args: Any, **kwargs: Any) -> Any:
            """With ``repeatable``, reuse only a prefix of the live state that ends on a batch
            boundary and was evaluated as a fresh prompt (``_exact``): the rest of the prompt is
            then evaluated in the same batches as with nothing reused, so the same request gets
            the same reply whatever came before. llama.cpp's sums differ in their last bits
            with the batch a token is evaluated in; a greedy reply can turn on them."""
            tokens = list(tokens)
            if repeatable:
                keep = 0
                for have, want in zip(self.input_ids[: min(self.n_tokens, self._exact)], tokens[:-1], strict=False):
                    if have != want:
                        break
                    keep += 1
                keep -= keep % self.n_batch
                if keep < self.n_tokens:
                    self._ctx.kv_cache_seq_rm(-1, keep, -1)
                    self.n_tokens = keep
                self._exact = len(tokens)
            return super().generate(tokens, *args, **kwargs)

        def load_state(self, state: Any) -> None:
            super().load_state(state)
            self._exact = getattr(state, "exact", 0)

        def save_state(self) -> Any:
            """Save the KV state without the ~300 MB logits copy (unused: logits_all=False,
            and a restored state is always re-decoded from its last token)."""
            size = llama_cpp.llama_state_get_size(self._ctx.ctx)
            buf = (ctypes.c_uint8 * int(size))()
            n = int(llama_cpp.llama_state_get_data(self._ctx.ctx, buf, size))
            if n > int(size):
                raise RuntimeError("Failed to copy llama state data")
            # one row of scores: load_state broadcasts it into its (unused) logits buffer
            state = llama_cpp.LlamaState(
                input_ids=self.input_ids.copy(), scores=self.scores[:1].copy(),
                n_tokens=self.n_tokens, llama_state=ctypes.string_at(buf, n), llama_state_size=n,
                seed=self._seed)
            state.exact = self._exact  # type: ignore[attr-defined]
            return state

    llm = Llama(model_path=str(model_path), n_ctx=n_ctx, n_threads=n_threads, n_batch=n_batch, n_ubatch=n_batch,
                n_threads_batch=n_threads, seed=seed, verbose=verbose)
    if cache_bytes > 0:
        llm.set_cache(llama_cpp.LlamaRAMCache(capacity_bytes=cache_bytes))
    return llm


def _perf(llm: Any, reset: bool = False) -> dict[str, float] | None:
    """llama.cpp's own prompt/generation timers for ``llm`` (None for fakes)."""
    ctx = getattr(getattr(llm, "_ctx", None), "ctx", None)
    if ctx is None:
        return None
    import llama_cpp

    if reset:
        llama_cpp.llama_perf_context_reset(ctx)
        return None
    d = llama_cpp.llama_perf_context(ctx)
    return {"prompt_n": d.n_p_eval, "prompt_ms": d.t_p_eval_ms,
            "predicted_n": d.n_eval, "predicted_ms": d.t_eval_ms}


def loop_period(text: str, *, min_copies: int = 6, min_chars: int = 300, min_period: int = 8,
                max_period: int = 300) -> int | None:
    """The period of a loop ``text`` ends in, or None.

    A text ends in a loop of period ``p`` when its last ``max(min_chars, min_copies * p)``
    characters repeat with period ``p`` (each character equals the one ``p`` before it): the same
    block of at least ``min_period`` characters, back to back ``min_copies`` times or more. The
    block must hold a letter: a long run of one number (``0, 0, 0, ...``) can be data. The
    shortest such ``p`` is returned.
    """
    for period in range(min_period, max_period + 1):
        span = max(min_chars, min_copies * period)
        if span > len(text):
            return None
        tail = text[-span:]
        if tail[period:] == tail[:-period] and any(c.isalpha() for c in tail[-period:]):
            return period
    return None


class LoopGuard:
    """A llama.cpp logits processor that ends a completion once it has fallen into a loop.

    A model that has started repeating a block word for word (a line, a few lines, a term of a
    sum), greedy above all, tends to repeat it until the token limit; those tokens cost most of
    such a call's time and carry nothing. Every ``every`` tokens the text generated so far is checked with
    :func:`loop_period`; once it ends in a loop, the next token is forced to be the end of the
    text. Before that the logits are left alone, so the completion is a prefix of the one the
    model would have written without the guard. ``period`` is the loop's period once it fired.
    """

    def __init__(self, detokenize: Callable[[list[int]], bytes], eos: int, *, every: int = 8,
                 window: int = 800) -> None:
        self.detokenize, self.eos, self.every, self.window = detokenize, eos, every, window
        self.start: int | None = None  # the prompt's length: the first call comes before the first token
        self.period: int | None = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self.start is None:
            self.start = len(input_ids)
        made = len(input_ids) - self.start
        if self.period is None and made and made % self.every == 0:
            tail = [int(t) for t in input_ids[max(self.start, len(input_ids) - self.window):]]
            self.period = loop_period(self.detokenize(tail).decode("utf-8", "ignore"))
        if self.period is not None:
            scores[:] = float("-inf")
            scores[self.eos] = 0.0
        return scores


def _error(status: int, message: str, type_: str, code: str | None = None) -> httpx2.Response:
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return httpx2.Response(status, json=body, headers=_NO_RETRY)


def translate_response_format(fmt: dict[str, Any] | None) -> dict[str, Any] | None:
    """Map an OpenAI ``response_format`` to llama-cpp-python's grammar-constrained form.

    Args:
        fmt: ``{"type": "text"}``, ``{"type": "json_object"}`` or
            ``{"type": "json_schema", "json_schema": {"schema": {...}}}``.

    Returns:
        None (free text), ``{"type": "json_object"}`` or
        ``{"type": "json_object", "schema": {...}}``.

    Raises:
        ValueError: Unknown type or a json_schema without a schema.
    """
    if not fmt or fmt.get("type") == "text":
        return None
    if fmt.get("type") == "json_object":
        return {"type": "json_object", **({"schema": fmt["schema"]} if "schema" in fmt else {})}
    if fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise ValueError("response_format json_schema needs json_schema.schema (an object)")
        return {"type": "json_object", "schema": schema}
    raise ValueError(f"unsupported response_format type {fmt.get('type')!r}")


class LlamaTransport(httpx2.BaseTransport):
    """httpx2 transport answering OpenAI ``/v1`` requests with an in-process llama.cpp model.

    The model is loaded on the first chat request; a lock serializes loading and
    generation (llama.cpp contexts are not thread-safe). A request sharing a prompt prefix
    with the previous one reuses the live KV cache; one sharing a prefix with an older
    request restores that request's saved KV state (``cache_bytes``).
    Responses carry a non-standard ``timings`` object (llama.cpp's own prompt/generation
    timers for that request), available via ``completion.model_extra["timings"]``.
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        n_ctx: int = 8192,
        n_threads: int | None = None,
        seed: int = 0,
        verbose: bool = False,
        cache_bytes: int = 1 << 30,
        model_name: str | None = None,
        loop_guard: bool = True,
        repeatable: bool = True,
        n_batch: int = N_BATCH,
        llama_factory: Callable[..., Any] | None = None,
    ) -> None:
        """Create the transport; nothing is loaded yet.

        Args:
            model_path: GGUF file.
            n_ctx: Context window in tokens.
            n_threads: CPU threads (default: :func:`default_threads`).
            seed: Sampling seed used when a request gives none.
            verbose: Let llama.cpp log to stderr.
            cache_bytes: RAM for saved KV states of earlier prompts (0 = off), so that
                alternating prompt prefixes (e.g. several agent roles) are not re-evaluated.
            model_name: Name reported by ``/v1/models`` (default: file stem).
            loop_guard: End a free-text completion that has fallen into a loop (:class:`LoopGuard`)
                instead of running on to ``max_tokens``; its ``finish_reason`` is then
                ``"length"`` and the response carries ``loop_guard`` (the loop's period).
            repeatable: The same request gets the same reply whatever the model answered before:
                a reused prompt prefix ends on a batch boundary and never takes in a reply's
                tokens (a little more prompt is evaluated). False reuses the longest prefix.
            n_batch: Prompt tokens evaluated together, and the boundaries a reused prefix is cut
                back to (``N_BATCH``).
            llama_factory: Builds the model (tests); default ``llama_cpp.Llama``.

        Raises:
            ImportError: llama-cpp-python is not installed and no factory was given.
        """
        if llama_factory is None and importlib.util.find_spec("llama_cpp") is None:
            raise ImportError(
                "the embedded model needs llama-cpp-python: pip install 'alphaopt[local]' "
                "(or configure an OpenAI-compatible endpoint instead)"
            )
        self.model_path = Path(model_path)
        self.model_name = model_name or self.model_path.stem
        self._kwargs: dict[str, Any] = {"n_ctx": n_ctx, "n_threads": n_threads or default_threads(),
                        "seed": seed, "verbose": verbose, "cache_bytes": cache_bytes,
                        "repeatable": repeatable, "n_batch": n_batch}
        self._factory = llama_factory or _load_llama
        self.loop_guard = loop_guard
        self._llm: Any = None
        self._lock = threading.Lock()
        self.load_seconds: float | None = None

    def _model(self) -> Any:
        """The loaded model (call with the lock held)."""
        if self._llm is None:
            t0 = time.perf_counter()
            self._llm = self._factory(self.model_path, **self._kwargs)
            self.load_seconds = time.perf_counter() - t0
        return self._llm

    @property
    def chat_format(self) -> str | None:
        """Chat format llama-cpp-python picked (``chat_template.default`` = GGUF template)."""
        with self._lock:
            return getattr(self._model(), "chat_format", None)

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        """Answer one OpenAI API request.

        Args:
            request: The request built by the OpenAI SDK.

        Returns:
            A JSON response: a chat completion, the model list, or an OpenAI-style error.
        """
        path = request.url.path.rstrip("/")
        if request.method == "GET" and path.endswith("/v1/models"):
            return httpx2.Response(200, json={"object": "list", "data": [
                {"id": self.model_name, "object": "model", "created": 0, "owned_by": "alphaopt"}]})
        if not (request.method == "POST" and path.endswith("/v1/chat/completions")):
            return _error(404, f"{request.method} {path} is not served by the embedded model "
                          "(only POST /v1/chat/completions and GET /v1/models)",
                          "invalid_request_error", "unknown_url")
        try:
            body = json.loads(request.read() or b"{}")
            kwargs = self._chat_kwargs(body)
        except ValueError as exc:
            return _error(400, str(exc), "invalid_request_error")
        with self._lock:
            try:
                llm = self._model()
            except (ValueError, OSError, RuntimeError) as exc:
                return _error(500, f"could not load the embedded model {self.model_path}: {exc}; "
                              "delete it and retry, or set ALPHAOPT_MODEL_PATH to a GGUF file",
                              "server_error")
            _perf(llm, reset=True)
            guard = self._guard(llm, kwargs)
            try:
                result = llm.create_chat_completion(**kwargs)
            except ValueError as exc:  # llama-cpp-python's bad-request errors
                code = "context_length_exceeded" if "context window" in str(exc) else None
                return _error(400, str(exc), "invalid_request_error", code)
            except Exception as exc:  # noqa: BLE001 - surfaced to the caller as an API error
                return _error(500, f"embedded model failed: {type(exc).__name__}: {exc}",
                              "server_error")
            timings = _perf(llm)
        result = dict(result)
        if guard is not None and guard.period is not None:
            result["choices"] = [{**result["choices"][0], "finish_reason": "length"}, *result["choices"][1:]]
            result["loop_guard"] = {"period": guard.period}
        if timings is not None:
            timings["prompt_per_second"] = 1000 * timings["prompt_n"] / max(timings["prompt_ms"], 1e-9)
            timings["predicted_per_second"] = (
                1000 * timings["predicted_n"] / max(timings["predicted_ms"], 1e-9))
            result["timings"] = timings
        return httpx2.Response(200, json=result)

    def _guard(self, llm: Any, kwargs: dict[str, Any]) -> LoopGuard | None:
        """A loop guard for a free-text request, added to ``kwargs`` (none for a JSON one: its grammar
        decides where the text may end)."""
        if not self.loop_guard or "response_format" in kwargs:
            return None
        guard = LoopGuard(llm.detokenize, llm.token_eos())
        kwargs["logits_processor"] = [guard]  # llama.cpp calls each processor in the list
        return guard

    def _chat_kwargs(self, body: dict[str, Any]) -> dict[str, Any]:
        """Validate an OpenAI chat request and map it to ``create_chat_completion`` kwargs."""
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            raise ValueError("request body must be a JSON object with a 'messages' list")
        if body.get("stream"):
            raise ValueError("stream=true is not supported by the embedded model; "
                             "call without streaming")
        if (body.get("n") or 1) != 1:
            raise ValueError("n > 1 is not supported by the embedded model")
        bad = [k for k in _UNSUPPORTED if body.get(k)]
        if bad:
            raise ValueError(f"{', '.join(bad)} not supported by the embedded model; "
                             "use response_format with a json_schema instead")
        kwargs: dict[str, Any] = {"messages": body["messages"],
                                  "model": body.get("model") or self.model_name}
        kwargs.update({k: body[k] for k in _PASSTHROUGH if body.get(k) is not None})
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        if max_tokens is not None:
            kwargs["max_tokens"] = int(max_tokens)
        response_format = translate_response_format(body.get("response_format"))
        if response_format is not None:
            kwargs["response_format"] = response_format
        return kwargs

    def close(self) -> None:
        """Free the model (called by ``httpx2.Client.close``); a later request reloads it."""
        with self._lock:
            if self._llm is not None and hasattr(self._llm, "close"):
                self._llm.close()
            self._llm = None


def llama_speed(
    model_path: Path, n_tokens: int = 64, *, n_threads: int | None = None, n_ctx: int = 2048
) -> dict[str, float]:
    """Measure llama.cpp's raw prompt-processing and generation speed (like llama-bench).

    Evaluates ``n_tokens`` prompt tokens in one batch, then decodes ``n_tokens`` tokens
    one at a time (no sampling, no chat template, no grammar): the ceiling that the
    in-pipeline tokens/s can be compared against.

    Args:
        model_path: GGUF file.
        n_tokens: Prompt length and number of generated tokens.
        n_threads: CPU threads (default: :func:`default_threads`).
        n_ctx: Context size for the measurement.

    Returns:
        ``load_s``, ``n_threads``, ``prompt_tokens``, ``prompt_tok_s``, ``gen_tokens``,
        ``gen_tok_s``.
    """
    threads = n_threads or default_threads()
    t0 = time.perf_counter()
    llm = _load_llama(Path(model_path), n_ctx=n_ctx, n_threads=threads, seed=0, verbose=False)
    load_s = time.perf_counter() - t0
    try:
        text = "def solve(model):\n    # minimize total cost subject to capacity\n" * n_tokens
        prompt = llm.tokenize(text.encode(), add_bos=False)[:n_tokens]
        llm.eval(prompt[:8])  # warm-up (allocations, first touch of the weights)
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(prompt)
        pp_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(n_tokens):
            llm.eval(prompt[-1:])
        tg_s = time.perf_counter() - t0
    finally:
        llm.close()
    return {"load_s": load_s, "n_threads": threads,
            "prompt_tokens": len(prompt), "prompt_tok_s": len(prompt) / pp_s,
            "gen_tokens": n_tokens, "gen_tok_s": n_tokens / tg_s}
