"""COCO-format annotations: ``instances_*.json`` (boxes) + ``captions_*.json`` (dense caption) + an image folder.

``coco:ROOT`` reads every ``ROOT/annotations/instances_<split>.json`` with its ``captions_<split>.json`` and
images from ``ROOT/<split>/`` or ``ROOT/images/<split>/``; ``coco:PATH/instances_<split>.json`` reads one split.
Boxes come as ``[x, y, w, h]`` and become ``[x0, y0, x1, y1]``; ``iscrowd`` boxes are kept but marked, so no
question counts or relates them as a single object; the captions of an image are joined into one dense caption.

Every value is read in the type the COCO format gives it (``Fields``: ids are whole numbers, boxes four numbers,
names and captions text). A bad annotation or caption rejects its whole image, since a scene missing one of its
objects would make wrong counting questions; one that names no known image, and a bad or repeated category or
licence, is a reject of its own. Images must lie inside the COCO root (or ``--image-root``).
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterator

from ..errors import InputError
from ..images import local_image
from ..scene import IMAGE_SIDE, INT64, REQUIRED, Entry, Fields, Scene, SceneObject, check_scene


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


def _require(path: str, data: dict, keys: tuple[str, ...]) -> Fields:
    """The file's top level; no record of a file without its lists can be trusted, so this raises at once."""
    fields = Fields(data, path, None, "the file")
    missing = [k for k in keys if k not in data]
    if missing:
        raise InputError(path, None, f"not a COCO annotation file: missing {', '.join(missing)}")
    return fields


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
    help = "coco:PATH (COCO root or instances_*.json)"
    takes_path = True
    has_boxes = True
    card_metadata = {
        "annotations_creators": ["crowdsourced", "machine-generated"],
        "language_creators": ["crowdsourced", "machine-generated"],
    }
    annotation_license = "cc-by-4.0"
    license_link = "https://cocodataset.org/#termsofuse"
    tags = ()

    @classmethod
    def open(cls, path: str, *, seed: int, num_images: int | None, image_root: str | None) -> CocoSource:
        return cls(path, image_root)

    @staticmethod
    def source_datasets(path: str) -> list[str]:
        """The card's ``source_datasets``: COCO, which is not on the Hub under one id (the Hub's form for that)."""
        return ["extended|other-coco"]

    def __init__(self, path: str, image_root: str | None = None):
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
        self.image_root = os.path.realpath(image_root or self.root)
        self.description = (
            "COCO-format annotations ("
            + ", ".join(os.path.basename(p) for p in self.instance_files)
            + "): instance boxes and the joined human captions of each image."
        )
        self.license = (
            "COCO annotations (c) COCO Consortium, CC BY 4.0; each image keeps its own Flickr licence, "
            "given per row in the `license` column."
        )

    def entries(self, num_proc: int = 1) -> Iterator[Entry | InputError]:
        """An entry per image (its payload: the unchecked ``Scene``), or the ``InputError`` of an unusable record.

        File-level problems (missing or malformed JSON, a top-level list missing) raise at once: no record of such
        a file can be trusted.
        """
        for instances_path in self.instance_files:
            yield from self._split_entries(instances_path)

    def scene(self, payload: tuple[Scene, str]) -> Scene:
        scene, record = payload
        scene.image = local_image(scene.image, self.image_root, scene.origin, record)
        return check_scene(scene, record)

    def _split_entries(self, instances_path: str) -> Iterator[Entry | InputError]:
        name = os.path.basename(instances_path)
        split = name[len("instances_") : -len(".json")] if name.startswith("instances_") else name[: -len(".json")]
        captions_path = os.path.join(os.path.dirname(instances_path), f"captions_{split}.json")
        instances = _require(instances_path, read_json(instances_path), ("images", "annotations", "categories"))
        captions = _require(captions_path, read_json(captions_path), ("annotations",))
        image_dir = _image_dir(self.root, split, instances_path)

        rejects: list[InputError] = []
        categories = _Table(instances.items("categories"), instances_path, "category", _category_name, rejects)
        licenses = _Table(instances.items("licenses", []), instances_path, "license", _license_text, rejects)
        images = [
            _read_item(item, instances_path, "image", index) for index, item in enumerate(instances.items("images"))
        ]
        known = {image_id for _, image_id in images if image_id is not None}
        broken: dict[int, InputError] = {}  # the first problem of each image with a bad annotation or caption
        objects = _per_image(instances, "annotation", _object_reader(categories), known, broken, rejects)
        texts = _per_image(captions, "caption", _caption_text, known, broken, rejects)
        del instances, captions  # keep memory to what the scenes need
        yield from rejects

        for fields, image_id in images:
            if image_id in broken:
                yield broken[image_id]
                continue
            try:
                if isinstance(fields, InputError):
                    raise fields
                scene = Scene(
                    image_id=f"coco-{split}-{image_id}",
                    image=os.path.join(image_dir, fields.text("file_name")),
                    width=fields.whole("width", IMAGE_SIDE),
                    height=fields.whole("height", IMAGE_SIDE),
                    caption=" ".join(_sentence(c) for c in texts.get(image_id, []) if c),
                    objects=objects.get(image_id, []),
                    source="coco",
                    license=licenses.lookup(fields, "license", required=False),
                    origin=instances_path,
                )
            except InputError as err:
                yield err
                continue
            names = tuple(o.name for o in scene.objects)
            attributes = tuple(a for o in scene.objects for a in o.attributes)
            yield Entry(scene.image_id, (scene, fields.record), instances_path, fields.record, names, attributes)


