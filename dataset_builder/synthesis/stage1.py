"""Stage 1: grounded multiple-choice questions that are correct by construction and need the image.

Each template reads only the boxes (and attributes) of a ``Scene``, so its answer can be re-derived by anyone
from the same annotations, and asks nothing a person looking at the image with its boxes drawn could dispute:
objects it names are the only one their phrase fits ("the dog", or "the red circle" where every circle has its own
colour) and large enough to see, geometric answers clear a margin, counts are small and of instances large
enough to count.

A question must also be unanswerable without the image. Two things see to that:

- ``Balance``, one per stream of questions (the builder keeps one per shard): a template offers each question
  in every form it could take (a count with each window of options around it, a pair of objects in either
  order), and ``Balance`` keeps the form that keeps its answer classes even, or drops the question (a window only
  of numbers the stream has asked about, so none is an option that is never right). So a count of 1 is asked no
  more often than a count of 3 with the same options, "more than twice the size" no more often than "smaller, but
  more than half", and an option text (a category, a colour) is the answer about a quarter of the times it is
  shown. It is deterministic: the same stream makes the same choices.
- varied wording: every template has several phrasings, chosen per question, so no sentence is a tell.

A template yields ``Draft`` questions (correct option + three distractors); the builder letters them.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache, partial
from itertools import filterfalse, repeat
from typing import NamedTuple

from ..scene import BOX_TOLERANCE_PX, Scene, SceneObject
from .generator import generator_id
from .grammar import article, plural, singular, singular_noun

VERSION = 2
OPTIONS = 4
# An object must cover this share of the image to be the subject of a question a person should answer.
MIN_VISIBLE_SHARE = 0.004
# Counting asks only about categories whose every instance covers at least 1/150 of the image, twice the area
# below which COCO calls an object "small" (32x32 pixels of a 640x480 image). In the COCO sample the counts a
# person could not verify were those with a smaller instance: a 58x23-pixel truck among background traffic,
# 22x37-pixel vases on a kitchen counter, a 102x12-pixel sliver of a chair behind a diner. A rendered shape of
# the built-in scenes is easier to see at the same size, but one rule for every source keeps counts verifiable.
MIN_COUNTED_SHARE = 1 / 150
# Counts above 5 are not asked: of the 23 counts above 4 in the COCO sample, the only one the size rule lets
# through is a pile of 12 overlapping suitcases with more behind them, which nobody can verify; up to 5 large
# instances can be counted at a glance.
MAX_COUNT = 5
# Two boxes are "level" on an axis when their extents overlap by at least this share of the smaller one, and
# "apart" when they overlap by at most SEPARATED; a relation is asked only when one axis is apart, the other
# level, and the line between the box centres is within AXIS_DOMINANCE (rise over run) of that axis, so a
# diagonal neighbour, of which two relations hold at once, is never asked about.
LEVEL = 0.5
SEPARATED = 0.1
AXIS_DOMINANCE = 0.5
# Relative size compares box areas in four bins with edges at a third, equal and three times (SIZE_EDGES, in
# log2 of the area ratio); a ratio within SIZE_MARGIN of an edge is not asked, so every answer is at least 1.4
# times away from the next bin. (Bins at a half and twice with a margin of 0.3 let pairs 1.2 times apart
# through; judged against the COCO photos, those could not be told apart by eye.) An object cut by the image
# frame is never compared: its box is smaller than the object.
SIZE_EDGES = (-math.log2(3), 0.0, math.log2(3))
SIZE_MARGIN = 0.5
# Distance is the gap between two boxes (0 when they touch). The nearest option's gap must be at most
# DISTANCE_RATIO of the next nearest and shorter by DISTANCE_GAP of the image diagonal, so the answer is plain
# to the eye; objects touching the anchor are never options (every gap to a box it overlaps is 0).
DISTANCE_RATIO = 0.5
DISTANCE_GAP = 0.05
# A location is asked only when this share of the box lies in one quadrant of the image, and its centre is at
# least LOCATION_MARGIN of the image's side from both midlines (a small object straddling a midline was
# ambiguous in the COCO sample although 90% of its box lay on one side).
LOCATION_INSIDE = 0.9
LOCATION_MARGIN = 0.05
# Detector boxes (objects with a ``score``) are not a complete annotation: a detector misses instances and finds
# things that are not there. A category with a box scoring below CONFIDENT_SCORE (in the band between the detector's
# own threshold and this score) may have an instance missed or one too many, and one whose head noun has two names
# in the image ("mug", "ceramic mug") may be either, so, like a crowd box, no question is asked about it: it is not
# counted, named as "the only one", related, located or offered as present. And a category no box was found for is
# "absent" only when the caption does not name its head noun either: the detector is asked only about what the
# caption names, so of anything else its silence says nothing, and a caption's thing it did not find is a miss.
# Scenes with human boxes (no scores) are read as complete, as before.
CONFIDENT_SCORE = 0.5
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
# The skill each template exercises.
SKILLS = {
    "count": "counting",
    "relation": "spatial_relation",
    "size": "relative_size",
    "distance": "relative_distance",
    "existence": "existence",
    "absence": "existence",
    "colour": "attribute",
    "attribute": "attribute",
    "location": "localization",
}
# A question whose answer text (a category, a colour) has been the answer more than this many times beyond a
# quarter of its showings in its stream is dropped. (A question with answer classes, such as a count's window,
# is dropped unless its class is among the least used of its key: those never differ by more than one.)
TEXT_SLACK = 1
# Choosing among absent categories (the answer of "which is missing?", the topic of a count of 0), balancing
# weighs this many drawn at random, so the cost per image does not grow with the source's vocabulary.
POOL = 16
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

# Phrasings per template; ``{a}``/``{b}`` are singular noun phrases, ``{p}`` a plural one, ``{an}`` an article.
WORDINGS = {
    "count": (
        "How many {p} are there in the image?",
        "How many {p} can you see in this picture?",
        "Count the {p} in the image. How many are there?",
        "What is the number of {p} shown in the image?",
        "How many {p} does the picture contain?",
        "In this image, how many {p} are visible?",
    ),
    "relation": (
        "Where is the {a} relative to the {b}?",
        "Where is the {a} located with respect to the {b}?",
        "Relative to the {b}, where is the {a}?",
        "How is the {a} positioned in relation to the {b}?",
        "Which of these describes where the {a} is, relative to the {b}?",
        "Looking at the {a} and the {b}, where is the {a}?",
    ),
    "size": (
        "Comparing the boxes that enclose them, how large is the {a} relative to the {b}?",
        "By the area of their bounding boxes, how big is the {a} compared with the {b}?",
        "Measured by box area, how does the size of the {a} compare with the {b}?",
        "How large is the box around the {a} relative to the box around the {b}?",
        "Judging by their bounding boxes, what is the size of the {a} relative to the {b}?",
    ),
    "distance": (
        "Which of these is closest to the {a}?",
        "Which of these objects is nearest to the {a}?",
        "Of the following, which is closest to the {a} in the image?",
        "Which of these lies nearest the {a}?",
        "Measured by the gap between their boxes, which of these is closest to the {a}?",
        "What is the nearest of these objects to the {a}?",
    ),
    "existence": (
        "Which of these objects can be seen in the image?",
        "Which of these appears in the picture?",
        "One of these objects is in the image. Which one?",
        "Which of the following is visible in this image?",
        "Which of these can you find in the picture?",
    ),
    "absence": (
        "Which of these objects does not appear anywhere in the image?",
        "Which of these is missing from the picture?",
        "Which of the following cannot be seen in the image?",
        "Three of these objects are in the image. Which one is not?",
        "Which of these objects is absent from the picture?",
    ),
    "colour": (
        "What colour is the {a}?",
        "What is the colour of the {a}?",
        "Which colour is the {a}?",
        "The {a} in the image is which colour?",
        "Which of these colours best describes the {a}?",
    ),
    "attribute": (
        "Which of these words describes the {a}?",
        "Which word best describes the {a}?",
        "Which of these fits the {a} in the image?",
        "How would you describe the {a}?",
        "Which of these words applies to the {a}?",
    ),
    "location": (
        "In which part of the image is the {a}?",
        "Where in the image is the {a}?",
        "Which quarter of the picture contains the {a}?",
        "The image shows {an} {a}. Which part of the image is it in?",
        "Where is the {a} located in the picture?",
        "In which corner region of the image does the {a} lie?",
    ),
}


def _say(template: str, rng: random.Random, a: str = "", b: str = "", p: str = "") -> str:
    """One of ``template``'s phrasings about the things named ``a`` and ``b`` (or the plural ``p``)."""
    wording = rng.choice(WORDINGS[template])
    a, b = singular(a), singular(b)
    return wording.format(a=a, b=b, p=p, an=article(a) if "{an}" in wording else "")


