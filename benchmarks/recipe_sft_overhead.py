"""Recipe overhead: training steps/s of ``recipes/sft.py`` divided by a minimal TRL ``sft_vlm.py``-style script's, on
the same tiny random Qwen2.5-VL, the same rows and the same ``SFTConfig``; and what the dataset side costs per step.

    python benchmarks/recipe_sft_overhead.py [--steps 12] [--repeats 3] [--threads 1]

"Baseline" is TRL's VLM example reduced to its core: ``AutoModelForImageTextToText`` and ``AutoProcessor``,
``load_dataset(path, config)`` and ``SFTTrainer``, with the vision tower frozen by hand so both train the same
weights. "Recipe" is ``recipes/sft.py``'s ``main`` (model checks, loading through TRL's ``get_dataset``, pixel cap,
over-long samples dropped, vision frozen), parsed from the tiny CPU config. Steps/s is the trainer's own
``train_steps_per_second`` (the training loop with its data loading, not model loading or the one-off length pass,
timed separately). ``max_length`` is set so no row is dropped and both see the same rows. Runs alternate, on
``--threads`` torch threads (one: on a shared machine more threads mostly add contention); the best of ``--repeats``
is kept for each, and the median ratio of neighbouring runs is shown too. The dataset side: decoding a batch's rows
(images included) and TRL's VLM collator (chat template, image processor, padding), outside any model.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
sys.path.insert(0, str(RECIPES))

import datasets  # noqa: E402
import sft  # noqa: E402
import torch  # noqa: E402
from lgt.training import drop_overlong, load_processor, load_splits  # noqa: E402
from tiny_data import make_tiny_model, make_training_data  # noqa: E402
from transformers import AutoModelForImageTextToText, AutoProcessor  # noqa: E402
from trl import SFTTrainer  # noqa: E402
from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling  # noqa: E402

METRICS: list[dict] = []
_train = SFTTrainer.train


def _recorded_train(self, *args, **kwargs):
    """SFTTrainer.train, keeping the metrics the recipe's ``main`` does not return."""
    output = _train(self, *args, **kwargs)
    METRICS.append(output.metrics)
    return output


SFTTrainer.train = _recorded_train


def baseline(model_path: str, data: str, training_args) -> dict:
    model = AutoModelForImageTextToText.from_pretrained(model_path, dtype="float32")
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(".visual." not in name)
    processor = AutoProcessor.from_pretrained(model_path)
    dataset = datasets.load_dataset(data, "sft_stage1", split="train")
    trainer = SFTTrainer(model=model, args=training_args, train_dataset=dataset, processing_class=processor)
    return trainer.train().metrics


def recipe(script_args, training_args, model_args, dataset_args) -> dict:
    sft.main(script_args, training_args, model_args, dataset_args)
    return METRICS[-1]


def dataset_side(script_args, training_args, model_args, dataset_args, batches: int) -> dict:
    """Seconds per step spent loading (one-off), decoding rows and collating them, outside any model."""
    processor = load_processor(model_args, script_args, training_args)
    start = time.perf_counter()
    dataset, _ = load_splits(script_args, dataset_args, False, columns=("messages", "images"))
    loaded = time.perf_counter()
    dataset = drop_overlong(dataset, processor, training_args.max_length, (("messages",),))
    measured = time.perf_counter()
    collator = DataCollatorForVisionLanguageModeling(processor, max_length=training_args.max_length)
    size = training_args.per_device_train_batch_size
    decode = collate = 0.0
    for step in range(batches):
        first = step * size % (len(dataset) - size)
        t0 = time.perf_counter()
        rows = [dataset[i] for i in range(first, first + size)]
        t1 = time.perf_counter()
        collator(rows)
        decode, collate = decode + t1 - t0, collate + time.perf_counter() - t1
    return {
        "load": loaded - start,
        "length_pass": measured - loaded,
        "decode_per_step": decode / batches,
        "collate_per_step": collate / batches,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    datasets.disable_caching()  # the length pass is measured, not read back from a previous run

    work = Path(tempfile.mkdtemp(prefix="lgt-recipe-bench-"))
    data = str(make_training_data(work / "lgt"))
    model_path = str(make_tiny_model(work / "tiny-qwen2.5-vl"))
    config = RECIPES / "tiny-qwen2.5-vl" / "sft" / "config_cpu.yaml"
    overrides = ["--model_name_or_path", model_path, "--dataset_name", data, "--max_length", "4096"]
    overrides += [
        "--max_steps",
        str(args.steps),
        "--logging_steps",
        str(args.steps),
        "--output_dir",
        str(work / "out"),
    ]
    script_args, training_args, model_args, dataset_args = sft.make_parser().parse_args_and_config(
        ["--config", str(config), *overrides]
    )

    rates = {"baseline": [], "recipe": []}
    for _ in range(args.repeats):
        rates["baseline"].append(baseline(model_path, data, training_args)["train_steps_per_second"])
        rates["recipe"].append(recipe(script_args, training_args, model_args, dataset_args)["train_steps_per_second"])
    side = dataset_side(script_args, training_args, model_args, dataset_args, batches=args.steps)

    best = {name: max(values) for name, values in rates.items()}
    step = 1 / best["recipe"]
    print(f"steps/s, best of {args.repeats} x {args.steps} steps (batch {training_args.per_device_train_batch_size}):")
    for name, values in rates.items():
        print(f"  {name:9s} best {best[name]:.3f}  median {statistics.median(values):.3f}  runs {values}")
    pairs = [r / b for r, b in zip(rates["recipe"], rates["baseline"], strict=True)]
    print(f"  ratio recipe/baseline: of the best {best['recipe'] / best['baseline']:.3f},", end=" ")
    print(f"median of neighbouring runs {statistics.median(pairs):.3f} (target >= 0.95)")
    print(f"dataset side: load {side['load']:.2f} s and length pass {side['length_pass']:.2f} s once;")
    decode, collate = side["decode_per_step"], side["collate_per_step"]
    print(f"  per step: decode {decode * 1000:.1f} ms + collate {collate * 1000:.1f} ms", end=" ")
    print(f"= {(decode + collate) / step:.1%} of a {step * 1000:.0f} ms step")


if __name__ == "__main__":
    main()
