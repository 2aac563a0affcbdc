"""Stage 2: composites of stage-1 questions, their answers re-derived here from the boxes with plain rules of this
file (never stage 1's or stage 2's helpers), and the LLM path with hand-written and tiny-model outputs."""

import json
import random
import re
from collections import Counter

import pytest
from lgt.answers import LETTERS, LetterBalancer, letter_options
from lgt.generation import Engine, Response
from lgt.prompts import load_prompt
from lgt.scene import Scene, SceneObject
from lgt.sources import open_source
from lgt.stages.mcqs import mcq_row
from lgt.synthesis import stage1, stage2
from lgt.synthesis.grammar import plural
from lgt.synthesis.stage2 import (
    ComposeWriter,
    Composite,
    bill_compose,
    compose,
    compose_with_llm,
    parse_composites,
    verify_request,
)

NUM_SCENES = 160
RELATIONS = {"to the left of": "left", "to the right of": "right", "above": "above", "below": "below"}


def _rows(scene: Scene, drafts, balancer: LetterBalancer, generator=None) -> list[dict]:
    """Stage-1 drafts as mcq_stage1 rows (without the image), made by the builder's own row maker."""
    return [mcq_row(scene, None, d, generator or stage1.template_generator(d.template), balancer) for d in drafts]


def _stage1(scenes: list[Scene]) -> dict[str, list[dict]]:
    vocab = stage1.Vocabulary(
        sorted({o.name for s in scenes for o in s.objects}),
        sorted({a for s in scenes for o in s.objects for a in o.attributes if a in stage1.COLOUR_WORDS}),
        sorted({a for s in scenes for o in s.objects for a in o.attributes if a not in stage1.COLOUR_WORDS}),
    )
    balance, balancer = stage1.Balance(), LetterBalancer("test")
    return {
        s.image_id: _rows(s, stage1.generate(s, vocab, random.Random(s.image_id), balance), balancer) for s in scenes
    }


def _compose_all(scenes: list[Scene], rows: dict[str, list[dict]], seed: int = 0) -> dict[str, list[Composite]]:
    balance = stage1.Balance()
    return {s.image_id: compose(s, rows[s.image_id], random.Random(f"{seed}:{s.image_id}"), balance) for s in scenes}


@pytest.fixture(scope="module")
def builtin():
    source = open_source("scenes", seed=3, num_images=NUM_SCENES)
    scenes = [source.scene(entry.payload) for entry in source.entries()]
    rows = _stage1(scenes)
    return scenes, rows, _compose_all(scenes, rows)


# ---- plain geometry of this test ----


def _centre(box):
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def _share(a0, a1, b0, b1) -> float:
    """Overlap of two intervals over the shorter one."""
    return max(0.0, min(a1, b1) - max(a0, b0)) / min(a1 - a0, b1 - b0)


def _beside(box, anchor, rel: str, level: float) -> bool:
    """Whether ``box`` lies ``rel`` of ``anchor``: its centre on that side and the other axis shared by ``level``."""
    (cx, cy), (ax, ay) = _centre(box), _centre(anchor)
    if rel in ("left", "right"):
        side = cx < ax if rel == "left" else cx > ax
        return side and _share(box[1], box[3], anchor[1], anchor[3]) >= level
    side = cy < ay if rel == "above" else cy > ay
    return side and _share(box[0], box[2], anchor[0], anchor[2]) >= level


def _clearly_beside(box, anchor, rel: str) -> bool:
    """Beside and apart: the boxes' extents along ``rel``'s axis overlap by at most a tenth."""
    apart = (
        _share(box[0], box[2], anchor[0], anchor[2])
        if rel in ("left", "right")
        else _share(box[1], box[3], anchor[1], anchor[3])
    )
    return _beside(box, anchor, rel, 0.5) and apart <= 0.1


def _gap(a, b) -> float:
    dx = max(0.0, b[0] - a[2], a[0] - b[2])
    dy = max(0.0, b[1] - a[3], a[1] - b[3])
    return (dx * dx + dy * dy) ** 0.5


def _colour(obj: SceneObject) -> str:
    return obj.attributes[0]  # the built-in scenes give every shape its colour first


def _quadrant(box, width, height) -> str:
    cx, cy = _centre(box)
    return f"{'top' if cy < height / 2 else 'bottom'} {'left' if cx < width / 2 else 'right'}"


