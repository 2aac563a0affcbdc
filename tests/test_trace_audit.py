"""The trace and pair audit: each line flags a tell planted in toy traces or pairs and passes clean ones; builds carry
it in their info and card, and a strict build fails on it in one line."""

import json
import random

import pytest
from lgt import trace_audit
from lgt.build import build
from lgt.cli import main
from lgt.sources.builtin import CATEGORIES

SPLITS = ("train", "train", "train", "validation", "test")
WORDS = "circle square star heart cross triangle hexagon diamond red blue green pink left right top bottom".split()
FRAMES = (
    "I find the {} at x {}–{}, y {}–{}.",
    "The {} sits at x {} to {}, y {} to {}.",
    "There is a {} spanning x {}–{} and y {}–{}.",
    "Next to it, the {} at x {}–{}, y {}–{}.",
)


def _sentence(rng: random.Random) -> str:
    return rng.choice(FRAMES).format(
        rng.choice(WORDS), *sorted(rng.sample(range(640), 2)), *sorted(rng.sample(range(480), 2))
    )


def _chain(rng: random.Random, sentences: int = 4) -> str:
    return " ".join(_sentence(rng) for _ in range(sentences))


def _shorts(tell: str, n: int = 600) -> list[tuple[str, bool, str]]:
    """Short CoTs, a third wrong; ``tell`` ends every wrong one."""
    rng = random.Random(0)
    items = []
    for i in range(n):
        wrong = rng.random() < 0.35
        items.append((_chain(rng) + (f" {tell}" if wrong and tell else ""), wrong, SPLITS[i % len(SPLITS)]))
    return items


def test_a_slip_written_in_the_words_is_flagged_and_one_in_what_was_seen_is_not():
    leaky = trace_audit.slip_reader({"count": _shorts("It looks like a circle to me.")})["count"]
    clean = trace_audit.slip_reader({"count": _shorts("")})["count"]
    assert leaky["judged"] and leaky["flagged"] and leaky["reader"] > 0.95
    assert clean["judged"] and not clean["flagged"] and clean["over_majority"] <= trace_audit.SLIP_MARGIN
    assert clean["majority"] == pytest.approx(1 - clean["wrong_share"]) and clean["short_cots"] == 600


def _pairs(kind: str, tell: str, n: int = 400, prefix: bool = False) -> list[dict]:
    rng = random.Random(1)
    pairs = []
    for i in range(n):
        chosen, rejected = _chain(rng), _chain(rng)
        if prefix:
            chosen = f"{rejected} Wait, {_chain(rng, 2)}"
        pairs.append(
            {
                "id": f"{kind}{i}",
                "kind": kind,
                "chosen": f"{chosen} {tell}".strip(),
                "rejected": rejected,
                "split": SPLITS[i % len(SPLITS)],
            }
        )
    return pairs


def test_a_pair_decided_by_a_stock_phrase_is_flagged_and_prefix_pairs_are_reported_apart():
    found = trace_audit.pair_reader(
        _pairs("O > X", "So my first pass was wrong.") + _pairs("O→O > X→X", "") + _pairs("X→O > X", "", prefix=True)
    )
    leaky, clean, prefix = found["O > X (independent)"], found["O→O > X→X (independent)"], found["X→O > X (prefix)"]
    assert leaky["judged"] and leaky["flagged"] and leaky["reader"] > 0.95
    assert clean["judged"] and not clean["flagged"] and clean["reader"] <= trace_audit.PAIR_LIMIT
    assert not prefix["independent"] and not prefix["judged"] and not prefix["flagged"]
    assert prefix["chosen_longer"] == 1.0 and 0.3 < clean["chosen_longer"] < 0.7


