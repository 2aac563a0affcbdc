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
from .detection import command as detect_command
from .errors import BuildError, InputError, find_cause
from .eval.cli import add_commands as add_eval_commands
from .generation import CacheMissError, GenerationStats
from .merge import JUDGE_SETTINGS, split_judge
from .settings import MODEL_HELP, PRESETS, SETTINGS, json_object
from .stages import DEFAULT_CONFIG, STAGES

logger = datasets.utils.logging.get_logger("lgt.cli")  # also when run as `python -m lgt.cli` (`__main__`)

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
    from .build import build, dry_run

    # The settings whose flags were given (absent ones are not in ``args``), then the preset's, where none was given.
    settings = {f.name: getattr(args, f.name) for f in SETTINGS if hasattr(args, f.name)}
    if "benchmarks" in settings:
        settings["benchmarks"] = tuple(settings["benchmarks"])
    if args.preset:
        settings.update({name: value for name, value in PRESETS[args.preset].items() if name not in settings})
    configs = tuple(c.strip() for c in args.configs.split(",") if c.strip())
    if args.shards is not None and args.shards < 1:
        raise ValueError(f"--shards must be a whole number from 1 up, not {args.shards}")
    if args.dry_run:
        if not args.shards:
            return _print_bills(dry_run(configs=configs, num_proc=args.num_proc, **settings), settings)
        part_settings, _ = split_judge(settings)  # the judge labels the merged build, which a dry run never makes
        parts = [
            dry_run(configs=configs, num_proc=args.num_proc, shard=(index, args.shards), **part_settings)
            for index in range(args.shards)
        ]
        return _print_part_bills(parts, settings)
    if args.ray is not None:
        from .cluster import ray_build

        info = ray_build(
            configs=configs,
            output=args.output,
            shards=args.shards or 1,
            address=args.ray or None,
            parts=args.parts,
            num_proc=args.num_proc,
            strict=args.strict,
            **settings,
        )
    elif args.shards or args.parts:
        raise ValueError("--shards and --parts run the parts as Ray tasks: add --ray (on Slurm: --shard slurm)")
    else:
        info = build(configs=configs, output=args.output, num_proc=args.num_proc, strict=args.strict, **settings)
    _print_build(info, args.output)
    return 0


def _print_build(info: dict, output: str) -> None:
    """What a build or a merge made: rows per config, what was skipped, what the models cost, where it is."""
    from .build import rejects_path

    for config in info["configs"]:
        counts = ", ".join(f"{split} {n:,}" for split, n in info["rows"][config].items())
        print(f"{config}: {counts}")
    if info["arguments"]["on_error"] == "skip":
        print(f"skipped {info['rejects']:,} bad record(s); report: {rejects_path(output)}")
    for generated in _reports(info):
        for role, stats in generated.get("models", {}).items():
            print(f"{role} {generated[role]}: {GenerationStats(**stats).summary()}")
    name = os.path.basename(os.path.abspath(output))
    if "shard" in info:
        index, count = info["shard"]
        print(f"wrote part {index}/{count} of the build to {os.path.abspath(output)} in {info['seconds']} s")
        return
    shown = DEFAULT_CONFIG if DEFAULT_CONFIG in info["configs"] else info["configs"][-1]
    print(
        f"wrote {os.path.abspath(output)} in {info['seconds']} s; from its parent folder: "
        f'load_dataset("{name}", "{shown}")'
    )


def _reports(info: dict) -> list[dict]:
    """Every model stage's report in the build info, where ``Stage.report_key`` put it."""
    found = []
    for stage in STAGES.values():
        report = info
        for key in stage.report_key:
            report = report.get(key, {})
        if stage.report_key and report:
            found.append(report)
    return found


def _print_part_bills(parts: list[dict], settings: dict) -> int:
    """``--dry-run --shards N``: each part's table, then the whole build's (the parts' bills added up)."""
    from .generation.bill import added_bills, format_bills

    if not any(parts):
        return _print_bills({}, settings)
    for index, bills in enumerate(parts):
        print(f"part {index}/{len(parts)}:")
        print(format_bills(bills) if bills else "no request")
        print()
    total = {name: added_bills([bills[name] for bills in parts if name in bills]) for bills in parts for name in bills}
    print(f"all {len(parts)} parts:")
    return _print_bills(total, settings)


