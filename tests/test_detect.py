"""``lgt detect``: caption phrases -> a real (tiny, random) zero-shot detector -> thresholds and NMS -> JSON Lines
that ``lgt build`` reads; its cache (resume after kill -9, free reruns), dry run, shards and bad arguments."""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import write_docci
from datasets import load_dataset
from lgt.build import build
from lgt.cli import main
from lgt.detection.boxes import RawDetection, iou, objects_from
from lgt.detection.command import shard_of
from lgt.detection.phrases import Phrase, rule_phrases, tagged_chunks
from lgt.generation.backend import folder_fingerprint
from lgt.scene import SceneObject

IMAGES = 12


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """The tiny detectors and tagger (the tests that run a model skip without torch and transformers)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tiny_models import build_tiny_grounding_dino, build_tiny_owlv2, build_tiny_pos_tagger

    root = tmp_path_factory.mktemp("detectors")
    return {
        "grounding-dino": build_tiny_grounding_dino(root / "tiny-grounding-dino"),
        "owlv2": build_tiny_owlv2(root / "tiny-owlv2"),
        "tagger": build_tiny_pos_tagger(root / "tiny-tagger"),
    }


@pytest.fixture(scope="session")
def docci(tmp_path_factory):
    return write_docci(tmp_path_factory.mktemp("docci") / "docci", count=IMAGES)


def _detect(docci, model, output, cache, *extra):
    return main(["detect", f"docci:{docci}", "--detector", f"transformers:{model}", "--output", str(output),
                 "--cache", str(cache), *extra])  # fmt: skip


def _rows(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_detected_scenes_pass_the_build_and_a_rerun_is_free(docci, models, tmp_path, capsys):
    model, output, cache = models["grounding-dino"], docci / "gd.jsonl", tmp_path / "detections.sqlite"
    assert _detect(docci, model, output, cache) == 0
    assert f"{IMAGES} of {IMAGES} passes run through the model, 0 read from the cache" in capsys.readouterr().out
    assert _detect(docci, model, docci / "bf16.jsonl", cache, "--dtype", "bfloat16", "--dry-run") == 0
    assert f"{IMAGES} detector passes, 0 cached" in capsys.readouterr().out  # another dtype, other detections
    captions = {json.loads(line)["description"] for line in (docci / "docci_descriptions.jsonlines").open()}
    rows = _rows(output)
    assert len(rows) == IMAGES and {row["caption"] for row in rows} == captions
    for row in rows:
        assert row["detector"] == {
            "model": "tiny-grounding-dino",
            "revision": folder_fingerprint(model),
            "box_threshold": 0.3,
            "nms_iou": 0.5,
            "phrases": "rules@1",
            "source": "docci:docci",
        }
        assert row["image_id"].startswith(("docci-train-", "docci-test-")) and row["license"] == "CC BY 4.0"
        assert (docci / row["image"]).is_file() and not os.path.isabs(row["image"])
        phrases = {p.query: p for p in rule_phrases(row["caption"])}
        assert [o["id"] for o in row["objects"]] == list(range(len(row["objects"])))
        for obj in row["objects"]:
            found = phrases[obj["phrase"]]
            assert (obj["name"], obj["attributes"]) == (found.name, list(found.attributes))
            assert 0.3 <= obj["score"] <= 1
            x0, y0, x1, y1 = obj["bbox"]
            assert 0 <= x0 < x1 <= row["width"] and 0 <= y0 < y1 <= row["height"]
        for i, a in enumerate(row["objects"]):  # NMS held: one box per object among names of one head noun
            for b in row["objects"][i + 1 :]:
                same_head = a["name"].split()[-1] == b["name"].split()[-1]
                assert not (same_head and iou(a["bbox"], b["bbox"]) >= 0.5)
    assert sum(len(row["objects"]) for row in rows) > IMAGES

    info = build(source=f"jsonl:{output}", configs=("scenes", "mcq_stage1"), output=str(tmp_path / "lgt"))
    assert info["source"]["detection"] == [{**rows[0]["detector"], "rows": IMAGES}]
    scenes = load_dataset(str(tmp_path / "lgt"), "scenes").remove_columns("image")
    built = {row["image_id"]: row for split in scenes.values() for row in split}
    assert {i: len(r["objects"]) for i, r in built.items()} == {r["image_id"]: len(r["objects"]) for r in rows}
    card = (tmp_path / "lgt" / "README.md").read_text()
    grounding = card.split("## Grounding", 1)[1].split("\n## ", 1)[0]
    assert f"`tiny-grounding-dino@{folder_fingerprint(model)[:12]}` on `docci:docci` ({IMAGES} images)" in grounding
    assert "boxes scoring at least 0.3" in grounding and "below 0.5" in grounding
    with_rule, without = (int(n.replace(",", "")) for n in grounding.split("| all | ")[1].split(" |")[:2])
    questions = sum(len(split) for split in load_dataset(str(tmp_path / "lgt"), "mcq_stage1").values())
    assert 0 < with_rule <= without and questions > 0

    before = output.read_bytes()
    assert _detect(docci, model, output, cache) == 0
    captured = capsys.readouterr()
    assert f"0 of {IMAGES} passes run through the model, {IMAGES} read from the cache" in captured.out
    assert "loaded on" not in captured.err and output.read_bytes() == before


def _cached(cache: Path) -> int:
    if not cache.exists():
        return 0
    with sqlite3.connect(cache) as db:
        try:
            return db.execute("SELECT COUNT(*) FROM generations").fetchone()[0]
        except sqlite3.OperationalError:  # the table is not created yet
            return 0


@pytest.mark.slow  # two runs of the console script, each importing torch
def test_a_killed_run_resumes_without_redoing_finished_images(docci, models, tmp_path):
    lgt = shutil.which("lgt", path=os.path.dirname(sys.executable))
    model, output, cache = models["grounding-dino"], tmp_path / "out" / "scenes.jsonl", tmp_path / "d.sqlite"
    output.parent.mkdir()
    output.write_text("the previous output\n")
    args = [lgt, "detect", f"docci:{docci}", "--detector", f"transformers:{model}", "--batch-size", "1", "-q"]
    run = subprocess.Popen([*args, "--output", str(output), "--cache", str(cache)], stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while _cached(cache) < 3 and run.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert run.poll() is None, "the run ended before it could be killed"
    run.send_signal(signal.SIGKILL)
    run.wait()
    done = _cached(cache)
    assert 3 <= done < IMAGES and output.read_text() == "the previous output\n"

    resumed = subprocess.run([*args, "--output", str(output), "--cache", str(cache)], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    ran = f"{IMAGES - done} of {IMAGES} passes run through the model, {done} read from the cache"
    assert ran in resumed.stdout
    fresh = tmp_path / "out" / "fresh.jsonl"
    assert _detect(docci, model, fresh, tmp_path / "fresh.sqlite", "--batch-size", "1", "-q") == 0  # uninterrupted
    assert [r["objects"] for r in _rows(output)] == [r["objects"] for r in _rows(fresh)]


def _box(x0, y0, x1, y1):
    return (float(x0), float(y0), float(x1), float(y1))


PHRASES = [
    Phrase("brown dog", "dog", ("brown",)),
    Phrase("black dog", "dog", ("black",)),
    Phrase("ceramic mug", "ceramic mug"),
    Phrase("mug", "mug"),
    Phrase("table", "table"),
]
A, A_SHIFTED, B = _box(0, 0, 100, 100), _box(10, 0, 110, 100), _box(300, 300, 400, 400)
# (raw detections, expected (name, attributes, score, box, phrase) of each object, in id order)
NMS_TABLE = {
    "below the threshold is dropped": (
        [RawDetection(4, 0.29, A), RawDetection(4, 0.3, B)],
        [("table", [], 0.3, B, "table")],
    ),
    "the same phrase found twice keeps the better box": (
        [RawDetection(4, 0.6, A_SHIFTED), RawDetection(4, 0.9, A)],
        [("table", [], 0.9, A, "table")],
    ),
    "names of one head noun are one object": (
        [RawDetection(3, 0.7, A), RawDetection(2, 0.8, A_SHIFTED)],
        [("ceramic mug", [], 0.8, A_SHIFTED, "ceramic mug")],
    ),
    "different head nouns in one place are two objects": (
        [RawDetection(4, 0.7, A), RawDetection(3, 0.8, A)],
        [("mug", [], 0.8, A, "mug"), ("table", [], 0.7, A, "table")],
    ),
    "two dogs apart keep their colours": (
        [RawDetection(0, 0.7, A), RawDetection(1, 0.9, B), RawDetection(0, 0.4, B)],
        [("dog", ["black"], 0.9, B, "black dog"), ("dog", ["brown"], 0.7, A, "brown dog")],
    ),
    "an overlap just under the IoU stays": (  # IoU of A and (50, 0, 150, 100) is 1/3
        [RawDetection(4, 0.9, A), RawDetection(4, 0.8, _box(50, 0, 150, 100))],
        [("table", [], 0.9, A, "table"), ("table", [], 0.8, _box(50, 0, 150, 100), "table")],
    ),
    "a tie keeps the earlier query": (
        [RawDetection(1, 0.8, A), RawDetection(0, 0.8, A)],
        [("dog", ["brown"], 0.8, A, "brown dog")],
    ),
}


@pytest.mark.parametrize("raw, expected", NMS_TABLE.values(), ids=NMS_TABLE)
def test_thresholds_and_nms(raw, expected):
    found = objects_from(raw, PHRASES, box_threshold=0.3, nms_iou=1 / 3 + 0.01)
    assert [(o.name, o.attributes, o.score, tuple(o.bbox), q) for o, q in found] == expected
    assert [o.id for o, _ in found] == list(range(len(expected)))


def test_hand_written_detections_in_the_cache_become_the_objects(docci, models, tmp_path, capsys):
    """The model never runs: its output for the first image is written into the cache by hand."""
    from lgt.detection import command
    from lgt.detection.detector import Detector
    from lgt.generation import GenerationCache, ModelSpec
    from lgt.sources import open_source

    model, cache = models["grounding-dino"], tmp_path / "d.sqlite"
    spec = ModelSpec.parse(f"transformers:{model}")
    source = open_source(f"docci:{docci}")
    scene = source.scene(next(iter(source.entries())).payload)
    phrases = rule_phrases(scene.caption)
    planned = command.Planned(scene, phrases)
    command._plan(planned, Detector(spec, folder_fingerprint(model)))
    assert planned.passes == [list(range(len(phrases)))]
    heads = {}
    for index, p in enumerate(phrases):
        heads.setdefault(p.name.split()[-1], index)
    first, second = list(heads.values())[:2]
    raw = [
        RawDetection(first, 0.9, _box(10, 10, 110, 110)),
        RawDetection(first, 0.85, _box(12, 10, 112, 110)),  # the same object again: suppressed
        RawDetection(first, 0.2, _box(300, 200, 400, 300)),  # below the threshold
        RawDetection(second, 0.6, _box(10, 10, 110, 110)),  # another kind of thing in the same place: kept
    ]
    with GenerationCache(cache) as store:
        store.put_many([(planned.keys[0], "hand-written", "detect@1", command._response(raw))])
    output = tmp_path / "one.jsonl"
    assert _detect(docci, model, output, cache, "--num-images", "1", "--image-root", str(docci)) == 0
    captured = capsys.readouterr()
    assert "0 of 1 passes run through the model" in captured.out and "loaded on" not in captured.err
    (row,) = _rows(output)
    assert [(o["phrase"], o["score"], o["bbox"]) for o in row["objects"]] == [
        (phrases[first].query, 0.9, [10, 10, 110, 110]),
        (phrases[second].query, 0.6, [10, 10, 110, 110]),
    ]
    assert row["image"] == os.path.relpath(scene.image, tmp_path)
    assert f"--image-root {docci / 'images'}" in captured.out  # the images lie outside the output's folder


def test_dry_run_counts_images_queries_and_passes(docci, models, tmp_path, capsys):
    output, cache = tmp_path / "out.jsonl", tmp_path / "d.sqlite"
    assert _detect(docci, models["grounding-dino"], output, cache, "--dry-run", "--image-root", str(docci)) == 0
    queries = sum(
        len(rule_phrases(json.loads(line)["description"])) for line in (docci / "docci_descriptions.jsonlines").open()
    )
    expected = f"dry run: {IMAGES} images, {queries} queries"
    out = capsys.readouterr().out
    assert out.startswith(expected) and f"{IMAGES} detector passes, 0 cached, {IMAGES} to run" in out
    assert not output.exists()


def test_grounding_dino_passes_fit_its_prompt_length(models):
    from lgt.detection.detector import Detector
    from lgt.generation import ModelSpec

    detector = Detector(ModelSpec.parse(f"transformers:{models['grounding-dino']}"), "")
    queries = [
        f"{colour} {thing}"
        for colour in ("red", "blue", "green", "white")
        for thing in ("dog", "car", "table", "chair", "plate", "boat")
    ]
    passes = detector.passes(queries)
    assert len(passes) > 1 and [i for p in passes for i in p] == list(range(len(queries)))
    for indices in passes:
        assert detector._tokens([queries[i] for i in indices]) <= detector.max_text_len == 64


def test_shards_split_the_images_as_the_build_hashes_ids(docci, models, tmp_path, capsys):
    ids = [
        f"docci-{r['split']}-{r['example_id']}"
        for r in map(json.loads, (docci / "docci_descriptions.jsonlines").open())
    ]
    for count in (1, 2, 3, 7):
        assert sorted(i for index in range(count) for i in ids if shard_of(i, index, count)) == sorted(ids)
    assert (
        _detect(docci, models["grounding-dino"], tmp_path / "o.jsonl", tmp_path / "d", "--shard", "1/3", "--dry-run")
        == 0
    )
    assert capsys.readouterr().out.startswith(f"dry run: {sum(shard_of(i, 1, 3) for i in ids)} images,")


BAD_ARGUMENTS = {
    "not transformers": (["--detector", "vllm:x"], 2, "--detector 'vllm:x': lgt detect runs its models through"),
    "a hub model offline": (["--detector", "transformers:org/absent"], 1, "cannot look up detector org/absent"),
    "a shard out of range": (["--shard", "3/3"], 2, "must be I/N with 0 <= I < N"),
    "threshold 0": (["--box-threshold", "0"], 2, "--box-threshold must be above 0 and at most 1, not 0.0"),
    "not a detector": ([], 2, "is a 'bert' model; lgt detect runs grounding-dino"),
}


@pytest.mark.parametrize("extra, status, message", BAD_ARGUMENTS.values(), ids=BAD_ARGUMENTS)
def test_bad_arguments_are_one_line(docci, models, tmp_path, capsys, extra, status, message):
    args = [
        "detect",
        f"docci:{docci}",
        "--detector",
        f"transformers:{models['tagger']}",
        "--output",
        str(tmp_path / "o"),
    ]
    try:
        code = main([*args, "--cache", str(tmp_path / "d"), *extra])
    except SystemExit as usage_error:  # argparse's own: the usage, then one error line
        code = usage_error.code
    assert code == status
    errors = [line for line in capsys.readouterr().err.splitlines() if "error: " in line]
    assert len(errors) == 1 and message in errors[0]
    assert not (tmp_path / "o").exists()


def test_builtin_scenes_cannot_be_detected(models, tmp_path, capsys):
    assert main(["detect", "scenes", "--detector", f"transformers:{models['owlv2']}", "--output", "o"]) == 2
    assert "lgt detect reads image files with captions: use coco:PATH" in capsys.readouterr().err


def test_owlv2_boxes_are_transformers_own(docci, models, tmp_path):
    """The box geometry of both families is that of transformers' own post-processing (OWLv2 pads to a square)."""
    import torch
    from lgt.detection.detector import Detector
    from lgt.generation import ModelSpec
    from PIL import Image

    image = Image.open(sorted((docci / "images").iterdir())[0]).convert("RGB")
    queries = ["dog", "red car", "table"]
    for family in ("owlv2", "grounding-dino"):
        detector = Detector(ModelSpec.parse(f"transformers:{models[family]}"), "")
        detector.load()
        (found,) = detector.detect([(image, queries)])
        assert found and {d.query for d in found} <= {0, 1, 2}
        processor = detector.processor
        with torch.no_grad():
            if family == "owlv2":
                inputs = processor(images=[image], text=[queries], truncation=True, return_tensors="pt")
                side = max(image.size)
                expected = processor.post_process_grounded_object_detection(
                    detector.model(**inputs), threshold=0.0, target_sizes=[(side, side)]
                )[0]["boxes"]
            else:
                inputs = processor(images=[image], text=["dog. red car. table."], return_tensors="pt")
                expected = processor.post_process_grounded_object_detection(
                    detector.model(**inputs), threshold=0.0, target_sizes=[image.size[::-1]]
                )[0]["boxes"]
        clipped = expected.clamp(min=0)
        clipped[:, 0::2] = clipped[:, 0::2].clamp(max=image.width)
        clipped[:, 1::2] = clipped[:, 1::2].clamp(max=image.height)
        for detection in found:  # each box is one of transformers', up to the rounding to 0.01 pixel
            assert (
                min(max(abs(a - b) for a, b in zip(detection.box, box, strict=True)) for box in clipped.tolist())
                < 0.011
            ), family


