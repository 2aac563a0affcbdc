"""JSON Lines scenes: the format to convert Visual Genome or your own annotations into, and what `lgt detect` writes.

One scene per line (UTF-8)::

    {"image_id": "docci-000123",            # text, unique; defaults to "line-N"
     "image": "images/000123.jpg",          # path, relative to the .jsonl file's folder (or absolute)
     "width": 1024, "height": 768,          # optional (both or neither): read from the image header when absent
     "caption": "A long, dense description ...",
     "objects": [{"id": 0, "name": "dog", "bbox": [x0, y0, x1, y1],   # optional (none: a caption-only scene,
                                                                      # for `lgt detect`); boxes in absolute pixels;
                                                                      # id defaults to the index
                  "attributes": ["brown", "sitting"], "score": 0.93}],  # both optional; score in [0, 1]
     "license": "CC BY 4.0",                # optional
     "detector": {...}}                     # optional: how `lgt detect` made the boxes (detection/provenance.py)

Every value must have the type shown (``Fields``: no coercion; an optional field may be ``null``); the image must
lie inside the .jsonl file's folder (or ``--image-root``). Lines are streamed, so memory stays flat however large
the file is: the first pass reads each line's id and words only (``num_proc`` processes, a piece of the file each);
the workers read and check the rest.
"""

from __future__ import annotations

import collections
import functools
import io
import itertools
import json
import os
import re
from collections.abc import Iterator
from typing import NamedTuple

from .. import markdown
from ..errors import InputError
from ..images import image_size, local_image
from ..pools import PiecePool
from ..scene import IMAGE_SIDE, INT64, Entry, Fields, Scene, SceneObject, check_scene, finite
from . import detected

# Bytes of a JSON Lines file one process of the first pass reads at a time: some 5,000 lines of a COCO-scale file.
PIECE_BYTES = 1 << 22


class Line(NamedTuple):
    """Where a line of a JSON Lines file is: what a source's first pass hands a worker (``Entry.payload``, as a plain
    tuple: the scratch disk holds one per line, and a named tuple took several times as long to pickle and read back),
    which reads the line again (``read_line``) rather than carrying its text through the scratch disk."""

    number: int
    offset: int
    size: int


class Piece(NamedTuple):
    """A run of whole lines of a JSON Lines file: what one process of the first pass reads (``line_entries``)."""

    offset: int
    size: int
    first_line: int  # the number of its first line


def _pieces(path: str) -> Iterator[Piece]:
    """The file cut into consecutive pieces of about ``PIECE_BYTES``, each ending at a line end (or the file's)."""
    with open(path, "rb") as f:
        offset, first_line = 0, 1
        while data := f.read(PIECE_BYTES):
            if not data.endswith(b"\n"):
                data += f.readline()
            yield Piece(offset, len(data), first_line)
            offset, first_line = offset + len(data), first_line + data.count(b"\n")


def _lines(path: str, piece: Piece) -> Iterator[tuple[Line, str | InputError]]:
    """Each non-blank line of a piece with its text; the text of a line that is not UTF-8 is its ``InputError``."""
    with open(path, "rb") as f:
        f.seek(piece.offset)
        data = f.read(piece.size)
    offset = piece.offset
    for line_no, raw in enumerate(io.BytesIO(data), start=piece.first_line):
        line = _decoded(raw, line_no, path)
        if not isinstance(line, str) or line.strip():
            yield Line(line_no, offset, len(raw)), line
        offset += len(raw)


def _decoded(raw: bytes, line_no: int, path: str) -> str | InputError:
    try:
        return raw.decode("utf-8").removeprefix("\ufeff" if line_no == 1 else "")
    except UnicodeDecodeError as err:
        return InputError(path, f"line {line_no}", f"not UTF-8 text at byte {err.start + 1}")


def json_lines(path: str) -> Iterator[tuple[int, str | InputError]]:
    """``(line number, text)`` of each non-blank line, streamed; the text of a line that is not UTF-8 is its
    ``InputError``, for the caller to raise as a reject of that line."""
    return ((where.number, line) for piece in _pieces(path) for where, line in _lines(path, piece))


def read_line(path: str, where: tuple[int, int, int]) -> str:
    """The text of the line the first pass found ``where`` it is (``line_entries``); unbuffered: a worker reads one
    line per scene, and a buffered file took longer to open than the line to read."""
    number, offset, size = where
    with open(path, "rb", buffering=0) as f:
        f.seek(offset)
        line = _decoded(f.read(size), number, path)
    if isinstance(line, InputError):  # the file changed since the first pass
        raise line
    return line


