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


def messages(err: str) -> list[str]:
    """What lgt itself wrote to stderr (progress bars aside)."""
    return [line for line in err.splitlines() if line.startswith(("lgt: error", "lgt: interrupted"))]


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
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no staging folder, no lock file


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
    code, err, out = run(
        capsys, "--source", f"coco:{small_coco}", "--output", str(tmp_path / "out"), "--max-pixels", "keep"
    )
    assert code == 0, err
    scenes = load_dataset(str(tmp_path / "out"), "scenes")
    (row,) = [r for split in scenes.values() for r in split if r["image_id"] == "coco-val2017-1"]
    image = row["image"]
    assert image.mode == "RGB" and image.size == (320, 240)
    red, green, _ = image.getpixel((80, 70))  # inside the drawn patch, which must survive the conversion
    background = image.getpixel((300, 200))
    assert abs(red - green) > 40 or mode == "L" or mode == "I;16"
    assert sum(background) > sum(image.getpixel((80, 70))) + 60  # patch darker than background in every mode


def test_path_mode_checks_the_image_header(small_coco, tmp_path, capsys):
    """Finding 6: --images path used to check only that the file existed."""
    (small_coco / "images/val2017/000000000003.jpg").write_text("just some text, not an image\n")
    write_image(small_coco / "images/val2017/000000000005.jpg", size=(200, 100))
    source = f"coco:{small_coco}"
    code, err, _ = run(capsys, "--source", source, "--output", str(tmp_path / "out"), "--images", "path")
    assert code == 2 and "000000000003.jpg" in err and "image cannot be read (UnidentifiedImageError" in err, err
    code, err, _ = run(
        capsys, "--source", source, "--output", str(tmp_path / "out"), "--images", "path", "--on-error", "skip"
    )
    assert code == 0, err
    report = {json.loads(line)["record"]: json.loads(line)["problem"] for line in open(tmp_path / "out.rejects.jsonl")}
    assert report.keys() == {"coco-val2017-3", "coco-val2017-5"}, report
    assert "image is 200x100 but the annotations say 320x240" in report["coco-val2017-5"]


@pytest.mark.parametrize("images", ["embed", "path"])
def test_images_outside_the_source_folder_are_refused(small_coco, tmp_path, capsys, images):
    """Finding 6: a file reached through ../ or a symlink may be anyone's; it is read only with --image-root."""
    secret = write_image(tmp_path / "private.png", size=(320, 240))  # a valid image, only in the wrong place
    edit_json(small_coco / ANNOTATIONS, lambda d: d["images"][1].update(file_name="../../../private.png"))
    link = small_coco / "images/val2017/000000000004.jpg"
    link.unlink()
    link.symlink_to(secret)
    args = ["--source", f"coco:{small_coco}", "--images", images, "--on-error", "skip"]
    code, err, _ = run(capsys, *args, "--output", str(tmp_path / "out"))
    assert code == 0, err
    report = [json.loads(line) for line in open(tmp_path / "out.rejects.jsonl")]
    assert sorted(r["record"] for r in report) == ["image 2", "image 4"], report
    assert all(f"resolves to {secret}, outside {small_coco}" in r["problem"] for r in report), report
    code, err, _ = run(capsys, *args, "--output", str(tmp_path / "out"), "--image-root", str(tmp_path))
    assert code == 0 and "skipped 0 bad record(s)" in _, err
    assert sum(len(s) for s in load_dataset(str(tmp_path / "out"), "scenes").values()) == 12


def test_the_preview_skips_an_image_it_cannot_show(small_coco, tmp_path):
    """Finding 6: the card's preview crashed (UnidentifiedImageError) on a row whose image file was not an image."""
    from lgt.build import build
    from lgt.card import render_preview

    output = tmp_path / "out"
    build(source=f"coco:{small_coco}", output=str(output), images="path")
    for image in (small_coco / "images/val2017").iterdir():  # every referenced file broken after the build
        image.write_text("gone")
    assert render_preview(str(output), str(tmp_path / "preview.png")) is False
    assert not (tmp_path / "preview.png").exists()


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
    assert_refused(capsys, tmp_path, "visual-genome:/x", "unknown source")


