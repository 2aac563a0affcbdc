"""Stage 1: grounded multiple-choice questions that are correct by construction from a scene's boxes.

Each template reads only the boxes (and attributes) of a ``Scene``, so its answer can be re-derived by anyone
from the same annotations. A template asks nothing a reader of the image could dispute: objects it relates must
be the only instance of their category and large enough to see, relations must clear a margin, and a category
with a crowd box is never counted. A template yields ``Draft`` questions (correct option + three distractors);
the builder letters them so the correct letter stays balanced per split.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

from ..scene import Scene, SceneObject

VERSION = 1
# An object must cover this share of the image to be the subject of a question a person should answer.
MIN_VISIBLE_SHARE = 0.004
# Every instance of a counted category must cover this share: tiny background instances make counts disputable.
MIN_COUNTED_SHARE = 0.0015
MAX_COUNT = 12
# Two boxes are "level" on an axis when their extents overlap by at least this share of the smaller one, and
# "apart" when they overlap by at most SEPARATED; a relation is asked only when one axis is apart, the other level.
LEVEL = 0.5
SEPARATED = 0.1
# Size bins are log2(area ratio) edges; a ratio within SIZE_MARGIN (in log2 units) of an edge is not asked.
SIZE_MARGIN = 0.3
# The nearest option must be at most this fraction of the distance to the next nearest.
DISTANCE_MARGIN = 0.7
# A location is asked only when the box centre is this share of the image away from both midlines.
LOCATION_MARGIN = 0.08
COLOUR_WORDS = (
    "red",
    "orange",
    "yellow",
    "green",
    "blue",
    "purple",
    "pink",
    "brown",
    "black",
    "white",
    "gray",
    "grey",
    "beige",
    "tan",
    "gold",
    "silver",
)
# At most this many questions per template per image, so one crowded image does not dominate a skill.
PER_TEMPLATE = {
    "count": 3,
    "relation": 3,
    "size": 2,
    "distance": 2,
    "existence": 1,
    "absence": 1,
    "colour": 2,
    "attribute": 2,
    "location": 2,
}

_IRREGULAR_PLURALS = {
    "person": "people",
    "mouse": "mice",
    "sheep": "sheep",
    "skis": "pairs of skis",
    "scissors": "pairs of scissors",
    "knife": "knives",
    "wine glass": "wine glasses",
    "bus": "buses",
    "glass": "glasses",
    "cross": "crosses",
    "child": "children",
    "man": "men",
    "woman": "women",
    "fish": "fish",
    "deer": "deer",
    "shelf": "shelves",
    "leaf": "leaves",
    "fox": "foxes",
    "box": "boxes",
    "couch": "couches",
    "bench": "benches",
    "sandwich": "sandwiches",
}


def plural(name: str) -> str:
    if name in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[name]
    head, _, last = name.rpartition(" ")
    if last in _IRREGULAR_PLURALS:
        return f"{head} {_IRREGULAR_PLURALS[last]}"
    if last.endswith(("s", "x", "z", "ch", "sh")):
        return name + "es"
    if last.endswith("y") and last[-2:-1] not in "aeiou":
        return name[:-1] + "ies"
    return name + "s"


@dataclass(slots=True)
class Draft:
    """A question before lettering: the builder places ``correct`` among ``distractors`` at a balanced letter."""

    skill: str
    template: str
    question: str
    correct: str
    distractors: list[str]
    grounding: list[SceneObject]


@dataclass(slots=True)
class Vocabulary:
    """What a distractor may name: every category and attribute seen in the source."""

    names: list[str]
    colours: list[str]
    attributes: list[str]


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    """Overlap of two intervals as a share of the shorter one."""
    return max(0.0, min(a1, b1) - max(a0, b0)) / max(1e-9, min(a1 - a0, b1 - b0))


def relation(a: SceneObject, b: SceneObject) -> str | None:
    """'left'/'right'/'above'/'below' when exactly one is clearly true of ``a`` with respect to ``b``, else None."""
    ax0, ay0, ax1, ay1 = a.bbox
    bx0, by0, bx1, by1 = b.bbox
    x_overlap, y_overlap = _overlap(ax0, ax1, bx0, bx1), _overlap(ay0, ay1, by0, by1)
    (acx, acy), (bcx, bcy) = a.center, b.center
    if x_overlap <= SEPARATED and y_overlap >= LEVEL:
        return "left" if acx < bcx else "right"
    if y_overlap <= SEPARATED and x_overlap >= LEVEL:
        return "above" if acy < bcy else "below"
    return None


RELATION_PHRASES = {"left": "to the left of", "right": "to the right of", "above": "above", "below": "below"}
SIZE_BINS = (
    "less than half the size of the {b}",
    "smaller than the {b}, but more than half its size",
    "larger than the {b}, but less than twice its size",
    "more than twice the size of the {b}",
)
QUADRANTS = ("top left", "top right", "bottom left", "bottom right")


def size_bin(a: SceneObject, b: SceneObject) -> int | None:
    """Index into ``SIZE_BINS`` of ``a``'s box area relative to ``b``'s, None when too close to a bin edge."""
    ratio = math.log2(a.area / b.area)
    if any(abs(ratio - edge) < SIZE_MARGIN for edge in (-1.0, 0.0, 1.0)):
        return None
    return sum(ratio > edge for edge in (-1.0, 0.0, 1.0))


def quadrant(obj: SceneObject, width: int, height: int) -> str | None:
    cx, cy = obj.center
    dx, dy = cx / width - 0.5, cy / height - 0.5
    if abs(dx) < LOCATION_MARGIN or abs(dy) < LOCATION_MARGIN:
        return None
    return QUADRANTS[(dy > 0) * 2 + (dx > 0)]


def _distance(a: SceneObject, b: SceneObject) -> float:
    (ax, ay), (bx, by) = a.center, b.center
    return math.hypot(ax - bx, ay - by)


class _SceneFacts:
    """What every template needs to know about a scene, computed once."""

    def __init__(self, scene: Scene, vocab: Vocabulary):
        image_area = scene.width * scene.height
        self.scene = scene
        self.by_name: dict[str, list[SceneObject]] = {}
        for obj in scene.objects:
            self.by_name.setdefault(obj.name, []).append(obj)
        self.crowded = {name for name, objs in self.by_name.items() if any(o.crowd for o in objs)}
        self.visible = {
            name for name, objs in self.by_name.items() if any(o.area >= MIN_VISIBLE_SHARE * image_area for o in objs)
        }
        # Categories whose every instance is countable: no crowd box, none too small to see.
        self.countable = {
            name
            for name, objs in self.by_name.items()
            if name not in self.crowded and all(o.area >= MIN_COUNTED_SHARE * image_area for o in objs)
        }
        self.absent = [name for name in vocab.names if name not in self.by_name]
        # The only instance of its category, visible: "the <name>" then names exactly one thing.
        self.singles = [
            objs[0]
            for name, objs in self.by_name.items()
            if len(objs) == 1 and name not in self.crowded and objs[0].area >= MIN_VISIBLE_SHARE * image_area
        ]


def _count(facts: _SceneFacts, vocab: Vocabulary, rng: random.Random) -> Iterator[Draft]:
    for name in sorted(facts.countable):
        n = len(facts.by_name[name])
        if n > MAX_COUNT:
            continue
        nearby = [c for c in (n - 1, n + 1, n - 2, n + 2, n + 3, n - 3, n + 4) if c >= 0][:4]
        del nearby[rng.randrange(4)]
        distractors = nearby
        yield Draft(
            "counting",
            "count",
            f"How many {plural(name)} are there in the image?",
            str(n),
            [str(d) for d in distractors],
            facts.by_name[name],
        )


def _ordered_pairs(singles: list[SceneObject], rng: random.Random) -> Iterator[tuple[SceneObject, SceneObject]]:
    """Each pair of single objects once, in a random order, so neither role favours the first-listed object."""
    for i, a in enumerate(singles):
        for b in singles[i + 1 :]:
            yield (a, b) if rng.random() < 0.5 else (b, a)


def _relation(facts: _SceneFacts, vocab: Vocabulary, rng: random.Random) -> Iterator[Draft]:
    for first, second in _ordered_pairs(facts.singles, rng):
        rel = relation(first, second)
        if rel is None:
            continue
        correct = f"{RELATION_PHRASES[rel]} the {second.name}"
        distractors = [f"{phrase} the {second.name}" for key, phrase in RELATION_PHRASES.items() if key != rel]
        rng.shuffle(distractors)
        question = f"Where is the {first.name} relative to the {second.name}?"
        yield Draft("spatial_relation", "relation", question, correct, distractors, [first, second])


def _size(facts: _SceneFacts, vocab: Vocabulary, rng: random.Random) -> Iterator[Draft]:
    for first, second in _ordered_pairs(facts.singles, rng):
        index = size_bin(first, second)
        if index is None:
            continue
        options = [text.format(b=second.name) for text in SIZE_BINS]
        correct = options.pop(index)
        rng.shuffle(options)
        question = (
            f"Comparing the boxes that enclose them, how large is the {first.name} relative to the {second.name}?"
        )
        yield Draft("relative_size", "size", question, correct, options, [first, second])


def _distance_question(facts: _SceneFacts, vocab: Vocabulary, rng: random.Random) -> Iterator[Draft]:
    candidates = [n for n in facts.by_name if n in facts.countable and n in facts.visible]
    absent = facts.absent
    for anchor in facts.singles:
        present = sorted(
            ((min(_distance(anchor, o) for o in facts.by_name[n]), n) for n in candidates if n != anchor.name),
        )
        if len(present) < 2 or present[0][0] > DISTANCE_MARGIN * present[1][0]:
            continue
        others = [n for _, n in present[1:4]]
        if len(others) < 3:
            if len(absent) < 3 - len(others):
                continue
            others += rng.sample(absent, 3 - len(others))
        rng.shuffle(others)
        nearest = present[0][1]
        yield Draft(
            "relative_distance",
            "distance",
            f"Which of these is closest to the {anchor.name}?",
            nearest,
            others,
            [anchor, *facts.by_name[nearest]],
        )


def _existence(facts: _SceneFacts, vocab: Vocabulary, rng: random.Random) -> Iterator[Draft]:
    absent = facts.absent
    present = sorted(n for n in facts.visible if n not in facts.crowded)
    if present and len(absent) >= 3:
        name = rng.choice(present)
        yield Draft(
            "existence",
            "existence",
            "Which of these objects can be seen in the image?",
            name,
            rng.sample(absent, 3),
            facts.by_name[name],
        )
    if len(present) >= 3 and absent:
        shown = rng.sample(present, 3)
        yield Draft(
            "existence",
            "absence",
            "Which of these objects does not appear anywhere in the image?",
            rng.choice(absent),
            shown,
            [o for n in shown for o in facts.by_name[n]],
        )


def _colour(facts: _SceneFacts, vocab: Vocabulary, rng: random.Random) -> Iterator[Draft]:
    for obj in facts.singles:
        colours = [a for a in obj.attributes if a in COLOUR_WORDS]
        others = [c for c in vocab.colours if c not in colours]
        if len(colours) != 1 or len(others) < 3:
            continue
        yield Draft("attribute", "colour", f"What colour is the {obj.name}?", colours[0], rng.sample(others, 3), [obj])


def _attribute(facts: _SceneFacts, vocab: Vocabulary, rng: random.Random) -> Iterator[Draft]:
    for obj in facts.singles:
        own = [a for a in obj.attributes if a not in COLOUR_WORDS]
        others = [a for a in vocab.attributes if a not in obj.attributes]
        if not own or len(others) < 3:
            continue
        yield Draft(
            "attribute",
            "attribute",
            f"Which of these words describes the {obj.name}?",
            rng.choice(own),
            rng.sample(others, 3),
            [obj],
        )


def _location(facts: _SceneFacts, vocab: Vocabulary, rng: random.Random) -> Iterator[Draft]:
    scene = facts.scene
    for obj in facts.singles:
        where = quadrant(obj, scene.width, scene.height)
        if where is None:
            continue
        distractors = [q for q in QUADRANTS if q != where]
        rng.shuffle(distractors)
        yield Draft(
            "localization", "location", f"In which part of the image is the {obj.name}?", where, distractors, [obj]
        )


_GENERATORS = (_count, _relation, _size, _distance_question, _existence, _colour, _attribute, _location)


def generate(scene: Scene, vocab: Vocabulary, rng: random.Random) -> list[Draft]:
    """All stage-1 drafts for one scene, at most ``PER_TEMPLATE`` of each template, no question asked twice."""
    facts = _SceneFacts(scene, vocab)
    drafts: list[Draft] = []
    asked: set[str] = set()
    for generator in _GENERATORS:
        per_template: dict[str, list[Draft]] = {}
        for draft in generator(facts, vocab, rng):
            if draft.question not in asked:
                per_template.setdefault(draft.template, []).append(draft)
        for template, found in per_template.items():
            keep = found if len(found) <= PER_TEMPLATE[template] else rng.sample(found, PER_TEMPLATE[template])
            asked.update(draft.question for draft in keep)
            drafts.extend(keep)
    return drafts


def generator_id(template: str) -> str:
    return f"stage1/{template}@{VERSION}"
