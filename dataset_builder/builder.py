"""The ``datasets`` builder: a source -> the ``scenes`` config -> configs made from its rows (``mcq_stage1``).

A config is made by a stage from its parent config's rows (``PARENTS``), never from the source again: ``scenes`` is
the only config that reads the source, so each image is decoded (or rendered) and checked once per build, and every
later config reuses its stored bytes. A child builder prepares its parent in the same cache folder first, or finds
it there already prepared (``lgt build`` prepares the configs in order).

Splits are disjoint by image: an image's split is fixed by a hash of its id, so every config built from the same
source agrees on it and adding images never moves an old one. For ``scenes``, one process streams the source's
cheap entries (id, names, a small payload) into shard files per split, checking ids for duplicates; the ``num_proc``
workers then turn shards into tables, each parsing, rendering or decoding and checking only its own scenes. A child
config's workers read slices of the parent's Arrow files, memory-mapped. Memory stays flat however large the source.
Rows of one image are consecutive, which is what lets the parquet files store each image once (see ``build.py``).

This is an ``ArrowBasedBuilder`` (``_generate_tables``) rather than a ``GeneratorBasedBuilder``: the latter encodes
every example in Python, measured at ~44 us per MCQ row here, i.e. 22 s of the 30 s budget for 1M MCQs on two
cores before any question is made; a table built from a batch of rows against the same explicit ``Features`` costs
a few microseconds per row.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import pickle
import random
import shutil
import tempfile
from dataclasses import dataclass
from typing import NamedTuple

import datasets
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Features, Image, List, Value
from datasets.utils import logging
from datasets.utils.tqdm import tqdm

from .answers import LetterBalancer, letter_options
from .errors import EmptyBuildError, InputError
from .generation import Bill, CacheMissError, Engine, GenerationCache, ModelSpec, default_cache_path
from .images import check_image_file, check_size, fit_pixels, load_image
from .scene import Scene
from .sources import open_source
from .synthesis import llm_mcq, stage1

logger = logging.get_logger(__name__)

CITATION = """@misc{lgt2025,
  title         = {Long Grounded Thoughts},
  eprint        = {2511.05705},
  archivePrefix = {arXiv},
  year          = {2025}
}"""
SPLITS = ("train", "validation", "test")
SCENES_PER_SHARD = 256  # small enough that a 1,000-image build already spreads over --num-proc workers
ROWS_PER_TABLE = 1000

# What a scene read for its caption and boxes holds in place of its image.
_NO_IMAGE = {"bytes": None, "path": ""}

_BOX = List(Value("float32"), length=4)
FEATURES = {
    "scenes": Features(
        {
            "image_id": Value("string"),
            "image": Image(),
            "width": Value("int32"),
            "height": Value("int32"),
            "caption": Value("string"),
            "objects": List(
                {
                    "id": Value("int64"),
                    "name": Value("string"),
                    "bbox": _BOX,
                    "attributes": List(Value("string")),
                    "score": Value("float32"),
                    "crowd": Value("bool"),
                }
            ),
            "source": Value("string"),
            "license": Value("string"),
        }
    ),
    "mcq_stage1": Features(
        {
            "id": Value("string"),
            "image_id": Value("string"),
            "image": Image(),
            "question": Value("string"),
            "options": List(Value("string")),
            "answer": Value("string"),
            "skill": Value("string"),
            "level": Value("int32"),
            "grounding": List({"object_id": Value("int64"), "name": Value("string"), "bbox": _BOX}),
            "parents": List(Value("string")),
            "generator": Value("string"),
            "source": Value("string"),
            "license": Value("string"),
        }
    ),
}
DESCRIPTIONS = {
    "scenes": "The normalised source records: image, size, dense caption, objects with absolute-pixel boxes.",
    "mcq_stage1": "Stage-1 grounded multiple-choice questions, verifiable by construction from the boxes.",
}
# Who may write mcq_stage1: the templates (verifiable by construction), the teacher LLM (the paper's path), or both.
STAGE1_WRITERS = ("templates", "llm", "both")
# The config whose rows each config is made from; None: the source itself.
PARENTS: dict[str, str | None] = {"scenes": None, "mcq_stage1": "scenes"}


@dataclass
class LGTConfig(datasets.BuilderConfig):
    """Which source to read and how; ``name`` picks the config (``scenes`` or ``mcq_stage1``)."""

    source: str = "scenes"
    num_images: int | None = None
    seed: int = 0
    images: str = "embed"  # "embed": image bytes in the rows; "path": rows reference the image files
    on_error: str = "raise"  # "raise": stop at the first bad record; "skip": skip, count and report it
    image_root: str | None = None  # images may come from this folder; by default only from the source's own
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    max_pixels: int | None = None  # downscale larger images to at most this many pixels (boxes scale with them)
    # Model-written stage 1 (the paper's path). Models are named BACKEND:MODEL (see generation/backend.py).
    teacher: str | None = None  # the LLM that writes stage-1 MCQs from caption and boxes
    verifier: str | None = None  # answers each written MCQ from caption and boxes; a question is kept on agreement
    stage1: str | None = None  # who writes mcq_stage1 (STAGE1_WRITERS); unset: "llm" with a teacher, else "templates"
    questions_per_image: int = 8  # how many questions the teacher is asked to write per image
    generation_cache: str | None = None  # the generation cache file; unset: generation.default_cache_path()
    cache_only: bool = False  # a generation missing from the cache is an error, never a model call
    engine_args: dict | None = None  # the backend's keyword arguments: batch_size, tensor_parallel_size, concurrency

    def __post_init__(self):
        super().__post_init__()
        self.check()

    def check(self) -> None:
        """``ValueError`` for settings that cannot work together (``datasets`` sets overrides after ``__init__``)."""
        if self.num_images is not None and (type(self.num_images) is not int or self.num_images < 1):
            raise ValueError(
                f"num_images must be a whole number from 1 up (unset: all images), not {self.num_images!r}"
            )
        if type(self.seed) is not int:
            raise ValueError(f"seed must be a whole number, not {self.seed!r}")
        if self.images not in ("embed", "path"):
            raise ValueError(f"images must be 'embed' or 'path', not {self.images!r}")
        if self.on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', not {self.on_error!r}")
        if self.max_pixels is not None and (type(self.max_pixels) is not int or self.max_pixels < 1):
            raise ValueError(f"max_pixels must be a positive number of pixels, not {self.max_pixels!r}")
        if self.max_pixels and self.images == "path":
            raise ValueError("--max-pixels rewrites the images, so it needs --images embed (not path)")
        for role in ("teacher", "verifier"):
            if getattr(self, role) is not None:
                ModelSpec.parse(getattr(self, role))
        if type(self.questions_per_image) is not int or self.questions_per_image < 1:
            raise ValueError(f"questions_per_image must be a whole number from 1 up, not {self.questions_per_image!r}")
        if self.stage1 is not None and self.stage1 not in STAGE1_WRITERS:
            raise ValueError(f"stage1 must be one of {', '.join(STAGE1_WRITERS)}, not {self.stage1!r}")
        if self.stage1_writer != "templates" and not self.teacher:
            raise ValueError(f"stage1 {self.stage1_writer!r} needs a teacher model: pass --teacher BACKEND:MODEL")
        unused = [flag for flag, value in (("--verifier", self.verifier), ("--cache-only", self.cache_only)) if value]
        if unused and self.stage1_writer == "templates":
            raise ValueError(f"{' and '.join(unused)}: only used when a teacher writes stage 1 (--stage1 llm or both)")

    @property
    def stage1_writer(self) -> str:
        """Who writes ``mcq_stage1``: ``templates``, ``llm`` (the teacher), or ``both``."""
        return self.stage1 or ("llm" if self.teacher else "templates")


# The fields a child config shares with its parent: everything but the name and datasets' own fields.
_BASE_FIELDS = {f.name for f in dataclasses.fields(datasets.BuilderConfig)}
_SHARED_FIELDS = [f.name for f in dataclasses.fields(LGTConfig) if f.name not in _BASE_FIELDS]


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


def mcq_id(image_id: str, question: str, options: list[str], answer: str) -> str:
    """Stable content hash: the same question about the same image with the same options has the same id."""
    content = "\x1f".join([image_id, question, *options, answer])
    return hashlib.sha1(content.encode()).hexdigest()[:16]


class LGTBuilder(datasets.ArrowBasedBuilder):
    """Long Grounded Thoughts from image annotations: ``LGTBuilder(config_name="mcq_stage1", source="scenes")``."""

    BUILDER_CONFIG_CLASS = LGTConfig
    BUILDER_CONFIGS = [LGTConfig(name=name, description=DESCRIPTIONS[name]) for name in FEATURES]
    DEFAULT_CONFIG_NAME = "mcq_stage1"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.config.check()
        self.rejects: list[dict] = []  # the records the last preparation skipped (``on_error="skip"``)
        self.generation: dict | None = None  # what the last preparation asked of its models (teacher, verifier)

    @classmethod
    def with_settings(cls, config_name: str, cache_dir: str, **settings) -> LGTBuilder:
        """A builder whose config spells out every setting, defaults included.

        ``datasets`` names a config's cache folder by a hash of the keyword arguments given, not of the config they
        make; spelling all of them out is what lets a child find the parent that an earlier builder prepared.
        """
        defaults = {f.name: f.default for f in dataclasses.fields(LGTConfig) if f.name in _SHARED_FIELDS}
        return cls(config_name=config_name, cache_dir=cache_dir, **{**defaults, **settings})

    def _info(self):
        return datasets.DatasetInfo(
            description=DESCRIPTIONS[self.config.name],
            features=FEATURES[self.config.name],
            citation=CITATION,
            homepage="https://arxiv.org/abs/2511.05705",
        )

    @property
    def source_info(self) -> dict:
        """What the card says of the source: its kind, a description and its licence."""
        source = self._source()
        return {"name": source.name, "description": source.description, "license": source.license}

    def _split_generators(self, dl_manager):
        parent = PARENTS[self.config.name]
        if parent is None:
            return self._source_splits()
        return self._parent_splits(parent, dl_manager)

    # ---- a child config: slices of its parent's prepared Arrow files ----

    def _parent_splits(self, parent: str, dl_manager) -> list[datasets.SplitGenerator]:
        force = dl_manager.download_config.force_download
        builder = self._prepared_parent(dl_manager.download_config.num_proc, force)
        files = {split: arrow_shards(builder, split) for split in builder.info.splits}
        vocab = _vocabulary([path for paths in files.values() for path, _ in paths])
        slices = _parent_slices(files)
        drafts = self._write_drafts(slices) if self._model_writes else None
        return [
            datasets.SplitGenerator(name=split, gen_kwargs={"shards": pieces, "vocab": vocab, "drafts": drafts})
            for split, pieces in slices.items()
        ]

    def _prepared_parent(self, num_proc: int | None, force: bool = False) -> LGTBuilder:
        """The parent config's builder, prepared in the same cache folder, or found there already prepared."""
        settings = {name: getattr(self.config, name) for name in _SHARED_FIELDS}
        builder = LGTBuilder.with_settings(PARENTS[self.config.name], self._cache_dir_root, **settings)
        builder.download_and_prepare(
            file_format="arrow",
            num_proc=num_proc,
            download_mode=datasets.DownloadMode.FORCE_REDOWNLOAD if force else None,
        )
        self.rejects = builder.rejects
        return builder

    def _parent_scenes(self, piece: ParentSlice):
        with pa.memory_map(piece.path) as source:
            table = pa.ipc.open_stream(source).read_all().slice(piece.start, piece.length)
            for batch in table.to_batches(max_chunksize=64):
                for row in batch.to_pylist():
                    yield Scene.from_row(row), row["image"]

    # ---- model-written stage 1, in the process that drives the build: the whole stage in one engine call ----

    @property
    def _model_writes(self) -> bool:
        return self.config.name == "mcq_stage1" and self.config.stage1_writer != "templates"

    def _engines(self, cache: str | None = None) -> tuple[Engine, Engine | None]:
        """The teacher and the verifier, sharing one generation cache (``cache`` overrides the configured one)."""
        path = cache or self.config.generation_cache or default_cache_path()
        if self.config.cache_only and not os.path.isfile(path):
            raise CacheMissError(
                f"no generation cache at {path} (cache-only mode): pass --cache FILE, or import the cache "
                "published with the dataset"
            )
        shared = GenerationCache(path)
        engines = [
            Engine(model, shared, cache_only=self.config.cache_only, **(self.config.engine_args or {}))
            for model in (self.config.teacher, self.config.verifier)
            if model
        ]
        return engines[0], (engines[1] if len(engines) > 1 else None)

    def _mcq_writer(self) -> llm_mcq.MCQWriter:
        return llm_mcq.MCQWriter(questions_per_scene=self.config.questions_per_image, seed=self.config.seed)

    def _stage_scenes(self, slices: dict[str, list[ParentSlice]]) -> dict[str, list[Scene]]:
        """Every parent slice's scenes without their images: the teacher reads captions and boxes only."""
        columns = [name for name in FEATURES[PARENTS[self.config.name]] if name != "image"]
        scenes = {}
        for piece in (piece for pieces in slices.values() for piece in pieces):
            with pa.memory_map(piece.path) as source:
                table = pa.ipc.open_stream(source).read_all().slice(piece.start, piece.length).select(columns)
                scenes[piece.name] = [Scene.from_row({**row, "image": _NO_IMAGE}) for row in table.to_pylist()]
        return scenes

    def _write_drafts(self, slices: dict[str, list[ParentSlice]]) -> str:
        """Have the teacher write the whole stage here; return the folder holding each slice's drafts.

        Every scene goes to the engine in one call, so the backend can keep its batch full and each answer is
        cached as it finishes (a killed build resumes with no repeated call). The ``num_proc`` workers that make
        the rows only read their slice's finished drafts.
        """
        scenes = self._stage_scenes(slices)
        everything = [scene for found in scenes.values() for scene in found]
        teacher, verifier = self._engines()
        try:
            writer = self._mcq_writer()
            result = llm_mcq.write_mcqs(everything, teacher, writer, verifier=verifier)
        finally:
            teacher.close()  # the cache both engines share
        engines = {"teacher": teacher, "verifier": verifier}
        self.generation = {
            "stage1": self.config.stage1_writer,
            "teacher": teacher.model_id,
            "verifier": verifier.model_id if verifier else None,
            "generator": result.generator,
            "prompt": writer.prompt.id,
            "cache_only": self.config.cache_only,
            "images": len(everything),
            "images_with_questions": len(result.drafts),
            "questions": sum(map(len, result.drafts.values())),
            "rejects": dict(result.rejects.most_common()),
            "models": {role: engine.stats.as_dict() for role, engine in engines.items() if engine},
        }
        os.makedirs(self._cache_dir_root, exist_ok=True)
        self._drafts_dir = tempfile.mkdtemp(prefix="lgt-drafts-", dir=self._cache_dir_root)
        for name, found in scenes.items():
            with open(os.path.join(self._drafts_dir, f"{name}.pickle"), "wb") as f:
                by_image = {scene.image_id: result.drafts.get(scene.image_id, []) for scene in found}
                pickle.dump((result.generator, by_image), f, protocol=pickle.HIGHEST_PROTOCOL)
        return self._drafts_dir

    def bill(self, num_proc: int | None = None) -> dict[str, Bill]:
        """What preparing this config would ask of each model (``lgt build --dry-run``); nothing is generated.

        The parent is prepared (the source is read, as the build would read it), so the requests are the build's.
        """
        if not self._model_writes:
            return {}
        builder = self._prepared_parent(num_proc)
        files = {split: arrow_shards(builder, split) for split in builder.info.splits}
        scenes = [scene for found in self._stage_scenes(_parent_slices(files)).values() for scene in found]
        path = self.config.generation_cache or default_cache_path()
        # A cache that does not exist yet holds nothing: count against an empty one and leave no file behind.
        empty = None if os.path.isfile(path) or self.config.cache_only else tempfile.mkdtemp(prefix="lgt-bill-")
        teacher, verifier = self._engines(os.path.join(empty, "empty.sqlite") if empty else None)
        try:
            return llm_mcq.bill_mcqs(scenes, teacher, self._mcq_writer(), verifier)
        finally:
            teacher.close()
            if empty:
                shutil.rmtree(empty, ignore_errors=True)

    # ---- the source's config, stage A, one process: stream the source's entries into per-split shards ----

    def _source_splits(self) -> list[datasets.SplitGenerator]:
        # Scratch in the cache folder, which `lgt build` keeps in its staging folder: gone with it even after kill -9.
        os.makedirs(self._cache_dir_root, exist_ok=True)
        self._work_dir = tempfile.mkdtemp(prefix="lgt-build-", dir=self._cache_dir_root)
        source = self._source()
        if self.config.images == "path" and source.name == "scenes":
            raise ValueError(
                "--images path references image files, but the built-in scenes are rendered in memory: "
                "use --images embed"
            )
        shards: dict[str, list[str]] = {split: [] for split in SPLITS}
        open_shards: dict[str, tuple] = {}
        first_seen: dict[str, str] = {}
        progress = tqdm(desc=f"Reading {source_label(self.config.source)}", unit=" images")
        try:
            for entry in source.entries():
                if not isinstance(entry, InputError) and entry.image_id in first_seen:
                    problem = f"duplicate image id {entry.image_id!r} (first at {first_seen[entry.image_id]})"
                    entry = InputError(entry.origin, entry.record, problem)
                if isinstance(entry, InputError):
                    self._reject(entry)
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
                pickle.dump(entry.payload, handle, protocol=pickle.HIGHEST_PROTOCOL)
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

    def _reject(self, error: InputError) -> None:
        """Stop on a bad record, or (``on_error="skip"``) write it to this process's reject list.

        Either way the record is written down first: an exception raised in a ``num_proc`` worker reaches the main
        process as a bare ``DatasetGenerationError``, and the written record is how the user still gets one line
        naming the file and record.
        """
        folder = "rejects" if self.config.on_error == "skip" else "fatal"
        os.makedirs(os.path.join(self._work_dir, folder), exist_ok=True)
        path = os.path.join(self._work_dir, folder, f"{os.getpid()}.jsonl")  # one file per process: no write races
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(error.as_reject()) + "\n")
        if self.config.on_error == "raise":
            raise error

    def _download_and_prepare(self, dl_manager, verification_mode, **prepare_split_kwargs):
        self._work_dir = self._drafts_dir = None
        try:
            super()._download_and_prepare(dl_manager, verification_mode, **prepare_split_kwargs)
        except Exception as error:
            fatal = _read_rejects(os.path.join(self._work_dir, "fatal")) if self._work_dir else []
            if fatal and not isinstance(error, InputError):
                raise InputError(fatal[0]["file"], fatal[0]["record"], fatal[0]["problem"]) from error
            raise
        finally:
            if self._work_dir:
                self.rejects = _read_rejects(os.path.join(self._work_dir, "rejects"))
                shutil.rmtree(self._work_dir, ignore_errors=True)
            if self._drafts_dir:
                shutil.rmtree(self._drafts_dir, ignore_errors=True)

    # ---- stage B, num_proc workers: shards of scenes -> tables ----

    def _generate_tables(self, shards, vocab=None, drafts=None):
        schema = self.info.features.arrow_schema
        make_rows = self._scene_rows if self.config.name == "scenes" else self._mcq_rows
        read = self._source_scenes if PARENTS[self.config.name] is None else self._parent_scenes
        for shard_index, shard in enumerate(shards):
            # letters per skill and stage-1 answer classes are kept even along each shard's stream of questions
            streams = (LetterBalancer(f"{self.config.seed}:{_shard_name(shard)}"), stage1.Balance())
            written = _read_drafts(drafts, shard) if drafts else None
            rows, batch = [], 0
            for scene, image in read(shard):
                rows.extend(make_rows(scene, image, vocab, streams, written))
                if len(rows) >= ROWS_PER_TABLE:
                    yield datasets.builder.Key(shard_index, batch), pa.Table.from_pylist(rows, schema=schema)
                    rows, batch = [], batch + 1
            if rows:
                yield datasets.builder.Key(shard_index, batch), pa.Table.from_pylist(rows, schema=schema)

    def _source_scenes(self, shard: str):
        """The checked scenes of a source shard with their stored images; a bad record is rejected."""
        source = self._source()
        for payload in _read_shard(shard):
            try:
                scene = source.scene(payload)
                image = self._image(scene)
                if self.config.max_pixels and image["bytes"]:
                    scene, image = self._fit(scene, image)
            except InputError as err:
                self._reject(err)
                continue
            yield scene, image

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

    @staticmethod
    def _scene_rows(scene: Scene, image: dict, vocab, streams, written) -> list[dict]:
        record = scene.to_dict()
        del record["origin"]
        record["image"] = image
        return [record]

    def _mcq_rows(self, scene: Scene, image: dict, vocab, streams: tuple, written: tuple | None) -> list[dict]:
        """The scene's stage-1 rows: the templates' questions, the teacher's (``written``: generator, drafts by
        image), or both, lettered alike."""
        balancer, balance = streams
        drafts = []
        if self.config.stage1_writer != "llm":
            rng = random.Random(f"{self.config.seed}:{scene.image_id}")
            drafts += [(d, stage1.generator_id(d.template)) for d in stage1.generate(scene, vocab, rng, balance)]
        if written is not None:
            generator, by_image = written
            drafts += [(draft, generator) for draft in by_image[scene.image_id]]
        rows = []
        for draft, generator in drafts:
            options, answer = letter_options(draft.correct, draft.distractors, draft.ordered, balancer, draft.skill)
            rows.append(
                {
                    "id": mcq_id(scene.image_id, draft.question, options, answer),
                    "image_id": scene.image_id,
                    "image": image,
                    "question": draft.question,
                    "options": options,
                    "answer": answer,
                    "skill": draft.skill,
                    "level": 1,
                    "grounding": [{"object_id": o.id, "name": o.name, "bbox": o.bbox} for o in draft.grounding],
                    "parents": [],
                    "generator": generator,
                    "source": scene.source,
                    "license": scene.license,
                }
            )
        return rows


