"""Built-in source: synthetic scenes of outlined, coloured shapes, rendered offline with PIL.

Questions are later generated from the boxes, so a person looking at the image must agree with every fact the
layout states. Hence: every shape lies wholly inside the canvas; its colour is saturated against a light background;
its box is the tight box of the pixels drawn for it (read back from its mask, not estimated); no two boxes share
more than a fifth of the smaller one; shapes of one colour never share any box area, so they cannot merge into one.

A scene is a pure function of ``(seed, index)``: one ``random.Random(f"{seed}:{index}")`` makes every choice, so
any process renders the same pixels, objects and caption in any order.
"""

from __future__ import annotations

import io
import math
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from ..scene import Entry, Scene, SceneObject, check_scene
from ..synthesis.grammar import plural

CATEGORIES: tuple[str, ...] = ("circle", "square", "triangle", "star", "hexagon", "diamond", "cross", "heart")
# Every colour has a channel at or below 140 while the background stays above 200 in every channel.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (255, 140, 0),
    "yellow": (250, 215, 0),
    "green": (30, 150, 50),
    "blue": (30, 80, 220),
    "purple": (130, 40, 170),
    "pink": (255, 105, 180),
    "brown": (130, 80, 30),
    "black": (20, 20, 20),
}
OUTLINE = (50, 50, 50)
OUTLINE_WIDTH = 2
BACKGROUNDS = {
    "pale grey": (232, 232, 228),
    "pale blue": (222, 234, 246),
    "cream": (246, 240, 222),
    "pale green": (226, 242, 228),
}
# A shape's size word comes from its box's share of the image area: below 1.2% it is small, below 4.5% medium,
# otherwise large. The side ranges below are drawn from with gaps between them, so most shapes sit well inside a bin.
SIZE_WORDS: tuple[tuple[str, float], ...] = (("small", 0.012), ("medium", 0.045), ("large", math.inf))
SIZE_PHRASES = {"small": "small", "medium": "medium-sized", "large": "large"}
# A shape's side as a share of the canvas's shorter side: small, medium and large draws.
SIDE_RANGES = ((0.06, 0.10), (0.13, 0.20), (0.24, 0.35))
CANVAS_SIDES = tuple(range(384, 641, 32))
MAX_OBJECTS = 8
MAX_PER_CATEGORY = 4
# A new box may cover at most this share of the smaller of it and any earlier box, or the position is redrawn.
MAX_OVERLAP = 0.2
PLACEMENT_TRIES = 50
MARGIN = 4  # pixels kept clear between every shape and the image border
# A later shape "partly covers" an earlier one in the caption when it hides this share of the earlier's pixels.
COVER_SHARE = 0.02
# Every attribute a shape may have: its colour and its size word.
WORDS = (*COLOURS, *(word for word, _ in SIZE_WORDS))
NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight")
# Regions by box centre in thirds of the image, row by row.
REGIONS = (
    ("in the top left", "at the top", "in the top right"),
    ("on the left", "in the centre", "on the right"),
    ("in the bottom left", "at the bottom", "in the bottom right"),
)
# A box centre this close (as a share of the side) to a line between thirds is redrawn, so no region is borderline.
REGION_MARGIN = 0.03
TEXTURE_GRID = 5  # the background's faint blotches: a coarse grid of random offsets, smoothly upscaled
FILL, EDGE = 1, 2  # mask values


def _normalise(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Centre a polygon's box on the origin and scale its longer half-extent to 1, so every shape fits [-1, 1]^2."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    cx, cy = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
    half = max(max(xs) - min(xs), max(ys) - min(ys)) / 2
    return [((x - cx) / half, (y - cy) / half) for x, y in points]


def _star() -> list[tuple[float, float]]:
    return [
        (
            (1.0 if k % 2 == 0 else 0.45) * math.cos(math.radians(-90 + 36 * k)),
            (1.0 if k % 2 == 0 else 0.45) * math.sin(math.radians(-90 + 36 * k)),
        )
        for k in range(10)
    ]


def _heart() -> list[tuple[float, float]]:
    """The classic parametric heart, point down (image y grows downwards)."""
    steps = 48
    return [
        (16 * math.sin(t) ** 3, -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)))
        for t in (2 * math.pi * k / steps for k in range(steps))
    ]