def line_entries(path: str, image_id, words=None, num_proc: int = 1) -> Iterator[Entry | InputError]:
    """An ``Entry`` per line of a JSON Lines file (its payload: the ``Line``, a plain tuple), its id
    ``image_id(fields, line number)`` and, given ``words``, the names and attributes ``words(data)`` finds in it; the
    ``InputError`` of a line that is not UTF-8, not a JSON object or has no usable id.

    Decoding every line is most of a build's first pass, so a file of several pieces is read by ``num_proc``
    processes, a piece each, its entries handed back in the file's order (``image_id`` and ``words`` are module
    functions, so they reach the processes by name)."""
    read = functools.partial(_piece_entries, path, image_id, words)
    if num_proc < 2 or os.path.getsize(path) <= PIECE_BYTES:
        found = itertools.chain.from_iterable(map(read, _pieces(path)))
    else:
        found = _in_order(read, _pieces(path), num_proc)
    return (item if isinstance(item, InputError) else _entry(path, *item) for item in found)


def _piece_entries(path: str, image_id, words, piece: Piece) -> list[tuple | InputError]:
    """What ``line_entries`` finds in a piece, each entry as a plain tuple (``_entry``'s arguments), a word found
    on several lines held once: what crosses between processes fastest (a named tuple takes ten times as long)."""
    found, shared = [], {}
    for where, line in _lines(path, piece):
        try:
            if isinstance(line, InputError):
                raise line
            fields = fields_of(line, where.number, path)
            found_id = image_id(fields, where.number)
        except InputError as err:
            found.append(err)
            continue
        names, attributes = words(fields.data) if words else ((), ())
        names, attributes = (tuple(shared.setdefault(word, word) for word in group) for group in (names, attributes))
        found.append((found_id, *where, names, attributes))
    return found


def _entry(path: str, image_id: str, number: int, offset: int, size: int, names: tuple, attributes: tuple) -> Entry:
    return Entry(image_id, (number, offset, size), path, f"line {number}", names, attributes)


def _in_order(work, pieces: Iterator[Piece], num_proc: int) -> Iterator[tuple | InputError]:
    """``work(piece)`` for every piece by ``num_proc`` processes, the results in order; only a few pieces are read
    ahead of the caller (memory stays flat), and none once it stops (at the first bad line, or ``num_images``)."""
    with PiecePool(num_proc) as pool:
        pending = collections.deque()
        for piece in pieces:
            pending.append(pool.apply_async(work, (piece,)))
            if len(pending) > 2 * num_proc:
                yield from pending.popleft().get()
        while pending:
            yield from pending.popleft().get()


def fields_of(line: str, line_no: int, path: str) -> Fields:
    """One line as a JSON object."""
    record = f"line {line_no}"
    try:
        data = json.loads(line)
    except (ValueError, RecursionError) as err:  # JSONDecodeError, a 5,000-digit number, [[[[...]]]] too deep
        problem = f"column {err.colno}: {err.msg}" if isinstance(err, json.JSONDecodeError) else str(err)
        raise InputError(path, record, f"malformed JSON at {problem}") from None
    return Fields(data, path, record)


def _image_id(fields: Fields, line_no: int) -> str:
    return fields.text("image_id", default=f"line-{line_no}")


def _words(data: dict) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The names and attributes of a line's objects that are valid text, read without checking the rest (the
    worker that parses the line does): what the line adds to the source's vocabulary."""
    objects = data.get("objects")
    objects = [obj for obj in objects if type(obj) is dict] if type(objects) is list else []
    names = [obj.get("name") for obj in objects]
    attributes = [a for obj in objects if type(obj.get("attributes")) is list for a in obj["attributes"]]
    return tuple(filter(_is_text, names)), tuple(filter(_is_text, attributes))


def _is_text(value) -> bool:
    """Text a row may hold (no lone surrogate) and that says something (not blank)."""
    if type(value) is not str or not value.strip():
        return False
    try:
        return value.isascii() or bool(value.encode("utf-8"))
    except UnicodeEncodeError:
        return False


def _object(fields: Fields, index: int) -> SceneObject:
    return SceneObject(
        id=fields.whole("id", INT64, default=index),
        name=fields.text("name"),
        bbox=fields.numbers("bbox", 4),
        attributes=fields.texts("attributes"),
        score=fields.number("score", (0, 1), default=None),
    )


