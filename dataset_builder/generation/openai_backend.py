"""Any OpenAI-compatible chat endpoint: ``vllm serve``, SGLang, or a hosted API; a fleet of replicas scales out.

Requests go out on a bounded pool of threads, each to the base URL with the fewest requests in flight, so a
fleet of unequal replicas stays evenly loaded. The ``openai`` client retries transient failures (connection
errors, 408, 409, 429, 5xx) with exponential backoff and jitter and raises any other error at once: a request the
server rejects would be rejected again. Sampling settings outside the OpenAI API (top_k, repetition penalty,
banned words, continuing a prefill) are sent as the extra fields vLLM and SGLang read.
"""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from .request import ImagePart, Request, Response, chat_messages


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


class OpenAIBackend:
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

        urls = list(urls) or [os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"]
        api_key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"  # local servers take any key
        self.model = model
        self.concurrency = concurrency
        self.clients = [
            OpenAI(base_url=url, api_key=api_key, max_retries=max_retries, timeout=timeout) for url in urls
        ]
        self._in_flight = [0] * len(self.clients)
        self._lock = threading.Lock()

    def _call(self, request: Request) -> Response:
        with self._lock:
            chosen = min(range(len(self.clients)), key=self._in_flight.__getitem__)
            self._in_flight[chosen] += 1
        try:
            completion = self.clients[chosen].chat.completions.create(**request_body(self.model, request))
        finally:
            with self._lock:
                self._in_flight[chosen] -= 1
        choices = sorted(completion.choices, key=lambda choice: choice.index)
        return Response(
            texts=tuple(choice.message.content or "" for choice in choices),
            finish_reasons=tuple(choice.finish_reason or "length" for choice in choices),
            prompt_tokens=completion.usage.prompt_tokens if completion.usage else 0,
            output_tokens=completion.usage.completion_tokens if completion.usage else 0,
        )

    def generate(self, requests: Sequence[Request]) -> Iterator[list[tuple[int, Response]]]:
        queue = iter(enumerate(requests))
        running: dict[Future, int] = {}
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="lgt-openai") as pool:

            def submit_next() -> None:
                for index, request in queue:
                    running[pool.submit(self._call, request)] = index
                    return

            try:
                for _ in range(2 * self.concurrency):  # a second round queued keeps every thread busy
                    submit_next()
                while running:
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    batch = []
                    for future in done:
                        batch.append((running.pop(future), future.result()))
                        submit_next()
                    yield batch
            finally:
                for future in running:
                    future.cancel()
