"""The dataset card: Hub metadata (YAML ``configs`` that ``load_dataset`` reads, licence, sizes, task categories),
then what a person reads: fields, statistics, uses and limitations.

Counts are read back from the written parquet files, not from what the build meant to write; the Arrow size (what
``load_dataset``'s cache takes, every row with its own copy of the image) comes from the build itself.
"""

from __future__ import annotations

import glob
import io
import os
import re
from collections import Counter

import pyarrow.compute as pc
import pyarrow.parquet as pq
from huggingface_hub import DatasetCard, DatasetCardData
from PIL import Image, ImageDraw, ImageFont

from . import audit, decontam, trace_stats
from .builder import CITATION, DESCRIPTIONS, FEATURES, SPLITS, source_label
from .detection.provenance import card_section as grounding_section
from .sources import SOURCES
from .sources.jsonl import JsonlSource
from .synthesis.traces import CUES

DEFAULT_CONFIG = "mcq_stage1"
PREVIEW_FILE = "preview.png"
_BOX = "`[x0, y0, x1, y1]` in absolute pixels of the stored image (origin top left, x right, y down)"
# What every column holds, for the card's field tables; a test keeps these in step with FEATURES.
FIELDS = {
    "scenes": {
        "image_id": "Stable id of the image (e.g. `coco-val2017-139`); a hash of it fixes the split.",
        "image": "The image, 8-bit RGB, its bytes embedded (a `--images path` build references local files).",
        "width": "Image width in pixels (after `--max-pixels` downscaling, if the build used it).",
        "height": "Image height in pixels; boxes live in this `width` x `height` pixel space.",
        "caption": "Dense caption (COCO: the human captions joined; built-in scenes: written from the layout).",
        "objects": f"Boxed objects: `id` (unique in the image), `name` (category), `bbox` {_BOX}, `attributes` "
        "(e.g. colours), `score` (detector confidence; null for human boxes), `crowd` (a box over a group).",
        "source": "The source the record was read from: `scenes` (built in), `coco` or `jsonl`.",
        "license": "The licence of this image as the source states it.",
    },
    "mcq_stage1": {
        "id": "Stable content hash of image id, question, options and answer.",
        "image_id": "The image asked about; joins to `scenes.image_id`.",
        "image": "The same image as the scene's (stored once per parquet row group, see Storage).",
        "question": "The question, answerable from the image alone.",
        "options": "Four answer options, lettered A-D in this order.",
        "answer": "The letter of the correct option: `A` is `options[0]` ... `D` is `options[3]`.",
        "skill": "What the question tests (counting, spatial_relation, relative_size, relative_distance, "
        "existence, attribute, localization).",
        "level": "1 for stage-1 questions; composed multi-hop questions (later stages) have 2 or more.",
        "grounding": f"The objects the question is about: `object_id` (into the scene's `objects`), `name`, "
        f"`bbox` {_BOX}.",
        "parents": "Ids of the stage-1 questions this one was composed from (empty at stage 1).",
        "steps": "Stage 2: the sub-questions and their answers, in the order the composed answer follows from them "
        "(empty at stage 1).",
        "generator": "What wrote the question: `stage1/TEMPLATE@VERSION` or `stage2/TEMPLATE@VERSION` for a template, "
        "`stage1/llm@PROMPT_VERSION:MODEL@REVISION` for the writer model (`+verify@...:MODEL` when a verifier "
        "kept it).",
        "source": "The source of the image: `scenes`, `coco` or `jsonl`.",
        "license": "The licence of the image as the source states it.",
    },
}
FIELDS["mcq_stage2"] = {
    **FIELDS["mcq_stage1"],
    "question": "A multi-hop question composed from stage-1 questions of the same image; its answer is recomputed "
    "from the boxes.",
    "skill": "The composition: chain, comparison, set_count or conjunction.",
    "level": "The number of hops (2 or more).",
}
_ROW_FIELDS = {
    "skill": "The skill of the question the row is about.",
    "level": "1 for stage-1 questions, 2 or more for composed ones.",
    "parents": "The question's `mcq_stage*` id first, then the `traces_stage*` ids the row was made from.",
    "source": "The source of the image: `scenes`, `coco` or `jsonl`.",
    "license": "The licence of the image as the source states it.",
}
_KINDS = (
    "`O` a correct short chain of thought, `X` a wrong one; `O→O`, `X→O`, `O→X`, `X→X` the same continued by the "
    "reasoner after a cue, by whether the short one and the continued one end in the correct answer"
)
_TRACE_FIELDS = {
    "id": "Stable content hash of the question's id, the kind and the text.",
    "mcq_id": "The question (`mcq_stage*.id`).",
    "image_id": "The image; joins to `scenes.image_id` (traces carry no image themselves).",
    "question": "The question, as in the MCQ config.",
    "options": "Its four options.",
    "answer": "The letter of the correct option.",
    "skill": "The question's skill.",
    "level": "The question's level (1, or the hops of a composed question).",
    "kind": f"The trace's kind: {_KINDS}.",
    "short": "The teacher's short chain of thought (its reasoning, as written).",
    "cue": "The cue the continuation starts with (`Wait,` ...); empty when the short one stands alone.",
    "expansion": "The reasoner's continuation after the cue; empty when not continued.",
    "text": "The whole trace as an assistant writes it, in the answer format its prompt asks for.",
    "predicted": "The letter the trace ends with, by the one answer parser (empty when it gives none).",
    "correct": "Whether `predicted` is the correct letter.",
    "teacher": "What wrote the short chain of thought (`scripted/...` offline, else model, revision and prompt).",
    "reasoner": "What continued it (empty when not continued).",
    "generator": "Teacher and reasoner together.",
    "source": "The source of the image.",
    "license": "The licence of the image as the source states it.",
}


