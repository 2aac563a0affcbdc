"""``mcq_stage1`` and ``mcq_stage2``: the grounded multiple-choice questions.

Stage 1 is written from each scene by the templates (verifiable by construction) and/or a writer model that reads
the caption and boxes (``--writer``, the paper's path); stage 2 composes an image's stage-1 questions into multi-hop
ones, by program from the template questions and by the writer from the model-written ones (kept when the verifier
agrees). Letters and answer classes are kept even along each work unit's stream of questions (``shard_state``).
"""

from __future__ import annotations

import hashlib
import random
from typing import NamedTuple

from datasets import Features, Image, List, Value

from ..answers import LetterBalancer, letter_options
from ..scene import Scene
from ..synthesis import llm_mcq, stage1, stage2
from .base import BOX, BOX_DOC, Context, Group, Stage


class Stream(NamedTuple):
    """What a worker keeps even along a unit's stream of questions: letters per skill, answer classes."""

    letters: LetterBalancer
    classes: stage1.Balance


def mcq_id(image_id: str, question: str, options: list[str], answer: str) -> str:
    """Stable content hash: the same question about the same image with the same options has the same id."""
    content = "\x1f".join([image_id, question, *options, answer])
    return hashlib.sha1(content.encode()).hexdigest()[:16]


def mcq_row(scene: Scene, image: dict | None, draft, generator: str, letters: LetterBalancer) -> dict:
    """An MCQ config's row for a stage-1 draft or a stage-2 composite, lettered by ``letters`` (per skill)."""
    options, answer = letter_options(draft.correct, draft.distractors, draft.ordered, letters, draft.skill)
    return {
        "id": mcq_id(scene.image_id, draft.question, options, answer),
        "image_id": scene.image_id,
        "image": image,
        "question": draft.question,
        "options": options,
        "answer": answer,
        "skill": draft.skill,
        "level": getattr(draft, "level", 1),
        "grounding": [{"object_id": o.id, "name": o.name, "bbox": o.bbox} for o in draft.grounding],
        "parents": list(getattr(draft, "parents", ())),
        "steps": [
            {
                "question": step.question,
                "answer": step.answer,
                "template": step.template,
                "object_ids": list(step.object_ids),
                "answer_ids": list(step.answer_ids),
                "category": step.category,
            }
            for step in getattr(draft, "steps", ())
        ],
        "generator": generator,
        "source": scene.source,
        "license": scene.license,
    }


def vocabulary(words: dict[str, list[str]]) -> stage1.Vocabulary:
    """What a distractor may name: every category and attribute of the source's objects."""
    attributes = set(words["attributes"])
    return stage1.Vocabulary(
        names=sorted(set(words["names"])),
        colours=sorted(attributes.intersection(stage1.COLOUR_WORDS)),
        attributes=sorted(attributes.difference(stage1.COLOUR_WORDS)),
    )


def _by_image(result, groups: dict[str, list[Group]]) -> dict[str, tuple]:
    """A model stage's drafts as each slice's workers read them: ``{slice: (generator, drafts by image id)}``."""
    return {
        name: (result.generator, {g.scene.image_id: result.drafts.get(g.scene.image_id, []) for g in found})
        for name, found in groups.items()
    }


def _stats(engines: dict) -> dict:
    return {role: engine.stats.as_dict() for role, engine in engines.items() if engine}


