"""The benchmarks ``lgt eval`` knows: one registry, each entry a Hub copy and an adapter to one MCQ record.

An adapter reads one row as the benchmark's Hub copy holds it and returns an ``Item``: ``id``, question, options
(any number, lettered A onwards), gold letter, ``category`` (and ``subcategory`` where the benchmark has one) and
its images (none for MMLU-Pro, up to four for BLINK); ``None`` for a row that is not multiple choice (RealWorldQA's
open questions), which is counted. Rows come from the Hub (``datasets.load_dataset`` at the commit the Hub names
now, recorded in every score file) or, offline, from local files holding the same fields (``--data FILE|DIR``:
parquet, JSONL, JSON, TSV or CSV; images as bytes, ``{"bytes", "path"}``, base64 or a path inside the folder).
Where a benchmark embeds its options in the question text ("Options: A: x, B: y", "(A) x (B) y", "A. x" lines),
``split_options`` takes them out, so every model sees them lettered the same way.

Which Hub copy and why: README.md (Eval). ``export`` writes a benchmark's questions and images as the parquet file
``lgt build --benchmark FILE`` reads, so a build can be decontaminated against exactly what will be evaluated.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from datasets.utils import logging

from ..answers import OPTION_LETTERS
from ..decontam import image_bytes, read_records, record_field
from ..errors import BuildError, InputError, one_line

logger = logging.get_logger(__name__)

DATA_SUFFIXES = (".parquet", ".jsonl", ".json", ".tsv", ".csv")
AGGREGATIONS = {
    "pooled": "accuracy over all items",
    "category-mean": "the mean of the per-category accuracies",
    "cv-bench": "the mean of 2D and 3D, 2D being the mean of its ADE20K and COCO accuracies (CV-Bench's own)",
}


@dataclass(frozen=True)
class Item:
    """One multiple-choice question, whatever benchmark it came from."""

    id: str
    question: str
    options: tuple[str, ...]
    answer: str
    category: str
    subcategory: str = ""
    images: tuple[bytes, ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class Benchmark:
    """A benchmark: where its rows are (``hub_id``, its ``configs`` and ``split``), how one becomes an ``Item``,
    which categories count (a subset such as MMStar-V) and how accuracies combine into its score."""

    name: str
    title: str
    hub_id: str
    split: str
    adapter: Callable[[dict, Path, int], Item | None]
    configs: tuple[str, ...] = ()
    aggregation: str = "pooled"
    categories: tuple[str, ...] = ()
    local: str = ""  # a folder named with the benchmark itself (lgt:PATH), read instead of the Hub; never recorded


# ---- reading a row's fields ----


def _value(record: dict, *names: str):
    value = record_field(record, *names)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise ValueError(f"no {' or '.join(repr(n) for n in names)} field")
    return value


def _text(record: dict, *names: str) -> str:
    value = _value(record, *names)
    if not isinstance(value, str):
        raise ValueError(f"{names[0]!r} is {type(value).__name__}, not text")
    return value.strip()


def _optional_text(record: dict, *names: str) -> str:
    value = record_field(record, *names)
    return value.strip() if isinstance(value, str) else ""


def _id(record: dict, number: int, *names: str) -> str:
    value = record_field(record, *names) if names else None
    return str(number if value is None else value)


def _letter(value, options: tuple[str, ...]) -> str:
    """The gold letter from ``A``, ``(A)``, ``(a)`` or an option index (MMLU stores 0-3)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(options):
        return OPTION_LETTERS[value]
    letter = str(value).strip().strip("()").upper()
    if len(letter) != 1 or letter not in OPTION_LETTERS[: len(options)]:
        raise ValueError(f"answer {value!r} is not the letter of one of its {len(options)} options")
    return letter


def _options(record: dict) -> tuple[str, ...] | None:
    """Options listed in their own field: a list, a ``{"A": text}`` mapping, JSON text of either, or columns A, B..."""
    value = record_field(record, "options", "choices")
    if isinstance(value, str) and value.lstrip().startswith(("[", "{")):
        value = json.loads(value)
    if isinstance(value, dict):
        value = [value[letter] for letter in OPTION_LETTERS if value.get(letter) not in (None, "")]
    if value is None:  # MMBench: one column per letter, the unused ones empty
        value = []
        for letter in OPTION_LETTERS:
            text = record.get(letter)
            if text is None or text == "" or (isinstance(text, float) and math.isnan(text)):
                break
            value.append(text)
    if isinstance(value, list) and len(value) >= 2:
        return tuple(str(option).strip() for option in value)
    return None


