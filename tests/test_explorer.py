"""`lgt show`'s page: every config renders with its boxes, gold option, traces, cues and pairs, text is escaped, and
a real headless browser (Debian's chromium through Playwright) loads it without errors and decodes every image."""

import os
import re
import shutil

import pyarrow.parquet as pq
import pytest
from datasets import Dataset, Features, Image, List, Value, load_dataset
from lgt.build import build
from lgt.explorer import default_output, write_explorer

HOSTILE_QUESTION = 'Which is it? <script>document.title = "pwned"</script>'
HOSTILE_EXPANSION = ' <img src=x onerror="document.title=1"> let me look at each box again.'
SYSTEM = "Think in <think></think>, then answer in <answer></answer>."

_BOX = List(Value("float32"), length=4)
_MESSAGES = List({"role": Value("string"), "content": List({"type": Value("string"), "text": Value("string")})})
_COMMON = {
    "id": Value("string"),
    "image_id": Value("string"),
    "skill": Value("string"),
    "kind": Value("string"),
    "parents": List(Value("string")),
    "generator": Value("string"),
}
_MCQ = {
    "id": Value("string"),
    "image_id": Value("string"),
    "image": Image(),
    "question": Value("string"),
    "options": List(Value("string")),
    "answer": Value("string"),
    "skill": Value("string"),
    "level": Value("int32"),
    "grounding": List({"object_id": Value("int64"), "name": Value("string"), "bbox": _BOX}),
    "parents": List(Value("string")),
    "steps": List({"question": Value("string"), "answer": Value("string")}),
    "generator": Value("string"),
    "source": Value("string"),
    "license": Value("string"),
}
FORMAT_FEATURES = {
    "mcq_stage2": Features(_MCQ),
    "traces_stage1": Features(
        {
            **{k: _MCQ[k] for k in ("id", "image_id", "image", "question", "options", "answer", "skill", "level")},
            "mcq_id": Value("string"),
            **{k: Value("string") for k in ("kind", "short", "cue", "expansion", "text", "predicted")},
            "correct": Value("bool"),
            **{k: Value("string") for k in ("teacher", "reasoner", "generator", "source", "license")},
        }
    ),
    "sft_stage1": Features({"messages": _MESSAGES, "images": List(Image()), **_COMMON}),
    "dpo_stage1": Features(
        {"prompt": _MESSAGES, "chosen": _MESSAGES, "rejected": _MESSAGES, "images": List(Image()), **_COMMON}
    ),
    "rl": Features(
        {
            "prompt": _MESSAGES,
            "images": List(Image()),
            "solution": Value("string"),
            "answer": Value("string"),
            "options": List(Value("string")),
            **_COMMON,
        }
    ),
}


