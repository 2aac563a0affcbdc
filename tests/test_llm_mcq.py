"""LLM-written stage-1 MCQs: realistic model answers through the cache in cache-only mode, and a parser fuzz.

A random tiny model writes nonsense, so what a real teacher writes is written here by hand: good answers, subtly
wrong ones, malformed ones. They are stored under the exact keys the engine computes for each scene's request, so
``write_mcqs`` runs its real path (render, look up, parse, validate, retry with a new seed, verify) with no model.
"""

import json
import random
import re
from collections import Counter

import pytest
from lgt.answers import LETTERS
from lgt.generation import CacheMissError, Engine, Response
from lgt.prompts import load_prompt
from lgt.scene import Scene, SceneObject
from lgt.synthesis.llm_mcq import SKILLS, MCQWriter, mcq_schema, parse_mcqs, verify_request, write_mcqs

OBJECTS = [
    SceneObject(1, "person", [412.2, 157.6, 465.8, 295.6], ["standing"]),
    SceneObject(2, "tv", [5.5, 166.6, 155.7, 263.0]),
    SceneObject(3, "potted plant", [236.0, 180.0, 265.0, 232.0]),
    SceneObject(4, "potted plant", [340.0, 178.0, 370.0, 230.0]),
    SceneObject(5, "clock", [447.7, 121.2, 461.0, 142.0]),
    SceneObject(6, "chair", [292.0, 218.0, 353.0, 320.0]),
    SceneObject(7, "vase", [550.0, 300.0, 585.0, 400.0]),
]
CAPTION = (
    "A bright living room. A woman stands on the right beside a wall clock; a television sits on a low cabinet "
    "on the left. Two potted plants stand on a shelf between them, a wooden chair is in the middle of the room "
    "and a white vase is on the floor in the bottom right corner."
)


def _scene(image_id: str) -> Scene:
    # Requests are addressed by content: scenes with the same caption and boxes would share their answers.
    return Scene(image_id, b"", 640, 427, f"{CAPTION} ({image_id})", OBJECTS, "test")


def _q(question, options, answer, skill, objects):
    return {"question": question, "options": options, "answer": answer, "skill": skill, "objects": objects}


GOOD = [
    _q("How many potted plants are there?", ["1", "2", "3", "4"], "B", "counting", [3, 4]),
    _q(
        "Where is the television relative to the chair?",
        ["to the right", "above", "to the left", "below"],
        "C",
        "spatial_relation",
        [2, 6],
    ),
    _q(
        "Which object is closest to the woman?",
        ["the clock", "the television", "the vase", "the plant on the left"],
        "A",
        "relative_distance",
        [1, 5],
    ),
    _q(
        "In which part of the image is the vase?",
        ["top left", "top right", "bottom left", "bottom right"],
        "D",
        "localization",
        [7],
    ),
]
SUBTLY_WRONG = [
    GOOD[0],
    _q("How many chairs are there?", ["1", "2", "3", "4"], "B", "counting", [6]),  # one chair is named, not two
    _q("What stands on the low cabinet?", ["a television", "a lamp", "a vase", "a clock"], "A", "existence", [2]),
    _q("What colour is the white vase?", ["white", "red", "blue", "green"], "A", "attribute", [7]),
    _q("How many clocks are there?", ["1", "one", "2", "3"], "A", "counting", [5]),
    _q("What colour is the vase?", ["white", "red", "blue", "green"], "A", "attribute", [12]),
    _q("What time does the clock show?", ["3", "4", "5", "6"], "A", "reading", [5]),
    _q("Which side is the woman on?", ["left", "right", "middle", "top"], "E", "localization", [1]),
    _q("Which side is the woman on?", ["left", "right", "middle"], "B", "localization", [1]),
    _q("Where is the chair?", ["middle", "left", "right", "top"], "A", "localization", []),
    {
        "question": "Which is larger?",
        "options": ["the tv", "the clock", "the vase", "the chair"],
        "skill": "relative_size",
        "objects": [2, 5],
    },
    GOOD[0],
]
# One reject each, in the order of SUBTLY_WRONG[1:]; items 0 and 2 are kept.
SUBTLY_WRONG_REASONS = [
    "count_mismatch",
    "answer_in_question",
    "duplicate_options",
    "unknown_object",
    "unknown_skill",
    "answer_not_an_option",
    "option_count",
    "no_grounding",
    "missing_field",
    "duplicate_question",
]


def _json(questions) -> str:
    return json.dumps({"questions": questions}, indent=2)


