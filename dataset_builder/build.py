"""``lgt build``: run the builder for each config and lay the result out as a Hub dataset repository.

Layout: ``<output>/<config>/<split>-NNNNN-of-MMMMM.parquet`` + ``README.md`` (the card, with YAML ``configs``)
+ ``lgt_build.json`` (what was built, how). Everything is written into a staging folder beside the output and
swapped into place only when complete (``output.py``), so a failed, interrupted or killed build leaves the previous
output untouched.

Configs are prepared parents first (``scenes`` before ``mcq_stage1``) in one cache folder, so each image is decoded
or rendered once per build; a parent that was not asked for is prepared but not written.

A config's files are its work units' (``builder.py``): ``<split>-<unit>-of-<units>.parquet``, so part I of N of a
build (``shard``) writes its units' files under the names they have in the whole build, and ``lgt merge`` (or a
Hub repository the parts were pushed to) gathers them unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
from datasets.arrow_writer import get_writer_batch_size_from_data_size
from datasets.features.features import require_storage_embed
from datasets.utils import logging
from datasets.utils.py_utils import convert_file_size_to_int

from . import __version__, audit, trace_audit, trace_stats
from .builder import SPLITS, ArrowStreams, LGTBuilder, SceneImages, Survey, arrow_files, image_columns, unit_files
from .card import parquet_rows, split_files, write_card
from .errors import EmptyBuildError, InputError
from .generation import Bill, Engine, GenerationCache, default_cache_path
from .output import staged_output
from .settings import LGTConfig, check_names, recorded, takes_settings
from .sources import SOURCES
from .stages import STAGES, configs_of, inputs, needed, root

logger = logging.get_logger(__name__)

BUILD_INFO_FILE = "lgt_build.json"
# A part's build record holds its source's object names under this key, for the merge's trace audit to mask.
OBJECT_NAMES_KEY = "object_names"
# A dictionary page holds a row group's distinct images; past this size parquet falls back to storing every row's
# image again. Row groups are cut at datasets' ~100 MB of expanded rows, so their distinct images stay below it.
DICTIONARY_PAGE_LIMIT = 4 * convert_file_size_to_int(datasets.config.MAX_ROW_GROUP_SIZE)
# Rows handed to the parquet writer at a time, counted from a unit's first row (datasets' batch for rows with
# images). A parquet file's pages follow the batches it is written from; cut this way, its bytes depend on its rows
# only, not on how the scratch's Arrow files are batched (compressed ones in up to 4,096 rows, see ``LGTBuilder``).
PARQUET_BATCH_ROWS = 100


def rejects_path(output: str) -> str:
    """The reject report sits beside the output folder, so it is never uploaded with the dataset."""
    return os.path.abspath(output).rstrip(os.sep) + ".rejects.jsonl"


def parquet_writer(features: datasets.Features) -> Callable[[str], pq.ParquetWriter]:
    """What opens a parquet writer for rows of ``features`` at a path, as ``datasets`` writes its files except that
    image columns are dictionary-encoded; the schema and options are worked out once, for the hundreds of files of
    a config.

    Kept from ``datasets``: the features in the schema metadata, content-defined chunking (so the Hub deduplicates
    unchanged pages across uploads), a page index, media bytes uncompressed and snappy elsewhere. Changed: with rows
    grouped by image, a dictionary-encoded image column stores each image once per row group instead of once per
    row (``datasets`` writes media PLAIN); readers decode it to the same values.
    """
    schema = features.arrow_schema
    compression = {
        leaf: "none" if require_storage_embed(features[field.name]) else "snappy"
        for field in schema
        for leaf in _leaf_paths(field.name, field.type)
    }
    cdc = datasets.config.DEFAULT_CDC_OPTIONS

    def open_writer(path: str) -> pq.ParquetWriter:
        writer = pq.ParquetWriter(
            path,
            schema,
            use_dictionary=True,
            dictionary_pagesize_limit=DICTIONARY_PAGE_LIMIT,
            compression=compression,
            use_content_defined_chunking=cdc,
            write_page_index=True,
        )
        writer.add_key_value_metadata({"content_defined_chunking": json.dumps(cdc)})
        return writer

    return open_writer


def _leaf_paths(path: str, pa_type: pa.DataType) -> list[str]:
    """Parquet's names for the leaf columns of an Arrow field (``image.bytes``, ``options.list.element``)."""
    if pa.types.is_struct(pa_type):
        return [leaf for field in pa_type for leaf in _leaf_paths(f"{path}.{field.name}", field.type)]
    if pa.types.is_list(pa_type) or pa.types.is_large_list(pa_type) or pa.types.is_fixed_size_list(pa_type):
        return _leaf_paths(f"{path}.list.element", pa_type.value_type)
    return [path]


