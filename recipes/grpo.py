# /// script
# dependencies = ["lgt[train]"]
# ///
"""GRPO of a vision-language model on LGT's verifiable MCQs (``rl``), from the SFT checkpoint.

The rewards are plain functions named by import path: by default ``lgt.rewards.accuracy_reward`` (the answer letter,
parsed as the builder grades traces) and ``lgt.rewards.format_reward`` (``<think>…</think><answer>…</answer>``).
A reward receives every dataset column named in ``reward_columns``. Prompts longer than ``max_prompt_length``
tokens, image tokens included, are dropped and counted, never truncated. With ``eval_strategy`` set, completions
are also generated, rewarded and scored on the ``validation`` split (``dataset_test_split``).

Eight GPUs, generation by vLLM on the training GPUs:
```bash
accelerate launch --config_file recipes/accelerate_configs/zero3.yaml recipes/grpo.py \\
    --config recipes/Qwen2.5-VL-7B-Instruct/grpo/config_full.yaml
```
"""

import importlib
from dataclasses import dataclass, field

from lgt.training import (
    LGTScriptArguments,
    RecipeError,
    drop_overlong,
    freeze_vision,
    load_processor,
    load_splits,
    prepare_model,
    run,
)
from trl import DatasetMixtureConfig, GRPOConfig, GRPOTrainer, ModelConfig, TrlParser, get_peft_config


@dataclass
class GRPOScriptArguments(LGTScriptArguments):
    reward_funcs: list[str] = field(
        default_factory=lambda: ["lgt.rewards.accuracy_reward", "lgt.rewards.format_reward"],
        metadata={"help": "Reward functions by import path, e.g. `lgt.rewards.accuracy_reward`."},
    )
    reward_columns: list[str] = field(
        default_factory=lambda: ["answer", "options"],
        metadata={"help": "Dataset columns passed to the reward functions."},
    )
    max_prompt_length: int | None = field(
        default=2048, metadata={"help": "Prompts longer than this, in tokens with the image's, are dropped."}
    )
    dataset_num_proc: int | None = field(
        default=None, metadata={"help": "Processes that measure the prompts (GRPOConfig has no such field)."}
    )


def import_function(path: str):
    """The function at ``module.name``, e.g. ``lgt.rewards.accuracy_reward``."""
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as error:
        raise RecipeError(f"reward function {path!r} cannot be imported: {error}") from None


def main(
    script_args: GRPOScriptArguments,
    training_args: GRPOConfig,
    model_args: ModelConfig,
    dataset_args: DatasetMixtureConfig,
):
    ################
    # Model
    ################
    quantization_config = prepare_model(model_args, training_args)
    processor = load_processor(model_args, script_args, training_args, padding_side="left")
    reward_funcs = [import_function(path) for path in script_args.reward_funcs]

    ################
    # Dataset
    ################
    evaluate = training_args.eval_strategy != "no"
    splits = load_splits(
        script_args, dataset_args, evaluate, columns=("prompt", "images", *script_args.reward_columns)
    )
    train_dataset, eval_dataset = (
        drop_overlong(split, processor, script_args.max_prompt_length, (("prompt",),), script_args.dataset_num_proc)
        for split in splits
    )

    ################
    # Training
    ################
    trainer = GRPOTrainer(
        model=model_args.model_name_or_path,
        reward_funcs=reward_funcs,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=processor,
        quantization_config=quantization_config,
        peft_config=get_peft_config(model_args),
    )
    if script_args.freeze_vision:
        freeze_vision(trainer.model)
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=script_args.dataset_name)
    trainer.end()  # finish the trackers, destroy the process group


def make_parser() -> TrlParser:
    return TrlParser((GRPOScriptArguments, GRPOConfig, ModelConfig, DatasetMixtureConfig))


if __name__ == "__main__":
    run(main, make_parser())