def _training_fields(columns: dict, kind: str, generator: str) -> dict:
    """A training config's fields: its own columns, then what every row carries."""
    return {
        **columns,
        "skill": _ROW_FIELDS["skill"],
        "level": _ROW_FIELDS["level"],
        "kind": kind,
        "parents": _ROW_FIELDS["parents"],
        "generator": generator,
        "source": _ROW_FIELDS["source"],
        "license": _ROW_FIELDS["license"],
    }


_IMAGE_ONCE = 'The image, once: the user turn\'s `{"type": "image"}` part stands for it (TRL\'s VLM format).'
_PROMPT = "TRL conversational prompt: system and user turns, as in SFT."
_SFT_FIELDS = _training_fields(
    {
        "id": "The trace's id.",
        "image_id": "The image; joins to `scenes.image_id`.",
        "images": _IMAGE_ONCE,
        "messages": "TRL conversational turns: system (think, then answer), user (image, question, lettered options, "
        "answer format), assistant (the trace).",
    },
    f"The trace's kind: {_KINDS}; SFT keeps `O`, `O→O` and `X→O`.",
    "What wrote the trace (teacher + reasoner).",
)
FIELDS.update({"traces_stage1": _TRACE_FIELDS, "traces_stage2": _TRACE_FIELDS})
FIELDS.update({name: _SFT_FIELDS for name in ("sft_stage1", "sft_stage2", "sft_stage2_merged")})
_DPO_FIELDS = _training_fields(
    {
        "id": "Stable hash of the two traces' ids.",
        "image_id": "The image; joins to `scenes.image_id`.",
        "images": _IMAGE_ONCE,
        "prompt": _PROMPT,
        "chosen": "The preferred assistant turn: a trace ending in the correct answer.",
        "rejected": "The other assistant turn: a trace of the same question ending in a wrong one.",
    },
    "`CHOSEN > REJECTED` kinds: `O` over `O→X`, `X` or `X→X`; `X→O` over its own `X` and over `X→X`.",
    "What wrote the two traces.",
)
FIELDS.update({"dpo_stage1": _DPO_FIELDS, "dpo_stage2": _DPO_FIELDS})
FIELDS["rl"] = {
    **_training_fields(
        {
            "id": "The question's id (`mcq_stage*.id`).",
            "image_id": "The image; joins to `scenes.image_id`.",
            "images": _IMAGE_ONCE,
            "prompt": _PROMPT,
            "solution": "The gold answer written as the prompt asks for it (`(B)`, `B.` or the option's text).",
            "answer": "The gold letter.",
            "options": "The four options (what `lgt.rewards.accuracy_reward` parses answers against).",
        },
        "`prompt`.",
        "What wrote the question.",
    ),
    "parents": "The question's id.",
}
# Creative Commons licences the Hub knows by id (https://huggingface.co/docs/hub/repositories-licenses).
HUB_CC_LICENSES = {
    "cc0-1.0",
    *(f"cc-by-{v}" for v in ("2.0", "2.5", "3.0", "4.0")),
    *(f"cc-by-sa-{v}" for v in ("3.0", "4.0")),
    *(f"cc-by-nc-{v}" for v in ("2.0", "3.0", "4.0")),
    "cc-by-nd-4.0",
    *(f"cc-by-nc-nd-{v}" for v in ("3.0", "4.0")),
    *(f"cc-by-nc-sa-{v}" for v in ("2.0", "3.0", "4.0")),
}
SIZE_CATEGORIES = (
    (10**3, "n<1K"),
    (10**4, "1K<n<10K"),
    (10**5, "10K<n<100K"),
    (10**6, "100K<n<1M"),
    (10**7, "1M<n<10M"),
    (10**8, "10M<n<100M"),
    (10**9, "100M<n<1B"),
)