class MCQStage(Stage):
    def shard_state(self, config, shard: str) -> Stream:
        return Stream(LetterBalancer(f"{config.seed}:{shard}"), stage1.Balance())

    def calls_models(self, config) -> bool:
        return config.stage1_writer != "templates"

    def rows(self, group: Group, context: Context) -> list[dict]:
        """The image's MCQs: those the templates draft (``drafts``) and those the models wrote (``generated``)."""
        scene, stream = group.scene, context.state
        drafts = self.drafts(group, context, self.image_rng(context.config.seed, scene.image_id))
        if context.generated is not None:
            generator, by_image = context.generated
            drafts += [(draft, generator) for draft in by_image[scene.image_id]]
        return [mcq_row(scene, group.image, draft, generator, stream.letters) for draft, generator in drafts]

    def image_rng(self, seed: int, image_id: str) -> random.Random:
        """The random draws of this stage for one image, its own: when stage 2 drew the same numbers as stage 1 for
        an image, its wordings and distractors followed stage 1's choices, and a text-only reader fit on a build's
        held-out units answered its conjunctions 29 % of the time over five seeds (24.9 % for shuffled answers)."""
        return random.Random(f"{seed}:{self.name}:{image_id}")

    def drafts(self, group: Group, context: Context, rng: random.Random) -> list[tuple]:
        """``(draft, generator)`` of the image's questions written by program."""
        raise NotImplementedError


class Stage1MCQs(MCQStage):
    def prepare(self, inputs: dict, words: dict[str, list[str]]) -> stage1.Vocabulary:
        return vocabulary(words)

    def drafts(self, group: Group, context: Context, rng: random.Random) -> list[tuple]:
        if context.config.stage1_writer == "llm":
            return []
        found = stage1.generate(group.scene, context.prepared, rng, context.state.classes)
        return [(draft, stage1.template_generator(draft.template)) for draft in found]

    @staticmethod
    def _writer(config) -> llm_mcq.MCQWriter:
        return llm_mcq.MCQWriter(questions_per_scene=config.questions_per_image, seed=config.seed)

    def generate(self, groups: dict[str, list[Group]], engines: dict, config) -> tuple[dict, dict]:
        """The writer's drafts for every scene, in one engine call: the backend keeps its batch full and each
        answer is cached as it finishes (a killed build resumes with no repeated call)."""
        scenes = [g.scene for found in groups.values() for g in found]
        writer = self._writer(config)
        result = llm_mcq.write_mcqs(scenes, engines["writer"], writer, verifier=engines["verifier"])
        report = {
            "stage1": config.stage1_writer,
            "writer": engines["writer"].model_id,
            "verifier": engines["verifier"].model_id if engines["verifier"] else None,
            "generator": result.generator,
            "prompt": writer.prompt.id,
            "cache_only": config.cache_only,
            "images": len(scenes),
            "images_with_questions": len(result.drafts),
            "questions": sum(map(len, result.drafts.values())),
            "rejects": dict(result.rejects.most_common()),
            "models": _stats(engines),
        }
        return _by_image(result, groups), report

    def bill(self, groups: dict[str, list[Group]], engines: dict, config) -> dict:
        scenes = [g.scene for found in groups.values() for g in found]
        return llm_mcq.bill_mcqs(scenes, engines["writer"], self._writer(config), engines["verifier"])


class Stage2MCQs(MCQStage):
    def drafts(self, group: Group, context: Context, rng: random.Random) -> list[tuple]:
        found = stage2.compose(group.scene, group.rows, rng, context.state.classes)
        return [(draft, stage2.template_generator(draft.template)) for draft in found]

    def generate(self, groups: dict[str, list[Group]], engines: dict, config) -> tuple[dict, dict]:
        """The writer's composites of the model-written stage-1 questions, each kept only when the verifier (the
        writer itself when no other is named) answers it the same way."""
        items = [(g.scene, g.rows) for found in groups.values() for g in found]
        verifier = engines["verifier"] or engines["writer"]
        result = stage2.compose_with_llm(items, engines["writer"], verifier)
        report = {
            "writer": engines["writer"].model_id,
            "verifier": verifier.model_id,
            "generator": result.generator,
            "images": len(items),
            "composites": sum(map(len, result.drafts.values())),
            "rejects": dict(result.rejects.most_common()),
            "models": _stats(engines),
        }
        return _by_image(result, groups), report

    def bill(self, groups: dict[str, list[Group]], engines: dict, config) -> dict:
        items = [(g.scene, g.rows) for found in groups.values() for g in found]
        return stage2.bill_compose(items, engines["writer"], engines["verifier"] or engines["writer"])


