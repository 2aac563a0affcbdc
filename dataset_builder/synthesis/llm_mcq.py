"""Stage 1 the paper's way: an LLM writes grounded MCQs from a scene's dense caption and boxes.

A model's output is untrusted text. It is parsed strictly (one JSON object, optionally in a code fence) and every
question is held to the rules a template question meets by construction: four distinct options, one correct
letter, a known skill, grounding on objects the scene has, no answer given away in the question, and for counting
a count that matches the objects it names. What fails is counted by reason, never raised: a scene whose output
gives no usable question is asked again with a new seed, up to ``max_attempts``. An optional verifier model then
answers each question from the caption and boxes alone, and a question is kept only when it agrees.

Questions become ``stage1.Draft``s (correct option + distractors) so the builder letters them like template ones.
The machinery (strict parsing, asking again, verifying, billing) is shared with stage 2's LLM composition, which
writes and verifies composites the same way.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

from datasets.utils import logging

from ..answers import LETTERS, arrange_options
from ..generation import Bill, Engine, Message, Request, Response, Sampling, dry_run_bill
from ..prompts import Prompt, load_prompt
from ..scene import Scene, SceneObject
from . import stage1
from .generator import generator_id
from .stage1 import Draft

logger = logging.get_logger(__name__)

SKILLS = tuple(dict.fromkeys(stage1.SKILLS.values()))  # the skills, in the templates' order
TEMPLATE = "llm"
MAX_QUESTION_CHARS = 300
MAX_OPTION_CHARS = 120
# Room to write one question object (~60-100 tokens of JSON with Qwen's tokenizer), with margin.
TOKENS_PER_QUESTION = 256
_NUMBER_WORDS = {
    word: str(value)
    for value, word in enumerate("zero one two three four five six seven eight nine ten eleven twelve".split())
}
_FENCE = re.compile(r"^```[a-zA-Z]*\s*\n(.*)\n```$", re.DOTALL)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_FIELDS = {"question": str, "options": list, "answer": str, "skill": str, "objects": list}


def questions_schema(skills: Sequence[str], extra: dict, count: int) -> dict:
    """The JSON schema backends with structured output decode a writer's answer against: up to ``count`` question
    objects, each a question, four options, the answer's letter, one of ``skills`` and the ``extra`` properties."""
    properties = {
        "question": {"type": "string"},
        "options": {"type": "array", "items": {"type": "string"}, "minItems": 4, "maxItems": 4},
        "answer": {"type": "string", "enum": list(LETTERS)},
        "skill": {"type": "string", "enum": list(skills)},
        **extra,
    }
    item = {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}
    return {
        "type": "object",
        "properties": {"questions": {"type": "array", "items": item, "minItems": 1, "maxItems": count}},
        "required": ["questions"],
        "additionalProperties": False,
    }


def mcq_schema(count: int) -> dict:
    """The JSON schema of the stage-1 writer's answer."""
    return questions_schema(SKILLS, {"objects": {"type": "array", "items": {"type": "integer"}, "minItems": 1}}, count)


ANSWER_SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string", "enum": list(LETTERS)}},
    "required": ["answer"],
    "additionalProperties": False,
}


def _scene_values(scene: Scene) -> dict:
    lines = []
    for obj in scene.objects:
        box = ", ".join(str(round(v)) for v in obj.bbox)
        extra = f" ({', '.join(obj.attributes)})" if obj.attributes else ""
        lines.append(f"{obj.id}: {obj.name}{extra} [{box}]")
    return {
        "width": scene.width,
        "height": scene.height,
        "caption": scene.caption.strip(),
        "objects": "\n".join(lines),
    }


@dataclass(frozen=True)
class MCQWriter:
    """How to ask a teacher for stage-1 MCQs; ``request`` renders one scene's request for one attempt."""

    questions_per_scene: int = 8
    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int | None = None  # default: TOKENS_PER_QUESTION for each question asked
    seed: int = 0
    prompt: Prompt = field(default_factory=lambda: load_prompt("stage1_mcq"))

    def request(self, scene: Scene, attempt: int = 0) -> Request:
        text = self.prompt.render(**_scene_values(scene), count=self.questions_per_scene, skills=", ".join(SKILLS))
        max_tokens = self.max_tokens or TOKENS_PER_QUESTION * self.questions_per_scene
        return writer_request(self, text, max_tokens, mcq_schema(self.questions_per_scene), attempt)


