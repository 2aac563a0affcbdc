"""Stage 2: composition hardening. Stage-1 questions of one image merged into multi-hop questions.

A composite names an object only through another fact ("the object to the left of the red circle") or asks for
something two facts give together (the total of two counts, the object both left of one thing and above another),
so answering it takes every hop. Each composite keeps the stage-1 questions it is made of (``parents``) and the
``steps`` a reader takes to find its answer, forward: each sub-question asks for what the next one needs ("which
object is to the left of the red circle?", then "what colour is the heart?"), never names what it is about to find,
and carries its answer, what it asks (``Step.template``) and the ids of the objects it looks at and finds, so nothing
downstream reads English to follow it; ``level`` is the number of hops.

Template questions are composed here, programmatically. Nothing is copied from a parent: every parent's fact is
recomputed from the scene's boxes with stage 1's own rules (``stage1.relation``, ``stage1.quadrant``, ...) and must
agree with the parent's answer, the composite's answer is recomputed from the boxes, and a referring phrase is used
only when exactly one object in the whole scene could fit it (an object diagonal to the anchor could be called "to
its left": then "the object to the left of" is not asked). The margins are stage 1's. Two hops no stage-1 question
asks are recomputed from the boxes and kept as steps without a parent: "the largest star" (an anchor larger than
every other star by stage 1's size margin), the size ratio of two objects a comparison finds through relations, and
the second count of a total or a difference (by stage 1's counting rule) beside a stage-1 count row, so such a
composite may have one parent.

The shortcut rule holds as in stage 1: each question is offered in every form it may take (a count window, a pair
either way round) to a ``stage1.Balance``, which keeps the form that keeps answer classes even, or none; distractors
are of the answer's own class (colours the image's colour questions offered, phrases of other objects that say of
the question's words what the answer says), and every template has several wordings. A location found through a
relation is balanced by where it lies seen from that relation (on its side or not), one class count for all four
relations, so a reader cannot bet that "the object to the left of" lies on the left.

LLM-written stage-1 questions carry no checkable structure, so they are composed by an LLM (``compose_with_llm``):
the writer merges two or three questions of one image and states its answer; a verifier that reads only the caption
and the boxes must pick the same option, or the composite is dropped. Rejects are counted by reason.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import combinations

from datasets.utils import logging

from ..answers import LETTERS
from ..generation import Bill, Engine, Request
from ..prompts import Prompt, load_prompt
from ..scene import Scene, SceneObject
from . import stage1
from .generator import generator_id, parse_generator
from .grammar import article, from_plural, plural, singular
from .llm_mcq import (
    MAX_OPTION_CHARS,
    MAX_QUESTION_CHARS,
    LLMResult,
    _scene_values,
    ask,
    bill,
    check_options,
    gives_answer_away,
    parse_questions,
    questions_schema,
    split_options,
    verify,
    writer_request,
)
from .llm_mcq import verify_request as verify_request  # composites are verified as stage-1 drafts are
from .stage1 import OPTIONS, Balance, Draft

logger = logging.get_logger(__name__)

VERSION = 1
# The skill each template exercises: one per kind of composition.
SKILLS = {
    "chain_colour": "chain",
    "chain_location": "chain",
    "comparison_count": "comparison",
    "comparison_size": "comparison",
    "set_count": "set_count",
    "conjunction": "conjunction",
}
# At most this many composites per template per image, so a crowded image does not dominate a skill.
PER_TEMPLATE = {
    "chain_colour": 2,
    "chain_location": 2,
    "comparison_count": 2,
    "comparison_size": 1,
    "set_count": 1,
    "conjunction": 2,
}
# A total of two countable categories is at most twice stage 1's largest count.
MAX_TOTAL = 2 * stage1.MAX_COUNT
INVERSE = {"left": "right", "right": "left", "above": "below", "below": "above"}
SIZE_OPTIONS = (
    "less than a third its size",
    "smaller, but more than a third its size",
    "larger, but less than three times its size",
    "more than three times its size",
)

# ``{r}`` is a referring phrase ("the object to the left of the red circle"), ``{a}``/``{b}`` object phrases,
# ``{p}``/``{q}`` plural category phrases, ``{r1}``/``{r2}`` relation phrases.
WORDINGS = {
    "chain_colour": (
        "What colour is {r}?",
        "Which colour is {r}?",
        "What is the colour of {r}?",
        "Look at {r}. What colour is it?",
        "Which of these colours does {r} have?",
    ),
    "chain_location": (
        "In which part of the image is {r}?",
        "Where in the image is {r}?",
        "Which quarter of the picture contains {r}?",
        "Find {r}. Which part of the image is it in?",
        "In which corner region of the image does {r} lie?",
    ),
    "comparison_count": (
        "How many more {p} than {q} are there in the image?",
        "By how many does the number of {p} exceed the number of {q}?",
        "Count the {p} and the {q}. How many more {p} are there?",
        "How many more {p} are there than {q}?",
        "Compared with the {q}, how many more {p} does the picture contain?",
    ),
    "comparison_size": (
        "How large is {r1}, compared with {r2}?",
        "Comparing their bounding boxes, how big is {r1} relative to {r2}?",
        "By box area, how does {r1} compare in size with {r2}?",
        "Find {r1} and {r2}. How large is the first relative to the second?",
        "Judging by their boxes, what is the size of {r1} relative to {r2}?",
    ),
    "set_count": (
        "How many {p} and {q} are there in total?",
        "Counting both the {p} and the {q}, how many objects are there?",
        "What is the total number of {p} and {q} in the image?",
        "How many {p} and {q} does the picture contain altogether?",
        "Add up the {p} and the {q}. How many are there?",
    ),
    "conjunction": (
        "Which object is both {r1} the {a} and {r2} the {b}?",
        "Which of these is {r1} the {a} and also {r2} the {b}?",
        "What object lies {r1} the {a} and {r2} the {b}?",
        "Which object is {r1} the {a} while being {r2} the {b}?",
        "Name the object that is {r1} the {a} and {r2} the {b}.",
    ),
}
REFERENTS = {
    "relation": ("the object {rel} the {b}", "the item {rel} the {b}", "the thing {rel} the {b}"),
    "distance": ("the object closest to the {b}", "the object nearest the {b}", "the thing closest to the {b}"),
}
# The steps' phrasings: ``{rel}`` a relation phrase, ``{b}``/``{a}`` object phrases, ``{p}`` a plural, ``{kind}``
# a category, ``{most}`` largest or smallest. A step never names what it finds.
STEP_WORDINGS = {
    "find_relation": (
        "Which object is {rel} the {b}?",
        "What lies {rel} the {b}?",
        "Which object sits {rel} the {b}?",
        "What is {rel} the {b}?",
    ),
    "find_nearest": (
        "Which object is closest to the {b}?",
        "What lies nearest the {b}?",
        "Which object is nearest to the {b}?",
    ),
    "find_extreme": ("Which {kind} is the {most}?", "Of the {kinds}, which is the {most}?"),
    "find_all": (
        "Which objects are {rel} the {b}?",
        "What lies {rel} the {b}?",
        "Which objects sit {rel} the {b}?",
    ),
    "filter_relation": (
        "Which of those is {rel} the {b}?",
        "Of those, which one is {rel} the {b}?",
        "Which of them lies {rel} the {b}?",
    ),
    "colour": ("What colour is the {a}?", "Which colour does the {a} have?", "What is the colour of the {a}?"),
    "location": (
        "In which part of the image is the {a}?",
        "Which quarter of the image holds the {a}?",
        "Where in the image is the {a}?",
    ),
    "count": ("How many {p} are there?", "How many {p} does the image show?", "What is the number of {p}?"),
    "size": (
        "How large is the {a} relative to the {b}?",
        "By box area, how big is the {a} compared with the {b}?",
        "How does the {a} compare in size with the {b}?",
    ),
}
# The count templates' phrasings, as patterns: a count of 0 has no grounding, its category is read from the question.
_COUNT_TOPIC = [
    re.compile("^" + re.escape(w).replace(re.escape("{p}"), "(?P<p>.+)") + "$") for w in stage1.WORDINGS["count"]
]


def template_generator(template: str) -> str:
    """The ``generator`` of a row a stage-2 template composed."""
    return generator_id("stage2", template, VERSION)


@dataclass(frozen=True)
class Composite:
    """A multi-hop question before lettering; it has what ``answers.letter_options`` reads of a ``stage1.Draft``.

    ``parents`` are the ids of the stage-1 rows it composes, ``steps`` the forward sub-questions in the order a reader
    answers them, ``level`` the hops (one per step).
    """

    template: str
    question: str
    correct: str
    distractors: tuple[str, ...]
    ordered: bool
    grounding: tuple[SceneObject, ...]
    skill: str
    level: int
    parents: tuple[str, ...]
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class Step:
    """One forward sub-question of a composite.

    ``template`` says what it asks, with its parameter: ``find_left`` (which object is to the left of the one in
    ``object_ids``), ``find_nearest``, ``find_largest`` / ``find_smallest`` (of the instances in ``object_ids``),
    ``all_left`` (every object to the left of it, by the loose reading a person might use), ``filter_above`` (which
    of those found is above the first of ``object_ids``), ``colour``, ``location``, ``count`` (of ``category``:
    the instances are ``object_ids``), ``size`` (the first of ``object_ids`` relative to the second); ``llm`` for a
    model's step. ``answer_ids`` are the objects its answer names (empty for a value). ``parent`` is the stage-1 row
    whose fact it rests on ("" for a hop recomputed here that no stage-1 question asked).
    """

    question: str
    answer: str
    template: str
    object_ids: tuple[int, ...]
    answer_ids: tuple[int, ...] = ()
    category: str = ""
    parent: str = ""


# ---- the facts of the parents, recomputed from the scene ----


@dataclass(frozen=True)
class _Relation:
    """``target`` is ``rel`` of ``anchor``; one stage-1 relation row (``parent``) states it, either way round."""

    target: SceneObject
    anchor: SceneObject
    rel: str
    parent: str


@dataclass
class _Facts:
    """What the image's stage-1 rows say, each fact checked against the boxes (one per parent row), and the counts
    no row asked, from the boxes."""

    scene: Scene
    phrase: dict[int, str]  # object id -> the phrase naming it alone ("dog", "red circle")
    relations: list[_Relation] = field(default_factory=list)
    nearest: list[tuple[SceneObject, SceneObject, str]] = field(default_factory=list)  # (target, anchor, parent)
    colours: dict[int, str] = field(default_factory=dict)  # object id -> the colour row's id
    locations: dict[int, str] = field(default_factory=dict)  # object id -> the location row's id
    counts: list[tuple[str, int, list[SceneObject], str]] = field(default_factory=list)  # (plural, n, objs, parent)
    colour_texts: set[str] = field(default_factory=set)  # every colour the image's colour questions showed
    absent_names: set[str] = field(default_factory=set)  # categories the image's questions named and it lacks
    # (plural, n, objs, "") of each countable category of the image no stage-1 row counted, counted from the boxes
    box_counts: list[tuple[str, int, list[SceneObject], str]] = field(default_factory=list)


def _countable(scene: Scene, objs: list[SceneObject]) -> bool:
    """Stage 1's counting rule: no crowd box, every instance large enough to count, not too many."""
    least = stage1.MIN_COUNTED_SHARE * scene.width * scene.height
    return len(objs) <= stage1.MAX_COUNT and all(not o.crowd and o.area >= least for o in objs)


