"""The ``datasets`` builder: the plumbing that turns a source into every config, each made by its stage.

What a config is and how its rows are made lives in ``stages/`` (``STAGES``); this module only moves rows. A config
is made from its parents' rows, never from the source again: the root config (``scenes``) is the only one that
reads the source, so each image is decoded (or rendered) and checked once per build, and every later config reuses
its stored bytes (configs whose parents carry no image, or that need a scene's caption and boxes, look the scene up
by image id: ``SceneLookup``). A child builder prepares its parents in the same cache folder first, or finds them
there already prepared (``lgt build`` prepares the configs in order).

Splits are disjoint by image: an image's split is fixed by a hash of its id, so every config built from the same
source agrees on it and adding images never moves an old one. For the root, one process streams the source's cheap
entries (id, names, a small payload) into shard files per split, checking ids for duplicates; the ``num_proc``
workers then turn shards into tables, each parsing, rendering or decoding and checking only its own scenes. A child
config's workers read slices of the parents' Arrow files, memory-mapped, cut between images. Rows of one image are
consecutive in every config, which is what lets a stage see an image's questions (or an MCQ's traces) together and
the parquet files store each image once (see ``build.py``).

Model calls (an LLM writing stage 1 or composing stage 2, a VLM teacher and a reasoner writing traces) happen in
the process that drives the build, the whole stage in one engine call (``Stage.generate``); the workers read the
finished generations.

This is an ``ArrowBasedBuilder`` (``_generate_tables``) rather than a ``GeneratorBasedBuilder``: the latter encodes
every example in Python, measured at ~44 us per MCQ row here, i.e. 22 s of the 30 s budget for 1M MCQs on two
cores before any question is made; a table built from a batch of rows against the same explicit ``Features`` costs
a few microseconds per row.
"""

from __future__ import annotations

import glob
import hashlib
import itertools
import json
import math
import os
import pickle
import shutil
import tempfile
from collections import Counter
from typing import NamedTuple

import datasets
import pyarrow as pa
from datasets.utils import logging
from datasets.utils.tqdm import tqdm

from . import decontam
from .errors import EmptyBuildError, InputError
from .generation import Bill, CacheMissError, Engine, GenerationCache, default_cache_path
from .images import check_image_file, check_size, fit_pixels, load_image
from .scene import Scene
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
SCENES_PER_SHARD = 256  # small enough that a 1,000-image build already spreads over --num-proc workers
ROWS_PER_TABLE = 1000

# What a scene read for its caption and boxes holds in place of its image.
_NO_IMAGE = {"bytes": None, "path": ""}


class ParentSlice(NamedTuple):
    """A worker's share of a parent config's split: ``length`` rows from ``start`` of one Arrow file."""

    name: str  # "<split>-NNNNN", stable across runs and --num-proc
    path: str
    start: int
    length: int


def split_of(image_id: str, fractions: tuple[float, float, float]) -> str:
    """The split of an image, from a hash of its id alone."""
    share = int.from_bytes(hashlib.sha1(image_id.encode()).digest()[:8], "big") / 2**64
    return SPLITS[0] if share < fractions[0] else SPLITS[1] if share < fractions[0] + fractions[1] else SPLITS[2]


