"""``lgt show``: one static HTML page to look at a sample of a built config the way a person checking data would.

Per item: the image with its grounding boxes drawn and labelled (and, dashed, every other object of the scene that
the question, the options or a trace names), the question, the options with the gold one marked, and what the config
adds: a trace with its kind and its cue highlighted (``traces_*``, ``sft_*``), the chosen and rejected answers side by
side (``dpo_*``), the prompt and its solution (``rl``), the steps and parent questions
(``mcq_stage2``), the caption and every box (``scenes``). Rows that carry no boxes (SFT, DPO, RL, traces) are
joined through ``mcq_id``/``parents`` to the MCQ and trace configs of the same folder and split; when those are
absent the item is shown without what they would add.

Choices, and why:

- The shards are read with ``pyarrow``, only the row groups that hold sampled rows (and only the needed columns of
  the configs joined to): ``load_dataset`` would first convert the whole config into its cache to show 20 rows.
- Boxes are an SVG layer over the stored image, in the image's own pixel coordinates (``viewBox``): the image
  stays the bytes the model sees (downscaled only when large, never redrawn), labels are real text (escaped,
  selectable, sharp at any zoom), and a test can count the boxes in the page.
- A trace's answer is labelled by who wrote it: "scripted" (the offline teacher and reasoner, ids ``scripted/…``)
  or "model", so a page of scripted rows never reads as a model's behaviour.
- The page names the build folder, never its absolute path: a page is made to be shared.
- The page is self-contained (images as ``data:`` URLs, CSS inline) and runs no script at all. Every text comes
  from data, and model output is data: all of it is escaped, and a Content-Security-Policy forbids scripts and
  any network fetch, so a missed escape could still not run or load anything.
- The default output, ``<folder>/explorer/<config>.html``, sits inside the build but outside every config folder:
  the card's ``data_files`` patterns do not match it, so ``load_dataset`` and ``lgt push`` ignore it, and a rebuild
  (which replaces the folder) removes a page that would otherwise show stale rows.
"""

from __future__ import annotations

import base64
import glob
import html
import os
import random
import re
from collections import Counter

import pyarrow.parquet as pq
from datasets.utils import logging

from .answers import LETTERS, parse_answer
from .images import encoded_size, fit_pixels
from .stages import configs_of
from .synthesis.grammar import plural

logger = logging.get_logger(__name__)

MCQ_CONFIGS = configs_of("mcq")
TRACE_CONFIGS = configs_of("traces")
SCENE_CONFIGS = configs_of("scenes")
# The columns read from the configs an item is joined to (never their images).
MCQ_COLUMNS = ("id", "question", "options", "answer", "grounding")
TRACE_COLUMNS = ("id", "mcq_id", "kind", "short", "cue", "text", "correct", "teacher", "reasoner")
SCENE_COLUMNS = ("image_id", "caption", "objects")
# Larger images are downscaled for the page (about 800x800): enough to judge a box, small enough for 100 items.
MAX_PIXELS = 640_000
FIGURE_WIDTH = 460  # CSS pixels an image is shown at; box strokes and labels are sized for it
PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#0f9fb8", "#d61fbd", "#7f8c00", "#9a6324")
KIND_CLASSES = {"O": "good", "O→O": "good", "X→O": "fixed", "X": "bad", "O→X": "bad", "X→X": "bad"}
SCRIPTED = "scripted/"  # how the ids of the offline teacher and reasoner start (``synthesis.traces``)
_TAGS = re.compile(r"(</?think>|</?answer>)")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])")
_MAGIC = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG", "image/png"), (b"GIF8", "image/gif"), (b"RIFF", "image/webp"))


def default_output(folder: str, config: str) -> str:
    return os.path.join(folder, "explorer", f"{config}.html")


