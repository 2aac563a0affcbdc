"""The JSON Lines source, the format users convert DOCCI, Visual Genome or detector output into."""

import json

import pytest
from conftest import write_image
from datasets import load_dataset
from lgt.build import build


def test_jsonl_scenes_with_attributes_make_attribute_questions(tmp_path):
    write_image(tmp_path / "img.png", size=(400, 300))
    colours = ["red", "green", "blue", "yellow", "purple", "black"]
    with open(tmp_path / "scenes.jsonl", "w") as f:
        for i in range(30):
            objects = [
                {"name": "cup", "bbox": [10, 10, 110, 110], "attributes": [colours[i % 6], "ceramic"]},
                {"name": "plate", "bbox": [250, 20, 390, 120], "attributes": [colours[(i + 1) % 6], "round"]},
                {"name": "spoon", "bbox": [150, 200, 220, 290], "attributes": ["shiny", "metal"], "score": 0.8},
            ]
            # No width/height on odd lines: read from the image header.
            size = {"width": 400, "height": 300} if i % 2 == 0 else {}
            f.write(
                json.dumps(
                    {
                        "image_id": f"img-{i}",
                        "image": "img.png",
                        "caption": "A table.",
                        "objects": objects,
                        "license": "CC0",
                        **size,
                    }
                )
                + "\n"
            )
    output = tmp_path / "out"
    info = build(source=f"jsonl:{tmp_path / 'scenes.jsonl'}", output=str(output), max_pixels=0)  # sizes as given
    assert info["source"]["name"] == "jsonl"
    scenes = load_dataset(str(output), "scenes").remove_columns("image")
    rows = {r["image_id"]: r for split in scenes.values() for r in split}
    assert len(rows) == 30 and {(r["width"], r["height"]) for r in rows.values()} == {(400, 300)}
    assert rows["img-3"]["objects"][2]["score"] == 0.800000011920929 and rows["img-3"]["license"] == "CC0"
    mcqs = load_dataset(str(output), "mcq_stage1").remove_columns("image")
    checked = 0
    for row in (r for split in mcqs.values() for r in split if r["skill"] == "attribute"):
        (ground,) = row["grounding"]
        obj = next(o for o in rows[row["image_id"]]["objects"] if o["id"] == ground["object_id"])
        answer = row["options"]["ABCD".index(row["answer"])]
        assert answer in obj["attributes"]
        assert not set(row["options"]).difference([answer]) & set(obj["attributes"])
        checked += 1
    assert checked >= 30


