"""Every setting of a build, declared once: ``LGTConfig``, whose field metadata makes the rest.

A field's metadata carries its ``help``, its ``group`` (how ``lgt build --help`` shows it) and ``record``: whether
``lgt_build.json`` keeps it (``always``; ``models``: only when a model is named; ``model``: a model role, kept by
name when set; absent: never, for local paths and machine-specific knobs). ``lgt build``'s flags (``cli.py``),
``build()``'s keywords and the recorded arguments are all generated from these fields, as TRL builds its parser
from ``SFTConfig``: adding a setting is adding a field here.

Optional metadata: ``flag`` (when the flag is not ``--`` + the name with dashes), ``metavar``, ``choices``,
``parse`` (turns the flag's text into the value), ``action`` (``append`` for a repeatable flag), and ``public``
(what ``lgt_build.json`` shows instead of the value).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
from dataclasses import dataclass, field

import datasets

from .generation import ModelSpec, check_models
from .images import MODEL_MAX_PIXELS
from .sources import SOURCE_HELP, source_label
from .synthesis import selection, traces

# Who may write mcq_stage1: the templates (verifiable by construction), the teacher LLM (the paper's path), or both.
STAGE1_WRITERS = ("templates", "llm", "both")
MODEL_ROLES = ("writer", "verifier", "teacher", "reasoner", "judge")

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
        "max_pixels": MODEL_MAX_PIXELS,
    }
}
MODEL_HELP = (
    "MODEL is BACKEND:NAME: vllm:HUB_ID_OR_PATH (offline vLLM, GPU), openai:NAME@URL[,URL...] (OpenAI-compatible "
    "servers such as `vllm serve`), transformers:HUB_ID_OR_PATH (local, CPU-capable). Every answer is cached by "
    "content; a rebuild makes no model call for what is cached."
)


def whole_or_all(text: str) -> int | None:
    """``--pairs-per-mcq``: a whole number, or ``all`` (no limit)."""
    if text.strip().lower() == "all":
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"a whole number or `all`, not {text!r}") from None


def pixels_or_keep(text: str) -> int:
    """``--max-pixels``: a number of pixels, or ``keep`` (0: the source's sizes)."""
    if text.strip().lower() == "keep":
        return 0
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"a number of pixels or `keep`, not {text!r}") from None


def split_fractions(text: str) -> tuple[float, float, float]:
    """``--split-fractions 0.8,0.1,0.1``: the train, validation and test shares."""
    parts = tuple(float(part) for part in text.split(","))
    if len(parts) != 3:
        raise ValueError(f"three comma-separated shares (train,validation,test), not {text!r}")
    return parts


def shard_spec(text: str) -> tuple[int, int]:
    """``--shard I/N``: part I of N, counting from 0; ``slurm``: this Slurm array task's part, from
    ``SLURM_ARRAY_TASK_ID`` (less ``SLURM_ARRAY_TASK_MIN``) of ``SLURM_ARRAY_TASK_COUNT``."""
    if text.strip().lower() == "slurm":
        try:
            index = int(os.environ["SLURM_ARRAY_TASK_ID"]) - int(os.environ.get("SLURM_ARRAY_TASK_MIN", "0"))
            return index, int(os.environ["SLURM_ARRAY_TASK_COUNT"])
        except (KeyError, ValueError):
            raise ValueError(
                "`slurm` reads SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT, which are not set here: run it in a "
                "job started with `sbatch --array=0-N`"
            ) from None
    index, _, count = text.partition("/")
    try:
        return int(index), int(count)
    except ValueError:
        raise ValueError(f"I/N (part I of N, counting from 0) or `slurm`, not {text!r}") from None