# scene id -> one (text, finish_reason) per attempt, as a teacher might answer
ANSWERS = {
    "good": [("```json\n" + _json(GOOD) + "\n```", "stop")],
    "subtly-wrong": [(_json(SUBTLY_WRONG), "stop")],
    "malformed-then-good": [
        ("Sure! Here are the questions:\n" + _json(GOOD[:2]), "stop"),
        (_json(GOOD[2:]).replace("closest", "closest\tto"), "stop"),  # a raw tab inside a string is tolerated
    ],
    "never-good": [
        (_json(GOOD)[:250], "length"),
        (json.dumps({"questions": []}), "stop"),
        (json.dumps([GOOD[0]]), "stop"),
    ],
}


# What write_mcqs keeps of ANSWERS, per scene, and what it rejects, by reason.
KEPT = {
    "good": [q["question"] for q in GOOD],
    "subtly-wrong": [GOOD[0]["question"], SUBTLY_WRONG[2]["question"]],
    "malformed-then-good": [q["question"].replace("closest", "closest\tto") for q in GOOD[2:]],
}
REJECTS = Counter(SUBTLY_WRONG_REASONS) + Counter(
    malformed_json=1, truncated=1, no_questions=2, scene_gave_no_question=1
)


def _store(engine: Engine, writer: MCQWriter, answers: dict) -> None:
    rows = []
    for image_id, attempts in answers.items():
        for attempt, (text, reason) in enumerate(attempts):
            request = writer.request(_scene(image_id), attempt)
            rows.append(
                (engine.key(request), engine.spec.name, request.template, Response((text,), (reason,), 900, 300))
            )
    engine.cache.put_many(rows)


@pytest.fixture
def teacher(tmp_path):
    engine = Engine("openai:fixture-teacher", cache=tmp_path / "c.sqlite", cache_only=True, progress=False)
    _store(engine, MCQWriter(), ANSWERS)
    return engine


def test_prompt_renders_scene_and_is_versioned():
    request = MCQWriter(questions_per_scene=5).request(_scene("good"), attempt=1)
    text = request.messages[0].joined_text
    assert (
        CAPTION in text and "4: potted plant [340, 178, 370, 230]" in text and "1: person (standing) [412, 158" in text
    )
    assert "up to 5 questions" in text and all(skill in text for skill in SKILLS) and "$" not in text
    assert request.template == "stage1_mcq@1" and request.sampling.seed == 1
    assert request.schema == mcq_schema(5)


def test_fixtures_through_the_cache_only_engine(teacher):
    scenes = [_scene(image_id) for image_id in ANSWERS]
    result = write_mcqs(scenes, teacher, max_attempts=3)
    assert teacher._backend is None and teacher.stats.misses == 0
    assert {image_id: [d.question for d in drafts] for image_id, drafts in result.drafts.items()} == KEPT
    assert KEPT["good"] == [q["question"] for q in GOOD] and "closest\tto" in KEPT["malformed-then-good"][0]
    kept = result.drafts["good"][0]
    assert (kept.skill, kept.template, kept.correct, kept.distractors) == ("counting", "llm", "2", ["1", "3", "4"])
    assert [o.id for o in kept.grounding] == [3, 4]
    assert len(set(SUBTLY_WRONG_REASONS)) == len(SUBTLY_WRONG) - 2
    assert result.rejects == REJECTS
    assert result.generator == "stage1/llm@1:fixture-teacher"
    # Three rounds, each asking only for the scenes still without a question.
    assert teacher.stats.requests == 4 + 2 + 1


def test_a_missing_attempt_is_a_clear_cache_only_error(teacher):
    with pytest.raises(CacheMissError, match="1 of 1 requests to fixture-teacher are not in the generation cache"):
        write_mcqs([_scene("never-good")], teacher, max_attempts=4)


def store_verdicts(verifier: Engine, drafts: dict[str, list]) -> None:
    """A verifier's answers for each scene's drafts, in turn: agrees, disagrees, malformed, agrees in lower case."""
    prompt = load_prompt("stage1_verify")
    rows = []
    for image_id, found in drafts.items():
        for i, draft in enumerate(found):
            request = verify_request(_scene(image_id), draft, prompt)
            # The letter the verifier should give is wherever the prompt shows the correct option.
            shown = request.messages[0].joined_text
            letter = re.search(rf"^([A-D])\. {re.escape(draft.correct)}$", shown, re.M).group(1)
            wrong = LETTERS[(LETTERS.index(letter) + 1) % 4]
            text = [
                json.dumps({"answer": letter}),
                json.dumps({"answer": wrong}),
                "I think B",
                f'{{"answer": "{letter.lower()}"}}',
            ][i % 4]
            response = Response((text,), ("stop",), 1, 1)
            rows.append((verifier.key(request), verifier.spec.name, request.template, response))
    verifier.cache.put_many(rows)


