"""``lgt detect`` throughput: images per second through the detector, and what a rerun from the cache costs.

    python benchmarks/detect_throughput.py                                   # tiny random Grounding DINO, CPU
    python benchmarks/detect_throughput.py --docci /data/docci --images 2000 \\
        --detector transformers:IDEA-Research/grounding-dino-base --batch-size 16   # a GPU machine

Without ``--docci`` the images are the COCO sample's in DOCCI's layout (``../shared/data``, as the tests make it);
without ``--detector`` the tiny random Grounding DINO of ``tests/tiny_models.py`` is built in a temporary folder.
Three figures: the dry run's queries and passes per image, ``lgt detect`` end to end with an empty cache (model
load included), and the same command again (every pass cached: no model is loaded). The detector's own rate is
the passes of the first run over the time spent in its batches (processor and forward pass), without reading the
source, decoding images or loading the model.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from lgt.cli import main  # noqa: E402
from lgt.detection.detector import Detector  # noqa: E402


def _lgt(*args: str) -> tuple[float, str]:
    out = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out):
        assert main(["detect", *args, "-q"]) == 0
    return time.perf_counter() - started, out.getvalue()


def run(docci: Path, detector: str, images: int | None, batch_size: int, work: Path) -> None:
    args = [f"docci:{docci}", "--detector", detector, "--output", str(work / "scenes.jsonl")]
    args += ["--cache", str(work / "detections.sqlite"), "--batch-size", str(batch_size), "--image-root", str(docci)]
    args += ["--num-images", str(images)] if images else []
    _, plan = _lgt(*args, "--dry-run")
    print(plan.strip())
    spent = {"detect": 0.0}
    original = Detector.detect

    def timed(self, items):
        started = time.perf_counter()
        try:
            return original(self, items)
        finally:
            spent["detect"] += time.perf_counter() - started

    Detector.detect = timed
    cold, summary = _lgt(*args)
    Detector.detect = original
    warm, _ = _lgt(*args)
    count = int(plan.split(" images,")[0].rsplit(" ", 1)[-1].replace(",", ""))
    passes = int(plan.split(" detector passes")[0].rsplit(" ", 1)[-1].replace(",", ""))
    print(summary.strip().splitlines()[0])
    print(
        f"empty cache: {cold:.1f} s end to end ({count / cold:.2f} images/s, reading, model load and writing "
        f"included); the model's batches alone (processor and forward): {spent['detect']:.1f} s, "
        f"{passes / spent['detect']:.2f} passes/s, {count / spent['detect']:.2f} images/s"
    )
    print(f"rerun from the cache: {warm:.1f} s ({count / warm:.1f} images/s), no model loaded")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docci", type=Path, default=None, help="a DOCCI root (default: the COCO sample as DOCCI)")
    parser.add_argument("--detector", default=None, help="transformers:MODEL (default: a tiny random Grounding DINO)")
    parser.add_argument("--images", type=int, default=None, help="the first N images (default: all)")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lgt-detect-bench-") as folder:
        work = Path(folder)
        docci = args.docci
        if docci is None:
            from conftest import write_docci  # (the tests' offline environment: only for the sample)

            docci = write_docci(work / "docci")
        detector = args.detector
        if detector is None:
            from tiny_models import build_tiny_grounding_dino

            detector = f"transformers:{build_tiny_grounding_dino(work / 'tiny-grounding-dino')}"
        run(docci, detector, args.images, args.batch_size, work)


if __name__ == "__main__":
    cli()