def _cross() -> list[tuple[float, float]]:
    """A plus sign with arms 0.64 thick: the top arm's three corners, turned a quarter four times."""
    arm = [(-0.32, -1.0), (0.32, -1.0), (0.32, -0.32)]
    points = []
    for _ in range(4):
        points += arm
        arm = [(-y, x) for x, y in arm]
    return points


UNIT_POLYGONS = {
    "square": _normalise([(-1, -1), (1, -1), (1, 1), (-1, 1)]),
    "triangle": _normalise([(0, -math.sqrt(3) / 2), (1, math.sqrt(3) / 2), (-1, math.sqrt(3) / 2)]),
    "star": _normalise(_star()),
    "hexagon": _normalise([(math.cos(math.radians(60 * k)), math.sin(math.radians(60 * k))) for k in range(6)]),
    "diamond": _normalise([(0, -1), (0.65, 0), (0, 1), (-0.65, 0)]),
    "cross": _normalise(_cross()),
    "heart": _normalise(_heart()),
}


@dataclass(slots=True)
class _Shape:
    category: str
    colour: str
    mask: np.ndarray  # (height, width) uint8: FILL, EDGE or 0; exactly the pixels this shape paints
    box: tuple[int, int, int, int]  # tight box of the mask, end-exclusive pixel edges


@dataclass(slots=True)
class _Plan:
    """Everything a scene is made of; the pixels follow from it without another random draw."""

    width: int
    height: int
    background: str
    gradient_angle: float
    texture: list[float]
    shapes: list[_Shape]


def _mask(category: str, cx: float, cy: float, r: float, width: int, height: int) -> Image.Image:
    """The shape drawn once, fill and outline as separate values, so its pixels and box are known exactly."""
    mask = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    if category == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=FILL, outline=EDGE, width=OUTLINE_WIDTH)
    else:
        points = [(cx + r * x, cy + r * y) for x, y in UNIT_POLYGONS[category]]
        draw.polygon(points, fill=FILL, outline=EDGE, width=OUTLINE_WIDTH)
    return mask


def _box_area(box: tuple[float, float, float, float]) -> float:
    return (box[2] - box[0]) * (box[3] - box[1])


