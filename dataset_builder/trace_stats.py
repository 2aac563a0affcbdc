"""What a trace config holds, for its card: kinds, lengths, and how often traces verify, backtrack and set subgoals.

The behaviours are the paper's (after Gandhi et al.'s cognitive behaviours): long grounded thoughts are worth
distilling because they check themselves, back out of mistakes and break a question into steps. Two ways to
count them:

- **Markers** (default, free): a trace shows a behaviour when its reasoning contains one of the phrases in
  ``MARKERS`` (case-insensitive as ``re.IGNORECASE``, whole words as ``(?<!\\w)…(?!\\w)``). The list is versioned
  (``MARKERS_VERSION``) and the card says which version counted, so numbers from two builds compare only under one
  version. All phrases are found in one pass of an Aho-Corasick automaton: a card counts every trace of every
  config, where one regular expression per behaviour took ten times as long.
- **An LLM judge** through the generation engine (``judge_statistics``): the ``trace_judge`` prompt asks for one
  JSON object of three booleans; the reply is parsed strictly and anything else is a counted reject.

Both read the reasoning only (inside ``<think>``, the answer tag left out) with the trace's ``cue`` removed: the
cue ("Wait,", "Hmm,", "Alternatively,") is the prefill the pipeline wrote, not something the model chose to do, and
counting it would make every expansion "backtrack" by construction. SFT rows that do not carry ``cue`` are
counted as they are.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence

import ahocorasick
from datasets.utils import logging

from . import markdown
from .generation import Engine, Message, Request, Sampling
from .prompts import Prompt, load_prompt

logger = logging.get_logger(__name__)

KINDS = ("O", "O→O", "X→O", "X", "O→X", "X→X")
BEHAVIOURS = ("verify", "backtrack", "subgoal")
MARKERS_VERSION = 1
MARKERS = {
    "verify": (
        "let me check",
        "let me verify",
        "let me double-check",
        "let me double check",
        "double-check",
        "double check",
        "verify",
        "verifying",
        "verified",
        "check again",
        "checking again",
        "re-check",
        "recheck",
        "cross-check",
        "sanity check",
        "to confirm",
        "confirms",
        "make sure",
        "count again",
        "counting again",
        "recount",
        "once more",
        "looking again",
        "look again",
        "on a second look",
        "that confirms",
    ),
    "backtrack": (
        "wait",
        "actually",
        "that's wrong",
        "that is wrong",
        "that's not right",
        "that is not right",
        "correct that",
        "correct myself",
        "i made a mistake",
        "my mistake",
        "i was wrong",
        "on second thought",
        "scratch that",
        "let me reconsider",
        "reconsider",
        "not quite",
        "i misread",
        "i miscounted",
        "misjudged",
        "i skipped",
        "i missed",
        "i overlooked",
        "was wrong",
        "an error",
        "does not add up",
        "doesn't add up",
        "seems off",
        "wrong way",
        "that changes things",
    ),
    "subgoal": (
        "first,",
        "first i",
        "first let",
        "first we",
        "firstly",
        "next,",
        "next i",
        "next let",
        "step 1",
        "step one",
        "then i",
        "finally,",
        "let's break",
        "let me break",
        "break this down",
        "break it down",
        "sub-question",
        "subquestion",
        "two parts",
        "to answer this",
        "i need to find",
        "one by one",
        "in turn",
    ),
}
# What ``str.lower`` does not fold as ``re.IGNORECASE`` does for the markers' characters (the tests check this list
# against the running Python's Unicode tables), and typographic apostrophes: one character for one, so positions and
# word boundaries stay where they were.
FOLDS = {"\u0130": "i", "\u0131": "i", "\u017f": "s", "\u2019": "'"}


def _automaton() -> ahocorasick.Automaton:
    automaton = ahocorasick.Automaton()
    for behaviour, markers in MARKERS.items():
        for marker in markers:
            automaton.add_word(marker, (behaviour, len(marker)))
    automaton.make_automaton()
    return automaton


_MARKERS = _automaton()
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
_FENCE = re.compile(r"^```(?:json)?\s*\n(.*)\n```$", re.DOTALL)
JUDGE_PROMPT = "trace_judge"
JUDGE_SCHEMA = {
    "type": "object",
    "properties": {behaviour: {"type": "boolean"} for behaviour in BEHAVIOURS},
    "required": list(BEHAVIOURS),
    "additionalProperties": False,
}


def row_text(row: dict, field: str | None = None) -> str:
    """A row's assistant text: ``text`` (trace rows), or the last assistant turn of a message list (``messages`` of
    SFT rows, or ``chosen`` / ``rejected`` of DPO rows when ``field`` names one)."""
    field = field or ("text" if "text" in row else "messages")
    value = row[field]
    if isinstance(value, str):
        return value
    turns = [message for message in value if message["role"] == "assistant"]
    content = turns[-1]["content"] if turns else ""
    if isinstance(content, str):
        return content
    return "".join(part.get("text") or "" for part in content if part.get("type") == "text")


def reasoning(text: str, cue: str = "") -> str:
    """The reasoning of a trace: what ``<think>`` holds (the whole text without one), the pipeline's cue removed."""
    start = text.find(THINK_OPEN)
    end = text.find(THINK_CLOSE, start + len(THINK_OPEN)) if start >= 0 else -1
    thought = text[start + len(THINK_OPEN) : end] if end >= 0 else text
    if not cue or cue not in thought:
        return thought
    before, _, after = thought.partition(cue)
    return f"{before.rstrip()} {after.lstrip()}"


