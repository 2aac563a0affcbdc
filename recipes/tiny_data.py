"""A tiny model and a small training dataset for the CPU smoke path: the random Qwen2.5-VL of ``tests/tiny_models.py``
with the chat template TRL ships for it, and `lgt build` of a few built-in scenes turned into the SFT, DPO and RL
configs through ``lgt.formats``, the builder's own row makers.

This is the one place the recipes' tests, ``staged_run.sh`` and the overhead benchmark get their data from. When
``lgt build`` makes ``sft_stage1``, ``dpo_stage1``, ``dpo_stage2`` and ``rl`` (issue 8), they are built by it; until
then they are made here from ``mcq_stage1`` with scripted traces: a correct one names the grounded objects with their
boxes and the answer they give, a wrong one picks another option, and ``dpo_stage2`` is made from the second half of
the stage-1 MCQs, a stand-in for stage-2 pairs.

    python recipes/tiny_data.py OUTPUT [--num-images 8]    # writes OUTPUT/lgt and OUTPUT/tiny-qwen2.5-vl
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import datasets
from datasets import Features, Image, List, Value
from lgt.answers import LETTERS
from lgt.build import CONFIGS as BUILT_CONFIGS
from lgt.build import build
from lgt.formats import dpo_row, rl_row, row_style, sft_row, trace_text

CONFIGS = ("sft_stage1", "dpo_stage1", "dpo_stage2", "rl")
MESSAGES = List({"role": Value("string"), "content": List({"type": Value("string"), "text": Value("string")})})
PROVENANCE = {
    "id": Value("string"),
    "image_id": Value("string"),
    "skill": Value("string"),
    "level": Value("int32"),
    "kind": Value("string"),
    "parents": List(Value("string")),
    "generator": Value("string"),
    "source": Value("string"),
    "license": Value("string"),
}
FEATURES = {
    "sft_stage1": Features({"messages": MESSAGES, "images": List(Image()), **PROVENANCE}),
    "dpo_stage1": Features(
        {"prompt": MESSAGES, "chosen": MESSAGES, "rejected": MESSAGES, "images": List(Image()), **PROVENANCE}
    ),
    "rl": Features(
        {
            "prompt": MESSAGES,
            "images": List(Image()),
            "solution": Value("string"),
            "answer": Value("string"),
            "options": List(Value("string")),
            **PROVENANCE,
        }
    ),
}
FEATURES["dpo_stage2"] = FEATURES["dpo_stage1"]
SEED = 0
TESTS = Path(__file__).resolve().parents[1] / "tests"


def make_tiny_model(output: str | Path) -> Path:
    """The tiny random Qwen2.5-VL at ``output``, with TRL's Qwen2.5-VL chat template (TRL swaps in its training
    variant, with generation markers, for ``assistant_only_loss`` when it recognises the template)."""
    from trl.chat_template_utils import qwen2_5_vl_chat_template

    sys.path.insert(0, str(TESTS))
    from tiny_models import build_tiny_vlm

    output = build_tiny_vlm(Path(output))
    (output / "chat_template.jinja").write_text(qwen2_5_vl_chat_template)
    return output


def scripted_trace(mcq: dict, letter: str) -> dict:
    """A trace row of ``mcq`` answering ``letter``: it looks at the grounded objects by their boxes first."""
    seen = "; ".join(f"the {g['name']} at {[round(v) for v in g['bbox']]}" for g in mcq["grounding"]) or "the scene"
    think = f"I look at {seen}. So the answer is {mcq['options'][LETTERS.index(letter)]}."
    kind = "O" if letter == mcq["answer"] else "X"
    return {
        **mcq,
        "id": f"{mcq['id']}-{kind}",
        "mcq_id": mcq["id"],
        "kind": kind,
        "text": trace_text(think, letter, mcq["options"], row_style(SEED, mcq["id"])),
        "generator": "scripted@recipes",
    }


def wrong_letter(mcq: dict) -> str:
    return next(letter for letter in LETTERS[: len(mcq["options"])] if letter != mcq["answer"])


def make_training_data(output: str | Path, num_images: int = 8) -> Path:
    """Write ``sft_stage1``, ``dpo_stage1``, ``dpo_stage2`` and ``rl`` under ``output``, loadable with
    ``load_dataset(output, config)``; return ``output``."""
    output = Path(output)
    if set(CONFIGS) <= set(BUILT_CONFIGS):
        build(source="scenes", configs=CONFIGS, num_images=num_images, output=str(output), seed=SEED)
        return output
    with tempfile.TemporaryDirectory() as work:
        build(source="scenes", configs=("mcq_stage1",), num_images=num_images, output=f"{work}/lgt", seed=SEED)
        mcqs = list(datasets.load_dataset(f"{work}/lgt", "mcq_stage1", split="train"))
        half = len(mcqs) // 2
        pairs = [dpo_row(scripted_trace(m, m["answer"]), scripted_trace(m, wrong_letter(m)), SEED) for m in mcqs]
        rows = {
            "sft_stage1": [sft_row(scripted_trace(mcq, mcq["answer"]), SEED) for mcq in mcqs],
            "dpo_stage1": pairs[:half],
            "dpo_stage2": pairs[half:],
            "rl": [rl_row(mcq, SEED) for mcq in mcqs],
        }
        for name in CONFIGS:
            table = datasets.Dataset.from_list(rows[name], features=FEATURES[name])
            table.to_parquet(str(output / name / "train-00000-of-00001.parquet"))
    listing = "".join(f"- config_name: {c}\n  data_files: {c}/*.parquet\n" for c in CONFIGS)
    (output / "README.md").write_text(f"---\nconfigs:\n{listing}---\n")
    return output


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output")
    parser.add_argument("--num-images", type=int, default=8)
    args = parser.parse_args()
    print(make_training_data(Path(args.output) / "lgt", args.num_images))
    print(make_tiny_model(Path(args.output) / "tiny-qwen2.5-vl"))
