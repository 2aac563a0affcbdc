"""The generation cache: model outputs on disk, addressed by the content of the request that produced them.

One SQLite file in WAL mode, so any number of processes read while one writes, and a writer waits for another
instead of failing. Outputs are stored, never re-derived: GPU inference is not bit-reproducible, and a published
cache must rebuild the published dataset exactly. Each ``put_many`` is one transaction, so a process killed with
``kill -9`` loses only what it had not yet handed over.
"""

from __future__ import annotations

import gc
import os
import sqlite3
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from datasets import Dataset, Features, List, Value
from datasets.utils import logging

from .request import Response

logger = logging.get_logger(__name__)

# SQLite binds at most 32766 parameters per statement; a few hundred per IN list reads fastest here.
_READ_CHUNK = 500
# An ordinary rowid table: responses run to kilobytes, too large for a WITHOUT ROWID table's index pages. A
# response's n texts are stored back to back with their lengths, its finish reasons comma-joined: a warm rebuild
# reads hundreds of thousands of rows, and slicing them costs a fraction of parsing JSON.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS generations (
    key BLOB PRIMARY KEY,
    model TEXT NOT NULL,
    template TEXT NOT NULL,
    texts TEXT NOT NULL,
    lengths TEXT NOT NULL,
    finish_reasons TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL
)
"""
_COLUMNS = "texts, lengths, finish_reasons, prompt_tokens, output_tokens"
# Stored as SQLite's user_version: a cache written in another layout is refused, not misread.
FORMAT_VERSION = 1
# Reads go through a memory map of up to this many bytes instead of copies into SQLite's small page cache.
_MMAP_BYTES = 1 << 34
EXPORT_FEATURES = Features(
    {
        "key": Value("string"),
        "model": Value("string"),
        "template": Value("string"),
        "texts": List(Value("string")),
        "finish_reasons": List(Value("string")),
        "prompt_tokens": Value("int64"),
        "output_tokens": Value("int64"),
    }
)


def default_cache_path() -> Path:
    """``$LGT_CACHE_DIR/generations.sqlite``, else ``$HF_HOME/lgt/generations.sqlite``: one cache for every build.

    Beside the Hugging Face caches (models, datasets) by default, so it moves with ``HF_HOME`` the way they do.
    """
    from huggingface_hub import constants

    root = os.environ.get("LGT_CACHE_DIR") or os.path.join(constants.HF_HOME, "lgt")
    return Path(root) / "generations.sqlite"


class GenerationCache:
    """Persistent map from request key (32-byte sha256) to ``Response``, safe for several processes at once."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: transactions are opened explicitly, one per batch written.
        self._db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a commit survives a killed process; only a power cut can lose the last commits.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(f"PRAGMA mmap_size={_MMAP_BYTES}")
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                self._db.execute(_SCHEMA)
                self._db.execute(f"PRAGMA user_version={FORMAT_VERSION}")
        if version not in (0, FORMAT_VERSION):
            self._db.close()
            raise ValueError(
                f"{self.path} is a generation cache in format {version}; this lgt reads format {FORMAT_VERSION}: "
                "use the lgt version that wrote it, or start a new cache"
            )

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> GenerationCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM generations").fetchone()[0]

    def get_many(self, keys: Iterable[bytes]) -> dict[bytes, Response]:
        """The cached responses among ``keys``, read a few hundred per statement, in key order (pages in order)."""
        keys = sorted(keys)
        found: dict[bytes, Response] = {}
        # Hundreds of thousands of new, acyclic objects: the cycle collector would rescan every live object of the
        # build each few hundred, halving the read rate, and it could reclaim nothing here.
        collecting = gc.isenabled()
        gc.disable()
        try:
            for start in range(0, len(keys), _READ_CHUNK):
                chunk = keys[start : start + _READ_CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(f"SELECT key, {_COLUMNS} FROM generations WHERE key IN ({marks})", chunk)
                found.update((row[0], _decode(*row[1:])) for row in rows)
        finally:
            if collecting:
                gc.enable()
        return found

    def put_many(self, items: Iterable[tuple[bytes, str, str, Response]]) -> None:
        """Store ``(key, model, template, response)`` rows in one transaction; a key already present is kept."""
        rows = [(key, model, template, *_encode(response)) for key, model, template, response in items]
        if not rows:
            return
        # BEGIN IMMEDIATE takes the write lock up front, so two writers queue instead of deadlocking on upgrade.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany("INSERT OR IGNORE INTO generations VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def to_dataset(self) -> Dataset:
        """Every cached generation as a ``datasets.Dataset``, so a published dataset can ship its generations."""
        # A fresh fingerprint: the export must show the cache as it is now, never an earlier export of it.
        return Dataset.from_generator(
            _export_rows, features=EXPORT_FEATURES, gen_kwargs={"path": str(self.path)}, fingerprint=uuid.uuid4().hex
        )

    def import_dataset(self, dataset: Dataset, batch_size: int = 10_000) -> int:
        """Add the rows of a dataset written by ``to_dataset``; returns how many rows it held."""
        missing = set(EXPORT_FEATURES) - set(dataset.column_names)
        if missing:
            raise ValueError(f"not a generation cache export: columns {sorted(missing)} are missing")
        for batch in dataset.iter(batch_size=batch_size):
            self.put_many(
                (
                    bytes.fromhex(key),
                    model,
                    template,
                    Response(tuple(texts), tuple(reasons), prompt_tokens, output_tokens),
                )
                for key, model, template, texts, reasons, prompt_tokens, output_tokens in zip(
                    batch["key"],
                    batch["model"],
                    batch["template"],
                    batch["texts"],
                    batch["finish_reasons"],
                    batch["prompt_tokens"],
                    batch["output_tokens"],
                    strict=True,
                )
            )
        logger.info(f"imported {len(dataset)} generations into {self.path}")
        return len(dataset)


def _encode(response: Response) -> tuple:
    if any("," in reason for reason in response.finish_reasons):
        raise ValueError(f"finish reasons must not contain commas: {response.finish_reasons}")
    lengths = ",".join(str(len(text)) for text in response.texts)
    return (
        "".join(response.texts),
        lengths,
        ",".join(response.finish_reasons),
        response.prompt_tokens,
        response.output_tokens,
    )


def _decode(joined: str, lengths: str, finish_reasons: str, prompt_tokens: int, output_tokens: int) -> Response:
    texts, start = [], 0
    for length in map(int, lengths.split(",")):
        texts.append(joined[start : start + length])
        start += length
    return Response(tuple(texts), tuple(finish_reasons.split(",")), prompt_tokens, output_tokens)


def _export_rows(path: str) -> Iterator[dict]:
    db = sqlite3.connect(path)
    try:
        for key, model, template, *columns in db.execute(f"SELECT key, model, template, {_COLUMNS} FROM generations"):
            response = _decode(*columns)
            yield {
                "key": key.hex(),
                "model": model,
                "template": template,
                "texts": list(response.texts),
                "finish_reasons": list(response.finish_reasons),
                "prompt_tokens": response.prompt_tokens,
                "output_tokens": response.output_tokens,
            }
    finally:
        db.close()
