"""The offline scripted teacher and reasoner: traces written from the boxes, their slips errors of perception.

Every question is worked out by one piece of reasoning per kind of step (``_STEPS``: a count, a relation, a size,
the nearest object, a colour ...; a composed question is its forward ``steps`` one after another), run over what
the teacher perceives of the scene (``_View``). A right short chain of thought runs it over the scene as it is. A
wrong one runs the SAME reasoning over a misperceived scene (``_Slip``): an object taken for a similar category (one
missed from a count, or one too many), two objects' identities exchanged (the wrong object taken as the anchor), a
colour confused with a neighbouring one, an extent misread by a plausible margin. The slip is chosen so that the
conclusion lands on a distractor; so a wrong chain of thought is internally consistent (what it concludes follows
from what it states), it has the structure and length of a right one, and only the image shows the error. Which
slip, and so which wrong answer, is chosen keeps the answers wrong chains of thought state distributed as the right
ones' are, per template (``SlipBalance``, kept along a shard's stream of questions as stage 1 keeps its answers).

After the cue the reasoner re-examines by another route (counting in another order, measuring from the edges
instead of the centres, reading a colour against its neighbours): over the scene as it is (``X→O``, ``O→O``),
under the same misperception (``X→X``), or under a new one (``O→X``). It then looks hard at the one object a slip is
about and says how the first pass read it and how it reads it now, says what each of the two answers in play would
mean (the step's result and the answer), compares them and concludes; its phrasing comes from one pool whatever the
outcome. Absence is claimed only after naming everything that was looked at. Every row says who wrote it
(``teacher``/``reasoner``: ``scripted/...``). The model path (a VLM teacher and a reasoning LLM through the engine) is
``synthesis/traces.py``; both make the same ``Trace``.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cache

from ..answers import LETTERS
from ..scene import Scene, SceneObject
from ..sources.builtin import SIZE_WORDS
from . import stage1, stage2
from .generator import parse_generator
from .grammar import article, from_plural, plural
from .traces import CUES, Trace, kind_of, mentions_banned

SCRIPTED_TEACHER = "scripted/teacher@2"
SCRIPTED_REASONER = "scripted/reasoner@2"
# How often a scripted short CoT slips (where a slip can land on a distractor), and how often a continuation ends
# wrong: keeping the slip (X→X) or making one (O→X).
WRONG_SHARE = 0.35
SLIP_KEPT_SHARE = 0.2
SLIP_MADE_SHARE = 0.12
# Where few questions of a template can slip, those that can slip more often, up to this chance per short CoT.
MAX_SLIP_CHANCE = 0.8
# An extent is misread by moving one edge by at most this share of the box's side.
MISREADS = (0.2, 0.3, 0.4)
# Categories a glance may take for one another; a category in none of these may be taken for another of about
# the same size (box areas within LOOKALIKE_AREA of each other).
LOOKALIKES = (
    ("circle", "hexagon", "heart"),
    ("square", "diamond", "hexagon"),
    ("star", "cross"),
    ("triangle", "diamond", "heart"),
    ("car", "truck", "bus"),
    ("cup", "bowl", "vase", "bottle"),
    ("dog", "cat", "sheep", "cow", "horse", "bear"),
    ("chair", "couch", "bench"),
    ("handbag", "backpack", "suitcase"),
    ("fork", "knife", "spoon"),
    ("donut", "cake", "pizza"),
    ("orange", "apple"),
    ("bicycle", "motorcycle"),
    ("laptop", "tv", "keyboard"),
    ("bird", "kite"),
)
LOOKALIKE_AREA = 2.0
# Colours a glance may confuse.
NEIGHBOUR_COLOURS = {
    "red": ("orange", "pink", "brown"),
    "orange": ("red", "yellow", "brown"),
    "yellow": ("orange", "green"),
    "green": ("blue", "yellow"),
    "blue": ("purple", "green"),
    "purple": ("blue", "pink"),
    "pink": ("red", "purple"),
    "brown": ("orange", "red", "black"),
    "black": ("brown", "gray", "grey"),
    "white": ("gray", "grey", "silver"),
    "gray": ("silver", "white", "black"),
    "grey": ("silver", "white", "black"),
}
_NUMBERS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
_SIZE_WHERE = ("below a third", "between a third and one", "between one and three", "above three")


# ---- what the teacher perceives ----


@dataclass(frozen=True)
class _Slip:
    """One misperception: ``rename`` (object ``ids[0]`` seen as category ``value``), ``exchange`` (two objects seen
    as each other, the wrong one taken for a named one: their ``value`` = ``name``, ``colour`` or ``both``
    exchanged), ``recolour`` (seen in colour ``value``) or ``reshape`` (its extent read as box ``value``)."""

    kind: str
    ids: tuple[int, ...]
    value: object = None


class _View:
    """The scene as perceived: every object as seen, and which object is taken for each named one (``who``)."""

    def __init__(self, scene: Scene, slip: _Slip | None = None):
        seen = {obj.id: obj for obj in scene.objects}
        self.taken: dict[int, int] = {}
        if slip is not None:
            first = seen[slip.ids[0]]
            if slip.kind == "rename":
                seen[first.id] = replace(first, name=slip.value)
            elif slip.kind == "recolour":
                colours = [slip.value if a in stage1.COLOUR_WORDS else a for a in first.attributes]
                seen[first.id] = replace(first, attributes=colours)
            elif slip.kind == "reshape":
                seen[first.id] = replace(first, bbox=list(slip.value))
            else:  # each taken for the other: its category, its colour, or both (``value``)
                second = seen[slip.ids[1]]
                names = (second.name, first.name) if slip.value in ("name", "both") else (first.name, second.name)
                colours = (
                    (second.attributes, first.attributes)
                    if slip.value in ("colour", "both")
                    else (first.attributes, second.attributes)
                )
                seen[first.id] = replace(first, name=names[0], attributes=colours[0])
                seen[second.id] = replace(second, name=names[1], attributes=colours[1])
                self.taken = {first.id: second.id, second.id: first.id}
        self.scene, self.slip, self.by_id = scene, slip, seen
        self.objects = [seen[obj.id] for obj in scene.objects]

    def who(self, ref: int) -> SceneObject:
        """The object taken for the one the question names by ``ref``."""
        return self.by_id[self.taken.get(ref, ref)]


def _alike(a: str, b: str) -> bool | None:
    """Whether a glance could take category ``a`` for ``b``: True or False when a ``LOOKALIKES`` group says so,
    None when neither is in any group."""
    if a == b:
        return False
    groups = [group for group in LOOKALIKES if a in group]
    if groups or any(b in group for group in LOOKALIKES):
        return any(b in group for group in groups)
    return None


def _confusable(a: SceneObject, b: SceneObject) -> bool:
    """Whether a glance could take one object for the other: alike categories, one category in colours a glance
    confuses, or (categories no group knows) boxes of about the same size."""
    if a.name == b.name:
        return _neighbours(a, b)
    alike = _alike(a.name, b.name)
    if alike is not None:
        return alike
    return max(a.area, b.area) <= LOOKALIKE_AREA * max(1.0, min(a.area, b.area))


def _neighbours(a: SceneObject, b: SceneObject) -> bool:
    """Two objects whose colours a glance may confuse."""
    ca, cb = stage1.colour_of(a), stage1.colour_of(b)
    return ca is not None and cb in NEIGHBOUR_COLOURS.get(ca, ())


def _misread_boxes(obj: SceneObject, scene: Scene) -> list[tuple[float, ...]]:
    """The object's box with one edge moved by a plausible share of its side, kept inside the image."""
    x0, y0, x1, y1 = obj.bbox
    boxes = []
    for share in MISREADS[1:]:
        dx, dy = share * (x1 - x0), share * (y1 - y0)
        for box in (
            (x0 - dx, y0, x1, y1),
            (x0 + dx, y0, x1, y1),
            (x0, y0, x1 + dx, y1),
            (x0, y0, x1 - dx, y1),
            (x0, y0 - dy, x1, y1),
            (x0, y0 + dy, x1, y1),
            (x0, y0, x1, y1 + dy),
            (x0, y0, x1, y1 - dy),
        ):
            if box[0] >= 0 and box[1] >= 0 and box[2] <= scene.width and box[3] <= scene.height:
                boxes.append(tuple(float(round(v)) for v in box))
    return boxes


# ---- how things are said ----


def _n(value: float) -> str:
    return f"{round(value):,}"


def _box(obj: SceneObject) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = (round(v) for v in obj.bbox)
    return x0, y0, x1, y1


_EXTENTS = (
    "x {x0}–{x1}, y {y0}–{y1}",
    "x {x0} to {x1}, y {y0} to {y1}",
    "x {x0}–{x1} and y {y0}–{y1}",
    "x from {x0} to {x1}, y from {y0} to {y1}",
)
_PLACED = ("{d} at {e}", "{d} ({e})", "{d}, spanning {e}", "{d} at {e}")


class _Writer:
    """Words about one scene, each phrasing drawn from its pool by ``rng``."""

    def __init__(self, scene: Scene, rng: random.Random):
        self.scene, self.rng = scene, rng
        self.counts = Counter(obj.name for obj in scene.objects)

    def pick(self, pool: tuple | list) -> str:
        return self.rng.choice(pool)

    def shuffled(self, items) -> list:
        items = list(items)
        self.rng.shuffle(items)
        return items

    def extent(self, obj: SceneObject) -> str:
        x0, y0, x1, y1 = _box(obj)
        return self.pick(_EXTENTS).format(x0=x0, x1=x1, y0=y0, y1=y1)

    @staticmethod
    def name(obj: SceneObject) -> str:
        """What it is called: its colour and category ("red circle"), or its category."""
        colour = stage1.colour_of(obj)
        return f"{colour} {obj.name}" if colour else obj.name

    def the(self, obj: SceneObject) -> str:
        return f"the {self.name(obj)}"

    def seen(self, obj: SceneObject, what: str | None = None) -> str:
        """ "the red circle at x 10–50, y 20–60", in one of several forms."""
        return self.pick(_PLACED).format(d=what or self.the(obj), e=self.extent(obj))

    def listing(self, objects: list[SceneObject]) -> str:
        """Every kind of thing in ``objects``, by name: "red circle, square and star". How many of each is left
        unsaid, even whether one or several ("a square", "stars"): a pass that reads one object as another changed
        those, and a reader of the text alone picked the side of an O→O > O→X pair whose passes agreed by them."""
        return _joined(sorted({self.name(obj) for obj in objects}))

    def of_kinds(self, objects: list[SceneObject]) -> str:
        """``listing`` as "of the kinds red circle and square", or "of the kind square" when there is one."""
        names = sorted({self.name(obj) for obj in objects})
        return f"of the kind{'s' if len(names) > 1 else ''} {_joined(names)}"


def _joined(parts: list[str], conjunction: str = "and") -> str:
    if not parts:
        return "nothing"
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} {conjunction} {parts[-1]}"


def _cap(sentence: str) -> str:
    return sentence[0].upper() + sentence[1:]


# ---- the steps of reasoning: each solves over a view (what it finds) and writes what it did by one of two routes ----


@dataclass
class _Found:
    """What one step found over a view: its answer as text (``value``), the objects it found, and the facts its
    sentences cite; ``value`` None when the step is not well defined over the view (no such object, a tie)."""

    value: str | None
    found: tuple[int, ...] = ()
    facts: dict = field(default_factory=dict)


