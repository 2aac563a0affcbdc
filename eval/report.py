"""What a reader sees: a run's ``report.md``, ``lgt eval score``'s lines, and ``lgt eval compare``'s table and chart.

``compare`` pairs two runs item by item (the ids both answered), per benchmark and per category: B minus A in
points, the paired bootstrap 95% interval and McNemar's p (``scoring.paired``). An interval that excludes 0 is a
difference the items support; one that covers 0 is not, however large the difference looks. The chart draws each
difference as a bar with its interval, with Pillow (a core dependency), so no plotting library is needed.
"""

from __future__ import annotations

import json
from pathlib import Path

from datasets.utils import logging
from PIL import Image, ImageDraw, ImageFont

from ..errors import InputError
from .scoring import default_aggregation, group_weights, letter, paired, read_predictions, weighted_accuracy

logger = logging.get_logger(__name__)


def score_lines(scores: dict[str, dict]) -> list[str]:
    """The overall percentage with two decimals, then each category's, per benchmark."""
    lines = []
    for name, result in scores.items():
        lines.append(
            f"{name}: {result['score']:.2f}%  ({result['aggregation']}: {result['aggregation_means']}; "
            f"{result['items']:,} items, {result['correct']:,} correct, {result['unparsed']:,} unparsed; "
            f"answers read {result['extract']})"
        )
        for category, part in result["categories"].items():
            lines.append(
                f"  {category}: {part['score']:.2f}%  ({part['items']:,} items, {part['correct']:,} correct, "
                f"{part['unparsed']:,} unparsed)"
            )
    return lines


def _source(source: dict) -> str:
    if not source.get("data"):
        return f"`{source['hub_id']}` at revision `{source['revision']}`"
    copy = f" (the fields of `{source['hub_id']}`)" if source.get("hub_id") else ""
    return f"local files `{source['data']}`{copy}, content `{source['revision']}`"