def arrow_shards(builder: datasets.DatasetBuilder, split: str) -> list[tuple[str, int]]:
    """The Arrow files of a prepared split and their row counts, in order; empty shards are left out.

    A worker whose scenes were all rejected leaves an empty shard behind.
    """
    info = builder.info.splits[split]
    pattern = os.path.join(builder.cache_dir, f"{builder.dataset_name}-{split}")
    paths = sorted(glob.glob(pattern + ".arrow") + glob.glob(pattern + "-*.arrow"))
    lengths = info.shard_lengths or [info.num_examples]
    return [(path, length) for path, length in zip(paths, lengths, strict=True) if length]


def _vocabulary(paths: list[str]) -> stage1.Vocabulary:
    """What a distractor may name: every category and attribute in the scenes' Arrow files, read column-wise."""
    names, attributes = set(), set()
    for path in paths:
        with pa.memory_map(path) as source:
            objects = pc.list_flatten(pa.ipc.open_stream(source).read_all().column("objects"))
            names.update(pc.unique(pc.struct_field(objects, "name")).to_pylist())
            attributes.update(pc.unique(pc.list_flatten(pc.struct_field(objects, "attributes"))).to_pylist())
    return stage1.Vocabulary(
        names=sorted(names),
        colours=sorted(attributes.intersection(stage1.COLOUR_WORDS)),
        attributes=sorted(attributes.difference(stage1.COLOUR_WORDS)),
    )


