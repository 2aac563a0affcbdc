"""`lgt eval run` end to end on the tiny random Qwen2.5-VL through the transformers backend: real MMBench items with
their images, real MMLU questions (text only) and an lgt build's test split; reruns from the cache; a checkpoint
retrained at the same path is a new model. Accuracy is meaningless here (the model is random); the pipeline is real.
"""

import contextlib
import io
import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import SHARED_DATA
from lgt.cli import main
from lgt.eval.benchmarks import BENCHMARKS, lgt_benchmark, load
from lgt.eval.run import EVAL_STYLE, request
from lgt.formats import SYSTEM_PROMPT, user_text
from lgt.generation import Engine, ModelSpec
from lgt.generation import backend as generation_backend

MMBENCH = SHARED_DATA / "mmbench_samples"
MMLU = SHARED_DATA / "mmlu_test_sample" / "mmlu_test_10_per_subject.jsonl"
SETTINGS = ["--max-tokens", "16", "--max-pixels", "3136"]  # the tiny model's processor sees a few patches


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tiny_models import build_tiny_vlm

    return build_tiny_vlm(tmp_path_factory.mktemp("eval-model") / "tiny-qwen2.5-vl")


def _lgt(*arguments) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in arguments])
    return code, out.getvalue(), err.getvalue()


def _rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "predictions.jsonl").open(encoding="utf-8")]


def _mmlu(path: Path, count: int) -> Path:
    path.write_text("".join(MMLU.open(encoding="utf-8").readlines()[:count]), encoding="utf-8")
    return path


@pytest.fixture
def suite(tmp_path):
    """MMBench's samples and 20 MMLU questions as `--data` lays out several benchmarks: one entry per name."""
    for path in (MMBENCH / "items.json", MMLU):
        if not path.exists():
            pytest.skip(f"shared data not found at {path}")
    data = tmp_path / "data"
    data.mkdir()
    (data / "mmbench").symlink_to(MMBENCH)
    _mmlu(data / "mmlu.jsonl", 20)
    return data


def test_mmbench_with_images_and_mmlu_text_end_to_end_then_all_from_the_cache(tiny_vlm, suite, tmp_path):
    model, cache = f"transformers:{tiny_vlm}", tmp_path / "generations.sqlite"
    common = ["eval", "run", "--model", model, "--cache", cache, *SETTINGS]

    # A run that stopped after ten MMLU questions: the full run picks up its answers.
    code, _, _ = _lgt(
        *common, "--benchmark", "mmlu", "--data", _mmlu(tmp_path / "ten.jsonl", 10), "--output", tmp_path / "stopped"
    )
    assert code == 0
    code, printed, _ = _lgt(*common, "--benchmark", "mmbench,mmlu", "--data", suite, "--output", tmp_path / "run1")
    assert code == 0
    assert "generation: 74 requests, 10 answered by the cache (14%), 64 model calls" in printed
    assert printed.splitlines()[0].startswith("mmbench: ") and "54 items" in printed.splitlines()[0]

    rows = _rows(tmp_path / "run1")
    assert [r["benchmark"] for r in rows] == ["mmbench"] * 54 + ["mmlu"] * 20
    for row in rows:
        assert set(row) == {
            "id",
            "benchmark",
            "category",
            "subcategory",
            "question",
            "options",
            "answer",
            "response",
            "prediction",
            "finish_reason",
        }
        assert row["prediction"] is None or row["prediction"] in "ABCD"[: len(row["options"])]
    assert sum(len(r["options"]) == 3 for r in rows) == 4  # MMBench's 3-option items keep 3 options

    # What the model was asked is what SFT rows show, the image included: every request is in the cache.
    items = {
        b: list(load(BENCHMARKS[b], suite / p).items()) for b, p in (("mmbench", "mmbench"), ("mmlu", "mmlu.jsonl"))
    }
    requests = [request(item, 16) for item in items["mmbench"] + items["mmlu"]]
    assert [len(r.images) for r in requests] == [1] * 54 + [0] * 20
    first = requests[0].messages
    assert first[0].joined_text == SYSTEM_PROMPT
    assert first[1].joined_text == user_text(
        items["mmbench"][0].question, list(items["mmbench"][0].options), EVAL_STYLE
    )
    engine = Engine(model, cache=cache, cache_only=True, progress=False, max_pixels=3136)
    assert [r.texts[0] for r in engine.generate(requests)] == [row["response"] for row in rows]

    scores = json.loads((tmp_path / "run1" / "scores.json").read_text())
    mmbench = scores["benchmarks"]["mmbench"]
    assert mmbench["source"]["hub_id"] == "lmms-lab/MMBench" and mmbench["source"]["revision"].startswith("sha256:")
    assert mmbench["items"] == 54 and mmbench["unparsed"] + mmbench["correct"] <= 54
    assert scores["model"] == "transformers:tiny-qwen2.5-vl" and len(scores["model_revision"]) == 16
    assert scores["protocol"]["max_tokens"] == 16 and scores["protocol"]["max_pixels"] == 3136
    for name in ("scores.json", "report.md", "predictions.jsonl"):
        text = (tmp_path / "run1" / name).read_text()
        assert str(tmp_path) not in text and str(SHARED_DATA) not in text and str(tiny_vlm) not in text
    assert "| mmbench | " in (tmp_path / "run1" / "report.md").read_text()

    code, printed, _ = _lgt(*common, "--benchmark", "mmbench,mmlu", "--data", suite, "--output", tmp_path / "run2")
    assert code == 0 and "generation: 74 requests, 74 answered by the cache (100%), 0 model calls" in printed
    assert (tmp_path / "run2" / "predictions.jsonl").read_bytes() == (
        tmp_path / "run1" / "predictions.jsonl"
    ).read_bytes()
    code, printed, _ = _lgt("eval", "compare", tmp_path / "run1", tmp_path / "run2", "--output", tmp_path)
    assert code == 0 and "| mmbench | **all** | 54 |" in printed and "+0.00 | [+0.00, +0.00] | 1 |" in printed


