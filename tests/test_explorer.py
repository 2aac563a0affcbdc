"""`lgt show`'s page: every config renders with its boxes, gold option, traces, cues and pairs, text is escaped, and
a real headless browser (Debian's chromium through Playwright) loads it without errors and decodes every image."""

import os
import re
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import Dataset, Features, Image, List, Value, load_dataset
from lgt.build import build
from lgt.builder import FEATURES
from lgt.explorer import default_output, write_explorer
from lgt.formats import dpo_row, rl_row, row_style, sft_row, trace_text
from lgt.hub import check_build_folder

HOSTILE_QUESTION = 'Which is it? <script>document.title = "pwned"</script>'
HOSTILE_EXPANSION = ' <img src=x onerror="document.title=1"> let me look at each box again.'

# The issue-8 configs' features as the lead's builder defines them (traces carry no image: the scene has it).
_BOX = List(Value("float32"), length=4)
_MESSAGES = List({"role": Value("string"), "content": List({"type": Value("string"), "text": Value("string")})})
_ROW = {"id": Value("string"), "image_id": Value("string"), "images": List(Image())}
_PROVENANCE = {
    "skill": Value("string"),
    "level": Value("int32"),
    "kind": Value("string"),
    "parents": List(Value("string")),
    "generator": Value("string"),
    "source": Value("string"),
    "license": Value("string"),
}
_STRINGS = ("kind", "short", "cue", "expansion", "text", "predicted", "teacher", "reasoner", "generator", "source")
FORMAT_FEATURES = {
    "mcq_stage2": Features(
        {
            **FEATURES["mcq_stage1"],
            "steps": List({"question": Value("string"), "answer": Value("string")}),
        }
    ),
    "traces_stage1": Features(
        {
            **{k: FEATURES["mcq_stage1"][k] for k in ("id", "image_id", "question", "options", "answer")},
            "mcq_id": Value("string"),
            "skill": Value("string"),
            "level": Value("int32"),
            **{k: Value("string") for k in _STRINGS},
            "correct": Value("bool"),
            "license": Value("string"),
        }
    ),
    "sft_stage1": Features({**_ROW, "messages": _MESSAGES, **_PROVENANCE}),
    "dpo_stage1": Features({**_ROW, "prompt": _MESSAGES, "chosen": _MESSAGES, "rejected": _MESSAGES, **_PROVENANCE}),
    "rl": Features(
        {
            **_ROW,
            "prompt": _MESSAGES,
            "solution": Value("string"),
            "answer": Value("string"),
            "options": List(Value("string")),
            **_PROVENANCE,
        }
    ),
}


def format_fixture(folder, num_images=10, seed=0):
    """A built folder with every config: ``scenes`` and ``mcq_stage1`` from ``lgt.build``; ``mcq_stage2`` and the
    traces hand-made in the row shapes of the issue-8 contract from its train MCQs, and SFT/DPO/RL rows from those
    by ``lgt.formats``. A format fixture until ``lgt build`` makes them all (then: ``build(configs=CONFIGS)``)."""
    build(source="scenes", num_images=num_images, output=str(folder))
    mcqs = pq.read_table(next((folder / "mcq_stage1").glob("train-*.parquet"))).to_pylist()
    stage2, traces, sft, dpo, rl = [], [], [], [], []
    for first, second in zip(mcqs[::2], mcqs[1::2], strict=False):
        if first["image_id"] != second["image_id"]:
            continue
        gold = f"{first['options'][ord(first['answer']) - 65]} / {second['options'][ord(second['answer']) - 65]}"
        stage2.append(
            {
                **first,
                "id": f"s2-{first['id']}",
                "question": f"{HOSTILE_QUESTION} {first['question']} And: {second['question']}",
                "options": [gold, "none / none", "all / all", "some / none"],
                "answer": "A",
                "level": 2,
                "grounding": first["grounding"] + second["grounding"],
                "parents": [first["id"], second["id"]],
                "steps": [
                    {"question": m["question"], "answer": m["options"][ord(m["answer"]) - 65]} for m in (first, second)
                ],
                "generator": "stage2/conjunction@1",
            }
        )
    for mcq in mcqs:
        gold, wrong = mcq["answer"], "ABCD"[("ABCD".index(mcq["answer"]) + 1) % 4]
        style = row_style(seed, mcq["id"])
        made = {}
        for kind, (first, cue, expansion, final) in {
            "O": (gold, "", "", gold),
            "X→O": (wrong, "Wait,", HOSTILE_EXPANSION, gold),
            "X": (wrong, "", "", wrong),
        }.items():
            short = f"I look at the boxes for: {mcq['question']} It is ({first})."
            made[kind] = {
                **{k: mcq[k] for k in ("image_id", "question", "options", "answer", "skill", "level", "source")},
                "id": f"t-{kind}-{mcq['id']}",
                "mcq_id": mcq["id"],
                "kind": kind,
                "short": short,
                "cue": cue,
                "expansion": expansion,
                "text": trace_text(f"{short} {cue}{expansion}" if cue else short, final, mcq["options"], style),
                "predicted": final,
                "correct": final == gold,
                "teacher": "scripted/teacher@1",
                "reasoner": "scripted/reasoner@1" if cue else "",
                "generator": "scripted",
                "license": mcq["license"],
            }
        traces += made.values()
        with_image = {kind: {**trace, "image": mcq["image"]} for kind, trace in made.items()}
        sft += [sft_row(with_image["O"], seed), sft_row(with_image["X→O"], seed)]
        dpo.append(dpo_row(with_image["X→O"], with_image["X"], seed))
        rl.append(rl_row(mcq, seed))
    made = {"mcq_stage2": stage2, "traces_stage1": traces, "sft_stage1": sft, "dpo_stage1": dpo, "rl": rl}
    for config, rows in made.items():
        (folder / config).mkdir()
        shard = folder / config / "train-00000-of-00001.parquet"
        Dataset.from_list(rows, features=FORMAT_FEATURES[config]).to_parquet(str(shard))
    return folder


