"""The trace and pair audit: can the training signal in traces and preference pairs be read without the image?

The blind-reader audit (``audit.py``) asks it of the questions; this asks it of what SFT and DPO learn from, for
scripted and model-written traces alike (it reads only the published columns). Five lines, each with its bar:

- **(a) slips**: per question template, how well a text-only reader of the short chain of thought alone tells a
  wrong one from a right one, against always saying the more common outcome. A wrong short CoT should be wrong in
  what it saw, not in how it is written; a reader that beats the majority rate by more than ``SLIP_MARGIN`` has
  found wording, lengths or stated answers that differ by outcome.
- **(b) pairs**: per DPO pair kind, how well a text-only reader of the two sides picks the chosen one, and how often
  the chosen side is the longer. Pairs whose one side is a prefix of the other (``X→O > X``, ``O > O→X``: the same
  short CoT with and without its continuation) are the paper's self-correction design and are reported apart; on
  pairs whose sides are independent chains of thought the reader must stay at or below ``PAIR_LIMIT``.
- **(c) answer before evidence**: the share of traces whose reasoning names the correct option (its text, or its
  letter) before any observation of the image, and of stage-2 steps whose question names it. An observation is a
  sentence citing a region, an extent, a coordinate, a measurement, a colour the question does not name, or a count
  (``OBSERVATION``).
- **(d) phrase pools**: word 4-grams within a sentence (masked as in (e)) found in at least ``PHRASE_MIN_SHARE`` of
  one outcome's traces of a template and at most a tenth as often in every other outcome's: stock phrases that tell
  the outcome. Short CoTs (``O``, ``X``) and continuations (``O→O``, ``X→O``, ``O→X``, ``X→X``: what follows the
  cue) apart.
- **(e) diversity**: sentences reduced to templates (numbers, colours, object names and the options' words
  masked): how many distinct ones, the share of all sentences the ``TOP_TEMPLATES`` most common make, and the
  length in words of what follows the cue.

Readers are ``audit.fit_choice_model`` (the blind readers' text classifier) over words, numbers, masked bigrams
and a length bucket, each split scored by a reader fit on the other splits (splits are disjoint by image). At most
``MAX_ITEMS`` items per group are read (a sample drawn the same way every time), so the audit of a paper-scale build
takes seconds; (c) reads every trace.
"""

from __future__ import annotations

import hashlib
import math
import re
import statistics
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from functools import cache

import numpy as np
from datasets.utils import logging

from .answers import LETTERS
from .audit import choice_scores, fit_choice_model, read_batches, read_columns, select_items, spread
from .synthesis.generator import parse_generator
from .synthesis.stage1 import COLOUR_WORDS

logger = logging.get_logger(__name__)

BUILD_INFO_KEY = "trace_audit"
# (a) A reader of short CoTs may beat always-the-majority-outcome by at most five points: at 100 scored short CoTs
# the standard error of an accuracy near 67% is 4.7 points, so a fair template passes by luck nearly always, while
# the slips the issue found (89.7% against 66.9%) fail by far.
SLIP_MARGIN = 0.05
# (b) On pairs of independent chains of thought a reader picks the chosen side at most 60% of the time: at 100
# pairs the standard error around 50% is 5 points, two of them above chance; the phrase pools found (95%) fail.
PAIR_LIMIT = 0.60
# Groups (templates, pair kinds) with fewer scored items are reported but not judged.
MIN_JUDGED = 100
# (c) No trace may name its answer before an observation; a stage-2 step names it in its question at most 5% of
# the time (a step that is itself the last hop may have to name what it asks about).
EARLY_ANSWER_LIMIT = 0.0
STEP_NAMING_LIMIT = 0.05
# (d) A phrase is a tell when at least 1% (and 8) of one outcome's traces of a template use it and every other
# outcome of the template uses it at most a tenth as often; an outcome is flagged when more than 5% of its traces
# hold one. At most PHRASE_ITEMS traces of each outcome of a template are read (at 400, a phrase in 2% of them is
# seen 8 times).
PHRASE_MIN_SHARE = 0.01
PHRASE_MIN_TRACES = 8
PHRASE_ITEMS = 400
# An outcome tells that a phrase is missing from it only if, at the phrase's rate elsewhere, it would hold it this many
# times: a small outcome (a few dozen X→X of a template) holds nothing by chance.
PHRASE_EXPECTED = 10
PHRASE_RATIO = 10
PHRASE_LIMIT = 0.05
# (e) The 50 most common sentence templates may make at most 35% of the sentences; what follows the cue has a
# median of at least 100 words (a continuation that re-examines, not one that restates).
TOP_TEMPLATES = 50
TEMPLATE_SHARE_LIMIT = 0.35
# The share of the most common templates means something only over many sentences (50 templates cover any few).
MIN_TEMPLATE_SENTENCES = 20 * TOP_TEMPLATES
MIN_WORDS_AFTER_CUE = 100
# At most this many items per group are read. A reader fit on more items learns more of what tells the sides apart,
# not only less noisily: on 20,000 images' pairs whose passes agreed or not, a reader fit on 1,000 of them picked the
# chosen side 58% of the time and one fit on 6,000 68%. At 5,000 the audit of 20,000 images' traces and pairs takes
# some 40 s. The readers fit in fewer passes than the blind readers' (two choices, not four; more features per item).
MAX_ITEMS = 5000
# Rows of traces or pairs read at a time (a few tens of MB of text): only the items the readers sample are kept.
BATCH_ROWS = 8192
READER_EPOCHS = 30

