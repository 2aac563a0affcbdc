"""GRPO rewards for lettered multiple-choice questions, as pure functions in TRL's reward signature.

TRL calls a reward with the batch's ``completions`` (conversational: ``[{"role": "assistant", "content": text}]``;
standard: the text) and every other dataset column as a keyword list, one value per completion. The ``rl`` config
carries ``answer`` (the gold letter) and ``options``, so accuracy is decided by ``lgt.answers.parse_answer``, the
same parser that grades the builder's traces and scores the eval harness: a completion earns the reward here exactly
when it would be graded correct there.
"""

from __future__ import annotations

import re

from .answers import parse_answer

# One reasoning block, then one answer block, and nothing around them but whitespace.
_FORMAT = re.compile(r"\s*<think>(.*)</think>\s*<answer>(.*)</answer>\s*", re.DOTALL)
_TAG = re.compile(r"</?(?:think|answer)>")


def completion_text(completion) -> str:
    """The text of one completion, conversational (a list holding the assistant turn) or standard (a string)."""
    if isinstance(completion, str):
        return completion
    return "".join(message["content"] for message in completion if message["role"] == "assistant")


def accuracy_reward(completions: list, answer: list[str], options: list[list[str]], **kwargs) -> list[float]:
    """1.0 when the completion's last ``<answer>`` names the gold letter, else 0.0 (no tag, no option, or several)."""
    return [
        float(parse_answer(completion_text(completion), choices) == gold)
        for completion, gold, choices in zip(completions, answer, options, strict=True)
    ]


def format_reward(completions: list, **kwargs) -> list[float]:
    """1.0 when the completion is exactly ``<think>…</think>`` then ``<answer>…</answer>``, both non-empty."""
    return [float(_well_formed(completion_text(completion))) for completion in completions]


def _well_formed(text: str) -> bool:
    match = _FORMAT.fullmatch(text)
    return match is not None and all(part.strip() and not _TAG.search(part) for part in match.groups())
