"""A detected scene as ``lgt detect`` writes it, and what a dataset card built from such scenes says.

Every row ``lgt detect`` writes carries ``detector`` (``sources.detected``: the model and its revision, the box
threshold and NMS IoU, how phrases were taken from the caption, and the source the captions came from), which the
JSON Lines reader checks like any other field; the card's "Grounding" section (``card_section``) names each setting
with its number of rows, states the stage-1 rule that keeps questions to what the scores make safe
(``stage1.CONFIDENT_SCORE``), and shows what the rule costs: stage 1 recomputed on the build's scenes with the
scores and without them.
"""

from __future__ import annotations

import glob
import os
import random
from collections import Counter
from dataclasses import replace

import pyarrow.parquet as pq

from ..scene import Scene, SceneObject
from ..synthesis import stage1


def row(scene: Scene, found: list[tuple[SceneObject, str]], folder: str, detector: dict) -> dict:
    """A JSON Lines scene: the source's record with the detected objects, its image relative to ``folder``."""
    return {
        "image_id": scene.image_id,
        "image": os.path.relpath(scene.image, folder),
        "width": scene.width,
        "height": scene.height,
        "caption": scene.caption,
        "objects": [
            {
                "id": obj.id,
                "name": obj.name,
                "bbox": obj.bbox,
                "attributes": obj.attributes,
                "score": obj.score,
                "phrase": query,
            }
            for obj, query in found
        ],
        "license": scene.license,
        "detector": detector,
    }


def card_section(folder: str, detection: list[dict]) -> str:
    """The card's "Grounding" section of a build whose boxes a detector made (``detection``: ``summary``'s list),
    with what the stage-1 rule costs on the built ``scenes`` when the build wrote them."""
    runs = "; ".join(
        f"`{d['model']}@{d['revision'][:12]}` on `{d['source']}` ({d['rows']:,} images): boxes scoring at least "
        f"{d['box_threshold']}, one box per object by NMS at IoU {d['nms_iou']} among names sharing a head noun, "
        f"phrases by `{d['phrases']}`"
        for d in detection
    )
    text = (
        "## Grounding\n\n"
        "The boxes of this build were found by an open-vocabulary detector (`lgt detect`), not drawn by people: "
        f"{runs}. Each image's text queries are the object phrases of its caption; each object keeps its `score`.\n\n"
        "A detector misses objects and finds some that are not there, so stage 1 asks only what the scores make "
        f"safe: a category with a box scoring below {stage1.CONFIDENT_SCORE}, or whose head noun the image names two "
        'ways ("mug", "ceramic mug"), is asked nothing (not counted, related, located or offered as present), and a '
        "category is offered as absent only when the caption does not name it either."
    )
    scenes = _built_scenes(folder)
    return text + ("\n\n" + _rule_cost(scenes) if scenes else "")


def _built_scenes(folder: str) -> list[Scene]:
    """The ``scenes`` config's rows as scenes without their images (none when the build did not write it)."""
    scenes = []
    for path in sorted(glob.glob(os.path.join(folder, "scenes", "*.parquet"))):
        columns = ["image_id", "width", "height", "caption", "objects", "source"]
        for r in pq.read_table(path, columns=columns).to_pylist():
            objects = [SceneObject(**o) for o in r["objects"]]
            scenes.append(Scene(r["image_id"], "", r["width"], r["height"], r["caption"], objects, r["source"]))
    return scenes


def _rule_cost(scenes: list[Scene]) -> str:
    """Stage-1 questions per template on these scenes with the rule and without it (scores removed)."""
    names = sorted({o.name for s in scenes for o in s.objects})
    attributes = sorted({a for s in scenes for o in s.objects for a in o.attributes})
    vocab = stage1.Vocabulary(
        names=names,
        colours=[a for a in attributes if a in stage1.COLOUR_WORDS],
        attributes=[a for a in attributes if a not in stage1.COLOUR_WORDS],
    )
    counts = {}
    for label, view in (("with", lambda s: s), ("without", _unscored)):
        balance, made = stage1.Balance(), Counter()
        for scene in scenes:
            rng = random.Random(f"grounding:{scene.image_id}")
            made.update(d.template for d in stage1.generate(view(scene), vocab, rng, balance))
        counts[label] = made
    templates = sorted(set(counts["with"]) | set(counts["without"]))
    rows = [f"| {t} | {counts['with'][t]:,} | {counts['without'][t]:,} |" for t in templates]
    total_with, total_without = sum(counts["with"].values()), sum(counts["without"].values())
    rows.append(f"| all | {total_with:,} | {total_without:,} |")
    share = 100 * (1 - total_with / total_without) if total_without else 0.0
    return (
        f"What the rule costs, stage 1 recomputed on this build's {len(scenes):,} scenes with the scores and with the "
        f"scores removed (every box read as a complete human annotation): {share:.0f}% of the template questions.\n\n"
        "| template | with the rule | without |\n| --- | --- | --- |\n" + "\n".join(rows)
    )


def _unscored(scene: Scene) -> Scene:
    return replace(scene, objects=[replace(o, score=None) for o in scene.objects])