@dataclass(slots=True)
class Draft:
    """A question before lettering: the builder places ``correct`` among ``distractors`` at a balanced letter.

    ``ordered`` options (numbers) are shown in ascending order, so the correct one's rank is its letter. Drafts
    sharing a ``key`` compete for even answer classes: ``answer_class`` is one of that key's ``classes``; drafts
    without a key are balanced by their option texts. ``topic`` is the category a count asks about.
    """

    template: str
    question: str
    correct: str
    distractors: list[str]
    grounding: list[SceneObject]
    ordered: bool = False
    key: tuple = ()
    classes: tuple = ()
    answer_class: object = None
    topic: str = ""
    skill: str = ""  # the template's skill unless a model tagged the question itself

    def __post_init__(self):
        self.skill = self.skill or SKILLS[self.template]

    @property
    def position(self) -> int | None:
        """Where ordered options put the correct one (so its letter); None when the builder places it."""
        if not self.ordered:
            return None
        correct = float(self.correct)  # ties keep the correct one first, as a stable sort of [correct, *others]
        return sum([float(text) < correct for text in self.distractors])

    @property
    def fact(self) -> tuple:
        """What the question asks about, whatever its wording: one image is never asked the same fact twice."""
        return self.template, self.topic, tuple([o.id for o in self.grounding])