def _required_options(record: dict) -> tuple[str, ...]:
    options = _options(record)
    if options is None:
        raise ValueError("no options: an 'options' or 'choices' list, or columns A, B, ...")
    return options


_OPTIONS_LABEL = re.compile(r"(?:^|\n)[ \t]*(?:options|choices)[ \t]*:[ \t]*", re.IGNORECASE)
_OPTION_PREFIX = re.compile(r"^\s*[(（]?[A-Za-z][)）.:]\s*")


def _markers(text: str, start: int, pattern: str, letters: str) -> list[re.Match]:
    """Consecutive option markers A, B, C... (each after the last) from ``start``, by ``pattern`` with ``{L}``."""
    found: list[re.Match] = []
    for letter in letters:
        match = re.compile(pattern.replace("{L}", letter), re.MULTILINE).search(
            text, found[-1].end() if found else start
        )
        if match is None:
            break
        found.append(match)
    return found


def split_options(text: str) -> tuple[str, tuple[str, ...]]:
    """``(question, options)`` from a question that embeds its options, in any of the forms benchmarks use:
    ``Options: A: x, B: y`` (MMStar), ``(A) x`` / ``A. x`` lines (MMStar, RealWorldQA, V*Bench) or inline
    ``(a) x (b) y`` (MMVP). Without an "Options:" label, lines after the last option (an instruction to the model)
    are dropped; with one, options may span lines (code)."""
    labels = list(_OPTIONS_LABEL.finditer(text))
    start = labels[-1].end() if labels else 0
    tries = (
        [r"(?<![^\s,]){L}[.:)](?=\s)", r"\({L}\)"]
        if labels
        else [r"^[ \t]*(?:\({L}\)|{L}[.:)])(?=\s)", r"\({L}\)"]  # an option per line, else inline "(A) x (B) y"
    )
    markers: list[re.Match] = []
    for pattern in tries:
        for letters in (OPTION_LETTERS, OPTION_LETTERS.lower()):
            markers = _markers(text, start, pattern, letters)
            if len(markers) >= 2:
                break
        if len(markers) >= 2:
            break
    if len(markers) < 2:
        raise ValueError("no options (A), (B), ... in the question")
    ends = [m.start() for m in markers[1:]] + [len(text)]
    options = [text[m.end() : end].strip().rstrip(",;").strip() for m, end in zip(markers, ends, strict=True)]
    if not labels:  # after options one per line (or inline), a line of its own is an instruction to the model
        options[-1] = options[-1].split("\n")[0].strip()
    question = text[: labels[-1].start() if labels else markers[0].start()].strip()
    return question, tuple(options)


def _images(record: dict, folder: Path, *names: str) -> tuple[bytes, ...]:
    found = []
    for name in names:
        value = record.get(name)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            found += image_bytes(value, folder, {})
    return tuple(found)


# ---- adapters: one row of a benchmark's Hub copy -> Item ----


def _vstar(record: dict, folder: Path, number: int) -> Item:
    question, options = split_options(_text(record, "text", "question"))
    return Item(
        id=_id(record, number, "question_id"),
        question=question,
        options=options,
        answer=_letter(_value(record, "label", "answer"), options),
        category=_text(record, "category"),
        images=_images(record, folder, "image"),
    )


def _mmvp(record: dict, folder: Path, number: int) -> Item:
    index = _id(record, number, "index")
    _, options = split_options(_text(record, "options"))  # "(a) Open (b) Closed"
    # Hub copies carry the image; the original release is Questions.csv beside "MMVP Images/<Index>.jpg".
    images = _images(record, folder, "image") or tuple(image_bytes(f"MMVP Images/{index}.jpg", folder, {}))
    return Item(
        id=index,
        question=_text(record, "question"),
        options=options,
        answer=_letter(_value(record, "correct answer", "answer"), options),
        category="MMVP",
        images=images,
    )


def _realworldqa(record: dict, folder: Path, number: int) -> Item | None:
    try:
        question, options = split_options(_text(record, "question"))
    except ValueError:
        return None  # an open question ("answer with a single word or number"): not multiple choice
    answer = _text(record, "answer")
    if answer.strip("()").upper() not in OPTION_LETTERS[: len(options)]:
        return None
    return Item(
        id=_id(record, number, "id", "index"),
        question=question,
        options=options,
        answer=_letter(answer, options),
        category="RealWorldQA",
        images=_images(record, folder, "image"),
    )


