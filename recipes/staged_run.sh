#!/usr/bin/env bash
# The paper's post-training order on the tiny random Qwen2.5-VL, on the CPU, in one command:
# build -> SFT (sft_stage1) -> DPO stage 1 (dpo_stage1) -> DPO stage 2 (dpo_stage2), and GRPO (rl) from the SFT
# checkpoint as the online alternative; then every checkpoint is reloaded and made to generate.
#
#   recipes/staged_run.sh [WORKDIR]        # PYTHON=... to choose the interpreter (lgt[train] installed)
#
# WORKDIR (default tiny-staged-run, which .gitignore lists) keeps the build and the checkpoints to look at.
set -euo pipefail

RECIPES="$(cd "$(dirname "$0")" && pwd)"
TINY="$RECIPES/tiny-qwen2.5-vl"
PYTHON="${PYTHON:-python3}"
case "$PYTHON" in  # a path relative to here still names the same file once the script is in WORKDIR
  /*) ;;
  */*) PYTHON="$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")" ;;
esac
WORK="${1:-tiny-staged-run}"
LAUNCH=("$PYTHON" -m accelerate.commands.launch --cpu --num_processes 1 --num_machines 1 --mixed_precision no
        --dynamo_backend no)

mkdir -p "$WORK"
cd "$WORK"
rm -rf lgt tiny-qwen2.5-vl*

echo "== build: lgt (sft_stage1, dpo_stage1, dpo_stage2, rl) and the tiny model"
"$PYTHON" "$RECIPES/tiny_data.py" .

echo "== SFT on sft_stage1"
"${LAUNCH[@]}" "$RECIPES/sft.py" --config "$TINY/sft/config_cpu.yaml"

echo "== DPO stage 1 on dpo_stage1, from the SFT checkpoint"
"${LAUNCH[@]}" "$RECIPES/dpo.py" --config "$TINY/dpo/config_cpu.yaml"

echo "== DPO stage 2 on dpo_stage2, from DPO stage 1"
"${LAUNCH[@]}" "$RECIPES/dpo.py" --config "$TINY/dpo/config_cpu.yaml" --dataset_config dpo_stage2 \
    --model_name_or_path tiny-qwen2.5-vl-dpo-stage1 --output_dir tiny-qwen2.5-vl-dpo-stage2

echo "== GRPO on rl, from the SFT checkpoint"
"${LAUNCH[@]}" "$RECIPES/grpo.py" --config "$TINY/grpo/config_cpu.yaml"

echo "== every checkpoint reloads and generates"
"$PYTHON" - <<'PY'
from datasets import load_dataset
from transformers import AutoModelForImageTextToText, AutoProcessor

image = load_dataset("lgt", "rl", split="train")[0]["images"][0]
messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many stars?"}]}]
for folder in ["tiny-qwen2.5-vl-sft", "tiny-qwen2.5-vl-dpo-stage1", "tiny-qwen2.5-vl-dpo-stage2", "tiny-qwen2.5-vl-grpo"]:
    processor = AutoProcessor.from_pretrained(folder)
    model = AutoModelForImageTextToText.from_pretrained(folder)
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(text=[text], images=[image], return_tensors="pt")
    new = model.generate(**inputs, max_new_tokens=8, do_sample=False)[0, inputs["input_ids"].shape[1] :]
    print(f"{folder}: {len(new)} new tokens: {processor.decode(new)!r}")
PY
