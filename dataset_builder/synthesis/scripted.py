"""The offline scripted teacher and reasoner: traces written from the boxes, correct by construction.

They name the regions they look at with their pixel extents, count object by object and compare coordinates
explicitly; a wrong short CoT carries one planted slip (a skipped or misnamed object, a comparison the wrong way
round, a distractor taken for the answer), which the continuation after the cue usually catches, and sometimes does
not. Every row they write says so in its provenance (``teacher``/``reasoner``: ``scripted/...``). The model path
(a VLM teacher and a reasoning LLM through the engine) is ``synthesis/traces.py``; both make the same ``Trace``.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

from ..answers import LETTERS
from ..scene import Scene, SceneObject
from . import stage1, stage2
from .generator import parse_generator
from .grammar import article, plural, singular
from .traces import CUES, Trace, kind_of, mentions_banned

SCRIPTED_TEACHER = "scripted/teacher@1"
SCRIPTED_REASONER = "scripted/reasoner@1"
# How often a scripted short CoT carries a planted slip, and how often a continuation fails to end right.
WRONG_SHARE = 0.35
SLIP_KEPT_SHARE = 0.2  # a wrong short CoT whose continuation repeats the slip (X→X)
SLIP_MADE_SHARE = 0.12  # a right short CoT whose continuation makes one (O→X)


@dataclass
class _Case:
    """One MCQ worked out from its boxes.

    ``right`` reasons to the gold option; ``wrong`` makes one planted slip and ends on ``wrong_choice``; ``catch``
    finds that slip and corrects it; ``check`` verifies the right answer a second way. Each is a list of sentences.
    """

    answer: int
    right: list[str]
    check: list[str]
    conclude: Callable[[int], str]
    wrong_choice: int | None = None
    wrong: list[str] = field(default_factory=list)
    catch: list[str] = field(default_factory=list)


_ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")
_EXTENT_FORMS = (
    "{what} spanning x {x0}–{x1}, y {y0}–{y1}",
    "{what} (x {x0}–{x1}, y {y0}–{y1})",
    "{what} (x {x0} to {x1}, y {y0} to {y1})",
    "{what} at x {x0}–{x1}, y {y0}–{y1}",
)
_OPENERS = {
    "Wait,": (
        "let me check that again.",
        "let me go over this once more before answering.",
        "I should double-check this.",
    ),
    "Hmm,": (
        "let me look more carefully.",
        "before I commit, let me re-check.",
        "let me verify that step by step.",
    ),
    "Alternatively,": (
        "I can check this another way.",
        "let me approach it from a different angle.",
        "I can verify it independently.",
    ),
}
_FOUND_SLIP = (
    "That changes things.",
    "So my first pass was wrong.",
    "I made a mistake earlier.",
    "That was an error on my part.",
)
_CONFIRMED = (
    "This agrees with what I found.",
    "Both checks agree.",
    "That confirms it.",
    "The first answer holds.",
)
_KEPT = (
    "I get the same result as before.",
    "That matches my first pass.",
    "So nothing changes.",
)
_DOUBTED = (
    "Looking again, I think I misjudged something.",
    "On a second look, my first answer seems off.",
    "Something does not add up.",
)


def _a(name: str) -> str:
    return f"{article(name)} {name}"


def _n(value: float) -> str:
    return f"{round(value):,}"


class _Writer:
    """Phrases about one scene's objects: what each is called and where it lies, worded per ``rng``."""

    def __init__(self, mcq: dict, scene: Scene, rng: random.Random):
        self.mcq, self.scene, self.rng = mcq, scene, rng
        objects = {obj.id: obj for obj in scene.objects}
        self.grounding = [
            SceneObject(g["object_id"], g["name"], list(g["bbox"]), objects.get(g["object_id"], _NONE).attributes)
            for g in mcq["grounding"]
        ]
        self.objects = [
            next((g for g in self.grounding if g.id == obj.id), obj) for obj in scene.objects
        ]  # the grounding's boxes are the MCQ's own
        self.names = Counter(obj.name for obj in self.objects)

    def phrase(self, obj: SceneObject) -> str:
        """The object's name, with its colour when the scene has several of its kind."""
        colour = stage1.colour_of(obj)
        return f"{colour} {obj.name}" if colour and self.names[obj.name] > 1 else obj.name

    def at(self, what: str, obj: SceneObject) -> str:
        x0, y0, x1, y1 = (round(v) for v in obj.bbox)
        return self.rng.choice(_EXTENT_FORMS).format(what=what, x0=x0, x1=x1, y0=y0, y1=y1)

    def coloured(self, obj: SceneObject, name: str) -> str:
        """``name`` with the object's colour, if it has one: "red circle", "red one"."""
        colour = stage1.colour_of(obj)
        return f"{colour} {name}" if colour else name

    def the(self, obj: SceneObject) -> str:
        return self.at(f"the {self.phrase(obj)}", obj)

    def options(self) -> list[str]:
        return list(self.mcq["options"])


_NONE = SceneObject(-1, "", [0.0, 0.0, 0.0, 0.0])


