"""lgt.eval without a model: the N-option parser, adapters on real benchmark rows, each benchmark's aggregation,
re-scoring published predictions, paired comparisons, the evaluate metric and the decontamination export."""

import contextlib
import io
import json
import random

import pytest
from conftest import SHARED_DATA
from lgt.answers import answer_text, format_options, parse_answer
from lgt.cli import main
from lgt.eval.benchmarks import BENCHMARKS, Item, Loaded, load, resolve, split_options
from lgt.eval.scoring import group_weights, mcnemar_p, paired, score
from PIL import Image

MMSTAR = SHARED_DATA / "mmstar_text" / "mmstar_val_text_with_llava_next_34b_predictions.jsonl"
BLINK = SHARED_DATA / "blink_val_model_outputs"
MMBENCH = SHARED_DATA / "mmbench_samples"

FOUR = ["red", "blue", "green", "a dog"]
SIX = ["0", "1", "2", "3", "4", "5"]
TWO = ["Open", "Closed"]
CHINESE = ["天坛", "故宫", "黄鹤楼", "少林寺"]


def _need(path):
    if not path.exists():
        pytest.skip(f"shared data not found at {path}")


def _errors(err: str) -> list[str]:
    """The error lines of a command's stderr; every line there is lgt's own (status or error), none a traceback."""
    assert all(line.startswith("lgt: ") for line in err.splitlines()), err
    return [line for line in err.splitlines() if line.startswith("lgt: error:")]


def _lgt(*arguments) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in arguments])
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    "completion, options, extract, letter",
    [
        ("<answer>(F)</answer>", SIX, "strict", "F"),
        ("<answer>(F)</answer>", FOUR, "strict", None),  # names no option of four
        ("<answer>F.</answer>", SIX, "strict", "F"),
        ("<answer>(B)</answer>", TWO, "strict", "B"),
        ("<answer>(C)</answer>", TWO, "strict", None),
        ("<answer>closed</answer>", TWO, "strict", "B"),
        ("<answer>A, C</answer>", FOUR, "strict", None),  # several letters
        ("<answer>A. B</answer>", FOUR, "strict", None),
        ("<answer>A and C</answer>", FOUR, "strict", None),
        ("<answer>green</answer>", FOUR, "strict", "C"),  # the text of an option, right or wrong
        ("<answer>(B) green</answer>", FOUR, "strict", None),  # a letter and another option's text
        ("<answer>b</answer>", FOUR, "strict", None),  # lower case is text, and no option's
        ("<answer>(b)</answer>", FOUR, "strict", None),
        ("<answer>BLUE</answer>", FOUR, "strict", "B"),
        ("<answer>(B).</answer>", FOUR, "strict", "B"),  # trailing punctuation
        ("<answer>Blue!</answer>", FOUR, "strict", "B"),
        ("<answer>故宫</answer>", CHINESE, "strict", "B"),  # Chinese options
        ("<answer>（C）</answer>", CHINESE, "strict", "C"),  # full-width parentheses
        ("<answer>(C) 黄鹤楼</answer>", CHINESE, "strict", "C"),
        ("B", FOUR, "strict", None),  # no tag: nothing to grade unless asked
        ("B", FOUR, "leading-letter", "B"),
        ("B: blue, because", FOUR, "leading-letter", "B"),
        ("(D) a dog", FOUR, "leading-letter", "D"),
        ("A cat sits on the mat.", FOUR, "leading-letter", None),  # an article, not a letter
        ("<think>so it is A</think>\nC. green", FOUR, "leading-letter", "C"),
        ("E", FOUR, "leading-letter", None),
        ("(F) 5", SIX, "leading-letter", "F"),
        ("B <answer>(C)</answer>", FOUR, "leading-letter", "C"),  # a tag always decides
        ("B. <answer>purple</answer>", FOUR, "leading-letter", None),
    ],
)
def test_parse_answer_with_any_number_of_options(completion, options, extract, letter):
    assert parse_answer(completion, options, extract) == letter


def test_options_beyond_d_are_lettered_and_read_back():
    assert format_options(SIX, "paren").splitlines()[-1] == "(F) 5"
    for letter, answer_format in [("E", "paren"), ("F", "dot"), ("E", "text")]:
        assert parse_answer(f"<answer>{answer_text(letter, SIX, answer_format)}</answer>", SIX) == letter
    with pytest.raises(ValueError, match="at most 26"):
        format_options([str(i) for i in range(27)], "dot")


