"""Warm rebuild of LLM-written stage 1 from the generation cache: zero model calls, how fast?

    python benchmarks/generation_cache.py                  # 100K MCQs (25K scenes x 4 questions)
    python benchmarks/generation_cache.py --mcqs 20000
    python benchmarks/generation_cache.py --questions-per-scene 1   # 100K generations of one question each
    python benchmarks/generation_cache.py --build          # and a whole `lgt build` from that cache

It makes synthetic COCO-like scenes, stores one realistic teacher answer per scene (4 questions, ~1.3 KB of JSON)
under the key the engine computes for that scene's request, then times, in a fresh process state:
  - raw cache reads: ``GenerationCache.get_many`` over every key (items/s);
  - the whole LLM stage-1 path with a cache-only engine: render every prompt, hash every request, read the cache,
    parse and validate every question (``write_mcqs``), which is what a rebuild does before writing rows;
  - with ``--build``, the whole rebuild: ``lgt build --teacher ... --cache-only --images path`` from the same
    annotations, scenes and rows and parquet and card and audit included, with zero model calls.
Image bytes are not involved: the teacher reads captions and boxes only.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import time

from lgt.build import build
from lgt.generation import Engine, Response
from lgt.scene import Scene, SceneObject
from lgt.synthesis.llm_mcq import MCQWriter, write_mcqs
from stage1_scale import write_annotations

HERE = os.path.dirname(os.path.abspath(__file__))


def make_scenes(count: int, work: str) -> list[Scene]:
    """The synthetic COCO-scale scenes of ``stage1_scale.py``, read back as ``Scene`` records."""
    path = os.path.join(work, "annotations.jsonl")
    write_annotations(path, count)
    with open(path) as f:
        records = [json.loads(line) for line in f]
    return [
        Scene(
            r["image_id"],
            r["image"],
            r["width"],
            r["height"],
            r["caption"],
            [SceneObject(o["id"], o["name"], o["bbox"]) for o in r["objects"]],
            "bench",
        )
        for r in records
    ]


def teacher_answer(scene: Scene, rng: random.Random, count: int) -> str:
    """Up to four well-formed questions of different skills, as a good teacher writes them."""
    first, second = scene.objects[0], scene.objects[-1]
    instances = sum(o.name == first.name for o in scene.objects)
    questions = [
        {
            "question": f"How many {first.name} objects can be seen in the picture?",
            "options": [str(instances + k) for k in range(4)],
            "answer": "A",
            "skill": "counting",
            "objects": [o.id for o in scene.objects if o.name == first.name],
        },
        {
            "question": f"Where is the {first.name} relative to the {second.name} in this scene?",
            "options": ["to the left of it", "to the right of it", "above it", "below it"],
            "answer": rng.choice("ABCD"),
            "skill": "spatial_relation",
            "objects": [first.id, second.id],
        },
        {
            "question": f"Which part of the image contains the {second.name}?",
            "options": ["top left", "top right", "bottom left", "bottom right"],
            "answer": rng.choice("ABCD"),
            "skill": "localization",
            "objects": [second.id],
        },
        {
            "question": f"Compared with the {second.name}, how large does the {first.name} appear?",
            "options": ["much smaller", "slightly smaller", "slightly larger", "much larger"],
            "answer": rng.choice("ABCD"),
            "skill": "relative_size",
            "objects": [first.id, second.id],
        },
    ]
    return json.dumps({"questions": questions[:count]}, indent=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mcqs", type=int, default=100_000)
    parser.add_argument("--questions-per-scene", type=int, default=4, choices=(1, 2, 3, 4))
    parser.add_argument("--work", default=os.path.join(HERE, "_work", "generation_cache"))
    parser.add_argument("--build", action="store_true", help="also time a whole lgt build from the cache")
    parser.add_argument("--num-proc", type=int, default=None, help="the build's worker processes")
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    cache_path = os.path.join(args.work, "generations.sqlite")

    rng = random.Random(0)
    scenes = make_scenes(args.mcqs // args.questions_per_scene, args.work)
    writer = MCQWriter(questions_per_scene=args.questions_per_scene)
    engine = Engine("openai:bench-teacher", cache=cache_path, cache_only=True, progress=False)
    start = time.perf_counter()
    rows = []
    for scene in scenes:
        request = writer.request(scene)
        response = Response((teacher_answer(scene, rng, args.questions_per_scene),), ("stop",), 700, 400)
        rows.append((engine.key(request), engine.spec.name, request.template, response))
    for first in range(0, len(rows), 5000):
        engine.cache.put_many(rows[first : first + 5000])
    write_seconds = time.perf_counter() - start
    keys = [row[0] for row in rows]
    engine.close()
    size_mb = os.path.getsize(cache_path) / 1e6

    reader = Engine("openai:bench-teacher", cache=cache_path, cache_only=True, progress=False)
    start = time.perf_counter()
    found = reader.cache.get_many(keys)
    read_seconds = time.perf_counter() - start
    assert len(found) == len(keys)

    start = time.perf_counter()
    result = write_mcqs(scenes, reader, writer, max_attempts=1)  # one stored answer per scene
    stage_seconds = time.perf_counter() - start
    items = sum(map(len, result.drafts.values()))
    assert reader.stats.misses == 0 and reader._backend is None

    print(f"scenes (cached generations)   {len(scenes):>12,}")
    print(f"cache file                    {size_mb:>12.1f} MB   filled in {write_seconds:.1f} s (setup)")
    print(f"raw cache reads               {len(keys) / read_seconds:>12,.0f} items/s  ({read_seconds:.2f} s)")
    print(
        f"LLM stage 1 from the cache    {items:>12,} MCQs in {stage_seconds:.2f} s = {items / stage_seconds:,.0f} "
        f"MCQs/s, {len(scenes) / stage_seconds:,.0f} generations/s; model calls {reader.stats.misses}, "
        f"rejects {dict(result.rejects)}"
    )
    if args.build:
        start = time.perf_counter()
        info = build(
            source=f"jsonl:{os.path.join(args.work, 'annotations.jsonl')}",
            configs=("mcq_stage1",),
            output=os.path.join(args.work, "lgt"),
            images="path",
            num_proc=args.num_proc,
            teacher="openai:bench-teacher",
            questions_per_image=args.questions_per_scene,
            generation_cache=cache_path,
            cache_only=True,
        )
        seconds = time.perf_counter() - start
        rows = sum(info["rows"]["mcq_stage1"].values())
        calls = info["generation"]["models"]["teacher"]["misses"]
        print(
            f"lgt build from the cache      {rows:>12,} MCQ rows in {seconds:.1f} s = {rows / seconds:,.0f} rows/s "
            f"(--images path, --cache-only, num_proc {args.num_proc}, model calls {calls})"
        )


if __name__ == "__main__":
    main()