def _count_case(w: _Writer, template: str) -> _Case | None:
    options = w.options()
    objs = sorted(w.grounding, key=lambda o: (o.bbox[0], o.bbox[1]))
    n = len(objs)
    if str(n) not in options:
        return None
    topic = objs[0].name if objs else _count_topic(w.mcq["question"])
    if topic is None:
        return None
    many = plural(topic)
    others = [o for o in w.objects if o.name != topic]

    def listing(items: list[SceneObject]) -> list[str]:
        lines = [
            w.rng.choice((f"Let me count the {many} one by one, left to right.", f"I go over the {many} in turn."))
        ]
        for i, obj in enumerate(items):
            lines.append(f"The {_ORDINALS[i]} is {w.at(f'the {w.coloured(obj, topic)}', obj)}.")
        return lines

    def conclude(choice: int) -> str:
        value = int(options[choice])
        return f"So there {'is' if value == 1 else 'are'} {value} {topic if value == 1 else many}."

    if n == 0:
        seen = ", ".join(w.the(o) for o in w.objects[:6])
        right = [f"I look over the whole image for {many}.", f"I see {seen}; none of these is {_a(topic)}."]
    else:
        right = listing(objs)
    check_order = sorted(objs, key=lambda o: (o.bbox[1], o.bbox[0]))
    check = [f"Counting again from top to bottom: {', '.join(w.the(o) for o in check_order) or f'still no {topic}'}."]
    case = _Case(options.index(str(n)), right, check, conclude)
    slips = []
    if n >= 2 and str(n - 1) in options:
        slips.append("skip")
    if others and str(n + 1) in options:
        slips.append("misname")
    if not slips:
        return case
    if w.rng.choice(slips) == "skip":
        missed = w.rng.randrange(n)
        case.wrong = listing([o for i, o in enumerate(objs) if i != missed])
        case.wrong_choice = options.index(str(n - 1))
        case.catch = [f"I skipped {w.at(f'the {topic}', objs[missed])}.", f"Counting it, there are {n}, not {n - 1}."]
    else:
        extra = w.rng.choice(others)
        items = sorted([*objs, extra], key=lambda o: (o.bbox[0], o.bbox[1]))
        case.wrong = (
            listing(items)
            if n
            else [f"I look for {many}.", f"There is one: {w.at(_a(w.coloured(extra, topic)), extra)}."]
        )
        case.wrong_choice = options.index(str(n + 1))
        case.catch = [
            f"The {w.coloured(extra, 'one')} at x {round(extra.bbox[0])}–{round(extra.bbox[2])} is {_a(extra.name)}, "
            f"not {_a(topic)}.",
            f"Leaving it out, there {'is' if n == 1 else 'are'} {n}.",
        ]
    return case


@cache
def _count_patterns() -> tuple[re.Pattern, ...]:
    return tuple(
        re.compile("^" + re.escape(w).replace(re.escape("{p}"), "(?P<p>.+?)") + "$") for w in stage1.WORDINGS["count"]
    )


def _count_topic(question: str) -> str | None:
    """The category a count question asks about, read back from its wording (a count of 0 has no grounding)."""
    for pattern in _count_patterns():
        match = pattern.match(question)
        if match:
            many = match["p"]
            return next((name for name in _singulars(many)), None)
    return None


def _singulars(many: str) -> list[str]:
    candidates = [many[:-3] + "y" if many.endswith("ies") else "", many[:-2], many[:-1], many]
    return [c for c in candidates if c and plural(c) == many]


_AXES = {"left": (0, -1), "right": (0, 1), "above": (1, -1), "below": (1, 1)}
_MOVED = {"left": "further left", "right": "further right", "above": "higher", "below": "lower"}
_OPPOSITE = {"left": "right", "right": "left", "above": "below", "below": "above"}