def test_embedded_options_of_every_benchmark_form():
    assert split_options("Is the door open? (a) Open (b) Closed") == ("Is the door open?", ("Open", "Closed"))
    vstar = "What is the colour of the glove?\n(A) white\n(B) black\nAnswer with the option's letter directly."
    assert split_options(vstar) == ("What is the colour of the glove?", ("white", "black"))
    realworldqa = "Which is closer?\nA. The car\nB. The tree\nC. The sign\nPlease answer directly with the letter."
    assert split_options(realworldqa) == ("Which is closer?", ("The car", "The tree", "The sign"))
    with pytest.raises(ValueError, match="no options"):
        split_options("How many cars are there? Please answer with a single number.")


def test_mmstar_rows_as_the_hub_copy_holds_them():
    """Lin-Chen/MMStar embeds the options in the question; all 1,500 come out as the MMStar file lists them."""
    _need(MMSTAR)
    rows = [json.loads(line) for line in MMSTAR.open()]
    loaded = Loaded(
        BENCHMARKS["mmstar-v"],
        {},
        lambda: ((str(MMSTAR), {**r, "question": r["raw_question"], "options": None}, MMSTAR.parent) for r in rows),
    )
    items = list(loaded.items())
    kept = [r for r in rows if r["category"] in ("coarse perception", "fine-grained perception", "instance reasoning")]
    assert len(items) == len(kept) == 750
    for item, row in zip(items, kept, strict=True):
        assert (item.question, list(item.options), item.answer) == (
            row["question"],
            list(row["options"].values()),
            row["answer"],
        )


def _predictions(path, rows):
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def test_rescoring_mmstar_reproduces_the_published_52_1(tmp_path):
    """LLaVA-NeXT-34B's MMStar predictions, read by their leading letter as MMStar's authors do: 52.07%."""
    _need(MMSTAR)
    rows = [json.loads(line) for line in MMSTAR.open()]
    predictions = _predictions(
        tmp_path / "mmstar.jsonl",
        [
            {
                "id": r["index"],
                "category": r["category"],
                "answer": r["answer"],
                "options": list(r["options"].values()),
                "response": r["prediction_llava_next_yi_34b"],
            }
            for r in rows
        ],
    )
    code, printed, _ = _lgt(
        "eval", "score", "--predictions", predictions, "--benchmark", "mmstar", "--extract", "leading-letter"
    )
    lines = printed.splitlines()
    assert code == 0 and lines[0].startswith("mmstar: 52.07%") and "1,500 items, 781 correct, 0 unparsed" in lines[0]
    assert lines[1].startswith("  coarse perception: 65.60%") and "  logical reasoning: 46.00%" in printed
    assert len(lines) == 7  # the score, then its six categories
    code, printed, _ = _lgt("eval", "score", "--predictions", predictions, "--benchmark", "mmstar")
    assert printed.startswith("mmstar: 0.00%") and "1,500 unparsed" in printed  # no tags: strict reads none


def _blink_run(folder, model, flips=0):
    """A run folder of BLINK's published val predictions (BLINK's own extracted letters); ``flips`` right answers
    made wrong and as many wrong ones made right, at random: a re-run as good as the first, differing by noise."""
    rows = [json.loads(line) for line in (BLINK / f"{model}_val.jsonl").open()]
    rng = random.Random(0)
    right = [i for i, row in enumerate(rows) if row["prediction"] == row["answer"]]
    wrong = [i for i, row in enumerate(rows) if row["prediction"] != row["answer"]]
    changed = {i: "(Z)" for i in rng.sample(right, flips)} | {i: rows[i]["answer"] for i in rng.sample(wrong, flips)}
    folder.mkdir()
    _predictions(
        folder / "predictions.jsonl",
        [
            {
                "id": row["idx"],
                "benchmark": "blink",
                "category": row["task"],
                "answer": row["answer"],
                "prediction": changed.get(i, row["prediction"]),
            }
            for i, row in enumerate(rows)
        ],
    )
    return folder


