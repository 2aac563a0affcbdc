# /// script
# dependencies = ["lgt[train]"]
# ///
"""Preference optimisation of a vision-language model on LGT pairs (``dpo_stage1``, then ``dpo_stage2``).

Start from the SFT checkpoint. The paper's loss is DPO with an SFT term on the chosen trace, in TRL
``loss_type: [sigmoid, sft]`` with ``loss_weights: [1.0, 1.0]``. Any dataset in TRL's conversational preference
shape works the same: ``prompt``, ``chosen``, ``rejected`` and ``images``. A pair whose prompt plus either answer is
longer than ``max_length`` is dropped and counted, never truncated.

Eight GPUs, stage 1 then stage 2:
```bash
accelerate launch --config_file recipes/accelerate_configs/zero3.yaml recipes/dpo.py \\
    --config recipes/Qwen2.5-VL-7B-Instruct/dpo/config_full.yaml
accelerate launch --config_file recipes/accelerate_configs/zero3.yaml recipes/dpo.py \\
    --config recipes/Qwen2.5-VL-7B-Instruct/dpo/config_full.yaml \\
    --model_name_or_path Qwen2.5-VL-7B-LGT-DPO-stage1 --dataset_config dpo_stage2 --output_dir Qwen2.5-VL-7B-LGT-DPO
```
"""

from lgt.training import LGTScriptArguments, drop_overlong, load_mixture, load_model, load_processor
from trl import DPOConfig, DPOTrainer, ModelConfig, TrlParser, get_peft_config


def main(script_args: LGTScriptArguments, training_args: DPOConfig, model_args: ModelConfig):
    ################
    # Model
    ################
    model = load_model(model_args, script_args)
    processor = load_processor(model_args, script_args)

    ################
    # Dataset
    ################
    dataset = load_mixture(script_args, columns=("prompt", "chosen", "rejected", "images"), seed=training_args.seed)
    parts = (("prompt", "chosen"), ("prompt", "rejected"))
    dataset = drop_overlong(dataset, processor, training_args.max_length, parts, training_args.dataset_num_proc)

    ################
    # Training
    ################
    trainer = DPOTrainer(
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
    return TrlParser((LGTScriptArguments, DPOConfig, ModelConfig))


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