def _relation_case(w: _Writer) -> _Case | None:
    options = w.options()
    a, b = w.grounding[:2]
    answer = stage1.relation(a, b)
    if answer is None:
        return None
    texts = {key: f"{phrase} the {_option_tail(options, phrase)}" for key, phrase in stage1.RELATION_PHRASES.items()}
    if any(text not in options for text in texts.values()):
        return None
    axis = _AXES[answer][0]
    ca, cb = a.center[axis], b.center[axis]
    along, across = ("x", "y") if axis == 0 else ("y", "x")
    lo, hi = (1, 3) if axis == 0 else (0, 2)

    def compare(key: str) -> str:
        smaller = "further left" if axis == 0 else "higher up"
        first, second = (w.phrase(a), w.phrase(b)) if _AXES[key][1] < 0 else (w.phrase(b), w.phrase(a))
        low, high = (ca, cb) if _AXES[key][1] < 0 else (cb, ca)
        note = " (y grows downwards)" if axis == 1 else ""
        return (
            f"The {first}'s centre is at {along} = {_n(low)}, less than the {second}'s {_n(high)}{note}, so the "
            f"{first} is {smaller}."
        )

    def conclude(choice: int) -> str:
        return f"So the {w.phrase(a)} is {options[choice]}."

    level = (
        f"Their {across} ranges, {_n(a.bbox[lo])}–{_n(a.bbox[hi])} and {_n(b.bbox[lo])}–{_n(b.bbox[hi])}, overlap, "
        f"so they sit {'side by side' if axis == 0 else 'one over the other'}."
    )
    right = [f"I find {w.the(a)}, and {w.the(b)}.", level, compare(answer)]
    edge = (2, 0) if _AXES[answer] == (0, -1) else (0, 2) if axis == 0 else (3, 1) if _AXES[answer][1] < 0 else (1, 3)
    gap = (b.bbox[edge[1]] - a.bbox[edge[0]]) * (-_AXES[answer][1])
    apart = f"a gap of {_n(gap)} px" if gap >= 0 else f"overlapping by only {_n(-gap)} px"
    check = [
        f"Comparing edges instead: the {w.phrase(a)} {'ends' if edge[0] >= 2 else 'starts'} at {along} = "
        f"{_n(a.bbox[edge[0]])} and the {w.phrase(b)} {'starts' if edge[1] < 2 else 'ends'} at {along} = "
        f"{_n(b.bbox[edge[1]])}, {apart}, so the order holds."
    ]
    wrong = _OPPOSITE[answer]
    ca_, cb_ = _n(ca), _n(cb)
    case = _Case(options.index(texts[answer]), right, check, conclude)
    case.wrong = [
        f"I find {w.the(a)}, and {w.the(b)}.",
        level,
        f"The {w.phrase(a)}'s centre is at {along} = {ca_} and the {w.phrase(b)}'s at {cb_}, so the "
        f"{w.phrase(a)} is {_MOVED[wrong]}.",
    ]
    case.wrong_choice = options.index(texts[wrong])
    case.catch = [
        f"I read the comparison of {ca_} and {cb_} the wrong way round.",
        compare(answer),
    ]
    return case


def _option_tail(options: list[str], phrase: str) -> str:
    """The second object's phrase in relation/size options ("to the left of the square" -> "square")."""
    for option in options:
        if option.startswith(phrase + " the "):
            return option[len(phrase) + 5 :]
    return ""


def _size_case(w: _Writer) -> _Case | None:
    options = w.options()
    a, b = w.grounding[:2]
    answer = stage1.size_bin(a, b)
    second = w.phrase(b)
    texts = [text.format(b=_size_tail(options) or second) for text in stage1.SIZE_BINS]
    if answer is None or any(text not in options for text in texts):
        return None

    # Areas as a reader works them out from the extents shown (whole pixels); stage 1's margin keeps the bin.
    sides = {
        obj.id: [round(obj.bbox[2]) - round(obj.bbox[0]), round(obj.bbox[3]) - round(obj.bbox[1])] for obj in (a, b)
    }
    area_a, area_b = (sides[obj.id][0] * sides[obj.id][1] for obj in (a, b))
    ratio = area_a / area_b
    if sum(math.log2(ratio) > edge for edge in stage1.SIZE_EDGES) != answer:
        return None

    def area(obj: SceneObject) -> str:
        width, height = sides[obj.id]
        return f"the {w.phrase(obj)} covers {_n(width)} × {_n(height)} = {_n(width * height)} square pixels"

    where = ["below a third", "between a third and 1", "between 1 and 3", "above 3"]

    def conclude(choice: int) -> str:
        return f"So the {w.phrase(a)} is {options[choice]}."

    right = [
        f"I measure the extent of each: {w.the(a)}, and {w.the(b)}.",
        f"By area, {area(a)}, and {area(b)}.",
        f"The ratio is {_n(area_a)} / {_n(area_b)} = {ratio:.2f}, which is {where[answer]}.",
    ]
    check = [
        f"The other way round, the {second} is {_n(area_b)} / {_n(area_a)} = {1 / ratio:.2f} times the "
        f"{w.phrase(a)}, which says the same."
    ]
    case = _Case(options.index(texts[answer]), right, check, conclude)
    flipped = len(stage1.SIZE_BINS) - 1 - answer
    case.wrong = [
        *right[:2],
        f"The ratio is {_n(area_b)} / {_n(area_a)} = {1 / ratio:.2f}, which is {where[flipped]}.",
    ]
    case.wrong_choice = options.index(texts[flipped])
    case.catch = [
        f"I divided the {second}'s area by the {w.phrase(a)}'s; the question is about the {w.phrase(a)}.",
        right[2],
    ]
    return case


def _size_tail(options: list[str]) -> str:
    for option in options:
        if option.startswith("more than three times the size of the "):
            return option[len("more than three times the size of the ") :]
    return ""


