"""Multiple-choice accuracy as lgt scores it, for ``evaluate`` users: load it by path, offline.

    import evaluate
    from lgt.eval import METRIC_PATH

    accuracy = evaluate.load(METRIC_PATH)
    accuracy.compute(predictions=["<answer>(B)</answer>"], references=["B"], options=[["cat", "dog"]],
                     categories=["animals"], aggregate="pooled", extract="strict")

Each prediction (the model's raw output) is read by ``lgt.answers.parse_answer`` and compared with its reference
letter; the score is aggregated as ``lgt eval`` aggregates it (``pooled``, ``category-mean`` or ``cv-bench``, which
also needs ``subcategories``). Returns the score and each category's, in percent, with the count of unparsed answers.
"""

import datasets
import evaluate
from lgt.answers import parse_answer
from lgt.eval.scoring import score

_DESCRIPTION = __doc__
_KWARGS_DESCRIPTION = """
Args:
    predictions: the models' raw outputs.
    references: the gold letters.
    options: each item's options, in order (lettered A onwards).
    categories: each item's category (optional; default one category).
    subcategories: each item's sub-category (optional; the cv-bench aggregation averages over them).
    aggregate: "pooled" (default), "category-mean" or "cv-bench".
    extract: "strict" (the last <answer> tag; default) or "leading-letter".
Returns:
    score, items, correct, unparsed, categories (each with score, items, correct, unparsed).
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MCQAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string"),
                    "references": datasets.Value("string"),
                    "options": datasets.List(datasets.Value("string")),
                    "categories": datasets.Value("string"),
                    "subcategories": datasets.Value("string"),
                }
            ),
        )

    def compute(self, *, predictions=None, references=None, options=None, categories=None, subcategories=None, **kw):
        """The score of the predictions (categories and sub-categories default to one for all)."""
        count = len(predictions or [])
        return super().compute(
            predictions=predictions,
            references=references,
            options=options,
            categories=categories if categories is not None else ["all"] * count,
            subcategories=subcategories if subcategories is not None else [""] * count,
            **kw,
        )

    def _compute(
        self, predictions, references, options, categories, subcategories, aggregate="pooled", extract="strict"
    ):
        rows = [
            {
                "category": category,
                "subcategory": subcategory,
                "answer": reference,
                "prediction": parse_answer(prediction, list(choices), extract),
            }
            for prediction, reference, choices, category, subcategory in zip(
                predictions, references, options, categories, subcategories, strict=True
            )
        ]
        return score(rows, aggregate)
