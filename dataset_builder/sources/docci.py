"""DOCCI (Descriptions of Connected and Contrasting Images, Google, CC BY 4.0) in its release layout::

    ROOT/docci_descriptions.jsonlines   # {"example_id": "test_00000", "split": "test",
                                        #  "image_file": "test_00000.jpg", "description": "A close-up ..."}
    ROOT/images/test_00000.jpg ...

``docci:ROOT`` (or ``docci:ROOT/docci_descriptions.jsonlines``) reads one scene per line: the description is the
dense caption, the size comes from the image header, the licence is DOCCI's. DOCCI's own split (``train``, ``test``,
``qual_dev``, ``qual_test``) is kept in the image id, ``docci-<split>-<example_id>``: lgt's splits come from a hash
of the id like every source's, so DOCCI's test images are spread over lgt's splits, and a user who wants DOCCI's
split filters on the id. Other fields are ignored; a record whose fields are missing or of the wrong type is a bad
record, as in every source (``Fields``).

DOCCI has no boxes, so its scenes have no objects and no question can be asked about them: ``lgt detect docci:ROOT``
gives them boxes (the paper's path), and ``lgt build`` reads its output (``jsonl:``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from ..errors import InputError
from ..images import image_size, local_image
from ..scene import Entry, Fields, Scene, check_scene
from .jsonl import Line, fields_of, line_entries, read_line

DESCRIPTIONS = "docci_descriptions.jsonlines"
IMAGES = "images"
LICENSE = "CC BY 4.0"


def _image_id(fields: Fields, line_no: int | None = None) -> str:
    return f"docci-{fields.text('split')}-{fields.text('example_id')}"


class DocciSource:
    name = "docci"
    help = "docci:PATH (DOCCI root or docci_descriptions.jsonlines)"
    takes_path = True
    has_boxes = False
    card_metadata = {
        "annotations_creators": ["expert-generated", "machine-generated"],
        "language_creators": ["expert-generated", "machine-generated"],
    }
    annotation_license = "cc-by-4.0"
    license_link = "https://google.github.io/docci/"
    tags = ()

    @classmethod
    def open(cls, path: str, *, seed: int, num_images: int | None, image_root: str | None) -> DocciSource:
        return cls(path, image_root)

    @staticmethod
    def source_datasets(path: str) -> list[str]:
        """The card's ``source_datasets``: DOCCI, as the Hub writes a dataset that is not on it under one id."""
        return ["extended|other-docci"]

    def __init__(self, path: str, image_root: str | None = None):
        path = os.path.abspath(path)
        self.path = os.path.join(path, DESCRIPTIONS) if os.path.isdir(path) else path
        if not os.path.isfile(self.path):
            raise InputError(self.path, None, f"file not found (a DOCCI root holds {DESCRIPTIONS} and {IMAGES}/)")
        self.root = os.path.dirname(self.path)
        self.image_root = os.path.realpath(image_root or self.root)
        self.description = (
            "DOCCI: photos by Google, each with a long, human-written description (the dense caption); DOCCI has "
            "no boxes of its own."
        )
        self.license = "DOCCI images and descriptions (c) Google, CC BY 4.0."

    def entries(self, num_proc: int = 1) -> Iterator[Entry | InputError]:
        """Each line's image id; a line that is no JSON object, not UTF-8 or lacks its id fields is an error."""
        return line_entries(self.path, _image_id, num_proc=num_proc)

    def scene(self, payload: tuple[int, int, int]) -> Scene:
        where = Line(*payload)
        record = f"line {where.number}"
        fields = fields_of(read_line(self.path, where), where.number, self.path)
        image = local_image(
            os.path.join(self.root, IMAGES, fields.text("image_file")), self.image_root, self.path, record
        )
        width, height = image_size(image, record)
        scene = Scene(
            image_id=_image_id(fields),
            image=image,
            width=width,
            height=height,
            caption=fields.text("description"),
            objects=[],
            source=self.name,
            license=LICENSE,
            origin=self.path,
        )
        return check_scene(scene, record)