def _distance_case(w: _Writer) -> _Case | None:
    options = w.options()
    anchor = w.grounding[0]
    groups = [_group(w, option, anchor) for option in options]
    if any(not g for g in groups):
        return None
    gaps = [min(stage1.gap(anchor, o) for o in g) for g in groups]
    nearest = min(range(len(options)), key=gaps.__getitem__)
    if options[nearest] != options[LETTERS.index(w.mcq["answer"])]:
        return None

    def measure(i: int, gap_value: float) -> str:
        obj = min(groups[i], key=lambda o: stage1.gap(anchor, o))
        return f"{w.at(f'the {options[i]}', obj)} is {_n(gap_value)} px away"

    def conclude(choice: int) -> str:
        return f"So the {options[choice]} is closest to the {w.phrase(anchor)}."

    order = sorted(range(len(options)), key=gaps.__getitem__)
    right = [
        f"I locate {w.the(anchor)} and measure the gap from its edge to each option's nearest edge.",
        *[f"{measure(i, gaps[i]).capitalize()}." for i in order],
        f"The smallest gap is {_n(gaps[nearest])} px.",
    ]
    runner = order[1]
    check = [
        f"The runner-up, the {options[runner]}, is {_n(gaps[runner])} px away, well beyond {_n(gaps[nearest])} px."
    ]
    case = _Case(nearest, right, check, conclude)
    near_obj = min(groups[nearest], key=lambda o: stage1.gap(anchor, o))
    far = _far_gap(anchor, near_obj)
    case.wrong = [
        right[0],
        *[f"{measure(i, far if i == nearest else gaps[i]).capitalize()}." for i in order],
        f"The smallest gap is {_n(min(gaps[runner], far))} px.",
    ]
    case.wrong_choice = runner if far > gaps[runner] else nearest
    if case.wrong_choice == nearest:  # the far edge is still nearest: the slip is taking the runner-up
        case.wrong = [right[0], f"{measure(runner, gaps[runner]).capitalize()}, which looks nearest."]
        case.wrong_choice = runner
        case.catch = [f"I did not measure the {options[nearest]}: {measure(nearest, gaps[nearest])}.", right[-1]]
    else:
        case.catch = [
            f"For the {options[nearest]} I measured to its far side ({_n(far)} px); its near edge is only "
            f"{_n(gaps[nearest])} px away.",
            right[-1],
        ]
    return case


def _far_gap(anchor: SceneObject, obj: SceneObject) -> float:
    """The distance from ``anchor`` to the far edges of ``obj``: the slip of measuring to the wrong side."""
    ax0, ay0, ax1, ay1 = anchor.bbox
    bx0, by0, bx1, by1 = obj.bbox
    dx = max(0.0, bx1 - ax1 if bx0 >= ax1 else ax0 - bx0 if bx1 <= ax0 else 0.0)
    dy = max(0.0, by1 - ay1 if by0 >= ay1 else ay0 - by0 if by1 <= ay0 else 0.0)
    return (dx * dx + dy * dy) ** 0.5


def _group(w: _Writer, option: str, anchor: SceneObject) -> list[SceneObject]:
    """The objects a distance option names: a category, or "colour category"."""
    found = [o for o in w.objects if o.name == option and o.id != anchor.id]
    if not found and " " in option:
        colour, _, name = option.partition(" ")
        found = [o for o in w.objects if o.name == name and stage1.colour_of(o) == colour and o.id != anchor.id]
    return found


def _existence_case(w: _Writer, template: str) -> _Case | None:
    options = w.options()
    present = {i: [o for o in w.objects if o.name == option] for i, option in enumerate(options)}
    answer = LETTERS.index(w.mcq["answer"])
    absent_answer = template == "absence"
    if any(bool(present[i]) == (absent_answer == (i == answer)) for i in present):
        return None

    def line(i: int, seen: bool = True) -> str:
        if present[i] and seen:
            return f"There is {w.at(_a(options[i]), present[i][0])}."
        return f"I find no {options[i]} anywhere in the image."

    def conclude(choice: int) -> str:
        verb = "does not appear" if absent_answer else "is the one I can see"
        return f"So the {options[choice]} {verb}."

    right = ["I check each option against the image.", *[line(i) for i in range(len(options))]]
    others = [i for i in range(len(options)) if i != answer]
    if absent_answer:
        seen = ", ".join(w.the(o) for o in w.objects[:5])
        check = [
            f"Looking once more for {_a(options[answer])}: I see {seen}, and none of them is {_a(options[answer])}."
        ]
    else:
        missing = ", ".join(options[i] for i in others)
        check = [f"Once more: {w.the(present[answer][0])} is {_a(options[answer])}, and I see no {missing}."]
    case = _Case(answer, right, check, conclude)
    slipped = w.rng.choice(others)
    if absent_answer:  # overlooking an object that is there makes it look absent
        case.wrong = ["I check each option against the image.", *[line(i, i != slipped) for i in range(len(options))]]
        case.catch = [f"I missed {w.at(f'the {options[slipped]}', present[slipped][0])}.", line(answer)]
    elif len(present[answer]) == 1:  # taking the one object that answers for another kind
        obj = present[answer][0]
        x0, y0, x1, y1 = (round(v) for v in obj.bbox)
        case.wrong = [
            "I check each option against the image.",
            f"What I see at x {x0}–{x1}, y {y0}–{y1} looks like {_a(options[slipped])}.",
            *[line(i) for i in range(len(options)) if i not in (answer, slipped)],
            f"I find no {options[answer]} anywhere in the image.",
        ]
        case.catch = [
            f"The one at x {x0}–{x1}, y {y0}–{y1} is {_a(options[answer])}, not {_a(options[slipped])}.",
            line(slipped, seen=False),
        ]
    else:
        return case
    case.wrong_choice = slipped
    return case


