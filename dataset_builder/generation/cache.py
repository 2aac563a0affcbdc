"""The generation cache: model outputs on disk, addressed by the content of the request that produced them.

One SQLite file in WAL mode, so any number of processes read while one writes, and a writer waits for another
instead of failing. Outputs are stored, never re-derived: GPU inference is not bit-reproducible, and a published
cache must rebuild the published dataset exactly. Each ``put_many`` is one transaction, so a process killed with
``kill -9`` loses only what it had not yet handed over.

The file is ours only when SQLite's header says so (``PRAGMA application_id``, stamped when the cache is created):
any other file (another program's database, random bytes, a folder, a device) is refused before anything is written
to it, and a damaged cache is named as such. A cache that is only read (``read_only``: ``--cache-only``, a dry run)
is opened read-only, so a published cache on read-only storage rebuilds a dataset. Every error names the file.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sqlite3
import stat
import urllib.parse
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from datasets import Dataset, Features, List, Value
from datasets.utils import logging

from ..errors import GenerationError
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
# SQLite's application id of an lgt generation cache ("lgtG"), in the file's header: the file is ours to write.
APPLICATION_ID = 0x6C677447
# Stored as SQLite's user_version: a cache written in another layout is refused, not misread.
FORMAT_VERSION = 1
_SQLITE_MAGIC = b"SQLite format 3\x00"
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
    """Persistent map from request key (32-byte sha256) to ``Response``, safe for several processes at once.

    ``read_only``: never write (``--cache-only``); the file must exist and may lie on read-only storage.
    """

    def __init__(self, path: str | os.PathLike, *, read_only: bool = False):
        self.path = Path(path)
        self.read_only = read_only
        self._check_file()
        with self._errors():
            self._db = self._connect()
        try:
            with self._errors():
                self._claim()
                if not read_only:
                    self._db.execute("PRAGMA journal_mode=WAL")
                    # NORMAL in WAL mode: a commit survives a killed process; only a power cut can lose the last ones.
                    self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute(f"PRAGMA mmap_size={_MMAP_BYTES}")
        except BaseException:
            self._db.close()
            raise

    def _refuse(self, problem: str, exit_code: int = 2) -> GenerationError:
        return GenerationError(f"generation cache {self.path}: {problem}", exit_code)

    def _check_file(self) -> None:
        """Refuse, before SQLite touches it, a path that is not a file, not SQLite, or cut short."""
        try:
            info = self.path.stat()
        except FileNotFoundError:
            if self.read_only:
                raise self._refuse(
                    "no such file (pass --cache FILE, or import the cache published with the dataset)"
                ) from None
            return
        except OSError as error:
            raise self._refuse(f"cannot be read ({error.strerror})", 1) from None
        if not stat.S_ISREG(info.st_mode):
            raise self._refuse("not a file (a folder or a device): pass --cache FILE")
        if info.st_size == 0:
            if self.read_only:
                raise self._refuse("the file is empty: it holds no generations")
            return  # an empty file becomes a new cache
        try:
            with open(self.path, "rb") as f:
                header = f.read(100)
        except OSError as error:
            raise self._refuse(f"cannot be read ({error.strerror})", 1) from None
        if not header.startswith(_SQLITE_MAGIC):
            raise self._refuse("not an SQLite file, so not an lgt generation cache: pass another --cache FILE")
        page_size = int.from_bytes(header[16:18], "big")
        page_size = 65536 if page_size == 1 else page_size
        pages = int.from_bytes(header[28:32], "big")
        valid = header[24:28] == header[92:96]  # the header's page count is current (SQLite >= 3.7.0 writes it)
        if len(header) < 100 or (valid and info.st_size < pages * page_size):
            raise self._refuse(
                f"cut short: its header counts {pages * page_size:,} bytes, the file holds {info.st_size:,}; restore "
                "it from where it came from, or pass another --cache FILE",
                1,
            )

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: transactions are opened explicitly, one per batch written.
        if not self.read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return sqlite3.connect(self.path, timeout=60.0, isolation_level=None, check_same_thread=False)
        uri = f"file:{urllib.parse.quote(str(self.path.absolute()))}?mode=ro"
        db = sqlite3.connect(uri, uri=True, timeout=60.0, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA schema_version").fetchone()
        except sqlite3.OperationalError:
            # A WAL-mode file on read-only storage cannot get its -shm file: nobody can write it there, so read it
            # as immutable.
            db.close()
            uri += "&immutable=1"
            db = sqlite3.connect(uri, uri=True, timeout=60.0, isolation_level=None, check_same_thread=False)
        return db

    def _claim(self) -> None:
        """Check the file is an lgt generation cache of this format; make a new, empty database one."""
        self._db.execute("BEGIN" if self.read_only else "BEGIN IMMEDIATE")
        try:
            application_id = self._db.execute("PRAGMA application_id").fetchone()[0]
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            tables = [row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            if application_id == 0 and version == 0 and not tables and not self.read_only:
                self._db.execute(_SCHEMA)
                self._db.execute(f"PRAGMA application_id={APPLICATION_ID}")
                self._db.execute(f"PRAGMA user_version={FORMAT_VERSION}")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        if application_id == 0 and version == 0 and not tables:
            if self.read_only:
                raise self._refuse("an empty SQLite database: it holds no generations")
        elif application_id != APPLICATION_ID:
            held = f"tables {', '.join(sorted(tables))}" if tables else "no tables"
            raise self._refuse(
                f"an SQLite database of another program (application id {application_id}, {held}), not an lgt "
                "generation cache; it was left untouched: pass another --cache FILE"
            )
        elif version != FORMAT_VERSION:
            raise self._refuse(
                f"a generation cache in format {version}; this lgt reads format {FORMAT_VERSION}: use the lgt "
                "version that wrote it, or start a new cache"
            )

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """SQLite's errors as one line naming the file and what to do."""
        try:
            yield
        except sqlite3.Error as error:
            code = getattr(error, "sqlite_errorname", "")
            if code.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM")):
                advice = (
                    "the file or its folder cannot be written: pass --cache-only to build from it without writing, "
                    "or --cache FILE somewhere writable"
                )
            elif code.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
                advice = "the file is damaged: restore it from where it came from, or pass another --cache FILE"
            elif code.startswith("SQLITE_FULL"):
                advice = "the disk is full"
            elif code.startswith("SQLITE_BUSY"):
                advice = "another process holds it locked; try again when it is done"
            else:
                advice = "check the file, or pass another --cache FILE"
            raise self._refuse(f"{error} ({code or type(error).__name__}); {advice}", 1) from None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> GenerationCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        with self._errors():
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
            with self._errors():
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
        if self.read_only:
            raise self._refuse("opened read-only (cache-only), so nothing can be stored in it")
        with self._errors():
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
            _export_rows,
            features=EXPORT_FEATURES,
            gen_kwargs={"path": str(self.path)},
            fingerprint=uuid.uuid4().hex,
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
    with GenerationCache(path, read_only=True) as cache:
        rows = cache._db.execute(f"SELECT key, model, template, {_COLUMNS} FROM generations")
        for key, model, template, *columns in rows:
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