_TOKEN = re.compile(r"[a-z]+|\d+")
# a sentence ends at its stop, or at the parenthesis closing after it ("(y grows downwards in the image.)")
_SENTENCE = re.compile(r"(?:(?<=[.!?])|(?<=[.!?]\)))\s+(?=\S)")
_NUMBER_WORDS = r"no|one|two|three|four|five|six|seven|eight|nine|ten|\d+"
# What counts as looking at the image (case ignored): a coordinate or an extent ("x 10–83", "y = 288"), a point,
# a measurement in pixels or percent, a named region of the image, or a count stated as found. A colour word the
# question does not name is an observation too (checked apart, it depends on the question).
OBSERVATION = re.compile(
    r"\b[xy]\s*(?:=|:|from)?\s*\d"
    r"|\(\s*\d+\s*,\s*\d+\s*\)"
    r"|\d[\d,.]*\s*(?:px\b|pixels?\b|%)"
    r"|\b(?:top|bottom|upper|lower)[- ](?:left|right|half|part|corner|edge|side)\b"
    r"|\b(?:left|right) (?:half|side|edge|part)\b"
    rf"|\b(?:there (?:is|are)|i count|i find|i see|that makes|counting)\s+(?:only\s+)?(?:{_NUMBER_WORDS})\b",
    re.IGNORECASE,
)
_COLOURS = frozenset(COLOUR_WORDS)
# Function words the options share with everything; an option's other words are masked in sentence templates.
_FUNCTION_WORDS = frozenset(
    "a an the of to in on at is are it its and or than but more less as by with from this that be".split()
)


class TraceAuditError(ValueError):
    """Traces or pairs whose signal can be read without the image (raised only by a strict build)."""


# ---- reading a build ----


def _read(folder: str, config: str, columns: list[str]) -> dict[str, list]:
    """The columns of a built config's splits, with a ``split`` column; never the images."""
    table = read_columns(folder, config, columns)
    return {column: [] for column in [*columns, "split"]} if table is None else table.to_pydict()


def _think(text: str) -> str:
    """What ``<think>`` holds (the whole text without one)."""
    start = text.find("<think>")
    if start < 0:
        return text.strip()
    end = text.find("</think>", start)
    return text[start + len("<think>") : end if end >= 0 else len(text)].strip()


def _last_text(turns) -> str:
    """The text of the last assistant turn of a TRL message list (a DPO side)."""
    content = turns[-1]["content"] if turns else ""
    return content if isinstance(content, str) else "".join(part.get("text") or "" for part in content)


# ---- the reader ----


def _features(text: str) -> list[str]:
    """A text's features: its words and numbers, bigrams with numbers masked, and a bucket of its length."""
    tokens = _TOKEN.findall(text.lower())
    masked = ["#" if token[0].isdigit() else token for token in tokens]
    bigrams = {f"{a} {b}" for a, b in zip(masked, masked[1:], strict=False)}
    return [*set(tokens), *bigrams, f"len:{round(4 * math.log2(1 + len(tokens)))}"]


class _Reader:
    """Items of ``choices`` texts each; fits and scores ``audit.fit_choice_model`` by split."""

    def __init__(self, choices: int):
        self.choices = choices
        self.index: dict[str, int] = {}
        self.ids: list[int] = []
        self.owners: list[int] = []
        self.count = 0

    def add(self, texts: list[list[str]]) -> None:
        """One item: per choice, its features (an empty list for a choice scored 0, such as "right")."""
        for choice, features in enumerate(texts):
            self.ids += [self.index.setdefault(f, len(self.index)) for f in features]
            self.owners += [self.count * self.choices + choice] * len(features)
        self.count += 1

    def accuracy(self, targets: list[int], splits: list[str]) -> tuple[float | None, int]:
        """Held-out accuracy: each split's items scored by a reader fit on the other splits' items."""
        ids, owners = np.array(self.ids, dtype=np.int64), np.array(self.owners, dtype=np.int64)
        targets_, splits_ = np.array(targets, dtype=np.int64), np.array(splits)
        correct = scored = 0
        for split in np.unique(splits_):
            held, fitted = np.flatnonzero(splits_ == split), np.flatnonzero(splits_ != split)
            if not len(fitted):
                continue
            fit_ids, fit_owners = select_items(ids, owners, fitted, self.count, self.choices)
            weights = fit_choice_model(
                fit_ids, fit_owners, targets_[fitted], self.choices, len(self.index), READER_EPOCHS
            )
            held_ids, held_owners = select_items(ids, owners, held, self.count, self.choices)
            picks = choice_scores(weights, held_ids, held_owners, len(held), self.choices).argmax(axis=1)
            correct += int(np.sum(picks == targets_[held]))
            scored += len(held)
        return (correct / scored if scored else None), scored


