"""What is asked of a model and what it answered: plain frozen records every backend and the cache share.

A ``Request`` is complete: the rendered chat messages (images as their encoded bytes), the sampling parameters, an
assistant prefill to continue from, banned words, a JSON schema and the version of the prompt template that wrote
it. Everything that could change the answer is in it, so ``request_key`` can address the answer by content alone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from ..images import decode


@dataclass(frozen=True)
class ImagePart:
    """An image inside a message, as encoded bytes (JPEG/PNG/WEBP); the cache key holds its content hash."""

    data: bytes = field(repr=False)

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def mime_type(self) -> str:
        if self.data.startswith(b"\x89PNG"):
            return "image/png"
        if self.data[8:12] == b"WEBP":
            return "image/webp"
        return "image/jpeg"

    def to_pil(self):
        """The decoded image, for backends that take pixels (sources already stored it as 8-bit RGB)."""
        return decode(self.data)


Part = str | ImagePart


@dataclass(frozen=True)
class Message:
    """One chat turn; ``content`` is a tuple of text and image parts, in the order the model should see them."""

    role: str
    content: tuple[Part, ...]

    @classmethod
    def text(cls, role: str, text: str) -> Message:
        return cls(role, (text,))

    @property
    def images(self) -> list[ImagePart]:
        return [part for part in self.content if isinstance(part, ImagePart)]

    @property
    def joined_text(self) -> str:
        return "".join(part for part in self.content if isinstance(part, str))


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters, named as in vLLM. ``temperature=0`` is greedy; ``top_k=0`` means no top-k cut."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_tokens: int = 512
    seed: int | None = None
    stop: tuple[str, ...] = ()
    repetition_penalty: float = 1.0


@dataclass(frozen=True)
class Request:
    """One generation: messages, sampling, and what the backend must respect while decoding.

    ``prefill`` is text the assistant's turn already starts with; the model continues it and the response holds
    only the continuation. ``template`` is the prompt template's ``name@version``: a new prompt version is a new
    key even when it renders the same text, so a published cache never mixes prompt versions.
    """

    messages: tuple[Message, ...]
    sampling: Sampling = Sampling()
    prefill: str = ""
    banned_words: tuple[str, ...] = ()
    schema: dict | None = field(default=None, hash=False)
    template: str = ""

    @property
    def images(self) -> list[ImagePart]:
        return [image for message in self.messages for image in message.images]


def request_messages(turns: list[dict], images: Sequence[bytes]) -> tuple[Message, ...]:
    """TRL conversational turns (``content`` parts typed ``text`` or ``image``, as ``lgt.formats`` writes them) as
    request messages, the image parts filled with ``images`` in order."""
    slots = sum(part["type"] == "image" for turn in turns for part in turn["content"])
    if slots != len(images):
        raise ValueError(f"{len(images)} images for {slots} image parts")
    pending = iter(images)
    return tuple(
        Message(
            turn["role"],
            tuple(ImagePart(next(pending)) if p["type"] == "image" else p["text"] for p in turn["content"]),
        )
        for turn in turns
    )


def chat_messages(request: Request, image: Callable[[ImagePart], dict[str, Any]]) -> list[dict[str, Any]]:
    """The request as OpenAI-style chat messages, each image part made by ``image``; the prefill as a last turn.

    Text-only turns stay plain strings, which every chat template accepts.
    """
    messages = []
    for message in request.messages:
        if message.images:
            content = [
                image(part) if isinstance(part, ImagePart) else {"type": "text", "text": part}
                for part in message.content
            ]
        else:
            content = message.joined_text
        messages.append({"role": message.role, "content": content})
    if request.prefill:
        messages.append({"role": "assistant", "content": request.prefill})
    return messages


@dataclass(frozen=True)
class Response:
    """The ``n`` texts a model wrote for one request, why each stopped ('stop' or 'length'), and the token counts."""

    texts: tuple[str, ...]
    finish_reasons: tuple[str, ...]
    prompt_tokens: int
    output_tokens: int


def _part_key(part: Part) -> str | dict:
    return part if isinstance(part, str) else {"image": part.sha256}


def request_key(request: Request, model: str, revision: str, settings: dict | None = None) -> bytes:
    """sha256 over everything that decides the answer: model, revision, backend input settings and the request.

    ``settings`` are the backend options that change what the model sees (an image pixel cap); options that only
    change speed (batch size, concurrency) stay out so they can be tuned without losing the cache.
    """
    sampling = request.sampling
    payload = {
        "model": model,
        "revision": revision,
        "settings": settings or {},
        "messages": [[m.role, [_part_key(p) for p in m.content]] for m in request.messages],
        "sampling": [
            sampling.n,
            sampling.temperature,
            sampling.top_p,
            sampling.top_k,
            sampling.max_tokens,
            sampling.seed,
            list(sampling.stop),
            sampling.repetition_penalty,
        ],
        "prefill": request.prefill,
        "banned_words": list(request.banned_words),
        "schema": request.schema,
        "template": request.template,
    }
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).digest()
