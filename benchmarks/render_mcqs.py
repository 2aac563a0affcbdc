"""Draw random MCQs of a build with their grounding boxes, one PNG each, for a person to judge.

    python benchmarks/render_mcqs.py lgt --count 30 --out /tmp/mcqs [--skill counting] [--seed 0]

Each picture is the image with every grounding box outlined and labelled, the question, the lettered options and
the built answer underneath. Judge each: would a person looking at it agree with the answer?
"""

from __future__ import annotations

import argparse
import glob
import io
import os
import random
import textwrap

import pyarrow.parquet as pq
from PIL import Image, ImageDraw, ImageFont

BOX_COLOURS = ((255, 0, 0), (0, 160, 255), (0, 200, 0), (255, 160, 0), (200, 0, 200), (0, 200, 200))
WIDTH = 720


def render(row: dict, path: str) -> None:
    stored = row["image"]
    image = Image.open(io.BytesIO(stored["bytes"]) if stored["bytes"] else stored["path"]).convert("RGB")
    scale = WIDTH / image.width
    image = image.resize((WIDTH, round(image.height * scale)))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=15)
    for index, ground in enumerate(row["grounding"]):
        colour = BOX_COLOURS[index % len(BOX_COLOURS)]
        box = [v * scale for v in ground["bbox"]]
        draw.rectangle(box, outline=colour, width=3)
        draw.text(
            (box[0] + 3, box[1] + 2), ground["name"], fill=colour, font=font, stroke_width=2, stroke_fill="white"
        )
    lines = textwrap.wrap(f"[{row['skill']}] {row['question']}", 80) + [
        f"{letter}. {option}" + ("   <== built answer" if letter == row["answer"] else "")
        for letter, option in zip("ABCD", row["options"], strict=True)
    ]
    sheet = Image.new("RGB", (WIDTH, image.height + 22 * len(lines) + 10), "white")
    sheet.paste(image, (0, 0))
    ImageDraw.Draw(sheet).multiline_text((8, image.height + 6), "\n".join(lines), fill="black", font=font, spacing=6)
    sheet.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="a built lgt folder")
    parser.add_argument("--count", type=int, default=30)
    parser.add_argument("--out", required=True, help="folder for the PNGs")
    parser.add_argument("--skill", default=None, help="only this skill")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    columns = ["id", "image", "question", "options", "answer", "skill", "grounding"]
    paths = sorted(glob.glob(os.path.join(args.folder, "mcq_stage1", "*.parquet")))
    rows = [row for path in paths for row in pq.read_table(path, columns=columns).to_pylist()]
    rows = [row for row in rows if args.skill in (None, row["skill"])]
    os.makedirs(args.out, exist_ok=True)
    for number, row in enumerate(random.Random(args.seed).sample(rows, min(args.count, len(rows)))):
        render(row, os.path.join(args.out, f"{number:03d}-{row['skill']}-{row['id']}.png"))
    print(f"wrote {min(args.count, len(rows))} pictures to {args.out}")


if __name__ == "__main__":
    main()
