"""SFT selection: correct final answers only, longer traces preferred, X→O balanced against O ∪ O→O."""

import math
import random
from collections import Counter

import pytest
from lgt.synthesis.selection import (
    balance_across_mcqs,
    draw_order,
    quotas,
    select_sft,
    sft_selection,
)

KINDS = ("O", "O→O", "X→O", "X", "O→X", "X→X")
CORRECT = {"O": True, "O→O": True, "X→O": True, "X": False, "O→X": False, "X→X": False}


def trace(mcq: str, index: int, kind: str, length: int = 50, correct: bool | None = None) -> dict:
    return {
        "id": f"{mcq}-{index}",
        "mcq_id": mcq,
        "kind": kind,
        "correct": CORRECT[kind] if correct is None else correct,
        "text": "x" * length,
        "short": f"short {index}",
    }


def random_mcq(rng: random.Random, mcq: str) -> list[dict]:
    count = rng.randint(0, 12)
    return [trace(mcq, i, rng.choice(KINDS), rng.randint(10, 400)) for i in range(count)]


@pytest.mark.parametrize(
    "kinds, expected",
    [
        (["O", "X", "O→X", "X→X"], {"O"}),
        (["X", "O→X", "X→X"], set()),
        (["O→O", "X→O", "X"], {"O→O", "X→O"}),
        (["X→O", "X→X"], {"X→O"}),
        ([], set()),
    ],
)
def test_only_correct_final_answers_are_kept(kinds, expected):
    traces = [trace("q", i, kind) for i, kind in enumerate(kinds)]
    kept = select_sft(traces, keep_ratio=1.0, xo_ratio=1.0, seed="s")
    assert {t["kind"] for t in kept} == expected
    assert all(t["correct"] for t in kept)


def test_a_row_whose_kind_and_grade_disagree_is_not_kept():
    traces = [trace("q", 0, "O", correct=False), trace("q", 1, "X", correct=True), trace("q", 2, "O→O")]
    assert [t["id"] for t in select_sft(traces, 1.0, 1.0, "s")] == ["q-2"]


@pytest.mark.parametrize("count, keep_ratio", [(1, 0.1), (3, 0.5), (4, 0.5), (10, 0.25), (10, 1.0), (7, 0.01)])
def test_keeps_ceil_of_the_ratio_and_at_least_one(count, keep_ratio):
    traces = [trace("q", i, "O", 10 + i) for i in range(count)]
    kept = select_sft(traces, keep_ratio, 1.0, "s")
    assert len(kept) == max(1, math.ceil(keep_ratio * count))
    assert len({t["id"] for t in kept}) == len(kept)


def test_longer_traces_are_preferred_with_weight_half_per_rank():
    traces = [trace("q", i, "O", length) for i, length in enumerate([30, 90, 10, 70, 50])]
    firsts = Counter(select_sft(traces, 0.2, 1.0, f"seed-{n}")[0]["text"].__len__() for n in range(2000))
    by_rank = [firsts[length] / 2000 for length in (90, 70, 50, 30, 10)]
    expected = [0.5**rank / sum(0.5**r for r in range(5)) for rank in range(5)]
    assert by_rank == sorted(by_rank, reverse=True)
    for seen, want in zip(by_rank, expected, strict=True):
        assert abs(seen - want) < 0.04, (by_rank, expected)


def test_the_draw_is_deterministic_and_independent_of_row_order():
    rng = random.Random(1)
    traces = [trace("q", i, rng.choice(KINDS[:3]), rng.randint(5, 300)) for i in range(12)]
    once = select_sft(traces, 0.5, 1.0, "seed")
    shuffled = traces[:]
    rng.shuffle(shuffled)
    assert [t["id"] for t in select_sft(shuffled, 0.5, 1.0, "seed")] == [t["id"] for t in once]
    others = {tuple(t["id"] for t in select_sft(traces, 0.5, 1.0, f"other-{n}")) for n in range(20)}
    assert len(others) > 1, "the seed changes the draw"


def test_draw_order_is_a_permutation_even_with_many_traces():
    traces = [trace("q", i, "O", i) for i in range(1500)]  # 2 ** 1500 overflows a float weight; logs do not
    order = draw_order(traces, "s")
    assert sorted(t["id"] for t in order) == sorted(t["id"] for t in traces)


@pytest.mark.parametrize(
    "k, direct, corrected, ratio, expected",
    [
        (4, 10, 10, 1.0, (2, 2)),
        (5, 1, 10, 1.0, (1, 1)),
        (3, 2, 1, 1.0, (2, 1)),
        (6, 3, 3, 0.5, (3, 1)),
        (4, 4, 4, 0.0, (4, 0)),
        (3, 0, 5, 1.0, (0, 3)),
        (6, 6, 6, 2.0, (2, 4)),
    ],
)
def test_quotas(k, direct, corrected, ratio, expected):
    assert quotas(k, direct, corrected, ratio) == expected


@pytest.mark.parametrize("xo_ratio", [0.0, 0.5, 1.0, 2.0])
def test_x_to_o_is_balanced_within_every_mcq_that_has_a_correct_first_answer(xo_ratio):
    rng = random.Random(7)
    for n in range(300):
        kept = select_sft(random_mcq(rng, f"q{n}"), rng.choice([0.3, 0.5, 1.0]), xo_ratio, "s")
        counts = Counter(t["kind"] for t in kept)
        direct = counts["O"] + counts["O→O"]
        if direct:
            assert counts["X→O"] <= math.floor(xo_ratio * direct), counts


@pytest.mark.parametrize("xo_ratio", [0.0, 0.5, 1.0, 3.0])
def test_the_config_is_balanced_across_mcqs_whatever_order_they_stream_in(xo_ratio):
    rng = random.Random(3)
    mcqs = [random_mcq(rng, f"q{n}") for n in range(200)]
    mcqs += [[trace(f"hard{n}", i, "X→O", 100 + i) for i in range(3)] for n in range(40)]  # never right at first
    kept = sft_selection(mcqs, 0.5, xo_ratio, "seed")
    rows = {t["id"]: t for traces in mcqs for t in traces}
    counts = Counter(rows[i]["kind"] for i in kept)
    assert counts["X→O"] <= math.floor(xo_ratio * (counts["O"] + counts["O→O"]))
    assert all(rows[i]["correct"] for i in kept)
    rng.shuffle(mcqs)
    assert sft_selection(mcqs, 0.5, xo_ratio, "seed") == kept


def test_the_cross_mcq_budget_goes_first_to_one_trace_per_hard_mcq():
    easy = [[trace(f"easy{n}", 0, "O")] for n in range(4)]
    hard = [[trace(f"hard{n}", i, "X→O", 100 - i) for i in range(3)] for n in range(6)]
    selected = [select_sft(traces, 1.0, 1.0, "s") for traces in easy + hard]
    kept = balance_across_mcqs(selected, xo_ratio=1.0, seed="s")
    hard_kept = Counter(i.split("-")[0] for i in kept if i.startswith("hard"))
    assert sum(hard_kept.values()) == 4 and set(hard_kept.values()) == {1}
    assert all(f"easy{n}-0" in kept for n in range(4))


@pytest.mark.parametrize("keep_ratio, xo_ratio", [(0.0, 1.0), (1.5, 1.0), (0.5, -1.0)])
def test_bad_ratios_are_refused(keep_ratio, xo_ratio):
    with pytest.raises(ValueError):
        select_sft([trace("q", 0, "O")], keep_ratio, xo_ratio, "s")
