"""Scoring: every answer read by ``lgt.answers.parse_answer``, each benchmark's own aggregation, paired statistics.

A prediction is correct when the letter read from the model's response is the gold letter; a response the parser
cannot read (no answer tag, a letter that names no option, two letters) is wrong, and counted as ``unparsed`` so a
format problem is never mistaken for a knowledge problem. ``extract="leading-letter"`` also reads an untagged
answer by its first letter, as MMStar's authors score.

Every aggregation is a weighted mean of group accuracies: ``pooled`` (one group, all items), ``category-mean``
(each category weighs the same) and ``cv-bench`` (2D and 3D weigh the same; within 2D, ADE20K and COCO do). That
one form gives each benchmark's score, its per-category scores (the same aggregation over one category) and the
paired comparison of two runs: the difference of two weighted means over the same items is the weighted mean of
per-group differences, and a bootstrap that resamples items within each group draws the counts of items only B
got right, only A got right and neither or both from a multinomial, exactly and for any number of items.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..answers import OPTION_LETTERS, parse_answer
from ..errors import InputError
from .benchmarks import AGGREGATIONS, BENCHMARKS

# Options a predictions file did not keep: any single letter reads, no option's text can.
_UNKNOWN_OPTIONS = [""] * len(OPTION_LETTERS)
BOOTSTRAP_SAMPLES = 10_000


def letter(value) -> str | None:
    """A stored letter as ``A``: ``A``, ``(A)`` or ``A.``; None for anything else (an unparsed prediction)."""
    if not isinstance(value, str):
        return None
    text = value.strip().rstrip(".").strip("()")
    return text if len(text) == 1 and text in OPTION_LETTERS else None


def read_predictions(path: str | Path) -> list[dict]:
    """The rows of a predictions file (JSON Lines): each needs ``id``, ``category``, ``answer`` (the gold letter)
    and ``response`` (the raw output) or ``prediction`` (a letter, or null)."""
    rows = []
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    raise InputError(str(path), f"line {number}", f"not JSON ({error.msg})") from None
                missing = [k for k in ("id", "category", "answer") if k not in row]
                if not isinstance(row, dict) or missing or not ("response" in row or "prediction" in row):
                    raise InputError(
                        str(path),
                        f"line {number}",
                        f"a prediction needs id, category, answer and response or "
                        f"prediction; missing {', '.join(missing) or 'response/prediction'}",
                    )
                if letter(row["answer"]) is None:
                    raise InputError(str(path), f"line {number}", f"answer {row['answer']!r} is not a letter")
                rows.append(row)
    except OSError as error:
        raise InputError(str(path), None, f"cannot be read ({error.strerror or error})") from None
    if not rows:
        raise InputError(str(path), None, "no predictions in it")
    return rows


def predicted(row: dict, extract: str = "strict") -> str | None:
    """The letter a row's model gave: parsed from ``response`` when the row has it, else its stored ``prediction``."""
    if isinstance(row.get("response"), str):
        return parse_answer(row["response"], row.get("options") or _UNKNOWN_OPTIONS, extract)
    return letter(row.get("prediction"))


def group_weights(rows: list[dict], aggregation: str) -> tuple[list, dict]:
    """Each row's group and each group's weight in the score (weights sum to 1)."""
    if aggregation == "pooled":
        groups = [""] * len(rows)
        return groups, {"": 1.0}
    if aggregation == "category-mean":
        groups = [row["category"] for row in rows]
        return groups, {group: 1 / len(set(groups)) for group in groups}
    if aggregation == "cv-bench":
        groups = [(row["category"], row.get("subcategory", "")) for row in rows]
        per_category = defaultdict(set)
        for category, sub in groups:
            per_category[category].add(sub)
        return groups, {(c, s): 1 / len(per_category) / len(per_category[c]) for c, s in groups}
    raise ValueError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, not {aggregation!r}")


