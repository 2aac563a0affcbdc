"""The TRL recipes, launched as a user launches them (``accelerate launch``) on a tiny random Qwen2.5-VL and a dataset
made by the builder's own code: each takes a few optimizer steps, logs its loss, changes the weights it trains and
not the frozen vision tower, and leaves a checkpoint that reloads and generates. The 7B YAMLs are parsed and
validated by the recipes' own parser, without weights."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")
pytest.importorskip("peft")
pytest.importorskip("accelerate")
pytest.importorskip("torchvision")  # the Qwen2.5-VL processor's video half

import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"
TINY = RECIPES / "tiny-qwen2.5-vl"
PAPER = RECIPES / "Qwen2.5-VL-7B-Instruct"
sys.path.insert(0, str(RECIPES))

from tiny_data import make_tiny_model, make_training_data  # noqa: E402


def completion_length_reward(completions, **kwargs):
    """A reward that varies between a random model's completions (accuracy and format are all zero there), so GRPO
    has an advantage to follow and its weights must move."""
    return [float(len(completion[0]["content"])) for completion in completions]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipes")
    make_training_data(root / "lgt")
    make_tiny_model(root / "tiny-qwen2.5-vl")
    return root


def launch(recipe: str, config: Path, cwd: Path, output: str, *overrides: str, steps: int = 3) -> Path:
    """Run ``recipes/<recipe>.py`` through ``accelerate launch`` on the CPU; return its output folder."""
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--cpu", "--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        str(RECIPES / f"{recipe}.py"), "--config", str(config),
        "--output_dir", output, "--max_steps", str(steps), "--save_strategy", "steps", "--save_steps", str(steps),
        *overrides,
    ]  # fmt: skip
    paths = [path for path in os.environ.get("PYTHONPATH", "").split(os.pathsep) if path] + [str(REPO / "tests")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}  # tests/ for completion_length_reward
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return cwd / output


def logged(output: Path, steps: int) -> list[dict]:
    state = json.loads((output / f"checkpoint-{steps}" / "trainer_state.json").read_text())
    return [entry for entry in state["log_history"] if "loss" in entry]


def weights(folder: Path) -> dict:
    """The checkpoint's tensors by their names in the loaded model (``model.visual.…``, ``model.language_model.…``)."""
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(folder).state_dict()


def assert_trained_language_only(before: dict, after: dict):
    vision = [name for name in before if ".visual." in name]
    language = [name for name in before if ".language_model." in name]
    assert vision and language
    assert all(torch.equal(before[name], after[name]) for name in vision)
    assert sum(not torch.equal(before[name], after[name]) for name in language) > len(language) // 2


def generates(model, processor, image) -> int:
    """How many new tokens ``model`` writes for an image question, through the processor's chat template."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many stars?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(text=[text], images=[image], return_tensors="pt")
    output = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    return output.shape[1] - inputs["input_ids"].shape[1]


def reload_and_generate(folder: Path, work: Path) -> int:
    from datasets import load_dataset
    from transformers import AutoModelForImageTextToText, AutoProcessor

    image = load_dataset(str(work / "lgt"), "sft_stage1", split="train")[0]["images"][0]
    model = AutoModelForImageTextToText.from_pretrained(folder)
    return generates(model, AutoProcessor.from_pretrained(folder), image)


@pytest.fixture(scope="module")
def sft_checkpoint(work):
    output = launch("sft", TINY / "sft" / "config_cpu.yaml", work, "sft", "--model_name_or_path", "tiny-qwen2.5-vl")
    return output


def test_sft_full(work, sft_checkpoint):
    losses = [entry["loss"] for entry in logged(sft_checkpoint, 3)]
    assert len(losses) == 3 and all(math.isfinite(loss) and loss > 0 for loss in losses)
    assert_trained_language_only(weights(work / "tiny-qwen2.5-vl"), weights(sft_checkpoint))
    assert reload_and_generate(sft_checkpoint, work) > 0


def test_sft_lora(work):
    """LoRA with the 7B config's target modules, on the tiny model."""
    import yaml
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    targets = yaml.safe_load((PAPER / "sft" / "config_lora.yaml").read_text())["lora_target_modules"]
    overrides = ["--use_peft", "true", "--lora_r", "4", "--lora_alpha", "8", "--lora_target_modules", targets]
    output = launch("sft", TINY / "sft" / "config_cpu.yaml", work, "sft-lora", *overrides, steps=2)
    assert len(logged(output, 2)) == 2
    adapter = load_file(str(output / "adapter_model.safetensors"))
    assert adapter and all(".language_model." in name for name in adapter)  # nothing on the vision tower
    lora_b = [tensor for name, tensor in adapter.items() if "lora_B" in name]
    assert lora_b and all(tensor.abs().sum() > 0 for tensor in lora_b)  # B starts at zero: trained

    base = AutoModelForImageTextToText.from_pretrained(work / "tiny-qwen2.5-vl")
    model = PeftModel.from_pretrained(base, output)
    from datasets import load_dataset

    image = load_dataset(str(work / "lgt"), "sft_stage1", split="train")[0]["images"][0]
    assert generates(model, AutoProcessor.from_pretrained(output), image) > 0


