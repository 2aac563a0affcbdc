"""The dataset card: YAML ``configs`` that ``load_dataset`` reads, then statistics a person reads.

Every figure is read back from the written parquet files, not from what the build meant to write.
"""

from __future__ import annotations

import glob
import io
import os
from collections import Counter

import pyarrow.compute as pc
import pyarrow.parquet as pq
from huggingface_hub import DatasetCard, DatasetCardData
from PIL import Image, ImageDraw, ImageFont

from . import audit
from .builder import CITATION, DESCRIPTIONS, FEATURES, SPLITS

# The card's `license:` id per source; per-image licences stay in the rows.
LICENSE_IDS = {"scenes": "cc0-1.0", "coco": "cc-by-4.0", "jsonl": "other"}
DEFAULT_CONFIG = "mcq_stage1"
PREVIEW_FILE = "preview.png"


def split_files(folder: str, config: str, split: str) -> list[str]:
    return sorted(glob.glob(os.path.join(folder, config, f"{split}-*-of-*.parquet")))


def count_rows(folder: str, config: str) -> dict[str, int]:
    counts = {}
    for split in SPLITS:
        files = split_files(folder, config, split)
        if files:
            counts[split] = sum(pq.ParquetFile(path).metadata.num_rows for path in files)
    return counts


def count_bytes(folder: str, config: str, split: str) -> int:
    """Uncompressed size of a split, the figure the Hub shows as the dataset's size."""
    total = 0
    for path in split_files(folder, config, split):
        metadata = pq.ParquetFile(path).metadata
        total += sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
    return total


def column_counts(folder: str, config: str, split: str, column: str) -> Counter:
    counts: Counter = Counter()
    for path in split_files(folder, config, split):
        for item in pc.value_counts(pq.read_table(path, columns=[column]).column(column)).to_pylist():
            counts[item["values"]] += item["counts"]
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
        image = row["image"]
        if (
            row["image_id"] in images
            or row["skill"] in skills
            or not (image["bytes"] or os.path.isfile(image["path"]))
        ):
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
        stored = row["image"]
        image = Image.open(io.BytesIO(stored["bytes"]) if stored["bytes"] else stored["path"]).convert("RGB")
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


def _source_name(spec: str) -> str:
    """The source spec without the builder's local folders, which mean nothing on the Hub."""
    kind, _, path = spec.partition(":")
    return f"{kind}:{os.path.basename(os.path.normpath(path))}" if path else kind


def write_card(folder: str, build_info: dict) -> str:
    """Write ``README.md`` (and the preview picture) for the built ``folder``; return the card text."""
    rows = {config: count_rows(folder, config) for config in build_info["configs"]}
    configs = [config for config in build_info["configs"] if rows[config]]
    source = build_info["source"]
    card_data = DatasetCardData(
        pretty_name="Long Grounded Thoughts (lgt)",
        license=LICENSE_IDS.get(source["name"], "other"),
        language=["en"],
        task_categories=["visual-question-answering"],
        tags=["lgt", "grounded-reasoning", "multiple-choice", "synthetic"],
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
                    {"name": s, "num_bytes": count_bytes(folder, config, s), "num_examples": n}
                    for s, n in rows[config].items()
                ],
            }
            for config in configs
        ],
    )
    has_preview = render_preview(folder, os.path.join(folder, PREVIEW_FILE))

    sections = [
        "# Long Grounded Thoughts (lgt)",
        "Verifiable, grounded multiple-choice visual questions built from image annotations by "
        "[lgt](https://arxiv.org/abs/2511.05705): every answer follows from the object boxes, every row names the "
        "objects it is about (`grounding`) and the template that made it (`generator`).",
        "```python\nfrom datasets import load_dataset\n\n"
        + "\n".join(f'{c} = load_dataset("{build_info.get("repo_id") or "path/to/lgt"}", "{c}")' for c in configs)
        + "\n```",
    ]
    if has_preview:
        sections.append(f"![The first training questions with their grounding boxes]({PREVIEW_FILE})")
    sections.append(
        "## Configs\n\n"
        + _table(
            ["config", "what it holds", *SPLITS],
            [[f"`{c}`", DESCRIPTIONS[c], *(f"{rows[c].get(s, 0):,}" for s in SPLITS)] for c in configs],
        )
    )
    if "scenes" in configs:
        sections.append("## `scenes` at a glance\n\n" + _scene_statistics(folder))
    for config in configs:
        if "skill" not in FEATURES[config]:
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
        sections.append(
            "Generators (template@version): "
            + ", ".join(f"`{g}` ({n:,})" for g, n in sorted(generators.items()))
            + "."
        )
    if audit.BUILD_INFO_KEY in build_info:
        sections.append(audit.card_section(build_info[audit.BUILD_INFO_KEY]))
    rejects = build_info.get("rejects", 0)
    sections.append(
        "## Source and licence\n\n"
        f"Built with `lgt {build_info['lgt_version']}` from `{_source_name(build_info['arguments']['source'])}`: "
        f"{source['description']}\n\n{source['license']}\n\n"
        f"Images: {build_info['arguments']['num_images'] or 'all'} requested, "
        f"seed {build_info['arguments']['seed']}, images {build_info['arguments']['images']}. "
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