class Form(NamedTuple):
    """What ``Balance`` weighs of one way to ask a question with answer classes, before it is written: its ``key``,
    the key's ``classes`` and its ``answer_class``; of ordered options, the correct one's ``position`` and the option
    texts. A template offers its forms, and writes a ``Draft`` (wording, distractors) only for the one kept: most
    forms are not."""

    template: str
    key: tuple
    classes: tuple
    answer_class: object
    position: int | None = None
    correct: str = ""
    distractors: tuple = ()
    topic: str = ""

    @property
    def ordered(self) -> bool:
        return self.position is not None


@dataclass(slots=True)
class Vocabulary:
    """What a distractor may name: every category and attribute seen in the source."""

    names: list[str]
    colours: list[str]
    attributes: list[str]
    by_head: dict[str, list[str]] = field(init=False)  # the names of each head noun, for detected scenes

    def __post_init__(self):
        self.by_head = {}
        for name in self.names:
            self.by_head.setdefault(head_noun(name), []).append(name)


@dataclass
class Balance:
    """The answer classes and option texts one stream of questions has used so far (see the module docstring)."""

    classes: defaultdict[tuple, Counter] = field(default_factory=lambda: defaultdict(Counter))
    least: dict[tuple, int] = field(default_factory=dict)  # key -> how often its least used class was the answer
    # template -> option text -> its debt, positive when the text has been the answer more than a quarter of the
    # times it was shown: (OPTIONS - 1) per time it was the answer, less one per time it was a distractor, kept as
    # it changes so reading it costs one lookup
    debts: defaultdict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    counted: Counter = field(default_factory=Counter)  # category -> count questions with a non-zero answer
    zeros: Counter = field(default_factory=Counter)  # category -> count questions answered 0
    positions: Counter = field(default_factory=Counter)  # (template, position) -> ordered questions answered there
    owing: dict[str, set] = field(default_factory=dict)  # template -> option texts with a positive debt
    # template -> number -> questions offered with that answer
    asked: defaultdict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    colours: set = field(default_factory=set)  # every colour an object of the stream's images so far had
    opened: set = field(default_factory=set)  # windows whose every number the stream has asked about

    def _excess(self, draft: Draft) -> float:
        """How many questions the draft's answer is ahead of its even share: its class over its key's least used
        class, or its option text's times as the answer over a quarter of its showings."""
        if draft.key:
            used = self.classes.get(draft.key)
            return used.get(draft.answer_class, 0) - self.least[draft.key] if used else 0
        return self.debts[draft.template].get(draft.correct, 0) / OPTIONS

    def _open(self, draft: Draft) -> bool:
        """Whether a window of numbers may be offered: for a stream's first two questions of its answer, always;
        after that, only when the stream has asked about every number in it.

        A window's classes fill at the pace of its rarest number: around one that never comes up (a total of two
        counts of 0, which stage 1 never asks of one image) or hardly does (a count of 5), each other number would
        be let in once per stream and the rare one would be the option never right, at the window's edge.
        """
        if draft.key in self.opened:
            return True
        asked = self.asked[draft.template]
        if asked.get(draft.correct, 0) < 2:
            return True
        if all(map(asked.__contains__, draft.distractors)):  # the window's other numbers
            self.opened.add(draft.key)  # for good: a number asked about stays so
            return True
        return False

    def _use(self, draft: Draft) -> tuple[int, int]:
        """Of ordered options, how little its window has been used, and how much its answer's letter."""
        used = self.classes.get(draft.key)
        return -sum(used.values()) if used else 0, self.positions.get((draft.template, draft.position), 0)

    def choose(self, forms: list[Draft | Form], rng: random.Random) -> Draft | Form | None:
        """The form of a question whose answer is least ahead, recorded; None (drop it) when every form is ahead
        or, for numbers, in a window not open (``_open``). Forms are ``Draft``s, or ``Form``s of questions not yet
        written.

        Between windows equally even, the one the stream has used most, so a stream fills the rounds of few windows
        rather than leaving many half-filled; then ordered options go where their answer's letter has been least
        used, so the letters of a count stay even from a stream's first questions on.
        """
        if forms and forms[0].ordered:
            self.asked[forms[0].template][forms[0].correct] += 1
        ranked = []  # of each admissible form: (excess, window use, letter use), the form
        for form in forms:
            if form.ordered and not self._open(form):
                continue
            excess = self._excess(form)
            if excess <= (0 if form.key else TEXT_SLACK):
                ranked.append(((excess, *self._use(form)) if form.ordered else (excess,), form))
        if not ranked:
            return None
        best = min(rank for rank, _ in ranked)
        tied = [form for rank, form in ranked if rank == best]
        draft = tied[0] if len(tied) == 1 else rng.choice(tied)  # drawn only to break a tie
        self._record(draft)
        return draft

    def _record(self, draft: Draft) -> None:
        """Count the kept draft's answer class and letter, or else its option texts (only questions without answer
        classes are balanced by their texts); of a count, its topic."""
        template, correct = draft.template, draft.correct
        if draft.ordered:
            self.positions[template, draft.position] += 1
        if template == "count":
            (self.zeros if correct == "0" else self.counted)[draft.topic] += 1
        if draft.key:
            used = self.classes[draft.key]
            used[draft.answer_class] += 1
            self.least[draft.key] = min(map(used.get, draft.classes, repeat(0)))
            return
        # ``owing`` holds the texts whose debt is positive: only the answer's can become so, a distractor's only not
        debts, owing = self.debts[template], self.owing.setdefault(template, set())
        debts[correct] = debt = debts.get(correct, 0) + OPTIONS - 1
        if debt > 0:
            owing.add(correct)
        for text in draft.distractors:
            debts[text] = debt = debts.get(text, 0) - 1
            if debt <= 0:
                owing.discard(text)

    def distractors(self, template: str, texts: list[str], rng: random.Random) -> list[str]:
        """Three of ``texts``: first those owed showings as a distractor (the answer more than a quarter of the
        times they were shown), most owed first, then others at random; cheap however many ``texts`` there are."""
        owing = self.owing.get(template, set())
        # most owed first (a reversed sort keeps the order of ties, as a sort does)
        owed = sorted(filter(owing.__contains__, texts), key=self.debts[template].__getitem__, reverse=True)
        owed = owed[: OPTIONS - 1]
        others = [t for t in rng.sample(texts, min(len(texts), OPTIONS - 1 + len(owed))) if t not in owed]
        return (owed + others)[: OPTIONS - 1]

    def owed_answer(self, template: str, texts: list[str], rng: random.Random) -> str:
        """The one of ``texts`` most owed a turn as the answer (ties at random)."""
        debts = self.debts[template]
        return _least(texts, list(map(debts.get, texts, repeat(0))), rng)

    def zero_topic(self, absent: list[str], rng: random.Random) -> str | None:
        """An absent category to ask a count of 0 about: one already counted, asked 0 least often relative to that.

        So "how many giraffes" is answered 0 about as often, relative to its other answers, as "how many people",
        and the category alone says nothing of whether the count is 0.
        """
        known = list(filter(self.counted.__contains__, absent))
        if not known:
            return None
        return _least(known, [(self.zeros[n] + 1) / self.counted[n] for n in known], rng)


