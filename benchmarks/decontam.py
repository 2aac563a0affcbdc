"""Decontamination throughput: 10K stage-1 MCQs (question + image) checked against real benchmark items.

    python benchmarks/decontam.py                      # 10,000 MCQs from 1,500 built-in scenes
    python benchmarks/decontam.py --mcqs 20000 --scenes 3000

The index is the shared real benchmark samples (MMBench items with images, all MMStar questions, the MMLU sample),
built once and timed. The MCQs come from a default `lgt build --configs mcq_stage1` of built-in scenes (not timed),
and three passes are timed: questions alone, questions with images (each distinct image hashed once), and the
same again with every image already hashed (what an image shared by several MCQs costs).
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

SHARED_DATA = Path(os.environ.get("LGT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
BENCHMARKS = [
    SHARED_DATA / "mmbench_samples" / "items.json",
    SHARED_DATA / "mmstar_text" / "mmstar_val_text_with_llava_next_34b_predictions.jsonl",
    SHARED_DATA / "mmlu_test_sample" / "mmlu_test_10_per_subject.jsonl",
]


def mcqs(scenes: int, count: int) -> list[tuple[str, bytes]]:
    from lgt.build import build

    with tempfile.TemporaryDirectory() as folder:
        build(source="scenes", num_images=scenes, configs=("mcq_stage1",), output=f"{folder}/lgt")
        rows = []
        for path in sorted(glob.glob(f"{folder}/lgt/mcq_stage1/*.parquet")):
            table = pq.read_table(path, columns=["question", "image"])
            rows += [
                (q, image["bytes"])
                for q, image in zip(table["question"].to_pylist(), table["image"].to_pylist(), strict=True)
            ]
    if len(rows) < count:
        sys.exit(f"{scenes} scenes gave {len(rows)} MCQs, fewer than {count}: raise --scenes")
    return rows[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mcqs", type=int, default=10_000)
    parser.add_argument("--scenes", type=int, default=1_500)
    args = parser.parse_args()
    missing = [str(path) for path in BENCHMARKS if not path.exists()]
    if missing:
        sys.exit(f"shared benchmark samples not found: {missing}")
    from lgt.decontam import Decontaminator

    items = mcqs(args.scenes, args.mcqs)
    start = time.perf_counter()
    index = Decontaminator.from_benchmarks(BENCHMARKS)
    print(
        f"index: {sum(c['questions'] for c in index.benchmarks.values()):,} questions, "
        f"{sum(c['images'] for c in index.benchmarks.values()):,} images in {time.perf_counter() - start:.2f} s"
    )
    distinct = len({image for _, image in items})
    for label, with_images in (("questions only", False), ("questions + images", True), ("images hashed", True)):
        start = time.perf_counter()
        dropped = sum(index.is_contaminated(q, image if with_images else None) is not None for q, image in items)
        seconds = time.perf_counter() - start
        print(
            f"{label:>20}: {len(items):,} MCQs ({distinct:,} distinct images) in {seconds:.2f} s = "
            f"{len(items) / seconds:,.0f} items/s; {dropped} dropped"
        )


if __name__ == "__main__":
    main()
