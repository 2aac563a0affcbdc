"""The ``lgt`` command: ``lgt build`` writes the dataset, ``lgt push`` publishes it, ``lgt env`` describes the setup.

Status goes to stderr through the ``lgt`` loggers (``-v`` for more, ``-q`` for warnings only, which also hides the
progress bars); the results a command was asked for (row counts, the folder written, the repo URL, ``lgt env``)
go to stdout. Bare ``lgt`` prints this help and exits with status 2, like any other incomplete command line.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import os
import platform
import sys

import datasets

from . import __version__
from .audit import MARGIN
from .builder import FEATURES, PRESETS, STAGE1_WRITERS, LGTConfig
from .errors import BuildError, InputError, find_cause
from .generation import CacheMissError, GenerationStats, default_cache_path
from .sources import SOURCE_HELP

logger = datasets.utils.logging.get_logger(__name__)

# What `lgt env` reports: the packages a bug report needs, installed or not.
ENV_PACKAGES = (
    "datasets",
    "huggingface_hub",
    "pyarrow",
    "pillow",
    "numpy",
    "torch",
    "transformers",
    "trl",
    "accelerate",
    "peft",
    "openai",
    "vllm",
    "playwright",
)


def _build(args) -> int:
    from .build import build, dry_run, rejects_path

    settings = {
        "source": args.source,
        "configs": tuple(c.strip() for c in args.configs.split(",") if c.strip()),
        "num_images": args.num_images,
        "num_proc": args.num_proc,
        "seed": args.seed,
        "images": args.images,
        "on_error": args.on_error,
        "max_pixels": args.max_pixels,
        "image_root": args.image_root,
        "writer": args.writer,
        "verifier": args.verifier,
        "teacher": args.teacher,
        "reasoner": args.reasoner,
        "stage1": args.stage1,
        "questions_per_image": args.questions_per_image,
        "traces_per_mcq": args.traces_per_mcq,
        "judge": args.judge,
        "short_max_tokens": args.short_max_tokens,
        "expansion_max_tokens": args.expansion_max_tokens,
        "sft_keep_ratio": args.sft_keep_ratio,
        "sft_xo_ratio": args.sft_xo_ratio,
        "pairs_per_mcq": args.pairs_per_mcq,
        "benchmarks": tuple(args.benchmark or ()),
        "generation_cache": args.cache,
        "cache_only": args.cache_only,
        "engine_args": args.engine_args,
    }
    if args.preset:  # the preset's settings, where no flag was given
        settings.update({name: value for name, value in PRESETS[args.preset].items() if settings.get(name) is None})
    settings = {name: value for name, value in settings.items() if value is not None}
    if args.dry_run:
        return _print_bills(dry_run(**settings), args)
    info = build(output=args.output, strict=args.strict, **settings)
    for config in info["configs"]:
        counts = ", ".join(f"{split} {n:,}" for split, n in info["rows"][config].items())
        print(f"{config}: {counts}")
    if args.on_error == "skip":
        print(f"skipped {info['rejects']:,} bad record(s); report: {rejects_path(args.output)}")
    generations = (info.get("generation", {}), info.get("composition", {}), *info.get("trace_generation", {}).values())
    for generated in generations:
        for role, stats in generated.get("models", {}).items():
            print(f"{role} {generated[role]}: {GenerationStats(**stats).summary()}")
    name = os.path.basename(os.path.abspath(args.output))
    shown = "mcq_stage1" if "mcq_stage1" in info["configs"] else info["configs"][-1]
    print(
        f"wrote {os.path.abspath(args.output)} in {info['seconds']} s; from its parent folder: "
        f'load_dataset("{name}", "{shown}")'
    )
    return 0


def _print_bills(bills: dict, args) -> int:
    """The dry run's answer: the table, and what it cannot count before the models have written."""
    from .generation.bill import format_bills

    if not bills:
        print("no model would be called: every stage is scripted (pass --writer, --teacher, --reasoner)")
        return 0
    print(format_bills(bills))
    print(
        "Prompt tokens are counted with each model's own tokenizer; output tokens: the most the requests allow, and "
        "the mean of the cached answers where there are some. Retries (a new seed for an image whose answer held no "
        "usable question) are not counted."
    )
    writer = bills.get("mcq_stage1 writer")
    if args.verifier and writer and writer.to_generate:
        print(
            f"The verifier is counted for the questions in cached writer answers only: {writer.to_generate:,} "
            f"more images are still to be written, up to {args.questions_per_image} questions each."
        )
    if any(name.endswith(" reasoner") for name in bills):
        print("The reasoner is counted for the short CoTs already in the cache only: it continues what is written.")
    print("dry run: nothing was generated or written")
    return 0


