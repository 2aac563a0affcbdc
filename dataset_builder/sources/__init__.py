"""Readers that turn annotation sets into ``Scene`` records.

Every source has ``name``, ``description`` and ``license`` (carried into the dataset card) and two steps, so the
costly one runs in parallel:

- ``entries(num_proc)``, read once in order by the main process, so kept cheap: a lazy iterator of ``Entry`` (the
  image id, where the record is, a small picklable ``payload``, and the words its objects are named and described
  by) or of the ``InputError`` of a record that cannot even be read; the caller decides whether to stop or to skip
  and count. A source may spread the reading over up to ``num_proc`` processes (JSON Lines does), the order
  unchanged. Every machine of a sharded build reads all of them.
- ``scene(payload)``, run in the ``num_proc`` workers: the checked ``Scene``, or ``InputError``.
"""

from __future__ import annotations

import os

from ..errors import InputError
from .builtin import BuiltinSource
from .coco import CocoSource
from .docci import DocciSource
from .jsonl import JsonlSource

# Every source by the name a source spec starts with (``KIND`` or ``KIND:PATH``). A source class has ``name``,
# ``help``, ``takes_path``, ``has_boxes`` (False: captions only, see ``lgt detect``),
# ``open(path, seed=, num_images=, image_root=)``, and what the card says of it:
# ``card_metadata`` (Hub fields), ``annotation_license``, ``license_link``, ``tags``, ``source_datasets(path)``.
SOURCES = {source.name: source for source in (BuiltinSource, CocoSource, JsonlSource, DocciSource)}
SOURCE_HELP = ", ".join(source.help for source in SOURCES.values())


def open_source(spec: str, seed: int = 0, num_images: int | None = None, image_root: str | None = None):
    """``scenes`` | ``coco:PATH`` | ``jsonl:PATH`` | ``docci:PATH`` -> a source object; ``image_root``: where images
    may lie."""
    kind, _, path = spec.partition(":")
    source = SOURCES.get(kind)
    if source is not None and not source.takes_path and not path:
        return source.open(path, seed=seed, num_images=num_images, image_root=image_root)
    if image_root and not os.path.isdir(image_root):
        raise InputError(image_root, None, "--image-root: no such folder")
    if source is not None and source.takes_path and path:
        return source.open(path, seed=seed, num_images=num_images, image_root=image_root)
    raise ValueError(f"unknown source {spec!r}: use {SOURCE_HELP}")


def source_label(spec: str) -> str:
    """The source spec without its local folders: what a card, a log line or ``lgt_build.json`` may show."""
    kind, _, path = spec.partition(":")
    return f"{kind}:{os.path.basename(os.path.normpath(path))}" if path else kind
