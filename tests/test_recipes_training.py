"""``lgt.training``, the recipes' shared steps, in process: mixtures and column mapping, dropping (never truncating)
over-long samples with their image tokens counted, and freezing the vision side."""

import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")
pytest.importorskip("torchvision")

import datasets  # noqa: E402
import torch  # noqa: E402
from lgt.training import LGTScriptArguments, drop_overlong, freeze_vision, load_mixture, sequence_length  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes"))
from tiny_data import make_tiny_model, make_training_data  # noqa: E402


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_training_data(tmp_path_factory.mktemp("data") / "lgt")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("model") / "tiny-qwen2.5-vl")


def arguments(data, **fields):
    return LGTScriptArguments(dataset_name=str(data), **fields)


def test_mixture_weights_are_shares_of_each_config(data):
    stage1 = datasets.load_dataset(str(data), "dpo_stage1", split="train")
    stage2 = datasets.load_dataset(str(data), "dpo_stage2", split="train")
    mixed = load_mixture(arguments(data, dataset_mixture={"dpo_stage1": 1.0, "dpo_stage2": 0.5}), ("id",), seed=0)
    assert len(mixed) == len(stage1) + round(len(stage2) / 2)
    ids = list(mixed["id"])
    assert set(stage1["id"]) <= set(ids) and len(set(ids)) == len(ids)  # a subset of stage 2, no repeats
    assert set(ids) - set(stage1["id"]) < set(stage2["id"])

    doubled = load_mixture(arguments(data, dataset_mixture={"dpo_stage1": 2.0}), ("id",), seed=0)
    assert sorted(doubled["id"]) == sorted(list(stage1["id"]) * 2)


def test_mixture_from_json_on_the_command_line(data):
    args = arguments(data, dataset_mixture='{"sft_stage1": 1.0, "rl": 0.25}')
    assert args.dataset_mixture == {"sft_stage1": 1.0, "rl": 0.25}
    assert set(load_mixture(args, ("images",), seed=0).column_names) == {"images"}


@pytest.mark.parametrize(
    "fields",
    [
        {"dataset_mixture": {"sft_stage1": 0}},
        {"dataset_mixture": {"sft_stage1": "half"}},
        {"dataset_mixture": {"sft_stage1": 1.0}, "dataset_config": "sft_stage1"},
    ],
)
def test_bad_mixtures_are_refused(data, fields):
    with pytest.raises(ValueError):
        arguments(data, **fields)


def test_column_mapping(data):
    args = arguments(data, dataset_config="rl", column_mapping={"solution": "target", "absent": "ignored"})
    rows = load_mixture(args, ("prompt", "target"), seed=0)
    assert rows.column_names == ["prompt", "target"]
    assert list(rows["target"]) == list(datasets.load_dataset(str(data), "rl", split="train")["solution"])
    with pytest.raises(ValueError, match="column_mapping"):
        load_mixture(arguments(data, dataset_config="rl"), ("prompt", "target"), seed=0)


def test_overlong_samples_are_dropped_with_their_image_tokens_counted(data, tiny):
    from transformers import AutoProcessor

    rows = datasets.load_dataset(str(data), "sft_stage1", split="train")
    small = AutoProcessor.from_pretrained(tiny, max_pixels=28 * 28 * 4)  # at most 4 image tokens
    large = AutoProcessor.from_pretrained(tiny, max_pixels=28 * 28 * 64)  # up to 64
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
    assert moved == min(len(rows), 32) and len(caplog.records) == 1
    assert (
        "cite pixel coordinates" in caplog.records[0].getMessage() and "--max-pixels" in caplog.records[0].getMessage()
    )
    prompts = datasets.load_dataset(str(data), "rl", split="train")  # no trace, no coordinate: nothing to say
    assert warn_if_rescaled(prompts, small) == 0
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        drop_overlong(rows, small, None, (("messages",),))  # every recipe passes here
    assert any("cite pixel coordinates" in record.getMessage() for record in caplog.records)