def _show(args) -> int:
    from .explorer import write_explorer

    path = write_explorer(args.folder, args.config, args.n, out=args.output, split=args.split, seed=args.seed)
    print(f"wrote {path}: open it in a browser")
    return 0


def _json_object(text: str) -> dict:
    """``--engine-args``: a JSON object, or a one-line usage error."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not JSON ({error.msg} at column {error.colno}): {text}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object such as '{{\"batch_size\": 16}}', not {text}")
    return value


def _push(args) -> int:
    from .hub import push

    url = push(args.folder, args.repo_id, private=args.private, revision=args.revision)
    print(f"uploaded {args.folder} to {url}")
    return 0


def environment() -> dict[str, str]:
    """Versions to paste into a bug report; optional packages say ``not installed`` (none is imported)."""
    info = {"lgt": __version__, "python": platform.python_version(), "platform": platform.platform()}
    for package in ENV_PACKAGES:
        try:
            info[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            info[package] = "not installed"
    return info


def _env(args) -> int:
    print("\n".join(f"- {name}: {version}" for name, version in environment().items()))
    return 0


def _verbosity_flags(parser: argparse.ArgumentParser, default) -> None:
    """``-v``/``-q`` on the main parser and every command, so they may come before or after the command."""
    parser.add_argument(
        "-v", "--verbose", action="count", default=default, help="more detail (-vv: datasets' own too)"
    )
    parser.add_argument(
        "-q", "--quiet", action="count", default=default, help="warnings and errors only, no progress bars"
    )


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default in ``--help``; where the default is "none", the help text says what that means."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def parser() -> argparse.ArgumentParser:
    formatter = _DefaultsFormatter
    cli = argparse.ArgumentParser(
        prog="lgt",
        description="Build the lgt dataset (lgt build), look at it (lgt show), publish it (lgt push), describe this "
        "setup (lgt env).",
        epilog="Bare `lgt` prints this help and exits with status 2.",
        formatter_class=formatter,
    )
    cli.add_argument("--version", action="version", version=f"lgt {__version__}")
    _verbosity_flags(cli, default=0)
    commands = cli.add_subparsers(dest="command", metavar="{build,push,show,env}")
    subcommand = {"formatter_class": formatter}

    build = commands.add_parser("build", help="build the dataset (parquet shards + dataset card)", **subcommand)
    build.add_argument("--source", default=LGTConfig.source, help=SOURCE_HELP)
    build.add_argument("--configs", default=",".join(FEATURES), help="comma-separated configs to build")
    build.add_argument("--output", default="lgt", help="output folder")
    build.add_argument(
        "--num-images", type=int, default=None, help="use the first N images (default: all; built-in scenes: 1000)"
    )
    build.add_argument("--num-proc", type=int, default=None, help="worker processes (default: work in this process)")
    build.add_argument(
        "--seed", type=int, default=LGTConfig.seed, help="seed of the built-in scenes and of the question choices"
    )
    build.add_argument(
        "--images",
        choices=("embed", "path"),
        default=LGTConfig.images,
        help="embed the image bytes in the rows (publishable) or reference the local files",
    )
    build.add_argument(
        "--max-pixels",
        type=int,
        default=LGTConfig.max_pixels,
        help="downscale larger images to at most N pixels, boxes with them; 262144 is 512x512 (default: keep sizes)",
    )
    build.add_argument(
        "--on-error",
        choices=("raise", "skip"),
        default=LGTConfig.on_error,
        help="stop at the first bad record, or skip, count and report bad records",
    )
    build.add_argument(
        "--image-root",
        default=LGTConfig.image_root,
        help="a folder images may come from (default: only inside the source's own)",
    )
    models = build.add_argument_group(
        "models (the paper's path; default: every stage scripted, no model)",
        "MODEL is BACKEND:NAME: vllm:HUB_ID_OR_PATH (offline vLLM, GPU), openai:NAME@URL[,URL...] (OpenAI-compatible "
        "servers such as `vllm serve`), transformers:HUB_ID_OR_PATH (local, CPU-capable). Every answer is cached "
        "by content; a rebuild makes no model call for what is cached.",
    )
    models.add_argument(
        "--preset",
        choices=tuple(PRESETS),
        default=None,
        help="the paper's models and settings (flags given override it); run with --dry-run first",
    )
    models.add_argument("--writer", metavar="MODEL", default=None, help="the LLM that writes stage-1 MCQs")
    models.add_argument(
        "--verifier",
        metavar="MODEL",
        default=None,
        help="a model that answers each written question from caption and boxes; kept only when it agrees",
    )
    models.add_argument(
        "--teacher", metavar="MODEL", default=None, help="the VLM that writes short CoTs from the image (traces)"
    )
    models.add_argument(
        "--reasoner",
        metavar="MODEL",
        default=None,
        help="the reasoning LLM that continues each short CoT after a cue, from caption and boxes (not the image)",
    )
    models.add_argument(
        "--traces-per-mcq",
        type=int,
        default=None,
        help=f"short CoTs per MCQ, each also continued after a cue (default {LGTConfig.traces_per_mcq}; paper 10)",
    )
    stages = build.add_argument_group("traces, SFT and DPO")
    stages.add_argument(
        "--sft-keep-ratio",
        type=float,
        default=None,
        help=f"the share of a question's correct traces SFT keeps, longer ones more likely "
        f"(default {LGTConfig.sft_keep_ratio})",
    )
    stages.add_argument(
        "--sft-xo-ratio",
        type=float,
        default=None,
        help="at most this many corrected (X→O) traces per direct (O, O→O) one in SFT "
        f"(default {LGTConfig.sft_xo_ratio})",
    )
    stages.add_argument(
        "--pairs-per-mcq", type=int, default=None, help=f"DPO pairs per question (default {LGTConfig.pairs_per_mcq})"
    )
    models.add_argument(
        "--judge",
        metavar="MODEL",
        default=None,
        help=f"an LLM that labels {LGTConfig.judged_traces} traces of each traces config as verifying, backtracking "
        "or setting subgoals, for the card (beside the marker counts)",
    )
    models.add_argument(
        "--short-max-tokens",
        type=int,
        default=None,
        help=f"the most tokens a short CoT may take (default {LGTConfig.short_max_tokens})",
    )
    models.add_argument(
        "--expansion-max-tokens",
        type=int,
        default=None,
        help=f"the most tokens the reasoner's continuation may take (default {LGTConfig.expansion_max_tokens})",
    )
    build.add_argument(
        "--benchmark",
        metavar="FILE",
        action="append",
        default=None,
        help="a benchmark's questions (JSONL, JSON, TSV or parquet, images inline): MCQs whose question or image "
        "near-duplicates one are dropped and counted (repeatable)",
    )
    models.add_argument(
        "--stage1",
        choices=STAGE1_WRITERS,
        default=LGTConfig.stage1,
        help="who writes mcq_stage1 (default: llm with --writer, templates without)",
    )
    models.add_argument(
        "--questions-per-image",
        type=int,
        default=None,
        help=f"how many questions the writer is asked for per image (default {LGTConfig.questions_per_image})",
    )
    models.add_argument(
        "--cache",
        metavar="FILE",
        default=LGTConfig.generation_cache,
        help=f"the generation cache (default: $LGT_CACHE_DIR/generations.sqlite, else {default_cache_path()})",
    )
    models.add_argument(
        "--cache-only",
        action="store_true",
        help="never call a model: a generation missing from the cache stops the build (reproducible rebuilds)",
    )
    models.add_argument(
        "--engine-args",
        metavar="JSON",
        type=_json_object,
        default=LGTConfig.engine_args,
        help="backend settings, e.g. '{\"tensor_parallel_size\": 4}' (vllm), '{\"concurrency\": 64}' (openai), "
        "'{\"batch_size\": 16}' (transformers)",
    )
    models.add_argument(
        "--dry-run",
        action="store_true",
        help="read the source and print what each model would be asked (requests, tokens, cache hits); "
        "generate and write nothing",
    )
    _verbosity_flags(build, default=argparse.SUPPRESS)
    build.add_argument(
        "--strict",
        action="store_true",
        help=f"fail when readers that never see the image answer a skill {100 * MARGIN:.0f} points above chance",
    )
    build.set_defaults(run=_build)

    push = commands.add_parser("push", help="upload a built folder to a Hub dataset repo", **subcommand)
    push.add_argument("folder", nargs="?", default="lgt", help="built folder")
    push.add_argument("--repo-id", required=True, help="ORG/NAME of the dataset repo")
    push.add_argument("--private", action="store_true", help="create the repo private")
    push.add_argument("--revision", default=None, help="branch to upload to (default: the repo's default branch)")
    _verbosity_flags(push, default=argparse.SUPPRESS)
    push.set_defaults(run=_push)

    show = commands.add_parser(
        "show", help="write a static HTML page of N rows of a built config, boxes drawn", **subcommand
    )
    show.add_argument("folder", nargs="?", default="lgt", help="built folder")
    show.add_argument("--config", default="mcq_stage1", help="the config to show (e.g. sft_stage1, dpo_stage2, rl)")
    show.add_argument("--n", type=int, default=20, help="how many rows, drawn at random")
    show.add_argument("--split", default="train", help="the split to draw from")
    show.add_argument("--seed", type=int, default=0, help="seed of the draw")
    show.add_argument("--output", default=None, help="the page to write (default: FOLDER/explorer/CONFIG.html)")
    _verbosity_flags(show, default=argparse.SUPPRESS)
    show.set_defaults(run=_show)

    env = commands.add_parser("env", help="print versions to paste into a bug report", **subcommand)
    _verbosity_flags(env, default=argparse.SUPPRESS)
    env.set_defaults(run=_env)
    return cli


class _StderrHandler(logging.StreamHandler):
    """Writes to ``sys.stderr`` as it is when a record comes, not as it was when ``main`` ran (tests swap it)."""

    def __init__(self):
        super().__init__()

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def configure_logging(verbose: int, quiet: int) -> None:
    """``lgt`` status lines on stderr at INFO; ``-v`` adds DEBUG, ``-vv`` datasets' INFO, ``-q`` keeps warnings."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet == 1 else logging.ERROR if quiet else logging.INFO
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("lgt: %(message)s"))
    root = logging.getLogger("lgt")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    datasets.utils.logging.set_verbosity(
        logging.INFO if verbose > 1 else logging.ERROR if quiet else datasets.utils.logging.get_verbosity()
    )
    if quiet:
        datasets.disable_progress_bars()


def main(argv: list[str] | None = None) -> int:
    cli = parser()
    args = cli.parse_args(argv)
    if args.command is None:
        cli.print_help()
        return 2
    configure_logging(args.verbose, args.quiet)
    try:
        return args.run(args)
    except KeyboardInterrupt as interrupt:  # a BuildInterrupted says what --output holds now
        logger.error("interrupted" + (f"; {interrupt}" if str(interrupt) else ""))
        return getattr(interrupt, "exit_code", 130)
    except Exception as error:  # one clear line for anything the user can fix; tracebacks only for our bugs
        from .hub import PushError

        if isinstance(error, BuildError):
            logger.error(f"error: {error}")
            return error.exit_code
        found = find_cause(error, InputError)  # also when a num_proc worker raised it inside datasets
        if found is not None:
            logger.error(f"error: {found}")
            if args.command == "build":
                logger.error("nothing was written; fix the record or pass --on-error skip")
            return 2
        if isinstance(error, (PushError, FileExistsError, ValueError, CacheMissError)):
            logger.error(f"error: {error}")
            return 2
        if args.command == "push":
            logger.error(f"error: upload failed ({type(error).__name__}: {error})")
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