def _attribute_case(w: _Writer, template: str) -> _Case | None:
    options = w.options()
    obj = w.grounding[0]
    answer = LETTERS.index(w.mcq["answer"])
    value = options[answer]
    if value not in obj.attributes:
        return None
    image_area = w.scene.width * w.scene.height
    share = obj.area / image_area
    sized = value in ("small", "medium", "large")

    def conclude(choice: int) -> str:
        return (
            f"So the {w.phrase(obj)} is {options[choice]}."
            if template == "colour"
            else f"So '{options[choice]}' describes the {w.phrase(obj)}."
        )

    right = [f"I look at {w.the(obj)}."]
    if sized:
        right.append(
            f"It covers {_n(obj.area)} of the {_n(image_area)} square pixels of the image, about {100 * share:.1f}%, "
            f"which is {value} for an object in this image."
        )
    elif template == "colour":
        right.append(f"Its fill is {value}.")
    else:
        right.append(f"It is {value}.")
    check = [f"None of {', '.join(o for i, o in enumerate(options) if i != answer)} fits it."]
    case = _Case(answer, right, check, conclude)
    others = [i for i, o in enumerate(options) if i != answer and o not in obj.attributes]
    sizes = [i for i in others if options[i] in ("small", "medium", "large")]
    if not others:
        return case
    slipped = w.rng.choice(sizes if sized and sizes else others)
    if sized and sizes:
        case.wrong = [right[0], f"At a glance I would call it {options[slipped]}."]
        case.catch = [f"I only guessed its size; measured, {_lower_first(right[1])}"]
    else:
        case.wrong = [right[0], f"It looks {options[slipped]} to me."]
        case.catch = [f"Looking at the {w.phrase(obj)} itself, it is {value}, not {options[slipped]}."]
    case.wrong_choice = slipped
    return case


def _location_case(w: _Writer) -> _Case | None:
    options = w.options()
    obj = w.grounding[0]
    where = stage1.quadrant(obj, w.scene.width, w.scene.height)
    if where is None or where not in options:
        return None
    cx, cy = obj.center
    mx, my = w.scene.width / 2, w.scene.height / 2
    horizontal = "left" if cx < mx else "right"
    vertical = "top" if cy < my else "bottom"

    def conclude(choice: int) -> str:
        return f"So the {w.phrase(obj)} is in the {options[choice]} of the image."

    right = [
        f"The image is {w.scene.width} × {w.scene.height} pixels, so the midlines are x = {_n(mx)} and y = {_n(my)}.",
        f"I find {w.the(obj)}; its centre is at ({_n(cx)}, {_n(cy)}).",
        f"{_n(cx)} is {'less' if cx < mx else 'more'} than {_n(mx)}, so it is on the {horizontal}; "
        f"{_n(cy)} is {'less' if cy < my else 'more'} than {_n(my)}, and y grows downwards, so it is in the "
        f"{vertical} half.",
    ]
    x0, y0, x1, y1 = (round(v) for v in obj.bbox)
    check = [f"Its whole extent, x {x0}–{x1} and y {y0}–{y1}, stays within that quarter."]
    case = _Case(options.index(where), right, check, conclude)
    flipped = f"{'bottom' if vertical == 'top' else 'top'} {horizontal}"
    if flipped in options:
        case.wrong = [*right[:2], f"Its y of {_n(cy)} puts it in the {flipped.split()[0]} half, on the {horizontal}."]
        case.wrong_choice = options.index(flipped)
        case.catch = ["I had the vertical direction upside down: y grows downwards.", right[2]]
    return case


def _generic_case(w: _Writer) -> _Case:
    """A question no template wrote (a teacher's, a composed one without steps): the gold option, its objects."""
    options = w.options()
    answer = LETTERS.index(w.mcq["answer"])
    objs = w.grounding[:4]

    def conclude(choice: int) -> str:
        return f"So the answer is: {options[choice]}."

    right = [f"The question is about {', '.join(w.the(o) for o in objs)}." if objs else "I look over the image."]
    right.append(f"Looking at {'them' if len(objs) > 1 else 'it'} closely, '{options[answer]}' is what fits.")
    check = [f"'{o}' does not fit what I see." for i, o in enumerate(options) if i != answer][:2]
    case = _Case(answer, right, check, conclude)
    slipped = w.rng.choice([i for i in range(len(options)) if i != answer])
    case.wrong = [right[0], f"At a glance, '{options[slipped]}' seems to fit."]
    case.wrong_choice = slipped
    case.catch = [f"'{options[slipped]}' does not match what I see.", right[1]]
    return case


