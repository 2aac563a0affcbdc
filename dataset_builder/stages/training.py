"""The training configs, in TRL's conversational shapes: SFT on correct traces, DPO pairs, GRPO prompts.

``sft_*``: the correct traces of each question, subsampled longer-first, corrected ones balanced against direct ones
(``synthesis/selection.py``); ``dpo_*``: a right trace over a wrong one of the same question (``synthesis/pairs.py``);
``rl``: every question as a prompt with its gold answer as ``solution``. Each row holds its image once (``images``)
and the provenance of what it was made from. The rows' shapes are ``formats.py``'s.
"""

from __future__ import annotations

import itertools

from datasets import Features, Image, List, Value

from .. import formats
from ..synthesis import pairs, selection
from .base import Context, Group, Stage
from .traces import KINDS_DOC


class SFTStage(Stage):
    def rows(self, group: Group, context: Context) -> list[dict]:
        """The image's questions' correct traces, subsampled longer-first, corrected ones balanced, as turns."""
        config, found = context.config, group.rows
        by_mcq = [list(traces) for _, traces in itertools.groupby(found, key=lambda row: row["mcq_id"])]
        seed = f"{config.seed}:{found[0]['image_id']}"
        kept = selection.sft_selection(by_mcq, config.sft_keep_ratio, config.sft_xo_ratio, seed)
        return [
            formats.sft_row({**trace, "image": group.image}, config.seed) for trace in found if trace["id"] in kept
        ]


class DPOStage(Stage):
    def rows(self, group: Group, context: Context) -> list[dict]:
        """Each question's preference pairs: a right trace over a wrong one of the same question."""
        config, rows = context.config, []
        for _, found in itertools.groupby(group.rows, key=lambda row: row["mcq_id"]):
            for chosen, rejected in pairs.preference_pairs(list(found), config.pairs_per_mcq):
                image = group.image
                rows.append(formats.dpo_row({**chosen, "image": image}, {**rejected, "image": image}, config.seed))
        return rows


class RLStage(Stage):
    def rows(self, group: Group, context: Context) -> list[dict]:
        return [formats.rl_row({**mcq, "image": group.image}, context.config.seed) for mcq in group.rows]


# TRL's conversational shape: turns whose content is a list of typed parts ({"type": "image"} stands for an image).
MESSAGES = List({"role": Value("string"), "content": List({"type": Value("string"), "text": Value("string")})})
_PROVENANCE = {
    "skill": Value("string"),
    "level": Value("int32"),
    "kind": Value("string"),
    "parents": List(Value("string")),
    "generator": Value("string"),
    "source": Value("string"),
    "license": Value("string"),
}
_ROW = {"id": Value("string"), "image_id": Value("string"), "images": List(Image())}


def _fields(columns: dict, kind: str, generator: str) -> dict:
    """A training config's card fields: its own columns, then what every row carries."""
    return {
        **columns,
        "skill": "The skill of the question the row is about.",
        "level": "1 for stage-1 questions, 2 or more for composed ones.",
        "kind": kind,
        "parents": "The question's `mcq_stage*` id first, then the `traces_stage*` ids the row was made from.",
        "generator": generator,
        "source": "The source of the image: `scenes`, `coco` or `jsonl`.",
        "license": "The licence of the image as the source states it.",
    }


_IMAGE_ONCE = 'The image, once: the user turn\'s `{"type": "image"}` part stands for it (TRL\'s VLM format).'
_PROMPT = "TRL conversational prompt: system and user turns, as in SFT."
_ROW_DOCS = {
    "image_id": "The image; joins to `scenes.image_id`.",
    "images": _IMAGE_ONCE,
}
SFT_FEATURES = Features({**_ROW, "messages": MESSAGES, **_PROVENANCE})
SFT_FIELDS = _fields(
    {
        "id": "The trace's id.",
        **_ROW_DOCS,
        "messages": "TRL conversational turns: system (think, then answer), user (image, question, lettered options, "
        "answer format), assistant (the trace).",
    },
    f"The trace's kind: {KINDS_DOC}; SFT keeps `O`, `O→O` and `X→O`.",
    "What wrote the trace (teacher + reasoner).",
)
DPO_FEATURES = Features({**_ROW, "prompt": MESSAGES, "chosen": MESSAGES, "rejected": MESSAGES, **_PROVENANCE})
DPO_FIELDS = _fields(
    {
        "id": "Stable hash of the two traces' ids.",
        **_ROW_DOCS,
        "prompt": _PROMPT,
        "chosen": "The preferred assistant turn: a trace ending in the correct answer.",
        "rejected": "The other assistant turn: a trace of the same question ending in a wrong one.",
    },
    "`CHOSEN > REJECTED` kinds: `X→O` over its own `X`, `O` over its own `O→X` (one side the other's prefix), `O` "
    "over `X` (two short chains of thought), `O→O` over `O→X` or `X→X` and `X→O` over `X→X` (two continued ones).",
    "What wrote the two traces.",
)
RL_FEATURES = Features(
    {
        **_ROW,
        "prompt": MESSAGES,
        "solution": Value("string"),
        "answer": Value("string"),
        "options": List(Value("string")),
        **_PROVENANCE,
    }
)
RL_FIELDS = {
    **_fields(
        {
            "id": "The question's id (`mcq_stage*.id`).",
            **_ROW_DOCS,
            "prompt": _PROMPT,
            "solution": "The gold answer written as the prompt asks for it (`(B)`, `B.` or the option's text).",
            "answer": "The gold letter.",
            "options": "The four options (what `lgt.rewards.accuracy_reward` parses answers against).",
        },
        "`prompt`.",
        "What wrote the question.",
    ),
    "parents": "The question's id.",
}


def _sft(name: str, description: str, parents: tuple[str, ...]) -> SFTStage:
    return SFTStage(
        name=name,
        description=description,
        parents=parents,
        family="sft",
        looks_up_scenes=True,
        trace_column="messages",
        features=SFT_FEATURES,
        fields=SFT_FIELDS,
    )


def _dpo(stage: int) -> DPOStage:
    return DPOStage(
        name=f"dpo_stage{stage}",
        description=f"TRL conversational preference pairs on stage-{stage} questions: a right trace over a wrong one.",
        parents=(f"traces_stage{stage}",),
        family="dpo",
        looks_up_scenes=True,
        trace_column="chosen",
        features=DPO_FEATURES,
        fields=DPO_FIELDS,
    )


SFT_STAGE1 = _sft(
    "sft_stage1", "TRL conversational SFT on stage-1 questions: correct long grounded traces.", ("traces_stage1",)
)
SFT_STAGE2 = _sft(
    "sft_stage2", "TRL conversational SFT on stage-2 questions: correct long grounded traces.", ("traces_stage2",)
)
SFT_STAGE2_MERGED = _sft(
    "sft_stage2_merged", "sft_stage1 and sft_stage2 together.", ("traces_stage1", "traces_stage2")
)
DPO_STAGE1 = _dpo(1)
DPO_STAGE2 = _dpo(2)
RL = RLStage(
    name="rl",
    description="GRPO prompts for every stage-1 and stage-2 question, with the gold answer as `solution`.",
    parents=("mcq_stage1", "mcq_stage2"),
    family="rl",
    features=RL_FEATURES,
    fields=RL_FIELDS,
)
