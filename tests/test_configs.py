"""The configs as a graph: every config of a default build, made from its parents' rows, checked against them."""

import glob
import itertools
import re
from collections import Counter

import pyarrow.parquet as pq
import pytest
from datasets import load_dataset
from lgt.answers import parse_answer
from lgt.builder import SPLITS
from lgt.stages import STAGES, needed
from lgt.synthesis.traces import KINDS, banned_words


def _rows(folder, config, split=None, columns=None):
    splits = [split] if split else SPLITS
    paths = [p for s in splits for p in sorted(glob.glob(f"{folder}/{config}/{s}-*.parquet"))]
    return [row for path in paths for row in pq.read_table(path, columns=columns).to_pylist()]


@pytest.fixture(scope="module")
def folder(builtin_build):
    return builtin_build[0]


def test_a_default_build_makes_every_config_and_each_loads(builtin_build):
    folder, info = builtin_build
    assert info["configs"] == list(STAGES)
    for config in STAGES:
        assert sum(info["rows"][config].values()) > 0, config
    sft = load_dataset(str(folder), "sft_stage1", split="validation")
    assert sft.features == STAGES["sft_stage1"].features and sft[0]["images"][0].size[0] > 0


def test_needed_configs_follow_the_graph_parents_first():
    assert needed(("dpo_stage2",)) == ["scenes", "mcq_stage1", "mcq_stage2", "traces_stage2", "dpo_stage2"]
    assert needed(("rl",)) == ["scenes", "mcq_stage1", "mcq_stage2", "rl"]
    for config, stage in STAGES.items():
        order = needed((config,))
        assert all(order.index(parent) < order.index(config) for parent in stage.parents)


def test_splits_are_disjoint_by_image_across_every_config(folder):
    split_of = {}
    for config, split in itertools.product(STAGES, SPLITS):
        for row in _rows(folder, config, split, ["image_id"]):
            assert split_of.setdefault(row["image_id"], split) == split, (config, row["image_id"])


def test_children_are_made_from_their_parents_rows(folder):
    mcqs = {row["id"]: row for config in ("mcq_stage1", "mcq_stage2") for row in _rows(folder, config)}
    stage1 = {row["id"] for row in _rows(folder, "mcq_stage1", columns=["id"])}
    for row in _rows(folder, "mcq_stage2"):
        assert row["level"] >= 2 and row["parents"] and set(row["parents"]) <= stage1
        assert all(mcqs[parent]["image_id"] == row["image_id"] for parent in row["parents"])
    traces = {row["id"]: row for config in ("traces_stage1", "traces_stage2") for row in _rows(folder, config)}
    for trace in traces.values():
        mcq = mcqs[trace["mcq_id"]]
        assert (trace["question"], trace["options"], trace["answer"]) == (
            mcq["question"],
            mcq["options"],
            mcq["answer"],
        )
    for config in ("sft_stage1", "sft_stage2", "dpo_stage1", "dpo_stage2", "rl"):
        level = 1 if config.endswith("stage1") else 2 if config.endswith("stage2") else None
        for row in _rows(folder, config, columns=["parents", "image_id", "level"]):
            assert row["parents"][0] in mcqs and all(parent in traces for parent in row["parents"][1:])
            assert level is None or row["level"] == level or (level == 2 and row["level"] >= 2)
    merged = Counter(row["id"] for row in _rows(folder, "sft_stage2_merged", columns=["id"]))
    parts = Counter(row["id"] for c in ("sft_stage1", "sft_stage2") for row in _rows(folder, c, columns=["id"]))
    assert merged == parts


def test_trace_kinds_agree_with_their_grades(folder):
    kinds = Counter()
    for trace in _rows(folder, "traces_stage1") + _rows(folder, "traces_stage2"):
        kinds[trace["kind"]] += 1
        predicted = parse_answer(trace["text"], trace["options"])
        assert (predicted or "") == trace["predicted"] and trace["correct"] == (predicted == trace["answer"])
        assert trace["kind"][-1] == ("O" if trace["correct"] else "X")
        assert bool(trace["cue"]) == ("→" in trace["kind"]) == bool(trace["expansion"])
        if trace["cue"]:
            assert trace["cue"] in trace["text"] and trace["text"].index(trace["cue"]) > 0
    assert set(kinds) == set(KINDS)