def write_explorer(
    folder: str, config: str, n: int, out: str | None = None, split: str = "train", seed: int = 0
) -> str:
    """Write a page showing ``n`` rows of ``config`` (``split``) drawn at random with ``seed``; return its path.

    ``ValueError`` when ``folder`` holds no such config or split (the message names those it holds).
    """
    if type(n) is not int or n < 1:
        raise ValueError(f"n must be a whole number from 1 up, not {n!r}")
    shards = _shards(folder, config, split)
    rows, total = _sample(shards, n, seed)
    if not rows:
        raise ValueError(f"{folder}/{config} has no rows in split {split!r}")
    joined = _Joined.read(folder, split, rows)
    items = "\n".join(_item(row, joined) for row in rows)
    page = _page(
        title=f"{config} · {split}",
        summary=f"{len(rows):,} of {total:,} rows of <code>{_e(config)}</code> ({_e(split)}), drawn with seed "
        f"{seed}, from <code>{_e(os.path.basename(os.path.abspath(folder)))}</code>. {_e(joined.note(rows))}",
        items=items,
        traces=any(key in rows[0] for key in ("text", "messages", "chosen")),
    )
    path = os.path.abspath(out or default_output(folder, config))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(page)
    logger.info(f"Showing {len(rows):,} of {total:,} {config} rows ({split}, seed {seed})")
    return path


# ---------------------------------------------------------------------------------------------------- reading rows


def _shards(folder: str, config: str, split: str) -> list[str]:
    for flag, name in (("config", config), ("split", split)):  # a path or a pattern would read outside the build
        if name in ("", ".", "..") or "/" in name or os.sep in name or glob.escape(name) != name:
            raise ValueError(f"--{flag} {name!r}: give the name of a {flag} of {folder}, not a path or a pattern")
    shards = sorted(glob.glob(os.path.join(glob.escape(folder), config, f"{split}-*.parquet")))
    if shards:
        return shards
    configs = (
        sorted(name for name in os.listdir(folder) if glob.glob(os.path.join(glob.escape(folder), name, "*.parquet")))
        if os.path.isdir(folder)
        else []
    )
    if config not in configs:
        held = ", ".join(configs) if configs else "none (run `lgt build` first)"
        raise ValueError(f"{folder} has no config {config!r}; configs there: {held}")
    splits = sorted({os.path.basename(p).split("-")[0] for p in glob.glob(os.path.join(folder, config, "*.parquet"))})
    raise ValueError(f"{folder}/{config} has no split {split!r}; splits there: {', '.join(splits)}")


def _sample(shards: list[str], n: int, seed: int) -> tuple[list[dict], int]:
    """``n`` rows drawn without replacement (all when fewer), in file order so rows of one image stay together."""
    sizes = [pq.ParquetFile(path).metadata.num_rows for path in shards]
    total = sum(sizes)
    picks = sorted(random.Random(seed).sample(range(total), min(n, total)))
    rows, start = [], 0
    for path, size in zip(shards, sizes, strict=True):
        rows += _take(path, [i - start for i in picks if start <= i < start + size])
        start += size
    return rows, total


def _take(path: str, positions: list[int], columns: tuple[str, ...] | None = None) -> list[dict]:
    """The rows at ``positions`` (ascending) of one shard, reading only the row groups that hold them."""
    if not positions:
        return []
    shard = pq.ParquetFile(path)
    if columns is not None:
        columns = [c for c in columns if c in shard.schema_arrow.names]
    rows, start = [], 0
    for group in range(shard.metadata.num_row_groups):
        size = shard.metadata.row_group(group).num_rows
        wanted = [i - start for i in positions if start <= i < start + size]
        if wanted:
            rows += shard.read_row_group(group, columns=columns).take(wanted).to_pylist()
        start += size
    return rows


def _find(folder: str, configs: tuple[str, ...], split: str, key: str, values: set, columns: tuple) -> dict:
    """Rows of ``configs`` whose ``key`` is in ``values``, by key; configs the folder lacks are skipped."""
    found = {}
    for config in configs:
        for path in sorted(glob.glob(os.path.join(glob.escape(folder), config, f"{split}-*.parquet"))):
            keys = pq.read_table(path, columns=[key]).column(key).to_pylist()
            for row in _take(path, [i for i, k in enumerate(keys) if k in values], columns):
                found[row[key]] = row
    return found