def _count_topic(question: str) -> str | None:
    for pattern in _COUNT_TOPIC:
        match = pattern.match(question)
        if match:
            return match["p"]
    return None


def _read_row(facts: _Facts, row: dict, by_id: dict[int, SceneObject], by_name: dict[str, list]) -> bool:
    """Record the fact one stage-1 row states, if the boxes say the same; False when they do not (or it is unknown)."""
    written = parse_generator(row["generator"])
    template = written.template if written.stage == "stage1" else ""
    ids = [g["object_id"] for g in row["grounding"]]
    if any(i not in by_id for i in ids) or row["answer"] not in LETTERS:
        return False
    objs, correct = [by_id[i] for i in ids], row["options"][LETTERS.index(row["answer"])]
    step = row["id"]
    scene, phrase = facts.scene, facts.phrase
    if template == "relation" and len(objs) == 2 and all(o.id in phrase for o in objs):
        first, second = objs
        rel = stage1.relation(first, second)
        if rel is None or correct != f"{stage1.RELATION_PHRASES[rel]} the {singular(phrase[second.id])}":
            return False
        facts.relations += [_Relation(first, second, rel, step), _Relation(second, first, INVERSE[rel], step)]
    elif template == "colour" and len(objs) == 1:
        if stage1.colour_of(objs[0]) != correct:
            return False
        facts.colours[objs[0].id] = step
        facts.colour_texts.update(row["options"])
    elif template == "location" and len(objs) == 1:
        if stage1.quadrant(objs[0], scene.width, scene.height) != correct:
            return False
        facts.locations[objs[0].id] = step
    elif template == "distance" and len(objs) == 2 and all(o.id in phrase for o in objs):
        if phrase[objs[1].id] != correct:
            return False
        facts.nearest.append((objs[1], objs[0], step))
    elif template == "count":
        topic = plural(objs[0].name) if objs else _count_topic(row["question"])
        same = [o for name, found in by_name.items() if plural(name) == topic for o in found]
        if topic is None or sorted(o.id for o in same) != sorted(ids) or str(len(same)) != correct:
            return False
        if not _countable(scene, same):
            return False
        facts.counts.append((topic, len(same), same, step))
    elif template in ("existence", "absence"):
        facts.absent_names.update(text for text in row["options"] if text not in by_name)
    else:
        return False
    return True