# ---- (a) slips ----


def slip_reader(groups: dict[str, list[tuple[str, bool, str]]]) -> dict:
    """Per group (a template): ``(short CoT, wrong, split)`` items read by a reader told which were wrong."""
    found = {}
    for group, items in sorted(groups.items()):
        items = [items[i] for i in spread(list(range(len(items))), MAX_ITEMS)]
        reader = _Reader(2)
        for short, _, _ in items:
            reader.add([[], _features(short)])
        accuracy, scored = reader.accuracy([int(wrong) for _, wrong, _ in items], [split for *_, split in items])
        wrong = sum(w for _, w, _ in items) / max(1, len(items))
        majority = max(wrong, 1 - wrong)
        judged = accuracy is not None and scored >= MIN_JUDGED and 0 < wrong < 1
        found[group] = {
            "short_cots": len(items),
            "wrong_share": round(wrong, 4),
            "majority": round(majority, 4),
            "reader": None if accuracy is None else round(accuracy, 4),
            "over_majority": None if accuracy is None else round(accuracy - majority, 4),
            "judged": judged,
            "flagged": judged and accuracy - majority > SLIP_MARGIN,
        }
    return found


# ---- (b) pairs ----


def _is_prefix(chosen: str, rejected: str) -> bool:
    return chosen.startswith(rejected) or rejected.startswith(chosen)


def _pair_group(pair: dict) -> str:
    """A pair's kind, prefix pairs apart: what ``pair_reader`` judges each group of."""
    return f"{pair['kind']} ({'prefix' if _is_prefix(pair['chosen'], pair['rejected']) else 'independent'})"


def pair_reader(pairs: list[dict]) -> dict:
    """Per pair kind, prefix pairs apart: the held-out accuracy of a reader picking the chosen side of two texts
    shown in an order fixed by a hash of the pair, and how often the chosen side is the longer."""
    groups: dict[str, list[dict]] = {}
    for pair in pairs:
        groups.setdefault(_pair_group(pair), []).append(pair)
    found = {}
    for group, items in sorted(groups.items()):
        items = [items[i] for i in spread(list(range(len(items))), MAX_ITEMS)]
        reader, targets = _Reader(2), []
        for pair in items:
            first = hashlib.sha1(pair["id"].encode()).digest()[0] % 2  # where the chosen side is shown
            sides = [pair["rejected"], pair["rejected"]]
            sides[first] = pair["chosen"]
            longer = int(len(sides[1].split()) > len(sides[0].split()))
            reader.add([[*_features(text), f"longer:{i == longer}"] for i, text in enumerate(sides)])
            targets.append(first)
        accuracy, scored = reader.accuracy(targets, [pair["split"] for pair in items])
        independent = group.endswith("(independent)")
        judged = independent and accuracy is not None and scored >= MIN_JUDGED
        found[group] = {
            "pairs": len(items),
            "independent": independent,
            "reader": None if accuracy is None else round(accuracy, 4),
            "chosen_longer": round(sum(len(p["chosen"]) > len(p["rejected"]) for p in items) / len(items), 4),
            "judged": judged,
            "flagged": judged and accuracy > PAIR_LIMIT,
        }
    return found


# ---- (c) answer before evidence ----


@cache
def _mentions(option: str, letter: str) -> re.Pattern:
    """The gold option named: its text as whole words, or its letter as a letter ("(B)", "option B", "B.")."""
    text = rf"(?<![\w-]){re.escape(option.lower())}(?![\w-])"
    letter_forms = rf"\({letter}\)|\b(?:option|answer|choice)\s+\(?{letter}\b|^{letter}[.)]"
    return re.compile(rf"{text}|{letter_forms.lower()}", re.IGNORECASE | re.MULTILINE)


_COLOUR = re.compile(r"\b(?:" + "|".join(COLOUR_WORDS) + r")\b", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?]\)?\s+")