def writer_request(writer, text: str, max_tokens: int, schema: dict, attempt: int) -> Request:
    """A writer's request: ``writer`` (stage 1's or stage 2's) gives the sampling, its seed moved on by ``attempt``."""
    return Request(
        messages=(Message.text("user", text),),
        sampling=Sampling(
            temperature=writer.temperature, top_p=writer.top_p, max_tokens=max_tokens, seed=writer.seed + attempt
        ),
        schema=schema,
        template=writer.prompt.id,
    )


def _load_json(text: str):
    """The one JSON value ``text`` holds, bare or in one Markdown code fence; control characters are tolerated."""
    text = text.strip()
    fenced = _FENCE.match(text)
    return json.loads(fenced.group(1) if fenced else text, strict=False)


def _normalise(option: str) -> str:
    """Options that mean the same compare equal: case, spacing, trailing full stop, and number words vs digits."""
    return " ".join([_NUMBER_WORDS.get(word, word) for word in option.casefold().rstrip(".").split()])


def _mentions(text: str, phrase: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text) is not None


def check_options(item, fields: dict[str, type]) -> tuple[tuple[str, list[str], str] | None, str | None]:
    """The question, options and answer of one question object, or the reason it is rejected: the checks every
    model-written question meets, stage 1's and stage 2's (``fields`` are the keys it must have, with their types)."""
    if not isinstance(item, dict) or any(name not in item for name in fields):
        return None, "missing_field"
    if any(not isinstance(item[name], kind) for name, kind in fields.items()):
        return None, "wrong_type"
    question, options, answer = item["question"].strip(), item["options"], item["answer"].strip()
    if not all(isinstance(option, str) for option in options):
        return None, "wrong_type"
    options = [option.strip() for option in options]
    if any(_CONTROL.search(text) for text in (question, *options)):
        return None, "control_characters"
    if not question or len(question) > MAX_QUESTION_CHARS:
        return None, "bad_question_length"
    if len(options) != len(LETTERS):
        return None, "option_count"
    if any(not option or len(option) > MAX_OPTION_CHARS for option in options):
        return None, "bad_option_length"
    if len({_normalise(option) for option in options}) != len(options):
        return None, "duplicate_options"
    return (question, options, answer), None


def split_options(options: list[str], answer: str) -> tuple[str, list[str]]:
    """The correct option (``answer`` is its letter) and the distractors, in their order."""
    index = LETTERS.index(answer.upper())
    return options[index], options[:index] + options[index + 1 :]


def gives_answer_away(question: str, correct: str, distractors: list[str]) -> bool:
    """The question names the correct option and no distractor."""
    lowered = question.casefold()
    return _mentions(lowered, correct.casefold()) and not any(_mentions(lowered, d.casefold()) for d in distractors)


def _check(item, objects: dict[int, SceneObject]) -> tuple[Draft | None, str | None]:
    """One question object of the model's output as a ``Draft``, or the reason it is rejected."""
    checked, reason = check_options(item, _FIELDS)
    if reason:
        return None, reason
    question, options, answer = checked
    if not answer:
        return None, "missing_answer"
    if len(answer) != 1 or answer.upper() not in LETTERS:
        return None, "answer_not_an_option"
    if item["skill"] not in SKILLS:
        return None, "unknown_skill"
    ids = item["objects"]
    if not ids:
        return None, "no_grounding"
    if any(not isinstance(i, int) or isinstance(i, bool) or i not in objects for i in ids):
        return None, "unknown_object"
    correct, distractors = split_options(options, answer)
    if gives_answer_away(question, correct, distractors):
        return None, "answer_in_question"
    grounding = [objects[i] for i in dict.fromkeys(ids)]
    if item["skill"] == "counting" and _normalise(correct).isdigit() and int(_normalise(correct)) != len(grounding):
        return None, "count_mismatch"
    return Draft(TEMPLATE, question, correct, distractors, grounding, skill=item["skill"]), None