@dataclass(frozen=True)
class _Task:
    """One step to work out: its kind (a key of ``_STEPS``), the objects it is about (named, or found by an earlier
    step), and its parameters (``topic``, ``rel``, ``options`` ...)."""

    kind: str
    refs: tuple[int, ...]
    params: dict = field(default_factory=dict, hash=False, compare=False)


def _count_solve(view: _View, task: _Task, objs: list[SceneObject]) -> _Found:
    topic = task.params["topic"]
    found = [obj for obj in view.objects if obj.name == topic and not obj.crowd]
    return _Found(str(len(found)), tuple(obj.id for obj in found), {"topic": topic})


_ORDERS = (
    ("from left to right", lambda o: (o.bbox[0], o.bbox[1])),
    ("from top to bottom", lambda o: (o.bbox[1], o.bbox[0])),
)


def _count_write(w: _Writer, view: _View, found: _Found, route: int) -> list[str]:
    topic = found.facts["topic"]
    many, order = plural(topic), _ORDERS[route]
    objs = sorted((view.by_id[i] for i in found.found), key=order[1])
    others = [obj for obj in view.objects if obj.name != topic]
    one = f"{article(topic)} {topic}"
    lines = [
        w.pick(
            (
                f"I count the {many} one at a time, going {order[0]}.",
                f"Going {order[0]}, I look for every {topic}.",
                f"To count the {many}, I sweep the image {order[0]}.",
                f"I go through the image {order[0]} and note each {topic}.",
                f"Counting means finding every {topic} once: I scan {order[0]}.",
                f"I scan {order[0]}, stopping at each {topic}.",
                f"I look for each {topic}, working {order[0]}.",
                f"One by one, going {order[0]}, I pick out the {many}.",
                f"Working {order[0]}, I mark every {topic} I come to.",
                f"I move {order[0]} across the image and count the {many} as I meet them.",
            )
        )
    ]
    for i, obj in enumerate(objs):
        lines.append(
            w.pick(
                (
                    f"Number {i + 1} is {w.seen(obj)}.",
                    f"Object {i + 1}: {w.seen(obj)}.",
                    f"Number {i + 1}: {w.seen(obj)}.",
                    f"Count {i + 1}, {w.seen(obj)}.",
                    f"I find {w.seen(obj)}, number {i + 1}.",
                    f"{_cap(w.seen(obj))} makes {i + 1}.",
                )
            )
        )
    if others:  # the categories named, not counted (see ``_Writer.listing``): only the total, which no reading changes
        rest, kinds, total = w.listing(others), w.of_kinds(others), len(view.objects)
        k = _NUMBERS[total] if total < len(_NUMBERS) else total
        lines.append(
            w.pick(
                (
                    f"I count {k} objects in all; the rest, {kinds}, include no {topic}.",
                    f"I count {k} objects in the image, and the rest ({rest}) hold no {topic}.",
                    f"There are {k} objects in the image; among the rest, {kinds}, I find no {topic}.",
                    f"In all I see {k} objects, and the rest, {kinds}, hold no {topic}.",
                    f"I see {k} objects in all, and none of the ones left over ({rest}) is {one}.",
                    f"I find {k} objects in all; none of the others ({rest}) is {one}.",
                    f"I see {k} objects in the image; the others ({rest}) include no {topic}.",
                    f"Counting everything, there are {k} objects; what remains ({rest}) holds no {topic}.",
                    f"I count {k} objects altogether, and not one of the others ({rest}) is {one}.",
                    f"There are {k} objects in the picture; the remaining ones ({rest}) have no {topic} among them.",
                )
            )
        )
    n = len(objs)
    tallies = (
        (
            f"That makes {n}.",
            f"In all I count {n}.",
            f"The tally is {n}.",
            f"So I count {n}.",
            f"Altogether {n}.",
            f"That brings me to {n}.",
            f"My count ends at {n}.",
            f"Final tally: {n}.",
            f"Counted, that is {n}.",
            f"The total comes to {n}.",
            f"That is {n} of them.",
            f"I end up with {n}.",
            f"The last one brings it to {n}.",
            f"No more turn up, so it is {n}.",
            f"I stop at {n}.",
            f"Counting done: {n}.",
            f"All told, {n}.",
        )
        if n
        else (
            "I count none.",
            "That makes none at all.",
            "I find none of them.",
            "So I find none.",
            "None turns up.",
            "There are none to count.",
        )
    )
    lines.append(w.pick(tallies))
    return lines


def _relation_solve(view: _View, task: _Task, objs: list[SceneObject]) -> _Found:
    a, b = objs
    rel = stage1.relation(a, b)
    return _Found(rel, (a.id, b.id), {"rel": rel})


_AXES = {"left": (0, -1), "right": (0, 1), "above": (1, -1), "below": (1, 1)}
_MOVED = {"left": "further left", "right": "further right", "above": "higher up", "below": "lower down"}
_DOWN = (
    "(y grows downwards in the image.)",
    "Here y counts downwards from the top.",
    "Remember that y increases going down.",
    "In image coordinates, a smaller y is higher up.",
)


def _relation_write(w: _Writer, view: _View, found: _Found, route: int) -> list[str]:
    a, b = (view.by_id[i] for i in found.found)
    rel = found.facts["rel"]
    axis, sign = _AXES[rel]
    along, across = ("x", "y") if axis == 0 else ("y", "x")
    lo, hi = (1, 3) if axis == 0 else (0, 2)
    side = "side by side" if axis == 0 else "one above the other"
    na, nb = w.name(a), w.name(b)
    ranges = f"{_n(a.bbox[lo])}–{_n(a.bbox[hi])} and {_n(b.bbox[lo])}–{_n(b.bbox[hi])}"
    lines = [
        w.pick(
            (
                f"Two things to settle: which axis separates the {a.name} and the {b.name}, then in which order "
                "they lie.",
                "I need the axis along which they are apart, and then which of the two comes first along it.",
                "First I check whether they sit side by side or one above the other; then which way round.",
                "A relation has two parts here: the axis that separates them and the order along it.",
                f"To place the {a.name} against the {b.name}, I find the axis they are apart on, then compare.",
            )
        ),
        w.pick(
            (
                f"I find {w.seen(a)}, and {w.seen(b)}.",
                f"{_cap(w.seen(a))}; {w.seen(b)}.",
                f"The {na} is at {w.extent(a)}, the {nb} at {w.extent(b)}.",
                f"I locate both: {w.seen(a)} and {w.seen(b)}.",
            )
        ),
        w.pick(
            (
                f"Their {across} ranges, {ranges}, overlap, so they sit {side}.",
                f"Along {across} they share ground ({ranges}), so they are {side}.",
                f"The {across} ranges {ranges} overlap: they are {side}.",
                f"Since their {across} ranges ({ranges}) overlap, the two are {side}.",
            )
        ),
    ]
    if route == 0:
        ca, cb = a.center[axis], b.center[axis]
        lines.append(
            w.pick(
                (
                    f"The {a.name}'s centre is at {along} = {_n(ca)} and the {b.name}'s at {along} = {_n(cb)}, so "
                    f"the {a.name} is {_MOVED[rel]}.",
                    f"Centres: {along} = {_n(ca)} for the {a.name}, {along} = {_n(cb)} for the {b.name}; the "
                    f"{a.name} is {_MOVED[rel]}.",
                    f"Comparing centres, {_n(ca)} against {_n(cb)} along {along}, the {a.name} is {_MOVED[rel]}.",
                    f"With its centre at {along} = {_n(ca)} against {_n(cb)}, the {a.name} is {_MOVED[rel]}.",
                )
            )
        )
    else:
        edge_a, edge_b = (axis + 2, axis) if sign < 0 else (axis, axis + 2)
        gap = (b.bbox[edge_b] - a.bbox[edge_a]) * -sign
        names = {0: "left edge", 1: "top edge", 2: "right edge", 3: "bottom edge"}
        apart = f"a gap of {_n(gap)} px" if gap >= 0 else f"overlapping by only {_n(-gap)} px"
        ea, eb = f"{along} = {_n(a.bbox[edge_a])}", f"{along} = {_n(b.bbox[edge_b])}"
        lines.append(
            w.pick(
                (
                    f"The {a.name}'s {names[edge_a]} is at {ea} and the {b.name}'s {names[edge_b]} at {eb}, "
                    f"{apart}, with the {a.name} {_MOVED[rel]}.",
                    f"Facing edges: {ea} on the {a.name}, {eb} on the {b.name}, {apart}; the {a.name} is "
                    f"{_MOVED[rel]}.",
                    f"The edges that face each other are at {ea} (the {a.name}) and {eb} (the {b.name}): {apart}, "
                    f"the {a.name} {_MOVED[rel]}.",
                )
            )
        )
    if axis == 1:
        lines.append(w.pick(_DOWN))
    return lines


def _area(obj: SceneObject) -> tuple[int, int, int]:
    """Width, height and area as a reader works them out from the extents shown (whole pixels)."""
    x0, y0, x1, y1 = _box(obj)
    return x1 - x0, y1 - y0, (x1 - x0) * (y1 - y0)


def _size_solve(view: _View, task: _Task, objs: list[SceneObject]) -> _Found:
    a, b = objs
    area_a, area_b = _area(a)[2], _area(b)[2]
    if not area_a or not area_b:
        return _Found(None)
    ratio = math.log2(area_a / area_b)
    if any(abs(ratio - edge) < 0.1 for edge in stage1.SIZE_EDGES):  # too close to an edge to state it plainly
        return _Found(None)
    return _Found(str(sum(ratio > edge for edge in stage1.SIZE_EDGES)), (a.id, b.id))