class _Joined:
    """What the sampled rows join to in the same folder and split: MCQs, traces, scene captions and objects, and the
    images of rows that carry none (traces: several per MCQ, they leave the image to the scene)."""

    def __init__(self, mcqs: dict, traces: dict, scenes: dict, images: dict):
        self.mcqs, self.traces, self.images = mcqs, traces, images
        self.captions = {image_id: scene["caption"] for image_id, scene in scenes.items()}
        self.objects = {image_id: scene["objects"] for image_id, scene in scenes.items()}

    @classmethod
    def read(cls, folder: str, split: str, rows: list[dict]) -> _Joined:
        ids = {i for row in rows for i in [row.get("mcq_id"), *(row.get("parents") or [])] if i}
        traces = _find(folder, TRACE_CONFIGS, split, "id", ids, TRACE_COLUMNS)
        ids |= {trace["mcq_id"] for trace in traces.values()}
        mcqs = _find(folder, MCQ_CONFIGS, split, "id", ids, MCQ_COLUMNS)
        scenes = _find(folder, SCENE_CONFIGS, split, "image_id", {row["image_id"] for row in rows}, SCENE_COLUMNS)
        images = {}
        for configs in (SCENE_CONFIGS, MCQ_CONFIGS):  # the scene's image, else that of any MCQ about it
            wanted = {row["image_id"] for row in rows if _image_of(row) is None} - set(images)
            if wanted:
                found = _find(folder, configs, split, "image_id", wanted, ("image_id", "image"))
                images.update((image_id, row["image"]) for image_id, row in found.items())
        return cls(mcqs, traces, scenes, images)

    def mcq_for(self, row: dict) -> dict | None:
        """The row itself when it is an MCQ, else the first MCQ its ``mcq_id``/``parents`` (or their traces) name."""
        if "grounding" in row:
            return row
        for ref in self._refs(row):
            ref = self.traces[ref]["mcq_id"] if ref in self.traces else ref
            if ref in self.mcqs:
                return self.mcqs[ref]
        return None

    def traces_for(self, row: dict) -> list[dict]:
        return [self.traces[ref] for ref in self._refs(row) if ref in self.traces]

    @staticmethod
    def _refs(row: dict) -> list[str]:
        return [ref for ref in [row.get("mcq_id"), *(row.get("parents") or [])] if ref]

    def note(self, rows: list[dict]) -> str:
        """What could not be joined, so that a missing box or cue reads as missing data, not as a page bug."""
        missing = {
            "MCQ (so no boxes)": sum(self.mcq_for(row) is None for row in rows if "objects" not in row),
            "trace (so no cue)": sum(not self.traces_for(row) for row in rows if "messages" in row or "chosen" in row),
            "scene (so no caption)": sum(row["image_id"] not in self.captions for row in rows),
        }
        found = [f"{count} without its {what}" for what, count in missing.items() if count]
        return f"Not found in this folder and split: {', '.join(found)}." if found else ""


# ------------------------------------------------------------------------------------------------------ rendering


def _e(text) -> str:
    """Text from data, safe in HTML content and attribute values."""
    return html.escape("" if text is None else str(text), quote=True)


