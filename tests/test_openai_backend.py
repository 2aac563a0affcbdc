"""The OpenAI-compatible backend against HTTP servers on 127.0.0.1: what it sends, where, and when it retries.

These servers answer like ``vllm serve`` and record what they receive; a real ``vllm serve`` is exercised in
test_vllm.py when the vLLM environment exists.
"""

import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("openai")

from lgt.generation import Engine, ImagePart, Message, Request, Sampling  # noqa: E402
from PIL import Image  # noqa: E402


class _Server:
    """A chat-completions endpoint that first answers with ``failures`` (HTTP statuses), then echoes the prompt."""

    def __init__(self, failures=()):
        self.failures = list(failures)
        self.bodies: list[dict] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.bodies.append(body)
                    status = server.failures.pop(0) if server.failures else 200
                if status != 200:
                    payload = {"error": {"message": f"status {status}", "type": "error", "code": status}}
                    return self._send(status, payload, {"retry-after-ms": "10"})
                prompt = body["messages"][0]["content"]
                prompt = prompt if isinstance(prompt, str) else prompt[-1]["text"]
                choices = [
                    {"index": i, "message": {"role": "assistant", "content": f"{prompt}#{i}"}, "finish_reason": "stop"}
                    for i in range(body.get("n", 1))
                ]
                usage = {
                    "prompt_tokens": 7,
                    "completion_tokens": 3 * len(choices),
                    "total_tokens": 7 + 3 * len(choices),
                }
                self._send(
                    200,
                    {
                        "id": "c",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body["model"],
                        "choices": choices,
                        "usage": usage,
                    },
                )

            def _send(self, status, payload, headers=None):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers():
    started = []

    def start(failures=()):
        started.append(_Server(failures))
        return started[-1]

    yield start
    for server in started:
        server.close()


def _engine(tmp_path, *servers, **options):
    urls = ",".join(server.url for server in servers)
    return Engine(f"openai:served-model@{urls}", cache=tmp_path / "c.sqlite", progress=False, **options)


def test_requests_spread_over_servers_and_answers_keep_their_order(servers, tmp_path):
    one, two = servers(), servers()
    requests = [Request((Message.text("user", f"prompt {i}"),), Sampling(n=1 + i % 2, seed=i)) for i in range(24)]
    responses = _engine(tmp_path, one, two, concurrency=4).generate(requests)
    assert [r.texts for r in responses] == [tuple(f"prompt {i}#{k}" for k in range(1 + i % 2)) for i in range(24)]
    assert responses[1].output_tokens == 6 and responses[0].prompt_tokens == 7
    assert len(one.bodies) + len(two.bodies) == 24 and min(len(one.bodies), len(two.bodies)) >= 6
    # The cache answers a rebuild: no server hears of it again.
    again = _engine(tmp_path, one, two)
    assert again.generate(requests) == responses and len(one.bodies) + len(two.bodies) == 24


def test_request_body_carries_every_setting(servers, tmp_path):
    server = servers()
    png = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(png, format="PNG")
    request = Request(
        (Message("user", (ImagePart(png.getvalue()), "What is this?")),),
        Sampling(
            n=2,
            temperature=0.6,
            top_p=0.9,
            top_k=20,
            max_tokens=99,
            seed=7,
            stop=("</answer>",),
            repetition_penalty=1.05,
        ),
        prefill="<think>",
        banned_words=("description",),
        schema={"type": "object"},
    )
    _engine(tmp_path, server).generate([request])
    body = server.bodies[0]
    assert body["messages"][0]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert body["messages"][-1] == {"role": "assistant", "content": "<think>"}
    assert (body["n"], body["temperature"], body["top_p"], body["max_tokens"], body["seed"]) == (2, 0.6, 0.9, 99, 7)
    assert body["stop"] == ["</answer>"] and body["top_k"] == 20 and body["repetition_penalty"] == 1.05
    assert body["bad_words"] == ["description"]
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert body["response_format"]["json_schema"]["schema"] == {"type": "object"}


def test_transient_errors_are_retried_and_others_are_not(servers, tmp_path):
    flaky = servers(failures=[503, 429])
    response = _engine(tmp_path, flaky).generate([Request((Message.text("user", "hello"),))])[0]
    assert response.texts == ("hello#0",) and len(flaky.bodies) == 3

    rejecting = servers(failures=[400])
    from openai import BadRequestError

    with pytest.raises(BadRequestError):
        _engine(tmp_path, rejecting).generate([Request((Message.text("user", "too long"),))])
    assert len(rejecting.bodies) == 1, "a request the server rejects must not be sent again"