class LGTBuilder(datasets.ArrowBasedBuilder):
    """Long Grounded Thoughts from image annotations: ``LGTBuilder(config_name=CONFIG, source=SOURCE, ...settings)``,
    CONFIG one of ``stages.STAGES``, the settings those of ``LGTConfig``."""

    BUILDER_CONFIG_CLASS = LGTConfig
    BUILDER_CONFIGS = [LGTConfig(name=name, description=stage.description) for name, stage in STAGES.items()]
    DEFAULT_CONFIG_NAME = DEFAULT_CONFIG

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.config.check()
        self.rejects: list[dict] = []  # the records the last preparation skipped (``on_error="skip"``)
        self.generation: dict | None = None  # what the last preparation asked of its models, and what they cost
        self.decontamination: dict | None = None  # the benchmarks screened against and what was dropped

    @classmethod
    def with_settings(cls, config_name: str, cache_dir: str, **settings) -> LGTBuilder:
        """A builder whose config spells out every setting, defaults included.

        ``datasets`` names a config's cache folder by a hash of the keyword arguments given, not of the config they
        make; spelling all of them out is what lets a child find the parent that an earlier builder prepared.
        """
        return cls(config_name=config_name, cache_dir=cache_dir, **{**defaults(), **settings})

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
            return self._source_splits()
        return self._parent_splits(dl_manager)

    # ---- a child config: slices of its parents' prepared Arrow files, cut between images ----

    def _parent_splits(self, dl_manager) -> list[datasets.SplitGenerator]:
        force = dl_manager.download_config.force_download
        prepared = self._prepared_inputs(dl_manager.download_config.num_proc, force)
        slices = _parent_slices([_files(prepared[parent]) for parent in self.stage.parents])
        lookup = SceneLookup.index(_files(prepared[root()])) if self.stage.looks_up_scenes else None
        shared = self.stage.prepare({config: _files(builder) for config, builder in prepared.items()})
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
            builder = LGTBuilder.with_settings(config, self._cache_dir_root, **settings)
            builder.download_and_prepare(
                file_format="arrow",
                num_proc=num_proc,
                download_mode=datasets.DownloadMode.FORCE_REDOWNLOAD if force else None,
            )
            self.rejects = self.rejects or builder.rejects
            prepared[config] = builder
        return prepared

    def _parent_groups(self, piece: ParentSlice, lookup: SceneLookup | None, images: bool = True):
        """A ``Group`` per image of a parent slice: the parent's rows of that image, in order.

        The scene is read from the row itself when the parent is the scenes config, else looked up; the image is the
        one stored with the rows, read once per image (an MCQ parent repeats the same bytes on every row), else
        looked up. ``images=False``: captions and boxes only, no image is read.
        """
        with pa.memory_map(piece.path) as source:
            table = pa.ipc.open_stream(source).read_all().slice(piece.start, piece.length)
            stored = table.column("image") if "image" in table.column_names else None
            rows = (table.drop_columns(["image"]) if stored is not None else table).to_pylist()
            start = 0
            for image_id, group in itertools.groupby(rows, key=lambda row: row["image_id"]):
                group = list(group)
                image = stored[start].as_py() if stored is not None and images else None
                start += len(group)
                if "width" in group[0]:  # a scenes row
                    yield Group(Scene.from_row({**group[0], "image": image or _NO_IMAGE}), image, group)
                    continue
                scene, found = lookup.scene(image_id) if lookup else (None, None)
                yield Group(scene, image or found, group)

    def _slice_groups(self, slices: dict[str, list[ParentSlice]], lookup: SceneLookup | None) -> dict[str, list]:
        """Every slice's groups, for a stage's models: with images only for a model that reads them."""
        images = self.stage.generates_from_images
        return {
            piece.name: list(self._parent_groups(piece, lookup, images))
            for pieces in slices.values()
            for piece in pieces
        }

    # ---- model calls, in the process that drives the build: the whole stage in one engine call per step ----

    def _engines(self, cache: str | None = None, read_only: bool = False) -> dict[str, Engine | None]:
        """An engine per model role of the stage (None where the role has no model), sharing one cache (opened only
        for reading where the build only reads it)."""
        path = cache or self.config.generation_cache or default_cache_path()
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
        slices = _parent_slices([_files(prepared[parent]) for parent in self.stage.parents])
        lookup = SceneLookup.index(_files(prepared[root()])) if self.stage.looks_up_scenes else None
        path = self.config.generation_cache or default_cache_path()
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

    def _source_splits(self) -> list[datasets.SplitGenerator]:
        # Scratch in the cache folder, which `lgt build` keeps in its staging folder: gone with it even after kill -9.
        os.makedirs(self._cache_dir_root, exist_ok=True)
        self._work_dir = tempfile.mkdtemp(prefix="lgt-build-", dir=self._cache_dir_root)
        source = self._source()
        if self.config.images == "path" and not source.takes_path:
            raise ValueError(
                "--images path references image files, but the built-in scenes are rendered in memory: "
                "use --images embed"
            )
        shards: dict[str, list[str]] = {split: [] for split in SPLITS}
        open_shards: dict[str, tuple] = {}
        first_seen: dict[str, str] = {}
        progress = tqdm(desc=f"Reading {source_label(self.config.source)}", unit=" images")
        try:
            for position, entry in enumerate(source.entries()):
                if not isinstance(entry, InputError) and entry.image_id in first_seen:
                    problem = f"duplicate image id {entry.image_id!r} (first at {first_seen[entry.image_id]})"
                    entry = InputError(entry.origin, entry.record, problem)
                if isinstance(entry, InputError):
                    if self._reject(entry, position):
                        break  # what comes after the first bad record is not read; what came before is checked
                    continue
                first_seen[entry.image_id] = entry.where
                split = split_of(entry.image_id, self.config.split_fractions)
                handle, count = open_shards.get(split, (None, SCENES_PER_SHARD))
                if count == SCENES_PER_SHARD:
                    if handle:
                        handle.close()
                    path = os.path.join(self._work_dir, f"{split}-{len(shards[split]):05d}.pickle")
                    shards[split].append(path)
                    handle, count = open(path, "wb"), 0
                pickle.dump((position, entry.payload), handle, protocol=pickle.HIGHEST_PROTOCOL)
                open_shards[split] = (handle, count + 1)
                progress.update()
                if self.config.num_images and len(first_seen) >= self.config.num_images:
                    break
        finally:
            progress.close()
            for handle, _ in open_shards.values():
                handle.close()
        if not first_seen:
            bad = _read_rejects(os.path.join(self._work_dir, "rejects"))
            why = f"; all {len(bad):,} record(s) were bad, the first: {InputError.from_reject(bad[0])}" if bad else ""
            raise EmptyBuildError(f"{self.config.source}: no usable image in this source{why}")
        logger.info(f"{len(first_seen):,} images read from {source_label(self.config.source)}")
        return [
            datasets.SplitGenerator(name=split, gen_kwargs={"shards": paths})
            for split, paths in shards.items()
            if paths
        ]

    def _source(self):
        config = self.config
        return open_source(config.source, seed=config.seed, num_images=config.num_images, image_root=config.image_root)

    def _reject(self, error: InputError, position: int) -> bool:
        """Write a bad record down: to this process's reject list (``on_error="skip"``), or as fatal; return which.

        A fatal record (with its ``position`` in the source's order) stops the build once it is prepared: records
        after it are skipped, records before it are still checked, and ``_download_and_prepare`` reports the first
        bad one, whichever split or ``num_proc`` worker found it. Written down, not raised, because a worker's
        exception reaches the main process as a bare ``DatasetGenerationError``.
        """
        fatal = self.config.on_error == "raise"
        os.makedirs(os.path.join(self._work_dir, "fatal" if fatal else "rejects"), exist_ok=True)
        path = os.path.join(self._work_dir, "fatal" if fatal else "rejects", f"{os.getpid()}.jsonl")  # no races
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({**error.as_reject(), **({"position": position} if fatal else {})}) + "\n")
        return fatal

    def _download_and_prepare(self, dl_manager, verification_mode, **prepare_split_kwargs):
        self._work_dir = self._drafts_dir = self._screen_dir = None
        try:
            super()._download_and_prepare(dl_manager, verification_mode, **prepare_split_kwargs)
        except Exception as error:
            self._raise_first_bad_record(error)
            raise
        else:
            self._raise_first_bad_record(None)
        finally:
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

    def _generate_tables(self, shards, shared=None, drafts=None, lookup=None, screen=None):
        schema = self.info.features.arrow_schema
        for shard_index, shard in enumerate(shards):
            name = _shard_name(shard)
            generated = _read_drafts(drafts, shard) if drafts else None
            context = Context(self.config, shared, generated, self.stage.shard_state(self.config, name))
            groups = (
                self._parent_groups(shard, lookup) if isinstance(shard, ParentSlice) else self._source_scenes(shard)
            )
            rows, batch = [], 0
            for group in groups:
                made = self.stage.rows(group, context)
                rows.extend(_screened(made, group.image, screen[0]) if screen else made)
                if len(rows) >= ROWS_PER_TABLE:
                    yield datasets.builder.Key(shard_index, batch), pa.Table.from_pylist(rows, schema=schema)
                    rows, batch = [], batch + 1
            if rows:
                yield datasets.builder.Key(shard_index, batch), pa.Table.from_pylist(rows, schema=schema)
            if screen:  # this shard's counts, for the driver to add up: workers are other processes
                index, folder = screen
                with open(os.path.join(folder, f"{name}.json"), "w", encoding="utf-8") as f:
                    json.dump(index.counts, f)
                index.counts.clear()

    def _source_scenes(self, shard: str):
        """The checked scenes of a source shard with their stored images; a bad record is rejected."""
        source = self._source()
        fatal = _read_rejects(os.path.join(self._work_dir, "fatal"))  # found so far, by any process
        first_fatal = min((reject["position"] for reject in fatal), default=math.inf)
        for position, payload in _read_shard(shard):
            if position > first_fatal:
                break  # a shard is in the source's order: nothing after the first bad record matters
            try:
                scene = source.scene(payload)
                image = self._image(scene)
                if self.config.max_pixels and image["bytes"]:
                    scene, image = self._fit(scene, image)
            except InputError as err:
                if self._reject(err, position):
                    first_fatal = position
                continue
            yield Group(scene, image, [])

    def _image(self, scene: Scene) -> dict:
        """The ``Image`` feature's storage: decoded-and-checked bytes, or a checked reference to the file."""
        if isinstance(scene.image, bytes):  # made by the source itself, already 8-bit RGB
            return {"bytes": scene.image, "path": f"{scene.image_id}.png"}
        if self.config.images == "path":
            check_image_file(scene.image, scene.image_id, scene.width, scene.height)
            return {"bytes": None, "path": scene.image}
        data, width, height = load_image(scene.image, scene.image_id)
        check_size(scene.image, scene.image_id, (width, height), (scene.width, scene.height))
        return {"bytes": data, "path": os.path.basename(scene.image)}

    def _fit(self, scene: Scene, image: dict) -> tuple[Scene, dict]:
        """The scene on its image downscaled to ``max_pixels`` (boxes scaled with it), or as it is if small enough."""
        fitted = fit_pixels(image["bytes"], self.config.max_pixels)
        if fitted is None:
            return scene, image
        data, suffix, width, height = fitted
        return scene.resized(width, height), {"bytes": data, "path": os.path.splitext(image["path"])[0] + suffix}


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
            with pa.memory_map(path) as source:
                ids = pa.ipc.open_stream(source).read_all().column("image_id").to_pylist()
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


