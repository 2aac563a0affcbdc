"""``lgt detect``: boxes for images that have only a caption, written as the JSON Lines source ``lgt build`` reads.

    lgt detect docci:/data/docci --detector transformers:IDEA-Research/grounding-dino-base --output scenes.jsonl
    lgt build --source jsonl:scenes.jsonl ...

For each image of the source (any source whose records have an image file and a caption: ``docci:``, ``coco:``,
``jsonl:``), the caption's object phrases (``phrases.py``) are the detector's text queries; its boxes are thresholded
and de-duplicated (``boxes.py``) into the scene's objects, each with its ``score`` and the ``phrase`` it was found for,
and every row records the detector, its revision and the settings (``provenance.py``).

Raw detections are cached by the image's content, the detector, its revision and dtype (bfloat16 scores are not
float32 ones), and the queries of each pass, in a generation cache file of their own (``detections.sqlite`` beside
the generation cache): each batch is stored as it finishes, so a killed run continues where it stopped and a rerun
loads no model at all; thresholds are applied after the cache, so trying another ``--box-threshold`` is free too.
The output is written beside itself and moved into place when complete: a killed run leaves the previous output as
it was.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from datasets.utils import logging
from datasets.utils.tqdm import tqdm

from ..errors import BuildError, EmptyBuildError, InputError, one_line
from ..generation import GenerationCache, default_cache_path
from ..generation.request import Response
from ..images import decode, decode_image
from ..scene import Scene
from ..sources import SOURCES, detected, open_source, source_label
from ..synthesis import stage1
from . import provenance
from .boxes import MAX_BOXES_PER_QUERY, SCORE_FLOOR, RawDetection, objects_from
from .detector import Detector, Tagger, parse_model, revision_of
from .phrases import VERSION as RULES_VERSION
from .phrases import Phrase, rule_phrases

logger = logging.get_logger(__name__)

VERSION = 1  # of the raw detections a cache entry holds: part of every key
DEFAULT_BOX_THRESHOLD = 0.3
DEFAULT_NMS_IOU = 0.5
FILE_SOURCES = ", ".join(source.help for source in SOURCES.values() if source.takes_path)


def shard_of(image_id: str, index: int, count: int) -> bool:
    """Whether an image is in shard ``index`` of ``count``: the sha1 of its id, as ``builder.split_of`` hashes it,
    taken modulo ``count`` (so every shard holds its share of each split)."""
    return int.from_bytes(hashlib.sha1(image_id.encode()).digest()[:8], "big") % count == index


def detection_cache_path() -> str:
    """``detections.sqlite`` beside the generation cache (``$LGT_CACHE_DIR``, else ``$HF_HOME/lgt``)."""
    return str(default_cache_path().parent / "detections.sqlite")


@dataclass
class Planned:
    """One image to detect on: its scene, its phrases, and per pass the queries' indices and the cache key."""

    scene: Scene
    phrases: list[Phrase]
    passes: list[list[int]] = field(default_factory=list)
    keys: list[bytes] = field(default_factory=list)
    error: InputError | None = None  # why the image is left out (``--on-error skip``)


