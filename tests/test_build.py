"""`lgt build` end to end on the built-in scenes: layout, `load_dataset`, splits, letters, ids, atomic output."""

import os
import shutil
from collections import Counter

import pyarrow.parquet as pq
import pytest
from datasets import Image, load_dataset
from lgt.build import build
from lgt.builder import LGTBuilder
from lgt.stages import STAGES


def test_layout_and_card(builtin_build):
    output, info = builtin_build
    assert sorted(os.listdir(output)) == sorted(["README.md", "lgt_build.json", "preview.png", *STAGES])
    for config in STAGES:
        files = sorted(os.listdir(output / config))
        assert files and all(f.split("-")[0] in ("train", "validation", "test") and "-of-" in f for f in files)
        for name in files:  # the features travel inside every shard too
            metadata = pq.read_schema(output / config / name).metadata
            assert b"huggingface" in metadata
    card = (output / "README.md").read_text()
    assert all(f"config_name: {config}" in card for config in STAGES) and card.count("default: true") == 1
    assert "by skill" in card and "counting" in card and "![" in card
    assert "## `scenes` at a glance\n\n300 images," in card
    for rows in info["rows"]["mcq_stage1"].values():
        assert f"{rows:,}" in card


def test_load_dataset_by_name_from_the_parent_folder(builtin_build, monkeypatch):
    output, info = builtin_build
    monkeypatch.chdir(output.parent)
    mcqs = load_dataset("lgt", "mcq_stage1")
    scenes = load_dataset("lgt", "scenes")
    assert {s: len(d) for s, d in mcqs.items()} == info["rows"]["mcq_stage1"]
    assert sum(len(d) for d in scenes.values()) == 300
    assert (
        mcqs["train"].features == STAGES["mcq_stage1"].features
        and scenes["train"].features == STAGES["scenes"].features
    )
    row = mcqs["train"][0]
    assert row["image"].mode == "RGB" and row["image"].size[0] >= 32
    scene = scenes["train"][0]
    assert scene["image"].size == (scene["width"], scene["height"])


def test_splits_are_disjoint_by_image_and_agree_across_configs(builtin_build):
    output, _ = builtin_build
    mcqs = load_dataset(str(output), "mcq_stage1").remove_columns("image")
    scenes = load_dataset(str(output), "scenes").remove_columns("image")
    by_split = {s: set(d["image_id"]) for s, d in mcqs.items()}
    assert not (
        by_split["train"] & by_split["validation"]
        or by_split["train"] & by_split["test"]
        or by_split["validation"] & by_split["test"]
    )
    for split, ids in by_split.items():
        assert ids <= set(scenes[split]["image_id"])


def test_mcq_rows_are_well_formed_and_balanced(builtin_build):
    output, _ = builtin_build
    mcqs = load_dataset(str(output), "mcq_stage1").remove_columns("image")
    scenes = {r["image_id"]: r for d in load_dataset(str(output), "scenes").values() for r in d}
    skills = Counter()
    for split, data in mcqs.items():
        letters = Counter(data["answer"])
        for letter in "ABCD":  # each letter within 3 points of 25% in every split
            assert abs(100 * letters[letter] / len(data) - 25) <= 3, (split, letters)
        assert len(set(data["id"])) == len(data)
        per_image = Counter((r["image_id"], r["question"]) for r in data)
        assert max(per_image.values()) == 1  # no question twice about one image
        for row in data:
            skills[row["skill"]] += 1
            assert len(row["options"]) == 4 and len(set(row["options"])) == 4
            assert row["answer"] in "ABCD" and row["level"] == 1 and row["parents"] == []
            assert row["generator"].startswith("stage1/") and "@" in row["generator"]
            scene = scenes[row["image_id"]]
            for ground in row["grounding"]:
                x0, y0, x1, y1 = ground["bbox"]
                assert 0 <= x0 < x1 <= scene["width"] and 0 <= y0 < y1 <= scene["height"]
                assert ground["object_id"] in {o["id"] for o in scene["objects"]}
    # the built-in scenes have colours, so every stage-1 skill shows up
    assert set(skills) == {
        "counting",
        "spatial_relation",
        "relative_size",
        "relative_distance",
        "existence",
        "attribute",
        "localization",
    }, skills


def test_rebuild_is_identical_and_num_proc_does_not_change_rows(builtin_build, tmp_path):
    output, info = builtin_build
    again = tmp_path / "again"
    build(source="scenes", num_images=300, output=str(again), num_proc=2)
    for config in ("scenes", "mcq_stage1"):
        for split in info["rows"][config]:
            first = load_dataset(str(output), config, split=split).remove_columns("image")
            second = load_dataset(str(again), config, split=split).remove_columns("image")
            assert first.to_list() == second.to_list()


def test_a_build_does_not_depend_on_the_process_hash_seed(builtin_build, tmp_path):
    """Parts of a build run in other processes, on other machines: iterating a set of strings, whose order follows
    each process's hash seed, made the scripted slips differ between processes."""
    import subprocess
    import sys

    output, info = builtin_build
    again = tmp_path / "again"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    command = ["-m", "lgt.cli", "build", "--num-images", "300", "--configs", "traces_stage1", "--output", str(again)]
    subprocess.run([sys.executable, *command, "-q"], env=env, check=True, capture_output=True)
    for split in info["rows"]["traces_stage1"]:
        first = pq.read_table(sorted((output / "traces_stage1").glob(f"{split}-*.parquet")))
        second = pq.read_table(sorted((again / "traces_stage1").glob(f"{split}-*.parquet")))
        assert first.to_pylist() == second.to_pylist()


def test_path_mode_references_images(small_coco, tmp_path):
    output = tmp_path / "lgt"
    build(source=f"coco:{small_coco}", output=str(output), images="path", configs=("mcq_stage1",))
    table = pq.read_table(next((output / "mcq_stage1").glob("train-*.parquet")), columns=["image"])
    stored = table.column("image").to_pylist()[0]
    assert stored["bytes"] is None and os.path.isabs(stored["path"])
    data = load_dataset(str(output), "mcq_stage1", split="train")
    assert data[0]["image"].size == (320, 240)
    with pytest.raises(ValueError, match="built-in scenes are rendered in memory"):
        build(source="scenes", num_images=2, output=str(tmp_path / "x"), images="path")


def test_failed_build_keeps_the_previous_output(builtin_build, tmp_path):
    output = tmp_path / "lgt"
    shutil.copytree(builtin_build[0], output)
    before = sorted(p.name for p in output.rglob("*"))
    with pytest.raises(ValueError):
        build(source="jsonl:" + str(tmp_path / "missing.jsonl"), output=str(output))
    assert sorted(p.name for p in output.rglob("*")) == before
    assert [p.name for p in tmp_path.iterdir()] == ["lgt"]  # no staging folder left behind


def test_refuses_to_replace_a_folder_that_is_not_a_build(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        build(source="scenes", num_images=2, output=str(tmp_path / "mine"))
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_the_builder_alone_works_like_any_datasets_builder(tmp_path):
    builder = LGTBuilder(config_name="mcq_stage1", source="scenes", num_images=8, cache_dir=str(tmp_path))
    builder.download_and_prepare()
    data = builder.as_dataset()
    assert sum(len(d) for d in data.values()) > 8 and isinstance(data["train"].features["image"], Image)
