"""Whether a recipe shows the model the pixels its traces' coordinates refer to.

Traces cite pixel coordinates of the stored image ("the circle at x 40–120, y 40–120"). ``lgt build`` stores each
image in the frame the model's processor gives it (``images.model_frame``, under ``--max-pixels``), so a recipe with
the same ``max_pixels`` feeds the model exactly those pixels. A processor that resizes the images instead (another
``max_pixels``, a build that kept the source's sizes, another model's frame) moves every coordinate: the model
would learn to cite places that are not where things are in what it sees. ``warn_if_rescaled`` checks a sample of
the training rows and says so in one warning, once per processor (a recipe's evaluation rows, from the same build,
would only repeat it).
"""

from __future__ import annotations

import re
import weakref

import numpy as np
from datasets.utils.logging import get_logger

logger = get_logger(__name__)

SAMPLE = 32  # rows looked at: a build stores every image in one frame, so a few tell
# A pixel coordinate as traces cite it: an extent ("x 40–120", "y from 10 to 60"), a coordinate ("x = 80") or a point.
CITES_PIXELS = re.compile(r"\b[xy] (?:from )?\d+ ?(?:–|-|to) ?\d+|\b[xy] = \d+|\(\d+, \d+\)")
MESSAGE_COLUMNS = ("messages", "prompt", "chosen", "rejected")
_WARNED = weakref.WeakSet()  # the processors a warning was given for


def _text(row: dict) -> str:
    """Every text part of a row's conversations."""
    parts = []
    for column in MESSAGE_COLUMNS:
        for turn in row.get(column) or ():
            content = turn["content"]
            parts += [content] if isinstance(content, str) else [p.get("text") or "" for p in content]
    return "\n".join(parts)


def processor_frame(processor, image) -> tuple[int, int] | None:
    """``(width, height)`` the processor resizes ``image`` to, read from the patch grid it makes; None for a
    processor that does not say (no ``image_grid_thw``)."""
    image_processor = getattr(processor, "image_processor", None)
    patch = getattr(image_processor, "patch_size", None)
    if image_processor is None or patch is None:
        return None
    grid = image_processor(images=[image]).get("image_grid_thw")
    if grid is None:
        return None
    _, height, width = (int(v) for v in np.asarray(grid)[0])
    return width * patch, height * patch


def warn_if_rescaled(dataset, processor) -> int:
    """Warn (once per processor) when the processor would resize sampled images whose rows cite pixel coordinates;
    return how many."""
    rows = dataset.select(range(min(SAMPLE, len(dataset))))
    sizes = []
    for row in rows:
        if CITES_PIXELS.search(_text(row)):
            for image in row.get("images") or ():
                frame = processor_frame(processor, image)
                if frame is None:
                    return 0
                sizes.append((image.size, frame))
    resized = [(size, frame) for size, frame in sizes if size != frame]
    if resized and processor not in _WARNED:
        _WARNED.add(processor)
        (width, height), (to_width, to_height) = resized[0]
        logger.warning(
            f"{len(resized)} of {len(sizes)} sampled images cite pixel coordinates in their traces but the processor "
            f"resizes them (e.g. {width}x{height} -> {to_width}x{to_height}): the model would learn coordinates that "
            "are not where things are in what it sees. Set max_pixels to the build's (lgt_build.json, arguments), "
            "or rebuild the data with `lgt build --max-pixels` equal to this recipe's max_pixels."
        )
    return len(resized)