def _label(item, kind: str, index: int) -> str:
    """How a reject names a COCO list item: by its id where it has one (``annotation 21``), else by position."""
    item_id = item.get("id") if isinstance(item, dict) else None
    return f"{kind} {item_id}" if type(item_id) is int else f"{kind} #{index}"


def _read_item(item, path: str, kind: str, index: int) -> tuple[Fields | InputError, int | None]:
    """An item of a COCO list with its id, or its ``InputError`` (and the id, when that much could be read)."""
    try:
        fields = Fields(item, path, _label(item, kind, index))
        return fields, fields.whole("id", INT64)
    except InputError as err:
        return err, None


class _Table:
    """A COCO id table (categories, licenses): ``{id: value}``, and why each id that cannot be used cannot.

    A bad entry is a reject of its own; so is an id given twice, and since which of the two is meant cannot be
    known, the id is then unusable rather than silently the last one.
    """

    def __init__(self, items: list, path: str, kind: str, read, rejects: list[InputError]):
        self.kind, self.values, self.unusable = kind, {}, {}
        for index, item in enumerate(items):
            fields, item_id = _read_item(item, path, kind, index)
            try:
                if isinstance(fields, InputError):
                    raise fields
                if item_id in self.values or item_id in self.unusable:
                    self.values.pop(item_id, None)
                    self.unusable[item_id] = f"{kind} id {item_id} is defined more than once"
                    raise fields.error(self.unusable[item_id])
                self.values[item_id] = read(fields)
            except InputError as err:
                rejects.append(err)
                if item_id is not None:
                    self.unusable.setdefault(item_id, f"{kind} {item_id} is unusable ({err.problem})")

    def lookup(self, fields: Fields, key: str, required: bool = True) -> str:
        """The value for the id in ``fields[key]`` ("" when an optional id is absent); unknown ids are errors."""
        item_id = fields.whole(key, INT64, default=REQUIRED if required else None)
        if item_id is None:
            return ""
        if item_id in self.unusable:
            raise fields.error(self.unusable[item_id])
        if item_id not in self.values:
            raise fields.error(f"unknown {key} {item_id}")
        return self.values[item_id]


def _category_name(fields: Fields) -> str:
    name = fields.text("name")
    if not name.strip():
        raise fields.error("'name' is empty")
    return name


def _license_text(fields: Fields) -> str:
    return f"{fields.text('name', default='')} ({fields.text('url', default='')})"


def _image_of(item, path: str, kind: str, index: int, known: set[int], rejects: list[InputError]):
    """``(fields, image_id)`` of an annotation or caption; ``None`` (and a reject) when it names no known image."""
    try:
        fields = Fields(item, path, _label(item, kind, index))
        image_id = fields.whole("image_id", INT64)
        if image_id not in known:
            raise fields.error(f"image_id {image_id} is not among the images")
    except InputError as err:
        rejects.append(err)
        return None
    fields.record = f"{fields.record} (image {image_id})"
    return fields, image_id


def _per_image(file: Fields, kind: str, read, known: set[int], broken: dict, rejects: list) -> dict:
    """``read(fields)`` of each item of the file's ``annotations`` (boxes or captions), by image.

    A record that cannot be read breaks its image (the first problem is kept for it); one that names no known image
    is a reject of its own.
    """
    values: dict[int, list] = {}
    for index, item in enumerate(file.items("annotations")):
        found = _image_of(item, file.source, kind, index, known, rejects)
        if found is None:
            continue
        fields, image_id = found
        try:
            values.setdefault(image_id, []).append(read(fields))
        except InputError as err:
            broken.setdefault(image_id, err)
    return values


def _object_reader(categories: _Table):
    def read(ann: Fields) -> SceneObject:
        x, y, w, h = ann.numbers("bbox", 4)
        return SceneObject(
            id=ann.whole("id", INT64),
            name=categories.lookup(ann, "category_id"),
            bbox=[x, y, x + w, y + h],
            crowd=ann.flag("iscrowd"),
        )

    return read


def _caption_text(caption: Fields) -> str:
    return caption.text("caption").strip()
