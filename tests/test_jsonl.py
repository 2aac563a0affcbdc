"""The JSON Lines source, the format users convert DOCCI, Visual Genome or detector output into."""

import json

from conftest import write_image
from datasets import load_dataset
from lgt.build import build


def test_jsonl_scenes_with_attributes_make_attribute_questions(tmp_path):
    write_image(tmp_path / "img.png", size=(400, 300))
    colours = ["red", "green", "blue", "yellow", "purple", "black"]
    with open(tmp_path / "scenes.jsonl", "w") as f:
        for i in range(30):
            objects = [
                {"name": "cup", "bbox": [10, 10, 110, 110], "attributes": [colours[i % 6], "ceramic"]},
                {"name": "plate", "bbox": [250, 20, 390, 120], "attributes": [colours[(i + 1) % 6], "round"]},
                {"name": "spoon", "bbox": [150, 200, 220, 290], "attributes": ["shiny", "metal"], "score": 0.8},
            ]
            # No width/height on odd lines: read from the image header.
            size = {"width": 400, "height": 300} if i % 2 == 0 else {}
            f.write(
                json.dumps(
                    {
                        "image_id": f"img-{i}",
                        "image": "img.png",
                        "caption": "A table.",
                        "objects": objects,
                        "license": "CC0",
                        **size,
                    }
                )
                + "\n"
            )
    output = tmp_path / "out"
    info = build(source=f"jsonl:{tmp_path / 'scenes.jsonl'}", output=str(output))
    assert info["source"]["name"] == "jsonl"
    scenes = load_dataset(str(output), "scenes").remove_columns("image")
    rows = {r["image_id"]: r for split in scenes.values() for r in split}
    assert len(rows) == 30 and {(r["width"], r["height"]) for r in rows.values()} == {(400, 300)}
    assert rows["img-3"]["objects"][2]["score"] == 0.800000011920929 and rows["img-3"]["license"] == "CC0"
    mcqs = load_dataset(str(output), "mcq_stage1").remove_columns("image")
    checked = 0
    for row in (r for split in mcqs.values() for r in split if r["skill"] == "attribute"):
        (ground,) = row["grounding"]
        obj = next(o for o in rows[row["image_id"]]["objects"] if o["id"] == ground["object_id"])
        answer = row["options"]["ABCD".index(row["answer"])]
        assert answer in obj["attributes"]
        assert not set(row["options"]).difference([answer]) & set(obj["attributes"])
        checked += 1
    assert checked >= 30
