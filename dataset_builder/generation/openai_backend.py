"""Any OpenAI-compatible chat endpoint: ``vllm serve``, SGLang, or a hosted API; a fleet of replicas scales out.

How ``generate`` sends a stage over the URLs of one model (the replicas):

- **Dispatch.** At most ``concurrency`` requests are in flight, each on a daemon thread of its own, sent to the
  live replica with the fewest in flight, so a fleet of unequal replicas stays evenly loaded. Only the calling
  thread keeps the books (what is in flight where, what is left); the threads send one request and hand back what
  came, so no lock is needed.
- **Retries.** The ``openai`` client retries a transient failure (connection refused or reset, a timeout, 408,
  409, 429, 5xx) ``max_retries`` times on the same replica, with exponential backoff and jitter.
- **Failover.** A replica whose request still fails that way is out of rotation for the rest of the stage (a
  warning names it and why): that request, and every other one in flight to it, go back to the front of the queue
  for the live replicas at once. An answer the dropped replica sends later is ignored, so every request is answered
  once and cached once. When no replica is left, one ``GenerationError`` names every URL and why it was dropped
  (exit 1); what was answered is cached already, and a rerun sends only the rest.
- **Fatal replies.** A request the server refuses as such (400, 404, 413, 422: exit 2) would be refused by every
  replica, and a refused key (401, 403: exit 1) too: the stage stops at once. So does a reply that is not a chat
  completion holding one text per sample asked (not JSON, an HTML page, no or empty ``choices``, a null
  ``content``, fewer choices than ``n``): it is never cached, and the line names the URL that sent it.
- **Stopping.** Nothing waits for the threads: Ctrl-C or SIGTERM ends the stage at once, whatever the servers
  do (a hung request is abandoned, not awaited). A minute without any answer is said in a warning naming the
  servers waited on.

Sampling settings outside the OpenAI API (top_k, repetition penalty, banned words, continuing a prefill) are sent
as the extra fields vLLM and SGLang read.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import queue
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from datasets.utils import logging

from ..errors import GenerationError
from .backend import Setting
from .request import ImagePart, Request, Response, chat_messages

logger = logging.get_logger(__name__)

# Seconds without any answer after which the build says it is waiting, and on what.
_QUIET_S = 60.0

# Statuses a server returns for a request every replica would refuse (the input is at fault), and what to check.
_CONTEXT = "check the model's context length against --short-max-tokens / --expansion-max-tokens"
_REFUSED_REQUEST = {
    400: _CONTEXT,
    404: "check the model name and that the URL ends in /v1",
    413: _CONTEXT,
    422: "check --engine-args and that the server speaks the chat-completions API",
}


def _data_url_part(part: ImagePart) -> dict:
    encoded = base64.b64encode(part.data).decode("ascii")
    return {"type": "image_url", "image_url": {"url": f"data:{part.mime_type};base64,{encoded}"}}


def request_body(model: str, request: Request) -> dict:
    """The chat-completions arguments for ``request``."""
    sampling = request.sampling
    body = {
        "model": model,
        "messages": chat_messages(request, image=_data_url_part),
        "n": sampling.n,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_tokens": sampling.max_tokens,
    }
    if sampling.seed is not None:
        body["seed"] = sampling.seed
    if sampling.stop:
        body["stop"] = list(sampling.stop)
    if request.schema:
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": request.schema}}
    extra = {}
    if sampling.top_k:
        extra["top_k"] = sampling.top_k
    if sampling.repetition_penalty != 1.0:
        extra["repetition_penalty"] = sampling.repetition_penalty
    if request.banned_words:
        extra["bad_words"] = list(request.banned_words)
    if request.prefill:
        extra.update(continue_final_message=True, add_generation_prompt=False)
    if extra:
        body["extra_body"] = extra
    return body


class _Malformed(Exception):
    """A 200 reply that is not a chat completion with one text per sample asked."""


def parse_completion(content: bytes, n: int) -> Response:
    """The ``Response`` of a chat-completion reply body; ``_Malformed`` saying why when it is not one."""
    try:
        data = json.loads(content)
    except ValueError:  # also not UTF-8
        start = content[:60].decode("utf-8", "replace")
        raise _Malformed(f"the reply is not JSON (it starts {start!r})") from None
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list):
        raise _Malformed("the reply holds no 'choices' list")
    if len(choices) != n:
        why = ": the server ignores n" if len(choices) == 1 else ""
        held = f"{len(choices)} choice{'' if len(choices) == 1 else 's'}"
        raise _Malformed(f"the reply holds {held} where n={n} samples were asked{why}")
    if all(isinstance(choice, dict) and type(choice.get("index")) is int for choice in choices):
        choices = sorted(choices, key=lambda choice: choice["index"])
    texts, reasons = [], []
    for choice in choices:
        message = choice.get("message") if isinstance(choice, dict) else None
        text = message.get("content") if isinstance(message, dict) else None
        if not isinstance(text, str):
            raise _Malformed(
                "a choice holds no text (message.content is missing or null; a server started with a reasoning "
                "parser puts the text elsewhere: serve without --reasoning-parser)"
            )
        reason = choice.get("finish_reason") or "length"
        if not isinstance(reason, str) or "," in reason:
            raise _Malformed(f"a choice has the finish_reason {reason!r}")
        texts.append(text)
        reasons.append(reason)
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    counts = [usage.get(name) for name in ("prompt_tokens", "completion_tokens")]
    prompt_tokens, output_tokens = (count if type(count) is int else 0 for count in counts)
    return Response(tuple(texts), tuple(reasons), prompt_tokens, output_tokens)


@dataclass(eq=False)
class _Replica:
    url: str
    client: object
    in_flight: int = 0
    dropped: str | None = None  # why it is out of rotation


@dataclass(frozen=True)
class _Down:
    """A replica failed after the client's retries: a reason to take it out of rotation, not to stop the stage."""

    why: str