def _item(row: dict, joined: _Joined) -> str:
    """An article: the image beside the question and what the config adds; a DPO pair takes the full width below."""
    mcq = joined.mcq_for(row) or {}
    traces = joined.traces_for(row)
    question = row.get("question") or mcq.get("question")
    options = row.get("options") or mcq.get("options") or []
    gold = row.get("answer") or mcq.get("answer")
    image = _image_of(row) or joined.images.get(row["image_id"])
    # One trace per row (traces, SFT): the options mark its answer as the one parser reads it.
    said = [row["text"]] if "text" in row else [_text(m) for m in row.get("messages", []) if m["role"] == "assistant"]
    predicted = parse_answer(said[-1], options) if said and options else None
    written = row if "text" in row else {"kind": row["kind"], **_match(said[-1], traces, True)} if said else {}
    if "objects" in row:  # a scene: every box
        boxes = [(f"{o['name']} #{o['id']}", o["bbox"], True) for o in row["objects"]]
    else:
        grounded = {g["object_id"] for g in mcq.get("grounding") or []}
        boxes = [(f"{g['name']} #{g['object_id']}", g["bbox"], True) for g in mcq.get("grounding") or []]
        texts = [
            question or "",
            *options,
            *said,
            *(_text(row[turn][-1]) for turn in ("chosen", "rejected") if row.get(turn)),
        ]
        named = _named(texts, joined.objects.get(row["image_id"]) or [])
        boxes += [(f"{o['name']} #{o['id']}", o["bbox"], False) for o in named if o["id"] not in grounded]
    side = [_scene(row) if "objects" in row else _question(question, options, gold, predicted, _writer(written))]
    below = ""
    if row.get("steps"):
        side.append(_steps(row, joined))
    if "text" in row:  # a trace row
        side.append(_trace("trace", row["text"], row, options, gold))
    if "messages" in row:
        side.append(_prompt([m for m in row["messages"] if m["role"] != "assistant"]))
        side.append(_trace("assistant", said[-1], written, options, gold))
    if "chosen" in row:
        side.append(_prompt(row["prompt"]))
        pair = [
            _trace(turn, _text(row[turn][-1]), _match(_text(row[turn][-1]), traces, turn == "chosen"), options, gold)
            for turn in ("chosen", "rejected")
        ]
        below = f'<div class="pair">{"".join(pair)}</div>'
    if "solution" in row:
        side.append(f'<p class="solution"><b>solution</b> <code>{_e(row["solution"])}</code></p>')
        side.append(_prompt(row["prompt"]))
    caption = joined.captions.get(row["image_id"])
    if caption and "objects" not in row:
        side.append(f'<details class="caption"><summary>scene caption</summary><p>{_e(caption)}</p></details>')
    return (
        f'<article class="item" id="{_e(row.get("id") or row["image_id"])}">{_meta(row)}<div class="top">'
        f'{_figure(image, boxes)}<div class="side">{"".join(side)}</div></div>{below}</article>'
    )


def _named(texts: list[str], objects: list[dict]) -> list[dict]:
    """The scene's objects that ``texts`` name: by their box (the rounded x extent as two numbers in a row, or the
    whole box as four: "x 157–224, y 45–111", "[157, 45, 224, 111]"), by an attribute and the name ("orange star"),
    or by the name alone where the scene has one object of that name. A trace's slip names the object it mistook,
    which is what a person checking it needs to see."""
    numbers = [[round(float(n)) for n in _NUMBER.findall(text)] for text in texts]
    runs = {tuple(found[i : i + size]) for found in numbers for size in (2, 4) for i in range(len(found) - size + 1)}
    words = " ".join(texts).lower()
    counts = Counter(obj["name"].lower() for obj in objects)

    def said(phrase: str) -> bool:
        return re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", words) is not None

    named = []
    for obj in objects:
        x0, y0, x1, y1 = (round(v) for v in obj["bbox"])
        name = obj["name"].lower()
        forms = [name, plural(name).lower()]
        by_box = (x0, x1) in runs or (x0, y0, x1, y1) in runs
        by_phrase = any(
            said(f"{attribute.lower()} {form}") for attribute in obj.get("attributes") or [] for form in forms
        )
        if by_box or by_phrase or (counts[name] == 1 and any(said(form) for form in forms)):
            named.append(obj)
    return named


def _writer(trace: dict) -> str:
    """Who wrote a trace's final answer (the reasoner where it continued the trace): "scripted", "model" or ""."""
    author = trace.get("reasoner") or trace.get("teacher")
    return "" if not author else "scripted" if author.startswith(SCRIPTED) else "model"


def _meta(row: dict) -> str:
    fields = [("id", row.get("id")), ("image", row["image_id"]), ("skill", row.get("skill"))]
    fields += [("level", row.get("level")), ("generator", row.get("generator"))]
    parts = [f"<span><i>{name}</i> {_e(value)}</span>" for name, value in fields if value not in (None, "")]
    kind = row.get("kind")
    badge = f'<span class="kind {KIND_CLASSES.get(kind, "other")}">{_e(kind)}</span>' if kind else ""
    return f'<header class="meta">{badge}{"".join(parts)}</header>'


