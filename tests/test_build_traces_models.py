"""`lgt build --teacher ... --reasoner ...`: the trace stage through the engine and its cache, tiny random models.

A random VLM writes no usable chain of thought, so the test runs three builds on one image: the tiny teacher writes
(and everything it wrote is rejected, counted by reason); then its cached answers are replaced by what a capable
teacher writes (the cache is the real one, only the texts change), so the tiny reasoner is asked to continue them;
then a rebuild makes no model call at all and writes the same rows.
"""

import json

import pyarrow.parquet as pq
import pytest

pytest.importorskip("torch")
pytest.importorskip("torchvision")

from datasets import Dataset  # noqa: E402
from lgt.cli import main  # noqa: E402
from lgt.generation import GenerationCache  # noqa: E402

CONFIGS = "mcq_stage1,traces_stage1,sft_stage1,dpo_stage1"
ARGS = ["--num-images", "1", "--traces-per-mcq", "2", "--short-max-tokens", "12", "--expansion-max-tokens", "12"]
CAPABLE = (  # two short chains of thought per question, as a capable teacher writes them: one answers A, one B
    "<think>I look at the image and check each option against what I see.</think> <answer>(A)</answer>",
    "<think>Looking at the picture again, one option fits what is there.</think> <answer>(B)</answer>",
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tiny_models import build_all

    return build_all(tmp_path_factory.mktemp("tiny-models"))


def _build(tiny, cache, output, *extra):
    models = [
        "--teacher",
        f"transformers:{tiny / 'tiny-qwen2.5-vl'}",
        "--reasoner",
        f"transformers:{tiny / 'tiny-qwen2'}",
    ]
    code = main(
        ["build", "--configs", CONFIGS, *ARGS, *models, "--cache", str(cache), "--output", str(output), *extra]
    )
    assert code == 0
    return json.loads((output / "lgt_build.json").read_text())


def _capable(cache, rewritten):
    """A copy of ``cache`` in which the teacher's answers are the capable teacher's."""
    rows = GenerationCache(cache).to_dataset().to_list()
    for row in rows:
        if row["model"] == "tiny-qwen2.5-vl":
            row.update(texts=list(CAPABLE), finish_reasons=["stop", "stop"])
    GenerationCache(rewritten).import_dataset(Dataset.from_list(rows))


def test_model_traces_through_the_build_then_a_rebuild_from_the_cache_alone(tiny, tmp_path):
    first = _build(tiny, tmp_path / "first.sqlite", tmp_path / "first")["trace_generation"]["traces_stage1"]
    teacher = first["models"]["teacher"]
    assert teacher["requests"] == teacher["misses"] == first["mcqs"] > 0 and teacher["output_tokens"] > 0
    assert first["traces"] == 0 and sum(first["rejects"].values()) == 2 * first["mcqs"]

    _capable(tmp_path / "first.sqlite", tmp_path / "capable.sqlite")
    info = _build(tiny, tmp_path / "capable.sqlite", tmp_path / "second")
    second = info["trace_generation"]["traces_stage1"]
    assert second["models"]["teacher"]["hits"] == second["models"]["teacher"]["requests"] == first["mcqs"]
    reasoner = second["models"]["reasoner"]
    assert reasoner["requests"] == reasoner["misses"] == 2 * first["mcqs"] and reasoner["output_tokens"] > 0
    traces = pq.read_table(next((tmp_path / "second" / "traces_stage1").glob("*.parquet"))).to_pylist()
    assert {row["kind"] for row in traces} <= {"O", "X", "O→O", "X→O", "O→X", "X→X"} and traces
    assert all(row["teacher"].startswith("tiny-qwen2.5-vl@") for row in traces)
    assert {row["predicted"] for row in traces if not row["cue"]} == {"A", "B"}
    card = (tmp_path / "second" / "README.md").read_text()
    assert "## Trace generation" in card and "## Trace statistics" in card

    again = _build(tiny, tmp_path / "capable.sqlite", tmp_path / "third", "--cache-only")
    for role, stats in again["trace_generation"]["traces_stage1"]["models"].items():
        assert stats["hits"] == stats["requests"] and stats["misses"] == 0, role
    for config in ("traces_stage1", "sft_stage1"):
        for path in (tmp_path / "second" / config).glob("*.parquet"):
            assert pq.read_table(path).equals(pq.read_table(tmp_path / "third" / config / path.name)), path


def test_a_judge_labels_a_sample_of_the_traces_for_the_card_through_the_cache(tiny, tmp_path):
    from lgt.build import build

    settings = dict(
        source="scenes",
        num_images=2,
        configs=("traces_stage1",),
        judged_traces=3,
        judge=f"transformers:{tiny / 'tiny-qwen2'}",
        generation_cache=str(tmp_path / "judge.sqlite"),
    )
    judged = build(output=str(tmp_path / "first"), **settings)["trace_judge"]["traces_stage1"]
    assert judged["judged"] == 3 and judged["accepted"] + sum(judged["rejects"].values()) == 3
    assert judged["judge"].startswith("tiny-qwen2@") and judged["prompt"].startswith("trace_judge")
    assert "LLM judge" in (tmp_path / "first" / "README.md").read_text()
    again = build(output=str(tmp_path / "again"), cache_only=True, **settings)["trace_judge"]["traces_stage1"]
    assert again == judged  # the same sample, answered from the cache
