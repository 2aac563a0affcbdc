"""The OpenAI-compatible backend against HTTP servers on 127.0.0.1: what it sends, where, and when it retries.

These servers answer like ``vllm serve`` and record what they receive; a real ``vllm serve`` is exercised in
test_vllm.py when the vLLM environment exists.
"""

import io
import json
import logging
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("openai")

from lgt.errors import GenerationError  # noqa: E402
from lgt.generation import Engine, ImagePart, Message, Request, Sampling  # noqa: E402
from openai_server import ANSWER  # noqa: E402
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
    with pytest.raises(
        GenerationError, match=rf"{rejecting.url} refused a request \(HTTP 400: status 400\)"
    ) as raised:
        _engine(tmp_path, rejecting).generate([Request((Message.text("user", "too long"),))])
    assert raised.value.exit_code == 2
    assert len(rejecting.bodies) == 1, "a request the server rejects must not be sent again"


def _requests(count: int) -> list[Request]:
    return [Request((Message.text("user", f"question {i}"),), Sampling(n=2, seed=i)) for i in range(count)]


# Each fault the server commits after three good answers: the exit code and what the one line says of it.
FAULT_LINES = {
    "400": (2, "refused a request (HTTP 400: This model's maximum context length is 32 tokens), as it would again"),
    "404": (2, "refused a request (HTTP 404: The model `x` does not exist.), as it would again: check the model name"),
    "401": (1, "refused the API key (HTTP 401: Incorrect API key provided): set OPENAI_API_KEY"),
    "500": (1, "no server answers ({url}: HTTP 500: internal error)"),
    "429": (1, "no server answers ({url}: HTTP 429: rate limited)"),
    "html": (1, "{url} sent a reply that is not a chat completion: the reply is not JSON (it starts '<html>"),
    "bad-json": (1, 'the reply is not JSON (it starts \'{{"choices"'),
    "no-choices": (1, "the reply holds no 'choices' list; nothing of it was cached"),
    "empty-choices": (1, "the reply holds 0 choices where n=2 samples were asked; nothing of it was cached"),
    "null-content": (1, "a choice holds no text (message.content is missing or null"),
    "ignore-n": (1, "the reply holds 1 choice where n=2 samples were asked: the server ignores n"),
    "hang": (1, "no server answers ({url}: no answer within 1.5 s)"),
    "reset": (1, "no server answers ({url}: connection failed: [Errno 104] Connection reset by peer)"),
    "truncated": (1, "no server answers ({url}: connection failed: peer closed connection without sending complete"),
}


@pytest.mark.parametrize("fault", FAULT_LINES)
def test_every_server_fault_is_one_line_and_only_real_answers_are_cached(serve, tmp_path, fault):
    """Findings 2 and 4: a 200 reply without text was cached as an answer and poisoned every later build; status
    and protocol errors were tracebacks, malformed JSON a line naming neither server nor model."""
    code, says = FAULT_LINES[fault]
    server, cache = serve(fault, after=3), tmp_path / "c.sqlite"
    requests = _requests(8)
    engine = Engine(
        f"openai:served@{server.url}", cache=cache, concurrency=1, max_retries=1, timeout=1.5, progress=False
    )
    with pytest.raises(GenerationError) as raised:
        engine.generate(requests)
    line = str(raised.value)
    assert line.startswith("the openai backend, model served: ") and "\n" not in line
    assert server.url in line and says.format(url=server.url) in line and raised.value.exit_code == code
    cached = engine.cache.get_many(engine.key(request) for request in requests)
    assert len(cached) == 3 and {response.texts for response in cached.values()} == {(ANSWER, ANSWER)}

    healthy = serve()
    again = Engine(f"openai:served@{healthy.url}", cache=cache, progress=False)
    assert [response.texts for response in again.generate(requests)] == [(ANSWER, ANSWER)] * 8
    assert healthy.stats()["requests"] == 5 and again.stats.hits == 3, "a rerun sends only what is missing"