def json_object(text: str) -> dict:
    """``--engine-args``: a JSON object."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON ({error.msg} at column {error.colno}): {text}") from None
    if not isinstance(value, dict):
        raise ValueError(f"must be a JSON object such as '{{\"batch_size\": 16}}', not {text}")
    return value


def _model(help: str) -> dict:
    return {"help": help, "group": "models", "metavar": "MODEL", "record": "model"}


@dataclass
class LGTConfig(datasets.BuilderConfig):
    """Which source to read and how, and every stage's settings; ``name`` picks the config (``scenes`` ...)."""

    source: str = field(
        default="scenes", metadata={"help": SOURCE_HELP, "group": "input", "record": "always", "public": source_label}
    )
    num_images: int | None = field(
        default=None,
        metadata={
            "help": "use the first N images (default: all; built-in scenes: 1000)",
            "group": "input",
            "record": "always",
        },
    )
    seed: int = field(
        default=0,
        metadata={
            "help": "seed of the built-in scenes and of the question choices",
            "group": "input",
            "record": "always",
        },
    )
    images: str = field(
        default="embed",
        metadata={
            "help": "embed the image bytes in the rows (publishable) or reference the local files",
            "group": "input",
            "choices": ("embed", "path"),
            "record": "always",
        },
    )
    on_error: str = field(
        default="raise",
        metadata={
            "help": "stop at the first bad record, or skip, count and report bad records",
            "group": "input",
            "choices": ("raise", "skip"),
            "record": "always",
        },
    )
    max_pixels: int = field(
        default=MODEL_MAX_PIXELS,
        metadata={
            "help": "store every image in the frame the model sees under a pixel budget of N (what Qwen2.5-VL's "
            "processor makes of it: sides multiples of 28, at most N pixels), boxes with it, so the coordinates "
            "traces cite are where things are in what the model sees; 262144 is 512x512, the recipes'; `keep` (or 0) "
            "keeps the source's sizes, as --images path does",
            "group": "input",
            "metavar": "N|keep",
            "parse": pixels_or_keep,
            "record": "always",
        },
    )
    image_root: str | None = field(
        default=None,
        metadata={"help": "a folder images may come from (default: only inside the source's own)", "group": "input"},
    )
    split_fractions: tuple[float, float, float] = field(
        default=(0.8, 0.1, 0.1),
        metadata={
            "help": "the shares of images in train, validation and test, picked by a hash of each image id",
            "group": "input",
            "metavar": "TRAIN,VALIDATION,TEST",
            "parse": split_fractions,
        },
    )
    shard: tuple[int, int] | None = field(
        default=None,
        metadata={
            "help": "build part I of N (counting from 0), for `lgt merge` to join: the images in fixed buckets of "
            "their ids, so the parts together are row for row the whole build; `slurm`: this array task's part",
            "group": "input",
            "metavar": "I/N|slurm",
            "parse": shard_spec,
        },
    )
    writer: str | None = field(default=None, metadata=_model("the LLM that writes stage-1 MCQs"))
    verifier: str | None = field(
        default=None,
        metadata=_model("a model that answers each written question from caption and boxes; kept only when it agrees"),
    )
    teacher: str | None = field(
        default=None, metadata=_model("the VLM that writes short CoTs from the image (traces)")
    )
    reasoner: str | None = field(
        default=None,
        metadata=_model(
            "the reasoning LLM that continues each short CoT after a cue, from caption and boxes (not the image)"
        ),
    )
    judge: str | None = field(
        default=None,
        metadata=_model(
            "an LLM that labels --judged-traces traces of each traces config as verifying, backtracking or setting "
            "subgoals, for the card (beside the marker counts)"
        ),
    )
    stage1: str | None = field(
        default=None,
        metadata={
            "help": "who writes mcq_stage1 (default: llm with --writer, templates without)",
            "group": "models",
            "choices": STAGE1_WRITERS,
            "record": "models",
        },
    )
    questions_per_image: int = field(
        default=8,
        metadata={
            "help": "how many questions the writer is asked for per image",
            "group": "models",
            "record": "models",
        },
    )
    cache_only: bool = field(
        default=False,
        metadata={
            "help": "never call a model: a generation missing from the cache stops the build (reproducible rebuilds)",
            "group": "models",
            "record": "models",
        },
    )
    traces_per_mcq: int = field(
        default=2,
        metadata={
            "help": "short CoTs per MCQ, each also continued after a cue (the paper: 10)",
            "group": "models",
            "record": "always",
        },
    )
    trace_temperature: float = field(
        default=0.7,
        metadata={"help": "the teacher's sampling temperature for short CoTs", "group": "models", "record": "always"},
    )
    trace_top_p: float = field(
        default=0.8,
        metadata={
            "help": "the teacher's nucleus sampling (top_p) for short CoTs",
            "group": "models",
            "record": "always",
        },
    )
    sft_keep_ratio: float = field(
        default=selection.DEFAULT_KEEP_RATIO,
        metadata={
            "help": "the share of a question's correct traces SFT keeps, longer ones more likely",
            "group": "stages",
            "record": "always",
        },
    )
    sft_xo_ratio: float = field(
        default=selection.DEFAULT_XO_RATIO,
        metadata={
            "help": "at most this many corrected (X→O) traces per direct (O, O→O) one in SFT",
            "group": "stages",
            "record": "always",
        },
    )
    pairs_per_mcq: int | None = field(
        default=2,
        metadata={
            "help": "DPO pairs per question, or `all`",
            "group": "stages",
            "metavar": "N|all",
            "parse": whole_or_all,
            "record": "always",
        },
    )
    judged_traces: int = field(
        default=200,
        metadata={
            "help": "how many traces of each traces config the judge labels",
            "group": "models",
            "record": "models",
        },
    )
    short_max_tokens: int = field(
        default=traces.SHORT_MAX_TOKENS,
        metadata={"help": "the most tokens a short CoT may take", "group": "models", "record": "models"},
    )
    expansion_max_tokens: int = field(
        default=traces.EXPANSION_MAX_TOKENS,
        metadata={
            "help": "the most tokens the reasoner's continuation may take",
            "group": "models",
            "record": "models",
        },
    )
    benchmarks: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "a benchmark's questions (JSONL, JSON, TSV or parquet, images inline): MCQs whose question or "
            "image near-duplicates one are dropped and counted (repeatable)",
            "group": "input",
            "flag": "--benchmark",
            "metavar": "FILE",
            "action": "append",
        },
    )
    generation_cache: str | None = field(
        default=None,
        metadata={
            "help": "the generation cache (default: $LGT_CACHE_DIR/generations.sqlite, else "
            "$HF_HOME/lgt/generations.sqlite)",
            "group": "models",
            "flag": "--cache",
            "metavar": "FILE",
        },
    )
    engine_args: dict | None = field(
        default=None,
        metadata={
            "help": "backend settings, e.g. '{\"tensor_parallel_size\": 4}' (vllm), '{\"concurrency\": 64}' (openai), "
            "'{\"batch_size\": 16}' (transformers)",
            "group": "models",
            "metavar": "JSON",
            "parse": json_object,
        },
    )

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
        if type(self.max_pixels) is not int or self.max_pixels < 0:
            raise ValueError(f"max_pixels must be a number of pixels (0: keep sizes), not {self.max_pixels!r}")
        if self.images == "path" and self.max_pixels == MODEL_MAX_PIXELS:
            self.max_pixels = 0  # referenced files are kept as they are: the default frame cannot apply
        if self.max_pixels and self.images == "path":
            raise ValueError("--max-pixels rewrites the images, so it needs --images embed (not path)")
        shares = self.split_fractions
        if (
            not isinstance(shares, (tuple, list))
            or len(shares) != 3
            or not all(isinstance(share, (int, float)) and share >= 0 for share in shares)
            or abs(sum(shares) - 1) > 1e-6
        ):
            raise ValueError(f"split_fractions must be three shares >= 0 that add up to 1, not {shares!r}")
        check_models({role: getattr(self, role) for role in MODEL_ROLES if getattr(self, role)}, self.engine_args)
        if self.shard is not None:
            index, count = self.shard if isinstance(self.shard, (tuple, list)) and len(self.shard) == 2 else (-1, 0)
            if not (type(index) is int and type(count) is int and 0 <= index < count):
                raise ValueError(f"shard must be part I of N with 0 <= I < N, not {self.shard!r}")
            if self.judge:
                raise ValueError(
                    "--judge labels a sample of the whole build, which no part holds: give it to `lgt merge` instead"
                )
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


