"""The ``datasets`` builder: the plumbing that turns a source into every config, each made by its stage.

What a config is and how its rows are made lives in ``stages/`` (``STAGES``); this module only moves rows. A config
is made from its parents' rows, never from the source again: the root config (``scenes``) is the only one that
reads the source, so each image is decoded (or rendered) and checked once per build, and every later config reuses
its stored bytes (configs whose parents carry no image, or that need a scene's caption and boxes, look the scene up
by image id: ``SceneLookup``). A child builder prepares its parents in the same cache folder first, or finds them
there already prepared (``lgt build`` prepares the configs in order).

Splits are disjoint by image: an image's split is fixed by a hash of its id, so every config built from the same
source agrees on it and adding images never moves an old one. Work units are fixed buckets of image ids too: a
split of N images has ceil(N / ``SCENES_PER_UNIT``) units, an image's unit another hash of its id. Whatever a stage
keeps even along its stream of rows (answer letters and classes, ``Stage.shard_state``) is kept per unit, so a
unit's rows are the same whichever process or machine makes it, and part I of N of a build (``shard``) is a set of
units: N parts, merged, are row for row the whole build.

For the root, one process streams the source's cheap entries (id, words, a small payload; a JSON Lines source reads
them with the ``num_proc`` processes) into a scratch file per split, checking ids for duplicates, and surveys them
(``Survey``: the units, the vocabulary); the ``num_proc`` workers then turn units into tables, each parsing,
rendering or decoding and checking only its own scenes. A child config's workers read a unit's rows of the parents'
Arrow files, memory-mapped. Rows of one image are consecutive in every config, which is what lets a stage see an
image's questions (or an MCQ's traces) together and the parquet files store each image once (see ``build.py``), and
a unit's rows are consecutive, in the order of its images in the source.

Model calls (an LLM writing stage 1 or composing stage 2, a VLM teacher and a reasoner writing traces) happen in
the process that drives the build, the whole stage in one engine call (``Stage.generate``); the workers read the
finished generations.

This is an ``ArrowBasedBuilder`` (``_generate_tables``) rather than a ``GeneratorBasedBuilder``: the latter encodes
every example in Python, measured at ~44 us per MCQ row here, i.e. 22 s of the 30 s budget for 1M MCQs on two
cores before any question is made; a table built from a batch of rows against the same explicit ``Features`` costs
a few microseconds per row.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import itertools
import json
import math
import os
import pickle
import shutil
import tempfile
import threading
from collections import Counter
from dataclasses import asdict, dataclass, fields
from typing import NamedTuple

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Image
from datasets.arrow_writer import ArrowWriter
from datasets.utils import logging
from datasets.utils.tqdm import tqdm

from . import decontam
from .errors import EmptyBuildError, InputError
from .generation import Bill, CacheMissError, Engine, GenerationCache, default_cache_path
from .images import check_image_file, check_size, decode_image, fit_image, fit_pixels
from .pools import WorkerPool
from .scene import Scene, SceneObject
from .settings import SETTINGS, LGTConfig, defaults
from .sources import open_source, source_label
from .stages import DEFAULT_CONFIG, STAGES, Context, Group, Stage, inputs, root

logger = logging.get_logger(__name__)

CITATION = """@misc{acuna2025longgroundedthoughts,
  title         = {Long Grounded Thoughts: Distilling Compositional Visual Reasoning Chains at Scale},
  author        = {Acuna, David and Yang, Chao-Han Huck and Deng, Yuntian and Jung, Jaehun and Lu, Ximing and
                   Ammanabrolu, Prithviraj and Kim, Hyunwoo and Liao, Yuan-Hong and Choi, Yejin},
  year          = {2025},
  eprint        = {2511.05705},
  archivePrefix = {arXiv},
  primaryClass  = {cs.CV},
  url           = {https://arxiv.org/abs/2511.05705}
}"""
SPLITS = ("train", "validation", "test")
# Images per work unit: a long enough stream for what a stage keeps even along it, and few enough that a 1,000-image
# build already spreads over --num-proc workers.
SCENES_PER_UNIT = 256
ROWS_PER_TABLE = 1000  # rows a work unit hands datasets at a time
# ... when they hold no image bytes (``compressed``): a unit's MCQs (some 1,300 of 256 images) in one table, so one
# Arrow batch. zstd pays per buffer it decompresses: a 1M-MCQ build cut at 1,000 rows spent 3.4 s reading its
# batches back to write parquet, 1.7 s cut at this.
COMPRESSED_ROWS_PER_TABLE = 4096
SURVEY_FILE = "lgt_survey.json"  # beside every config's Arrow files: what the source's survey found

# What a scene read for its caption and boxes holds in place of its image.
_NO_IMAGE = {"bytes": None, "path": ""}


class SourceUnit(NamedTuple):
    """A worker's share of the source: the entries of one unit, pickled at ``offsets`` of a scratch file."""

    name: str  # "<split>-NNNNN": the unit, the same on every machine
    path: str
    offsets: tuple[int, ...]


class ParentSlice(NamedTuple):
    """A worker's share of a child config: one unit's rows of the parents, ``(Arrow file, first row, rows)`` each."""

    name: str  # "<split>-NNNNN": the unit
    pieces: tuple[tuple[str, int, int], ...]


@dataclass(frozen=True)
class Survey:
    """What the first pass over the whole source found, for every config of a build (or of a part of one).

    ``units``: how many work units each split has; ``names``, ``attributes``: every word the source's objects are
    named and described by, which distractors are drawn from.
    """

    units: dict[str, int]
    names: list[str]
    attributes: list[str]

    def owned(self, shard: tuple[int, int] | None) -> dict[str, list[int]]:
        """The units of each split a build makes: all, or for part I of N every Nth, counted across the splits."""
        owned, position = {}, 0
        for split, count in self.units.items():
            owned[split] = [u for u in range(count) if shard is None or (position + u) % shard[1] == shard[0]]
            position += count
        return owned

    def save(self, folder: str) -> None:
        with open(os.path.join(folder, SURVEY_FILE), "w", encoding="utf-8") as f:
            json.dump(asdict(self), f)

    @classmethod
    def load(cls, folder: str) -> Survey:
        try:
            with open(os.path.join(folder, SURVEY_FILE), encoding="utf-8") as f:
                return cls(**json.load(f))
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{folder} was prepared by an older lgt (no {SURVEY_FILE}): prepare it again "
                "(download_mode='force_redownload')"
            ) from None


