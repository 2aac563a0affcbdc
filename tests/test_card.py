"""The dataset card as the Hub and `datasets` read it: metadata fields and values, sizes, licences, field docs, and
no local path in anything that is published."""

import json
from collections import Counter
from importlib.resources import files

import pytest
from conftest import write_image
from datasets import load_dataset
from datasets.info import DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard, DatasetCardData
from lgt.build import build
from lgt.card import hub_license, license_metadata
from lgt.stages import STAGES

RESOURCES = files("datasets.utils.resources")  # the Hub's allowed values, as datasets ships them


def _allowed(name: str, key: str | None = None) -> set[str]:
    values = json.loads((RESOURCES / name).read_text())
    return set(values[key] if key else values)


def _card(folder) -> DatasetCard:
    return DatasetCard.load(folder / "README.md", ignore_metadata_errors=False)


def test_card_metadata_is_valid_hub_metadata(builtin_build):
    output, info = builtin_build
    card = _card(output)
    data = card.data
    assert isinstance(data, DatasetCardData)
    DatasetCardData(**data.to_dict(), ignore_metadata_errors=False)  # round-trips through the Hub's own class
    assert set(data.size_categories) <= _allowed("size_categories.json")
    largest = max(sum(rows.values()) for rows in info["rows"].values())
    low, high = {"n<1K": (0, 10**3), "1K<n<10K": (10**3, 10**4), "10K<n<100K": (10**4, 10**5)}[data.size_categories[0]]
    assert low <= largest < high
    assert data.annotations_creators and set(data.annotations_creators) <= _allowed("creators.json", "annotations")
    assert data.language_creators and set(data.language_creators) <= _allowed("creators.json", "language")
    assert data.multilinguality in _allowed("multilingualities.json") and data.language == ["en"]
    assert data.task_categories == ["visual-question-answering", "multiple-choice"]
    assert data.source_datasets == ["original"] and data.license == "cc0-1.0"
    assert "synthetic" in data.tags  # the built-in scenes are synthetic
    configs = MetadataConfigs.from_dataset_card_data(data)
    assert set(configs) == set(STAGES) and configs.get_default_config_name() == "mcq_stage1"


def test_dataset_info_sizes_are_the_download_and_the_arrow_cache(builtin_build):
    output, info = builtin_build
    infos = DatasetInfosDict.from_dataset_card_data(_card(output).data)
    for config in ("scenes", "mcq_stage1"):
        parquet = sum(path.stat().st_size for path in (output / config).glob("*.parquet"))
        assert infos[config].download_size == parquet
        splits = infos[config].splits
        assert infos[config].dataset_size == sum(split.num_bytes for split in splits.values())
        assert {name: split.num_examples for name, split in splits.items()} == info["rows"][config]
        loaded = load_dataset(str(output), config, split="train")
        assert splits["train"].num_bytes == pytest.approx(loaded.data.nbytes, rel=0.01)
    # the expanded Arrow cache of the questions is several times their download: the card says so
    assert infos["mcq_stage1"].dataset_size > 3 * infos["mcq_stage1"].download_size
    text = (output / "README.md").read_text()
    assert "streaming=True" in text and "--max-pixels 262144" in text


def test_every_field_is_described(builtin_build):
    output, _ = builtin_build
    text = (output / "README.md").read_text()
    for stage in STAGES.values():
        assert list(stage.fields) == list(stage.features)
        for name in stage.features:
            assert f"| `{name}` | {stage.fields[name]} |" in text
    assert "[x0, y0, x1, y1]` in absolute pixels" in text and "`A` is `options[0]`" in text
    assert "## Uses" in text and "## Bias, risks and limitations" in text


def test_coco_card_tells_the_image_licences_and_no_local_path(coco_build):
    output, info = coco_build
    data = _card(output).data
    assert data.license == "other" and data.license_name == "per-image-licenses"
    assert data.license_link == "https://cocodataset.org/#termsofuse"
    assert "creativecommons.org/licenses/by-sa/2.0" in data.license_details and "cc-by-4.0" in data.license_details
    assert "synthetic" not in data.tags and data.source_datasets == ["extended|other-coco"]
    assert "crowdsourced" in data.annotations_creators
    assert info["arguments"]["source"] == "coco:coco_mini_ccby"
    root = str(output.parent)
    for name in ("README.md", "lgt_build.json"):
        text = (output / name).read_text()
        assert root not in text and "/shared/data" not in text, name


