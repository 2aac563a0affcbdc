"""``lgt build``: run the builder for each config and lay the result out as a Hub dataset repository.

Layout: ``<output>/<config>/<split>-NNNNN-of-MMMMM.parquet`` + ``README.md`` (the card, with YAML ``configs``)
+ ``lgt_build.json`` (what was built, how). Everything is written into a staging folder beside the output and
swapped into place only when complete (``output.py``), so a failed, interrupted or killed build leaves the previous
output untouched.

Configs are prepared parents first (``scenes`` before ``mcq_stage1``) in one cache folder, so each image is decoded
or rendered once per build; a parent that was not asked for is prepared but not written.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import time

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
from datasets.arrow_writer import get_writer_batch_size_from_data_size
from datasets.features.features import require_storage_embed
from datasets.utils import logging
from datasets.utils.py_utils import convert_file_size_to_int

from . import __version__, audit, trace_stats
from .builder import FEATURES, SPLITS, LGTBuilder, LGTConfig, arrow_shards, inputs, source_label
from .card import split_files, write_card
from .detection.command import check_boxes
from .errors import EmptyBuildError, InputError
from .generation import Bill, Engine, GenerationCache, ModelSpec, default_cache_path
from .output import staged_output

logger = logging.get_logger(__name__)

BUILD_INFO_FILE = "lgt_build.json"
CONFIGS = tuple(FEATURES)
# The configs every other is made from: a build in which one of them is empty is refused.
ESSENTIAL = ("scenes", "mcq_stage1")
# A dictionary page holds a row group's distinct images; past this size parquet falls back to storing every row's
# image again. Row groups are cut at datasets' ~100 MB of expanded rows, so their distinct images stay below it.
DICTIONARY_PAGE_LIMIT = 4 * convert_file_size_to_int(datasets.config.MAX_ROW_GROUP_SIZE)


def rejects_path(output: str) -> str:
    """The reject report sits beside the output folder, so it is never uploaded with the dataset."""
    return os.path.abspath(output).rstrip(os.sep) + ".rejects.jsonl"


def parquet_writer(path: str, features: datasets.Features) -> pq.ParquetWriter:
    """A parquet writer as ``datasets`` writes its files, except that image columns are dictionary-encoded.

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


def _leaf_paths(path: str, pa_type: pa.DataType) -> list[str]:
    """Parquet's names for the leaf columns of an Arrow field (``image.bytes``, ``options.list.element``)."""
    if pa.types.is_struct(pa_type):
        return [leaf for field in pa_type for leaf in _leaf_paths(f"{path}.{field.name}", field.type)]
    if pa.types.is_list(pa_type) or pa.types.is_large_list(pa_type) or pa.types.is_fixed_size_list(pa_type):
        return _leaf_paths(f"{path}.list.element", pa_type.value_type)
    return [path]


def _arrow_to_parquet(builder: LGTBuilder, config: str, out_dir: str) -> dict[str, int]:
    """Rewrite the builder's Arrow shards as ``<split>-NNNNN-of-MMMMM.parquet``, in row order (grouped by image)."""
    rows = {}
    os.makedirs(out_dir, exist_ok=True)
    for split in builder.info.splits:
        shards = arrow_shards(builder, split)
        for index, (path, _) in enumerate(shards):
            target = os.path.join(out_dir, f"{split}-{index:05d}-of-{len(shards):05d}.parquet")
            with parquet_writer(target, FEATURES[config]) as writer, pa.OSFile(path) as source:
                # Read batch by batch (a memory map would keep every page resident). Row groups of ~100 MB of
                # expanded rows, as datasets aims for, written one at a time so memory stays flat.
                batches, group_rows = [], None
                for batch in pa.ipc.open_stream(source):
                    group_rows = group_rows or get_writer_batch_size_from_data_size(batch.num_rows, batch.nbytes)
                    batches.append(batch)
                    if sum(b.num_rows for b in batches) >= group_rows:
                        writer.write_table(pa.Table.from_batches(batches), group_rows)
                        batches = []
                if batches:
                    writer.write_table(pa.Table.from_batches(batches), group_rows)
            rows[split] = rows.get(split, 0) + pq.ParquetFile(target).metadata.num_rows
    return rows


def needed_configs(configs: tuple[str, ...]) -> list[str]:
    """``configs`` and every config they are made from, parents first."""
    needed, pending = set(), list(configs)
    while pending:
        config = pending.pop()
        if config not in needed:
            needed.add(config)
            pending.extend(inputs(config))
    return [config for config in CONFIGS if config in needed]


