"""The ``datasets`` builder: a source -> ``scenes`` -> every config made from its parents' rows.

The configs form a graph (``PARENTS``): stage 1 from the scenes, stage 2 from stage 1, traces from MCQs, SFT and DPO
from traces, RL prompts from MCQs. A config is made by a stage from its parents' rows, never from the source again:
``scenes`` is the only config that reads the source, so each image is decoded (or rendered) and checked once per
build, and every later config reuses its stored bytes (configs whose parents carry no image, or that need a scene's
caption and boxes, look the scene up by image id: ``SceneLookup``). A child builder prepares its parents in the same
cache folder first, or finds them there already prepared (``lgt build`` prepares the configs in order).

Splits are disjoint by image: an image's split is fixed by a hash of its id, so every config built from the same
source agrees on it and adding images never moves an old one. For ``scenes``, one process streams the source's
cheap entries (id, names, a small payload) into shard files per split, checking ids for duplicates; the ``num_proc``
workers then turn shards into tables, each parsing, rendering or decoding and checking only its own scenes. A child
config's workers read slices of the parents' Arrow files, memory-mapped, cut between images. Rows of one image are
consecutive in every config, which is what lets a stage see an image's questions (or an MCQ's traces) together and
the parquet files store each image once (see ``build.py``).

Model calls (an LLM writing stage 1 or composing stage 2, a VLM teacher and a reasoner writing traces) happen in
the process that drives the build, the whole stage in one engine call; the workers read the finished generations.

This is an ``ArrowBasedBuilder`` (``_generate_tables``) rather than a ``GeneratorBasedBuilder``: the latter encodes
every example in Python, measured at ~44 us per MCQ row here, i.e. 22 s of the 30 s budget for 1M MCQs on two
cores before any question is made; a table built from a batch of rows against the same explicit ``Features`` costs
a few microseconds per row.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import itertools
import json
import os
import pickle
import random
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from typing import NamedTuple

import datasets
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Features, Image, List, Value
from datasets.utils import logging
from datasets.utils.tqdm import tqdm

from . import decontam, formats
from .answers import LetterBalancer, letter_options
from .errors import EmptyBuildError, InputError
from .generation import Bill, CacheMissError, Engine, GenerationCache, ModelSpec, default_cache_path
from .images import check_image_file, check_size, fit_pixels, load_image
from .scene import Scene
from .sources import open_source
from .synthesis import llm_mcq, pairs, selection, stage1, stage2, traces

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
_SCENES = Features(
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
)
_MCQ = Features(
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
        "steps": List({"question": Value("string"), "answer": Value("string")}),
        "generator": Value("string"),
        "source": Value("string"),
        "license": Value("string"),
    }
)
# Traces carry no image (several per MCQ): the SFT and DPO rows made from them look it up by image id.
_TRACE = Features(
    {
        "id": Value("string"),
        "mcq_id": Value("string"),
        "image_id": Value("string"),
        "question": Value("string"),
        "options": List(Value("string")),
        "answer": Value("string"),
        "skill": Value("string"),
        "level": Value("int32"),
        "kind": Value("string"),
        "short": Value("string"),
        "cue": Value("string"),
        "expansion": Value("string"),
        "text": Value("string"),
        "predicted": Value("string"),
        "correct": Value("bool"),
        "teacher": Value("string"),
        "reasoner": Value("string"),
        "generator": Value("string"),
        "source": Value("string"),
        "license": Value("string"),
    }
)
# TRL's conversational shape: turns whose content is a list of typed parts ({"type": "image"} stands for an image).
_MESSAGES = List({"role": Value("string"), "content": List({"type": Value("string"), "text": Value("string")})})
_PROVENANCE = {
    "skill": Value("string"),
    "level": Value("int32"),
    "kind": Value("string"),
    "parents": List(Value("string")),
    "generator": Value("string"),
    "source": Value("string"),
    "license": Value("string"),
}
_SFT = Features(
    {"id": Value("string"), "image_id": Value("string"), "images": List(Image()), "messages": _MESSAGES, **_PROVENANCE}
)
_DPO = Features(
    {
        "id": Value("string"),
        "image_id": Value("string"),
        "images": List(Image()),
        "prompt": _MESSAGES,
        "chosen": _MESSAGES,
        "rejected": _MESSAGES,
        **_PROVENANCE,
    }
)
_RL = Features(
    {
        "id": Value("string"),
        "image_id": Value("string"),
        "images": List(Image()),
        "prompt": _MESSAGES,
        "solution": Value("string"),
        "answer": Value("string"),
        "options": List(Value("string")),
        **_PROVENANCE,
    }
)
FEATURES = {
    "scenes": _SCENES,
    "mcq_stage1": _MCQ,
    "mcq_stage2": _MCQ,
    "traces_stage1": _TRACE,
    "traces_stage2": _TRACE,
    "sft_stage1": _SFT,
    "sft_stage2": _SFT,
    "sft_stage2_merged": _SFT,
    "dpo_stage1": _DPO,
    "dpo_stage2": _DPO,
    "rl": _RL,
}
DESCRIPTIONS = {
    "scenes": "The normalised source records: image, size, dense caption, objects with absolute-pixel boxes.",
    "mcq_stage1": "Stage-1 grounded multiple-choice questions, verifiable by construction from the boxes.",
    "mcq_stage2": "Stage-2 multi-hop questions composed from an image's stage-1 questions; answers recomputed.",
    "traces_stage1": "Every reasoning trace for the stage-1 questions, right and wrong, with its kind and cue.",
    "traces_stage2": "Every reasoning trace for the stage-2 questions, right and wrong, with its kind and cue.",
    "sft_stage1": "TRL conversational SFT on stage-1 questions: correct long grounded traces.",
    "sft_stage2": "TRL conversational SFT on stage-2 questions: correct long grounded traces.",
    "sft_stage2_merged": "sft_stage1 and sft_stage2 together.",
    "dpo_stage1": "TRL conversational preference pairs on stage-1 questions: a right trace over a wrong one.",
    "dpo_stage2": "TRL conversational preference pairs on stage-2 questions: a right trace over a wrong one.",
    "rl": "GRPO prompts for every stage-1 and stage-2 question, with the gold answer as `solution`.",
}
# Who may write mcq_stage1: the templates (verifiable by construction), the teacher LLM (the paper's path), or both.
STAGE1_WRITERS = ("templates", "llm", "both")
# The configs whose rows each config is made from, in order; none: the source itself.
PARENTS: dict[str, tuple[str, ...]] = {
    "scenes": (),
    "mcq_stage1": ("scenes",),
    "mcq_stage2": ("mcq_stage1",),
    "traces_stage1": ("mcq_stage1",),
    "traces_stage2": ("mcq_stage2",),
    "sft_stage1": ("traces_stage1",),
    "sft_stage2": ("traces_stage2",),
    "sft_stage2_merged": ("traces_stage1", "traces_stage2"),
    "dpo_stage1": ("traces_stage1",),
    "dpo_stage2": ("traces_stage2",),
    "rl": ("mcq_stage1", "mcq_stage2"),
}
# The configs that also look scenes up by image id: for a caption and all boxes, or for the image itself.
LOOKS_UP_SCENES = ("mcq_stage2", "traces_stage1", "traces_stage2", *(c for c in FEATURES if c[:4] in ("sft_", "dpo_")))

# Named settings: ``lgt build --preset paper`` (flags given override them). ``paper``: the models and sampling the
# paper names, on vLLM: a large instruction LLM writes and composes the MCQs and verifies them, Qwen2.5-VL-7B writes
# 10 short CoTs per MCQ at temperature 0.7 / top_p 0.8, DeepSeek-R1-Distill-Qwen-32B continues them; images capped
# at 512x512 pixels. Build with --dry-run first: it prints the requests and tokens each model would be given.
PRESETS = {
    "paper": {
        "writer": "vllm:Qwen/Qwen2.5-72B-Instruct",
        "verifier": "vllm:Qwen/Qwen2.5-72B-Instruct",
        "teacher": "vllm:Qwen/Qwen2.5-VL-7B-Instruct",
        "reasoner": "vllm:deepseek-ai/DeepSeek-R1-Distill-Qwen-32B",
        "stage1": "llm",
        "traces_per_mcq": 10,
        "trace_temperature": 0.7,
        "trace_top_p": 0.8,
        "max_pixels": 512 * 512,
    }
}


def inputs(config: str) -> tuple[str, ...]:
    """Every config ``config`` reads: its parents, and ``scenes`` where it looks scenes up."""
    return PARENTS[config] + (("scenes",) if config in LOOKS_UP_SCENES and "scenes" not in PARENTS[config] else ())


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
    # Models are named BACKEND:MODEL (see generation/backend.py); without any, every stage is scripted (offline).
    writer: str | None = None  # the LLM that writes stage-1 MCQs from caption and boxes and composes stage 2
    verifier: str | None = None  # answers each written MCQ from caption and boxes; a question is kept on agreement
    teacher: str | None = None  # the VLM that writes the short chains of thought from the image
    reasoner: str | None = None  # the reasoning LLM that continues each short CoT after a cue, from caption and boxes
    judge: str | None = (
        None  # labels a sample of each traces config's reasoning (verify, backtrack, subgoal) for the card
    )
    judged_traces: int = 200  # how many traces of each traces config the judge labels
    stage1: str | None = None  # who writes mcq_stage1 (STAGE1_WRITERS); unset: "llm" with a writer, else "templates"
    questions_per_image: int = 8  # how many questions the writer is asked to write per image
    traces_per_mcq: int = 2  # short CoTs per MCQ, each also continued after a cue (the paper: 10)
    trace_temperature: float = 0.7  # the teacher's sampling for short CoTs (the paper's)
    trace_top_p: float = 0.8
    short_max_tokens: int = traces.SHORT_MAX_TOKENS  # the most a short CoT may take
    expansion_max_tokens: int = traces.EXPANSION_MAX_TOKENS  # the most a continuation may take
    sft_keep_ratio: float = (
        selection.DEFAULT_KEEP_RATIO
    )  # the share of an MCQ's correct traces SFT keeps, longer first
    sft_xo_ratio: float = (
        selection.DEFAULT_XO_RATIO
    )  # at most this many corrected (X->O) traces per O or O->O trace in SFT
    pairs_per_mcq: int | None = 2  # DPO pairs kept per MCQ (unset: all)
    benchmarks: tuple[str, ...] = ()  # benchmark question files: near-duplicate questions and images are dropped
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
        for role in ("writer", "verifier", "teacher", "reasoner", "judge"):
            if getattr(self, role) is not None:
                ModelSpec.parse(getattr(self, role))
        if self.reasoner and not self.teacher:
            raise ValueError("--reasoner continues the teacher's short CoTs: pass --teacher BACKEND:MODEL too")
        for name in ("traces_per_mcq", "short_max_tokens", "expansion_max_tokens", "judged_traces"):
            if type(getattr(self, name)) is not int or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a whole number from 1 up, not {getattr(self, name)!r}")
        for name in ("sft_keep_ratio", "sft_xo_ratio"):
            if not isinstance(getattr(self, name), (int, float)) or not 0 < getattr(self, name) <= 100:
                raise ValueError(f"{name} must be a positive number, not {getattr(self, name)!r}")
        if self.pairs_per_mcq is not None and (type(self.pairs_per_mcq) is not int or self.pairs_per_mcq < 1):
            raise ValueError(
                f"pairs_per_mcq must be a whole number from 1 up (unset: all), not {self.pairs_per_mcq!r}"
            )
        if type(self.questions_per_image) is not int or self.questions_per_image < 1:
            raise ValueError(f"questions_per_image must be a whole number from 1 up, not {self.questions_per_image!r}")
        if self.stage1 is not None and self.stage1 not in STAGE1_WRITERS:
            raise ValueError(f"stage1 must be one of {', '.join(STAGE1_WRITERS)}, not {self.stage1!r}")
        if self.stage1_writer != "templates" and not self.writer:
            raise ValueError(f"stage1 {self.stage1_writer!r} needs a writer model: pass --writer BACKEND:MODEL")
        if self.verifier and not self.writer:
            raise ValueError("--verifier checks what the writer writes: pass --writer BACKEND:MODEL too")
        if self.cache_only and not (self.writer or self.teacher or self.judge):
            raise ValueError("--cache-only: only used when a model is named (--writer, --teacher or --judge)")

    @property
    def stage1_writer(self) -> str:
        """Who writes ``mcq_stage1``: ``templates``, ``llm`` (the writer), or ``both``."""
        return self.stage1 or ("llm" if self.writer else "templates")


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
        self.generation: dict | None = None  # what the last preparation asked of its models, and what they cost
        self.decontamination: dict | None = None  # the benchmarks screened against and what was dropped

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
        """What the card says of the source: its kind, a description, its licence, and how a detector made its boxes
        (``lgt detect``'s settings in the rows; absent for human boxes)."""
        source = self._source()
        detection = getattr(source, "detection", None)
        info = {"name": source.name, "description": source.description, "license": source.license}
        return {**info, "detection": detection} if detection else info

    def _split_generators(self, dl_manager):
        if not PARENTS[self.config.name]:
            return self._source_splits()
        return self._parent_splits(dl_manager)

    # ---- a child config: slices of its parents' prepared Arrow files, cut between images ----

    def _parent_splits(self, dl_manager) -> list[datasets.SplitGenerator]:
        force = dl_manager.download_config.force_download
        prepared = self._prepared_inputs(dl_manager.download_config.num_proc, force)
        slices = _parent_slices([_files(prepared[parent]) for parent in PARENTS[self.config.name]])
        scenes_files = _files(prepared["scenes"]) if "scenes" in prepared else {}
        vocab = None
        if self.config.name == "mcq_stage1":
            vocab = _vocabulary([path for paths in scenes_files.values() for path, _ in paths])
        lookup = SceneLookup.index(scenes_files) if self.config.name in LOOKS_UP_SCENES else None
        drafts = self._generate(slices, lookup)
        screen = self._screen() if self.config.name.startswith("mcq_") and self.config.benchmarks else None
        kwargs = {"vocab": vocab, "drafts": drafts, "lookup": lookup, "screen": screen}
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
        settings = {name: getattr(self.config, name) for name in _SHARED_FIELDS}
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

    def _parent_groups(self, piece: ParentSlice, lookup: SceneLookup | None):
        """``(scene, image, rows)`` per image of a parent slice: the parent's rows of that image, in order.

        ``scene`` is the image's scene where the stage needs it (from the row itself when the parent is ``scenes``,
        else looked up), ``image`` its stored image, read once per image (the rows come without it: an MCQ parent
        repeats the same bytes on every row), else looked up.
        """
        with pa.memory_map(piece.path) as source:
            table = pa.ipc.open_stream(source).read_all().slice(piece.start, piece.length)
            images = table.column("image") if "image" in table.column_names else None
            rows = (table.drop_columns(["image"]) if images is not None else table).to_pylist()
            start = 0
            for image_id, group in itertools.groupby(rows, key=lambda row: row["image_id"]):
                group = list(group)
                image = images[start].as_py() if images is not None else None
                start += len(group)
                if "width" in group[0]:  # a scenes row
                    yield Scene.from_row({**group[0], "image": image}), image, group
                    continue
                scene, found = lookup.scene(image_id) if lookup else (None, None)
                yield scene, image or found, group

    # ---- model calls, in the process that drives the build: the whole stage in one engine call per step ----

    def _engines(self, roles: tuple[str, ...], cache: str | None = None) -> dict[str, Engine | None]:
        """An engine per role (None where the role has no model), one per model, sharing one generation cache."""
        path = cache or self.config.generation_cache or default_cache_path()
        if self.config.cache_only and not os.path.isfile(path):
            raise CacheMissError(
                f"no generation cache at {path} (cache-only mode): pass --cache FILE, or import the cache "
                "published with the dataset"
            )
        shared = GenerationCache(path)
        by_model: dict[str, Engine] = {}
        engines = {}
        for role in roles:
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

    def _mcq_writer(self) -> llm_mcq.MCQWriter:
        return llm_mcq.MCQWriter(questions_per_scene=self.config.questions_per_image, seed=self.config.seed)

    @property
    def _stage(self) -> str | None:
        """Which model-driven stage preparing this config runs in the driving process, if any."""
        name = self.config.name
        if name == "mcq_stage1" and self.config.stage1_writer != "templates":
            return "write"
        if name == "mcq_stage2" and self.config.stage1_writer != "templates":
            return "compose"
        if name.startswith("traces_") and self.config.teacher:
            return "trace"
        return None

    def _generate(self, slices: dict[str, list[ParentSlice]], lookup: SceneLookup | None) -> str | None:
        """Run this config's model stage here, if it has one; return the folder holding each slice's results."""
        stage = self._stage
        if stage is None:
            return None
        if stage == "write":
            results = self._write_mcqs(slices)
        elif stage == "compose":
            results = self._compose_mcqs(slices, lookup)
        else:
            results = self._write_traces(slices, lookup)
        os.makedirs(self._cache_dir_root, exist_ok=True)
        self._drafts_dir = tempfile.mkdtemp(prefix="lgt-drafts-", dir=self._cache_dir_root)
        for name, found in results.items():
            with open(os.path.join(self._drafts_dir, f"{name}.pickle"), "wb") as f:
                pickle.dump(found, f, protocol=pickle.HIGHEST_PROTOCOL)
        return self._drafts_dir

    def _stage_scenes(self, slices: dict[str, list[ParentSlice]]) -> dict[str, list[Scene]]:
        """Every parent slice's scenes without their images: the writer reads captions and boxes only."""
        columns = [name for name in FEATURES["scenes"] if name != "image"]
        scenes = {}
        for piece in (piece for pieces in slices.values() for piece in pieces):
            with pa.memory_map(piece.path) as source:
                table = pa.ipc.open_stream(source).read_all().slice(piece.start, piece.length).select(columns)
                scenes[piece.name] = [Scene.from_row({**row, "image": _NO_IMAGE}) for row in table.to_pylist()]
        return scenes

    def _write_mcqs(self, slices: dict[str, list[ParentSlice]]) -> dict[str, tuple]:
        """The writer's stage-1 drafts for every scene: ``{slice: (generator, drafts by image id)}``.

        Every scene goes to the engine in one call, so the backend can keep its batch full and each answer is
        cached as it finishes (a killed build resumes with no repeated call).
        """
        scenes = self._stage_scenes(slices)
        everything = [scene for found in scenes.values() for scene in found]
        engines = self._engines(("writer", "verifier"))
        try:
            writer = self._mcq_writer()
            result = llm_mcq.write_mcqs(everything, engines["writer"], writer, verifier=engines["verifier"])
        finally:
            self._close(engines)
        self.generation = {
            "stage1": self.config.stage1_writer,
            "writer": engines["writer"].model_id,
            "verifier": engines["verifier"].model_id if engines["verifier"] else None,
            "generator": result.generator,
            "prompt": writer.prompt.id,
            "cache_only": self.config.cache_only,
            "images": len(everything),
            "images_with_questions": len(result.drafts),
            "questions": sum(map(len, result.drafts.values())),
            "rejects": dict(result.rejects.most_common()),
            "models": {role: engine.stats.as_dict() for role, engine in engines.items() if engine},
        }
        return {
            name: (result.generator, {scene.image_id: result.drafts.get(scene.image_id, []) for scene in found})
            for name, found in scenes.items()
        }

    def _compose_items(self, slices: dict[str, list[ParentSlice]], lookup: SceneLookup) -> dict[str, list[tuple]]:
        """Per slice, ``(scene, the image's stage-1 rows)``: what the writer composes from (captions and boxes)."""
        return {
            piece.name: [(scene, rows) for scene, _, rows in self._parent_groups(piece, lookup)]
            for pieces in slices.values()
            for piece in pieces
        }

    def _compose_mcqs(self, slices: dict[str, list[ParentSlice]], lookup: SceneLookup) -> dict[str, tuple]:
        """The writer's stage-2 composites of the model-written stage-1 questions, each kept only when the verifier
        (the writer itself when no other is named) answers it the same way: ``{slice: (generator, by image id)}``."""
        items = self._compose_items(slices, lookup)
        engines = self._engines(("writer", "verifier"))
        try:
            everything = [item for found in items.values() for item in found]
            verifier = engines["verifier"] or engines["writer"]
            result = stage2.compose_with_llm(everything, engines["writer"], verifier)
        finally:
            self._close(engines)
        self.generation = {
            "writer": engines["writer"].model_id,
            "verifier": verifier.model_id,
            "generator": result.generator,
            "images": len(everything),
            "composites": sum(map(len, result.drafts.values())),
            "rejects": dict(result.rejects.most_common()),
            "models": {role: engine.stats.as_dict() for role, engine in engines.items() if engine},
        }
        return {
            name: (result.generator, {scene.image_id: result.drafts.get(scene.image_id, []) for scene, _ in found})
            for name, found in items.items()
        }

    def _trace_items(self, slices: dict[str, list[ParentSlice]], lookup: SceneLookup) -> dict[str, list[tuple]]:
        """Per slice, ``(mcq row, scene, image bytes)`` for every MCQ: what the teacher and the reasoner read."""
        items = {}
        for name, piece in ((piece.name, piece) for pieces in slices.values() for piece in pieces):
            items[name] = [
                (row, scene, image["bytes"] or image["path"])
                for scene, image, rows in self._parent_groups(piece, lookup)
                for row in rows
            ]
        return items

    def _trace_settings(self) -> dict:
        config = self.config
        return dict(
            n=config.traces_per_mcq,
            seed=config.seed,
            temperature=config.trace_temperature,
            top_p=config.trace_top_p,
            max_tokens=config.short_max_tokens,
            expansion_max_tokens=config.expansion_max_tokens,
        )

    def _write_traces(self, slices: dict[str, list[ParentSlice]], lookup: SceneLookup) -> dict[str, dict]:
        """The teacher's short CoTs and the reasoner's continuations for every MCQ: ``{slice: traces by mcq id}``."""
        items = self._trace_items(slices, lookup)
        engines = self._engines(("teacher", "reasoner"))
        try:
            everything = [item for found in items.values() for item in found]
            result = traces.model_traces(everything, engines["teacher"], engines["reasoner"], **self._trace_settings())
        finally:
            self._close(engines)
        made = sum(map(len, result.traces.values()))
        self.generation = {
            "teacher": engines["teacher"].model_id,
            "reasoner": engines["reasoner"].model_id if engines["reasoner"] else None,
            "cache_only": self.config.cache_only,
            "mcqs": len(everything),
            "traces": made,
            "rejects": dict(result.rejects.most_common()),
            "models": {role: engine.stats.as_dict() for role, engine in engines.items() if engine},
        }
        return {
            name: {row["id"]: result.traces.get(row["id"], []) for row, _, _ in found} for name, found in items.items()
        }

    def bill(self, num_proc: int | None = None) -> dict[str, Bill]:
        """What preparing this config would ask of each model (``lgt build --dry-run``); nothing is generated.

        The parents are prepared (the source is read, as the build would read it), so the requests are the build's.
        """
        stage = self._stage
        if stage is None:
            return {}
        prepared = self._prepared_inputs(num_proc)
        slices = _parent_slices([_files(prepared[parent]) for parent in PARENTS[self.config.name]])
        path = self.config.generation_cache or default_cache_path()
        # A cache that does not exist yet holds nothing: count against an empty one and leave no file behind.
        empty = None if os.path.isfile(path) or self.config.cache_only else tempfile.mkdtemp(prefix="lgt-bill-")
        cache = os.path.join(empty, "empty.sqlite") if empty else None
        engines = self._engines(("teacher", "reasoner") if stage == "trace" else ("writer", "verifier"), cache)
        try:
            if stage == "write":
                scenes = [scene for found in self._stage_scenes(slices).values() for scene in found]
                return llm_mcq.bill_mcqs(scenes, engines["writer"], self._mcq_writer(), engines["verifier"])
            lookup = SceneLookup.index(_files(prepared["scenes"]))
            if stage == "compose":
                items = [item for found in self._compose_items(slices, lookup).values() for item in found]
                verifier = engines["verifier"] or engines["writer"]
                return stage2.bill_compose(items, engines["writer"], verifier)
            items = [item for found in self._trace_items(slices, lookup).values() for item in found]
            return traces.bill_traces(items, engines["teacher"], engines["reasoner"], **self._trace_settings())
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
        self._work_dir = self._drafts_dir = self._screen_dir = None
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
            if self._screen_dir:
                self.decontamination.update(_screen_counts(self._screen_dir))
                shutil.rmtree(self._screen_dir, ignore_errors=True)

    # ---- stage B, num_proc workers: shards of scenes, or slices of parent rows -> tables ----

    def _generate_tables(self, shards, vocab=None, drafts=None, lookup=None, screen=None):
        schema = self.info.features.arrow_schema
        make_rows = getattr(self, f"_{self.config.name.split('_')[0]}_rows")
        for shard_index, shard in enumerate(shards):
            # letters per skill and stage-1 answer classes are kept even along each shard's stream of questions
            stream = Stream(LetterBalancer(f"{self.config.seed}:{_shard_name(shard)}"), stage1.Balance())
            generated = _read_drafts(drafts, shard) if drafts else None
            groups = (
                self._parent_groups(shard, lookup) if isinstance(shard, ParentSlice) else self._source_scenes(shard)
            )
            rows, batch = [], 0
            for scene, image, parent_rows in groups:
                made = make_rows(scene, image, parent_rows, vocab, stream, generated)
                rows.extend(_screened(made, image, screen[0]) if screen else made)
                if len(rows) >= ROWS_PER_TABLE:
                    yield datasets.builder.Key(shard_index, batch), pa.Table.from_pylist(rows, schema=schema)
                    rows, batch = [], batch + 1
            if rows:
                yield datasets.builder.Key(shard_index, batch), pa.Table.from_pylist(rows, schema=schema)
            if screen:  # this shard's counts, for the driver to add up: workers are other processes
                index, folder = screen
                with open(os.path.join(folder, f"{_shard_name(shard)}.json"), "w", encoding="utf-8") as f:
                    json.dump(index.counts, f)
                index.counts.clear()

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
            yield scene, image, None

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

    # ---- one image's rows of each config, from the image's scene and its parent rows ----

    @staticmethod
    def _scenes_rows(scene: Scene, image: dict, parent_rows, vocab, stream, generated) -> list[dict]:
        record = scene.to_dict()
        del record["origin"]
        record["image"] = image
        return [record]

    def _mcq_rows(self, scene: Scene, image: dict, parent_rows, vocab, stream, generated) -> list[dict]:
        """The image's MCQs: stage 1 from the templates and/or the writer, stage 2 composed from stage 1."""
        rng = random.Random(f"{self.config.seed}:{scene.image_id}")
        drafts = []
        if self.config.name == "mcq_stage2":
            drafts += [
                (d, stage2.generator_id(d.template)) for d in stage2.compose(scene, parent_rows, rng, stream.classes)
            ]
        elif self.config.stage1_writer != "llm":
            drafts += [
                (d, stage1.generator_id(d.template)) for d in stage1.generate(scene, vocab, rng, stream.classes)
            ]
        if generated is not None:
            generator, by_image = generated
            drafts += [(draft, generator) for draft in by_image[scene.image_id]]
        return [mcq_row(scene, image, draft, generator, stream.letters) for draft, generator in drafts]

    def _traces_rows(self, scene: Scene, image: dict, parent_rows, vocab, stream, generated) -> list[dict]:
        """Every trace of each of the image's MCQs: the scripted teacher's, or the models' (``generated``)."""
        rows = []
        for mcq in parent_rows:
            if generated is not None:
                found = generated[mcq["id"]]
            else:
                found = traces.scripted_traces(mcq, scene, self.config.traces_per_mcq, self.config.seed)
            style = formats.row_style(self.config.seed, mcq["id"])
            for trace in found:
                text = formats.trace_text(trace.think, trace.predicted, mcq["options"], style)
                rows.append(
                    {
                        "id": hashlib.sha1(f"{mcq['id']}\x1f{trace.kind}\x1f{text}".encode()).hexdigest()[:16],
                        "mcq_id": mcq["id"],
                        **{
                            name: mcq[name] for name in ("image_id", "question", "options", "answer", "skill", "level")
                        },
                        "kind": trace.kind,
                        "short": trace.short,
                        "cue": trace.cue,
                        "expansion": trace.expansion,
                        "text": text,
                        "predicted": trace.predicted,
                        "correct": trace.correct,
                        "teacher": trace.teacher,
                        "reasoner": trace.reasoner,
                        "generator": f"{trace.teacher} + {trace.reasoner}" if trace.reasoner else trace.teacher,
                        "source": mcq["source"],
                        "license": mcq["license"],
                    }
                )
        return rows

    def _sft_rows(self, scene: Scene, image: dict, parent_rows, vocab, stream, generated) -> list[dict]:
        image_id = parent_rows[0]["image_id"]
        """The image's MCQs' correct traces, subsampled longer-first, corrected ones balanced, as conversations."""
        by_mcq = [list(found) for _, found in itertools.groupby(parent_rows, key=lambda row: row["mcq_id"])]
        config = self.config
        kept = selection.sft_selection(by_mcq, config.sft_keep_ratio, config.sft_xo_ratio, f"{config.seed}:{image_id}")
        return [
            formats.sft_row({**trace, "image": image}, config.seed) for trace in parent_rows if trace["id"] in kept
        ]

    def _dpo_rows(self, scene: Scene, image: dict, parent_rows, vocab, stream, generated) -> list[dict]:
        """Each MCQ's preference pairs: a right trace over a wrong one of the same question."""
        rows = []
        for _, found in itertools.groupby(parent_rows, key=lambda row: row["mcq_id"]):
            for chosen, rejected in pairs.preference_pairs(list(found), self.config.pairs_per_mcq):
                rows.append(
                    formats.dpo_row({**chosen, "image": image}, {**rejected, "image": image}, self.config.seed)
                )
        return rows

    def _rl_rows(self, scene: Scene, image: dict, parent_rows, vocab, stream, generated) -> list[dict]:
        return [formats.rl_row({**mcq, "image": image}, self.config.seed) for mcq in parent_rows]


def mcq_row(scene: Scene, image: dict | None, draft, generator: str, letters: LetterBalancer) -> dict:
    """An MCQ config's row for a stage-1 draft or a stage-2 composite, lettered by ``letters`` (per skill)."""
    options, answer = letter_options(draft.correct, draft.distractors, draft.ordered, letters, draft.skill)
    return {
        "id": mcq_id(scene.image_id, draft.question, options, answer),
        "image_id": scene.image_id,
        "image": image,
        "question": draft.question,
        "options": options,
        "answer": answer,
        "skill": draft.skill,
        "level": getattr(draft, "level", 1),
        "grounding": [{"object_id": o.id, "name": o.name, "bbox": o.bbox} for o in draft.grounding],
        "parents": list(getattr(draft, "parents", ())),
        "steps": [{"question": q, "answer": a} for q, a in getattr(draft, "steps", ())],
        "generator": generator,
        "source": scene.source,
        "license": scene.license,
    }


class Stream(NamedTuple):
    """What a worker keeps even along its shard's stream of questions: letters per skill, answer classes."""

    letters: LetterBalancer
    classes: stage1.Balance


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
