"""The offline vLLM engine: one ``vllm.LLM`` per process, a whole stage queued at once, answers as they finish.

Every pending request is queued before the first step, so vLLM's scheduler always has the whole stage to fill its
batch from; the engine is then stepped here (as ``LLM.generate`` does internally) so each request is handed to the
cache the moment it finishes instead of when the last one does. Images go in as multimodal input, capped at
``max_pixels`` by the model's own processor; JSON schemas are enforced by vLLM's structured outputs.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib.util
from collections.abc import Iterator, Sequence

from datasets.utils import logging

from .backend import Setting
from .processor import processor_size
from .request import ImagePart, Request, Response, chat_messages

logger = logging.get_logger(__name__)

# One engine at a time per process: it holds the GPU's memory. A build that asks a second model (a verifier after
# the teacher) shuts the first down, and a later call to it loads it again.
_LOADED: dict[tuple, object] = {}


def _engine(model: str, engine_args: dict):
    from vllm import LLM

    key = (model, repr(sorted(engine_args.items())))
    if key not in _LOADED:
        for previous in _LOADED.values():
            logger.info("shutting down the loaded vLLM engine to load %s", model)
            previous.llm_engine.engine_core.shutdown()
        _LOADED.clear()
        gc.collect()
        _LOADED[key] = LLM(model=model, **engine_args)
    return _LOADED[key]


def _sampling_params(request: Request):
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    sampling = request.sampling
    return SamplingParams(
        n=sampling.n,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        top_k=sampling.top_k or -1,
        max_tokens=sampling.max_tokens,
        seed=sampling.seed,
        stop=list(sampling.stop),
        repetition_penalty=sampling.repetition_penalty,
        bad_words=list(request.banned_words) or None,
        structured_outputs=StructuredOutputsParams(json=request.schema) if request.schema else None,
    )


def _pil_part(part: ImagePart) -> dict:
    return {"type": "image_pil", "image_pil": part.to_pil()}


class VLLMBackend:
    # The engine arguments most builds set, checked here; any other of vLLM's own (``vllm.EngineArgs``) is passed on.
    SETTINGS = {
        "max_pixels": Setting("whole", at_least=1),  # the processor's image cap (part of the cache key)
        "tensor_parallel_size": Setting("whole", at_least=1),
        "pipeline_parallel_size": Setting("whole", at_least=1),
        "data_parallel_size": Setting("whole", at_least=1),
        "gpu_memory_utilization": Setting("number", above=0, at_most=1),
        "max_model_len": Setting("whole", at_least=1),
        "max_num_seqs": Setting("whole", at_least=1),
        "max_num_batched_tokens": Setting("whole", at_least=1),
        "dtype": Setting("text"),
        "quantization": Setting("text"),
        "kv_cache_dtype": Setting("text"),
        "enforce_eager": Setting("flag"),
        "enable_prefix_caching": Setting("flag"),
        "trust_remote_code": Setting("flag"),
        "seed": Setting("whole"),
        "swap_space": Setting("number", at_least=0),
        "cpu_offload_gb": Setting("number", at_least=0),
        "limit_mm_per_prompt": Setting("object"),
        "mm_processor_kwargs": Setting("object"),
    }
    EXTRA = "vllm"
    supports_schema = True
    supports_banned_words = True

    @staticmethod
    def other_setting(key: str) -> Setting | None:
        """Any other field of ``vllm.EngineArgs`` passes as it is (vLLM checks it); without vLLM, any key does (the
        build then stops at loading, saying to install it)."""
        if importlib.util.find_spec("vllm") is None:
            return Setting("any")
        from vllm.engine.arg_utils import EngineArgs

        return Setting("any") if key in {f.name for f in dataclasses.fields(EngineArgs)} else None

    @classmethod
    def from_spec(cls, spec, **options) -> VLLMBackend:
        """The backend for a ``ModelSpec`` (``vllm:MODEL``)."""
        return cls(spec.model, **options)

    def __init__(self, model: str, *, max_pixels: int | None = None, **engine_args):
        if max_pixels:
            engine_args.setdefault("mm_processor_kwargs", {"size": processor_size(max_pixels)})
        self.model, self.engine_args = model, engine_args
        _engine(model, engine_args)

    def generate(self, requests: Sequence[Request]) -> Iterator[list[tuple[int, Response]]]:
        llm = _engine(self.model, self.engine_args)
        index_of: dict[str, int] = {}
        # enqueue_chat takes one prefill setting per call: queue the plain requests, then those that continue one.
        for prefilled in (False, True):
            chosen = [i for i, request in enumerate(requests) if bool(request.prefill) == prefilled]
            if not chosen:
                continue
            ids = llm.enqueue_chat(
                [chat_messages(requests[i], image=_pil_part) for i in chosen],
                [_sampling_params(requests[i]) for i in chosen],
                use_tqdm=False,
                add_generation_prompt=not prefilled,
                continue_final_message=prefilled,
            )
            index_of.update(zip(map(_external_id, ids), chosen, strict=True))
        engine = llm.llm_engine
        try:
            while engine.has_unfinished_requests():
                finished = [output for output in engine.step() if output.finished]
                if finished:
                    yield [(index_of.pop(output.request_id), _response(output)) for output in finished]
        finally:
            if index_of:  # stopped early (an error, an interrupt): leave no request behind in the engine
                engine.abort_request(list(index_of))


def _external_id(request_id: str) -> str:
    """``enqueue_chat`` returns vLLM's internal ids, ``ID-xxxxxxxx``; outputs and ``abort_request`` use ``ID``."""
    head, sep, tail = request_id.rpartition("-")
    return head if sep and len(tail) == 8 else request_id


def _response(output) -> Response:
    completions = sorted(output.outputs, key=lambda completion: completion.index)
    return Response(
        texts=tuple(completion.text for completion in completions),
        finish_reasons=tuple(completion.finish_reason or "length" for completion in completions),
        prompt_tokens=len(output.prompt_token_ids or ()),
        output_tokens=sum(len(completion.token_ids) for completion in completions),
    )