def _size_write(w: _Writer, view: _View, found: _Found, route: int) -> list[str]:
    a, b = (view.by_id[i] for i in found.found)
    (wa, ha, area_a), (wb, hb, area_b) = _area(a), _area(b)
    na, nb = w.name(a), w.name(b)
    where = _SIZE_WHERE[int(found.value)]
    lines = [
        w.pick(
            (
                "Box areas decide this: I measure both shapes, then divide the first area by the second.",
                f"I need two areas, the {na}'s and the {nb}'s, and their ratio.",
                "Measure each box, multiply its sides, compare.",
                "Two measurements and a division: that is the whole plan.",
                f"The question is how many times the {a.name}'s box would fit into the {b.name}'s, or the reverse.",
            )
        ),
        w.pick(
            (
                f"I find {w.seen(a)}, and {w.seen(b)}.",
                f"{_cap(w.seen(a))}; {w.seen(b)}.",
                f"The {na} is at {w.extent(a)}, the {nb} at {w.extent(b)}.",
            )
        ),
    ]
    if route == 0:
        ratio = area_a / area_b
        lines += [
            w.pick(
                (
                    f"The {na} covers {_n(wa)} × {_n(ha)} = {_n(area_a)} square pixels, the {nb} {_n(wb)} × "
                    f"{_n(hb)} = {_n(area_b)}.",
                    f"Areas: {_n(wa)} × {_n(ha)} = {_n(area_a)} for the {na}, {_n(wb)} × {_n(hb)} = {_n(area_b)} "
                    f"for the {nb}.",
                    f"That gives {_n(area_a)} square pixels ({_n(wa)} × {_n(ha)}) against {_n(area_b)} "
                    f"({_n(wb)} × {_n(hb)}).",
                )
            ),
            w.pick(
                (
                    f"The ratio is {_n(area_a)} / {_n(area_b)} = {ratio:.2f}, which is {where}.",
                    f"{_n(area_a)} / {_n(area_b)} = {ratio:.2f}: {where}.",
                    f"Dividing, {ratio:.2f}, so the ratio is {where}.",
                )
            ),
        ]
    else:
        rw, rh = wa / wb, ha / hb
        lines += [
            w.pick(
                (
                    f"Side by side: the widths are {_n(wa)} and {_n(wb)}, a factor of {rw:.2f}; the heights "
                    f"{_n(ha)} and {_n(hb)}, a factor of {rh:.2f}.",
                    f"Width {_n(wa)} against {_n(wb)} gives {rw:.2f}; height {_n(ha)} against {_n(hb)} gives "
                    f"{rh:.2f}.",
                    f"One side at a time: {_n(wa)}/{_n(wb)} = {rw:.2f} across and {_n(ha)}/{_n(hb)} = {rh:.2f} down.",
                )
            ),
            w.pick(
                (
                    f"Multiplied, {rw:.2f} × {rh:.2f} ≈ {rw * rh:.2f}, which is {where}.",
                    f"So the areas differ by {rw:.2f} × {rh:.2f} ≈ {rw * rh:.2f}: {where}.",
                    f"The product, about {rw * rh:.2f}, is {where}.",
                )
            ),
        ]
    return lines


def _group(view: _View, option: str, anchor: SceneObject) -> list[SceneObject]:
    """The objects a phrase names as perceived: a category, or "colour category"."""
    coloured = " " in option and option.split(" ", 1)[0] in stage1.COLOUR_WORDS
    return [
        o for o in view.objects if o.id != anchor.id and (o.name == option or (coloured and _Writer.name(o) == option))
    ]


def _nearest_solve(view: _View, task: _Task, objs: list[SceneObject]) -> _Found:
    anchor = objs[0]
    gaps = {}
    for option in task.params["options"]:
        group = _group(view, option, anchor)
        if group:
            gaps[option] = min((stage1.gap(anchor, o), o.id) for o in group)
    ranked = sorted(gaps.items(), key=lambda item: item[1][0])
    if len(gaps) < len(task.params["options"]) or ranked[1][1][0] - ranked[0][1][0] < 3 or ranked[0][1][0] <= 0:
        return _Found(None)  # an option not found at all, or two about as near
    return _Found(ranked[0][0], (anchor.id,), {"gaps": ranked})


def _separation(anchor: SceneObject, obj: SceneObject) -> tuple[float, float]:
    ax0, ay0, ax1, ay1 = anchor.bbox
    bx0, by0, bx1, by1 = obj.bbox
    return max(0.0, bx0 - ax1, ax0 - bx1), max(0.0, by0 - ay1, ay0 - by1)


def _gap_line(w: _Writer, anchor: SceneObject, obj: SceneObject, what: str, gap: float, route: int) -> str:
    if route == 0:
        return w.pick(
            (
                f"{_cap(w.seen(obj, what))} is {_n(gap)} px away.",
                f"{_cap(what)} at {w.extent(obj)}: a gap of {_n(gap)} px.",
                f"From there to {w.seen(obj, what)} is {_n(gap)} px.",
                f"The gap to {w.seen(obj, what)} measures {_n(gap)} px.",
            )
        )
    dx, dy = _separation(anchor, obj)
    return w.pick(
        (
            f"{_cap(w.seen(obj, what))} is {_n(dx)} px off sideways and {_n(dy)} px up or down, a gap of {_n(gap)} "
            "px.",
            f"{_cap(what)} at {w.extent(obj)}: {_n(dx)} px across, {_n(dy)} px vertically, so {_n(gap)} px.",
            f"To {w.seen(obj, what)}: {_n(dx)} px horizontally and {_n(dy)} px vertically, which is {_n(gap)} px.",
        )
    )


def _nearest_write(w: _Writer, view: _View, found: _Found, route: int) -> list[str]:
    anchor = view.by_id[found.found[0]]
    lines = [
        w.pick(
            (
                f"I measure the gap from the {anchor.name}'s box to the nearest edge of each option, then take the "
                "smallest.",
                "Each option gets one number, its gap to the anchor; the smallest wins.",
                "The plan: locate the anchor, measure every option's gap to it, compare.",
                "Distance here is the gap between outlines, so I measure one gap per option.",
                f"I go from the {anchor.name} to each option in turn and note how far it is.",
            )
        ),
        w.pick(
            (
                f"I locate {w.seen(anchor)}.",
                f"The {anchor.name} is at {w.extent(anchor)}.",
                f"First the anchor: {w.seen(anchor)}.",
            )
        ),
    ]
    ranked = found.facts["gaps"] if route == 1 else sorted(found.facts["gaps"], key=lambda item: item[0])
    for option, (gap, obj_id) in ranked:
        lines.append(_gap_line(w, anchor, view.by_id[obj_id], f"the {option}", gap, route))
    best = found.facts["gaps"][0][1][0]
    lines.append(
        w.pick(
            (
                f"The smallest gap is {_n(best)} px.",
                f"Nothing is closer than {_n(best)} px.",
                f"The shortest of these is {_n(best)} px.",
                f"The least of the gaps is {_n(best)} px.",
            )
        )
    )
    return lines


def _presence_solve(view: _View, task: _Task, objs: list[SceneObject]) -> _Found:
    options, wanted = task.params["options"], task.params["present"]
    present = [option for option in options if any(o.name == option for o in view.objects)]
    picked = [option for option in options if (option in present) == wanted]
    return _Found(picked[0] if len(picked) == 1 else None, (), {"present": present})


def _presence_write(w: _Writer, view: _View, found: _Found, route: int) -> list[str]:
    options, present = found.facts["options"], found.facts["present"]
    everything = list(view.objects)
    k, listing, kinds = len(everything), w.listing(everything), w.of_kinds(everything)
    lines = [
        w.pick(
            (
                "I check the four options against what the image holds.",
                "Each option is either in the picture or not; I go through them.",
                "I take stock of the image, then hold each option against it.",
                "Whether something appears is settled by looking for it everywhere.",
                "I need to know what is in the image, all of it, before ruling anything out.",
                "First I list what the picture contains, then I test each option against the list.",
                "To rule options in or out, I survey everything the image shows.",
                "An inventory of the whole image comes first; the options are checked against it.",
                "The plan: find every object in the picture, then see which options match one.",
                "Nothing can be ruled out at a glance, so I go over the full scene.",
                "I scan the picture from corner to corner and note every object.",
                "An option is present when some box in the image is of its kind.",
                "I look over the entire scene before deciding about any option.",
            )
        )
    ]
    if route == 0:
        lines.append(
            w.pick(
                (
                    f"I count {k} objects in the image, {kinds}.",
                    f"Going over the whole image, I count {k} objects, {kinds}.",
                    f"There are {k} objects in all ({listing}).",
                    f"I see {k} objects in the image, {kinds}.",
                    f"All told I count {k} objects ({listing}).",
                    f"I find {k} objects in total, {kinds}.",
                    f"Taking inventory, I count {k} objects, {kinds}.",
                    f"In the whole scene there are {k} objects ({listing}).",
                    f"Scanning the whole picture, I find {k} objects ({listing}).",
                )
            )
        )
        for option in options:
            here = [o for o in everything if o.name == option]
            if here:
                lines.append(
                    w.pick(
                        (
                            f"There is {w.seen(here[0], article(option) + ' ' + option)}.",
                            f"{_cap(w.seen(here[0], 'the ' + option))} is one of them.",
                            f"Among them, {w.seen(here[0], article(option) + ' ' + option)}.",
                            f"One of them is {w.seen(here[0], article(option) + ' ' + option)}.",
                            f"The list includes {w.seen(here[0], article(option) + ' ' + option)}.",
                            f"I can point to {w.seen(here[0], 'the ' + option)}.",
                        )
                    )
                )
        missing = [f"{article(m)} {m}" for m in options if m not in present]
        if missing:
            lines.append(
                w.pick(
                    (
                        f"None of those {k} is {_joined(missing, 'or')}.",
                        f"Nothing among the {k} is {_joined(missing, 'or')}.",
                        f"Of the {k}, not one is {_joined(missing, 'or')}.",
                        f"Not one of the {k} objects is {_joined(missing, 'or')}.",
                        f"The {k} objects include nothing that is {_joined(missing, 'or')}.",
                        f"Among the {k} I find no match for {_joined(missing, 'or')}.",
                    )
                )
            )
        return lines
    for option in options:
        here = [o for o in everything if o.name == option]
        one = f"{article(option)} {option}"
        if here:
            lines.append(
                w.pick(
                    (
                        f"As for {one}, there is one at {w.extent(here[0])}.",
                        f"I find {one} at {w.extent(here[0])}.",
                        f"{_cap(one)} is there, at {w.extent(here[0])}.",
                        f"{_cap(one)} shows up at {w.extent(here[0])}.",
                        f"There is {one} at {w.extent(here[0])}.",
                        f"Checking for {one}: found, at {w.extent(here[0])}.",
                    )
                )
            )
        else:
            lines.append(
                w.pick(
                    (
                        f"As for {one}, I count {k} objects ({listing}) and none is one.",
                        f"Looking for {one}, I count {k} objects, {kinds}, and none of them fits.",
                        f"I count {k} objects ({listing}) and none is {one}.",
                        f"I see {k} objects, {kinds}, and not one is {one}.",
                        f"There are {k} objects here ({listing}); none of them is {one}.",
                        f"I count {k} objects, {kinds}; {one} is not among them.",
                        f"Searching for {one}, I see {k} objects ({listing}) and nothing of the kind.",
                        f"Checking for {one}, I see {k} objects ({listing}) and none is one.",
                        f"For {one}: there are {k} objects ({listing}), and none is one.",
                        f"I find {k} objects ({listing}); not one is {one}.",
                        f"Looking for {one}, I see {k} objects, {kinds}, and find none.",
                        f"There are {k} objects, {kinds}, so there is no {option}.",
                    )
                )
            )
    return lines


def _colour_solve(view: _View, task: _Task, objs: list[SceneObject]) -> _Found:
    colour = stage1.colour_of(objs[0])
    return _Found(colour, (objs[0].id,))