def run(args) -> int:
    """``lgt detect`` (``args`` from ``add_parser``); prints what it wrote, or with ``--dry-run`` what it would do."""
    spec = parse_model(args.detector, "--detector")
    _check(args)
    revision = revision_of(spec)
    rejects: list[InputError] = []
    scenes = list(_scenes(args, rejects))
    if not scenes:
        why = f"; the first bad record: {rejects[0]}" if rejects else ""
        raise EmptyBuildError(f"{args.source}: no image to detect on{' in this shard' if args.shard else ''}{why}")
    tagger, phrases_id = _phrase_maker(args)
    captions = [scene.caption for scene in scenes]
    all_phrases = tagger(captions) if tagger else [rule_phrases(caption) for caption in captions]
    detector = Detector(spec, revision, device=args.device, batch_size=args.batch_size, dtype=args.dtype)
    images = [Planned(scene, phrases) for scene, phrases in zip(scenes, all_phrases, strict=True)]
    cache = GenerationCache(args.cache or detection_cache_path())
    try:
        for image in tqdm(images, desc="Planning detector passes", unit=" images", disable=len(images) < 100):
            try:
                _plan(image, detector)
            except InputError as error:
                _set_aside(image, error, args.on_error)
        cached = cache.get_many({key for image in images for key in image.keys})
        passes = sum(len(image.keys) for image in images)
        missing = sum(key not in cached for image in images for key in image.keys)
        if args.dry_run:
            _print_plan(images, passes, missing)
            return 0
        ran = _detect_missing(images, cached, detector, cache, args)
    finally:
        cache.close()
    settings = detected.settings(
        spec.name, revision, args.box_threshold, args.nms_iou, phrases_id, source_label(args.source)
    )
    kept = [image for image in images if not image.error]
    written = _write(args.output, kept, cached, settings, args.box_threshold, args.nms_iou)
    if args.on_error == "skip":
        rejects += [image.error for image in images if image.error]
        _write_rejects(args.output, rejects)
        print(f"skipped {len(rejects):,} bad record(s); report: {args.output}.rejects.jsonl")
    print(
        f"detector {spec.name}@{revision[:12]}: {ran:,} of {passes:,} passes run through the model, "
        f"{passes - ran:,} read from the cache"
    )
    print(
        f"wrote {os.path.abspath(args.output)}: {len(kept):,} images, {written:,} objects; "
        f"next: lgt build --source jsonl:{args.output}" + _image_root_hint(args.output, scenes)
    )
    return 0


def _check(args) -> None:
    if os.path.isdir(args.output):
        raise ValueError(f"--output {args.output} is a folder: name the .jsonl file to write")
    for name in ("box_threshold", "nms_iou"):
        value = getattr(args, name)
        if not 0 < value <= 1:
            raise ValueError(f"--{name.replace('_', '-')} must be above 0 and at most 1, not {value}")
    if args.box_threshold < SCORE_FLOOR:
        raise ValueError(f"--box-threshold {args.box_threshold}: the cache keeps scores from {SCORE_FLOOR} up")
    for name in ("batch_size", "num_images"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a whole number from 1 up, not {getattr(args, name)}")
    if args.box_threshold >= stage1.CONFIDENT_SCORE:
        logger.warning(
            f"--box-threshold {args.box_threshold} drops every box below {stage1.CONFIDENT_SCORE}: stage 1 then "
            "sees no uncertain box and cannot tell a category with missed instances from a complete one "
            "(see the README, Caption-only images)"
        )


def _scenes(args, rejects: list[InputError]) -> Iterator[Scene]:
    """The source's scenes in this shard, at most ``--num-images``; a bad record stops the run or is set aside."""
    source = open_source(args.source, image_root=args.image_root)
    if not source.takes_path:
        raise ValueError(f"lgt detect reads image files with captions: use {FILE_SOURCES}")
    seen: dict[str, str] = {}
    for entry in tqdm(source.entries(), desc=f"Reading {source_label(args.source)}", unit=" images"):
        try:
            if isinstance(entry, InputError):
                raise entry
            if args.shard and not shard_of(entry.image_id, *args.shard):
                continue
            if entry.image_id in seen:
                raise InputError(
                    entry.origin,
                    entry.record,
                    f"duplicate image id {entry.image_id!r} (first at {seen[entry.image_id]})",
                )
            seen[entry.image_id] = entry.where
            scene = source.scene(entry.payload)
        except InputError as error:
            if args.on_error == "raise":
                raise
            rejects.append(error)
            continue
        if scene.objects:
            logger.debug(f"{scene.image_id}: the source's {len(scene.objects)} boxes are replaced by detections")
        yield scene
        if args.num_images and len(seen) >= args.num_images:
            return


def _phrase_maker(args):
    """``(tagger or None, the phrases' provenance)`` for ``--phrases``."""
    if args.phrases == "rules":
        return None, f"rules@{RULES_VERSION}"
    spec = parse_model(args.phrases, "--phrases")
    revision = revision_of(spec)
    return Tagger(spec, revision, device=args.device), f"tagger:{spec.name}@{revision[:12]}"


def _image_hash(path: str, image_id: str) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as error:
        raise InputError(path, image_id, f"image file cannot be read: {error.strerror or error}") from None
    return digest.hexdigest()


def _set_aside(image: Planned, error: InputError, on_error: str) -> None:
    """A bad image stops the run (``--on-error raise``) or is left out of the output and listed (``skip``)."""
    if on_error == "raise":
        raise error
    image.error = error


def _plan(image: Planned, detector: Detector) -> None:
    """The passes of an image's queries and the cache key of each."""
    queries = [p.query for p in image.phrases]
    image.passes = detector.passes(queries) if queries else []
    content = _image_hash(image.scene.image, image.scene.image_id)
    for indices in image.passes:
        payload = {
            "version": VERSION,
            "model": detector.spec.name,
            "revision": detector.revision,
            "dtype": str(detector.dtype),
            "image": content,
            "queries": [queries[i] for i in indices],
            "floor": SCORE_FLOOR,
            "per_query": MAX_BOXES_PER_QUERY,
        }
        image.keys.append(hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).digest())


