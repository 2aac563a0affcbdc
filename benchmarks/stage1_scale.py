"""Stage-1 at COCO scale: annotations -> 1M grounded MCQs -> parquet, timed against this machine's floor.

    python benchmarks/stage1_scale.py                 # 100K and 1M MCQs, 2 workers
    python benchmarks/stage1_scale.py --mcqs 100000   # one size only

It writes a synthetic COCO-scale annotation set (≈7 objects per image from 80 categories, 5 captions joined) as
JSON Lines with image files referenced, not decoded (`--images path`), then runs `lgt build --configs
mcq_stage1` in a child process, sampling the RSS of its whole process tree and the scratch disk of its staging
folder (the Arrow cache beside the output it writes), and reads the time of each phase from its log (the scenes,
mcq_stage1, then writing parquet, the audit and the card). The floor is measured in the same run: building as many
plain rows of the same shape in Python and writing them with pyarrow.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
from scratch import ScratchMeter, folder_bytes

HERE = os.path.dirname(os.path.abspath(__file__))
CATEGORIES = [f"category {i}" for i in range(80)]
MCQS_PER_IMAGE = 5.0  # measured yield of these scenes (≈7 objects of 4-7 categories), stage-1 v2


def write_annotations(path: str, num_images: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    from PIL import Image

    heights = (427, 480, 512)
    for height in heights:  # one image per size: `--images path` checks each file's size against the annotations
        Image.new("RGB", (640, height), (120, 140, 160)).save(os.path.join(os.path.dirname(path), f"640x{height}.jpg"))
    with open(path, "w") as f:
        for i in range(num_images):
            width, height = 640, rng.choice(heights)
            names = rng.sample(CATEGORIES, rng.randint(4, 7))
            objects = []
            for j in range(max(1, round(rng.gauss(7, 2)))):
                w, h = rng.uniform(20, width / 2), rng.uniform(20, height / 2)
                x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
                objects.append(
                    {
                        "id": j,
                        "name": rng.choice(names),
                        "bbox": [round(x, 2), round(y, 2), round(x + w, 2), round(y + h, 2)],
                    }
                )
            caption = " ".join(f"Caption {k} of image {i}, which shows {rng.choice(names)}." for k in range(5))
            f.write(
                json.dumps(
                    {
                        "image_id": f"img-{i:07d}",
                        "image": f"640x{height}.jpg",
                        "width": width,
                        "height": height,
                        "caption": caption,
                        "objects": objects,
                    }
                )
                + "\n"
            )


def run_build(annotations: str, output: str, num_proc: int, configs: str = "mcq_stage1") -> dict:
    """``lgt build`` of ``configs`` in a child process: its wall time, phases, rows, peak RSS and scratch disk."""
    command = [
        sys.executable,
        "-m",
        "lgt.cli",
        "build",
        "--source",
        f"jsonl:{annotations}",
        "--configs",
        configs,
        "--images",
        "path",
        "--output",
        output,
        "--num-proc",
        str(num_proc),
        "-v",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TQDM_DISABLE": "1"}
    started = time.perf_counter()
    child = psutil.Popen(
        command, env=env, cwd=os.path.dirname(output), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    peak_tree, peak_single, log = 0, 0, []
    reader = threading.Thread(target=lambda: log.extend(child.stdout), daemon=True)  # a full pipe would block it
    reader.start()
    with ScratchMeter(output) as scratch:
        while child.poll() is None:
            try:
                processes = [child, *child.children(recursive=True)]
                rss = [p.memory_info().rss for p in processes]
                peak_tree, peak_single = max(peak_tree, sum(rss)), max(peak_single, max(rss))
            except psutil.Error:
                pass
            time.sleep(0.05)
    wall = time.perf_counter() - started
    reader.join()
    if child.returncode:
        raise SystemExit(f"build failed:\n{''.join(log)}")
    info = json.load(open(os.path.join(output, "lgt_build.json")))
    mcqs = sum(info["rows"].get("mcq_stage1", {}).values())
    phases = dict(re.findall(r"lgt: (\w+) prepared in ([\d.]+) s", "".join(log)))
    return {
        "mcqs": mcqs,
        "wall_s": wall,
        "peak_rss_tree_mb": peak_tree / 2**20,
        "peak_rss_single_mb": peak_single / 2**20,
        "phases": {name: float(seconds) for name, seconds in phases.items()},
        "scratch_mb": scratch.peak_cache / 1e6,
        "output_mb": folder_bytes(output) / 1e6,
        "info": info,
    }


def floor(num_rows: int, path: str) -> float:
    """Plain rows of the MCQ shape built in Python and written with pyarrow: what any builder must at least pay."""
    started = time.perf_counter()
    writer = None
    batch = []
    for i in range(num_rows):
        batch.append(
            {
                "id": f"{i:016x}",
                "image_id": f"img-{i // 8:07d}",
                "image": {"bytes": None, "path": "a.jpg"},
                "question": f"How many things number {i % 9} are there?",
                "options": ["1", "2", "3", "4"],
                "answer": "ABCD"[i % 4],
                "skill": "counting",
                "level": 1,
                "grounding": [{"object_id": i, "name": "thing", "bbox": [1.0, 2.0, 3.0, 4.0]}],
                "parents": [],
                "generator": "stage1/count@1",
                "source": "jsonl",
                "license": "",
            }
        )
        if len(batch) == 10_000:
            table = pa.Table.from_pylist(batch)
            writer = writer or pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
            batch = []
    if batch:
        table = pa.Table.from_pylist(batch)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()
    return time.perf_counter() - started


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--mcqs", type=int, nargs="+", default=[100_000, 1_000_000])
    cli.add_argument("--num-proc", type=int, default=2)
    cli.add_argument("--work-dir", default=os.path.join(HERE, "_work"))
    args = cli.parse_args()
    os.makedirs(args.work_dir, exist_ok=True)
    print(
        f"{'MCQs':>10} {'images':>8} {'wall s':>7} {'MCQs/s':>9} {'peak RSS tree MB':>17} "
        f"{'largest process MB':>19} {'floor s':>8} {'vs floor':>9}"
    )
    for target in args.mcqs:
        num_images = round(target / MCQS_PER_IMAGE)
        annotations = os.path.join(args.work_dir, f"scenes-{num_images}.jsonl")
        if not os.path.exists(annotations):
            write_annotations(annotations, num_images)
        output = os.path.join(args.work_dir, "bench-out")
        shutil.rmtree(output, ignore_errors=True)
        result = run_build(annotations, output, args.num_proc)
        floor_s = floor(result["mcqs"], os.path.join(args.work_dir, "floor.parquet"))
        print(
            f"{result['mcqs']:>10,} {num_images:>8,} {result['wall_s']:>7.1f} "
            f"{result['mcqs'] / result['wall_s']:>9,.0f} {result['peak_rss_tree_mb']:>17,.0f} "
            f"{result['peak_rss_single_mb']:>19,.0f} {floor_s:>8.1f} {result['wall_s'] / floor_s:>9.1f}x",
            flush=True,
        )
        phases = result["phases"]
        rest = result["wall_s"] - sum(phases.values())
        print(
            "           phases: "
            + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in phases.items())
            + f", the rest (start, parquet, audit, card) {rest:.1f} s; scratch {result['scratch_mb']:,.0f} MB "
            f"for a {result['output_mb']:,.0f} MB output",
            flush=True,
        )
        shutil.rmtree(output, ignore_errors=True)


if __name__ == "__main__":
    main()