def _colour_write(w: _Writer, view: _View, found: _Found, route: int) -> list[str]:
    obj = view.by_id[found.found[0]]
    colour = found.value
    others = sorted(
        (o for o in view.objects if o.id != obj.id and stage1.colour_of(o)), key=lambda o: stage1.gap(obj, o)
    )
    lines = [
        w.pick(
            (
                f"First I find the {obj.name}, then I read its fill.",
                f"I locate the {obj.name} and look at the colour inside its outline.",
                "Finding the object comes first, its colour second.",
                f"Where is the {obj.name}, and what fills it: two steps.",
                "I find the object, then compare its colour with its neighbours'.",
            )
        ),
        w.pick(
            (
                f"I find {w.seen(obj, 'the ' + obj.name)}.",
                f"The {obj.name} is at {w.extent(obj)}.",
                f"There it is: {w.seen(obj, 'the ' + obj.name)}.",
            )
        ),
    ]
    cx, cy = obj.center
    if route == 0:
        lines.append(
            w.pick(
                (
                    f"Its fill is {colour}.",
                    f"The inside of it is {colour}.",
                    f"It is filled in {colour}.",
                    f"The colour inside the outline is {colour}.",
                )
            )
        )
    else:
        lines.append(
            w.pick(
                (
                    f"At its centre, around ({_n(cx)}, {_n(cy)}), the colour is {colour}.",
                    f"Sampling the middle of it, near ({_n(cx)}, {_n(cy)}), I get {colour}.",
                    f"Around ({_n(cx)}, {_n(cy)}), in the middle of it, the fill reads {colour}.",
                )
            )
        )
    if others:
        near = _joined([f"the {o.name} at {w.extent(o)} is {stage1.colour_of(o)}" for o in others[:2]])
        lines.append(
            w.pick(
                (
                    f"For comparison, {near}.",
                    f"Next to it, {near}.",
                    f"Against its neighbours: {near}.",
                )
            )
        )
    return lines


def _size_word(obj: SceneObject, scene: Scene) -> str:
    share = _area(obj)[2] / (scene.width * scene.height)
    return next(word for word, limit in SIZE_WORDS if share < limit)


def _attribute_solve(view: _View, task: _Task, objs: list[SceneObject]) -> _Found:
    obj, options = objs[0], task.params["options"]
    if task.params["sized"]:
        return _Found(_size_word(obj, view.scene), (obj.id,))
    own = [a for a in obj.attributes if a in options]
    return _Found(own[0] if len(own) == 1 else None, (obj.id,))


def _attribute_write(w: _Writer, view: _View, found: _Found, route: int) -> list[str]:
    obj, scene = view.by_id[found.found[0]], view.scene
    seen = w.pick((f"I find {w.seen(obj, 'the ' + obj.name)}.", f"The {obj.name} is at {w.extent(obj)}."))
    if not found.facts.get("sized"):
        return [
            seen,
            w.pick(
                (
                    f"Looking at it closely, it is {found.value}.",
                    f"It is clearly {found.value}.",
                    f"Up close, {found.value} is the word for it.",
                )
            ),
        ]
    width, height, area = _area(obj)
    share = 100 * area / (scene.width * scene.height)
    small, medium = (100 * limit for _, limit in SIZE_WORDS[:2])
    lines = [
        w.pick(
            (
                "Its size word follows from the share of the image its box covers.",
                "To name its size I measure how much of the image it takes up.",
                "Size words here go by the share of the image a shape covers, so I measure that.",
            )
        ),
        seen,
    ]
    if route == 0:
        lines.append(
            f"It covers {_n(width)} × {_n(height)} = {_n(area)} of the {scene.width} × {scene.height} = "
            f"{_n(scene.width * scene.height)} square pixels, about {share:.1f}%."
        )
    else:
        lines.append(
            f"Its width is {100 * width / scene.width:.1f}% of the image's and its height "
            f"{100 * height / scene.height:.1f}%, so it covers about {share:.1f}%."
        )
    lines.append(
        w.pick(
            (
                f"Shapes here are small below {small:.1f}% of the image and large above {medium:.1f}%, so it is "
                f"{found.value}.",
                f"With small meaning under {small:.1f}% and large over {medium:.1f}%, that is {found.value}.",
                f"The cut-offs are {small:.1f}% and {medium:.1f}%, which makes it {found.value}.",
            )
        )
    )
    return lines


def _location_solve(view: _View, task: _Task, objs: list[SceneObject]) -> _Found:
    where = stage1.quadrant(objs[0], view.scene.width, view.scene.height)
    return _Found(where, (objs[0].id,))


def _location_write(w: _Writer, view: _View, found: _Found, route: int) -> list[str]:
    obj, scene = view.by_id[found.found[0]], view.scene
    mx, my = scene.width / 2, scene.height / 2
    vertical, horizontal = found.value.split()
    x0, y0, x1, y1 = _box(obj)
    lines = [
        w.pick(
            (
                "Two parts: left or right of the vertical midline, then above or below the horizontal one.",
                "I settle the horizontal half first and the vertical half second.",
                "The answer has two halves to it, one per axis.",
                "A quarter of the image is a choice on each axis, so I make both.",
                "I compare the object with the two midlines, one at a time.",
            )
        ),
        w.pick(
            (
                f"The image is {scene.width} × {scene.height} pixels, so the midlines are x = {_n(mx)} and "
                f"y = {_n(my)}.",
                f"With a {scene.width} × {scene.height} image, the middle is at x = {_n(mx)}, y = {_n(my)}.",
                f"Halfway across is x = {_n(mx)} and halfway down y = {_n(my)} ({scene.width} × {scene.height} "
                "pixels).",
                f"The midlines of this {scene.width} × {scene.height} image: x = {_n(mx)}, y = {_n(my)}.",
            )
        ),
    ]
    seen = w.pick(
        (
            f"I find {w.seen(obj, 'the ' + obj.name)}.",
            f"The {obj.name} is at {w.extent(obj)}.",
            f"There is the {obj.name}, {w.extent(obj)}.",
        )
    )
    if route == 0:
        cx, cy = obj.center
        lines += [
            f"{seen[:-1]}, centred at ({_n(cx)}, {_n(cy)}).",
            w.pick(
                (
                    f"{_n(cx)} is {'less' if cx < mx else 'more'} than {_n(mx)}, so it is on the {horizontal}; "
                    f"{_n(cy)} is {'less' if cy < my else 'more'} than {_n(my)}, so it is in the {vertical} half.",
                    f"Across, {_n(cx)} against {_n(mx)} puts it on the {horizontal}; down, {_n(cy)} against "
                    f"{_n(my)} puts it in the {vertical} half.",
                    f"Its centre is {'left' if cx < mx else 'right'} of x = {_n(mx)} and "
                    f"{'above' if cy < my else 'below'} y = {_n(my)}: the {horizontal} side, the {vertical} half.",
                )
            ),
        ]
    else:
        lines += [
            seen,
            w.pick(
                (
                    f"Its x range {x0}–{x1} lies mostly {'left' if horizontal == 'left' else 'right'} of "
                    f"x = {_n(mx)}, and its y range {y0}–{y1} mostly {'above' if vertical == 'top' else 'below'} "
                    f"y = {_n(my)}: the {horizontal} side, the {vertical} half.",
                    f"Edge by edge: x {x0} to {x1} sits {'left' if horizontal == 'left' else 'right'} of the "
                    f"vertical midline, y {y0} to {y1} {'above' if vertical == 'top' else 'below'} the horizontal "
                    f"one, so the {horizontal} side and the {vertical} half.",
                )
            ),
        ]
    lines.append(w.pick(_DOWN))
    return lines


# stage-2 steps: each finds an object (or several) for the next, or gives the last value


def _find_solve(view: _View, task: _Task, objs: list[SceneObject]) -> _Found:
    anchor, rel = objs[0], task.params["rel"]
    side = [o for o in view.objects if o.id != anchor.id and _side(o, anchor, rel)]
    fits = [o for o in side if stage2._could_be(o, anchor, rel)]
    facts = {"anchor": anchor.id, "side": [o.id for o in side]}
    if task.params["all"]:
        value = _joined([f"the {_Writer.name(o)}" for o in fits]) if fits else None
        return _Found(value, tuple(o.id for o in fits), facts)
    if len(fits) != 1:
        return _Found(None)
    return _Found(_Writer.name(fits[0]), (fits[0].id,), facts)


def _side(obj: SceneObject, anchor: SceneObject, rel: str) -> bool:
    (ox, oy), (ax, ay) = obj.center, anchor.center
    return {"left": ox < ax, "right": ox > ax, "above": oy < ay, "below": oy > ay}[rel]


_REL_WORDS = {"left": "to the left of", "right": "to the right of", "above": "above", "below": "below"}
_OTHER_AXIS = {
    "left": ("above", "below"),
    "right": ("above", "below"),
    "above": ("left", "right"),
    "below": ("left", "right"),
}


def _anchor_line(w: _Writer, anchor: SceneObject, along: str, centre: float) -> str:
    return w.pick(
        (
            f"I find {w.seen(anchor)}; its centre is at {along} = {_n(centre)}.",
            f"{_cap(w.seen(anchor))}, centred at {along} = {_n(centre)}.",
            f"The {w.name(anchor)} sits at {w.extent(anchor)}, its centre at {along} = {_n(centre)}.",
        )
    )


def _find_write(w: _Writer, view: _View, found: _Found, route: int) -> list[str]:
    anchor, rel = view.by_id[found.facts["anchor"]], found.facts["rel"]
    axis = _AXES[rel][0]
    along = "x" if axis == 0 else "y"
    c = anchor.center[axis]
    side = [view.by_id[i] for i in found.facts["side"]]
    if route == 1:
        side.sort(key=lambda o: abs(o.center[axis] - c))
    lines = [_anchor_line(w, anchor, along, c)]
    if not side:
        lines.append(f"No object has its centre {_REL_WORDS[rel]} {along} = {_n(c)}.")
    for obj in side:
        clear = stage1.relation(obj, anchor)
        centre = f"centre {along} = {_n(obj.center[axis])}"
        if clear in _OTHER_AXIS[rel]:
            lines.append(
                w.pick(
                    (
                        f"{_cap(w.seen(obj))} ({centre}) sits clearly {_REL_WORDS[clear]} it instead.",
                        f"{_cap(w.seen(obj))} has its {centre}, but it is plainly {_REL_WORDS[clear]} it, not "
                        f"{_REL_WORDS[rel]} it.",
                        f"{_cap(w.seen(obj))}: {centre}, yet clearly {_REL_WORDS[clear]} it rather than "
                        f"{_REL_WORDS[rel]} it.",
                    )
                )
            )
        else:
            lines.append(
                w.pick(
                    (
                        f"{_cap(w.seen(obj))} ({centre}) is {_REL_WORDS[rel]} it.",
                        f"{_cap(w.seen(obj))}: {centre}, {_REL_WORDS[rel]} it.",
                        f"With its {centre}, {w.seen(obj)} lies {_REL_WORDS[rel]} it.",
                    )
                )
            )
    return lines


def _filter_solve(view: _View, task: _Task, objs: list[SceneObject]) -> _Found:
    anchor, candidates, rel = objs[0], objs[1:], task.params["rel"]
    fits = [o for o in candidates if o.id != anchor.id and stage2._could_be(o, anchor, rel)]
    if len(fits) != 1:
        return _Found(None)
    facts = {"anchor": anchor.id, "candidates": [o.id for o in candidates]}
    return _Found(_Writer.name(fits[0]), (fits[0].id,), facts)


