"""The one LLM client. The only module that imports ``openai``.

Every call, from any entry point, is logged here to ``runs.db`` (prompt name and template hash,
model, parameters, messages, response, tokens, latency, error) and, for repeatable calls
(temperature 0, or a sample drawn with an explicit seed), can be replayed from a content-hash
cache. A fault (an endpoint error, a timeout, an empty reply or one that is not a chat
completion) is an ``LLMError``, logged with its error and never replayed. Any OpenAI-compatible
endpoint works; with none configured the embedded llama.cpp model answers in-process through the
same SDK.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast

import httpx2
import openai
from pydantic import BaseModel, ValidationError
from ulid import ULID

from alphaopt.config import Settings
from alphaopt.errors import InputError, LLMError
from alphaopt.llm.runlog import CallRecord, RunLog

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam

Message = dict[str, str]

#: Tests set this to False so that nothing reaches a real endpoint or loads the real model
#: unless a test injects its own HTTP transport (or opts in explicitly).
ALLOW_MODEL_REQUESTS = True


@dataclass
class LLMResult:
    """What one call returned."""

    text: str
    input_tokens: int
    output_tokens: int
    latency_ms: float
    call_id: str
    cached: bool = False
    parsed: BaseModel | None = None
    model: str = ""
    finish_reason: str | None = None  # "length": cut before its end (the token limit, or a loop guard)


@dataclass
class CallContext:
    """Where a call comes from, for the log."""

    run_id: str | None = None
    task_id: str | None = None
    node: str | None = None


class LLMClient(Protocol):
    """The interface every node uses; ``OpenAIClient`` is the one real implementation."""

    def complete(
        self,
        messages: list[Message],
        *,
        prompt_name: str,
        prompt_sha: str,
        max_tokens: int,
        schema: type[BaseModel] | None = None,
        context: CallContext | None = None,
        temperature: float | None = None,
        seed: int | None = None,
    ) -> LLMResult:
        """Send one chat request and return the reply (temperature/seed override the settings)."""
        ...


def cache_key(model: str, messages: list[Message], params: dict[str, Any], schema: dict[str, Any] | None) -> str:
    """Content hash of everything that determines a deterministic reply."""
    payload = json.dumps({"model": model, "messages": messages, "params": params, "schema": schema}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass
class OpenAIClient:
    """Calls an OpenAI-compatible endpoint (or the embedded model) and logs every call."""

    settings: Settings
    log: RunLog
    http_client: httpx2.Client | None = None
    _client: openai.OpenAI | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def _sdk(self) -> openai.OpenAI:
        with self._lock:
            if self._client is None:
                self._client = self._build_sdk()
            return self._client

    def _build_sdk(self) -> openai.OpenAI:
        s = self.settings
        http_client = self.http_client
        if http_client is None and not ALLOW_MODEL_REQUESTS:
            raise LLMError("Real model requests are disabled here (alphaopt.llm.client.ALLOW_MODEL_REQUESTS is False).")
        if s.embedded and http_client is None:
            from alphaopt.llm.embedded import embedded_http_client

            http_client = embedded_http_client(s)
        base_url = s.base_url or "http://embedded.local/v1"
        api_key = s.api_key or ("embedded" if s.embedded else "not-needed")
        return openai.OpenAI(
            base_url=base_url,
            api_key=api_key,
            timeout=s.request_timeout_s,
            max_retries=s.experimental.max_retries,
            http_client=http_client,
        )

    def complete(
        self,
        messages: list[Message],
        *,
        prompt_name: str,
        prompt_sha: str,
        max_tokens: int,
        schema: type[BaseModel] | None = None,
        context: CallContext | None = None,
        temperature: float | None = None,
        seed: int | None = None,
    ) -> LLMResult:
        """Send one chat request; serve it from the cache when allowed.

        Faults are never answers: an empty reply, or one that is not a chat completion, is asked
        again and then raised as ``LLMError``, like a timeout or an endpoint error; each try is
        logged with its error, and only calls that got an answer are replayed from the cache.

        Raises:
            LLMError: the endpoint is unreachable, rejects the key or the model, times out, or
                keeps failing or sending replies that are not answers.
            InputError: a message is not valid Unicode (nothing is sent).
        """
        s = self.settings
        ctx = context or CallContext()
        model = s.model_name
        temperature = s.experimental.temperature if temperature is None else temperature
        params: dict[str, Any] = {"temperature": temperature, "max_tokens": max_tokens,
                                  "seed": s.experimental.seed if seed is None else seed}
        schema_json = schema.model_json_schema() if schema else None
        key = cache_key(model, messages, params, schema_json)
        record: dict[str, Any] = {
            "prompt_name": prompt_name, "prompt_sha": prompt_sha, "model": model, "params": params,
            "messages": messages, "cache_key": key, "run_id": ctx.run_id, "task_id": ctx.task_id, "node": ctx.node,
        }
        if s.experimental.cache and (temperature == 0 or seed is not None):  # a seeded sample is a repeatable request
            hit = self.log.cached_response(key)
            if hit is not None:
                call_id = str(ULID())
                reply = json.loads(hit["response"])
                text = reply["text"]
                self.log.log_call(CallRecord(
                    id=call_id, response=hit["response"], parse_ok=hit["parse_ok"], input_tokens=hit["input_tokens"],
                    output_tokens=hit["output_tokens"], latency_ms=0.0, cached=True, **record,
                ))
                parsed = _parse(schema, text)
                return LLMResult(text, hit["input_tokens"] or 0, hit["output_tokens"] or 0, 0.0, call_id, True, parsed,
                                 model, reply.get("finish_reason"))

        _check_messages(messages, prompt_name)
        call_id, (text, finish_reason, tokens_in, tokens_out), latency = self._ask(model, messages, params, schema,
                                                                                 schema_json, record)
        parsed = _parse(schema, text)
        response = json.dumps({"text": text, "finish_reason": finish_reason})
        self.log.log_call(CallRecord(
            id=call_id, response=response, parse_ok=None if schema is None else parsed is not None,
            input_tokens=tokens_in, output_tokens=tokens_out, latency_ms=latency, **record,
        ))
        return LLMResult(text, tokens_in, tokens_out, latency, call_id, False, parsed, model, finish_reason)

    def _ask(
        self, model: str, messages: list[Message], params: dict[str, Any], schema: type[BaseModel] | None,
        schema_json: dict[str, Any] | None, record: dict[str, Any],
    ) -> tuple[str, tuple[str, str | None, int, int], float]:
        """``(call id, checked reply, latency in ms)`` of the first request that got an answer.

        A fault is logged with its error (and so never replayed from the cache): a malformed
        reply (empty, or not a chat completion) is asked again up to ``max_retries`` times, as the
        SDK does for a 429, a 5xx or a timeout; any other error is raised after it is logged.

        Raises:
            LLMError: every try failed.
        """
        where = self.settings.base_url or "the embedded model"
        retries = self.settings.experimental.max_retries
        for attempt in range(retries + 1):
            call_id = str(ULID())
            start = time.perf_counter()
            try:
                reply = _read_reply(self._create(model, messages, params, schema, schema_json))
                return call_id, reply, (time.perf_counter() - start) * 1000
            except _BadReply as exc:
                raw = json.dumps({"text": exc.raw, "finish_reason": None})
                self.log.log_call(CallRecord(id=call_id, latency_ms=(time.perf_counter() - start) * 1000,
                                             error=f"{where} {exc}", response=raw, **record))
                if attempt == retries:
                    raise LLMError(
                        f"{where} {exc} ({attempt + 1} tries): check the server and its logs. Nothing of it was "
                        "cached: running the same request again asks again."
                    ) from exc
                time.sleep(min(0.25 * 2**attempt, 8.0))
            except Exception as exc:  # logged with the call, then raised as it is
                error = str(exc) if isinstance(exc, LLMError) else f"{type(exc).__name__}: {exc}"
                self.log.log_call(CallRecord(id=call_id, latency_ms=(time.perf_counter() - start) * 1000,
                                             error=error, **record))
                raise
        raise AssertionError("unreachable: the last try returns or raises")

    def _create(
        self, model: str, messages: list[Message], params: dict[str, Any],
        schema: type[BaseModel] | None, schema_json: dict[str, Any] | None,
    ) -> Any:
        extra: dict[str, Any] = {}
        if schema is not None and schema_json is not None:
            extra["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": schema.__name__, "schema": schema_json},
            }
        where = self.settings.base_url or "the embedded model"
        try:
            return self._sdk().chat.completions.create(
                model=model, messages=cast("list[ChatCompletionMessageParam]", messages), **params, **extra
            )
        except openai.AuthenticationError as exc:
            raise LLMError(
                f"{where} rejected the API key ({exc.status_code}): set ALPHAOPT_API_KEY or --api-key."
            ) from exc
        except openai.NotFoundError as exc:
            raise LLMError(
                f"{where} does not serve model {model!r} or the path is wrong ({exc.status_code}): "
                "check ALPHAOPT_MODEL / --model and that ALPHAOPT_BASE_URL ends with /v1."
            ) from exc
        except openai.APITimeoutError as exc:
            raise LLMError(
                f"{where} did not answer within {self.settings.request_timeout_s:g}s after "
                f"{self.settings.experimental.max_retries} retries: raise ALPHAOPT_REQUEST_TIMEOUT_S or check the "
                "server."
            ) from exc
        except openai.APIConnectionError as exc:
            raise LLMError(
                f"Cannot reach the model endpoint {where!r}: {exc.__cause__ or exc}. Check ALPHAOPT_BASE_URL "
                "(or unset it to use the embedded model)."
            ) from exc
        except openai.APIStatusError as exc:
            raise LLMError(f"{where} failed with HTTP {exc.status_code} after retries: {exc.message}") from exc
        except openai.APIResponseValidationError as exc:
            raise _BadReply("sent a reply that is not a chat completion", str(exc)) from exc
        except ValueError as exc:  # a body that is not JSON although it says it is
            raise _BadReply(f"sent a reply that is not JSON ({exc})", "") from exc


class _BadReply(Exception):
    """A reply that is not an answer (empty, or not a chat completion); the client asks again."""

    def __init__(self, reason: str, raw: str) -> None:
        super().__init__(reason)
        self.raw = raw[:2000]


def _read_reply(completion: Any) -> tuple[str, str | None, int, int]:
    """``(text, finish_reason, input tokens, output tokens)`` of a completion, checked.

    The SDK hands back whatever the endpoint sent when it is not a chat completion: a string for
    a body that is not JSON, a list, or an object without ``choices``.

    Raises:
        _BadReply: the reply is not a chat completion, or its text is empty or not valid Unicode.
    """
    choices = getattr(completion, "choices", None)
    if not isinstance(choices, list):
        raw = completion if isinstance(completion, str) else repr(completion)
        raise _BadReply("sent a reply that is not a chat completion", raw)
    if not choices:
        raise _BadReply("sent a completion without choices", repr(completion))
    choice = choices[0]
    text = getattr(getattr(choice, "message", None), "content", None)
    finish = getattr(choice, "finish_reason", None)
    if text is not None and not isinstance(text, str):
        raise _BadReply("sent a completion whose content is not text", repr(text))
    if not text or not text.strip():
        raise _BadReply(f"sent an empty completion (finish_reason {finish!r})", text or "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _BadReply("sent a completion that is not valid Unicode (a lone surrogate)",
                        text.encode("utf-8", "backslashreplace").decode()) from exc
    usage = getattr(completion, "usage", None)
    tokens = [getattr(usage, name, 0) for name in ("prompt_tokens", "completion_tokens")]
    tokens_in, tokens_out = (t if isinstance(t, int) and t >= 0 else 0 for t in tokens)
    return text, finish if isinstance(finish, str) else None, tokens_in, tokens_out


def _check_messages(messages: list[Message], prompt_name: str) -> None:
    """Refuse a request whose text cannot be sent as UTF-8 (a lone surrogate from bad input).

    Raises:
        InputError: naming the message; nothing is sent.
    """
    for n, message in enumerate(messages):
        try:
            message["content"].encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InputError(
                f"Message {n + 1} of a {prompt_name!r} request holds a lone surrogate at character "
                f"{exc.start + 1}: the problem text was not valid UTF-8. Pass UTF-8 text."
            ) from exc


def _parse(schema: type[BaseModel] | None, text: str) -> BaseModel | None:
    if schema is None:
        return None
    try:
        return schema.model_validate_json(text)
    except ValidationError:
        return None