def test_a_tagger_chunks_its_tags_into_the_queries_in_bfloat16(docci, models, tmp_path, capsys):
    output = tmp_path / "tagged.jsonl"
    extra = ("--phrases", f"transformers:{models['tagger']}", "--num-images", "3", "--image-root", str(docci))
    assert _detect(docci, models["grounding-dino"], output, tmp_path / "d", *extra, "--dtype", "bfloat16") == 0
    assert "loaded on cpu in torch.bfloat16" in capsys.readouterr().err
    rows = _rows(output)
    assert len(rows) == 3 and any(row["objects"] for row in rows)
    for row in rows:
        assert row["detector"]["phrases"] == f"tagger:tiny-tagger@{folder_fingerprint(models['tagger'])[:12]}"
        words = set(row["caption"].lower().replace(".", " ").split())
        for obj in row["objects"]:
            assert set(obj["phrase"].split()[:-1]) <= words


TAGGED = {
    "adjectives then nouns": (
        [("a", "DET"), ("large", "ADJ"), ("wooden", "ADJ"), ("table", "NOUN")],
        [["large", "wooden", "table"]],
    ),
    "a trailing adjective is cut": ([("the", "DT"), ("sky", "NN"), ("blue", "JJ"), (".", ".")], [["sky"]]),
    "no noun, no phrase": ([("very", "ADV"), ("big", "ADJ"), ("and", "CCONJ")], []),
    "grouped words split": ([("stop sign", "NOUN"), ("on", "ADP"), ("poles", "NNS")], [["stop", "sign"], ["poles"]]),
}


