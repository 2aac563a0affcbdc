"""Readers that turn annotation sets into ``Scene`` records.

Every source has ``name``, ``description`` and ``license`` (carried into the dataset card) and two steps, so the
costly one runs in parallel:

- ``entries()``, read once in order in the main process, so kept cheap: a lazy iterator of ``Entry`` (the image
  id, where the record is, and a small picklable ``payload``) or of the ``InputError`` of a record that cannot even
  be read; the caller decides whether to stop or to skip and count.
- ``scene(payload)``, run in the ``num_proc`` workers: the checked ``Scene``, or ``InputError``.
"""

from __future__ import annotations

import os

from ..errors import InputError
from .builtin import BuiltinSource
from .coco import CocoSource
from .jsonl import JsonlSource

SOURCE_HELP = "scenes (built-in rendered scenes), coco:PATH (COCO root or instances_*.json), jsonl:PATH"


def open_source(spec: str, seed: int = 0, num_images: int | None = None, image_root: str | None = None):
    """``scenes`` | ``coco:PATH`` | ``jsonl:PATH`` -> a source object; ``image_root``: where images may lie."""
    kind, _, path = spec.partition(":")
    if kind == "scenes" and not path:
        if image_root:
            raise ValueError("--image-root is for sources that read image files, not the built-in scenes")
        return BuiltinSource(seed=seed, num_images=num_images or BuiltinSource.default_num_images)
    if image_root and not os.path.isdir(image_root):
        raise InputError(image_root, None, "--image-root: no such folder")
    if kind == "coco" and path:
        return CocoSource(path, image_root)
    if kind == "jsonl" and path:
        return JsonlSource(path, image_root)
    raise ValueError(f"unknown source {spec!r}: use {SOURCE_HELP}")
