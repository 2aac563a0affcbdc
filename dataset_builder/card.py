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
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from huggingface_hub import DatasetCard, DatasetCardData
from PIL import Image, ImageDraw, ImageFont

from . import audit, decontam, markdown, trace_audit, trace_stats
from .builder import CITATION, SPLITS
from .detection.provenance import card_section as grounding_section
from .sources import SOURCES, source_label
from .sources.jsonl import JsonlSource
from .stages import BOX_DOC, DEFAULT_CONFIG, STAGES, root
from .synthesis.traces import CUES

PREVIEW_FILE = "preview.png"
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


def config_files(folder: str, config: str) -> list[str]:
    return [path for split in SPLITS for path in split_files(folder, config, split)]


def read_parquet(paths: list[str], columns: list[str]) -> pa.Table:
    """``columns`` of parquet files (at least one), in order, as one table. A ``ParquetFile`` each: ``read_table``
    makes a dataset of each file, which costs more than reading a small file's columns."""
    return pa.concat_tables([pq.ParquetFile(path).read(columns=columns) for path in paths])


def parquet_rows(paths: list[str], columns: list[str]) -> Iterator[dict]:
    """The rows of ``columns`` of parquet files, in order, a batch at a time: memory stays flat however many rows
    (a build of 20,000 images read its 400,000 traces at once for the card, 1.3 GB)."""
    for path in paths:
        for batch in pq.ParquetFile(path).iter_batches(columns=columns):
            yield from batch.to_pylist()


def count_rows(folder: str, config: str) -> dict[str, int]:
    counts = {}
    for split in SPLITS:
        files = split_files(folder, config, split)
        if files:
            counts[split] = sum(pq.ParquetFile(path).metadata.num_rows for path in files)
    return counts


def parquet_bytes(folder: str, config: str) -> int:
    """The size of a config's parquet files: what a download of it costs."""
    return sum(os.path.getsize(path) for path in config_files(folder, config))


def column_counts(folder: str, config: str, split: str, columns: list[str]) -> dict[str, Counter]:
    """How often each value of each of ``columns`` comes up in a split (each file read once)."""
    table = read_parquet(split_files(folder, config, split), columns)
    return {
        column: Counter({item["values"]: item["counts"] for item in pc.value_counts(table.column(column)).to_pylist()})
        for column in columns
    }


