"""A tiny model and a small training dataset for the CPU smoke path: the random Qwen2.5-VL of ``tests/tiny_models.py``
with the chat template TRL ships for it, and `lgt build` of a few built-in scenes (``sft_stage1``, ``sft_stage2``,
``dpo_stage1``, ``dpo_stage2``, ``rl``, with their parents), exactly as users build them.

This is the one place the recipes' tests, ``staged_run.sh`` and the overhead benchmark get their data from.

    python recipes/tiny_data.py OUTPUT [--num-images 14]   # writes OUTPUT/lgt and OUTPUT/tiny-qwen2.5-vl
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lgt.build import build

CONFIGS = ("sft_stage1", "sft_stage2", "dpo_stage1", "dpo_stage2", "rl")
# Images and a seed with which every config has train and validation rows, dpo_stage1 a test split and
# dpo_stage2 none, as the recipes' tests read a build (few of stage 2's built-in questions can slip: few DPO pairs).
SEED = 5
NUM_IMAGES = 14
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


def make_training_data(output: str | Path, num_images: int = NUM_IMAGES) -> Path:
    """Write ``sft_stage1``, ``sft_stage2``, ``dpo_stage1``, ``dpo_stage2`` and ``rl`` under ``output``, loadable with
    ``load_dataset(output, config)``; return ``output``."""
    build(source="scenes", configs=CONFIGS, num_images=num_images, output=str(output), seed=SEED)
    return Path(output)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output")
    parser.add_argument("--num-images", type=int, default=NUM_IMAGES)
    args = parser.parse_args()
    print(make_training_data(Path(args.output) / "lgt", args.num_images))
    print(make_tiny_model(Path(args.output) / "tiny-qwen2.5-vl"))
