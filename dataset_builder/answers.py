"""Answer letters: the one place that decides how options are lettered and where the correct one goes."""

from __future__ import annotations

import random

LETTERS = "ABCD"


class LetterBalancer:
    """Positions for the correct option, a shuffled block of A-D at a time.

    Every four questions in a stream use each letter once, so each split's letters stay within a question per
    stream of 25% however small the split is, while the shuffle keeps the letter unpredictable from the skill.
    """

    def __init__(self, seed: str):
        self._rng = random.Random(seed)
        self._block: list[int] = []

    def next_position(self) -> int:
        if not self._block:
            self._block = [0, 1, 2, 3]
            self._rng.shuffle(self._block)
        return self._block.pop()


def arrange_options(correct: str, distractors: list[str], position: int) -> list[str]:
    """The options with ``correct`` at ``position`` and the distractors, in their given order, around it."""
    options = list(distractors[: len(LETTERS) - 1])
    options.insert(position, correct)
    return options
