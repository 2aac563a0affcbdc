# /// script
# dependencies = ["lgt[train]"]
# ///
"""Supervised fine-tuning of a vision-language model on LGT traces (``sft_stage1``, ``sft_stage2``, ``_merged``).

Any dataset in TRL's conversational shape works the same: ``messages`` (the chat, with an image part per image) and
``images``; ``column_mapping`` renames other columns. The vision tower and projector stay frozen unless
``freeze_vision: false``; samples longer than ``max_length`` are dropped and counted, never truncated. With
``eval_strategy`` set, the loss is also measured on the ``validation`` split (``dataset_test_split``).

One GPU (LoRA):
```bash
accelerate launch --config_file recipes/accelerate_configs/ddp.yaml --num_processes 1 recipes/sft.py \\
    --config recipes/Qwen2.5-VL-7B-Instruct/sft/config_lora.yaml
```
Eight GPUs, full fine-tuning with ZeRO-3:
```bash
accelerate launch --config_file recipes/accelerate_configs/zero3.yaml recipes/sft.py \\
    --config recipes/Qwen2.5-VL-7B-Instruct/sft/config_full.yaml
```
"""

from lgt.training import (
    LGTScriptArguments,
    drop_overlong,
    freeze_vision,
    load_processor,
    load_splits,
    prepare_model,
    run,
)
from trl import DatasetMixtureConfig, ModelConfig, SFTConfig, SFTTrainer, TrlParser, get_peft_config


def main(
    script_args: LGTScriptArguments,
    training_args: SFTConfig,
    model_args: ModelConfig,
    dataset_args: DatasetMixtureConfig,
):
    ################
    # Model
    ################
    quantization_config = prepare_model(model_args, training_args)
    processor = load_processor(model_args, script_args, training_args)

    ################
    # Dataset
    ################
    evaluate = training_args.eval_strategy != "no"
    splits = load_splits(script_args, dataset_args, evaluate, columns=("messages", "images"))
    train_dataset, eval_dataset = (
        drop_overlong(split, processor, training_args.max_length, (("messages",),), training_args.dataset_num_proc)
        for split in splits
    )

    ################
    # Training
    ################
    trainer = SFTTrainer(
        model=model_args.model_name_or_path,
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
    return TrlParser((LGTScriptArguments, SFTConfig, ModelConfig, DatasetMixtureConfig))


if __name__ == "__main__":
    run(main, make_parser())
