"""`lgt build --preset paper`: the paper's models and settings, with flags given overriding them."""

from lgt.cli import main
from lgt.settings import PRESETS, LGTConfig


def test_the_paper_preset_names_the_papers_models_and_sampling(asked):
    assert main(["build", "--preset", "paper", "--dry-run"]) == 0
    assert asked["teacher"] == "vllm:Qwen/Qwen2.5-VL-7B-Instruct"
    assert asked["reasoner"] == "vllm:deepseek-ai/DeepSeek-R1-Distill-Qwen-32B"
    assert asked["writer"].startswith("vllm:") and asked["stage1"] == "llm"
    assert (asked["traces_per_mcq"], asked["trace_temperature"], asked["trace_top_p"]) == (10, 0.7, 0.8)
    assert asked["max_pixels"] == 512 * 512
    LGTConfig(name="traces_stage1", **{k: v for k, v in asked.items() if k not in ("configs", "num_proc")})


def test_flags_given_override_the_preset(asked):
    argv = ["build", "--preset", "paper", "--traces-per-mcq", "3", "--teacher", "vllm:my/vlm", "--dry-run"]
    assert main(argv) == 0
    assert asked["traces_per_mcq"] == 3 and asked["teacher"] == "vllm:my/vlm"
    assert asked["reasoner"] == PRESETS["paper"]["reasoner"]


def test_without_a_preset_nothing_is_set_for_the_models(asked):
    assert main(["build", "--dry-run"]) == 0
    assert not {"writer", "teacher", "reasoner", "verifier"} & set(asked)