def _filter_write(w: _Writer, view: _View, found: _Found, route: int) -> list[str]:
    anchor, rel = view.by_id[found.facts["anchor"]], found.facts["rel"]
    axis = _AXES[rel][0]
    along = "x" if axis == 0 else "y"
    lines = [_anchor_line(w, anchor, along, anchor.center[axis])]
    for obj in (view.by_id[i] for i in found.facts["candidates"] if i != anchor.id):
        yes = obj.id in found.found
        centre = f"{along} = {_n(obj.center[axis])}"
        verdict = _REL_WORDS[rel] if yes else f"not {_REL_WORDS[rel]}"
        # Left out although its centre may lie on the asked side: it is clearly on the other axis (as ``find`` says).
        other = None if yes else stage1.relation(obj, anchor)
        if other in _OTHER_AXIS[rel]:
            clear, asked = _REL_WORDS[other], _REL_WORDS[rel]
            phrasings = (
                f"The {w.name(obj)}, centred at {centre}, sits clearly {clear} it, not {asked} it.",
                f"{_cap(w.the(obj))} ({centre}): no, it is plainly {clear} it.",
                f"With its centre at {centre}, the {w.name(obj)} is clearly {clear} it rather than {asked} it.",
            )
        else:
            phrasings = (
                f"The {w.name(obj)}, centred at {centre}, is {verdict} it.",
                f"{_cap(w.the(obj))} ({centre}): {'yes' if yes else 'no'}, {verdict} it.",
                f"With its centre at {centre}, the {w.name(obj)} is {verdict} it.",
            )
        lines.append(w.pick(phrasings))
    return lines


def _extreme_solve(view: _View, task: _Task, objs: list[SceneObject]) -> _Found:
    same = [o for o in view.objects if o.name == task.params["kind"]]
    areas = sorted(((_area(o)[2], o.id) for o in same), reverse=task.params["most"] == "largest")
    if len(areas) < 2 or areas[0][0] == areas[1][0]:
        return _Found(None)
    return _Found(_Writer.name(view.by_id[areas[0][1]]), (areas[0][1],), {"same": [o.id for o in same]})


def _extreme_write(w: _Writer, view: _View, found: _Found, route: int) -> list[str]:
    same = [view.by_id[i] for i in found.facts["same"]]
    if route == 1:
        same.sort(key=lambda o: _area(o)[2])
    kind, count = found.facts["kind"], _NUMBERS[len(same)] if len(same) < len(_NUMBERS) else len(same)
    parts = [f"{w.seen(o)} covers {_n(_area(o)[0])} × {_n(_area(o)[1])} = {_n(_area(o)[2])}" for o in same]
    return [
        w.pick(
            (
                f"There are {count} {plural(kind)}.",
                f"I find {count} {plural(kind)}.",
                f"The image has {count} {plural(kind)}, and I measure each.",
            )
        ),
        w.pick((f"By box area, {'; '.join(parts)}.", f"Their areas: {'; '.join(parts)}.")),
    ]


def _closest_solve(view: _View, task: _Task, objs: list[SceneObject]) -> _Found:
    anchor = objs[0]
    gaps = sorted((stage1.gap(anchor, o), o.id) for o in view.objects if o.id != anchor.id)
    if len(gaps) < 2 or gaps[0][0] <= 0 or gaps[1][0] - gaps[0][0] < 3:
        return _Found(None)
    return _Found(_Writer.name(view.by_id[gaps[0][1]]), (gaps[0][1],), {"anchor": anchor.id, "gaps": gaps})


def _closest_write(w: _Writer, view: _View, found: _Found, route: int) -> list[str]:
    anchor, gaps = view.by_id[found.facts["anchor"]], found.facts["gaps"]
    lines = [
        w.pick(
            (
                f"I find {w.seen(anchor)}.",
                f"{_cap(w.seen(anchor))} is where I measure from.",
                f"From {w.seen(anchor)} I measure to every other object.",
            )
        )
    ]
    shown = gaps[:3]
    for gap, obj_id in shown:
        obj = view.by_id[obj_id]
        lines.append(_gap_line(w, anchor, obj, w.the(obj), gap, route))
    rest = len(gaps) - len(shown)
    if rest:
        count = _NUMBERS[rest] if rest < len(_NUMBERS) else rest
        lines.append(
            w.pick(
                (
                    f"The other {count} objects are all more than {_n(shown[-1][0])} px away."
                    if rest > 1
                    else f"The other object is more than {_n(shown[-1][0])} px away.",
                    f"Everything else is farther than {_n(shown[-1][0])} px.",
                    f"The remaining {count} {'lie' if rest > 1 else 'lies'} beyond {_n(shown[-1][0])} px.",
                )
            )
        )
    return lines


def _sizes_solve(view: _View, task: _Task, objs: list[SceneObject]) -> _Found:
    found = _size_solve(view, task, objs)
    return found if found.value is None else _Found(stage2.SIZE_OPTIONS[int(found.value)], found.found)


def _sizes_write(w: _Writer, view: _View, found: _Found, route: int) -> list[str]:
    index = str(stage2.SIZE_OPTIONS.index(found.value))
    return _size_write(w, view, _Found(index, found.found), route)


_STEPS: dict[str, tuple[Callable, Callable]] = {
    "count": (_count_solve, _count_write),
    "relation": (_relation_solve, _relation_write),
    "size": (_size_solve, _size_write),
    "sizes": (_sizes_solve, _sizes_write),
    "nearest": (_nearest_solve, _nearest_write),
    "presence": (_presence_solve, _presence_write),
    "colour": (_colour_solve, _colour_write),
    "attribute": (_attribute_solve, _attribute_write),
    "location": (_location_solve, _location_write),
    "find": (_find_solve, _find_write),
    "filter": (_filter_solve, _filter_write),
    "extreme": (_extreme_solve, _extreme_write),
    "closest": (_closest_solve, _closest_write),
}


# ---- a question as a program of steps ----


@dataclass
class _Program:
    """A question worked out as ``tasks`` in order; ``answer`` turns their findings into an option's text (None when
    the view gives none), ``steps`` are the composite's forward steps (empty at stage 1), ``subject`` what the
    question is about (for the conclusion)."""

    template: str
    tasks: list[_Task]
    answer: Callable[[list[_Found], _View], str | None]
    steps: list[dict] = field(default_factory=list)
    subject: str = ""


def _tail(options: list[str], prefix: str) -> str:
    """The object phrase ending a relation or size option ("to the left of the square" -> "square")."""
    for option in options:
        if option.startswith(prefix):
            return option[len(prefix) :]
    return ""


@cache
def _count_patterns() -> tuple[re.Pattern, ...]:
    return tuple(
        re.compile("^" + re.escape(w).replace(re.escape("{p}"), "(?P<p>.+?)") + "$") for w in stage1.WORDINGS["count"]
    )


def _count_topic(mcq: dict) -> str | None:
    """The category a stage-1 count asks about: its instances' name, or (a count of 0 has none) its question's."""
    if mcq["grounding"]:
        return mcq["grounding"][0]["name"]
    for pattern in _count_patterns():
        match = pattern.match(mcq["question"])
        if match:
            return from_plural(match["p"])
    return None


def _value(found: list[_Found], view: _View) -> str | None:
    return found[-1].value


def _stage1_program(mcq: dict, template: str, scene: Scene) -> _Program | None:
    options, refs = list(mcq["options"]), tuple(g["object_id"] for g in mcq["grounding"])
    subject = mcq["grounding"][0]["name"] if mcq["grounding"] else ""
    if template == "count":
        topic = _count_topic(mcq)
        return _Program(template, [_Task("count", (), {"topic": topic})], _value, subject=topic) if topic else None
    if template in ("relation", "size") and len(refs) == 2:
        if template == "relation":
            tail = _tail(options, "to the left of the ")

            def answer(found, view):
                rel = found[-1].value
                return None if rel is None else f"{stage1.RELATION_PHRASES[rel]} the {tail}"

        else:
            tail = _tail(options, "more than three times the size of the ")

            def answer(found, view):
                index = found[-1].value
                return None if index is None else stage1.SIZE_BINS[int(index)].format(b=tail)

        return _Program(template, [_Task(template, refs)], answer, subject=subject) if tail else None
    if template == "distance" and refs:
        return _Program(template, [_Task("nearest", refs[:1], {"options": options})], _value, subject=subject)
    if template in ("existence", "absence"):
        task = _Task("presence", (), {"options": options, "present": template == "existence"})
        return _Program(template, [task], _value)
    if template in ("colour", "location") and refs:
        return _Program(template, [_Task(template, refs[:1])], _value, subject=subject)
    if template == "attribute" and refs:
        gold = options[LETTERS.index(mcq["answer"])]
        obj = next(o for o in scene.objects if o.id == refs[0])
        sized = gold in dict(SIZE_WORDS) and _size_word(obj, scene) == gold
        return _Program(
            template, [_Task("attribute", refs[:1], {"options": options, "sized": sized})], _value, subject=subject
        )
    return None


def _step_task(step: dict) -> _Task | None:
    """A composite's forward step as a task, from its structured fields."""
    kind, _, parameter = step["template"].partition("_")
    ids = tuple(step["object_ids"])
    if kind == "find" and parameter in _AXES:
        return _Task("find", ids, {"rel": parameter, "all": False})
    if kind == "all" and parameter in _AXES:
        return _Task("find", ids, {"rel": parameter, "all": True})
    if kind == "filter" and parameter in _AXES:
        return _Task("filter", ids, {"rel": parameter})
    if step["template"] == "find_nearest":
        return _Task("closest", ids)
    if kind == "find" and parameter in ("largest", "smallest"):
        return _Task("extreme", ids, {"kind": step["category"], "most": parameter})
    if step["template"] in ("colour", "location"):
        return _Task(step["template"], ids)
    if step["template"] == "count":
        return _Task("count", (), {"topic": step["category"]})
    if step["template"] == "size":
        return _Task("sizes", ids)
    return None


def _stage2_program(mcq: dict, template: str) -> _Program | None:
    steps = [step for step in mcq["steps"] if isinstance(step, dict) and step.get("template")]
    tasks = [_step_task(step) for step in steps]
    if not steps or None in tasks or len(steps) != len(mcq["steps"]):
        return None
    options = list(mcq["options"])

    def answer(found: list[_Found], view: _View) -> str | None:
        values = [f.value for f in found]
        if template in ("set_count", "comparison_count"):
            total = int(values[0]) + int(values[1]) if template == "set_count" else int(values[0]) - int(values[1])
            return str(total)
        if template == "conjunction":
            obj = view.by_id[found[-1].found[0]]
            return next((o for o in options if o in (obj.name, _Writer.name(obj))), None)
        return values[-1]

    return _Program(template, tasks, answer, steps)


def _program(mcq: dict, scene: Scene) -> _Program | None:
    written = parse_generator(mcq["generator"])
    if mcq.get("level", 1) >= 2:
        return _stage2_program(mcq, written.template) if written.stage == "stage2" else None
    return _stage1_program(mcq, written.template, scene) if written.stage == "stage1" else None


def _run(program: _Program, view: _View) -> tuple[list[_Found], str | None]:
    """Every step over ``view``, each finding what the next looks at; the option text the findings give, or None."""
    found: list[_Found] = []
    bound: dict[int, int] = {}  # an object a step found (by its true id) -> the object found over this view
    sets: dict[tuple, tuple] = {}  # the objects an "all" step found, true ids -> over this view
    for index, task in enumerate(program.tasks):
        refs = task.refs
        if task.kind == "filter" and tuple(refs[1:]) in sets:
            refs = (refs[0], *sets[tuple(refs[1:])])
            objs = [view.who(refs[0]) if refs[0] not in bound else view.by_id[bound[refs[0]]]]
            objs += [view.by_id[i] for i in refs[1:]]
        else:
            objs = [view.by_id[bound[i]] if i in bound else view.who(i) for i in refs]
        result = _STEPS[task.kind][0](view, task, objs)
        if result.value is None:
            return found, None
        result.facts = {**task.params, **result.facts}
        found.append(result)
        if program.steps:
            answer_ids = tuple(program.steps[index]["answer_ids"])
            if len(answer_ids) == 1 and len(result.found) == 1:
                bound[answer_ids[0]] = result.found[0]
            if answer_ids:
                sets[answer_ids] = result.found
    try:
        return found, program.answer(found, view)
    except (ValueError, IndexError):
        return found, None