def _cv_bench(record: dict, folder: Path, number: int) -> Item:
    options = _required_options(record)
    return Item(
        id=_id(record, number, "idx"),
        question=_text(record, "question"),
        options=options,
        answer=_letter(_value(record, "answer"), options),
        category=_text(record, "type"),  # 2D / 3D
        subcategory=_text(record, "source"),  # ADE20K, COCO / Omni3D: what CV-Bench averages over
        images=_images(record, folder, "image"),
    )


def _mmstar(record: dict, folder: Path, number: int) -> Item:
    options = _options(record)
    question = _text(record, "question")
    if options is None:  # the Hub copy embeds them: "...\nOptions: A: x, B: y, C: z, D: w"
        question, options = split_options(question)
    return Item(
        id=_id(record, number, "index"),
        question=question,
        options=options,
        answer=_letter(_value(record, "answer"), options),
        category=_text(record, "category"),
        subcategory=_optional_text(record, "l2_category"),
        images=_images(record, folder, "image"),
    )


def _mme_realworld(record: dict, folder: Path, number: int) -> Item:
    listed = _value(record, "multi-choice options", "options")
    options = tuple(_OPTION_PREFIX.sub("", str(option)).strip() for option in listed)
    category = _text(record, "category")  # "Perception/Autonomous_Driving"
    task = "perception" if "perception" in category.lower() else "reasoning"
    area = category.split("/")[-1].replace("_", " ").strip().lower()
    return Item(
        id=_id(record, number, "index"),
        question=_text(record, "question"),
        options=options,
        answer=_letter(_value(record, "answer"), options),
        category=f"{task}: {area}",
        subcategory=_optional_text(record, "l2-category"),
        images=_images(record, folder, "bytes", "image"),
    )


def _text_mcq(record: dict, folder: Path, number: int) -> Item:
    """MMLU and MMLU-Pro: text only."""
    options = _required_options(record)
    return Item(
        id=_id(record, number, "question_id", "id"),
        question=_text(record, "question"),
        options=options,
        answer=_letter(_value(record, "answer"), options),
        category=_text(record, "category", "subject"),
    )


def _mmbench(record: dict, folder: Path, number: int) -> Item:
    options = _required_options(record)
    hint = _optional_text(record, "hint")
    question = _text(record, "question")
    return Item(
        id=_id(record, number, "index", "id"),
        question=f"{hint}\n{question}" if hint and hint.lower() != "nan" else question,
        options=options,
        answer=_letter(_value(record, "answer"), options),
        category=_optional_text(record, "l2-category") or _text(record, "category"),
        subcategory=_optional_text(record, "category") if record_field(record, "l2-category") else "",
        images=_images(record, folder, "image"),
    )


def _blink(record: dict, folder: Path, number: int) -> Item:
    options = _required_options(record)
    return Item(
        id=_id(record, number, "idx"),
        question=_text(record, "question").replace("<image>", "").strip(),
        options=options,
        answer=_letter(_value(record, "answer"), options),
        category=_text(record, "sub_task"),
        images=_images(record, folder, "image_1", "image_2", "image_3", "image_4"),
    )


def _lgt(record: dict, folder: Path, number: int) -> Item:
    options = _required_options(record)
    return Item(
        id=_id(record, number, "id"),
        question=_text(record, "question"),
        options=options,
        answer=_letter(_value(record, "answer"), options),
        category=_text(record, "skill"),
        subcategory=f"level {record.get('level', 1)}",
        images=_images(record, folder, "image"),
    )


BLINK_TASKS = (
    "Art_Style",
    "Counting",
    "Forensic_Detection",
    "Functional_Correspondence",
    "IQ_Test",
    "Jigsaw",
    "Multi-view_Reasoning",
    "Object_Localization",
    "Relative_Depth",
    "Relative_Reflectance",
    "Semantic_Correspondence",
    "Spatial_Relation",
    "Visual_Correspondence",
    "Visual_Similarity",
)
MMSTAR_V = ("coarse perception", "fine-grained perception", "instance reasoning")
MME_REALWORLD_V = (
    "perception: remote sensing",
    "perception: autonomous driving",
    "perception: monitoring",
    "reasoning: autonomous driving",
    "reasoning: monitoring",
)

