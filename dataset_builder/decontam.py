"""Decontamination: drop an item whose question near-duplicates a benchmark question or whose image is a benchmark's.

Training on an evaluation item, or a light rewording of it, inflates the score the recipes report. Two checks,
both against an index built once from the benchmark files (``Decontaminator.from_benchmarks``):

- **question**: Jaccard similarity of character 5-gram sets of the normalised question text (NFKC, case-folded,
  every run of punctuation and space made one space) at least ``question_threshold`` (default 0.65). Why not the
  word 8/13-grams of text-corpus decontamination: MCQ questions are short (MMStar's median is 10 words), so one
  changed word removes every word 8-gram of most of them. Measured on MMStar's 1,500 questions with one light edit,
  character 5-grams at 0.65 catch every copy with only case and punctuation changed, 85% of those with one word
  swapped for a synonym, 89% with one word dropped and 88% with one inserted (the misses are the shortest
  questions), while none of the 1,560 distinct stage-1 questions lgt writes from its built-in scenes and the COCO
  sample reaches 0.65 against MMStar + MMBench + MMLU (at 0.6, 9 would: a template shared with another object,
  "How many backpacks are there in the image?"). Character grams also work for Chinese (MMBench-CN), which has no
  spaces between words. The search is exact: prefix filtering (a question can only reach the threshold with a
  benchmark question that shares one of its ``n - ceil(t * n) + 1`` rarest grams) finds the candidates, the
  Jaccard is then computed exactly.
- **image**: a 64-bit perceptual hash (pHash: the signs of the 8x8 lowest DCT frequencies of a 32x32 grey
  thumbnail against their median) within Hamming distance ``image_distance`` (default 6) of a benchmark image's.
  Measured on the 34 MMBench sample images and 51 COCO images: re-encoding (JPEG q60, PNG), halving, resizing to
  512 px, greying and +15% brightness move the hash by at most 6 bits; distinct photos are 18+ bits apart, and
  lgt's flat synthetic scenes 10+ bits apart from each other (14+ from the benchmarks). Crops are not caught
  (a 5% crop moves it up to 12 bits).

The question check runs first (no decoding); images are hashed once per distinct content.
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import json
import math
import re
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from datasets.utils import logging
from PIL import Image

from . import markdown
from .images import decode

logger = logging.get_logger(__name__)

QUESTION_THRESHOLD = 0.65
IMAGE_DISTANCE = 6
GRAM = 5
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
_SEPARATORS = re.compile(r"[\W_]+")
_QUESTION_LABEL = re.compile(r"\bquestion\s*:", re.IGNORECASE)
_EMBEDDED_OPTIONS = re.compile(r"\n\s*(?:options|choices)\s*:|\n\s*\(?A[).:]\s", re.IGNORECASE)
_DCT_SIZE = 32
_VERDICTS_KEPT = 65_536
_DCT = np.cos(np.pi * (2 * np.arange(_DCT_SIZE)[None, :] + 1) * np.arange(_DCT_SIZE)[:, None] / (2 * _DCT_SIZE))


def question_stem(text: str) -> str:
    """The question itself: after a last "Question:" (MathVista-style hint boilerplate goes) and before embedded
    options ("Options: A: ...", "Choices:\n(A) ...", "\n(A) ..."), as benchmark files often write it."""
    text = _QUESTION_LABEL.split(text)[-1]
    options = _EMBEDDED_OPTIONS.search(text)
    return (text[: options.start()] if options else text).strip()


def normalise(text: str) -> str:
    return _SEPARATORS.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def grams(text: str) -> frozenset[str]:
    """The character 5-grams of the normalised question stem (the whole stem when it is shorter)."""
    norm = normalise(question_stem(text))
    if len(norm) <= GRAM:
        return frozenset([norm]) if norm else frozenset()
    return frozenset(norm[i : i + GRAM] for i in range(len(norm) - GRAM + 1))


def jaccard(a: frozenset, b: frozenset) -> float:
    shared = len(a & b)
    return shared / (len(a) + len(b) - shared) if a or b else 0.0


def image_hash(data: bytes) -> int:
    """The 64-bit pHash of encoded image bytes."""
    image = decode(data)
    image.draft("L", (4 * _DCT_SIZE, 4 * _DCT_SIZE))  # JPEG: decode at a reduced scale, much faster
    grey = np.asarray(image.convert("L").resize((_DCT_SIZE, _DCT_SIZE), Image.Resampling.BOX), dtype=np.float64)
    low = (_DCT @ grey @ _DCT.T)[:8, :8].ravel()
    bits = low > np.median(low[1:])  # the DC term (overall brightness) does not set the median
    return int(np.packbits(bits).view(">u8")[0])


# ---- reading benchmark files ----


def read_records(path: Path) -> Iterator[tuple[str, dict]]:
    """``(where, record)`` for every record of a benchmark file, ``where`` its line (or row) for an error line.

    Text files may start with a UTF-8 byte-order mark. ``ValueError`` naming the file (and the line) for a file
    that cannot be read as its suffix says, or a record that is not an object.
    """
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".json", ".tsv", ".csv", ".parquet"):
        raise ValueError(f"{path}: not a benchmark file lgt reads (.jsonl, .json, .tsv, .csv, .parquet or a folder)")
    try:
        if suffix == ".jsonl":
            records = _jsonl_records(path)
        elif suffix == ".json":
            records = _json_records(path)
        elif suffix == ".parquet":
            records = _parquet_records(path)
        else:
            records = _table_records(path, "\t" if suffix == ".tsv" else ",")
        for where, record in records:
            if not isinstance(record, dict):
                raise ValueError(f"{path} [{where}]: a record must be an object, not {type(record).__name__}")
            yield where, record
    except OSError as error:
        raise ValueError(f"{path}: cannot be read ({error.strerror or error})") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text (byte {error.start + 1} of what was read)") from None


def _jsonl_records(path: Path) -> Iterator[tuple[str, object]]:
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as error:
                raise ValueError(f"{path} [line {number}]: not UTF-8 text at byte {error.start + 1}") from None
            if line.strip():
                yield f"line {number}", _json(path, line, f"line {number}")


def _json_records(path: Path) -> Iterator[tuple[str, object]]:
    data = _json(path, path.read_text(encoding="utf-8-sig"))
    if isinstance(data, dict):  # {"data": [...]}-style: the first list of records
        data = next((v for v in data.values() if isinstance(v, list) and v and isinstance(v[0], dict)), [])
    if not isinstance(data, list):
        raise ValueError(
            f"{path}: a JSON {type(data).__name__}, where a list of records (or an object holding one) belongs"
        )
    for number, record in enumerate(data, start=1):
        yield f"record {number}", record


def _table_records(path: Path, delimiter: str) -> Iterator[tuple[str, dict]]:
    csv.field_size_limit(sys.maxsize)  # MMBench TSVs hold base64 images in a column
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        try:
            for record in reader:
                yield f"line {reader.line_num}", record
        except csv.Error as error:
            raise ValueError(f"{path} [line {reader.line_num}]: {error}") from None


def _parquet_records(path: Path) -> Iterator[tuple[str, dict]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        batches = pq.ParquetFile(path).iter_batches(batch_size=256)
    except pa.ArrowException as error:
        raise ValueError(f"{path}: not a parquet file ({error})") from None
    number = 0
    for batch in batches:
        for record in batch.to_pylist():
            number += 1
            yield f"row {number}", record


def _json(path: Path, text: str, where: str | None = None):
    """``text`` parsed; ``ValueError`` naming the file and where in it (``where``: a JSON Lines record's line)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        at = f"{where}, column {error.colno}" if where else f"line {error.lineno}, column {error.colno}"
        raise ValueError(f"{path} [{at}]: malformed JSON ({error.msg})") from None
    except (ValueError, RecursionError) as error:  # a 5,000-digit number, [[[[...]]]] too deep
        raise ValueError(f"{path}{f' [{where}]' if where else ''}: malformed JSON ({error})") from None


def record_field(record: dict, *names: str):
    """The first of ``names`` (any case) the record holds a value for (not None or empty), else None."""
    lowered = {str(key).lower(): value for key, value in record.items()}
    return next((lowered[name] for name in names if lowered.get(name) not in (None, "")), None)


def image_bytes(value, folder: Path, by_index: dict[str, str]) -> list[bytes]:
    """The encoded images a record's image field holds: bytes, a ``{"bytes", "path"}`` struct, a path relative to
    the file, base64 text, an MMBench TSV reference to another row's image (its ``index``), or a list of those."""
    if isinstance(value, list):
        return [data for item in value for data in image_bytes(item, folder, by_index)]
    if isinstance(value, dict):
        return image_bytes(value.get("bytes") or value.get("path"), folder, by_index)
    if isinstance(value, bytes):
        return [value]
    if not isinstance(value, str) or not value:
        return []
    if value in by_index:
        value = by_index[value]
    if value.lower().endswith(IMAGE_SUFFIXES):
        path = (folder / value).resolve()
        if not path.is_relative_to(folder.resolve()):
            raise ValueError(f"image {value} is outside {folder}, the folder of its file")
        return [path.read_bytes()]
    return [base64.b64decode(value, validate=True)]


class Decontaminator:
    """An index of benchmark questions and image hashes, and the check every MCQ goes through."""

    def __init__(self, question_threshold: float = QUESTION_THRESHOLD, image_distance: int = IMAGE_DISTANCE):
        self.question_threshold = question_threshold
        self.image_distance = image_distance
        self.benchmarks: dict[str, Counter] = {}
        self.counts: Counter = Counter()
        self._questions: list[frozenset[str]] = []
        self._seen_questions: set[str] = set()
        self._frequency: Counter = Counter()  # in how many benchmark questions each gram is
        self._postings: dict[str, list[int]] = {}  # gram -> the questions that have it in their prefix
        self._hashes: list[int] = []
        self._hash_array = np.zeros(0, dtype=np.uint64)
        self._image_verdicts: dict[bytes, bool] = {}

    @classmethod
    def from_benchmarks(
        cls,
        paths: Iterable[str | Path],
        question_threshold: float = QUESTION_THRESHOLD,
        image_distance: int = IMAGE_DISTANCE,
    ) -> Decontaminator:
        """Index benchmark files (JSONL/JSON/TSV/CSV/parquet records with a ``question`` and/or ``image`` field)
        and folders of images."""
        index = cls(question_threshold, image_distance)
        for path in map(Path, paths):
            if path.is_dir():
                index._add_folder(path)
            else:
                index._add_file(path)
        index._finish()
        for name, counts in index.benchmarks.items():
            logger.info(f"decontamination index: {name}: {counts['questions']} questions, {counts['images']} images")
        return index

    def _add_question(self, question: str, benchmark: str) -> None:
        self.benchmarks.setdefault(benchmark, Counter())["questions"] += 1
        key = normalise(question_stem(question))
        if key and key not in self._seen_questions:
            self._seen_questions.add(key)
            self._questions.append(grams(question))
            self._frequency.update(self._questions[-1])

    def _order(self, shingles: frozenset[str]) -> list[str]:
        """Grams rarest first, in one total order (benchmark frequency, then the gram) shared by both sides."""
        return sorted(shingles, key=lambda gram: (self._frequency.get(gram, 0), gram))

    def _prefix(self, shingles: frozenset[str]) -> list[str]:
        """The rarest ``n - ceil(t * n) + 1`` grams: two sets with Jaccard >= t share a gram of their prefixes (they
        share at least ``ceil(t * max(n, m))`` grams, so neither can have all of those outside its prefix)."""
        return self._order(shingles)[: len(shingles) - math.ceil(self.question_threshold * len(shingles)) + 1]

    def _finish(self) -> None:
        for number, shingles in enumerate(self._questions):
            for gram in self._prefix(shingles):
                self._postings.setdefault(gram, []).append(number)
        self._hash_array = np.array(self._hashes, dtype=np.uint64)

    def _add_image(self, data: bytes, benchmark: str) -> None:
        counts = self.benchmarks.setdefault(benchmark, Counter())
        try:
            self._hashes.append(image_hash(data))
        except Exception as error:  # PIL raises many types for a bad image
            counts["unreadable_images"] += 1
            logger.warning(f"{benchmark}: an image cannot be decoded ({type(error).__name__}); not indexed")
            return
        counts["images"] += 1

    def _add_folder(self, folder: Path) -> None:
        images = [path for path in sorted(folder.rglob("*")) if path.suffix.lower() in IMAGE_SUFFIXES]
        if not images:
            raise ValueError(f"{folder}: no image in this folder ({', '.join(IMAGE_SUFFIXES)})")
        for path in images:
            self._add_image(path.read_bytes(), folder.name)
        self._check_indexed(folder, folder.name)

    def _add_file(self, path: Path) -> None:
        records = list(read_records(path))
        if not records:
            raise ValueError(f"{path}: no benchmark records in it")
        by_index = {}
        for _, record in records:  # MMBench TSVs store a repeated image once and refer to it by the row's index
            index, image = record_field(record, "index"), record_field(record, "image")
            if index is not None and isinstance(image, str) and len(image) > 64:
                by_index[str(index)] = image
        for where, record in records:
            question, image = record_field(record, "question"), record_field(record, "image", "images")
            if question is None and image is None:
                raise ValueError(
                    f"{path} [{where}]: benchmark records need a 'question' or an 'image' field, found {list(record)}"
                )
            if question is not None and not isinstance(question, str):
                raise ValueError(f"{path} [{where}]: 'question' must be text, not {type(question).__name__}")
            if question is not None:
                self._add_question(question, path.stem)
            try:
                images = image_bytes(image, path.parent, by_index)
            except (OSError, binascii.Error, ValueError) as error:
                self.benchmarks.setdefault(path.stem, Counter())["unreadable_images"] += 1
                logger.warning(f"{path} [{where}]: image not read ({error}); not indexed")
                continue
            for data in images:
                self._add_image(data, path.stem)
        self._check_indexed(path, path.stem)

    def _check_indexed(self, path: Path, benchmark: str) -> None:
        """A benchmark nothing could be indexed from would screen nothing: that is an error, not a warning."""
        counts = self.benchmarks.get(benchmark, Counter())
        if not counts["questions"] and not counts["images"]:
            raise ValueError(
                f"{path}: no question or image could be indexed from it ({counts['unreadable_images']} unreadable "
                "images); it would screen nothing"
            )

    def question_match(self, question: str) -> float:
        """The highest Jaccard similarity to a benchmark question that reaches the threshold, or 0.0."""
        shingles = grams(question)
        if not shingles:
            return 0.0
        t = self.question_threshold
        low, high = t * len(shingles), len(shingles) / t  # Jaccard >= t needs t <= |A| / |B| <= 1 / t
        candidates = {number for gram in self._prefix(shingles) for number in self._postings.get(gram, ())}
        best = max(
            (
                jaccard(shingles, other)
                for other in map(self._questions.__getitem__, candidates)
                if low <= len(other) <= high
            ),
            default=0.0,
        )
        return best if best >= t else 0.0

    def image_match(self, data: bytes) -> bool:
        """Whether the image's pHash is within ``image_distance`` bits of a benchmark image's (once per content)."""
        if not len(self._hash_array) or not data:
            return False
        key = hashlib.blake2b(data, digest_size=16).digest()
        if key not in self._image_verdicts:
            if len(self._image_verdicts) >= _VERDICTS_KEPT:  # MCQs of one image come together: a short memory does
                self._image_verdicts.clear()
            differing = (self._hash_array ^ np.uint64(image_hash(data))).view(np.uint8)
            distance = np.unpackbits(differing).reshape(-1, 64).sum(axis=1).min()  # numpy < 2 has no bitwise_count
            self._image_verdicts[key] = bool(distance <= self.image_distance)
        return self._image_verdicts[key]

    def is_contaminated(self, question: str, image_bytes: bytes | None) -> str | None:
        """``"question"``, ``"image"`` or ``None``; counted in ``counts`` (``checked`` and one key per reason)."""
        self.counts["checked"] += 1
        reason = None
        if self.question_match(question):
            reason = "question"
        elif image_bytes and self.image_match(image_bytes):
            reason = "image"
        if reason:
            self.counts[reason] += 1
        return reason

    def report(self) -> dict:
        """What the card says: the benchmarks indexed, the rules and the counts."""
        return {
            "benchmarks": {name: dict(counts) for name, counts in self.benchmarks.items()},
            "question_rule": f"Jaccard of character {GRAM}-grams >= {self.question_threshold}",
            "image_rule": f"64-bit pHash within {self.image_distance} bits",
            "checked": self.counts["checked"],
            "dropped": {"question": self.counts["question"], "image": self.counts["image"]},
        }


def decontamination_section(report: dict) -> str:
    """The card's decontamination section, from ``Decontaminator.report()``."""
    lines = [
        "## Decontamination",
        "",
        "MCQs were checked against the benchmarks below and dropped when their question near-duplicates a benchmark "
        f"question ({report['question_rule']}, normalised text, embedded options left out) or their image matches a "
        f"benchmark image ({report['image_rule']}). The question is checked first.",
        "",
        "| benchmark | questions | images |",
        "|---|---|---|",
    ]
    lines += [
        f"| {markdown.text(name)} | {counts.get('questions', 0):,} | {counts.get('images', 0):,} |"
        for name, counts in report["benchmarks"].items()
    ]
    dropped = report["dropped"]
    lines += [
        "",
        "| checked | dropped: question | dropped: image | kept |",
        "|---|---|---|---|",
        f"| {report['checked']:,} | {dropped['question']:,} | {dropped['image']:,} | "
        f"{report['checked'] - sum(dropped.values()):,} |",
    ]
    return "\n".join(lines) + "\n"