FEATURES = Features(
    {
        "id": Value("string"),
        "image_id": Value("string"),
        "image": Image(),
        "question": Value("string"),
        "options": List(Value("string")),
        "answer": Value("string"),
        "skill": Value("string"),
        "level": Value("int32"),
        "grounding": List({"object_id": Value("int64"), "name": Value("string"), "bbox": BOX}),
        "parents": List(Value("string")),
        "steps": List(
            {
                "question": Value("string"),
                "answer": Value("string"),
                "template": Value("string"),
                "object_ids": List(Value("int64")),
                "answer_ids": List(Value("int64")),
                "category": Value("string"),
            }
        ),
        "generator": Value("string"),
        "source": Value("string"),
        "license": Value("string"),
    }
)
STAGE1_FIELDS = {
    "id": "Stable content hash of image id, question, options and answer.",
    "image_id": "The image asked about; joins to `scenes.image_id`.",
    "image": "The same image as the scene's (stored once per parquet row group, see Storage).",
    "question": "The question, answerable from the image alone.",
    "options": "Four answer options, lettered A-D in this order.",
    "answer": "The letter of the correct option: `A` is `options[0]` ... `D` is `options[3]`.",
    "skill": "What the question tests (counting, spatial_relation, relative_size, relative_distance, "
    "existence, attribute, localization).",
    "level": "1 for stage-1 questions; composed multi-hop questions (later stages) have 2 or more.",
    "grounding": f"The objects the question is about: `object_id` (into the scene's `objects`), `name`, "
    f"`bbox` {BOX_DOC}.",
    "parents": "Ids of the stage-1 questions this one was composed from (empty at stage 1).",
    "steps": "Stage 2: the sub-questions a reader asks to find the answer, in order, none naming what it finds: "
    "`question`, `answer`, `template` (what it asks: `find_left` ... `find_below`, `find_nearest`, `find_largest`, "
    "`find_smallest`, `all_left` ... (every object on that side), `filter_left` ... (which of those is on that side "
    "of the first object), `colour`, `location`, `count`, `size`; `llm` for a model's), `object_ids` (the objects "
    "it looks at, into the scene's `objects`), `answer_ids` (the objects its answer names; empty for a value) and "
    "`category` (what a count or a superlative is about). Empty at stage 1.",
    "generator": "What wrote the question: `stage1/TEMPLATE@VERSION` or `stage2/TEMPLATE@VERSION` for a template, "
    "`stage1/llm@PROMPT_VERSION:MODEL@REVISION` for the writer model (`+verify@...:MODEL` when a verifier "
    "kept it).",
    "source": "The source of the image: `scenes`, `coco` or `jsonl`.",
    "license": "The licence of the image as the source states it.",
}

MCQ_STAGE1 = Stage1MCQs(
    name="mcq_stage1",
    description="Stage-1 grounded multiple-choice questions, verifiable by construction from the boxes.",
    parents=("scenes",),
    family="mcq",
    essential=True,
    roles=("writer", "verifier"),
    report_key=("generation",),
    features=FEATURES,
    fields=STAGE1_FIELDS,
)
MCQ_STAGE2 = Stage2MCQs(
    name="mcq_stage2",
    description="Stage-2 multi-hop questions composed from an image's stage-1 questions; answers recomputed.",
    parents=("mcq_stage1",),
    family="mcq",
    looks_up_scenes=True,
    roles=("writer", "verifier"),
    report_key=("composition",),
    features=FEATURES,
    fields={
        **STAGE1_FIELDS,
        "question": "A multi-hop question composed from stage-1 questions of the same image; its answer is "
        "recomputed from the boxes.",
        "skill": "The composition: chain, comparison, set_count or conjunction.",
        "level": "The number of hops (2 or more).",
    },
)
