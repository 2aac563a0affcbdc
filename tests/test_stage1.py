"""Stage-1 templates on hand-made scenes whose answers are known, the answer balancing, and the grammar."""

import random
import re
from collections import Counter

import pytest
from lgt.answers import LETTERS, LetterBalancer, arrange_options, letter_options
from lgt.scene import Scene, SceneObject
from lgt.synthesis import stage1
from lgt.synthesis.grammar import article, plural, singular

VOCAB = stage1.Vocabulary(
    names=["cat", "dog", "car", "tree", "person", "bus", "cup", "chair"],
    colours=["red", "green", "blue", "yellow", "black"],
    attributes=["wooden", "striped", "shiny", "old"],
)
# The 80 COCO category names, as the COCO annotations spell them.
COCO_NAMES = (
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
)


def scene(*objects, width=1000, height=800):
    return Scene(
        image_id="s",
        image="s.png",
        width=width,
        height=height,
        caption="A scene.",
        objects=[SceneObject(id=i, name=n, bbox=list(b), **kw) for i, (n, b, kw) in enumerate(objects)],
        source="test",
    )


def obj(name, bbox, **kw):
    return name, bbox, kw


def drafts(s, seed=0, balance=None):
    return stage1.generate(s, VOCAB, random.Random(seed), balance)


def by_template(ds, template):
    return [d for d in ds if d.template == template]


def test_counting_counts_instances_and_skips_crowds_tiny_objects_and_large_counts():
    s = scene(
        obj("dog", (0, 0, 100, 100)),
        obj("dog", (200, 0, 300, 100)),
        obj("dog", (400, 0, 500, 100)),
        obj("person", (0, 300, 200, 700)),
        obj("person", (300, 300, 900, 700), crowd=True),
        obj("cup", (600, 600, 650, 650)),  # 0.3% of the image: too small to count at a glance
        *(obj("chair", (100 * i, 720, 100 * i + 90, 800)) for i in range(6)),  # six: more than MAX_COUNT
    )
    (dog,) = by_template(drafts(s), "count")
    assert "dogs" in dog.question
    assert dog.correct == "3" and dog.ordered and len(dog.grounding) == 3
    values = sorted(int(v) for v in [dog.correct, *dog.distractors])
    assert values == list(range(values[0], values[0] + 4)) and values[0] >= 0 and values[-1] <= stage1.MAX_COUNT


def test_a_count_may_be_zero_for_a_category_the_image_lacks():
    balance = stage1.Balance()
    counted = scene(obj("cat", (0, 0, 200, 200)), obj("dog", (300, 0, 500, 200)))
    drafts(counted, balance=balance)  # the stream has now counted cats and dogs
    zeros = [d for d in by_template(drafts(scene(obj("car", (0, 0, 200, 200))), balance=balance), "count")]
    zero = next(d for d in zeros if d.correct == "0")
    assert zero.topic in {"cat", "dog"} and zero.grounding == [] and sorted(zero.distractors) == ["1", "2", "3"]


def test_count_windows_keep_every_value_equally_likely_per_window():
    """A stream of counts where 1 is nine times as common as 3: each window's answers stay even, 1 cannot dominate."""
    balance, rng = stage1.Balance(), random.Random(0)
    answers = Counter()
    for i in range(2000):
        n = 1 if i % 10 < 9 else rng.choice((0, 2, 3, 4))
        dogs = [SceneObject(k, "dog", [10 * k, 0, 10 * k + 5, 5]) for k in range(n)]
        draft = stage1._offer_count("dog", dogs, rng, balance)
        if draft is not None:
            answers[draft.correct] += 1
    for counts in balance.classes.values():
        assert max(counts.values()) - min(counts.values()) <= 1
    assert answers["1"] / sum(answers.values()) < 0.35