def _hashes(image_id: str) -> tuple[int, int]:
    """Two independent 64-bit hashes of an image id: the first picks its split, the second its unit."""
    digest = hashlib.sha1(image_id.encode()).digest()
    return int.from_bytes(digest[:8], "big"), int.from_bytes(digest[8:16], "big")


def _split_at(share: int, fractions: tuple[float, float, float]) -> str:
    share /= 2**64
    return SPLITS[0] if share < fractions[0] else SPLITS[1] if share < fractions[0] + fractions[1] else SPLITS[2]


def split_of(image_id: str, fractions: tuple[float, float, float]) -> str:
    """The split of an image, from a hash of its id alone."""
    return _split_at(_hashes(image_id)[0], fractions)


def unit_of(image_id: str, units: int) -> int:
    """The work unit of an image among its split's ``units``, from a hash of its id alone."""
    return _hashes(image_id)[1] * units >> 64


def unit_name(split: str, unit: int) -> str:
    return f"{split}-{unit:05d}"


class _CompressedArrowWriter(ArrowWriter):
    """``datasets``' Arrow writer, its record batches compressed with zstd (readers decompress them as they read)."""

    def _build_writer(self, inferred_schema: pa.Schema):
        self._schema, self._features = self._build_schema(inferred_schema)
        options = pa.ipc.IpcWriteOptions(compression="zstd")
        self.pa_writer = pa.ipc.new_stream(self.stream, self._schema, options=options)


