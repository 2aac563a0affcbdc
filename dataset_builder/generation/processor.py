"""A model's processor, its images capped at a pixel count: what the local backends and the dry-run bill read.

Kept apart from ``backend.py`` so the backends that need it import it without importing the registry that loads them.
"""

from __future__ import annotations


def processor_size(max_pixels: int) -> dict:
    """The image processor's ``size`` for a pixel cap, as Qwen2-VL-family processors (the paper's teachers) read it."""
    return {"shortest_edge": min(56 * 56, max_pixels), "longest_edge": max_pixels}


def load_processor(model: str, max_pixels: int | None = None):
    """The model's processor (a tokenizer for a text model), its images capped at ``max_pixels``."""
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(model, **({"size": processor_size(max_pixels)} if max_pixels else {}))
