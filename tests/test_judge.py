"""The judge client against a real chat-completions server on loopback: replies, failures, retries, cache."""

from __future__ import annotations

import itertools
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import pytest

from lmms_textdom.core.errors import UsageError
from lmms_textdom.integration.judge import ChatJudge, JudgeConfig
from tests.chat_server import Answer, ChatServer, user_message

SYSTEM = "Rate the candidate from 0 to 3."


def config(server: ChatServer, cache: Path | None = None, **changes) -> JudgeConfig:
    settings = {"base_url": server.url, "model": "judge-1", "timeout_s": 5.0, "attempts": 3, "cache_dir": cache}
    return JudgeConfig(**{**settings, **changes})


def echo(body: dict) -> Answer:
    return Answer(text=f"seen: {user_message(body)}")


def test_request_is_a_chat_completion_and_the_reply_its_content():
    with ChatServer(lambda body: Answer(text="2")) as server:
        assert ChatJudge(config(server, api_key="sk-local")).reply(SYSTEM, "Question: q") == "2"
        (request,) = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer sk-local"
    assert request["body"] == {
        "model": "judge-1",
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Question: q"}],
        "temperature": 0,
    }


def test_without_a_key_no_authorization_header_is_sent():
    with ChatServer(lambda body: Answer(text="1")) as server:
        ChatJudge(config(server)).reply(SYSTEM, "u")
    assert "Authorization" not in server.requests[0]["headers"]


def test_cached_judgement_makes_no_second_request(tmp_path):
    with ChatServer(echo) as server:
        assert ChatJudge(config(server, tmp_path)).reply(SYSTEM, "a") == "seen: a"
        assert ChatJudge(config(server, tmp_path)).reply(SYSTEM, "a") == "seen: a"  # a new client: the disk cache
        assert server.count == 1
        assert ChatJudge(config(server, tmp_path, model="judge-2")).reply(SYSTEM, "a") == "seen: a"
        assert ChatJudge(config(server, tmp_path)).reply(SYSTEM, "b") == "seen: b"
        assert server.count == 3, "another judge model or another message is another judgement"
    (entry,) = [json.loads(p.read_text()) for p in tmp_path.rglob("*.json") if json.loads(p.read_text())["request"][2] == "b"]
    assert entry == {"request": ["judge-1", SYSTEM, "b"], "reply": "seen: b"}


def test_server_error_is_retried_then_fails_and_is_not_cached(tmp_path, logged_warnings):
    failing = itertools.count()
    with ChatServer(lambda body: Answer(status=500) if next(failing) < 3 else Answer(text="3")) as server:
        assert ChatJudge(config(server, tmp_path)).reply(SYSTEM, "u") is None
        assert server.count == 3, "attempts=3 requests, then failure"
        assert ChatJudge(config(server, tmp_path)).reply(SYSTEM, "u") == "3", "a failure is asked again on the next run"
    assert any("HTTP 500" in w for w in logged_warnings)


def test_rate_limit_is_retried_until_answered():
    answers = iter([Answer(status=429), Answer(status=503), Answer(text="0")])
    with ChatServer(lambda body: next(answers)) as server:
        assert ChatJudge(config(server)).reply(SYSTEM, "u") == "0"
        assert server.count == 3


def test_client_error_fails_at_once_and_warns_once(logged_warnings):
    with ChatServer(lambda body: Answer(status=401)) as server:
        judge = ChatJudge(config(server))
        assert judge.reply(SYSTEM, "u1") is None and judge.reply(SYSTEM, "u2") is None
        assert server.count == 2, "a refused key is not retried"
    assert len([w for w in logged_warnings if "HTTP 401" in w]) == 1


def test_time_out_is_retried_a_bounded_number_of_times(logged_warnings):
    with ChatServer(lambda body: Answer(text="2", delay_s=3.0)) as server:
        start = time.monotonic()
        assert ChatJudge(config(server, timeout_s=0.2, attempts=2)).reply(SYSTEM, "u") is None
        elapsed = time.monotonic() - start
        assert server.count == 2
    assert elapsed < 2.0
    assert any("no reply" in w and "time-out 0.2 s" in w for w in logged_warnings)


def test_reply_that_is_not_a_chat_completion_fails_without_retry():
    with ChatServer(lambda body: Answer(raw=b"<html>not an API</html>")) as server:
        assert ChatJudge(config(server)).reply(SYSTEM, "u") is None
        assert server.count == 1


def test_unreachable_endpoint_fails_after_the_attempts(logged_warnings):
    with ChatServer(echo) as server:
        url = server.url
    assert ChatJudge(JudgeConfig(base_url=url, model="m", attempts=2, timeout_s=1)).reply(SYSTEM, "u") is None
    assert any("no reply" in w for w in logged_warnings)


def test_threads_share_one_cache(tmp_path):
    with ChatServer(echo) as server:
        judge = ChatJudge(config(server, tmp_path))
        prompts = [f"q{i}" for i in range(12)] * 2
        with ThreadPoolExecutor(4) as pool:
            replies = list(pool.map(lambda p: judge.reply(SYSTEM, p), prompts))
        assert replies == [f"seen: {p}" for p in prompts]
        assert 12 <= server.count <= 24
        before = server.count
        assert ChatJudge(config(server, tmp_path)).reply(SYSTEM, "q5") == "seen: q5"
        assert server.count == before
    assert len(list(tmp_path.rglob("*.json"))) == 12
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and not p.name.endswith(".json")], "no scratch files left"


