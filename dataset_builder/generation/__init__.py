"""Every model call in lgt: requests, backends (vLLM, OpenAI-compatible servers, transformers) and one cache.

engine = Engine("transformers:/models/tiny-qwen2.5-vl", cache="generations.sqlite")
responses = engine.generate(requests)     # a whole stage at once; cached answers are read, not regenerated
engine.stats                              # hits, misses, tokens, seconds
"""

from .backend import ModelSpec, check_models
from .bill import Bill, dry_run_bill
from .cache import GenerationCache, default_cache_path
from .engine import CacheMissError, Engine, GenerationStats
from .request import ImagePart, Message, Request, Response, Sampling, request_key

__all__ = [
    "Bill",
    "CacheMissError",
    "Engine",
    "GenerationCache",
    "GenerationStats",
    "ImagePart",
    "Message",
    "ModelSpec",
    "Request",
    "Response",
    "Sampling",
    "check_models",
    "default_cache_path",
    "dry_run_bill",
    "request_key",
]