def _parent_slices(files: dict[str, list[tuple[str, int]]]) -> dict[str, list[ParentSlice]]:
    """A parent's Arrow files per split, cut into the slices the workers share out (splits without rows left out)."""
    slices = {}
    for split, paths in files.items():
        pieces = [
            (path, start, min(SCENES_PER_SHARD, rows - start))
            for path, rows in paths
            for start in range(0, rows, SCENES_PER_SHARD)
        ]
        if pieces:
            slices[split] = [ParentSlice(f"{split}-{i:05d}", *piece) for i, piece in enumerate(pieces)]
    return slices


def _read_drafts(folder: str, piece: ParentSlice) -> tuple[str, dict]:
    """The teacher's finished drafts for one slice: ``(generator, drafts by image id)``."""
    with open(os.path.join(folder, f"{piece.name}.pickle"), "rb") as f:
        return pickle.load(f)


def _shard_name(shard: str | ParentSlice) -> str:
    return shard.name if isinstance(shard, ParentSlice) else os.path.basename(shard)


def source_label(spec: str) -> str:
    """The source spec without its local folders: what a card, a log line or ``lgt_build.json`` may show."""
    kind, _, path = spec.partition(":")
    return f"{kind}:{os.path.basename(os.path.normpath(path))}" if path else kind


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