@pytest.fixture(scope="module")
def every_config(tmp_path_factory):
    return format_fixture(tmp_path_factory.mktemp("explorer") / "lgt")


def items(page: str) -> list[str]:
    return re.findall(r'<article class="item".*?</article>', page, flags=re.S)


def mcq_of(row, mcqs, traces):
    """The fixture's MCQ behind a trace, SFT, DPO or RL row: its ``mcq_id``, else its first parent (or its trace's)."""
    ref = row.get("mcq_id") or row["parents"][0]
    return mcqs.get(ref) or mcqs[traces[ref]["mcq_id"]]


def rows_of(folder, config):
    return {
        r["id"] if "id" in r else r["image_id"]: r
        for r in pq.read_table(next((folder / config).glob("train-*"))).to_pylist()
    }


@pytest.mark.parametrize(
    "config", ["scenes", "mcq_stage1", "mcq_stage2", "traces_stage1", "sft_stage1", "dpo_stage1", "rl"]
)
def test_every_config_renders_its_items_with_boxes(every_config, config, tmp_path):
    path = write_explorer(str(every_config), config, 5, out=str(tmp_path / "page.html"))
    page = open(path, encoding="utf-8").read()
    rows = rows_of(every_config, config)
    shown = items(page)
    assert len(shown) == min(5, len(rows)) and len(rows) > 5
    mcqs = {**rows_of(every_config, "mcq_stage1"), **rows_of(every_config, "mcq_stage2")}
    traces = rows_of(every_config, "traces_stage1")
    for item in shown:
        row = rows[re.search(r'id="([^"]+)"', item).group(1)]
        boxes = item.count('class="edge"')
        if config == "scenes":
            assert boxes == len(row["objects"]) and "caption-text" in item
            continue
        mcq = row if "grounding" in row else mcq_of(row, mcqs, traces)
        assert boxes == len(mcq["grounding"]) > 0
        assert re.findall(r'class="option gold[^"]*" data-letter="(.)"', item) == [mcq["answer"]]
        assert item.count('<li class="option') == 4 and "data:image/" in item


def test_traces_show_kind_and_highlight_the_cue_after_the_short_cot(every_config, tmp_path):
    page = open(write_explorer(str(every_config), "traces_stage1", 30, out=str(tmp_path / "t.html"))).read()
    for item in items(page):
        kind = re.search(r'class="kind [a-z]+">([^<]+)<', item).group(1)
        assert ('<mark class="cue">Wait,</mark>' in item) == (kind == "X→O")
        if kind == "X→O":  # the short CoT comes before the cue, the reasoner's expansion after it
            assert re.search(
                r'<span class="short">.*</span><mark class="cue">Wait,</mark><span class="expansion">', item
            )


def test_the_answer_is_read_by_the_one_parser_and_a_grading_slip_is_flagged(every_config, tmp_path):
    traces = pq.read_table(every_config / "traces_stage1" / "train-00000-of-00001.parquet").to_pylist()
    traces[0]["correct"] = not traces[0]["correct"]  # a row whose recorded grade its own text contradicts
    (tmp_path / "traces_stage1").mkdir()
    Dataset.from_list(traces, features=FORMAT_FEATURES["traces_stage1"]).to_parquet(
        str(tmp_path / "traces_stage1" / "train-00000-of-00001.parquet")
    )
    page = open(write_explorer(str(tmp_path), "traces_stage1", len(traces))).read()
    by_id = {t["id"]: t for t in traces}
    for item in items(page):
        trace = by_id[re.search(r'id="([^"]+)"', item).group(1)]
        marked = re.findall(r'class="option[^"]*predicted" data-letter="(.)"', item)
        assert marked == [trace["predicted"]]
        assert ("recorded as" in item) == (trace is traces[0])


