"""Traces: scripted ones checked against the boxes they cite; the model path through the engine and its cache.

Scripted traces are read back like a person would check them: every extent they cite is a real object's (or, in a
slip, a real object's with one edge misread by a plausible margin), a right count enumerates the grounding objects,
and every short chain of thought, right or wrong, is consistent: what it concludes follows from the numbers it
states (a count from the objects it lists, a relation, a size or a quadrant from the extents it cites, the nearest
option from the gaps it measures). Wrong ones state the same answers as right ones, about as often. The model path
runs on hand-written teacher and reasoner answers stored under the exact keys the engine computes (cache-only, so
every grading and reject rule is exercised on realistic text), and end to end on the tiny random models.
"""

import random
import re
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from lgt.answers import LETTERS, LetterBalancer
from lgt.formats import SYSTEM_PROMPT, row_style, user_text
from lgt.generation import Engine, Response
from lgt.scene import Scene, SceneObject
from lgt.sources.builtin import CATEGORIES, COLOURS, NUMBER_WORDS, BuiltinSource
from lgt.stages.mcqs import mcq_row
from lgt.synthesis import stage1
from lgt.synthesis.grammar import plural
from lgt.synthesis.scripted import SlipBalance, scripted_traces
from lgt.synthesis.traces import (
    CUES,
    KINDS,
    TraceWriter,
    banned_words,
    bill_traces,
    grade,
    mentions_banned,
    model_traces,
)
from lgt.trace_audit import names_answer_early

NUM_SCENES = 40
EXTENT = re.compile(r"x (?:from )?(\d+)(?:–| to )(\d+)(?:,| and) y (?:from )?(\d+)(?:–| to )(\d+)")
# English a reader would stumble on: a plural made plural again or taken as one ("squareses", "every circles"), one
# thing counted as many ("one other objects"), a side without its preposition ("clearly left it").
_PLURALS = "|".join(plural(name) for name in CATEGORIES)
GARBLED = re.compile(
    rf"\b\w+(?:s|x)eses\b|\b(?:a|every|each) (?:{_PLURALS})\b|\bone (?:other |more )?objects\b"
    r"|\bother one objects\b|\b(?:clearly|plainly) (?:left|right) it\b"
)
_SIDES = {"left": "to the left of", "right": "to the right of", "above": "above", "below": "below"}


def _filter_verdicts_agree(text: str, composite: dict, scene: Scene) -> bool:
    """Whether every candidate a filter step leaves out with only its centre as the reason ("centred at x = 220, is
    not to the left of it") has that centre on the other side of the anchor's."""
    objects = {o.id: o for o in scene.objects}
    for step in composite["steps"]:
        kind, _, rel = step["template"].partition("_")
        if kind != "filter":
            continue
        centre = objects[step["object_ids"][0]].center[0 if rel in ("left", "right") else 1]
        for sentence in re.split(r"(?<=\.) ", text):
            said = re.search(r"[xy] = (\d+)", sentence)
            if f"not {_SIDES[rel]} it" in sentence and said and not re.search(r"clearly|plainly", sentence):
                if (int(said[1]) < centre - 1) if rel in ("left", "above") else (int(said[1]) > centre + 1):
                    return False
    return True


def _row(scene: Scene, draft: stage1.Draft, balancer: LetterBalancer) -> dict:
    """An mcq_stage1 row (without the image), made by the builder's own row maker."""
    return mcq_row(scene, None, draft, stage1.template_generator(draft.template), balancer)


def _stage1_rows(num_scenes: int) -> list[tuple[dict, Scene]]:
    source = BuiltinSource(num_images=num_scenes)
    vocab = stage1.Vocabulary(list(CATEGORIES), list(COLOURS), ["small", "medium", "large", "striped", "dotted"])
    balancer, balance = LetterBalancer("0"), stage1.Balance()
    items = []
    for index in range(num_scenes):
        scene = source.scene(index)
        rng = random.Random(f"0:{scene.image_id}")
        items += [(_row(scene, draft, balancer), scene) for draft in stage1.generate(scene, vocab, rng, balance)]
    return items


@pytest.fixture(scope="module")
def builtin_mcqs() -> list[tuple[dict, Scene]]:
    return _stage1_rows(NUM_SCENES)


@pytest.fixture(scope="module")
def scripted(builtin_mcqs) -> list[tuple[dict, Scene, list]]:
    balance = SlipBalance()  # one stream of questions, as a build's shard
    return [(mcq, scene, scripted_traces(mcq, scene, 3, 0, balance)) for mcq, scene in builtin_mcqs]


def _template(mcq: dict) -> str:
    return mcq["generator"].partition("/")[2].partition("@")[0]


def _extents(text: str) -> list[tuple[int, ...]]:
    """The boxes a text cites, as (x0, y0, x1, y1)."""
    return [(x0, y0, x1, y1) for x0, x1, y0, y1 in (tuple(map(int, m)) for m in EXTENT.findall(text))]


