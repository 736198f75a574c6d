"""The OpenAI-protocol client: logging, cache, retries and clear errors (no network)."""

from __future__ import annotations

import json
import sqlite3

import httpx2
import pytest
from pydantic import BaseModel

from alphaopt.config import load_settings
from alphaopt.errors import InputError, LLMError
from alphaopt.llm.client import CallContext, OpenAIClient
from alphaopt.llm.runlog import RunLog
from benchmarks.fake_endpoint import FakeEndpoint, Raw, completion_body


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
    return OpenAIClient(settings, RunLog(settings.runs_db),
                        http_client=httpx2.Client(transport=httpx2.MockTransport(server)))


MESSAGES = [{"role": "user", "content": "hi"}]


def test_call_is_logged_with_tokens_and_prompt(tmp_path):
    server = Server((200, completion_body("hello")))
    client = _client(tmp_path, server)
    result = client.complete(MESSAGES, prompt_name="formulate", prompt_sha="abc", max_tokens=50,
                             context=CallContext(run_id="r1", node="formulate"))
    assert (result.text, result.input_tokens, result.output_tokens, result.cached) == ("hello", 11, 5, False)
    assert server.requests[0]["model"] == "test-model" and server.requests[0]["max_tokens"] == 50
    row = client.log.calls()[0]
    assert (row["prompt_name"], row["prompt_sha"], row["run_id"], row["model"]) == ("formulate", "abc", "r1",
                                                                                     "test-model")
    assert json.loads(row["messages"]) == MESSAGES and json.loads(row["response"])["text"] == "hello"
    assert row["input_tokens"] == 11 and row["error"] is None and row["latency_ms"] >= 0


def test_identical_call_replays_from_cache(tmp_path):
    cut = completion_body("hello")
    cut["choices"][0]["finish_reason"] = "length"  # cut before its end: the agent must know it on a replay too
    server = Server((200, cut))
    client = _client(tmp_path, server)
    first = client.complete(MESSAGES, prompt_name="p", prompt_sha="s", max_tokens=50)
    again = client.complete(MESSAGES, prompt_name="p", prompt_sha="s", max_tokens=50)
    assert again.cached and again.text == "hello" and len(server.requests) == 1
    assert first.finish_reason == again.finish_reason == "length"
    rows = client.log.calls()
    assert [r["cached"] for r in rows] == [1, 0]


def test_cache_off_or_nonzero_temperature_calls_again(tmp_path):
    for knobs in ({"cache": False}, {"temperature": 0.7}):
        server = Server((200, completion_body("a")), (200, completion_body("b")))
        client = _client(tmp_path / str(knobs), server, experimental=knobs)
        texts = [client.complete(MESSAGES, prompt_name="p", prompt_sha="s", max_tokens=5).text for _ in range(2)]
        assert texts == ["a", "b"]


def test_a_seeded_sample_replays_but_another_seed_calls_again(tmp_path):
    server = Server((200, completion_body("a")), (200, completion_body("b")))
    client = _client(tmp_path, server)
    ask = lambda seed: client.complete(MESSAGES, prompt_name="p", prompt_sha="s", max_tokens=5,  # noqa: E731
                                       temperature=0.6, seed=seed)
    assert [ask(1).text, ask(1).text, ask(2).text] == ["a", "a", "b"] and len(server.requests) == 2


def test_retries_on_429_and_5xx(tmp_path):
    server = Server((429, {"error": {"message": "slow down"}}), (503, {"error": {"message": "busy"}}),
                    (200, completion_body("ok")))
    client = _client(tmp_path, server, experimental={"max_retries": 3})
    result = client.complete(MESSAGES, prompt_name="p", prompt_sha="s", max_tokens=5)
    assert result.text == "ok" and len(server.requests) == 3


def test_persistent_5xx_is_a_clear_logged_error(tmp_path):
    server = Server(*[(500, {"error": {"message": "boom"}})] * 3)
    client = _client(tmp_path, server, experimental={"max_retries": 2})
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
                             request_timeout_s=5, experimental={"max_retries": 0})
    client = OpenAIClient(settings, RunLog(settings.runs_db), http_client=httpx2.Client())
    with pytest.raises(LLMError, match="ALPHAOPT_BASE_URL"):
        client.complete(MESSAGES, prompt_name="p", prompt_sha="s", max_tokens=5)
    assert "Cannot reach" in client.log.calls()[0]["error"]


class Pick(BaseModel):
    ids: list[str]


def test_structured_output_is_parsed_and_requested_as_json_schema(tmp_path):
    server = Server((200, completion_body('{"ids": ["I1"]}')), (200, completion_body("not json")))
    client = _client(tmp_path, server, experimental={"cache": False})
    good = client.complete(MESSAGES, prompt_name="p", prompt_sha="s", max_tokens=5, schema=Pick)
    assert good.parsed == Pick(ids=["I1"])
    assert server.requests[0]["response_format"]["type"] == "json_schema"
    bad = client.complete(MESSAGES, prompt_name="p", prompt_sha="s", max_tokens=5, schema=Pick)
    assert bad.parsed is None and client.log.calls()[0]["parse_ok"] == 0


