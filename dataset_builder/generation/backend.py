"""Which model answers, named by one string, and the one method every backend implements.

    vllm:Qwen/Qwen2.5-VL-7B-Instruct              the offline vLLM engine in this process (GPU)
    vllm:/models/qwen2.5-vl-7b                     ... from a local folder
    openai:Qwen/Qwen2.5-VL-7B-Instruct@http://127.0.0.1:8000/v1,http://127.0.0.1:8001/v1
                                                   OpenAI-compatible servers (vllm serve, SGLang, a hosted API);
                                                   requests spread over every URL; without @URLs, OPENAI_BASE_URL
    transformers:/models/tiny-qwen2.5-vl           a local model with batched ``generate`` (CPU-capable)

A model's identity in the cache is its name and revision, not where it lies: a local folder is named by its
basename and a fingerprint of its files' whole content, so a copied model, or a cache imported on another machine,
still hits, and a checkpoint retrained at the same path does not.

Each backend class declares the ``--engine-args`` keys it takes (``SETTINGS``: kind, bounds, meaning) and the extra
that installs it (``EXTRA``); ``check_models`` checks the model strings and those keys before a build does any work.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

from datasets.utils import logging

from ..errors import GenerationError
from .request import Request, Response

logger = logging.get_logger(__name__)

# backend name -> "module:class" in this package, imported only when a model of it is loaded (vllm, openai and torch
# are optional extras). Each class builds itself from a spec: ``from_spec(spec, **options)``.
BACKENDS = {
    "vllm": "vllm_backend:VLLMBackend",
    "openai": "openai_backend:OpenAIBackend",
    "transformers": "transformers_backend:TransformersBackend",
}
# Read size when hashing a model's files; the memo of file digests beside the generation cache is named here.
_CHUNK = 8 << 20
_DIGESTS_FILE = "file_digests.json"


@dataclass(frozen=True)
class Setting:
    """One ``--engine-args`` key a backend takes: ``kind`` (whole, number, text, flag, object, any) and its bounds."""

    kind: str
    at_least: float | None = None
    above: float | None = None
    at_most: float | None = None

    def problem(self, value) -> str | None:
        """What is wrong with ``value`` for this setting, as "must be ...", or ``None``."""
        if self.kind == "any":
            return None
        if self.kind == "flag":
            return None if type(value) is bool else "must be true or false"
        if self.kind == "text":
            return None if isinstance(value, str) else "must be text"
        if self.kind == "object":
            return None if isinstance(value, dict) else "must be a JSON object"
        whole = self.kind == "whole"
        fits = type(value) is int if whole else type(value) in (int, float) and math.isfinite(value)
        fits = fits and not (self.at_least is not None and value < self.at_least)
        fits = fits and not (self.above is not None and value <= self.above)
        fits = fits and not (self.at_most is not None and value > self.at_most)
        if fits:
            return None
        bounds = [
            f"from {self.at_least:g} up" if self.at_least is not None else "",
            f"above {self.above:g}" if self.above is not None else "",
            f"at most {self.at_most:g}" if self.at_most is not None else "",
        ]
        return f"must be {'a whole number' if whole else 'a number'} {' '.join(b for b in bounds if b)}".strip()


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

    def __str__(self) -> str:
        return f"{self.backend}:{self.model}" + (f"@{','.join(self.urls)}" if self.urls else "")

    def check(self) -> None:
        """``ValueError`` for what is wrong before anything is loaded: a server URL that is not http(s), a local model
        folder that does not exist (a name that is neither a folder nor a Hub id)."""
        if self.backend == "openai":
            for url in self.urls:
                parsed = urlparse(url)
                if parsed.scheme not in ("http", "https") or not parsed.netloc:
                    raise ValueError(f"model {self}: {url!r} is not a server URL such as http://127.0.0.1:8000/v1")
            return
        path = Path(self.model)
        if path.is_dir():
            return
        if path.exists():
            raise ValueError(f"model {self}: {self.model} is a file, not a model folder")
        from huggingface_hub.utils import HFValidationError, validate_repo_id

        try:
            validate_repo_id(self.model)
        except HFValidationError:
            raise ValueError(
                f"model {self}: there is no model folder at {self.model} (and it is not a Hub id such as "
                "Qwen/Qwen2.5-VL-7B-Instruct)"
            ) from None

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
    """A short hash of a model folder: every file's relative name and every byte of its content (hidden files aside).

    Every byte counts: a retrained checkpoint may differ from the one it replaced only in the middle of a shard (a
    frozen vision tower at the ends, LoRA merged into a few projections), and a stale cache key there would read the
    old model's answers. Hashing a 7B checkpoint takes seconds, so each file's digest is remembered beside the
    generation cache under its path, size, modification and change times and inode: a rerun re-reads nothing, and a
    file written again (same path, new content) is hashed again. A copied folder hashes the same, so it still hits.
    """
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    digests = file_digests(files)
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.relative_to(folder).as_posix()}\0{digests[path]}\0".encode())
    return digest.hexdigest()[:16]


def file_digests(files: list[Path]) -> dict[Path, str]:
    """The sha256 of each file: from the memo when the file is unchanged since, else read (files in parallel)."""
    from .cache import default_cache_path

    memo_path = default_cache_path().parent / _DIGESTS_FILE
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    stamps = {path: _stamp(path) for path in files}
    digests = {path: memo[str(path.resolve())]["sha256"] for path in files if _memo_holds(memo, path, stamps[path])}
    stale = [path for path in files if path not in digests]
    if not stale:
        return digests
    with ThreadPoolExecutor(min(8, len(stale))) as pool:  # hashlib releases the GIL on large reads
        digests.update(zip(stale, pool.map(_sha256, stale), strict=True))
    memo = {name: entry for name, entry in memo.items() if os.path.exists(name)}  # forget deleted files
    memo.update({str(path.resolve()): {"stamp": stamps[path], "sha256": digests[path]} for path in stale})
    try:
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        partial = memo_path.with_name(f".{_DIGESTS_FILE}.{os.getpid()}")
        partial.write_text(json.dumps(memo))
        os.replace(partial, memo_path)
    except OSError as error:  # a read-only cache folder only costs the next run a re-read
        logger.warning(f"cannot remember file digests in {memo_path}: {error}")
    return digests


def _stamp(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, stat.st_dev]


def _memo_holds(memo: dict, path: Path, stamp: list[int]) -> bool:
    entry = memo.get(str(path.resolve()))
    return isinstance(entry, dict) and entry.get("stamp") == stamp and isinstance(entry.get("sha256"), str)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _hub_commit(repo_id: str) -> str:
    """The commit of a hub model: the local snapshot's, else asked of the Hub (no weights are downloaded)."""
    from huggingface_hub import HfApi, try_to_load_from_cache
    from huggingface_hub.utils import RepositoryNotFoundError

    cached = try_to_load_from_cache(repo_id, "config.json")
    if isinstance(cached, str):
        match = re.search(r"/snapshots/([0-9a-f]{40})/", cached.replace(os.sep, "/"))
        if match:
            return match.group(1)
    try:
        return HfApi().model_info(repo_id).sha or ""
    except RepositoryNotFoundError:
        raise GenerationError(
            f"model {repo_id}: no such model on the Hub (or it is private: log in with `hf auth login`)", 2
        ) from None
    except Exception as error:  # offline, no network, the Hub down: huggingface_hub raises many kinds
        raise GenerationError(
            f"model {repo_id}: not in the local Hugging Face cache, and the Hub cannot be asked for its revision "
            f"({type(error).__name__}): download it where the Hub is reachable (`hf download {repo_id}`; for a dry "
            "run its tokenizer is enough: `hf download "
            f"{repo_id} --exclude '*.safetensors' '*.bin' '*.pt'`), or name a local folder"
        ) from None