def _arrow_to_parquet(
    builder: LGTBuilder,
    config: str,
    out_dir: str,
    survey: Survey,
    shard: tuple[int, int] | None,
    images: SceneImages | None,
    workers: int | None,
) -> tuple[dict[str, int], dict[str, int]]:
    """Write each of the build's units as ``<split>-<unit>-of-<units>.parquet``, rows in order (grouped by image);
    ``images``: the scenes' images, put back into rows whose Arrow files hold none (``images_by_reference``).
    Returns the rows written and the bytes the images put back add to the rows in an Arrow cache, per split.

    A unit without rows gets an empty file, so every name a split's files have exists once the parts are merged.
    Files are written by ``workers`` threads at once (Arrow reads and parquet writes release the GIL).
    """
    os.makedirs(out_dir, exist_ok=True)
    features = STAGES[config].features
    open_writer = parquet_writer(features)
    unstored = image_columns(features) if builder.images_by_reference and STAGES[config].parents else {}
    fill = (lambda batch: images.fill(batch, unstored)) if unstored else None
    jobs = []
    for split, owned in survey.owned(shard).items():
        units = survey.units[split]
        found = unit_files(builder, split, units) if split in builder.info.splits else {}
        jobs += [(split, f"{split}-{unit:05d}-of-{units:05d}.parquet", found.get(unit, [])) for unit in owned]

    streams = ArrowStreams()

    def write(job) -> tuple[int, int]:
        _, name, pieces = job
        with open_writer(os.path.join(out_dir, name)) as writer:
            return _write_rows(writer, pieces, streams, fill)

    # Each thread writes a run of consecutive units: it reads the Arrow files forward over its own units only (every
    # other unit's batches would have to be read, and decompressed, to be passed over).
    threads = max(1, min(workers or 1, len(jobs)))
    runs = [jobs[len(jobs) * i // threads : len(jobs) * (i + 1) // threads] for i in range(threads)]
    rows, added = {}, {}
    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            per_run = pool.map(lambda run: [write(job) for job in run], runs)
            written = [result for results in per_run for result in results]
        for (split, _, _), (count, size) in zip(jobs, written, strict=True):
            rows[split], added[split] = rows.get(split, 0) + count, added.get(split, 0) + size
    finally:
        streams.close()
    return rows, added


def _write_rows(
    writer: pq.ParquetWriter, pieces: list[tuple[str, int, int]], streams: ArrowStreams, fill=None
) -> tuple[int, int]:
    """Copy the rows ``(Arrow file, first row, rows)`` of each piece into ``writer``, batch by batch (a memory map
    would keep every page resident), ``fill``-ing each batch's images, in row groups of ~100 MB of expanded rows as
    datasets aims for, written one at a time so memory stays flat; return the rows written and the bytes ``fill``
    added."""
    batches, held, group_rows, added, written = [], 0, None, 0, 0
    staged = (batch for path, first, length in pieces for batch in streams.slices(path, first, length))
    for batch in _rebatched(staged, PARQUET_BATCH_ROWS):
        if fill:
            batch, size = fill(batch)
            added += size
        group_rows = group_rows or get_writer_batch_size_from_data_size(batch.num_rows, batch.nbytes)
        batches.append(batch)
        held += batch.num_rows
        if held >= group_rows:
            writer.write_table(pa.Table.from_batches(batches), group_rows)
            batches, held, written = [], 0, written + held
    if batches:
        writer.write_table(pa.Table.from_batches(batches), group_rows)
    return written + held, added


def _rebatched(batches, size: int):
    """The rows of ``batches`` again, in batches of ``size`` rows (the last fewer), cut from the first row; only a
    batch that spans two of the given ones is copied."""
    pending, count = [], 0
    for batch in batches:
        start = 0
        while start < batch.num_rows:
            take = min(size - count, batch.num_rows - start)
            pending.append(batch.slice(start, take))
            count, start = count + take, start + take
            if count == size:
                yield _joined(pending)
                pending, count = [], 0
    if pending:
        yield _joined(pending)


def _joined(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    return batches[0] if len(batches) == 1 else pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


def code_version() -> str:
    """A hash of lgt's own code and prompt files: ``lgt merge`` joins only parts built by the same code."""
    package = os.path.dirname(os.path.abspath(__file__))
    digest = hashlib.sha256()
    for folder, subfolders, files in os.walk(package):
        subfolders.sort()
        for name in sorted(files):
            if name.endswith((".py", ".txt")):
                path = os.path.join(folder, name)
                digest.update(os.path.relpath(path, package).encode() + b"\0")
                with open(path, "rb") as f:
                    digest.update(f.read())
    return digest.hexdigest()[:16]


def drop_empty_splits(folder: str, rows: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """Remove the files of each split that has no rows at all (a config's split is then absent, not empty)."""
    for config, counts in rows.items():
        for split in [split for split, count in counts.items() if not count]:
            for path in split_files(folder, config, split):
                os.remove(path)
    return {config: {split: n for split, n in counts.items() if n} for config, counts in rows.items()}


@takes_settings
def build(
    configs: tuple[str, ...] | None = None,
    output: str = "lgt",
    num_proc: int | None = None,
    strict: bool = False,
    **settings,
) -> dict:
    """Build ``configs`` (default: all) into ``output``; return the build info (counts, rejects, arguments).

    ``settings``: any ``LGTConfig`` field (``source``, ``num_images``, ``seed``, ``writer``, ``teacher``,
    ``traces_per_mcq`` ...; ``settings.py`` declares them all). Every one is checked before anything is written; the
    build is staged and swapped in whole (``output.py``), and a config that would come out empty stops it with
    ``EmptyBuildError``, the previous build left in place. ``strict``: fail (``audit.ShortcutError``) when a blind
    reader answers a skill too well, or (``trace_audit.TraceAuditError``) when the trace audit flags a line, instead
    of warning. What the models were asked, what they cost and what was
    thrown away is in the info under each model stage's ``report_key`` (``generation``, ``trace_generation`` ...).
    """
    configs = _check_configs(configs)
    if num_proc is not None and (type(num_proc) is not int or num_proc < 1):
        raise ValueError(f"num_proc must be a whole number from 1 up, not {num_proc!r}")
    check_names(settings)
    checked = LGTConfig(name=configs[0], **settings)  # checks every setting, before anything is touched
    _check_boxes(checked.source, configs)
    output = os.path.realpath(output)
    if not os.path.basename(output):
        raise ValueError(f"--output {output!r} must name a folder to write, not the root of the filesystem")
    kept = recorded(checked)  # no local path (neither the source's folder nor --image-root): this file is published
    arguments = {"source": kept.pop("source"), "configs": list(configs), **kept}
    with staged_output(output, BUILD_INFO_FILE) as staging:
        rejects: dict[tuple, dict] = {}
        rows, num_bytes, source_info, reports, screened, survey, images = {}, {}, None, {}, {}, None, None
        started = time.time()
        made = needed(configs)
        for position, config in enumerate(made):  # the cache is fresh: a child finds its parent prepared there
            # Only the scenes' Arrow files hold images, the others are compressed: the scratch stays near the output.
            builder = LGTBuilder.with_settings(config, staging.cache, staged=True, **settings)
            logger.info(f"Preparing {config}")
            prepared = time.time()
            builder.download_and_prepare(file_format="arrow", num_proc=num_proc)
            logger.debug(f"{config} prepared in {time.time() - prepared:.1f} s in {builder.cache_dir}")
            if survey is None:  # the root config, made first, surveyed the source and stores the images
                survey = Survey.load(builder.cache_dir)
                images = SceneImages(arrow_files(builder)) if builder.images_by_reference else None
            if config in configs:
                logger.info(f"Writing {config} as parquet")
                folder = os.path.join(staging.folder, config)
                rows[config], added = _arrow_to_parquet(
                    builder, config, folder, survey, checked.shard, images, num_proc
                )
                num_bytes[config] = {
                    split: info.num_bytes + added[split] for split, info in builder.info.splits.items()
                }
            source_info = builder.source_info
            if builder.generation:
                *path, key = STAGES[config].report_key
                _at(reports, path)[key] = builder.generation
            if builder.decontamination:
                screened[config] = builder.decontamination
            for reject in builder.rejects:
                rejects.setdefault((reject["file"], reject["record"]), reject)
            if not any(config in inputs(later) for later in made[position + 1 :]) and not (images and position == 0):
                shutil.rmtree(builder.cache_dir, ignore_errors=True)  # nothing reads it any more: free the disk
        info = {
            "lgt_version": __version__,
            "lgt_code": code_version(),
            "datasets_version": datasets.__version__,
            "arguments": arguments,
            "configs": list(configs),
            "rows": rows,
            "num_bytes": num_bytes,  # Arrow size per split: what load_dataset's cache of the parquet files takes
            "source": source_info,
            "rejects": len(rejects),
            "units": survey.units,  # work units per split: the files of each config's split
            "seconds": round(time.time() - started, 1),
            **reports,
        }
        if screened:
            info["decontamination"] = screened_report(list(screened.values()))
        if checked.shard:  # a part: ``lgt merge`` leaves out what the whole comes out without, and audits it
            info["shard"] = list(checked.shard)
            info[OBJECT_NAMES_KEY] = survey.names  # what the merge's trace audit masks (every part has them all)
            write_info(staging.folder, info, started)
        else:
            rejected = list(rejects.values())
            complete(
                staging.folder, output, info, rejected, strict, checked, started, num_proc=num_proc, names=survey.names
            )
        report = None  # without --on-error skip a report from an earlier build no longer describes this one
        if checked.on_error == "skip":
            report = staging.path("rejects.jsonl")
            with open(report, "w", encoding="utf-8") as f:
                f.writelines(json.dumps(reject) + "\n" for reject in rejects.values())
        staging.commit({rejects_path(output): report})
    return info


def complete(
    folder: str,
    output: str,
    info: dict,
    rejects: list[dict],
    strict: bool,
    judged: LGTConfig,
    started: float,
    spent: float = 0.0,
    num_proc: int | None = None,
    names: Sequence[str] = (),
) -> None:
    """What a whole build does once its files are written in ``folder`` (staged for ``output``) by ``build`` or
    ``lgt merge``, updating ``info``: leave out the splits and derived configs that came out empty
    (``EmptyBuildError`` where that cannot be), have the judge label the traces (``judged.judge``), audit the MCQs,
    the traces and the pairs (the MCQs in ``num_proc`` processes; the traces with the source's object ``names``
    masked), and write the build info and the card (``write_info``: ``started``, ``spent``)."""
    rows = drop_empty_splits(folder, info["rows"])
    empty = _refuse_empty(tuple(info["configs"]), rows, rejects, output, info)
    for config in empty:
        shutil.rmtree(os.path.join(folder, config), ignore_errors=True)
    info["configs"] = [config for config in info["configs"] if config not in empty]
    info["rows"] = {config: counts for config, counts in rows.items() if config not in empty}
    traced_configs = [name for name in configs_of("traces") if info["rows"].get(name)]
    if judged.judge and traced_configs:
        info["trace_judge"] = _judge_traces(folder, traced_configs, judged)
    audited = tuple(name for name in configs_of("mcq") if info["rows"].get(name))
    if audited:
        info[audit.BUILD_INFO_KEY] = audit.audit_build(folder, audited, num_proc)
        audit.enforce(info[audit.BUILD_INFO_KEY], strict)
    traced, paired = (
        tuple(name for name in configs_of(family) if info["rows"].get(name)) for family in ("traces", "dpo")
    )
    if traced or paired:
        info[trace_audit.BUILD_INFO_KEY] = trace_audit.audit_build(folder, traced, paired, audited, names)
        trace_audit.enforce(info[trace_audit.BUILD_INFO_KEY], strict)
    write_info(folder, info, started, spent)


def write_info(folder: str, info: dict, started: float, spent: float = 0.0) -> None:
    """The card where there are rows to describe (a part of a build may have none), and ``lgt_build.json``, whose
    ``seconds`` are ``spent`` (a merge's parts) and all since ``started``: every config, the audits and the card."""
    if any(any(counts.values()) for counts in info["rows"].values()):
        write_card(folder, info)
    info["seconds"] = round(spent + time.time() - started, 1)
    with open(os.path.join(folder, BUILD_INFO_FILE), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2)


def _judge_traces(folder: str, configs: list[str], config: LGTConfig) -> dict:
    """The judge model's behaviour labels for a seeded sample of each traces config (``trace_stats``), cached."""
    cache = GenerationCache(config.generation_cache or default_cache_path(), read_only=config.cache_only)
    judge = Engine(config.judge, cache, cache_only=config.cache_only, **(config.engine_args or {}))
    try:
        judged = {}
        for name in configs:
            paths = [p for split in SPLITS for p in split_files(folder, name, split)]
            total = sum(pq.ParquetFile(path).metadata.num_rows for path in paths)
            # the positions ``sample`` would draw from the rows themselves: only the sampled rows are kept
            rng = random.Random(f"{config.seed}:judge:{name}")
            picked = rng.sample(range(total), min(config.judged_traces, total))
            wanted = set(picked)
            found = {i: row for i, row in enumerate(parquet_rows(paths, ["id", "text", "cue", "kind"])) if i in wanted}
            judged[name] = trace_stats.judge_statistics([found[i] for i in picked], judge, "text")
        return judged
    finally:
        judge.close()


def screened_report(reports: list[dict]) -> dict:
    """The decontamination of every MCQ config as one report: the same benchmarks and rules, counts added up."""
    return {
        **reports[0],
        "checked": sum(report["checked"] for report in reports),
        "dropped": {reason: sum(report["dropped"][reason] for report in reports) for reason in ("question", "image")},
    }


def _at(reports: dict, path: list[str]) -> dict:
    """The dict at ``path`` in ``reports``, made where missing (``trace_generation`` holds one report per config)."""
    for key in path:
        reports = reports.setdefault(key, {})
    return reports


def _refuse_empty(configs: tuple[str, ...], rows: dict, rejects: list[dict], output: str, reports: dict) -> list[str]:
    """Stop when the build would replace a good one with an empty one; return the derived configs left empty.

    The configs every other is made from (``Stage.essential``: the scenes, stage 1) must have rows, and so must one of
    those asked for. A derived config may come out empty on a small source (too few questions of an image to compose
    a stage-2 question, say): it is left out of the output and the card, with a warning, rather than fail the build.
    """
    empty = [config for config in configs if not any(rows[config].values())]
    fatal = [config for config in empty if STAGES[config].essential] or (empty if len(empty) == len(configs) else [])
    if not fatal:
        for config in empty:
            logger.warning(f"{config} came out empty (too few rows to make it from); it is left out of {output}")
        return empty
    written = [_at(reports, STAGES[config].report_key) for config in fatal if STAGES[config].report_key]
    generated = next((report for report in written if report.get("questions") == 0), None)
    if generated:
        reasons = ", ".join(f"{reason} {count:,}" for reason, count in generated["rejects"].items())
        why = f"the model kept no question ({reasons}); read its answers in the generation cache or change --writer"
    elif rejects:
        why = f"{len(rejects):,} bad record(s) were skipped, the first: {InputError.from_reject(rejects[0])}"
    else:
        why = "no scene gave a row for it (questions need scenes with objects)"
    raise EmptyBuildError(f"config {', '.join(fatal)} came out empty: {why}; {output} was left as it was")


@takes_settings
def dry_run(configs: tuple[str, ...] | None = None, num_proc: int | None = None, **settings) -> dict[str, Bill]:
    """What building ``configs`` would ask of each model, per stage and model; nothing is generated or written.

    The source is read and checked as the build reads it, in a temporary folder that is removed after, so the
    requests counted are exactly the build's. ``settings``: those of ``build``.
    """
    configs = _check_configs(configs)
    check_names(settings)
    _check_boxes(LGTConfig(name=configs[0], **settings).source, configs)
    bills = {}
    for config in needed(configs):
        with tempfile.TemporaryDirectory(prefix="lgt-dry-run-") as cache:
            builder = LGTBuilder.with_settings(config, cache, **settings)
            bills.update({f"{config} {role}": bill for role, bill in builder.bill(num_proc).items()})
    return bills


def _check_boxes(source: str, configs: tuple[str, ...]) -> None:
    """``ValueError`` before anything is read when questions are asked of a source without boxes (``docci:``)."""
    kind = SOURCES.get(source.partition(":")[0])
    if kind is not None and not kind.has_boxes and set(configs) != {root()}:
        raise ValueError(
            f"{source} has captions but no boxes, and questions need boxes: run `lgt detect {source} --detector "
            f"transformers:MODEL --output scenes.jsonl` first and build from jsonl:scenes.jsonl (or build "
            f"--configs {root()})"
        )


def _check_configs(configs: tuple[str, ...] | None) -> tuple[str, ...]:
    """The configs asked for (``None``: all), each once, in order; ``ValueError`` for none or an unknown one."""
    configs = tuple(dict.fromkeys(tuple(STAGES) if configs is None else configs))
    unknown = [c for c in configs if c not in STAGES]
    if unknown or not configs:
        raise ValueError(f"unknown config(s) {', '.join(unknown) or '(none given)'}: choose from {', '.join(STAGES)}")
    return configs
