"""Readers that turn annotation sets into ``Scene`` records.

Every source has ``name``, ``description`` and ``license`` (carried into the dataset card) and two steps, so the
costly one runs in parallel:

- ``entries()``, read once in order in the main process: a lazy iterator of ``Entry`` (the image id, the object
  names and attributes for the vocabulary, and a small picklable ``payload``) or of the ``InputError`` of a record
  that cannot even be read; the caller decides whether to stop or to skip and count.
- ``scene(payload)``, run in the ``num_proc`` workers: the checked ``Scene``, or ``InputError``.
"""

from __future__ import annotations

from .builtin import BuiltinSource
from .coco import CocoSource
from .jsonl import JsonlSource

SOURCE_HELP = "scenes (built-in rendered scenes), coco:PATH (COCO root or instances_*.json), jsonl:PATH"


def open_source(spec: str, seed: int = 0, num_images: int | None = None):
    """``scenes`` | ``coco:PATH`` | ``jsonl:PATH`` -> a source object."""
    kind, _, path = spec.partition(":")
    if kind == "scenes" and not path:
        return BuiltinSource(seed=seed, num_images=num_images or BuiltinSource.default_num_images)
    if kind == "coco" and path:
        return CocoSource(path)
    if kind == "jsonl" and path:
        return JsonlSource(path)
    raise ValueError(f"unknown source {spec!r}: use {SOURCE_HELP}")
