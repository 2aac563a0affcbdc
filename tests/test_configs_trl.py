"""Each SFT / DPO / RL config, as `lgt build` writes it, through the TRL trainer it is made for: the format is proven.

One optimizer step each on a tiny random Qwen2.5-VL, in process; the recipes' own tests launch them through
`accelerate launch`.
"""

import pytest

pytest.importorskip("trl")
pytest.importorskip("torchvision")

from datasets import load_dataset  # noqa: E402
from lgt.build import build  # noqa: E402
from tiny_models import build_tiny_vlm  # noqa: E402

TRAINED = ("sft_stage1", "sft_stage2", "sft_stage2_merged", "dpo_stage1", "dpo_stage2", "rl")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("trl")
    build(source="scenes", num_images=24, configs=TRAINED, output=str(root / "lgt"), max_pixels=112 * 112)
    return root / "lgt", build_tiny_vlm(root / "tiny-qwen2.5-vl")


def _model_and_processor(path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    return AutoModelForImageTextToText.from_pretrained(path), AutoProcessor.from_pretrained(path)


def _changed(before: dict, model) -> bool:
    return any(not before[name].equal(param.detach()) for name, param in model.named_parameters() if name in before)


def _snapshot(model) -> dict:
    return {name: param.detach().clone() for name, param in model.named_parameters() if param.requires_grad}


def _common(tmp_path) -> dict:
    return dict(
        output_dir=str(tmp_path),
        max_steps=1,
        per_device_train_batch_size=2,
        learning_rate=1e-2,
        use_cpu=True,
        report_to="none",
        logging_steps=1,
        save_strategy="no",
        bf16=False,
        activation_checkpointing=False,  # TRL defaults to gradient checkpointing, by its deprecated name
    )


# The offline configs, each with the TRL trainer made for it and how many of its rows make the step.
OFFLINE = {
    "sft_stage1": ("SFT", 4),
    "sft_stage2": ("SFT", 4),
    "sft_stage2_merged": ("SFT", 4),
    "dpo_stage1": ("DPO", 2),
    "dpo_stage2": ("DPO", 2),
}


@pytest.mark.parametrize("config", list(OFFLINE))
def test_sft_and_dpo_configs_train_with_their_trl_trainer(built, config, tmp_path):
    import trl

    method, rows = OFFLINE[config]
    folder, model_path = built
    model, processor = _model_and_processor(model_path)
    before = _snapshot(model)
    data = load_dataset(str(folder), config, split="train").select(range(rows))
    args = getattr(trl, f"{method}Config")(**_common(tmp_path), max_length=None)
    trainer = getattr(trl, f"{method}Trainer")(model=model, args=args, train_dataset=data, processing_class=processor)
    trainer.train()
    assert "loss" in trainer.state.log_history[0] and _changed(before, model)


def test_rl_config_trains_with_trl_grpo_trainer_and_the_accuracy_reward(built, tmp_path):
    from lgt.rewards import accuracy_reward, format_reward
    from trl import GRPOConfig, GRPOTrainer

    folder, model_path = built
    model, processor = _model_and_processor(model_path)
    before = _snapshot(model)
    data = load_dataset(str(folder), "rl", split="train").select(range(2))
    args = GRPOConfig(
        **_common(tmp_path), num_generations=2, max_completion_length=8, generation_batch_size=2, beta=0.0
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[accuracy_reward, format_reward],
        args=args,
        train_dataset=data,
        processing_class=processor,
    )
    trainer.train()
    logged = trainer.state.log_history[0]
    assert "loss" in logged and "rewards/accuracy_reward/mean" in logged
    assert _changed(before, model) or logged.get("grad_norm", 0) == 0  # GRPO moves nothing when all rewards tie