# Sub-questions a composite is made of are stage-1 questions: their wording says which template asked them.
_SLOTS = {"{a}": "(?P<a>.+?)", "{b}": "(?P<b>.+?)", "{p}": "(?P<p>.+?)", "{an}": "(?:a|an)"}
_STEP_TEMPLATES = ("count", "relation", "size", "distance", "colour", "location")


@cache
def _step_patterns() -> tuple[tuple[str, re.Pattern], ...]:
    patterns = []
    for template in _STEP_TEMPLATES:
        for wording in stage1.WORDINGS[template]:
            text = re.escape(wording)
            for slot, group in _SLOTS.items():  # a slot said twice is the same words twice
                before, found, after = text.partition(re.escape(slot))
                if found:
                    repeat = f"(?P={group[4]})" if group.startswith("(?P<") else group
                    text = before + group + after.replace(found, repeat)
            patterns.append((template, re.compile(f"^{text}$")))
    return tuple(patterns)


def _resolve(w: _Writer, phrase: str) -> SceneObject | None:
    """The one object a phrase names: "circle" (the only circle) or "red circle"."""
    found = [o for o in w.objects if o.name == phrase]
    if not found and " " in phrase:
        colour, _, name = phrase.partition(" ")
        found = [o for o in w.objects if o.name == name and stage1.colour_of(o) == colour]
    return found[0] if len(found) == 1 else None


def _step_options(w: _Writer, template: str, slots: dict, answer: str) -> tuple[list[str], list[SceneObject]] | None:
    """The options and grounding stage 1 would have given this sub-question, from the scene."""
    objs = [_resolve(w, slots[k]) for k in ("a", "b") if slots.get(k)]
    if None in objs:
        return None
    if template == "count":
        objs = [o for o in w.objects if plural(o.name) == slots["p"]]
        start = max(0, min(len(objs) - 1, stage1.MAX_COUNT - stage1.OPTIONS + 1))
        return [str(v) for v in range(start, start + stage1.OPTIONS)], objs
    if template == "relation":
        return [f"{phrase} the {slots['b']}" for phrase in stage1.RELATION_PHRASES.values()], objs
    if template == "size":
        return [text.format(b=slots["b"]) for text in stage1.SIZE_BINS], objs
    if template == "location":
        return list(stage1.QUADRANTS), objs
    if template == "colour":
        shown = [*w.options(), "red", "blue", "green", "yellow", "black", "white"]  # the composite's colours first
        others = [c for c in dict.fromkeys(shown) if c in stage1.COLOUR_WORDS and c not in objs[0].attributes]
        return [answer, *others[:3]], objs
    near = [o for o in w.objects if w.phrase(o) == answer]
    others = [w.phrase(o) for o in w.objects if o.id != objs[0].id and w.phrase(o) != answer][:3]
    return ([answer, *others], [objs[0], *near]) if near else None


def _stage1_case(
    w: _Writer, template: str, question: str, options: list[str], objs: list[SceneObject], answer: int, index: int
) -> _Case | None:
    """A sub-question worked out by stage 1's template ``template`` against ``options``, if it lands on ``answer``."""
    step = {
        "id": f"{w.mcq['id']}:{index}",
        "question": question,
        "options": options,
        "answer": LETTERS[answer],
        "grounding": [{"object_id": o.id, "name": o.name, "bbox": o.bbox} for o in objs],
        "generator": stage1.template_generator(template),
    }
    case = _template_case(_Writer(step, w.scene, w.rng), template)
    return case if case is not None and case.answer == answer else None


# Hops stage 2 recomputes from the boxes that no stage-1 question asks ("the largest star", the sizes of two objects
# found through relations): their wordings as stage 2 writes them.
_SUPERLATIVE_STEP = re.compile(r"^Which (?P<kind>.+?) is the (?P<most>largest|smallest)\?$")
_SIZES_STEP = re.compile(r"^How large is the (?P<a>.+?) relative to the (?P<b>.+?)\?$")


def _box_area(obj: SceneObject) -> tuple[int, int, int]:
    """Width, height and area as a reader works them out from the extents shown (whole pixels)."""
    width, height = round(obj.bbox[2]) - round(obj.bbox[0]), round(obj.bbox[3]) - round(obj.bbox[1])
    return width, height, width * height


def _superlative_case(w: _Writer, kind: str, most: str) -> tuple[_Case, list[str]] | None:
    """Which instance of a category is the largest (or smallest): every instance's box area, compared."""
    objs = sorted((o for o in w.objects if singular(o.name) == kind), key=lambda o: (o.bbox[0], o.bbox[1]))
    options = [f"the {w.phrase(o)}" for o in objs]
    if len(objs) < 2 or len(set(options)) < len(options):
        return None
    areas = [_box_area(o)[2] for o in objs]
    pick = areas.index(max(areas) if most == "largest" else min(areas))
    if areas.count(areas[pick]) > 1:
        return None
    runner_up = min((a for i, a in enumerate(areas) if i != pick), key=lambda a: abs(a - areas[pick]))

    def covers(obj: SceneObject) -> str:
        width, height, area = _box_area(obj)
        return f"{w.at(f'the {w.phrase(obj)}', obj)} covers {_n(width)} × {_n(height)} = {_n(area)} square pixels"

    def conclude(choice: int) -> str:
        return f"So the {most} {kind} is {options[choice]}."

    right = [f"I compare the box areas of the {len(objs)} {plural(kind)}: {'; '.join(covers(o) for o in objs)}."]
    right.append(f"The {most} area is {_n(areas[pick])}, that of the {w.phrase(objs[pick])}.")
    check = [f"The next closest area is {_n(runner_up)}, so the {w.phrase(objs[pick])} is plainly the {most}."]
    return _Case(pick, right, check, conclude), options