def test_dpo_from_the_sft_checkpoint(work, sft_checkpoint):
    output = launch("dpo", TINY / "dpo" / "config_cpu.yaml", work, "dpo", "--model_name_or_path", "sft")
    entries = logged(output, 3)
    assert len(entries) == 3 and all(math.isfinite(entry["loss"]) for entry in entries)
    assert all("rewards/margins" in entry for entry in entries)  # the DPO term is there, beside the SFT term
    assert_trained_language_only(weights(sft_checkpoint), weights(output))
    assert reload_and_generate(output, work) > 0


def test_grpo_from_the_sft_checkpoint(work, sft_checkpoint):
    rewards = ["lgt.rewards.accuracy_reward", "lgt.rewards.format_reward", "test_recipes.completion_length_reward"]
    output = launch(
        "grpo", TINY / "grpo" / "config_cpu.yaml", work, "grpo", "--model_name_or_path", "sft",
        "--reward_funcs", *rewards, steps=2,
    )  # fmt: skip
    entries = logged(output, 2)
    assert len(entries) == 2
    for entry in entries:
        assert {"rewards/accuracy_reward/mean", "rewards/format_reward/mean"} <= entry.keys()
    assert_trained_language_only(weights(sft_checkpoint), weights(output))
    assert reload_and_generate(output, work) > 0


@pytest.mark.parametrize(
    ("recipe", "config"),
    [("sft", "sft/config_full.yaml"), ("sft", "sft/config_lora.yaml"), ("dpo", "dpo/config_full.yaml"),
     ("grpo", "grpo/config_full.yaml")],
)  # fmt: skip
def test_paper_configs_parse(recipe, config):
    """Every key of the 7B YAMLs is one the recipe's parser knows (unknown keys fail), with the paper's settings;
    bf16 is overridden because the parser checks it against this machine's hardware."""
    import importlib

    script, training, model = (
        importlib.import_module(recipe)
        .make_parser()
        .parse_args_and_config(["--config", str(PAPER / config), "--bf16", "false"])
    )
    assert script.freeze_vision and script.max_pixels == 512 * 512
    assert script.dataset_name == "nvidia/nemotron-research-lgt"
    assert training.num_train_epochs == 1 and training.lr_scheduler_type == "cosine"
    assert model.dtype == "bfloat16"
    if recipe == "sft":
        assert training.learning_rate == (1e-4 if model.use_peft else 1e-5)
        assert script.dataset_mixture == {"sft_stage1": 1.0} and training.assistant_only_loss
    if model.use_peft:
        assert isinstance(model.lora_target_modules, str)  # one regular expression, so the vision MLP is left out
    if recipe == "dpo":
        assert script.dataset_config == "dpo_stage1" and training.beta == 0.2
        assert training.loss_type == ["sigmoid", "sft"] and training.loss_weights == [1.0, 1.0]
    if recipe == "grpo":
        from grpo import import_function

        assert training.use_vllm and training.vllm_mode == "colocate" and training.num_generations == 8
        assert [import_function(path).__name__ for path in script.reward_funcs] == ["accuracy_reward", "format_reward"]


@pytest.mark.slow
def test_staged_run(tmp_path):
    """`make staged-run` end to end: build, SFT, DPO stage 1, DPO stage 2, GRPO, every checkpoint generating."""
    env = {**os.environ, "PYTHON": sys.executable}
    result = subprocess.run(
        ["bash", str(RECIPES / "staged_run.sh"), str(tmp_path)], env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr[-4000:]
    stages = ["sft", "dpo-stage1", "dpo-stage2", "grpo"]
    generated = [line for line in result.stdout.splitlines() if " new tokens: " in line]
    assert [line.split(":")[0] for line in generated] == [f"tiny-qwen2.5-vl-{stage}" for stage in stages]
    assert all(int(line.split(": ")[1].split()[0]) > 0 for line in generated)