def _pool(names: list[str], rng: random.Random) -> list[str]:
    """At most ``POOL`` of ``names`` at random: what balancing weighs among a vocabulary of any size."""
    return names if len(names) <= POOL else rng.sample(names, POOL)


def _least(texts: list[str], scores: list[float], rng: random.Random) -> str:
    """The text with the lowest score, ties broken at random."""
    lowest = min(scores)
    return rng.choice([t for t, score in zip(texts, scores, strict=True) if score == lowest])


# The geometry below runs for every pair of objects of every image: it compares floats with conditional expressions,
# the same values ``min`` and ``max`` would pick at a fraction of a builtin call's cost.


def _shared(a0: float, a1: float, b0: float, b1: float) -> float:
    """The length two intervals share: ``max(0.0, min(a1, b1) - max(a0, b0))``."""
    shared = (b1 if b1 < a1 else a1) - (b0 if b0 > a0 else a0)
    return shared if shared > 0.0 else 0.0


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    """Overlap of two intervals as a share of the shorter one."""
    shorter = b1 - b0 if b1 - b0 < a1 - a0 else a1 - a0
    return _shared(a0, a1, b0, b1) / (shorter if shorter > 1e-9 else 1e-9)


def relation(a: SceneObject, b: SceneObject) -> str | None:
    """'left'/'right'/'above'/'below' when exactly one is clearly true of ``a`` with respect to ``b``, else None."""
    ax0, ay0, ax1, ay1 = a.bbox
    bx0, by0, bx1, by1 = b.bbox
    x_overlap, y_overlap = _overlap(ax0, ax1, bx0, bx1), _overlap(ay0, ay1, by0, by1)
    acx, acy, bcx, bcy = (ax0 + ax1) / 2, (ay0 + ay1) / 2, (bx0 + bx1) / 2, (by0 + by1) / 2  # the box centres
    dx, dy = abs(acx - bcx), abs(acy - bcy)
    if x_overlap <= SEPARATED and y_overlap >= LEVEL and dy <= AXIS_DOMINANCE * dx:
        return "left" if acx < bcx else "right"
    if y_overlap <= SEPARATED and x_overlap >= LEVEL and dx <= AXIS_DOMINANCE * dy:
        return "above" if acy < bcy else "below"
    return None


