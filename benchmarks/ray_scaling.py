"""`lgt build --ray --shards K` on a local Ray cluster: wall time with 1, 2 and 4 parts, against a plain build.

    python benchmarks/ray_scaling.py                       # 100K stage-1 MCQs from a COCO-scale JSON Lines source
    python benchmarks/ray_scaling.py --mcqs 20000 --shards 1 2 4 --num-cpus 4

The source is `stage1_scale.py`'s (images referenced, `--images path`); the cluster is started once, before the
timings (its start-up is printed apart). Each part is a Ray task asking for one CPU, so on a machine with C cores at
most C parts run at once; every build is checked to have the same rows as the plain one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def rows(output: str) -> dict:
    with open(os.path.join(output, "lgt_build.json")) as f:
        return json.load(f)["rows"]


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--mcqs", type=int, default=100_000)
    cli.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    cli.add_argument("--num-cpus", type=int, default=os.cpu_count())
    cli.add_argument("--work-dir", default=os.path.join(HERE, "_work"))
    args = cli.parse_args()
    os.environ.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"})
    import ray
    from lgt.build import build
    from lgt.cluster import ray_build
    from stage1_scale import MCQS_PER_IMAGE, write_annotations

    os.makedirs(args.work_dir, exist_ok=True)
    num_images = round(args.mcqs / MCQS_PER_IMAGE)
    annotations = os.path.join(args.work_dir, f"scenes-{num_images}.jsonl")
    if not os.path.exists(annotations):
        write_annotations(annotations, num_images)
    settings = {"source": f"jsonl:{annotations}", "configs": ("mcq_stage1",), "images": "path"}
    output = os.path.join(args.work_dir, "ray-out")

    started = time.perf_counter()
    shutil.rmtree(output, ignore_errors=True)
    expected = build(output=output, **settings)["rows"]
    plain = time.perf_counter() - started
    started = time.perf_counter()
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    print(f"local Ray cluster of {args.num_cpus} CPUs started in {time.perf_counter() - started:.1f} s")
    print(f"{num_images:,} images, {sum(expected['mcq_stage1'].values()):,} MCQs; plain lgt build: {plain:.1f} s")
    print(f"{'parts':>5} {'wall s':>7} {'vs plain':>8}")
    for shards in args.shards:
        shutil.rmtree(output, ignore_errors=True)
        shutil.rmtree(output + ".parts", ignore_errors=True)
        started = time.perf_counter()
        info = ray_build(output=output, shards=shards, **settings)
        wall = time.perf_counter() - started
        assert info["rows"] == expected, "the merged parts differ from the plain build"
        print(f"{shards:>5} {wall:>7.1f} {wall / plain:>7.2f}x", flush=True)
    ray.shutdown()
    shutil.rmtree(output, ignore_errors=True)
    shutil.rmtree(output + ".parts", ignore_errors=True)


if __name__ == "__main__":
    main()
