"""Tests for the in-process OpenAI transport (fake llama), plus one real-model test."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from alphaopt.llm.local_model import LlamaTransport, loop_period, translate_response_format
from alphaopt.llm.model_fetch import DEFAULT_MODEL, DEFAULT_MODEL_DIR


class FakeLlama:
    """Records calls; fails the test if two generations overlap."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[dict[str, Any]] = []
        self.delay = delay
        self.active = 0
        self.overlap = False
        self.guard = threading.Lock()

    def detokenize(self, ids: list[int]) -> bytes:  # one token a byte
        return bytes(ids)

    def token_eos(self) -> int:
        return 0

    def create_chat_completion(self, **kwargs: Any) -> dict[str, Any]:
        with self.guard:
            self.active += 1
            self.overlap |= self.active > 1
        time.sleep(self.delay)
        self.calls.append(kwargs)
        with self.guard:
            self.active -= 1
        return {
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": kwargs["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"},
                         "logprobs": None, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
        }


class Factory:
    def __init__(self, llm: Any) -> None:
        self.llm = llm
        self.calls: list[tuple[Path, dict[str, Any]]] = []

    def __call__(self, path: Path, **kwargs: Any) -> Any:
        self.calls.append((path, kwargs))
        return self.llm


def _client(transport: LlamaTransport) -> openai.OpenAI:
    return openai.OpenAI(base_url="http://embedded.local/v1", api_key="embedded",
                         http_client=httpx2.Client(transport=transport))


@pytest.fixture()
def fake() -> tuple[FakeLlama, Factory, LlamaTransport]:
    llm = FakeLlama()
    factory = Factory(llm)
    return llm, factory, LlamaTransport(Path("/models/m.gguf"), n_threads=2, llama_factory=factory)


MSGS = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]


def test_chat_returns_text_and_usage(fake: tuple[FakeLlama, Factory, LlamaTransport]) -> None:
    llm, factory, transport = fake
    assert factory.calls == []  # lazy: nothing loaded before the first request
    out = _client(transport).chat.completions.create(
        model="m", messages=MSGS, temperature=0.0, max_completion_tokens=16, stop=["\n\n"], seed=3)
    assert out.choices[0].message.content == "hello"
    assert out.usage is not None and out.usage.total_tokens == 9
    kw = llm.calls[0]
    assert kw["messages"] == MSGS and kw["max_tokens"] == 16 and kw["temperature"] == 0.0
    assert kw["stop"] == ["\n\n"] and kw["seed"] == 3 and "response_format" not in kw
    _client(transport).chat.completions.create(model="m", messages=MSGS, max_tokens=5)
    assert llm.calls[1]["max_tokens"] == 5
    assert len(factory.calls) == 1  # loaded once
    path, kwargs = factory.calls[0]
    assert path == Path("/models/m.gguf") and kwargs["n_ctx"] == 8192 and kwargs["n_threads"] == 2
    assert kwargs["cache_bytes"] == 1 << 30 and kwargs["seed"] == 0
    transport.close()
    _client(transport).chat.completions.create(model="m", messages=MSGS)
    assert len(factory.calls) == 2  # reloaded after close()


def test_missing_llama_cpp_is_a_clear_import_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llama_cpp" else real(name, *a))
    with pytest.raises(ImportError, match=r"alphaopt\[local\]"):
        LlamaTransport(Path("m.gguf"))


def test_json_schema_is_translated(fake: tuple[FakeLlama, Factory, LlamaTransport]) -> None:
    llm, _, transport = fake
    schema = {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}
    _client(transport).chat.completions.create(
        model="m", messages=MSGS,
        response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": schema}})
    assert llm.calls[0]["response_format"] == {"type": "json_object", "schema": schema}


def test_translate_response_format() -> None:
    assert translate_response_format(None) is None
    assert translate_response_format({"type": "text"}) is None
    assert translate_response_format({"type": "json_object"}) == {"type": "json_object"}
    with pytest.raises(ValueError):
        translate_response_format({"type": "json_schema", "json_schema": {}})


def test_stream_is_rejected(fake: tuple[FakeLlama, Factory, LlamaTransport]) -> None:
    llm, _, transport = fake
    with pytest.raises(openai.BadRequestError, match="stream"):
        _client(transport).chat.completions.create(model="m", messages=MSGS, stream=True)
    assert llm.calls == []


def test_unknown_path_and_models(fake: tuple[FakeLlama, Factory, LlamaTransport]) -> None:
    _, factory, transport = fake
    client = _client(transport)
    assert [m.id for m in client.models.list()] == ["m"]
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="m", input="x")
    assert factory.calls == []


