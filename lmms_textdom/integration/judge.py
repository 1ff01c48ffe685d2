"""A judge model behind any OpenAI-compatible chat-completions endpoint, on the ``openai`` client, with a disk cache.

Configured through the environment, so lmms-eval's CLI needs no new flags:

| variable | meaning |
|---|---|
| ``LMMS_TEXTDOM_JUDGE_BASE_URL`` | endpoint root, e.g. ``https://api.openai.com/v1`` or ``http://127.0.0.1:8000/v1`` |
| ``LMMS_TEXTDOM_JUDGE_MODEL`` | the model name the endpoint serves, e.g. ``gpt-4-turbo`` |
| ``LMMS_TEXTDOM_JUDGE_API_KEY`` | sent as ``Authorization: Bearer``; optional (local servers need none) |
| ``LMMS_TEXTDOM_JUDGE_TIMEOUT`` | seconds a request may stay silent before it is abandoned (default 60) |
| ``LMMS_TEXTDOM_JUDGE_ATTEMPTS`` | requests per judgement before it counts as failed (default 4) |
| ``LMMS_TEXTDOM_JUDGE_CACHE`` | folder of cached replies (default ``~/.cache/lmms_textdom/judge``) |

The client retries time-outs, connection errors and statuses 408/409/429/5xx with its own
exponential backoff (honouring ``Retry-After``); other statuses and replies that are not chat
completions fail at once (retrying cannot fix them). The client's own ``OPENAI_API_KEY``,
``OPENAI_BASE_URL``, ``OPENAI_ORG_ID`` and ``OPENAI_PROJECT_ID`` are not used: an OpenAI key never
reaches another endpoint. Every reply the endpoint gives is
cached, one file per request written atomically, so threads and processes share the cache without
locks and a rerun asks nothing it has asked before; failures are not cached, so a rerun retries
them. (The cache stays ours: the client has none, and lmms-eval's response cache keys on model
requests, not on judge prompts.)
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from loguru import logger

from lmms_textdom.core.errors import UsageError

PREFIX = "LMMS_TEXTDOM_JUDGE_"
RETRYABLE_STATUS = {408, 409, 429}  # and 5xx: what the client retries


@dataclass(frozen=True)
class JudgeConfig:
    base_url: str
    model: str
    api_key: str | None = None
    timeout_s: float = 60.0
    attempts: int = 4
    cache_dir: Path | None = None  # None: no cache

    @classmethod
    def from_env(cls, environ=None) -> JudgeConfig | None:
        """The configured judge, or None when neither the base URL nor the model is set."""
        env = os.environ if environ is None else environ
        base_url, model = env.get(PREFIX + "BASE_URL", "").strip(), env.get(PREFIX + "MODEL", "").strip()
        if not base_url and not model:
            return None
        if not base_url or not model:
            given, missing = ("MODEL", "BASE_URL") if model else ("BASE_URL", "MODEL")
            raise UsageError(
                f"{PREFIX}{given} is set but {PREFIX}{missing} is not: the judge needs both "
                f"(and {PREFIX}API_KEY if the endpoint asks for one). Unset both to run without a judge."
            )
        cache = env.get(PREFIX + "CACHE") or Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lmms_textdom" / "judge"
        return cls(
            base_url=base_url.rstrip("/"),
            model=model,
            api_key=env.get(PREFIX + "API_KEY") or None,
            timeout_s=_positive(env, "TIMEOUT", float, cls.timeout_s),
            attempts=_positive(env, "ATTEMPTS", int, cls.attempts),
            cache_dir=Path(cache).expanduser(),
        )


def _positive(env, name: str, kind: type, default):
    raw = env.get(PREFIX + name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise UsageError(f"{PREFIX}{name}={raw!r} must be a positive {kind.__name__} (default {default}).")
    return value


class JudgeFailure(Exception):
    def __init__(self, kind: str, detail: str, retryable: bool):
        super().__init__(f"{kind}: {detail}")
        self.kind, self.retryable = kind, retryable


class ChatJudge:
    """Asks the judge model one question at a time; thread-safe."""

    def __init__(self, config: JudgeConfig):
        import openai

        self.config = config
        self._openai = openai
        # No key: a placeholder the client insists on, and the header dropped on every request. The
        # organisation and project the client would take from OPENAI_* variables are dropped too.
        self._client = openai.OpenAI(
            base_url=config.base_url, api_key=config.api_key or "unused", timeout=config.timeout_s, max_retries=config.attempts - 1,
        )  # fmt: skip
        self._headers = {"OpenAI-Organization": openai.Omit(), "OpenAI-Project": openai.Omit()}
        if not config.api_key:
            self._headers["Authorization"] = openai.Omit()
        self._lock = threading.Lock()
        self._warned: set[str] = set()

    def reply(self, system: str, user: str) -> str | None:
        """The judge's reply text, or None when every attempt failed (the reason is logged)."""
        key = self.cache_key(system, user)
        cached = self._cached(key, system, user)
        if cached is not None:
            return cached
        try:
            text = self._ask(system, user)
        except JudgeFailure as failure:
            self._warn_once(failure, self.config.attempts if failure.retryable else 1)
            return None
        self._store(key, system, user, text)
        return text

    def cache_key(self, system: str, user: str) -> str:
        # the user message carries question, reference answer and prediction
        return hashlib.sha256(json.dumps([self.config.model, system, user]).encode()).hexdigest()

    def _ask(self, system: str, user: str) -> str:
        """One judgement, the client's retries included."""
        url = f"{self.config.base_url}/chat/completions"
        openai = self._openai
        try:
            completion = self._client.chat.completions.create(
                model=self.config.model, messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
                temperature=0, extra_headers=self._headers,
            )  # fmt: skip
        except openai.APIStatusError as exc:
            retryable = exc.status_code in RETRYABLE_STATUS or exc.status_code >= 500
            detail = exc.response.text[:300]
            raise JudgeFailure(f"HTTP {exc.status_code}", f"{url} answered {detail!r}", retryable) from exc
        except openai.APIConnectionError as exc:  # time-outs, refused or reset connections
            reason = exc.__cause__ or exc
            raise JudgeFailure("no reply", f"{url} (time-out {self.config.timeout_s} s): {reason!r}", True) from exc
        except ValueError as exc:  # a body that is not JSON
            raise JudgeFailure("not a chat completion", f"{url} answered something that is not JSON ({exc})", False) from exc
        try:
            content = completion.choices[0].message.content
        except (AttributeError, IndexError, KeyError, TypeError) as exc:
            raise JudgeFailure("not a chat completion", f"{url} answered {str(completion)[:200]!r}", False) from exc
        if not isinstance(content, str):
            raise JudgeFailure("not a chat completion", f"{url} sent no text content", False)
        return content

    def _warn_once(self, failure: JudgeFailure, attempts: int) -> None:
        with self._lock:
            first = failure.kind not in self._warned
            self._warned.add(failure.kind)
        message = f"judge {self.config.model}: judgement failed after up to {attempts} request(s): {failure}"
        if first:
            logger.warning(message + " (later failures of this kind are logged at debug level)")
        else:
            logger.debug(message)

    # ----- cache: one JSON file per request, replaced atomically ------------------------------

    def _path(self, key: str) -> Path | None:
        return None if self.config.cache_dir is None else self.config.cache_dir / key[:2] / f"{key}.json"

    def _cached(self, key: str, system: str, user: str) -> str | None:
        path = self._path(key)
        if path is None:
            return None
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if entry.get("request") != [self.config.model, system, user] or not isinstance(entry.get("reply"), str):
            return None
        return entry["reply"]

    def _store(self, key: str, system: str, user: str, text: str) -> None:
        path = self._path(key)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        scratch.write_text(json.dumps({"request": [self.config.model, system, user], "reply": text}))
        os.replace(scratch, path)


@functools.lru_cache(maxsize=None)
def _judge_for(config: JudgeConfig) -> ChatJudge:
    return ChatJudge(config)


def judge_from_env() -> ChatJudge | None:
    """The judge the environment configures (one instance per configuration), or None."""
    config = JudgeConfig.from_env()
    return None if config is None else _judge_for(config)