class LGTBuilder(datasets.ArrowBasedBuilder):
    """Long Grounded Thoughts from image annotations: ``LGTBuilder(config_name=CONFIG, source=SOURCE, ...settings)``,
    CONFIG one of ``stages.STAGES``, the settings those of ``LGTConfig``."""

    BUILDER_CONFIG_CLASS = LGTConfig
    BUILDER_CONFIGS = [LGTConfig(name=name, description=stage.description) for name, stage in STAGES.items()]
    DEFAULT_CONFIG_NAME = DEFAULT_CONFIG

    def __init__(self, *args, staged: bool = False, **kwargs):
        """``staged``: prepared as ``lgt build``'s scratch, which it writes out as parquet, then deletes. Its Arrow
        files are kept small, so the scratch disk a build takes stays near the size of its output:

        - configs made from others keep no image, only the scenes config does (``images_by_reference``: ``lgt
          build`` puts them back as it writes parquet, ``SceneImages``), so each image is held once, not once per row;
        - Arrow files holding no image bytes (every config but embedded scenes) are compressed (``compressed``), in
          batches of ``COMPRESSED_ROWS_PER_TABLE`` rows (``datasets`` cuts a config with images into 100-row batches,
          which compress half as well). Images are left as they are: already compressed, read often, memory-mapped.
        """
        super().__init__(*args, **kwargs)
        self.config.check()
        self.staged = staged
        self.images_by_reference = staged and self.config.images == "embed"
        self.compressed = staged and (bool(self.stage.parents) or self.config.images == "path")
        self.rows_per_table = COMPRESSED_ROWS_PER_TABLE if self.compressed else ROWS_PER_TABLE
        if self.compressed:
            self._writer_batch_size = self._writer_batch_size or self.rows_per_table
        self.rejects: list[dict] = []  # the records the last preparation skipped (``on_error="skip"``)
        self.generation: dict | None = None  # what the last preparation asked of its models, and what they cost
        self.decontamination: dict | None = None  # the benchmarks screened against and what was dropped

    @classmethod
    def with_settings(cls, config_name: str, cache_dir: str, staged: bool = False, **settings) -> LGTBuilder:
        """A builder whose config spells out every setting, defaults included, as the checked config holds them.

        ``datasets`` names a config's cache folder by a hash of the keyword arguments given, not of the config they
        make; spelling all of them out, normalised (``--images path`` keeps the sources' sizes: ``max_pixels`` 0), is
        what lets a child find the parent that an earlier builder prepared instead of preparing it again.
        """
        checked = LGTConfig(name=config_name, **{**defaults(), **settings})
        spelled = {f.name: getattr(checked, f.name) for f in SETTINGS}
        return cls(config_name=config_name, cache_dir=cache_dir, staged=staged, **spelled)

    def _info(self):
        return datasets.DatasetInfo(
            description=self.stage.description,
            features=self.stage.features,
            citation=CITATION,
            homepage="https://arxiv.org/abs/2511.05705",
        )

    @property
    def source_info(self) -> dict:
        """What the card says of the source: its kind, a description, its licence, and how a detector made its boxes
        (``lgt detect``'s settings in the rows; absent for human boxes)."""
        source = self._source()
        detection = getattr(source, "detection", None)
        info = {"name": source.name, "description": source.description, "license": source.license}
        return {**info, "detection": detection} if detection else info

    @property
    def stage(self) -> Stage:
        return STAGES[self.config.name]

    def _split_generators(self, dl_manager):
        if not self.stage.parents:
            return self._source_splits(dl_manager.download_config.num_proc or 1)
        return self._parent_splits(dl_manager)

    # ---- a child config: slices of its parents' prepared Arrow files, cut between images ----

    def _parent_splits(self, dl_manager) -> list[datasets.SplitGenerator]:
        force = dl_manager.download_config.force_download
        prepared = self._prepared_inputs(dl_manager.download_config.num_proc, force)
        survey = Survey.load(prepared[self.stage.parents[0]].cache_dir)
        survey.save(self._output_dir)  # every config's folder holds it: its children need no other
        slices = _parent_slices([arrow_files(prepared[parent]) for parent in self.stage.parents], survey.units)
        lookup = SceneLookup.index(arrow_files(prepared[root()])) if self.stage.looks_up_scenes else None
        inputs = {config: arrow_files(builder) for config, builder in prepared.items()}
        shared = self.stage.prepare(inputs, {"names": survey.names, "attributes": survey.attributes})
        drafts = self._generate(slices, lookup)
        screen = self._screen() if self.stage.family == "mcq" and self.config.benchmarks else None
        kwargs = {"shared": shared, "drafts": drafts, "lookup": lookup, "screen": screen}
        return [
            datasets.SplitGenerator(name=split, gen_kwargs={"shards": pieces, **kwargs})
            for split, pieces in slices.items()
        ]

    def _screen(self) -> tuple[decontam.Decontaminator, str]:
        """The benchmark index the workers drop near-duplicate MCQs by, and the folder they count the drops in."""
        index = decontam.Decontaminator.from_benchmarks(self.config.benchmarks)
        os.makedirs(self._cache_dir_root, exist_ok=True)
        self._screen_dir = tempfile.mkdtemp(prefix="lgt-decontam-", dir=self._cache_dir_root)
        self.decontamination = index.report()
        return index, self._screen_dir

    def _prepared_inputs(self, num_proc: int | None, force: bool = False) -> dict[str, LGTBuilder]:
        """The builders of every config this one reads, prepared in the same cache folder or found there prepared."""
        settings = {f.name: getattr(self.config, f.name) for f in SETTINGS}
        prepared = {}
        for config in inputs(self.config.name):
            builder = LGTBuilder.with_settings(config, self._cache_dir_root, staged=self.staged, **settings)
            builder.download_and_prepare(
                file_format="arrow",
                num_proc=num_proc,
                download_mode=datasets.DownloadMode.FORCE_REDOWNLOAD if force else None,
            )
            self.rejects = self.rejects or builder.rejects
            prepared[config] = builder
        return prepared

    def _parent_groups(
        self, piece: ParentSlice, lookup: SceneLookup | None, streams: ArrowStreams, images: bool = True
    ):
        """A ``Group`` per image of a unit's parent rows: the parent's rows of that image, in order.

        The scene is the row itself when the parent is the scenes config (``_scene_groups``), else looked up; the
        image is the one stored with the rows, read once per image (an MCQ parent repeats the same bytes on every
        row), else looked up. ``images=False``: captions and boxes only, no image is read. An image's rows never
        straddle two Arrow files (tables end between images), so each piece is read on its own, from ``streams``: a
        worker's units follow one another in its parents' files, which are read forward once (a compressed batch is
        decompressed once, not once per unit).
        """
        for path, first, length in piece.pieces:
            table = streams.table(path, first, length)
            if "width" in table.column_names:  # scenes rows
                yield from _scene_groups(table, images)
                continue
            stored = table.column("image") if "image" in table.column_names else None
            rows = (table.drop_columns(["image"]) if stored is not None else table).to_pylist()
            start = 0
            for image_id, group in itertools.groupby(rows, key=lambda row: row["image_id"]):
                group = list(group)
                image = stored[start].as_py() if stored is not None and images else None
                start += len(group)
                scene, found = lookup.scene(image_id) if lookup else (None, None)
                yield Group(scene, image or found, group)

    def _slice_groups(self, slices: dict[str, list[ParentSlice]], lookup: SceneLookup | None) -> dict[str, list]:
        """Every slice's groups, for a stage's models: with images only for a model that reads them."""
        images, streams = self.stage.generates_from_images, ArrowStreams()
        try:
            return {
                piece.name: list(self._parent_groups(piece, lookup, streams, images))
                for pieces in slices.values()
                for piece in pieces
            }
        finally:
            streams.close()

    # ---- model calls, in the process that drives the build: the whole stage in one engine call per step ----

    def _cache_path(self) -> str:
        """The generation cache this build reads and writes (a part writes its own: see ``shard_cache``)."""
        path = str(self.config.generation_cache or default_cache_path())
        return path if self.config.cache_only else shard_cache(path, self.config.shard)

    def _engines(self, cache: str | None = None, read_only: bool = False) -> dict[str, Engine | None]:
        """An engine per model role of the stage (None where the role has no model), sharing one cache (opened only
        for reading where the build only reads it)."""
        path = cache or self._cache_path()
        if self.config.cache_only and not os.path.isfile(path):
            raise CacheMissError(
                f"no generation cache at {path} (cache-only mode): pass --cache FILE, or import the cache "
                "published with the dataset"
            )
        shared = GenerationCache(path, read_only=read_only or self.config.cache_only)
        by_model: dict[str, Engine] = {}
        engines = {}
        for role in self.stage.roles:
            model = getattr(self.config, role)
            if model and model not in by_model:
                by_model[model] = Engine(
                    model, shared, cache_only=self.config.cache_only, **(self.config.engine_args or {})
                )
            engines[role] = by_model.get(model) if model else None
        return engines

    @staticmethod
    def _close(engines: dict[str, Engine | None]) -> None:
        for engine in {id(e): e for e in engines.values() if e}.values():
            engine.close()

    def _generate(self, slices: dict[str, list[ParentSlice]], lookup: SceneLookup | None) -> str | None:
        """Run the stage's models here, if it calls any; return the folder holding each slice's results."""
        if not self.stage.calls_models(self.config):
            return None
        groups = self._slice_groups(slices, lookup)
        engines = self._engines()
        try:
            results, self.generation = self.stage.generate(groups, engines, self.config)
        finally:
            self._close(engines)
        os.makedirs(self._cache_dir_root, exist_ok=True)
        self._drafts_dir = tempfile.mkdtemp(prefix="lgt-drafts-", dir=self._cache_dir_root)
        for name, found in results.items():
            with open(os.path.join(self._drafts_dir, f"{name}.pickle"), "wb") as f:
                pickle.dump(found, f, protocol=pickle.HIGHEST_PROTOCOL)
        return self._drafts_dir

    def bill(self, num_proc: int | None = None) -> dict[str, Bill]:
        """What preparing this config would ask of each model (``lgt build --dry-run``); nothing is generated.

        The parents are prepared (the source is read, as the build would read it), so the requests are the build's.
        """
        if not self.stage.calls_models(self.config):
            return {}
        prepared = self._prepared_inputs(num_proc)
        units = Survey.load(prepared[self.stage.parents[0]].cache_dir).units
        slices = _parent_slices([arrow_files(prepared[parent]) for parent in self.stage.parents], units)
        lookup = SceneLookup.index(arrow_files(prepared[root()])) if self.stage.looks_up_scenes else None
        path = self._cache_path()
        # A cache that does not exist yet holds nothing: count against an empty one and leave no file behind.
        empty = None if os.path.isfile(path) or self.config.cache_only else tempfile.mkdtemp(prefix="lgt-bill-")
        engines = self._engines(os.path.join(empty, "empty.sqlite") if empty else None, read_only=not empty)
        try:
            return self.stage.bill(self._slice_groups(slices, lookup), engines, self.config)
        finally:
            self._close(engines)
            if empty:
                shutil.rmtree(empty, ignore_errors=True)

    # ---- the source's config, stage A, one process: stream the source's entries into per-split shards ----

    def _source_splits(self, num_proc: int) -> list[datasets.SplitGenerator]:
        # Scratch in the cache folder, which `lgt build` keeps in its staging folder: gone with it even after kill -9.
        os.makedirs(self._cache_dir_root, exist_ok=True)
        self._work_dir = tempfile.mkdtemp(prefix="lgt-build-", dir=self._cache_dir_root)
        source = self._source()
        if self.config.images == "path" and not source.takes_path:
            raise ValueError(
                "--images path references image files, but the built-in scenes are rendered in memory: "
                "use --images embed"
            )
        # Every part reads every entry (a cheap pass), so all agree on the units and the vocabulary; a bad record is
        # counted by the first part only, and every part stops at it under on_error="raise".
        counts_rejects = not self.config.shard or self.config.shard[0] == 0
        streams: dict[str, tuple] = {}  # split -> (scratch file, [(unit hash, offset)])
        first_seen: dict[str, str] = {}
        names, attributes = set(), set()
        progress = tqdm(desc=f"Reading {source_label(self.config.source)}", unit=" images")
        try:
            for position, entry in enumerate(source.entries(num_proc)):
                if not isinstance(entry, InputError) and entry.image_id in first_seen:
                    problem = f"duplicate image id {entry.image_id!r} (first at {first_seen[entry.image_id]})"
                    entry = InputError(entry.origin, entry.record, problem)
                if isinstance(entry, InputError):
                    if self._reject(entry, position, counts_rejects):
                        break  # what comes after the first bad record is not read; what came before is checked
                    continue
                first_seen[entry.image_id] = entry.where
                split_hash, unit_hash = _hashes(entry.image_id)
                split = _split_at(split_hash, self.config.split_fractions)
                if split not in streams:
                    streams[split] = (open(os.path.join(self._work_dir, f"{split}.pickle"), "wb"), [])
                handle, found = streams[split]
                found.append((unit_hash, handle.tell()))
                pickle.dump((position, entry.payload), handle, protocol=pickle.HIGHEST_PROTOCOL)
                names.update(entry.names)
                attributes.update(entry.attributes)
                progress.update()
                if self.config.num_images and len(first_seen) >= self.config.num_images:
                    break
        finally:
            progress.close()
            for handle, _ in streams.values():
                handle.close()
        if not first_seen:
            bad = _read_rejects(os.path.join(self._work_dir, "rejects"))
            why = f"; all {len(bad):,} record(s) were bad, the first: {InputError.from_reject(bad[0])}" if bad else ""
            raise EmptyBuildError(f"{self.config.source}: no usable image in this source{why}")
        logger.info(f"{len(first_seen):,} images read from {source_label(self.config.source)}")
        units = {split: math.ceil(len(streams[split][1]) / SCENES_PER_UNIT) for split in SPLITS if split in streams}
        survey = Survey(units, sorted(names), sorted(attributes))
        survey.save(self._output_dir)
        generators = []
        for split, owned in survey.owned(self.config.shard).items():
            handle, found = streams[split]
            members: list[list[int]] = [[] for _ in range(units[split])]
            for unit_hash, offset in found:
                members[unit_hash * units[split] >> 64].append(offset)
            shards = [SourceUnit(unit_name(split, u), handle.name, tuple(members[u])) for u in owned]
            if shards:
                generators.append(datasets.SplitGenerator(name=split, gen_kwargs={"shards": shards}))
        return generators

    def _source(self):
        config = self.config
        return open_source(config.source, seed=config.seed, num_images=config.num_images, image_root=config.image_root)

    def _reject(self, error: InputError, position: int, counted: bool = True) -> bool:
        """Write a bad record down: to this process's reject list (``on_error="skip"``, unless another part of the
        build counts it: ``counted=False``), or as fatal; return whether it was fatal.

        A fatal record (with its ``position`` in the source's order) stops the build once it is prepared: records
        after it are skipped, records before it are still checked, and ``_download_and_prepare`` reports the first
        bad one, whichever split or ``num_proc`` worker found it. Written down, not raised, because a worker's
        exception reaches the main process as a bare ``DatasetGenerationError``.
        """
        fatal = self.config.on_error == "raise"
        if not fatal and not counted:
            return False
        folder = os.path.join(self._work_dir, "fatal" if fatal else "rejects")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{os.getpid()}.jsonl")  # one file per process: no write races
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({**error.as_reject(), **({"position": position} if fatal else {})}) + "\n")
        return fatal

    def _download_and_prepare(self, dl_manager, verification_mode, **prepare_split_kwargs):
        self._work_dir = self._drafts_dir = self._screen_dir = None
        pool, datasets.builder.Pool = datasets.builder.Pool, WorkerPool  # the num_proc pool, as datasets makes it
        try:
            super()._download_and_prepare(dl_manager, verification_mode, **prepare_split_kwargs)
        except Exception as error:
            self._raise_first_bad_record(error)
            raise
        else:
            self._raise_first_bad_record(None)
        finally:
            datasets.builder.Pool = pool
            if self._work_dir:
                self.rejects = _read_rejects(os.path.join(self._work_dir, "rejects"))
                shutil.rmtree(self._work_dir, ignore_errors=True)
            if self._drafts_dir:
                shutil.rmtree(self._drafts_dir, ignore_errors=True)
            if self._screen_dir:
                self.decontamination.update(_screen_counts(self._screen_dir))
                shutil.rmtree(self._screen_dir, ignore_errors=True)

    def _raise_first_bad_record(self, cause: Exception | None) -> None:
        """The ``InputError`` of the first fatal record in the source's order, if any was written down."""
        fatal = _read_rejects(os.path.join(self._work_dir, "fatal")) if self._work_dir else []
        if fatal and not isinstance(cause, InputError):
            first = min(fatal, key=lambda reject: reject["position"])
            raise InputError(first["file"], first["record"], first["problem"]) from cause

    # ---- stage B, num_proc workers: shards of scenes, or slices of parent rows -> tables ----

    def _prepare_split(self, split_generator: datasets.SplitGenerator, *args, num_proc: int | None = None, **kwargs):
        """``datasets``' own, with at most a worker per work unit of the split: ``datasets`` would cut ``num_proc``
        down itself, but with a warning per split about its "shards", which a ``--num-proc`` user never sees (a
        build of 51 images printed 21 of them)."""
        if num_proc:
            num_proc = max(1, min(num_proc, len(split_generator.gen_kwargs["shards"])))
        return super()._prepare_split(split_generator, *args, num_proc=num_proc, **kwargs)

    def _prepare_split_single(self, *args, **kwargs):
        """``datasets``' own, with the Arrow files ``compressed`` where this config's are.

        ``datasets`` has no setting for that: it writes with the ``ArrowWriter`` its module names, so the name is
        bound to ``_CompressedArrowWriter`` while this runs, in the process that runs it (a worker writes one job
        at a time, and ``lgt build`` prepares one config at a time).
        """
        if not self.compressed:
            yield from super()._prepare_split_single(*args, **kwargs)
            return
        datasets.builder.ArrowWriter = _CompressedArrowWriter
        try:
            yield from super()._prepare_split_single(*args, **kwargs)
        finally:
            datasets.builder.ArrowWriter = ArrowWriter

    def _generate_tables(self, shards, shared=None, drafts=None, lookup=None, screen=None):
        streams = ArrowStreams()  # a worker's units follow one another in its parents' files: read each forward
        try:
            for shard_index, shard in enumerate(shards):
                yield from self._unit_tables(shard_index, shard, streams, shared, drafts, lookup, screen)
        finally:
            streams.close()

    @functools.cached_property
    def _schema(self) -> pa.Schema:
        return self.info.features.arrow_schema

    def _unit_tables(self, shard_index: int, shard, streams: ArrowStreams, shared, drafts, lookup, screen):
        """The tables of one work unit's rows, ``rows_per_table`` rows each (the last fewer)."""
        schema = self._schema
        unstored = image_columns(self.info.features) if self.images_by_reference and self.stage.parents else {}
        generated = _read_drafts(drafts, shard) if drafts else None
        context = Context(self.config, shared, generated, self.stage.shard_state(self.config, shard.name))
        parents = isinstance(shard, ParentSlice)
        groups = self._parent_groups(shard, lookup, streams) if parents else self._source_scenes(shard)
        rows, batch = [], 0
        for group in groups:
            made = self.stage.rows(group, context)
            made = _screened(made, group.image, screen[0]) if screen else made
            for row in made if unstored else ():
                row.update({name: [None] * len(row[name]) if listed else None for name, listed in unstored.items()})
            rows.extend(made)
            if len(rows) >= self.rows_per_table:
                yield datasets.builder.Key(shard_index, batch), pa.Table.from_pylist(rows, schema=schema)
                rows, batch = [], batch + 1
        if rows:
            yield datasets.builder.Key(shard_index, batch), pa.Table.from_pylist(rows, schema=schema)
        if screen:  # this unit's counts, for the driver to add up: workers are other processes
            index, folder = screen
            with open(os.path.join(folder, f"{shard.name}.json"), "w", encoding="utf-8") as f:
                json.dump(index.counts, f)
            index.counts.clear()

    def _source_scenes(self, unit: SourceUnit):
        """The checked scenes of a source unit with their stored images; a bad record is rejected."""
        source = self._source()
        fatal = _read_rejects(os.path.join(self._work_dir, "fatal"))  # found so far, by any process
        first_fatal = min((reject["position"] for reject in fatal), default=math.inf)
        for position, payload in _read_payloads(unit):
            if position > first_fatal:
                break  # a unit is in the source's order: nothing after the first bad record matters
            try:
                scene, image = self._stored(source.scene(payload))
            except InputError as err:
                if self._reject(err, position):
                    first_fatal = position
                continue
            yield Group(scene, image, [])

    def _stored(self, scene: Scene) -> tuple[Scene, dict]:
        """The scene and its ``Image`` feature's storage: decoded-and-checked bytes in the model's frame under
        ``max_pixels`` (boxes scaled with the image), or a checked reference to the file."""
        max_pixels = self.config.max_pixels
        if isinstance(scene.image, bytes):  # made by the source itself, already 8-bit RGB
            image = {"bytes": scene.image, "path": f"{scene.image_id}.png"}
            fitted = fit_pixels(scene.image, max_pixels) if max_pixels else None
        elif self.config.images == "path":
            check_image_file(scene.image, scene.image_id, scene.width, scene.height)
            return scene, {"bytes": None, "path": scene.image}
        else:
            data, decoded, jpeg = decode_image(scene.image, scene.image_id)
            check_size(scene.image, scene.image_id, decoded.size, (scene.width, scene.height))
            image = {"bytes": data, "path": os.path.basename(scene.image)}
            fitted = fit_image(decoded, max_pixels, jpeg) if max_pixels else None  # decoded once
        if fitted is None:
            return scene, image
        data, suffix, width, height = fitted
        return scene.resized(width, height), {"bytes": data, "path": os.path.splitext(image["path"])[0] + suffix}