def test_an_answer_named_before_any_observation_is_caught():
    question, gold = "Where in the image is the circle?", "top left"
    early = trace_audit.names_answer_early
    assert early("It must be the top left. The circle is at x 10–80, y 20–90.", question, gold, "A")
    assert early("I would say (A). The circle is at x 10–80, y 20–90.", question, gold, "A")
    assert early("Surely top left, I can tell.", question, gold, "A")  # no observation at all
    assert not early("The circle is at x 10–80, y 20–90, so it is in the top left.", question, gold, "A")
    assert not early("I locate the circle. Its centre is at (45, 55): top left.", question, gold, "A")
    assert not early("It is red and round. So top left.", question, gold, "A")  # a colour the question lacks
    assert early("The circle is a circle. Top left it is.", "Where is the red circle?", gold, "A")
    assert not early("The circle is at x from 10 to 80, y from 20 to 90: the top left.", question, gold, "A")
    counted = "How many dogs are there?"  # a box edge at x = 2 is no count of 2
    assert not early("One dog is at x from 2 to 270, y from 2 to 80. Another at x 300–400. So 2.", counted, "2", "C")
    assert early("Surely 2. One dog is at x from 2 to 270, y from 2 to 80.", counted, "2", "C")
    rows = {
        "text": [
            "<think>Top left, clearly. The circle is at x 10–80, y 20–90.</think> <answer>(A)</answer>",
            "<think>The circle is at x 10–80, y 20–90: top left.</think> <answer>(A)</answer>",
        ],
        "question": [question] * 2,
        "options": [["top left", "top right", "bottom left", "bottom right"]] * 2,
        "answer": ["A", "A"],
        "kind": ["O", "O→O"],
    }
    found = trace_audit.early_answers([rows])
    assert found["named_early"] == 1 and found["by_kind"] == {"O": 1, "O→O": 0} and found["flagged"]
    steps = {
        "steps": [
            [{"question": "Which object is left of the star?"}, {"question": "What colour is the heart?"}],
            [{"question": "Where is the heart relative to the star?"}, {"question": "Which is the heart?"}],
        ],
        "options": [["red", "blue", "green", "pink"], ["heart", "star", "cross", "circle"]],
        "answer": ["A", "A"],
    }
    assert trace_audit.steps_naming_gold([steps]) == {"steps": 4, "naming_gold": 2, "share": 0.5, "flagged": True}


def test_an_object_name_holding_the_answer_is_not_the_answer_named():
    """A count of 1 about "category 1", "dog" when the image holds a hot dog: the name is no answer."""
    names = trace_audit.NameIndex({"category 1", "category 12", "dog", "Hot dog"})
    assert names.words == {"category", "1", "12", "dog", "hot"}
    question, gold = "How many category 1s are there?", "1"
    thought = "I scan for every category 1. I find the category 1 at x 10–80, y 20–90, the only one. So 1."
    within = names.holding(gold)
    assert trace_audit.names_answer_early(thought, question, gold, "A")  # "category 1" read as the count
    assert not trace_audit.names_answer_early(thought, question, gold, "A", within)
    assert trace_audit.names_answer_early("Surely 1. I find the category 1 at x 10–80.", question, gold, "A", within)
    assert names.holding("dog").search("two hot dogs") and not names.holding("dog").search("a dog")
    assert names.holding("category 1") is None and names.holding("cat") is None  # whole words only
    rows = {
        "text": [f"<think>{thought}</think> <answer>(A)</answer>"],
        "question": [question],
        "options": [["1", "2", "3", "4"]],
        "answer": ["A"],
        "kind": ["O"],
    }
    assert trace_audit.early_answers([rows])["named_early"] == 1
    assert trace_audit.early_answers([rows], names)["named_early"] == 0


def test_a_build_without_mcq_configs_masks_its_sources_object_names(tmp_path):
    """The MCQ configs' grounding names the objects only when they are built too: a traces-only build takes the names
    from its source, or its sentence templates (and phrase tells) would tell apart the objects its traces name."""
    from lgt.sources.builtin import CATEGORIES

    output = str(tmp_path / "lgt")
    info = build(source="scenes", num_images=40, output=output, configs=("traces_stage1",))
    found = info[trace_audit.BUILD_INFO_KEY]["configs"]["traces_stage1"]
    masked = trace_audit.audit_build(output, ("traces_stage1",), (), (), CATEGORIES)["configs"]["traces_stage1"]
    unmasked = trace_audit.audit_build(output, ("traces_stage1",), (), ())["configs"]["traces_stage1"]
    assert found["diversity"] == masked["diversity"]
    assert masked["diversity"]["templates"] < unmasked["diversity"]["templates"]