def _print_bills(bills: dict, settings: dict) -> int:
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
    writer = next((bill for name, bill in bills.items() if name.endswith(" writer")), None)
    if settings.get("verifier") and writer and writer.to_generate:
        per_image = settings.get("questions_per_image", _default("questions_per_image"))
        print(
            f"The verifier is counted for the questions in cached writer answers only: {writer.to_generate:,} "
            f"more images are still to be written, up to {per_image} questions each."
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


def _push(args) -> int:
    from .hub import push

    url = push(args.folder, args.repo_id, private=args.private, revision=args.revision)
    print(f"uploaded {args.folder} to {url}")
    return 0


def _merge(args) -> int:
    from .merge import JUDGE_SETTINGS, merge

    judge = {name: getattr(args, name) for name in JUDGE_SETTINGS if hasattr(args, name)}
    info = merge(
        args.parts,
        args.output,
        strict=args.strict,
        repo_id=args.repo_id,
        private=args.private,
        revision=args.revision,
        **judge,
    )
    _print_build(info, args.output)
    if args.repo_id:
        print(f"committed the card of {args.output} to {args.repo_id}")
    return 0


def _cache_merge(args) -> int:
    from .generation.cache_merge import merge_caches

    merged = merge_caches(args.caches, args.output)
    differing = f"; {merged.differing:,} held with another output (the first kept)" if merged.differing else ""
    read = f"{merged.read:,} generations read from {len(args.caches)} caches"
    print(f"{read}, {merged.added:,} new in {args.output}{differing}")
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


def _flag(setting) -> str:
    return setting.metadata.get("flag", "--" + setting.name.replace("_", "-"))


def _default(name: str):
    return next(f.default for f in SETTINGS if f.name == name)


def _shown(value) -> str:
    """A default as a user would type it."""
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    return json.dumps(value) if isinstance(value, dict) else str(value)


def _flag_options(setting) -> dict:
    """``add_argument``'s options for one ``LGTConfig`` field, from its type and metadata.

    An absent flag leaves the setting out (``SUPPRESS``), so a preset can fill it and ``build()`` applies the field's
    default; a flag's text is turned into the value by the field's ``parse`` (a one-line usage error if it cannot).
    """
    meta = setting.metadata
    helped = meta["help"]
    if (
        setting.default is not None
        and setting.default is not False
        and setting.default != ()
        and "default" not in helped
    ):
        helped += f" (default: {_shown(setting.default)})"
    options = {"dest": setting.name, "default": argparse.SUPPRESS, "help": helped}
    options.update({key: meta[key] for key in ("metavar", "choices") if key in meta})
    kind = setting.type.split("|")[0].strip()
    if kind == "bool":
        return {**options, "action": "store_true"}
    if meta.get("action") == "append":
        return {**options, "action": "append"}
    if "parse" in meta:
        return {**options, "type": _usage_error(meta["parse"])}
    return {**options, "type": {"int": int, "float": float}.get(kind, str)}


def _usage_error(parse):
    """``parse`` as an argparse type: its ``ValueError`` becomes the one-line usage error, message kept."""

    def convert(text: str):
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    convert.__name__ = parse.__name__
    return convert


def parser() -> argparse.ArgumentParser:
    formatter = _DefaultsFormatter
    cli = argparse.ArgumentParser(
        prog="lgt",
        description="Build the lgt dataset (lgt build; in parts: lgt build --shard, lgt merge), give caption-only "
        "images boxes (lgt detect), look at it (lgt show), publish it (lgt push), evaluate models on the paper's "
        "benchmarks (lgt eval), describe this setup (lgt env).",
        epilog="Bare `lgt` prints this help and exits with status 2.",
        formatter_class=formatter,
    )
    cli.add_argument("--version", action="version", version=f"lgt {__version__}")
    _verbosity_flags(cli, default=0)
    commands = cli.add_subparsers(dest="command", metavar="{build,merge,detect,push,show,cache,eval,env}")
    subcommand = {"formatter_class": formatter}

    build = commands.add_parser("build", help="build the dataset (parquet shards + dataset card)", **subcommand)
    build.add_argument("--configs", default=",".join(STAGES), help="comma-separated configs to build")
    build.add_argument("--output", default="lgt", help="output folder")
    build.add_argument("--num-proc", type=int, default=None, help="worker processes (default: work in this process)")
    build.add_argument(
        "--strict",
        action="store_true",
        help=f"fail when readers that never see the image answer a skill {100 * MARGIN:.0f} points above chance, or "
        "tell a wrong chain of thought from a right one or the chosen side of a pair (the trace audit)",
    )
    scale = build.add_argument_group(
        "past one machine",
        "Part I of N of a build: --shard I/N (a Slurm array task: --shard slurm), then `lgt merge PART...`. "
        "Or all N parts as Ray tasks, merged at the end: --ray [ADDRESS] --shards N.",
    )
    scale.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="run the --shards parts as Ray tasks on the cluster at ADDRESS (default: the one this machine is part "
        "of, else a local one), then merge them into --output",
    )
    scale.add_argument(
        "--shards", type=int, default=None, help="how many parts (with --ray, or --dry-run: each part's bill)"
    )
    scale.add_argument(
        "--parts",
        default=None,
        metavar="DIR",
        help="where the Ray parts and their generation caches go, a folder every node can read "
        "(default: OUTPUT.parts)",
    )
    models = build.add_argument_group("models (the paper's path; default: every stage scripted, no model)", MODEL_HELP)
    models.add_argument(
        "--preset",
        choices=tuple(PRESETS),
        default=None,
        help="the paper's models and settings (flags given override it); run with --dry-run first",
    )
    models.add_argument(
        "--dry-run",
        action="store_true",
        help="read the source and print what each model would be asked (requests, tokens, cache hits); "
        "generate and write nothing",
    )
    groups = {"input": build, "models": models, "stages": build.add_argument_group("traces, SFT and DPO")}
    for setting in SETTINGS:
        groups[setting.metadata["group"]].add_argument(_flag(setting), **_flag_options(setting))
    _verbosity_flags(build, default=argparse.SUPPRESS)
    build.set_defaults(run=_build)

    push = commands.add_parser("push", help="upload a built folder to a Hub dataset repo", **subcommand)
    push.add_argument("folder", nargs="?", default="lgt", help="built folder")
    push.add_argument("--repo-id", required=True, help="ORG/NAME of the dataset repo")
    push.add_argument("--private", action="store_true", help="create the repo private")
    push.add_argument("--revision", default=None, help="branch to upload to (default: the repo's default branch)")
    _verbosity_flags(push, default=argparse.SUPPRESS)
    push.set_defaults(run=_push)

    merge = commands.add_parser(
        "merge", help="join the parts of a build (lgt build --shard I/N) into one dataset folder", **subcommand
    )
    merge.add_argument("parts", nargs="+", metavar="PART", help="the parts' folders, every part of the build once")
    merge.add_argument("--output", default="lgt", help="output folder")
    merge.add_argument(
        "--strict",
        action="store_true",
        help=f"fail when readers that never see the image answer a skill {100 * MARGIN:.0f} points above chance",
    )
    merge.add_argument(
        "--repo-id",
        default=None,
        help="the Hub dataset repo the parts were pushed to (lgt push PART): commit the merged card there, last",
    )
    merge.add_argument("--private", action="store_true", help="create the repo private")
    merge.add_argument("--revision", default=None, help="branch of the repo (default: its default branch)")
    judging = merge.add_argument_group("the judge (it labels a sample of the merged traces)")
    for setting in SETTINGS:
        if setting.name in JUDGE_SETTINGS:
            judging.add_argument(_flag(setting), **_flag_options(setting))
    _verbosity_flags(merge, default=argparse.SUPPRESS)
    merge.set_defaults(run=_merge)

    show = commands.add_parser(
        "show", help="write a static HTML page of N rows of a built config, boxes drawn", **subcommand
    )
    show.add_argument("folder", nargs="?", default="lgt", help="built folder")
    show.add_argument("--config", default=DEFAULT_CONFIG, help=f"the config to show: {', '.join(STAGES)}")
    show.add_argument("--n", type=int, default=20, help="how many rows, drawn at random")
    show.add_argument("--split", default="train", help="the split to draw from")
    show.add_argument("--seed", type=int, default=0, help="seed of the draw")
    show.add_argument("--output", default=None, help="the page to write (default: FOLDER/explorer/CONFIG.html)")
    _verbosity_flags(show, default=argparse.SUPPRESS)
    show.set_defaults(run=_show)

    _verbosity_flags(detect_command.add_parser(commands, formatter), default=argparse.SUPPRESS)
    cache = commands.add_parser("cache", help="generation caches: merge the parts' caches into one", **subcommand)
    cache_commands = cache.add_subparsers(dest="cache_command", metavar="{merge}", required=True)
    cache_merge = cache_commands.add_parser(
        "merge", help="add the generations of several caches (a part's each) into one", **subcommand
    )
    cache_merge.add_argument("caches", nargs="+", metavar="CACHE", help="generation cache files (.sqlite)")
    cache_merge.add_argument("--output", required=True, help="the cache to add them to (made if missing)")
    _verbosity_flags(cache_merge, default=argparse.SUPPRESS)
    cache_merge.set_defaults(run=_cache_merge)

    add_eval_commands(commands, formatter, _verbosity_flags, _usage_error(json_object))

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
    try:
        return _main(argv)
    except BrokenPipeError:  # the reader of stdout went away (`lgt ... | head`): stop quietly, as `cat` would
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that the exit flush does not fail too
        return 1


def _main(argv: list[str] | None) -> int:
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
            if args.command in ("build", "detect"):
                logger.error("nothing was written; fix the record or pass --on-error skip")
            return 2
        if isinstance(error, (PushError, FileExistsError, ValueError, CacheMissError)):
            logger.error(f"error: {error}")
            return 2
        if args.command == "push" or getattr(args, "repo_id", None):
            logger.error(f"error: upload failed ({type(error).__name__}: {error})")
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
