"""Every setting is declared once (``lgt.settings.LGTConfig``) and reachable from everywhere it is used: each field
has an ``lgt build`` flag that sets it, ``build()`` takes it as a keyword, and ``lgt_build.json`` records what its
metadata says."""

import inspect
import json

import pytest
from lgt.build import build
from lgt.cli import main
from lgt.settings import SETTINGS, LGTConfig, recorded

# A value other than the default for every field, as typed on the command line and as build() receives it. A field
# added to LGTConfig without an entry here fails `test_every_setting_has_a_flag_that_sets_it`.
TYPED = {
    "source": ("coco:/data/coco", "coco:/data/coco"),
    "num_images": ("7", 7),
    "seed": ("3", 3),
    "images": ("path", "path"),
    "on_error": ("skip", "skip"),
    "max_pixels": ("1000", 1000),
    "image_root": ("/data/images", "/data/images"),
    "split_fractions": ("0.7,0.2,0.1", (0.7, 0.2, 0.1)),
    "shard": ("1/3", (1, 3)),
    "writer": ("vllm:w", "vllm:w"),
    "verifier": ("vllm:v", "vllm:v"),
    "teacher": ("vllm:t", "vllm:t"),
    "reasoner": ("vllm:r", "vllm:r"),
    "judge": ("vllm:j", "vllm:j"),
    "stage1": ("both", "both"),
    "questions_per_image": ("5", 5),
    "cache_only": (None, True),
    "traces_per_mcq": ("4", 4),
    "trace_temperature": ("0.3", 0.3),
    "trace_top_p": ("0.5", 0.5),
    "sft_keep_ratio": ("0.25", 0.25),
    "sft_xo_ratio": ("2", 2.0),
    "pairs_per_mcq": ("all", None),
    "judged_traces": ("9", 9),
    "short_max_tokens": ("64", 64),
    "expansion_max_tokens": ("128", 128),
    "benchmarks": ("bench.jsonl", ("bench.jsonl",)),
    "generation_cache": ("c.sqlite", "c.sqlite"),
    "engine_args": ('{"batch_size": 2}', {"batch_size": 2}),
}


def _flag(setting) -> str:
    build_parser = next(a for a in _parser()._actions if a.dest == "command").choices["build"]
    return next(a for a in build_parser._actions if a.dest == setting.name).option_strings[0]


def _parser():
    from lgt.cli import parser

    return parser()


def test_every_setting_has_a_flag_that_sets_it(asked):
    assert set(TYPED) == {f.name for f in SETTINGS}, "a new setting needs a line in TYPED"
    for setting in SETTINGS:
        text, value = TYPED[setting.name]
        asked.clear()
        argv = ["build", "--dry-run", _flag(setting), *([text] if text is not None else [])]
        assert main(argv) == 0, argv
        assert asked[setting.name] == value, setting.name
        assert value != setting.default, setting.name


def test_flags_not_given_are_left_to_the_defaults(asked):
    assert main(["build", "--dry-run"]) == 0
    assert {name for name in asked if name not in ("configs", "num_proc")} == set()


def test_a_bad_flag_value_is_one_usage_line(capsys):
    for flag, text in (("--pairs-per-mcq", "many"), ("--split-fractions", "0.5,0.5"), ("--engine-args", "[1]")):
        with pytest.raises(SystemExit) as exit:
            main(["build", flag, text])
        assert exit.value.code == 2
        error = capsys.readouterr().err.strip().splitlines()[-1]
        assert error.startswith("lgt build: error: argument") and flag in error


def test_build_takes_every_setting_as_a_keyword():
    parameters = inspect.signature(build).parameters
    for setting in SETTINGS:
        assert parameters[setting.name].default == setting.default
    with pytest.raises(TypeError, match="unknown setting"):
        build(num_image=3)


def test_the_build_record_keeps_what_the_metadata_says(tmp_path):
    scripted = recorded(LGTConfig(name="scenes", source="jsonl:/home/me/data/scenes.jsonl", image_root="/home/me"))
    assert scripted["source"] == "jsonl:scenes.jsonl" and "image_root" not in scripted
    assert "writer" not in scripted and "cache_only" not in scripted and scripted["pairs_per_mcq"] == 2
    (tmp_path / "tiny").mkdir()
    with_models = recorded(LGTConfig(name="scenes", teacher=f"transformers:{tmp_path / 'tiny'}", cache_only=True))
    assert with_models["teacher"] == "transformers:tiny" and with_models["cache_only"] is True
    assert "writer" not in with_models and "engine_args" not in with_models
    assert all(f.metadata.get("record") in (None, "always", "models", "model") for f in SETTINGS)
    json.dumps(with_models)  # it is what lgt_build.json holds