def _box(bbox) -> tuple[int, ...]:
    return tuple(round(v) for v in bbox)


def _misread_of(extent: tuple[int, ...], boxes: set[tuple[int, ...]]) -> bool:
    """A real box, or a real box with one edge moved by at most 40% of its side (plus rounding)."""
    for box in boxes:
        moved = [i for i in range(4) if extent[i] != box[i]]
        if not moved:
            return True
        side = box[2] - box[0] if moved[0] in (0, 2) else box[3] - box[1]
        if len(moved) == 1 and abs(extent[moved[0]] - box[moved[0]]) <= 0.4 * side + 1:
            return True
    return False


def _shorts(scripted, template: str):
    """(mcq, scene, short CoT, the option it concludes, right) of one template."""
    for mcq, scene, traces in scripted:
        if _template(mcq) == template:
            for trace in traces:
                if not trace.cue:
                    yield mcq, scene, trace.short, mcq["options"][LETTERS.index(trace.predicted)], trace.correct


def test_kinds_follow_the_two_gradings(scripted):
    for mcq, _, traces in scripted:
        assert len(traces) == 6
        for trace in traces:
            assert trace.kind in KINDS and trace.mcq_id == mcq["id"]
            assert trace.correct == (trace.predicted == mcq["answer"]) and trace.predicted in LETTERS
            assert trace.kind[-1] == ("O" if trace.correct else "X")
            if trace.cue:
                assert trace.cue in CUES and trace.expansion and "→" in trace.kind
                assert trace.think == f"{trace.short}\n\n{trace.cue} {trace.expansion}"
                assert trace.reasoner.startswith("scripted/") and trace.teacher.startswith("scripted/")
            else:
                assert trace.think == trace.short and not trace.expansion and len(trace.kind) == 1
        # the continued trace starts from the very short CoT that is recorded unexpanded beside it
        for short, expanded in zip(traces[::2], traces[1::2], strict=True):
            assert expanded.short == short.short and expanded.kind[0] == short.kind


def test_every_kind_and_skill_on_the_builtin_scenes(scripted):
    kinds = Counter(trace.kind for _, _, traces in scripted for trace in traces)
    assert set(kinds) == set(KINDS), kinds
    assert kinds["X→O"] > kinds["X→X"] and kinds["O→O"] > kinds["O→X"] > 0
    assert 0.2 < kinds["X"] / (kinds["O"] + kinds["X"]) < 0.4, kinds  # WRONG_SHARE, where a slip is possible
    by_template = {}
    for mcq, _, traces in scripted:
        by_template.setdefault(_template(mcq), Counter()).update(trace.kind for trace in traces)
    for template in ("count", "relation", "size", "distance", "existence", "absence", "colour", "location"):
        assert {"O", "X", "X→O", "O→O"} <= set(by_template[template]), (template, by_template.get(template))


def test_no_trace_mentions_a_banned_word_or_garbles_its_english(scripted):
    assert all(not mentions_banned(t.think) for _, _, traces in scripted for t in traces)
    assert not [t.think for _, _, traces in scripted for t in traces if GARBLED.search(t.think)]
    assert {"caption", "description", "text", "boxes", "bounding box"} <= set(banned_words())
    assert mentions_banned("As the Caption says") and mentions_banned("its bounding box") and mentions_banned("TEXT")
    assert not mentions_banned("in this context the texture of the boxer") and not mentions_banned("a box")


def test_a_listing_of_one_kind_calls_it_a_kind():
    """Three suitcases and nothing else: "I count 3 objects, of the kind suitcase", not "of the kinds suitcase"."""
    objects = [SceneObject(i, "suitcase", [10.0 + 120 * i, 40.0, 100.0 + 120 * i, 160.0]) for i in range(3)]
    scene = Scene("suitcases", "suitcases.jpg", 400, 300, "Three suitcases on a floor.", objects, "jsonl")
    vocab = stage1.Vocabulary(["bed", "bus", "cat", "dog", "suitcase"], [], [])
    drafts = stage1.generate(scene, vocab, random.Random(0), stage1.Balance())
    balancer, slips = LetterBalancer("0"), SlipBalance()
    texts = [t.think for d in drafts for t in scripted_traces(_row(scene, d, balancer), scene, 40, 0, slips)]
    assert "existence" in {d.template for d in drafts}
    assert any("of the kind suitcase" in text for text in texts)
    assert not any("of the kinds suitcase" in text for text in texts)


def test_phrasing_varies_and_is_seeded(builtin_mcqs):
    mcq, scene = next(item for item in builtin_mcqs if _template(item[0]) == "count" and item[0]["grounding"])
    first = scripted_traces(mcq, scene, 8, seed=0)
    assert [t.think for t in first] == [t.think for t in scripted_traces(mcq, scene, 8, seed=0)]
    assert [t.think for t in first] != [t.think for t in scripted_traces(mcq, scene, 8, seed=1)]
    openings = {t.short.split(". ")[0] for mcq, scene in builtin_mcqs[:80] for t in scripted_traces(mcq, scene, 2, 0)}
    assert len(openings) > 20


