"""Answer letters: the one place that decides how options are lettered, where the correct one goes, and how an
answer is read back (the builder's grading, the GRPO reward and the eval harness all call ``parse_answer``)."""

from __future__ import annotations

import random
import re
import string
import unicodedata

LETTERS = "ABCD"  # every MCQ lgt builds has four options
OPTION_LETTERS = string.ascii_uppercase  # any MCQ's, in order: benchmarks have 2 (MMVP) to 10 (MMLU-Pro) options


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
            rng = self._rngs.get(stream)
            if rng is None:  # seeded once per stream: seeding from a string hashes it, dearer than the shuffle
                rng = self._rngs[stream] = random.Random(f"{self._seed}:{stream}")
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
EXTRACTIONS = ("strict", "leading-letter")  # how an answer is read: the answer tag only, or a leading letter too
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_LETTER_ONLY = re.compile(r"^\(?([A-Z])\)?[.:)]?$")
_LETTER_THEN_TEXT = re.compile(r"^\(?([A-Z])[).:]\s+(.+)$", re.DOTALL)
# "B", "(B) 0.21", "B: neither", "[C].", "D\n..." but not "A cat" (an article): a letter closed by a bracket,
# punctuation, a line break or the end
_LEADING_LETTER = re.compile(r"^[(\[]?([A-Z])(?:[)\].:,\n]|$)")
_EDGE_PUNCTUATION = " \t\n.,;:!?\"'`*"


def option_letters(options: list[str]) -> str:
    """The letters of ``options``, A onwards."""
    if len(options) > len(OPTION_LETTERS):
        raise ValueError(f"{len(options)} options: at most {len(OPTION_LETTERS)} can be lettered A-Z")
    return OPTION_LETTERS[: len(options)]


def format_options(options: list[str], style: str) -> str:
    """The options one per line, lettered ``(A) text`` (``paren``) or ``A. text`` (``dot``)."""
    if style == "paren":
        return "\n".join(f"({letter}) {text}" for letter, text in zip(option_letters(options), options, strict=True))
    if style == "dot":
        return "\n".join(f"{letter}. {text}" for letter, text in zip(option_letters(options), options, strict=True))
    raise ValueError(f"option style must be one of {', '.join(OPTION_STYLES)}, not {style!r}")


def answer_text(letter: str, options: list[str], answer_format: str) -> str:
    """What goes inside ``<answer>`` for ``letter`` in the requested format."""
    if answer_format == "paren":
        return f"({letter})"
    if answer_format == "dot":
        return f"{letter}."
    if answer_format == "text":
        return options[OPTION_LETTERS.index(letter)]
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
    return " ".join(unicodedata.normalize("NFKC", text).strip(_EDGE_PUNCTUATION).lower().split())


def parse_answer(completion: str, options: list[str], extract: str = "strict") -> str | None:
    """The option letter given in the last ``<answer>...</answer>`` of ``completion``, or None.

    Accepted: ``(B)``, ``B``, ``B.``, ``B)``, ``(B) text`` / ``B. text`` (the text, if it is some option's, must be
    B's), or the text of exactly one option (case, spacing, edge punctuation and full-width forms ignored). None
    when there is no answer tag, or it names no option (``(F)`` of four options, a lower-case ``b``, which reads as
    text) or more than one (``A, C``, ``A. B``). ``extract="leading-letter"`` also reads an answer without a tag
    from its first letter (``B``, ``(B) 0.21``, ``B: text``, after any ``</think>``), the extraction MMStar's
    authors score with; a tag, when there is one, always decides. This is the only parser of answers: the builder
    grades traces, the GRPO reward scores completions and the eval harness scores models with it, so all agree.
    """
    if extract not in EXTRACTIONS:
        raise ValueError(f"extract must be one of {', '.join(EXTRACTIONS)}, not {extract!r}")
    letters = option_letters(options)
    found = _ANSWER_TAG.findall(completion)
    if not found:
        if extract == "strict":
            return None
        match = _LEADING_LETTER.match(completion.rpartition("</think>")[2].strip())
        return match.group(1) if match and match.group(1) in letters else None
    given = unicodedata.normalize("NFKC", found[-1]).strip()
    texts = [_normalised(option) for option in options]
    if match := _LETTER_ONLY.match(given):
        return match.group(1) if match.group(1) in letters else None
    if (match := _LETTER_THEN_TEXT.match(given)) and match.group(1) in letters:
        rest = match.group(2).strip()
        named = _normalised(rest)
        if _LETTER_ONLY.match(rest) and named not in texts:
            return None  # "A. B": two letters
        if named in texts and texts.index(named) != letters.index(match.group(1)) and texts.count(named) == 1:
            return None  # "(B) <the text of C>": contradicts itself
        return match.group(1)
    named = _normalised(given)
    return letters[texts.index(named)] if named and texts.count(named) == 1 else None
