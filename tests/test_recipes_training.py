"""``lgt.training``, the recipes' shared steps, in process: TRL's mixtures, evaluation splits and column mapping,
checking the model and passing its settings on, the pixel cap, dropping (never truncating) over-long samples with
their image tokens counted, freezing the vision side, and the one-line refusals."""

import math
import sys
import warnings
from pathlib import Path

import pytest

pytest.importorskip("trl")
pytest.importorskip("torchvision")

import datasets  # noqa: E402
import torch  # noqa: E402
from lgt.training import (  # noqa: E402
    LGTScriptArguments,
    RecipeError,
    drop_overlong,
    freeze_vision,
    load_processor,
    load_splits,
    prepare_model,
    sequence_length,
)
from trl import DatasetMixtureConfig, ModelConfig, SFTConfig, TrlParser  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes"))
from tiny_data import make_tiny_model, make_training_data  # noqa: E402
from tiny_models import build_tiny_llm  # noqa: E402


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_training_data(tmp_path_factory.mktemp("data") / "lgt")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("model") / "tiny-qwen2.5-vl")


def arguments(data, **fields):
    return LGTScriptArguments(dataset_name=str(data), **fields)


def mixture(*sources, **fields):
    return DatasetMixtureConfig(datasets=[dict(source) for source in sources], **fields)


def rows(data, config, split="train"):
    return datasets.load_dataset(str(data), config, split=split)


def test_one_config_and_its_validation_split(data):
    train, evaluation = load_splits(arguments(data, dataset_config="dpo_stage1"), mixture(), True, ("id",))
    assert list(train["id"]) == list(rows(data, "dpo_stage1")["id"])
    assert list(evaluation["id"]) == list(rows(data, "dpo_stage1", "validation")["id"])
    assert load_splits(arguments(data, dataset_config="dpo_stage1"), mixture(), False, ("id",))[1] is None
    test = load_splits(
        arguments(data, dataset_config="dpo_stage1", dataset_test_split="test"), mixture(), True, ("id",)
    )
    assert list(test[1]["id"]) == list(rows(data, "dpo_stage1", "test")["id"])


def test_a_mixture_is_read_as_trl_reads_it(data):
    """TRL's ``datasets:`` with ``fraction``: shares of the mixture, the first rows of each config, none repeated;
    evaluation on each config's validation split, or on a share held out of the mixture (``test_split_size``)."""
    stage1, stage2 = rows(data, "dpo_stage1"), rows(data, "dpo_stage2")
    half = mixture(
        {"path": str(data), "name": "dpo_stage1", "fraction": 0.5},
        {"path": str(data), "name": "dpo_stage2", "fraction": 0.5},
    )
    train, evaluation = load_splits(LGTScriptArguments(), half, True, ("id",))
    each = min(len(stage1), len(stage2))
    assert list(train["id"]) == list(stage1["id"][:each]) + list(stage2["id"][:each])
    validation = [rows(data, config, "validation") for config in ("dpo_stage1", "dpo_stage2")]
    assert list(evaluation["id"]) == [i for part in validation for i in part["id"]]

    whole = mixture(
        {"path": str(data), "name": "dpo_stage1"}, {"path": str(data), "name": "dpo_stage2"}, test_split_size=0.25
    )
    train, held_out = load_splits(LGTScriptArguments(), whole, True, ("id",))
    assert sorted([*train["id"], *held_out["id"]]) == sorted([*stage1["id"], *stage2["id"]])
    assert len(held_out) == math.ceil(0.25 * (len(stage1) + len(stage2)))  # as datasets.train_test_split


def test_a_mixture_from_the_yaml_config(data, tmp_path):
    config = tmp_path / "mix.yaml"
    config.write_text(
        f"model_name_or_path: m\noutput_dir: {tmp_path}\nuse_cpu: true\nreport_to: none\n"
        "activation_checkpointing: false\n"
        f"datasets:\n  - path: {data}\n    name: sft_stage1\n    fraction: 0.7\n"
        f"  - path: {data}\n    name: sft_stage2\n    fraction: 0.3\n"
    )
    parser = TrlParser((LGTScriptArguments, SFTConfig, ModelConfig, DatasetMixtureConfig))
    script_args, _, _, dataset_args = parser.parse_args_and_config(["--config", str(config)])
    assert [(source.name, source.fraction) for source in dataset_args.datasets] == [
        ("sft_stage1", 0.7),
        ("sft_stage2", 0.3),
    ]
    train, _ = load_splits(script_args, dataset_args, False, ("messages", "images"))
    assert train.column_names == ["messages", "images"] and len(train) > 0


