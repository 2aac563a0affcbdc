"""Which model answers, named by one string, and the one method every backend implements.

    vllm:Qwen/Qwen2.5-VL-7B-Instruct              the offline vLLM engine in this process (GPU)
    vllm:/models/qwen2.5-vl-7b                     ... from a local folder
    openai:Qwen/Qwen2.5-VL-7B-Instruct@http://127.0.0.1:8000/v1,http://127.0.0.1:8001/v1
                                                   OpenAI-compatible servers (vllm serve, SGLang, a hosted API);
                                                   requests spread over every URL; without @URLs, OPENAI_BASE_URL
    transformers:/models/tiny-qwen2.5-vl           a local model with batched ``generate`` (CPU-capable)

A model's identity in the cache is its name and revision, not where it lies: a local folder is named by its
basename and a fingerprint of its files, so a copied model, or a cache imported on another machine, still hits.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .request import Request, Response

# backend name -> "module:class" in this package, imported only when a model of it is loaded (vllm, openai and torch
# are optional extras). Each class builds itself from a spec: ``from_spec(spec, **options)``.
BACKENDS = {
    "vllm": "vllm_backend:VLLMBackend",
    "openai": "openai_backend:OpenAIBackend",
    "transformers": "transformers_backend:TransformersBackend",
}
# Files at most this large are hashed whole for a local model's fingerprint; larger ones (weights) by their size
# and first and last MiB, which differ between any two trainings and cost milliseconds to read.
_WHOLE_FILE_LIMIT = 8 << 20
_SAMPLE = 1 << 20


@dataclass(frozen=True)
class ModelSpec:
    """A parsed backend string: ``backend``, ``model`` (hub id, local path or served name), ``urls`` (openai)."""

    backend: str
    model: str
    urls: tuple[str, ...] = ()

    @classmethod
    def parse(cls, spec: str) -> ModelSpec:
        backend, sep, rest = spec.partition(":")
        if not sep or backend not in BACKENDS or not rest:
            raise ValueError(
                f"model {spec!r} is not BACKEND:MODEL with BACKEND one of {', '.join(BACKENDS)} "
                "(e.g. vllm:Qwen/Qwen2.5-VL-7B-Instruct, openai:NAME@http://127.0.0.1:8000/v1, transformers:PATH)"
            )
        model, _, urls = rest.partition("@") if backend == "openai" else (rest, "", "")
        return cls(backend, model, tuple(url for url in urls.split(",") if url))

    @property
    def is_local(self) -> bool:
        return self.backend != "openai" and Path(self.model).is_dir()

    @property
    def name(self) -> str:
        """What the cache and every row's ``generator`` call the model: a hub id, or a local folder's name."""
        return Path(self.model).name if self.is_local else self.model

    def revision(self, pinned: str | None = None) -> str:
        """The model's version: ``pinned`` if given, a local folder's fingerprint, or the hub commit."""
        if pinned:
            return pinned
        if self.backend == "openai":
            return ""  # a served model is known by its name; pin a revision to tell two deployments apart
        if self.is_local:
            return folder_fingerprint(Path(self.model))
        return _hub_commit(self.model)


def folder_fingerprint(folder: Path) -> str:
    """A short hash of a model folder's files: small files whole, weight files by size and their ends."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        size = path.stat().st_size
        digest.update(f"{path.relative_to(folder).as_posix()}\0{size}\0".encode())
        with open(path, "rb") as f:
            if size <= _WHOLE_FILE_LIMIT:
                digest.update(f.read())
            else:
                digest.update(f.read(_SAMPLE))
                f.seek(size - _SAMPLE)
                digest.update(f.read(_SAMPLE))
    return digest.hexdigest()[:16]


def _hub_commit(repo_id: str) -> str:
    """The commit of a hub model: the local snapshot's, else asked of the Hub (no weights are downloaded)."""
    from huggingface_hub import HfApi, try_to_load_from_cache

    cached = try_to_load_from_cache(repo_id, "config.json")
    if isinstance(cached, str):
        match = re.search(r"/snapshots/([0-9a-f]{40})/", cached.replace(os.sep, "/"))
        if match:
            return match.group(1)
    return HfApi().model_info(repo_id).sha or ""


class Backend(Protocol):
    """A loaded model. ``generate`` yields ``(index, response)`` batches in the order they finish.

    The engine hands over a whole stage at once and stores each yielded batch as soon as it arrives, so a
    backend should keep as many requests in flight as it can and yield as soon as any are done.
    """

    supports_schema: bool
    supports_banned_words: bool

    def generate(self, requests: Sequence[Request]) -> Iterator[list[tuple[int, Response]]]: ...


def input_settings(options: dict) -> dict:
    """The backend options that change what the model sees, and so belong in the cache key."""
    return {"max_pixels": options["max_pixels"]} if options.get("max_pixels") else {}


def open_backend(spec: ModelSpec, options: dict) -> Backend:
    """Load the model ``spec`` names; ``options`` are the backend's own keyword arguments."""
    module, _, name = BACKENDS[spec.backend].partition(":")
    backend = getattr(importlib.import_module(f".{module}", __package__), name)
    return backend.from_spec(spec, **options)
