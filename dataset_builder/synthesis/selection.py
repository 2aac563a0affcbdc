"""Which traces an SFT config keeps: correct final answers only, longer ones preferred, self-corrections balanced.

Per MCQ (``select_sft``):

1. **Eligible** traces end in the right answer: kinds O, O→O and X→O with ``correct`` true. A row whose kind and
   ``correct`` disagree is not eligible (it would teach a wrong answer under a right label, or the reverse).
2. **How many**: ``k = ceil(keep_ratio * eligible)``, at least 1 when anything is eligible. Many samples of one
   MCQ say nearly the same thing; keeping a share of them spreads the SFT budget over more images.
3. **Longer preferred**: eligible traces are ranked by the length of their text (rank 0 = longest; ties by id)
   and drawn without replacement with weight ``0.5 ** rank`` (Efraimidis-Spirakis keys, each trace's random
   number a hash of the seed and its id, so the draw does not depend on the order rows arrive in). Long traces
   are where verification and backtracking live, which is what the paper distils; the weights still let a
   shorter trace in now and then, so the config is not only the longest outlier of each MCQ.
4. **Balance** (the exact rule): with ``o`` = number of O ∪ O→O traces kept and ``x`` = number of X→O traces kept,
   every MCQ that has an eligible O or O→O trace keeps ``x <= floor(xo_ratio * o)``. The quotas are fixed
   first — ``o = min(O available, max(ceil(k / (1 + xo_ratio)), k - X→O available))``, then
   ``x = min(X→O available, floor(xo_ratio * o), k - o)`` — and filled in draw order, so length preference holds
   inside each group. An MCQ with *no* correct first answer (only X→O traces) cannot be balanced on its own: it
   keeps its X→O draw, and ``balance_across_mcqs`` brings the whole config back to the ratio.

Across MCQs (``balance_across_mcqs``): when the config's X→O total exceeds ``floor(xo_ratio * O ∪ O→O total)``,
X→O traces of the MCQs without an O/O→O trace are dropped until it does not. The ones kept are chosen by
(position in their MCQ's draw, hash of seed and id): first one trace from as many such hard MCQs as the budget
allows, then second ones, and so on. The result is a set of ids that depends only on the rows and the seed, not
on the order MCQs stream in. ``sft_selection`` does both steps over a stream of MCQs.

Defaults (config fields, in the lead's config object): ``keep_ratio = 0.5`` and ``xo_ratio = 1.0``.
Half of the correct samples of an MCQ keeps several distinct ways to reach the answer (the paper samples 10
short CoTs and expands each) while halving near-duplicates; ``xo_ratio = 1`` lets self-corrections be at most half
of the kept traces, so the model learns to catch a slip without learning that its first answer is usually wrong.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence

from datasets.utils import logging

logger = logging.get_logger(__name__)

DIRECT_KINDS = ("O", "O→O")  # correct from the first answer on
CORRECTED_KIND = "X→O"  # a wrong short CoT corrected by its expansion
ELIGIBLE_KINDS = (*DIRECT_KINDS, CORRECTED_KIND)
DEFAULT_KEEP_RATIO = 0.5
DEFAULT_XO_RATIO = 1.0


def _check_ratios(keep_ratio: float, xo_ratio: float) -> None:
    if not 0 < keep_ratio <= 1:
        raise ValueError(f"keep_ratio must be in (0, 1], got {keep_ratio}")
    if xo_ratio < 0:
        raise ValueError(f"xo_ratio must be >= 0, got {xo_ratio}")


def _unit(seed: str, trace_id: str) -> float:
    """A number in (0, 1) fixed by the seed and the trace id."""
    digest = hashlib.sha256(f"{seed}\0{trace_id}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") + 0.5) / 2**64


def is_eligible(trace: dict) -> bool:
    return trace["kind"] in ELIGIBLE_KINDS and bool(trace["correct"])


def draw_order(traces: Sequence[dict], seed: str) -> list[dict]:
    """The traces in the order a weighted draw without replacement takes them, weight ``0.5 ** length rank``.

    Efraimidis-Spirakis: the key ``u ** (1 / w)`` sorted descending is a draw without replacement; in logs that is
    ``log(-log u) - log w`` ascending, which stays finite for any rank.
    """
    ranked = sorted(traces, key=lambda trace: (-len(trace["text"]), trace["id"]))
    keys = [math.log(-math.log(_unit(seed, trace["id"]))) + rank * math.log(2) for rank, trace in enumerate(ranked)]
    return [trace for _, trace in sorted(zip(keys, ranked, strict=True), key=lambda pair: pair[0])]


def quotas(k: int, direct: int, corrected: int, xo_ratio: float) -> tuple[int, int]:
    """How many O ∪ O→O and X→O traces to keep out of ``k``, given how many of each there are (rule 4)."""
    if direct == 0:
        return 0, min(k, corrected)
    keep_direct = min(direct, max(math.ceil(k / (1 + xo_ratio)), k - corrected))
    keep_corrected = min(corrected, math.floor(xo_ratio * keep_direct), k - keep_direct)
    return keep_direct, keep_corrected


def select_sft(traces: list[dict], keep_ratio: float, xo_ratio: float, seed: str) -> list[dict]:
    """The traces of ONE MCQ that go to SFT, in draw order (see the module docstring for the rule)."""
    _check_ratios(keep_ratio, xo_ratio)
    eligible = [trace for trace in traces if is_eligible(trace)]
    if not eligible:
        return []
    k = max(1, math.ceil(keep_ratio * len(eligible)))
    corrected = sum(trace["kind"] == CORRECTED_KIND for trace in eligible)
    left = dict(zip(("direct", "corrected"), quotas(k, len(eligible) - corrected, corrected, xo_ratio), strict=True))
    kept = []
    for trace in draw_order(eligible, seed):
        group = "corrected" if trace["kind"] == CORRECTED_KIND else "direct"
        if left[group]:
            left[group] -= 1
            kept.append(trace)
    return kept


def balance_across_mcqs(selected: Iterable[Sequence[dict]], xo_ratio: float, seed: str) -> set[str]:
    """The ids to keep from per-MCQ selections (``select_sft`` outputs) so the config's X→O / O ∪ O→O <= xo_ratio.

    One pass over the stream; only ids and positions are held, never rows.
    """
    kept: set[str] = set()
    direct = 0
    unbalanced: list[tuple[int, float, str]] = []  # X→O of MCQs with no O/O→O: (position, tiebreak, id)
    for traces in selected:
        has_direct = any(trace["kind"] in DIRECT_KINDS for trace in traces)
        for position, trace in enumerate(traces):
            if has_direct or trace["kind"] != CORRECTED_KIND:
                kept.add(trace["id"])
                direct += trace["kind"] in DIRECT_KINDS
            else:
                unbalanced.append((position, _unit(seed, trace["id"]), trace["id"]))
    corrected = len(kept) - direct
    budget = max(0, math.floor(xo_ratio * direct) - corrected)
    unbalanced.sort()
    kept.update(trace_id for _, _, trace_id in unbalanced[:budget])
    if len(unbalanced) > budget:
        logger.debug(
            f"SFT balance: dropped {len(unbalanced) - budget} of {len(unbalanced)} X→O traces of MCQs with no "
            f"correct first answer (X→O may be at most {xo_ratio} x the {direct} O/O→O traces)"
        )
    return kept


def sft_selection(mcqs: Iterable[Sequence[dict]], keep_ratio: float, xo_ratio: float, seed: str) -> set[str]:
    """The ids of the traces an SFT config keeps, from a stream of MCQs (each: all the traces of one MCQ)."""
    return balance_across_mcqs(
        (select_sft(list(traces), keep_ratio, xo_ratio, seed) for traces in mcqs), xo_ratio, seed
    )