def first_observation(thought: str, question: str) -> int | None:
    """Where the sentence holding the first observation starts (``OBSERVATION``, or a colour word the question does
    not name); None when the reasoning observes nothing."""
    found = OBSERVATION.search(thought)
    end = found.start() if found else len(thought)
    asked = set(_TOKEN.findall(question.lower()))
    colour = next((m for m in _COLOUR.finditer(thought, 0, end) if m.group().lower() not in asked), None)
    position = colour.start() if colour else found.start() if found else None
    if position is None:
        return None
    ends = [m.end() for m in _SENTENCE_END.finditer(thought, 0, position)]
    return ends[-1] if ends else 0


# A box's coordinates ("x from 2 to 270", "(45, 55)"): a number there says where an edge is, not the answer.
_COORDINATES = re.compile(r"\b[xy]\s*(?:=|:|from)?\s*\d+(?:\s*(?:–|to)\s*\d+)?|\(\s*\d+\s*,\s*\d+\s*\)")


def _named(named: re.Pattern, thought: str, end: int) -> list[re.Match]:
    """The gold option's mentions in ``thought[:end]``, but for those inside a box's coordinates."""
    boxes = [match.span() for match in _COORDINATES.finditer(thought, 0, end)]
    return [m for m in named.finditer(thought, 0, end) if not any(a <= m.start() and m.end() <= b for a, b in boxes)]


def names_answer_early(thought: str, question: str, gold: str, letter: str, within: re.Pattern | None = None) -> bool:
    """Whether the reasoning names the gold option in a sentence before the one holding its first observation (the
    option's own words do not count as one; a box's coordinate is no mention: a count of 2 is not named by "x from 2
    to 270"). ``within``: the object names that hold the gold's words without being it ("category 1" of a count of 1,
    "hot dog" of "dog"), blanked first: naming one is no answer."""
    if within is not None:
        thought = within.sub(lambda match: " " * len(match.group()), thought)
    named = _mentions(gold, letter)
    found = OBSERVATION.search(thought, 0, 1000) or OBSERVATION.search(thought)  # most reasoning observes early
    if found is not None and not _named(named, thought, found.end()):
        return False
    mentions = _named(named, thought, len(thought))
    if not mentions:
        return False
    # The option itself is no observation ("the top left" names a region, and is the answer): blanked first, in
    # the text up to the end of the sentence that first names it (all that can decide).
    first = mentions[0]
    end = _SENTENCE_END.search(thought, first.end())
    stop = end.end() if end else len(thought)
    head = list(thought[:stop])
    for mention in mentions:
        if mention.end() <= stop:
            head[mention.start() : mention.end()] = " " * len(mention.group())
    start = first_observation("".join(head), question)
    return start is None or first.start() < start


def early_answers(batches: Iterable[dict[str, list]], names: NameIndex | None = None) -> dict:
    """(c): traces whose reasoning names the correct option before an observation, by kind, over ``batches`` of
    rows (every row is read, a batch at a time); ``names``: the build's object names (see ``names_answer_early``)."""
    early, kinds, examples = Counter(), Counter(), []
    for traces in batches:
        kinds.update(traces["kind"])
        for text, question, options, answer, kind in zip(
            traces["text"], traces["question"], traces["options"], traces["answer"], traces["kind"], strict=True
        ):
            if answer not in LETTERS:
                continue
            gold = options[LETTERS.index(answer)]
            within = names.holding(gold) if names is not None else None
            if names_answer_early(_think(text), question, gold, answer, within):
                early[kind] += 1
                if len(examples) < 3:
                    examples.append(_think(text)[:200])
    total = sum(kinds.values())
    return {
        "traces": total,
        "named_early": sum(early.values()),
        "share": round(sum(early.values()) / max(1, total), 4),
        "by_kind": {kind: early[kind] for kind in kinds},
        "examples": examples,
        "flagged": sum(early.values()) / max(1, total) > EARLY_ANSWER_LIMIT,
    }


def steps_naming_gold(batches: Iterable[dict[str, list]]) -> dict:
    """(c) for composed questions, over ``batches`` of MCQ rows: the steps whose question names the composite's
    correct option (whole words)."""
    steps = naming = 0
    for rows in batches:
        for found, options, answer in zip(rows["steps"], rows["options"], rows["answer"], strict=True):
            gold = re.compile(rf"(?<![\w-]){re.escape(options[LETTERS.index(answer)].lower())}(?![\w-])")
            steps += len(found)
            naming += sum(gold.search(step["question"].lower()) is not None for step in found)
    return {
        "steps": steps,
        "naming_gold": naming,
        "share": round(naming / max(1, steps), 4),
        "flagged": steps > 0 and naming / steps > STEP_NAMING_LIMIT,
    }


# ---- (d) phrase pools ----