def test_a_replica_that_dies_mid_stage_is_dropped_and_the_others_finish(serve, tmp_path):
    """Finding 6: one dead replica killed a fleet build, and the error did not name its URL."""
    dying, healthy = serve(die_after=3), serve()
    warnings = _Recorder()
    logging.getLogger("lgt.generation.openai_backend").addHandler(warnings)
    try:
        engine = Engine(
            f"openai:served@{dying.url},{healthy.url}",
            cache=tmp_path / "c.sqlite",
            concurrency=4,
            max_retries=1,
            progress=False,
        )
        responses = engine.generate(_requests(24))
    finally:
        logging.getLogger("lgt.generation.openai_backend").removeHandler(warnings)
    assert [response.texts for response in responses] == [(ANSWER, ANSWER)] * 24
    assert dying.process.wait(timeout=30) == 1, "the replica must have died mid-stage"
    assert 21 <= healthy.stats()["answered"] <= 24, "the other replica answers what the dead one did not"
    assert engine.stats.misses == 24 and len(engine.cache) == 24, "every request answered and cached once"
    (warning,) = warnings.messages
    assert warning.startswith(f"{dying.url} is out of rotation (connection failed: ") and healthy.url in warning


def test_when_every_replica_is_down_one_line_names_each_url(serve, tmp_path):
    failing, resetting, gone = serve("500"), serve("reset"), serve()
    gone.stop()
    urls = ",".join(server.url for server in (failing, resetting, gone))
    engine = Engine(f"openai:served@{urls}", cache=tmp_path / "c.sqlite", max_retries=0, progress=False)
    with pytest.raises(GenerationError) as raised:
        engine.generate(_requests(6))
    line = str(raised.value)
    assert raised.value.exit_code == 1 and "\n" not in line
    assert f"{failing.url}: HTTP 500: internal error" in line
    assert f"{resetting.url}: connection failed: [Errno 104] Connection reset by peer" in line
    assert f"{gone.url}: connection failed: [Errno 111] Connection refused" in line
    assert "what was answered is cached, and a rerun sends only the rest" in line and len(engine.cache) == 0


class _Recorder(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_the_engine_caches_no_answer_short_of_the_samples_asked_whatever_the_backend(serve, tmp_path):
    """The engine's own guard, for every backend: a response with fewer texts than n is never cached."""
    server = serve()
    engine = Engine(f"openai:served@{server.url}", cache=tmp_path / "c.sqlite", concurrency=1, progress=False)
    generate = engine.backend.generate

    def short_of_one(requests):
        for batch in generate(requests):
            yield [(i, replace(r, texts=r.texts[1:]) if i == 2 else r) for i, r in batch]

    engine.backend.generate = short_of_one
    requests = _requests(5)
    with pytest.raises(GenerationError, match=r"answered a request with 1 texts where n=2 samples were asked; it was"):
        engine.generate(requests)
    assert sorted(engine.cache.get_many(engine.key(r) for r in requests)) == sorted(map(engine.key, requests[:2]))


def test_waiting_on_a_silent_server_is_said(serve, tmp_path, monkeypatch):
    """Finding 3: a build hung on its server printed nothing meanwhile."""
    monkeypatch.setattr("lgt.generation.openai_backend._QUIET_S", 0.4)
    server = serve("hang")
    warnings = _Recorder()
    logging.getLogger("lgt.generation.openai_backend").addHandler(warnings)
    engine = Engine(f"openai:served@{server.url}", cache=tmp_path / "c.sqlite", max_retries=0, timeout=1.5)
    try:
        with pytest.raises(GenerationError, match=r"no answer within 1.5 s"):
            engine.generate(_requests(2))
    finally:
        logging.getLogger("lgt.generation.openai_backend").removeHandler(warnings)
    assert warnings.messages[0] == (
        f"no answer for 0.4 s from {server.url} (2 requests in flight; a try gives up after 1.5 s); Ctrl-C stops "
        "the build"
    )
