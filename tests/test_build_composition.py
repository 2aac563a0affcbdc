"""`lgt build` composes mcq_stage2 with the writer when stage 1 was written by a model, with no network.

The fixture teacher's stage-1 answers (test_llm_mcq) make mcq_stage1; its composite answers and its own verdicts
(no other verifier is named, so the writer checks itself) are hand-written here and stored in the cache under the
exact requests the builder sends: the same scenes and stage-1 rows, read back from a first build.
"""

import contextlib
import io
import itertools
import json
import re
from collections import Counter

import pyarrow.parquet as pq
from lgt.answers import LETTERS
from lgt.build import build
from lgt.cli import main
from lgt.generation import Engine, Response
from lgt.prompts import load_prompt
from lgt.scene import Scene
from lgt.synthesis import stage2
from test_build_models import FIXTURE_TEACHER, STAGE1, answered  # noqa: F401 (a fixture)
from test_llm_mcq import KEPT


def _c(question, options, answer, skill, parents, steps, verdict):
    """A composite as the writer answers it; ``parents`` name stage-1 questions (numbered at storing time) or are
    numbers as written; ``verdict``: what the verifier says of it, or the reason the parser rejects it."""
    item = {"question": question, "options": options, "answer": answer, "skill": skill, "parents": parents}
    return {**item, "steps": [{"question": q, "answer": a} for q, a in steps], "verdict": verdict}


PLANTS, TV_CHAIR = "How many potted plants are there?", "Where is the television relative to the chair?"
CLOSEST, VASE = "Which object is closest to the woman?", "In which part of the image is the vase?"
CABINET = "What stands on the low cabinet?"

CHAIN = _c(
    "How many potted plants stand between the television and the object closest to the woman?",
    ["1", "2", "3", "4"],
    "B",
    "chain",
    [CLOSEST, PLANTS],
    [(CLOSEST, "the clock"), ("How many potted plants stand between the television and the clock?", "2")],
    "agree",
)
CONJUNCTION = _c(
    "On which side of the chair is the television, and how many potted plants are there?",
    ["left, two", "left, one", "right, two", "right, one"],
    "A",
    "conjunction",
    [TV_CHAIR, PLANTS],
    [(TV_CHAIR, "to the left"), (PLANTS, "2")],
    "disagree",
)
SET_COUNT = _c(
    "How many potted plants stand on the shelf behind what sits on the low cabinet?",
    ["1", "2", "3", "4"],
    "B",
    "set_count",
    [CABINET, PLANTS],
    [(CABINET, "a television"), (PLANTS, "2")],
    "agree",
)
COMPARISON = _c(
    "Is the object closest to the woman in the same part of the image as the vase?",
    ["no: top right", "yes: bottom right", "no: top left", "yes: top right"],
    "A",
    "comparison",
    [KEPT["malformed-then-good"][0], VASE],
    [("Which object is closest to the woman?", "the clock"), (VASE, "bottom right")],
    "malformed",
)
# image id -> the writer's answer per attempt: a list of composites, or a text that is no JSON
COMPOSED = {
    "good": [
        [
            CHAIN,
            CONJUNCTION,
            {**CHAIN, "question": "What is near the chair?", "parents": [1, 9], "verdict": "unknown_parent"},
            {**CHAIN, "question": "What is by the plants?", "parents": [PLANTS, PLANTS], "verdict": "too_few_parents"},
        ]
    ],
    "subtly-wrong": [
        "I cannot compose these questions.",
        [SET_COUNT, {**SET_COUNT, "question": CABINET, "verdict": "duplicate_question"}],
    ],
    "malformed-then-good": [[COMPARISON]],
}
VERDICTS = ("agree", "disagree", "malformed")


def _written(attempts) -> list[dict]:
    """Every composite written in ``attempts`` (a text that is no JSON holds none)."""
    return [c for answer in attempts if not isinstance(answer, str) for c in answer]


def _checked(attempts) -> list[dict]:
    """The composites of ``attempts`` the parser keeps, which the verifier is asked about."""
    return [c for c in _written(attempts) if c["verdict"] in VERDICTS]


def _answer_text(attempt, rows: list[dict]) -> str:
    if isinstance(attempt, str):
        return attempt
    numbers = {row["question"]: n for n, row in enumerate(rows, 1)}
    items = [
        {**{k: v for k, v in c.items() if k != "verdict"}, "parents": [numbers.get(p, p) for p in c["parents"]]}
        for c in attempt
    ]
    return json.dumps({"questions": items}, indent=2)


def _stage1_items(output) -> dict[str, tuple[Scene, list[dict]]]:
    """The (scene, stage-1 rows) per image the builder hands to the writer: the scenes config's scene, the image's
    stage-1 rows in their order."""
    scenes = {row["image_id"]: Scene.from_row(row) for row in _rows(output, "scenes")}
    groups = itertools.groupby(_rows(output, "mcq_stage1"), key=lambda row: row["image_id"])
    return {image_id: (scenes[image_id], list(rows)) for image_id, rows in groups}


def _rows(output, config: str) -> list[dict]:
    return [row for path in sorted(output.glob(f"{config}/*.parquet")) for row in pq.read_table(path).to_pylist()]


