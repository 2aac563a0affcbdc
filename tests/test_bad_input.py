"""Bad input: by default one clear line naming the file and record, exit 2, nothing written; with
``--on-error skip`` the bad records are skipped, counted and listed in a report beside the output."""

import json

import pytest
from conftest import edit_json, write_image
from datasets import load_dataset
from lgt.cli import main


def run(capsys, *args):
    code = main(["build", "--configs", "scenes,mcq_stage1", *args])
    captured = capsys.readouterr()
    return code, captured.err, captured.out


def assert_refused(capsys, tmp_path, source, *needles):
    output = tmp_path / "out"
    code, err, out = run(capsys, "--source", source, "--output", str(output))
    errors = [line for line in err.splitlines() if line.startswith("lgt: error: ")]
    assert code == 2, err
    assert len(errors) == 1 and "Traceback" not in err, err
    first = errors[0]
    for needle in needles:
        assert needle in first, (needle, first)
    assert not output.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out-building-")]


def assert_skipped(capsys, tmp_path, source, expected_rejects, needle, images=12):
    output = tmp_path / "out"
    code, err, out = run(capsys, "--source", source, "--output", str(output), "--on-error", "skip")
    assert code == 0, err
    report = [json.loads(line) for line in (tmp_path / "out.rejects.jsonl").read_text().splitlines()]
    assert len(report) == expected_rejects and all(needle in r["problem"] for r in report), report
    assert json.loads((output / "lgt_build.json").read_text())["rejects"] == expected_rejects
    scenes = load_dataset(str(output), "scenes")
    assert sum(len(s) for s in scenes.values()) == images - expected_rejects
    return report


ANNOTATIONS = "annotations/instances_val2017.json"


def test_missing_annotation_file(small_coco, tmp_path, capsys):
    (small_coco / "annotations" / "captions_val2017.json").unlink()
    assert_refused(capsys, tmp_path, f"coco:{small_coco}", "captions_val2017.json", "file not found")


def test_malformed_json(small_coco, tmp_path, capsys):
    path = small_coco / ANNOTATIONS
    path.write_text(path.read_text()[:-40])
    assert_refused(capsys, tmp_path, f"coco:{small_coco}", "instances_val2017.json", "malformed JSON at line 1")


def test_not_a_coco_file(small_coco, tmp_path, capsys):
    (small_coco / ANNOTATIONS).write_text(json.dumps({"images": []}))
    assert_refused(capsys, tmp_path, f"coco:{small_coco}", "missing annotations, categories")


def test_unknown_category(small_coco, tmp_path, capsys):
    edit_json(small_coco / ANNOTATIONS, lambda d: d["annotations"][4].update(category_id=99))
    assert_refused(
        capsys,
        tmp_path,
        f"coco:{small_coco}",
        "instances_val2017.json",
        "annotation 21 (image 2)",
        "unknown category_id 99",
    )
    assert_skipped(capsys, tmp_path, f"coco:{small_coco}", 1, "unknown category_id 99")


@pytest.mark.parametrize(("box", "problem"), [([10, 20, 0, 30], "zero-area box"), ([300, 20, 60, 30], "outside")])
def test_bad_boxes(small_coco, tmp_path, capsys, box, problem):
    edit_json(small_coco / ANNOTATIONS, lambda d: d["annotations"][6].update(bbox=box))
    assert_refused(capsys, tmp_path, f"coco:{small_coco}", "record image 3", problem)
    assert_skipped(capsys, tmp_path, f"coco:{small_coco}", 1, problem)


def test_empty_caption(small_coco, tmp_path, capsys):
    edit_json(
        small_coco / "annotations/captions_val2017.json",
        lambda d: d.update(annotations=[a for a in d["annotations"] if a["image_id"] != 5]),
    )
    assert_refused(capsys, tmp_path, f"coco:{small_coco}", "record image 5", "empty caption")
    assert_skipped(capsys, tmp_path, f"coco:{small_coco}", 1, "empty caption")


def test_duplicate_image_ids(small_coco, tmp_path, capsys):
    edit_json(small_coco / ANNOTATIONS, lambda d: d["images"].insert(8, dict(d["images"][6])))  # image 7 twice
    assert_refused(
        capsys,
        tmp_path,
        f"coco:{small_coco}",
        "instances_val2017.json [record image 7]",
        "duplicate image id 'coco-val2017-7' (first at ",
    )
    (reject,) = assert_skipped(capsys, tmp_path, f"coco:{small_coco}", 1, "duplicate image id", images=13)
    # finding 14: the report names the file and the record in their own fields
    assert reject["file"] == str(small_coco / ANNOTATIONS) and reject["record"] == "image 7", reject


def test_missing_image(small_coco, tmp_path, capsys):
    (small_coco / "images/val2017/000000000004.jpg").unlink()
    assert_refused(capsys, tmp_path, f"coco:{small_coco}", "000000000004.jpg", "image file not found")
    assert_skipped(capsys, tmp_path, f"coco:{small_coco}", 1, "image file not found")


def test_missing_image_is_caught_in_path_mode_too(small_coco, tmp_path, capsys):
    (small_coco / "images/val2017/000000000004.jpg").unlink()
    code, err, out = run(
        capsys, "--source", f"coco:{small_coco}", "--output", str(tmp_path / "out"), "--images", "path"
    )
    assert code == 2 and "000000000004.jpg" in err and "image file not found" in err