def _print_plan(images: list[Planned], passes: int, missing: int) -> None:
    queries = [len(image.phrases) for image in images]
    total = sum(queries)
    print(
        f"dry run: {len(images):,} images, {total:,} queries ({total / max(1, len(images)):.1f} per image, at most "
        f"{max(queries, default=0)}), {passes:,} detector passes, {passes - missing:,} cached, {missing:,} to run; "
        "nothing was detected or written"
    )


def _detect_missing(images: list[Planned], cached: dict, detector: Detector, cache: GenerationCache, args) -> int:
    """Run every pass not in the cache, a batch at a time, storing each batch as it finishes; return how many ran.

    An image that cannot be decoded is set aside (``_set_aside``).
    """
    todo = [
        (image, indices, key)
        for image in images
        for indices, key in zip(image.passes, image.keys, strict=True)
        if key not in cached
    ]
    if not todo:
        return 0
    detector.load()
    model = f"{detector.spec.name}@{detector.revision}"
    progress = tqdm(total=len(todo), desc="Detecting", unit=" passes")
    try:
        for start in range(0, len(todo), detector.batch_size):
            chunk = todo[start : start + detector.batch_size]
            pixels = {id(image): _pixels(image, args.on_error) for image, _, _ in chunk}
            batch = [item for item in chunk if pixels[id(item[0])] is not None]
            items = [(pixels[id(image)], [image.phrases[i].query for i in indices]) for image, indices, _ in batch]
            try:
                found = detector.detect(items)
            except (RuntimeError, ValueError) as error:  # the model refused an input, or the GPU ran out of memory
                names = ", ".join(image.scene.image_id for image, _, _ in batch)
                raise BuildError(f"detector {detector.spec.name} failed on {names}: {one_line(str(error))}") from None
            rows = [
                (key, model, f"detect@{VERSION}", _response(raw))
                for (_, _, key), raw in zip(batch, found, strict=True)
            ]
            cache.put_many(rows)
            cached.update((key, response) for key, _, _, response in rows)
            progress.update(len(chunk))
    finally:
        progress.close()
    return len(todo)


def _pixels(image: Planned, on_error: str):
    """The image decoded for the model; None (the image set aside) when it cannot be and bad records are skipped."""
    if image.error:
        return None
    try:
        data = decode_image(image.scene.image, image.scene.image_id)[0]
    except InputError as error:
        _set_aside(image, error, on_error)
        return None
    return decode(data).convert("RGB")


def _response(raw: list[RawDetection]) -> Response:
    """Raw detections as the cache stores outputs: one JSON text."""
    text = json.dumps([[d.query, d.score, *d.box] for d in raw], separators=(",", ":"))
    return Response((text,), ("stop",), 0, 0)


def _raw(image: Planned, cached: dict) -> list[RawDetection]:
    """An image's raw detections from every pass, query indices into its phrases."""
    found = []
    for indices, key in zip(image.passes, image.keys, strict=True):
        for query, score, *box in json.loads(cached[key].texts[0]):
            found.append(RawDetection(indices[query], score, tuple(box)))
    return found