def _store_compositions(cache, items: dict[str, tuple[Scene, list[dict]]]) -> None:
    """The writer's composite answers and its verdicts on the valid ones, under the builder's requests."""
    engine = Engine(FIXTURE_TEACHER, cache=cache, cache_only=True, progress=False)
    composer, prompt = stage2.ComposeWriter(), load_prompt("stage2_verify")
    verdicts = {c["question"]: c["verdict"] for attempts in COMPOSED.values() for c in _checked(attempts)}
    stored = []
    for image_id, attempts in COMPOSED.items():
        scene, rows = items[image_id]
        for attempt, answer in enumerate(attempts):
            request = composer.request(scene, rows, attempt)
            text = _answer_text(answer, rows)
            response = Response((text,), ("stop",), 1, 1)
            stored.append((engine.key(request), engine.spec.name, request.template, response))
            for composite in stage2.parse_composites(text, scene, rows)[0]:
                check = stage2.verify_request(scene, composite, prompt)
                shown = check.messages[0].joined_text
                letter = re.search(rf"^([A-D])\. {re.escape(composite.correct)}$", shown, re.M).group(1)
                said = {
                    "agree": json.dumps({"answer": letter}),
                    "disagree": json.dumps({"answer": LETTERS[(LETTERS.index(letter) + 1) % 4]}),
                    "malformed": "The answer is the first one.",
                }[verdicts[composite.question]]
                response = Response((said,), ("stop",), 1, 1)
                stored.append((engine.key(check), engine.spec.name, check.template, response))
    engine.cache.put_many(stored)
    engine.close()


def _expected_rejects() -> Counter:
    found = Counter(malformed_json=sum(isinstance(a, str) for attempts in COMPOSED.values() for a in attempts))
    found.update(c["verdict"] for attempts in COMPOSED.values() for c in _written(attempts) if c["verdict"] != "agree")
    renamed = {"disagree": "verifier_disagrees", "malformed": "verifier_malformed"}
    return Counter({renamed.get(reason, reason): n for reason, n in found.items()})


def test_the_writer_composes_stage2_and_only_what_it_answers_the_same_way_is_kept(answered, tmp_path):  # noqa: F811
    source, cache = answered
    settings = dict(source=source, writer=FIXTURE_TEACHER, generation_cache=str(cache), cache_only=True, max_pixels=0)
    first = tmp_path / "stage1"
    build(output=str(first), configs=STAGE1, **settings)
    items = _stage1_items(first)
    assert set(items) == set(COMPOSED), "each image with model-written questions is composed"
    _store_compositions(cache, items)

    output = tmp_path / "lgt"
    info = build(output=str(output), configs=("mcq_stage2",), **settings)
    rows = _rows(output, "mcq_stage2")
    kept = {c["question"]: c for attempts in COMPOSED.values() for c in _checked(attempts) if c["verdict"] == "agree"}
    assert sorted(row["question"] for row in rows) == sorted(kept)
    assert {row["generator"] for row in rows} == {"stage2/llm@1:fixture-teacher+verify@1:fixture-teacher"}
    for row in rows:
        written = kept[row["question"]]
        scene, parents = items[row["image_id"]]
        by_question = {parent["question"]: parent for parent in parents}
        assert written in _written(COMPOSED[row["image_id"]])
        assert row["parents"] == [by_question[q]["id"] for q in written["parents"]]
        assert row["level"] == len(row["steps"]) == len(written["steps"]) >= 2 and row["skill"] == written["skill"]
        assert row["options"][LETTERS.index(row["answer"])] == written["options"][LETTERS.index(written["answer"])]
        grounded = {g["object_id"] for q in written["parents"] for g in by_question[q]["grounding"]}
        assert {g["object_id"] for g in row["grounding"]} == grounded

    composition = info["composition"]
    assert composition["rejects"] == dict(_expected_rejects())
    stats = composition["models"]["writer"]
    attempts = sum(map(len, COMPOSED.values()))
    checks = sum(len(_checked(attempts)) for attempts in COMPOSED.values())
    assert stats["misses"] == 0 and stats["requests"] == stats["hits"] == attempts + checks
    assert composition["images"] == len(COMPOSED) and composition["composites"] == len(kept)
    card = (output / "README.md").read_text()
    assert "## Composition by a model" in card and "`verifier_disagrees` 1" in card

    printed = io.StringIO()
    arguments = ["build", "--source", source, "--output", str(tmp_path / "dry"), "--writer", FIXTURE_TEACHER]
    arguments += ["--max-pixels", "keep"]  # the sizes the cached answers were written for
    with contextlib.redirect_stdout(printed):
        code = main([*arguments, "--cache", str(cache), "--cache-only", "--configs", "mcq_stage2", "--dry-run"])
    lines = {line.split()[1]: line.split()[2:5] for line in printed.getvalue().splitlines() if "mcq_stage2 " in line}
    assert code == 0 and not (tmp_path / "dry").exists()
    first_round = str(len(COMPOSED))
    assert lines["writer"] == [first_round, first_round, "0"], "the writer's first round, all cached"
    valid_first = sum(len(_checked(attempts[:1])) for attempts in COMPOSED.values())
    assert lines["verifier"] == [str(valid_first), str(valid_first), "0"]