def _named(scene: Scene, phrase: str) -> list[SceneObject]:
    """The objects a phrase of the question fits: "circle", or "red circle"."""
    return [o for o in scene.objects if phrase in (o.name, f"{_colour(o)} {o.name}" if o.attributes else o.name)]


def _only_beside(scene: Scene, target: SceneObject, anchor: SceneObject, rel: str) -> bool:
    """``target`` is clearly ``rel`` of ``anchor`` and no other object is, even by a looser reading."""
    others = [o for o in scene.objects if o is not target and o is not anchor]
    return _clearly_beside(target.bbox, anchor.bbox, rel) and not any(
        _beside(o.bbox, anchor.bbox, rel, 0.25) for o in others
    )


def _area(box) -> float:
    return (box[2] - box[0]) * (box[3] - box[1])


def _superlative_ok(scene: Scene, question: str, *anchors: SceneObject) -> bool:
    """Where the question finds an anchor as "the largest/smallest <kind>", one of ``anchors`` is that, by a fifth
    at least over every other object of its kind."""
    for word in ("largest", "smallest"):
        for name in {a.name for a in anchors if f"{word} {a.name}" in question}:
            sizes = sorted((_area(o.bbox), o.id) for o in scene.objects if o.name == name)
            (first, first_id), (second, _) = sizes[::-1][:2] if word == "largest" else sizes[:2]
            ratio = first / second if word == "largest" else second / first
            if ratio <= 1.2 or first_id not in {a.id for a in anchors}:
                return False
    return True


def _relations_in(question: str) -> list[str]:
    """The relations a question names, in order."""
    return [rel for _, rel in sorted((at, rel) for phrase, rel in RELATIONS.items() for at in _at(question, phrase))]


def _referent_ok(scene: Scene, question: str, target: SceneObject, anchor: SceneObject) -> bool:
    """The question finds ``target`` through ``anchor`` and no other object would do by a looser reading."""
    named = _relations_in(question)
    if named:
        return _only_beside(scene, target, anchor, named[0])
    assert re.search(r"\b(closest|nearest)\b", question)
    gaps = sorted((_gap(anchor.bbox, o.bbox), o.id) for o in scene.objects if o is not anchor)
    return gaps[0][1] == target.id and 0 < gaps[0][0] <= 0.5 * gaps[1][0]


def _parent_answer(row: dict) -> str:
    return row["options"][LETTERS.index(row["answer"])]


def _expected(scene: Scene, c: Composite, parents: list[dict]) -> str:
    """The composite's answer, re-derived from the boxes; every assertion about the hops is made on the way."""
    g = c.grounding
    if c.template in ("set_count", "comparison_count"):
        counts = [int(step.answer) for step in c.steps]
        for name in {o.name for o in g}:  # the grounding holds every instance of each category it counts
            assert sum(o.name == name for o in g) == sum(o.name == name for o in scene.objects)
        for step in c.steps:  # each count is the boxes', and the stage-1 row's where one asked it
            assert int(step.answer) == sum(o.name == step.category for o in scene.objects)
        assert [_parent_answer(p) for p in parents] == [s.answer for s in c.steps if s.parent]
        assert sum(counts) == len(g)
        return str(sum(counts) if c.template == "set_count" else abs(counts[0] - counts[1]))
    if c.template.startswith("chain"):
        target, anchor = g
        assert _referent_ok(scene, c.question, target, anchor), c.question
        assert _superlative_ok(scene, c.question, anchor), c.question
        if c.template == "chain_colour":
            return _colour(target)
        return _quadrant(target.bbox, scene.width, scene.height)
    if c.template == "comparison_size":
        r1, r2 = _relations_in(c.question)
        assert _only_beside(scene, g[0], g[2], r1) and _only_beside(scene, g[1], g[3], r2), c.question
        assert _superlative_ok(scene, c.question, g[2], g[3]), c.question
        ratio = (g[0].bbox[2] - g[0].bbox[0]) * (g[0].bbox[3] - g[0].bbox[1])
        ratio /= (g[1].bbox[2] - g[1].bbox[0]) * (g[1].bbox[3] - g[1].bbox[1])
        bins = ["less than a third", "smaller", "larger", "more than three times"]
        return next(b for b, edge in zip(bins, (1 / 3, 1, 3, float("inf")), strict=True) if ratio < edge)
    assert c.template == "conjunction"
    target, first, second = g
    r1, r2 = _relations_in(c.question)
    assert _clearly_beside(target.bbox, first.bbox, r1) and _clearly_beside(target.bbox, second.bbox, r2)
    rivals = [
        o
        for o in scene.objects
        if o not in g and _beside(o.bbox, first.bbox, r1, 0.25) and _beside(o.bbox, second.bbox, r2, 0.25)
    ]
    assert not rivals, c.question
    assert _named(scene, c.correct) == [target]
    return c.correct