def weighted_accuracy(correct: np.ndarray, groups: list, weights: dict) -> float:
    totals, counts = defaultdict(float), defaultdict(int)
    for hit, group in zip(correct, groups, strict=True):
        totals[group] += hit
        counts[group] += 1
    return sum(weight * totals[group] / counts[group] for group, weight in weights.items())


def _summary(rows: list[dict], aggregation: str) -> dict:
    correct = np.array([row["correct"] for row in rows], dtype=float)
    groups, weights = group_weights(rows, aggregation)
    return {
        "score": round(100 * weighted_accuracy(correct, groups, weights), 4),
        "items": len(rows),
        "correct": int(correct.sum()),
        "unparsed": sum(row["prediction"] is None for row in rows),
    }


def score(rows: list[dict], aggregation: str) -> dict:
    """A benchmark's score and each category's, in percent, with counts of items, correct and unparsed answers.

    ``rows`` carry ``prediction`` (a letter or None) and ``answer``; each gets ``correct``.
    """
    for row in rows:
        row["correct"] = row["prediction"] is not None and row["prediction"] == letter(row["answer"])
    by_category = defaultdict(list)
    for row in rows:
        by_category[row["category"]].append(row)
    return {
        "aggregation": aggregation,
        "aggregation_means": AGGREGATIONS[aggregation],
        **_summary(rows, aggregation),
        "categories": {name: _summary(members, aggregation) for name, members in sorted(by_category.items())},
    }


def default_aggregation(benchmark: str) -> str:
    known = BENCHMARKS.get(benchmark)
    return known.aggregation if known else "pooled"


def score_predictions(
    rows: list[dict], benchmark: str | None = None, aggregation: str | None = None, extract: str = "strict"
) -> dict[str, dict]:
    """Scores per benchmark of predictions rows, re-read with ``extract``; rows without a ``benchmark`` field
    belong to ``benchmark`` (or ``predictions``), and with ``benchmark`` given only its rows are scored."""
    by_benchmark = defaultdict(list)
    for row in rows:
        name = row.get("benchmark") or benchmark or "predictions"
        if benchmark is None or name == benchmark:
            by_benchmark[name].append({**row, "prediction": predicted(row, extract)})
    if not by_benchmark:
        raise ValueError(f"no predictions of benchmark {benchmark!r} in the file")
    return {
        name: {**score(members, aggregation or default_aggregation(name)), "extract": extract}
        for name, members in by_benchmark.items()
    }


# ---- two runs on the same items ----


def mcnemar_p(only_a: int, only_b: int) -> float:
    """McNemar's exact two-sided p: of the items exactly one run got right, how unlikely a split this uneven is
    when either run is as likely to be the one (a binomial test at 1/2)."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    log_half = n * math.log(0.5)
    tail = sum(
        math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + log_half) for i in range(k + 1)
    )
    return min(1.0, 2 * tail)


def paired(
    a: list[bool], b: list[bool], groups: list, weights: dict, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0
) -> dict:
    """B minus A on the same items, in points: the difference of their scores, its paired bootstrap 95% interval
    (items resampled within each group), McNemar's p, and how many items only A or only B got right."""
    rng = np.random.default_rng(seed)
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    members = defaultdict(list)
    for index, group in enumerate(groups):
        members[group].append(index)
    delta = 0.0
    draws = np.zeros(samples)
    for group, weight in weights.items():
        index = np.array(members[group])
        n = len(index)
        only_b = int((b[index] & ~a[index]).sum())
        only_a = int((a[index] & ~b[index]).sum())
        delta += weight * (only_b - only_a) / n
        counts = rng.multinomial(n, [only_b / n, only_a / n, 1 - (only_b + only_a) / n], size=samples)
        draws += weight * (counts[:, 0] - counts[:, 1]) / n
    low, high = np.percentile(draws, [2.5, 97.5])
    only_a, only_b = int((a & ~b).sum()), int((b & ~a).sum())
    return {
        "delta": 100 * delta,
        "low": 100 * float(low),
        "high": 100 * float(high),
        "mcnemar_p": mcnemar_p(only_a, only_b),
        "only_a": only_a,
        "only_b": only_b,
        "items": len(a),
    }
