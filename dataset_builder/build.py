"""``lgt build``: run the builder for each config and lay the result out as a Hub dataset repository.

Layout: ``<output>/<config>/<split>-NNNNN-of-MMMMM.parquet`` + ``README.md`` (the card, with YAML ``configs``)
+ ``lgt_build.json`` (what was built, how). Everything is written into a temporary sibling folder and moved into
place only when complete, so a failed or interrupted build leaves any previous output untouched.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import tempfile
import time

import datasets
import pyarrow as pa
from datasets.arrow_writer import ParquetWriter, get_writer_batch_size_from_data_size

from . import __version__, audit
from .builder import FEATURES, LGTBuilder
from .card import write_card

BUILD_INFO_FILE = "lgt_build.json"
CONFIGS = tuple(FEATURES)


def rejects_path(output: str) -> str:
    """The reject report sits beside the output folder, so it is never uploaded with the dataset."""
    return os.path.abspath(output).rstrip(os.sep) + ".rejects.jsonl"


def _arrow_to_parquet(builder: LGTBuilder, config: str, out_dir: str) -> dict[str, int]:
    """Rewrite the builder's arrow shards as ``<split>-NNNNN-of-MMMMM.parquet`` with datasets' own writer."""
    rows = {}
    os.makedirs(out_dir, exist_ok=True)
    for split, info in builder.info.splits.items():
        pattern = os.path.join(builder.cache_dir, f"{builder.dataset_name}-{split}")
        shards = sorted(glob.glob(pattern + ".arrow") + glob.glob(pattern + "-*.arrow"))
        # A worker whose scenes were all rejected leaves an empty shard: keep only shards with rows.
        lengths = info.shard_lengths or [info.num_examples]
        shards = [path for path, length in zip(shards, lengths, strict=True) if length]
        for index, path in enumerate(shards):
            target = os.path.join(out_dir, f"{split}-{index:05d}-of-{len(shards):05d}.parquet")
            writer = ParquetWriter(features=FEATURES[config], path=target, embed_local_files=False)
            with pa.OSFile(path) as source:  # read batch by batch (a memory map would keep every page resident)
                batches, group_rows = [], None
                for batch in pa.ipc.open_stream(source):
                    # Row groups of ~100 MB as datasets aims for (its default of 1,000 rows is 3x slower here),
                    # written one at a time so memory stays flat however large the shard.
                    group_rows = group_rows or get_writer_batch_size_from_data_size(batch.num_rows, batch.nbytes)
                    batches.append(batch)
                    if sum(b.num_rows for b in batches) >= group_rows:
                        writer.write_table(pa.Table.from_batches(batches), group_rows)
                        batches = []
                if batches:
                    writer.write_table(pa.Table.from_batches(batches), group_rows)
            count, _ = writer.finalize()
            writer.close()
            rows[split] = rows.get(split, 0) + count
    return rows


def _is_lgt_build(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, BUILD_INFO_FILE))


def build(
    source: str = "scenes",
    configs: tuple[str, ...] = CONFIGS,
    output: str = "lgt",
    num_images: int | None = None,
    num_proc: int | None = None,
    seed: int = 0,
    images: str = "embed",
    on_error: str = "raise",
    strict: bool = False,
) -> dict:
    """Build ``configs`` from ``source`` into ``output``; return the build info (counts, rejects, arguments).

    ``strict``: fail (``audit.ShortcutError``) when a blind reader answers a skill too well, instead of warning.
    """
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        raise ValueError(f"unknown config(s) {', '.join(unknown)}: choose from {', '.join(CONFIGS)}")
    output = os.path.abspath(output)
    if os.path.exists(output) and not _is_lgt_build(output):
        raise FileExistsError(f"{output} exists and is not an lgt build: choose another --output or remove it")
    parent = os.path.dirname(output)
    os.makedirs(parent, exist_ok=True)
    arguments = {
        "source": source,
        "configs": list(configs),
        "num_images": num_images,
        "seed": seed,
        "images": images,
        "on_error": on_error,
    }
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(output)}-building-", dir=parent)
    try:
        folder = os.path.join(staging, "out")
        rejects: dict[tuple, dict] = {}
        rows, source_info = {}, None
        started = time.time()
        for config in configs:
            builder = LGTBuilder(
                config_name=config,
                cache_dir=os.path.join(staging, "cache"),
                source=source,
                num_images=num_images,
                seed=seed,
                images=images,
                on_error=on_error,
            )
            builder.download_and_prepare(
                file_format="arrow", num_proc=num_proc, download_mode=datasets.DownloadMode.FORCE_REDOWNLOAD
            )
            rows[config] = _arrow_to_parquet(builder, config, os.path.join(folder, config))
            source_info = builder.source_info
            for reject in builder.rejects:
                rejects.setdefault((reject["file"], reject["record"]), reject)
            shutil.rmtree(builder.cache_dir, ignore_errors=True)
        info = {
            "lgt_version": __version__,
            "datasets_version": datasets.__version__,
            "arguments": arguments,
            "configs": [c for c in configs if rows[c]],
            "rows": rows,
            "source": source_info,
            "rejects": len(rejects),
            "seconds": round(time.time() - started, 1),
        }
        if rows.get("mcq_stage1"):
            info[audit.BUILD_INFO_KEY] = audit.audit_build(folder)
            audit.enforce(info[audit.BUILD_INFO_KEY], strict)
        with open(os.path.join(folder, BUILD_INFO_FILE), "w", encoding="utf-8") as f:
            json.dump(info, f, indent=2)
        write_card(folder, info)
        _replace(folder, output, staging)
        if on_error == "skip":
            with open(rejects_path(output), "w", encoding="utf-8") as f:
                f.writelines(json.dumps(reject) + "\n" for reject in rejects.values())
        elif os.path.exists(rejects_path(output)):  # a report from an earlier build no longer describes this one
            os.remove(rejects_path(output))
        return info
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _replace(folder: str, output: str, staging: str) -> None:
    """Move the finished build into place; an older build is moved aside first and removed only after."""
    old = os.path.join(staging, "previous")
    if os.path.exists(output):
        os.rename(output, old)
    os.rename(folder, output)
