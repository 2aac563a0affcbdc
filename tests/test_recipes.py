"""The TRL recipes, launched as a user launches them (``accelerate launch``) on a tiny random Qwen2.5-VL and a dataset
made by the builder's own code: each takes a few optimizer steps, logs its loss and, evaluating on the build's
validation split, an eval loss, changes the weights it trains and not the frozen vision tower, and leaves a
checkpoint that reloads and generates; a TRL ``datasets:`` mixture trains, 4-bit loading trains or stops in one line,
and what a recipe cannot use stops it in one line. The 7B YAMLs are parsed and validated by the recipes' own parser,
without weights and without a deprecation warning; ``make staged-run`` runs as the README shows it."""

import importlib
import json
import math
import os
import shutil
import subprocess
import sys
import warnings
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


EVALUATE = ("--eval_strategy", "steps", "--per_device_eval_batch_size", "2")


def launch(recipe: str, config: Path, cwd: Path, output: str, *overrides: str, steps: int = 3, check=True):
    """Run ``recipes/<recipe>.py`` through ``accelerate launch`` on the CPU; return its output folder (with
    ``check=False``, the finished process)."""
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
    if not check:
        return result
    assert result.returncode == 0, result.stderr[-4000:]
    return cwd / output


def state(output: Path, steps: int) -> dict:
    return json.loads((output / f"checkpoint-{steps}" / "trainer_state.json").read_text())


def logged(output: Path, steps: int, key: str = "loss") -> list[dict]:
    return [entry for entry in state(output, steps)["log_history"] if key in entry]


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
    model = ("--model_name_or_path", "tiny-qwen2.5-vl")
    return launch("sft", TINY / "sft" / "config_cpu.yaml", work, "sft", *model, *EVALUATE, "--eval_steps", "3")


def test_sft_full(work, sft_checkpoint):
    losses = [entry["loss"] for entry in logged(sft_checkpoint, 3)]
    assert len(losses) == 3 and all(math.isfinite(loss) and loss > 0 for loss in losses)
    evaluated = logged(sft_checkpoint, 3, "eval_loss")  # on the build's validation split
    assert len(evaluated) == 1 and math.isfinite(evaluated[0]["eval_loss"]) and evaluated[0]["step"] == 3
    assert_trained_language_only(weights(work / "tiny-qwen2.5-vl"), weights(sft_checkpoint))
    assert reload_and_generate(sft_checkpoint, work) > 0


def lora(*more: str) -> list[str]:
    """LoRA with the 7B config's target modules (the language model's projections), small for the tiny model."""
    import yaml

    targets = yaml.safe_load((PAPER / "sft" / "config_lora.yaml").read_text())["lora_target_modules"]
    return ["--use_peft", "true", "--lora_r", "4", "--lora_alpha", "8", "--lora_target_modules", targets, *more]


def test_sft_lora_on_a_mixture_of_two_configs(work, tmp_path):
    """LoRA, on TRL's ``datasets:`` mixture of sft_stage1 and sft_stage2 (equal shares: as many rows of each as the
    smaller has), one epoch: the step count is that of the mixture's rows."""
    from datasets import load_dataset
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    config = tmp_path / "mixture.yaml"
    config.write_text(
        (TINY / "sft" / "config_cpu.yaml").read_text().replace("dataset_name: lgt\ndataset_config: sft_stage1\n", "")
        + "datasets:\n"
        + "".join(f"  - path: lgt\n    name: {name}\n    fraction: 0.5\n" for name in ("sft_stage1", "sft_stage2"))
    )
    each = min(len(load_dataset(str(work / "lgt"), name, split="train")) for name in ("sft_stage1", "sft_stage2"))
    steps = math.ceil(2 * each / 2)  # per_device_train_batch_size 2
    one_epoch = lora("--max_steps", "-1", "--num_train_epochs", "1", "--max_length", "8192")  # none dropped
    output = launch("sft", config, work, "sft-lora", *one_epoch, steps=steps)
    assert state(output, steps)["max_steps"] == steps and len(logged(output, steps)) == steps
    adapter = load_file(str(output / "adapter_model.safetensors"))
    assert adapter and all(".language_model." in name for name in adapter)  # nothing on the vision tower
    lora_b = [tensor for name, tensor in adapter.items() if "lora_B" in name]
    assert lora_b and all(tensor.abs().sum() > 0 for tensor in lora_b)  # B starts at zero: trained

    base = AutoModelForImageTextToText.from_pretrained(work / "tiny-qwen2.5-vl")
    model = PeftModel.from_pretrained(base, output)
    image = load_dataset(str(work / "lgt"), "sft_stage1", split="train")[0]["images"][0]
    assert generates(model, AutoProcessor.from_pretrained(output), image) > 0


