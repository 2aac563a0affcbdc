"""The one door to a model: a whole stage's requests in, responses out, every answer cached by content.

``Engine.generate`` looks every request up in the cache first (batched reads), sends only the misses to the
backend in one submission so it can keep its batch full, and stores each answer as soon as the backend hands it
over, one transaction per batch (a few tens of microseconds in WAL mode): a build killed mid-stage, even with
``kill -9``, resumes where it stopped and repeats no call that was answered. The backend is loaded only when
something is missing, so a rebuild from a warm cache never loads a model, and ``cache_only`` makes a miss an error.

Only real answers are cached: a response must hold one text per sample asked (``n``), or nothing of it is stored
and the stage stops. Every failure of a backend, while loading or generating, reaches the user as one
``GenerationError`` line naming the backend, the model (and the server URL where there is one) and what to do;
``-v`` logs the traceback of one the backend did not describe itself.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from datasets.utils import logging
from datasets.utils.tqdm import tqdm

from ..errors import GenerationError
from .backend import Backend, ModelSpec, backend_class, check_models, input_settings, open_backend
from .cache import GenerationCache, default_cache_path
from .request import Request, Response, request_key

logger = logging.get_logger(__name__)


class CacheMissError(RuntimeError):
    """A cache-only engine was asked for something its cache does not hold."""


@dataclass
class GenerationStats:
    """What a build's generation cost: requests answered from the cache, sent to the model, tokens and seconds."""

    requests: int = 0
    hits: int = 0
    misses: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0

    @property
    def output_tokens_per_second(self) -> float:
        return self.output_tokens / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "seconds": round(self.seconds, 2)}

    def summary(self) -> str:
        """One line for a log, the command's output and the card."""
        share = f" ({100 * self.hits / self.requests:.0f}%)" if self.requests else ""
        return (
            f"{self.requests:,} requests, {self.hits:,} answered by the cache{share}, {self.misses:,} model calls; "
            f"{self.prompt_tokens:,} prompt and {self.output_tokens:,} output tokens generated in {self.seconds:.1f} s"
            f" ({self.output_tokens_per_second:,.0f} output tokens/s)"
        )