def _figure(image: dict | None, boxes: list[tuple[str, list[float], bool]]) -> str:
    """The image with its boxes: ``(label, box, grounded)``, a box the question is not grounded on drawn dashed."""
    data = _image_bytes(image)
    if data is None:
        where = os.path.basename(image["path"]) if image and image.get("path") else ""
        return _no_image(f"not found: {where}" if where else "none in this row")
    try:
        width, height = encoded_size(data)
    except Exception:  # PIL raises many types for bytes that are not an image
        return _no_image("its bytes are not an image")
    small = fit_pixels(data, MAX_PIXELS)
    shown = small[0] if small else data
    mime = next((m for magic, m in _MAGIC if shown.startswith(magic)), "application/octet-stream")
    src = f"data:{mime};base64,{base64.b64encode(shown).decode('ascii')}"
    scale = width / FIGURE_WIDTH  # image pixels per CSS pixel
    font, stroke = 12 * scale, 2 * scale
    placed: list[tuple[float, float, float, float]] = []
    edges, labels = [], []  # every label drawn after every box edge, so no edge crosses a label
    for i, (label, (x0, y0, x1, y1), grounded) in enumerate(boxes):
        colour = PALETTE[i % len(PALETTE)]
        lx, ly, lw, lh = _label_place(label, (x0, y0, x1, y1), font, width, height, placed)
        placed.append((lx, ly, lw, lh))
        kind, dashes = ("edge", "") if grounded else ("edge named", f' stroke-dasharray="{3 * stroke:.3g}"')
        edges.append(
            f'<rect class="{kind}" x="{x0:g}" y="{y0:g}" width="{x1 - x0:g}" height="{y1 - y0:g}" fill="none" '
            f'stroke="{colour}" stroke-width="{stroke:.3g}"{dashes}/>'
        )
        labels.append(
            f'<g class="label"><rect x="{lx:.4g}" y="{ly:.4g}" width="{lw:.4g}" height="{lh:.4g}" '
            f'rx="{0.25 * font:.3g}" fill="{colour}"/><text x="{lx + 0.3 * font:.4g}" y="{ly + 0.95 * font:.4g}" '
            f'font-size="{font:.3g}" textLength="{lw - 0.6 * font:.4g}" lengthAdjust="spacingAndGlyphs">'
            f"{_e(label)}</text></g>"
        )
    return (
        f'<figure class="figure"><div class="frame"><img src="{src}" alt="image {width}x{height}" '
        f'width="{width}" height="{height}"><svg viewBox="0 0 {width} {height}" preserveAspectRatio="none" '
        f'aria-hidden="true">{"".join(edges + labels)}</svg></div>'
        f"<figcaption>{width}×{height} px · {len(boxes)} box{'es' if len(boxes) != 1 else ''}</figcaption></figure>"
    )


def _no_image(why: str) -> str:
    return f'<figure class="figure missing"><p>image unavailable: {_e(why)}</p></figure>'


def _label_place(label: str, box, font: float, width: int, height: int, placed: list) -> tuple:
    """``(x, y, w, h)`` of a box's label: above its top-left corner, else inside it, else below it, the first
    spot that overlaps no label placed before (else above); shifted to stay inside the image."""
    x0, y0, x1, y1 = box
    # A bold sans-serif character is about 0.63 em wide; the text is fitted to the width exactly (``textLength``).
    w, h = (0.63 * len(label) + 0.6) * font, 1.3 * font
    x = min(max(0.0, x0), max(0.0, width - w))
    spots = [(x, y0 - h), (x, y0), (x, y1)]
    fits = [(sx, min(max(0.0, sy), max(0.0, height - h))) for sx, sy in spots]
    free = [
        (sx, sy)
        for sx, sy in fits
        if not any(sx < px + pw and px < sx + w and sy < py + ph and py < sy + h for px, py, pw, ph in placed)
    ]
    return (*(free or fits)[0], w, h)


def _image_of(row: dict) -> dict | None:
    """The row's own image (``image``, or the first of ``images``) as stored: ``{"bytes", "path"}``."""
    return row.get("image") or next(iter(row.get("images") or []), None)


def _image_bytes(image: dict | None) -> bytes | None:
    """The stored bytes, or the file a ``--images path`` build points at; ``None`` when neither is readable."""
    if not image:
        return None
    if image.get("bytes"):
        return image["bytes"]
    try:
        with open(image.get("path") or "", "rb") as f:
            return f.read()
    except OSError:
        return None


