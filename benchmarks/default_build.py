"""The default `lgt build` (1,000 built-in scenes, every config): wall time, the scratch disk it takes beside its
output (its staging folder's Arrow cache, sampled while it runs) against the output's size, and parquet size per
config against the size of its distinct images.

    python benchmarks/default_build.py                                  # this checkout's lgt, 2 rounds
    python benchmarks/default_build.py --lgt OLD/.venv/bin/lgt --lgt .venv/bin/lgt --rounds 3

With several `--lgt` executables the rounds alternate between them, so a machine shared with other work slows them
alike; compare figures only from one run. Progress bars are off (HF_DATASETS_DISABLE_PROGRESS_BARS=1).
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import pyarrow.parquet as pq
from scratch import ScratchMeter, folder_bytes

HERE = os.path.dirname(os.path.abspath(__file__))


def distinct_image_bytes(paths: list[str]) -> int:
    """The bytes of each distinct image once, over all files of a config."""
    sizes = {}
    for path in paths:
        for batch in pq.ParquetFile(path).iter_batches(columns=["image"], batch_size=256):
            for data in batch.column("image").field("bytes").to_pylist():
                sizes[hashlib.sha1(data).digest()] = len(data)
    return sum(sizes.values())


def timed_build(lgt: str, folder: str) -> tuple[float, ScratchMeter]:
    shutil.rmtree(os.path.join(folder, "lgt"), ignore_errors=True)
    environment = {**os.environ, "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
    started = time.perf_counter()
    with ScratchMeter(os.path.join(folder, "lgt")) as meter:
        result = subprocess.run([lgt, "build"], cwd=folder, env=environment, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode:
        sys.exit(f"{lgt} build failed:\n{result.stderr}")
    return elapsed, meter


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = shutil.which("lgt", path=os.path.dirname(sys.executable)) or "lgt"
    cli.add_argument("--lgt", action="append", help=f"an lgt executable (repeatable; default {default})")
    cli.add_argument("--rounds", type=int, default=2)
    args = cli.parse_args()
    executables = args.lgt or [default]
    folders = {lgt: tempfile.mkdtemp(prefix="lgt-bench-", dir=os.path.join(HERE, "_work")) for lgt in executables}
    times = {lgt: [] for lgt in executables}
    for round_ in range(args.rounds):
        for lgt in executables:
            elapsed, meter = timed_build(lgt, folders[lgt])
            times[lgt].append(elapsed)
            output = folder_bytes(os.path.join(folders[lgt], "lgt"))
            print(
                f"round {round_ + 1} {lgt}: {elapsed:.1f} s (load {os.getloadavg()[0]:.2f}); scratch: Arrow cache at "
                f"most {meter.peak_cache / 1e6:.0f} MB = {meter.peak_cache / output:.2f}x the {output / 1e6:.0f} MB "
                f"output (with the output being written {meter.peak_total / output:.2f}x)",
                flush=True,
            )
    for lgt in executables:
        print(f"\n{lgt}: median {statistics.median(times[lgt]):.1f} s over {len(times[lgt])} builds")
        for config in ("scenes", "mcq_stage1"):
            paths = sorted(glob.glob(os.path.join(folders[lgt], "lgt", config, "*.parquet")))
            parquet, images = sum(os.path.getsize(p) for p in paths), distinct_image_bytes(paths)
            print(
                f"  {config}: parquet {parquet / 1e6:.1f} MB, distinct images {images / 1e6:.1f} MB, "
                f"{parquet / images:.2f}x"
            )
        shutil.rmtree(folders[lgt], ignore_errors=True)


if __name__ == "__main__":
    os.makedirs(os.path.join(HERE, "_work"), exist_ok=True)
    main()