def behaviours(thought: str) -> dict[str, bool]:
    """Which behaviours a reasoning shows by the markers."""
    for character, folded in FOLDS.items():
        thought = thought.replace(character, folded)
    text = thought.lower()
    shown = set()
    for end, (behaviour, size) in _MARKERS.iter(text):
        start = end - size + 1
        if not (_is_word(text, start - 1) or _is_word(text, end + 1)):
            shown.add(behaviour)
    return {behaviour: behaviour in shown for behaviour in BEHAVIOURS}


def _is_word(text: str, index: int) -> bool:
    """Whether ``text[index]`` is a word character as ``\\w`` means it (outside the text: no)."""
    return 0 <= index < len(text) and (text[index].isalnum() or text[index] == "_")


def _distribution(values: Sequence[int]) -> dict:
    """min / median / p90 (nearest rank) / max; zeros for no values."""
    if not values:
        return {"min": 0, "median": 0, "p90": 0, "max": 0}
    ordered = sorted(values)
    return {
        "min": ordered[0],
        "median": statistics.median(ordered),
        "p90": ordered[math.ceil(0.9 * len(ordered)) - 1],
        "max": ordered[-1],
    }


def _shares(counts: Counter, total: int) -> dict[str, float | None]:
    """Each behaviour's share of ``total``; ``None`` (shown "n/a") when there is nothing to share: 0 of 0 is no 0%."""
    return {behaviour: counts[behaviour] / total if total else None for behaviour in BEHAVIOURS}


def trace_statistics(rows: Iterable[dict], field: str | None = None) -> dict:
    """Marker statistics of one config's rows (trace or SFT rows; DPO rows with ``field="chosen"``/``"rejected"``).

    Returns ``traces``, ``kinds`` (count per kind, in the pipeline's order), ``chars`` and ``words`` (whitespace
    words) length distributions of the full text, ``behaviours`` (share of traces showing each) and
    ``behaviours_by_kind``, and the ``markers_version`` that counted.
    """
    kinds: Counter = Counter()
    chars, words = [], []
    shown: Counter = Counter()
    shown_by_kind: dict[str, Counter] = {}
    for row in rows:
        text = row_text(row, field)
        kind = row.get("kind", "")
        kinds[kind] += 1
        chars.append(len(text))
        words.append(len(text.split()))
        found = [name for name, present in behaviours(reasoning(text, row.get("cue") or "")).items() if present]
        shown.update(found)
        shown_by_kind.setdefault(kind, Counter()).update(found)
    order = [kind for kind in KINDS if kind in kinds] + sorted(set(kinds) - set(KINDS))
    return {
        "markers_version": MARKERS_VERSION,
        "traces": len(chars),
        "kinds": {kind: kinds[kind] for kind in order},
        "chars": _distribution(chars),
        "words": _distribution(words),
        "behaviours": _shares(shown, len(chars)),
        "behaviours_by_kind": {kind: _shares(shown_by_kind[kind], kinds[kind]) for kind in order},
    }


# ---- the LLM judge ----


def judge_request(row: dict, prompt: Prompt, field: str | None = None, max_tokens: int = 64) -> Request:
    """One greedy request asking the judge to label a trace's reasoning (JSON schema where the backend takes it)."""
    thought = reasoning(row_text(row, field), row.get("cue") or "").strip()
    return Request(
        messages=(Message.text("user", prompt.render(reasoning=thought)),),
        sampling=Sampling(temperature=0.0, max_tokens=max_tokens),
        schema=JUDGE_SCHEMA,
        template=prompt.id,
    )