def _question(question: str | None, options: list[str], gold: str | None, predicted: str | None, writer: str) -> str:
    """The question and the options, the gold one marked, and the trace's answer when the row has one trace, labelled
    by who wrote it (``writer``: "scripted", "model" or "" where unknown)."""
    if not options:
        return '<div class="qa"><p class="note">The MCQ this row was made from is not in this folder.</p></div>'
    items = []
    for letter, option in zip(LETTERS, options, strict=False):  # show what is there, however odd
        classes = ["option"] + ["gold"] * (letter == gold) + ["predicted"] * (letter == predicted)
        badges = '<span class="badge gold">✓ gold</span>' if letter == gold else ""
        if letter == predicted:
            said = {"scripted": "scripted answer", "model": "model's answer"}.get(writer, "trace's answer")
            badges += f'<span class="badge {"model-right" if letter == gold else "model-wrong"}">{_e(said)}</span>'
        items.append(
            f'<li class="{" ".join(classes)}" data-letter="{letter}"><span class="letter">{letter}</span>'
            f'<span class="text">{_e(option)}</span>{badges}</li>'
        )
    question = f'<p class="question">{_e(question)}</p>' if question else ""
    return f'<div class="qa">{question}<ol class="options">{"".join(items)}</ol></div>'


def _scene(row: dict) -> str:
    objects = "".join(
        f"<tr><td>{o['id']}</td><td>{_e(o['name'])}</td><td>{_e(', '.join(o.get('attributes') or []))}</td>"
        f"<td>{_e(', '.join(f'{v:g}' for v in o['bbox']))}</td></tr>"
        for o in row["objects"]
    )
    return (
        f'<div class="qa"><p class="caption-text">{_e(row["caption"])}</p><table class="objects"><thead><tr>'
        f"<th>id</th><th>name</th><th>attributes</th><th>box x0, y0, x1, y1</th></tr></thead>"
        f"<tbody>{objects}</tbody></table></div>"
    )


def _steps(row: dict, joined: _Joined) -> str:
    steps = "".join(f"<li>{_e(s['question'])} <b>→ {_e(s['answer'])}</b></li>" for s in row["steps"])
    parents = "".join(
        f"<li><code>{_e(p)}</code> {_e(joined.mcqs[p]['question']) if p in joined.mcqs else ''}</li>"
        for p in row.get("parents") or []
    )
    return (
        f'<div class="steps"><div><h3>steps</h3><ol>{steps or "<li>none</li>"}</ol></div>'
        f"<div><h3>parents</h3><ul>{parents or '<li>none</li>'}</ul></div></div>"
    )


def _text(message: dict) -> str:
    """A chat message's text; images show as ``[image]``."""
    content = message["content"]
    if isinstance(content, str):
        return content
    return "\n".join(part.get("text") or "" if part.get("type") == "text" else "[image]" for part in content)


def _prompt(messages: list[dict]) -> str:
    turns = "".join(
        f'<div class="turn"><span class="role">{_e(m["role"])}</span><pre>{_e(_text(m))}</pre></div>' for m in messages
    )
    return f'<details class="prompt"><summary>prompt as the model sees it</summary>{turns}</details>'


def _match(text: str, traces: list[dict], correct: bool) -> dict:
    """The joined trace this text was made from: the same text, else the one trace of the wanted correctness."""
    same = [t for t in traces if t["text"] == text]
    if same:
        return same[0]
    fitting = [t for t in traces if bool(t.get("correct")) == correct]
    return fitting[0] if len(fitting) == 1 else {}