def test_a_number_that_is_never_the_answer_is_never_an_option():
    """Streams (a build starts one per unit of images) of counts never 5 and seldom 4: every number shown is the
    answer about a quarter of the times it is shown, so no window has an edge a reader knows is never right; a number
    never asked is shown only in a stream's first question of some other number."""
    rng = random.Random(0)
    shown, right = Counter(), Counter()
    for _ in range(10):
        balance = stage1.Balance()
        for _ in range(120):
            n = rng.choice((0, 1, 1, 2, 2, 3, 3, 4))
            dogs = [SceneObject(k, "dog", [10 * k, 0, 10 * k + 5, 5]) for k in range(n)]
            draft = stage1._offer_count("dog", dogs, rng, balance)
            if draft is not None:
                right[draft.correct] += 1
                shown.update([draft.correct, *draft.distractors])
    judged = {value: times for value, times in shown.items() if times >= 20}
    for value, times in judged.items():
        assert 0.2 <= right[value] / times <= 0.3, (value, right[value], times)
    assert sum(shown.values()) - sum(judged.values()) <= 0.01 * sum(shown.values()), shown  # a stream's first few


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ((0, 100, 200, 300), (400, 120, 600, 280), "left"),
        ((400, 120, 600, 280), (0, 100, 200, 300), "right"),
        ((100, 0, 300, 200), (120, 400, 280, 600), "above"),
        ((120, 400, 280, 600), (100, 0, 300, 200), "below"),
        ((0, 0, 200, 200), (400, 400, 600, 600), None),  # diagonal: both left and above
        ((0, 100, 300, 300), (200, 120, 500, 280), None),  # overlapping horizontally
        ((0, 0, 100, 100), (150, 50, 400, 700), None),  # level with the other's top edge only: left and above
    ],
)
def test_relation_is_asked_only_when_exactly_one_holds(a, b, expected):
    assert stage1.relation(SceneObject(0, "a", list(a)), SceneObject(1, "b", list(b))) == expected


def test_relations_name_objects_one_phrase_fits():
    s = scene(
        obj("cat", (0, 100, 200, 300)),
        obj("dog", (400, 120, 600, 280)),
        obj("dog", (700, 120, 900, 280)),
        obj("car", (20, 500, 180, 700)),
    )
    questions = [d.question for d in by_template(drafts(s), "relation")]
    assert questions and all("dog" not in q for q in questions)
    coloured = scene(
        obj("dog", (0, 100, 200, 300), attributes=["red"]), obj("dog", (400, 120, 600, 280), attributes=["blue"])
    )
    (draft,) = by_template(drafts(coloured), "relation")
    assert "red dog" in draft.question and "blue dog" in draft.question


def test_size_bins_margin_and_frame():
    big, small = SceneObject(0, "a", [10, 10, 410, 410]), SceneObject(1, "b", [10, 10, 110, 110])
    assert stage1.size_bin(big, small) == 3 and stage1.size_bin(small, big) == 0  # 16 times the area
    assert stage1.size_bin(SceneObject(0, "a", [10, 10, 110, 180]), small) == 2  # 1.7 times: clearly in (1, 3)
    assert stage1.size_bin(SceneObject(0, "a", [10, 10, 110, 130]), small) is None  # 1.2 times: too close to 1
    assert stage1.size_bin(SceneObject(0, "a", [10, 10, 110, 350]), small) is None  # 3.4 times: too close to 3
    cut = scene(obj("cat", (0, 100, 300, 400)), obj("dog", (500, 100, 600, 200)))  # the cat reaches the left edge
    assert not by_template(drafts(cut), "size")
    whole = scene(obj("cat", (5, 100, 300, 400)), obj("dog", (500, 100, 600, 200)))
    assert by_template(drafts(whole), "size")