def _files(builder: datasets.DatasetBuilder) -> dict[str, list[tuple[str, int]]]:
    """A prepared config's Arrow files and their row counts, per split."""
    return {split: arrow_shards(builder, split) for split in builder.info.splits}


def _image_cuts(path: str, rows: int, images_per_slice: int) -> list[int]:
    """Where to cut an Arrow file's rows into slices of ``images_per_slice`` images: never inside an image's rows."""
    with pa.memory_map(path) as source:
        ids = pa.ipc.open_stream(source).read_all().column("image_id").to_pylist()
    starts = [row for row in range(rows) if row == 0 or ids[row] != ids[row - 1]]
    return [*starts[::images_per_slice], rows]


def _parent_slices(parents: list[dict[str, list[tuple[str, int]]]]) -> dict[str, list[ParentSlice]]:
    """The parents' Arrow files per split, cut between images into the slices the workers share out.

    Each slice holds every row of up to ``SCENES_PER_SHARD`` images, so a stage sees an image's rows (and an MCQ's
    traces) together; with several parents their slices follow one another. Splits without rows are left out.
    """
    slices: dict[str, list[ParentSlice]] = {}
    for files in parents:
        for split, paths in files.items():
            found = slices.setdefault(split, [])
            for path, rows in paths:
                cuts = _image_cuts(path, rows, SCENES_PER_SHARD)
                for start, end in itertools.pairwise(cuts):
                    found.append(ParentSlice(f"{split}-{len(found):05d}", path, start, end - start))
    return {split: found for split, found in slices.items() if found}


def _read_drafts(folder: str, piece: ParentSlice):
    """What the driving process generated for one slice (see ``LGTBuilder._generate``)."""
    with open(os.path.join(folder, f"{piece.name}.pickle"), "rb") as f:
        return pickle.load(f)


def _shard_name(shard: str | ParentSlice) -> str:
    return shard.name if isinstance(shard, ParentSlice) else os.path.basename(shard)


def _read_shard(path: str):
    with open(path, "rb") as f:
        while True:
            try:
                yield pickle.load(f)
            except EOFError:
                return


def _read_rejects(folder: str) -> list[dict]:
    rejects = []
    for path in sorted(glob.glob(os.path.join(folder, "*.jsonl"))):
        with open(path, encoding="utf-8") as f:
            rejects.extend(json.loads(line) for line in f)
    return rejects