def _scene_groups(table: pa.Table, images: bool):
    """A ``Group`` per row of a scenes table (a row per image), its ``Scene`` read column by column: read row by row
    (``to_pylist``, then ``Scene.from_row``), a scene cost three times as much. The group's ``rows`` are empty: the
    scene is the row."""
    objects = table.column("objects").combine_chunks()
    children = dict(zip(objects.type.value_type.names, objects.flatten().flatten(), strict=True))
    made = list(map(SceneObject, *(children[field.name].to_pylist() for field in fields(SceneObject))))
    offsets = objects.offsets.to_pylist()  # of a slice of the parent's file: they start where the slice does
    per_scene = [made[start - offsets[0] : end - offsets[0]] for start, end in itertools.pairwise(offsets)]
    stored = table.column("image").to_pylist() if images and "image" in table.column_names else [None] * len(table)
    columns = ("image_id", "width", "height", "caption", "source", "license")
    values = zip(*(table.column(name).to_pylist() for name in columns), strict=True)
    for (image_id, width, height, caption, source, license), image, found in zip(
        values, stored, per_scene, strict=True
    ):
        kept = image or _NO_IMAGE
        scene = Scene(image_id, kept["bytes"] or kept["path"], width, height, caption, found, source, license)
        yield Group(scene, image, [])


