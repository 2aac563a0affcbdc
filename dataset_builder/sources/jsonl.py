"""JSON Lines scenes: the format to convert DOCCI, Visual Genome or detector output into.

One scene per line::

    {"image_id": "docci-000123",            # unique; defaults to the line number
     "image": "images/000123.jpg",          # path, relative to the .jsonl file's folder (or absolute)
     "width": 1024, "height": 768,          # optional: read from the image header when absent
     "caption": "A long, dense description ...",
     "objects": [{"id": 0, "name": "dog", "bbox": [x0, y0, x1, y1],   # absolute pixels
                  "attributes": ["brown", "sitting"], "score": 0.93}],  # both optional
     "license": "CC BY 4.0"}                # optional

Lines are streamed, so memory stays flat however large the file is; the first pass reads only ids and names, the
workers parse and check the rest.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

from ..errors import InputError
from ..images import image_size
from ..scene import Entry, Scene, SceneObject, check_scene


def _scene_from_line(data: dict, line_no: int, path: str, folder: str) -> Scene:
    record = f"line {line_no}"
    if not isinstance(data, dict):
        raise InputError(path, record, "a line must hold one JSON object")
    for key in ("image", "caption", "objects"):
        if key not in data:
            raise InputError(path, record, f"missing required field {key!r}")
    if not isinstance(data["objects"], list):
        raise InputError(path, record, "'objects' must be a list")
    image = os.path.join(folder, data["image"])
    objects = []
    for i, obj in enumerate(data["objects"]):
        if not isinstance(obj, dict) or "name" not in obj or "bbox" not in obj:
            raise InputError(path, record, f"object {i} needs 'name' and 'bbox'")
        bbox = obj["bbox"]
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(isinstance(v, (int, float)) for v in bbox):
            raise InputError(path, record, f"object {i} bbox {bbox} is not four numbers [x0, y0, x1, y1]")
        attributes = obj.get("attributes") or []
        objects.append(
            SceneObject(
                id=int(obj.get("id", i)),
                name=str(obj["name"]),
                bbox=[float(v) for v in bbox],
                attributes=[str(a) for a in attributes],
                score=obj.get("score"),
            )
        )
    width, height = data.get("width"), data.get("height")
    if width is None or height is None:
        width, height = image_size(image, data.get("image_id", record))
    scene = Scene(
        image_id=str(data.get("image_id", f"line-{line_no}")),
        image=image,
        width=width,
        height=height,
        caption=str(data["caption"] or ""),
        objects=objects,
        source="jsonl",
        license=str(data.get("license", "")),
        origin=path,
    )
    return check_scene(scene, record)


class JsonlSource:
    name = "jsonl"

    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        if not os.path.isfile(self.path):
            raise InputError(self.path, None, "file not found")
        self.description = f"Scenes from the JSON Lines file `{os.path.basename(self.path)}`."
        self.license = "As stated per row in the `license` column by the provider of the annotations."

    def entries(self) -> Iterator[Entry | InputError]:
        with open(self.path, encoding="utf-8") as f:
            for line_no, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    data = json.loads(line)
                except json.JSONDecodeError as err:
                    yield InputError(self.path, f"line {line_no}", f"malformed JSON at column {err.colno}: {err.msg}")
                    continue
                if not isinstance(data, dict) or not isinstance(data.get("objects"), list):
                    yield InputError(self.path, f"line {line_no}", "a line must hold one JSON object with 'objects'")
                    continue
                names = [str(o.get("name")) for o in data["objects"] if isinstance(o, dict)]
                attributes = [
                    str(a) for o in data["objects"] if isinstance(o, dict) for a in o.get("attributes") or []
                ]
                image_id = str(data.get("image_id", f"line-{line_no}"))
                yield Entry(image_id, names, attributes, (line_no, line), f"{self.path} [record line {line_no}]")

    def scene(self, payload: tuple[int, str]) -> Scene:
        line_no, line = payload
        return _scene_from_line(json.loads(line), line_no, self.path, os.path.dirname(self.path))
