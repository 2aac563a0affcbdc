"""`lgt show`'s page: every config renders with its boxes, gold option, traces, cues and pairs, text is escaped, and
a real headless browser (Debian's chromium through Playwright) loads it without errors and decodes every image."""

import html
import io
import os
import re
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import load_dataset
from lgt.build import build
from lgt.explorer import default_output, write_explorer
from lgt.hub import check_build_folder
from lgt.stages import STAGES

HOSTILE_QUESTION = 'Which is it? <script>document.title = "pwned"</script>'
HOSTILE_EXPANSION = '<img src=x onerror="document.title=1"> '
ALL = ("scenes", "mcq_stage1", *(c for c in STAGES if c not in ("scenes", "mcq_stage1")))


@pytest.fixture(scope="module")
def every_config(tmp_path_factory):
    """A real build of every config from the synthetic scenes, as `lgt build` writes it."""
    folder = tmp_path_factory.mktemp("explorer") / "lgt"
    build(source="scenes", num_images=40, output=str(folder))
    return folder


def rewrite(shard, change):
    """Apply ``change`` to the rows of one parquet file, written back with its own schema (and HF features)."""
    table = pq.read_table(shard)
    rows = table.to_pylist()
    change(rows)
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)


@pytest.fixture(scope="module")
def hostile(every_config, tmp_path_factory):
    """THE INJECTION CASE: a copy of the real build where one test-split row of ``mcq_stage2`` has markup in its
    question and one X→O trace of ``traces_stage1`` has markup in its expansion; returns the folder and the two ids."""
    folder = tmp_path_factory.mktemp("hostile") / "lgt"
    shutil.copytree(every_config, folder)
    ids = {}

    def question(rows):
        rows[0]["question"] = f"{HOSTILE_QUESTION} {rows[0]['question']}"
        ids["mcq_stage2"] = rows[0]["id"]

    def expansion(rows):
        row = next(r for r in rows if r["kind"] == "X→O")
        assert row["expansion"] in row["text"]
        row["text"] = row["text"].replace(row["expansion"], HOSTILE_EXPANSION + row["expansion"])
        row["expansion"] = HOSTILE_EXPANSION + row["expansion"]
        ids["traces_stage1"] = row["id"]

    rewrite(folder / "mcq_stage2" / "test-00000-of-00001.parquet", question)
    rewrite(folder / "traces_stage1" / "test-00000-of-00001.parquet", expansion)
    return folder, ids


def items(page: str) -> list[str]:
    return re.findall(r'<article class="item".*?</article>', page, flags=re.S)


def mcq_of(row, mcqs, traces):
    """The build's MCQ behind a trace, SFT, DPO or RL row: its ``mcq_id``, else its first parent (or its trace's)."""
    ref = row.get("mcq_id") or row["parents"][0]
    return mcqs.get(ref) or mcqs[traces[ref]["mcq_id"]]


def rows_of(folder, *configs, split="train"):
    return {
        r["id"] if "id" in r else r["image_id"]: r
        for config in configs
        for r in pq.read_table(folder / config / f"{split}-00000-of-00001.parquet").to_pylist()
    }


@pytest.mark.parametrize("config", ALL)
def test_every_config_renders_its_items_with_boxes(every_config, config, tmp_path):
    path = write_explorer(str(every_config), config, 8, out=str(tmp_path / "page.html"))
    page = open(path, encoding="utf-8").read()
    rows = rows_of(every_config, config)
    shown = items(page)
    assert len(shown) == 8 < len(rows)
    mcqs = rows_of(every_config, "mcq_stage1", "mcq_stage2")
    traces = rows_of(every_config, "traces_stage1", "traces_stage2")
    boxed = 0
    for item in shown:
        row = rows[re.search(r'id="([^"]+)"', item).group(1)]
        boxes = item.count('class="edge"')
        if config == "scenes":
            assert boxes == len(row["objects"]) and "caption-text" in item
            continue
        mcq = row if "grounding" in row else mcq_of(row, mcqs, traces)
        assert boxes == len(mcq["grounding"])  # a "none of them" MCQ may ground nothing
        boxed += boxes > 0
        assert re.findall(r'class="option gold[^"]*" data-letter="(.)"', item) == [mcq["answer"]]
        assert item.count('<li class="option') == len(mcq["options"]) == 4 and "data:image/" in item
    assert boxed > 0 or config == "scenes"