def test_errors_and_rejects_cross_worker_processes(small_coco, tmp_path, capsys, monkeypatch):
    """With several shards and --num-proc 2 the bad image is met inside a worker process."""
    monkeypatch.setattr("lgt.builder.SCENES_PER_UNIT", 2)
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
    code, err, out = run(
        capsys, "--source", f"coco:{small_coco}", "--output", str(tmp_path / "out"), "--max-pixels", "keep"
    )
    assert code == 0, err
    assert not (tmp_path / "out.rejects.jsonl").exists()


# ---- typed records: one place knows every field's type and range; nothing is coerced (findings 3, 4, 5, 10) ----

GOOD_OBJECT = '{"name": "patch", "bbox": [40, 40, 120, 100]}'


def jsonl_line(caption='"A red patch."', image='"a.png"', obj=GOOD_OBJECT, extra=""):
    return f'{{"image": {image}, "caption": {caption}, "objects": [{obj}]{extra}}}'


def object_with(field):
    return '{"name": "patch", "bbox": [40, 40, 120, 100], ' + field + "}"


JSONL_CASES = {
    "image is a number": (jsonl_line(image="5"), "'image' must be text, not 5"),
    "image is null": (jsonl_line(image="null"), "'image' must be text, not null"),
    "image_id is a number": (jsonl_line(extra=', "image_id": 7'), "'image_id' must be text, not 7"),
    "object id is text": (object_with('"id": "abc"'), "object 0: 'id' must be a whole number from"),
    "object id is 2**70": (object_with('"id": 1180591620717411303424'), "not 1180591620717411303424"),
    "object id has a fraction": (object_with('"id": 3.5'), "'id' must be a whole number"),
    "score is text": (object_with('"score": "high"'), "object 0: 'score' must be a number from 0 to 1, not \"high\""),
    "score is NaN": (object_with('"score": NaN'), "'score' must be a number from 0 to 1, not NaN"),
    "box value 1e400": (
        '{"name": "patch", "bbox": [40, 40, 1e400, 100]}',
        "object 0: 'bbox' must be 4 finite numbers, not [40, 40, Infinity, 100]",
    ),
    "box of booleans": ('{"name": "patch", "bbox": [true, true, true, true]}', "'bbox' must be 4 finite numbers"),
    "box of strings": ('{"name": "patch", "bbox": ["40", "40", "120", "100"]}', "'bbox' must be 4 finite numbers"),
    "attributes a number": (object_with('"attributes": 7'), "'attributes' must be a list of text, not 7"),
    "attributes a string": (object_with('"attributes": "red"'), "'attributes' must be a list of text, not \"red\""),
    "lone surrogate in caption": (jsonl_line(caption='"A red \\ud800 patch."'), "'caption' is not valid Unicode"),
    "lone surrogate in name": ('{"name": "pa\\udc00tch", "bbox": [40, 40, 120, 100]}', "'name' is not valid Unicode"),
    "null name": ('{"name": null, "bbox": [40, 40, 120, 100]}', "object 0: 'name' must be text, not null"),
    "name is a list": ('{"name": ["dog"], "bbox": [40, 40, 120, 100]}', "'name' must be text, not [\"dog\"]"),
    "caption is a list": (jsonl_line(caption='["A", "b"]'), '\'caption\' must be text, not ["A", "b"]'),
    "width is text": (jsonl_line(extra=', "width": "320", "height": 240'), "'width' must be a whole number"),
    "width without height": (jsonl_line(extra=', "width": 320'), "give both 'width' and 'height', or neither"),
    "objects not a list": (jsonl_line().replace(f"[{GOOD_OBJECT}]", "{}"), "'objects' must be a list, not {}"),
    "object not an object": (jsonl_line(obj='"dog"'), 'object 0 must be a JSON object, not "dog"'),
}