def parse_questions(
    text: str, finish_reason: str, check: Callable[[object], tuple], asked: set[str]
) -> tuple[list, Counter]:
    """The question objects of one model output that ``check`` accepts, each asked once and none of ``asked``, and
    the count of rejects by reason (``check`` gives each item's). Never raises; shared by stage 1 and stage 2."""
    rejects: Counter = Counter()
    try:
        data = _load_json(text)
    except (ValueError, RecursionError):
        rejects["truncated" if finish_reason == "length" else "malformed_json"] += 1
        return [], rejects
    items = data.get("questions") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        rejects["no_questions"] += 1
        return [], rejects
    found = []
    for item in items:
        draft, reason = check(item)
        if draft is not None and draft.question.casefold() in asked:
            draft, reason = None, "duplicate_question"
        if reason:
            rejects[reason] += 1
            continue
        asked.add(draft.question.casefold())
        found.append(draft)
    return found, rejects


def parse_mcqs(text: str, scene: Scene, finish_reason: str = "stop") -> tuple[list[Draft], Counter]:
    """The valid questions in one model output for ``scene``, and the count of rejects by reason. Never raises."""
    objects = {obj.id: obj for obj in scene.objects}
    return parse_questions(text, finish_reason, partial(_check, objects=objects), set())


@dataclass
class LLMResult:
    """What an LLM path produced: drafts per image id, rejects by reason, and the ``generator`` every row names."""

    drafts: dict[str, list]
    rejects: Counter
    generator: str


def _verifier_position(draft) -> int:
    """Where the verifier sees the correct option: fixed by the question, unrelated to where the writer put it."""
    return hashlib.sha256(draft.question.encode("utf-8")).digest()[0] % len(LETTERS)


def verify_request(scene: Scene, draft, prompt: Prompt) -> Request:
    """The verifier's request for a draft or composite (anything with question, correct and distractors)."""
    options = arrange_options(draft.correct, list(draft.distractors), _verifier_position(draft))
    lettered = "\n".join(f"{letter}. {option}" for letter, option in zip(LETTERS, options, strict=True))
    text = prompt.render(**_scene_values(scene), question=draft.question, options=lettered)
    return Request(
        messages=(Message.text("user", text),),
        sampling=Sampling(temperature=0.0, max_tokens=32),
        schema=ANSWER_SCHEMA,
        template=prompt.id,
    )


def _verifier_letter(response: Response) -> str | None:
    try:
        data = _load_json(response.texts[0])
    except (ValueError, RecursionError):
        return None
    answer = data.get("answer") if isinstance(data, dict) else None
    return answer.strip().upper() if isinstance(answer, str) and answer.strip().upper() in LETTERS else None


def verify(
    scenes: dict[str, Scene], drafts: dict[str, list], verifier: Engine, prompt: Prompt, rejects: Counter, desc: str
) -> dict[str, list]:
    """The drafts the verifier, reading only caption and boxes, answers the same way."""
    pairs = [(image_id, draft) for image_id, found in drafts.items() for draft in found]
    responses = verifier.generate(
        [verify_request(scenes[image_id], draft, prompt) for image_id, draft in pairs], desc=desc
    )
    kept: dict[str, list] = {}
    for (image_id, draft), response in zip(pairs, responses, strict=True):
        letter = _verifier_letter(response)
        if letter is None:
            rejects["verifier_malformed"] += 1
        elif letter != LETTERS[_verifier_position(draft)]:
            rejects["verifier_disagrees"] += 1
        else:
            kept.setdefault(image_id, []).append(draft)
    return kept


def response_drafts(item: tuple, response: Response, parse: Callable, rejects: Counter) -> list:
    """The valid drafts in all ``n`` texts of one response, each asked once; rejects are counted.

    ``item`` is what the request was made of, its scene first: ``parse(text, *item, finish_reason)`` reads a text.
    """
    found: dict[str, object] = {}
    for text, reason in zip(response.texts, response.finish_reasons, strict=True):
        parsed, reasons = parse(text, *item, reason)
        rejects.update(reasons)
        for draft in parsed:  # n > 1 samples may ask the same question
            found.setdefault(draft.question.casefold(), draft)
    return list(found.values())


