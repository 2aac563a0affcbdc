"""The COCO reader and stage-1 answers on real COCO annotations, re-derived straight from the JSON files.

Nothing here calls the generator's geometry: counts and relations are recomputed from the raw annotations with
their own, plainer criteria.
"""

import json
from collections import defaultdict

from datasets import load_dataset
from lgt.sources.coco import CocoSource
from lgt.synthesis.grammar import plural


def raw_annotations(coco_root):
    """image key (as lgt names it) -> category name -> list of (bbox xyxy, iscrowd), read with nothing but json."""
    by_image = defaultdict(lambda: defaultdict(list))
    for path in sorted((coco_root / "annotations").glob("instances_*.json")):
        split = path.stem.removeprefix("instances_")
        data = json.loads(path.read_text())
        names = {c["id"]: c["name"] for c in data["categories"]}
        for ann in data["annotations"]:
            x, y, w, h = ann["bbox"]
            by_image[f"coco-{split}-{ann['image_id']}"][names[ann["category_id"]]].append(
                ((x, y, x + w, y + h), ann["iscrowd"])
            )
    return by_image


def test_reader_turns_every_image_into_a_scene(coco_root):
    source = CocoSource(str(coco_root))
    entries = list(source.entries())
    assert len(entries) == 51 and all(not isinstance(e, Exception) for e in entries)
    scenes = [source.scene(entry.payload) for entry in entries]
    raw = raw_annotations(coco_root)
    captions = defaultdict(list)
    for path in (coco_root / "annotations").glob("captions_*.json"):
        split = path.stem.removeprefix("captions_")
        for ann in json.loads(path.read_text())["annotations"]:
            captions[f"coco-{split}-{ann['image_id']}"].append(ann["caption"].strip())
    for scene in scenes:
        assert len(captions[scene.image_id]) == 5  # the five human captions, joined into the dense caption
        assert all(text[1:].rstrip(".") in scene.caption for text in captions[scene.image_id])
        assert sum(len(v) for v in raw[scene.image_id].values()) == len(scene.objects)
        for obj in scene.objects:
            x0, y0, x1, y1 = obj.bbox
            assert 0 <= x0 < x1 <= scene.width and 0 <= y0 < y1 <= scene.height
    crowd_boxes = sum(crowd for image in raw.values() for boxes in image.values() for _, crowd in boxes)
    assert crowd_boxes > 0 and sum(o.crowd for s in scenes for o in s.objects) == crowd_boxes


def built_mcqs(output, skill):
    """Every built MCQ of one skill, all splits, without decoding images."""
    mcqs = load_dataset(str(output), "mcq_stage1").remove_columns("image")
    return [row for split in mcqs.values() for row in split if row["skill"] == skill]


def test_count_answers_match_the_coco_boxes(coco_build, coco_root):
    output, _ = coco_build
    raw = raw_annotations(coco_root)
    names = {name for image in raw.values() for name in image}
    checked = zeros = 0
    for row in built_mcqs(output, "counting"):
        if row["grounding"]:
            category = row["grounding"][0]["name"]
        else:  # a count of 0 grounds nothing: the category is the one the question names
            category = max((n for n in names if plural(n) in row["question"]), key=len)
            zeros += 1
        instances = raw[row["image_id"]][category]
        assert not any(crowd for _, crowd in instances), "a category with a crowd box must not be counted"
        answer = int(row["options"]["ABCD".index(row["answer"])])
        assert answer == len(instances), (row["question"], category)
        assert len(set(row["options"])) == 4
        checked += 1
    assert checked >= 20 and 0 < zeros < checked


def test_relation_answers_match_the_coco_boxes(coco_build, coco_root):
    output, _ = coco_build
    raw = raw_annotations(coco_root)
    checked = 0
    for row in built_mcqs(output, "spatial_relation"):
        first, second = (ground["name"] for ground in row["grounding"])  # the subject, then the reference
        ((a, a_crowd),) = raw[row["image_id"]][first]  # exactly one instance of each, or the question is ambiguous
        ((b, b_crowd),) = raw[row["image_id"]][second]
        assert not a_crowd and not b_crowd
        answer = row["options"]["ABCD".index(row["answer"])]
        assert answer.endswith(second)
        a_cx, a_cy, b_cx, b_cy = (a[0] + a[2]) / 2, (a[1] + a[3]) / 2, (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        if answer.startswith("to the left of"):  # A lies left of B's middle, and they share vertical extent
            assert a[2] <= b_cx and a_cx < b[0] and a[3] > b[1] and b[3] > a[1]
        elif answer.startswith("to the right of"):
            assert a[0] >= b_cx and a_cx > b[2] and a[3] > b[1] and b[3] > a[1]
        elif answer.startswith("above"):
            assert a[3] <= b_cy and a_cy < b[1] and a[2] > b[0] and b[2] > a[0]
        else:
            assert answer.startswith("below")
            assert a[1] >= b_cy and a_cy > b[3] and a[2] > b[0] and b[2] > a[0]
        checked += 1
    assert checked >= 10
