"""The one record every source is read into: an image, its size, a dense caption, and boxed objects.

Boxes are ``[x0, y0, x1, y1]`` in absolute pixels. ``check_scene`` is where every source's records are held to
the same rules, so the synthesis stages can trust a ``Scene`` without re-checking it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from .errors import InputError

# Boxes may overhang the image by this many pixels (rounding in annotation tools); they are clipped to it.
BOX_TOLERANCE_PX = 2.0


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
    """What a source's cheap, ordered first pass knows of an image; ``payload`` lets a worker make the ``Scene``."""

    image_id: str
    names: list[str]
    attributes: list[str]
    payload: Any
    where: str  # "FILE [record R]", for a duplicate-id message


def check_scene(scene: Scene, record: str) -> Scene:
    """Raise ``InputError`` for what no stage can use; clip boxes that overhang the image by a rounding error."""
    where = scene.origin or scene.source
    if not scene.caption or not scene.caption.strip():
        raise InputError(where, record, "empty caption (every scene needs a dense caption)")
    if not (isinstance(scene.width, int) and isinstance(scene.height, int)) or scene.width <= 0 or scene.height <= 0:
        raise InputError(where, record, f"invalid image size {scene.width}x{scene.height}")
    seen_ids = set()
    for obj in scene.objects:
        if obj.id in seen_ids:
            raise InputError(where, record, f"duplicate object id {obj.id}")
        seen_ids.add(obj.id)
        if not obj.name or not obj.name.strip():
            raise InputError(where, record, f"object {obj.id} has no name")
        if len(obj.bbox) != 4:
            raise InputError(where, record, f"object {obj.id} box {obj.bbox} is not [x0, y0, x1, y1]")
        x0, y0, x1, y1 = (float(v) for v in obj.bbox)
        if not (x1 > x0 and y1 > y0):
            raise InputError(where, record, f"object {obj.id} ({obj.name}) has a zero-area box {obj.bbox}")
        tol = BOX_TOLERANCE_PX
        if x0 < -tol or y0 < -tol or x1 > scene.width + tol or y1 > scene.height + tol:
            raise InputError(
                where,
                record,
                f"object {obj.id} ({obj.name}) box {obj.bbox} lies outside the {scene.width}x{scene.height} image",
            )
        obj.bbox = [max(0.0, x0), max(0.0, y0), min(float(scene.width), x1), min(float(scene.height), y1)]
    return scene