def test_corrupt_and_truncated_images(small_coco, tmp_path, capsys):
    (small_coco / "images/val2017/000000000002.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * 20)
    good = (small_coco / "images/val2017/000000000009.jpg").read_bytes()
    (small_coco / "images/val2017/000000000009.jpg").write_bytes(good[: len(good) // 2])
    assert_refused(capsys, tmp_path, f"coco:{small_coco}", "cannot be decoded")
    report = assert_skipped(capsys, tmp_path, f"coco:{small_coco}", 2, "cannot be decoded")
    assert {r["file"].rsplit("/", 1)[-1] for r in report} == {"000000000002.jpg", "000000000009.jpg"}


def test_image_size_must_match_annotations(small_coco, tmp_path, capsys):
    write_image(small_coco / "images/val2017/000000000003.jpg", size=(200, 100))
    assert_refused(capsys, tmp_path, f"coco:{small_coco}", "000000000003.jpg", "200x100", "320x240")


@pytest.mark.parametrize(
    ("mode", "fmt", "name"),
    [
        ("L", "JPEG", "jpg"),
        ("RGBA", "PNG", "png"),
        ("CMYK", "JPEG", "jpg"),
        ("I;16", "PNG", "png"),
        ("P", "PNG", "png"),
    ],
)
def test_other_image_modes_are_stored_as_rgb(small_coco, tmp_path, capsys, mode, fmt, name):
    """Grayscale, RGBA, CMYK, 16-bit and palette images are valid images: converted to 8-bit RGB, not refused."""
    write_image(small_coco / f"images/val2017/odd.{name}", mode=mode, fmt=fmt)
    edit_json(small_coco / ANNOTATIONS, lambda d: d["images"][0].update(file_name=f"odd.{name}"))
    code, err, out = run(capsys, "--source", f"coco:{small_coco}", "--output", str(tmp_path / "out"))
    assert code == 0, err
    scenes = load_dataset(str(tmp_path / "out"), "scenes")
    (row,) = [r for split in scenes.values() for r in split if r["image_id"] == "coco-val2017-1"]
    image = row["image"]
    assert image.mode == "RGB" and image.size == (320, 240)
    red, green, _ = image.getpixel((80, 70))  # inside the drawn patch, which must survive the conversion
    background = image.getpixel((300, 200))
    assert abs(red - green) > 40 or mode == "L" or mode == "I;16"
    assert sum(background) > sum(image.getpixel((80, 70))) + 60  # patch darker than background in every mode


def test_jsonl_bad_lines(tmp_path, capsys):
    write_image(tmp_path / "a.png")
    good = {"image": "a.png", "caption": "A red patch.", "objects": [{"name": "patch", "bbox": [40, 40, 120, 100]}]}
    lines = [json.dumps({**good, "image_id": f"img-{i}"}) for i in range(11)] + ['{"image": "a.png", "capt']
    (tmp_path / "scenes.jsonl").write_text("\n".join(lines) + "\n")
    assert_refused(
        capsys, tmp_path, f"jsonl:{tmp_path / 'scenes.jsonl'}", "scenes.jsonl [record line 12]", "malformed JSON"
    )
    code, err, out = run(
        capsys,
        "--source",
        f"jsonl:{tmp_path / 'scenes.jsonl'}",
        "--output",
        str(tmp_path / "out"),
        "--on-error",
        "skip",
    )
    assert code == 0 and "skipped 1 bad record" in out, err
    report = (tmp_path / "out.rejects.jsonl").read_text().splitlines()
    assert len(report) == 1 and json.loads(report[0])["record"] == "line 12"


def test_jsonl_missing_fields_and_file(tmp_path, capsys):
    (tmp_path / "scenes.jsonl").write_text(json.dumps({"image": "a.png", "objects": []}) + "\n")
    assert_refused(
        capsys, tmp_path, f"jsonl:{tmp_path / 'scenes.jsonl'}", "line 1", "missing required field 'caption'"
    )
    assert_refused(capsys, tmp_path, f"jsonl:{tmp_path / 'nope.jsonl'}", "nope.jsonl", "file not found")


def test_unknown_source(tmp_path, capsys):
    assert_refused(capsys, tmp_path, "docci:/x", "unknown source")


def test_errors_and_rejects_cross_worker_processes(small_coco, tmp_path, capsys, monkeypatch):
    """With several shards and --num-proc 2 the bad image is met inside a worker process."""
    monkeypatch.setattr("lgt.builder.SCENES_PER_SHARD", 2)
    (small_coco / "images/val2017/000000000006.jpg").write_bytes(b"garbage" * 50)
    code, err, out = run(
        capsys, "--source", f"coco:{small_coco}", "--output", str(tmp_path / "out"), "--num-proc", "2"
    )
    assert code == 2 and "000000000006.jpg" in err and "cannot be decoded" in err
    assert not (tmp_path / "out").exists()
    code, err, out = run(
        capsys,
        "--source",
        f"coco:{small_coco}",
        "--output",
        str(tmp_path / "out"),
        "--num-proc",
        "2",
        "--on-error",
        "skip",
    )
    assert code == 0, err
    report = [json.loads(line) for line in (tmp_path / "out.rejects.jsonl").read_text().splitlines()]
    assert [r["record"] for r in report] == ["coco-val2017-6"]
    assert sum(len(s) for s in load_dataset(str(tmp_path / "out"), "scenes").values()) == 11


def test_a_later_build_drops_an_old_reject_report(small_coco, tmp_path, capsys):
    edit_json(small_coco / ANNOTATIONS, lambda d: d["annotations"][4].update(category_id=99))
    assert_skipped(capsys, tmp_path, f"coco:{small_coco}", 1, "unknown category_id 99")
    edit_json(small_coco / ANNOTATIONS, lambda d: d["annotations"][4].update(category_id=2))
    code, err, out = run(capsys, "--source", f"coco:{small_coco}", "--output", str(tmp_path / "out"))
    assert code == 0, err
    assert not (tmp_path / "out.rejects.jsonl").exists()