def _at(text: str, phrase: str) -> list[int]:
    return [m.start() for m in re.finditer(rf"\b{phrase} the ", text)]


def test_answers_recomputed_from_the_boxes(builtin):
    scenes, rows, composites = builtin
    checked = Counter()
    for scene in scenes:
        by_id = {row["id"]: row for row in rows[scene.image_id]}
        for c in composites[scene.image_id]:
            parents = [by_id[p] for p in c.parents]
            expected = _expected(scene, c, parents)
            if c.template == "comparison_size":
                assert c.correct.startswith(expected), (c.question, c.correct, expected)
            else:
                assert c.correct == expected, (c.question, c.correct, expected)
            assert c.correct not in c.distractors and len(set(c.distractors)) == 3
            checked[c.template] += 1
            checked["superlative"] += (
                c.skill == "chain" and c.level == 3 and re.search(r"\b(largest|smallest) ", c.question) is not None
            )
    assert set(+checked) == {*stage2.SKILLS, "superlative"}, checked  # a chain found through "the largest X" too


def test_parents_steps_and_levels(builtin):
    scenes, rows, composites = builtin
    ids = {image_id: {row["id"]: row for row in found} for image_id, found in rows.items()}
    count_parents = Counter()
    for scene in scenes:
        questions = [c.question for c in composites[scene.image_id]]
        assert len(questions) == len(set(questions)), "an image asks a question twice"
        for c in composites[scene.image_id]:
            # a count composite may pair a stage-1 count with one counted from the boxes (never two of those)
            assert len(c.parents) >= (1 if c.template in ("set_count", "comparison_count") else 2)
            count_parents[len(c.parents)] += c.template in ("set_count", "comparison_count")
            assert all(p in ids[scene.image_id] for p in c.parents), "a parent of another image or none"
            assert c.level == len(c.steps) >= 2
            # every parent is the fact of a step, in the order of the steps
            assert list(dict.fromkeys(s.parent for s in c.steps if s.parent)) == list(c.parents)
            assert stage2.template_generator(c.template) == f"stage2/{c.template}@{stage2.VERSION}"
            assert c.skill == stage2.SKILLS[c.template]
    assert count_parents[1] and count_parents[2], count_parents  # counts of two rows, and of a row and the boxes


def _by_id(scene: Scene, ids) -> list[SceneObject]:
    objects = {o.id: o for o in scene.objects}
    return [objects[i] for i in ids]


