"""The DOCCI source: its release layout, its splits kept in the ids, its bad records, and its lack of boxes."""

import json

import pytest
from conftest import write_docci
from datasets import load_dataset
from lgt.build import build
from lgt.cli import main
from lgt.images import MODEL_MAX_PIXELS, model_frame
from PIL import Image


@pytest.fixture
def docci(tmp_path):
    return write_docci(tmp_path / "docci", count=6)


def _records(root):
    return [json.loads(line) for line in (root / "docci_descriptions.jsonlines").read_text().splitlines()]


def test_docci_scenes_keep_the_description_and_docci_split(docci, tmp_path):
    info = build(source=f"docci:{docci}", configs=("scenes",), output=str(tmp_path / "out"))
    assert info["source"]["name"] == "docci" and "detection" not in info["source"]
    scenes = load_dataset(str(tmp_path / "out"), "scenes")
    rows = {row["image_id"]: row for split in scenes.values() for row in split}
    records = _records(docci)
    assert sorted(rows) == sorted(f"docci-{r['split']}-{r['example_id']}" for r in records)
    assert {r["split"] for r in records} == {"train", "test"}
    for record in records:
        row = rows[f"docci-{record['split']}-{record['example_id']}"]
        with Image.open(docci / "images" / record["image_file"]) as image:  # stored in the model's frame
            assert (row["width"], row["height"]) == model_frame(*image.size, MODEL_MAX_PIXELS) == row["image"].size
        assert row["caption"] == record["description"] and row["objects"] == []
        assert row["source"] == "docci" and row["license"] == "CC BY 4.0"
    card = (tmp_path / "out" / "README.md").read_text()
    assert "license: cc-by-4.0" in card and "extended|other-docci" in card


def test_the_descriptions_file_itself_is_a_docci_path(docci, tmp_path):
    build(source=f"docci:{docci / 'docci_descriptions.jsonlines'}", configs=("scenes",), output=str(tmp_path / "out"))
    assert sum(len(split) for split in load_dataset(str(tmp_path / "out"), "scenes").values()) == 6


def test_questions_from_docci_directly_stop_at_once_naming_lgt_detect(docci, tmp_path, capsys):
    assert main(["build", "--source", f"docci:{docci}", "--output", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "no boxes" in error and f"lgt detect docci:{docci}" in error
    assert "Reading" not in error and not (tmp_path / "out").exists()
    assert main(["build", "--source", f"docci:{docci}", "--dry-run", "--writer", "transformers:x"]) == 2


BAD_RECORDS = {
    "no description": ({"description": None}, "missing required field 'description'"),
    "split not text": ({"split": 3}, "'split' must be text, not 3"),
    "image outside the root": ({"image_file": "../../x.jpg"}, "outside"),
    "image missing": ({"image_file": "nope.jpg"}, "image file not found"),
    "empty description": ({"description": " "}, "empty caption"),
}


@pytest.mark.parametrize("change, problem", BAD_RECORDS.values(), ids=BAD_RECORDS)
def test_a_bad_record_stops_the_build_or_is_skipped(docci, tmp_path, capsys, change, problem):
    records = _records(docci)
    records[2].update(change)
    records[2] = {key: value for key, value in records[2].items() if value is not None}
    path = docci / "docci_descriptions.jsonlines"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    args = ["build", "--source", f"docci:{docci}", "--configs", "scenes"]
    assert main([*args, "--output", str(tmp_path / "a")]) == 2
    (error,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("lgt: error:")]
    assert "[record line 3]" in error and problem in error
    assert not (tmp_path / "a").exists()
    assert main([*args, "--output", str(tmp_path / "b"), "--on-error", "skip"]) == 0
    assert "skipped 1 bad record(s)" in capsys.readouterr().out
    (reject,) = [json.loads(line) for line in (tmp_path / "b.rejects.jsonl").read_text().splitlines()]
    assert reject["record"] == "line 3" and problem in reject["problem"]


def test_a_line_that_is_not_json_is_a_bad_record(docci, tmp_path, capsys):
    path = docci / "docci_descriptions.jsonlines"
    path.write_text(path.read_text() + "{not json\n")
    assert main(["build", "--source", f"docci:{docci}", "--configs", "scenes", "--output", str(tmp_path / "a")]) == 2
    assert "[record line 7]: malformed JSON" in capsys.readouterr().err


def test_a_missing_docci_root_is_one_line(tmp_path, capsys):
    assert main(["build", "--source", f"docci:{tmp_path / 'none'}", "--configs", "scenes"]) == 2
    (error,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("lgt: error:")]
    assert f"{tmp_path / 'none'}: file not found (a DOCCI root holds docci_descriptions.jsonlines" in error