def test_dpo_pairs_side_by_side_and_sft_joined_to_their_traces(every_config, tmp_path):
    page = open(write_explorer(str(every_config), "dpo_stage1", 3, out=str(tmp_path / "d.html"))).read()
    for item in items(page):
        chosen, rejected = re.search(r'<div class="pair">(.*?</section>)(.*?</section>)</div>', item, re.S).groups()
        assert "trace chosen" in chosen and ">correct, answers" in chosen and "Wait,</mark>" in chosen
        assert "trace rejected" in rejected and ">wrong, answers" in rejected and "no cue" in rejected
    page = open(write_explorer(str(every_config), "sft_stage1", 20, out=str(tmp_path / "s.html"))).read()
    assert page.count('<mark class="cue">') == page.count('class="kind fixed">X→O</span>') // 2 > 0
    page = open(write_explorer(str(every_config), "rl", 3, out=str(tmp_path / "r.html"))).read()
    assert page.count('class="solution"') == 3 and page.count("prompt as the model sees it") == 3


def test_text_from_the_data_is_escaped(every_config, tmp_path):
    for config in ("mcq_stage2", "traces_stage1"):
        page = open(write_explorer(str(every_config), config, 50, out=str(tmp_path / f"{config}.html"))).read()
        assert "<script" not in page and "<img src=x" not in page
    assert "&lt;script&gt;document.title" in page or "&lt;img src=x" in page


def test_sampling_is_seeded_and_n_caps_at_the_rows(every_config, tmp_path):
    def ids(seed, n):
        page = open(write_explorer(str(every_config), "mcq_stage1", n, out=str(tmp_path / "p.html"), seed=seed)).read()
        return [re.search(r'id="([^"]+)"', item).group(1) for item in items(page)]

    assert ids(0, 4) == ids(0, 4) and ids(0, 4) != ids(1, 4)
    assert len(ids(0, 10_000)) == len(rows_of(every_config, "mcq_stage1"))


def test_default_page_sits_in_the_build_where_load_dataset_ignores_it_and_a_rebuild_drops_it(tmp_path):
    folder = tmp_path / "lgt"
    build(source="scenes", num_images=10, output=str(folder))
    path = write_explorer(str(folder), "mcq_stage1", 3, split="validation")
    assert (
        path == os.path.abspath(default_output(str(folder), "mcq_stage1")) == str(folder / "explorer/mcq_stage1.html")
    )
    data = load_dataset(str(folder), "mcq_stage1")
    assert set(data) == {"train", "validation", "test"} and len(data["validation"]) > 0
    assert check_build_folder(str(folder)) == sorted(  # what `lgt push` uploads besides the card
        str(p.relative_to(folder)) for p in folder.glob("*/*.parquet")
    )
    build(source="scenes", num_images=10, output=str(folder))  # its rows may have changed: the page goes with them
    assert not (folder / "explorer").exists()


def test_a_row_without_its_parents_in_the_folder_still_shows(every_config, tmp_path):
    folder = tmp_path / "alone"
    folder.mkdir()
    shutil.copytree(every_config / "sft_stage1", folder / "sft_stage1")
    page = open(write_explorer(str(folder), "sft_stage1", 2)).read()
    assert len(items(page)) == 2 and 'class="edge"' not in page and "not in this folder" in page
    missing = "2 without its MCQ (so no boxes), 2 without its trace (so no cue), 2 without its scene (so no caption)"
    assert f"Not found in this folder and split: {missing}." in page


def test_a_missing_or_broken_image_is_said_and_the_rest_still_shows(every_config, tmp_path):
    rows = pq.read_table(every_config / "rl" / "train-00000-of-00001.parquet").to_pylist()[:3]
    rows[0]["images"] = [{"bytes": b"not an image", "path": None}]
    rows[1]["images"] = [{"bytes": None, "path": str(tmp_path / "gone.jpg")}]
    (tmp_path / "rl").mkdir()
    table = pa.Table.from_pylist(rows, schema=FORMAT_FEATURES["rl"].arrow_schema)  # as written, files not read
    pq.write_table(table, tmp_path / "rl" / "train-00000-of-00001.parquet")
    page = open(write_explorer(str(tmp_path), "rl", 3)).read()
    assert "image unavailable: its bytes are not an image" in page
    assert f"image unavailable: not found at {tmp_path / 'gone.jpg'}" in page
    assert page.count("data:image/") == 1 and len(items(page)) == 3


