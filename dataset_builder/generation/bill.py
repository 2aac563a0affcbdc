"""The bill before the build: how many requests a stage would send, and how many tokens, counted by the model's
own tokenizer, before any GPU is rented. Nothing is generated and no model weights are loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import GenerationError
from ..images import encoded_size
from .engine import Engine
from .processor import load_processor
from .request import Request, chat_messages


@dataclass(frozen=True)
class Bill:
    """One stage's cost. ``output_tokens_expected`` is the mean of what the cache holds for the stage, if any."""

    requests: int
    cached: int
    to_generate: int
    prompt_tokens: int
    output_tokens_max: int
    output_tokens_expected: int | None

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def _image_tokens(tokenizer, request: Request) -> int:
    """Tokens the processor adds when it expands each image's one placeholder token (0 if it cannot tell)."""
    if not request.images or not hasattr(tokenizer, "_get_num_multimodal_tokens"):
        return 0
    sizes = [encoded_size(image.data)[::-1] for image in request.images]  # (height, width), headers only
    return sum(tokenizer._get_num_multimodal_tokens(image_sizes=sizes).num_image_tokens) - len(sizes)


def _tokenizer(engine: Engine):
    """The engine's model's tokenizer (its processor for a VLM), from a local folder or the local Hub cache."""
    model = engine.spec.model
    try:
        return load_processor(model, engine.options.get("max_pixels"))
    except Exception as error:  # offline, not downloaded, not a Hub id: transformers raises OSError, ValueError ...
        served = " (a served model: serve it under its Hub id or folder path)" if engine.spec.urls else ""
        raise GenerationError(
            f"the dry run counts prompt tokens with the tokenizer of {model}{served}, which cannot be loaded "
            f"({type(error).__name__}): download it where the Hub is reachable (`hf download {model} --exclude "
            "'*.safetensors' '*.bin' '*.pt'`), or name a local model folder"
        ) from None


def dry_run_bill(requests: Sequence[Request], engine: Engine, tokenizer=None) -> Bill:
    """Count what ``engine.generate(requests)`` would cost: cache hits, prompt tokens, output tokens.

    ``tokenizer`` is the model's tokenizer or processor; by default it is loaded from the engine's model (a hub
    id or local folder; an OpenAI-compatible server's model needs one passed in).
    """
    keys = [engine.key(request) for request in requests]
    unique = dict(zip(keys, requests, strict=True))
    cached = engine.cache.get_many(unique)
    pending = [request for key, request in unique.items() if key not in cached]
    prompt_tokens = 0
    if pending:
        tokenizer = tokenizer or _tokenizer(engine)
        text_tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
        prompts = [
            tokenizer.apply_chat_template(
                chat_messages(request, image=lambda part: {"type": "image"}),
                tokenize=False,
                add_generation_prompt=not request.prefill,
                continue_final_message=bool(request.prefill),
            )
            for request in pending
        ]
        encoded = text_tokenizer(prompts, add_special_tokens=False)["input_ids"]
        prompt_tokens = sum(map(len, encoded)) + sum(_image_tokens(tokenizer, request) for request in pending)
    expected = None
    if cached:
        mean = sum(response.output_tokens for response in cached.values()) / len(cached)
        expected = round(mean * len(pending))
    return Bill(
        requests=len(requests),
        cached=len(requests) - sum(1 for key in keys if key not in cached),
        to_generate=len(pending),
        prompt_tokens=prompt_tokens,
        output_tokens_max=sum(request.sampling.n * request.sampling.max_tokens for request in pending),
        output_tokens_expected=expected,
    )


def added_bills(bills: list[Bill]) -> Bill:
    """Several parts' bills of one stage and model as one (``lgt build --dry-run --shards N``)."""
    expected = [bill.output_tokens_expected for bill in bills if bill.output_tokens_expected is not None]
    return Bill(
        requests=sum(bill.requests for bill in bills),
        cached=sum(bill.cached for bill in bills),
        to_generate=sum(bill.to_generate for bill in bills),
        prompt_tokens=sum(bill.prompt_tokens for bill in bills),
        output_tokens_max=sum(bill.output_tokens_max for bill in bills),
        output_tokens_expected=sum(expected) if expected else None,
    )


def format_bills(bills: dict[str, Bill]) -> str:
    """The dry-run table: one line per stage and model. Expected output tokens: ``-`` until the cache holds some."""
    columns = ("requests", "cached", "to generate", "prompt tok", "output tok (max)", "(expected)")
    width = max([len("stage"), *map(len, bills)]) + 2
    lines = [f"{'stage':<{width}}" + "".join(f"{name:>{len(name) + 3}}" for name in columns)]
    for stage, bill in bills.items():
        expected = "-" if bill.output_tokens_expected is None else f"{bill.output_tokens_expected:,}"
        values = (
            f"{bill.requests:,}",
            f"{bill.cached:,}",
            f"{bill.to_generate:,}",
            f"{bill.prompt_tokens:,}",
            f"{bill.output_tokens_max:,}",
            expected,
        )
        lines.append(f"{stage:<{width}}" + "".join(f"{v:>{len(n) + 3}}" for n, v in zip(columns, values, strict=True)))
    return "\n".join(lines)
