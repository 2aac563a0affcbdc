"""Decontamination against real benchmark items: reworded questions and re-encoded images caught, others kept."""

import base64
import csv
import io
import json

import pytest
from conftest import SHARED_DATA
from lgt.decontam import Decontaminator, decontamination_section, grams, image_hash, jaccard, question_stem
from PIL import Image, ImageDraw

MMBENCH = SHARED_DATA / "mmbench_samples"
MMSTAR = SHARED_DATA / "mmstar_text" / "mmstar_val_text_with_llava_next_34b_predictions.jsonl"
MMLU = SHARED_DATA / "mmlu_test_sample" / "mmlu_test_10_per_subject.jsonl"
COCO_IMAGES = SHARED_DATA / "coco_mini_ccby" / "images"


def _need(*paths):
    for path in paths:
        if not path.exists():
            pytest.skip(f"shared benchmark sample not found at {path}")


@pytest.fixture(scope="module")
def index():
    _need(MMBENCH / "items.json", MMSTAR, MMLU)
    return Decontaminator.from_benchmarks([MMBENCH / "items.json", MMSTAR, MMLU])


def _jpeg(image: Image.Image, quality=90) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def test_the_index_holds_every_benchmark_question_and_image(index):
    items = json.loads((MMBENCH / "items.json").read_text())
    assert index.benchmarks["items"] == {"questions": len(items), "images": len(items)}
    assert index.benchmarks[MMSTAR.stem]["questions"] == 1500 and "images" not in index.benchmarks[MMSTAR.stem]
    assert index.benchmarks[MMLU.stem]["questions"] == 570


@pytest.mark.parametrize(
    "question",
    [
        "What is the main feature in the background of the image?",  # MMStar, verbatim
        "what is the main feature in the background of this image",  # MMStar, case, punctuation, one word
        "What seems to be the theme of the picture?",  # MMStar
        "What kind of scene is depicted in this image?",  # MMStar: "type" -> "kind"
        "How many people are visible in the picture?",  # MMStar
        "What is the correct Python code to generate the content of the image?",  # MMBench
        "Which one is the correct caption for this image?",  # MMBench
        "以下哪个是这张图片的正确标题?",  # MMBench-CN, full-width punctuation changed
        "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over the field Q.",  # MMLU
        "Question: Find m \\angle 3.",  # MMStar (MathVista), without its hint boilerplate
    ],
)
def test_a_lightly_reworded_benchmark_question_is_caught(index, question):
    assert index.is_contaminated(question, None) == "question"


@pytest.mark.parametrize(
    "question",
    [
        "How many stars are there in the image?",  # lgt's stage-1 templates
        "Where is the red circle located with respect to the blue square?",
        "Which of these objects can be seen in the image?",
        "By the area of their bounding boxes, how big is the hexagon compared with the triangle?",
        "What colour is the umbrella held by the woman on the left?",
        "图中的建筑有几层?",
        "",
    ],
)
def test_an_unrelated_question_is_not(index, question):
    assert index.is_contaminated(question, None) is None


def test_the_threshold_is_a_jaccard_of_character_grams():
    a, b = grams("How many stars are there in the image?"), grams("How many bananas are there in the image?")
    assert 0.5 < jaccard(a, b) < 0.65, "a template shared with another object stays under the threshold"
    assert grams("What is this?") == grams("what is this") and grams("") == frozenset()
    assert question_stem("Hint: Please answer.\nQuestion: Find x.\nChoices:\n(A) 1\n(B) 2") == "Find x."
    assert question_stem("Which is red?\nOptions: A: cup, B: pen") == "Which is red?"


def test_the_search_finds_what_brute_force_finds(index):
    """Prefix filtering is exact: every question the index catches is one a full scan catches, and no other."""
    rows = [json.loads(line) for line in MMSTAR.read_text().splitlines()[:200]]
    probes = [" ".join(row["question"].split()[1:]) for row in rows] + [row["question"] + " now" for row in rows]
    texts = [item["question"] for item in json.loads((MMBENCH / "items.json").read_text())]
    texts += [json.loads(line)["question"] for path in (MMSTAR, MMLU) for line in path.read_text().splitlines()]
    benchmark = [grams(text) for text in texts]
    for probe in probes:
        shingles = grams(probe)
        brute = max((jaccard(shingles, other) for other in benchmark), default=0.0)
        found = index.question_match(probe)
        assert (found > 0) == (brute >= index.question_threshold), probe
        if found:
            assert found == pytest.approx(brute)