RELATION_PHRASES = {"left": "to the left of", "right": "to the right of", "above": "above", "below": "below"}
SIZE_BINS = (
    "less than a third the size of the {b}",
    "smaller than the {b}, but more than a third its size",
    "larger than the {b}, but less than three times its size",
    "more than three times the size of the {b}",
)
QUADRANTS = ("top left", "top right", "bottom left", "bottom right")


def size_bin(a: SceneObject, b: SceneObject) -> int | None:
    """Index into ``SIZE_BINS`` of ``a``'s box area relative to ``b``'s, None when too close to a bin edge."""
    ratio = math.log2(a.area / b.area)
    index = 0
    for edge in SIZE_EDGES:
        if abs(ratio - edge) < SIZE_MARGIN:
            return None
        index += ratio > edge
    return index


def quadrant(obj: SceneObject, width: int, height: int) -> str | None:
    """The quadrant holding at least ``LOCATION_INSIDE`` of the box, None when the box spans several or its
    centre is near a midline."""
    x0, y0, x1, y1 = obj.bbox
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if abs(cx / width - 0.5) < LOCATION_MARGIN or abs(cy / height - 0.5) < LOCATION_MARGIN:
        return None
    # more than half of the box lies on its centre's side of each midline: no other quadrant can hold most of it
    right, bottom = cx > width / 2, cy > height / 2
    qx0, qy0 = right * width / 2, bottom * height / 2
    inside = _shared(x0, x1, qx0, qx0 + width / 2) * _shared(y0, y1, qy0, qy0 + height / 2)
    return QUADRANTS[2 * bottom + right] if inside >= LOCATION_INSIDE * obj.area else None


def head_noun(name: str) -> str:
    """The word of a name that says what kind of thing it is: "ceramic mug" -> "mug"."""
    return name.rpartition(" ")[2].lower()


def _caption_nouns(caption: str) -> set[str]:
    """Every word of a caption, and the singular of each plural: the head nouns it names ("two dogs" -> "dog")."""
    words = set(re.findall(r"[a-z0-9]+(?:[-'][a-z0-9]+)*", caption.lower()))
    return words | {singular_noun(word) for word in words}


def _set_aside(objects: list[SceneObject], by_name: dict[str, list[SceneObject]]) -> set[str]:
    """Categories no question is about: those with a crowd box, and, of detector boxes, every category whose head
    noun has a box below ``CONFIDENT_SCORE`` or is named two ways ("mug" and "ceramic mug": is "the mug" either?)."""
    aside = {o.name for o in objects if o.crowd}
    heads: dict[str, list[str]] = {}
    for name in dict.fromkeys(o.name for o in objects if o.score is not None):
        heads.setdefault(head_noun(name), []).append(name)
    for names in heads.values():
        scores = [o.score for name in names for o in by_name[name] if o.score is not None]
        if len(names) > 1 or min(scores) < CONFIDENT_SCORE:
            aside.update(names)
    return aside


def _cut_by_frame(obj: SceneObject, scene: Scene) -> bool:
    """Whether the box reaches the image border (within the rounding every source's boxes are clipped by)."""
    x0, y0, x1, y1 = obj.bbox
    margin = BOX_TOLERANCE_PX
    return min(x0, y0) <= margin or x1 >= scene.width - margin or y1 >= scene.height - margin