def _facts(scene: Scene, rows: list[dict]) -> _Facts:
    named = stage1._SceneFacts(scene, stage1.Vocabulary([], [], [])).named
    facts = _Facts(scene, {obj.id: phrase for phrase, obj in named})
    by_id = {obj.id: obj for obj in scene.objects}
    by_name: dict[str, list[SceneObject]] = {}
    for obj in scene.objects:
        by_name.setdefault(obj.name, []).append(obj)
    disagreeing = [row["id"] for row in rows if not _read_row(facts, row, by_id, by_name)]
    counted = {topic for topic, *_ in facts.counts}
    facts.box_counts = [
        (plural(name), len(found), found, "")
        for name, found in sorted(by_name.items())
        if plural(name) not in counted and _countable(scene, found)
    ]
    if disagreeing:
        logger.debug(f"{scene.image_id}: stage-1 rows not composed (no fact the boxes confirm): {disagreeing}")
    return facts


# ---- referring phrases: used only when exactly one object of the whole scene could fit them ----


def _could_be(obj: SceneObject, anchor: SceneObject, rel: str) -> bool:
    """Whether a person might call ``obj`` ``rel`` of ``anchor``: stage 1 says so, or it says nothing (a diagonal
    or overlapping neighbour) and the box centre lies on that side."""
    found = stage1.relation(obj, anchor)
    if found is not None:
        return found == rel
    (ox, oy), (ax, ay) = obj.center, anchor.center
    return {"left": ox < ax, "right": ox > ax, "above": oy < ay, "below": oy > ay}[rel]


def _only(scene: Scene, target: SceneObject, fits: Callable[[SceneObject], bool], *exclude: SceneObject) -> bool:
    """``target`` fits and no other object of the scene (but those excluded) does."""
    skip = {o.id for o in exclude} | {target.id}
    return fits(target) and not any(fits(o) for o in scene.objects if o.id not in skip)


def _unique_relation(scene: Scene, fact: _Relation) -> bool:
    return fact.target.id != fact.anchor.id and _only(
        scene, fact.target, lambda o: _could_be(o, fact.anchor, fact.rel), fact.anchor
    )


def _unique_nearest(scene: Scene, target: SceneObject, anchor: SceneObject) -> bool:
    """``target`` is the object nearest ``anchor`` by stage 1's margins, over every object (none touches it)."""
    gaps = sorted((stage1.gap(anchor, o), o.id) for o in scene.objects if o.id != anchor.id)
    if len(gaps) < 2 or gaps[0][1] != target.id or gaps[0][0] <= 0:
        return False
    clear = stage1.DISTANCE_GAP * math.hypot(scene.width, scene.height)
    return gaps[0][0] <= stage1.DISTANCE_RATIO * gaps[1][0] and gaps[1][0] - gaps[0][0] >= clear