def test_a_phrase_only_one_outcome_uses_is_flagged():
    rng = random.Random(2)
    leaky = {
        "count": {
            "X→O": [(_chain(rng) + " So my first pass was wrong.", 0) for _ in range(120)],
            "X→X": [(_chain(rng) + " So nothing changes here.", 0) for _ in range(120)],
        }
    }
    clean = {
        "count": {kind: [(_chain(rng) + " The first pass gave it.", 0) for _ in range(120)] for kind in ("X→O", "X→X")}
    }
    found = trace_audit.exclusive_phrases(leaky)
    assert found["X→O"]["flagged"] and found["X→X"]["flagged"] and found["X→O"]["share"] == 1.0
    assert any("my first pass" in example for example in found["X→O"]["examples"])
    assert not any(result["flagged"] for result in trace_audit.exclusive_phrases(clean).values())


def test_diversity_counts_sentence_templates_and_words_after_the_cue():
    rng = random.Random(3)
    n = trace_audit.MIN_TEMPLATE_SENTENCES  # two sentences each: enough to judge
    monotone = ["I find the circle at x 10–20, y 30–40. So the answer is 2."] * n
    varied = [
        " ".join(f"{rng.choice(WORDS)} {rng.choice(WORDS)} {rng.choice(WORDS)} at x {i}." for i in range(4))
        for _ in range(n)
    ]
    options = [["1", "2", "3", "4"]] * n
    long_after_cue = [120] * trace_audit.MIN_JUDGED  # words after the cue
    flat = trace_audit.diversity(monotone, options, {"circle"}, long_after_cue)
    assert flat["templates"] == 2 and flat["top_share"] == 1.0 and flat["flagged"]
    rich = trace_audit.diversity(varied, options, set(), long_after_cue)
    assert rich["top_share"] <= trace_audit.TEMPLATE_SHARE_LIMIT and not rich["flagged"]
    assert rich["words_after_cue_median"] == 120
    assert trace_audit.diversity(varied, options, set(), [3] * trace_audit.MIN_JUDGED)["flagged"]
    few = trace_audit.diversity(monotone[:100], options, {"circle"}, [3] * 10)
    assert few["top_share"] == 1.0 and not few["flagged"]  # too few sentences and continuations to judge
    long = [" ".join(["I find the circle at x 10–20, y 30–40."] * 40)] * 52  # 2,080 sentences of 52 traces
    scarce = trace_audit.diversity(long, options, {"circle"}, long_after_cue)
    assert scarce["sentences"] > trace_audit.MIN_TEMPLATE_SENTENCES and not scarce["judged"]
    assert not scarce["flagged"]  # a few dozen traces are not judged, however many sentences they hold
    template = trace_audit.sentence_template("The red circle at x 10–20 is the circle.", {"circle"})
    assert template == "the _ at x # is the _"
    aside = ["The circle is low (y grows downwards in the image.) So the answer is 2."] * 3
    assert trace_audit.diversity(aside, options, {"circle"}, [])["sentences"] == 6  # the stop inside ends one


def test_the_audit_samples_rows_whatever_pattern_they_come_in(monkeypatch):
    """A traces config's rows alternate (a short chain of thought, then its continuation): every k-th row, for an
    even k, read only one of the two kinds."""
    monkeypatch.setattr(trace_audit, "MAX_ITEMS", 10)
    texts = ["I count 3." if i % 2 == 0 else "Wait, once more. I count 3 again." for i in range(400)]
    found = trace_audit.diversity(texts, [["1", "2", "3", "4"]] * len(texts), set(), [])
    assert 10 < found["sentences"] < 20  # 10 rows of one sentence and of two, both read
    assert trace_audit.diversity(texts, [["1", "2", "3", "4"]] * len(texts), set(), []) == found  # the same rows