def gap(a: SceneObject, b: SceneObject) -> float:
    """The shortest distance between two boxes, 0 when they touch or overlap."""
    ax0, ay0, ax1, ay1 = a.bbox
    bx0, by0, bx1, by1 = b.bbox
    # at most one side of each axis is apart (boxes have a positive extent); x - y > 0.0 exactly when x > y
    across = bx0 - ax1 if bx0 > ax1 else ax0 - bx1 if ax0 > bx1 else 0.0
    along = by0 - ay1 if by0 > ay1 else ay0 - by1 if ay0 > by1 else 0.0
    return math.hypot(across, along)


def colour_of(obj: SceneObject) -> str | None:
    """The object's colour when it has exactly one."""
    colours = [a for a in obj.attributes if a in COLOUR_WORDS]
    return colours[0] if len(colours) == 1 else None


class _SceneFacts:
    """What every template needs to know about a scene, computed once."""

    def __init__(self, scene: Scene, vocab: Vocabulary):
        image_area = scene.width * scene.height
        visible_area, counted_area = MIN_VISIBLE_SHARE * image_area, MIN_COUNTED_SHARE * image_area
        self.scene = scene
        self.by_name: dict[str, list[SceneObject]] = {}
        for obj in scene.objects:
            self.by_name.setdefault(obj.name, []).append(obj)
        self.set_aside = _set_aside(scene.objects, self.by_name)
        # Categories with an instance large enough to see, and those whose every instance is countable: no crowd
        # box, none too small to see, not too many.
        self.visible: list[str] = []
        self.countable: list[str] = []
        # Objects a phrase names exactly, visible: the only instance of its category ("the dog"), or, where every
        # instance of a category has a colour of its own, each instance ("the red circle").
        self.named: list[tuple[str, SceneObject]] = []
        # What a distance question may offer: the named objects, and each other visible category as a whole.
        self.groups: list[tuple[str, list[SceneObject]]] = []
        for name, objs in self.by_name.items():
            if name in self.set_aside:
                continue
            areas = [o.area for o in objs]
            smallest = min(areas)
            if len(objs) <= MAX_COUNT and smallest >= counted_area:
                self.countable.append(name)
            seen = objs
            if smallest < visible_area:
                seen = [o for o, area in zip(objs, areas, strict=True) if area >= visible_area]
            if not seen:
                continue
            self.visible.append(name)
            if len(objs) == 1:
                named = [(name, objs[0])]
            else:
                colours = [colour_of(o) for o in objs]
                if None not in colours and len(set(colours)) == len(objs):
                    named = [(f"{colour_of(o)} {name}", o) for o in seen]
                else:
                    named = []
                    if len(seen) == len(objs):
                        self.groups.append((name, objs))
            self.named += named
            self.groups += [(phrase, [o]) for phrase, o in named]
        self.visible.sort()
        self.countable.sort()
        unknown = self.by_name
        if any(o.score is not None for o in scene.objects):  # detected: see CONFIDENT_SCORE
            named = _caption_nouns(scene.caption).intersection(vocab.by_head)
            unknown = {*self.by_name, *(name for head in named for name in vocab.by_head[head])}
        self.absent = list(filterfalse(unknown.__contains__, vocab.names))


# ---- templates: each yields, per question, its template and how to offer it to ``Balance``: an offer weighs the
# forms the question may take and writes it (a ``Draft``) in the form kept, if any; a question is offered only when
# reached (most are not: each template stops at its quota per image) ----

Candidate = tuple[str, Callable[[], Draft | None]]
_NUMBERS = [str(n) for n in range(MAX_COUNT + 1)]  # a count's options, as text
# Per count, each window of four consecutive counts in [0, MAX_COUNT] around it: (key, its counts, the others as text,
# the count's place among them)
_WINDOWS = [
    [
        (
            ("count", start),
            tuple(range(start, start + OPTIONS)),
            tuple(_NUMBERS[start:n] + _NUMBERS[n + 1 : start + OPTIONS]),
            n - start,
        )
        for start in range(max(0, n - OPTIONS + 1), min(n, MAX_COUNT - OPTIONS + 1) + 1)
    ]
    for n in range(MAX_COUNT + 1)
]


def _offer_count(name: str, objs: list[SceneObject], rng: random.Random, balance: Balance) -> Draft | None:
    """ "How many <name>?" with the window of four consecutive counts in [0, MAX_COUNT] around the count that
    ``balance`` keeps."""
    n = len(objs)
    forms = [Form("count", key, window, n, at, _NUMBERS[n], others, name) for key, window, others, at in _WINDOWS[n]]
    form = balance.choose(forms, rng)
    if form is None:
        return None
    question = _say("count", rng, p=plural(name))
    return Draft("count", question, form.correct, list(form.distractors), objs, True, form.key, form.classes, n, name)