def test_location_needs_the_box_inside_one_quadrant():
    assert stage1.quadrant(SceneObject(0, "a", [50, 50, 150, 150]), 1000, 800) == "top left"
    assert stage1.quadrant(SceneObject(0, "a", [800, 600, 900, 700]), 1000, 800) == "bottom right"
    assert stage1.quadrant(SceneObject(0, "a", [450, 50, 550, 150]), 1000, 800) is None  # on the vertical midline
    assert stage1.quadrant(SceneObject(0, "a", [0, 0, 700, 500]), 1000, 800) is None  # centre top left, box spans
    assert stage1.quadrant(SceneObject(0, "a", [0, 0, 520, 300]), 1000, 800) == "top left"  # 96% inside
    assert stage1.quadrant(SceneObject(0, "a", [440, 50, 510, 150]), 1000, 800) is None  # 86% inside
    assert stage1.quadrant(SceneObject(0, "a", [450, 50, 502, 150]), 1000, 800) is None  # 96%, centre near midline


def test_existence_and_absence_options():
    s = scene(obj("cat", (0, 0, 200, 200)), obj("dog", (300, 0, 500, 200)), obj("car", (600, 0, 800, 200)))
    ds = drafts(s)
    (present,) = by_template(ds, "existence")
    assert present.correct in {"cat", "dog", "car"} and not {"cat", "dog", "car"} & set(present.distractors)
    (absent,) = by_template(ds, "absence")
    assert absent.correct not in {"cat", "dog", "car"} and set(absent.distractors) == {"cat", "dog", "car"}


def test_distance_by_gap_between_boxes_among_present_objects_only(monkeypatch):
    monkeypatch.setitem(stage1.PER_TEMPLATE, "distance", 10)  # every anchor, not two drawn at random
    row = [obj(name, (x, 600, x + 100, 700)) for name, x in (("car", 0), ("tree", 300), ("bus", 600), ("cup", 850))]
    s = scene(obj("cat", (0, 0, 100, 100)), obj("dog", (150, 0, 250, 100)), *row)
    (near,) = [d for d in by_template(drafts(s), "distance") if d.grounding[0].name == "cat"]
    assert near.correct == "dog" and set(near.distractors) <= {"car", "tree", "bus", "cup"}
    # The anchor's box overlaps the person's: the person is never an option, even though its gap is 0.
    touching = scene(
        obj("cat", (0, 0, 100, 100)), obj("person", (50, 50, 300, 300)), *row[:3], obj("cup", (150, 0, 250, 100))
    )
    options = [{d.correct, *d.distractors} for d in by_template(drafts(touching), "distance") if "cat" in d.question]
    assert options and all("person" not in o for o in options)
    three_others = scene(obj("cat", (0, 0, 100, 100)), obj("dog", (150, 0, 250, 100)), *row[:2])
    assert not by_template(drafts(three_others), "distance")  # no absent names to fill the options


def test_distance_needs_a_clear_nearest():
    row = [obj(name, (x, 700, x + 50, 750)) for name, x in (("car", 0), ("tree", 300), ("bus", 600))]
    tie = scene(
        obj("cat", (400, 300, 500, 400)), obj("dog", (600, 300, 700, 400)), obj("cup", (200, 300, 300, 400)), *row
    )
    assert not [d for d in by_template(drafts(tie), "distance") if "cat" in d.question]


def test_colour_and_attribute_questions():
    s = scene(obj("cat", (0, 0, 200, 200), attributes=["black", "striped"]), obj("dog", (300, 0, 500, 200)))
    (colour,) = by_template(drafts(s), "colour")
    assert colour.correct == "black" and "black" not in colour.distractors and len(colour.distractors) == 3
    (attribute,) = by_template(drafts(s), "attribute")
    assert attribute.correct == "striped" and "striped" not in attribute.distractors


def test_no_fact_twice_and_four_distinct_options():
    rng = random.Random(1)
    balance = stage1.Balance()
    for _ in range(300):
        objects = []
        for _ in range(rng.randint(1, 9)):
            x, y = rng.uniform(0, 800), rng.uniform(0, 600)
            objects.append(
                obj(
                    rng.choice(VOCAB.names),
                    (x, y, x + rng.uniform(10, 200), y + rng.uniform(10, 200)),
                    attributes=[rng.choice(VOCAB.colours)],
                )
            )
        ds = drafts(scene(*objects), seed=rng.random(), balance=balance)
        assert len({d.fact for d in ds}) == len(ds) and len({d.question for d in ds}) == len(ds)
        for d in ds:
            assert len(set([d.correct, *d.distractors])) == 4, d


