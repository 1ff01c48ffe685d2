"""A real OpenAI-compatible chat-completions server on loopback, its answers scripted by each test."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


@dataclass
class Answer:
    text: str | None = None  # the completion's content
    status: int = 200
    delay_s: float = 0.0
    raw: bytes | None = None  # a body that is not a chat completion
    headers: dict[str, str] | None = None  # further response headers, e.g. Retry-After


def completion(text: str) -> dict:
    return {
        "id": "chatcmpl-local",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
    }


class ChatServer:
    """``POST /v1/chat/completions`` answered by ``script(request body) -> Answer``; records every request."""

    def __init__(self, script: Callable[[dict], Answer]):
        self.script = script
        self.requests: list[dict] = []
        self.times: list[float] = []  # monotonic arrival time of each request
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server._lock:
                    server.times.append(time.monotonic())
                    server.requests.append({"path": self.path, "headers": self.headers, "body": body})  # names case-insensitive, as in HTTP
                answer = server.script(body)
                time.sleep(answer.delay_s)
                payload = answer.raw if answer.raw is not None else json.dumps(completion(answer.text) if answer.status == 200 else {"error": {"message": "scripted"}}).encode()
                try:
                    self.send_response(answer.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in (answer.headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting
                    pass

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> ChatServer:
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)


def user_message(body: dict) -> str:
    return next(m["content"] for m in body["messages"] if m["role"] == "user")