def test_every_cited_extent_is_a_real_object_or_one_misread(scripted):
    cited = misread = 0
    for mcq, scene, traces in scripted:
        boxes = {_box(obj.bbox) for obj in scene.objects}
        for trace in traces:
            for extent in _extents(trace.think):
                assert _misread_of(extent, boxes), (mcq["question"], extent, trace.think)
                cited += 1
                misread += extent not in boxes
            if trace.kind == "O":  # a right short CoT cites only what is there
                assert set(_extents(trace.short)) <= boxes, trace.short
    assert cited > 1000 and misread > 0


def test_no_trace_names_its_answer_before_looking(scripted):
    for mcq, _, traces in scripted:
        gold = mcq["options"][LETTERS.index(mcq["answer"])]
        for trace in traces:
            assert not names_answer_early(trace.think, mcq["question"], gold, mcq["answer"]), trace.think


def test_counts_list_every_object_they_count(scripted):
    checked = wrong = 0
    for mcq, _, short, option, right in _shorts(scripted, "count"):
        listed = _extents(short)
        assert len(listed) == int(option), short  # the conclusion is the number of objects listed
        if right:
            assert sorted(listed) == sorted(_box(g["bbox"]) for g in mcq["grounding"]), short
        checked, wrong = checked + 1, wrong + (not right)
    assert checked > 20 and wrong > 5


def test_a_wrong_count_takes_an_object_for_a_kind_the_image_holds(scripted):
    """A count that misses an object took it for another kind in the image, never for a lookalike kind the image
    lacks: a wrong count that lists a kind the right one does not is told apart by that name (on 20,000 photos'
    count pairs, a text-only reader picked the right one 61% of the time, 52% with kind names hidden)."""
    kinds = re.compile(rf"\b({'|'.join(CATEGORIES)})(?:s|es)?\b")
    checked = 0
    for mcq, scene, short, _, right in _shorts(scripted, "count"):
        if not right:
            held = {obj.name for obj in scene.objects}
            assert set(kinds.findall(short)) - held <= set(kinds.findall(mcq["question"])), short
            checked += 1
    assert checked > 5


def test_a_wrong_count_takes_an_object_of_about_the_size_of_what_it_counts():
    """Of the objects a count could take for an umbrella, the fire hydrant its size rather than the dining table
    twelve times it: no lookalike group names these kinds, so only size says what a glance could confuse."""
    umbrella = SceneObject(0, "umbrella", [40.0, 40.0, 140.0, 140.0])
    hydrant = SceneObject(1, "fire hydrant", [300.0, 60.0, 400.0, 170.0])
    table = SceneObject(2, "dining table", [60.0, 200.0, 460.0, 500.0])
    made_up, candidates = Counter(), {"hydrant": hydrant, "table": table}
    for i in range(40):
        scene = Scene(f"street-{i}", "street.jpg", 640, 520, "A street.", [umbrella, hydrant, table], "jsonl")
        draft = stage1.Draft("count", "How many umbrellas are there?", "1", ["0", "2", "3"], [umbrella], True)
        mcq = _row(scene, draft, LetterBalancer(str(i)))
        for trace in scripted_traces(mcq, scene, 4, 0, SlipBalance()):
            if not trace.correct and mcq["options"][LETTERS.index(trace.predicted)] == "2":
                cited = set(_extents(trace.short))
                made_up.update(name for name, obj in candidates.items() if _box(obj.bbox) in cited)
    assert made_up["hydrant"] >= 5 and made_up["table"] == 0, made_up


_TOTAL = re.compile(r"\b(?:I count|There are|I see) (\w+) objects (?:in all|in the image)", re.IGNORECASE)


def test_a_count_states_only_the_total_of_the_rest_of_the_image(scripted):
    """No reading of one object changes a number a count states about the rest: a pass that read it otherwise than
    the first pass named other numbers, and a reader of the text alone picked the side of an O→O > O→X pair whose
    passes agreed 59% of the time (54% with number words hidden from it)."""
    checked, kinds = 0, Counter()
    for mcq, scene, traces in scripted:
        if _template(mcq) != "count":
            continue
        for trace in traces:
            totals = {int(t) if t.isdigit() else NUMBER_WORDS.index(t) for t in _TOTAL.findall(trace.think)}
            assert totals <= {len(scene.objects)}, trace.think  # in the short CoT and the continuation alike
            checked += bool(totals)
            kinds[trace.kind] += bool(totals)
    assert checked > 20 and kinds["O→X"] + kinds["X→O"] > 0, kinds


# The results a step of each template states in its own words (not the options'): a size bin, which way one object
# lies from the other.
_STEP_RESULTS = {
    "size": r"below a third|between a third and one|between one and three|above three",
    "relation": r"further left|further right|higher up|lower down",
}


