"""Trace statistics for the card: kinds, lengths, marker behaviours (cue excluded), and a strict LLM judge."""

import re
import sys

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lgt.generation import Engine, Response
from lgt.prompts import load_prompt
from lgt.trace_stats import (
    BEHAVIOURS,
    FOLDS,
    JUDGE_PROMPT,
    MARKERS,
    behaviours,
    judge_request,
    judge_statistics,
    parse_judgement,
    reasoning,
    row_text,
    statistics_section,
    trace_statistics,
)


def row(text: str, kind: str = "O", cue: str = "") -> dict:
    return {"text": f"<think>{text}</think> <answer>(B)</answer>", "kind": kind, "cue": cue}


@pytest.mark.parametrize(
    "thought, expected",
    [
        ("The cup is left of the plate. Let me check the boxes again: yes.", {"verify"}),
        ("Two dogs. Wait, the second box is a cat, so one dog.", {"backtrack"}),
        ("Actually that's wrong; I miscounted.", {"backtrack"}),
        ("First, find the largest car. Next, read its colour.", {"subgoal"}),
        ("Step 1: count. Then I double-check the count and verify it.", {"subgoal", "verify"}),
        ("The first object is a red car on the left.", set()),  # "first" as an adjective sets no subgoal
        ("The answer is B because the bus is blue.", set()),
        ("Awaiting nothing; the factual answer is B.", set()),  # whole words only: not "wait", not "actual"
        ("I\u2019ll reconsider: that\u2019s wrong.", {"backtrack"}),  # typographic apostrophes
        (
            "Let me count the cats one by one. Counting again from the top: 3. So my first pass was wrong.",
            {"subgoal", "verify", "backtrack"},
        ),
        ("Looking again, I think I misjudged something.", {"verify", "backtrack"}),
    ],
)
def test_markers(thought, expected):
    assert {name for name, shown in behaviours(thought).items() if shown} == expected


def test_every_marker_fires_on_its_own_and_only_for_its_behaviour():
    for behaviour, markers in MARKERS.items():
        for marker in markers:
            shown = behaviours(f"so {marker} here")
            assert shown[behaviour], marker


# The definition the markers are counted by: one case-insensitive, whole-word regular expression per behaviour.
DEFINITION = {
    behaviour: re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, markers)) + r")(?!\w)", re.IGNORECASE)
    for behaviour, markers in MARKERS.items()
}


def by_definition(thought: str) -> dict[str, bool]:
    thought = thought.replace("\u2019", "'")
    return {behaviour: pattern.search(thought) is not None for behaviour, pattern in DEFINITION.items()}


def test_the_folds_are_where_lower_and_ignorecase_disagree():
    """Over every code point: the characters for which ``str.lower`` is not ``re.IGNORECASE`` on a marker character
    (or changes length or word-ness) are exactly ``FOLDS``' keys, each folded to what IGNORECASE matches it to."""
    alphabet = sorted({character for markers in MARKERS.values() for marker in markers for character in marker})
    every = "".join(chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c < 0xE000)
    word = re.compile(r"\w")
    disagree = set()
    for letter in alphabet:
        matched = {found.group() for found in re.finditer(re.escape(letter), every, re.IGNORECASE)}
        disagree |= {character for character in matched if character.lower() != letter}
    for character in every:
        lower = character.lower()
        if len(lower) != 1 or bool(word.match(lower)) != bool(word.match(character)):
            disagree.add(character)
        elif lower in alphabet and not re.fullmatch(re.escape(lower), character, re.IGNORECASE):
            disagree.add(character)
    assert disagree == set(FOLDS) - {"\u2019"}
    assert all(re.fullmatch(folded, character, re.IGNORECASE) for character, folded in FOLDS.items() if folded != "'")


def spellings(piece: str) -> list[str]:
    odd = [piece.replace("i", "\u0130"), piece.replace("i", "\u0131"), piece.replace("s", "\u017f")]
    return [piece, piece.upper(), piece.title(), *odd, piece.replace("k", "\u212a")]


TRICKY = ["\u0130", "\u0131", "\u017f", "\u212a", "\u2019", "_", "1", "é", "→", ",", "-", " ", "\n", "X"]


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.lists(st.sampled_from([m for ms in MARKERS.values() for m in ms] + TRICKY), max_size=12), st.data())
def test_markers_are_counted_as_the_definition_counts_them(pieces, data):
    """Markers glued to letters, digits, underscores and each other, in any case, with letters that fold oddly."""
    text = "".join(data.draw(st.sampled_from(spellings(piece))) for piece in pieces)
    assert behaviours(text) == by_definition(text)


