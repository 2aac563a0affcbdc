"""The one answer parser and the TRL row shapes every SFT/DPO/RL config is made of."""

import pytest
from lgt.answers import ANSWER_FORMATS, OPTION_STYLES, answer_text, parse_answer
from lgt.formats import RowStyle, dpo_row, prompt_messages, rl_row, row_style, sft_row, trace_text

OPTIONS = ["red", "blue", "green", "a dog"]


@pytest.mark.parametrize(
    "completion, letter",
    [
        ("<think>x</think> <answer>(B)</answer>", "B"),
        ("<answer>B.</answer>", "B"),
        ("<answer>B</answer>", "B"),
        ("<answer> C) </answer>", "C"),
        ("<answer>(B) blue</answer>", "B"),
        ("<answer>(B) green</answer>", None),  # contradicts itself
        ("<answer>Green.</answer>", "C"),
        ("<answer>A dog</answer>", "D"),  # an option's text, not the letter A
        ("<answer>the dog</answer>", None),  # near an option is not an option
        ("<answer>E</answer>", None),
        ("<answer></answer>", None),
        ("The answer is B", None),  # no tag: nothing to grade
        ("<answer>A</answer> then <answer>D</answer>", "D"),  # the last answer counts
        ("<answer>blue or green</answer>", None),
    ],
)
def test_parse_answer(completion, letter):
    assert parse_answer(completion, OPTIONS) == letter


def test_answer_text_round_trips_through_the_parser_in_every_format():
    for answer_format in ANSWER_FORMATS:
        for letter in "ABCD":
            completion = f"<answer>{answer_text(letter, OPTIONS, answer_format)}</answer>"
            assert parse_answer(completion, OPTIONS) == letter, (answer_format, letter)


def test_row_style_is_seeded_per_mcq_and_varies():
    styles = {row_style(0, f"mcq{i}") for i in range(200)}
    assert row_style(0, "mcq1") == row_style(0, "mcq1")
    assert {s.option_style for s in styles} == set(OPTION_STYLES)
    assert {s.answer_format for s in styles} == set(ANSWER_FORMATS)


def _trace(kind, letter):
    style = row_style(0, "m1")
    return {
        "id": f"t-{kind}",
        "mcq_id": "m1",
        "image_id": "img",
        "image": {"bytes": b"png", "path": "img.png"},
        "question": "What colour is the car?",
        "options": OPTIONS,
        "skill": "attribute",
        "level": 1,
        "kind": kind,
        "text": trace_text("I look at the car.", letter, OPTIONS, style),
        "generator": "scripted",
        "source": "scenes",
        "license": "cc0",
    }


def test_rows_are_trl_conversational_and_keep_their_provenance():
    sft = sft_row(_trace("O", "B"), seed=0)
    assert [m["role"] for m in sft["messages"]] == ["system", "user", "assistant"]
    assert [part["type"] for part in sft["messages"][1]["content"]] == ["image", "text"]
    assert len(sft["images"]) == 1 and sft["parents"] == ["m1", "t-O"]
    assert parse_answer(sft["messages"][2]["content"][0]["text"], OPTIONS) == "B"
    pair = dpo_row(_trace("O", "B"), _trace("X", "C"), seed=0)
    assert pair["prompt"] == sft["messages"][:2] and pair["kind"] == "O > X"
    assert parse_answer(pair["rejected"][0]["content"][0]["text"], OPTIONS) == "C"
    mcq = {**_trace("O", "B"), "id": "m1", "answer": "D"}
    rl = rl_row(mcq, seed=0)
    assert rl["prompt"] == prompt_messages(mcq["question"], OPTIONS, row_style(0, "m1"))
    assert parse_answer(f"<answer>{rl['solution']}</answer>", OPTIONS) == "D" == rl["answer"]


def test_trace_text_writes_the_requested_answer_format():
    assert trace_text("t", "C", OPTIONS, RowStyle("paren", "text")).endswith("<answer>green</answer>")
    assert trace_text("t", "C", OPTIONS, RowStyle("dot", "dot")).endswith("<answer>C.</answer>")