def _step_answer(scene: Scene, step, found: list) -> tuple:
    """A step's answer re-derived from the boxes with this file's geometry: ``(text or None, objects found)``."""
    kind, _, rel = step.template.partition("_")
    rel = {"left": "left", "right": "right", "above": "above", "below": "below"}.get(rel)
    looked = _by_id(scene, step.object_ids)
    if kind == "find" and rel:
        anchor = looked[0]
        fits = [o for o in scene.objects if o is not anchor and _only_beside(scene, o, anchor, rel)]
        return None, fits
    if step.template == "find_nearest":
        gaps = sorted((_gap(looked[0].bbox, o.bbox), o.id) for o in scene.objects if o is not looked[0])
        assert 0 < gaps[0][0] <= 0.5 * gaps[1][0]
        return None, _by_id(scene, [gaps[0][1]])
    if step.template in ("find_largest", "find_smallest"):
        assert {o.name for o in looked} == {step.category} and len(looked) == sum(
            o.name == step.category for o in scene.objects
        )
        ranked = sorted(looked, key=lambda o: _area(o.bbox), reverse=step.template == "find_largest")
        assert max(_area(ranked[0].bbox), _area(ranked[1].bbox)) >= 1.2 * min(
            _area(ranked[0].bbox), _area(ranked[1].bbox)
        )
        return None, ranked[:1]
    if kind == "all" and rel:
        anchor = looked[0]
        centre = 0 if rel in ("left", "right") else 1
        on_side = {
            o.id
            for o in scene.objects
            if o is not anchor
            and (_centre(o.bbox)[centre] < _centre(anchor.bbox)[centre]) == (rel in ("left", "above"))
        }
        clearly = {o.id for o in scene.objects if o is not anchor and _clearly_beside(o.bbox, anchor.bbox, rel)}
        answer = set(step.answer_ids)
        assert clearly <= answer <= on_side, (step.question, clearly, answer, on_side)
        return None, _by_id(scene, step.answer_ids)
    if kind == "filter" and rel:
        anchor, candidates = looked[0], looked[1:]
        assert [o.id for o in candidates] == [o.id for o in found]  # those the step before found
        fits = [o for o in candidates if o is not anchor and _clearly_beside(o.bbox, anchor.bbox, rel)]
        rivals = [
            o for o in candidates if o is not anchor and o not in fits and _beside(o.bbox, anchor.bbox, rel, 0.25)
        ]
        assert not rivals, step.question
        return None, fits
    if step.template == "colour":
        return _colour(looked[0]), []
    if step.template == "location":
        return _quadrant(looked[0].bbox, scene.width, scene.height), []
    if step.template == "count":  # its category is a name, also when nothing is counted ("square", not "squares")
        assert plural(step.category) in step.question, (step.category, step.question)
        same = [o for o in scene.objects if o.name == step.category]
        assert sorted(o.id for o in same) == sorted(step.object_ids)
        return str(len(same)), []
    assert step.template == "size"
    ratio = _area(looked[0].bbox) / _area(looked[1].bbox)
    bins = ["less than a third", "smaller", "larger", "more than three times"]
    return next(b for b, edge in zip(bins, (1 / 3, 1, 3, float("inf")), strict=True) if ratio < edge), []


def test_steps_find_the_answer_forward_from_the_boxes(builtin):
    """Each step asks for what the next one needs, never names the composite's answer, and its answer (the value,
    or the objects it finds) is re-derived here from the boxes; the last step's answer gives the composite's."""
    scenes, _, composites = builtin
    checked, naming = Counter(), 0
    for scene in scenes:
        for c in composites[scene.image_id]:
            gold = re.compile(rf"(?<![\w-]){re.escape(c.correct.lower())}(?![\w-])")
            found: list = []
            values = []
            for step in c.steps:
                naming += gold.search(step.question.lower()) is not None
                value, objects = _step_answer(scene, step, found)
                if value is None:
                    assert [o.id for o in objects] == list(step.answer_ids), (step.question, objects)
                else:
                    assert step.answer.startswith(value) and not step.answer_ids, (step.question, step.answer, value)
                if step.template in ("colour", "location", "size"):  # asked of what the steps before found
                    assert set(step.object_ids) <= {o.id for o in found} | {i for s in c.steps for i in s.answer_ids}
                values.append(step.answer)
                found = objects
                checked[step.template.partition("_")[0]] += 1
            if c.template == "set_count":
                assert c.correct == str(int(values[0]) + int(values[1]))
            elif c.template == "comparison_count":
                assert c.correct == str(int(values[0]) - int(values[1]))
            elif c.template == "conjunction":
                assert list(c.steps[-1].answer_ids) == [c.grounding[0].id]
            else:
                assert values[-1] == c.correct
    assert naming == 0
    assert set(checked) == {"find", "all", "filter", "colour", "location", "count", "size"}, checked


def test_every_skill_and_letters_like_a_stage1_draft(builtin):
    scenes, _, composites = builtin
    found = [c for found in composites.values() for c in found]
    assert {c.skill for c in found} == {"chain", "comparison", "set_count", "conjunction"}
    balancer = LetterBalancer("x")
    letters = Counter()
    for c in found:
        options, answer = letter_options(c.correct, c.distractors, c.ordered, balancer, c.skill)
        assert options[LETTERS.index(answer)] == c.correct and sorted(options) == sorted([c.correct, *c.distractors])
        if c.ordered:
            assert options == sorted(options, key=float)
        letters[answer] += 1
    assert max(letters.values()) - min(letters.values()) <= 0.1 * len(found)