def _sizes_case(w: _Writer, question: str, slots: dict, answer: str, index: int) -> tuple[_Case, list[str]] | None:
    """Two objects' relative size, in stage 2's words (``stage2.SIZE_OPTIONS``), worked out as stage 1's size."""
    objs = [_resolve(w, slots["a"]), _resolve(w, slots["b"])]
    if None in objs or answer not in stage2.SIZE_OPTIONS:
        return None
    options = [text.format(b=slots["b"]) for text in stage1.SIZE_BINS]  # in the order of SIZE_OPTIONS
    case = _stage1_case(w, "size", question, options, objs, stage2.SIZE_OPTIONS.index(answer), index)
    return (case, list(stage2.SIZE_OPTIONS)) if case is not None else None


def _step_case(w: _Writer, question: str, answer: str, index: int) -> tuple[_Case, list[str]] | None:
    """A sub-question worked out from the boxes as stage 1 would, when its wording and objects are recognised; with
    the options it was worked out against (so a slip's answer is one of them)."""
    match = _SUPERLATIVE_STEP.match(question)
    if match is not None:
        found = _superlative_case(w, match["kind"], match["most"])
        return found if found is not None and found[1][found[0].answer] == answer else None
    match = _SIZES_STEP.match(question)
    if match is not None:
        return _sizes_case(w, question, match.groupdict(), answer, index)
    for template, pattern in _step_patterns():
        match = pattern.match(question)
        if match is None:
            continue
        found = _step_options(w, template, match.groupdict(), answer)
        if found is None or answer not in found[0]:
            return None
        options, objs = found
        case = _stage1_case(w, template, question, options, objs, options.index(answer), index)
        return (case, options) if case is not None else None
    return None


def _step(step) -> tuple[str, str]:
    return (step["question"], step["answer"]) if isinstance(step, dict) else tuple(step)


def _composed_case(w: _Writer) -> _Case:
    """A multi-hop question: each sub-question worked out in turn from the boxes, then the options.

    A planted slip sits in one sub-question; it is used only where its effect on the final answer is known: a
    miscount in a total or a difference, or a wrong last step whose answer is itself an option.
    """
    options = w.options()
    answer = LETTERS.index(w.mcq["answer"])
    steps = [_step(step) for step in w.mcq["steps"]]
    cases = [_step_case(w, question, reply, i) for i, (question, reply) in enumerate(steps)]
    template = parse_generator(w.mcq["generator"]).template

    def worked(i: int, wrong: bool = False) -> list[str]:
        question, reply = steps[i]
        head = f"Step {i + 1}: {question}"
        if cases[i] is None:
            return [head, f"Looking at the image, the answer is {reply}."]
        case = cases[i][0]
        return [
            head,
            *(case.wrong if wrong else case.right),
            case.conclude(case.wrong_choice if wrong else case.answer),
        ]

    def conclude(choice: int) -> str:
        return f"Putting the steps together, the answer is: {options[choice]}."

    counts = [int(reply) for _, reply in steps if reply.isdigit()]
    arithmetic = template in ("set_count", "comparison_count") and len(counts) == 2

    def combined(values: list[int]) -> tuple[int, list[str]]:
        """A total or a difference of two counts, and the sentence that works it out."""
        if template == "set_count":
            return sum(values), [f"In total that is {values[0]} + {values[1]} = {sum(values)}."]
        return values[0] - values[1], [f"The difference is {values[0]} − {values[1]} = {values[0] - values[1]}."]

    combine = combined(counts)[1] if arithmetic else []
    if template == "conjunction":
        combine = [f"So the {options[answer]} is the object that fits both."]
    right = [f"This takes {len(steps)} steps."]
    for i in range(len(steps)):
        right += worked(i)
    right += combine
    last = cases[-1][0].check if cases and cases[-1] else []
    check = [*last, "Each step still holds, and together they give the same option."]
    case = _Case(answer, right, check, conclude)
    if None in cases:  # a step taken on trust is never where a slip is planted, nor is any step around it
        return case
    for i in w.rng.sample(range(len(steps)), len(steps)):
        if cases[i][0].wrong_choice is None:
            continue
        slip, step_options = cases[i]
        wrong_reply = step_options[slip.wrong_choice]
        final, tail = None, []
        if arithmetic and wrong_reply.isdigit():
            result, tail = combined([int(wrong_reply) if j == i else counts[j] for j in range(2)])
            if str(result) in options and str(result) != options[answer]:
                final = options.index(str(result))
        elif i == len(steps) - 1 and wrong_reply in options and wrong_reply != options[answer]:
            final = options.index(wrong_reply)
        if final is None:
            continue
        case.wrong = [right[0]]
        for j in range(len(steps)):
            case.wrong += worked(j, wrong=j == i)
        case.wrong += tail
        case.wrong_choice = final
        case.catch = [f"In step {i + 1}, {_lower_first(slip.catch[0])}", *slip.catch[1:], *combine]
        return case
    if template == "conjunction":  # every step right, then the wrong option taken for the one they single out
        slipped = w.rng.choice([i for i in range(len(options)) if i != answer])
        target = _resolve(w, options[slipped])
        where = f"{w.at(f'the {options[slipped]}', target)} does not fit both" if target else "it does not fit both"
        case.wrong = [*right[: len(right) - len(combine)], f"Of the options, the {options[slipped]} fits both."]
        case.wrong_choice = slipped
        case.catch = [f"Looking at the image, {where}; both steps single out the {options[answer]}."]
    return case


