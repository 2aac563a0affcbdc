"""DPO preference pairs from the traces of one MCQ: a right final answer over a wrong one, like compared with like.

The rule (the paper's pairs, each side of the same shape so the pair differs in what was seen, not in its form):

- **X→O over its own X**: the same short CoT (``short`` equal), once left wrong and once corrected by its
  continuation: the pair differs only in the correction, the sharpest signal for self-correction.
- **O over its own O→X**: the same short CoT, once left right and once talked out of it by its continuation.
- **O over X**: two short CoTs, one right and one wrong.
- **O→O over O→X and X→X, X→O over X→X**: two continued traces, one ending right and one ending wrong.

A short CoT is never paired with another sample's continued trace (``O`` over an ``X→X`` of another sample): the
two would differ in length and in having a continuation at all, which a reader tells without the image. The first
two rules pair a trace with its own prefix; the card's trace audit reports them apart.

A pair is kept only when the chosen trace is correct and the rejected one is not (``correct`` is checked as
well as ``kind``, so a mislabelled row can never put a wrong answer over a right one), and when the two texts
differ. Pairs are deduplicated by their (chosen text, rejected text): repeated samples with identical text make
one pair. The order is deterministic: by rule as listed, then by chosen id, then by rejected id.

``max_pairs`` caps the pairs per MCQ (an MCQ with 10 O and 10 X traces has 100 O-over-X pairs, mostly the same
contrast). Under a cap the X→O-over-own-X pairs come first, then the others in an order fixed by a hash of the
two ids (a spread over chosen and rejected traces rather than the first chosen trace paired with everything).
"""

from __future__ import annotations

import hashlib

RULES = (  # (chosen kind, rejected kinds, the same short CoT: required (True) or ruled out (False))
    ("X→O", ("X",), True),
    ("O", ("O→X",), True),
    ("O", ("X",), False),
    ("O→O", ("O→X", "X→X"), False),
    ("X→O", ("X→X",), False),
)


def _spread(chosen: dict, rejected: dict) -> bytes:
    return hashlib.sha256(f"{chosen['id']}\0{rejected['id']}".encode()).digest()


def preference_pairs(traces: list[dict], max_pairs: int | None = None) -> list[tuple[dict, dict]]:
    """``(chosen, rejected)`` pairs of ONE MCQ's traces by the rule above; at most ``max_pairs`` when given."""
    ordered = sorted(traces, key=lambda trace: trace["id"])
    right = [trace for trace in ordered if trace["correct"]]
    wrong = [trace for trace in ordered if not trace["correct"]]
    seen: set[tuple[str, str]] = set()
    pairs: list[tuple[int, dict, dict]] = []  # (rule, chosen, rejected)
    for rule, (chosen_kind, rejected_kinds, same_short) in enumerate(RULES):
        for chosen in right:
            if chosen["kind"] != chosen_kind:
                continue
            for rejected in wrong:
                if rejected["kind"] not in rejected_kinds or (rejected["short"] == chosen["short"]) != same_short:
                    continue
                texts = (chosen["text"], rejected["text"])
                if texts[0] == texts[1] or texts in seen:
                    continue
                seen.add(texts)
                pairs.append((rule, chosen, rejected))
    if max_pairs is not None and len(pairs) > max_pairs:
        priority = sorted(pairs, key=lambda pair: (pair[0] != 0, _spread(pair[1], pair[2])))
        keep = {(id(chosen), id(rejected)) for _, chosen, rejected in priority[:max_pairs]}
        pairs = [pair for pair in pairs if (id(pair[1]), id(pair[2])) in keep]
    return [(chosen, rejected) for _, chosen, rejected in pairs]
