"""The blind-reader audit: how well can a reader that never sees the image answer each skill?

A multiple-choice question a model can answer from its text alone teaches the model to read the text, not the
image (MMStar was made because benchmarks were answerable that way). So every build measures its own shortcuts:
per skill, the accuracy of readers that see only the question and the four options,

- ``letter``: the most frequent correct letter of the skill;
- ``answer prior``: per template, how often each option's own words (those not in the question) were correct;
- ``numeric rank``: always the k-th smallest number, with the best k (questions whose options are all numbers);
- ``option length``: always the longest, or always the shortest, option, whichever did better;
- ``text classifier``: a conditional logistic regression over the option's words, the question's words crossed
  with them, the option's numeric and length rank and its letter.

Each reader is fit on one split and scored on another: every split is scored by readers fit on the other splits
(``test`` and ``validation`` by readers fit mostly on ``train``, ``train`` by readers fit on the held-out splits),
so every row is scored once, which a small skill needs, and never by a reader that saw its image. Splits, not
random folds: stage 1 balances answers along each stream of questions, and streams never cross a split, so a
reader fit on part of a stream would learn that stream's balancing, which no model trained on ``train`` can see.
A skill with at least ``MIN_JUDGED_ITEMS`` scored questions whose best reader beats chance by more than
``MARGIN`` makes the build warn, or fail when strict.
"""

from __future__ import annotations

import glob
import math
import os
import random
import re
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datasets.utils import logging

from .answers import LETTERS
from .pools import FORK

logger = logging.get_logger(__name__)

CHANCE = 1 / len(LETTERS)
# A skill whose best blind reader answers more than this far above chance is flagged: ten points is the bar the
# project set for "the image is needed".
MARGIN = 0.10
# Below this many scored questions a skill is reported but not judged: at 100 questions the standard error of an
# accuracy near 25% is 4.3 points, so one reader lands 10 points above chance by luck about 1% of the time (the
# best of the five a few percent); fewer questions would flag fair data.
MIN_JUDGED_ITEMS = 100
# The audit reads at most this many questions per skill (a seeded sample, `spread`): 5,000 put the standard
# error under 0.7 points and keep the audit of a paper-scale build to seconds.
MAX_ITEMS_PER_SKILL = 5000
COLUMNS = ["question", "options", "answer", "skill", "generator"]
# Skills are audited side by side in processes only from this many questions read: below it, starting the processes
# costs more than they save.
PARALLEL_ITEMS = 5000
# A question word is crossed with the option's words only when it is rare in its skill: object names, not the
# template's own wording, so the classifier learns "question about X -> answer Y" priors at little cost.
CONTENT_WORD_SHARE = 0.2
CLASSIFIER_EPOCHS = 60
CLASSIFIER_STEP = 0.5
CLASSIFIER_L2 = 1e-4
_WORD = re.compile(r"[a-z0-9]+")


BUILD_INFO_KEY = "blind_reader_audit"


class ShortcutError(ValueError):
    """A built skill can be answered without the image (raised only by a strict build)."""


@dataclass
class _Items:
    """One skill's questions as the readers see them (no image, no grounding), with what they read worked out once."""

    options: list[list[str]]  # per question, per option: the option's own words (not in the question), joined
    templates: list[str]
    answers: np.ndarray  # index of the correct option
    splits: np.ndarray  # index into the sorted split names
    lengths: np.ndarray  # (questions, 4) characters per option
    numbers: np.ndarray  # (questions, 4) the options as numbers, NaN where one is not a number
    feature_ids: np.ndarray  # the text classifier's features: one entry per (option, feature) ...
    feature_owners: np.ndarray  # ... and the option it belongs to, question * 4 + option

    def __len__(self) -> int:
        return len(self.answers)


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def _ranks(values: np.ndarray) -> np.ndarray:
    """Each option's rank (0 = smallest) within its question."""
    return np.argsort(np.argsort(values, axis=1, kind="stable"), axis=1, kind="stable")