class _Stream:
    """An Arrow stream file read forward once: the rows of each piece, without rereading the batches before it.

    A unit's file is written from pieces that start where the previous unit's ended, so reading each file from its
    start for every piece read it once per unit (quadratic: half of a million-row build's time went there)."""

    def __init__(self, path: str):
        self.file = pa.OSFile(path)
        self.reader = pa.ipc.open_stream(self.file)
        self.batch, self.start = None, 0  # the batch not yet read to its end, and the row it starts at

    def slices(self, first: int, length: int):
        """The rows ``first`` to ``first + length`` as slices of the stream's batches (``first`` >= ``start``)."""
        end = first + length
        while True:
            if self.batch is None:
                try:
                    self.batch = self.reader.read_next_batch()
                except StopIteration:
                    return
            batch_end = self.start + self.batch.num_rows
            if batch_end > first:
                if self.start >= end:
                    return
                low, high = max(first, self.start), min(end, batch_end)
                yield self.batch.slice(low - self.start, high - low)
                if high < batch_end:
                    return  # the rest of the batch belongs to a later piece
            self.batch, self.start = None, batch_end


class ArrowStreams:
    """Each thread's open streams, kept from one piece to the next; a piece before a stream's position reopens it."""

    def __init__(self):
        self.local, self.opened = threading.local(), []

    def slices(self, path: str, first: int, length: int):
        streams = self.local.__dict__.setdefault("streams", {})
        stream = streams.get(path)
        if stream is None or first < stream.start:
            stream = streams[path] = _Stream(path)
            self.opened.append(stream)
        return stream.slices(first, length)

    def table(self, path: str, first: int, length: int) -> pa.Table:
        """The rows ``first`` to ``first + length`` of an Arrow file as one table."""
        batches = list(self.slices(path, first, length))
        return pa.Table.from_batches(batches, schema=self.local.streams[path].reader.schema)

    def close(self) -> None:
        for stream in self.opened:
            stream.file.close()