def _scenes_file(folder, bad: dict[int, dict], count=12):
    """A JSON Lines file of ``count`` scenes, line N (from 1) replaced by ``bad[N]`` where given (a dict, or text)."""
    write_image(folder / "img.png", size=(400, 300))
    lines = []
    for number in range(1, count + 1):
        record = {"image_id": f"img-{number}", "image": "img.png", "caption": "A cup.", "objects": []}
        record["objects"] = [{"name": "cup", "bbox": [10, 10, 110, 110]}]
        line = bad.get(number, record)
        lines.append(line if isinstance(line, str) else json.dumps({**record, **line}))
    (folder / "scenes.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "scenes.jsonl"


ZERO_BOX = {"objects": [{"name": "cup", "bbox": [10, 10, 5, 5]}]}


@pytest.mark.parametrize("num_proc", [None, 2])
def test_the_first_bad_record_is_the_one_reported(tmp_path, num_proc, monkeypatch):
    """Finding 8: a bad line found while reading ids (malformed JSON on line 5) was reported before an earlier one
    found while making the scene (a zero-area box on line 2), and a bad line of the train split before an earlier
    one of another split. With two processes, the ids are read by both, a few lines each."""
    from lgt.builder import split_of
    from lgt.errors import InputError
    from lgt.sources import jsonl

    monkeypatch.setattr(jsonl, "PIECE_BYTES", 300)

    early = _scenes_file(tmp_path, {2: ZERO_BOX, 5: '{"image_id": "img-5", oops'})
    with pytest.raises(InputError) as raised:
        build(source=f"jsonl:{early}", output=str(tmp_path / "out"), configs=("scenes",), num_proc=num_proc)
    assert raised.value.record == "line 2" and "zero-area box" in raised.value.problem

    splits = {number: split_of(f"img-{number}", (0.8, 0.1, 0.1)) for number in range(1, 41)}
    held_out = min(n for n, split in splits.items() if split != "train")
    trained = min(n for n, split in splits.items() if split == "train" and n > held_out)
    across = _scenes_file(tmp_path, {held_out: ZERO_BOX, trained: ZERO_BOX}, count=40)
    with pytest.raises(InputError) as raised:
        build(source=f"jsonl:{across}", output=str(tmp_path / "out"), configs=("scenes",), num_proc=num_proc)
    assert raised.value.record == f"line {held_out}"
    assert not (tmp_path / "out").exists()


def test_a_build_of_referenced_images_reads_each_record_once(tmp_path, monkeypatch):
    """`--images path` keeps the sources' sizes (its config holds max_pixels 0, not the default): a child config
    looked for its parent under the settings it was given rather than those it holds, missed the prepared scenes and
    read and checked the whole source a second time."""
    from lgt.sources.jsonl import JsonlSource

    read = []
    scene = JsonlSource.scene
    monkeypatch.setattr(JsonlSource, "scene", lambda self, payload: read.append(payload) or scene(self, payload))
    path = _scenes_file(tmp_path, {})
    info = build(source=f"jsonl:{path}", output=str(tmp_path / "out"), configs=("mcq_stage1",), images="path")
    assert len(read) == 12 and sum(info["rows"]["mcq_stage1"].values()) > 0


def test_the_first_pass_hands_workers_where_each_line_is_not_its_text(tmp_path):
    """The survey's scratch file holds each entry's payload until a worker makes its scene: a line's place in the
    file, not its text (a COCO-scale source would be copied to the scratch disk whole). The worker reads back exactly
    the text the first pass read, whatever the line endings, a byte-order mark or blank lines before it."""
    import pickle

    from lgt.sources.jsonl import JsonlSource, Line, json_lines, read_line

    records = [{"image_id": f"img-{n}", "caption": "Un café, déjà vu. " * n} for n in range(1, 5)]
    text = (
        "\ufeff"
        + json.dumps(records[0])
        + "\r\n\n"
        + "\n".join(json.dumps(r, ensure_ascii=False) for r in records[1:])
    )
    path = tmp_path / "scenes.jsonl"
    path.write_bytes(text.encode("utf-8"))
    source = JsonlSource(str(path))
    entries = list(source.entries())
    assert [entry.image_id for entry in entries] == [r["image_id"] for r in records]
    lines = dict(json_lines(str(path)))
    for entry in entries:
        assert type(entry.payload) is tuple and len(pickle.dumps(entry.payload)) < 32  # a plain tuple: no class
        assert read_line(str(path), entry.payload) == lines[Line(*entry.payload).number]
    assert [Line(*entry.payload).number for entry in entries] == [1, 3, 4, 5]
    assert json.loads(read_line(str(path), entries[0].payload)) == records[0]  # the byte-order mark is not read


def test_processes_reading_a_piece_of_the_file_each_find_what_one_process_finds(tmp_path, monkeypatch):
    """The first pass spreads a large file over the build's processes, a piece each: the entries, their order, line
    numbers and words, and each bad line's error are those of one process reading it all, whatever the byte-order
    mark, line endings, blank lines, non-ASCII text or a last line without its line end."""
    from lgt.sources import jsonl

    def record(n):
        objects = [{"name": f"cup {n % 3}", "bbox": [1, 1, 9, 9], "attributes": ["déjà", n % 2 * "red"]}]
        return json.dumps({"image_id": f"img-{n}", "caption": "Un café. " * (n % 4), "objects": objects})

    bad = {5: b'{"image_id": "img-5", oops', 9: b"\xff\xfe not UTF-8", 12: b'{"image_id": 12}', 17: b"[1, 2]"}
    lines = [bad.get(n, record(n).encode()) for n in range(40)] + [b"", b"  ", b'{"caption": "no id"}']
    raw = b"\xef\xbb\xbf" + b"\r\n".join(lines[:20]) + b"\r\n" + b"\n".join(lines[20:])
    path = tmp_path / "scenes.jsonl"
    path.write_bytes(raw)

    def found(num_proc):
        return [str(e) if isinstance(e, Exception) else e for e in jsonl.JsonlSource(str(path)).entries(num_proc)]

    alone = found(1)
    monkeypatch.setattr(jsonl, "PIECE_BYTES", 100)
    assert len(list(jsonl._pieces(str(path)))) > 10
    assert found(2) == found(1) == alone
    assert [e for e in alone if isinstance(e, str)] == [
        f"{path} [record line {n}]: {problem}"
        for n, problem in [
            (6, "malformed JSON at column 23: Expecting property name enclosed in double quotes"),
            (10, "not UTF-8 text at byte 1"),
            (13, "'image_id' must be text, not 12"),
            (18, "the record must be a JSON object, not [1, 2]"),
        ]
    ]
    assert alone[0].image_id == "img-0" and alone[-1].image_id == "line-43" and len(alone) == 41