def _superlative(scene: Scene, anchor: SceneObject) -> str | None:
    """ "largest" or "smallest" when ``anchor`` is plainly that among the instances of its category (two or more,
    each visible and whole), by at least stage 1's size margin over every other one; else None."""
    same = [o for o in scene.objects if o.name == anchor.name]
    least = stage1.MIN_VISIBLE_SHARE * scene.width * scene.height
    if len(same) < 2 or any(o.crowd or o.area < least or stage1._cut_by_frame(o, scene) for o in same):
        return None
    others, margin = [o.area for o in same if o.id != anchor.id], 2**stage1.SIZE_MARGIN
    if anchor.area >= margin * max(others):
        return "largest"
    if anchor.area * margin <= min(others):
        return "smallest"
    return None


def _referents(facts: _Facts, rng: random.Random) -> Iterator[tuple[SceneObject, SceneObject, str, list, tuple]]:
    """(object, the object it is found through, the phrase that picks it out, the steps that say so, the phrase's
    key). The object found through may itself be found by its size among its kind ("the largest star"): a step no
    stage-1 question asked, recomputed here."""
    scene = facts.scene
    for fact in facts.relations:
        if not _unique_relation(scene, fact):
            continue
        rel, wording = stage1.RELATION_PHRASES[fact.rel], rng.choice(REFERENTS["relation"])
        named = singular(facts.phrase[fact.anchor.id])
        find = _find_step(facts, fact, rng)
        yield fact.target, fact.anchor, wording.format(rel=rel, b=named), [find], (fact.rel, fact.anchor.id)
        most = _superlative(scene, fact.anchor)
        if most is not None:
            kind = singular(fact.anchor.name)
            same = tuple(o.id for o in scene.objects if o.name == fact.anchor.name)
            question = _ask("find_extreme", rng, kind=kind, kinds=plural(kind), most=most)
            extreme = Step(question, f"the {named}", f"find_{most}", same, (fact.anchor.id,), fact.anchor.name)
            text = wording.format(rel=rel, b=f"{most} {kind}")
            yield fact.target, fact.anchor, text, [extreme, find], (fact.rel, fact.anchor.id, most)
    for target, anchor, parent in facts.nearest:
        if _unique_nearest(scene, target, anchor):
            named = singular(facts.phrase[anchor.id])
            text = rng.choice(REFERENTS["distance"]).format(b=named)
            question = _ask("find_nearest", rng, b=named)
            find = Step(question, _called(facts, target), "find_nearest", (anchor.id,), (target.id,), parent=parent)
            yield target, anchor, text, [find], ("near", anchor.id)


def _find_step(facts: _Facts, fact: _Relation, rng: random.Random) -> Step:
    """ "Which object is to the left of the red circle?": the object a relation picks out, found."""
    question = _ask(
        "find_relation", rng, rel=stage1.RELATION_PHRASES[fact.rel], b=singular(facts.phrase[fact.anchor.id])
    )
    answer = _called(facts, fact.target)
    return Step(question, answer, f"find_{fact.rel}", (fact.anchor.id,), (fact.target.id,), parent=fact.parent)


def _called(facts: _Facts, obj: SceneObject) -> str:
    """How a step's answer names an object: by the phrase naming it alone, else as one of its kind."""
    phrase = facts.phrase.get(obj.id)
    return f"the {singular(phrase)}" if phrase else f"{article(obj.name)} {obj.name}"