def _slips_for(program: _Program, scene: Scene) -> list[_Slip]:
    """The misperceptions that can touch what each step looks at: the objects it names taken for confusable ones,
    extents misread where sizes and positions are measured, colours confused, categories confused where objects are
    counted or looked for."""
    objects = [obj for obj in scene.objects if not obj.crowd]
    by_id = {obj.id: obj for obj in objects}
    names = sorted({obj.name for obj in objects})
    found: dict[_Slip, None] = {}

    counts = Counter(obj.name for obj in objects)

    def exchange(ref: int) -> None:
        """The wrong object taken for a named one, so that it is seen as the question names it: one category in
        two colours (the colours exchanged), two categories each alone of its kind or of one colour (the
        categories), or of colours a glance confuses (both)."""
        if ref in by_id:
            one = by_id[ref]
            for other in objects:
                if other.id == ref or not _confusable(one, other):
                    continue
                if one.name == other.name:
                    value = "colour"
                elif counts[one.name] == counts[other.name] == 1 or stage1.colour_of(one) == stage1.colour_of(other):
                    value = "name"
                elif _neighbours(one, other):
                    value = "both"
                else:
                    continue
                found[_Slip("exchange", tuple(sorted((ref, other.id))), value)] = None

    def rename(obj: SceneObject, into: list[str]) -> None:
        for name in into:
            if _alike(obj.name, name) or (_alike(obj.name, name) is None and name != obj.name):
                found[_Slip("rename", (obj.id,), name)] = None

    def reshape(ref: int) -> None:
        if ref in by_id:
            for box in _misread_boxes(by_id[ref], scene):
                found[_Slip("reshape", (ref,), box)] = None

    for task in program.tasks:
        refs = [ref for ref in task.refs if ref in by_id]
        if task.kind == "count":
            topic = task.params["topic"]
            others = sorted(set(names) - {topic})  # sorted: a set's order changes per process
            for obj in objects:
                rename(obj, [topic] if obj.name != topic else others)
        elif task.kind == "presence":
            options = task.params["options"]
            for obj in objects:
                if obj.name in options:
                    rename(obj, [o for o in options if o != obj.name])
        elif task.kind == "nearest":
            for obj in objects:
                if obj.name in task.params["options"] or _Writer.name(obj) in task.params["options"]:
                    rename(obj, [n for n in _group_names(obj.name) if n != obj.name])
                    reshape(obj.id)
        elif task.kind == "extreme":
            for obj in objects:
                if obj.name == task.params["kind"]:
                    reshape(obj.id)
        for ref in refs:
            exchange(ref)
            if task.kind in ("size", "sizes", "location", "extreme", "closest") or task.params.get("sized"):
                reshape(ref)
            if task.kind == "colour":
                colour = stage1.colour_of(by_id[ref])
                for other in NEIGHBOUR_COLOURS.get(colour or "", ()):
                    found[_Slip("recolour", (ref,), other)] = None
    return list(found)


def _group_names(name: str) -> list[str]:
    return sorted({other for group in LOOKALIKES if name in group for other in group})


@dataclass
class _Case:
    """An MCQ worked out: its program, the gold option, and per wrong option the slips that lead there."""

    program: _Program
    scene: Scene
    options: list[str]
    gold: int
    wrong: dict[int, list[_Slip]]
    slips: list[_Slip]  # every misperception considered
    # per slip in ``wrong``, how it changes the objects the steps find and the kinds of object seen: -1 fewer (an
    # object missed, a kind merged into another), +1 more (an object taken for what it is not, a kind made up)
    shift: dict[_Slip, tuple[int, int]]


def _case(mcq: dict, scene: Scene) -> _Case | None:
    program = _program(mcq, scene)
    if program is None:
        return None
    options, gold = list(mcq["options"]), LETTERS.index(mcq["answer"])
    truth = _View(scene)
    found, answer = _run(program, truth)
    if answer != options[gold]:  # the boxes do not give the gold letter this way: the generic reasoning
        return None
    seen = _seen(truth, found)
    wrong: dict[int, list[_Slip]] = {}
    shift: dict[_Slip, tuple[int, int]] = {}
    slips = _slips_for(program, scene)
    for slip in slips:
        view = _View(scene, slip)
        found, answer = _run(program, view)
        if answer in options and answer != options[gold]:
            wrong.setdefault(options.index(answer), []).append(slip)
            shift[slip] = tuple((a > b) - (a < b) for a, b in zip(_seen(view, found), seen, strict=True))
    return _Case(program, scene, options, gold, wrong, slips, shift)


def _seen(view: _View, found: list[_Found]) -> tuple[int, int]:
    """How many objects the steps found over ``view``, and how many kinds of object it holds."""
    return sum(len(result.found) for result in found), len({obj.name for obj in view.objects})


# ---- writing a pass over a view ----

_STEP_HEADS = (
    ("First", "Second", "Third", "Fourth", "Fifth", "Sixth"),
    ("Step one", "Step two", "Step three", "Step four", "Step five", "Step six"),
    ("To begin", "Next", "Then", "After that", "Next", "Finally"),
    (
        "Sub-question one",
        "Sub-question two",
        "Sub-question three",
        "Sub-question four",
        "Sub-question five",
        "Sub-question six",
    ),
)
_CONCLUSIONS = {
    "count": (
        "So there {be} {n} {many}.",
        "The image shows {n} {many}.",
        "So the count is {n}.",
        "The answer is {n}.",
        "That is {n} in all.",
        "There {be} {n} {many} in the image, then.",
        "My count comes to {n}.",
        "In the end the number is {n}.",
    ),
    "relation": (
        "So the {a} is {opt}.",
        "That puts the {a} {opt}.",
        "The {a} lies {opt}.",
        "Hence the {a} is {opt}.",
        "The answer: the {a} is {opt}.",
    ),
    "size": (
        "So the {a} is {opt}.",
        "The {a} is therefore {opt}.",
        "By area, the {a} is {opt}.",
        "Hence the {a} is {opt}.",
    ),
    "distance": (
        "So the {opt} is closest to the {a}.",
        "The nearest of the options is the {opt}.",
        "Of the options, the {opt} lies nearest the {a}.",
        "Hence the closest one is the {opt}.",
    ),
    "existence": (
        "So the {opt} is the one in the image.",
        "Of the four, only the {opt} appears.",
        "The option present is the {opt}.",
        "Hence the answer is the {opt}.",
        "The {opt} is there; the other three are not.",
        "That leaves the {opt} as the one I can see.",
        "The one I can find in the image is the {opt}.",
        "Only the {opt} is actually in the picture.",
        "That makes the {opt} the option that appears.",
        "The {opt} is present, so it is the answer.",
    ),
    "absence": (
        "So the {opt} does not appear.",
        "The {opt} is the one missing.",
        "The option not in the image is the {opt}.",
        "Hence the answer is the {opt}.",
        "Nowhere in the picture do I find the {opt}.",
        "The three others are there, the {opt} is not.",
        "The {opt} is nowhere to be seen.",
        "Only the {opt} is absent.",
        "That makes the {opt} the option that does not appear.",
        "The {opt} is missing, so it is the answer.",
    ),
    "colour": (
        "So the {a} is {opt}.",
        "Its colour is {opt}.",
        "The {a}'s colour: {opt}.",
        "Hence the answer is {opt}.",
    ),
    "attribute": (
        "So '{opt}' describes the {a}.",
        "The word that fits the {a} is '{opt}'.",
        "'{opt}' is the one for the {a}.",
        "Hence the answer is '{opt}'.",
    ),
    "location": (
        "So the {a} is in the {opt} of the image.",
        "The {a} sits in the {opt} quarter.",
        "That places the {a} in the {opt}.",
        "Hence the answer is the {opt}.",
        "The {opt} is where the {a} lies.",
    ),
    "stage2": (
        "Putting the steps together, the answer is: {opt}.",
        "So the answer is {opt}.",
        "All together: {opt}.",
        "Hence the answer to the whole question is {opt}.",
        "Chaining the steps gives {opt}.",
        "Combining the steps, the answer is {opt}.",
        "The steps lead to {opt}.",
        "With both steps done, the answer is {opt}.",
        "The whole question comes to {opt}.",
        "Taken together, the steps give {opt}.",
        "Everything considered, the answer is {opt}.",
        "Following the steps through, I get {opt}.",
        "Working through every step gives {opt}.",
        "Step by step, this comes out as {opt}.",
        "So the whole question's answer is {opt}.",
        "Once the steps are combined, I get {opt}.",
    ),
}


def _worded(pattern: str, program: _Program, option: str) -> str:
    """A conclusion's pattern (``_CONCLUSIONS``, ``_ANSWER_CLAUSES``) filled in for ``option``."""
    n = int(option) if program.template == "count" else 0
    topic = program.subject
    many = topic if n == 1 else plural(topic) if topic else ""
    return pattern.format(opt=option, a=topic, n=n, many=many, be="is" if n == 1 else "are")


def _conclusion(w: _Writer, program: _Program, option: str) -> str:
    return _worded(w.pick(_CONCLUSIONS["stage2" if program.steps else program.template]), program, option)


def _result(w: _Writer, task: _Task, found: _Found, view: _View) -> str:
    """The sentence closing a composite's step: what it found."""
    kind, facts, value = task.kind, found.facts, found.value
    if kind == "find" and facts.get("all"):
        be = "is" if len(found.found) == 1 else "are"
        return w.pick(
            (
                f"So {value} {be} {_REL_WORDS[facts['rel']]} it.",
                f"That leaves {value} on that side.",
                f"The ones on that side: {value}.",
            )
        )
    if kind == "extreme":
        return w.pick((f"The {facts['most']} is the {value}.", f"So the {facts['most']} one is the {value}."))
    if kind in ("find", "filter", "closest"):
        anchor = view.by_id[facts["anchor"]].name
        where = "closest to" if kind == "closest" else _REL_WORDS[facts["rel"]]
        return w.pick(
            (
                f"So the object {where} the {anchor} is the {value}.",
                f"That is the {value}.",
                f"The one I am after is the {value}.",
                f"This step gives the {value}.",
            )
        )
    if kind == "count":
        topic = facts["topic"]
        return w.pick(
            (
                f"So there {'is' if value == '1' else 'are'} {value} {topic if value == '1' else plural(topic)}.",
                f"This count is {value}.",
                f"That step gives {value}.",
                f"I make it {value}.",
                f"The count for this step comes to {value}.",
                f"Here I find {value}.",
                f"Result of this step: {value}.",
                f"For this step the number is {value}.",
                f"I note {value} for this count.",
                f"This part comes out at {value}.",
                f"The number here is {value}.",
                f"That count: {value}.",
                f"I record {value} for this step.",
                f"So this step's count is {value}.",
                f"This step leaves me with {value}.",
                f"Count for this part: {value}.",
                f"I carry {value} forward.",
                f"That settles this count at {value}.",
                f"The figure for this step is {value}.",
                f"This gives {value} to work with.",
                f"So far, then, {value}.",
            )
        )
    if kind == "location":
        return w.pick((f"So it is in the {value}.", f"That is the {value} of the image.", f"This step: {value}."))
    return w.pick((f"So it is {value}.", f"That gives: {value}.", f"This step: {value}."))


