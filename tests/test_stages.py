"""A config is one stage in one module plus one registry line: a toy stage written here, registered with one line,
builds into parquet with its card fields, loads with `load_dataset`, and nothing else in lgt had to change."""

import json
import subprocess
import sys

import pyarrow.parquet as pq
from datasets import load_dataset
from lgt.stages import STAGES, inputs, needed, root

TOY_MODULE = '''
"""object_counts: how many objects of each category an image holds (a toy config made from the scenes)."""

from collections import Counter

from datasets import Features, Value
from lgt.stages import Context, Group, Stage


class ObjectCounts(Stage):
    def rows(self, group: Group, context: Context) -> list[dict]:
        names = Counter(obj.name for obj in group.scene.objects)
        return [{"image_id": group.scene.image_id, "name": n, "count": c} for n, c in sorted(names.items())]


OBJECT_COUNTS = ObjectCounts(
    name="object_counts",
    description="How many objects of each category each image holds.",
    parents=("scenes",),
    family="counts",
    features=Features({"image_id": Value("string"), "name": Value("string"), "count": Value("int32")}),
    fields={
        "image_id": "The image; joins to `scenes.image_id`.",
        "name": "An object category.",
        "count": "How many boxes of that category the image has.",
    },
)
'''

RUN = """
import json, sys
sys.path.insert(0, {folder!r})
from lgt import stages
from toy_stage import OBJECT_COUNTS

stages.STAGES[OBJECT_COUNTS.name] = OBJECT_COUNTS  # the one registry line

from lgt.build import build

info = build(configs=("scenes", "object_counts"), num_images=24, output={output!r})
print(json.dumps(info["rows"]))
"""


def test_a_new_stage_module_and_one_registry_line_make_a_config(tmp_path):
    (tmp_path / "toy_stage.py").write_text(TOY_MODULE)
    output = tmp_path / "lgt"
    script = RUN.format(folder=str(tmp_path), output=str(output))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout.strip().splitlines()[-1])
    assert sum(rows["object_counts"].values()) > 0
    scenes = load_dataset(str(output), "scenes")
    counts = load_dataset(str(output), "object_counts")
    for split in scenes:  # the same images, split alike, and every count is the scene's
        expected = {
            (scene["image_id"], name): [o["name"] for o in scene["objects"]].count(name)
            for scene in scenes[split]
            for name in {o["name"] for o in scene["objects"]}
        }
        assert {(row["image_id"], row["name"]): row["count"] for row in counts[split]} == expected
    card = (output / "README.md").read_text()
    assert "config_name: object_counts" in card and "| `count` | How many boxes of that category" in card
    assert "How many objects of each category each image holds." in card
    assert pq.ParquetFile(next((output / "object_counts").glob("train-*.parquet"))).schema_arrow.names == [
        "image_id",
        "name",
        "count",
    ]


def test_the_graph_is_read_from_the_registry():
    assert root() == "scenes" and needed(("dpo_stage2",))[0] == root()
    for name, stage in STAGES.items():
        assert all(
            parent in STAGES and list(STAGES).index(parent) < list(STAGES).index(name) for parent in inputs(name)
        )
        assert list(stage.fields) == list(stage.features), name