def test_boxes_for_every_object_the_trace_names(every_config, tmp_path):
    """A trace names objects by their extent ("x 157–224"); each has a box, dashed when the question is not grounded
    on it (a planted slip names the object it mistook), solid for the grounding."""
    page = open(write_explorer(str(every_config), "traces_stage1", 60, out=str(tmp_path / "t.html"))).read()
    traces, scenes = rows_of(every_config, "traces_stage1"), rows_of(every_config, "scenes")
    mcqs = rows_of(every_config, "mcq_stage1")
    dashed = 0
    for item in items(page):
        trace = traces[re.search(r'id="([^"]+)"', item).group(1)]
        drawn = set(re.findall(r'<rect class="edge(?: named)?" x="([^"]+)" y="([^"]+)"', item))
        for obj in scenes[trace["image_id"]]["objects"]:
            x0, x1 = round(obj["bbox"][0]), round(obj["bbox"][2])
            if re.search(rf"x {x0}(–| to ){x1}(?!\d)", trace["text"]):
                assert (f"{obj['bbox'][0]:g}", f"{obj['bbox'][1]:g}") in drawn, (obj, trace["text"])
        assert item.count('class="edge"') == len(mcqs[trace["mcq_id"]]["grounding"])
        dashed += item.count('class="edge named"')
    assert dashed > 0


def test_answers_are_labelled_by_who_wrote_them(every_config, tmp_path):
    """The scripted teacher's answers say "scripted", a model's "model"; the page names the folder, not its path."""
    page = open(write_explorer(str(every_config), "traces_stage1", 20, out=str(tmp_path / "t.html"))).read()
    shown = "".join(items(page))
    assert "scripted answer" in shown and "model&#x27;s answer" not in shown
    assert shown.count('<span class="writer">scripted</span>') == 20
    assert str(every_config) not in page and "<code>lgt</code>" in page
    sft = "".join(
        items(open(write_explorer(str(every_config), "sft_stage1", 10, out=str(tmp_path / "s.html"))).read())
    )
    assert sft.count('<span class="writer">scripted</span>') == 10 and "model&#x27;s answer" not in sft

    shutil.copytree(every_config / "traces_stage1", tmp_path / "lgt" / "traces_stage1")

    def by_a_model(rows):
        for row in rows:
            row["teacher"], row["reasoner"] = "Qwen/Qwen2.5-VL-7B-Instruct@abc", ""

    rewrite(tmp_path / "lgt" / "traces_stage1" / "train-00000-of-00001.parquet", by_a_model)
    page = open(write_explorer(str(tmp_path / "lgt"), "traces_stage1", 20)).read()
    shown = "".join(items(page))
    assert "model&#x27;s answer" in shown and "scripted answer" not in shown
    assert shown.count('<span class="writer">model</span>') == 20


def test_traces_show_kind_and_highlight_the_cue_after_the_short_cot(every_config, tmp_path):
    page = open(write_explorer(str(every_config), "traces_stage1", 60, out=str(tmp_path / "t.html"))).read()
    traces = rows_of(every_config, "traces_stage1")
    shown = {re.search(r'id="([^"]+)"', item).group(1): item for item in items(page)}
    assert len(shown) == 60
    for trace_id, item in shown.items():
        trace = traces[trace_id]
        assert re.search(r'class="kind [a-z]+">([^<]+)<', item).group(1) == trace["kind"]
        assert ('<mark class="cue">' in item) == bool(trace["cue"]) == (trace["kind"] in ("O→O", "X→O", "O→X", "X→X"))
    fixed = [trace_id for trace_id in shown if traces[trace_id]["kind"] == "X→O"]
    assert fixed, "seed 0 samples no X→O trace"
    for trace_id in fixed:  # the short CoT comes before the real cue, the reasoner's expansion after it
        trace, item = traces[trace_id], shown[trace_id]
        cue = re.escape(html.escape(trace["cue"]))
        around = re.search(
            rf'<span class="short">(.*)</span><mark class="cue">{cue}</mark><span class="expansion">', item, re.S
        )
        assert around and html.escape(trace["short"][-40:]) in around.group(1)
        assert (
            html.escape(trace["expansion"][:40])
            in item.split(f'<mark class="cue">{html.escape(trace["cue"])}</mark>')[1]
        )


def test_the_answer_is_read_by_the_one_parser_and_a_grading_slip_is_flagged(every_config, tmp_path):
    shutil.copytree(every_config / "traces_stage1", tmp_path / "traces_stage1")
    traces = []

    def slip(rows):  # a row whose recorded grade its own text contradicts
        rows[0]["correct"] = not rows[0]["correct"]
        traces.extend(rows)

    rewrite(tmp_path / "traces_stage1" / "test-00000-of-00001.parquet", slip)
    page = open(write_explorer(str(tmp_path), "traces_stage1", len(traces), split="test")).read()
    by_id = {t["id"]: t for t in traces}
    assert len(items(page)) == len(traces)
    for item in items(page):
        trace = by_id[re.search(r'id="([^"]+)"', item).group(1)]
        marked = re.findall(r'class="option[^"]*predicted" data-letter="(.)"', item)
        assert marked == [trace["predicted"]]
        assert ("recorded as" in item) == (trace is traces[0])


