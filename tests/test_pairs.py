"""DPO pairs of one MCQ, like compared with like: X→O over its own X, O over its own O→X, O over X, O→O over O→X and
X→X, X→O over X→X; never a short chain of thought against another sample's continued one, never a wrong over a
right."""

import random

import pytest
from lgt.synthesis.pairs import preference_pairs

KINDS = ("O", "O→O", "X→O", "X", "O→X", "X→X")
CORRECT = {"O": True, "O→O": True, "X→O": True, "X": False, "O→X": False, "X→X": False}


def trace(name: str, kind: str, short: str | None = None, text: str | None = None, correct: bool | None = None):
    """A trace of one MCQ; its short CoT is its own unless ``short`` names one it shares with another."""
    return {
        "id": name,
        "kind": kind,
        "correct": CORRECT[kind] if correct is None else correct,
        "short": short or f"short of {name}",
        "text": text if text is not None else f"text of {name}",
    }


def ids(pairs) -> list[tuple[str, str]]:
    return [(chosen["id"], rejected["id"]) for chosen, rejected in pairs]


@pytest.mark.parametrize(
    "traces, expected",
    [
        # O over X and over its own O→X; never over another sample's O→X or over X→X (a continued trace)
        (
            [trace("a", "O", "s1"), trace("b", "X"), trace("c", "O→X", "s1"), trace("d", "X→X"), trace("e", "O→X")],
            [("a", "c"), ("a", "b")],
        ),
        # X→O over its own X (same short) first, then over another sample's X→X; not over another short's X
        (
            [trace("a", "X→O", "s1"), trace("b", "X", "s1"), trace("c", "X", "s2"), trace("d", "X→X", "s2")],
            [("a", "b"), ("a", "d")],
        ),
        # O→O over another sample's O→X and X→X; never over a short X; X→O is never rejected
        (
            [trace("a", "O→O"), trace("b", "X"), trace("c", "X→O"), trace("d", "O→X"), trace("e", "X→X")],
            [("a", "d"), ("a", "e"), ("c", "e")],
        ),
        # nothing wrong, nothing to prefer
        ([trace("a", "O"), trace("b", "O→O"), trace("c", "X→O")], []),
        # every rule at once, in the order of the rules
        (
            [
                trace("a", "O", "s0"),
                trace("b", "X→O", "s1"),
                trace("c", "X", "s1"),
                trace("d", "X→X", "s2"),
                trace("e", "O→X", "s0"),
                trace("f", "O→O", "s0"),
            ],
            [("b", "c"), ("a", "e"), ("a", "c"), ("f", "d"), ("b", "d")],
        ),
    ],
)
def test_rules(traces, expected):
    assert ids(preference_pairs(traces)) == expected


def test_identical_texts_make_no_pair_and_repeated_text_pairs_make_one():
    traces = [
        trace("a", "O", text="same"),
        trace("b", "X", text="same"),  # equal to the chosen text: no pair
        trace("c", "X", text="wrong"),
        trace("d", "X", text="wrong"),  # a second sample with the same text: one pair
        trace("e", "O", text="right"),
    ]
    assert ids(preference_pairs(traces)) == [("a", "c"), ("e", "b"), ("e", "c")]


def test_a_mislabelled_row_never_puts_a_wrong_answer_over_a_right_one():
    traces = [trace("a", "O", correct=False), trace("b", "X", correct=True), trace("c", "X"), trace("d", "O")]
    assert ids(preference_pairs(traces)) == [("d", "c")]


def random_traces(rng: random.Random, count: int) -> list[dict]:
    shorts = [f"s{i}" for i in range(4)]
    texts = [f"t{i}" for i in range(8)]
    return [trace(f"id{i}", rng.choice(KINDS), rng.choice(shorts), rng.choice(texts)) for i in range(count)]


ALLOWED = {("X→O", "X"), ("O", "O→X"), ("O", "X"), ("O→O", "O→X"), ("O→O", "X→X"), ("X→O", "X→X")}


def test_properties_on_random_mcqs():
    rng = random.Random(0)
    for _ in range(300):
        traces = random_traces(rng, rng.randint(0, 14))
        pairs = preference_pairs(traces)
        texts = [(c["text"], r["text"]) for c, r in pairs]
        assert len(set(texts)) == len(texts)
        for chosen, rejected in pairs:
            assert chosen["correct"] and not rejected["correct"]
            assert (chosen["kind"], rejected["kind"]) in ALLOWED
            assert chosen["text"] != rejected["text"]
            prefix = (chosen["kind"], rejected["kind"]) in (("X→O", "X"), ("O", "O→X"))
            assert (chosen["short"] == rejected["short"]) == prefix  # a trace and its own prefix, or two samples
            continued = ["→" in chosen["kind"], "→" in rejected["kind"]]
            assert prefix or continued[0] == continued[1], "a short CoT against another sample's continued one"
        shuffled = traces[:]
        rng.shuffle(shuffled)
        assert ids(preference_pairs(shuffled)) == ids(pairs), "order does not depend on the rows' order"


@pytest.mark.parametrize("cap", [0, 1, 3, 10])
def test_a_cap_keeps_own_x_pairs_first_and_a_subset_in_the_same_order(cap):
    traces = [trace(f"o{i}", "O", text=f"o{i}") for i in range(5)]
    traces += [trace(f"x{i}", "X", short=f"s{i}", text=f"x{i}") for i in range(5)]
    traces += [trace("xo", "X→O", short="s2", text="xo")]
    full = ids(preference_pairs(traces))
    capped = ids(preference_pairs(traces, max_pairs=cap))
    assert len(capped) == min(cap, len(full))
    assert capped == [pair for pair in full if pair in capped]
    if cap:
        assert ("xo", "x2") in capped
    if cap >= 3:
        assert len({chosen for chosen, _ in capped}) > 1, "a cap spreads over chosen traces"
    assert ids(preference_pairs(list(reversed(traces)), max_pairs=cap)) == capped
