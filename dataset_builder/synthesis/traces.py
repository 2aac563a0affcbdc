"""Reasoning traces for MCQs, the paper's two steps: a short CoT from the image, then a long continuation after a cue.

Every trace records its ``kind`` from two gradings, the short CoT's and the final answer's: ``O``/``X`` for a short
CoT that is right/wrong and not continued, ``O→O``, ``O→X``, ``X→O``, ``X→X`` for a continued one by (short right,
final right). Only the one answer parser (``lgt.answers.parse_answer``) grades, and only the letter it reads counts.

This module is the model path (``model_traces``): a VLM teacher writes ``n`` short CoTs per MCQ from the image, in
the exact prompt training uses; a reasoning LLM, which sees the caption, the object boxes and the question but not
the image, continues each one after a cue given as an assistant prefill. The backend is asked not to use the banned
words (a versioned list); a short CoT or an expansion that still uses one is dropped, counted. Each step is one
``engine.generate`` call, so the whole stage is in flight at once and every answer is cached. The offline default,
traces written from the boxes by a scripted teacher and reasoner, is ``synthesis/scripted.py``.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache

from datasets.utils import logging

from .. import formats
from ..answers import format_options, parse_answer
from ..generation import Bill, Engine, ImagePart, Message, Request, Response, Sampling, dry_run_bill
from ..images import decode_image
from ..prompts import Prompt, load_prompt
from ..scene import Scene

logger = logging.get_logger(__name__)

KINDS = ("O", "O→O", "X→O", "X", "O→X", "X→X")
CUES = ("Wait,", "Hmm,", "Alternatively,")
SHORT_MAX_TOKENS = 512
EXPANSION_MAX_TOKENS = 2048
_THINK = re.compile(r"<think>(.*?)(?:</think>|$)", re.DOTALL)
_ANSWER = re.compile(r"<answer>", re.IGNORECASE)


@dataclass(frozen=True)
class Trace:
    """One trace for one MCQ: its short CoT, the cue and expansion that continue it ("" when not continued), the
    text inside ``<think>`` of the whole, the letter it ends on ("" when none), and who wrote each part."""

    mcq_id: str
    kind: str
    short: str
    cue: str
    expansion: str
    think: str
    predicted: str
    correct: bool
    teacher: str
    reasoner: str


def kind_of(short_correct: bool, final_correct: bool | None = None) -> str:
    """The trace kind: ``final_correct`` is None for a short CoT that was not continued."""
    first = "O" if short_correct else "X"
    return first if final_correct is None else f"{first}→{'O' if final_correct else 'X'}"


# ---- banned words and grading ----


@cache
def banned_words() -> tuple[str, ...]:
    """The versioned list of words no kept trace may use (``prompts/banned_words.vN.txt``)."""
    text = load_prompt("banned_words").text
    return tuple(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


@cache
def _banned_pattern() -> re.Pattern:
    words = sorted((word.lower() for word in banned_words()), key=len, reverse=True)
    return re.compile(r"(?<![a-z])(?:" + "|".join(map(re.escape, words)) + r")(?![a-z])")


def mentions_banned(text: str) -> bool:
    """Whether ``text`` uses a banned word or phrase (whole words, any case)."""
    return _banned_pattern().search(text.lower()) is not None


def _backend_banned_words() -> tuple[str, ...]:
    """The banned words as a backend bans token sequences: each spelling as written and capitalised."""
    return tuple(dict.fromkeys(spelling for word in banned_words() for spelling in (word, word.capitalize())))


def grade(text: str, mcq: dict) -> tuple[str, bool]:
    """``(letter, correct)``: the letter ``parse_answer`` reads in the last answer tag ("" when none), and whether it
    is the gold letter. An answer is right only by the letter it names, never by resembling an option."""
    letter = parse_answer(text, list(mcq["options"])) or ""
    return letter, letter == mcq["answer"]


def think_of(text: str) -> str:
    """What a completion thinks: inside ``<think>``, else everything before its first answer tag; stripped."""
    match = _THINK.search(text)
    if match:
        return match.group(1).strip()
    answer = _ANSWER.search(text)
    return (text[: answer.start()] if answer else text).strip()


# ---- the model path ----


@dataclass
class TraceResult:
    """What ``model_traces`` produced: traces by MCQ id, rejects by reason, and the teacher's and reasoner's ids."""

    traces: dict[str, list[Trace]]
    rejects: Counter
    teacher: str
    reasoner: str


@dataclass(frozen=True)
class TraceWriter:
    """How to ask the teacher for short CoTs and the reasoner for their continuations."""

    n: int = 4
    seed: int = 0
    cues: tuple[str, ...] = CUES
    temperature: float = 0.7
    top_p: float = 0.8
    max_tokens: int = SHORT_MAX_TOKENS
    expansion_max_tokens: int = EXPANSION_MAX_TOKENS
    short_prompt: Prompt = field(default_factory=lambda: load_prompt("trace_short"))
    expand_prompt: Prompt = field(default_factory=lambda: load_prompt("trace_expand"))

    def short_request(self, mcq: dict, image: bytes | str) -> Request:
        """The teacher sees exactly what training shows: the system prompt, the image, the question and options.

        ``image`` is the encoded image, or the path of its file (a build that stores images by path).
        """
        data = image if isinstance(image, bytes) else decode_image(image, mcq["id"])[0]
        style = formats.row_style(self.seed, mcq["id"])
        user = formats.user_text(mcq["question"], list(mcq["options"]), style)
        messages = []
        for message in formats.prompt_messages(mcq["question"], list(mcq["options"]), style):
            parts = []
            for part in message["content"]:
                if part["type"] == "image":
                    parts.append(ImagePart(data))
                elif part["text"] == user:  # the versioned prompt around the question (v1: the question as it is)
                    parts.append(self.short_prompt.render(user_text=user))
                else:
                    parts.append(part["text"])
            messages.append(Message(message["role"], tuple(parts)))
        sampling = Sampling(
            n=self.n,
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.max_tokens,
            seed=self.seed,
        )
        return Request(messages=tuple(messages), sampling=sampling, template=self.short_prompt.id)

    def expand_request(self, mcq: dict, scene: Scene, short_think: str, cue: str) -> Request:
        """The reasoner reads the scene in words and continues the short CoT, as written, after ``cue``."""
        lettered = format_options(list(mcq["options"]), formats.row_style(self.seed, mcq["id"]).option_style)
        text = self.expand_prompt.render(
            width=scene.width,
            height=scene.height,
            caption=scene.caption.strip(),
            objects=_object_lines(scene),
            question=mcq["question"],
            options=lettered,
        )
        sampling = Sampling(
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.expansion_max_tokens,
            seed=self.seed,
        )
        return Request(
            messages=(Message.text("user", text),),
            sampling=sampling,
            prefill=f"<think>\n{short_think}\n\n{cue}",
            banned_words=_backend_banned_words(),
            template=self.expand_prompt.id,
        )

    def cue(self, mcq_id: str, index: int) -> str:
        return random.Random(f"{self.seed}:{mcq_id}:{index}:cue").choice(self.cues)


def _object_lines(scene: Scene) -> str:
    lines = []
    for obj in scene.objects:
        extra = f" ({', '.join(obj.attributes)})" if obj.attributes else ""
        lines.append(f"{obj.name}{extra} [{', '.join(str(round(v)) for v in obj.bbox)}]")
    return "\n".join(lines)


@dataclass(frozen=True)
class _Short:
    mcq: dict
    scene: Scene
    index: int
    think: str
    predicted: str
    correct: bool


def _shorts(mcq: dict, scene: Scene, response: Response, rejects: Counter) -> list[_Short]:
    """The usable short CoTs of one response: a think text and an answer tag naming one option."""
    kept = []
    for index, (text, reason) in enumerate(zip(response.texts, response.finish_reasons, strict=True)):
        think = think_of(text)
        predicted, correct = grade(text, mcq)
        if reason == "length":
            rejects["short_truncated"] += 1
        elif not think:
            rejects["short_without_thinking"] += 1
        elif not predicted:
            rejects["short_without_answer"] += 1
        elif mentions_banned(text):  # a kept trace never names them, whoever wrote it
            rejects["short_mentions_banned_word"] += 1
        else:
            kept.append(_Short(mcq, scene, index, think, predicted, correct))
    return kept


def _expansion(short: _Short, response: Response, rejects: Counter) -> tuple[str, str, bool] | None:
    """``(expansion think, letter, correct)`` of one continuation, or None (counted) when it is unusable."""
    text, reason = response.texts[0], response.finish_reasons[0]
    expansion = text.split("</think>", 1)[0].strip()
    predicted, correct = grade(text, short.mcq)
    if reason == "length":
        rejects["expansion_truncated"] += 1
    elif mentions_banned(text):
        rejects["expansion_mentions_banned_word"] += 1
    elif "</think>" not in text or not expansion:
        rejects["expansion_without_thinking"] += 1
    elif not predicted:
        rejects["expansion_without_answer"] += 1
    else:
        return expansion, predicted, correct
    return None


def model_traces(
    items: Sequence[tuple[dict, Scene, bytes | str]],
    teacher: Engine,
    reasoner: Engine | None,
    n: int = 4,
    seed: int = 0,
    **settings,
) -> TraceResult:
    """Traces for ``(mcq, scene, image bytes)`` items: ``n`` short CoTs each from ``teacher``, and, with a
    ``reasoner``, each short CoT continued after a cue. Each step sends its whole stage in one ``generate`` call.

    ``settings`` are ``TraceWriter``'s other fields: ``cues``, ``temperature``, ``top_p``, ``max_tokens`` (short CoTs)
    and ``expansion_max_tokens``.
    """
    writer = TraceWriter(n=n, seed=seed, **settings)
    rejects: Counter = Counter()
    responses = teacher.generate([writer.short_request(mcq, image) for mcq, _, image in items], desc="Short CoTs")
    shorts = [s for (mcq, scene, _), r in zip(items, responses, strict=True) for s in _shorts(mcq, scene, r, rejects)]
    teacher_id = f"{teacher.model_id} prompt {writer.short_prompt.id}"
    reasoner_id = f"{reasoner.model_id} prompt {writer.expand_prompt.id}" if reasoner is not None else ""
    traces: dict[str, list[Trace]] = {mcq["id"]: [] for mcq, _, _ in items}
    for s in shorts:
        traces[s.mcq["id"]].append(
            Trace(s.mcq["id"], kind_of(s.correct), s.think, "", "", s.think, s.predicted, s.correct, teacher_id, "")
        )
    if reasoner is not None and shorts:
        cues = [writer.cue(s.mcq["id"], s.index) for s in shorts]
        requests = [writer.expand_request(s.mcq, s.scene, s.think, cue) for s, cue in zip(shorts, cues, strict=True)]
        for s, cue, response in zip(shorts, cues, reasoner.generate(requests, desc="Expansions"), strict=True):
            found = _expansion(s, response, rejects)
            if found is None:
                continue
            expansion, predicted, correct = found
            think = f"{s.think}\n\n{cue} {expansion}"
            kind = kind_of(s.correct, correct)
            trace = Trace(
                s.mcq["id"], kind, s.think, cue, expansion, think, predicted, correct, teacher_id, reasoner_id
            )
            traces[s.mcq["id"]].append(trace)
    kinds = Counter(t.kind for found in traces.values() for t in found)
    logger.info(f"model traces: {dict(kinds)} for {len(items)} MCQs; rejects {dict(+rejects)}")
    return TraceResult(traces, +rejects, teacher_id, reasoner_id)


def bill_traces(
    items: Sequence[tuple[dict, Scene, bytes | str]],
    teacher: Engine,
    reasoner: Engine | None,
    n: int = 4,
    seed: int = 0,
    **settings,
) -> dict[str, Bill]:
    """What ``model_traces`` would ask of each model before anything is generated (``lgt build --dry-run``).

    The short CoTs are billed in full. The expansions continue short CoTs not written yet: they are billed for the
    short CoTs the cache already holds, one request each (so 0 before the teacher has run).
    """
    writer = TraceWriter(n=n, seed=seed, **settings)
    requests = [writer.short_request(mcq, image) for mcq, _, image in items]
    bills = {"short CoTs": dry_run_bill(requests, teacher)}
    if reasoner is not None:
        keys = [teacher.key(request) for request in requests]
        cached = teacher.cache.get_many(set(keys))
        expansions = [
            writer.expand_request(s.mcq, s.scene, s.think, writer.cue(s.mcq["id"], s.index))
            for (mcq, scene, _), key in zip(items, keys, strict=True)
            if key in cached
            for s in _shorts(mcq, scene, cached[key], Counter())
        ]
        bills["expansions"] = dry_run_bill(expansions, reasoner)
    return bills