def build(
    source: str = "scenes",
    configs: tuple[str, ...] = CONFIGS,
    output: str = "lgt",
    num_images: int | None = None,
    num_proc: int | None = None,
    seed: int = 0,
    images: str = "embed",
    on_error: str = "raise",
    max_pixels: int | None = None,
    image_root: str | None = None,
    strict: bool = False,
    **generation,
) -> dict:
    """Build ``configs`` from ``source`` into ``output``; return the build info (counts, rejects, arguments).

    Every argument is checked before anything is written; the build is staged and swapped in whole (``output.py``),
    and a config that would come out empty stops it with ``EmptyBuildError``, the previous build left in place.
    ``strict``: fail (``audit.ShortcutError``) when a blind reader answers a skill too well, instead of warning.
    ``generation``: the model and stage settings of ``LGTConfig`` (``writer``, ``verifier``, ``teacher``,
    ``reasoner``, ``stage1``, ``traces_per_mcq`` ...); what the models were asked, what they cost and what was
    thrown away is the info's ``generation`` (stage 1) and ``trace_generation`` (per traces config).
    """
    configs = _check_configs(configs)
    check_boxes(source, configs)
    if num_proc is not None and (type(num_proc) is not int or num_proc < 1):
        raise ValueError(f"num_proc must be a whole number from 1 up, not {num_proc!r}")
    settings = dict(source=source, num_images=num_images, seed=seed, images=images, on_error=on_error)
    settings.update(max_pixels=max_pixels, image_root=image_root, **generation)
    LGTConfig(name=configs[0], **settings)  # checks every setting, before anything is touched
    output = os.path.realpath(output)
    if not os.path.basename(output):
        raise ValueError(f"--output {output!r} must name a folder to write, not the root of the filesystem")
    arguments = {  # no local path (neither the source's folder nor --image-root): this file is published
        "source": source_label(source),
        "configs": list(configs),
        "num_images": num_images,
        "seed": seed,
        "images": images,
        "on_error": on_error,
        "max_pixels": max_pixels,
        **_generation_arguments(generation),
    }
    with staged_output(output, BUILD_INFO_FILE) as staging:
        rejects: dict[tuple, dict] = {}
        rows, num_bytes, source_info, generated, composed, traced, screened = {}, {}, None, None, None, {}, {}
        started = time.time()
        needed = needed_configs(configs)
        for position, config in enumerate(needed):  # the cache is fresh: a child finds its parent prepared there
            builder = LGTBuilder.with_settings(config, staging.cache, **settings)
            logger.info(f"Preparing {config}")
            prepared = time.time()
            builder.download_and_prepare(file_format="arrow", num_proc=num_proc)
            logger.debug(f"{config} prepared in {time.time() - prepared:.1f} s in {builder.cache_dir}")
            if config in configs:
                logger.info(f"Writing {config} as parquet")
                rows[config] = _arrow_to_parquet(builder, config, os.path.join(staging.folder, config))
                num_bytes[config] = {split: info.num_bytes for split, info in builder.info.splits.items()}
            source_info = builder.source_info
            if builder.generation and config == "mcq_stage1":
                generated = builder.generation
            elif builder.generation and config == "mcq_stage2":
                composed = builder.generation
            elif builder.generation:
                traced[config] = builder.generation
            if builder.decontamination:
                screened[config] = builder.decontamination
            for reject in builder.rejects:
                rejects.setdefault((reject["file"], reject["record"]), reject)
            if not any(config in inputs(later) for later in needed[position + 1 :]):
                shutil.rmtree(builder.cache_dir, ignore_errors=True)  # nothing reads it any more: free the disk
        empty = _refuse_empty(configs, rows, list(rejects.values()), output, generated)
        for config in empty:
            shutil.rmtree(os.path.join(staging.folder, config), ignore_errors=True)
        info = {
            "lgt_version": __version__,
            "datasets_version": datasets.__version__,
            "arguments": arguments,
            "configs": [config for config in configs if config not in empty],
            "rows": {config: counts for config, counts in rows.items() if config not in empty},
            "num_bytes": num_bytes,  # Arrow size per split: what load_dataset's cache of the parquet files takes
            "source": source_info,
            "rejects": len(rejects),
            "seconds": round(time.time() - started, 1),
        }
        if generated:
            info["generation"] = generated
        if composed:
            info["composition"] = composed
        if traced:
            info["trace_generation"] = traced
        if screened:
            info["decontamination"] = _screened_report(list(screened.values()))
        traced_configs = [config for config in ("traces_stage1", "traces_stage2") if rows.get(config)]
        if generation.get("judge") and traced_configs:
            info["trace_judge"] = _judge_traces(staging.folder, traced_configs, settings)
        audited = tuple(config for config in ("mcq_stage1", "mcq_stage2") if rows.get(config))
        if audited:
            info[audit.BUILD_INFO_KEY] = audit.audit_build(staging.folder, audited)
            audit.enforce(info[audit.BUILD_INFO_KEY], strict)
        with open(os.path.join(staging.folder, BUILD_INFO_FILE), "w", encoding="utf-8") as f:
            json.dump(info, f, indent=2)
        write_card(staging.folder, info)
        report = None  # without --on-error skip a report from an earlier build no longer describes this one
        if on_error == "skip":
            report = staging.path("rejects.jsonl")
            with open(report, "w", encoding="utf-8") as f:
                f.writelines(json.dumps(reject) + "\n" for reject in rejects.values())
        staging.commit({rejects_path(output): report})
    return info