@dataclass
class _Books:
    """What the calling thread knows of a stage: requests left, and where each one in flight went (by attempt)."""

    left: deque
    in_flight: dict = field(default_factory=dict)  # request index -> (attempt number, replica)


class OpenAIBackend:
    SETTINGS = {
        "concurrency": Setting("whole", at_least=1),  # requests in flight, over every replica together
        "max_retries": Setting("whole", at_least=0),  # retries of a transient failure on one replica
        "timeout": Setting("number", above=0),  # seconds without an answer before a try fails
        "api_key": Setting("text"),  # default: OPENAI_API_KEY, else any key (local servers take any)
    }
    EXTRA = "openai"
    supports_schema = True
    supports_banned_words = True

    @classmethod
    def from_spec(cls, spec, **options) -> OpenAIBackend:
        """The backend for a ``ModelSpec`` (``openai:NAME@URL,URL``)."""
        return cls(spec.model, spec.urls, **options)

    def __init__(
        self,
        model: str,
        urls: Sequence[str] = (),
        *,
        api_key: str | None = None,
        concurrency: int = 32,
        max_retries: int = 6,
        timeout: float = 600.0,
    ):
        from openai import OpenAI

        self.urls = list(urls) or [os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"]
        api_key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"  # local servers take any key
        self.model = model
        self.concurrency = concurrency
        self.timeout = timeout
        self.clients = [
            OpenAI(base_url=url, api_key=api_key, max_retries=max_retries, timeout=timeout) for url in self.urls
        ]

    def _failure(self, problem: str, exit_code: int = 1) -> GenerationError:
        return GenerationError(f"the openai backend, model {self.model}: {problem}", exit_code)

    def _call(self, replica: _Replica, request: Request) -> Response | _Down | GenerationError:
        """One request to one replica, on a worker thread: the response, or what went wrong (never raised)."""
        import openai

        at = f"{replica.url} "
        try:
            raw = replica.client.chat.completions.with_raw_response.create(**request_body(self.model, request))
            return parse_completion(raw.content, request.sampling.n)
        except _Malformed as error:
            return self._failure(
                f"{at}sent a reply that is not a chat completion: {error}; nothing of it was cached (is the URL an "
                "OpenAI-compatible server such as `vllm serve`?)"
            )
        except openai.APITimeoutError:
            return _Down(f"no answer within {self.timeout:g} s")
        except openai.APIConnectionError as error:
            return _Down(f"connection failed: {error.__cause__ or error}")
        except openai.APIStatusError as error:
            status = error.status_code
            message = _server_message(error)
            if status in _REFUSED_REQUEST:
                return self._failure(
                    f"{at}refused a request (HTTP {status}: {message}), as it would again: {_REFUSED_REQUEST[status]}",
                    2,
                )
            if status in (401, 403):
                return self._failure(f"{at}refused the API key (HTTP {status}: {message}): set OPENAI_API_KEY")
            return _Down(f"HTTP {status}: {message}")
        except Exception as error:  # anything else the client raises is still one line naming where it happened
            return self._failure(f"{at}failed: {type(error).__name__}: {error}")

    def generate(self, requests: Sequence[Request]) -> Iterator[list[tuple[int, Response]]]:
        replicas = [_Replica(url, client) for url, client in zip(self.urls, self.clients, strict=True)]
        books = _Books(deque(range(len(requests))))
        finished: queue.SimpleQueue = queue.SimpleQueue()  # (index, attempt, outcome) from the threads
        attempts = itertools.count()

        def send(index: int, attempt: int, replica: _Replica) -> None:
            finished.put((index, attempt, self._call(replica, requests[index])))

        while books.left or books.in_flight:
            while books.left and len(books.in_flight) < self.concurrency:
                index, attempt = books.left.popleft(), next(attempts)
                replica = min((r for r in replicas if r.dropped is None), key=lambda r: r.in_flight)
                replica.in_flight += 1
                books.in_flight[index] = (attempt, replica)
                threading.Thread(target=send, args=(index, attempt, replica), daemon=True).start()
            outcomes = _drain(finished, _QUIET_S)
            if not outcomes:  # a minute without an answer: say so, or a hung server looks like a hung build
                busy = sorted({replica.url for _, replica in books.in_flight.values()})
                logger.warning(
                    f"no answer for {_QUIET_S:g} s from {', '.join(busy)} ({len(books.in_flight)} requests in flight; "
                    f"a try gives up after {self.timeout:g} s); Ctrl-C stops the build"
                )
                continue
            batch, failure = [], None
            for index, attempt, outcome in outcomes:
                if books.in_flight.get(index, (None,))[0] != attempt:
                    continue  # sent again elsewhere since: the answer of the dropped replica is not used
                _, replica = books.in_flight.pop(index)
                replica.in_flight -= 1
                if isinstance(outcome, Response):
                    batch.append((index, outcome))
                elif isinstance(outcome, _Down):
                    books.left.appendleft(index)
                    self._drop(replica, outcome.why, replicas, books)
                else:
                    failure = failure or outcome
            if batch:  # what was answered is handed over (and cached) before any failure stops the stage
                yield batch
            if failure is None and all(r.dropped for r in replicas):
                reasons = "; ".join(f"{r.url}: {r.dropped}" for r in replicas)
                failure = self._failure(
                    f"no server answers ({reasons}): start them or check the URLs; what was answered is cached, and "
                    "a rerun sends only the rest"
                )
            if failure is not None:
                raise failure

    def _drop(self, replica: _Replica, why: str, replicas: list[_Replica], books: _Books) -> None:
        """Take ``replica`` out of rotation; its requests in flight go back to the front of the queue."""
        if replica.dropped is not None:
            return
        replica.dropped = why
        moved = [index for index, (_, where) in books.in_flight.items() if where is replica]
        for index in moved:
            del books.in_flight[index]
            books.left.appendleft(index)
        replica.in_flight = 0
        live = [r.url for r in replicas if r.dropped is None]
        if live:
            logger.warning(
                f"{replica.url} is out of rotation ({why}); its {len(moved) + 1} request(s) in flight go to "
                f"{', '.join(live)}"
            )


def _drain(finished: queue.SimpleQueue, wait: float) -> list:
    """What the threads have handed back: wait up to ``wait`` s for one outcome, then take every other one there."""
    try:
        outcomes = [finished.get(timeout=wait)]
    except queue.Empty:
        return []
    while True:
        try:
            outcomes.append(finished.get_nowait())
        except queue.Empty:
            return outcomes


def _server_message(error) -> str:
    """The server's own words from an error reply (``{"error": {"message": ...}}``), else the reply's start."""
    body = error.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, dict) else None
        if isinstance(message, str):
            return message[:300]
    return str(error.message)[:300]