@pytest.mark.parametrize("tagged, chunks", TAGGED.values(), ids=TAGGED)
def test_tagged_chunks(tagged, chunks):
    assert tagged_chunks(tagged) == chunks


PHRASE_TABLE = {
    "colour words become attributes": ("Two brown dogs sleep.", [("brown dog", "dog", ("brown",))]),
    "the picture is not an object": (
        "A close-up view of a mug in the top left corner of the image.",
        [("mug", "mug", ())],
    ),
    "a verb after a singular subject ends the phrase": (
        "A bus stops near a tall tree.",
        [("bus", "bus", ()), ("tall tree", "tall tree", ())],
    ),
    "a participle after a noun ends it, before one it modifies": (
        "A man holding a sleeping cat and a striped umbrella.",
        [("man", "man", ()), ("sleeping cat", "sleeping cat", ()), ("striped umbrella", "striped umbrella", ())],
    ),
    "each phrase once, in order": ("A cup. The cup. Of cups.", [("cup", "cup", ())]),
    "prepositions open phrases too": (
        "Surrounded by tall grass with leaves.",
        [("tall grass", "tall grass", ()), ("leaf", "leaf", ())],
    ),
}


@pytest.mark.parametrize("caption, expected", PHRASE_TABLE.values(), ids=PHRASE_TABLE)
def test_rule_phrases(caption, expected):
    assert [(p.query, p.name, p.attributes) for p in rule_phrases(caption)] == expected