def parse_judgement(text: str) -> tuple[dict[str, bool] | None, str | None]:
    """The judge's labels, or ``None`` and why not: one JSON object (bare or in one code fence), exactly the three
    behaviours as keys, each a JSON boolean. Nothing is guessed from a reply that is not that."""
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    try:
        value = json.loads(fenced.group(1) if fenced else stripped)
    except json.JSONDecodeError:
        return None, "not_json"
    if not isinstance(value, dict) or set(value) != set(BEHAVIOURS):
        return None, "wrong_keys"
    if not all(isinstance(value[behaviour], bool) for behaviour in BEHAVIOURS):
        return None, "not_boolean"
    return {behaviour: value[behaviour] for behaviour in BEHAVIOURS}, None


def judge_statistics(
    rows: Iterable[dict], engine: Engine, field: str | None = None, version: int | None = None
) -> dict:
    """Behaviour shares by an LLM judge: every row judged once through the engine (cached), replies parsed strictly.

    Returns ``judge`` (model id), ``prompt`` (its id), ``judged``, ``accepted``, ``rejects`` (count per reason) and
    ``behaviours`` (shares among the accepted replies; ``None`` when no reply was accepted).
    """
    prompt = load_prompt(JUDGE_PROMPT, version)
    requests = [judge_request(row, prompt, field) for row in rows]
    rejects: Counter = Counter()
    shown: Counter = Counter()
    accepted = 0
    for response in engine.generate(requests, desc="Judging traces"):
        labels, reason = parse_judgement(response.texts[0])
        if labels is None:
            rejects[reason] += 1
            continue
        accepted += 1
        shown.update(behaviour for behaviour, present in labels.items() if present)
    if rejects:
        logger.warning(f"trace judge {engine.model_id}: {sum(rejects.values())} of {len(requests)} replies rejected")
    return {
        "judge": engine.model_id,
        "prompt": prompt.id,
        "judged": len(requests),
        "accepted": accepted,
        "rejects": dict(sorted(rejects.items())),
        "behaviours": _shares(shown, accepted),
    }


# ---- the card ----


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def _percent(share: float | None) -> str:
    return "n/a" if share is None else f"{100 * share:.1f}%"


def _lengths(distribution: dict) -> str:
    return " / ".join(f"{distribution[key]:,.0f}" for key in ("min", "median", "p90", "max"))


def statistics_section(stats_by_config: dict[str, dict]) -> str:
    """The card's trace statistics: a table each for kinds, lengths and behaviours (and the judge's, when run).

    ``stats_by_config`` maps a config name to ``trace_statistics`` output, optionally with a ``judge`` entry
    holding ``judge_statistics`` output.
    """
    configs = list(stats_by_config)
    if not configs:
        return ""
    versions = sorted({stats["markers_version"] for stats in stats_by_config.values()})
    kinds = [kind for kind in KINDS if any(kind in s["kinds"] for s in stats_by_config.values())]
    parts = [
        "## Trace statistics",
        "",
        "Kinds: O = correct short CoT; O→O, X→O, O→X, X→X = a short CoT (right O or wrong X) expanded by the "
        "reasoner, ending right or wrong; X = a wrong short CoT.",
        "",
        _table(
            ["config", "traces", *kinds],
            [
                [c, f"{s['traces']:,}", *(f"{s['kinds'].get(k, 0):,}" for k in kinds)]
                for c, s in stats_by_config.items()
            ],
        ),
        "",
        "Length of the assistant text (min / median / p90 / max):",
        "",
        _table(
            ["config", "characters", "words"],
            [[c, _lengths(s["chars"]), _lengths(s["words"])] for c, s in stats_by_config.items()],
        ),
        "",
        "Share of traces whose reasoning shows each behaviour, by marker phrases (markers "
        f"v{', v'.join(map(str, versions))} in `lgt.trace_stats`; the cue the pipeline wrote is not counted):",
        "",
        _table(
            ["config", *BEHAVIOURS],
            [[c, *(_percent(s["behaviours"][b]) for b in BEHAVIOURS)] for c, s in stats_by_config.items()],
        ),
    ]
    judged = {c: s["judge"] for c, s in stats_by_config.items() if s.get("judge")}
    if judged:
        parts += [
            "",
            "The same, as labelled by an LLM judge (shares of the replies that parsed; rejected replies counted):",
            "",
            _table(
                ["config", "judge", "prompt", "judged", "rejected", *BEHAVIOURS],
                [
                    [
                        c,
                        markdown.code(j["judge"]),
                        markdown.code(j["prompt"]),
                        f"{j['judged']:,}",
                        f"{j['judged'] - j['accepted']:,}",
                        *(_percent(j["behaviours"][b]) for b in BEHAVIOURS),
                    ]
                    for c, j in judged.items()
                ],
            ),
        ]
    return "\n".join(parts) + "\n"
