"""The ``lgt`` command: ``lgt build`` writes the dataset, ``lgt push`` publishes it."""

from __future__ import annotations

import argparse
import os
import sys

from .audit import MARGIN
from .builder import LGTConfig
from .errors import InputError
from .sources import SOURCE_HELP


def _input_error(error: BaseException) -> InputError | None:
    """The ``InputError`` behind an error, also when a ``num_proc`` worker raised it inside ``datasets``."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, InputError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _build(args) -> int:
    from .build import build, rejects_path

    info = build(
        source=args.source,
        configs=tuple(c.strip() for c in args.configs.split(",") if c.strip()),
        output=args.output,
        num_images=args.num_images,
        num_proc=args.num_proc,
        seed=args.seed,
        images=args.images,
        on_error=args.on_error,
        strict=args.strict,
    )
    for config in info["configs"]:
        counts = ", ".join(f"{split} {n:,}" for split, n in info["rows"][config].items())
        print(f"{config}: {counts}")
    if args.on_error == "skip":
        print(f"skipped {info['rejects']:,} bad record(s); report: {rejects_path(args.output)}")
    name = os.path.basename(os.path.abspath(args.output))
    print(
        f"wrote {os.path.abspath(args.output)} in {info['seconds']} s; from its parent folder: "
        f'load_dataset("{name}", "{info["configs"][-1]}")'
    )
    return 0


def _push(args) -> int:
    from .hub import push

    url = push(args.folder, args.repo_id, private=args.private, revision=args.revision)
    print(f"uploaded {args.folder} to {url}")
    return 0


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(
        prog="lgt", description="Build the lgt dataset (lgt build) and publish it (lgt push)."
    )
    commands = cli.add_subparsers(dest="command", required=True)

    build = commands.add_parser("build", help="build the dataset (parquet shards + dataset card)")
    build.add_argument("--source", default="scenes", help=SOURCE_HELP)
    build.add_argument("--configs", default="scenes,mcq_stage1", help="comma-separated configs to build")
    build.add_argument("--output", default="lgt", help="output folder (default ./lgt)")
    build.add_argument("--num-images", type=int, default=None, help="use the first N images of the source")
    build.add_argument("--num-proc", type=int, default=None, help="worker processes")
    build.add_argument(
        "--seed", type=int, default=LGTConfig.seed, help="seed of the built-in scenes and of the question choices"
    )
    build.add_argument(
        "--images",
        choices=("embed", "path"),
        default="embed",
        help="embed image bytes in the rows (default) or reference the files",
    )
    build.add_argument(
        "--on-error",
        choices=("raise", "skip"),
        default="raise",
        help="stop at the first bad record (default) or skip, count and report bad records",
    )
    build.add_argument(
        "--strict",
        action="store_true",
        help=f"fail when readers that never see the image answer a skill {100 * MARGIN:.0f} points above chance",
    )
    build.set_defaults(run=_build)

    push = commands.add_parser("push", help="upload a built folder to a Hub dataset repo")
    push.add_argument("folder", nargs="?", default="lgt", help="built folder (default ./lgt)")
    push.add_argument("--repo-id", required=True, help="ORG/NAME of the dataset repo")
    push.add_argument("--private", action="store_true")
    push.add_argument("--revision", default=None, help="branch to upload to")
    push.set_defaults(run=_push)
    return cli


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print(
            "lgt: interrupted" + ("; the output folder was left as it was" if args.command == "build" else ""),
            file=sys.stderr,
        )
        return 130
    except Exception as error:  # one clear line for anything the user can fix; tracebacks only for our bugs
        from .hub import PushError

        found = _input_error(error)
        if found is not None:
            print(f"lgt: error: {found}", file=sys.stderr)
            if args.command == "build":
                print("lgt: nothing was written; fix the record or pass --on-error skip", file=sys.stderr)
            return 2
        if isinstance(error, (PushError, FileExistsError, ValueError)):
            print(f"lgt: error: {error}", file=sys.stderr)
            return 2
        if args.command == "push":
            print(f"lgt: error: upload failed ({type(error).__name__}: {error})", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