def _combined(w: _Writer, program: _Program, found: list[_Found]) -> list[str]:
    if program.template not in ("set_count", "comparison_count"):
        return []
    a, b = int(found[0].value), int(found[1].value)
    if program.template == "set_count":
        return [
            w.pick(
                (
                    f"In total that is {a} + {b} = {a + b}.",
                    f"Adding them, {a} + {b} = {a + b}.",
                    f"Together they make {a} + {b} = {a + b}.",
                    f"Summing the two counts, {a} + {b} = {a + b}.",
                    f"The two steps add up to {a} + {b} = {a + b}.",
                    f"Both counts together: {a} + {b} = {a + b}.",
                    f"Their sum is {a} + {b} = {a + b}.",
                    f"Added up, {a} + {b} = {a + b}.",
                )
            )
        ]
    return [
        w.pick(
            (
                f"The difference is {a} − {b} = {a - b}.",
                f"Subtracting, {a} − {b} = {a - b}.",
                f"Taking one count from the other, {a} − {b} = {a - b}.",
                f"The gap between the counts is {a} − {b} = {a - b}.",
                f"One count less the other: {a} − {b} = {a - b}.",
                f"Comparing the two counts, {a} − {b} = {a - b}.",
                f"Their difference is {a} − {b} = {a - b}.",
                f"One minus the other: {a} − {b} = {a - b}.",
            )
        )
    ]


def _write(w: _Writer, case: _Case, view: _View, route: int) -> tuple[list[str], str]:
    """A pass over ``view``: its sentences and the option it ends on (``_case`` made sure it has one)."""
    found, answer = _run(case.program, view)
    lines: list[str] = []
    heads = w.pick(_STEP_HEADS)
    for index, (task, result) in enumerate(zip(case.program.tasks, found, strict=True)):
        if case.program.steps:
            question = case.program.steps[index]["question"]
            lines.append(f"{heads[min(index, 5)]}: {question[0].lower()}{question[1:]}")
        lines += _STEPS[task.kind][1](w, view, result, route)
        if case.program.steps:
            lines.append(_result(w, task, result, view))
    lines += _combined(w, case.program, found)
    return lines, answer


# ---- the continuation ----

_OPENERS = {
    "Wait,": (
        "let me check that again.",
        "let me go over this once more before answering.",
        "I should double-check this.",
        "before answering, one more look.",
    ),
    "Hmm,": (
        "let me look more carefully.",
        "before I commit, let me re-check.",
        "let me verify that step by step.",
        "I want to be sure of this.",
    ),
    "Alternatively,": (
        "I can check this another way.",
        "let me approach it from a different angle.",
        "I can verify it independently.",
        "there is a second way to work this out.",
    ),
}
_ROUTES = (
    "This time I take another route through it.",
    "I work it out again, a different way.",
    "I redo it from another angle.",
    "A second pass, by a different path, follows.",
    "I go through it again, changing the order of the work.",
    "Same question, another method.",
    "I start over and take the steps in a new order.",
    "Now the same question, approached from a different starting point.",
)


def _identity(view: _View, obj_id: int) -> str:
    name = _Writer.name(view.by_id[obj_id])
    return f"{article(name)} {name}"


def _pinpoint(w: _Writer, slip: _Slip | None, first: _View, again: _View) -> list[str]:
    """The one object a slip is about: the two readings it allows (as it is, as the slip would have it), how the
    first pass read it and how this pass reads it. One pool for every outcome: the sentence names both readings
    whichever each pass took."""
    if slip is None:
        return []
    truth, slipped = _View(w.scene), _View(w.scene, slip)
    objects = {obj.id: obj for obj in w.scene.objects}
    obj = objects[slip.ids[0]]
    if slip.kind == "reshape":
        name = _Writer.name(truth.by_id[obj.id])
        one, other = (w.extent(view.by_id[obj.id]) for view in w.shuffled((truth, slipped)))
        before, now = w.extent(first.by_id[obj.id]), w.extent(again.by_id[obj.id])
        what = f"the edges of the {name}"
        choice = f"{one}, or {other}"
    elif slip.kind == "exchange":
        other_id = slip.ids[1]
        where = f"{w.extent(obj)} and {w.extent(objects[other_id])}"
        pair = [_identity(truth, obj.id), _identity(truth, other_id)]
        w.rng.shuffle(pair)
        before = f"{_identity(first, obj.id)} and {_identity(first, other_id)}"
        now = f"{_identity(again, obj.id)} and {_identity(again, other_id)}"
        what = f"the objects at {where}"
        choice = f"which of them is {pair[0]} and which {pair[1]}"
    else:
        read = (
            (lambda view: stage1.colour_of(view.by_id[obj.id]))
            if slip.kind == "recolour"
            else (lambda view: _identity(view, obj.id))
        )
        one, other = (read(view) for view in w.shuffled((truth, slipped)))
        before, now = read(first), read(again)
        what = f"the object at {w.extent(obj)}"
        choice = f"{one}, or {other}"
    return [
        w.pick(
            (
                f"Everything turns on {what}: {choice}? The first pass read {before}, and on this look I read {now}.",
                f"I look hard at {what}, since it could be {choice}. First pass: {before}. On a careful second "
                f"look: {now}.",
                f"One thing decides it, {what} ({choice}). The first pass had {before}; looking again now, I "
                f"have {now}.",
            )
        )
    ]


# What a reading's answer says, as a clause: each template's conclusion "So ...", without "So" and the full stop.
_ANSWER_CLAUSES = {
    key: next(pattern for pattern in pool if pattern.startswith("So "))[3:-1] for key, pool in _CONCLUSIONS.items()
}


def _outcome(program: _Program, option: str) -> str:
    """What a stage-1 question's one step finds when ``option`` is the answer, in the words its lines state it in
    (empty where that is the option's own text, and for a composite: its steps' values are numbers or options)."""
    if program.steps:
        return ""
    kind, topic = program.tasks[0].kind, program.subject
    if kind == "count":  # the answer's clause says the number; a count of none in the words a tally of none uses
        return "" if int(option) else f"none of the {plural(topic)}"
    if kind == "relation":
        rel = next(rel for rel, phrase in stage1.RELATION_PHRASES.items() if option.startswith(f"{phrase} the "))
        return f"the {topic} is {_MOVED[rel]}"
    if kind == "size":
        bins = zip(_SIZE_WHERE, stage1.SIZE_BINS, strict=True)
        return f"a ratio {next(where for where, text in bins if option.startswith(text.split('{b}')[0]))}"
    if kind == "location":
        vertical, horizontal = option.split()
        return f"the {horizontal} side and the {vertical} half"
    if kind == "nearest":
        return f"the {option} nearest"
    return ""


def _readings(w: _Writer, program: _Program, candidates: tuple[str, str]) -> str:
    """What each of the two answers in play would mean, the step's result and the answer. A continuation that
    changes its answer states the results of both passes, one that confirms it those of one again, and a text-only
    reader told them apart by the second set (68% of 20,000 images' O→O > O→X pairs; 55% since). Said in every
    continuation: only one that can change looks hard at an object, and said there alone it told them apart too."""
    said = []
    for option in w.shuffled(candidates):
        outcome = _outcome(program, option)
        clause = _worded(_ANSWER_CLAUSES["stage2" if program.steps else program.template], program, option)
        said.append(f"{outcome}{w.pick(_LINKS)}{clause}" if outcome else clause)
    return w.pick(_READINGS).format(one=said[0], other=said[1])


_LINKS = (", so ", ", and then ", ", which means ", ": ")
_READINGS = (
    "Read one way, {one}; read the other way, {other}.",
    "On one reading, {one}; on the other, {other}.",
    "Taken one way, {one}; taken the other, {other}.",
    "On the first reading, {one}; on the second, {other}.",
    "If I take it the first way, {one}; the second way, {other}.",
    "The two readings, worked through. One: {one}. The other: {other}.",
    "Under one reading, {one}; under the other, {other}.",
    "Following one reading through, {one}. Following the other, {other}.",
    "One way, {one}; the other way, {other}.",
    "What follows from each: {one}, or else {other}.",
    "Worked through one way, {one}; worked through the other, {other}.",
    "By one reading, {one}; by the other, {other}.",
)


def _comparison(w: _Writer, options: tuple[str, str], answer: str) -> str:
    """Which of the two answers in play this pass lands on, naming both whatever the outcome."""
    one, other = w.shuffled(options)
    return w.pick(
        (
            f"So it comes down to {one} or {other}, and this route gives {answer}.",
            f"Between {one} and {other}, working it out this way gives {answer}.",
            f"The candidates are {one} and {other}; by this route the answer is {answer}.",
            f"Weighing {one} against {other}, this pass settles on {answer}.",
            f"{_cap(one)} or {other}? Worked this way, it is {answer}.",
        )
    )


def _continuation(
    w: _Writer, case: _Case, cue: str, first: _View, again: _View, focus: _Slip | None, route: int
) -> tuple[str, str]:
    lines, answer = _write(w, case, again, route)
    gold = case.options[case.gold]
    rival = _run(case.program, _View(w.scene, focus))[1] if focus else None
    if rival in (None, gold):
        rival = w.pick([o for o in case.options if o != gold])
    body = [
        w.pick(_OPENERS[cue]),
        w.pick(_ROUTES),
        *lines,
        *_pinpoint(w, focus, first, again),
        _readings(w, case.program, (gold, rival)),
        _comparison(w, (gold, rival), answer),
        _conclusion(w, case.program, answer),
    ]
    return " ".join(body), answer


# ---- keeping wrong answers like right ones ----


def _answer_class(option: str, question: str) -> str:
    """What an option says beyond the question's words: "left" of "to the left of the square"."""
    asked = set(re.findall(r"[a-z0-9]+", question.lower()))
    return " ".join(word for word in re.findall(r"[a-z0-9]+", option.lower()) if word not in asked) or option


