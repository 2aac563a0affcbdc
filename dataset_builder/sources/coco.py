"""COCO-format annotations: ``instances_*.json`` (boxes) + ``captions_*.json`` (dense caption) + an image folder.

``coco:ROOT`` reads every ``ROOT/annotations/instances_<split>.json`` with its ``captions_<split>.json`` and
images from ``ROOT/<split>/`` or ``ROOT/images/<split>/``; ``coco:PATH/instances_<split>.json`` reads one split.
Boxes come as ``[x, y, w, h]`` and become ``[x0, y0, x1, y1]``; ``iscrowd`` boxes are kept but marked, so no
question counts or relates them as a single object; the captions of an image are joined into one dense caption.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterator

from ..errors import InputError
from ..scene import Entry, Scene, SceneObject, check_scene


def read_json(path: str) -> dict:
    """Load a JSON file, turning a missing or malformed file into a one-line ``InputError``."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise InputError(path, None, "file not found") from None
    except json.JSONDecodeError as err:
        raise InputError(path, None, f"malformed JSON at line {err.lineno} column {err.colno}: {err.msg}") from None
    except UnicodeDecodeError as err:
        raise InputError(path, None, f"not UTF-8 text ({err.reason})") from None


def _require(path: str, data: dict, keys: tuple[str, ...]) -> None:
    missing = [k for k in keys if k not in data]
    if missing:
        raise InputError(path, None, f"not a COCO annotation file: missing {', '.join(missing)}")


def _image_dir(root: str, split: str, instances_path: str) -> str:
    for candidate in (os.path.join(root, split), os.path.join(root, "images", split)):
        if os.path.isdir(candidate):
            return candidate
    raise InputError(
        instances_path,
        None,
        f"no image folder for split {split!r}: expected {root}/{split}/ or {root}/images/{split}/",
    )


def _sentence(text: str) -> str:
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


class CocoSource:
    name = "coco"

    def __init__(self, path: str):
        path = os.path.abspath(path)
        if os.path.isdir(path):
            pattern = os.path.join(path, "annotations", "instances_*.json")
            self.instance_files = sorted(glob.glob(pattern))
            if not self.instance_files:
                raise InputError(path, None, "no annotations/instances_*.json here (is this a COCO root?)")
            self.root = path
        else:
            if not os.path.isfile(path):
                raise InputError(path, None, "file not found")
            self.instance_files = [path]
            self.root = os.path.dirname(os.path.dirname(path))
        self.description = (
            "COCO-format annotations ("
            + ", ".join(os.path.basename(p) for p in self.instance_files)
            + "): instance boxes and the joined human captions of each image."
        )
        self.license = (
            "COCO annotations (c) COCO Consortium, CC BY 4.0; each image keeps its own Flickr licence, "
            "given per row in the `license` column."
        )

    def entries(self) -> Iterator[Entry | InputError]:
        """An entry per image (its payload: the unchecked ``Scene``), or the ``InputError`` of an unusable image.

        File-level problems (missing or malformed JSON) raise at once: no record of such a file can be trusted.
        """
        for instances_path in self.instance_files:
            yield from self._split_entries(instances_path)

    @staticmethod
    def scene(payload: tuple[Scene, str]) -> Scene:
        scene, record = payload
        return check_scene(scene, record)

    def _split_entries(self, instances_path: str) -> Iterator[Entry | InputError]:
        name = os.path.basename(instances_path)
        split = name[len("instances_") : -len(".json")] if name.startswith("instances_") else name[: -len(".json")]
        captions_path = os.path.join(os.path.dirname(instances_path), f"captions_{split}.json")
        instances = read_json(instances_path)
        _require(instances_path, instances, ("images", "annotations", "categories"))
        captions = read_json(captions_path)
        _require(captions_path, captions, ("annotations",))
        image_dir = _image_dir(self.root, split, instances_path)

        categories = {c["id"]: c["name"] for c in instances["categories"]}
        licenses = {
            lic["id"]: f"{lic.get('name', '')} ({lic.get('url', '')})" for lic in instances.get("licenses", [])
        }

        objects_by_image: dict[int, list] = {}
        bad_images: dict[int, InputError] = {}
        for ann in instances["annotations"]:
            image_id = ann.get("image_id")
            record = f"annotation {ann.get('id')} (image {image_id})"
            category = categories.get(ann.get("category_id"))
            if category is None:
                bad_images.setdefault(
                    image_id, InputError(instances_path, record, f"unknown category_id {ann.get('category_id')}")
                )
                continue
            bbox = ann.get("bbox")
            if not isinstance(bbox, list) or len(bbox) != 4:
                bad_images.setdefault(image_id, InputError(instances_path, record, f"bbox {bbox} is not [x, y, w, h]"))
                continue
            x, y, w, h = bbox
            objects_by_image.setdefault(image_id, []).append(
                SceneObject(id=ann["id"], name=category, bbox=[x, y, x + w, y + h], crowd=bool(ann.get("iscrowd")))
            )

        captions_by_image: dict[int, list[str]] = {}
        for ann in captions["annotations"]:
            text = (ann.get("caption") or "").strip()
            if text:
                captions_by_image.setdefault(ann.get("image_id"), []).append(text)

        del instances["annotations"], captions  # keep memory to what the scenes need
        for image in instances["images"]:
            image_id = image.get("id")
            record = f"image {image_id}"
            if image_id in bad_images:
                yield bad_images[image_id]
                continue
            caption = " ".join(_sentence(c) for c in captions_by_image.get(image_id, []))
            try:
                objects = objects_by_image.get(image_id, [])
                scene = Scene(
                    image_id=f"coco-{split}-{image_id}",
                    image=os.path.join(image_dir, image["file_name"]),
                    width=image["width"],
                    height=image["height"],
                    caption=caption,
                    objects=objects,
                    source="coco",
                    license=licenses.get(image.get("license"), ""),
                    origin=instances_path,
                )
            except KeyError as err:
                yield InputError(instances_path, record, f"image entry lacks {err.args[0]!r}")
                continue
            yield Entry(
                scene.image_id, [o.name for o in objects], [], (scene, record), f"{instances_path} [record {record}]"
            )
