"""``traces_stage1`` and ``traces_stage2``: every reasoning trace of each MCQ, right and wrong, with its kind and cue.

Written by the scripted teacher and reasoner from the boxes (offline, the default), or by a VLM teacher from the
image and a reasoning LLM from the caption and boxes (``--teacher``/``--reasoner``), the whole stage in one engine
call per step. Traces carry no image (several per MCQ): the SFT and DPO rows made from them look it up by image id.
"""

from __future__ import annotations

import hashlib

from datasets import Features, List, Value

from .. import formats
from ..synthesis import scripted, traces
from .base import Context, Group, Stage


def _settings(config) -> dict:
    return dict(
        n=config.traces_per_mcq,
        seed=config.seed,
        temperature=config.trace_temperature,
        top_p=config.trace_top_p,
        max_tokens=config.short_max_tokens,
        expansion_max_tokens=config.expansion_max_tokens,
    )


def _items(groups: dict[str, list[Group]]) -> dict[str, list[tuple]]:
    """Per slice, ``(mcq row, scene, image bytes or path)`` for every MCQ: what the teacher and the reasoner read."""
    return {
        name: [(row, g.scene, g.image["bytes"] or g.image["path"]) for g in found for row in g.rows]
        for name, found in groups.items()
    }


class TraceStage(Stage):
    def calls_models(self, config) -> bool:
        return bool(config.teacher)

    def shard_state(self, config, shard: str) -> scripted.SlipBalance:
        """The answers the scripted teacher's right and wrong chains of thought have stated along the shard."""
        return scripted.SlipBalance()

    def rows(self, group: Group, context: Context) -> list[dict]:
        """Every trace of each of the image's MCQs: the scripted teacher's, or the models' (``generated``)."""
        config, rows = context.config, []
        for mcq in group.rows:
            if context.generated is not None:
                found = context.generated[mcq["id"]]
            else:
                found = scripted.scripted_traces(mcq, group.scene, config.traces_per_mcq, config.seed, context.state)
            style = formats.row_style(config.seed, mcq["id"])
            for trace in found:
                text = formats.trace_text(trace.think, trace.predicted, mcq["options"], style)
                rows.append(
                    {
                        "id": hashlib.sha1(f"{mcq['id']}\x1f{trace.kind}\x1f{text}".encode()).hexdigest()[:16],
                        "mcq_id": mcq["id"],
                        **{
                            name: mcq[name] for name in ("image_id", "question", "options", "answer", "skill", "level")
                        },
                        "kind": trace.kind,
                        "short": trace.short,
                        "cue": trace.cue,
                        "expansion": trace.expansion,
                        "text": text,
                        "predicted": trace.predicted,
                        "correct": trace.correct,
                        "teacher": trace.teacher,
                        "reasoner": trace.reasoner,
                        "generator": f"{trace.teacher} + {trace.reasoner}" if trace.reasoner else trace.teacher,
                        "source": mcq["source"],
                        "license": mcq["license"],
                    }
                )
        return rows

    def generate(self, groups: dict[str, list[Group]], engines: dict, config) -> tuple[dict, dict]:
        """The teacher's short CoTs and the reasoner's continuations for every MCQ: ``{slice: traces by mcq id}``."""
        items = _items(groups)
        everything = [item for found in items.values() for item in found]
        result = traces.model_traces(everything, engines["teacher"], engines["reasoner"], **_settings(config))
        report = {
            "teacher": engines["teacher"].model_id,
            "reasoner": engines["reasoner"].model_id if engines["reasoner"] else None,
            "cache_only": config.cache_only,
            "mcqs": len(everything),
            "traces": sum(map(len, result.traces.values())),
            "rejects": dict(result.rejects.most_common()),
            "models": {role: engine.stats.as_dict() for role, engine in engines.items() if engine},
        }
        by_slice = {
            name: {row["id"]: result.traces.get(row["id"], []) for row, _, _ in found} for name, found in items.items()
        }
        return by_slice, report

    def bill(self, groups: dict[str, list[Group]], engines: dict, config) -> dict:
        everything = [item for found in _items(groups).values() for item in found]
        return traces.bill_traces(everything, engines["teacher"], engines["reasoner"], **_settings(config))


FEATURES = Features(
    {
        "id": Value("string"),
        "mcq_id": Value("string"),
        "image_id": Value("string"),
        "question": Value("string"),
        "options": List(Value("string")),
        "answer": Value("string"),
        "skill": Value("string"),
        "level": Value("int32"),
        "kind": Value("string"),
        "short": Value("string"),
        "cue": Value("string"),
        "expansion": Value("string"),
        "text": Value("string"),
        "predicted": Value("string"),
        "correct": Value("bool"),
        "teacher": Value("string"),
        "reasoner": Value("string"),
        "generator": Value("string"),
        "source": Value("string"),
        "license": Value("string"),
    }
)
KINDS_DOC = (
    "`O` a correct short chain of thought, `X` a wrong one; `O→O`, `X→O`, `O→X`, `X→X` the same continued by the "
    "reasoner after a cue, by whether the short one and the continued one end in the correct answer"
)
FIELDS = {
    "id": "Stable content hash of the question's id, the kind and the text.",
    "mcq_id": "The question (`mcq_stage*.id`).",
    "image_id": "The image; joins to `scenes.image_id` (traces carry no image themselves).",
    "question": "The question, as in the MCQ config.",
    "options": "Its four options.",
    "answer": "The letter of the correct option.",
    "skill": "The question's skill.",
    "level": "The question's level (1, or the hops of a composed question).",
    "kind": f"The trace's kind: {KINDS_DOC}.",
    "short": "The teacher's short chain of thought (its reasoning, as written).",
    "cue": "The cue the continuation starts with (`Wait,` ...); empty when the short one stands alone.",
    "expansion": "The reasoner's continuation after the cue; empty when not continued.",
    "text": "The whole trace as an assistant writes it, in the answer format its prompt asks for.",
    "predicted": "The letter the trace ends with, by the one answer parser (empty when it gives none).",
    "correct": "Whether `predicted` is the correct letter.",
    "teacher": "What wrote the short chain of thought (`scripted/...` offline, else model, revision and prompt).",
    "reasoner": "What continued it (empty when not continued).",
    "generator": "Teacher and reasoner together.",
    "source": "The source of the image.",
    "license": "The licence of the image as the source states it.",
}


def _traces(stage: int) -> TraceStage:
    return TraceStage(
        name=f"traces_stage{stage}",
        description=f"Every reasoning trace for the stage-{stage} questions, right and wrong, with its kind and cue.",
        parents=(f"mcq_stage{stage}",),
        family="traces",
        looks_up_scenes=True,
        roles=("teacher", "reasoner"),
        report_key=("trace_generation", f"traces_stage{stage}"),
        generates_from_images=True,
        trace_column="text",
        features=FEATURES,
        fields=FIELDS,
    )


TRACES_STAGE1 = _traces(1)
TRACES_STAGE2 = _traces(2)