def _scene(objects, caption):
    from lgt.scene import Scene

    return Scene("s", "", 640, 480, caption, objects, "jsonl")


def _draft_topics(scene, vocab, rounds=200):
    import random

    from lgt.synthesis import stage1

    topics = {"grounded": set(), "answers": {}}
    for seed in range(rounds):
        for draft in stage1.generate(scene, vocab, random.Random(seed)):
            topics["grounded"].update(o.name for o in draft.grounding)
            topics["answers"].setdefault(draft.template, set()).add(draft.correct)
            if draft.template == "existence":
                topics["answers"].setdefault("existence options", set()).update(draft.distractors)
    return topics


def test_stage1_asks_only_what_detector_scores_make_safe():
    from lgt.synthesis import stage1

    def objects(dog_score):
        return [
            SceneObject(0, "dog", [20, 20, 200, 200], ["brown"], 0.9),
            SceneObject(1, "dog", [400, 250, 600, 450], ["black"], dog_score),
            SceneObject(2, "cat", [300, 20, 420, 140], [], 0.8),
            SceneObject(3, "car", [20, 300, 220, 460], ["red"], 0.95),
            SceneObject(4, "mug", [450, 20, 560, 120], [], 0.9),
            SceneObject(5, "ceramic mug", [250, 300, 350, 400], [], 0.9),
            SceneObject(6, "chair", [250, 180, 330, 260], [], 0.85),
        ]

    caption = "A brown dog and a black dog, a cat and a red car near a tree. A mug, a ceramic mug and a chair."
    vocab = stage1.Vocabulary(["bird", "boat", "car", "cat", "ceramic mug", "dog", "mug", "sofa", "tree"], [], [])
    unsure = _draft_topics(_scene(objects(0.4), caption), vocab)
    assert unsure["grounded"] <= {"cat", "car", "chair"} and "car" in unsure["grounded"]
    assert "2" not in unsure["answers"].get("count", set())  # the dogs are never counted
    absent = unsure["answers"]["absence"] | unsure["answers"]["existence options"]
    assert absent <= {"bird", "boat", "sofa"}  # the caption's tree is not "absent", a miss is not an absence
    sure = _draft_topics(_scene(objects(0.9), caption), vocab)
    assert "dog" in sure["grounded"] and "2" in sure["answers"]["count"]
    assert not {"mug", "ceramic mug"} & sure["grounded"]  # one head noun named two ways
    human = _draft_topics(
        _scene([SceneObject(o.id, o.name, o.bbox, o.attributes) for o in objects(0.4)], caption), vocab
    )
    assert {"dog", "mug"} <= human["grounded"] and "tree" in human["answers"]["absence"] | human["answers"][
        "existence options"
    ]


