# /// script
# dependencies = ["lgt[train]"]
# ///
"""Preference optimisation of a vision-language model on LGT pairs (``dpo_stage1``, then ``dpo_stage2``).

Start from the SFT checkpoint. The paper's loss is DPO with an SFT term on the chosen trace, in TRL
``loss_type: [sigmoid, sft]`` with ``loss_weights: [1.0, 1.0]``. Any dataset in TRL's conversational preference
shape works the same: ``prompt``, ``chosen``, ``rejected`` and ``images``. A pair whose prompt plus either answer is
longer than ``max_length`` is dropped and counted, never truncated. With ``eval_strategy`` set, the loss and reward
margins are also measured on the ``validation`` split (``dataset_test_split``).

Eight GPUs, stage 1 then stage 2:
```bash
accelerate launch --config_file recipes/accelerate_configs/zero3.yaml recipes/dpo.py \\
    --config recipes/Qwen2.5-VL-7B-Instruct/dpo/config_full.yaml
accelerate launch --config_file recipes/accelerate_configs/zero3.yaml recipes/dpo.py \\
    --config recipes/Qwen2.5-VL-7B-Instruct/dpo/config_full.yaml \\
    --model_name_or_path Qwen2.5-VL-7B-LGT-DPO-stage1 --dataset_config dpo_stage2 --output_dir Qwen2.5-VL-7B-LGT-DPO
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
from trl import DatasetMixtureConfig, DPOConfig, DPOTrainer, ModelConfig, TrlParser, get_peft_config


def main(
    script_args: LGTScriptArguments,
    training_args: DPOConfig,
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
    splits = load_splits(script_args, dataset_args, evaluate, columns=("prompt", "chosen", "rejected", "images"))
    parts = (("prompt", "chosen"), ("prompt", "rejected"))
    train_dataset, eval_dataset = (
        drop_overlong(split, processor, training_args.max_length, parts, training_args.dataset_num_proc)
        for split in splits
    )

    ################
    # Training
    ################
    trainer = DPOTrainer(
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
    return TrlParser((LGTScriptArguments, DPOConfig, ModelConfig, DatasetMixtureConfig))


if __name__ == "__main__":
    run(main, make_parser())