def test_blink_scores_are_the_mean_of_task_accuracies_as_published(tmp_path):
    """BLINK's leaderboard (val): GPT-4o 60.0, GPT-4V 51.1, LLaVA-1.5-7B 37.1, a mean over its 14 tasks."""
    _need(BLINK)
    for model, published in [("GPT4o", "60.04"), ("GPT4V", "51.14"), ("llava_v1.5_7b", "37.13")]:
        code, printed, _ = _lgt(
            "eval", "score", "--predictions", _blink_run(tmp_path / model, model) / "predictions.jsonl"
        )
        assert code == 0 and printed.startswith(f"blink: {published}%  (category-mean"), printed.splitlines()[0]
        assert len(printed.splitlines()) == 1 + 14
    code, printed, _ = _lgt(
        "eval", "score", "--predictions", tmp_path / "GPT4o" / "predictions.jsonl", "--aggregate", "pooled"
    )
    assert printed.startswith("blink: 59.92%  (pooled")


def test_compare_tells_a_real_gain_from_noise(tmp_path):
    _need(BLINK)
    gpt4o, llava = _blink_run(tmp_path / "gpt4o", "GPT4o"), _blink_run(tmp_path / "llava", "llava_v1.5_7b")
    noisy = _blink_run(tmp_path / "gpt4o-rerun", "GPT4o", flips=60)

    code, printed, _ = _lgt("eval", "compare", gpt4o, gpt4o, "--output", tmp_path / "same")
    overall = printed.splitlines()[2]
    assert code == 0 and "| blink | **all** | 1,901 | 60.04 | 60.04 | +0.00 | [+0.00, +0.00] | 1 |" == overall

    code, printed, _ = _lgt("eval", "compare", llava, gpt4o, "--output", tmp_path / "better")
    overall = printed.splitlines()[2].split("|")
    low, high = (float(x) for x in overall[7].strip(" []").split(","))
    assert code == 0 and overall[6].strip() == "+22.91 *" and 15 < low < 22.91 < high < 30
    assert float(overall[8]) < 1e-20  # McNemar
    assert sum(line.startswith("|  | ") for line in printed.splitlines()) == 14  # a row per BLINK task

    _lgt("eval", "compare", gpt4o, noisy, "--output", tmp_path / "noise")
    overall = (tmp_path / "noise" / "compare.md").read_text().splitlines()[4].split("|")
    low, high = (float(x) for x in overall[7].strip(" []").split(","))
    assert low < 0 < high and "*" not in overall[6] and float(overall[8]) > 0.05
    with Image.open(tmp_path / "better" / "compare.png") as chart:
        assert chart.format == "PNG" and chart.height > 15 * 20


def test_paired_bootstrap_and_mcnemar_on_known_cases():
    assert mcnemar_p(0, 10) == pytest.approx(2 * 0.5**10) and mcnemar_p(5, 5) == 1.0 and mcnemar_p(0, 0) == 1.0
    a = [True] * 50 + [False] * 50
    b = [True] * 80 + [False] * 20
    result = paired(a, b, [""] * 100, {"": 1.0})
    assert result["delta"] == pytest.approx(30) and result["only_b"] == 30 and result["only_a"] == 0
    assert 20 < result["low"] < 30 < result["high"] < 40  # about 30 +- 1.96 * sqrt(0.3 * 0.7 / 100)


def test_each_benchmarks_own_aggregation():
    """pooled, the mean of categories (BLINK) and CV-Bench's: mean(2D, 3D) with 2D = mean(ADE20K, COCO)."""
    rows = (
        [{"category": "2D", "subcategory": "ADE20K", "answer": "A", "prediction": "A"}] * 3
        + [{"category": "2D", "subcategory": "ADE20K", "answer": "A", "prediction": None}]
        + [{"category": "2D", "subcategory": "COCO", "answer": "A", "prediction": "B"}] * 2
        + [{"category": "3D", "subcategory": "Omni3D", "answer": "B", "prediction": "B"}] * 2
        + [{"category": "3D", "subcategory": "Omni3D", "answer": "B", "prediction": "C"}] * 2
    )
    rows = [dict(row) for row in rows]
    pooled, by_category, cv_bench = score(rows, "pooled"), score(rows, "category-mean"), score(rows, "cv-bench")
    assert pooled["score"] == 50.0 and pooled["unparsed"] == 1 and pooled["correct"] == 5
    assert by_category["score"] == pytest.approx((50 + 50) / 2)
    assert cv_bench["score"] == pytest.approx(((75 + 0) / 2 + 50) / 2)
    assert cv_bench["categories"]["2D"]["score"] == pytest.approx(37.5) and pooled["categories"]["2D"]["score"] == 50
    groups, weights = group_weights(rows, "cv-bench")
    assert weights == {("2D", "ADE20K"): 0.25, ("2D", "COCO"): 0.25, ("3D", "Omni3D"): 0.5}