def test_sft_keeps_only_correct_traces_and_no_kept_trace_mentions_the_caption_or_boxes(folder):
    banned = re.compile(r"\b(" + "|".join(map(re.escape, banned_words())) + r")\b", re.IGNORECASE)
    for config in ("sft_stage1", "sft_stage2"):
        rows = _rows(folder, config, columns=["messages", "kind"])
        assert {row["kind"] for row in rows} <= {"O", "O→O", "X→O"} and len(rows) > 0
        for row in rows:
            user, assistant = row["messages"][1], row["messages"][2]
            options = re.findall(r"^\(?[A-D][.)] (.*)$", user["content"][1]["text"], re.MULTILINE)
            assert len(options) == 4
            text = assistant["content"][0]["text"]
            assert parse_answer(text, options) is not None
            assert not banned.search(text), text


def test_dpo_pairs_put_a_right_trace_over_a_wrong_one_of_the_same_question(folder):
    for config in ("dpo_stage1", "dpo_stage2"):
        rows = _rows(folder, config)
        assert rows
        for row in rows:
            user_text = row["prompt"][1]["content"][1]["text"]
            options = re.findall(r"^\(?[A-D][.)] (.*)$", user_text, re.MULTILINE)
            chosen, rejected = row["chosen"][0]["content"][0]["text"], row["rejected"][0]["content"][0]["text"]
            assert chosen != rejected and parse_answer(chosen, options) != parse_answer(rejected, options)
            chosen_kind, rejected_kind = row["kind"].split(" > ")
            assert chosen_kind.endswith("O") and rejected_kind.endswith("X")


def test_rl_prompts_carry_a_solution_the_one_parser_reads_as_the_gold_letter(folder):
    rows = _rows(folder, "rl", columns=["solution", "answer", "options", "level", "skill"])
    assert {row["level"] for row in rows} >= {1, 2}
    for row in rows:
        assert parse_answer(f"<answer>{row['solution']}</answer>", row["options"]) == row["answer"]
    for skill, letters in itertools.groupby(sorted((r["skill"], r["answer"]) for r in rows), key=lambda p: p[0]):
        shares = Counter(letter for _, letter in letters)
        if sum(shares.values()) >= 100:
            assert max(shares.values()) / sum(shares.values()) < 0.35, (skill, shares)


def test_the_card_shows_trace_statistics_per_config(folder):
    card = (folder / "README.md").read_text()
    assert "## Trace statistics" in card
    for config in ("traces_stage1", "traces_stage2", "sft_stage1", "dpo_stage1"):
        assert re.search(rf"^\| {config} \| [\d,]+ \|", card, re.MULTILINE), config


def test_benchmark_questions_and_images_are_screened_out_of_every_config(tmp_path):
    import base64
    import json

    from lgt.build import build

    build(source="scenes", num_images=30, configs=("mcq_stage1",), output=str(tmp_path / "first"))
    mcqs = _rows(tmp_path / "first", "mcq_stage1", columns=["question", "image_id", "image"])
    asked = mcqs[0]["question"]
    seen = next(row for row in mcqs if row["image_id"] != mcqs[0]["image_id"])
    benchmark = tmp_path / "bench.jsonl"
    records = [
        {"question": asked.upper().replace("?", " ?")},  # the same question, written a little differently
        {"question": "What is the capital of France?"},
        {"question": "Which animal is shown?", "image": base64.b64encode(seen["image"]["bytes"]).decode()},
    ]
    benchmark.write_text("".join(json.dumps(record) + "\n" for record in records))
    info = build(
        source="scenes",
        num_images=30,
        configs=("mcq_stage1", "rl"),
        output=str(tmp_path / "lgt"),
        benchmarks=(str(benchmark),),
    )
    kept = _rows(tmp_path / "lgt", "mcq_stage1", columns=["question", "image_id"])
    assert all(row["question"] != asked for row in kept)
    assert all(row["image_id"] != seen["image_id"] for row in kept)
    assert len(kept) < len(mcqs) and {row["image_id"] for row in kept} < {row["image_id"] for row in mcqs}
    rl = _rows(tmp_path / "lgt", "rl", columns=["image_id"])
    assert seen["image_id"] not in {row["image_id"] for row in rl}
    report = info["decontamination"]
    assert report["dropped"]["question"] >= 1 and report["dropped"]["image"] >= 1
    assert "## Decontamination" in (tmp_path / "lgt" / "README.md").read_text()


def test_lgt_show_writes_a_page_for_a_config_and_names_the_configs_it_has_when_asked_for_another(
    folder, capsys, tmp_path
):
    from lgt.cli import main

    page = tmp_path / "dpo_stage1.html"  # not in the shared build, which other tests list
    assert main(["show", str(folder), "--config", "dpo_stage1", "--n", "3", "--output", str(page)]) == 0
    assert page.is_file() and page.read_text().count("<img") >= 3 and str(page) in capsys.readouterr().out
    assert main(["show", str(folder), "--config", "nope"]) == 2
    assert "sft_stage2_merged" in capsys.readouterr().err