def markdown(run: dict) -> str:
    """``report.md``: the protocol, then each benchmark's score, source and categories."""
    protocol = run["protocol"]
    lines = [
        f"# {run['model']}",
        "",
        f"Model `{run['model']}` (revision `{run['model_revision'] or 'as served'}`), greedy, up to "
        f"{protocol['max_tokens']:,} new tokens, "
        + (f"images capped at {protocol['max_pixels']:,} pixels" if protocol["max_pixels"] else "images as served")
        + f", the SFT rows' system prompt and user turn; answers read {protocol['extract']} by "
        "`lgt.answers.parse_answer`.",
        "",
        "| benchmark | score | aggregation | items | correct | unparsed |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for name, result in run["benchmarks"].items():
        lines.append(
            f"| {name} | {result['score']:.2f} | {result['aggregation']} | {result['items']:,} | "
            f"{result['correct']:,} | {result['unparsed']:,} |"
        )
    for name, result in run["benchmarks"].items():
        lines += ["", f"## {name}", "", f"Source: {_source(result['source'])}. Score: {result['aggregation_means']}."]
        if result.get("skipped"):
            skipped = ", ".join(f"{n:,} {why}" for why, n in result["skipped"].items())
            lines.append(f"Rows skipped: {skipped}.")
        lines += ["", "| category | score | items | correct | unparsed |", "|---|---:|---:|---:|---:|"]
        lines += [
            f"| {category} | {part['score']:.2f} | {part['items']:,} | {part['correct']:,} | {part['unparsed']:,} |"
            for category, part in result["categories"].items()
        ]
    lines += ["", f"Generation: {run['generation']}."]
    return "\n".join(lines) + "\n"


# ---- two runs ----


def _run(folder: Path) -> tuple[dict, dict[str, dict[str, dict]]]:
    """A run folder's scores (when it has them: its aggregations and protocol) and its predictions, per benchmark
    and id."""
    scores_path = folder / "scores.json"
    try:
        scores = json.loads(scores_path.read_text(encoding="utf-8")) if scores_path.exists() else {}
    except (OSError, ValueError) as error:
        raise InputError(str(scores_path), None, f"cannot be read ({error})") from None
    by_benchmark: dict[str, dict[str, dict]] = {}
    for row in read_predictions(folder / "predictions.jsonl"):
        by_benchmark.setdefault(row.get("benchmark") or "predictions", {})[str(row["id"])] = row
    return scores, by_benchmark


def _correct(row: dict) -> bool:
    return row.get("prediction") is not None and letter(row["prediction"]) == letter(row["answer"])


def compare(folder_a: str | Path, folder_b: str | Path) -> list[dict]:
    """One row per benchmark, then one per category, both runs scored on the items both answered."""
    (scores_a, runs_a), (scores_b, runs_b) = _run(Path(folder_a)), _run(Path(folder_b))
    for setting in ("template", "max_tokens", "max_pixels", "extract"):
        a, b = scores_a.get("protocol", {}).get(setting), scores_b.get("protocol", {}).get(setting)
        if a != b:
            logger.warning(f"the runs differ in {setting} ({a} against {b}): the comparison is not of models alone")
    shared_benchmarks = [name for name in runs_b if name in runs_a]
    if not shared_benchmarks:
        raise InputError(str(folder_b), None, f"no benchmark in common with {folder_a}")
    rows = []
    for name in shared_benchmarks:
        ids = [i for i in runs_a[name] if i in runs_b[name]]
        items_a, items_b = [runs_a[name][i] for i in ids], [runs_b[name][i] for i in ids]
        aggregation = scores_b.get("benchmarks", {}).get(name, {}).get("aggregation") or default_aggregation(name)
        rows.append(_paired_row(name, "", items_a, items_b, aggregation))
        for category in sorted({row["category"] for row in items_a}):
            chosen = [k for k, row in enumerate(items_a) if row["category"] == category]
            rows.append(
                _paired_row(name, category, [items_a[k] for k in chosen], [items_b[k] for k in chosen], aggregation)
            )
    return rows


def _paired_row(benchmark: str, category: str, items_a: list, items_b: list, aggregation: str) -> dict:
    groups, weights = group_weights(items_a, aggregation)
    a, b = [_correct(r) for r in items_a], [_correct(r) for r in items_b]
    return {
        "benchmark": benchmark,
        "category": category,
        "aggregation": aggregation,
        "a": 100 * weighted_accuracy(a, groups, weights),
        "b": 100 * weighted_accuracy(b, groups, weights),
        **paired(a, b, groups, weights),
    }


def comparison_table(rows: list[dict], name_a: str, name_b: str) -> str:
    lines = [
        f"| benchmark | category | items | A: {name_a} | B: {name_b} | B - A | 95% interval | McNemar p |",
        "|---|---|---:|---:|---:|---:|---|---:|",
    ]
    for row in rows:
        mark = "" if row["low"] <= 0 <= row["high"] else " *"
        lines.append(
            f"| {row['benchmark'] if not row['category'] else ''} | {row['category'] or '**all**'} | "
            f"{row['items']:,} | {row['a']:.2f} | {row['b']:.2f} | {row['delta']:+.2f}{mark} | "
            f"[{row['low']:+.2f}, {row['high']:+.2f}] | {row['mcnemar_p']:.3g} |"
        )
    lines.append("")
    lines.append("Points; * the paired bootstrap 95% interval (10,000 resamples of the shared items) excludes 0.")
    return "\n".join(lines) + "\n"


def chart(rows: list[dict], path: str | Path, title: str) -> None:
    """A PNG of each benchmark's and category's difference (B - A) with its 95% interval; significant ones in
    colour (green: B better, red: A better), the rest grey."""
    font = ImageFont.load_default(size=14)
    bold = ImageFont.load_default(size=15)
    label_width, plot_width, value_width, row_height, top = 330, 520, 150, 24, 56
    width, height = label_width + plot_width + value_width, top + row_height * len(rows) + 40
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    reach = max(1.0, *(max(abs(r["low"]), abs(r["high"]), abs(r["delta"])) for r in rows)) * 1.1

    def x(value: float) -> float:
        return label_width + plot_width / 2 + value / reach * plot_width / 2

    draw.text((12, 12), title, fill="black", font=bold)
    draw.line([(x(0), top - 8), (x(0), height - 36)], fill="#888888", width=1)
    for tick in (-reach / 1.1, reach / 1.1):
        draw.text((x(tick) - 18, height - 30), f"{tick:+.1f}", fill="#555555", font=font)
    for number, row in enumerate(rows):
        y = top + number * row_height + row_height / 2
        label = row["benchmark"] if not row["category"] else f"    {row['category']}"
        draw.text((12, y - 8), label[:44], fill="black", font=bold if not row["category"] else font)
        significant = not row["low"] <= 0 <= row["high"]
        colour = ("#2e8b57" if row["delta"] > 0 else "#c0392b") if significant else "#a0a0a0"
        draw.rectangle([min(x(0), x(row["delta"])), y - 6, max(x(0), x(row["delta"])), y + 6], fill=colour)
        draw.line([(x(row["low"]), y), (x(row["high"]), y)], fill="black", width=2)
        for end in (row["low"], row["high"]):
            draw.line([(x(end), y - 5), (x(end), y + 5)], fill="black", width=2)
        draw.text(
            (label_width + plot_width + 8, y - 8),
            f"{row['delta']:+.2f} [{row['low']:+.1f}, {row['high']:+.1f}]",
            fill="black",
            font=font,
        )
    image.save(path, format="PNG")
