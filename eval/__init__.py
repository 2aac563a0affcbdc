"""``lgt.eval``: the paper's benchmarks, asked the way lgt trains, scored strictly, compared with paired statistics.

- ``benchmarks``: one registry (V*Bench, MMVP, RealWorldQA, CV-Bench, MMStar and MMStar-V, MME-RealWorld and
  MME-RealWorld-V, MMLU-Pro, MMLU, MMBench, BLINK, an lgt build's ``test`` split); each adapter turns a row of the
  benchmark's Hub copy (or a local file with the same fields) into one MCQ ``Item`` with any number of options.
- ``run``: every item through ``lgt.generation.Engine`` in the SFT rows' prompt shape, greedy, cached.
- ``scoring``: ``lgt.answers.parse_answer`` reads each answer; each benchmark's own aggregation; paired bootstrap
  intervals and McNemar's test for two runs on the same items.
- ``report``: ``report.md``, the score lines, the comparison table and chart.
- ``mcq_accuracy.py``: the same scoring as an ``evaluate`` metric, loaded by path (``evaluate.load(METRIC_PATH)``).

    lgt eval run --model vllm:ORG/CHECKPOINT --benchmark paper --output runs/checkpoint
    lgt eval compare runs/base runs/checkpoint
"""

from pathlib import Path

from .benchmarks import BENCHMARKS, PAPER, Benchmark, Item, load, resolve
from .run import run_eval
from .scoring import score_predictions

METRIC_PATH = str(Path(__file__).with_name("mcq_accuracy.py"))

__all__ = [
    "BENCHMARKS",
    "METRIC_PATH",
    "PAPER",
    "Benchmark",
    "Item",
    "load",
    "resolve",
    "run_eval",
    "score_predictions",
]