def split_files(folder: str, config: str, split: str) -> list[str]:
    return sorted(glob.glob(os.path.join(folder, config, f"{split}-*-of-*.parquet")))


def count_rows(folder: str, config: str) -> dict[str, int]:
    counts = {}
    for split in SPLITS:
        files = split_files(folder, config, split)
        if files:
            counts[split] = sum(pq.ParquetFile(path).metadata.num_rows for path in files)
    return counts


def parquet_bytes(folder: str, config: str) -> int:
    """The size of a config's parquet files: what a download of it costs."""
    return sum(os.path.getsize(path) for split in SPLITS for path in split_files(folder, config, split))


def column_counts(folder: str, config: str, split: str, column: str) -> Counter:
    counts: Counter = Counter()
    for path in split_files(folder, config, split):
        for item in pc.value_counts(pq.read_table(path, columns=[column]).column(column)).to_pylist():
            counts[item["values"]] += item["counts"]
    return counts


def image_licenses(folder: str, config: str) -> Counter:
    """How many distinct images carry each licence text."""
    counts: Counter = Counter()
    for split in SPLITS:
        for path in split_files(folder, config, split):
            pairs = (
                pq.read_table(path, columns=["image_id", "license"]).group_by(["image_id", "license"]).aggregate([])
            )
            counts.update(pairs.column("license").to_pylist())
    return counts


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def render_preview(folder: str, path: str, count: int = 4) -> bool:
    """A strip of the first questions of the train split, their grounding boxes drawn: a look says more."""
    files = split_files(folder, DEFAULT_CONFIG, "train")
    if not files:
        return False
    columns = ["image", "question", "options", "answer", "grounding", "image_id", "skill"]
    rows, images, skills = [], set(), set()
    batch = next(pq.ParquetFile(files[0]).iter_batches(batch_size=512, columns=columns))
    for row in batch.to_pylist():
        if row["image_id"] in images or row["skill"] in skills:
            continue
        row["image"] = _decoded(row["image"])
        if row["image"] is None:
            continue
        images.add(row["image_id"])
        skills.add(row["skill"])
        rows.append(row)
        if len(rows) == count:
            break
    if not rows:
        return False
    tile, text_height = 320, 130
    strip = Image.new("RGB", (tile * len(rows), tile + text_height), "white")
    draw = ImageDraw.Draw(strip)
    font = ImageFont.load_default(size=13)
    for i, row in enumerate(rows):
        image = row["image"]
        scale = tile / max(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
        boxes = ImageDraw.Draw(image)
        for ground in row["grounding"]:
            boxes.rectangle([v * scale for v in ground["bbox"]], outline=(255, 0, 0), width=2)
        strip.paste(image, (i * tile, 0))
        lines = _wrap(row["question"], 42) + [
            f"{letter}. {option}" + ("  <-" if letter == row["answer"] else "")
            for letter, option in zip("ABCD", row["options"], strict=False)
        ]
        text = "\n".join(_cut(line, 44) for line in lines[:7])
        draw.multiline_text((i * tile + 6, tile + 4), text, fill="black", font=font, spacing=3)
    strip.save(path)
    return True


def _decoded(stored: dict) -> Image.Image | None:
    """A row's image as RGB; ``None`` if it cannot be shown (a referenced file changed since the build checked it)."""
    try:
        with Image.open(io.BytesIO(stored["bytes"]) if stored["bytes"] else stored["path"]) as image:
            return image.convert("RGB")
    except Exception:  # PIL raises many types for unreadable data; a preview is never worth failing a build for
        return None


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + [line] if line else lines


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _scene_statistics(folder: str) -> str:
    images, objects, caption_words, names = 0, 0, 0, Counter()
    for split in SPLITS:
        for path in split_files(folder, "scenes", split):
            table = pq.read_table(path, columns=["objects", "caption"])
            images += table.num_rows
            objects += pc.sum(pc.list_value_length(table.column("objects"))).as_py() or 0
            caption_words += pc.sum(pc.list_value_length(pc.utf8_split_whitespace(table.column("caption")))).as_py()
            flat = pc.list_flatten(table.column("objects"))
            for item in pc.value_counts(pc.struct_field(flat, "name")).to_pylist():
                names[item["values"]] += item["counts"]
    common = ", ".join(f"{name} ({n:,})" for name, n in names.most_common(10))
    return (
        f"{images:,} images, {objects:,} boxed objects ({objects / max(1, images):.1f} per image) of "
        f"{len(names):,} categories; captions average {caption_words / max(1, images):.0f} words. "
        f"Most frequent objects: {common}."
    )


def hub_license(text: str) -> str | None:
    """The Hub's id for a licence as a source states it ("CC BY 4.0", a creativecommons.org URL), if it has one."""
    text = text.lower()
    if "publicdomain/zero" in text or re.search(r"\bcc0\b", text):
        return "cc0-1.0"
    found = re.search(r"creativecommons\.org/licenses/([a-z-]+)/(\d\.\d)", text) or re.search(
        r"\bcc[ -](by(?:[ -](?:nc|sa|nd))*)[ -](\d\.\d)\b", text
    )
    if not found:
        return None
    licence = f"cc-{found.group(1).replace(' ', '-')}-{found.group(2)}"
    return licence if licence in HUB_CC_LICENSES else None


def license_metadata(source: str, image_licenses: Counter) -> dict:
    """The card's licence fields, true of every row: the Hub ids of all licences in play, or ``other`` explained.

    A row's image keeps its own licence (COCO: its Flickr licence); the source's annotations add theirs. When each
    of these has a Hub id the card lists them all; otherwise it says ``other`` and names every licence with its count.
    """
    kind = source_class(source)
    licences = {hub_license(text) for text in image_licenses}
    if kind.annotation_license:
        licences.add(kind.annotation_license)
    if image_licenses and None not in licences:
        ids = sorted(licences)
        return {"license": ids[0] if len(ids) == 1 else ids}
    stated = "; ".join(f"{text or 'none stated'} ({n:,} images)" for text, n in image_licenses.most_common())
    annotations = f"annotations {kind.annotation_license}; " if kind.annotation_license else ""
    metadata = {
        "license": "other",
        "license_name": "per-image-licenses",
        "license_details": f"Each image keeps the licence given in its row's `license` column ({annotations}"
        f"images: {stated}).",
    }
    if kind.license_link:
        metadata["license_link"] = kind.license_link
    return metadata


def source_class(name: str):
    """The source class a build's source info names; a source this lgt does not know reads as JSON Lines."""
    return SOURCES.get(name, JsonlSource)


def size_category(rows: int) -> str:
    """The Hub's size bucket for a number of rows."""
    return next((name for limit, name in SIZE_CATEGORIES if rows < limit), "1B<n<10B")


def _mb(num_bytes: int) -> str:
    return f"{num_bytes / 1e6:,.1f} MB"


def write_card(folder: str, build_info: dict) -> str:
    """Write ``README.md`` (and the preview picture) for the built ``folder``; return the card text."""
    rows = {config: count_rows(folder, config) for config in build_info["configs"]}
    configs = [config for config in build_info["configs"] if rows[config]]
    source = build_info["source"]
    arguments = build_info["arguments"]
    arrow_bytes = build_info["num_bytes"]
    download = {config: parquet_bytes(folder, config) for config in configs}
    licenses = image_licenses(folder, configs[0])
    card_data = DatasetCardData(
        pretty_name="Long Grounded Thoughts (lgt)",
        language=["en"],
        **license_metadata(source["name"], licenses),
        **source_class(source["name"]).card_metadata,
        multilinguality="monolingual",
        size_categories=[size_category(max(sum(rows[c].values()) for c in configs))],
        source_datasets=source_class(source["name"]).source_datasets(
            source_label(arguments["source"]).partition(":")[2]
        ),
        task_categories=["visual-question-answering", "multiple-choice"],
        task_ids=["visual-question-answering", "multiple-choice-qa"],
        tags=["lgt", "grounded-reasoning", "visual-grounding", *source_class(source["name"]).tags],
        configs=[
            {
                "config_name": config,
                "data_files": [{"split": s, "path": f"{config}/{s}-*.parquet"} for s in rows[config]],
                **({"default": True} if config == DEFAULT_CONFIG else {}),
            }
            for config in configs
        ],
        dataset_info=[
            {
                "config_name": config,
                "features": FEATURES[config]._to_yaml_list(),
                "splits": [
                    {"name": s, "num_bytes": arrow_bytes[config][s], "num_examples": n}
                    for s, n in rows[config].items()
                ],
                "download_size": download[config],
                "dataset_size": sum(arrow_bytes[config][s] for s in rows[config]),
            }
            for config in configs
        ],
    )
    has_preview = render_preview(folder, os.path.join(folder, PREVIEW_FILE))

    sections = [
        "# Long Grounded Thoughts (lgt)",
        "Verifiable, grounded multiple-choice visual questions built from image annotations by "
        "[lgt](https://arxiv.org/abs/2511.05705): every answer follows from the object boxes, every row names the "
        "objects it is about (`grounding`) and the template or model that wrote it (`generator`).",
        "```python\nfrom datasets import load_dataset\n\n"
        + "\n".join(f'{c} = load_dataset("{build_info.get("repo_id") or "path/to/lgt"}", "{c}")' for c in configs)
        + "\n```",
    ]
    if has_preview:
        sections.append(f"![The first training questions with their grounding boxes]({PREVIEW_FILE})")
    sections.append(
        "## Configs\n\n"
        + _table(
            ["config", "what it holds", *SPLITS, "download", "Arrow cache"],
            [
                [
                    f"`{c}`",
                    DESCRIPTIONS[c],
                    *(f"{rows[c].get(s, 0):,}" for s in SPLITS),
                    _mb(download[c]),
                    _mb(sum(arrow_bytes[c].values())),
                ]
                for c in configs
            ],
        )
    )
    sections.append(
        "## Dataset structure\n\n"
        "Splits are disjoint by image (a hash of `image_id` picks the split), and every config agrees on them. "
        "Boxes are "
        + _BOX
        + ".\n\n"
        + "\n\n".join(
            f"`{c}`:\n\n" + _table(["field", "meaning"], [[f"`{name}`", text] for name, text in FIELDS[c].items()])
            for c in configs
        )
    )
    if "scenes" in configs:
        sections.append("## `scenes` at a glance\n\n" + _scene_statistics(folder))
    for config in configs:
        if "answer" not in FEATURES[config] or "kind" in FEATURES[config]:
            continue
        per_split = {s: column_counts(folder, config, s, "skill") for s in rows[config]}
        skills = sorted(set().union(*per_split.values()))
        answers = {s: column_counts(folder, config, s, "answer") for s in rows[config]}
        generators = Counter()
        for split in rows[config]:
            generators.update(column_counts(folder, config, split, "generator"))
        sections.append(
            f"## `{config}` by skill\n\n"
            + _table(["skill", *rows[config]], [[k, *(f"{per_split[s][k]:,}" for s in rows[config])] for k in skills])
        )
        sections.append(
            "Correct letter share per split: "
            + "; ".join(
                f"{s}: "
                + ", ".join(f"{letter} {100 * answers[s][letter] / max(1, rows[config][s]):.1f}%" for letter in "ABCD")
                for s in rows[config]
            )
            + "."
        )
        sections.append("Generators: " + ", ".join(f"`{g}` ({n:,})" for g, n in sorted(generators.items())) + ".")
    if source.get("detection"):
        sections.append(grounding_section(folder, source["detection"]))
    if "generation" in build_info:
        sections.append(generation_section(build_info["generation"]))
    if "composition" in build_info:
        sections.append(composition_section(build_info["composition"]))
    if "trace_generation" in build_info:
        sections.append(trace_generation_section(build_info["trace_generation"]))
    traced = [config for config in configs if "kind" in FEATURES[config] and config != "rl"]
    if traced:
        judged = build_info.get("trace_judge", {})
        stats = {c: {**_trace_statistics(folder, c), **({"judge": judged[c]} if c in judged else {})} for c in traced}
        sections.append(trace_stats.statistics_section(stats))
    if build_info.get("decontamination"):
        sections.append(decontam.decontamination_section(build_info["decontamination"]))
    sections.append(_storage_section(configs, download, arrow_bytes, arguments))
    sections.append(USES)
    sections.append(LIMITATIONS)
    if audit.BUILD_INFO_KEY in build_info:
        sections.append(audit.card_section(build_info[audit.BUILD_INFO_KEY]))
    rejects = build_info.get("rejects", 0)
    sections.append(
        "## Source and licence\n\n"
        f"Built with `lgt {build_info['lgt_version']}` from `{source_label(arguments['source'])}`: "
        f"{source['description']}\n\n{source['license']}\n\n"
        "Licences of the images, as the rows state them: "
        + "; ".join(f"{text or 'none stated'} ({n:,} images)" for text, n in licenses.most_common(10))
        + ".\n\n"
        f"Images: {arguments['num_images'] or 'all'} requested, seed {arguments['seed']}"
        + (f", downscaled to at most {arguments['max_pixels']:,} pixels. " if arguments.get("max_pixels") else ". ")
        + (
            f"{rejects:,} input records were skipped as unusable; they are listed in the build's reject report."
            if rejects
            else "No input record was skipped."
        )
    )
    sections.append(f"## Citation\n\n```bibtex\n{CITATION}\n```")
    card = DatasetCard(f"---\n{card_data.to_yaml()}\n---\n\n" + "\n\n".join(sections) + "\n")
    card.save(os.path.join(folder, "README.md"))
    return str(card)


def _trace_statistics(folder: str, config: str) -> dict:
    """``trace_stats.trace_statistics`` of a written config, read column-wise (DPO: the chosen traces, their kind)."""
    field = {"traces": "text", "sft": "messages", "dpo": "chosen"}[config.split("_")[0]]
    columns = [field, "kind", *(["cue"] if field == "text" else [])]
    rows = (
        row
        if field == "text"
        else {**row, "kind": row["kind"].split(" > ")[0], "cue": _cue(trace_stats.row_text(row, field))}
        for split in SPLITS
        for path in split_files(folder, config, split)
        for row in pq.read_table(path, columns=columns).to_pylist()
    )
    return trace_stats.trace_statistics(rows, field)


def _cue(text: str) -> str:
    """The cue a continued trace's second part starts with (SFT and DPO rows do not record it): the pipeline wrote
    it, so the statistics of what the model learns to do leave it out."""
    return next((cue for cue in CUES if f"\n\n{cue} " in text), "")


def _cost_table(generation: dict) -> str:
    return _table(
        ["model", "id", "requests", "cache hits", "model calls", "output tokens", "seconds"],
        [
            [
                role,
                f"`{generation[role]}`",
                f"{stats['requests']:,}",
                f"{stats['hits']:,}",
                f"{stats['misses']:,}",
                f"{stats['output_tokens']:,}",
                f"{stats['seconds']:.1f}",
            ]
            for role, stats in generation["models"].items()
        ],
    )


def composition_section(generation: dict) -> str:
    """Which models composed the stage-2 questions of the model-written stage-1 ones, and what was thrown away."""
    rejects = ", ".join(f"`{reason}` {n:,}" for reason, n in generation["rejects"].items()) or "none"
    return (
        "## Composition by a model\n\n"
        f"The writer `{generation['writer']}` composed the model-written stage-1 questions of "
        f"{generation['images']:,} images into multi-hop ones from the caption and boxes; each was kept only when the "
        f"verifier `{generation['verifier']}` picked the same option ({generation['composites']:,} kept, rows named "
        f"`{generation['generator']}`). Thrown away: {rejects}. Template questions are composed by program, their "
        "answers recomputed from the boxes.\n\n" + _cost_table(generation)
    )


def trace_generation_section(generations: dict) -> str:
    """Which models wrote the traces, what they cost, and what was thrown away and why."""
    parts = ["## Trace generation"]
    for config, generation in generations.items():
        rejects = ", ".join(f"`{reason}` {n:,}" for reason, n in generation["rejects"].items()) or "none"
        reasoner = (
            f"`{generation['reasoner']}` continued each after a cue"
            if generation["reasoner"]
            else ("no reasoner continued them")
        )
        parts.append(
            f"`{config}`: the teacher `{generation['teacher']}` wrote short chains of thought for "
            f"{generation['mcqs']:,} questions from their images; {reasoner}, from the caption, the boxes and the "
            f"question (never the image). {generation['traces']:,} traces kept; thrown away: {rejects}."
        )
        parts.append(_cost_table(generation))
    return "\n\n".join(parts)


def generation_section(generation: dict) -> str:
    """Which models wrote questions, what they cost, and what was thrown away and why."""
    writers = {"llm": "the writer model", "both": "the templates and the writer model"}[generation["stage1"]]
    verifier = (
        f" A verifier, `{generation['verifier']}`, answered each question from the caption and boxes; only "
        "questions it answered the same way were kept."
        if generation["verifier"]
        else ""
    )
    cost = _table(
        ["role", "model", "requests", "from the cache", "model calls", "prompt tokens", "output tokens", "seconds"],
        [
            [
                role,
                f"`{generation[role]}`",
                f"{stats['requests']:,}",
                f"{stats['hits']:,}",
                f"{stats['misses']:,}",
                f"{stats['prompt_tokens']:,}",
                f"{stats['output_tokens']:,}",
                f"{stats['seconds']:,.1f}",
            ]
            for role, stats in generation["models"].items()
        ],
    )
    rejects = generation["rejects"]
    thrown = (
        "Model output thrown away, by reason (a reason counts questions, except `malformed_json`, `truncated` and "
        "`no_questions`, which count answers, and `scene_*`, which count images):\n\n"
        + _table(["reason", "count"], [[f"`{reason}`", f"{count:,}"] for reason, count in rejects.items()])
        if rejects
        else "No model output was thrown away."
    )
    return (
        "## Generation\n\n"
        f"`mcq_stage1` was written by {writers}: the writer, `{generation['writer']}`, read each image's dense "
        f"caption and boxes (prompt `{generation['prompt']}`) and wrote grounded questions as JSON, parsed strictly "
        "and held to the rules a template question meets: four distinct options, one correct letter, a known skill, "
        f"grounding on objects of the image, no answer given away.{verifier} Its rows name it in `generator`: "
        f"`{generation['generator']}`. {generation['questions']:,} questions were kept for "
        f"{generation['images_with_questions']:,} of {generation['images']:,} images.\n\n"
        + cost
        + "\n\n"
        + thrown
        + "\n\nEvery generation is cached by the content of its request (model and revision, prompt and its "
        "version, sampling settings), so this build can be repeated with no model call: export the cache with "
        "`GenerationCache(FILE).to_dataset()`, import it elsewhere with `import_dataset`, and rebuild with "
        "`lgt build ... --cache FILE --cache-only`.\n\n"
        "Model-written questions are checked for form and grounding (and by the verifier, when there is one), not "
        "against the image itself: their answers are as right as the caption and boxes the writer read."
    )


def _storage_section(configs: list[str], download: dict, arrow_bytes: dict, arguments: dict) -> str:
    """How the images are stored, and what that means for ``load_dataset`` at scale: when to stream, when to cap."""
    ratios = [
        f"`{c}` takes {_mb(sum(arrow_bytes[c].values()))} there for a {_mb(download[c])} download"
        for c in configs
        if "image" in FEATURES[c]
    ]
    pixels = (
        f"This build capped images at {arguments['max_pixels']:,} pixels."
        if arguments.get("max_pixels")
        else "This build kept the source's image sizes."
    )
    return (
        "## Storage: when to stream, when to cap pixels\n\n"
        "Rows of one image are stored next to each other and the parquet `image` column is dictionary-encoded, so "
        "each parquet row group stores an image once however many questions ask about it. `load_dataset` then "
        "writes an Arrow cache in which every row holds its own copy of its image: "
        + "; ".join(ratios)
        + ". At the paper's scale (~750K stage-1 questions on ~15K images, ~50 per image) that cache would hold "
        "every image ~50 times. So:\n\n"
        "- **Stream** (`load_dataset(..., streaming=True)`) to train or evaluate straight from the parquet files "
        "as stored, with no cache; it yields the same rows and pixels.\n"
        "- **Cap pixels** when building (`lgt build --max-pixels 262144`, i.e. 512x512, the most the paper trains "
        "on) so that every copy is small; boxes are scaled with the image. " + pixels + "\n"
        "- A plain `load_dataset` is fine while the cache (the table above) fits your disk comfortably."
    )


USES = """## Uses

- **Supervised fine-tuning and evaluation of vision-language models** on grounded perception: each question has
  one correct letter that can be checked by string match, and `grounding` says which boxes it is about, so
  answers and rationales can be verified against the annotations.
- **Stage 1 of the Long Grounded Thoughts pipeline**: later stages compose these questions into multi-hop ones and
  distil chain-of-thought traces from them.
- **Not for**: judging a model's general visual understanding (the questions cover a few perception skills only),
  or any use the images' licences do not allow (see below)."""

LIMITATIONS = """## Bias, risks and limitations

- Questions are written by templates from boxes: the answers are exactly as correct as the annotations. Missing
  boxes (an unlabelled instance in a COCO photo) make counting and existence questions wrong for a person looking
  at the image; the templates avoid crowds and tiny instances, but cannot see what was never annotated.
- The questions are template-written English; a model can learn the templates' phrasing.
- Built-in scenes are synthetic shapes on plain backgrounds: good for checking a pipeline end to end, not a
  substitute for natural images.
- COCO images come from Flickr and carry its demographic and geographic skews; each keeps its own licence,
  named in the row's `license` column."""