def _trace(title: str, text: str, trace: dict, options: list[str], gold: str | None) -> str:
    """The trace text with its short CoT, its cue (highlighted) and the reasoner's expansion told apart, and its
    answer as ``answers.parse_answer`` reads it; a trace recorded as correct that does not parse to gold (or the
    other way round) is flagged."""
    kind = trace.get("kind")
    cue, short = trace.get("cue") or "", trace.get("short") or ""
    start = -1
    if cue:
        after = text.find(short) + len(short) if short and short in text else 0
        start = text.find(cue, after)
    if start >= 0:
        shown = (
            f'<span class="short">{_tagged(text[:start])}</span><mark class="cue">{_e(cue)}</mark>'
            f'<span class="expansion">{_tagged(text[start + len(cue) :])}</span>'
        )
    else:
        shown = _tagged(text)
    facts = [f'<span class="kind {KIND_CLASSES.get(kind, "other")}">{_e(kind)}</span>' if kind else ""]
    if _writer(trace):
        facts.append(f'<span class="writer">{_writer(trace)}</span>')
    if options:
        letter = parse_answer(text, options)
        right = letter is not None and letter == gold
        said = f"answers {letter}" if letter else "no answer parsed"
        facts.append(f'<span class="{"right" if right else "wrong"}">{"correct" if right else "wrong"}, {said}</span>')
        if "correct" in trace and bool(trace["correct"]) != right:
            recorded = "correct" if trace["correct"] else "wrong"
            facts.append(f'<span class="badge model-wrong">recorded as {recorded}</span>')
    cue_note = f"cue <mark>{_e(cue)}</mark>" if start >= 0 else "no cue" if "cue" in trace else "cue unknown"
    writers = " · ".join(f"{who} {_e(trace[who])}" for who in ("teacher", "reasoner") if trace.get(who))
    return (
        f'<section class="trace {_e(title)}"><h3>{_e(title)} {" ".join(facts)} <small>{cue_note}</small></h3>'
        f'<div class="text">{shown}</div>{f"<footer>{writers}</footer>" if writers else ""}</section>'
    )


def _tagged(text: str) -> str:
    """Escaped text with the ``<think>``/``<answer>`` tags set off."""
    return "".join(
        f'<span class="tag">{_e(part)}</span>' if _TAGS.fullmatch(part) else _e(part) for part in _TAGS.split(text)
    )


_STYLE = """
:root { --ink: #1d2330; --muted: #5f6b7a; --line: #d9dee6; --gold: #1f8a4c; --bad: #c0392b; --fix: #b7791f; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
  background: #f3f5f8; }
body > header { padding: 18px 28px; background: #1d2330; color: #fff; }
body > header h1 { margin: 0 0 4px; font-size: 20px; font-weight: 600; }
body > header p { margin: 0; color: #c8d0dc; font-size: 13px; }
body > header code { color: #fff; }
main { padding: 20px 28px; display: grid; gap: 20px; max-width: 1280px; }
.item { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 14px 18px 18px; }
.meta { display: flex; flex-wrap: wrap; gap: 4px 14px; align-items: center; font-size: 12px; color: var(--muted);
  margin-bottom: 10px; }
.meta i, .trace i { font-style: normal; color: #8a95a5; margin-right: 2px; }
.top { display: grid; grid-template-columns: 460px 1fr; gap: 20px; align-items: start; }
@media (max-width: 900px) { .top { grid-template-columns: 1fr; } }
.figure { margin: 0; max-width: 460px; }
.frame { position: relative; line-height: 0; border-radius: 6px; overflow: hidden; background: #e8ebf0; }
.frame img { width: 100%; height: auto; }
.frame svg { position: absolute; inset: 0; width: 100%; height: 100%; overflow: visible; }
.frame .label rect { opacity: 0.9; }
.frame text { fill: #fff; font-family: system-ui, sans-serif; font-weight: 600; }
figcaption { font-size: 12px; color: var(--muted); margin-top: 4px; }
.missing { padding: 40px 16px; background: #fdf2f2; color: var(--bad); border-radius: 6px; }
.question { font-size: 17px; font-weight: 600; margin: 0 0 10px; }
.options { list-style: none; padding: 0; margin: 0; display: grid; gap: 6px; }
.option { display: flex; align-items: center; gap: 10px; padding: 7px 10px; border: 1px solid var(--line);
  border-radius: 7px; }
.option .text { flex: 1; }
.letter { font-weight: 700; width: 24px; height: 24px; border-radius: 50%; background: #eef1f5; display: grid;
  place-items: center; font-size: 13px; flex: none; }
.option.gold { border-color: var(--gold); background: #eaf7ef; }
.option.gold .letter { background: var(--gold); color: #fff; }
.option.predicted:not(.gold) { border-color: var(--bad); background: #fdf0ef; }
.badge { font-size: 11px; font-weight: 600; padding: 1px 7px; border-radius: 9px; color: #fff; }
.badge.gold, .badge.model-right { background: var(--gold); }
.badge.model-wrong { background: var(--bad); }
.kind { font-weight: 700; font-size: 12px; padding: 1px 8px; border-radius: 9px; color: #fff; background: #6b7685; }
.kind.good { background: var(--gold); } .kind.fixed { background: var(--fix); } .kind.bad { background: var(--bad); }
.right { color: var(--gold); font-weight: 600; } .wrong { color: var(--bad); font-weight: 600; }
.writer { font-size: 11px; font-weight: 600; padding: 1px 7px; border-radius: 9px; background: #e3e8ef; }
.trace { margin-top: 14px; border: 1px solid var(--line); border-radius: 8px; overflow: hidden; }
.trace h3 { margin: 0; padding: 7px 12px; font-size: 13px; font-weight: 600; background: #f6f8fa;
  border-bottom: 1px solid var(--line); display: flex; flex-wrap: wrap; gap: 8px; align-items: center; }
.trace h3 small { margin-left: auto; font-weight: 400; color: var(--muted); }
.trace .text { padding: 10px 12px; white-space: pre-wrap; max-height: 26em; overflow: auto; font-size: 14px; }
.trace.chosen h3 { background: #eaf7ef; } .trace.rejected h3 { background: #fdf0ef; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 14px; }
.pair .trace { margin-top: 14px; }
.tag { color: #8a95a5; font-family: ui-monospace, monospace; font-size: 12px; }
mark, mark.cue { background: #ffe066; padding: 0 2px; border-radius: 3px; font-weight: 600; }
.expansion { background: #eaf1ff; box-decoration-break: clone; -webkit-box-decoration-break: clone; }
.trace footer { padding: 4px 12px 6px; font-size: 12px; color: var(--muted); border-top: 1px dashed var(--line); }
.legend { margin-top: 6px; display: flex; flex-wrap: wrap; gap: 6px 16px; font-size: 12px; color: #c8d0dc; }
.legend .expansion, .legend mark { color: var(--ink); }
.prompt, .caption { margin-top: 12px; font-size: 13px; }
.prompt summary, .caption summary { cursor: pointer; color: var(--muted); }
.turn { margin-top: 6px; } .role { font-size: 11px; text-transform: uppercase; color: var(--muted); }
.turn pre { margin: 2px 0 0; padding: 8px 10px; background: #f6f8fa; border-radius: 6px; white-space: pre-wrap;
  font: 13px/1.4 ui-monospace, monospace; }
.solution { margin: 12px 0 0; }
.steps { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; margin-top: 14px; font-size: 14px; }
.steps h3 { margin: 0 0 4px; font-size: 13px; color: var(--muted); }
.steps ol, .steps ul { margin: 0; padding-left: 20px; }
.caption-text { margin: 0 0 10px; }
.objects { border-collapse: collapse; font-size: 13px; width: 100%; }
.objects th, .objects td { text-align: left; padding: 3px 8px; border-bottom: 1px solid var(--line); }
.note { color: var(--muted); }
"""