def _listing(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


# ---- templates: each yields (template, a function making the forms a question may take, as (Draft, meta)) ----

Form = tuple[Draft, dict]
Candidate = tuple[str, Callable[[], list[Form]]]


def _say(template: str, rng: random.Random, **values) -> str:
    text = rng.choice(WORDINGS[template]).format(**values)
    return text[0].upper() + text[1:]


def _ask(template: str, rng: random.Random, **values) -> str:
    """One of a step template's phrasings."""
    return rng.choice(STEP_WORDINGS[template]).format(**values)


def _meta(steps: list[Step], grounding: list[SceneObject]) -> dict:
    return {"steps": steps, "grounding": grounding}


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def _chain_colour_forms(facts, grounding, referent, steps, rng, balance: Balance) -> list[Form]:
    target = grounding[0]
    colour = stage1.colour_of(target)
    question = _say("chain_colour", rng, r=referent)
    said = _words(question)
    if colour is None or colour in said:  # "the object left of the red circle": red must not be a give-away
        return []
    pool = sorted(c for c in facts.colour_texts if c != colour and c not in said and c not in target.attributes)
    if len(pool) < OPTIONS - 1:
        return []
    distractors = balance.distractors("chain_colour", pool, rng)
    draft = Draft("chain_colour", question, colour, distractors, grounding, skill="chain")
    found = _ask("colour", rng, a=singular(facts.phrase[target.id]))
    last = Step(found, colour, "colour", (target.id,), parent=facts.colours[target.id])
    return [(draft, _meta([*steps, last], grounding))]


# Where a quadrant lies seen from a relation: on the relation's side or not, and in the first half (top, left) of
# the other axis or not.
_SIDE_CLASSES = ((True, True), (True, False), (False, True), (False, False))


def _side_class(rel: str, where: str) -> tuple[bool, bool]:
    """``where`` (a quadrant) seen from ``rel``: "bottom left" is (True, False) for "left", (False, True) for
    "above"."""
    vertical, horizontal = where.split()
    if rel in ("left", "right"):
        return horizontal == rel, vertical == "top"
    return vertical == {"above": "top", "below": "bottom"}[rel], horizontal == "left"


def _chain_location_forms(facts, grounding, referent, steps, key, rng) -> list[Form]:
    target = grounding[0]
    where = stage1.quadrant(target, facts.scene.width, facts.scene.height)
    distractors = [q for q in stage1.QUADRANTS if q != where]
    rng.shuffle(distractors)
    question = _say("chain_location", rng, r=referent)
    # The object left of something is more often on the left, which a reader could learn: balanced by where the
    # answer lies seen from the relation, all four relations along one key, so each relation's few questions in a
    # stream need not fill its own classes (those it asks first would be its easy, same-side, quadrants).
    if key[0] in INVERSE:
        balanced, classes, answer_class = ("chain_location", "side"), _SIDE_CLASSES, _side_class(key[0], where)
    else:
        balanced, classes, answer_class = ("chain_location", key[0]), stage1.QUADRANTS, where
    draft = Draft(
        "chain_location",
        question,
        where,
        distractors,
        grounding,
        False,
        balanced,
        classes,
        answer_class,
        skill="chain",
    )
    found = _ask("location", rng, a=singular(facts.phrase[target.id]))
    last = Step(found, where, "location", (target.id,), parent=facts.locations[target.id])
    return [(draft, _meta([*steps, last], grounding))]


def _chains(facts: _Facts, rng: random.Random, balance: Balance) -> Iterator[Candidate]:
    for target, anchor, referent, steps, key in _referents(facts, rng):
        grounding = [target, anchor]
        if target.id in facts.colours:
            yield "chain_colour", partial(_chain_colour_forms, facts, grounding, referent, steps, rng, balance)
        if target.id in facts.locations:
            yield "chain_location", partial(_chain_location_forms, facts, grounding, referent, steps, key, rng)


def _window_forms(template: str, question: str, value: int, top: int, steps, grounding, topic: str) -> list[Form]:
    """The question with each window of four consecutive numbers in [0, ``top``] around ``value``."""
    forms = []
    for start in range(max(0, value - OPTIONS + 1), min(value, top - OPTIONS + 1) + 1):
        window = tuple(range(start, start + OPTIONS))
        distractors = [str(v) for v in window if v != value]
        draft = Draft(
            template,
            question,
            str(value),
            distractors,
            grounding,
            True,
            (template, start),
            window,
            value,
            topic,
            skill=SKILLS[template],
        )
        forms.append((draft, _meta(steps, grounding)))
    return forms


def _counts(facts: _Facts, rng: random.Random, balance: Balance) -> Iterator[Candidate]:
    """Totals and differences of two counts, at least one a stage-1 row's: its other count may be one no stage-1
    row asked, counted from the boxes. Few images have two count rows (a stream keeps a count only when its window's
    rarest number has come up), so pairs of rows alone made ~0.3 count composites per image, whose windows' last
    unfinished round, short of its rarest number, was a visible share of them: "4" was the answer of 4 of the 28
    times it was shown."""
    for (p, n, objs, parent), (q, m, others, other_parent) in combinations(facts.counts + facts.box_counts, 2):
        if p == q or not (parent or other_parent):
            continue
        grounding, topic = objs + others, f"{p}+{q}"
        step = _count_step(p, n, objs, parent, rng)
        other_step = _count_step(q, m, others, other_parent, rng)
        total = _say("set_count", rng, p=p, q=q)
        yield (
            "set_count",
            partial(_window_forms, "set_count", total, n + m, MAX_TOTAL, [step, other_step], grounding, topic),
        )
        if n < m or (n == m and rng.random() < 0.5):  # ask about the larger count first
            (p, n, step), (q, m, other_step) = (q, m, other_step), (p, n, step)
        more = _say("comparison_count", rng, p=p, q=q)
        yield (
            "comparison_count",
            partial(
                _window_forms, "comparison_count", more, n - m, stage1.MAX_COUNT, [step, other_step], grounding, topic
            ),
        )


def _count_step(topic: str, n: int, objs: list[SceneObject], parent: str, rng: random.Random) -> Step:
    category = objs[0].name if objs else from_plural(topic)  # a count of 0 has only the question's plural
    return Step(_ask("count", rng, p=topic), str(n), "count", tuple(o.id for o in objs), (), category, parent)


def _size_forms(facts: _Facts, one, other, rng: random.Random) -> list[Form]:
    """The sizes of two objects, each named through another, compared either way round; the last step (their
    sizes) is recomputed from the boxes, as no stage-1 question needs to have asked it."""
    forms = []
    for (first, anchor1, r1, steps1), (second, anchor2, r2, steps2) in ((one, other), (other, one)):
        answer = stage1.size_bin(first, second)
        if answer is None:
            continue
        distractors = [text for i, text in enumerate(SIZE_OPTIONS) if i != answer]
        rng.shuffle(distractors)
        question = _say("comparison_size", rng, r1=r1, r2=r2)
        a, b = singular(facts.phrase[first.id]), singular(facts.phrase[second.id])
        last = Step(_ask("size", rng, a=a, b=b), SIZE_OPTIONS[answer], "size", (first.id, second.id))
        draft = Draft(
            "comparison_size",
            question,
            SIZE_OPTIONS[answer],
            distractors,
            [first, second, anchor1, anchor2],
            False,
            ("comparison_size",),
            tuple(range(len(SIZE_OPTIONS))),
            answer,
            skill="comparison",
        )
        forms.append((draft, _meta([*steps1, *steps2, last], draft.grounding)))
    return forms


def _sizes(facts: _Facts, rng: random.Random, balance: Balance) -> Iterator[Candidate]:
    scene = facts.scene
    whole = [
        (target, anchor, referent, steps)
        for target, anchor, referent, steps, key in _referents(facts, rng)
        if key[0] != "near" and not stage1._cut_by_frame(target, scene)
    ]
    for one, other in combinations(whole, 2):
        parents = ({s.parent for s in one[3]} & {s.parent for s in other[3]}) - {""}
        if one[0].id == other[0].id or parents:  # one relation naming both ways is no pair
            continue
        if one[0].id in facts.phrase and other[0].id in facts.phrase:
            yield "comparison_size", partial(_size_forms, facts, one, other, rng)


def _phrase_distractors(facts: _Facts, target: SceneObject, shown: set[int], said: set[str], rng, balance: Balance):
    """Three phrases naming other things in the answer's own shape: "blue star" for "red circle", "dog" for "cat".

    A reader could tell the answer by its form, so every phrase says of the question's words what the answer says
    (``_shape``): for "the blue cross" asked about through a green cross, other crosses ("pink cross"); for "the
    brown diamond" asked about through a brown cross, other brown things; where the answer shares nothing, phrases
    sharing nothing. Among those, phrases with as many new words as the answer first, phrases of the image's other
    objects first (a person must look to rule them out), then phrases no object fits, made from the image's
    categories and colours.
    """
    scene, phrase = facts.scene, facts.phrase
    coloured = phrase[target.id] != target.name
    seen = {
        (phrase[o.id], o.name)
        for o in scene.objects
        if o.id in phrase and o.id != target.id and o.id not in shown and (phrase[o.id] != o.name) == coloured
    }
    names = {o.name for o in scene.objects} | facts.absent_names
    if coloured:
        # The stream's colours too: an image showing few colours has too few "<colour> cross" phrases of its own.
        colours = facts.colour_texts | balance.colours
        taken = {f"{c} {o.name}" for o in scene.objects for c in o.attributes}
        made = {(f"{c} {n}", n) for c in colours for n in names if f"{c} {n}" not in taken}
    else:
        made = {(n, n) for n in names - {target.name} - {phrase[i] for i in shown}}
    seen_texts = {text for text, _ in seen}
    # Balanced, and told apart, by what each phrase adds to the question: "black" of "black star" where the question
    # names a star already. Several phrases adding the same words are one option at most.
    answer, shape = _new_words(phrase[target.id], said), _shape(phrase[target.id], target.name, said)
    by_new: dict[str, str] = {}
    for text, name in sorted(seen) + sorted(made - seen):
        new = _new_words(text, said)
        if new and new != answer and _shape(text, name, said) == shape:
            by_new.setdefault(new, text)
    alike = [new for new in by_new if len(new.split()) == len(answer.split())]
    distractors: list[str] = []
    for pool in (
        [n for n in alike if by_new[n] in seen_texts],
        alike,
        [n for n in by_new if by_new[n] in seen_texts],
        list(by_new),
    ):
        pool = [new for new in pool if new not in distractors]
        if len(distractors) < OPTIONS - 1 and pool:
            distractors += balance.distractors("conjunction", pool, rng)[: OPTIONS - 1 - len(distractors)]
    return [by_new[new] for new in distractors]


def _shape(text: str, name: str, said: set[str]) -> tuple[bool, ...]:
    """Which parts of an object phrase (its colour where it has one, then its category) the question says already:
    options whose parts differ in this are told apart by a reader who sees only the text."""
    colour = text[: len(text) - len(name)].strip()
    return tuple(_words(part) <= said for part in (colour, name) if part)


def _new_words(text: str, said: set[str]) -> str:
    """The words of an option the question does not say, as a reader that sees both would tell options apart."""
    return " ".join(word for word in re.findall(r"[a-z0-9]+", text.lower()) if word not in said)


def _conjunction_forms(facts: _Facts, one: _Relation, other: _Relation, rng, balance: Balance) -> list[Form]:
    scene, phrase, target = facts.scene, facts.phrase, one.target
    fits = lambda o: _could_be(o, one.anchor, one.rel) and _could_be(o, other.anchor, other.rel)  # noqa: E731
    if not _only(scene, target, fits, one.anchor, other.anchor):
        return []
    question = _say(
        "conjunction",
        rng,
        r1=stage1.RELATION_PHRASES[one.rel],
        a=singular(phrase[one.anchor.id]),
        r2=stage1.RELATION_PHRASES[other.rel],
        b=singular(phrase[other.anchor.id]),
    )
    said = _words(question)
    if not _new_words(phrase[target.id], said):  # "the red star", asked about a red thing and a star
        return []
    distractors = _phrase_distractors(facts, target, {one.anchor.id, other.anchor.id}, said, rng, balance)
    if len(distractors) < OPTIONS - 1:
        return []
    grounding = [target, one.anchor, other.anchor]
    # ``balance`` weighs the words each option adds to the question; the composite shows the phrases.
    new = [_new_words(text, said) for text in (phrase[target.id], *distractors)]
    draft = Draft("conjunction", question, new[0], new[1:], grounding, skill="conjunction")
    return [
        (
            draft,
            {
                **_meta(_conjunction_steps(facts, one, other, rng), grounding),
                "texts": (phrase[target.id], distractors),
            },
        )
    ]


def _conjunction_steps(facts: _Facts, one: _Relation, other: _Relation, rng: random.Random) -> list[Step]:
    """Every object ``one.rel`` of its anchor (by the loose reading ``_could_be``), then which of those is
    ``other.rel`` of the other anchor: the target, the only one (``_only``)."""
    scene = facts.scene
    found = [o for o in scene.objects if o.id != one.anchor.id and _could_be(o, one.anchor, one.rel)]
    first = Step(
        _ask("find_all", rng, rel=stage1.RELATION_PHRASES[one.rel], b=singular(facts.phrase[one.anchor.id])),
        _listing([_called(facts, o) for o in found]),
        f"all_{one.rel}",
        (one.anchor.id,),
        tuple(o.id for o in found),
        parent=one.parent,
    )
    second = Step(
        _ask(
            "filter_relation", rng, rel=stage1.RELATION_PHRASES[other.rel], b=singular(facts.phrase[other.anchor.id])
        ),
        _called(facts, one.target),
        f"filter_{other.rel}",
        (other.anchor.id, *(o.id for o in found)),
        (one.target.id,),
        parent=other.parent,
    )
    return [first, second]


def _conjunctions(facts: _Facts, rng: random.Random, balance: Balance) -> Iterator[Candidate]:
    for one, other in combinations(facts.relations, 2):
        if one.target.id != other.target.id or one.anchor.id == other.anchor.id or one.parent == other.parent:
            continue
        if one.target.id in facts.phrase:
            yield "conjunction", partial(_conjunction_forms, facts, one, other, rng, balance)


_TEMPLATES = (_chains, _counts, _sizes, _conjunctions)


def _composite(draft: Draft, meta: dict) -> Composite:
    steps = meta["steps"]
    correct, distractors = meta.get("texts", (draft.correct, draft.distractors))
    return Composite(
        template=draft.template,
        question=draft.question,
        correct=correct,
        distractors=tuple(distractors),
        ordered=draft.ordered,
        grounding=tuple(meta["grounding"]),
        skill=SKILLS[draft.template],
        level=len(steps),
        parents=tuple(dict.fromkeys(s.parent for s in steps if s.parent)),
        steps=tuple(steps),
    )


def _fact(draft: Draft) -> tuple:
    """What a composite asks, whatever its wording or route: a chain asks about its first object, however found."""
    if SKILLS[draft.template] == "chain":
        return draft.template, draft.grounding[0].id
    return draft.template, frozenset(o.id for o in draft.grounding)


def compose(scene: Scene, mcqs: list[dict], rng: random.Random, balance: Balance | None = None) -> list[Composite]:
    """Composites of one image's template stage-1 rows (``mcq_stage1`` rows as dicts, the image not needed).

    Rows a model wrote are ignored (``compose_with_llm`` is their path). Candidates are offered
    to ``balance`` (a fresh one when not given; one per stream of questions, as in stage 1) in a random order, each
    template until it has its quota for this image; no two composites of an image ask the same fact or question.
    """
    balance = balance if balance is not None else Balance()
    balance.colours.update(c for o in scene.objects for c in o.attributes if c in stage1.COLOUR_WORDS)
    facts = _facts(scene, [row for row in mcqs if is_template_row(row)])
    composites: list[Composite] = []
    asked: set = set()
    kept: Counter = Counter()
    for template_candidates in _TEMPLATES:
        candidates = list(template_candidates(facts, rng, balance))
        rng.shuffle(candidates)
        for template, make in candidates:
            if kept[template] == PER_TEMPLATE[template]:
                continue
            forms = [(d, meta) for d, meta in make() if _fact(d) not in asked and d.question not in asked]
            chosen = balance.choose([d for d, _ in forms], rng) if forms else None
            if chosen is None:
                continue
            meta = next(meta for d, meta in forms if d is chosen)
            kept[template] += 1
            asked |= {_fact(chosen), chosen.question}
            composites.append(_composite(chosen, meta))
    return composites


# ---- the LLM path: stage-1 questions a model wrote, composed by a model and kept when a verifier agrees ----

LLM_TEMPLATE = "llm"
LLM_SKILLS = tuple(dict.fromkeys(SKILLS.values()))
# Room to write one composite (~150-250 tokens of JSON with its steps), with margin.
TOKENS_PER_COMPOSITE = 384
_LLM_FIELDS = {"question": str, "options": list, "answer": str, "skill": str, "parents": list, "steps": list}


def is_template_row(row: dict) -> bool:
    """Whether a stage-1 row was written by a template (``compose``'s input) rather than a model."""
    written = parse_generator(row["generator"])
    return written.stage == "stage1" and written.template in stage1.SKILLS


def compose_schema(count: int) -> dict:
    """The JSON schema backends with structured output decode the writer's answer against."""
    step = {
        "type": "object",
        "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
        "required": ["question", "answer"],
        "additionalProperties": False,
    }
    extra = {
        "parents": {"type": "array", "items": {"type": "integer"}, "minItems": 2},
        "steps": {"type": "array", "items": step, "minItems": 2},
    }
    return questions_schema(LLM_SKILLS, extra, count)


def _numbered(rows: list[dict]) -> str:
    return "\n".join(
        f"{i}: {row['question']} -> {row['options'][LETTERS.index(row['answer'])]}" for i, row in enumerate(rows, 1)
    )


@dataclass(frozen=True)
class ComposeWriter:
    """How to ask a model for composites of one image's stage-1 questions; ``request`` renders one attempt."""

    composites_per_image: int = 4
    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int | None = None  # default: TOKENS_PER_COMPOSITE for each composite asked
    seed: int = 0
    prompt: Prompt = field(default_factory=lambda: load_prompt("stage2_compose"))

    def request(self, scene: Scene, rows: list[dict], attempt: int = 0) -> Request:
        text = self.prompt.render(
            **_scene_values(scene),
            questions=_numbered(rows),
            count=self.composites_per_image,
            skills=", ".join(LLM_SKILLS),
        )
        max_tokens = self.max_tokens or TOKENS_PER_COMPOSITE * self.composites_per_image
        return writer_request(self, text, max_tokens, compose_schema(self.composites_per_image), attempt)


def _check_steps(steps: list) -> list[tuple[str, str]] | None:
    found = []
    for step in steps:
        if not isinstance(step, dict) or not all(isinstance(step.get(k), str) for k in ("question", "answer")):
            return None
        question, answer = step["question"].strip(), step["answer"].strip()
        if not question or not answer or len(question) > MAX_QUESTION_CHARS or len(answer) > MAX_OPTION_CHARS:
            return None
        found.append((question, answer))
    return found


def _check_composite(item, scene: Scene, rows: list[dict]) -> tuple[Composite | None, str | None]:
    """One composite of the model's output, or the reason it is rejected."""
    checked, reason = check_options(item, _LLM_FIELDS)
    if reason:
        return None, reason
    question, options, answer = checked
    if len(answer) != 1 or answer.upper() not in LETTERS:
        return None, "answer_not_an_option"
    if item["skill"] not in LLM_SKILLS:
        return None, "unknown_skill"
    numbers = item["parents"]
    if any(not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= len(rows) for n in numbers):
        return None, "unknown_parent"
    parents = [rows[n - 1] for n in dict.fromkeys(numbers)]
    if len(parents) < 2:
        return None, "too_few_parents"
    steps = _check_steps(item["steps"])
    if steps is None:
        return None, "bad_steps"
    if len(steps) < 2:
        return None, "too_few_steps"
    correct, distractors = split_options(options, answer)
    if gives_answer_away(question, correct, distractors):
        return None, "answer_in_question"
    objects = {obj.id: obj for obj in scene.objects}
    ids = dict.fromkeys(g["object_id"] for row in parents for g in row["grounding"] if g["object_id"] in objects)
    composite = Composite(
        template=LLM_TEMPLATE,
        question=question,
        correct=correct,
        distractors=tuple(distractors),
        ordered=False,
        grounding=tuple(objects[i] for i in ids),
        skill=item["skill"],
        level=len(steps),
        parents=tuple(row["id"] for row in parents),
        steps=tuple(Step(question, answer, LLM_TEMPLATE, ()) for question, answer in steps),
    )
    return composite, None


def parse_composites(text: str, scene: Scene, rows: list[dict], finish_reason: str = "stop"):
    """The valid composites in one model output for ``scene`` (whose numbered questions are ``rows``), and the
    count of rejects by reason. Never raises."""
    asked = {row["question"].casefold() for row in rows}  # a composite that repeats a parent is no composite
    return parse_questions(text, finish_reason, partial(_check_composite, scene=scene, rows=rows), asked)


def _llm_items(items: Sequence[tuple[Scene, list[dict]]], rejects: Counter) -> list[tuple[Scene, list[dict]]]:
    """The images with at least two model-written stage-1 questions to compose (template rows go to ``compose``)."""
    kept = []
    for scene, rows in items:
        written = [row for row in rows if not is_template_row(row)]
        if len(written) >= 2:
            kept.append((scene, written))
        else:
            rejects["image_with_fewer_than_two_questions"] += 1
    return kept


def compose_with_llm(
    items: Sequence[tuple[Scene, list[dict]]],
    writer: Engine,
    verifier: Engine,
    composer: ComposeWriter | None = None,
    *,
    max_attempts: int = 2,
) -> LLMResult:
    """Composites of each image's model-written stage-1 rows, written by ``writer`` and kept only where ``verifier``,
    reading the caption and boxes, picks the same option. Each round sends every pending image at once; an image
    whose output gave no usable composite is asked again with a new seed, up to ``max_attempts``."""
    composer = composer or ComposeWriter()
    verify_prompt = load_prompt("stage2_verify")
    rejects: Counter = Counter()
    pending = _llm_items(items, rejects)
    scenes = {scene.image_id: scene for scene, _ in pending}
    drafts, pending = ask(
        writer, pending, composer.request, parse_composites, rejects, max_attempts=max_attempts, desc="Composing MCQs"
    )
    rejects["image_gave_no_composite"] += len(pending)
    kept = verify(scenes, drafts, verifier, verify_prompt, rejects, "Verifying composites")
    logger.info(
        f"LLM stage 2: {sum(map(len, kept.values()))} composites for {len(kept)} of {len(items)} images; "
        f"rejects {dict(+rejects)}"
    )
    version = f"{composer.prompt.version}:{writer.model_id}+verify@{verify_prompt.version}:{verifier.model_id}"
    generator = generator_id("stage2", LLM_TEMPLATE, version)
    return LLMResult(kept, +rejects, generator)


def bill_compose(
    items: Sequence[tuple[Scene, list[dict]]], writer: Engine, verifier: Engine, composer: ComposeWriter | None = None
) -> dict[str, Bill]:
    """What ``compose_with_llm`` would ask of each model, before anything is generated (``lgt build --dry-run``):
    the writer's first round, and the verifier for the composites in the writer answers the cache already holds
    (retries and the rest depend on answers not written yet)."""
    composer = composer or ComposeWriter()
    pending = _llm_items(items, Counter())
    return bill(writer, pending, composer.request, parse_composites, verifier, load_prompt("stage2_verify"))