def _offer_zero_count(facts: _SceneFacts, rng: random.Random, balance: Balance) -> Draft | None:
    """A count of a category the image lacks, 0 being a legitimate answer, when ``Balance.zero_topic`` finds one."""
    zero = balance.zero_topic(_pool(facts.absent, rng), rng)
    return None if zero is None else _offer_count(zero, [], rng, balance)


def _count(facts: _SceneFacts, vocab: Vocabulary, rng: random.Random, balance: Balance) -> Iterator[Candidate]:
    for name in facts.countable:
        yield "count", partial(_offer_count, name, facts.by_name[name], rng, balance)
    yield "count", partial(_offer_zero_count, facts, rng, balance)


def _offer_pair(one, other, rng: random.Random, balance: Balance, template: str, answer_of, options_of, classes):
    """The question about two named objects in the order ``balance`` keeps: ``answer_of(first, second)`` is the
    answer class (None when not clear) and ``options_of(second_phrase)`` maps every class to its option text (shared:
    copied)."""
    orders, forms = [], []
    for order in ((one, other), (other, one)):
        answer = answer_of(order[0][1], order[1][1])
        if answer is not None:
            orders.append(order)
            forms.append(Form(template, (template,), classes, answer))
    form = balance.choose(forms, rng) if forms else None
    if form is None:
        return None
    (a, first), (b, second) = orders[0] if form is forms[0] else orders[1]
    options = dict(options_of(singular(b)))
    correct = options.pop(form.answer_class)
    distractors = list(options.values())
    rng.shuffle(distractors)
    question, grounding = _say(template, rng, a, b), [first, second]
    return Draft(template, question, correct, distractors, grounding, False, form.key, classes, form.answer_class)


def _pairs(named: list, rng: random.Random, balance: Balance, template: str, answer_of, options_of, classes: tuple):
    for i, one in enumerate(named):
        for other in named[i + 1 :]:
            yield template, partial(_offer_pair, one, other, rng, balance, template, answer_of, options_of, classes)


@lru_cache(maxsize=4096)  # a source has few phrases, and pairs name each again and again
def _relation_options(second: str) -> dict:
    return {key: f"{phrase} the {second}" for key, phrase in RELATION_PHRASES.items()}


@lru_cache(maxsize=4096)
def _size_options(second: str) -> dict:
    return {index: text.format(b=second) for index, text in enumerate(SIZE_BINS)}


def _relation(facts: _SceneFacts, vocab: Vocabulary, rng: random.Random, balance: Balance) -> Iterator[Candidate]:
    yield from _pairs(facts.named, rng, balance, "relation", relation, _relation_options, tuple(RELATION_PHRASES))


def _size(facts: _SceneFacts, vocab: Vocabulary, rng: random.Random, balance: Balance) -> Iterator[Candidate]:
    whole = [(phrase, obj) for phrase, obj in facts.named if not _cut_by_frame(obj, facts.scene)]
    yield from _pairs(whole, rng, balance, "size", size_bin, _size_options, tuple(range(len(SIZE_BINS))))


def _offer_distance(facts: _SceneFacts, phrase: str, anchor: SceneObject, rng, balance: Balance) -> Draft | None:
    # every group by its gap to the anchor; a group touching the anchor (its own among them) is never an option
    gap_to = partial(gap, anchor)
    gaps = [(min(map(gap_to, objs)), name, objs) for name, objs in facts.groups]
    gaps = sorted(entry for entry in gaps if entry[0] > 0)
    if len(gaps) < OPTIONS:
        return None
    (nearest_gap, nearest, objs), second_gap = gaps[0], gaps[1][0]
    clear = DISTANCE_GAP * math.hypot(facts.scene.width, facts.scene.height)
    if nearest_gap > DISTANCE_RATIO * second_gap or second_gap - nearest_gap < clear:
        return None
    others = balance.distractors("distance", [name for _, name, _ in gaps[1:]], rng)
    return balance.choose([Draft("distance", _say("distance", rng, phrase), nearest, others, [anchor, *objs])], rng)


def _distance(facts: _SceneFacts, vocab: Vocabulary, rng: random.Random, balance: Balance) -> Iterator[Candidate]:
    for phrase, anchor in facts.named:
        yield "distance", partial(_offer_distance, facts, phrase, anchor, rng, balance)


def _offer_present(facts: _SceneFacts, rng: random.Random, balance: Balance) -> Draft | None:
    name = balance.owed_answer("existence", facts.visible, rng)
    distractors = balance.distractors("existence", facts.absent, rng)
    return balance.choose([Draft("existence", _say("existence", rng), name, distractors, facts.by_name[name])], rng)