def test_dpo_pairs_side_by_side_and_sft_joined_to_their_traces(every_config, tmp_path):
    traces = rows_of(every_config, "traces_stage1")
    pairs = rows_of(every_config, "dpo_stage1")
    page = open(write_explorer(str(every_config), "dpo_stage1", 6, out=str(tmp_path / "d.html"))).read()
    for item in items(page):
        pair = pairs[re.search(r'id="([^"]+)"', item).group(1)]
        sections = re.search(r'<div class="pair">(.*?</section>)(.*?</section>)</div>', item, re.S).groups()
        for turn, section, trace_id, grade in zip(
            ("chosen", "rejected"), sections, pair["parents"][1:], ("correct", "wrong"), strict=True
        ):
            trace = traces[trace_id]
            assert trace["text"] == pair[turn][-1]["content"][0]["text"]
            assert f"trace {turn}" in section and f">{grade}, answers {trace['predicted']}" in section
            cue = f'<mark class="cue">{html.escape(trace["cue"])}</mark>'
            assert (cue in section) if trace["cue"] else ("no cue" in section)
    sft = rows_of(every_config, "sft_stage1")
    page = open(write_explorer(str(every_config), "sft_stage1", 20, out=str(tmp_path / "s.html"))).read()
    cued = [bool(traces[sft[re.search(r'id="([^"]+)"', item).group(1)]["parents"][1]]["cue"]) for item in items(page)]
    assert page.count('<mark class="cue">') == sum(cued) > 0
    rl = rows_of(every_config, "rl")
    page = open(write_explorer(str(every_config), "rl", 3, out=str(tmp_path / "r.html"))).read()
    for item in items(page):
        solution = html.escape(rl[re.search(r'id="([^"]+)"', item).group(1)]["solution"])
        assert f'class="solution"><b>solution</b> <code>{solution}</code>' in item
    assert page.count('class="solution"') == 3 and page.count("prompt as the model sees it") == 3


def test_text_from_the_data_is_escaped(hostile, tmp_path):
    folder, ids = hostile
    for config, raw, escaped in (
        ("mcq_stage2", "<script", "&lt;script&gt;document.title"),
        ("traces_stage1", "<img src=x", "&lt;img src=x onerror=&quot;document.title=1&quot;&gt;"),
    ):
        n = len(rows_of(folder, config, split="test"))
        page = open(write_explorer(str(folder), config, n, split="test", out=str(tmp_path / f"{config}.html"))).read()
        item = next(item for item in items(page) if f'id="{ids[config]}"' in item)
        assert raw not in page and escaped in item


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
    assert check_build_folder(str(folder)) == [  # what `lgt push` uploads: not the page
        "README.md",
        "lgt_build.json",
        "preview.png",
        *sorted(str(p.relative_to(folder)) for p in folder.glob("*/*.parquet")),
    ]
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
    table = pa.Table.from_pylist(rows, schema=STAGES["rl"].features.arrow_schema)  # as written, files not read
    pq.write_table(table, tmp_path / "rl" / "train-00000-of-00001.parquet")
    page = open(write_explorer(str(tmp_path), "rl", 3)).read()
    assert "image unavailable: its bytes are not an image" in page
    assert "image unavailable: not found: gone.jpg" in page
    assert page.count("data:image/") == 1 and len(items(page)) == 3
    assert str(tmp_path) not in page  # no path of this machine: a page is made to be shared


def test_unknown_config_or_split_names_what_is_there(every_config):
    with pytest.raises(
        ValueError, match=re.escape(f"no config 'sft_stage9'; configs there: {', '.join(sorted(ALL))}")
    ):
        write_explorer(str(every_config), "sft_stage9", 3)
    with pytest.raises(ValueError, match="no split 'dev'; splits there: test, train, validation"):
        write_explorer(str(every_config), "mcq_stage1", 3, split="dev")
    with pytest.raises(ValueError, match="n must be"):
        write_explorer(str(every_config), "mcq_stage1", 0)


def test_an_empty_split_is_an_error_not_an_empty_page(tmp_path):
    (tmp_path / "rl").mkdir()
    pq.write_table(STAGES["rl"].features.arrow_schema.empty_table(), tmp_path / "rl" / "test-00000-of-00001.parquet")
    with pytest.raises(ValueError, match="has no rows in split 'test'"):
        write_explorer(str(tmp_path), "rl", 5, split="test")