def ask(
    engine: Engine,
    items: list[tuple],
    request: Callable,
    parse: Callable,
    rejects: Counter,
    *,
    max_attempts: int,
    desc: str,
) -> tuple[dict[str, list], list[tuple]]:
    """Drafts per image id from ``engine``: each round sends every pending item at once (``request(*item, attempt)``)
    and an item whose output gave no usable draft is asked again with a new seed, up to ``max_attempts``. Returns
    the drafts and the items that never gave one; rejects are counted."""
    drafts: dict[str, list] = {}
    pending = list(items)
    for attempt in range(max_attempts):
        if not pending:
            break
        requests = [request(*item, attempt) for item in pending]
        responses = engine.generate(requests, desc=f"{desc} (attempt {attempt + 1})")
        retry = []
        for item, response in zip(pending, responses, strict=True):
            found = response_drafts(item, response, parse, rejects)
            if found:
                drafts[item[0].image_id] = found
            else:
                retry.append(item)
        pending = retry
    return drafts, pending


def bill(
    engine: Engine, items: list[tuple], request: Callable, parse: Callable, verifier: Engine | None, prompt: Prompt
) -> dict[str, Bill]:
    """The writer's first round, and (with a verifier) the verifier for the drafts in the writer answers the cache
    already holds; retries and the rest depend on answers not written yet."""
    requests = [request(*item, 0) for item in items]
    bills = {"writer": dry_run_bill(requests, engine)}
    if verifier is not None:
        keys = [engine.key(r) for r in requests]
        cached = engine.cache.get_many(set(keys))
        checks = [
            verify_request(item[0], draft, prompt)
            for item, key in zip(items, keys, strict=True)
            if key in cached
            for draft in response_drafts(item, cached[key], parse, Counter())
        ]
        bills["verifier"] = dry_run_bill(checks, verifier)
    return bills


def write_mcqs(
    scenes: Sequence[Scene],
    teacher: Engine,
    writer: MCQWriter | None = None,
    *,
    max_attempts: int = 3,
    verifier: Engine | None = None,
) -> LLMResult:
    """Stage-1 drafts for ``scenes`` written by ``teacher``: each round sends every pending scene at once."""
    writer = writer or MCQWriter()
    verify_prompt = load_prompt("stage1_verify")
    rejects: Counter = Counter()
    items = [(scene,) for scene in scenes if scene.objects]
    rejects["scene_without_objects"] += len(scenes) - len(items)
    drafts, pending = ask(
        teacher, items, writer.request, parse_mcqs, rejects, max_attempts=max_attempts, desc="Writing MCQs"
    )
    rejects["scene_gave_no_question"] += len(pending)
    if verifier is not None and drafts:
        scenes_by_id = {scene.image_id: scene for scene in scenes}
        drafts = verify(scenes_by_id, drafts, verifier, verify_prompt, rejects, "Verifying MCQs")
    logger.info(
        f"LLM stage 1: {sum(map(len, drafts.values()))} questions for {len(drafts)} of {len(scenes)} images; "
        f"rejects {dict(+rejects)}"
    )
    generator = generator_id("stage1", TEMPLATE, f"{writer.prompt.version}:{teacher.model_id}")
    if verifier is not None:
        generator += f"+verify@{verify_prompt.version}:{verifier.model_id}"
    return LLMResult(drafts, +rejects, generator)


def bill_mcqs(
    scenes: Sequence[Scene], teacher: Engine, writer: MCQWriter | None = None, verifier: Engine | None = None
) -> dict[str, Bill]:
    """What ``write_mcqs`` would ask of each model, before anything is generated (``lgt build --dry-run``).

    The teacher's bill is its first round, one request per scene with objects. A retry (a new seed for a scene that
    gave no usable question) and the verifier's questions depend on answers not written yet: the verifier is billed
    for the questions in the teacher answers the cache already holds, and retries are not billed.
    """
    writer = writer or MCQWriter()
    items = [(scene,) for scene in scenes if scene.objects]
    return bill(teacher, items, writer.request, parse_mcqs, verifier, load_prompt("stage1_verify"))