def write_jsonl(tmp_path, bad_line: str | bytes):
    """Eleven good lines, then ``bad_line`` as line 12."""
    write_image(tmp_path / "a.png")
    good = [jsonl_line(extra=f', "image_id": "img-{i}"').encode() for i in range(11)]
    bad = bad_line if isinstance(bad_line, bytes) else jsonl_line(obj=bad_line).encode()
    if not isinstance(bad_line, bytes) and bad_line.startswith('{"image"'):
        bad = bad_line.encode()
    (tmp_path / "scenes.jsonl").write_bytes(b"\n".join([*good, bad]) + b"\n")
    return f"jsonl:{tmp_path / 'scenes.jsonl'}"


@pytest.mark.parametrize("case", JSONL_CASES)
def test_jsonl_values_of_the_wrong_type_are_refused_never_coerced(tmp_path, capsys, case):
    line, problem = JSONL_CASES[case]
    source = write_jsonl(tmp_path, line)
    assert_refused(capsys, tmp_path, source, "scenes.jsonl [record line 12]", problem)
    (reject,) = assert_skipped(capsys, tmp_path, source, 1, problem)
    assert reject["record"] == "line 12" and reject["file"].endswith("scenes.jsonl")


def test_jsonl_invalid_utf8_is_a_bad_line_not_a_bad_file(tmp_path, capsys):
    """Finding 10: the error named no file or line, and --on-error skip aborted instead of skipping the line."""
    source = write_jsonl(tmp_path, jsonl_line(caption='"A r\xffd patch."').encode("latin-1"))
    assert_refused(capsys, tmp_path, source, "scenes.jsonl [record line 12]", "not UTF-8 text at byte 35")
    assert_skipped(capsys, tmp_path, source, 1, "not UTF-8 text")


def test_jsonl_optional_fields_may_be_null_and_values_arrive_as_written(tmp_path):
    """``null`` means "not given" for an optional field; every given value is stored exactly (finding 5)."""
    from lgt.build import build

    write_image(tmp_path / "a.png")
    lines = [
        '{"image_id": null, "image": "a.png", "caption": "One.", "license": null, "width": null, "height": null, '
        '"objects": [{"id": null, "name": "dog", "bbox": [40, 40, 120, 100], "attributes": null, "score": null}]}',
        '{"image_id": "x", "image": "a.png", "caption": "Two.", "width": 320, "height": 240, "objects": '
        '[{"id": -7, "name": "None", "bbox": [40.5, 40, 120, 100.25], "attributes": ["r", "e"], "score": 1}]}',
    ]
    (tmp_path / "scenes.jsonl").write_text("\n".join(lines) + "\n")
    build(source=f"jsonl:{tmp_path / 'scenes.jsonl'}", output=str(tmp_path / "out"), configs=("scenes",), max_pixels=0)
    rows = {r["image_id"]: r for split in load_dataset(str(tmp_path / "out"), "scenes").values() for r in split}
    assert rows.keys() == {"line-1", "x"}
    first, second = rows["line-1"], rows["x"]
    assert (first["license"], first["width"], first["height"]) == ("", 320, 240)
    assert first["objects"] == [
        {"id": 0, "name": "dog", "bbox": [40, 40, 120, 100], "attributes": [], "score": None, "crowd": False}
    ]
    assert second["objects"] == [
        {
            "id": -7,
            "name": "None",
            "bbox": [40.5, 40, 120, 100.25],
            "attributes": ["r", "e"],
            "score": 1.0,
            "crowd": False,
        }
    ]


def coco_case(change):
    return lambda root: edit_json(root / ANNOTATIONS, change)


def captions_case(change):
    return lambda root: edit_json(root / "annotations/captions_val2017.json", change)