class Backend(Protocol):
    """A loaded model. ``generate`` yields ``(index, response)`` batches in the order they finish.

    The engine hands over a whole stage at once and stores each yielded batch as soon as it arrives, so a
    backend should keep as many requests in flight as it can and yield as soon as any are done. A failure the user
    can act on is a ``GenerationError`` naming the backend, model and URL; the engine makes any other one a line too.
    ``SETTINGS`` are the ``--engine-args`` keys it takes, ``EXTRA`` the ``pip install ".[EXTRA]"`` that installs it.
    """

    SETTINGS: dict[str, Setting]
    EXTRA: str
    supports_schema: bool
    supports_banned_words: bool

    def generate(self, requests: Sequence[Request]) -> Iterator[list[tuple[int, Response]]]: ...


def input_settings(options: dict) -> dict:
    """The backend options that change what the model sees, and so belong in the cache key."""
    return {"max_pixels": options["max_pixels"]} if options.get("max_pixels") else {}


def backend_class(name: str) -> type:
    """The class of backend ``name`` (its module imports no optional package until a model is loaded)."""
    module, _, attribute = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(f".{module}", __package__), attribute)


def open_backend(spec: ModelSpec, options: dict) -> Backend:
    """Load the model ``spec`` names; ``options`` are the backend's own keyword arguments."""
    return backend_class(spec.backend).from_spec(spec, **options)


def check_models(models: Mapping[str | None, str], engine_args: dict | None) -> None:
    """Check, before any work, what can be checked without loading a model: each model string of ``models`` (role ->
    ``BACKEND:MODEL``; role ``None`` outside a build) parses and names an existing folder, a Hub id or server URLs,
    and every ``--engine-args`` key is one each backend in use takes, of the right kind. ``ValueError`` with one line
    naming the key or the model."""
    backends = {}
    for role, model in models.items():
        spec = ModelSpec.parse(model)
        spec.check()
        backends.setdefault(spec.backend, role)
    for name, role in backends.items():
        cls = backend_class(name)
        where = f"the {name} backend of --{role}" if role else f"the {name} backend"
        for key, value in (engine_args or {}).items():
            setting = cls.SETTINGS.get(key)
            if setting is None and hasattr(cls, "other_setting"):  # vLLM: its own engine arguments too
                setting = cls.other_setting(key)
            if setting is None:
                raise ValueError(
                    f"--engine-args: {where} takes no setting {key!r}; it takes {', '.join(sorted(cls.SETTINGS))}"
                )
            problem = setting.problem(value)
            if problem:
                raise ValueError(f"--engine-args: {key!r} {problem}, not {value!r} ({where})")