def _plain_object(item, index: int) -> SceneObject | None:
    """The object as ``_object`` reads it, when every field is plainly what it must be (ASCII text, numbers in
    range): the common case, read without ``Fields`` (a COCO-scale source has millions of objects). None otherwise:
    ``Fields`` then reads it, and names what is wrong."""
    if type(item) is not dict:
        return None
    get = item.get  # each field looked up on its own, not by a generator: 30 % less time per object
    object_id, name, bbox, attributes, score = get("id"), get("name"), get("bbox"), get("attributes"), get("score")
    if object_id is None:
        object_id = index
    if attributes is None:
        attributes = []
    if (
        type(object_id) is not int
        or not INT64[0] <= object_id <= INT64[1]
        or type(name) is not str
        or not name.isascii()
        or type(bbox) is not list
        or len(bbox) != 4
        or not all(map(finite, bbox))
        or type(attributes) is not list
        or (attributes and not all(type(a) is str and a.isascii() for a in attributes))
        or not (score is None or (finite(score) and 0 <= score <= 1))
    ):
        return None
    return SceneObject(object_id, name, bbox, attributes, score)


def _parse(line: str, line_no: int, path: str) -> Scene:
    """The typed scene of one line; its image path still as written, its size ``None`` when not stated."""
    fields = fields_of(line, line_no, path)
    objects = [
        _plain_object(item, index) or _object(Fields(item, path, f"line {line_no}", f"object {index}"), index)
        for index, item in enumerate(fields.items("objects", default=[]))
    ]
    detected.read(fields)  # checked like every field; the card reads it (``JsonlSource.detection``)
    width, height = fields.whole("width", IMAGE_SIDE, default=None), fields.whole("height", IMAGE_SIDE, default=None)
    if (width is None) != (height is None):
        raise fields.error("give both 'width' and 'height', or neither (then they are read from the image)")
    return Scene(
        image_id=_image_id(fields, line_no),
        image=fields.text("image"),
        width=width,
        height=height,
        caption=fields.text("caption"),
        objects=objects,
        source="jsonl",
        license=fields.text("license", default=""),
        origin=path,
    )


class JsonlSource:
    name = "jsonl"
    help = "jsonl:PATH"
    takes_path = True
    has_boxes = True
    card_metadata = {
        "annotations_creators": ["found", "machine-generated"],
        "language_creators": ["found", "machine-generated"],
    }
    annotation_license = None
    license_link = None
    tags = ()

    @classmethod
    def open(cls, path: str, *, seed: int, num_images: int | None, image_root: str | None) -> JsonlSource:
        return cls(path, image_root)

    @staticmethod
    def source_datasets(path: str) -> list[str]:
        """The card's ``source_datasets``: ``extended|other-NAME``, NAME from the file's name."""
        name = re.sub(r"[^a-z0-9]+", "-", os.path.splitext(path)[0].lower()).strip("-")
        return [f"extended|other-{name}"]

    def __init__(self, path: str, image_root: str | None = None):
        self.path = os.path.abspath(path)
        if not os.path.isfile(self.path):
            raise InputError(self.path, None, "file not found")
        self.folder = os.path.dirname(self.path)
        self.image_root = os.path.realpath(image_root or self.folder)
        self.description = f"Scenes from the JSON Lines file {markdown.code(os.path.basename(self.path))}."
        self.license = "As stated per row in the `license` column by the provider of the annotations."

    @property
    def detection(self) -> list[dict]:
        """The ``detector`` settings of ``lgt detect`` in the rows, each with its number of rows (for the card)."""
        stat = os.stat(self.path)
        return [json.loads(item) for item in _file_summary(self.path, stat.st_mtime_ns, stat.st_size)]

    def entries(self, num_proc: int = 1) -> Iterator[Entry | InputError]:
        """Each line's id; a line that is no JSON object, not UTF-8 or has a bad id is an ``InputError``."""
        return line_entries(self.path, _image_id, _words, num_proc)

    def scene(self, payload: tuple[int, int, int]) -> Scene:
        where = Line(*payload)
        record = f"line {where.number}"
        scene = _parse(read_line(self.path, where), where.number, self.path)
        scene.image = local_image(os.path.join(self.folder, scene.image), self.image_root, self.path, record)
        if scene.width is None:
            scene.width, scene.height = image_size(scene.image, scene.image_id)
        return check_scene(scene, record)


@functools.lru_cache(maxsize=8)
def _file_summary(path: str, modified: int, size: int) -> tuple:
    """``summary`` of a JSON Lines file, read once per version of it (the key holds its mtime and size)."""
    return tuple(json.dumps(item, sort_keys=True) for item in detected.summary(json_lines(path)))