def _option_features(template, question, own, numbers, length_ranks, number_ranks, content) -> list[list[str]]:
    """The classifier's view of one question's four options: their words, the question's rare words crossed with
    them, their letter, length rank and, for numbers, rank and shape of the window around them."""
    topic = [w for w in question if w in content]
    numeric = not np.isnan(numbers).any()
    found = []
    for j, text in enumerate(own):
        words = text.split()
        feats = [f"o:{text}", f"t:{template}|o:{text}", f"pos:{j}", f"len:{length_ranks[j]}"]
        feats += [f"w:{w}" for w in words] + [f"b:{a} {b}" for a, b in zip(words, words[1:], strict=False)]
        feats += [f"q:{w}|o:{text}" for w in topic]
        if numeric:
            below = [numbers[j] - v for v in numbers if v < numbers[j]]
            above = [v - numbers[j] for v in numbers if v > numbers[j]]
            gaps = f"{min(below, default=-1):g}|{min(above, default=-1):g}"  # the window's shape around it
            # and its neighbours in display order: a fixed distractor order shows up here
            order = "|".join(f"{numbers[k] - numbers[j]:g}" for k in (j - 1, j + 1) if 0 <= k < len(numbers))
            rank = number_ranks[j]
            feats += [f"rank:{rank}", f"rank:{rank}|min:{min(numbers):g}", f"gaps:{gaps}", f"order:{j}:{order}"]
        found.append(feats)
    return found


def _items(rows: dict[str, list]) -> _Items:
    questions = [_words(q) for q in rows["question"]]
    own = []
    for words, options in zip(questions, rows["options"], strict=True):
        asked = set(words)
        own.append([" ".join(w for w in _words(o) if w not in asked) for o in options])
    lengths = np.array([[len(o) for o in options] for options in rows["options"]]).reshape(-1, len(LETTERS))
    numbers = np.array([[_number(o) for o in options] for options in rows["options"]]).reshape(-1, len(LETTERS))
    # Question words rare in the skill are its topics (object names), not its wording; read without answers.
    share: dict[str, int] = {}
    for words in questions:
        for w in set(words):
            share[w] = share.get(w, 0) + 1
    content = {w for w, n in share.items() if n <= CONTENT_WORD_SHARE * len(questions)}
    length_ranks, number_ranks = _ranks(lengths), _ranks(numbers)
    index: dict[str, int] = {}
    ids, owners = [], []
    for i, (template, words) in enumerate(zip(rows["generator"], questions, strict=True)):
        option_features = _option_features(
            template, words, own[i], numbers[i], length_ranks[i], number_ranks[i], content
        )
        for j, feats in enumerate(option_features):
            ids += [index.setdefault(f, len(index)) for f in feats]
            owners += [i * len(LETTERS) + j] * len(feats)
    return _Items(
        options=own,
        templates=rows["generator"],
        answers=np.array([LETTERS.index(a) for a in rows["answer"]], dtype=np.int64),
        splits=np.unique(rows["split"], return_inverse=True)[1],
        lengths=lengths,
        numbers=numbers,
        feature_ids=np.array(ids, dtype=np.int64),
        feature_owners=np.array(owners, dtype=np.int64),
    )


# ---- readers: fit(items, rows) learns from the given rows; predict(items, rows) picks an option index each ----


class LetterReader:
    name = "letter"

    def fit(self, items: _Items, rows: np.ndarray) -> None:
        self.letter = int(np.bincount(items.answers[rows], minlength=len(LETTERS)).argmax())

    def predict(self, items: _Items, rows: np.ndarray) -> np.ndarray:
        return np.full(len(rows), self.letter)


class AnswerPriorReader:
    """The majority answer per template, generalised to "the option whose words were most often correct"."""

    name = "answer prior"

    def fit(self, items: _Items, rows: np.ndarray) -> None:
        self.shown: dict[tuple, int] = {}
        self.correct: dict[tuple, int] = {}
        for i in rows:
            for j, text in enumerate(items.options[i]):
                key = (items.templates[i], text)
                self.shown[key] = self.shown.get(key, 0) + 1
                self.correct[key] = self.correct.get(key, 0) + (j == items.answers[i])

    def predict(self, items: _Items, rows: np.ndarray) -> np.ndarray:
        picks = []
        for i in rows:
            keys = [(items.templates[i], text) for text in items.options[i]]
            # Laplace-smoothed share of appearances that were correct; unseen options score exactly chance.
            scores = [(self.correct.get(k, 0) + 1) / (self.shown.get(k, 0) + len(LETTERS)) for k in keys]
            picks.append(int(np.argmax(scores)))
        return np.array(picks)


