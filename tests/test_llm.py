"""The OpenAI-protocol client: logging, cache, retries and clear errors (no network)."""

from __future__ import annotations

import json

import httpx2
import pytest
from pydantic import BaseModel

from alphaopt.config import load_settings
from alphaopt.errors import LLMError
from alphaopt.llm.client import CallContext, OpenAIClient
from alphaopt.llm.runlog import RunLog


def _completion(text: str, prompt_tokens: int = 11, completion_tokens: int = 5) -> dict:
    return {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


class Server:
    """A scripted HTTP endpoint: a queue of (status, body) answers; records requests."""

    def __init__(self, *answers: tuple[int, dict]):
        self.answers = list(answers)
        self.requests: list[dict] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(json.loads(request.content))
        status, body = self.answers.pop(0)
        return httpx2.Response(status, json=body, headers={"retry-after-ms": "1"})


def _client(tmp_path, server, **overrides) -> OpenAIClient:
    settings = load_settings(home=tmp_path / "home", base_url="http://llm.test/v1", model="test-model",
                             api_key="k", **overrides)
    return OpenAIClient(settings, RunLog(settings.runs_db), http_client=httpx2.Client(transport=httpx2.MockTransport(server)))


MESSAGES = [{"role": "user", "content": "hi"}]


def test_call_is_logged_with_tokens_and_prompt(tmp_path):
    server = Server((200, _completion("hello")))
    client = _client(tmp_path, server)
    result = client.complete(MESSAGES, prompt_name="formulate", prompt_sha="abc", max_tokens=50,
                             context=CallContext(run_id="r1", node="formulate"))
    assert (result.text, result.input_tokens, result.output_tokens, result.cached) == ("hello", 11, 5, False)
    assert server.requests[0]["model"] == "test-model" and server.requests[0]["max_tokens"] == 50
    row = client.log.calls()[0]
    assert (row["prompt_name"], row["prompt_sha"], row["run_id"], row["model"]) == ("formulate", "abc", "r1", "test-model")
    assert json.loads(row["messages"]) == MESSAGES and json.loads(row["response"])["text"] == "hello"
    assert row["input_tokens"] == 11 and row["error"] is None and row["latency_ms"] >= 0


def test_identical_call_replays_from_cache(tmp_path):
    server = Server((200, _completion("hello")))
    client = _client(tmp_path, server)
    client.complete(MESSAGES, prompt_name="p", prompt_sha="s", max_tokens=50)
    again = client.complete(MESSAGES, prompt_name="p", prompt_sha="s", max_tokens=50)
    assert again.cached and again.text == "hello" and len(server.requests) == 1
    rows = client.log.calls()
    assert [r["cached"] for r in rows] == [1, 0]


def test_cache_off_or_nonzero_temperature_calls_again(tmp_path):
    for overrides in ({"cache": False}, {"temperature": 0.7}):
        server = Server((200, _completion("a")), (200, _completion("b")))
        client = _client(tmp_path / str(overrides), server, **overrides)
        texts = [client.complete(MESSAGES, prompt_name="p", prompt_sha="s", max_tokens=5).text for _ in range(2)]
        assert texts == ["a", "b"]


def test_a_seeded_sample_replays_but_another_seed_calls_again(tmp_path):
    server = Server((200, _completion("a")), (200, _completion("b")))
    client = _client(tmp_path, server)
    ask = lambda seed: client.complete(MESSAGES, prompt_name="p", prompt_sha="s", max_tokens=5,  # noqa: E731
                                       temperature=0.6, seed=seed)
    assert [ask(1).text, ask(1).text, ask(2).text] == ["a", "a", "b"] and len(server.requests) == 2


def test_retries_on_429_and_5xx(tmp_path):
    server = Server((429, {"error": {"message": "slow down"}}), (503, {"error": {"message": "busy"}}),
                    (200, _completion("ok")))
    result = _client(tmp_path, server, max_retries=3).complete(MESSAGES, prompt_name="p", prompt_sha="s", max_tokens=5)
    assert result.text == "ok" and len(server.requests) == 3


def test_persistent_5xx_is_a_clear_logged_error(tmp_path):
    server = Server(*[(500, {"error": {"message": "boom"}})] * 3)
    client = _client(tmp_path, server, max_retries=2)
    with pytest.raises(LLMError, match="HTTP 500"):
        client.complete(MESSAGES, prompt_name="p", prompt_sha="s", max_tokens=5)
    assert client.log.calls()[0]["error"]


def test_wrong_key_names_the_setting(tmp_path):
    server = Server((401, {"error": {"message": "bad key"}}))
    with pytest.raises(LLMError, match="ALPHAOPT_API_KEY"):
        _client(tmp_path, server).complete(MESSAGES, prompt_name="p", prompt_sha="s", max_tokens=5)


def test_unknown_model_names_the_setting(tmp_path):
    server = Server((404, {"error": {"message": "no such model"}}))
    with pytest.raises(LLMError, match="ALPHAOPT_MODEL"):
        _client(tmp_path, server).complete(MESSAGES, prompt_name="p", prompt_sha="s", max_tokens=5)


def test_unreachable_endpoint_names_the_setting(tmp_path):
    settings = load_settings(home=tmp_path / "home", base_url="http://127.0.0.1:9/v1", model="m",
                             max_retries=0, request_timeout_s=5)
    client = OpenAIClient(settings, RunLog(settings.runs_db), http_client=httpx2.Client())
    with pytest.raises(LLMError, match="ALPHAOPT_BASE_URL"):
        client.complete(MESSAGES, prompt_name="p", prompt_sha="s", max_tokens=5)
    assert "Cannot reach" in client.log.calls()[0]["error"]


class Pick(BaseModel):
    ids: list[str]


def test_structured_output_is_parsed_and_requested_as_json_schema(tmp_path):
    server = Server((200, _completion('{"ids": ["I1"]}')), (200, _completion("not json")))
    client = _client(tmp_path, server, cache=False)
    good = client.complete(MESSAGES, prompt_name="p", prompt_sha="s", max_tokens=5, schema=Pick)
    assert good.parsed == Pick(ids=["I1"])
    assert server.requests[0]["response_format"]["type"] == "json_schema"
    bad = client.complete(MESSAGES, prompt_name="p", prompt_sha="s", max_tokens=5, schema=Pick)
    assert bad.parsed is None and client.log.calls()[0]["parse_ok"] == 0


def test_requests_blocked_in_tests_without_injected_transport(tmp_path):
    settings = load_settings(home=tmp_path / "home", base_url="http://llm.test/v1", model="m")
    with pytest.raises(LLMError, match="disabled"):
        OpenAIClient(settings, RunLog(settings.runs_db)).complete(MESSAGES, prompt_name="p", prompt_sha="s", max_tokens=5)
