"""``lgt build``: run the builder for each config and lay the result out as a Hub dataset repository.

Layout: ``<output>/<config>/<split>-NNNNN-of-MMMMM.parquet`` + ``README.md`` (the card, with YAML ``configs``)
+ ``lgt_build.json`` (what was built, how). Everything is written into a staging folder beside the output and
swapped into place only when complete (``output.py``), so a failed, interrupted or killed build leaves the previous
output untouched.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import time

import datasets
import pyarrow as pa
from datasets.arrow_writer import ParquetWriter, get_writer_batch_size_from_data_size

from . import __version__
from .builder import FEATURES, LGTBuilder, LGTConfig
from .card import write_card
from .errors import EmptyBuildError, InputError
from .output import staged_output

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


def build(
    source: str = "scenes",
    configs: tuple[str, ...] = CONFIGS,
    output: str = "lgt",
    num_images: int | None = None,
    num_proc: int | None = None,
    seed: int = 0,
    images: str = "embed",
    on_error: str = "raise",
    image_root: str | None = None,
) -> dict:
    """Build ``configs`` from ``source`` into ``output``; return the build info (counts, rejects, arguments).

    Every argument is checked before anything is written; the build is staged and swapped in whole (``output.py``),
    and a config that would come out empty stops it with ``EmptyBuildError``, the previous build left in place.
    """
    configs = tuple(dict.fromkeys(configs))
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown or not configs:
        raise ValueError(f"unknown config(s) {', '.join(unknown) or '(none given)'}: choose from {', '.join(CONFIGS)}")
    if num_proc is not None and (type(num_proc) is not int or num_proc < 1):
        raise ValueError(f"num_proc must be a whole number from 1 up, not {num_proc!r}")
    settings = dict(
        source=source, num_images=num_images, seed=seed, images=images, on_error=on_error, image_root=image_root
    )
    LGTConfig(name=configs[0], **settings)  # checks every setting, before anything is touched
    output = os.path.realpath(output)
    if not os.path.basename(output):
        raise ValueError(f"--output {output!r} must name a folder to write, not the root of the filesystem")
    with staged_output(output, BUILD_INFO_FILE) as staging:
        rejects: dict[tuple, dict] = {}
        rows, source_info = {}, None
        started = time.time()
        for config in configs:
            builder = LGTBuilder(config_name=config, cache_dir=staging.cache, **settings)
            builder.download_and_prepare(
                file_format="arrow", num_proc=num_proc, download_mode=datasets.DownloadMode.FORCE_REDOWNLOAD
            )
            rows[config] = _arrow_to_parquet(builder, config, os.path.join(staging.folder, config))
            source_info = builder.source_info
            for reject in builder.rejects:
                rejects.setdefault((reject["file"], reject["record"]), reject)
            shutil.rmtree(builder.cache_dir, ignore_errors=True)
        _refuse_empty(configs, rows, list(rejects.values()), output)
        info = {
            "lgt_version": __version__,
            "datasets_version": datasets.__version__,
            "arguments": {**settings, "configs": list(configs)},
            "configs": list(configs),
            "rows": rows,
            "source": source_info,
            "rejects": len(rejects),
            "seconds": round(time.time() - started, 1),
        }
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


def _refuse_empty(configs: tuple[str, ...], rows: dict, rejects: list[dict], output: str) -> None:
    """A config without rows would replace a good build with an empty one: stop, saying why it came out empty."""
    empty = [config for config in configs if not any(rows[config].values())]
    if not empty:
        return
    if rejects:
        why = f"{len(rejects):,} bad record(s) were skipped, the first: {InputError.from_reject(rejects[0])}"
    else:
        why = "no scene gave a row for it (questions need scenes with objects)"
    raise EmptyBuildError(f"config {', '.join(empty)} came out empty: {why}; {output} was left as it was")