def test_deterministic_for_a_seed(builtin):
    scenes, rows, composites = builtin
    assert _compose_all(scenes, rows) == composites
    other = _compose_all(scenes, rows, seed=1)
    assert other != composites


def test_ignores_model_rows_and_refuses_a_parent_the_boxes_contradict(builtin):
    scenes, rows, composites = builtin
    scene = next(s for s in scenes if any(c.template == "set_count" for c in composites[s.image_id]))
    image_rows = rows[scene.image_id]
    as_model = [{**row, "generator": "stage1/llm@1:some-model"} for row in image_rows]
    assert compose(scene, as_model, random.Random(0)) == []
    # A count row whose answer disagrees with the boxes is no parent.
    counts = {
        row["id"]
        for c in composites[scene.image_id]
        if c.template == "set_count"
        for row in image_rows
        if row["id"] in c.parents
    }
    lied = [
        {**row, "options": ["7", "8", "9", "10"], "answer": "A"} if row["id"] in counts else row for row in image_rows
    ]
    found = compose(scene, lied, random.Random(f"0:{scene.image_id}"))
    assert not any(set(c.parents) & counts for c in found)


def test_a_relation_with_a_rival_is_not_used():
    """Two shapes left of the square: "the object to the left of the square" picks out neither."""
    objects = [
        SceneObject(0, "square", [300.0, 200.0, 360.0, 260.0], ["blue", "medium"]),
        SceneObject(1, "circle", [100.0, 200.0, 160.0, 260.0], ["red", "medium"]),
        SceneObject(2, "heart", [20.0, 120.0, 80.0, 180.0], ["green", "medium"]),  # up and left: a rival
        SceneObject(3, "star", [450.0, 380.0, 520.0, 450.0], ["pink", "medium"]),
    ]
    scene = Scene("rival", b"", 640, 480, "shapes", objects, "test")
    row = {
        "id": "r1",
        "question": "Where is the circle relative to the square?",
        "options": ["to the left of the square", "above the square", "below the square", "to the right of the square"],
        "answer": "A",
        "grounding": [{"object_id": 1}, {"object_id": 0}],
        "generator": "stage1/relation@2",
    }
    colour = {
        "id": "c1",
        "question": "What colour is the circle?",
        "options": ["green", "red", "blue", "pink"],
        "answer": "B",
        "grounding": [{"object_id": 1}],
        "generator": "stage1/colour@2",
    }
    assert compose(scene, [row, colour], random.Random(0)) == []
    del objects[2]
    found = compose(scene, [row, colour], random.Random(0))
    assert [(c.template, c.correct, c.parents) for c in found] == [("chain_colour", "red", ("r1", "c1"))]
    assert "to the left of the square" in found[0].question


def test_real_coco_sample(coco_root):
    source = open_source(f"coco:{coco_root}")
    scenes = [source.scene(entry.payload) for entry in source.entries()]
    rows = _stage1(scenes)
    composites = _compose_all(scenes, rows)
    kinds = Counter()
    for scene in scenes:
        by_id = {row["id"]: row for row in rows[scene.image_id]}
        for c in composites[scene.image_id]:
            assert all(p in by_id for p in c.parents) and c.level >= 2
            if c.template in ("set_count", "comparison_count", "chain_location"):
                assert c.correct == _expected(scene, c, [by_id[p] for p in c.parents]), c.question
            kinds[c.template] += 1
    assert kinds["set_count"] and kinds["chain_location"] + kinds["conjunction"], kinds


# ---- the LLM path ----

OBJECTS = [
    SceneObject(1, "dog", [40.0, 200.0, 200.0, 330.0]),
    SceneObject(2, "cat", [400.0, 210.0, 520.0, 320.0]),
    SceneObject(3, "cat", [420.0, 30.0, 520.0, 120.0]),
    SceneObject(4, "bench", [250.0, 300.0, 380.0, 400.0]),
]


def _scene(image_id: str) -> Scene:
    return Scene(image_id, b"", 640, 427, f"Two cats, a dog and a bench in a park ({image_id}).", OBJECTS, "test")