SINGULARS = {
    **{"dogs": "dog", "boxes": "box", "berries": "berry", "people": "person", "women": "woman", "buses": "bus"},
    **{"houses": "house", "glasses": "glasses", "grass": "grass", "leaves": "leaf", "sheep": "sheep", "bus": "bus"},
}


def test_singular_noun():
    from lgt.synthesis.grammar import plural, singular_noun

    assert {word: singular_noun(word) for word in SINGULARS} == SINGULARS
    for word in ("dog", "box", "berry", "person", "woman", "bus", "house", "leaf", "church", "knife"):
        assert singular_noun(plural(word)) == word


def test_an_undecodable_image_stops_the_run_or_is_skipped(models, tmp_path, capsys):
    docci = write_docci(tmp_path / "docci", count=3)
    broken = sorted((docci / "images").iterdir())[1]
    broken.write_bytes(broken.read_bytes()[:2000])  # the header reads, the pixels do not
    output, cache = tmp_path / "o.jsonl", tmp_path / "d"
    assert _detect(docci, models["grounding-dino"], output, cache) == 2
    (error,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("lgt: error:")]
    assert f"{broken} [record docci-" in error and "image cannot be decoded" in error and not output.exists()
    assert _detect(docci, models["grounding-dino"], output, cache, "--on-error", "skip") == 0
    assert "skipped 1 bad record(s)" in capsys.readouterr().out and len(_rows(output)) == 2
    (reject,) = _rows(f"{output}.rejects.jsonl")
    assert reject["file"] == str(broken) and "cannot be decoded" in reject["problem"]