def test_load_in_4bit_trains_adapters_or_stops_in_one_line(work):
    """QLoRA: with bitsandbytes installed the quantized model trains its adapters (bitsandbytes runs 4-bit on the
    CPU too); without it the recipe says so in one line. Quantized weights without adapters are refused either way."""
    from transformers.utils import is_bitsandbytes_available

    config = TINY / "sft" / "config_cpu.yaml"
    result = launch("sft", config, work, "sft-4bit", "--load_in_4bit", "true", *lora(), steps=2, check=False)
    if is_bitsandbytes_available():
        assert result.returncode == 0, result.stderr[-4000:]
        assert len(logged(work / "sft-4bit", 2)) == 2 and (work / "sft-4bit" / "adapter_model.safetensors").is_file()
    else:
        assert result.returncode != 0
        assert "sft.py: error: load_in_4bit quantizes with bitsandbytes, which is not installed" in result.stderr
        assert not (work / "sft-4bit").exists()


def recipe_error(capsys, monkeypatch, recipe: str, *arguments: str) -> str:
    """Run a recipe in this process as ``python recipes/<recipe>.py ARGUMENTS`` would; return the line it stopped
    with (exit status 2, one line on stderr, no traceback)."""
    module = importlib.import_module(recipe)
    monkeypatch.setattr(sys, "argv", [f"{recipe}.py", *arguments])
    with pytest.raises(SystemExit) as stopped:
        module.run(module.main, module.make_parser())
    err = capsys.readouterr().err.strip().splitlines()
    assert stopped.value.code == 2 and err and err[-1].startswith(f"{recipe}.py: error: "), err
    assert "Traceback" not in "\n".join(err)
    return err[-1]


def test_what_a_recipe_cannot_use_stops_it_in_one_line(work, capsys, monkeypatch):
    from tiny_models import build_tiny_llm

    monkeypatch.chdir(work)
    llm = build_tiny_llm(work / "tiny-llm")
    capsys.readouterr()
    config = ("--config", str(TINY / "sft" / "config_cpu.yaml"), "--output_dir", str(work / "refused"))
    cases = {
        ("--model_name_or_path", str(llm)): "the recipes need a vision-language model",
        ("--model_name_or_path", "tiny-qwen2.5-vl-missing/"): "no such folder, and not a Hub model id",
        ("--dataset_config", "sft_stage9"): "BuilderConfig 'sft_stage9' not found",
        ("--dataset_mixture", "{bad"): "--dataset_mixture",  # not a setting: lgt mixes with TRL's `datasets:`
        ("--column_mapping", "{bad"): "column_mapping is not JSON",
        ("--dataset_streaming", "true"): "streaming is not supported",
    }
    for arguments, message in cases.items():
        assert message in recipe_error(capsys, monkeypatch, "sft", *config, *arguments)
    without = work / "without-config.yaml"  # a build holds many configs: which one?
    without.write_text((TINY / "sft" / "config_cpu.yaml").read_text().replace("dataset_config: sft_stage1\n", ""))
    line = recipe_error(capsys, monkeypatch, "sft", "--config", str(without), "--output_dir", str(work / "refused"))
    assert "has configs sft_stage1, sft_stage2, dpo_stage1, dpo_stage2, rl: set dataset_config" in line
    grpo = ("--config", str(TINY / "grpo" / "config_cpu.yaml"), "--model_name_or_path", "tiny-qwen2.5-vl")
    line = recipe_error(capsys, monkeypatch, "grpo", *grpo, "--reward_funcs", "lgt.rewards.missing")
    assert "reward function 'lgt.rewards.missing' cannot be imported" in line
    assert not (work / "refused").exists()


def test_dpo_from_the_sft_checkpoint(work, sft_checkpoint):
    overrides = ("--model_name_or_path", "sft", *EVALUATE, "--eval_steps", "3")
    output = launch("dpo", TINY / "dpo" / "config_cpu.yaml", work, "dpo", *overrides)
    entries = logged(output, 3)
    assert len(entries) == 3 and all(math.isfinite(entry["loss"]) for entry in entries)
    assert all("rewards/margins" in entry for entry in entries)  # the DPO term is there, beside the SFT term
    evaluated = logged(output, 3, "eval_loss")
    assert len(evaluated) == 1 and math.isfinite(evaluated[0]["eval_loss"]) and "eval_rewards/margins" in evaluated[0]
    assert_trained_language_only(weights(sft_checkpoint), weights(output))
    assert reload_and_generate(output, work) > 0


