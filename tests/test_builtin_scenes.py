"""The built-in scenes: repeatable, boxes tight on the drawn pixels, nothing hidden, captions true to the layout."""

import hashlib
import io
import math
import os
import re
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from lgt.scene import check_scene
from lgt.sources.builtin import (
    BACKGROUNDS,
    CATEGORIES,
    COLOURS,
    EDGE,
    FILL,
    NUMBER_WORDS,
    OUTLINE,
    TEXTURE_GRID,
    BuiltinSource,
    _objects,
    _plan,
    render_scene,
)
from lgt.synthesis.stage1 import plural
from PIL import Image

REGIONS = (
    ("in the top left", "at the top", "in the top right"),
    ("on the left", "in the centre", "on the right"),
    ("in the bottom left", "at the bottom", "in the bottom right"),
)


@pytest.fixture(scope="module")
def scenes():
    return [render_scene(7, index) for index in range(40)]


def _intersection(a, b):
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _area(box):
    return (box[2] - box[0]) * (box[3] - box[1])


def _has(pixels, colour):
    return bool(np.all(pixels.reshape(-1, 3) == colour, axis=1).any())


def _fingerprint(seed, index):
    image, objects, caption, width, height = render_scene(seed, index)
    return hashlib.sha1(image.tobytes() + repr((objects, caption, width, height)).encode()).hexdigest()


def test_same_seed_and_index_give_the_same_scene_in_any_order_and_process():
    first = render_scene(3, 5)
    render_scene(3, 6)
    again = render_scene(3, 5)
    assert np.array_equal(np.asarray(first[0]), np.asarray(again[0]))
    assert first[1:] == again[1:]
    for other in (render_scene(3, 6), render_scene(4, 5)):
        assert other[1:] != first[1:]
    code = (
        "import hashlib\nfrom lgt.sources.builtin import render_scene\n"
        "i, o, c, w, h = render_scene(3, 5)\n"
        "print(hashlib.sha1(i.tobytes() + repr((o, c, w, h)).encode()).hexdigest())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
    )
    assert out.stdout.strip() == _fingerprint(3, 5)


def painted_on_a_full_grid(seed: int, index: int) -> np.ndarray:
    """A scene's pixels by the plain definition: every operation on whole-image arrays (what the renderer does in
    fewer passes, which must not change a single pixel: builds are compared byte for byte)."""
    plan = _plan(seed, index)
    ys, xs = np.mgrid[0 : plan.height, 0 : plan.width].astype(np.float32)
    angle = plan.gradient_angle
    ramp = (xs * math.cos(angle) + ys * math.sin(angle)) / math.hypot(plan.width, plan.height)
    grid = Image.fromarray(np.array(plan.texture, dtype=np.float32).reshape(TEXTURE_GRID, TEXTURE_GRID), "F")
    blotches = np.asarray(grid.resize((plan.width, plan.height), Image.Resampling.BICUBIC))
    offset = 16 * ramp + 5 * np.clip(blotches, -1, 1)
    base = np.array(BACKGROUNDS[plan.background], dtype=np.float32)
    pixels = np.clip(base + offset[..., None], 0, 255).astype(np.uint8)
    for shape in plan.shapes:
        pixels[shape.mask == FILL] = COLOURS[shape.colour]
        pixels[shape.mask == EDGE] = OUTLINE
    return pixels


@pytest.mark.parametrize("index", range(12))
def test_pixels_are_those_of_the_full_grid_definition(index):
    assert np.array_equal(np.asarray(render_scene(11, index)[0]), painted_on_a_full_grid(11, index))


def test_scenes_are_well_formed(scenes):
    for image, objects, _, width, height in scenes:
        assert image.mode == "RGB" and image.size == (width, height)
        assert 384 <= width <= 640 and 384 <= height <= 640 and width % 32 == 0 and height % 32 == 0
        assert 3 <= len(objects) <= 8
        assert [o.id for o in objects] == list(range(len(objects)))
        for obj in objects:
            x0, y0, x1, y1 = obj.bbox
            assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
            assert obj.name in CATEGORIES and obj.score is None
            assert obj.attributes[0] in COLOURS and obj.attributes[1] in ("small", "medium", "large")
        # One colour per shape kind, so "the red circle" names one object.
        assert len({(o.name, o.attributes[0]) for o in objects}) == len(objects)


def test_every_drawn_pixel_lies_in_some_box(scenes):
    """Outside all boxes only the light background remains: no box is too small to hold its shape."""
    for image, objects, _, width, height in scenes:
        pixels = np.asarray(image)
        outside = np.ones((height, width), dtype=bool)
        for obj in objects:
            x0, y0, x1, y1 = (int(v) for v in obj.bbox)
            outside[y0:y1, x0:x1] = False
        assert pixels[outside].min() >= 200


