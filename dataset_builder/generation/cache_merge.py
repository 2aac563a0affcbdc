"""``lgt cache merge``: the generation caches of a build's parts as one.

Each part of a sharded build writes its own cache file (SQLite on shared network storage is not safe to write from
several machines); merged, they hold every generation the build made, so ``lgt build --cache-only`` from the merged
file rebuilds it with no model call. Only ``GenerationCache``'s public export and import are used, so the merge
reads and writes caches exactly as a build does.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass

from datasets.utils import logging

from .cache import GenerationCache

logger = logging.get_logger(__name__)

BATCH = 10_000


class CacheMergeError(ValueError):
    """A file that cannot be merged, named in one line."""


@dataclass
class MergedCaches:
    """What a merge did: generations read, new to the output, and read again with a different output (kept first)."""

    read: int = 0
    added: int = 0
    differing: int = 0


def merge_caches(inputs: list[str], output: str) -> MergedCaches:
    """Add every generation of the ``inputs`` cache files to ``output`` (made if missing; kept generations stay).

    A key held with different outputs (two runs of a model that is not bit-reproducible) keeps the first one met,
    as a cache always does, and is counted in ``differing``.
    """
    missing = [path for path in inputs if not os.path.isfile(path)]
    if missing:
        raise CacheMergeError(f"{missing[0]}: no such generation cache")
    if any(os.path.realpath(path) == os.path.realpath(output) for path in inputs):
        raise CacheMergeError(f"{output}: the output is also an input; merge into a new file")
    merged = MergedCaches()
    target = _open(output)
    try:
        for path in inputs:
            source = _open(path)
            try:
                exported = _read(source)
            finally:
                source.close()
            for start in range(0, len(exported), BATCH):
                batch = exported.select(range(start, min(start + BATCH, len(exported))))
                merged.read += len(batch)
                keys = [bytes.fromhex(key) for key in batch["key"]]
                held = target.get_many(keys)
                merged.differing += sum(
                    held[key].texts != tuple(texts)
                    for key, texts in zip(keys, batch["texts"], strict=True)
                    if key in held
                )
                merged.added += len(keys) - len(held)
                target.import_dataset(batch)
            exported.cleanup_cache_files()
    finally:
        target.close()
    logger.info(f"{merged.read:,} generations read from {len(inputs)} caches, {merged.added:,} new in {output}")
    return merged


def _open(path: str) -> GenerationCache:
    try:
        return GenerationCache(path)
    except (sqlite3.DatabaseError, ValueError) as error:
        raise CacheMergeError(f"{path}: not a generation cache lgt can read ({error})") from None


def _read(cache: GenerationCache):
    try:
        return cache.to_dataset()
    except Exception as error:  # datasets wraps what the generator raised (a table that is not a cache's)
        raise CacheMergeError(f"{cache.path}: not a generation cache lgt can read ({error})") from None


__all__ = ["CacheMergeError", "MergedCaches", "merge_caches"]