class NumericRankReader:
    """Always the k-th smallest number; the k that did best on the fitted rows."""

    name = "numeric rank"

    @staticmethod
    def applies(items: _Items) -> bool:
        return not np.isnan(items.numbers).any()

    def fit(self, items: _Items, rows: np.ndarray) -> None:
        correct_rank = _ranks(items.numbers[rows])[np.arange(len(rows)), items.answers[rows]]
        self.rank = int(np.bincount(correct_rank, minlength=len(LETTERS)).argmax())

    def predict(self, items: _Items, rows: np.ndarray) -> np.ndarray:
        return np.argmax(_ranks(items.numbers[rows]) == self.rank, axis=1)


class OptionLengthReader:
    """Always the longest option, or always the shortest, whichever did better on the fitted rows."""

    name = "option length"

    def fit(self, items: _Items, rows: np.ndarray) -> None:
        lengths, answers = items.lengths[rows], items.answers[rows]
        self.longest = bool(np.mean(lengths.argmax(axis=1) == answers) >= np.mean(lengths.argmin(axis=1) == answers))

    def predict(self, items: _Items, rows: np.ndarray) -> np.ndarray:
        lengths = items.lengths[rows]
        return lengths.argmax(axis=1) if self.longest else lengths.argmin(axis=1)