def _write(
    output: str, images: list[Planned], cached: dict, settings: dict, box_threshold: float, nms_iou: float
) -> int:
    """The JSON Lines file, written beside ``output`` and moved into place whole; return the number of objects."""
    folder = os.path.dirname(os.path.abspath(output))
    partial = os.path.join(folder, f".{os.path.basename(output)}.partial")
    objects = 0
    try:
        os.makedirs(folder, exist_ok=True)
        with open(partial, "w", encoding="utf-8") as f:
            for image in images:
                found = objects_from(_raw(image, cached), image.phrases, box_threshold, nms_iou)
                objects += len(found)
                f.write(json.dumps(provenance.row(image.scene, found, folder, settings), ensure_ascii=False) + "\n")
        os.replace(partial, output)
    except OSError as error:  # a read-only folder, a full disk: the detections stay cached for the next run
        raise BuildError(f"cannot write {output}: {error.strerror or error}") from None
    return objects


def _write_rejects(output: str, rejects: list[InputError]) -> None:
    with open(f"{output}.rejects.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(error.as_reject()) + "\n" for error in rejects)


def _image_root_hint(output: str, scenes: list[Scene]) -> str:
    folder = os.path.realpath(os.path.dirname(os.path.abspath(output)))
    outside = [s.image for s in scenes if os.path.commonpath([s.image, folder]) != folder]
    if not outside:
        return ""
    root = os.path.commonpath([os.path.dirname(path) for path in outside])
    return f" --image-root {root} (the images lie outside the output's folder)"


def _shard(text: str) -> tuple[int, int]:
    """``--shard I/N``: this run detects shard I (0 to N-1) of N."""
    index, _, count = text.partition("/")
    if not (index.isdigit() and count.isdigit() and int(index) < int(count)):
        raise argparse.ArgumentTypeError(f"must be I/N with 0 <= I < N, e.g. 0/8, not {text!r}")
    return int(index), int(count)


def add_parser(commands, formatter) -> argparse.ArgumentParser:
    """The ``detect`` subcommand of ``lgt``."""
    detect = commands.add_parser(
        "detect",
        help="give caption-only images boxes with an open-vocabulary detector (writes the JSON Lines source)",
        formatter_class=formatter,
    )
    detect.add_argument("source", help=f"images with captions: {FILE_SOURCES}")
    detect.add_argument(
        "--detector",
        required=True,
        metavar="MODEL",
        help="transformers:HUB_ID_OR_PATH of a zero-shot detector (Grounding DINO, OWLv2), e.g. "
        "transformers:IDEA-Research/grounding-dino-base",
    )
    detect.add_argument("--output", required=True, help="the JSON Lines file to write (scenes with boxes)")
    detect.add_argument(
        "--box-threshold", type=float, default=DEFAULT_BOX_THRESHOLD, help="keep boxes scoring at least this"
    )
    detect.add_argument(
        "--nms-iou",
        type=float,
        default=DEFAULT_NMS_IOU,
        help="a box overlapping a better one of the same head noun by this IoU or more is dropped",
    )
    detect.add_argument(
        "--phrases",
        default="rules",
        metavar="rules|transformers:MODEL",
        help="how object phrases are taken from the caption: deterministic rules, or a part-of-speech tagger model",
    )
    detect.add_argument("--batch-size", type=int, default=8, help="images (detector passes) per forward pass")
    detect.add_argument("--device", default="auto", help="torch device (auto: cuda when available, else cpu)")
    detect.add_argument(
        "--dtype",
        choices=("float32", "bfloat16"),
        default="float32",
        help="the detector's weights and activations (bfloat16: about twice as fast on recent GPUs)",
    )
    detect.add_argument("--num-images", type=int, default=None, help="detect the first N images (default: all)")
    detect.add_argument("--shard", type=_shard, default=None, metavar="I/N", help="detect shard I of N (0 <= I < N)")
    detect.add_argument("--image-root", default=None, help="a folder images may also be read from")
    detect.add_argument(
        "--on-error", choices=("raise", "skip"), default="raise", help="stop at a bad record, or skip and list it"
    )
    detect.add_argument(
        "--cache", metavar="FILE", default=None, help=f"the detection cache (default: {detection_cache_path()})"
    )
    detect.add_argument(
        "--dry-run", action="store_true", help="print the number of images, queries and detector passes; run nothing"
    )
    detect.set_defaults(run=run)
    return detect
