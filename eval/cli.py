"""``lgt eval run | score | compare | export``: the eval harness's commands, registered on the ``lgt`` parser.

Errors follow ``lgt``'s: one line, exit 2 for bad input (a benchmark row, a predictions file, an unknown name), 1
for the environment (the Hub unreachable); results go to stdout, status to stderr.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..answers import EXTRACTIONS
from .benchmarks import AGGREGATIONS, BENCHMARKS, PAPER
from .run import MAX_PIXELS, MAX_TOKENS


def _run(args) -> int:
    from .report import score_lines
    from .run import run_eval

    run = run_eval(
        args.model,
        args.benchmark,
        args.output,
        args.data,
        max_tokens=args.max_tokens,
        max_pixels=args.max_pixels,
        extract=args.extract,
        cache=args.cache,
        cache_only=args.cache_only,
        engine_args=args.engine_args,
        revision=args.revision,
    )
    print("\n".join(score_lines(run["benchmarks"])))
    print(f"generation: {run['generation']}")
    print(f"wrote {Path(args.output) / 'predictions.jsonl'}, scores.json and report.md")
    return 0


def _score(args) -> int:
    from .report import score_lines
    from .scoring import read_predictions, score_predictions

    scores = score_predictions(read_predictions(args.predictions), args.benchmark, args.aggregate, args.extract)
    print("\n".join(score_lines(scores)))
    return 0


def _compare(args) -> int:
    from .report import chart, compare, comparison_table

    rows = compare(args.run_a, args.run_b)
    name_a, name_b = Path(args.run_a).resolve().name, Path(args.run_b).resolve().name
    table = comparison_table(rows, name_a, name_b)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "compare.md").write_text(f"# {name_b} (B) against {name_a} (A)\n\n{table}", encoding="utf-8")
    chart(rows, output / "compare.png", f"{name_b} minus {name_a}, points (bars: paired bootstrap 95% intervals)")
    print(table, end="")
    print(f"wrote {output / 'compare.md'} and {output / 'compare.png'}")
    return 0


def _export(args) -> int:
    from .benchmarks import export, load, resolve
    from .run import data_paths

    benchmarks = resolve(args.benchmark)
    paths = data_paths(benchmarks, args.data)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    for benchmark in benchmarks:
        path = output / f"{benchmark.name}.parquet"
        count = export(load(benchmark, paths.get(benchmark.name)), path)
        print(f"{benchmark.name}: {count:,} items -> {path}")
    files = " ".join(f"--benchmark {output / b.name}.parquet" for b in benchmarks)
    print(f"decontaminate a build against them: lgt build ... {files}")
    return 0


def add_commands(commands, formatter_class, verbosity_flags, json_object) -> None:
    """Add ``lgt eval`` and its commands to the ``lgt`` parser's ``commands``."""
    names = ", ".join(BENCHMARKS)
    kind = {"formatter_class": formatter_class}
    parent = commands.add_parser(
        "eval",
        help="evaluate a model on the paper's benchmarks; score, compare",
        description="Evaluate models on the paper's benchmarks with the SFT rows' prompt (lgt eval run), re-score "
        "saved predictions (lgt eval score), compare two runs item by item (lgt eval compare), export benchmarks for "
        "decontamination (lgt eval export).",
        **kind,
    )
    verbosity_flags(parent, default=argparse.SUPPRESS)
    parent.set_defaults(run=lambda args: parent.print_help() or 2)
    sub = parent.add_subparsers(dest="eval_command", metavar="{run,score,compare,export}")
    benchmark_help = f"comma-separated: {names}; paper ({', '.join(PAPER)}); lgt:PATH_OR_REPO (a build's test split)"
    data_help = (
        "local data instead of the Hub: the benchmark's file or folder (its Hub copy's fields); with several "
        "benchmarks a folder holding one per benchmark, named after it"
    )

    run = sub.add_parser("run", help="a model answers benchmarks; predictions, scores and a report", **kind)
    run.add_argument(
        "--model",
        required=True,
        metavar="BACKEND:MODEL",
        help="vllm:ID_OR_PATH, openai:NAME@URL[,URL], transformers:ID_OR_PATH",
    )
    run.add_argument("--benchmark", required=True, metavar="NAME[,NAME...]", help=benchmark_help)
    run.add_argument("--data", metavar="PATH", default=None, help=data_help)
    run.add_argument("--output", required=True, metavar="DIR", help="writes predictions.jsonl, scores.json, report.md")
    run.add_argument("--max-tokens", type=int, default=MAX_TOKENS, help="new tokens per answer (greedy)")
    run.add_argument(
        "--max-pixels",
        type=int,
        default=MAX_PIXELS,
        help="cap on each image's pixels, by the model's processor (262144 = 512x512, the paper's training cap); "
        "an openai server applies its own",
    )
    run.add_argument(
        "--extract",
        choices=EXTRACTIONS,
        default="strict",
        help="read answers from the last <answer> tag only, or also from a leading letter when there is no tag",
    )
    run.add_argument(
        "--revision",
        default=None,
        help="the model's version in the cache key (default: a local folder's content hash, the Hub commit; a served "
        "model has none: give each checkpoint's deployment its own --served-model-name or pin one here)",
    )
    run.add_argument("--cache", metavar="FILE", default=None, help="the generation cache (default: lgt build's)")
    run.add_argument("--cache-only", action="store_true", help="never call the model: a missing answer is an error")
    run.add_argument(
        "--engine-args",
        metavar="JSON",
        type=json_object,
        default=None,
        help="backend settings, e.g. '{\"tensor_parallel_size\": 4}' (vllm), '{\"concurrency\": 64}' (openai)",
    )
    verbosity_flags(run, default=argparse.SUPPRESS)
    run.set_defaults(run=_run)

    score = sub.add_parser("score", help="re-score saved predictions, no model", **kind)
    score.add_argument(
        "--predictions",
        required=True,
        metavar="FILE",
        help="JSON Lines; each row needs id, category, answer (gold letter) and response or prediction",
    )
    score.add_argument(
        "--benchmark",
        metavar="NAME",
        default=None,
        help="score only this benchmark's rows (and use its aggregation); rows without a benchmark field belong to it",
    )
    score.add_argument(
        "--aggregate", choices=tuple(AGGREGATIONS), default=None, help="default: the benchmark's own (else pooled)"
    )
    score.add_argument("--extract", choices=EXTRACTIONS, default="strict", help="how answers are read")
    verbosity_flags(score, default=argparse.SUPPRESS)
    score.set_defaults(run=_score)

    compare = sub.add_parser(
        "compare", help="two runs item by item: differences, bootstrap intervals, McNemar", **kind
    )
    compare.add_argument("run_a", metavar="DIR_A", help="a run's --output (A, e.g. the base model)")
    compare.add_argument("run_b", metavar="DIR_B", help="another run's --output (B, e.g. the trained checkpoint)")
    compare.add_argument("--output", metavar="DIR", default=".", help="writes compare.md and compare.png")
    verbosity_flags(compare, default=argparse.SUPPRESS)
    compare.set_defaults(run=_compare)

    export = sub.add_parser("export", help="benchmarks as files for lgt build --benchmark (decontamination)", **kind)
    export.add_argument("--benchmark", required=True, metavar="NAME[,NAME...]", help=benchmark_help)
    export.add_argument("--data", metavar="PATH", default=None, help=data_help)
    export.add_argument("--output", required=True, metavar="DIR", help="writes NAME.parquet per benchmark")
    verbosity_flags(export, default=argparse.SUPPRESS)
    export.set_defaults(run=_export)