def test_llama_errors_become_api_errors() -> None:
    class Broken(FakeLlama):
        def create_chat_completion(self, **kwargs: Any) -> dict[str, Any]:
            raise RuntimeError("kv cache full")

    calls = Factory(Broken())
    client = _client(LlamaTransport(Path("m.gguf"), llama_factory=calls))
    with pytest.raises(openai.InternalServerError, match="kv cache full"):
        client.chat.completions.create(model="m", messages=MSGS)


def test_context_overflow_is_bad_request() -> None:
    class Overflow(FakeLlama):
        def create_chat_completion(self, **kwargs: Any) -> dict[str, Any]:
            raise ValueError("Requested tokens (9000) exceed context window of 8192")

    client = _client(LlamaTransport(Path("m.gguf"), llama_factory=Factory(Overflow())))
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="m", messages=MSGS)
    assert info.value.code == "context_length_exceeded"


def test_concurrent_calls_are_serialized() -> None:
    llm = FakeLlama(delay=0.05)
    factory = Factory(llm)
    client = _client(LlamaTransport(Path("m.gguf"), llama_factory=factory))
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(3):
                client.chat.completions.create(model="m", messages=MSGS)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(llm.calls) == 6 and not llm.overlap
    assert len(factory.calls) == 1


class WritingLlama(FakeLlama):
    """Writes ``text`` one byte (token) at a time the way llama.cpp samples: each logits
    processor sees the tokens so far and may change the scores; the best token is taken, and
    the end-of-text token ends the completion."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def create_chat_completion(self, **kwargs: Any) -> dict[str, Any]:
        import numpy as np

        self.calls.append(kwargs)
        prompt, out, finish = list(b"the prompt"), [], "length"
        for byte in self.text.encode()[:kwargs.get("max_tokens") or None]:
            scores = np.zeros(256, dtype=np.float32)
            scores[byte] = 1.0
            for processor in kwargs.get("logits_processor") or []:
                scores = processor(np.array(prompt + out), scores)
            token = int(np.argmax(scores))
            if token == self.token_eos():
                finish = "stop"
                break
            out.append(token)
        else:
            finish = "stop" if len(out) == len(self.text.encode()) else "length"
        return {"id": "c", "object": "chat.completion", "created": 1, "model": kwargs["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": bytes(out).decode()},
                             "logprobs": None, "finish_reason": finish}],
                "usage": {"prompt_tokens": len(prompt), "completion_tokens": len(out),
                          "total_tokens": len(prompt) + len(out)}}


LOOP = "    model.c = pyo.Constraint(expr=model.x + model.y <= 4)\n"
LOOPING = "import pyomo.environ as pyo\nmodel = pyo.ConcreteModel()\n" + LOOP * 40


def test_a_completion_that_loops_is_ended_where_the_loop_shows() -> None:
    llm = WritingLlama(LOOPING)
    client = _client(LlamaTransport(Path("m.gguf"), llama_factory=Factory(llm)))
    out = client.chat.completions.create(model="m", messages=MSGS, max_tokens=4000)
    text = out.choices[0].message.content or ""
    assert LOOPING.startswith(text) and LOOP * 6 in text and len(text) < len(LOOP) * 8  # a prefix, cut early
    assert out.choices[0].finish_reason == "length"  # cut before its end, as by the token limit
    assert (out.model_extra or {})["loop_guard"] == {"period": len(LOOP)}
    schema = {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}}
    client.chat.completions.create(model="m", messages=MSGS, response_format=schema)  # type: ignore[arg-type]
    assert "logits_processor" not in llm.calls[-1]  # a JSON reply's grammar decides where it ends


def test_without_the_guard_or_a_loop_the_completion_runs_to_its_end() -> None:
    llm = WritingLlama(LOOPING)
    client = _client(LlamaTransport(Path("m.gguf"), llama_factory=Factory(llm), loop_guard=False))
    out = client.chat.completions.create(model="m", messages=MSGS, max_tokens=4000)
    assert out.choices[0].message.content == LOOPING and "loop_guard" not in (out.model_extra or {})
    plain = "\n".join(f"    model.c{i} = pyo.Constraint(expr=model.x[{i}] <= {i})" for i in range(60))
    client = _client(LlamaTransport(Path("m.gguf"), llama_factory=Factory(WritingLlama(plain))))
    out = client.chat.completions.create(model="m", messages=MSGS, max_tokens=4000)
    assert out.choices[0].message.content == plain and out.choices[0].finish_reason == "stop"


def test_loop_period() -> None:
    term = " + model.steel * 6 + model.plastic * 0.05"
    assert loop_period("model.obj = pyo.Objective(expr=" + term * 8) == len(term)  # a loop inside one line
    assert loop_period("model.obj = pyo.Objective(expr=" + term * 5) is None  # too few copies yet
    assert loop_period("demand = [" + "0, " * 200) is None  # one number again and again can be data
    assert loop_period(term * 7) is None  # under 300 characters: too short to tell
    assert loop_period(LOOPING[:-5]) == len(LOOP)  # also when the text stops inside a copy


REAL_MODEL = DEFAULT_MODEL_DIR / DEFAULT_MODEL.filename


@pytest.mark.slow
@pytest.mark.skipif(not REAL_MODEL.is_file(), reason=f"real model not at {REAL_MODEL}")
def test_real_model_answers_42() -> None:
    pytest.importorskip("llama_cpp")
    transport = LlamaTransport(REAL_MODEL, n_ctx=2048)
    client = _client(transport)
    out = client.chat.completions.create(
        model=DEFAULT_MODEL.name, temperature=0.0, max_tokens=8,
        messages=[{"role": "user", "content": "Reply with the number 42 only."}])
    assert "42" in (out.choices[0].message.content or "")
    assert transport.chat_format == "chat_template.default"  # the GGUF's own (Qwen) template
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}},
              "required": ["answer"], "additionalProperties": False}
    out = client.chat.completions.create(
        model=DEFAULT_MODEL.name, temperature=0.0, max_tokens=20,
        response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}},
        messages=[{"role": "user", "content": "What is 40 + 2? Answer in JSON."}])
    assert json.loads(out.choices[0].message.content or "") == {"answer": 42}
    client.close()


def _logits_alone_and_after_another_prompt(repeatable: bool) -> tuple[Any, Any]:
    """The real model's logits for a prompt evaluated alone, and evaluated right after another
    prompt that shares its first ~700 tokens (the RAM cache on, as the transport has it)."""
    import numpy as np

    from alphaopt.llm.local_model import _load_llama

    def plants(first: int, last: int) -> str:
        return " ".join(f"Plant {i} makes {i + 3} tables and {2 * i + 1} chairs per day." for i in range(first, last))

    def last_logits(llm: Any, prompt: str) -> np.ndarray:
        llm.create_completion(prompt, max_tokens=1, temperature=0.0)  # stops before the token is evaluated
        return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),)).copy()

    story = plants(0, 40)
    asked = f"{story} {plants(40, 65)} How many tables does plant 7 make?"  # past the next batch and 256-cell pad
    fresh = _load_llama(REAL_MODEL, n_ctx=2048, n_threads=1, seed=0, verbose=False, repeatable=repeatable)
    alone = last_logits(fresh, asked)
    fresh.close()
    llm = _load_llama(REAL_MODEL, n_ctx=2048, n_threads=1, seed=0, verbose=False, cache_bytes=1 << 28,
                      repeatable=repeatable)
    last_logits(llm, story + " Which plant makes the most chairs?")  # shares the story only
    after = last_logits(llm, asked)
    llm.close()
    return alone, after


@pytest.mark.slow
@pytest.mark.skipif(not REAL_MODEL.is_file(), reason=f"real model not at {REAL_MODEL}")
def test_real_model_reply_does_not_depend_on_the_request_before() -> None:
    """A prompt sharing a prefix with the one before gets the logits of a fresh evaluation, bit for
    bit. llama.cpp's sums for a token depend on where its batch ends: reusing the longest shared
    prefix (evaluated before in a batch that ended elsewhere) gives other logits
    (``_logits_alone_and_after_another_prompt(False)`` differ, checked when this was written), and
    a greedy reply can turn on them; reuse cut back to a batch boundary does not."""
    pytest.importorskip("llama_cpp")
    import numpy as np

    alone, after = _logits_alone_and_after_another_prompt(repeatable=True)
    assert np.array_equal(alone, after)