BENCHMARKS = {
    b.name: b
    for b in (
        Benchmark("vstar", "V*Bench", "lmms-lab/vstar-bench", "test", _vstar),
        Benchmark("mmvp", "MMVP", "lmms-lab-eval/MMVP", "train", _mmvp),
        Benchmark("realworldqa", "RealWorldQA", "lmms-lab/RealWorldQA", "test", _realworldqa),
        Benchmark("cv-bench", "CV-Bench", "nyu-visionx/CV-Bench", "test", _cv_bench, aggregation="cv-bench"),
        Benchmark("mmstar", "MMStar", "Lin-Chen/MMStar", "val", _mmstar),
        Benchmark("mmstar-v", "MMStar-V", "Lin-Chen/MMStar", "val", _mmstar, categories=MMSTAR_V),
        Benchmark("mme-realworld", "MME-RealWorld", "yifanzhang114/MME-RealWorld-Lmms-eval", "train", _mme_realworld),
        Benchmark(
            "mme-realworld-v",
            "MME-RealWorld-V",
            "yifanzhang114/MME-RealWorld-Lmms-eval",
            "train",
            _mme_realworld,
            categories=MME_REALWORLD_V,
        ),
        Benchmark("mmlu-pro", "MMLU-Pro", "TIGER-Lab/MMLU-Pro", "test", _text_mcq),
        Benchmark("mmlu", "MMLU", "cais/mmlu", "test", _text_mcq, configs=("all",)),
        Benchmark("mmbench", "MMBench (en, dev)", "lmms-lab/MMBench", "dev", _mmbench, configs=("en",)),
        Benchmark("mmbench-cn", "MMBench (cn, dev)", "lmms-lab/MMBench", "dev", _mmbench, configs=("cn",)),
        Benchmark(
            "blink", "BLINK (val)", "BLINK-Benchmark/BLINK", "val", _blink, BLINK_TASKS, aggregation="category-mean"
        ),
    )
}
# The paper's suite, in the order of its table.
PAPER = ("vstar", "mmvp", "realworldqa", "cv-bench", "mmstar-v", "mme-realworld-v", "mmlu-pro")
LGT_CONFIGS = ("mcq_stage1", "mcq_stage2")


def lgt_benchmark(location: str) -> Benchmark:
    """An lgt build's ``test`` split (``mcq_stage1`` and ``mcq_stage2``), from a local build folder or a Hub repo."""
    if Path(location).exists():
        return Benchmark("lgt", f"lgt build {Path(location).name}", "", "test", _lgt, LGT_CONFIGS, local=location)
    return Benchmark("lgt", f"lgt build {location}", location, "test", _lgt, LGT_CONFIGS)


def resolve(names: str) -> list[Benchmark]:
    """``--benchmark``: comma-separated names, ``paper`` for the paper's suite, ``lgt:PATH_OR_REPO``."""
    found: dict[str, Benchmark] = {}
    for name in (n.strip() for n in names.split(",") if n.strip()):
        if name.startswith("lgt:"):
            found["lgt"] = lgt_benchmark(name[len("lgt:") :])
        elif name == "paper":
            found.update((n, BENCHMARKS[n]) for n in PAPER)
        elif name in BENCHMARKS:
            found[name] = BENCHMARKS[name]
        else:
            raise ValueError(
                f"unknown benchmark {name!r}: one of {', '.join(BENCHMARKS)}, 'paper' ({', '.join(PAPER)}) "
                "or lgt:PATH_OR_REPO"
            )
    if not found:
        raise ValueError("--benchmark names no benchmark")
    return list(found.values())


# ---- where the rows come from ----


@dataclass
class Loaded:
    """A benchmark's rows: ``source`` (Hub id and revision, or local data and its content hash) for the score file,
    and, once ``items`` has been read, how many rows were ``skipped`` (not multiple choice) and why."""

    benchmark: Benchmark
    source: dict
    rows: Callable[[], Iterator[tuple[str, dict, Path]]]
    skipped: Counter = field(default_factory=Counter)

    def items(self) -> Iterator[Item]:
        """The benchmark's items, in row order; a row that cannot be read stops with one line naming it."""
        seen: set[str] = set()
        wanted = set(self.benchmark.categories)
        for number, (where, record, folder) in enumerate(self.rows()):
            try:
                item = self.benchmark.adapter(record, folder, number)
            except (KeyError, ValueError, TypeError, OSError, binascii.Error) as error:
                raise InputError(where, str(number), f"not a {self.benchmark.title} row: {error}") from None
            if item is None:
                self.skipped["not multiple choice"] += 1
                continue
            if wanted and item.category not in wanted:
                continue
            if item.id in seen:
                raise InputError(where, str(number), f"id {item.id} appears twice in {self.benchmark.title}")
            seen.add(item.id)
            yield item


def load(benchmark: Benchmark, data: str | Path | None = None) -> Loaded:
    """The benchmark's rows from ``data`` (a file, or a folder of its files), else from its Hub copy."""
    data = data or benchmark.local
    loaded = _local(benchmark, Path(data)) if data else _hub(benchmark)
    logger.info(f"{benchmark.name}: {benchmark.title} from {', '.join(f'{k} {v}' for k, v in loaded.source.items())}")
    return loaded


