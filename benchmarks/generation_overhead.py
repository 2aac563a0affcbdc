"""Engine overhead: throughput through lgt's engine with a cold cache, divided by the raw backend's, same requests.

    python benchmarks/generation_overhead.py --backend transformers          # main environment (torch)
    .venv-vllm/bin/python benchmarks/generation_overhead.py --backend vllm   # the vLLM environment

The requests are the LLM stage-1 prompts of synthetic scenes, greedy, on the tiny random text model (built here
unless ``--model`` names one). "Raw" is the library used directly the way its documentation shows (a batched
``generate`` loop for transformers, one ``LLM.chat`` call for vLLM); "lgt" is ``Engine.generate`` with every key
new (a cold cache): hashing, cache lookups, the backend, and a commit per finished batch. Both load the model once.
"backend" is lgt's backend alone, without the engine, to show what hashing and caching cost by themselves.
Runs alternate and the best of ``--repeats`` is kept for each, so background load on a shared machine hurts all.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from generation_cache import make_scenes  # noqa: E402
from lgt.generation import Engine, Request, Sampling  # noqa: E402
from lgt.generation.request import chat_messages  # noqa: E402
from lgt.synthesis.llm_mcq import MCQWriter  # noqa: E402


def requests_for(count: int, max_tokens: int) -> list[Request]:
    writer = MCQWriter(questions_per_scene=4)
    return [
        Request(request.messages, Sampling(temperature=0, max_tokens=max_tokens), template=request.template)
        for request in (writer.request(scene) for scene in make_scenes(count, tempfile.mkdtemp(prefix="lgt-bench-")))
    ]


def raw_transformers(model_dir: str, batch_size: int):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()

    def run(requests: list[Request]) -> int:
        tokens = 0
        for start in range(0, len(requests), batch_size):
            batch = requests[start : start + batch_size]
            prompts = [
                tokenizer.apply_chat_template(chat_messages(r, image=None), tokenize=False, add_generation_prompt=True)
                for r in batch
            ]
            inputs = tokenizer(prompts, padding=True, add_special_tokens=False, return_tensors="pt")
            with torch.inference_mode():
                out = model.generate(
                    **inputs,
                    max_new_tokens=batch[0].sampling.max_tokens,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id,
                )
            tokens += out[:, inputs["input_ids"].shape[1] :].numel()
        return tokens

    return run


def raw_vllm(model_dir: str, options: dict):
    from lgt.generation.vllm_backend import _engine
    from vllm import SamplingParams

    llm = _engine(model_dir, options)  # the very instance the lgt engine uses

    def run(requests: list[Request]) -> int:
        params = SamplingParams(temperature=0, max_tokens=requests[0].sampling.max_tokens)
        outputs = llm.chat([chat_messages(r, image=None) for r in requests], params, use_tqdm=False)
        return sum(len(o.outputs[0].token_ids) for o in outputs)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("transformers", "vllm"), required=True)
    parser.add_argument("--model", help="a text model folder (default: the tiny Qwen2 built here)")
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.model is None:
        from tiny_models import build_tiny_llm

        args.model = str(build_tiny_llm(Path(tempfile.mkdtemp(prefix="lgt-bench-")) / "tiny-qwen2"))
    requests = requests_for(args.requests, args.max_tokens)
    if args.backend == "transformers":
        options = {"batch_size": args.batch_size}
        raw = raw_transformers(args.model, args.batch_size)
    else:
        options = {"max_model_len": 2048, "dtype": "float32", "enforce_eager": True}
        raw = raw_vllm(args.model, options)

    cache = os.path.join(tempfile.mkdtemp(prefix="lgt-bench-cache-"), "generations.sqlite")
    engine = Engine(f"{args.backend}:{args.model}", cache=cache, progress=False, **options)
    runs = iter(range(1_000_000))

    def through_lgt(requests: list[Request]) -> int:
        # A new template version per run: the same work, but every key is new, so the cache is cold each time.
        run = next(runs)
        before = engine.stats.output_tokens
        engine.generate([replace(request, template=f"bench@{run}") for request in requests])
        assert engine.stats.misses == engine.stats.requests
        return engine.stats.output_tokens - before

    def backend_alone(requests: list[Request]) -> int:
        # lgt's backend without the engine: no hashing, no cache; isolates what the engine itself costs.
        return sum(response.output_tokens for batch in engine.backend.generate(requests) for _, response in batch)

    raw(requests[:2])  # warm every path up (model load, lazy kernels, first-call allocations)
    through_lgt(requests[:2])
    paths = {"raw": raw, "backend": backend_alone, "lgt": through_lgt}
    best = dict.fromkeys(paths, 0.0)
    for _ in range(args.repeats):
        for name, run in paths.items():
            start = time.perf_counter()
            tokens = run(requests)
            rate = tokens / (time.perf_counter() - start)
            best[name] = max(best[name], rate)
            print(f"{name:>8}: {rate:10,.0f} output tokens/s", flush=True)
    print(
        f"{args.backend}: {args.requests} requests x {args.max_tokens} tokens, best of {args.repeats}: "
        f"raw {best['raw']:,.0f} tok/s, lgt backend alone {best['backend']:,.0f}, lgt engine (cold cache) "
        f"{best['lgt']:,.0f}; lgt/raw = {best['lgt'] / best['raw']:.3f}, engine/backend = "
        f"{best['lgt'] / best['backend']:.3f}"
    )


if __name__ == "__main__":
    main()