def test_an_lgt_builds_test_split_end_to_end(tiny_vlm, tmp_path):
    from lgt.build import build

    info = build(source="scenes", num_images=30, configs=("mcq_stage1",), output=str(tmp_path / "lgt"))
    code, printed, _ = _lgt(
        "eval",
        "run",
        "--model",
        f"transformers:{tiny_vlm}",
        "--benchmark",
        f"lgt:{tmp_path / 'lgt'}",
        "--output",
        tmp_path / "run",
        "--cache",
        tmp_path / "cache.sqlite",
        *SETTINGS,
    )
    assert code == 0
    rows = _rows(tmp_path / "run")
    assert len(rows) == info["rows"]["mcq_stage1"]["test"] > 0
    skills = {row["category"] for row in rows}
    assert skills and all(line.split(":")[0].strip() in skills for line in printed.splitlines()[1 : 1 + len(skills)])
    scores = json.loads((tmp_path / "run" / "scores.json").read_text())
    assert scores["benchmarks"]["lgt"]["source"]["data"] == "lgt"
    assert str(tmp_path) not in (tmp_path / "run" / "scores.json").read_text()
    assert lgt_benchmark("ORG/NAME").hub_id == "ORG/NAME"


def test_a_checkpoint_retrained_at_the_same_path_is_a_new_model(tiny_vlm, tmp_path, monkeypatch):
    """Every byte of a model's files decides its cache identity, so stale answers are never read; a copy still hits,
    and an unchanged folder is not read again."""
    weights = tmp_path / "big" / "model.safetensors"
    weights.parent.mkdir()
    weights.write_bytes(os.urandom(20 << 20))
    spec = ModelSpec.parse(f"vllm:{weights.parent}")
    before = spec.revision()
    with open(weights, "r+b") as f:  # one weight in the middle of a shard: ends untouched (a frozen vision tower)
        f.seek(10 << 20)
        f.write(bytes(b ^ 0xFF for b in f.read(4)))
    assert spec.revision() != before

    read = []
    monkeypatch.setattr(
        generation_backend, "_sha256", lambda path, real=generation_backend._sha256: read.append(path) or real(path)
    )
    again = spec.revision()
    assert read == [] and spec.revision() == again, "an unchanged folder is remembered, not read again"

    if not MMLU.exists():
        pytest.skip(f"shared data not found at {MMLU}")
    checkpoint = shutil.copytree(tiny_vlm, tmp_path / "checkpoints" / "tiny-qwen2.5-vl")
    data, cache = _mmlu(tmp_path / "mmlu.jsonl", 6), tmp_path / "cache.sqlite"
    common = ["eval", "run", "--benchmark", "mmlu", "--data", data, "--cache", cache, *SETTINGS]
    assert _lgt(*common, "--model", f"transformers:{tiny_vlm}", "--output", tmp_path / "a")[0] == 0
    code, printed, _ = _lgt(*common, "--model", f"transformers:{checkpoint}", "--output", tmp_path / "b")
    assert code == 0 and "6 answered by the cache (100%)" in printed, "a copied checkpoint is the same model"

    import torch
    from transformers import AutoModelForImageTextToText

    retrained = AutoModelForImageTextToText.from_pretrained(checkpoint)
    with torch.no_grad():
        retrained.model.language_model.layers[0].mlp.up_proj.weight.mul_(1.5)
    retrained.save_pretrained(checkpoint)
    code, printed, _ = _lgt(*common, "--model", f"transformers:{checkpoint}", "--output", tmp_path / "c")
    assert code == 0 and "6 requests, 0 answered by the cache (0%), 6 model calls" in printed
