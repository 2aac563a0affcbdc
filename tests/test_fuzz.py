"""Property-based: any JSONL or COCO record either builds, every value as written, or is a counted reject.

Hypothesis writes records whose fields are valid or hostile (null, booleans, huge or non-finite numbers, text where
numbers belong, lone surrogates, lists, objects, invalid UTF-8 lines ...); each example is built with
``--on-error skip`` next to one known-good record, so the build must succeed. A new field is covered by adding its
strategy here, not by writing its cases by hand. Bounded to run in seconds: fixed seed, a few dozen examples
(``LGT_FUZZ_EXAMPLES=1000`` for a deeper search).
"""

import glob
import json
import os
import tempfile

import numpy as np
import pyarrow.parquet as pq
from conftest import write_image
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lgt.build import build

FUZZ = settings(
    max_examples=int(os.environ.get("LGT_FUZZ_EXAMPLES", 30)),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
NAME = st.text(min_size=1, max_size=8)
HOSTILE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(["\ud800", "a\udc00b", "", " ", "None", "1", "1e400"]),
    st.lists(st.one_of(st.integers(-3, 300), st.text(max_size=2), st.booleans()), max_size=5),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)


@st.composite
def spoiled(draw, valid, nested="objects"):
    """A valid record, or one with a single field (top level or in one of its ``nested`` items) made hostile."""
    data = draw(valid)
    targets = [data] + [item for item in data.get(nested, []) if isinstance(item, dict)]
    target = draw(st.sampled_from(targets))
    key = draw(st.sampled_from(sorted(target)))
    choice = draw(st.sampled_from(["keep", "keep", "hostile", "remove"]))
    if choice == "hostile":
        target[key] = draw(HOSTILE)
    elif choice == "remove":
        del target[key]
    return data


def coordinate(high):
    return st.one_of(st.integers(-2, high), st.floats(-2, high))


XYWH = st.tuples(coordinate(250), coordinate(170), coordinate(60), coordinate(60)).map(
    lambda b: [b[0], b[1], abs(b[2]) + 1, abs(b[3]) + 1]  # inside the 320x240 image but for a rare overhang
)
XYXY = XYWH.map(lambda b: [b[0], b[1], b[0] + b[2], b[1] + b[3]])


def stored_box(x0, y0, x1, y1, width, height):
    """A box as the float32 column holds it: clipped to the image (by at most the documented 2 px)."""
    return [float(np.float32(v)) for v in (max(0, x0), max(0, y0), min(width, x1), min(height, y1))]


def read_config(output, config):
    paths = sorted(glob.glob(os.path.join(output, config, "*.parquet")))
    return [row for path in paths for row in pq.read_table(path, columns=None).drop(["image"]).to_pylist()]


