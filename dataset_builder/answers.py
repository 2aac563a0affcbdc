"""Answer letters: the one place that decides how options are lettered and where the correct one goes."""

from __future__ import annotations

import random

LETTERS = "ABCD"


class LetterBalancer:
    """Positions for the correct option, a shuffled block of A-D at a time, per stream (a skill).

    Every four questions of a stream use each letter once, so each skill's letters stay within a question per
    stream of 25% in every split however small, while the shuffle keeps the letter unpredictable.
    """

    def __init__(self, seed: str):
        self._seed = seed
        self._rngs: dict[str, random.Random] = {}
        self._blocks: dict[str, list[int]] = {}

    def next_position(self, stream: str = "") -> int:
        block = self._blocks.setdefault(stream, [])
        if not block:
            rng = self._rngs.setdefault(stream, random.Random(f"{self._seed}:{stream}"))
            block.extend(range(len(LETTERS)))
            rng.shuffle(block)
        return block.pop()


def arrange_options(correct: str, distractors: list[str], position: int) -> list[str]:
    """The options with ``correct`` at ``position`` and the distractors, in their given order, around it."""
    options = list(distractors[: len(LETTERS) - 1])
    options.insert(position, correct)
    return options


def letter_options(correct: str, distractors: list[str], ordered: bool, balancer: LetterBalancer, stream: str):
    """``(options, answer letter)``: numbers ``ordered`` ascending (the correct one's rank is its letter, kept
    balanced by the question's maker); anything else with the correct one at ``stream``'s next balanced letter."""
    if ordered:
        options = sorted([correct, *distractors], key=float)
        return options, LETTERS[options.index(correct)]
    position = balancer.next_position(stream)
    return arrange_options(correct, distractors, position), LETTERS[position]
