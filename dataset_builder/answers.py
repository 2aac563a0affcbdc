"""Answer letters: the one place that decides how options are lettered and where the correct one goes."""

from __future__ import annotations

import random
import re

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


# ---- how a prompt shows the options and asks for the answer, and the one parser of answers ----

OPTION_STYLES = ("paren", "dot")  # "(A) text" / "A. text"
ANSWER_FORMATS = ("paren", "dot", "text")  # what goes in <answer>: "(B)", "B." or the option's text
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_LETTER_ONLY = re.compile(r"^\(?([A-Z])\)?[.:)]?$")
_LETTER_THEN_TEXT = re.compile(r"^\(?([A-Z])[).:]\s+(.+)$", re.DOTALL)
_EDGE_PUNCTUATION = " \t\n.,;:!?\"'`*"


def format_options(options: list[str], style: str) -> str:
    """The options one per line, lettered ``(A) text`` (``paren``) or ``A. text`` (``dot``)."""
    if style == "paren":
        return "\n".join(f"({letter}) {text}" for letter, text in zip(LETTERS, options, strict=False))
    if style == "dot":
        return "\n".join(f"{letter}. {text}" for letter, text in zip(LETTERS, options, strict=False))
    raise ValueError(f"option style must be one of {', '.join(OPTION_STYLES)}, not {style!r}")


def answer_text(letter: str, options: list[str], answer_format: str) -> str:
    """What goes inside ``<answer>`` for ``letter`` in the requested format."""
    if answer_format == "paren":
        return f"({letter})"
    if answer_format == "dot":
        return f"{letter}."
    if answer_format == "text":
        return options[LETTERS.index(letter)]
    raise ValueError(f"answer format must be one of {', '.join(ANSWER_FORMATS)}, not {answer_format!r}")


def answer_instruction(answer_format: str) -> str:
    """The sentence that tells a model how to write its answer."""
    if answer_format == "paren":
        return "Give the letter of the correct option in parentheses, like <answer>(X)</answer>."
    if answer_format == "dot":
        return "Give the letter of the correct option followed by a period, like <answer>X.</answer>."
    if answer_format == "text":
        return "Give the text of the correct option exactly as written, like <answer>option text</answer>."
    raise ValueError(f"answer format must be one of {', '.join(ANSWER_FORMATS)}, not {answer_format!r}")


def _normalised(text: str) -> str:
    return " ".join(text.strip(_EDGE_PUNCTUATION).lower().split())


def parse_answer(completion: str, options: list[str]) -> str | None:
    """The option letter given in the last ``<answer>...</answer>`` of ``completion``, or None.

    Accepted: ``(B)``, ``B``, ``B.``, ``B)``, ``(B) text`` / ``B. text`` (the text, if it is some option's, must be
    B's), or the text of exactly one option (case, spacing and edge punctuation ignored). None when there is no
    answer tag, or it names no option or more than one. This is the only parser of answers: the builder grades
    traces, the GRPO reward scores completions and the eval harness scores models with it, so all three agree.
    """
    found = _ANSWER_TAG.findall(completion)
    if not found:
        return None
    given = found[-1].strip()
    letters = LETTERS[: len(options)]
    texts = [_normalised(option) for option in options]
    if match := _LETTER_ONLY.match(given):
        return match.group(1) if match.group(1) in letters else None
    if (match := _LETTER_THEN_TEXT.match(given)) and match.group(1) in letters:
        named = _normalised(match.group(2))
        if named in texts and texts.index(named) != letters.index(match.group(1)) and texts.count(named) == 1:
            return None  # "(B) <the text of C>": contradicts itself
        return match.group(1)
    named = _normalised(given)
    return letters[texts.index(named)] if named and texts.count(named) == 1 else None