class SceneLookup:
    """Scenes by image id, from the ``scenes`` config's Arrow files: where each image's row is, read on demand.

    The driver indexes the ids (one column); a worker memory-maps a file the first time it needs one of its rows.
    """

    def __init__(self, where: dict[str, tuple[str, int]]):
        self.where = where
        self._tables: dict[str, pa.Table] = {}

    @classmethod
    def index(cls, files: dict[str, list[tuple[str, int]]]) -> SceneLookup:
        where = {}
        for path, _ in (entry for paths in files.values() for entry in paths):
            ids = read_columns(path, ["image_id"]).column("image_id").to_pylist()
            where.update((image_id, (path, row)) for row, image_id in enumerate(ids))
        return cls(where)

    def __getstate__(self):
        return {"where": self.where, "_tables": {}}

    def scene(self, image_id: str) -> tuple[Scene, dict]:
        path, row = self.where[image_id]
        if path not in self._tables:
            self._tables[path] = pa.ipc.open_stream(pa.memory_map(path)).read_all()
        record = self._tables[path].slice(row, 1).to_pylist()[0]
        return Scene.from_row(record), record["image"]


class SceneImages:
    """The scenes config's stored images by image id, put back into the rows of a config whose Arrow files hold none
    (``images_by_reference``) as they are written out, a batch at a time."""

    def __init__(self, files: dict[str, list[tuple[str, int]]]):
        paths = [path for found in files.values() for path, _ in found]
        tables = [read_columns(path, ["image_id", "image"]) for path in paths]
        self.images = pa.chunked_array([t.column("image") for t in tables], type=Image().pa_type)
        ids = itertools.chain.from_iterable(t.column("image_id").to_pylist() for t in tables)
        self.position = {image_id: index for index, image_id in enumerate(ids)}

    def fill(self, batch: pa.RecordBatch, columns: dict[str, bool]) -> tuple[pa.RecordBatch, int]:
        """``batch`` with its image ``columns`` (``{name: is a list}``) holding each row's scene image, and the bytes
        that added (each image's bytes and path: what the rows take more in an Arrow cache)."""
        rows = pa.array([self.position[image_id] for image_id in batch.column("image_id").to_pylist()], pa.int64())
        arrays = dict(zip(batch.schema.names, batch.columns, strict=True))
        for name, listed in columns.items():
            if not listed:
                arrays[name] = self.images.take(rows).combine_chunks()
                continue
            lengths = pc.list_value_length(arrays[name]).fill_null(0)
            repeated = pc.take(rows, pa.array(np.repeat(np.arange(len(rows)), lengths.to_numpy())))
            offsets = pa.array(np.concatenate([[0], np.cumsum(lengths.to_numpy())]), pa.int32())
            values = self.images.take(repeated).combine_chunks()
            arrays[name] = pa.ListArray.from_arrays(offsets, values, type=batch.schema.field(name).type)
        added = 0
        for name in columns:
            stored = pc.list_flatten(arrays[name]) if columns[name] else arrays[name]
            for part in ("bytes", "path"):
                added += pc.sum(pc.binary_length(pc.struct_field(stored, part))).as_py() or 0
        return pa.RecordBatch.from_arrays(list(arrays.values()), schema=batch.schema), added


