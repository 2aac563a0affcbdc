"""A misbehaving OpenAI-compatible chat server for the failure-path tests, run as its own process on 127.0.0.1.

    python tests/openai_server.py FAULT [--after K] [--die-after K]

answers its first ``K`` chat requests as ``vllm serve`` would (a short chain of thought ending in an answer tag per
sample asked), then every later one with ``FAULT``; ``--die-after K`` makes the process exit (connections reset)
when request ``K + 1`` arrives. It prints its port on the first line of stdout and counts what it receives:
``GET /stats`` returns ``{"requests": N, "answered": M}`` (chat requests received, and answered healthily).
Tests start it with ``Running`` (and stop it, which also ends any request it hangs on).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWER = "<think>I look at the image and count what the question asks about.</think> <answer>A</answer>"


def completion(body: dict, choices: int | None = None, content=ANSWER) -> dict:
    """A chat completion as ``vllm serve`` writes it: ``choices`` samples (default: the ``n`` asked)."""
    count = body.get("n", 1) if choices is None else choices
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": body.get("model", ""),
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
            for i in range(count)
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7 * count, "total_tokens": 11 + 7 * count},
    }


# What each fault sends instead of an answer: (status, content type, body) or a name handled in the handler.
FAULTS = {
    "400": (400, "application/json", {"error": {"message": "This model's maximum context length is 32 tokens"}}),
    "404": (404, "application/json", {"error": {"message": "The model `x` does not exist."}}),
    "401": (401, "application/json", {"error": {"message": "Incorrect API key provided"}}),
    "500": (500, "application/json", {"error": {"message": "internal error"}}),
    "429": (429, "application/json", {"error": {"message": "rate limited"}}),
    "html": (200, "text/html", "<html><body><h1>502 Bad Gateway</h1></body></html>"),
    "bad-json": (200, "application/json", '{"choices": [{"index": 0, "message": '),
    "no-choices": (200, "application/json", {"id": "x", "object": "chat.completion", "usage": {}}),
    "empty-choices": (200, "application/json", "empty-choices"),
    "null-content": (200, "application/json", "null-content"),
    "ignore-n": (200, "application/json", "ignore-n"),
}
# Faults that break the connection rather than answer.
BROKEN = ("hang", "reset", "truncated")


class Server(ThreadingHTTPServer):
    daemon_threads = True  # a hung handler must not keep the process alive

    def __init__(self, fault: str, after: int, die_after: int | None):
        super().__init__(("127.0.0.1", 0), Handler)
        self.fault, self.after, self.die_after = fault, after, die_after
        self.requests = self.answered = 0
        self.lock = threading.Lock()

    def handle_error(self, request, client_address):
        pass  # a client that gives up (a timeout, a stopped build) is what these tests are about


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        with self.server.lock:
            self._send(200, "application/json", {"requests": self.server.requests, "answered": self.server.answered})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server = self.server
        with server.lock:
            server.requests += 1
            number = server.requests
            if server.die_after is not None and number > server.die_after:
                os._exit(1)  # the replica dies: the kernel resets every open connection
            healthy = number <= server.after or server.fault == "none"
            if healthy:
                server.answered += 1
        if healthy:
            return self._send(200, "application/json", completion(body))
        fault = server.fault
        if fault == "hang":
            time.sleep(3600)
        elif fault == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
        elif fault == "truncated":
            data = json.dumps(completion(body)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
        else:
            status, kind, payload = FAULTS[fault]
            if payload == "empty-choices":
                payload = completion(body, choices=0)
            elif payload == "null-content":
                payload = completion(body, content=None)
            elif payload == "ignore-n":
                payload = completion(body, choices=1)
            self._send(status, kind, payload, {"retry-after-ms": "10"})

    def _send(self, status: int, kind: str, payload, headers=None):
        data = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def finish(self):
        try:
            super().finish()
        except OSError:  # the connection was broken on purpose
            pass


class Running:
    """This server in a process of its own: ``url`` to send to, ``stats()`` of what it received, ``stop()``."""

    def __init__(self, fault: str = "none", after: int = 0, die_after: int | None = None):
        command = [sys.executable, __file__, fault, "--after", str(after)]
        command += ["--die-after", str(die_after)] if die_after is not None else []
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        self.port = int(self.process.stdout.readline())
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def stats(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=10) as reply:
            return json.load(reply)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.process.stdout.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("fault", choices=("none", *FAULTS, *BROKEN))
    parser.add_argument("--after", type=int, default=0, help="answer this many requests healthily first")
    parser.add_argument("--die-after", type=int, default=None, help="exit when request K + 1 arrives")
    args = parser.parse_args()
    server = Server(args.fault, args.after, args.die_after)
    print(server.server_address[1], flush=True)
    sys.stdout.close()
    server.serve_forever()


if __name__ == "__main__":
    main()
