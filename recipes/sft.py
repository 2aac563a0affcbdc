# /// script
# dependencies = ["lgt[train]"]
# ///
"""Supervised fine-tuning of a vision-language model on LGT traces (``sft_stage1``, ``sft_stage2``, ``_merged``).

Any dataset in TRL's conversational shape works the same: ``messages`` (the chat, with an image part per image) and
``images``; ``column_mapping`` renames other columns. The vision tower and projector stay frozen unless
``freeze_vision: false``; samples longer than ``max_length`` are dropped and counted, never truncated.

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

from lgt.training import LGTScriptArguments, drop_overlong, load_mixture, load_model, load_processor
from trl import ModelConfig, SFTConfig, SFTTrainer, TrlParser, get_peft_config


def main(script_args: LGTScriptArguments, training_args: SFTConfig, model_args: ModelConfig):
    ################
    # Model
    ################
    model = load_model(model_args, script_args)
    processor = load_processor(model_args, script_args)

    ################
    # Dataset
    ################
    dataset = load_mixture(script_args, columns=("messages", "images"), seed=training_args.seed)
    parts = (("messages",),)
    dataset = drop_overlong(dataset, processor, training_args.max_length, parts, training_args.dataset_num_proc)

    ################
    # Training
    ################
    trainer = SFTTrainer(
        model=model,
        args=training_args,
        train_dataset=dataset,
        processing_class=processor,
        peft_config=get_peft_config(model_args),
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=script_args.dataset_name)


def make_parser() -> TrlParser:
    return TrlParser((LGTScriptArguments, SFTConfig, ModelConfig))


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