def test_path_mode_builds_read_the_image_files(small_coco, tmp_path):
    build(source=f"coco:{small_coco}", output=str(tmp_path / "lgt"), images="path", configs=("mcq_stage1",))
    page = open(write_explorer(str(tmp_path / "lgt"), "mcq_stage1", 2)).read()
    assert page.count("data:image/jpeg;base64,") == 2 and "image unavailable" not in page


# -------------------------------------------------------------------------------------------- in a real browser


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
        expansion: (item.querySelector(".expansion") || {}).innerText,
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


@pytest.mark.parametrize("config", ALL)
def test_a_real_browser_shows_the_page_without_errors(browser, every_config, config, tmp_path):
    path = write_explorer(str(every_config), config, 6, out=str(tmp_path / f"{config}.html"))
    shown, errors, (title, injected) = look(browser, path, str(tmp_path / f"{config}.png"))
    assert errors == [] and injected == 0 and title == f"lgt · {config} · train"
    rows = rows_of(every_config, config)
    mcqs = rows_of(every_config, "mcq_stage1", "mcq_stage2")
    traces = rows_of(every_config, "traces_stage1", "traces_stage2")
    assert len(shown) == 6 and len({item["id"] for item in shown}) == 6
    for item in shown:
        row = rows[item["id"]]
        assert item["decoded"] > 0
        # the box lies where the image has it, to within the stroke (an MCQ may ground nothing)
        if item["drawn"] is not None:
            assert all(abs(d - b) <= 2.5 for d, b in zip(item["drawn"], item["box"], strict=True)), item
        if config != "scenes":
            assert item["gold"] == [(row if "grounding" in row else mcq_of(row, mcqs, traces))["answer"]]
    assert any(item["drawn"] is not None for item in shown)


@pytest.mark.parametrize("config", ["mcq_stage2", "traces_stage1"])
def test_a_real_browser_shows_injected_markup_as_text(browser, hostile, config, tmp_path):
    folder, ids = hostile
    n = len(rows_of(folder, config, split="test"))
    path = write_explorer(str(folder), config, n, split="test", out=str(tmp_path / f"{config}.html"))
    shown, errors, (title, injected) = look(browser, path, str(tmp_path / f"hostile-{config}.png"))
    assert errors == [] and injected == 0 and title == f"lgt · {config} · test" and len(shown) == n
    item = next(item for item in shown if item["id"] == ids[config])
    if config == "mcq_stage2":
        assert item["question"].startswith(HOSTILE_QUESTION)
    else:
        assert item["expansion"].lstrip().startswith(HOSTILE_EXPANSION.strip())


def test_a_real_browser_shows_real_photos(browser, coco_build, tmp_path):
    """Each photo decodes in the browser at the size it is stored (the model's frame, portrait or landscape)."""
    from PIL import Image

    output, _ = coco_build
    path = write_explorer(str(output), "mcq_stage1", 8, out=str(tmp_path / "coco.html"))
    shown, errors, _ = look(browser, path, str(tmp_path / "coco.png"))
    assert errors == [] and len(shown) == 8
    rows = rows_of(output, "mcq_stage1")
    for item in shown:
        stored = Image.open(io.BytesIO(rows[item["id"]]["image"]["bytes"]))
        assert item["decoded"] == stored.width >= 224, item


@pytest.mark.parametrize(
    ("config", "split"), [("*", "train"), ("../elsewhere", "train"), ("mcq_stage1", "*"), ("mcq_stage1", "../x")]
)
def test_a_path_or_pattern_as_config_or_split_reads_nothing_outside_the_build(tmp_path, capsys, config, split):
    """Finding 8: `lgt show --config '*'` and `--config ../x` read (and showed) files outside the build."""
    from lgt.cli import main

    folder = tmp_path / "lgt"
    build(source="scenes", num_images=2, output=str(folder), configs=("scenes", "mcq_stage1"))
    (tmp_path / "elsewhere").mkdir()
    shutil.copy(
        next((folder / "mcq_stage1").glob("*.parquet")), tmp_path / "elsewhere" / "train-00000-of-00001.parquet"
    )
    before = sorted(tmp_path.rglob("*"))
    capsys.readouterr()
    assert main(["show", str(folder), "--config", config, "--split", split]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    flag, name = ("config", config) if config != "mcq_stage1" else ("split", split)
    assert line == f"lgt: error: --{flag} {name!r}: give the name of a {flag} of {folder}, not a path or a pattern"
    assert sorted(tmp_path.rglob("*")) == before, "no page was written"