def image_licenses(folder: str, config: str | None) -> Counter:
    """How many distinct images of ``config`` carry each licence text (none: a build whose rows state no licence)."""
    if config is None:
        return Counter()
    table = read_parquet(config_files(folder, config), ["image_id", "license"])
    # One thread: the groups come in the order the rows do, so licences that tie come in the order they appear.
    return Counter(
        table.group_by(["image_id", "license"], use_threads=False).aggregate([]).column("license").to_pylist()
    )


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
    first = next((path for path in files if pq.ParquetFile(path).metadata.num_rows), None)  # a unit may have none
    if first is None:
        return False
    batch = next(pq.ParquetFile(first).iter_batches(batch_size=512, columns=columns))
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
    table = read_parquet(config_files(folder, root()), ["objects", "caption"])
    images = table.num_rows
    objects = pc.sum(pc.list_value_length(table.column("objects"))).as_py() or 0
    caption_words = pc.sum(pc.list_value_length(pc.utf8_split_whitespace(table.column("caption")))).as_py() or 0
    flat = pc.list_flatten(table.column("objects"))
    names = Counter(
        {item["values"]: item["counts"] for item in pc.value_counts(pc.struct_field(flat, "name")).to_pylist()}
    )
    common = ", ".join(f"{markdown.text(name)} ({n:,})" for name, n in names.most_common(10))
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
    licenses = image_licenses(folder, next((c for c in configs if "license" in STAGES[c].features), None))
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
                "features": STAGES[config].features._to_yaml_list(),
                "splits": [
                    {"name": s, "num_bytes": arrow_bytes[config].get(s, 0), "num_examples": n}
                    for s, n in rows[config].items()
                ],
                "download_size": download[config],
                "dataset_size": sum(arrow_bytes[config].get(s, 0) for s in rows[config]),
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
                    STAGES[c].description,
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
        + BOX_DOC
        + ".\n\n"
        + "\n\n".join(
            f"`{c}`:\n\n"
            + _table(["field", "meaning"], [[f"`{name}`", doc] for name, doc in STAGES[c].fields.items()])
            for c in configs
        )
    )
    if root() in configs:
        sections.append(f"## `{root()}` at a glance\n\n" + _scene_statistics(folder))
    for config in configs:
        if STAGES[config].family != "mcq":
            continue
        counted = {s: column_counts(folder, config, s, ["skill", "answer", "generator"]) for s in rows[config]}
        per_split = {s: found["skill"] for s, found in counted.items()}
        skills = sorted(set().union(*per_split.values()))
        answers = {s: found["answer"] for s, found in counted.items()}
        generators = sum((found["generator"] for found in counted.values()), Counter())
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
        sections.append(
            "Generators: " + ", ".join(f"{markdown.code(g)} ({n:,})" for g, n in sorted(generators.items())) + "."
        )
    if source.get("detection"):
        sections.append(grounding_section(folder, source["detection"]))
    for key, section in REPORT_SECTIONS.items():
        if key in build_info:
            sections.append(section(build_info[key]))
    traced = [config for config in configs if STAGES[config].trace_column]
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
    if trace_audit.BUILD_INFO_KEY in build_info:
        sections.append(trace_audit.card_section(build_info[trace_audit.BUILD_INFO_KEY]))
    rejects = build_info.get("rejects", 0)
    sections.append(
        "## Source and licence\n\n"
        f"Built with `lgt {build_info['lgt_version']}` from {markdown.code(source_label(arguments['source']))}: "
        f"{source['description']}\n\n{source['license']}\n\n"
        "Licences of the images, as the rows state them: "
        + "; ".join(f"{markdown.text(text or 'none stated')} ({n:,} images)" for text, n in licenses.most_common(10))
        + ".\n\n"
        f"Images: {arguments['num_images'] or 'all'} requested, seed {arguments['seed']}"
        + (
            f", stored in the model's frame under {arguments['max_pixels']:,} pixels (see Coordinates). "
            if arguments.get("max_pixels")
            else ". "
        )
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
    field = STAGES[config].trace_column
    columns = [field, "kind", *(["cue"] if field == "text" else [])]
    rows = (
        row
        if field == "text"
        else {**row, "kind": row["kind"].split(" > ")[0], "cue": _cue(trace_stats.row_text(row, field))}
        for row in parquet_rows(config_files(folder, config), columns)
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
                markdown.code(generation[role]),
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
        f"The writer {markdown.code(generation['writer'])} composed the model-written stage-1 questions of "
        f"{generation['images']:,} images into multi-hop ones from the caption and boxes; each was kept only when the "
        f"verifier {markdown.code(generation['verifier'])} picked the same option ({generation['composites']:,} kept, "
        f"rows named {markdown.code(generation['generator'])}). Thrown away: {rejects}. Template questions are "
        "composed by program, their "
        "answers recomputed from the boxes.\n\n" + _cost_table(generation)
    )


def trace_generation_section(generations: dict) -> str:
    """Which models wrote the traces, what they cost, and what was thrown away and why."""
    parts = ["## Trace generation"]
    for config, generation in generations.items():
        rejects = ", ".join(f"`{reason}` {n:,}" for reason, n in generation["rejects"].items()) or "none"
        reasoner = (
            f"{markdown.code(generation['reasoner'])} continued each after a cue"
            if generation["reasoner"]
            else ("no reasoner continued them")
        )
        parts.append(
            f"`{config}`: the teacher {markdown.code(generation['teacher'])} wrote short chains of thought for "
            f"{generation['mcqs']:,} questions from their images; {reasoner}, from the caption, the boxes and the "
            f"question (never the image). {generation['traces']:,} traces kept; thrown away: {rejects}."
        )
        parts.append(_cost_table(generation))
    return "\n\n".join(parts)


def generation_section(generation: dict) -> str:
    """Which models wrote questions, what they cost, and what was thrown away and why."""
    writers = {"llm": "the writer model", "both": "the templates and the writer model"}[generation["stage1"]]
    verifier = (
        f" A verifier, {markdown.code(generation['verifier'])}, answered each question from the caption and boxes; "
        "only "
        "questions it answered the same way were kept."
        if generation["verifier"]
        else ""
    )
    cost = _table(
        ["role", "model", "requests", "from the cache", "model calls", "prompt tokens", "output tokens", "seconds"],
        [
            [
                role,
                markdown.code(generation[role]),
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
        f"`mcq_stage1` was written by {writers}: the writer, {markdown.code(generation['writer'])}, read each image's "
        f"dense caption and boxes (prompt {markdown.code(generation['prompt'])}) and wrote grounded questions as "
        "JSON, parsed strictly "
        "and held to the rules a template question meets: four distinct options, one correct letter, a known skill, "
        f"grounding on objects of the image, no answer given away.{verifier} Its rows name it in `generator`: "
        f"{markdown.code(generation['generator'])}. {generation['questions']:,} questions were kept for "
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


# The card section of each model stage's report in the build info (``Stage.report_key``).
REPORT_SECTIONS = {
    "generation": generation_section,
    "composition": composition_section,
    "trace_generation": trace_generation_section,
}


def _storage_section(configs: list[str], download: dict, arrow_bytes: dict, arguments: dict) -> str:
    """How the images are stored, and what that means for ``load_dataset`` at scale: when to stream, when to cap."""
    ratios = [
        f"`{c}` takes {_mb(sum(arrow_bytes[c].values()))} there for a {_mb(download[c])} download"
        for c in configs
        if "image" in STAGES[c].features
    ]
    pixels = (
        f"This build stored images in the frame of {arguments['max_pixels']:,} pixels."
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
        "on, and the default) so that every copy is small; boxes are scaled with the image. " + pixels + "\n"
        "- A plain `load_dataset` is fine while the cache (the table above) fits your disk comfortably.\n\n"
        + coordinates_note(arguments.get("max_pixels"))
    )


def coordinates_note(max_pixels: int | None) -> str:
    """How the pixel coordinates traces cite relate to what a model sees: the frame this build stored images in."""
    if max_pixels:
        return (
            "## Coordinates\n\n"
            "Traces cite pixel coordinates of the stored image (origin top left). This build stored every image in "
            f"the frame Qwen2.5-VL's processor gives it under `max_pixels` = {max_pixels:,} (each side a multiple of "
            f"28, at most {max_pixels:,} pixels in all: `lgt.images.model_frame`), boxes scaled with it. A recipe "
            "with the same `max_pixels` therefore feeds the model exactly these pixels, and every coordinate is "
            "where the thing is in what the model sees. The recipes warn when their processor would resize images "
            "whose traces cite pixel coordinates (another `max_pixels`, or another model's frame)."
        )
    return (
        "## Coordinates\n\n"
        "Traces cite pixel coordinates of the stored image, and this build kept the source's image sizes: a "
        "processor that resizes an image (Qwen2.5-VL's rounds every side to a multiple of 28 and caps the area at "
        "its `max_pixels`) moves what the coordinates point at. The recipes warn when that happens; rebuild with "
        "`--max-pixels` set to the recipe's `max_pixels` to store images in the frame the model sees."
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