def _llm_rows(image_id: str) -> list[dict]:
    def row(number, question, options, answer, ids, skill):
        return {
            "id": f"{image_id}-{number}",
            "image_id": image_id,
            "question": question,
            "options": options,
            "answer": answer,
            "skill": skill,
            "grounding": [{"object_id": i, "name": "", "bbox": [0, 0, 1, 1]} for i in ids],
            "generator": "stage1/llm@1:fixture-teacher",
        }

    return [
        row(1, "How many cats are there?", ["1", "2", "3", "4"], "B", [2, 3], "counting"),
        row(2, "How many dogs are there?", ["0", "1", "2", "3"], "B", [1], "counting"),
        row(
            3,
            "Where is the dog relative to the bench?",
            ["left", "right", "above", "below"],
            "A",
            [1, 4],
            "spatial_relation",
        ),
    ]


def _c(question, options, answer, skill, parents, steps):
    return {
        "question": question,
        "options": options,
        "answer": answer,
        "skill": skill,
        "parents": parents,
        "steps": [{"question": q, "answer": a} for q, a in steps],
    }


GOOD = [
    _c(
        "How many cats and dogs are there in total?",
        ["2", "3", "4", "5"],
        "B",
        "set_count",
        [1, 2],
        [("How many cats are there?", "2"), ("How many dogs are there?", "1")],
    ),
    _c(
        "How many more cats than dogs are there?",
        ["0", "1", "2", "3"],
        "B",
        "comparison",
        [1, 2],
        [("How many cats are there?", "2"), ("How many dogs are there?", "1")],
    ),
]
BAD = [
    (_c("Which is it?", ["a", "b", "c"], "A", "chain", [1, 2], [("q", "a"), ("q", "b")]), "option_count"),
    (_c("Which is it?", ["a", "b", "c", "A"], "A", "chain", [1, 2], [("q", "a"), ("q", "b")]), "duplicate_options"),
    (_c("Which is it?", ["a", "b", "c", "d"], "E", "chain", [1, 2], [("q", "a"), ("q", "b")]), "answer_not_an_option"),
    (_c("Which is it?", ["a", "b", "c", "d"], "A", "counting", [1, 2], [("q", "a"), ("q", "b")]), "unknown_skill"),
    (_c("Which is it?", ["a", "b", "c", "d"], "A", "chain", [1, 9], [("q", "a"), ("q", "b")]), "unknown_parent"),
    (_c("Which is it?", ["a", "b", "c", "d"], "A", "chain", [2, 2], [("q", "a"), ("q", "b")]), "too_few_parents"),
    (_c("Which is it?", ["a", "b", "c", "d"], "A", "chain", [1, 2], [("q", "a")]), "too_few_steps"),
    (_c("Which is it?", ["a", "b", "c", "d"], "A", "chain", [1, 2], [("q", ""), ("q", "b")]), "bad_steps"),
    (
        _c("Is the dog left of the bench?", ["dog", "b", "c", "d"], "A", "chain", [1, 3], [("q", "a"), ("q", "b")]),
        "answer_in_question",
    ),
    ({"question": "Which?", "options": ["a", "b", "c", "d"], "answer": "A"}, "missing_field"),
    (
        _c("How many dogs are there?", ["0", "1", "2", "3"], "B", "chain", [1, 2], [("q", "a"), ("q", "b")]),
        "duplicate_question",
    ),
]


def test_parse_hand_written_outputs():
    scene, rows = _scene("p"), _llm_rows("p")
    text = "```json\n" + json.dumps({"questions": GOOD + [item for item, _ in BAD]}) + "\n```"
    found, rejects = parse_composites(text, scene, rows)
    assert [c.question for c in found] == [item["question"] for item in GOOD]
    assert rejects == Counter(reason for _, reason in BAD)
    first = found[0]
    assert (first.correct, first.distractors, first.skill, first.level) == ("3", ("2", "4", "5"), "set_count", 2)
    assert first.parents == ("p-1", "p-2") and {o.id for o in first.grounding} == {1, 2, 3}
    assert [(s.question, s.answer, s.template, s.object_ids) for s in first.steps] == [
        ("How many cats are there?", "2", "llm", ()),
        ("How many dogs are there?", "1", "llm", ()),
    ]
    assert parse_composites('{"questions": [', scene, rows, "length")[1] == Counter(truncated=1)
    assert parse_composites("I cannot.", scene, rows)[1] == Counter(malformed_json=1)
    assert parse_composites('{"questions": []}', scene, rows)[1] == Counter(no_questions=1)