def _lower_first(sentence: str) -> str:
    return sentence if sentence.startswith(("I ", "I'")) else sentence[0].lower() + sentence[1:]


def _template_case(w: _Writer, template: str) -> _Case | None:
    solvers = {
        "count": lambda: _count_case(w, template),
        "relation": lambda: _relation_case(w),
        "size": lambda: _size_case(w),
        "distance": lambda: _distance_case(w),
        "existence": lambda: _existence_case(w, template),
        "absence": lambda: _existence_case(w, template),
        "colour": lambda: _attribute_case(w, template),
        "attribute": lambda: _attribute_case(w, template),
        "location": lambda: _location_case(w),
    }
    return solvers[template]() if template in solvers else None


def _case(mcq: dict, scene: Scene, rng: random.Random) -> _Case:
    """The MCQ worked out by its template (or step by step); a question the boxes do not answer as its gold letter
    says (a teacher's, or one no template wrote) gets the generic reasoning, which ends on the gold option."""
    w = _Writer(mcq, scene, rng)
    if mcq.get("level", 1) >= 2 and mcq.get("steps"):
        case = _composed_case(w)
    else:
        case = _template_case(w, parse_generator(mcq["generator"]).template)
    return case if case is not None and LETTERS[case.answer] == mcq["answer"] else _generic_case(w)


def _say(lines: list[str]) -> str:
    return " ".join(lines)


def scripted_traces(mcq: dict, scene: Scene, n: int, seed: int) -> list[Trace]:
    """``n`` short CoTs for ``mcq`` written from its boxes, each also continued after a cue: ``2n`` traces.

    A short CoT is right, or (about ``WRONG_SHARE`` of them, where the question allows a plausible slip) wrong by
    one planted slip. Its continuation re-checks it: a right one is verified (``O→O``) or, now and then, talked
    out of it by the same slip (``O→X``); a wrong one has its slip caught and corrected (``X→O``) or kept (``X→X``).
    """
    traces = []
    for index in range(n):
        rng = random.Random(f"{seed}:{mcq['id']}:{index}")
        case = _case(mcq, scene, rng)
        slipped = case.wrong_choice is not None and rng.random() < WRONG_SHARE
        short_lines = case.wrong if slipped else case.right
        short_choice = case.wrong_choice if slipped else case.answer
        short = _say([*short_lines, case.conclude(short_choice)])
        cue = rng.choice(CUES)
        opener = rng.choice(_OPENERS[cue])
        if slipped:
            keep = rng.random() < SLIP_KEPT_SHARE
            if keep:
                body, final = [*case.wrong[1:], rng.choice(_KEPT)], short_choice
            else:
                body, final = [*case.catch, rng.choice(_FOUND_SLIP)], case.answer
        else:
            doubt = case.wrong_choice is not None and rng.random() < SLIP_MADE_SHARE
            if doubt:
                body, final = [rng.choice(_DOUBTED), *case.wrong[1:]], case.wrong_choice
            else:
                body, final = [*case.check, rng.choice(_CONFIRMED)], case.answer
        expansion = _say([opener, *body, case.conclude(final)])
        if mentions_banned(short) or mentions_banned(expansion):  # an object called by a banned word ("text")
            continue
        for cue_, expansion_, choice in (("", "", short_choice), (cue, expansion, final)):
            traces.append(
                Trace(
                    mcq_id=mcq["id"],
                    kind=kind_of(short_choice == case.answer, final == case.answer if cue_ else None),
                    short=short,
                    cue=cue_,
                    expansion=expansion_,
                    think=f"{short}\n\n{cue_} {expansion_}" if cue_ else short,
                    predicted=LETTERS[choice],
                    correct=choice == case.answer,
                    teacher=SCRIPTED_TEACHER,
                    reasoner=SCRIPTED_REASONER if cue_ else "",
                )
            )
    return traces