def format_fixture(folder, num_images=10):
    """A built folder with every config: ``scenes`` and ``mcq_stage1`` from ``lgt.build``, the others hand-made in
    the row shapes of the issue-8 contract from its train MCQs. A format fixture until the builder makes them."""
    build(source="scenes", num_images=num_images, output=str(folder))
    mcqs = pq.read_table(next((folder / "mcq_stage1").glob("train-*.parquet"))).to_pylist()
    letters = "ABCD"

    def prompt(mcq):
        options = "\n".join(f"({letter}) {option}" for letter, option in zip(letters, mcq["options"], strict=True))
        user = [{"type": "image", "text": None}, {"type": "text", "text": f"{mcq['question']}\n{options}"}]
        return [{"role": "system", "content": [{"type": "text", "text": SYSTEM}]}, {"role": "user", "content": user}]

    def said(text):
        return [{"role": "assistant", "content": [{"type": "text", "text": text}]}]

    stage2, traces, sft, dpo, rl = [], [], [], [], []
    for first, second in zip(mcqs[::2], mcqs[1::2], strict=False):
        if first["image_id"] != second["image_id"]:
            continue
        gold = f"{first['options'][ord(first['answer']) - 65]} / {second['options'][ord(second['answer']) - 65]}"
        options = [gold, "none / none", "all / all", "some / none"]
        stage2.append(
            {
                **first,
                "id": f"s2-{first['id']}",
                "question": f"{HOSTILE_QUESTION} {first['question']} And: {second['question']}",
                "options": options,
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
        kinds = {
            "O": (gold, "", "", gold),
            "X→O": (wrong, "Wait,", HOSTILE_EXPANSION, gold),
            "X": (wrong, "", "", wrong),
        }
        made = {}
        for kind, (first_answer, cue, expansion, final) in kinds.items():
            short = f"I look at the boxes for: {mcq['question']} It is ({first_answer})."
            text = f"<think>{short}{' ' + cue + expansion if cue else ''}</think> <answer>({final})</answer>"
            made[kind] = trace = {
                **{k: mcq[k] for k in ("image_id", "image", "question", "options", "answer", "skill", "level")},
                "id": f"t-{kind}-{mcq['id']}",
                "mcq_id": mcq["id"],
                "kind": kind,
                "short": short,
                "cue": cue,
                "expansion": expansion,
                "text": text,
                "predicted": final,
                "correct": final == gold,
                "teacher": "scripted/teacher@1",
                "reasoner": "scripted/reasoner@1" if cue else "",
                "generator": "scripted",
                "source": mcq["source"],
                "license": mcq["license"],
            }
            traces.append(trace)
        common = {"image_id": mcq["image_id"], "skill": mcq["skill"], "generator": "scripted"}
        for kind in ("O", "X→O"):
            row_id = f"sft-{made[kind]['id']}"
            messages = prompt(mcq) + said(made[kind]["text"])
            sft.append({**common, "id": row_id, "kind": kind, "parents": [made[kind]["id"]], "messages": messages})
        pair = [made["X→O"], made["X"]]
        dpo.append(
            {
                **common,
                "id": f"dpo-{mcq['id']}",
                "kind": "X→O>X",
                "parents": [t["id"] for t in pair],
                "prompt": prompt(mcq),
                "chosen": said(pair[0]["text"]),
                "rejected": said(pair[1]["text"]),
            }
        )
        rl.append(
            {
                **common,
                "id": f"rl-{mcq['id']}",
                "kind": "",
                "parents": [mcq["id"]],
                "prompt": prompt(mcq),
                "solution": f"({gold})",
                "answer": gold,
                "options": mcq["options"],
            }
        )
    for row in sft + dpo + rl:
        row["images"] = [next(m["image"] for m in mcqs if m["image_id"] == row["image_id"])]
    for config, rows in {
        "mcq_stage2": stage2,
        "traces_stage1": traces,
        "sft_stage1": sft,
        "dpo_stage1": dpo,
        "rl": rl,
    }.items():
        (folder / config).mkdir()
        Dataset.from_list(rows, features=FORMAT_FEATURES[config]).to_parquet(
            str(folder / config / "train-00000-of-00001.parquet")
        )
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


def test_default_page_sits_in_the_build_and_load_dataset_still_works(every_config, tmp_path):
    folder = tmp_path / "lgt"
    shutil.copytree(every_config, folder)
    path = write_explorer(str(folder), "mcq_stage1", 3, split="validation")
    assert (
        path
        == os.path.abspath(default_output(str(folder), "mcq_stage1"))
        == str(folder / "explorer" / "mcq_stage1.html")
    )
    data = load_dataset(str(folder), "mcq_stage1")
    assert set(data) == {"train", "validation", "test"} and len(data["validation"]) > 0


def test_a_row_without_its_parents_in_the_folder_still_shows(every_config, tmp_path):
    folder = tmp_path / "alone"
    folder.mkdir()
    shutil.copytree(every_config / "sft_stage1", folder / "sft_stage1")
    page = open(write_explorer(str(folder), "sft_stage1", 2)).read()
    assert len(items(page)) == 2 and 'class="edge"' not in page and "not in this folder" in page
    assert "Not in this folder, so not joined: mcq_stage1, traces_stage1, scenes" in page


def test_unknown_config_or_split_names_what_is_there(every_config):
    with pytest.raises(ValueError, match=r"no config 'sft_stage9'; configs there: dpo_stage1, .*rl, scenes"):
        write_explorer(str(every_config), "sft_stage9", 3)
    with pytest.raises(ValueError, match="no split 'dev'; splits there: test, train, validation"):
        write_explorer(str(every_config), "mcq_stage1", 3, split="dev")
    with pytest.raises(ValueError, match="n must be"):
        write_explorer(str(every_config), "mcq_stage1", 0)


def test_path_mode_builds_read_the_image_files(small_coco, tmp_path):
    build(source=f"coco:{small_coco}", output=str(tmp_path / "lgt"), images="path", configs=("mcq_stage1",))
    page = open(write_explorer(str(tmp_path / "lgt"), "mcq_stage1", 2)).read()
    assert page.count("data:image/jpeg;base64,") == 2 and "image unavailable" not in page


# -------------------------------------------------------------------------------------------- in a real browser


def _chromium():
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    path = next((shutil.which(name) for name in ("chromium", "chromium-browser") if shutil.which(name)), None)
    if path is None:
        pytest.skip("no chromium on PATH (apt-get install chromium)")
    return path


@pytest.mark.parametrize("config", ["mcq_stage2", "traces_stage1", "sft_stage1", "dpo_stage1", "rl", "scenes"])
def test_a_real_browser_loads_the_page_without_errors(every_config, config, tmp_path):
    from playwright.sync_api import sync_playwright

    executable = _chromium()
    path = write_explorer(str(every_config), config, 6, out=str(tmp_path / f"{config}.html"))
    rows = rows_of(every_config, config)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors = []
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"file://{path}", wait_until="load")
        shown = page.eval_on_selector_all("article.item", "items => items.map(item => item.id)")
        widths = page.eval_on_selector_all("article img", "images => images.map(i => i.complete && i.naturalWidth)")
        gold = page.eval_on_selector_all(
            "article.item",
            "items => items.map(i => [...i.querySelectorAll('li.option.gold')].map(o => o.dataset.letter))",
        )
        questions = page.eval_on_selector_all(".question", "qs => qs.map(q => q.innerText)")
        title, scripts = page.title(), page.locator("main script, main img[src=x]").count()
        page.screenshot(path=f"/tmp/lgt-explorer-{config}.png", full_page=True)
        browser.close()
    assert errors == [] and scripts == 0 and title == f"lgt · {config} · train"
    assert len(shown) == 6 and set(shown) <= set(rows)
    assert len(widths) == 6 and all(width > 0 for width in widths)
    if config != "scenes":
        mcqs = {**rows_of(every_config, "mcq_stage1"), **rows_of(every_config, "mcq_stage2")}
        answers = [
            rows[i].get("answer") or mcqs[rows[i]["parents"][0]]["answer"]
            for i in shown
            if config != "sft_stage1" and config != "dpo_stage1"
        ]
        assert all(len(letters) == 1 for letters in gold) and (not answers or [g[0] for g in gold] == answers)
    if config == "mcq_stage2":
        assert all(q.startswith(HOSTILE_QUESTION) for q in questions)