def test_every_template_has_at_least_five_wordings_and_each_skill_uses_them():
    assert all(len(set(wordings)) >= 5 for wordings in stage1.WORDINGS.values())
    assert set(stage1.WORDINGS) == set(stage1.PER_TEMPLATE) == set(stage1.SKILLS)
    rng = random.Random(0)
    said = {stage1._say("location", rng, "cat") for _ in range(200)}
    assert len(said) == len(stage1.WORDINGS["location"])


def test_plural_holds_for_every_coco_category():
    irregular = {
        "person": "people",
        "bus": "buses",
        "bench": "benches",
        "sheep": "sheep",
        "skis": "pairs of skis",
        "wine glass": "wine glasses",
        "knife": "knives",
        "sandwich": "sandwiches",
        "broccoli": "pieces of broccoli",
        "couch": "couches",
        "mouse": "mice",
        "scissors": "pairs of scissors",
        "toothbrush": "toothbrushes",
    }
    names = COCO_NAMES
    assert len(names) == 80
    for name in names:
        assert plural(name) == irregular.get(name, name + "s"), name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("teddy bear", "teddy bears"),
        ("baby", "babies"),
        ("toy", "toys"),
        ("red skis", "pairs of red skis"),
        ("pair of shoes", "pairs of shoes"),
        ("snowman", "snowmen"),
        ("human", "humans"),
        ("TV", "TVs"),
        ("potato", "potatoes"),
        ("photo", "photos"),
        ("wolf", "wolves"),
        ("giraffe", "giraffes"),
        ("glasses", "pairs of glasses"),
        ("box", "boxes"),
        ("Fish", "Fish"),
    ],
)
def test_plural_rules(name, expected):
    assert plural(name) == expected


def test_singular_and_article():
    assert (
        singular("skis") == "pair of skis" and singular("dog") == "dog" and singular("red scissors").startswith("pair")
    )
    words = ["apple", "umbrella", "unicycle", "hour", "elephant", "European car", "SUV", "TV", "one-way sign", "cat"]
    assert [article(w) for w in words] == ["an", "an", "a", "an", "an", "a", "an", "a", "a", "a"]


def test_questions_read_well_for_every_coco_name():
    """Every wording filled with every COCO name: no doubled article, no "is" before a plural, no unfilled slot."""
    rng = random.Random(0)
    for name in COCO_NAMES:
        for wordings in stage1.WORDINGS.values():
            for wording in wordings:
                text = wording.format(a=singular(name), b="cup", p=plural(name), an=article(singular(name)))
                assert "{" not in text and "  " not in text and not re.search(r"\b(a|an) (a|an)\b", text), text
                assert not re.search(r"\bis the (skis|scissors)\b", text), text
        assert stage1._say("location", rng, name)


def test_letter_balancer_is_exact_per_stream_block_and_seeded():
    balancer = LetterBalancer("x")
    stream = [balancer.next_position("counting") for _ in range(400)]
    other = [balancer.next_position("existence") for _ in range(400)]
    for positions in (stream, other):
        assert all(Counter(positions[i : i + 4]) == Counter(range(4)) for i in range(0, 400, 4))
    again = LetterBalancer("x")
    assert stream != other and stream == [again.next_position("counting") for _ in range(400)]
    assert arrange_options("x", ["a", "b", "c"], 2) == ["a", "b", "x", "c"] and LETTERS == "ABCD"


def test_ordered_options_are_ascending_with_the_answer_at_its_rank():
    options, answer = letter_options("3", ["5", "2", "4"], True, LetterBalancer("x"), "counting")
    assert options == ["2", "3", "4", "5"] and answer == "B"
    options, answer = letter_options("cat", ["dog", "car", "cup"], False, LetterBalancer("x"), "existence")
    assert options[LETTERS.index(answer)] == "cat" and sorted(options) == ["car", "cat", "cup", "dog"]