def test_a_benchmark_image_re_encoded_or_resized_is_caught_and_others_are_not(index):
    _need(COCO_IMAGES)
    for path in sorted((MMBENCH / "images").rglob("*.jpg"))[:12]:
        image = Image.open(path)
        half = image.resize((image.width // 2, image.height // 2))
        for variant in (_jpeg(image, quality=60), _jpeg(half), _png(image.convert("L")), path.read_bytes()):
            assert index.is_contaminated("What is shown here?", variant) == "image", path
    for path in sorted(COCO_IMAGES.rglob("*.jpg")):
        assert index.is_contaminated("What is shown here?", path.read_bytes()) is None, path
    synthetic = Image.new("RGB", (416, 512), (220, 230, 240))
    ImageDraw.Draw(synthetic).rectangle((20, 390, 130, 500), fill=(255, 140, 0))
    assert index.is_contaminated("What is shown here?", _png(synthetic)) is None


def test_counts_and_the_card_section(index):
    checker = Decontaminator.from_benchmarks([MMBENCH / "items.json", MMSTAR])
    image = (MMBENCH / "images" / "MMBench" / "1.jpg").read_bytes()
    verdicts = [
        checker.is_contaminated("What seems to be the theme of the image?", image),  # both: the question is named
        checker.is_contaminated("How many stars are there?", image),
        checker.is_contaminated("How many stars are there?", None),
        checker.is_contaminated("How many stars are there?", b""),
    ]
    assert verdicts == ["question", "image", None, None]
    report = checker.report()
    assert report["checked"] == 4 and report["dropped"] == {"question": 1, "image": 1}
    section = decontamination_section(report)
    assert "| items | 54 | 54 |" in section and f"| {MMSTAR.stem} | 1,500 | 0 |" in section
    assert "| 4 | 1 | 1 | 2 |" in section
    assert "Jaccard of character 5-grams >= 0.65" in section and "pHash within 6 bits" in section


def test_mmbench_tsv_with_base64_images_and_rows_referring_to_another_rows_image(tmp_path):
    _need(MMBENCH / "items.json")
    items = [item for item in json.loads((MMBENCH / "items.json").read_text()) if item["benchmark"] == "MMBench"]
    first_row_of: dict[str, str] = {}  # as VLMEvalKit's TSVs: a repeated image is the index of its first row
    with (tmp_path / "mmbench_dev_en.tsv").open("w", newline="") as f:
        writer = csv.writer(f, delimiter="\t")  # as pandas' to_csv(sep="\t") writes them: quoted where needed
        writer.writerow(["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "image"])
        for number, item in enumerate(items):
            if item["image"] in first_row_of:
                image = first_row_of[item["image"]]
            else:
                image = base64.b64encode((MMBENCH / item["image"]).read_bytes()).decode()
                first_row_of[item["image"]] = str(number)
            options = [item["options"].get(letter, "") for letter in "ABCD"]
            writer.writerow([number, item["question"], "", *options, item["answer"], "x", image])
    assert len(first_row_of) < len(items), "some rows refer to another row's image"
    checker = Decontaminator.from_benchmarks([tmp_path / "mmbench_dev_en.tsv"])
    assert checker.benchmarks["mmbench_dev_en"] == {"questions": len(items), "images": len(items)}
    resized = Image.open(MMBENCH / items[-1]["image"]).resize((200, 150))
    assert checker.is_contaminated("Something else entirely?", _jpeg(resized)) == "image"


def test_parquet_json_and_folders(tmp_path):
    _need(MMBENCH / "items.json")
    import pyarrow as pa
    import pyarrow.parquet as pq

    images = sorted((MMBENCH / "images" / "CCBench").glob("*.jpg"))
    question = "Which building is shown?\nOptions: A: Temple of Heaven, B: Great Wall"  # options embedded, as MMStar's
    table = pa.table(
        {"question": [question], "image": [{"bytes": images[0].read_bytes(), "path": images[0].name}]},
    )
    pq.write_table(table, tmp_path / "bench.parquet")
    (tmp_path / "bench.json").write_text(json.dumps({"data": [{"Question": "What animal sleeps on the sofa?"}]}))
    folder = tmp_path / "vstar"
    folder.mkdir()
    (folder / "a.png").write_bytes(_png(Image.open(images[1])))
    (tmp_path / "bad.jsonl").write_text(json.dumps({"question": "q?", "image": "not base64 !"}) + "\n")
    checker = Decontaminator.from_benchmarks(
        [tmp_path / "bench.parquet", tmp_path / "bench.json", folder, tmp_path / "bad.jsonl"]
    )
    assert checker.benchmarks["bench"] == {"questions": 2, "images": 1}
    assert checker.benchmarks["vstar"] == {"images": 1}
    assert checker.benchmarks["bad"] == {"questions": 1, "unreadable_images": 1}
    assert checker.is_contaminated("which building is shown", None) == "question"
    assert checker.is_contaminated("What animal sleeps on the couch?", None) == "question"
    assert checker.is_contaminated("x", _jpeg(Image.open(images[1]), quality=70)) == "image"
    assert checker.is_contaminated("x", images[0].read_bytes()) == "image"
    assert image_hash(images[0].read_bytes()) != image_hash(images[1].read_bytes())


def test_a_file_with_neither_question_nor_image_is_refused(tmp_path):
    (tmp_path / "x.jsonl").write_text(json.dumps({"text": "hello"}) + "\n")
    with pytest.raises(ValueError, match=r"x\.jsonl \[line 1\]: benchmark records need a 'question' or an 'image'"):
        Decontaminator.from_benchmarks([tmp_path / "x.jsonl"])
    (tmp_path / "empty.json").write_text("{}")
    with pytest.raises(ValueError, match="no benchmark records"):
        Decontaminator.from_benchmarks([tmp_path / "empty.json"])
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(ValueError, match="not a benchmark file"):
        Decontaminator.from_benchmarks([tmp_path / "x.txt"])


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("shape.json", "[1, 2]", "shape.json [record 1]: a record must be an object, not int"),
        ("text.json", '"just text"', "text.json: a JSON str, where a list of records (or an object holding one)"),
        ("broken.json", '[{"question": "a?"},\n {"question": ', "broken.json [line 2, column 15]: malformed JSON"),
        ("lines.jsonl", '{"question": "a?"}\n\n\n{"question": oops}\n', "lines.jsonl [line 4, column 14]: malformed"),
        ("number.jsonl", '{"question": "a?"}\n{"question": 7}\n', "number.jsonl [line 2]: 'question' must be text"),
        ("later.jsonl", '{"question": "a?"}\n{"text": "b"}\n', "later.jsonl [line 2]: benchmark records need a"),
        ("list.jsonl", '{"question": "a?"}\n["a?"]\n', "list.jsonl [line 2]: a record must be an object, not list"),
        ("latin.jsonl", b'{"question": "a?"}\n{"question": "caf\xe9?"}\n', "latin.jsonl [line 2]: not UTF-8 text"),
        ("images.jsonl", '{"image": "not base64 !"}\n', "images.jsonl: no question or image could be indexed"),
        ("missing.jsonl", None, "missing.jsonl: cannot be read (No such file or directory)"),
        ("table.parquet", b"not parquet", "table.parquet: not a parquet file"),
    ],
)
def test_a_bad_benchmark_file_is_one_line_naming_the_file_and_line(tmp_path, name, content, problem):
    """Finding 8: JSON of the wrong shape was a traceback, errors did not name the file, a line number was wrong
    (records counted from 0 without blank lines), and a benchmark that indexed nothing was silently not applied."""
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ValueError) as raised:
        Decontaminator.from_benchmarks([path])
    assert str(raised.value).startswith(f"{tmp_path}/{problem}") and "\n" not in str(raised.value)


def test_benchmark_files_may_start_with_a_byte_order_mark(tmp_path):
    """Finding 8: a UTF-8 BOM (what Excel and Notepad write) was refused."""
    bom = "\ufeff"
    (tmp_path / "a.jsonl").write_text(bom + json.dumps({"question": "What animal sleeps on the sofa?"}) + "\n")
    (tmp_path / "b.json").write_text(bom + json.dumps([{"question": "How many cups are on the table?"}]))
    (tmp_path / "c.tsv").write_text(bom + "index\tquestion\n1\tWhich colour is the car?\n")
    (tmp_path / "d.csv").write_text(bom + "question,answer\nWhere is the red ball?,A\n")
    checker = Decontaminator.from_benchmarks(sorted(tmp_path.iterdir()))
    assert {name: counts["questions"] for name, counts in checker.benchmarks.items()} == dict.fromkeys("abcd", 1)
    assert checker.is_contaminated("Which colour is the car?", None) == "question"


def test_a_folder_without_images_is_refused(tmp_path):
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match=r"bench: no image in this folder"):
        Decontaminator.from_benchmarks([tmp_path / "bench"])


def test_a_bad_benchmark_stops_the_build_with_one_line(tmp_path, capsys):
    from lgt.cli import main

    (tmp_path / "bench.json").write_text('{"data": "not records"}')
    arguments = ["build", "--num-images", "2", "--configs", "scenes,mcq_stage1", "--output", tmp_path / "out", "-q"]
    assert main([*map(str, arguments), "--benchmark", str(tmp_path / "bench.json")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"lgt: error: {tmp_path / 'bench.json'}: no benchmark records in it"
    ]
    assert not (tmp_path / "out").exists()