def test_a_builds_traces_are_counted_as_the_definition_counts_them(builtin_build):
    output, _ = builtin_build
    table = pq.read_table(next(output.glob("traces_stage1/train-*.parquet")), columns=["text", "cue"])
    thoughts = [reasoning(text, cue or "") for text, cue in zip(*table.to_pydict().values(), strict=True)]
    assert len(thoughts) > 1000 and any(any(by_definition(thought).values()) for thought in thoughts)
    assert [behaviours(thought) for thought in thoughts] == [by_definition(thought) for thought in thoughts]


def test_the_cue_and_the_answer_are_not_reasoning():
    text = "<think>The bus is blue.Wait, I agree it is blue.</think> <answer>Actually (B)</answer>"
    assert reasoning(text, cue="Wait,") == "The bus is blue. I agree it is blue."
    stats = trace_statistics([{"text": text, "kind": "O→O", "cue": "Wait,"}])
    assert stats["behaviours"]["backtrack"] == 0.0
    assert trace_statistics([{"text": text, "kind": "O→O", "cue": ""}])["behaviours"]["backtrack"] == 1.0


def test_statistics_of_a_config():
    rows = [
        row("Let me check: one cat.", "O"),
        row("One cat. Wait, two cats, I was wrong.", "X→O", cue="Wait,"),
        row("First, find the cat. Next, count.", "O→O", cue="Hmm,"),
        row("three words here", "X"),
    ]
    stats = trace_statistics(rows)
    assert stats["traces"] == 4
    assert list(stats["kinds"]) == ["O", "O→O", "X→O", "X"]
    lengths = sorted(len(r["text"]) for r in rows)
    assert stats["chars"] == {
        "min": lengths[0],
        "median": (lengths[1] + lengths[2]) / 2,
        "p90": lengths[3],
        "max": lengths[3],
    }
    assert stats["words"]["min"] == len(rows[3]["text"].split())
    assert stats["behaviours"] == {"verify": 0.25, "backtrack": 0.25, "subgoal": 0.25}
    assert stats["behaviours_by_kind"]["X→O"]["backtrack"] == 1.0
    assert stats["behaviours_by_kind"]["X"] == {"verify": 0.0, "backtrack": 0.0, "subgoal": 0.0}
    assert trace_statistics([])["traces"] == 0


def test_sft_and_dpo_rows_are_read_from_their_messages():
    def messages(text):
        return [
            {"role": "user", "content": [{"type": "text", "text": "q"}]},
            {"role": "assistant", "content": [{"type": "text", "text": text}]},
        ]

    sft = {"messages": messages("<think>Let me verify.</think> <answer>A</answer>"), "kind": "O"}
    assert row_text(sft) == "<think>Let me verify.</think> <answer>A</answer>"
    assert trace_statistics([sft])["behaviours"]["verify"] == 1.0
    dpo = {"chosen": messages("<think>Wait, no.</think>")[1:], "rejected": messages("<think>ok</think>")[1:]}
    assert trace_statistics([dpo], field="chosen")["behaviours"]["backtrack"] == 1.0
    assert trace_statistics([dpo], field="rejected")["behaviours"]["backtrack"] == 0.0


def test_the_card_section_has_a_table_per_measure():
    stats = {
        "sft_stage1": trace_statistics([row("Let me check.", "O"), row("Wait, no.", "X→O")]),
        "traces_stage1": trace_statistics([row("x", "X"), row("First, look.", "O→X")]),
    }
    section = statistics_section(stats)
    tables = [line for line in section.splitlines() if re.fullmatch(r"\|(---\|)+", line)]
    assert len(tables) == 3
    assert "| config | traces | O | X→O | X | O→X |" in section  # kinds no config has get no column
    assert "| sft_stage1 | 2 | 1 | 1 | 0 | 0 |" in section
    assert "| traces_stage1 | 0.0% | 0.0% | 50.0% |" in section
    assert "markers v1" in section
    stats["sft_stage1"]["judge"] = {
        "judge": "m@1",
        "prompt": "trace_judge@1",
        "judged": 2,
        "accepted": 1,
        "rejects": {"not_json": 1},
        "behaviours": {b: 1.0 for b in BEHAVIOURS},
    }
    judged = statistics_section(stats)
    assert "| sft_stage1 | `m@1` | `trace_judge@1` | 2 | 1 | 100.0% | 100.0% | 100.0% |" in judged
    assert statistics_section({}) == ""