def test_a_continuation_that_confirms_names_the_results_one_that_changes_names(scripted):
    """A pass that changes the answer states other step results than the first pass did; one that confirms it, the
    same again. So each states what both answers in play would mean: before, a reader of the text alone picked the
    side of an O→O > O→X pair whose passes agreed 68% of the time (6,000 pairs of 20,000 images)."""
    checked = Counter()
    for mcq, _, traces in scripted:
        template = _template(mcq)
        kinds = {trace.kind for trace in traces}
        if template not in _STEP_RESULTS or not {"O→O", "O→X"} <= kinds:
            continue
        for trace in traces:
            if trace.kind in ("O→O", "O→X"):
                assert len(set(re.findall(_STEP_RESULTS[template], trace.think))) == 2, trace.think
                checked[template, trace.kind] += 1
    assert all(checked[template, kind] for template in _STEP_RESULTS for kind in ("O→O", "O→X")), checked


def _option_key(option: str, key: dict[str, str]) -> str:
    return next(value for phrase, value in key.items() if option.startswith(phrase))


def test_relations_follow_from_the_extents_they_cite(scripted):
    relations = {phrase: key for key, phrase in stage1.RELATION_PHRASES.items()}
    checked = wrong = 0
    for mcq, _, short, option, right in _shorts(scripted, "relation"):
        a, b = (SceneObject(0, "", list(extent)) for extent in _extents(short)[:2])
        assert stage1.relation(a, b) == _option_key(option, relations), short
        if right:
            assert [a.bbox, b.bbox] == [list(_box(g["bbox"])) for g in mcq["grounding"]], short
        for axis, first, second in re.findall(r"([xy]) = (\d+) and the [a-z ]+'s at [xy] = (\d+)", short):
            assert int(first) == round(a.center["xy".index(axis)]) and int(second) == round(b.center["xy".index(axis)])
        checked, wrong = checked + 1, wrong + (not right)
    assert checked > 20 and wrong > 5