def test_requests_blocked_in_tests_without_injected_transport(tmp_path):
    settings = load_settings(home=tmp_path / "home", base_url="http://llm.test/v1", model="m")
    with pytest.raises(LLMError, match="disabled"):
        OpenAIClient(settings, RunLog(settings.runs_db)).complete(MESSAGES, prompt_name="p", prompt_sha="s",
                                                                  max_tokens=5)


# Faults are not answers: each is an LLMError, logged with its error, and never replayed.

def _endpoint_client(tmp_path, endpoint, request_timeout_s=10.0, **knobs) -> OpenAIClient:
    settings = load_settings(home=tmp_path / "home", base_url=endpoint.url, model="m", api_key="k",
                             request_timeout_s=request_timeout_s, experimental={"max_retries": 0, **knobs})
    return OpenAIClient(settings, RunLog(settings.runs_db), http_client=httpx2.Client())


@pytest.mark.parametrize(("answer", "reason"), [
    (Raw(body="<html>502 Bad Gateway</html>", content_type="text/html"), "not a chat completion"),
    (Raw(body="{not json"), "not JSON"),
    (Raw(body='{"object": "error"}'), "not a chat completion"),
    (Raw(body='[1, 2]'), "not a chat completion"),
    (Raw(body=json.dumps({**completion_body("x"), "choices": []})), "without choices"),
    (Raw(body=json.dumps(completion_body(None))), "empty completion"),
    ("", "empty completion"),
    ("  \n", "empty completion"),
    ("caf\udce9", "not valid Unicode"),
])
def test_a_reply_that_is_no_answer_is_a_logged_error_and_never_cached(tmp_path, answer, reason):
    with FakeEndpoint(lambda body: answer) as endpoint:
        client = _endpoint_client(tmp_path, endpoint)
        for _ in range(2):
            with pytest.raises(LLMError, match=reason):
                client.complete(MESSAGES, prompt_name="p", prompt_sha="s", max_tokens=5)
        assert len(endpoint.requests) == 2  # the second call asked again: nothing was cached
    rows = client.log.calls()
    assert len(rows) == 2 and all(reason in row["error"] for row in rows) and not any(r["cached"] for r in rows)


def test_a_bad_reply_is_asked_again_then_the_answer_is_cached(tmp_path):
    answers = iter([Raw(body="garbage", content_type="text/plain"), "", "hello"])
    with FakeEndpoint(lambda body: next(answers)) as endpoint:
        client = _endpoint_client(tmp_path, endpoint, max_retries=2)
        first = client.complete(MESSAGES, prompt_name="p", prompt_sha="s", max_tokens=5)
        again = client.complete(MESSAGES, prompt_name="p", prompt_sha="s", max_tokens=5)
    assert (first.text, first.cached, again.text, again.cached) == ("hello", False, "hello", True)
    assert len(endpoint.requests) == 3
    rows = list(reversed(client.log.calls()))
    assert [bool(r["error"]) for r in rows] == [True, True, False, False]
    assert json.loads(rows[0]["response"])["text"] == "garbage"  # what the endpoint sent is kept for the log


def test_a_timeout_is_a_logged_error_and_the_next_call_asks_again(tmp_path):
    answers = iter([Raw(body=json.dumps(completion_body("late")), delay=3.0), "hello"])
    with FakeEndpoint(lambda body: next(answers)) as endpoint:
        client = _endpoint_client(tmp_path, endpoint, request_timeout_s=0.5)
        with pytest.raises(LLMError, match=r"did not answer within 0.5s"):
            client.complete(MESSAGES, prompt_name="p", prompt_sha="s", max_tokens=5)
        assert client.complete(MESSAGES, prompt_name="p", prompt_sha="s", max_tokens=5).text == "hello"
    assert len(endpoint.requests) == 2 and client.log.calls()[1]["error"]


def test_fault_rows_logged_by_older_versions_are_not_replayed(tmp_path):
    server = Server(*((200, completion_body(text)) for text in ("first", "not json", "again", '{"ids": []}')))
    client = _client(tmp_path, server)
    client.complete(MESSAGES, prompt_name="p", prompt_sha="s", max_tokens=5)
    with sqlite3.connect(client.log.path) as db:  # as an older version logged an empty reply: no error
        db.execute("UPDATE llm_calls SET response = ?", (json.dumps({"text": "", "finish_reason": "stop"}),))
    assert client.complete(MESSAGES, prompt_name="p", prompt_sha="s", max_tokens=5).text == "not json"
    # a reply that missed its schema is data for the caller, but not replayed either
    assert client.complete(MESSAGES, prompt_name="p", prompt_sha="s", max_tokens=5, schema=Pick).parsed is None
    assert client.complete(MESSAGES, prompt_name="p", prompt_sha="s", max_tokens=5, schema=Pick).parsed == Pick(ids=[])
    assert len(server.requests) == 4


def test_a_message_that_is_not_unicode_is_refused_before_sending(tmp_path):
    server = Server()
    with pytest.raises(InputError, match=r"lone surrogate at character 4"):
        _client(tmp_path, server).complete([{"role": "user", "content": "caf\udce9"}], prompt_name="p",
                                           prompt_sha="s", max_tokens=5)
    assert server.requests == []