@pytest.mark.parametrize(
    ("fields", "sources", "message"),
    [
        ({}, [], "set dataset_config"),  # a build has many configs: which one?
        ({"dataset_config": "sft_stage9"}, [], "sft_stage9"),
        ({"dataset_config": "dpo_stage2", "dataset_test_split": "test"}, [], "test"),  # no test split there
        ({"dataset_config": "sft_stage1", "dataset_streaming": True}, [], "streaming is not supported"),
        ({}, [{"name": "sft_stage1", "fraction": 0.5}, {"name": "sft_stage2"}], "fraction"),
        ({"dataset_config": "rl"}, [], "no column messages"),
    ],
)
def test_what_cannot_be_read_is_refused_in_one_line(data, fields, sources, message):
    with pytest.raises(RecipeError, match=message) as refused:
        load_splits(
            arguments(data, **fields),
            mixture(*({"path": str(data), **source} for source in sources)),
            evaluate=True,
            columns=("messages", "images"),
        )
    assert "\n" not in str(refused.value)
    if message == "set dataset_config":
        assert "sft_stage1, sft_stage2, dpo_stage1, dpo_stage2, rl" in str(refused.value)  # what the folder holds


def test_column_mapping(data):
    args = arguments(data, dataset_config="rl", column_mapping={"solution": "target", "absent": "ignored"})
    train, _ = load_splits(args, mixture(), False, ("prompt", "target"))
    assert train.column_names == ["prompt", "target"]
    assert list(train["target"]) == list(rows(data, "rl")["solution"])
    assert arguments(data, column_mapping='{"solution": "target"}').column_mapping == {"solution": "target"}
    with pytest.raises(RecipeError, match="column_mapping is not JSON"):
        arguments(data, column_mapping="{bad")
    with pytest.raises(RecipeError, match="column_mapping"):
        load_splits(arguments(data, dataset_config="rl"), mixture(), False, ("prompt", "target"))


def test_the_model_is_checked_and_its_settings_passed_on(tiny, tmp_path):
    training_args = SFTConfig(
        output_dir=str(tmp_path),
        use_cpu=True,
        report_to="none",
        activation_checkpointing=False,
        trust_remote_code=True,
    )
    training_args.model_init_kwargs = {"low_cpu_mem_usage": True}
    model_args = ModelConfig(model_name_or_path=str(tiny), dtype="float32", attn_implementation="sdpa")
    assert prepare_model(model_args, training_args) is None  # no quantization asked for
    assert training_args.model_init_kwargs == {
        "revision": "main", "trust_remote_code": True, "attn_implementation": "sdpa", "dtype": "float32",
        "low_cpu_mem_usage": True,
    }  # fmt: skip

    llm = build_tiny_llm(tmp_path / "tiny-llm")
    refusals = {
        str(llm): "the recipes need a vision-language model",
        str(tmp_path / "missing"): "no such folder, and not a Hub model id",
        "someone/missing-model": "not a folder here, and not loadable from the Hub",
    }
    for path, message in refusals.items():
        with pytest.raises(RecipeError, match=message):
            prepare_model(ModelConfig(model_name_or_path=path), training_args)
    with pytest.raises(RecipeError, match="set use_peft"):
        prepare_model(ModelConfig(model_name_or_path=str(tiny), load_in_4bit=True), training_args)


