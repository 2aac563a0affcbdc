"""The one record every source is read into: an image, its size, a dense caption, and boxed objects.

Boxes are ``[x0, y0, x1, y1]`` in absolute pixels. Two gates hold every source's records to the same rules, so
the synthesis stages can trust a ``Scene`` without re-checking it: ``Fields`` reads a foreign record's values, each
in its one accepted type and range, and ``check_scene`` checks what the values mean together (boxes in the image,
ids unique, a caption and names that say something).
"""

from __future__ import annotations

import json
import math
import struct
import sys
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from .errors import InputError

# Boxes may overhang the image by this many pixels (rounding in annotation tools); they are clipped to it.
BOX_TOLERANCE_PX = 2.0
# Ranges of the columns the values end up in: ids are int64, image sides int32.
INT64 = (-(2**63), 2**63 - 1)
IMAGE_SIDE = (1, 2**31 - 1)
REQUIRED = object()  # the default of a field that must be present
_ABSENT = object()


FLOAT_MAX = sys.float_info.max


def finite(value: Any) -> bool:
    """A finite JSON number: ``true`` is none, nor are ``NaN``, ``Infinity`` or ``1e400`` (read as infinity)."""
    kind = type(value)
    return (kind is float and math.isfinite(value)) or (kind is int and -FLOAT_MAX <= value <= FLOAT_MAX)


def shown(value: Any) -> str:
    """A value as the user wrote it (JSON), cut to fit in a one-line message."""
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= 48 else text[:45] + "..."


class Fields:
    """One JSON object of the user's input, read field by field, each in its one accepted type and range.

    Nothing is coerced: no ``str(None)``, no ``int("3")``, no ``float("1e400")``; booleans are not numbers, numbers
    must be finite, text must be valid Unicode (no lone surrogates); types are JSON's own, compared exactly. So a
    value either reaches the dataset as written or its record is refused with ``InputError("FILE [record R]: ...")``,
    ``name`` saying where inside the record (``object 2``). A field that is optional may be absent or ``null``;
    unknown fields are ignored.
    """

    def __init__(self, data: Any, source: str, record: str | None, name: str = ""):
        self.source, self.record, self.name = source, record, name
        if type(data) is not dict:
            raise InputError(source, record, f"{name or 'the record'} must be a JSON object, not {shown(data)}")
        self.data = data

    def error(self, problem: str) -> InputError:
        return InputError(self.source, self.record, f"{self.name}: {problem}" if self.name else problem)

    def _value(self, key: str, default: Any) -> tuple[bool, Any]:
        """``(True, value)``, or ``(False, default)`` for an optional field that is absent or null."""
        value = self.data.get(key, _ABSENT)
        if value is _ABSENT or (value is None and default is not REQUIRED):
            if default is REQUIRED:
                raise self.error(f"missing required field {key!r}")
            return False, default
        return True, value

    def _refuse(self, key: str, expected: str, value: Any) -> InputError:
        return self.error(f"{key!r} must be {expected}, not {shown(value)}")

    def _checked_text(self, key: str, value: Any) -> str:
        if type(value) is not str:
            raise self._refuse(key, "text", value)
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as err:
                raise self.error(f"{key!r} is not valid Unicode (a lone surrogate at character {err.start})") from None
        return value

    def text(self, key: str, default: Any = REQUIRED) -> str:
        present, value = self._value(key, default)
        return self._checked_text(key, value) if present else value

    def texts(self, key: str) -> list[str]:
        """An optional list of text (absent: empty)."""
        _, value = self._value(key, [])
        if type(value) is not list:
            raise self._refuse(key, "a list of text", value)
        return [self._checked_text(key, item) for item in value]

    def whole(self, key: str, limits: tuple[int, int], default: Any = REQUIRED) -> int:
        present, value = self._value(key, default)
        if present and not (type(value) is int and limits[0] <= value <= limits[1]):  # 3.0 and true are not whole
            raise self._refuse(key, f"a whole number from {limits[0]} to {limits[1]}", value)
        return value

    def number(self, key: str, limits: tuple[float, float], default: Any = REQUIRED) -> int | float:
        present, value = self._value(key, default)
        if present and not (finite(value) and limits[0] <= value <= limits[1]):
            raise self._refuse(key, f"a number from {limits[0]} to {limits[1]}", value)
        return value

    def numbers(self, key: str, count: int) -> list[int | float]:
        """Exactly ``count`` finite numbers, e.g. a box."""
        _, value = self._value(key, REQUIRED)
        if not (type(value) is list and len(value) == count and all(map(finite, value))):
            raise self._refuse(key, f"{count} finite numbers", value)
        return value

    def flag(self, key: str) -> bool:
        """An optional yes/no: ``true``/``false`` or ``1``/``0`` (absent or null: no)."""
        _, value = self._value(key, False)
        if not (type(value) is bool or (type(value) is int and value in (0, 1))):
            raise self._refuse(key, "true, false, 1 or 0", value)
        return bool(value)

    def items(self, key: str, default: Any = REQUIRED) -> list:
        """A JSON list, its items left for the caller to read one by one."""
        _, value = self._value(key, default)
        if type(value) is not list:
            raise self._refuse(key, "a list", value)
        return value

    def records(self, key: str, name: str, default: Any = REQUIRED) -> list[Fields]:
        """A list of JSON objects, each read as ``Fields`` named ``"<name> <index>"``."""
        items = self.items(key, default)
        return [Fields(item, self.source, self.record, f"{name} {i}") for i, item in enumerate(items)]