def test_the_evaluate_metric_loads_by_path_offline_and_scores_as_lgt_does():
    evaluate = pytest.importorskip("evaluate")
    from lgt.eval import METRIC_PATH

    metric = evaluate.load(METRIC_PATH)
    result = metric.compute(
        predictions=["<answer>(B)</answer>", "<answer>Closed</answer>", "B", "<answer>(C)</answer>"],
        references=["B", "B", "B", "A"],
        options=[FOUR, TWO, TWO, FOUR],
        categories=["x", "y", "y", "x"],
        aggregate="category-mean",
    )
    assert result["score"] == pytest.approx((50 + 50) / 2) and result["unparsed"] == 1 and result["correct"] == 2
    assert metric.compute(predictions=["B"], references=["B"], options=[TWO], extract="leading-letter")["score"] == 100


def test_a_benchmark_exported_for_decontamination_is_caught_by_lgt_build(tmp_path):
    _need(MMBENCH / "items.json")
    from lgt.decontam import Decontaminator

    code, printed, _ = _lgt("eval", "export", "--benchmark", "mmbench", "--data", MMBENCH, "--output", tmp_path)
    assert code == 0 and "mmbench: 54 items" in printed
    index = Decontaminator.from_benchmarks([tmp_path / "mmbench.parquet"])
    assert index.benchmarks["mmbench"]["questions"] == 54 and index.benchmarks["mmbench"]["images"] == 54
    items = list(load(BENCHMARKS["mmbench"], MMBENCH).items())
    assert index.is_contaminated(items[5].question.lower() + "?", None) == "question"
    assert index.is_contaminated("A question no benchmark asks about zebras?", items[7].images[0]) == "image"


def test_bad_input_and_an_unreachable_hub_stop_with_one_line(tmp_path):
    code, _, err = _lgt("eval", "run", "--model", "transformers:none", "--benchmark", "mmvp", "--output", tmp_path)
    assert code == 1 and len(_errors(err)) == 1 and "HF_HUB_OFFLINE" in err and "--data" in err
    code, _, err = _lgt("eval", "run", "--model", "transformers:none", "--benchmark", "nope", "--output", tmp_path)
    assert code == 2 and len(_errors(err)) == 1 and "unknown benchmark 'nope'" in err
    bad = _predictions(tmp_path / "bad.jsonl", [{"id": 1, "answer": "A", "response": "x"}])
    code, _, err = _lgt("eval", "score", "--predictions", bad)
    assert code == 2 and len(_errors(err)) == 1 and "bad.jsonl [record line 1]" in err and "category" in err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "items.jsonl").write_text('{"index": 1, "question": "Q?", "A": "x", "B": "y", "answer": "C"}\n')
    code, _, err = _lgt("eval", "export", "--benchmark", "mmbench", "--data", broken, "--output", tmp_path / "o")
    assert code == 2 and len(_errors(err)) == 1 and "items.jsonl [record 0]: not a MMBench (en, dev) row" in err
    assert not (tmp_path / "o" / "mmbench.parquet").exists()


def test_names_resolve_to_the_papers_suite():
    names = [b.name for b in resolve("paper")]
    assert names == ["vstar", "mmvp", "realworldqa", "cv-bench", "mmstar-v", "mme-realworld-v", "mmlu-pro"]
    assert [b.name for b in resolve("mmstar,lgt:ORG/NAME")] == ["mmstar", "lgt"]
    assert all(b.hub_id and b.split for b in BENCHMARKS.values())
    assert Item("1", "q", ("a", "b"), "A", "c").images == ()