@pytest.mark.parametrize(
    "reply, labels, reason",
    [
        (
            '{"verify": true, "backtrack": false, "subgoal": true}',
            {"verify": True, "backtrack": False, "subgoal": True},
            None,
        ),
        (
            '```json\n{"verify": false, "backtrack": true, "subgoal": false}\n```',
            {"verify": False, "backtrack": True, "subgoal": False},
            None,
        ),
        ('  {"subgoal": false, "verify": false, "backtrack": false}\n', dict.fromkeys(BEHAVIOURS, False), None),
        ('{"verify": "true", "backtrack": false, "subgoal": false}', None, "not_boolean"),
        ('{"verify": 1, "backtrack": 0, "subgoal": 0}', None, "not_boolean"),
        ('{"verify": true, "backtrack": false}', None, "wrong_keys"),
        ('{"verify": true, "backtrack": false, "subgoal": true, "notes": "x"}', None, "wrong_keys"),
        ("[true, false, true]", None, "wrong_keys"),
        ('Sure! {"verify": true, "backtrack": false, "subgoal": true}', None, "not_json"),
        ('{"verify": true, "backtrack": false, "subgoal": true} {"verify": true}', None, "not_json"),
        ("", None, "not_json"),
    ],
)
def test_judge_replies_are_parsed_strictly(reply, labels, reason):
    assert parse_judgement(reply) == (labels, reason)


def test_the_judge_request_carries_the_reasoning_without_the_cue_and_the_prompt_version():
    prompt = load_prompt("trace_judge")
    request = judge_request(row("One dog.Hmm, one dog indeed.", "O→O", cue="Hmm,"), prompt)
    text = request.messages[0].joined_text
    assert "One dog. one dog indeed." in text and "Hmm," not in text and "<answer>" not in text
    assert request.template == "trace_judge@1" and request.sampling.temperature == 0.0
    assert set(request.schema["required"]) == set(BEHAVIOURS)


def test_the_judge_runs_through_the_engine_on_the_tiny_model(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tiny_models import build_tiny_llm

    model = build_tiny_llm(tmp_path / "tiny-qwen2")
    rows = [row("Let me check the count.", "O"), row("Wait, two.", "X→O", cue="Wait,"), row("First, look.", "X")]
    engine = Engine(f"transformers:{model}", cache=tmp_path / "cache.sqlite", progress=False)
    judged = judge_statistics(rows, engine)
    assert judged["judged"] == 3 and judged["prompt"] == "trace_judge@1"
    assert judged["accepted"] + sum(judged["rejects"].values()) == 3
    assert judged["judge"].startswith("tiny-qwen2")
    again = Engine(f"transformers:{model}", cache=tmp_path / "cache.sqlite", progress=False, cache_only=True)
    assert judge_statistics(rows, again) == judged, "a second judging is read from the cache"
    assert again.stats.hits == 3


def test_a_judge_whose_every_reply_fails_shows_n_a_not_zero(tmp_path):
    """Finding 8: a judge whose replies all failed to parse was shown as 0.0% of traces verifying, backtracking and
    setting subgoals, as if it had looked and found none."""
    rows = [row("Let me check the left box.", "O"), row("Wait, the right one.", "X→O")]
    engine = Engine("openai:fixture-judge", cache=tmp_path / "c.sqlite", cache_only=True, progress=False)
    prompt = load_prompt(JUDGE_PROMPT)
    engine.cache.put_many(
        (
            engine.key(judge_request(row, prompt)),
            "fixture-judge",
            prompt.id,
            Response(("I cannot say.",), ("stop",), 9, 3),
        )
        for row in rows
    )
    judged = judge_statistics(rows, engine)
    assert (judged["accepted"], judged["rejects"]) == (0, {"not_json": 2})
    assert judged["behaviours"] == {behaviour: None for behaviour in BEHAVIOURS}
    section = statistics_section({"traces_stage1": {**trace_statistics(rows), "judge": judged}})
    assert "| traces_stage1 | `fixture-judge` | `trace_judge@1` | 2 | 2 | n/a | n/a | n/a |" in section