_LEGEND = (
    '<p class="legend"><span><span class="badge gold">✓ gold</span> the correct option</span>'
    '<span><svg width="22" height="10"><rect x="1" y="1" width="20" height="8" fill="none" stroke="#fff" '
    'stroke-dasharray="3"/></svg> an object the question is not grounded on, named in its text or a trace</span>'
    "{traces}</p>"
)
_TRACE_LEGEND = (
    '<span><span class="badge model-wrong">scripted answer</span> / <span class="badge model-wrong">model\'s answer'
    "</span> the trace's final answer, by who wrote it (the offline scripted teacher, or a model)</span>"
    '<span>short CoT <mark>cue</mark> <span class="expansion">the reasoner\'s expansion</span></span>'
    '<span>kinds: <span class="kind good">O</span> <span class="kind good">O→O</span> '
    '<span class="kind fixed">X→O</span> <span class="kind bad">X</span> <span class="kind bad">O→X</span> '
    '<span class="kind bad">X→X</span> (short CoT → after expansion; O right, X wrong)</span>'
)


def _page(title: str, summary: str, items: str, traces: bool) -> str:
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>lgt · {_e(title)}</title>
<style>{_STYLE}</style>
</head>
<body>
<header><h1>lgt · {_e(title)}</h1><p>{summary}</p>{_LEGEND.format(traces=_TRACE_LEGEND if traces else "")}</header>
<main>
{items}
</main>
</body>
</html>
"""