def test_cached_writer_and_verifier_keep_what_the_verifier_agrees_with(tmp_path):
    writer = Engine("openai:fixture-writer", cache=tmp_path / "c.sqlite", cache_only=True, progress=False)
    verifier = Engine("openai:fixture-verifier", cache=tmp_path / "c.sqlite", cache_only=True, progress=False)
    items = [(_scene("a"), _llm_rows("a")), (_scene("b"), _llm_rows("b")[:1])]
    composer = ComposeWriter()
    request = composer.request(*items[0], 0)
    text = request.messages[0].joined_text
    assert "1: How many cats are there? -> 2" in text and "1: dog [40, 200, 200, 330]" in text and "$" not in text
    assert request.template == "stage2_compose@1"
    answer = Response((json.dumps({"questions": GOOD}),), ("stop",), 900, 300)
    writer.cache.put_many([(writer.key(request), writer.spec.name, request.template, answer)])
    scene, rows = items[0]
    found, _ = parse_composites(answer.texts[0], scene, rows)
    prompt = load_prompt("stage2_verify")
    verdicts = []
    for i, c in enumerate(found):  # the first agrees, the second picks another letter
        check = verify_request(scene, c, prompt)
        shown = check.messages[0].joined_text
        letter = re.search(rf"^([A-D])\. {re.escape(c.correct)}$", shown, re.M).group(1)
        letter = letter if i == 0 else LETTERS[(LETTERS.index(letter) + 1) % 4]
        response = Response((json.dumps({"answer": letter}),), ("stop",), 1, 1)
        verdicts.append((verifier.key(check), verifier.spec.name, check.template, response))
    verifier.cache.put_many(verdicts)
    bills = bill_compose(items, writer, verifier, composer)
    assert (bills["writer"].requests, bills["writer"].cached, bills["verifier"].requests) == (1, 1, 2)
    result = compose_with_llm(items, writer, verifier, composer)
    assert [c.question for c in result.drafts["a"]] == [GOOD[0]["question"]]
    assert result.rejects == Counter(verifier_disagrees=1, image_with_fewer_than_two_questions=1)
    assert result.generator == "stage2/llm@1:fixture-writer+verify@1:fixture-verifier"
    # template rows are not the LLM path's: a template image gives it nothing to compose
    templated = [(scene, [{**row, "generator": "stage1/count@2"} for row in rows])]
    assert compose_with_llm(templated, writer, verifier).rejects == Counter(image_with_fewer_than_two_questions=1)


def test_tiny_model_through_transformers_and_the_cache(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tiny_models import build_tiny_llm

    model = f"transformers:{build_tiny_llm(tmp_path / 'tiny-qwen2')}"
    items = [(_scene(f"t{i}"), _llm_rows(f"t{i}")) for i in range(3)]
    composer = ComposeWriter(composites_per_image=1, max_tokens=24)

    def run():
        writer = Engine(model, cache=tmp_path / "c.sqlite", progress=False)
        verifier = Engine(model, cache=tmp_path / "c.sqlite", progress=False)
        return compose_with_llm(items, writer, verifier, composer, max_attempts=2), writer, verifier

    first, writer, _ = run()
    assert writer.stats.misses == writer.stats.requests >= 3
    # Random weights write no usable JSON: every answer is a counted reject, and each image was asked twice.
    assert sum(first.rejects.values()) >= writer.stats.requests and first.rejects["image_gave_no_composite"] == 3
    assert first.generator.startswith("stage2/llm@1:tiny-qwen2@")
    again, writer, verifier = run()
    assert writer.stats.hits == writer.stats.requests and writer.stats.misses == 0 and verifier.stats.misses == 0
    assert again.rejects == first.rejects and again.drafts == first.drafts


def test_each_mcq_stage_draws_its_own_randomness_for_an_image():
    """Stage 2 drawing the same numbers as stage 1 for an image tied its wordings and distractors to stage 1's
    choices, which a text-only reader of one build could learn."""
    from lgt.stages import STAGES

    first, second = (STAGES[name].image_rng(0, "img-1") for name in ("mcq_stage1", "mcq_stage2"))
    assert [first.random() for _ in range(4)] != [second.random() for _ in range(4)]
    again = STAGES["mcq_stage2"].image_rng(0, "img-1")
    assert again.random() == STAGES["mcq_stage2"].image_rng(0, "img-1").random()  # still one stream per image