def read_columns(path: str, columns: list[str]) -> pa.Table:
    """Only ``columns`` of an Arrow stream file, memory-mapped (the others are not read, nor decompressed)."""
    with pa.memory_map(path) as source:
        schema = pa.ipc.open_stream(source).schema
        source.seek(0)
        options = pa.ipc.IpcReadOptions(included_fields=[schema.get_field_index(name) for name in columns])
        return pa.ipc.open_stream(source, options=options).read_all()


def image_columns(features: datasets.Features) -> dict[str, bool]:
    """The columns of ``features`` that hold images: ``{name: whether a list of them}``."""
    found = {}
    for name, feature in features.items():
        inner = getattr(feature, "feature", None)
        if isinstance(feature, Image) or isinstance(inner, Image):
            found[name] = not isinstance(feature, Image)
    return found


def arrow_shards(builder: datasets.DatasetBuilder, split: str) -> list[tuple[str, int]]:
    """The Arrow files of a prepared split and their row counts, in order; empty shards are left out.

    A worker whose scenes were all rejected leaves an empty shard behind.
    """
    info = builder.info.splits[split]
    pattern = os.path.join(builder.cache_dir, f"{builder.dataset_name}-{split}")
    paths = sorted(glob.glob(pattern + ".arrow") + glob.glob(pattern + "-*.arrow"))
    lengths = info.shard_lengths or [info.num_examples]
    return [(path, length) for path, length in zip(paths, lengths, strict=True) if length]