def _judge_traces(folder: str, configs: list[str], settings: dict) -> dict:
    """The judge model's behaviour labels for a seeded sample of each traces config (``trace_stats``), cached."""
    config = LGTConfig(name=configs[0], **settings)
    cache = GenerationCache(config.generation_cache or default_cache_path())
    judge = Engine(config.judge, cache, cache_only=config.cache_only, **(config.engine_args or {}))
    try:
        judged = {}
        for name in configs:
            paths = [p for split in SPLITS for p in split_files(folder, name, split)]
            rows = pa.concat_tables(pq.read_table(p, columns=["id", "text", "cue", "kind"]) for p in paths).to_pylist()
            sample = random.Random(f"{config.seed}:judge:{name}").sample(rows, min(config.judged_traces, len(rows)))
            judged[name] = trace_stats.judge_statistics(sample, judge, "text")
        return judged
    finally:
        judge.close()


def _screened_report(reports: list[dict]) -> dict:
    """The decontamination of every MCQ config as one report: the same benchmarks and rules, counts added up."""
    return {
        **reports[0],
        "checked": sum(report["checked"] for report in reports),
        "dropped": {reason: sum(report["dropped"][reason] for report in reports) for reason in ("question", "image")},
    }


def _refuse_empty(
    configs: tuple[str, ...], rows: dict, rejects: list[dict], output: str, generated: dict | None = None
) -> list[str]:
    """Stop when the build would replace a good one with an empty one; return the derived configs left empty.

    The configs every other is made from (``scenes``, ``mcq_stage1``) must have rows, and so must at least one of
    those asked for. A derived config may come out empty on a small source (too few questions of an image to compose
    a stage-2 question, say): it is left out of the output and the card, with a warning, rather than fail the build.
    """
    empty = [config for config in configs if not any(rows[config].values())]
    fatal = [config for config in empty if config in ESSENTIAL] or (empty if len(empty) == len(configs) else [])
    if not fatal:
        for config in empty:
            logger.warning(f"{config} came out empty (too few rows to make it from); it is left out of {output}")
        return empty
    if generated and not generated["questions"]:
        reasons = ", ".join(f"{reason} {count:,}" for reason, count in generated["rejects"].items())
        why = f"the model kept no question ({reasons}); read its answers in the generation cache or change --writer"
    elif rejects:
        why = f"{len(rejects):,} bad record(s) were skipped, the first: {InputError.from_reject(rejects[0])}"
    else:
        why = "no scene gave a row for it (questions need scenes with objects)"
    raise EmptyBuildError(f"config {', '.join(fatal)} came out empty: {why}; {output} was left as it was")


def dry_run(
    source: str = "scenes",
    configs: tuple[str, ...] = CONFIGS,
    num_proc: int | None = None,
    **settings,
) -> dict[str, Bill]:
    """What building ``configs`` would ask of each model, per stage and model; nothing is generated or written.

    The source is read and checked as the build reads it, in a temporary folder that is removed after, so the
    requests counted are exactly the build's. ``settings``: those of ``build`` (``num_images``, ``writer`` ...).
    """
    configs = _check_configs(configs)
    check_boxes(source, configs)
    bills = {}
    for config in needed_configs(configs):
        with tempfile.TemporaryDirectory(prefix="lgt-dry-run-") as cache:
            builder = LGTBuilder.with_settings(config, cache, source=source, **settings)
            bills.update({f"{config} {role}": bill for role, bill in builder.bill(num_proc).items()})
    return bills


def _check_configs(configs: tuple[str, ...]) -> tuple[str, ...]:
    """The configs asked for, each once, in order; ``ValueError`` for none or an unknown one."""
    configs = tuple(dict.fromkeys(configs))
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown or not configs:
        raise ValueError(f"unknown config(s) {', '.join(unknown) or '(none given)'}: choose from {', '.join(CONFIGS)}")
    return configs


def _generation_arguments(generation: dict) -> dict:
    """The model settings as ``lgt_build.json`` records them: models by name (a local folder by its own name only)."""
    named = {}
    for role in ("writer", "verifier", "teacher", "reasoner", "judge"):
        if generation.get(role):
            spec = ModelSpec.parse(generation[role])
            named[role] = f"{spec.backend}:{spec.name}"
    stages = {name: generation.get(name, getattr(LGTConfig, name)) for name in _STAGE_SETTINGS}
    if not named:
        return stages
    return {
        **named,
        "stage1": generation.get("stage1"),
        "questions_per_image": generation.get("questions_per_image", LGTConfig.questions_per_image),
        "cache_only": bool(generation.get("cache_only")),
        **stages,
    }


# The settings of the trace, SFT and DPO stages that lgt_build.json records, with or without models.
_STAGE_SETTINGS = (
    "traces_per_mcq",
    "trace_temperature",
    "trace_top_p",
    "sft_keep_ratio",
    "sft_xo_ratio",
    "pairs_per_mcq",
)