def _phrases(text: str, masked: set[str]) -> set[str]:
    """The word 4-grams within each sentence of ``text``, masked as sentence templates are."""
    found = set()
    for sentence in _SENTENCE.split(text):
        words = sentence_template(sentence, masked).split()
        found.update(" ".join(words[i : i + 4]) for i in range(len(words) - 3))
    return found


def exclusive_phrases(groups: dict[str, dict[str, list[tuple[str, object]]]], masked=lambda row: set()) -> dict:
    """(d): per template (``groups[template][kind]``: each trace's text and its row, ``masked(row)`` the words its
    sentence templates mask), phrases frequent in one outcome and rare in the others; per kind, the share of its
    traces holding one, with examples. Compare outcomes of one part: short chains of thought with each other,
    continuations with each other."""
    holding, totals, examples = Counter(), Counter(), {}
    for template, by_kind in sorted(groups.items()):
        frequencies = {}
        for kind, texts in by_kind.items():
            sets = [_phrases(texts[i][0], masked(texts[i][1])) for i in spread(list(range(len(texts))), PHRASE_ITEMS)]
            counts = Counter(phrase for phrases in sets for phrase in phrases)
            frequencies[kind] = (sets, counts, len(sets))
        for kind, (sets, counts, total) in frequencies.items():
            totals[kind] += total
            floor = max(PHRASE_MIN_TRACES, PHRASE_MIN_SHARE * total)
            others = [(c, n) for k, (_, c, n) in frequencies.items() if k != kind]
            tells = set()
            for phrase, n in counts.items():
                if n < floor:
                    continue
                # only outcomes where the phrase, at this rate, would be seen PHRASE_EXPECTED times tell anything
                witnesses = [(c, m) for c, m in others if m * n / total >= PHRASE_EXPECTED]
                if witnesses and all(c[phrase] / m <= n / total / PHRASE_RATIO for c, m in witnesses):
                    tells.add(phrase)
            holding[kind] += sum(bool(phrases & tells) for phrases in sets)
            for phrase in sorted(tells, key=lambda p: (-counts[p], p))[:2]:
                examples.setdefault(kind, []).append(f"{template}: {phrase}")
    found = {}
    for kind in totals:
        share = holding[kind] / totals[kind]
        found[kind] = {
            "traces": totals[kind],
            "with_exclusive_phrase": holding[kind],
            "share": round(share, 4),
            "examples": examples.get(kind, [])[:4],
            "flagged": totals[kind] >= MIN_JUDGED and share > PHRASE_LIMIT,
        }
    return found


# ---- (e) diversity ----


def sentence_template(sentence: str, masked: set[str]) -> str:
    """A sentence with its numbers, colours, object names and option words masked, runs of masks made one."""
    out: list[str] = []
    masking = False
    for token in _TOKEN.findall(sentence.lower()):
        mask = "#" if token[0].isdigit() else "_" if token in masked or token in _COLOURS else None
        if mask is None:
            out.append(token)
        elif not masking:
            out.append(mask)
        masking = mask is not None
    return " ".join(out)


def _masked_words(names: set[str], options: list[str]) -> set[str]:
    """What a sentence template masks besides numbers and colours: object names and the options' own words."""
    return names | {w for option in options for w in _TOKEN.findall(option.lower())} - _FUNCTION_WORDS


def diversity(texts: list[str], options: list[list[str]], names: set[str], words: list[int]) -> dict:
    """(e): distinct sentence templates of ``texts`` (all of a config's, or the sample this reads of them: the
    same), the share of the ``TOP_TEMPLATES`` most common, and ``words`` after the cue (of every continued trace)."""
    templates: Counter = Counter()
    for i in spread(list(range(len(texts))), MAX_ITEMS):
        masked = _masked_words(names, options[i])
        templates.update(sentence_template(s, masked) for s in _SENTENCE.split(_think(texts[i])) if s.strip())
    sentences = sum(templates.values())
    top = sum(n for _, n in templates.most_common(TOP_TEMPLATES)) / max(1, sentences)
    median = statistics.median(words) if words else None
    return {
        "sentences": sentences,
        "templates": len(templates),
        "top_share": round(top, 4),
        "most_common": [template for template, _ in templates.most_common(3)],
        "words_after_cue_median": median,
        "continued": len(words),
        "judged": len(texts) >= MIN_JUDGED,
        # judged only over enough traces: a few dozen long ones make a thousand sentences of a handful of questions
        "flagged": len(texts) >= MIN_JUDGED
        and (
            (sentences >= MIN_TEMPLATE_SENTENCES and top > TEMPLATE_SHARE_LIMIT)
            or (len(words) >= MIN_JUDGED and median < MIN_WORDS_AFTER_CUE)
        ),
    }


# ---- the build ----