class Engine:
    """Cached generation with one model, named by a backend string (see ``backend.py``).

    ``options`` go to the backend (``batch_size``, ``max_pixels``, ``concurrency``, vLLM engine arguments ...), each
    checked against the backend's ``SETTINGS`` first; ``revision`` pins the model's version in the cache key instead
    of fingerprinting it. Pass a ``GenerationCache(path, read_only=True)`` to only read a cache.
    """

    def __init__(
        self,
        model: str,
        cache: GenerationCache | str | None = None,
        *,
        cache_only: bool = False,
        revision: str | None = None,
        progress: bool = True,
        **options,
    ):
        self.spec = ModelSpec.parse(model)
        check_models({None: model}, options)
        self.cache = cache if isinstance(cache, GenerationCache) else GenerationCache(cache or default_cache_path())
        self.cache_only = cache_only
        self.revision = self.spec.revision(revision)
        self.settings = input_settings(options)
        self.options = options
        self.progress = progress
        self.stats = GenerationStats()
        self._backend: Backend | None = None
        self._warned: set[str] = set()

    @property
    def model_id(self) -> str:
        """The model as rows' ``generator`` names it: ``name@revision``."""
        return f"{self.spec.name}@{self.revision[:12]}" if self.revision else self.spec.name

    @property
    def described(self) -> str:
        """The backend and model, for an error line: ``the vllm backend, model Qwen/...``."""
        urls = f" at {', '.join(self.spec.urls)}" if self.spec.urls else ""
        return f"the {self.spec.backend} backend, model {self.spec.model}{urls}"

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            logger.info(f"loading {self.spec.backend} model {self.spec.model}")
            try:
                self._backend = open_backend(self.spec, self.options)
            except GenerationError:
                raise
            except ImportError as error:
                extra = backend_class(self.spec.backend).EXTRA
                raise GenerationError(
                    f"{self.described}: {error.name or 'a package it needs'} cannot be imported ({error}): "
                    f'pip install ".[{extra}]"'
                ) from error
            except Exception as error:  # a missing or broken model, no GPU, out of memory: each library its own kind
                logger.debug(f"{self.described} cannot be loaded", exc_info=True)
                raise GenerationError(
                    f"{self.described} cannot be loaded: {_first_line(error)}; check the model name or folder and "
                    "--engine-args (-v shows the traceback)"
                ) from error
        return self._backend

    def key(self, request: Request) -> bytes:
        return request_key(request, self.spec.name, self.revision, self.settings)

    def generate(self, requests: Sequence[Request], desc: str = "Generating") -> list[Response]:
        """One response per request, in order: cached ones read back, the rest generated and stored as they finish."""
        keys = [self.key(request) for request in requests]
        found = self.cache.get_many(set(keys))
        missing: dict[bytes, Request] = {}
        for key, request in zip(keys, requests, strict=True):
            if key not in found:
                missing.setdefault(key, request)
        self.stats.requests += len(requests)
        self.stats.hits += len(requests) - len(missing)
        logger.info(f"{desc}: {len(requests) - len(missing)} of {len(requests)} requests answered by the cache")
        if missing:
            if self.cache_only:
                raise CacheMissError(
                    f"{len(missing)} of {len(requests)} requests to {self.model_id} are not in the generation cache "
                    f"{self.cache.path} (cache-only mode): run without cache-only to generate them, or import the "
                    "cache published with the dataset"
                )
            found.update(self._generate_missing(missing, desc))
        return [found[key] for key in keys]

    def _generate_missing(self, missing: dict[bytes, Request], desc: str) -> dict[bytes, Response]:
        self._warn_unsupported(missing.values())
        keys, requests = list(missing), list(missing.values())
        done: dict[bytes, Response] = {}
        start = time.perf_counter()
        bar = tqdm(total=len(requests), desc=f"{desc} ({self.spec.name})", unit=" req", disable=not self.progress)
        try:
            for answered in self._answers(requests):
                batch = [(index, response) for index, response in answered if self._real(requests[index], response)]
                # Stored at once, one transaction per batch: a kill loses only what the backend has not handed over.
                self.cache.put_many((keys[i], self.spec.name, requests[i].template, r) for i, r in batch)
                if len(batch) < len(answered):
                    index, response = next(item for item in answered if item not in batch)
                    raise GenerationError(
                        f"{self.described} answered a request with {len(response.texts)} texts where "
                        f"n={requests[index].sampling.n} samples were asked; it was not cached"
                    )
                for index, response in batch:
                    done[keys[index]] = response
                    self.stats.misses += 1
                    self.stats.prompt_tokens += response.prompt_tokens
                    self.stats.output_tokens += response.output_tokens
                bar.update(len(batch))
                bar.set_postfix(
                    hits=self.stats.hits,
                    misses=self.stats.misses,
                    tok_s=round(self.stats.output_tokens / max(time.perf_counter() - start, 1e-9)),
                    refresh=False,
                )
        finally:
            self.stats.seconds += time.perf_counter() - start
            bar.close()
        if len(done) != len(requests):
            raise GenerationError(f"{self.described} answered {len(done)} of {len(requests)} requests")
        return done

    def _answers(self, requests: list[Request]):
        """The backend's batches; a failure it did not describe becomes one line naming the backend and model."""
        try:
            yield from self.backend.generate(requests)
        except GenerationError:
            raise
        except Exception as error:
            logger.debug(f"{self.described} failed", exc_info=True)
            raise GenerationError(
                f"{self.described} failed while generating: {_first_line(error)}; what it answered is cached, and a "
                "rerun sends only the rest (-v shows the traceback)"
            ) from error

    @staticmethod
    def _real(request: Request, response: Response) -> bool:
        """Only real answers reach the cache: one text and one finish reason per sample asked."""
        n = request.sampling.n
        texts, reasons = response.texts, response.finish_reasons
        return len(texts) == n and len(reasons) == n and all(isinstance(text, str) for text in texts)

    def _warn_unsupported(self, requests) -> None:
        """Say once per engine what the backend cannot enforce (a stage sends several rounds of requests)."""
        backend = self.backend
        warnings = []
        if not backend.supports_schema and any(r.schema for r in requests):
            warnings.append(f"the {self.spec.backend} backend cannot constrain output to a JSON schema; parsing only")
        if not backend.supports_banned_words and any(r.banned_words for r in requests):
            warnings.append(f"the {self.spec.backend} backend cannot ban words; they are ignored")
        for warning in warnings:
            if warning not in self._warned:
                logger.warning(warning)
                self._warned.add(warning)

    def close(self) -> None:
        self.cache.close()


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
