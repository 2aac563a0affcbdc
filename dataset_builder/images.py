"""Reading users' images: decode fully (so truncated files are caught), normalise the mode, keep bytes lossless.

Models and the ``datasets`` ``Image`` feature expect 8-bit RGB. Grayscale, palette, RGBA, CMYK and 16-bit files
are all legitimate images, so they are converted, not rejected; files that cannot be decoded are rejected.

Which files may be read at all: only those inside the source's folder (or ``--image-root``), judged after ``..``
and symlinks are resolved. An annotation file is data, often someone else's: it must not be able to pull
``/etc/passwd`` or a private photo into a dataset that is about to be published.
"""

from __future__ import annotations

import functools
import io
import math
import os
import struct

from PIL import Image, ImageFile

from .errors import InputError

# Never let PIL pad a truncated file with grey: a truncated image is an error.
ImageFile.LOAD_TRUNCATED_IMAGES = False


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16/32-bit grey: scale the used range to 8 bit instead of clipping everything above 255 to white.
        values = image.point(lambda v: v)  # to mode I
        lo, hi = values.getextrema()
        scale = 255.0 / max(1, hi - lo)
        return values.point(lambda v: (v - lo) * scale).convert("L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def decode_image(path: str, record: str) -> tuple[bytes, Image.Image, bool]:
    """``(bytes, decoded image, whether the bytes are JPEG)`` of an 8-bit RGB image, the original bytes when they
    already are: the decoded image is kept for ``fit_image``, so a photo is decoded once."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise InputError(path, record, "image file not found") from None
    except OSError as err:
        raise InputError(path, record, f"image file cannot be read: {err.strerror or err}") from None
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as err:  # PIL raises many types for corrupt data
        raise InputError(path, record, f"image cannot be decoded ({type(err).__name__}: {err})") from None
    jpeg = image.format == "JPEG"
    if image.mode == "RGB" and image.format in ("JPEG", "PNG", "WEBP"):
        return data, image, jpeg
    rgb = _to_rgb(image)
    out = io.BytesIO()
    if jpeg:  # a CMYK or grey photo: stay JPEG, high quality
        rgb.save(out, format="JPEG", quality=95)
    else:
        rgb.save(out, format="PNG")
    return out.getvalue(), rgb, jpeg


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG frames PIL reads (baseline, extended, progressive): their size is in the frame header. Anything else, and any
# file whose first HEADER_BYTES do not show its size plainly, is left to PIL.
_JPEG_FRAMES = frozenset((0xC0, 0xC1, 0xC2))
_JPEG_STANDALONE = frozenset((0x01, *range(0xD0, 0xD9)))  # TEM, RSTn, SOI: markers without a length
_JPEG_MARKER = struct.Struct(">BBH")  # 0xFF, the marker, the length of its segment (if it has one)
_JPEG_SIZE = struct.Struct(">HH")  # height, width in a frame header
HEADER_START = 4096  # where most files show their size; else the next 64 KiB (the most an EXIF segment before the
HEADER_BYTES = 1 << 16  # JPEG frame header may take) are read too


def _header_size(head: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from the first bytes of a PNG or JPEG file, read as PIL reads them; None if unclear."""
    if head.startswith(_PNG_SIGNATURE) and head[12:16] == b"IHDR":
        width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
        return (width, height) if width and height else None
    if not head.startswith(b"\xff\xd8"):
        return None
    at = 2
    while at + 9 <= len(head):
        fill, marker, length = _JPEG_MARKER.unpack_from(head, at)
        if fill != 0xFF:
            return None
        if marker == 0xFF:  # a fill byte
            at += 1
        elif marker in _JPEG_STANDALONE:
            at += 2
        elif marker in _JPEG_FRAMES:
            height, width = _JPEG_SIZE.unpack_from(head, at + 5)
            return (width, height) if width and height else None
        elif 0xC3 <= marker <= 0xCF or marker == 0xDA:  # another kind of frame, or image data before any frame
            return None
        else:
            at += 2 + length
    return None


def image_size(path: str, record: str) -> tuple[int, int]:
    """The size from the file header only (no decode): for sources that do not state it, and for ``--images path``.

    PNG and JPEG headers are read here (a COCO-scale ``--images path`` build reads one per image, and PIL's full
    header parse cost more than the rest of the scene); other formats, and anything unusual, by PIL.
    """
    try:
        with open(path, "rb", buffering=0) as f:
            head = f.read(HEADER_START)
            size = _header_size(head)
            if size is None and len(head) == HEADER_START:
                size = _header_size(head + f.read(HEADER_BYTES))
        if size:
            return size
        with Image.open(path) as image:
            return image.width, image.height
    except FileNotFoundError:
        raise InputError(path, record, "image file not found") from None
    except Exception as err:
        raise InputError(path, record, f"image cannot be read ({type(err).__name__}: {err})") from None


def check_size(path: str, record: str, size: tuple[int, int], stated: tuple[int, int]) -> None:
    if tuple(size) != tuple(stated):
        raise InputError(path, record, f"image is {size[0]}x{size[1]} but the annotations say {stated[0]}x{stated[1]}")


def check_image_file(path: str, record: str, width: int, height: int) -> None:
    """``--images path`` stores only the path, so the file's header must show an image of the annotated size."""
    check_size(path, record, image_size(path, record), (width, height))


def local_image(path: str, root: str, source: str, record: str) -> str:
    """The real path of the image at ``path``; ``InputError`` unless it lies inside ``root`` (itself a real path).

    ``..`` and symlinks are resolved before the comparison, so neither can reach outside. A file that is no link is
    its resolved folder joined with its name (the folder resolved once per build: a COCO-scale source's images lie in
    a few folders, and resolving every component of every path cost more than reading the image's header). Both
    paths being real (absolute, normalised), ``real`` lies inside ``root`` when it starts with ``root`` and a
    separator (``os.path.commonpath``, which says the same, took half of this function's time).
    """
    folder, name = os.path.split(path)
    resolved = os.path.isabs(folder) and name not in ("", ".", "..") and not os.path.islink(path)
    real = os.path.join(_real_folder(folder), name) if resolved else os.path.realpath(path)
    if not (real == root or real.startswith(root if root.endswith(os.sep) else root + os.sep)):
        raise InputError(
            source,
            record,
            f"image {path} resolves to {real}, outside {root}: images are read only from inside the source's "
            "folder (pass --image-root to allow another)",
        )
    return real


@functools.lru_cache(maxsize=1024)
def _real_folder(folder: str) -> str:
    return os.path.realpath(folder)


# The frame a Qwen2-VL / Qwen2.5-VL processor gives an image: sides multiples of 28 (14-pixel patches merged 2x2),
# at least 56x56 pixels in all, at most its ``max_pixels`` (the recipes': 512x512, the paper's cap).
FRAME_FACTOR = 28
FRAME_MIN_PIXELS = 56 * 56
MODEL_MAX_PIXELS = 512 * 512


def model_frame(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """``(width, height)`` the processor resizes an image to (``smart_resize`` of transformers' Qwen2-VL image
    processor): each side rounded to a multiple of ``FRAME_FACTOR``, scaled down (or up) by one factor when the
    area leaves [``FRAME_MIN_PIXELS``, ``max_pixels``]."""
    factor = FRAME_FACTOR
    w, h = round(width / factor) * factor, round(height / factor) * factor
    if w * h > max_pixels:
        beta = math.sqrt(width * height / max_pixels)
        w, h = (
            max(factor, math.floor(width / beta / factor) * factor),
            max(factor, math.floor(height / beta / factor) * factor),
        )
    elif w * h < FRAME_MIN_PIXELS:
        beta = math.sqrt(FRAME_MIN_PIXELS / (width * height))
        w, h = math.ceil(width * beta / factor) * factor, math.ceil(height * beta / factor) * factor
    return w, h


def fit_pixels(data: bytes, max_pixels: int) -> tuple[bytes, str, int, int] | None:
    """Encoded 8-bit RGB image bytes resized to the frame the model sees under ``max_pixels`` (``fit_image``).
    ``data`` was decoded before (``decode_image``, or a source that made it), so it is not checked again."""
    image = Image.open(io.BytesIO(data))
    return fit_image(image, max_pixels, image.format == "JPEG")


def fit_image(image: Image.Image, max_pixels: int, jpeg: bool) -> tuple[bytes, str, int, int] | None:
    """An 8-bit RGB image resized to the frame the model sees under ``max_pixels`` (``model_frame``).

    Returns ``(bytes, file suffix, width, height)``, or ``None`` when the image is already in that frame (its
    bytes are then kept as they are). Training resizes to that frame anyway, so storing it is what makes the pixel
    coordinates a trace cites the ones the model sees, and storing more only costs space. JPEG stays JPEG (quality
    95), anything else becomes PNG (lossless).
    """
    width, height = model_frame(image.width, image.height, max_pixels)
    if (width, height) == image.size:
        return None
    resized = image.convert("RGB").resize((width, height), Image.Resampling.LANCZOS, reducing_gap=3.0)
    out = io.BytesIO()
    if jpeg:
        resized.save(out, format="JPEG", quality=95)
        return out.getvalue(), ".jpg", width, height
    resized.save(out, format="PNG")
    return out.getvalue(), ".png", width, height


def decode(data: bytes) -> Image.Image:
    """Encoded image bytes as a PIL image, for model backends that take pixels."""
    return Image.open(io.BytesIO(data))


def encoded_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` of encoded image bytes, from the header alone."""
    with Image.open(io.BytesIO(data)) as image:
        return image.width, image.height