def test_unknown_config_or_split_names_what_is_there(every_config):
    with pytest.raises(ValueError, match=r"no config 'sft_stage9'; configs there: dpo_stage1, .*rl, scenes"):
        write_explorer(str(every_config), "sft_stage9", 3)
    with pytest.raises(ValueError, match="no split 'dev'; splits there: test, train, validation"):
        write_explorer(str(every_config), "mcq_stage1", 3, split="dev")
    with pytest.raises(ValueError, match="n must be"):
        write_explorer(str(every_config), "mcq_stage1", 0)


def test_an_empty_split_is_an_error_not_an_empty_page(tmp_path):
    (tmp_path / "rl").mkdir()
    pq.write_table(FORMAT_FEATURES["rl"].arrow_schema.empty_table(), tmp_path / "rl" / "test-00000-of-00001.parquet")
    with pytest.raises(ValueError, match="has no rows in split 'test'"):
        write_explorer(str(tmp_path), "rl", 5, split="test")


def test_path_mode_builds_read_the_image_files(small_coco, tmp_path):
    build(source=f"coco:{small_coco}", output=str(tmp_path / "lgt"), images="path", configs=("mcq_stage1",))
    page = open(write_explorer(str(tmp_path / "lgt"), "mcq_stage1", 2)).read()
    assert page.count("data:image/jpeg;base64,") == 2 and "image unavailable" not in page


# -------------------------------------------------------------------------------------------- in a real browser


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium driven by Playwright (whose own browser download is not needed)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    executable = next((shutil.which(name) for name in ("chromium", "chromium-browser") if shutil.which(name)), None)
    if executable is None:
        pytest.skip("no chromium on PATH (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield chromium
        chromium.close()


# What the page shows, read in the browser: item ids, images decoded, gold letters, questions, and for each item's
# first box where the browser drew it and where the image puts that box (CSS pixels, relative to the image).
LOOK = """() => [...document.querySelectorAll("article.item")].map(item => {
    const img = item.querySelector("img"), edge = item.querySelector("rect.edge");
    const at = img && img.getBoundingClientRect(), drawn = edge && edge.getBoundingClientRect();
    const scale = img && at.width / Number(img.getAttribute("width"));
    return {
        id: item.id,
        decoded: img ? img.complete && img.naturalWidth : null,
        gold: [...item.querySelectorAll("li.option.gold")].map(o => o.dataset.letter),
        question: (item.querySelector(".question") || {}).innerText,
        drawn: edge ? [drawn.left - at.left, drawn.top - at.top, drawn.width, drawn.height] : null,
        box: edge ? ["x", "y", "width", "height"].map(k => Number(edge.getAttribute(k)) * scale) : null,
    };
})"""


def look(browser, path, screenshot):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"file://{path}", wait_until="load")
    shown = page.evaluate(LOOK)
    ran = page.title(), page.locator("main script, main img[src=x]").count()
    page.screenshot(path=screenshot, full_page=True)
    page.close()
    return shown, errors, ran


@pytest.mark.parametrize("config", ["mcq_stage2", "traces_stage1", "sft_stage1", "dpo_stage1", "rl", "scenes"])
def test_a_real_browser_shows_the_page_without_errors(browser, every_config, config, tmp_path):
    path = write_explorer(str(every_config), config, 6, out=str(tmp_path / f"{config}.html"))
    shown, errors, (title, injected) = look(browser, path, f"/tmp/lgt-explorer-{config}.png")
    assert errors == [] and injected == 0 and title == f"lgt · {config} · train"
    rows = rows_of(every_config, config)
    mcqs = {**rows_of(every_config, "mcq_stage1"), **rows_of(every_config, "mcq_stage2")}
    traces = rows_of(every_config, "traces_stage1")
    assert len(shown) == 6 and len({item["id"] for item in shown}) == 6
    for item in shown:
        row = rows[item["id"]]
        assert item["decoded"] > 0
        # the box lies where the image has it, to within the stroke
        assert all(abs(d - b) <= 2.5 for d, b in zip(item["drawn"], item["box"], strict=True)), item
        if config != "scenes":
            assert item["gold"] == [(row if "grounding" in row else mcq_of(row, mcqs, traces))["answer"]]
        if config == "mcq_stage2":  # shown as text, not run
            assert item["question"].startswith(HOSTILE_QUESTION)


def test_a_real_browser_shows_real_photos(browser, coco_build, tmp_path):
    output, _ = coco_build
    path = write_explorer(str(output), "mcq_stage1", 8, out=str(tmp_path / "coco.html"))
    shown, errors, _ = look(browser, path, "/tmp/lgt-explorer-coco.png")
    assert errors == [] and len(shown) == 8 and all(item["decoded"] >= 480 for item in shown)