# The fields that are settings: everything but ``datasets``' own (name, version, data files, description).
_BASE_FIELDS = {f.name for f in dataclasses.fields(datasets.BuilderConfig)}
SETTINGS = tuple(f for f in dataclasses.fields(LGTConfig) if f.name not in _BASE_FIELDS)


def defaults() -> dict:
    """Every setting with its default value."""
    return {f.name: f.default for f in SETTINGS}


def check_names(settings: dict) -> None:
    """``TypeError`` for a keyword that is no setting, naming those that are (as Python does for a signature)."""
    unknown = sorted(set(settings) - {f.name for f in SETTINGS})
    if unknown:
        raise TypeError(f"unknown setting(s) {', '.join(unknown)}: choose from {', '.join(f.name for f in SETTINGS)}")


def recorded(config: LGTConfig) -> dict:
    """The settings ``lgt_build.json`` keeps, in field order, as it may show them (no local path, models by name).

    Model roles and the settings that only matter with a model (``record: models``) are kept only when a model is
    named, so a scripted build's record stays as short as what it depends on.
    """
    with_models = any(getattr(config, role) for role in MODEL_ROLES)
    kept = {}
    for f in SETTINGS:
        record, value = f.metadata.get("record"), getattr(config, f.name)
        if record == "model" and value:
            spec = ModelSpec.parse(value)
            kept[f.name] = f"{spec.backend}:{spec.name}"
        elif record == "always" or (record == "models" and with_models):
            kept[f.name] = f.metadata["public"](value) if "public" in f.metadata else value
    return kept


def takes_settings(function):
    """Give ``function(..., **settings)`` a signature listing every setting as a keyword, for ``help()`` and IDEs."""
    signature = inspect.signature(function)
    fixed = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    keywords = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default) for f in SETTINGS]
    function.__signature__ = signature.replace(parameters=[*fixed, *keywords])
    return function