class NameIndex:
    """The object names of a build: their words (masked in sentence templates), and per gold option the names that
    hold its words without being it (``holding``), found through the names' words, whatever the vocabulary's size."""

    def __init__(self, names: set[str]):
        names = {name.lower() for name in names}
        self.words = {word for name in names for word in _TOKEN.findall(name)} - _FUNCTION_WORDS
        self._by_word: dict[str, list[str]] = {}
        for name in names:
            for word in set(_TOKEN.findall(name)):
                self._by_word.setdefault(word, []).append(name)
        self._holding: dict[str, re.Pattern | None] = {}

    def holding(self, gold: str) -> re.Pattern | None:
        """The names longer than ``gold`` that hold its words, as one pattern (plurals too); None when none does."""
        gold = gold.lower()
        if gold not in self._holding:
            words = _TOKEN.findall(gold)
            spaced = f" {' '.join(words)} "
            found = [
                name
                for name in self._by_word.get(words[0] if words else "", ())
                if name != gold and spaced in f" {' '.join(_TOKEN.findall(name))} "
            ]
            alternatives = "|".join(re.escape(name) for name in sorted(found, key=len, reverse=True))
            self._holding[gold] = re.compile(rf"(?<![\w-])(?:{alternatives})s?(?![\w-])", re.I) if found else None
        return self._holding[gold]


def _mcq_index(folder: str, configs: tuple[str, ...]) -> tuple[dict[str, str], set[str], dict[str, dict]]:
    """From the built MCQ configs: each question's template, every object name of their grounding, and per config
    with composed questions the (c) line of their steps."""
    templates, names, steps = {}, set(), {}

    def indexed(config: str) -> Iterator[dict[str, list]]:  # a batch at a time, its templates and names taken
        for rows in read_batches(
            folder, config, ["id", "generator", "grounding", "steps", "options", "answer"], BATCH_ROWS
        ):
            templates.update(
                (row_id, parse_generator(generator).template)
                for row_id, generator in zip(rows["id"], rows["generator"], strict=True)
            )
            names.update(g["name"] for grounding in rows["grounding"] for g in grounding)
            yield rows

    for config in configs:
        found = steps_naming_gold(indexed(config))
        if found["steps"]:
            steps[config] = {"steps": found}
    return templates, names, steps


def audit_traces(folder: str, config: str, templates: dict[str, str], index: NameIndex) -> dict:
    """(a), (c), (d) and (e) of one built traces config; ``index``: the build's object names.

    Read twice, so memory stays flat however large the build (all at once, 20,000 images' traces took 2.5 GB): the
    light columns say which rows each line samples (``spread``, as the line itself would); then the texts pass a
    batch at a time, every row counted for (c) and the words after the cue, only the sampled rows' kept."""
    light = _read(folder, config, ["mcq_id", "skill", "kind", "cue", "correct"])
    template = [templates.get(mcq_id) or skill for mcq_id, skill in zip(light["mcq_id"], light["skill"], strict=True)]
    shorts: dict[str, list[int]] = {}
    phrases: tuple[dict, dict] = ({}, {})  # short chains of thought, continuations: by template, by kind
    for i, cue in enumerate(light["cue"]):
        if not cue:
            shorts.setdefault(template[i], []).append(i)
        phrases[bool(cue)].setdefault(template[i], {}).setdefault(light["kind"][i], []).append(i)
    shorts = {name: spread(rows, MAX_ITEMS) for name, rows in shorts.items()}
    phrases = tuple(
        {name: {kind: spread(rows, PHRASE_ITEMS) for kind, rows in by_kind.items()} for name, by_kind in part.items()}
        for part in phrases
    )
    by_template = spread(list(range(len(template))), MAX_ITEMS)
    sampled = {i for part in phrases for by_kind in part.values() for rows in by_kind.values() for i in rows}
    sampled.update(by_template, *shorts.values())
    kept, words = {}, []  # row -> (its short CoT or continuation, its text, its options); words after the cue

    def batches():
        offset = 0
        columns = ["kind", "short", "cue", "expansion", "text", "question", "options", "answer"]
        for batch in read_batches(folder, config, columns, BATCH_ROWS):
            yield batch
            words.extend(
                len(text.split()) for text, cue in zip(batch["expansion"], batch["cue"], strict=True) if cue and text
            )
            for j, cue in enumerate(batch["cue"]):
                if offset + j in sampled:
                    part = batch["expansion"][j] if cue else batch["short"][j]
                    kept[offset + j] = (part, batch["text"][j], batch["options"][j])
            offset += len(batch["cue"])

    early = early_answers(batches(), index)
    names = index.words

    def masked(i: int) -> set[str]:
        return _masked_words(names, kept[i][2])

    return {
        "slips": slip_reader(
            {
                name: [(kept[i][0], not light["correct"][i], light["split"][i]) for i in rows]
                for name, rows in shorts.items()
            }
        ),
        "early_answers": early,
        "phrases": {
            **exclusive_phrases(_texts(phrases[0], kept), masked),
            **exclusive_phrases(_texts(phrases[1], kept), masked),
        },
        "diversity": diversity([kept[i][1] for i in by_template], [kept[i][2] for i in by_template], names, words),
    }


