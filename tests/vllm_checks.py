"""Run inside the vLLM virtualenv by test_vllm.py: lgt's vllm and openai backends on the tiny models, for real.

    python tests/vllm_checks.py offline MODELS CACHE     # vllm.LLM in this process: text model, then the VLM
    python tests/vllm_checks.py served MODELS CACHE URL  # the openai backend against `vllm serve` of the VLM

Prints one JSON object of what came back; test_vllm.py judges it.
"""

from __future__ import annotations

import io
import json
import re
import sys
from dataclasses import asdict, replace
from pathlib import Path

from lgt.generation import Engine, ImagePart, Message, Request, Sampling
from PIL import Image

ANSWER_SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string", "enum": ["A", "B", "C", "D"]}},
    "required": ["answer"],
    "additionalProperties": False,
}
# Tiny, slow CPU: keep the engine small and skip graph compilation.
VLLM_ARGS = {"max_model_len": 1024, "dtype": "float32", "enforce_eager": True, "max_num_seqs": 16}


def _png(colour) -> ImagePart:
    out = io.BytesIO()
    Image.new("RGB", (120, 90), colour).save(out, format="PNG")
    return ImagePart(out.getvalue())


def _requests(with_images: bool) -> dict[str, Request]:
    plain = Request((Message.text("user", "Describe the picture."),), Sampling(max_tokens=12, seed=3))
    requests = {
        "seeded": plain,
        "greedy": replace(plain, sampling=Sampling(temperature=0, max_tokens=12)),
        "sampled": replace(plain, sampling=Sampling(n=2, temperature=1.0, max_tokens=12, seed=7)),
        "structured": replace(
            plain,
            messages=(Message.text("user", "Which option is correct? Reply in JSON."),),
            sampling=Sampling(temperature=1.0, max_tokens=24, seed=1),
            schema=ANSWER_SCHEMA,
        ),
        "prefilled": replace(plain, prefill="The answer is"),
    }
    if with_images:
        question = Request((Message.text("user", "How many dogs are there?"),), Sampling(temperature=0, max_tokens=12))
        requests["question_alone"] = question
        for name, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
            message = Message("user", (_png(colour), question.messages[0].joined_text))
            requests[f"image_{name}"] = replace(question, messages=(message,))
    return requests


def _run(engine: Engine, requests: dict[str, Request]) -> dict:
    responses = engine.generate(list(requests.values()))
    out = {name: asdict(response) for name, response in zip(requests, responses, strict=True)}
    seeded = out["seeded"]["texts"][0]
    banned_word = re.search(r"[A-Za-z]{2,}", seeded).group(0)
    banned = engine.generate([replace(requests["seeded"], banned_words=(banned_word,))])[0]
    stop = seeded[2:5]
    with_stop = replace(requests["seeded"], sampling=replace(requests["seeded"].sampling, stop=(stop,)))
    stopped = engine.generate([with_stop])
    out["banned"] = {"word": banned_word, "text": banned.texts[0]}
    out["stopped"] = {"stop": stop, "text": stopped[0].texts[0], "finish": stopped[0].finish_reasons[0]}
    return out


def offline(models: Path, cache: str) -> dict:
    results = {}
    for name, options in (("tiny-qwen2", {}), ("tiny-qwen2.5-vl", {"max_pixels": 56 * 56})):
        engine = Engine(f"vllm:{models / name}", cache=cache, progress=False, **VLLM_ARGS, **options)
        results[name] = _run(engine, _requests(with_images=bool(options)))
        results[name]["stats"] = engine.stats.as_dict()
    # The text model again: its engine was shut down for the VLM, and its answers now come from the cache.
    again = Engine(f"vllm:{models / 'tiny-qwen2'}", cache=cache, progress=False, **VLLM_ARGS)
    again.generate(list(_requests(with_images=False).values()))
    results["rebuild_stats"] = again.stats.as_dict()
    results["rebuild_loaded_model"] = again._backend is not None
    return results


def served(models: Path, cache: str, url: str) -> dict:
    engine = Engine(f"openai:tiny-vl@{url}", cache=cache, progress=False, concurrency=4)
    results = _run(engine, _requests(with_images=True))
    results["stats"] = engine.stats.as_dict()
    return results


if __name__ == "__main__":
    mode, models, cache, *rest = sys.argv[1:]
    result = offline(Path(models), cache) if mode == "offline" else served(Path(models), cache, rest[0])
    print("RESULT " + json.dumps(result))