def test_a_malformed_detector_field_is_a_bad_record(tmp_path):
    from conftest import write_image
    from lgt.errors import InputError

    write_image(tmp_path / "a.png")
    row = {"image": "a.png", "caption": "A dog.", "objects": [], "detector": {"model": 3}}
    (tmp_path / "s.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(InputError, match=r"line 1\]: detector: 'model' must be text, not 3"):
        build(source=f"jsonl:{tmp_path / 's.jsonl'}", configs=("scenes",), output=str(tmp_path / "out"))


def test_a_json_lines_file_without_objects_and_coco_captions_are_sources(docci, models, coco_root, tmp_path, capsys):
    records = [json.loads(line) for line in (docci / "docci_descriptions.jsonlines").open()][:2]
    (tmp_path / "images").mkdir()
    for record in records:
        shutil.copy(docci / "images" / record["image_file"], tmp_path / "images" / record["image_file"])
    lines = [{"image": f"images/{r['image_file']}", "caption": r["description"]} for r in records]
    (tmp_path / "captions.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    owl, cache = f"transformers:{models['owlv2']}", str(tmp_path / "d")
    args = ["detect", f"jsonl:{tmp_path / 'captions.jsonl'}", "--detector", owl, "--cache", cache]
    assert main([*args, "--output", str(tmp_path / "boxed.jsonl")]) == 0
    rows = _rows(tmp_path / "boxed.jsonl")
    assert [row["image_id"] for row in rows] == ["line-1", "line-2"] and all(row["objects"] for row in rows)
    assert [row["image"] for row in rows] == [line["image"] for line in lines]
    coco = ["detect", f"coco:{coco_root}", "--detector", owl, "--cache", cache, "--num-images", "2"]
    assert main([*coco, "--output", str(tmp_path / "coco.jsonl")]) == 0
    assert f"--image-root {os.path.realpath(coco_root)}" in capsys.readouterr().out
    for row in _rows(tmp_path / "coco.jsonl"):  # COCO's own boxes are replaced by the detector's
        assert row["image_id"].startswith("coco-") and {o["phrase"] for o in row["objects"]} <= {
            p.query for p in rule_phrases(row["caption"])
        }
