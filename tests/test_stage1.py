"""Stage-1 templates on hand-made scenes whose answers are known."""

import random
from collections import Counter

import pytest
from lgt.answers import LETTERS, LetterBalancer, arrange_options
from lgt.scene import Scene, SceneObject
from lgt.synthesis import stage1

VOCAB = stage1.Vocabulary(
    names=["cat", "dog", "car", "tree", "person", "bus", "cup", "chair"],
    colours=["red", "green", "blue", "yellow", "black"],
    attributes=["wooden", "striped", "shiny", "old"],
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


def drafts(s, seed=0):
    return stage1.generate(s, VOCAB, random.Random(seed))


def by_template(ds, template):
    return [d for d in ds if d.template == template]


def test_counting_counts_instances_and_skips_crowds_and_tiny_objects():
    s = scene(
        obj("dog", (0, 0, 100, 100)),
        obj("dog", (200, 0, 300, 100)),
        obj("dog", (400, 0, 500, 100)),
        obj("person", (0, 300, 200, 700)),
        obj("person", (300, 300, 900, 700), crowd=True),
        obj("cup", (600, 600, 620, 620)),  # 0.05% of the image: too small to count
    )
    counts = {d.question: d for d in by_template(drafts(s), "count")}
    assert set(counts) == {"How many dogs are there in the image?"}
    dog = counts["How many dogs are there in the image?"]
    assert dog.correct == "3" and len(set(dog.distractors) | {"3"}) == 4 and all(int(x) >= 0 for x in dog.distractors)
    assert len(dog.grounding) == 3


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ((0, 100, 200, 300), (400, 120, 600, 280), "left"),
        ((400, 120, 600, 280), (0, 100, 200, 300), "right"),
        ((100, 0, 300, 200), (120, 400, 280, 600), "above"),
        ((120, 400, 280, 600), (100, 0, 300, 200), "below"),
        ((0, 0, 200, 200), (400, 400, 600, 600), None),  # diagonal: both left and above
        ((0, 100, 300, 300), (200, 120, 500, 280), None),  # overlapping horizontally
    ],
)
def test_relation_is_asked_only_when_exactly_one_holds(a, b, expected):
    assert stage1.relation(SceneObject(0, "a", list(a)), SceneObject(1, "b", list(b))) == expected


def test_relations_use_only_single_instances():
    s = scene(
        obj("cat", (0, 100, 200, 300)),
        obj("dog", (400, 120, 600, 280)),
        obj("dog", (700, 120, 900, 280)),
        obj("car", (20, 500, 180, 700)),
    )
    questions = [d.question for d in by_template(drafts(s), "relation")]
    assert questions and all("dog" not in q for q in questions)


def test_size_bins_and_margin():
    big, small = SceneObject(0, "a", [0, 0, 300, 300]), SceneObject(1, "b", [0, 0, 100, 100])
    assert stage1.size_bin(big, small) == 3 and stage1.size_bin(small, big) == 0
    assert stage1.size_bin(SceneObject(0, "a", [0, 0, 100, 141]), small) == 2  # ratio 1.41: clearly in (1, 2)
    assert stage1.size_bin(SceneObject(0, "a", [0, 0, 100, 105]), small) is None  # ratio 1.05: too close to 1


def test_location_quadrants_and_margin():
    s = scene(obj("cat", (50, 50, 150, 150)), obj("dog", (800, 600, 900, 700)), obj("car", (450, 50, 550, 150)))
    where = {d.grounding[0].name: d.correct for d in by_template(drafts(s), "location")}
    assert where == {"cat": "top left", "dog": "bottom right"}  # the car sits on the vertical midline


def test_existence_and_absence_options():
    s = scene(obj("cat", (0, 0, 200, 200)), obj("dog", (300, 0, 500, 200)), obj("car", (600, 0, 800, 200)))
    ds = drafts(s)
    (present,) = by_template(ds, "existence")
    assert present.correct in {"cat", "dog", "car"} and not {"cat", "dog", "car"} & set(present.distractors)
    (absent,) = by_template(ds, "absence")
    assert absent.correct not in {"cat", "dog", "car"} and set(absent.distractors) == {"cat", "dog", "car"}


def test_distance_needs_a_clear_nearest():
    s = scene(obj("cat", (0, 0, 100, 100)), obj("dog", (150, 0, 250, 100)), obj("car", (800, 600, 900, 700)))
    near = [d for d in by_template(drafts(s), "distance") if d.question.endswith("the cat?")]
    assert near and near[0].correct == "dog" and "car" in near[0].distractors
    tie = scene(obj("cat", (400, 300, 500, 400)), obj("dog", (600, 300, 700, 400)), obj("car", (200, 300, 300, 400)))
    assert not [d for d in by_template(drafts(tie), "distance") if d.question.endswith("the cat?")]


def test_colour_and_attribute_questions():
    s = scene(obj("cat", (0, 0, 200, 200), attributes=["black", "striped"]), obj("dog", (300, 0, 500, 200)))
    (colour,) = by_template(drafts(s), "colour")
    assert colour.correct == "black" and "black" not in colour.distractors and len(colour.distractors) == 3
    (attribute,) = by_template(drafts(s), "attribute")
    assert attribute.correct == "striped" and "striped" not in attribute.distractors


def test_no_question_twice_and_four_distinct_options():
    rng = random.Random(1)
    for _ in range(200):
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
        ds = drafts(scene(*objects), seed=rng.random())
        assert len({d.question for d in ds}) == len(ds)
        for d in ds:
            assert len(set([d.correct, *d.distractors])) == 4, d


def test_plural():
    assert [stage1.plural(n) for n in ("dog", "bus", "person", "wine glass", "teddy bear", "baby", "toy")] == [
        "dogs",
        "buses",
        "people",
        "wine glasses",
        "teddy bears",
        "babies",
        "toys",
    ]


def test_letter_balancer_is_exact_per_block_and_seeded():
    positions = [LetterBalancer("x").next_position() for _ in range(1)]
    balancer = LetterBalancer("x")
    stream = [balancer.next_position() for _ in range(400)]
    assert all(Counter(stream[i : i + 4]) == Counter(range(4)) for i in range(0, 400, 4))
    assert stream[:1] == positions and stream != [LetterBalancer("y").next_position() for _ in range(400)][:400]
    assert arrange_options("x", ["a", "b", "c"], 2) == ["a", "b", "x", "c"] and LETTERS == "ABCD"