@dataclass
class SlipBalance:
    """The answers right and wrong chains of thought have stated so far, per template (``key``), along one stream of
    questions; ``choose`` picks a wrong answer whose share among wrong ones does not lead its share among right ones,
    or none when every wrong answer possible is already ahead (the chain of thought then stays right), and ``pick``
    the slip to it that keeps missed and made-up objects even."""

    right: Counter = field(default_factory=Counter)
    wrong: Counter = field(default_factory=Counter)
    rights: Counter = field(default_factory=Counter)
    wrongs: Counter = field(default_factory=Counter)
    asked: Counter = field(default_factory=Counter)  # chains of thought written, per key
    possible: Counter = field(default_factory=Counter)  # ... of which a slip could have led to a distractor
    slipped: Counter = field(default_factory=Counter)  # (template, kind of slip) -> slips made
    focused: Counter = field(default_factory=Counter)  # (template, kind) -> harmless misperceptions looked at
    # (key, 0 for the objects found or 1 for the kinds seen, -1 fewer or +1 more) -> slips that changed it so
    shifted: Counter = field(default_factory=Counter)
    slack: float = 0.05

    def attempt(self, key: str, possible: bool, share: float, rng: random.Random) -> bool:
        """Whether to slip: with the probability that makes about ``share`` of the key's chains of thought wrong,
        given how often a slip has been possible along the stream, but at most ``MAX_SLIP_CHANCE`` (a question a
        slip can touch is not always answered wrong)."""
        self.asked[key] += 1
        self.possible[key] += possible
        return possible and rng.random() < min(MAX_SLIP_CHANCE, share * self.asked[key] / self.possible[key])

    def lag(self, key: str, answer: str) -> float:
        """How far ahead ``answer`` would be among wrong answers if stated once more."""
        wrong = (self.wrong[key, answer] + 1) / (self.wrongs[key] + 1)
        return wrong - self.right[key, answer] / max(1, self.rights[key])

    def choose(self, key: str, answers: dict[str, set[tuple[int, int]]], rng: random.Random) -> str | None:
        """Of ``answers`` (each with the ways its slips change what the steps find, see ``pick``), one within
        ``slack`` of its share among right answers, of a way the key's slips have taken least, then the one that
        lags most; None when every answer is ahead."""
        if not answers:
            return None
        lags = {answer: self.lag(key, answer) for answer in answers}
        if min(lags.values()) > self.slack and self.wrongs[key] >= 20:
            return None
        scored = sorted(
            (lag > self.slack, min(self._lead(key, way) for way in answers[answer]), lag, rng.random(), answer)
            for answer, lag in lags.items()
        )
        return scored[0][-1]

    def _lead(self, key: str, way: tuple[int, int]) -> int:
        """How many more of the key's slips changed the objects found, and the kinds seen, ``way`` than the other
        way."""
        return sum(sign and self.shifted[key, i, sign] - self.shifted[key, i, -sign] for i, sign in enumerate(way))

    def kind(self, template: str, kinds: list[str], rng: random.Random) -> str | None:
        """Of ``kinds``, the kind of misperception the template's looks so far lag its slips in most (recorded);
        None when the template's slips have been of none of them."""
        kinds = [k for k in kinds if self.slipped[template, k]]
        if not kinds:
            return None
        slips = sum(self.slipped[template, k] for k in kinds) or 1
        looks = sum(self.focused[template, k] for k in kinds) + 1
        lag = {k: (self.focused[template, k] + 1) / looks - self.slipped[template, k] / slips for k in kinds}
        chosen = min(kinds, key=lambda k: (lag[k], rng.random()))
        self.focused[template, chosen] += 1
        return chosen

    def pick(self, key: str, case: _Case, slips: list[_Slip], rng: random.Random) -> _Slip:
        """One of ``slips`` (all to one answer) that changes what the steps find (``_Case.shift``) the way the key's
        slips have least so far (recorded), a glance's likeliest (``_likely``) where there is one. A slip that misses
        an object leaves a tally of none and a shorter chain of thought; one that makes up a kind lists one more: a
        reader tells wrong chains of thought by whichever way the slips lean."""
        ways = sorted({case.shift[slip] for slip in slips})
        way = min(ways, key=lambda w: (self._lead(key, w), rng.random())) if len(ways) > 1 else ways[0]
        for i, sign in enumerate(way):
            if sign:
                self.shifted[key, i, sign] += 1
        found = [slip for slip in slips if case.shift[slip] == way]
        return rng.choice([slip for slip in found if _likely(slip, case.scene)] or found)

    def stated(self, key: str, answer: str, wrong: bool) -> None:
        (self.wrong if wrong else self.right)[key, answer] += 1
        (self.wrongs if wrong else self.rights)[key] += 1


def _pick_slip(case: _Case, key: str, question: str, balance: SlipBalance, rng: random.Random) -> _Slip | None:
    classes: dict[str, list[int]] = {}
    for index in sorted(case.wrong):
        classes.setdefault(_answer_class(case.options[index], question), []).append(index)
    ways = {
        answer: {case.shift[slip] for i in indices for slip in case.wrong[i]} for answer, indices in classes.items()
    }
    chosen = balance.choose(key, ways, rng)
    if chosen is None:
        return None
    index = rng.choice(classes[chosen])
    return balance.pick(key, case, case.wrong[index], rng)


def _likely(slip: _Slip, scene: Scene) -> bool:
    """Whether a glance would make the slip rather than another to the same answer: an object taken for a kind no
    ``LOOKALIKES`` group knows, where the image shows that kind, only when one of those objects is about its size
    (``_confusable``). Without it, a count on the COCO sample could take an umbrella for a dining table; an object
    taken for a kind in view was a median 4.2 times the size of the nearest-sized object of that kind (2.7 with it).
    A kind the image lacks gives no size to go by: those slips are drawn as before."""
    if slip.kind != "rename":
        return True
    obj = next(obj for obj in scene.objects if obj.id == slip.ids[0])
    if _alike(obj.name, slip.value) is not None:
        return True
    shown = [other for other in scene.objects if other.name == slip.value]
    return not shown or any(_confusable(obj, other) for other in shown)


def _focus(case: _Case, template: str, question: str, balance: SlipBalance, rng: random.Random) -> _Slip | None:
    """The object a confirming re-examination looks hard at: one a slip would be about, drawn as a slip is (its
    answers kept alike the gold answers, under a key of its own). Where no slip could lead to a distractor, a
    misperception that would change nothing, of the kind the template's slips have been (``SlipBalance.kind``)."""
    if not case.wrong:
        kind = balance.kind(template, sorted({slip.kind for slip in case.slips}), rng)
        return rng.choice([slip for slip in case.slips if slip.kind == kind]) if kind else None
    key = f"{template}:focus"
    slip = _pick_slip(case, key, question, balance, rng) or rng.choice(case.wrong[rng.choice(sorted(case.wrong))])
    balance.stated(key, _answer_class(case.options[case.gold], question), False)
    balance.stated(key, _answer_class(_run(case.program, _View(case.scene, slip))[1], question), True)
    return slip


# ---- the traces ----


def _generic(mcq: dict, scene: Scene, n: int, seed: int) -> list[Trace]:
    """A question no template's reasoning settles (a model's, or one whose gold letter the boxes contradict):
    reasoning about its objects that ends on the gold option, a wrong one ending on another by the same words."""
    options, gold = list(mcq["options"]), LETTERS.index(mcq["answer"])
    objects = {obj.id: obj for obj in scene.objects}
    grounded = [objects[g["object_id"]] for g in mcq["grounding"] if g["object_id"] in objects][:4]
    others = [i for i in range(len(options)) if i != gold]
    traces = []
    for index in range(n):
        rng = random.Random(f"{seed}:{mcq['id']}:{index}")
        w = _Writer(scene, rng)
        about = (
            f"The question is about {_joined([w.seen(o) for o in grounded])}."
            if grounded
            else f"I count {len(scene.objects)} objects, {w.of_kinds(scene.objects)}."
        )
        fits = f"Looking at {'them' if len(grounded) > 1 else 'it'} closely, '{{}}' is what fits."
        slipped = rng.random() < WRONG_SHARE
        first = rng.choice(others) if slipped else gold
        short = f"{about} {fits.format(options[first])} So the answer is: {options[first]}."
        changed = rng.random() < (1 - SLIP_KEPT_SHARE if slipped else SLIP_MADE_SHARE)
        final = (gold if slipped else rng.choice(others)) if changed else first
        cue = rng.choice(CUES)
        rival = options[first] if first != gold else options[rng.choice(others)]
        expansion = " ".join(
            (
                w.pick(_OPENERS[cue]),
                w.pick(_ROUTES),
                about,
                fits.format(options[final]),
                _comparison(w, (options[gold], rival if final == gold else options[final]), options[final]),
                f"So the answer is: {options[final]}.",
            )
        )
        traces += _pair(mcq, short, first, cue, expansion, final, gold)
    return traces


def _pair(mcq: dict, short: str, first: int, cue: str, expansion: str, final: int, gold: int) -> list[Trace]:
    """The short chain of thought alone, and continued."""
    if mentions_banned(short) or mentions_banned(expansion):  # an object called by a banned word ("text")
        return []
    return [
        Trace(
            mcq_id=mcq["id"],
            kind=kind_of(first == gold, final == gold if cue_ else None),
            short=short,
            cue=cue_,
            expansion=expansion_,
            think=f"{short}\n\n{cue_} {expansion_}" if cue_ else short,
            predicted=LETTERS[choice],
            correct=choice == gold,
            teacher=SCRIPTED_TEACHER,
            reasoner=SCRIPTED_REASONER if cue_ else "",
        )
        for cue_, expansion_, choice in (("", "", first), (cue, expansion, final))
    ]


def scripted_traces(mcq: dict, scene: Scene, n: int, seed: int, balance: SlipBalance | None = None) -> list[Trace]:
    """``n`` short CoTs for ``mcq`` written from its boxes, each also continued after a cue: ``2n`` traces.

    About ``WRONG_SHARE`` of the short ones slip (where a misperception leads to a distractor that ``balance`` lets
    through: a fresh ``SlipBalance`` when not given); each is continued by a re-examination that corrects it
    (``X→O``) or keeps it (``X→X``, ``SLIP_KEPT_SHARE``), or, for a right one, confirms it (``O→O``) or slips
    (``O→X``, ``SLIP_MADE_SHARE``).
    """
    case = _case(mcq, scene)
    if case is None:
        return _generic(mcq, scene, n, seed)
    balance = balance if balance is not None else SlipBalance()
    template, question = case.program.template, mcq["question"]
    truth = _View(scene)
    traces = []
    for index in range(n):
        rng = random.Random(f"{seed}:{mcq['id']}:{index}")
        w = _Writer(scene, rng)
        route = rng.randrange(2)
        slipping = balance.attempt(template, bool(case.wrong), WRONG_SHARE, rng)
        slip = _pick_slip(case, template, question, balance, rng) if slipping else None
        first = _View(scene, slip) if slip else truth
        lines, answer = _write(w, case, first, route)
        balance.stated(template, _answer_class(answer, question), slip is not None)
        if slip is not None:
            balance.slipped[template, slip.kind] += 1
        short = " ".join([*lines, _conclusion(w, case.program, answer)])
        cue = rng.choice(CUES)
        if slip is not None:  # kept under the same misperception, or found by looking again
            again, focus = (first, slip) if rng.random() < SLIP_KEPT_SHARE else (truth, slip)
        else:
            slipping = balance.attempt(f"{template}:again", bool(case.wrong), SLIP_MADE_SHARE, rng)
            made = _pick_slip(case, f"{template}:again", question, balance, rng) if slipping else None
            again = _View(scene, made) if made else truth
            focus = made or _focus(case, template, question, balance, rng)
        expansion, final = _continuation(w, case, cue, first, again, focus, 1 - route)
        balance.stated(f"{template}:again", _answer_class(final, question), final != case.options[case.gold])
        traces += _pair(mcq, short, case.options.index(answer), cue, expansion, case.options.index(final), case.gold)
    return traces