def _judge_in_process(base_url: str, cache: str, prompts: list[str]) -> list[str | None]:
    judge = ChatJudge(JudgeConfig(base_url=base_url, model="judge-1", cache_dir=Path(cache)))
    return [judge.reply(SYSTEM, p) for p in prompts]


def test_processes_share_one_cache(tmp_path):
    prompts = [f"p{i}" for i in range(6)]
    with ChatServer(echo) as server:
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(_judge_in_process, [server.url] * 2, [str(tmp_path)] * 2, [prompts, prompts[::-1]]))
        assert results == [[f"seen: {p}" for p in prompts], [f"seen: {p}" for p in prompts[::-1]]]
        before = server.count
        assert _judge_in_process(server.url, str(tmp_path), prompts) == results[0]
        assert server.count == before
    assert len(list(tmp_path.rglob("*.json"))) == 6


def test_corrupt_cache_entry_is_asked_again(tmp_path):
    with ChatServer(echo) as server:
        judge = ChatJudge(config(server, tmp_path))
        judge.reply(SYSTEM, "u")
        (entry,) = tmp_path.rglob("*.json")
        entry.write_text("{truncated")
        assert judge.reply(SYSTEM, "u") == "seen: u"
        assert server.count == 2
    assert json.loads(entry.read_text())["reply"] == "seen: u"


def test_configuration_from_the_environment(tmp_path):
    assert JudgeConfig.from_env({}) is None
    env = {
        "LMMS_TEXTDOM_JUDGE_BASE_URL": "http://127.0.0.1:8000/v1/",
        "LMMS_TEXTDOM_JUDGE_MODEL": "qwen-judge",
        "LMMS_TEXTDOM_JUDGE_TIMEOUT": "2.5",
        "LMMS_TEXTDOM_JUDGE_ATTEMPTS": "6",
        "XDG_CACHE_HOME": str(tmp_path),
    }
    got = JudgeConfig.from_env(env)
    assert (got.base_url, got.model, got.api_key, got.timeout_s, got.attempts) == ("http://127.0.0.1:8000/v1", "qwen-judge", None, 2.5, 6)
    assert got.cache_dir == tmp_path / "lmms_textdom" / "judge"
    assert JudgeConfig.from_env({**env, "LMMS_TEXTDOM_JUDGE_CACHE": str(tmp_path / "c")}).cache_dir == tmp_path / "c"


@pytest.mark.parametrize(
    "env,message",
    [
        ({"LMMS_TEXTDOM_JUDGE_BASE_URL": "http://x/v1"}, "LMMS_TEXTDOM_JUDGE_MODEL is not"),
        ({"LMMS_TEXTDOM_JUDGE_MODEL": "m"}, "LMMS_TEXTDOM_JUDGE_BASE_URL is not"),
        ({"LMMS_TEXTDOM_JUDGE_BASE_URL": "http://x/v1", "LMMS_TEXTDOM_JUDGE_MODEL": "m", "LMMS_TEXTDOM_JUDGE_TIMEOUT": "soon"}, "LMMS_TEXTDOM_JUDGE_TIMEOUT='soon'"),
        ({"LMMS_TEXTDOM_JUDGE_BASE_URL": "http://x/v1", "LMMS_TEXTDOM_JUDGE_MODEL": "m", "LMMS_TEXTDOM_JUDGE_ATTEMPTS": "0"}, "positive int"),
    ],
)
def test_half_or_bad_configuration_is_refused(env, message):
    with pytest.raises(UsageError, match=message):
        JudgeConfig.from_env(env)


def test_the_openai_client_sends_it_and_no_openai_variable_leaks(monkeypatch):
    """The request comes from the openai client; OPENAI_* settings of the environment never reach the judge."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-account")
    monkeypatch.setenv("OPENAI_ORG_ID", "org-account")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-account")
    with ChatServer(lambda body: Answer(text="1")) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # not the judge's endpoint
        assert ChatJudge(config(server)).reply(SYSTEM, "u") == "1"
        assert ChatJudge(config(server, api_key="sk-judge", model="judge-2")).reply(SYSTEM, "u") == "1"
    keyless, keyed = (r["headers"] for r in server.requests)
    assert keyless["User-Agent"].startswith("OpenAI/Python")
    assert "Authorization" not in keyless and keyed["Authorization"] == "Bearer sk-judge"
    for headers in (keyless, keyed):
        assert "OpenAI-Organization" not in headers and "OpenAI-Project" not in headers


def test_retry_after_of_the_endpoint_is_honoured():
    """A 429 with Retry-After: 1 waits about a second before the next request (the client's backoff)."""
    answers = iter([Answer(status=429, headers={"Retry-After": "1"}), Answer(text="2")])
    with ChatServer(lambda body: next(answers)) as server:
        assert ChatJudge(config(server)).reply(SYSTEM, "u") == "2"
        first, second = server.times
    assert 0.9 <= second - first