def test_jsonl_card_licence_comes_from_the_rows(tmp_path):
    write_image(tmp_path / "img.png", size=(400, 300))
    with open(tmp_path / "scenes.jsonl", "w") as f:
        for i in range(8):
            objects = [{"name": "cup", "bbox": [10, 10, 110, 110]}, {"name": "plate", "bbox": [250, 20, 390, 120]}]
            line = {"image_id": f"img-{i}", "image": "img.png", "caption": "A table.", "objects": objects}
            f.write(json.dumps({**line, "license": "CC BY 4.0"}) + "\n")
    output = tmp_path / "out"
    info = build(source=f"jsonl:{tmp_path / 'scenes.jsonl'}", output=str(output))
    data = _card(output).data
    assert data.license == "cc-by-4.0" and "synthetic" not in data.tags
    assert data.source_datasets == ["extended|other-scenes"]  # named after the file: scenes.jsonl
    assert info["arguments"]["source"] == "jsonl:scenes.jsonl"
    assert str(tmp_path) not in (output / "README.md").read_text() + (output / "lgt_build.json").read_text()


def test_hub_licence_ids():
    assert hub_license("CC BY 4.0") == "cc-by-4.0"
    assert hub_license("Attribution-NonCommercial License (http://creativecommons.org/licenses/by-nc/2.0/)") == (
        "cc-by-nc-2.0"
    )
    assert hub_license("Generated by lgt; CC0-1.0") == "cc0-1.0"
    assert hub_license("cc-by-sa 4.0") == "cc-by-sa-4.0"
    assert hub_license("No known copyright restrictions") is None
    assert hub_license("CC BY-ND 2.0") is None  # not a licence the Hub has an id for
    assert license_metadata("jsonl", Counter({"CC BY 4.0": 3, "CC0": 1})) == {"license": ["cc-by-4.0", "cc0-1.0"]}
    mixed = license_metadata("jsonl", Counter({"CC BY 4.0": 3, "": 2}))
    assert mixed["license"] == "other" and "none stated (2 images)" in mixed["license_details"]


# Object names and licences an annotation file could hold, each trying to run script (window.__ran) in a card
# rendered as the Hub renders it: Markdown with raw HTML allowed.
HOSTILE = [
    "<script>window.__ran = 1</script>",
    '<img src=x onerror="window.__ran = 2">',
    "[click me](javascript:window.__ran=3)",
    "![pixel](https://example.invalid/p.png)",
    '<a href="javascript:window.__ran=4">link</a>',
    "<svg onload=window.__ran=5>",
    "*shouting* `code` | pipe _under_",
]


def test_a_card_built_from_hostile_names_runs_no_script_in_a_browser(tmp_path, browser):
    """Finding 7: the card copied object names and licences in as raw HTML; rendered as Markdown in a browser, an
    annotation file with <script> in an object name ran script."""
    markdown_it = pytest.importorskip("markdown_it")
    write_image(tmp_path / "img.png", size=(400, 300))
    lines = []
    for i, name in enumerate(HOSTILE):
        objects = [
            {"name": name, "bbox": [10, 10, 110, 110]},
            {"name": HOSTILE[(i + 1) % len(HOSTILE)], "bbox": [250, 20, 390, 120]},
            {"name": "cup", "bbox": [150, 150, 220, 290]},
        ]
        record = {"image_id": f"img-{i}", "image": "img.png", "caption": f"A table. {name}", "objects": objects}
        lines.append(json.dumps({**record, "license": HOSTILE[(i + 2) % len(HOSTILE)]}))
    source = tmp_path / "scenes <img src=x onerror=window.__ran=6>.jsonl"
    source.write_text("\n".join(lines) + "\n")
    output = tmp_path / "lgt"
    build(source=f"jsonl:{source}", output=str(output), configs=("scenes", "mcq_stage1"))
    body = (output / "README.md").read_text().split("\n---\n", 1)[1]
    html = markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table").render(body)
    page = browser.new_page()
    dialogs = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message) or dialog.dismiss())
    page.set_content(f"<!doctype html><html><body>{html}</body></html>", wait_until="load")
    assert page.evaluate("window.__ran") is None and dialogs == []
    assert page.locator("script, svg, [onerror], [onload], a[href^='javascript']").count() == 0
    assert [page.locator("img").nth(i).get_attribute("src") for i in range(page.locator("img").count())] == [
        "preview.png"
    ]
    shown = page.inner_text("body")
    assert all(name in shown for name in HOSTILE[:3]), "the names are shown as the text they are"
    page.close()