def data_files(path: Path, split: str, configs: tuple[str, ...] = ()) -> list[Path]:
    """A benchmark's data files under ``path``: inside a folder named after one of its ``configs`` when there is one,
    and named ``<split>-*`` / ``<split>.*`` when some are (as a Hub snapshot lays them out); hidden ones aside."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InputError(str(path), None, "no such file or folder (--data)")
    files = sorted(
        p
        for p in path.rglob("*")
        if p.suffix.lower() in DATA_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    files = [p for p in files if set(p.relative_to(path).parts[:-1]) & set(configs)] or files
    files = [p for p in files if re.match(rf"{re.escape(split)}[-.]", p.name)] or files
    if not files:
        raise InputError(str(path), None, f"no data files ({', '.join(DATA_SUFFIXES)}) in this folder")
    return files


def _local(benchmark: Benchmark, path: Path) -> Loaded:
    from ..generation.backend import file_digests

    files = data_files(path, benchmark.split, benchmark.configs)
    digests = file_digests(files)
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file.relative_to(path) if path.is_dir() else file.name}\0{digests[file]}\0".encode())
    source = {"hub_id": benchmark.hub_id, "data": path.name, "revision": f"sha256:{digest.hexdigest()[:16]}"}

    def rows():
        for file in files:
            try:
                for _, record in read_records(file):
                    yield str(file), record, file.parent
            except (ValueError, UnicodeDecodeError) as error:  # not JSON, not parquet ...
                raise InputError(str(file), None, f"cannot be read as {file.suffix} ({error})") from None

    return Loaded(benchmark, source, rows)


def _hub(benchmark: Benchmark) -> Loaded:
    """Rows from the Hub copy, at the commit the Hub names now (recorded); a one-line error when it cannot be read."""
    import datasets
    from huggingface_hub import HfApi, constants

    where = f"{benchmark.title} ({benchmark.hub_id} on the Hub)"
    if constants.HF_HUB_OFFLINE:
        raise BuildError(f"{where}: the Hub is off (HF_HUB_OFFLINE=1); pass --data with a local copy of its files")
    try:
        revision = HfApi().dataset_info(benchmark.hub_id).sha
        tables = [
            datasets.load_dataset(benchmark.hub_id, config, split=benchmark.split, revision=revision)
            for config in benchmark.configs or (None,)
        ]
    except Exception as error:  # offline, gated, renamed, a missing split: all say the same to the user
        raise BuildError(
            f"{where} cannot be read: {one_line(str(error)) or type(error).__name__}; log in for a gated dataset "
            "(hf auth login) or pass --data with a local copy"
        ) from None
    tables = [_undecoded(table) for table in tables]
    source = {"hub_id": benchmark.hub_id, "revision": revision, "split": benchmark.split}
    if benchmark.configs:
        source["configs"] = list(benchmark.configs)

    def rows():
        for config, table in zip(benchmark.configs or (None,), tables, strict=True):
            where = f"{benchmark.hub_id}@{revision[:12]}" + (f"/{config}" if config else "") + f"/{benchmark.split}"
            for record in table:
                yield where, record, Path(".")

    return Loaded(benchmark, source, rows)


def _undecoded(table):
    """Image columns as their encoded bytes: an adapter passes them on, it never needs pixels."""
    from datasets import Image

    for name, feature in table.features.items():
        if isinstance(feature, Image):
            table = table.cast_column(name, Image(decode=False))
    return table


# ---- decontamination ----


def export(loaded: Loaded, path: str | Path) -> int:
    """Write the benchmark's questions, options, answers and images as the parquet file ``lgt build --benchmark``
    reads (its name is the benchmark's in the card); the number of items written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        {
            "id": pa.string(),
            "question": pa.string(),
            "options": pa.list_(pa.string()),
            "answer": pa.string(),
            "category": pa.string(),
            "images": pa.list_(pa.binary()),
        }
    )
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    count = 0
    try:
        with pq.ParquetWriter(partial, schema) as writer:
            batch: list[dict] = []
            for item in loaded.items():
                batch.append({**{k: getattr(item, k) for k in schema.names[:-1]}, "images": list(item.images)})
                if len(batch) == 256:
                    writer.write_table(pa.Table.from_pylist(batch, schema))
                    count, batch = count + len(batch), []
            writer.write_table(pa.Table.from_pylist(batch, schema))
            count += len(batch)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(path)
    return count