def _texts(rows: dict[str, dict[str, list[int]]], kept: dict[int, tuple]) -> dict[str, dict[str, list[tuple]]]:
    """``exclusive_phrases``' groups: per template, per kind, each row's text and the row."""
    return {
        name: {kind: [(kept[i][0], i) for i in found] for kind, found in by_kind.items()}
        for name, by_kind in rows.items()
    }


def audit_build(
    folder: str, traces: tuple[str, ...], pairs: tuple[str, ...], mcqs: tuple[str, ...], names: tuple[str, ...] = ()
) -> dict:
    """The audit of a built folder's traces configs, DPO configs and (for templates and steps) MCQ configs.

    ``names``: the object names of the build's source, which the MCQ configs' grounding holds only when they are
    built too: unmasked, the names of a traces-only build made phrases of one outcome ("a frisbee and a") that were
    nothing but which objects its sample of traces happened to be about."""
    started = time.perf_counter()
    templates, grounded, steps = _mcq_index(folder, mcqs)
    index = NameIndex(grounded | set(names))
    report: dict = {"configs": dict(steps)}
    for config in traces:
        report["configs"][config] = audit_traces(folder, config, templates, index)
    for config in pairs:
        report["configs"][config] = {"pairs": pair_reader(_sampled_pairs(folder, config))}
    report["flagged"] = flagged(report)
    report["seconds"] = round(time.perf_counter() - started, 2)
    return report


def _sampled_pairs(folder: str, config: str) -> list[dict]:
    """The pairs of a built DPO config that ``pair_reader`` reads (the same sample of each group), its sides' texts
    read twice a batch at a time: first to group every pair, then to keep the sampled ones'."""

    def pairs():
        for batch in read_batches(folder, config, ["id", "kind", "chosen", "rejected"], BATCH_ROWS):
            for i, k, c, r, s in zip(
                batch["id"], batch["kind"], batch["chosen"], batch["rejected"], batch["split"], strict=True
            ):
                yield {
                    "id": i,
                    "kind": k,
                    "chosen": _think(_last_text(c)),
                    "rejected": _think(_last_text(r)),
                    "split": s,
                }

    groups: dict[str, list[int]] = {}
    for position, pair in enumerate(pairs()):
        groups.setdefault(_pair_group(pair), []).append(position)
    sampled = {position for found in groups.values() for position in spread(found, MAX_ITEMS)}
    return [pair for position, pair in enumerate(pairs()) if position in sampled]


def flagged(report: dict) -> list[str]:
    """``config: line group`` for every judged line over its bar."""
    found = []
    for config, lines in report["configs"].items():
        for line, groups in lines.items():
            if line in ("early_answers", "diversity", "steps"):
                groups = {"": groups}
            found += [f"{config}: {line} {group}".rstrip() for group, result in groups.items() if result["flagged"]]
    return found


def enforce(report: dict, strict: bool = False) -> None:
    """Warn loudly about every audit line over its bar; under ``strict``, fail with one line instead."""
    if not report["flagged"]:
        return
    message = (
        f"the trace audit finds training signal readable without the image: {'; '.join(report['flagged'])} "
        f"(see {BUILD_INFO_KEY!r} in the build info and the card's trace audit)"
    )
    if strict:
        raise TraceAuditError(message)
    logger.warning("=" * 100)
    logger.warning(f"TRACE AUDIT: {message}. `lgt build --strict` fails on this.")
    logger.warning("=" * 100)


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _verdict(result: dict) -> str:
    return "FLAGGED" if result["flagged"] else "ok" if result.get("judged", True) else "too few to judge"


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(value) for value in row) + " |" for row in rows])