def test_the_build_carries_the_audit_into_its_info_and_card(builtin_build, monkeypatch):
    output, info = builtin_build
    report = info[trace_audit.BUILD_INFO_KEY]
    monkeypatch.setattr(trace_audit, "BATCH_ROWS", 7)  # rows read a few at a time, only the sampled ones kept
    traces, pairs, mcqs = (tuple(f"{family}_stage{n}" for n in (1, 2)) for family in ("traces", "dpo", "mcq"))
    again = trace_audit.audit_build(str(output), traces, pairs, mcqs, CATEGORIES)
    assert {**again, "seconds": None} == {**report, "seconds": None}
    assert json.loads((output / "lgt_build.json").read_text())[trace_audit.BUILD_INFO_KEY] == report
    assert set(report["configs"]) == {"mcq_stage2", "traces_stage1", "traces_stage2", "dpo_stage1", "dpo_stage2"}
    assert {"slips", "early_answers", "phrases", "diversity"} <= set(report["configs"]["traces_stage1"])
    card = (output / "README.md").read_text()
    assert "## Trace and pair audit" in card and "**(c) Answer before evidence.**" in card
    for template, result in report["configs"]["traces_stage1"]["slips"].items():
        assert f"| {template} | {result['short_cots']:,} |" in card
    assert report["configs"]["traces_stage1"]["early_answers"]["named_early"] == 0
    assert report["configs"]["mcq_stage2"]["steps"]["share"] <= trace_audit.STEP_NAMING_LIMIT


def test_a_flagged_line_fails_a_strict_build_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(trace_audit, "MIN_WORDS_AFTER_CUE", 10_000)  # no continuation is that long: (e) flags
    args = ["build", "--num-images", "30", "--configs", "traces_stage1", "--output", str(tmp_path / "x")]
    assert main(args) == 0 and "TRACE AUDIT" in capsys.readouterr().err
    assert main([*args, "--strict"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error[-1].startswith("lgt: error: the trace audit finds") and "diversity" in error[-1]


@pytest.mark.slow
def test_the_default_build_meets_every_target(tmp_path):
    """The default settings: (a) every judged template within five points of its majority rate, (b) no judged pair
    of independent chains of thought read above 60%, (c) no trace naming its answer before an observation and few
    steps naming the gold option, (d) no phrase pool, (e) diverse sentences and continuations that work."""
    configs = ("mcq_stage1", "mcq_stage2", "traces_stage1", "traces_stage2", "dpo_stage1", "dpo_stage2")
    info = build(source="scenes", output=str(tmp_path / "lgt"), configs=configs, num_proc=2)
    report = info[trace_audit.BUILD_INFO_KEY]
    assert not report["flagged"], report["flagged"]
    slips = report["configs"]["traces_stage1"]["slips"]
    # The built-in scenes ask every stage-1 template but "attribute" (three size words leave no three distractors).
    assert set(slips) == {"count", "relation", "size", "distance", "existence", "absence", "colour", "location"}
    assert all(result["judged"] for result in slips.values())


def test_the_real_coco_samples_traces_meet_every_target(coco_build):
    """COCO's images hold many objects of few kinds and no colours, so over half of their stage-1 traces answer
    existence questions: with three to seven ways to say each of their steps, the 50 most common sentence templates
    made 37.9% of the COCO sample's stage-1 sentences (bar 35%), and the set counts of stage 2 35.6%."""
    report = coco_build[1][trace_audit.BUILD_INFO_KEY]
    assert not report["flagged"], report["flagged"]
    for config in ("traces_stage1", "traces_stage2"):
        diversity = report["configs"][config]["diversity"]
        assert diversity["judged"] and diversity["top_share"] <= trace_audit.TEMPLATE_SHARE_LIMIT, (config, diversity)
