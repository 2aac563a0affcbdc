"""``scenes``: the normalised source records, the one config read from the source (every other is made from it)."""

from __future__ import annotations

from datasets import Features, Image, List, Value

from .base import BOX, BOX_DOC, Context, Group, Stage


class SceneStage(Stage):
    def rows(self, group: Group, context: Context) -> list[dict]:
        record = group.scene.to_dict()
        del record["origin"]
        record["image"] = group.image
        return [record]


SCENES = SceneStage(
    name="scenes",
    description="The normalised source records: image, size, dense caption, objects with absolute-pixel boxes.",
    parents=(),
    family="scenes",
    essential=True,
    features=Features(
        {
            "image_id": Value("string"),
            "image": Image(),
            "width": Value("int32"),
            "height": Value("int32"),
            "caption": Value("string"),
            "objects": List(
                {
                    "id": Value("int64"),
                    "name": Value("string"),
                    "bbox": BOX,
                    "attributes": List(Value("string")),
                    "score": Value("float32"),
                    "crowd": Value("bool"),
                }
            ),
            "source": Value("string"),
            "license": Value("string"),
        }
    ),
    fields={
        "image_id": "Stable id of the image (e.g. `coco-val2017-139`); a hash of it fixes the split.",
        "image": "The image, 8-bit RGB, its bytes embedded (a `--images path` build references local files).",
        "width": "Image width in pixels (after `--max-pixels` downscaling, if the build used it).",
        "height": "Image height in pixels; boxes live in this `width` x `height` pixel space.",
        "caption": "Dense caption (COCO: the human captions joined; built-in scenes: written from the layout).",
        "objects": f"Boxed objects: `id` (unique in the image), `name` (category), `bbox` {BOX_DOC}, `attributes` "
        "(e.g. colours), `score` (detector confidence; null for human boxes), `crowd` (a box over a group).",
        "source": "The source the record was read from: `scenes` (built in), `coco` or `jsonl`.",
        "license": "The licence of this image as the source states it.",
    },
)
