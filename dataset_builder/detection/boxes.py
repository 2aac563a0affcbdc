"""From a detector's raw boxes to a scene's objects: a score threshold, then non-maximum suppression per head noun.

A raw detection is ``(query index, score, [x0, y0, x1, y1])`` in pixels of the image, one per box the detector
proposed, for the query it matched best; the cache keeps them down to ``SCORE_FLOOR``, so another threshold costs no
model call. Boxes below ``box_threshold`` are dropped. Then, among the boxes whose names end in the same head noun
("mug", "ceramic mug"; "red car", "blue car": one kind of thing, named twice or told apart by colour), a box that
overlaps a higher-scoring one by ``nms_iou`` or more is the same object found again, and is dropped; the survivor
keeps its own name, colour and score. Ties keep the earlier query, then the earlier box, so the result is a pure
function of the raw detections.
"""

from __future__ import annotations

from typing import NamedTuple

from ..scene import SceneObject
from ..synthesis.stage1 import head_noun
from .phrases import Phrase

# The lowest score the cache keeps: every box threshold at or above it is applied to cached detections.
SCORE_FLOOR = 0.05
# At most this many raw boxes per query are kept in the cache (the best), whatever their scores.
MAX_BOXES_PER_QUERY = 50


class RawDetection(NamedTuple):
    query: int  # index into the image's queries
    score: float
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels of the image


def iou(a, b) -> float:
    """Intersection over union of two ``[x0, y0, x1, y1]`` boxes."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    shared = width * height
    return shared / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - shared)


def objects_from(
    detections: list[RawDetection], phrases: list[Phrase], box_threshold: float, nms_iou: float
) -> list[tuple[SceneObject, str]]:
    """The scene's objects (ids in order of score) with the query each was found for."""
    ranked = sorted(
        (d for d in detections if d.score >= box_threshold),
        key=lambda d: (-d.score, d.query, d.box),
    )
    kept: list[RawDetection] = []
    for detection in ranked:
        head = head_noun(phrases[detection.query].name)
        if all(head_noun(phrases[k.query].name) != head or iou(k.box, detection.box) < nms_iou for k in kept):
            kept.append(detection)
    return [
        (
            SceneObject(
                id=index,
                name=phrases[d.query].name,
                bbox=list(d.box),
                attributes=list(phrases[d.query].attributes),
                score=d.score,
            ),
            phrases[d.query].query,
        )
        for index, d in enumerate(kept)
    ]