def _offer_absent(facts: _SceneFacts, rng: random.Random, balance: Balance) -> Draft | None:
    shown = balance.distractors("absence", facts.visible, rng)
    name = balance.owed_answer("absence", _pool(facts.absent, rng), rng)
    grounding = [o for n in shown for o in facts.by_name[n]]
    return balance.choose([Draft("absence", _say("absence", rng), name, shown, grounding)], rng)


def _existence(facts: _SceneFacts, vocab: Vocabulary, rng: random.Random, balance: Balance) -> Iterator[Candidate]:
    if facts.visible and len(facts.absent) >= OPTIONS - 1:
        yield "existence", partial(_offer_present, facts, rng, balance)
    if len(facts.visible) >= OPTIONS - 1 and facts.absent:
        yield "absence", partial(_offer_absent, facts, rng, balance)


def _offer_colour(phrase: str, obj: SceneObject, others: list[str], rng, balance: Balance) -> Draft | None:
    distractors = balance.distractors("colour", others, rng)
    return balance.choose([Draft("colour", _say("colour", rng, phrase), colour_of(obj), distractors, [obj])], rng)


def _colours(facts: _SceneFacts, vocab: Vocabulary, rng: random.Random, balance: Balance) -> Iterator[Candidate]:
    for phrase, obj in facts.named:
        others = [c for c in vocab.colours if c not in obj.attributes]
        if phrase == obj.name and colour_of(obj) and len(others) >= OPTIONS - 1:  # "the red circle" tells its colour
            yield "colour", partial(_offer_colour, phrase, obj, others, rng, balance)


def _offer_attribute(phrase, obj, own: list[str], others: list[str], rng, balance: Balance) -> Draft | None:
    correct = balance.owed_answer("attribute", own, rng)
    distractors = balance.distractors("attribute", others, rng)
    return balance.choose([Draft("attribute", _say("attribute", rng, phrase), correct, distractors, [obj])], rng)


def _attribute(facts: _SceneFacts, vocab: Vocabulary, rng: random.Random, balance: Balance) -> Iterator[Candidate]:
    for phrase, obj in facts.named:
        own = [a for a in obj.attributes if a not in COLOUR_WORDS]
        others = [a for a in vocab.attributes if a not in obj.attributes]
        if own and len(others) >= OPTIONS - 1:
            yield "attribute", partial(_offer_attribute, phrase, obj, own, others, rng, balance)


def _offer_location(phrase: str, obj: SceneObject, where: str, rng: random.Random, balance: Balance) -> Draft | None:
    if balance.choose([Form("location", ("location",), QUADRANTS, where)], rng) is None:
        return None
    distractors = [q for q in QUADRANTS if q != where]
    rng.shuffle(distractors)
    question = _say("location", rng, phrase)
    return Draft("location", question, where, distractors, [obj], False, ("location",), QUADRANTS, where)


def _location(facts: _SceneFacts, vocab: Vocabulary, rng: random.Random, balance: Balance) -> Iterator[Candidate]:
    for phrase, obj in facts.named:
        where = quadrant(obj, facts.scene.width, facts.scene.height)
        if where is not None:
            yield "location", partial(_offer_location, phrase, obj, where, rng, balance)


_GENERATORS = (_count, _relation, _size, _distance, _existence, _colours, _attribute, _location)


def generate(scene: Scene, vocab: Vocabulary, rng: random.Random, balance: Balance | None = None) -> list[Draft]:
    """Stage-1 drafts for one scene: at most ``PER_TEMPLATE`` of each template.

    Candidates are offered to ``balance`` (a fresh one when not given) in a random order, each template until it
    has its quota for this image. No fact is asked twice: every candidate asks its own (a category's count, a pair
    of objects, an object's colour, ...), and each is asked in one form at most.
    """
    balance = balance if balance is not None else Balance()
    facts = _SceneFacts(scene, vocab)
    drafts: list[Draft] = []
    kept = dict.fromkeys(PER_TEMPLATE, 0)
    for generator in _GENERATORS:
        candidates = list(generator(facts, vocab, rng, balance))
        if len(candidates) > 1:  # (a shuffle of fewer draws nothing)
            rng.shuffle(candidates)
        for template, offer in candidates:
            if kept[template] < PER_TEMPLATE[template] and (draft := offer()) is not None:
                kept[template] += 1
                drafts.append(draft)
    return drafts


def template_generator(template: str) -> str:
    """The ``generator`` of a row a stage-1 template wrote."""
    return generator_id("stage1", template, VERSION)