def test_verifier_keeps_only_what_it_answers_the_same_way(teacher, tmp_path):
    verifier = Engine("openai:fixture-verifier", cache=tmp_path / "c.sqlite", cache_only=True, progress=False)
    drafts = write_mcqs([_scene("good")], teacher).drafts["good"]
    store_verdicts(verifier, {"good": drafts})
    result = write_mcqs([_scene("good")], teacher, verifier=verifier)
    assert [d.question for d in result.drafts["good"]] == [drafts[0].question, drafts[3].question]
    assert (result.rejects["verifier_disagrees"], result.rejects["verifier_malformed"]) == (1, 1)
    assert result.generator == "stage1/llm@1:fixture-teacher+verify@1:fixture-verifier"


def _mutations(rng: random.Random):
    """(category, text, finish_reason, reason that must be counted) for malformed variants of a good answer."""
    good = _json(GOOD)

    def one(change):
        questions = json.loads(good)["questions"]
        item = rng.choice(questions)
        change(item)
        return _json(questions)

    def duplicate(item):
        i, j = rng.sample(range(4), 2)
        item["options"][j] = rng.choice([str.upper, str.lower, str.title])(item["options"][i]) + rng.choice(["", "."])

    def wrong_count(item):
        item["options"] = (
            item["options"][: rng.choice([0, 1, 2, 3])]
            if rng.random() < 0.5
            else item["options"] + [f"extra {k}" for k in range(rng.randint(1, 4))]
        )

    def unicode_noise(text):
        noise = "".join(
            chr(rng.choice([rng.randint(0x80, 0x2FF), rng.randint(0x4E00, 0x9FFF), 0x202E, 0xFEFF]))
            for _ in range(rng.randint(1, 8))
        )
        at = rng.randrange(len(text))
        return text[:at] + noise + text[at:]

    categories = {
        "truncated": lambda: (good[: rng.randrange(1, len(good.rstrip()) - 1)], "length", "truncated"),
        "option_count": lambda: (one(wrong_count), "stop", "option_count"),
        "duplicate_options": lambda: (one(duplicate), "stop", "duplicate_options"),
        "missing_answer": lambda: (one(lambda q: q.pop("answer")), "stop", "missing_field"),
        "empty_answer": lambda: (one(lambda q: q.update(answer=rng.choice(["", " "]))), "stop", "missing_answer"),
        "answer_not_an_option": lambda: (
            one(lambda q: q.update(answer=rng.choice(["E", "AB", "5", "the first", "Z", "A)"]))),
            "stop",
            "answer_not_an_option",
        ),
        "control_characters": lambda: (
            one(lambda q: q.update(question=q["question"] + rng.choice(["\x00", "\x07", "\x1b[31m"]))),
            "stop",
            "control_characters",
        ),
        "non_ascii": lambda: (unicode_noise(good), "stop", None),
        "huge_question": lambda: (
            one(lambda q: q.update(question="very " * rng.randint(100, 20000) + "long?")),
            "stop",
            "bad_question_length",
        ),
        "huge_nesting": lambda: ("[" * rng.randint(10_000, 200_000), "length", "truncated"),
        "wrong_types": lambda: (
            one(lambda q: q.update(rng.choice([{"options": "A, B, C, D"}, {"objects": "3"}, {"answer": 1}]))),
            "stop",
            "wrong_type",
        ),
        "unknown_object": lambda: (
            one(lambda q: q.update(objects=[rng.choice([0, 99, -1, True])])),
            "stop",
            "unknown_object",
        ),
        "prose": lambda: (rng.choice(["I cannot see the image.", "", "null", "42", '"questions"']), "stop", None),
    }
    names = list(categories)
    for i in range(10_000):
        name = names[i % len(names)]
        yield (name, *categories[name]())


def test_parser_fuzz_never_crashes_and_counts_every_reject():
    scene = _scene("fuzz")
    cases: Counter = Counter()
    for category, text, finish_reason, reason in _mutations(random.Random(0)):
        drafts, rejects = parse_mcqs(text, scene, finish_reason)
        cases[category] += 1
        assert len(drafts) + sum(rejects.values()) >= 1, f"{category}: an output vanished without a count"
        assert all(len(d.distractors) == 3 and d.correct not in d.distractors for d in drafts), category
        if reason is not None:
            assert rejects[reason] >= 1, f"{category}: expected {reason}, got {dict(rejects)} for {text[:200]!r}"
    assert sum(cases.values()) == 10_000 and min(cases.values()) >= 700


def test_prompt_placeholders_braces_and_missing_values():
    from lgt.prompts import Prompt

    prompt = Prompt("p", 3, 'Reply {"answer": "$letter"} for $$5 about ${thing}s.')
    assert prompt.render(letter="A", thing="cat") == 'Reply {"answer": "A"} for $5 about cats.'
    with pytest.raises(ValueError, match=r"prompt p@3 needs a value for \$thing"):
        prompt.render(letter="A")
    with pytest.raises(ValueError, match="no prompt named 'nope'"):
        load_prompt("nope")