def _intersection(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _fits(box: tuple[int, int, int, int], colour: str, other: _Shape) -> bool:
    """Neither shape may hide much of the other, and same-coloured shapes may not touch at all."""
    shared = _intersection(box, other.box)
    if colour == other.colour:
        return shared == 0
    return shared <= MAX_OVERLAP * min(_box_area(box), _box_area(other.box))


def _clear_of_thirds(box: tuple[int, int, int, int], width: int, height: int) -> bool:
    """Whether the box centre is plainly inside one of the nine regions the caption names."""
    cx, cy = (box[0] + box[2]) / 2 / width, (box[1] + box[3]) / 2 / height
    return all(abs(c - line) >= REGION_MARGIN for c in (cx, cy) for line in (1 / 3, 2 / 3))


def _categories(rng: random.Random) -> list[str]:
    """3 to 8 category draws, in runs of 1 to 4, so a scene often holds several of one shape."""
    count = rng.randint(3, MAX_OBJECTS)
    names: list[str] = []
    while len(names) < count:
        category = rng.choice(CATEGORIES)
        run = rng.choice((1, 1, 1, 1, 1, 2, 2, 3, 4))
        names += [category] * min(run, count - len(names), MAX_PER_CATEGORY - names.count(category))
    rng.shuffle(names)
    return names


def _layout(rng: random.Random, width: int, height: int) -> list[_Shape]:
    shapes: list[_Shape] = []
    short = min(width, height)
    for category in _categories(rng):
        # One colour per shape kind per scene, so "the red circle" always names one thing.
        taken = {s.colour for s in shapes if s.category == category}
        colour = rng.choice([c for c in COLOURS if c not in taken])
        low, high = rng.choice(SIDE_RANGES)
        r = short * rng.uniform(low, high) / 2
        for _ in range(PLACEMENT_TRIES):
            cx = rng.uniform(MARGIN + r, width - MARGIN - r)
            cy = rng.uniform(MARGIN + r, height - MARGIN - r)
            mask = _mask(category, cx, cy, r, width, height)
            box = mask.getbbox()
            if _clear_of_thirds(box, width, height) and all(_fits(box, colour, other) for other in shapes):
                shapes.append(_Shape(category, colour, np.asarray(mask), box))
                break
    return shapes


def _plan(seed: int, index: int) -> _Plan:
    rng = random.Random(f"{seed}:{index}")
    width, height = rng.choice(CANVAS_SIDES), rng.choice(CANVAS_SIDES)
    background = rng.choice(sorted(BACKGROUNDS))
    gradient_angle = rng.uniform(0, 2 * math.pi)
    texture = [rng.uniform(-1, 1) for _ in range(TEXTURE_GRID * TEXTURE_GRID)]
    return _Plan(width, height, background, gradient_angle, texture, _layout(rng, width, height))


def _size_word(box: tuple[int, int, int, int], width: int, height: int) -> str:
    share = _box_area(box) / (width * height)
    return next(word for word, limit in SIZE_WORDS if share < limit)


def _objects(plan: _Plan) -> list[SceneObject]:
    return [
        SceneObject(
            id=i,
            name=s.category,
            bbox=[float(v) for v in s.box],
            attributes=[s.colour, _size_word(s.box, plan.width, plan.height)],
            score=None,
        )
        for i, s in enumerate(plan.shapes)
    ]


def _background(plan: _Plan) -> np.ndarray:
    """A light base with a faint linear gradient and soft blotches (brightness only, so the hue stays named).

    The same float32 operations per pixel as on a full coordinate grid, with fewer passes over the image: the ramp
    is a row of x terms plus a column of y terms, and each channel is written from the one brightness offset."""
    xs = np.arange(plan.width, dtype=np.float32)
    ys = np.arange(plan.height, dtype=np.float32)[:, None]
    ramp = (xs * math.cos(plan.gradient_angle) + ys * math.sin(plan.gradient_angle)) / math.hypot(
        plan.width, plan.height
    )
    grid = Image.fromarray(np.array(plan.texture, dtype=np.float32).reshape(TEXTURE_GRID, TEXTURE_GRID), "F")
    blotches = np.asarray(grid.resize((plan.width, plan.height), Image.Resampling.BICUBIC))
    offset = 16 * ramp + 5 * np.clip(blotches, -1, 1)
    pixels = np.empty((plan.height, plan.width, 3), dtype=np.uint8)
    for channel, level in enumerate(BACKGROUNDS[plan.background]):
        pixels[..., channel] = np.clip(offset + np.float32(level), 0, 255)
    return pixels


def _region(box: tuple[int, int, int, int], width: int, height: int) -> str:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return REGIONS[min(2, int(3 * cy / height))][min(2, int(3 * cx / width))]


def _covers(later: _Shape, earlier: _Shape) -> bool:
    """Whether ``later`` (drawn on top) hides a noticeable share of ``earlier``'s pixels."""
    x0, y0 = max(later.box[0], earlier.box[0]), max(later.box[1], earlier.box[1])
    x1, y1 = min(later.box[2], earlier.box[2]), min(later.box[3], earlier.box[3])
    if x1 <= x0 or y1 <= y0:
        return False
    hidden = np.count_nonzero(np.logical_and(later.mask[y0:y1, x0:x1], earlier.mask[y0:y1, x0:x1]))
    return hidden >= max(10, COVER_SHARE * np.count_nonzero(earlier.mask))


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _caption(plan: _Plan) -> str:
    """Opening, one sentence per shape in drawing order, the noticeable overlaps, then the count per shape."""
    shapes = plan.shapes
    # No pixel size: the build stores the image in the model's frame (``--max-pixels``), where it would be untrue.
    sentences = [f"An image of {NUMBER_WORDS[len(shapes)]} shapes on a {plan.background} background."]
    for s in shapes:
        size = SIZE_PHRASES[_size_word(s.box, plan.width, plan.height)]
        sentences.append(f"A {size} {s.colour} {s.category} is {_region(s.box, plan.width, plan.height)}.")
    for i, later in enumerate(shapes):
        for earlier in shapes[:i]:
            if _covers(later, earlier):
                sentences.append(
                    f"The {later.colour} {later.category} partly covers the {earlier.colour} {earlier.category}."
                )
    counts = Counter(s.category for s in shapes)  # in order of first appearance
    parts = [f"{NUMBER_WORDS[n]} {name if n == 1 else plural(name)}" for name, n in counts.items()]
    verb = "is" if next(iter(counts.values())) == 1 else "are"
    sentences.append(f"In all there {verb} {_join(parts)}.")
    return " ".join(sentences)


def render_scene(seed: int, index: int) -> tuple[Image.Image, list[SceneObject], str, int, int]:
    """Return (RGB image, objects, dense caption, width, height) of scene ``index`` of the set made from ``seed``."""
    plan = _plan(seed, index)
    pixels = _background(plan)
    for shape in plan.shapes:
        x0, y0, x1, y1 = shape.box  # the mask is empty outside its box
        area, mask = pixels[y0:y1, x0:x1], shape.mask[y0:y1, x0:x1]
        area[mask == FILL] = COLOURS[shape.colour]
        area[mask == EDGE] = OUTLINE
    return Image.fromarray(pixels, "RGB"), _objects(plan), _caption(plan), plan.width, plan.height


class BuiltinSource:
    """Scenes made in memory: ``entries()`` lays them out (no pixels), ``scene()`` renders one as PNG bytes."""

    name = "scenes"
    help = "scenes (built-in rendered scenes)"
    takes_path = False
    has_boxes = True
    default_num_images = 1000
    # What the card's Hub metadata says of this source (the questions are always written by lgt).
    card_metadata = {
        "annotations_creators": ["machine-generated"],
        "language_creators": ["machine-generated"],
    }
    annotation_license = None  # the licence of the annotations themselves, as a Hub id, where the source has one
    license_link = None
    tags = ("synthetic",)

    @classmethod
    def open(cls, path: str, *, seed: int, num_images: int | None, image_root: str | None) -> BuiltinSource:
        if image_root:
            raise ValueError("--image-root is for sources that read image files, not the built-in scenes")
        return cls(seed=seed, num_images=num_images or cls.default_num_images)

    @staticmethod
    def source_datasets(path: str) -> list[str]:
        """The card's ``source_datasets``: the scenes are lgt's own."""
        return ["original"]

    def __init__(self, seed: int = 0, num_images: int = default_num_images):
        self.seed = seed
        self.num_images = num_images
        self.description = (
            f"Synthetic scenes rendered by lgt (seed {seed}): three to eight outlined shapes of "
            f"{len(CATEGORIES)} kinds and {len(COLOURS)} colours on a light background, with exact pixel boxes "
            "and a caption written from the same layout."
        )
        self.license = "Generated by lgt; CC0-1.0"
        self.origin = f"builtin scenes (seed {seed})"

    def _scene(self, index: int, image: str | bytes, objects, caption: str, width: int, height: int) -> Scene:
        image_id = f"scene-{self.seed}-{index:06d}"
        scene = Scene(
            image_id=image_id,
            image=image,
            width=width,
            height=height,
            caption=caption,
            objects=objects,
            source=self.name,
            license=self.license,
            origin=self.origin,
        )
        return check_scene(scene, image_id)

    def entries(self, num_proc: int = 1) -> Iterator[Entry]:
        """One entry per scene, its index the payload: a worker lays the scene out and renders it.

        Laying a scene out is most of the cost of making it, so an entry names every word a scene may use.
        """
        for index in range(self.num_images):
            yield Entry(f"scene-{self.seed}-{index:06d}", index, self.origin, str(index), CATEGORIES, WORDS)

    def scene(self, index: int) -> Scene:
        image, objects, caption, width, height = render_scene(self.seed, index)
        data = io.BytesIO()
        image.save(data, format="PNG")
        return self._scene(index, data.getvalue(), objects, caption, width, height)