@dataclass(slots=True)
class SceneObject:
    id: int
    name: str
    bbox: list[float]
    attributes: list[str] = field(default_factory=list)
    score: float | None = None
    crowd: bool = False  # a box over a group (COCO iscrowd): it cannot be counted or related as one object

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.bbox
        return (x1 - x0) * (y1 - y0)

    @property
    def center(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.bbox
        return (x0 + x1) / 2, (y0 + y1) / 2


@dataclass(slots=True)
class Scene:
    image_id: str
    image: str | bytes  # a path, or encoded 8-bit RGB image bytes (sources that make their images)
    width: int
    height: int
    caption: str
    objects: list[SceneObject]
    source: str
    license: str = ""
    origin: str = ""  # the file this record came from, for error messages and reject reports

    def to_dict(self) -> dict:
        """Plain types only, Arrow-ready; written out by hand, ``dataclasses.asdict`` is 10x slower."""
        return {
            "image_id": self.image_id,
            "image": self.image,
            "width": self.width,
            "height": self.height,
            "caption": self.caption,
            "objects": [
                {
                    "id": o.id,
                    "name": o.name,
                    "bbox": o.bbox,
                    "attributes": o.attributes,
                    "score": o.score,
                    "crowd": o.crowd,
                }
                for o in self.objects
            ],
            "source": self.source,
            "license": self.license,
            "origin": self.origin,
        }

    @classmethod
    def from_row(cls, row: dict) -> Scene:
        """A ``scenes`` config row back as a ``Scene``: later configs are made from these rows, not from the source.

        The image stays as stored (its bytes, or the path of a ``--images path`` build); nothing is decoded.
        """
        return cls(
            image_id=row["image_id"],
            image=row["image"]["bytes"] or row["image"]["path"],
            width=row["width"],
            height=row["height"],
            caption=row["caption"],
            objects=[SceneObject(**o) for o in row["objects"]],
            source=row["source"],
            license=row["license"],
        )

    def resized(self, width: int, height: int) -> Scene:
        """The same scene on an image resized to ``width`` x ``height``: every box scales with the image."""
        sx, sy = width / self.width, height / self.height
        objects = [
            replace(o, bbox=[o.bbox[0] * sx, o.bbox[1] * sy, o.bbox[2] * sx, o.bbox[3] * sy]) for o in self.objects
        ]
        return replace(self, width=width, height=height, objects=objects)


class Entry(NamedTuple):
    """What a source's cheap, ordered first pass knows of an image; ``payload`` lets a worker make the ``Scene``.

    ``names`` and ``attributes``: the words its objects are named and described by, as written. Every machine of a
    sharded build reads every entry, so the vocabulary distractors are drawn from is the whole source's, whichever
    images a machine builds.
    """

    image_id: str
    payload: Any
    origin: str  # the file and the record within it, for a duplicate-id message and reject
    record: str
    names: tuple[str, ...] = ()
    attributes: tuple[str, ...] = ()

    @property
    def where(self) -> str:
        return f"{self.origin} [record {self.record}]"


_BOX32 = struct.Struct("4f")  # a box as the ``float32`` box column holds it


def check_scene(scene: Scene, record: str) -> Scene:
    """Raise ``InputError`` for what no stage can use; clip boxes that overhang the image by a rounding error."""
    where = scene.origin or scene.source
    if not scene.caption or not scene.caption.strip():
        raise InputError(where, record, "empty caption (every scene needs a dense caption)")
    width, height = scene.width, scene.height
    if not (isinstance(width, int) and isinstance(height, int)) or width <= 0 or height <= 0:
        raise InputError(where, record, f"invalid image size {width}x{height}")
    seen_ids = set()
    tol, right, bottom = BOX_TOLERANCE_PX, float(width), float(height)
    for obj in scene.objects:  # written out plainly: a million-scene build checks ten million boxes
        if obj.id in seen_ids:
            raise InputError(where, record, f"duplicate object id {obj.id}")
        seen_ids.add(obj.id)
        if not obj.name or not obj.name.strip():
            raise InputError(where, record, f"object {obj.id} has no name")
        if len(obj.bbox) != 4:
            raise InputError(where, record, f"object {obj.id} box {obj.bbox} is not [x0, y0, x1, y1]")
        x0, y0, x1, y1 = map(float, obj.bbox)
        if x0 < -tol or y0 < -tol or x1 > width + tol or y1 > height + tol:
            raise InputError(
                where,
                record,
                f"object {obj.id} ({obj.name}) box {obj.bbox} lies outside the {width}x{height} image",
            )
        box = list(_BOX32.unpack(_BOX32.pack(max(0.0, x0), max(0.0, y0), min(right, x1), min(bottom, y1))))
        if not (box[2] > box[0] and box[3] > box[1]):  # judged as stored (float32): two close values can round to one
            raise InputError(where, record, f"object {obj.id} ({obj.name}) has a zero-area box {obj.bbox}")
        obj.bbox = box
    return scene