def test_the_pixel_cap_is_the_processors_and_no_call_warns(data, tiny, tmp_path):
    model_args = ModelConfig(model_name_or_path=str(tiny))
    training_args = SFTConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", activation_checkpointing=False)
    small = load_processor(model_args, arguments(data, max_pixels=28 * 28 * 4), training_args)
    large = load_processor(model_args, arguments(data, max_pixels=28 * 28 * 64), training_args)
    row = rows(data, "sft_stage1")[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # `max_pixels` given to from_pretrained made every call warn (deprecated)
        assert sequence_length(small, row["messages"], row["images"]) < sequence_length(
            large, row["messages"], row["images"]
        )
    small.save_pretrained(tmp_path / "saved")
    from transformers import AutoProcessor

    assert AutoProcessor.from_pretrained(tmp_path / "saved").image_processor.size["longest_edge"] == 28 * 28 * 4


def test_overlong_samples_are_dropped_with_their_image_tokens_counted(data, tiny):
    rows = datasets.load_dataset(str(data), "sft_stage1", split="train")
    model_args = ModelConfig(model_name_or_path=str(tiny))
    training_args = SFTConfig(output_dir=str(tiny), use_cpu=True, report_to="none", activation_checkpointing=False)
    small = load_processor(model_args, arguments(data, max_pixels=28 * 28 * 4), training_args)  # <= 4 image tokens
    large = load_processor(model_args, arguments(data, max_pixels=28 * 28 * 64), training_args)  # up to 64
    row = rows[0]
    text_only = sequence_length(small, [row["messages"][0]], [])
    assert text_only < sequence_length(small, row["messages"], row["images"])
    image_tokens = sequence_length(large, row["messages"], row["images"]) - sequence_length(
        small, row["messages"], row["images"]
    )
    assert image_tokens > 0  # the same sample is longer when its image is given more tokens

    lengths = [sequence_length(small, r["messages"], r["images"]) for r in rows]
    limit = sorted(lengths)[len(lengths) // 2]
    kept = drop_overlong(rows, small, limit, (("messages",),))
    assert len(kept) == sum(length <= limit for length in lengths) < len(rows)
    assert all(sequence_length(small, r["messages"], r["images"]) <= limit for r in kept)
    assert len(drop_overlong(rows, large, limit, (("messages",),))) < len(kept)
    assert drop_overlong(rows, small, None, (("messages",),)) is rows
    with pytest.raises(ValueError, match="every sample"):
        drop_overlong(rows, small, min(lengths) - 1, (("messages",),))


def test_dpo_pairs_are_measured_with_each_answer(data, tiny):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny)
    pairs = datasets.load_dataset(str(data), "dpo_stage1", split="train")
    chosen = [sequence_length(processor, r["prompt"] + r["chosen"], r["images"]) for r in pairs]
    rejected = [sequence_length(processor, r["prompt"] + r["rejected"], r["images"]) for r in pairs]
    limit = sorted(map(max, chosen, rejected))[len(pairs) // 2]
    kept = drop_overlong(pairs, processor, limit, (("prompt", "chosen"), ("prompt", "rejected")))
    assert len(kept) == sum(max(c, r) <= limit for c, r in zip(chosen, rejected, strict=True))


def test_freeze_vision(tiny):
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(tiny)
    frozen = set(freeze_vision(model))
    assert frozen == {name for name, _ in model.named_parameters() if ".visual." in name}
    assert any(".merger." in name for name in frozen)  # the projector too
    assert all(p.requires_grad for name, p in model.named_parameters() if name not in frozen)
    with pytest.raises(ValueError, match="no vision module"):
        freeze_vision(torch.nn.Linear(2, 2))


def test_a_recipe_warns_when_its_processor_would_move_the_coordinates(data, tiny, caplog):
    """The build stores images in the frame of 512x512 pixels: a recipe at that cap shows the model the pixels its
    traces' coordinates refer to; one at a smaller cap resizes them, and says so once, naming the fix."""
    import logging

    from lgt import frames
    from lgt.frames import processor_frame, warn_if_rescaled
    from transformers import AutoProcessor

    rows = datasets.load_dataset(str(data), "sft_stage1", split="train")
    same = AutoProcessor.from_pretrained(tiny, max_pixels=512 * 512)
    small = AutoProcessor.from_pretrained(tiny, max_pixels=28 * 28 * 4)
    image = rows[0]["images"][0]
    assert processor_frame(same, image) == image.size and processor_frame(small, image) != image.size
    with caplog.at_level(logging.WARNING):
        assert warn_if_rescaled(rows, same) == 0
        assert not caplog.records
        moved = warn_if_rescaled(rows, small)
    sample = rows.select(range(min(len(rows), frames.SAMPLE)))  # a count of 0, say, cites no coordinate
    citing = sum(bool(frames.CITES_PIXELS.search(frames._text(row))) for row in sample)
    assert moved == citing > len(sample) // 2 and len(caplog.records) == 1
    assert (
        "cite pixel coordinates" in caplog.records[0].getMessage() and "--max-pixels" in caplog.records[0].getMessage()
    )
    prompts = datasets.load_dataset(str(data), "rl", split="train")  # no trace, no coordinate: nothing to say
    assert warn_if_rescaled(prompts, small) == 0
    caplog.clear()
    other = AutoProcessor.from_pretrained(tiny, max_pixels=28 * 28 * 4)
    evaluation = datasets.load_dataset(str(data), "sft_stage1", split="validation")
    with caplog.at_level(logging.WARNING):
        for split in (rows, evaluation):  # every recipe passes here, with its train and its evaluation rows
            drop_overlong(split, other, None, (("messages",),))
    assert sum("cite pixel coordinates" in record.getMessage() for record in caplog.records) == 1  # said once