def read_rejects(output):
    with open(output + ".rejects.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


# ---- JSON Lines ----

JSONL_OBJECT = st.fixed_dictionaries(
    {"name": NAME, "bbox": XYXY},
    optional={
        "id": st.integers(-(2**63), 2**63 - 1),
        "attributes": st.lists(NAME, max_size=3),
        "score": st.floats(0, 1),
    },
)
JSONL_SCENE = spoiled(
    st.fixed_dictionaries(
        {
            "image": st.sampled_from(["a.png"] * 8 + ["missing.png", "../a.png"]),
            "caption": st.text(min_size=1, max_size=20),
            "objects": st.lists(JSONL_OBJECT, max_size=4),
        },
        optional={"image_id": NAME, "license": NAME},
    ).flatmap(lambda d: st.sampled_from([d, {**d, "width": 320, "height": 240}]))
)
RAW_LINE = st.sampled_from([b"\xff\xfe not UTF-8", b"[1, 2]", b'{"image": "a.png"', b"7", b"null"])
GOOD_SCENE = {
    "image_id": "good",
    "image": "a.png",
    "caption": "Two cups and a plate.",
    "objects": [
        {"name": "cup", "bbox": [10, 10, 60, 60]},
        {"name": "cup", "bbox": [200, 150, 260, 210]},
        {"name": "plate", "bbox": [100, 20, 180, 90]},
    ],
}


def given_value(data, key, default):
    value = data.get(key)
    return default if value is None else value


def assert_jsonl_scene_as_written(row, data, line_no):
    assert row["image_id"] == given_value(data, "image_id", f"line-{line_no}")
    assert (row["width"], row["height"]) == (320, 240) and row["caption"] == data["caption"]
    assert row["license"] == given_value(data, "license", "")
    objects = given_value(data, "objects", [])
    assert len(row["objects"]) == len(objects)
    for index, (stored, given_object) in enumerate(zip(row["objects"], objects, strict=True)):
        score = given_object.get("score")
        assert stored == {
            "id": given_value(given_object, "id", index),
            "name": given_object["name"],
            "bbox": stored_box(*given_object["bbox"], 320, 240),
            "attributes": given_value(given_object, "attributes", []),
            "score": None if score is None else float(np.float32(score)),
            "crowd": False,
        }


@FUZZ
@given(lines=st.lists(st.one_of(JSONL_SCENE, JSONL_SCENE, JSONL_SCENE, RAW_LINE), min_size=1, max_size=8))
def test_any_jsonl_record_builds_as_written_or_is_a_counted_reject(lines):
    with tempfile.TemporaryDirectory() as folder:
        write_image(os.path.join(folder, "a.png"))
        encoded = [json.dumps(GOOD_SCENE).encode()]
        encoded += [line if isinstance(line, bytes) else json.dumps(line).encode() for line in lines]
        with open(os.path.join(folder, "scenes.jsonl"), "wb") as f:
            f.write(b"\n".join(encoded) + b"\n")
        output = os.path.join(folder, "out")
        # max_pixels=0: the images keep their size, so every box is checked as written
        info = build(source=f"jsonl:{folder}/scenes.jsonl", output=output, on_error="skip", max_pixels=0)
        rejected = {r["record"] for r in read_rejects(output)}
        scenes = {row["image_id"]: row for row in read_config(output, "scenes")}
        assert info["rejects"] == len(rejected) and len(rejected) + len(scenes) == len(encoded)
        assert read_config(output, "mcq_stage1")
        for line_no, line in enumerate(lines, start=2):
            image_id = given_value(line, "image_id", f"line-{line_no}") if isinstance(line, dict) else None
            if not {f"line {line_no}", image_id} & rejected:  # an image's own problems name it by its id
                assert_jsonl_scene_as_written(scenes[image_id], line, line_no)


# ---- COCO ----

GOOD = 10**6  # the known-good image, its categories and annotations: ids no strategy below draws
IMAGE_IDS = st.integers(2, 6)
COCO_IMAGE = spoiled(
    st.fixed_dictionaries(
        {
            "id": IMAGE_IDS,
            "file_name": st.sampled_from(["x.jpg"] * 8 + ["missing.jpg", "../x.jpg"]),
            "width": st.just(320),
            "height": st.just(240),
        },
        optional={"license": st.just(1)},
    )
)
COCO_ANNOTATION = spoiled(
    st.fixed_dictionaries(
        {"id": st.integers(100, 104), "image_id": IMAGE_IDS, "category_id": st.integers(2, 4), "bbox": XYWH},
        optional={"iscrowd": st.sampled_from([0, 1, True, False])},
    )
)
COCO_CATEGORY = spoiled(st.fixed_dictionaries({"id": st.integers(4, 6), "name": NAME}))
COCO_CAPTION = spoiled(st.fixed_dictionaries({"id": st.integers(0, 9), "image_id": IMAGE_IDS, "caption": NAME}))
CATEGORIES = [{"id": GOOD, "name": "cup"}, {"id": GOOD + 1, "name": "plate"}, {"id": 2, "name": "dog"}]
CATEGORIES += [{"id": 3, "name": "car"}]


def sentence(text):
    text = text.strip()
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def write_coco(root, images, annotations, categories, captions):
    """The COCO files: the good image, then the generated records; every image has one good caption."""
    os.makedirs(os.path.join(root, "annotations"))
    os.makedirs(os.path.join(root, "images", "val2017"))
    for name in ("x.jpg", "good.jpg"):
        write_image(os.path.join(root, "images", "val2017", name))
    instances = {
        "images": [{"id": GOOD, "file_name": "good.jpg", "width": 320, "height": 240}, *images],
        "captions": [
            {"id": 0, "image_id": GOOD, "caption": "two cups and a plate"},
            *(
                {"id": 0, "image_id": i, "caption": f"image {i}"}
                for i in {image["id"] for image in images if isinstance(image, dict) and is_id(image.get("id"))}
            ),
            *captions,
        ],
        "annotations": [
            {"id": GOOD + k, "image_id": GOOD, "category_id": GOOD + (k == 2), "bbox": box, "iscrowd": 0}
            for k, box in enumerate([[10, 10, 50, 50], [200, 150, 60, 60], [100, 20, 80, 70]])
        ]
        + annotations,
        "categories": [*CATEGORIES, *categories],
        "licenses": [{"id": 1, "name": "CC BY", "url": "u"}],
    }
    with open(os.path.join(root, "annotations", "instances_val2017.json"), "w") as f:
        json.dump({k: v for k, v in instances.items() if k != "captions"}, f)
    with open(os.path.join(root, "annotations", "captions_val2017.json"), "w") as f:
        json.dump({"annotations": instances["captions"]}, f)
    return instances


def is_id(value):
    return type(value) is int


def belongs(item, image):
    """Whether an annotation or caption is about ``image``: its ``image_id`` is that whole number."""
    return isinstance(item, dict) and is_id(item.get("image_id")) and item["image_id"] == image["id"]


def expected_coco_scene(image, instances):
    """The scene row an image entry must give if it builds: every value as written."""
    names = {}
    for category in instances["categories"]:
        if isinstance(category, dict) and is_id(category.get("id")):
            names.setdefault(category["id"], category.get("name"))
    objects = [expected_object(ann, names) for ann in instances["annotations"] if belongs(ann, image)]
    texts = [caption.get("caption") for caption in instances["captions"] if belongs(caption, image)]
    return {
        "image_id": f"coco-val2017-{image['id']}",
        "width": image.get("width"),
        "height": image.get("height"),
        "caption": " ".join(sentence(t) for t in texts if isinstance(t, str) and t.strip()),
        "objects": objects,
        "source": "coco",
        "license": "CC BY (u)" if image.get("license") == 1 else "",
    }


def expected_object(ann, names):
    """The stored object of an annotation (its values as the COCO format types them), else None."""
    box = ann.get("bbox")
    numbers = isinstance(box, list) and len(box) == 4 and all(type(v) in (int, float) for v in box)
    if not (numbers and all(np.isfinite(box)) and is_id(ann.get("id"))):
        return None
    x, y, w, h = box
    return {
        "id": ann["id"],
        "name": names.get(ann.get("category_id")),
        "bbox": stored_box(x, y, x + w, y + h, 320, 240),
        "attributes": [],
        "score": None,
        "crowd": bool(ann.get("iscrowd", 0)),
    }


@FUZZ
@given(
    images=st.lists(st.one_of(COCO_IMAGE, COCO_IMAGE, COCO_IMAGE, HOSTILE), max_size=4),
    annotations=st.lists(st.one_of(COCO_ANNOTATION, COCO_ANNOTATION, COCO_ANNOTATION, HOSTILE), max_size=8),
    categories=st.lists(st.one_of(COCO_CATEGORY, HOSTILE), max_size=2),
    captions=st.lists(st.one_of(COCO_CAPTION, HOSTILE), max_size=3),
)
def test_any_coco_record_builds_as_written_or_is_a_counted_reject(images, annotations, categories, captions):
    with tempfile.TemporaryDirectory() as folder:
        instances = write_coco(os.path.join(folder, "coco"), images, annotations, categories, captions)
        output = os.path.join(folder, "out")
        info = build(source=f"coco:{folder}/coco", output=output, on_error="skip", max_pixels=0)  # sizes as written
        rejects = read_rejects(output)
        scenes = {row["image_id"]: row for row in read_config(output, "scenes")}
        assert info["rejects"] == len(rejects) and read_config(output, "mcq_stage1")
        entries = [image for image in instances["images"] if isinstance(image, dict) and is_id(image.get("id"))]
        for row in scenes.values():  # nothing built that was not written so
            assert any(row == expected_coco_scene(image, instances) for image in entries), row
        for index, image in enumerate(instances["images"]):  # every image built, or named by a reject
            image_id = image.get("id") if image in entries else None
            row = scenes.get(f"coco-val2017-{image_id}")
            if image_id is not None and row == expected_coco_scene(image, instances):
                continue
            names = {f"image {image_id}", f"image #{index}", f"coco-val2017-{image_id}"}
            assert any(r["record"] in names or r["record"].endswith(f"(image {image_id})") for r in rejects), (
                image,
                rejects,
            )