def test_boxes_are_tight_on_isolated_shapes(scenes):
    """For a shape with no other box within 2 px: its outline touches all four box edges and never leaves the box."""
    checked = 0
    for image, objects, *_ in scenes:
        pixels = np.asarray(image)
        for obj in objects:
            x0, y0, x1, y1 = (int(v) for v in obj.bbox)
            grown = (x0 - 2, y0 - 2, x1 + 2, y1 + 2)
            if any(_intersection(grown, other.bbox) > 0 for other in objects if other is not obj):
                continue
            checked += 1
            inside = pixels[y0:y1, x0:x1]
            assert _has(inside, COLOURS[obj.attributes[0]])
            for edge in (inside[0], inside[-1], inside[:, 0], inside[:, -1]):
                assert _has(edge, OUTLINE), (obj, "box is larger than the shape")
            top, left = max(0, y0 - 2), max(0, x0 - 2)
            around = pixels[top : y1 + 2, left : x1 + 2]
            in_ring = np.ones(around.shape[:2], dtype=bool)
            in_ring[y0 - top : y1 - top, x0 - left : x1 - left] = False
            ring = around[in_ring]
            assert not _has(ring, OUTLINE) and not _has(ring, COLOURS[obj.attributes[0]]), (obj, "shape leaves box")
    assert checked >= 100


def test_no_box_hides_another(scenes):
    for _, objects, _, _, _ in scenes:
        for i, a in enumerate(objects):
            for b in objects[:i]:
                shared = _intersection(a.bbox, b.bbox)
                assert shared <= 0.2 * min(_area(a.bbox), _area(b.bbox))
                if a.attributes[0] == b.attributes[0]:
                    assert shared == 0


def test_caption_states_only_what_the_layout_shows(scenes):
    for _, objects, caption, width, height in scenes:
        sentences = re.findall(r"[^.]+\.", caption)
        assert len(sentences) >= 3
        assert sentences[0].startswith(f"An image of {NUMBER_WORDS[len(objects)]} shapes")
        assert "pixel" not in caption  # the stored image may be resized: a size would be untrue
        for obj in objects:
            x0, y0, x1, y1 = obj.bbox
            region = REGIONS[int(3 * (y0 + y1) / 2 / height)][int(3 * (x0 + x1) / 2 / width)]
            assert f"{obj.attributes[0]} {obj.name} is {region}." in caption
        for name, count in Counter(o.name for o in objects).items():
            assert f"{NUMBER_WORDS[count]} {name if count == 1 else plural(name)}" in sentences[-1]
        by_phrase = {f"{o.attributes[0]} {o.name}": o for o in objects}
        for top, below in re.findall(r"The (\w+ \w+) partly covers the (\w+ \w+)\.", caption):
            a, b = by_phrase[top], by_phrase[below]
            assert a.id > b.id and _intersection(a.bbox, b.bbox) > 0


def test_builder_steps_give_the_rendered_scene_as_png_bytes():
    source = BuiltinSource(seed=2, num_images=3)
    entries = list(source.entries())
    assert [e.image_id for e in entries] == [f"scene-2-{i:06d}" for i in range(3)]
    for index, entry in enumerate(entries):
        rendered, objects, caption, width, height = render_scene(2, index)
        scene = source.scene(entry.payload)
        assert scene.objects == objects and scene.caption == caption and (scene.width, scene.height) == (width, height)
        assert scene.origin == "builtin scenes (seed 2)" and scene.license == source.license
        with Image.open(io.BytesIO(scene.image)) as passed:
            assert passed.format == "PNG" and passed.mode == "RGB"
            assert np.array_equal(np.asarray(passed), np.asarray(rendered))
        assert check_scene(scene, scene.image_id) is scene


def test_two_hundred_scenes_use_every_category_colour_and_size_and_repeat_shapes():
    layouts = [_objects(_plan(0, index)) for index in range(200)]  # the layout alone, without pixels
    names = Counter(o.name for objects in layouts for o in objects)
    attributes = Counter(a for objects in layouts for o in objects for a in o.attributes)
    assert set(names) == set(CATEGORIES)
    assert set(attributes) == set(COLOURS) | {"small", "medium", "large"}
    per_scene = [max(Counter(o.name for o in objects).values()) for objects in layouts]
    assert max(per_scene) == 4 and per_scene.count(1) > 0 and sum(c >= 2 for c in per_scene) >= 50