def _screened(rows: list[dict], image: dict, index: decontam.Decontaminator) -> list[dict]:
    """The MCQ rows whose question and image near-duplicate no benchmark's (the index counts the others)."""
    return [row for row in rows if not index.is_contaminated(row["question"], image["bytes"])]


def _screen_counts(folder: str) -> dict:
    """The workers' decontamination counts added up: what ``Decontaminator.report`` says of ``checked``/``dropped``."""
    counts: Counter = Counter()
    for path in glob.glob(os.path.join(folder, "*.json")):
        with open(path, encoding="utf-8") as f:
            counts.update(json.load(f))
    return {"checked": counts["checked"], "dropped": {"question": counts["question"], "image": counts["image"]}}


def arrow_files(builder: datasets.DatasetBuilder) -> dict[str, list[tuple[str, int]]]:
    """A prepared config's Arrow files and their row counts, per split."""
    return {split: arrow_shards(builder, split) for split in builder.info.splits}


def _unit_runs(path: str, rows: int, units: int) -> list[tuple[int, int, int]]:
    """``(unit, first row, rows)`` of each run of one unit's rows in an Arrow file (units follow one another)."""
    ids = read_columns(path, ["image_id"]).column("image_id").combine_chunks()
    if not rows:
        return []
    changes = pc.not_equal(ids.slice(1), ids.slice(0, rows - 1))
    starts = [0, *(pc.indices_nonzero(changes).to_numpy() + 1).tolist()]
    runs: list[list[int]] = []
    for start, image_id in zip(starts, ids.take(starts).to_pylist(), strict=True):
        unit = unit_of(image_id, units)
        if not runs or runs[-1][0] != unit:
            runs.append([unit, start])
    ends = [start for _, start in runs[1:]] + [rows]
    return [(unit, start, end - start) for (unit, start), end in zip(runs, ends, strict=True)]


def _parent_slices(
    parents: list[dict[str, list[tuple[str, int]]]], units: dict[str, int]
) -> dict[str, list[ParentSlice]]:
    """The parents' Arrow files per split, cut into their units' rows: the work units the workers share out.

    A unit's rows of one parent are consecutive (they may run over two files); with several parents, the unit's
    rows of each follow one another. Units and splits without rows are left out.
    """
    slices: dict[str, list[ParentSlice]] = {}
    for split, count in units.items():
        pieces: dict[int, list[tuple[str, int, int]]] = {}
        for files in parents:
            for path, rows in files.get(split, []):
                for unit, start, length in _unit_runs(path, rows, count):
                    pieces.setdefault(unit, []).append((path, start, length))
        if pieces:
            slices[split] = [ParentSlice(unit_name(split, u), tuple(found)) for u, found in sorted(pieces.items())]
    return slices


def unit_files(builder: datasets.DatasetBuilder, split: str, units: int) -> dict[int, list[tuple[str, int, int]]]:
    """A prepared split's rows by unit (of the split's ``units``): ``{unit: [(Arrow file, first row, rows)]}``."""
    found: dict[int, list[tuple[str, int, int]]] = {}
    for path, rows in arrow_shards(builder, split):
        for unit, start, length in _unit_runs(path, rows, units):
            found.setdefault(unit, []).append((path, start, length))
    return found


def shard_cache(path: str, shard: tuple[int, int] | None) -> str:
    """The generation cache a part of a build writes: its own file beside ``path`` (``NAME-00001-of-00004.sqlite``),
    since SQLite on shared network storage is not safe to write from several machines; ``lgt cache merge`` joins
    them. The whole build's is ``path`` itself."""
    if shard is None:
        return path
    stem, suffix = os.path.splitext(path)
    return f"{stem}-{shard[0]:05d}-of-{shard[1]:05d}{suffix}"


def _read_drafts(folder: str, piece: ParentSlice):
    """What the driving process generated for one slice (see ``LGTBuilder._generate``)."""
    with open(os.path.join(folder, f"{piece.name}.pickle"), "rb") as f:
        return pickle.load(f)


def _read_payloads(unit: SourceUnit):
    with open(unit.path, "rb") as f:
        for offset in unit.offsets:
            f.seek(offset)
            yield pickle.load(f)


def _read_rejects(folder: str) -> list[dict]:
    rejects = []
    for path in sorted(glob.glob(os.path.join(folder, "*.jsonl"))):
        with open(path, encoding="utf-8") as f:
            rejects.extend(json.loads(line) for line in f)
    return rejects