def test_grpo_from_the_sft_checkpoint(work, sft_checkpoint):
    rewards = ["lgt.rewards.accuracy_reward", "lgt.rewards.format_reward", "test_recipes.completion_length_reward"]
    output = launch(
        "grpo", TINY / "grpo" / "config_cpu.yaml", work, "grpo", "--model_name_or_path", "sft",
        "--reward_funcs", *rewards, *EVALUATE, "--eval_steps", "2", steps=2,
    )  # fmt: skip
    entries = logged(output, 2)
    assert len(entries) == 2
    for entry in entries:
        assert {"rewards/accuracy_reward/mean", "rewards/format_reward/mean"} <= entry.keys()
    evaluated = logged(output, 2, "eval_loss")  # completions generated and rewarded on the validation prompts
    assert len(evaluated) == 1 and "eval_rewards/completion_length_reward/mean" in evaluated[0]
    assert_trained_language_only(weights(sft_checkpoint), weights(output))
    assert reload_and_generate(output, work) > 0


@pytest.mark.parametrize(
    ("recipe", "config"),
    [("sft", "sft/config_full.yaml"), ("sft", "sft/config_lora.yaml"), ("dpo", "dpo/config_full.yaml"),
     ("grpo", "grpo/config_full.yaml")],
)  # fmt: skip
def test_paper_configs_parse(recipe, config, capfd):
    """Every key of the 7B YAMLs is one the recipe's parser knows (unknown keys fail), with the paper's settings and
    no deprecation warning on the installed stack; bf16 is overridden because the parser checks it against this
    machine's hardware. They train on the user's own build (``lgt``) unless told the release."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        script, training, model, mixture = (
            importlib.import_module(recipe)
            .make_parser()
            .parse_args_and_config(["--config", str(PAPER / config), "--bf16", "false"])
        )
    assert [str(warning.message) for warning in caught] == []
    assert "deprecat" not in capfd.readouterr().err.lower()
    assert script.freeze_vision and script.max_pixels == 512 * 512
    assert script.dataset_name == "lgt" and not mixture.datasets
    assert training.num_train_epochs == 1 and training.lr_scheduler_type == "cosine"
    assert training.activation_checkpointing and model.dtype == "bfloat16"
    if recipe == "sft":
        assert training.learning_rate == (1e-4 if model.use_peft else 1e-5)
        assert script.dataset_config == "sft_stage1" and training.assistant_only_loss
    if model.use_peft:
        assert isinstance(model.lora_target_modules, str)  # one regular expression, so the vision MLP is left out
    if recipe == "dpo":
        assert script.dataset_config == "dpo_stage1" and training.beta == 0.2
        assert training.loss_type == ["sigmoid", "sft"] and training.loss_weights == [1.0, 1.0]
    if recipe == "grpo":
        from grpo import import_function  # noqa: I001

        assert training.use_vllm and training.vllm_mode == "colocate" and training.num_generations == 8
        assert [import_function(path).__name__ for path in script.reward_funcs] == ["accuracy_reward", "format_reward"]


def test_make_staged_run_uses_the_venv_python_by_default(tmp_path):
    """As the README shows it: after `python3 -m venv .venv && .venv/bin/pip install ...`, a bare `make staged-run`
    runs the venv's python; without a venv, python3."""
    shutil.copy(REPO / "Makefile", tmp_path / "Makefile")
    dry = ["make", "-n", "-C", str(tmp_path), "staged-run"]
    assert "PYTHON=python3 " in subprocess.run(dry, capture_output=True, text=True, check=True).stdout
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").symlink_to(sys.executable)
    assert "PYTHON=.venv/bin/python " in subprocess.run(dry, capture_output=True, text=True, check=True).stdout
    if (REPO / ".git").exists():  # its work folder is no untracked clutter in the checkout
        assert subprocess.run(["git", "check-ignore", "-q", "tiny-staged-run/lgt"], cwd=REPO).returncode == 0


@pytest.mark.slow
def test_make_staged_run(tmp_path):
    """`make staged-run` end to end: build, SFT, DPO stage 1, DPO stage 2, GRPO, every checkpoint generating; with
    PYTHON relative to the repository (the script changes directory) and the work folder ignored by git. A fresh
    venv per the README would download torch, which tests cannot: this runs the Makefile with the tests' python."""
    python = os.path.relpath(sys.executable, REPO)
    work = tmp_path / "work"
    environment = {key: value for key, value in os.environ.items() if not key.startswith("MAKE")}
    result = subprocess.run(
        ["make", "staged-run", f"PYTHON={python}", f"WORK={work}"],
        cwd=REPO, env=environment, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    stages = ["sft", "dpo-stage1", "dpo-stage2", "grpo"]
    generated = [line for line in result.stdout.splitlines() if " new tokens: " in line]
    assert [line.split(":")[0] for line in generated] == [f"tiny-qwen2.5-vl-{stage}" for stage in stages]
    assert all(int(line.split(": ")[1].split()[0]) > 0 for line in generated)