def test_sizes_follow_from_the_extents_they_cite(scripted):
    bins = {text.partition(" the {b}")[0]: i for i, text in enumerate(stage1.SIZE_BINS)}
    checked = wrong = 0
    for mcq, _, short, option, right in _shorts(scripted, "size"):
        (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = _extents(short)[:2]
        ratio = (ax1 - ax0) * (ay1 - ay0) / ((bx1 - bx0) * (by1 - by0))
        assert sum(ratio > 2**edge for edge in stage1.SIZE_EDGES) == _option_key(option, bins), short
        for stated in re.findall(r"(\d[\d,]*) / (\d[\d,]*) = ([\d.]+)", short):
            numerator, denominator = (int(v.replace(",", "")) for v in stated[:2])
            assert float(stated[2]) == pytest.approx(numerator / denominator, abs=0.006)
        if right:
            assert _extents(short)[:2] == [_box(g["bbox"]) for g in mcq["grounding"]], short
        checked, wrong = checked + 1, wrong + (not right)
    assert checked > 20 and wrong > 5


def test_locations_follow_from_the_extent_they_cite(scripted):
    checked = 0
    for mcq, scene, short, option, right in _shorts(scripted, "location"):
        assert f"{scene.width} × {scene.height}" in short
        obj = SceneObject(0, "", list(_extents(short)[0]))
        assert stage1.quadrant(obj, scene.width, scene.height) == option, short
        if right:
            assert _extents(short)[0] == _box(mcq["grounding"][0]["bbox"])
        checked += 1
    assert checked > 20


def test_the_nearest_is_the_smallest_gap_measured(scripted):
    checked = 0
    for mcq, _, short, option, right in _shorts(scripted, "distance"):
        anchor = SceneObject(0, "", list(_extents(short)[0]))
        measured = []
        for sentence in re.split(r"(?<=\.) ", short):
            if " px" in sentence and _extents(sentence):
                obj = SceneObject(0, "", list(_extents(sentence)[0]))
                gap = int(re.findall(r"(\d[\d,]*) px", sentence)[-1].replace(",", ""))
                assert abs(gap - stage1.gap(anchor, obj)) <= 1, sentence  # the gap is the one between the extents
                measured.append((gap, sentence))
        assert len(measured) == 4 and re.search(rf"\bthe {re.escape(option)}\b", min(measured)[1].lower()), short
        if right:
            assert _extents(short)[0] == _box(mcq["grounding"][0]["bbox"])
        checked += 1
    assert checked > 20


def test_wrong_answers_are_stated_as_often_as_right_ones():
    """Per template, the answers wrong short CoTs state are distributed as the right ones' are: a reader must not
    learn that some answer is usually wrong. Total variation distance, allowing for the sample's size."""
    stated, balance = {}, SlipBalance()
    for mcq, scene in _stage1_rows(3 * NUM_SCENES):
        for trace in scripted_traces(mcq, scene, 2, 0, balance):
            if not trace.cue:
                option = mcq["options"][LETTERS.index(trace.predicted)]
                asked = set(re.findall(r"[a-z0-9]+", mcq["question"].lower()))
                answer = " ".join(w for w in re.findall(r"[a-z0-9]+", option.lower()) if w not in asked)
                stated.setdefault(_template(mcq), (Counter(), Counter()))[trace.correct][answer] += 1
    checked = 0
    for template, (wrong, right) in stated.items():
        if sum(wrong.values()) < 40:
            continue
        distance = (
            sum(abs(wrong[a] / sum(wrong.values()) - right[a] / sum(right.values())) for a in set(wrong) | set(right))
            / 2
        )
        noise = (len(set(wrong) | set(right)) / sum(wrong.values())) ** 0.5  # the size of a chance difference
        assert distance <= 0.1 + noise, (template, distance, wrong, right)
        checked += 1
    assert checked >= 6


def test_wrong_counts_miss_objects_about_as_often_as_they_make_one_up():
    """A slip that misses an object gives a lower count, a shorter chain of thought and often a tally of none; one
    that takes an object for another gives a higher count. The balance takes the two in turn where a question allows
    both, so that a reader cannot tell a wrong chain of thought by its length (1.8 missed per made up before)."""
    made, balance = Counter(), SlipBalance()
    for mcq, scene in _stage1_rows(15 * NUM_SCENES):
        if _template(mcq) == "count":
            gold = int(mcq["options"][LETTERS.index(mcq["answer"])])
            for trace in scripted_traces(mcq, scene, 2, 0, balance):
                if not trace.cue and not trace.correct:
                    made[int(mcq["options"][LETTERS.index(trace.predicted)]) < gold] += 1
    missed, made_up = made[True], made[False]
    assert made_up >= 80 and missed <= 1.4 * made_up, (missed, made_up)


def _totals_of_two_counts(builtin_mcqs) -> Iterator[tuple[dict, Scene]]:
    """Composites as stage 2 makes them: the total of two counts of an image, its forward steps the two counts."""
    counts = {}
    for mcq, scene in builtin_mcqs:
        if _template(mcq) == "count" and mcq["grounding"]:
            counts.setdefault(mcq["image_id"], []).append((mcq, scene))
    for (first, scene), (second, _), *_ in (found for found in counts.values() if len(found) >= 2):
        values = [len(first["grounding"]), len(second["grounding"])]
        options = [str(v) for v in range(sum(values) - 1, sum(values) + 3)]
        steps = [
            {
                "question": f"How many {m['grounding'][0]['name']}s are there?",
                "answer": str(n),
                "template": "count",
                "object_ids": [g["object_id"] for g in m["grounding"]],
                "answer_ids": [],
                "category": m["grounding"][0]["name"],
            }
            for m, n in zip((first, second), values, strict=True)
        ]
        composite = {
            "id": "composite",
            "image_id": first["image_id"],
            "question": "How many of both kinds are there in total?",
            "options": options,
            "answer": LETTERS[options.index(str(sum(values)))],
            "skill": "set_count",
            "level": 2,
            "grounding": first["grounding"] + second["grounding"],
            "parents": [first["id"], second["id"]],
            "steps": steps,
            "generator": "stage2/set_count@1",
        }
        yield composite, scene


def test_composed_questions_work_out_each_step_from_the_boxes(builtin_mcqs):
    for composite, scene in _totals_of_two_counts(builtin_mcqs):  # the first whose image lets a count slip
        traces = scripted_traces(composite, scene, 12, seed=0)
        if "X" in {t.kind for t in traces}:
            break
    assert {"O", "O→O", "X", "X→O"} <= {t.kind for t in traces}
    values = [int(step["answer"]) for step in composite["steps"]]
    boxes = sorted(_box(g["bbox"]) for g in composite["grounding"])
    for trace in traces:
        assert trace.correct == (trace.predicted == composite["answer"]) and not mentions_banned(trace.think)
        stated = re.findall(r"(\d+) \+ (\d+) = (\d+)", trace.short)
        assert len(stated) == 1 and int(stated[0][0]) + int(stated[0][1]) == int(stated[0][2])
        if not trace.cue:  # the total is the number of objects the two counts list, and it is the answer given
            assert (
                len(_extents(trace.short))
                == int(stated[0][2])
                == int(composite["options"][LETTERS.index(trace.predicted)])
            )
            if trace.correct:
                assert sorted(_extents(trace.short)) == boxes  # every object counted, each once
                assert stated[0] == (str(values[0]), str(values[1]), str(sum(values)))


def _stage2_rows(items: list[tuple[dict, Scene]]) -> Iterator[tuple[str, dict, Scene]]:
    """(template, mcq_stage2 row without the image, scene) for every composite stage 2 makes of ``items``."""
    stage2 = pytest.importorskip("lgt.synthesis.stage2")
    by_image = {}
    for mcq, scene in items:
        by_image.setdefault(mcq["image_id"], (scene, []))[1].append(mcq)
    balancer = LetterBalancer("2")
    for image_id, (scene, rows) in by_image.items():
        for c in stage2.compose(scene, rows, random.Random(image_id)):
            composite = mcq_row(scene, None, c, stage2.template_generator(c.template), balancer)
            yield c.template, composite, scene


def test_every_stage2_template_is_worked_out_forward_from_the_boxes():
    """Each stage-2 template, a chain or a size comparison found through "the largest X" included, is worked out
    step by step from the boxes, in the order of its forward steps: a right short CoT asks each step's question and
    arrives at its answer, a trace is right exactly when it picks the gold option, and none names it first."""
    stage2 = pytest.importorskip("lgt.synthesis.stage2")
    kinds = {}
    balance = SlipBalance()
    for template, composite, scene in _stage2_rows(_stage1_rows(4 * NUM_SCENES)):
        superlative = any(s["template"] in ("find_largest", "find_smallest") for s in composite["steps"])
        gold = composite["options"][LETTERS.index(composite["answer"])]
        for trace in scripted_traces(composite, scene, 4, 0, balance):
            kinds.setdefault((template, superlative), Counter())[trace.kind] += 1
            assert trace.correct == (trace.predicted == composite["answer"]) and not mentions_banned(trace.think)
            assert "The question is about" not in trace.think, trace.think  # no step taken on trust
            assert not names_answer_early(trace.think, composite["question"], gold, composite["answer"])
            assert not GARBLED.search(trace.think), GARBLED.search(trace.think)
            if trace.kind == "O":  # each step asked, then worked out to its own answer, in order
                assert _filter_verdicts_agree(trace.short, composite, scene), trace.short
                at = [trace.short.find(s["question"][1:]) for s in composite["steps"]]
                assert -1 not in at and at == sorted(at), trace.short
                objects = {o.id: o for o in scene.objects}
                for step, start, end in zip(composite["steps"], at, [*at[1:], None], strict=True):
                    found = trace.short[start:end]
                    answers = [objects[i].name for i in step["answer_ids"]] or [step["answer"]]
                    assert all(re.search(rf"\b{re.escape(a)}\b", found) for a in answers), (step, found)
    assert set(kinds) >= {(t, False) for t in stage2.SKILLS} | {("chain_colour", True), ("comparison_size", True)}
    assert all(found["O"] and found["O→O"] for found in kinds.values()), kinds
    assert sum(found["X→O"] for found in kinds.values()) > 0, kinds


def test_a_question_the_boxes_do_not_settle_still_ends_on_its_gold_option(builtin_mcqs):
    """A teacher's question, or one whose gold letter the boxes contradict, gets reasoning that names its objects
    and ends on the gold option: a scripted trace is never right about a different answer than the row's."""
    mcq, scene = next(item for item in builtin_mcqs if _template(item[0]) == "relation")
    gold = LETTERS[(LETTERS.index(mcq["answer"]) + 1) % 4]
    for row in ({**mcq, "generator": "stage1/llm@1:some-teacher"}, {**mcq, "answer": gold}):
        traces = scripted_traces(row, scene, 6, seed=0)
        assert {"O", "X", "X→O"} <= {t.kind for t in traces}
        for trace in traces:
            assert trace.correct == (trace.predicted == row["answer"])
            assert _extents(trace.short)[:2] == [_box(g["bbox"]) for g in row["grounding"]]
            if trace.correct:
                assert trace.think.endswith(f"{row['options'][LETTERS.index(row['answer'])]}.")


def test_coco_photos_get_grounded_traces_too(coco_root):
    """Real annotations: no colours to tell objects apart, many objects, boxes in fractional pixels."""
    from lgt.errors import InputError
    from lgt.sources.coco import CocoSource

    source = CocoSource(str(coco_root))
    scenes = [source.scene(entry.payload) for entry in source.entries() if not isinstance(entry, InputError)]
    vocab = stage1.Vocabulary(sorted({o.name for scene in scenes for o in scene.objects}), [], [])
    balancer, balance, kinds, templates = LetterBalancer("0"), stage1.Balance(), Counter(), set()
    slips = SlipBalance()
    for scene in scenes:
        for draft in stage1.generate(scene, vocab, random.Random(scene.image_id), balance):
            mcq = _row(scene, draft, balancer)
            boxes = {_box(obj.bbox) for obj in scene.objects}
            for trace in scripted_traces(mcq, scene, 2, 0, slips):
                kinds[trace.kind] += 1
                assert trace.correct == (trace.predicted == mcq["answer"]) and not mentions_banned(trace.think)
                assert all(_misread_of(e, boxes) for e in _extents(trace.think)), trace.think
                assert "The question is about" not in trace.think
            templates.add(draft.template)
    assert len(templates) >= 6 and set(kinds) == set(KINDS), (templates, kinds)


def test_scripted_traces_are_cheap(builtin_mcqs):
    balance = SlipBalance()
    start = time.perf_counter()
    for mcq, scene in builtin_mcqs:
        scripted_traces(mcq, scene, 2, 0, balance)
    per_mcq = (time.perf_counter() - start) / len(builtin_mcqs)
    assert per_mcq < 0.01, f"{per_mcq * 1e6:.0f} µs per MCQ"  # a 25K-MCQ build: a few minutes of one core


# ---- grading and the model path ----

MCQ = {
    "id": "m1",
    "question": "How many circles are there in the image?",
    "options": ["1", "2", "3", "4"],
    "answer": "B",
    "grounding": [],
}


def test_grading_reads_the_letter_with_the_one_parser():
    assert grade("<think>two</think> <answer>(B)</answer>", MCQ) == ("B", True)
    assert grade("<answer>2</answer>", MCQ) == ("B", True)  # the exact text of one option names it
    assert grade("<answer>3</answer>", MCQ) == ("C", False)  # another option's text is that option, not gold
    assert grade("<answer>(B) 3</answer>", MCQ) == ("", False)  # a letter contradicting its text names none
    assert grade("<answer>two</answer>", MCQ) == ("", False)
    assert grade("The answer is B.", MCQ) == ("", False)
    assert grade("<answer>(A)</answer> then <answer>(B)</answer>", MCQ) == ("B", True)


OBJECTS = [
    SceneObject(1, "circle", [40.0, 40.0, 120.0, 120.0], ["red", "medium"]),
    SceneObject(2, "circle", [200.0, 60.0, 260.0, 120.0], ["blue", "small"]),
    SceneObject(3, "square", [300.0, 200.0, 380.0, 280.0], ["green", "medium"]),
]


def _scene(image_id: str) -> Scene:
    return Scene(image_id, b"", 400, 300, f"Two circles and a square ({image_id}).", OBJECTS, "test")


def _image() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


def _mcq(image_id: str) -> dict:
    return {**MCQ, "id": f"m-{image_id}", "image_id": image_id}


# image id -> the teacher's n=4 short CoTs (text, finish reason); then, per short CoT kept, the reasoner's answer
SHORTS = {
    "a": [
        ("<think>I see The Red Circle at left and the Blue Circle: two.</think> <answer>(B)</answer>", "stop"),
        ("<think>Only one circle, the red one.</think>\n<answer>A.</answer>", "stop"),
        ("<think>There are two circles</think> <answer>2</answer>", "stop"),
        ("<think>I count three circles.</think> <answer>C</answer>", "stop"),
    ],
    "b": [
        ("<think>Two circles.</think>", "stop"),  # no answer
        ("<answer>(B)</answer>", "stop"),  # no thinking
        ("<think>Counting: one, two, thr", "length"),  # cut off
        ("<think>The bounding boxes show two.</think> <answer>(B)</answer>", "stop"),  # a banned word
    ],
}
EXPANSIONS = {
    ("a", 0): " let me recount: the red circle at x 40-120 and the blue one at x 200-260. Two.</think>\n"
    "<answer>(B)</answer>",
    ("a", 1): " I missed the blue circle at x 200-260. So there are two.</think> <answer>(B)</answer>",
    ("a", 2): " as the caption says, there are three.</think> <answer>(C)</answer>",  # a banned word
    ("a", 3): " still three, I think.</think>",  # no answer
}
EXPECTED_KINDS = Counter({"O": 2, "X": 2, "O→O": 1, "X→O": 1})
EXPECTED_REJECTS = Counter(
    short_without_answer=1,
    short_without_thinking=1,
    short_truncated=1,
    short_mentions_banned_word=1,
    expansion_mentions_banned_word=1,
    expansion_without_answer=1,
)


def _items():
    image = _image()
    return [(_mcq(image_id), _scene(image_id), image) for image_id in SHORTS]


def _store_answers(teacher: Engine, reasoner: Engine, writer: TraceWriter) -> None:
    rows = []
    for mcq, scene, image in _items():
        request = writer.short_request(mcq, image)
        texts, reasons = zip(*SHORTS[scene.image_id], strict=True)
        rows.append((teacher.key(request), teacher.spec.name, request.template, Response(texts, reasons, 900, 90)))
    teacher.cache.put_many(rows)
    rows = []
    for (image_id, index), text in EXPANSIONS.items():
        mcq, scene = _mcq(image_id), _scene(image_id)
        think = SHORTS[image_id][index][0].split("<think>")[1].split("</think>")[0]
        request = writer.expand_request(mcq, scene, think, writer.cue(mcq["id"], index))
        rows.append((reasoner.key(request), reasoner.spec.name, request.template, Response((text,), ("stop",), 9, 9)))
    reasoner.cache.put_many(rows)


@pytest.fixture
def answered(tmp_path):
    cache = tmp_path / "generations.sqlite"
    teacher = Engine("openai:fixture-vlm", cache=cache, cache_only=True, progress=False)
    reasoner = Engine("openai:fixture-reasoner", cache=cache, cache_only=True, progress=False)
    _store_answers(teacher, reasoner, TraceWriter(n=4, seed=5))
    return teacher, reasoner


def test_requests_show_what_training_shows_and_prefill_the_short_cot_as_written(tmp_path):
    writer = TraceWriter(n=4, seed=5)
    mcq, scene, image = _items()[0]
    short = writer.short_request(mcq, image)
    system, user = short.messages
    assert system.joined_text == SYSTEM_PROMPT and user.images[0].data == image
    assert user.joined_text == user_text(mcq["question"], mcq["options"], row_style(5, mcq["id"]))
    path = tmp_path / "image.png"
    path.write_bytes(image)
    assert writer.short_request(mcq, str(path)) == short  # a build that stores images by path
    assert short.sampling.n == 4 and (short.sampling.temperature, short.sampling.top_p) == (0.7, 0.8)
    think = "I see The Red Circle at left; TWO in all."
    expand = writer.expand_request(mcq, scene, think, "Wait,")
    assert expand.prefill == f"<think>\n{think}\n\nWait," and not expand.images
    prompt = expand.messages[0].joined_text
    assert (
        scene.caption in prompt and "circle (red, medium) [40, 40, 120, 120]" in prompt and mcq["question"] in prompt
    )
    assert set(banned_words()) <= set(expand.banned_words) and "Caption" in expand.banned_words


def test_model_traces_grade_count_rejects_and_keep_the_short_cot(answered):
    teacher, reasoner = answered
    result = model_traces(_items(), teacher, reasoner, n=4, seed=5)
    assert teacher.stats.misses == reasoner.stats.misses == 0
    assert teacher.stats.requests == 2 and reasoner.stats.requests == 4  # one call per step, every item in it
    traces = [t for found in result.traces.values() for t in found]
    assert Counter(t.kind for t in traces) == EXPECTED_KINDS
    assert result.rejects == EXPECTED_REJECTS
    first = next(t for t in traces if t.kind == "O→O")
    assert first.short.startswith("I see The Red Circle") and first.think.startswith(first.short + "\n\n" + first.cue)
    assert first.expansion.startswith("let me recount") and first.predicted == "B"
    corrected = next(t for t in traces if t.kind == "X→O")
    assert corrected.short == "Only one circle, the red one." and corrected.correct
    assert (
        first.teacher == "fixture-vlm prompt trace_short@1"
        and first.reasoner == "fixture-reasoner prompt trace_expand@1"
    )


def test_without_a_reasoner_only_short_cots(answered):
    teacher, _ = answered
    result = model_traces(_items(), teacher, None, n=4, seed=5)
    assert Counter(t.kind for found in result.traces.values() for t in found) == Counter({"O": 2, "X": 2})
    assert all(not t.cue and not t.reasoner for found in result.traces.values() for t in found)


def test_the_bill_counts_expansions_for_cached_short_cots(answered):
    teacher, reasoner = answered
    bills = bill_traces(_items(), teacher, reasoner, n=4, seed=5)
    assert (bills["short CoTs"].requests, bills["short CoTs"].to_generate) == (2, 0)
    assert (bills["expansions"].requests, bills["expansions"].cached) == (4, 4)


# ---- the tiny random models, end to end ----


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tiny_models import build_all

    return build_all(tmp_path_factory.mktemp("tiny-models"))


def _tiny_engines(tiny, cache):
    options = {"cache": cache, "progress": False}
    teacher = Engine(f"transformers:{tiny / 'tiny-qwen2.5-vl'}", max_pixels=56 * 56, **options)
    return teacher, Engine(f"transformers:{tiny / 'tiny-qwen2'}", **options)


def test_tiny_models_end_to_end_and_a_rerun_is_all_cache_hits(tiny, tmp_path):
    cache = tmp_path / "generations.sqlite"
    teacher, reasoner = _tiny_engines(tiny, cache)
    settings = {"n": 4, "seed": 5, "max_tokens": 16, "expansion_max_tokens": 16}
    writer = TraceWriter(**settings)
    # Scene "a"'s short CoTs are a realistic teacher's (cached); the tiny VLM writes the others and the tiny LLM
    # continues every usable one, so both models run.
    items = [*_items()[:1], (_mcq("c"), _scene("c"), _image())]
    request = writer.short_request(*items[0][::2])
    texts, reasons = zip(*SHORTS["a"], strict=True)
    teacher.cache.put_many(
        [(teacher.key(request), teacher.spec.name, request.template, Response(texts, reasons, 9, 9))]
    )
    result = model_traces(items, teacher, reasoner, **settings)
    assert teacher.stats.misses == 1 and reasoner.stats.misses == 4
    assert sum(result.rejects.values()) >= 3 and all(count > 0 for count in result.rejects.values())
    assert Counter(t.kind for t in result.traces["m-a"] if not t.cue) == Counter({"O": 2, "X": 2})
    first = model_traces(items, teacher, reasoner, **settings)
    teacher.close(), reasoner.close()

    teacher, reasoner = _tiny_engines(tiny, cache)
    again = model_traces(items, teacher, reasoner, **settings)
    assert teacher.stats.misses == reasoner.stats.misses == 0 and teacher._backend is None
    assert teacher.stats.hits == 2 and reasoner.stats.hits == 4
    assert again.traces == first.traces and again.rejects == result.rejects