# (edit, record, problem, rejects under --on-error skip, scenes built)
COCO_CASES = {
    "box as strings (finding 3)": (
        coco_case(lambda d: d["annotations"][6].update(bbox=["1", "2", "3", "4"])),
        "annotation 30 (image 3)",
        '\'bbox\' must be 4 finite numbers, not ["1", "2", "3", "4"]',
        1,
        11,
    ),
    "box of booleans": (
        coco_case(lambda d: d["annotations"][6].update(bbox=[True, True, True, True])),
        "annotation 30 (image 3)",
        "'bbox' must be 4 finite numbers",
        1,
        11,
    ),
    "annotation without id": (
        coco_case(lambda d: d["annotations"][6].pop("id")),
        "annotation #6 (image 3)",
        "missing required field 'id'",
        1,
        11,
    ),
    "annotation not an object": (
        coco_case(lambda d: d["annotations"].insert(0, 5)),
        "annotation #0",
        "the record must be a JSON object, not 5",
        1,
        12,
    ),
    "annotation of an unknown image": (
        coco_case(lambda d: d["annotations"][6].update(image_id=999)),
        "annotation 30",
        "image_id 999 is not among the images",
        1,
        12,
    ),
    "annotation without image id": (
        coco_case(lambda d: d["annotations"][6].pop("image_id")),
        "annotation 30",
        "missing required field 'image_id'",
        1,
        12,
    ),
    "iscrowd as text": (
        coco_case(lambda d: d["annotations"][6].update(iscrowd="1")),
        "annotation 30 (image 3)",
        "'iscrowd' must be true, false, 1 or 0, not \"1\"",
        1,
        11,
    ),
    "category without name": (
        coco_case(lambda d: d["categories"][2].pop("name")),
        "category 3",
        "missing required field 'name'",
        1,
        12,
    ),
    "duplicate category id, unused": (
        coco_case(lambda d: d["categories"].append({"id": 3, "name": "truck"})),
        "category 3",
        "category id 3 is defined more than once",
        1,
        12,
    ),
    "caption is a number": (
        captions_case(lambda d: d["annotations"][20].update(caption=5)),
        "caption 50 (image 5)",
        "'caption' must be text, not 5",
        1,
        11,
    ),
    "caption of an unknown image": (
        captions_case(lambda d: d["annotations"][20].update(image_id=77)),
        "caption 50",
        "image_id 77 is not among the images",
        1,
        12,
    ),
    "image width as text": (
        coco_case(lambda d: d["images"][2].update(width="320")),
        "image 3",
        "'width' must be a whole number from 1 to 2147483647, not \"320\"",
        1,
        11,
    ),
    "unknown licence": (
        coco_case(lambda d: d["images"][2].update(license=9)),
        "image 3",
        "unknown license 9",
        1,
        11,
    ),
}


@pytest.mark.parametrize("case", COCO_CASES)
def test_coco_values_of_the_wrong_type_are_refused_or_counted(small_coco, tmp_path, capsys, case):
    edit, record, problem, rejects, scenes = COCO_CASES[case]
    edit(small_coco)
    source = f"coco:{small_coco}"
    assert_refused(capsys, tmp_path, source, f"[record {record}]: ", problem)
    code, err, out = run(capsys, "--source", source, "--output", str(tmp_path / "out"), "--on-error", "skip")
    assert code == 0, err
    report = [json.loads(line) for line in (tmp_path / "out.rejects.jsonl").read_text().splitlines()]
    assert [(r["record"], problem in r["problem"]) for r in report] == [(record, True)] * rejects, report
    assert sum(len(s) for s in load_dataset(str(tmp_path / "out"), "scenes").values()) == scenes


