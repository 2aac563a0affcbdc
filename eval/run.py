"""``lgt eval run``: a model answers benchmarks through lgt's engine, in the SFT rows' shape; predictions, scores and
a report are written.

The protocol is the paper's: every item is asked exactly as an SFT row asks its question (``lgt.formats``: the
system prompt, the image(s), the question and options lettered ``(A) text``, "give the letter ... like
<answer>(X)</answer>"), so a model trained on lgt sees at test time what it saw in training; greedy decoding, up to
4,096 new tokens, images capped at ``max_pixels`` by the model's own processor (on an OpenAI-compatible server,
by the server's settings). Every request goes through ``lgt.generation.Engine``: a rerun reads every answer from the
cache (no model is loaded), a killed run resumes where it stopped, and a checkpoint retrained at the same path is
a new model to the cache (its files are hashed whole). Items go to the engine a chunk at a time, so only a chunk's
images are in memory however large the benchmark.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from datasets.utils import logging

from .. import formats
from ..answers import parse_answer
from ..errors import InputError
from ..generation import Engine, ModelSpec, Request, Sampling
from ..generation.request import request_messages
from .benchmarks import DATA_SUFFIXES, Benchmark, Item, Loaded, load, resolve
from .report import markdown
from .scoring import score

logger = logging.get_logger(__name__)

EVAL_STYLE = formats.RowStyle(option_style="paren", answer_format="paren")
TEMPLATE = "eval/mcq@1"  # a new version whenever what the model is shown changes: a new cache key
MAX_TOKENS = 4096
MAX_PIXELS = 1280 * 28 * 28  # Qwen2.5-VL's documented balance of detail and tokens; 262144 is the paper's training cap
CHUNK = 1024


def request(item: Item, max_tokens: int = MAX_TOKENS) -> Request:
    """What the model is asked for one item: the SFT rows' prompt, greedy."""
    turns = formats.prompt_messages(item.question, list(item.options), EVAL_STYLE, images=len(item.images))
    sampling = Sampling(temperature=0.0, max_tokens=max_tokens)
    return Request(messages=request_messages(turns, item.images), sampling=sampling, template=TEMPLATE)


def data_paths(benchmarks: list[Benchmark], data: str | Path | None) -> dict[str, Path]:
    """``--data``: one benchmark's file or folder, or, for several, a folder holding one per benchmark named after
    it (``DIR/mmvp/``, ``DIR/mmlu-pro.parquet``)."""
    if data is None:
        return {}
    data = Path(data)
    if len(benchmarks) == 1:
        return {benchmarks[0].name: data}
    paths = {}
    for benchmark in benchmarks:
        found = [data / benchmark.name] + [data / f"{benchmark.name}{suffix}" for suffix in DATA_SUFFIXES]
        existing = [path for path in found if path.exists()]
        if not existing:
            raise InputError(
                str(data),
                None,
                f"holds no {benchmark.name}/ or {benchmark.name}.<parquet|jsonl|...>: with several "
                "benchmarks, --data is a folder with one folder or file per benchmark, named after it",
            )
        paths[benchmark.name] = existing[0]
    return paths


def _chunks(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _write(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def run_eval(
    model: str,
    benchmarks: str | list[Benchmark],
    output: str | Path,
    data: str | Path | None = None,
    *,
    max_tokens: int = MAX_TOKENS,
    max_pixels: int | None = MAX_PIXELS,
    extract: str = "strict",
    cache: str | None = None,
    cache_only: bool = False,
    engine_args: dict | None = None,
    revision: str | None = None,
) -> dict:
    """Evaluate ``model`` (``BACKEND:MODEL``) on ``benchmarks`` (``--benchmark`` syntax or ``Benchmark``s); write
    ``output``/predictions.jsonl, scores.json and report.md; return what scores.json holds. ``revision`` pins the
    model's version in the cache key (a served model is otherwise known by its name alone)."""
    benchmarks = resolve(benchmarks) if isinstance(benchmarks, str) else benchmarks
    paths = data_paths(benchmarks, data)
    loaded = [load(benchmark, paths.get(benchmark.name)) for benchmark in benchmarks]  # every source before a call
    spec = ModelSpec.parse(model)
    options = dict(engine_args or {})
    if spec.backend == "openai":
        max_pixels = None  # the server's processor sizes images: start `vllm serve` with --mm-processor-kwargs
    elif max_pixels:
        options.setdefault("max_pixels", max_pixels)
    engine = Engine(model, cache=cache, cache_only=cache_only, revision=revision, **options)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    rows_by_benchmark: dict[str, list[dict]] = {}
    try:
        lines = []
        for benchmark in loaded:
            rows_by_benchmark[benchmark.benchmark.name] = rows = _answer(engine, benchmark, max_tokens, extract)
            lines += [json.dumps(row, ensure_ascii=False) for row in rows]
        _write(output / "predictions.jsonl", "\n".join(lines) + "\n")
    finally:
        engine.close()
    run = {
        "model": f"{spec.backend}:{spec.name}",
        "model_revision": engine.revision,
        "protocol": {
            "system_prompt": formats.SYSTEM_PROMPT,
            "option_style": EVAL_STYLE.option_style,
            "answer_format": EVAL_STYLE.answer_format,
            "template": TEMPLATE,
            "temperature": 0.0,
            "max_tokens": max_tokens,
            "max_pixels": max_pixels,
            "extract": extract,
        },
        "benchmarks": {
            benchmark.benchmark.name: {
                **score(rows_by_benchmark[benchmark.benchmark.name], benchmark.benchmark.aggregation),
                "extract": extract,
                "title": benchmark.benchmark.title,
                "source": benchmark.source,
                "skipped": dict(benchmark.skipped),
            }
            for benchmark in loaded
        },
        "generation": engine.stats.summary(),
        "generation_stats": engine.stats.as_dict(),
    }
    _write(output / "scores.json", json.dumps(run, indent=2, ensure_ascii=False) + "\n")
    _write(output / "report.md", markdown(run))
    return run


def _answer(engine: Engine, benchmark: Loaded, max_tokens: int, extract: str) -> list[dict]:
    """Every item of ``benchmark`` asked, read and turned into a predictions row."""
    name = benchmark.benchmark.name
    rows = []
    for chunk in _chunks(benchmark.items(), CHUNK):
        responses = engine.generate([request(item, max_tokens) for item in chunk], desc=f"eval {name}")
        for item, response in zip(chunk, responses, strict=True):
            rows.append(
                {
                    "id": item.id,
                    "benchmark": name,
                    "category": item.category,
                    "subcategory": item.subcategory,
                    "question": item.question,
                    "options": list(item.options),
                    "answer": item.answer,
                    "response": response.texts[0],
                    "prediction": parse_answer(response.texts[0], list(item.options), extract),
                    "finish_reason": response.finish_reasons[0],
                }
            )
    if not rows:
        raise InputError(benchmark.source.get("data") or benchmark.source["hub_id"], None, f"no {name} items in it")
    logger.info(f"{name}: {len(rows):,} items answered")
    return rows
