"""The consumer's shapes: every SFT, DPO and RL row is made here, in TRL's conversational format.

TRL's VLM trainers read ``messages`` (SFT), ``prompt``/``chosen``/``rejected`` (DPO) or ``prompt`` (GRPO) as lists
of chat turns whose ``content`` is a list of typed parts, plus ``images``: one ``{"type": "image"}`` part per image,
in order. The published LGT release has the same shape, so a recipe trains on either without code changes.

How a question is shown varies per row, as in the predecessor, so a model does not learn one surface form: the
options are lettered ``(A) text`` or ``A. text`` and the answer is asked for as ``(X)``, ``X.`` or the option's text.
The style is seeded by the MCQ's id, so an MCQ's traces, pairs and RL prompt all show it the same way; which letter
is correct is the MCQ's own, balanced per skill when stage 1 lettered it.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from .answers import ANSWER_FORMATS, OPTION_STYLES, answer_instruction, answer_text, format_options

SYSTEM_PROMPT = (
    "You are a careful visual reasoner. Look at the image and think the question through step by step inside "
    "<think> and </think>, checking what you see, then give the final answer inside <answer> and </answer>."
)


@dataclass(frozen=True)
class RowStyle:
    """How a row letters its options and asks for the answer."""

    option_style: str
    answer_format: str


def row_style(seed: int, mcq_id: str) -> RowStyle:
    """The style of every row about the MCQ ``mcq_id``, from the build's seed."""
    rng = random.Random(f"{seed}:{mcq_id}:style")
    return RowStyle(rng.choice(OPTION_STYLES), rng.choice(ANSWER_FORMATS))


def user_text(question: str, options: list[str], style: RowStyle) -> str:
    """The user turn's text: the question, the lettered options and how to answer."""
    return f"{question}\n{format_options(options, style.option_style)}\n{answer_instruction(style.answer_format)}"


def prompt_messages(question: str, options: list[str], style: RowStyle, images: int = 1) -> list[dict]:
    """The system turn and the user turn (the image, then the question with its options).

    Every row lgt builds has one image; ``images`` is for the benchmarks the eval harness asks in this same shape
    (BLINK shows up to four, MMLU-Pro none).
    """
    return [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
        {
            "role": "user",
            "content": [
                *({"type": "image", "text": None} for _ in range(images)),
                {"type": "text", "text": user_text(question, options, style)},
            ],
        },
    ]


def assistant_message(text: str) -> dict:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def trace_text(think: str, letter: str, options: list[str], style: RowStyle) -> str:
    """The assistant's whole turn: the reasoning, then ``letter`` written in the row's answer format."""
    return f"<think>{think}</think> <answer>{answer_text(letter, options, style.answer_format)}</answer>"


def _provenance(row: dict) -> dict:
    return {name: row[name] for name in ("image_id", "skill", "level", "source", "license")}


def sft_row(trace: dict, seed: int) -> dict:
    """A ``traces_stage*`` row as one SFT conversation: system, user (image + question), assistant (the trace)."""
    style = row_style(seed, trace["mcq_id"])
    return {
        "id": trace["id"],
        "messages": [*prompt_messages(trace["question"], trace["options"], style), assistant_message(trace["text"])],
        "images": [trace["image"]],
        "kind": trace["kind"],
        "parents": [trace["mcq_id"], trace["id"]],
        "generator": trace["generator"],
        **_provenance(trace),
    }


def dpo_row(chosen: dict, rejected: dict, seed: int) -> dict:
    """Two traces of one MCQ as a preference pair: the shared prompt, the chosen and the rejected assistant turn."""
    style = row_style(seed, chosen["mcq_id"])
    pair_id = hashlib.sha1(f"{chosen['id']}>{rejected['id']}".encode()).hexdigest()[:16]
    return {
        "id": pair_id,
        "prompt": prompt_messages(chosen["question"], chosen["options"], style),
        "chosen": [assistant_message(chosen["text"])],
        "rejected": [assistant_message(rejected["text"])],
        "images": [chosen["image"]],
        "kind": f"{chosen['kind']} > {rejected['kind']}",
        "parents": [chosen["mcq_id"], chosen["id"], rejected["id"]],
        "generator": chosen["generator"]
        if chosen["generator"] == rejected["generator"]
        else f"{chosen['generator']} > {rejected['generator']}",
        **_provenance(chosen),
    }


def rl_row(mcq: dict, seed: int) -> dict:
    """An MCQ as a GRPO prompt; ``solution`` is the gold answer as the prompt asks for it, ``answer`` its letter."""
    style = row_style(seed, mcq["id"])
    return {
        "id": mcq["id"],
        "prompt": prompt_messages(mcq["question"], mcq["options"], style),
        "images": [mcq["image"]],
        "solution": answer_text(mcq["answer"], mcq["options"], style.answer_format),
        "answer": mcq["answer"],
        "options": mcq["options"],
        "kind": "prompt",
        "parents": [mcq["id"]],
        "generator": mcq["generator"],
        **_provenance(mcq),
    }