def fit_choice_model(
    ids: np.ndarray, owners: np.ndarray, targets: np.ndarray, choices: int, size: int, epochs: int = CLASSIFIER_EPOCHS
) -> np.ndarray:
    """Weights of a conditional logistic regression: item ``i``'s choice ``c`` scores the summed weights of its
    features (``ids[k]`` where ``owners[k] == i * choices + c``), a softmax over the item's choices; ``targets`` the
    right choice of each item. Full-batch AdaGrad on the mean log-loss; features never seen keep weight 0. The one
    text-only reader of the audits: the blind readers' text classifier (four options) and the trace audit's (a
    trace right or wrong, the chosen side of a pair)."""
    count = len(targets)
    target = np.zeros((count, choices))
    target[np.arange(count), targets] = 1
    weights, squared = np.zeros(size), np.full(size, 1e-8)
    for _ in range(epochs):
        scores = choice_scores(weights, ids, owners, count, choices)
        probs = np.exp(scores - scores.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        residual = (probs - target).ravel() / count
        gradient = np.bincount(ids, weights=residual[owners], minlength=size) + CLASSIFIER_L2 * weights
        squared += gradient**2
        weights -= CLASSIFIER_STEP * gradient / np.sqrt(squared)
    return weights


def choice_scores(weights: np.ndarray, ids: np.ndarray, owners: np.ndarray, count: int, choices: int) -> np.ndarray:
    """``(count, choices)``: each choice's summed feature weights."""
    return np.bincount(owners, weights=weights[ids], minlength=count * choices).reshape(count, choices)


def select_items(ids: np.ndarray, owners: np.ndarray, rows: np.ndarray, total: int, choices: int):
    """The feature entries of items ``rows`` (of ``total``), their owners renumbered to positions in ``rows``."""
    position = np.full(total, -1)
    position[rows] = np.arange(len(rows))
    item = position[owners // choices]
    keep = item >= 0
    return ids[keep], item[keep] * choices + owners[keep] % choices


class TextClassifierReader:
    """Conditional logistic regression: each option scored by a weighted sum of its features, softmax over four."""

    name = "text classifier"

    def fit(self, items: _Items, rows: np.ndarray) -> None:
        ids, owners = select_items(items.feature_ids, items.feature_owners, rows, len(items), len(LETTERS))
        size = int(items.feature_ids.max(initial=-1)) + 1
        self.weights = fit_choice_model(ids, owners, items.answers[rows], len(LETTERS), size)

    def predict(self, items: _Items, rows: np.ndarray) -> np.ndarray:
        ids, owners = select_items(items.feature_ids, items.feature_owners, rows, len(items), len(LETTERS))
        return choice_scores(self.weights, ids, owners, len(rows), len(LETTERS)).argmax(axis=1)


READERS = (LetterReader, AnswerPriorReader, NumericRankReader, OptionLengthReader, TextClassifierReader)


def _cross_fit(reader_class, items: _Items) -> tuple[float, int]:
    """(accuracy, rows scored): each split's rows scored by a reader fit on the other splits' rows."""
    correct = scored = 0
    for split in np.unique(items.splits):
        held_out, fitted = np.flatnonzero(items.splits == split), np.flatnonzero(items.splits != split)
        if not len(fitted):
            continue
        reader = reader_class()
        reader.fit(items, fitted)
        correct += int(np.sum(reader.predict(items, held_out) == items.answers[held_out]))
        scored += len(held_out)
    return correct / max(1, scored), scored


def audit_skill(rows: dict[str, list]) -> dict:
    """Every reader's held-out accuracy on one skill's rows (a dict of columns), the best and its margin."""
    items = _items(rows)
    readers, scored = {}, 0
    for reader_class in READERS:
        if reader_class is NumericRankReader and not NumericRankReader.applies(items):
            continue
        accuracy, scored = _cross_fit(reader_class, items)
        readers[reader_class.name] = round(accuracy, 4)
    if not scored:  # the skill occurs in one split only: no reader can be fit apart from what it scores
        return {"items": 0, "readers": {}, "best_reader": None, "over_chance": None, "judged": False, "flagged": False}
    best = max(readers, key=readers.get)
    judged = scored >= MIN_JUDGED_ITEMS
    return {
        "items": scored,
        "readers": readers,
        "best_reader": best,
        "over_chance": round(readers[best] - CHANCE, 4),
        "standard_error": round(math.sqrt(CHANCE * (1 - CHANCE) / scored), 4),
        "judged": judged,
        "flagged": judged and readers[best] - CHANCE > MARGIN,
    }


def spread(indices: list[int], limit: int) -> list[int]:
    """At most ``limit`` of ``indices``, in their order, drawn by a generator seeded with their number (the same
    sample every time). Not every k-th: rows come in patterns (a short chain of thought, then its continuation; an
    image's questions, template by template), and every 80th of 20,000 images' traces was a short one every time."""
    if len(indices) <= limit:
        return list(indices)
    return sorted(random.Random(len(indices)).sample(indices, limit))


def _by_skill(skills: pa.Array) -> dict[str, list[int]]:
    """Row indices per skill, a ``spread`` of at most ``MAX_ITEMS_PER_SKILL`` of each (found in Arrow: a paper-scale
    build's skills never become Python strings)."""
    encoded = skills.dictionary_encode()
    codes = encoded.indices.to_numpy()
    found = {skill: np.flatnonzero(codes == code) for code, skill in enumerate(encoded.dictionary.to_pylist())}
    return {skill: spread(found[skill].tolist(), MAX_ITEMS_PER_SKILL) for skill in sorted(found)}


def audit_rows(rows: dict[str, list], num_proc: int | None = None) -> dict:
    """The audit of MCQ rows, a dict of ``COLUMNS`` + ``split``: per skill, every reader's held-out accuracy;
    ``num_proc`` processes audit skills side by side (a skill's readers see its rows only)."""
    chosen = _by_skill(pa.array(rows["skill"], pa.string()))
    each = [{column: [rows[column][i] for i in indices] for column in rows} for indices in chosen.values()]
    workers = num_proc if sum(map(len, chosen.values())) >= PARALLEL_ITEMS else None
    skills = dict(zip(chosen, _mapped(audit_skill, each, workers), strict=True))
    return {
        "chance": CHANCE,
        "margin": MARGIN,
        "min_judged_items": MIN_JUDGED_ITEMS,
        "skills": skills,
        "flagged": [skill for skill, result in skills.items() if result["flagged"]],
    }


def _mapped(function, items: list, num_proc: int | None) -> list:
    """``function`` of each item, in up to ``num_proc`` processes."""
    workers = min(num_proc or 1, len(items))
    if workers < 2:
        return [function(item) for item in items]
    with ProcessPoolExecutor(workers, mp_context=FORK) as pool:
        return list(pool.map(function, items))


def _built_files(folder: str, config: str) -> list[tuple[str, str]]:
    """A built config's files (``<split>-NNNNN-of-MMMMM.parquet``), in the order the audits read them, with splits."""
    paths = sorted(glob.glob(os.path.join(folder, config, "*.parquet")))
    return [(path, os.path.basename(path).split("-")[0]) for path in paths]


def read_columns(folder: str, config: str, columns: list[str]) -> pa.Table | None:
    """``columns`` of a built config's splits and a ``split`` column, never the images; None when the config has no
    file."""
    tables = []
    for path, split in _built_files(folder, config):
        table = pq.ParquetFile(path).read(columns=columns)  # a dataset per file (``read_table``) costs twice as much
        tables.append(table.append_column("split", pa.repeat(pa.scalar(split, pa.string()), table.num_rows)))
    return pa.concat_tables(tables) if tables else None


def read_batches(folder: str, config: str, columns: list[str], rows: int) -> Iterator[dict[str, list]]:
    """``read_columns``' rows as Python columns, ``rows`` at a time: memory stays flat however large the config."""
    for path, split in _built_files(folder, config):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=rows, columns=columns):
            yield {**batch.to_pydict(), "split": [split] * batch.num_rows}


def read_rows(folder: str, config: str) -> dict[str, list]:
    """The audited columns of a built config's splits; only the rows the audit reads become Python objects, so a
    paper-scale build is read in seconds."""
    table = read_columns(folder, config, COLUMNS)
    if table is None:
        return {column: [] for column in [*COLUMNS, "split"]}
    chosen = np.zeros(table.num_rows, dtype=bool)
    for indices in _by_skill(table.column("skill").combine_chunks()).values():
        chosen[indices] = True
    return table.filter(chosen).to_pydict()


def audit_build(folder: str, configs: tuple[str, ...], num_proc: int | None = None) -> dict:
    """The audit of built MCQ configs together (their skills are distinct), with the seconds it took."""
    started = time.perf_counter()
    found = [read_rows(folder, config) for config in configs]
    report = audit_rows({column: [value for rows in found for value in rows[column]] for column in found[0]}, num_proc)
    return {**report, "seconds": round(time.perf_counter() - started, 2)}


def enforce(report: dict, strict: bool = False) -> None:
    """Warn loudly about each skill a blind reader answers too well; under ``strict``, fail with one line instead."""
    if not report["flagged"]:
        return
    found = "; ".join(
        f"{skill} {100 * report['skills'][skill]['readers'][report['skills'][skill]['best_reader']]:.0f}% "
        f"({report['skills'][skill]['best_reader']})"
        for skill in report["flagged"]
    )
    message = (
        f"readers that never see the image answer {found}, more than {100 * MARGIN:.0f} points above the "
        f"{100 * CHANCE:.0f}% of chance: a model trained on these questions can learn the text instead of the image"
    )
    if strict:
        raise ShortcutError(f"{message} (audit in {BUILD_INFO_KEY!r} of the build info; fix the templates)")
    logger.warning("=" * 100)
    logger.warning(f"SHORTCUT: {message}. `lgt build --strict` fails on this.")
    logger.warning("=" * 100)


def card_section(report: dict) -> str:
    """The dataset card's account of the audit: every skill, every reader, the verdict."""
    names = [reader.name for reader in READERS]
    rows = []
    for skill, result in report["skills"].items():
        if not result["items"]:
            rows.append([skill, 0, *("" for _ in names), "", "", "in one split only"])
            continue
        verdict = "SHORTCUT" if result["flagged"] else "ok" if result["judged"] else "too few to judge"
        accuracies = [f"{100 * result['readers'][n]:.1f}%" if n in result["readers"] else "n/a" for n in names]
        over, error = f"{100 * result['over_chance']:+.1f}", f"{100 * result['standard_error']:.1f}"
        rows.append([skill, f"{result['items']:,}", *accuracies, over, error, verdict])
    header = ["skill", "scored", *names, "best over chance (points)", "standard error (points)", "verdict"]
    table = "\n".join(
        ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        + ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    )
    return (
        "## Blind-reader audit\n\n"
        "Can these questions be answered without looking at the image? For each skill, the accuracy of readers "
        "that see only the question and its options: the most frequent letter, the option whose words were most "
        "often correct in the template, the k-th smallest number, the longest or shortest option, and a logistic "
        "regression over the question's and options' words. Each split is scored by readers fit on the other "
        f"splits. Chance is {100 * CHANCE:.0f}%; a skill with at least {MIN_JUDGED_ITEMS} scored questions fails "
        f"when its best reader beats chance by more than {100 * MARGIN:.0f} points. A skill's standard error is that "
        "of an accuracy near chance over its scored questions: on questions with no shortcut at all (the same "
        "questions with their answers drawn at random) the best of these readers reads about one standard error "
        "over chance in half the draws, and two and a half or more one time in ten: that much is what noise alone "
        "gives."
        "\n\n" + table
    )