def test_a_used_category_defined_twice_is_not_resolved_by_guessing(small_coco, tmp_path, capsys):
    """Finding 5: the last name won; now every image using the id is refused, the build stops as empty."""
    edit_json(small_coco / ANNOTATIONS, lambda d: d["categories"].append({"id": 1, "name": "lion"}))
    assert_refused(capsys, tmp_path, f"coco:{small_coco}", "[record category 1]", "defined more than once")
    code, err, _ = run(
        capsys, "--source", f"coco:{small_coco}", "--output", str(tmp_path / "out"), "--on-error", "skip"
    )
    assert code == 2 and messages(err) == [
        f"lgt: error: coco:{small_coco}: no usable image in this source; all 13 record(s) were bad, the first: "
        f"{small_coco / ANNOTATIONS} [record category 1]: category id 1 is defined more than once"
    ], err


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ({"images": [], "annotations": {}, "categories": []}, "'annotations' must be a list, not {}"),
        ([1, 2], "the file must be a JSON object, not [1, 2]"),
    ],
)
def test_a_coco_file_of_the_wrong_shape_stops_the_build_in_both_modes(small_coco, tmp_path, capsys, content, problem):
    (small_coco / ANNOTATIONS).write_text(json.dumps(content))
    assert_refused(capsys, tmp_path, f"coco:{small_coco}", "instances_val2017.json: ", problem)
    code, err, _ = run(
        capsys, "--source", f"coco:{small_coco}", "--output", str(tmp_path / "out"), "--on-error", "skip"
    )
    assert code == 2 and problem in err and "Traceback" not in err


# ---- empty builds and arguments (findings 2 and 9) ----


def previous_build(tmp_path):
    from lgt.build import build

    output = tmp_path / "out"
    build(source="scenes", num_images=6, output=str(output), configs=("scenes", "mcq_stage1"))
    return output, sorted(str(p.relative_to(output)) for p in output.rglob("*"))


def test_a_build_without_usable_rows_leaves_the_previous_build(small_coco, tmp_path, capsys):
    """Finding 2: all images missing under --on-error skip replaced a good build with an empty one, then IndexError."""
    output, before = previous_build(tmp_path)
    for image in (small_coco / "images/val2017").iterdir():
        image.unlink()
    code, err, out = run(capsys, "--source", f"coco:{small_coco}", "--output", str(output), "--on-error", "skip")
    assert code == 2 and "Traceback" not in err, err
    (line,) = messages(err)
    assert "config scenes, mcq_stage1 came out empty: 12 bad record(s) were skipped, the first: " in line
    assert f"{output} was left as it was" in line
    assert sorted(str(p.relative_to(output)) for p in output.rglob("*")) == before
    assert sum(len(s) for s in load_dataset(str(output), "scenes").values()) == 6
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_a_config_that_comes_out_empty_stops_the_build_also_by_default(tmp_path, capsys):
    """Finding 2: scenes without objects give no question; without --configs the empty config was silently dropped."""
    output, before = previous_build(tmp_path)
    write_image(tmp_path / "a.png")
    lines = [
        json.dumps({"image_id": f"i{i}", "image": "a.png", "caption": "Nothing.", "objects": []}) for i in range(5)
    ]
    (tmp_path / "scenes.jsonl").write_text("\n".join(lines) + "\n")
    code = main(["build", "--source", f"jsonl:{tmp_path / 'scenes.jsonl'}", "--output", str(output)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert messages(err) == [
        f"lgt: error: config mcq_stage1 came out empty: no scene gave a row for it (questions need scenes with "
        f"objects); {output} was left as it was"
    ]
    assert sorted(str(p.relative_to(output)) for p in output.rglob("*")) == before


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--configs", ","], "unknown config(s) (none given)"),
        (["--num-images", "-5"], "num_images must be a whole number from 1 up (unset: all images), not -5"),
        (["--num-images", "0"], "not 0"),
        (["--source", "coco:x", "--num-images", "0"], "not 0"),
        (["--num-proc", "0"], "num_proc must be a whole number from 1 up, not 0"),
    ],
)
def test_arguments_are_checked_before_anything_is_written(tmp_path, capsys, args, problem):
    """Finding 9: `--configs ,` gave a traceback, -5 built one image, 0 meant "all" or 1,000."""
    code = main(["build", "--output", str(tmp_path / "out"), *args])
    err = capsys.readouterr().err
    (line,) = messages(err)
    assert code == 2 and line.startswith("lgt: error: ") and problem in line, err
    assert list(tmp_path.iterdir()) == []
