"""The ``detector`` field of a JSON Lines scene: how ``lgt detect`` made its boxes (``detection/``), as the reader
checks it and the card counts it."""

from __future__ import annotations

import json
from collections import Counter

from ..errors import InputError
from ..scene import Fields


def settings(model: str, revision: str, box_threshold: float, nms_iou: float, phrases: str, source: str) -> dict:
    """The ``detector`` field of every row of one ``lgt detect`` run (``source``: the spec without local folders)."""
    return {
        "model": model,
        "revision": revision,
        "box_threshold": box_threshold,
        "nms_iou": nms_iou,
        "phrases": phrases,
        "source": source,
    }


def read(fields: Fields) -> dict | None:
    """A row's ``detector`` field, each value in its type (``InputError`` otherwise); None when absent or null."""
    if fields.data.get("detector") is None:
        return None
    detector = Fields(fields.data["detector"], fields.source, fields.record, "detector")
    return settings(
        model=detector.text("model"),
        revision=detector.text("revision"),
        box_threshold=detector.number("box_threshold", (0, 1)),
        nms_iou=detector.number("nms_iou", (0, 1)),
        phrases=detector.text("phrases"),
        source=detector.text("source"),
    )


def summary(lines) -> list[dict]:
    """Each distinct ``detector`` of ``(line number, text)`` lines with its number of rows (``rows``), most first;
    lines that are not JSON, or whose field is malformed, are the reader's to reject and are not counted here."""
    counts: Counter = Counter()
    for _, line in lines:
        if not isinstance(line, str) or '"detector"' not in line:
            continue
        try:
            found = read(Fields(json.loads(line), "", None))
        except (ValueError, RecursionError, InputError):
            continue
        if found:
            counts[json.dumps(found, sort_keys=True)] += 1
    return [{**json.loads(text), "rows": n} for text, n in counts.most_common()]