def card_section(report: dict) -> str:
    """The dataset card's account of the trace audit: what each line measures, its bar and why, and the figures."""
    parts = [
        "## Trace and pair audit",
        "",
        "Can what SFT and DPO learn from be read without the image? Each line below is measured on the published "
        "columns only, so it reads a scripted build and a model-written one alike; readers are logistic "
        "regressions over words, numbers, word pairs (numbers masked) and length, and every split is scored by a "
        "reader fit on the other splits (splits are disjoint by image).",
        "",
        f"- **(a) Slips.** Per question template, how often a reader of the short chain of thought alone tells a "
        f"wrong one from a right one, against always guessing the more common outcome. Bar: at most "
        f"{100 * SLIP_MARGIN:.0f} points over that majority rate with {MIN_JUDGED} or more short chains of thought "
        "(at 100 the standard error is about 5 points); a wrong chain of thought should be wrong in what it saw, not "
        "in how it is written or in the answers it tends to state.",
        f"- **(b) Pairs.** Per DPO pair kind, how often a reader of the two sides picks the chosen one, and how often "
        f"the chosen side is the longer. Pairs whose one side is a prefix of the other (a short chain of thought and "
        f"its own continuation: the paper's `X→O > X`, `O > O→X`) are the self-correction design and are reported, "
        f"not judged. Bar for pairs of independent chains of thought: at most {100 * PAIR_LIMIT:.0f}% with "
        f"{MIN_JUDGED} or more pairs (two standard errors above chance at 100 pairs).",
        f"- **(c) Answer before evidence.** The share of traces that name the correct option (its text, or its "
        "letter) before their first observation of the image (a sentence citing a region, an extent, a coordinate, "
        "a measurement, a colour the question does not name, or a count), and of stage-2 steps whose question names "
        f"the correct option. Bars: {100 * EARLY_ANSWER_LIMIT:.0f}% of traces (a trace that states its answer first "
        f"teaches a model to guess, then justify) and {100 * STEP_NAMING_LIMIT:.0f}% of steps.",
        "- **(d) Phrase pools.** Word 4-grams within a sentence (masked as in (e)) used by at least "
        f"{100 * PHRASE_MIN_SHARE:.0f}% of one "
        "outcome's traces of a template and at most a tenth as often by every other outcome's (short chains of "
        "thought, `O`/`X`, and what follows the cue, `O→O`/`X→O`/`O→X`/`X→X`): stock phrases that give the "
        f"outcome away. Bar: at most {100 * PHRASE_LIMIT:.0f}% of an outcome's traces hold one.",
        f"- **(e) Diversity.** Sentences reduced to templates (numbers, colours, object names and the options' "
        f"words masked): how many there are, and the share of all sentences the {TOP_TEMPLATES} most common make "
        f"(bar: at most {100 * TEMPLATE_SHARE_LIMIT:.0f}%, so no few sentences are the whole of what is learned); "
        f"and the median length in words of what follows the cue (bar: at least {MIN_WORDS_AFTER_CUE}, a "
        "continuation that re-examines rather than restates).",
        "",
        f"Flagged: {', '.join(report['flagged']) or 'nothing'}. `lgt build --strict` fails on a flagged line.",
    ]
    for config, lines in report["configs"].items():
        parts += ["", f"`{config}`:", ""]
        if "slips" in lines:
            parts.append(
                _table(
                    ["template", "short CoTs", "wrong", "majority", "reader", "over majority", "verdict"],
                    [
                        [
                            t,
                            f"{r['short_cots']:,}",
                            _percent(r["wrong_share"]),
                            _percent(r["majority"]),
                            _percent(r["reader"]),
                            "n/a" if r["over_majority"] is None else f"{100 * r['over_majority']:+.1f}",
                            _verdict(r),
                        ]
                        for t, r in lines["slips"].items()
                    ],
                )
            )
        if "pairs" in lines:
            parts.append(
                _table(
                    ["pair kind", "pairs", "reader picks chosen", "chosen is longer", "verdict"],
                    [
                        [
                            k,
                            f"{r['pairs']:,}",
                            _percent(r["reader"]),
                            _percent(r["chosen_longer"]),
                            _verdict(r) if r["independent"] else "prefix pair, reported",
                        ]
                        for k, r in lines["pairs"].items()
                    ],
                )
            )
        if "steps" in lines:
            r = lines["steps"]
            parts.append(
                f"(c) steps naming the correct option: {r['naming_gold']:,} of {r['steps']:,} "
                f"({_percent(r['share'])}): {_verdict(r)}."
            )
        if "early_answers" in lines:
            r = lines["early_answers"]
            parts.append(
                f"\n(c) traces naming the answer before an observation: {r['named_early']:,} of {r['traces']:,} "
                f"({_percent(r['share'])}): {_verdict(r)}."
            )
            phrases = lines["phrases"]
            parts.append(
                "\n(d) traces holding a phrase exclusive to their outcome: "
                + ", ".join(f"{k} {_percent(r['share'])}" for k, r in phrases.items())
                + ("; FLAGGED" if any(r["flagged"] for r in phrases.values()) else "; ok")
                + "."
            )
            d = lines["diversity"]
            parts.append(
                f"\n(e) {d['sentences']:,} sentences read, {d['templates']:,} sentence templates, the "
                f"{TOP_TEMPLATES} most common {_percent(d['top_share'])} of them; median words after the cue "
                f"{d['words_after_cue_median']}: {_verdict(d)}."
            )
    return "\n".join(parts)
