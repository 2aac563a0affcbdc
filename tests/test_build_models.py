"""`lgt build` with models: the teacher writes mcq_stage1 through the engine and its cache.

Realistic rows come from hand-written teacher answers (test_llm_mcq's fixtures) fed through the cache in cache-only
mode; the tiny random text LLM runs the real model path end to end (it writes nonsense, so its questions are
rejected, counted by reason): a dry run, a first build, a rebuild that never loads the model, a kill -9 mid-stage.
"""

import contextlib
import io
import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import write_image
from lgt.answers import LETTERS
from lgt.build import build
from lgt.cli import main
from lgt.generation import Engine, GenerationCache, default_cache_path
from lgt.scene import Scene
from lgt.settings import LGTConfig
from lgt.synthesis.llm_mcq import MCQWriter, write_mcqs
from test_llm_mcq import ANSWERS, GOOD, KEPT, REJECTS, _scene, _store, store_verdicts

FIXTURE_TEACHER = "openai:fixture-teacher"
STAGE1 = ("scenes", "mcq_stage1")  # the fixture writer's answers are cached for stage 1 only (not for composition)


def _jsonl_source(folder: Path, image_ids) -> Path:
    """The scenes test_llm_mcq's answers were written for, as a JSON Lines source with real image files."""
    lines = []
    for image_id in image_ids:
        scene = _scene(image_id)
        write_image(folder / f"{image_id}.png", size=(scene.width, scene.height))
        objects = [{"id": o.id, "name": o.name, "bbox": o.bbox, "attributes": o.attributes} for o in scene.objects]
        record = {"image_id": image_id, "image": f"{image_id}.png", "caption": scene.caption, "objects": objects}
        lines.append(json.dumps({**record, "width": scene.width, "height": scene.height, "license": "CC0"}))
    (folder / "scenes.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "scenes.jsonl"


@pytest.fixture
def answered(tmp_path):
    """A JSON Lines source and a generation cache that holds the fixture teacher's answers for every scene."""
    source = _jsonl_source(tmp_path, ANSWERS)
    cache = tmp_path / "generations.sqlite"
    engine = Engine(FIXTURE_TEACHER, cache=cache, cache_only=True, progress=False)
    _store(engine, MCQWriter(), ANSWERS)
    engine.close()
    return f"jsonl:{source}", cache


def test_cached_teacher_answers_become_rows_named_by_the_teacher(answered, tmp_path):
    source, cache = answered
    output = tmp_path / "lgt"
    info = build(
        source=source,
        output=str(output),
        configs=STAGE1,
        writer=FIXTURE_TEACHER,
        generation_cache=str(cache),
        cache_only=True,
        max_pixels=0,  # the sizes the cached answers were written for
    )
    generation = info["generation"]
    assert generation["rejects"] == dict(REJECTS) and generation["writer"] == "fixture-teacher"
    assert generation["models"]["writer"]["misses"] == 0 and generation["models"]["writer"]["hits"] == 4 + 2 + 1
    assert info["arguments"]["writer"] == FIXTURE_TEACHER and info["arguments"]["cache_only"] is True

    rows = [row for path in sorted(output.glob("mcq_stage1/*.parquet")) for row in pq.read_table(path).to_pylist()]
    assert {row["generator"] for row in rows} == {"stage1/llm@1:fixture-teacher"}
    assert sorted(row["question"] for row in rows) == sorted(q for questions in KEPT.values() for q in questions)
    assert {row["image_id"] for row in rows} == set(KEPT)
    by_question = {q["question"]: q for q in GOOD}
    for row in rows:
        if row["question"] in by_question and row["image_id"] == "good":
            written = by_question[row["question"]]
            correct = written["options"][LETTERS.index(written["answer"])]
            assert row["options"][LETTERS.index(row["answer"])] == correct
            assert sorted(row["options"]) == sorted(written["options"]) and row["skill"] == written["skill"]
            assert [g["object_id"] for g in row["grounding"]] == written["objects"]
    assert sum(row["image_id"] == "good" for row in rows) == len(GOOD)

    card = (output / "README.md").read_text()
    assert "## Generation" in card and "`fixture-teacher`" in card and "`stage1/llm@1:fixture-teacher`" in card
    for reason, count in REJECTS.items():
        assert f"| `{reason}` | {count} |" in card
    assert "| writer | `fixture-teacher` | 7 | 7 | 0 |" in card


def test_a_verifier_keeps_the_questions_it_answers_the_same_way(answered, tmp_path):
    source, cache = answered
    teacher = Engine(FIXTURE_TEACHER, cache=cache, cache_only=True, progress=False)
    drafts = write_mcqs([_scene(image_id) for image_id in ANSWERS], teacher).drafts
    store_verdicts(Engine("openai:fixture-verifier", cache=cache, progress=False), drafts)
    output = tmp_path / "lgt"
    info = build(
        source=source,
        output=str(output),
        configs=STAGE1,
        writer=FIXTURE_TEACHER,
        verifier="openai:fixture-verifier",
        generation_cache=str(cache),
        cache_only=True,
        max_pixels=0,  # the sizes the cached answers were written for
    )
    # In turn per image: agrees, disagrees, malformed, agrees.
    kept = {image_id: [q for i, q in enumerate(questions) if i % 4 in (0, 3)] for image_id, questions in KEPT.items()}
    rows = [row for path in sorted(output.glob("mcq_stage1/*.parquet")) for row in pq.read_table(path).to_pylist()]
    assert sorted(row["question"] for row in rows) == sorted(q for questions in kept.values() for q in questions)
    generator = "stage1/llm@1:fixture-teacher+verify@1:fixture-verifier"
    assert {row["generator"] for row in rows} == {generator}
    rejects = info["generation"]["rejects"]
    assert (rejects["verifier_disagrees"], rejects["verifier_malformed"]) == (3, 1)
    card = (output / "README.md").read_text()
    assert "A verifier, `fixture-verifier`" in card and "| verifier | `fixture-verifier` | 8 | 8 | 0 |" in card


def test_cache_only_miss_is_one_error_line_and_writes_nothing(answered, tmp_path, capsys):
    source, cache = answered
    with GenerationCache(cache) as generations:
        generations._db.execute("DELETE FROM generations WHERE rowid = (SELECT MAX(rowid) FROM generations)")
    output = tmp_path / "out"
    arguments = ["build", "--source", source, "--output", str(output), "--writer", FIXTURE_TEACHER, "--cache-only"]
    arguments += ["--max-pixels", "keep"]  # the sizes the cached answers were written for
    arguments += ["--configs", ",".join(STAGE1)]
    assert main([*arguments, "--cache", str(cache)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and "1 of 1 requests to fixture-teacher are not in the generation cache" in errors[0]
    assert not output.exists() and not list(tmp_path.glob(".out-*"))

    missing = tmp_path / "nowhere" / "generations.sqlite"
    assert main([*arguments, "--cache", str(missing)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and f"no generation cache at {missing}" in errors[0]
    assert not missing.parent.exists() and not output.exists()


def test_a_teacher_whose_every_question_is_rejected_stops_the_build_saying_why(tmp_path, capsys):
    source = _jsonl_source(tmp_path, ["never-good"])
    cache = tmp_path / "generations.sqlite"
    engine = Engine(FIXTURE_TEACHER, cache=cache, cache_only=True, progress=False)
    _store(engine, MCQWriter(), {"never-good": ANSWERS["never-good"]})
    engine.close()
    output = tmp_path / "out"
    arguments = ["build", "--source", f"jsonl:{source}", "--output", str(output), "--writer", FIXTURE_TEACHER]
    arguments += ["--max-pixels", "keep"]  # the sizes the cached answers were written for
    arguments += ["--configs", ",".join(STAGE1)]
    assert main([*arguments, "--cache", str(cache), "--cache-only"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and "mcq_stage1 came out empty: the model kept no question (" in errors[0]
    assert "truncated 1" in errors[0] and not output.exists()


def test_model_settings_are_checked_up_front(capsys):
    for settings, message in [
        ({"stage1": "llm"}, "needs a writer model"),
        ({"writer": "tgi:some-model"}, "BACKEND:MODEL"),
        ({"verifier": "vllm:v"}, "checks what the writer writes"),
        ({"writer": "vllm:t", "stage1": "questions"}, "stage1 must be one of templates, llm, both"),
        ({"writer": "vllm:t", "questions_per_image": 0}, "questions_per_image must be a whole number"),
    ]:
        with pytest.raises(ValueError, match=message):
            LGTConfig(name="mcq_stage1", **settings)
    assert LGTConfig(name="mcq_stage1", writer="vllm:t").stage1_writer == "llm"
    assert LGTConfig(name="mcq_stage1").stage1_writer == "templates"
    with pytest.raises(SystemExit):
        main(["build", "--writer", "vllm:t", "--engine-args", "[16]"])
    assert "--engine-args: must be a JSON object" in capsys.readouterr().err


def test_default_generation_cache_lives_under_hf_home(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.delenv("LGT_CACHE_DIR", raising=False)
    assert default_cache_path() == Path(constants.HF_HOME) / "lgt" / "generations.sqlite"
    monkeypatch.setenv("LGT_CACHE_DIR", str(tmp_path))
    assert default_cache_path() == tmp_path / "generations.sqlite"


# ---- the tiny random LLM, for real ----

TINY_ARGS = ["--num-images", "8", "--stage1", "both", "--questions-per-image", "1", "--configs", "scenes,mcq_stage1"]


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tiny_models import build_tiny_llm

    root = tmp_path_factory.mktemp("tiny-teacher")
    return f"transformers:{build_tiny_llm(root / 'tiny-qwen2')}", root


def _lgt_main(*arguments) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(map(str, arguments)))
    return code, out.getvalue()


def _bill_line(printed: str) -> list[str]:
    return next(line for line in printed.splitlines() if line.startswith("mcq_stage1 writer")).split()[2:]


def _parquet(output: Path) -> dict[str, bytes]:
    return {str(path.relative_to(output)): path.read_bytes() for path in sorted(output.glob("*/*.parquet"))}


def _generations(cache: Path) -> dict[bytes, tuple]:
    with sqlite3.connect(cache) as db:
        return {row[0]: row[1:] for row in db.execute("SELECT key, texts, finish_reasons FROM generations")}


@pytest.fixture(scope="module")
def first_build(tiny_teacher):
    """A dry run, then the first build with the tiny teacher; a module of checks reads them."""
    teacher, root = tiny_teacher
    cache, output = root / "generations.sqlite", root / "lgt"
    common = ["build", "--writer", teacher, *TINY_ARGS, "--cache", cache, "--output", output]
    code, bill = _lgt_main(*common, "--dry-run")
    assert code == 0 and not output.exists() and not cache.exists(), "a dry run writes nothing"
    code, printed = _lgt_main(*common)
    assert code == 0
    return {"common": common, "bill": bill, "printed": printed, "cache": cache, "output": output, "root": root}


def test_tiny_teacher_end_to_end_then_a_rebuild_with_no_model_call(first_build, monkeypatch):
    output = first_build["output"]
    info = json.loads((output / "lgt_build.json").read_text())
    generation = info["generation"]
    stats = generation["models"]["writer"]
    assert stats["misses"] == stats["requests"] >= 8 and stats["hits"] == 0 and stats["output_tokens"] > 0
    assert generation["writer"].startswith("tiny-qwen2@") and generation["stage1"] == "both"
    # Random weights write no usable JSON: every answer is counted as rejected, and every image retried.
    assert sum(generation["rejects"].values()) >= stats["requests"] and generation["questions"] == 0
    card = (output / "README.md").read_text()
    assert f"`{generation['writer']}`" in card and "| `malformed_json` |" in card
    assert (
        f"writer {generation['writer']}: {stats['requests']} requests, 0 answered by the cache (0%)"
        in (first_build["printed"])
    )

    first = _parquet(output)

    def no_model(*args):
        raise AssertionError("a rebuild from a warm cache must not load the model")

    monkeypatch.setattr("lgt.generation.engine.open_backend", no_model)
    code, printed = _lgt_main(*first_build["common"])
    assert code == 0
    again = json.loads((output / "lgt_build.json").read_text())["generation"]
    assert again["models"]["writer"]["hits"] == stats["requests"] and again["models"]["writer"]["misses"] == 0
    assert again["rejects"] == generation["rejects"]
    assert f"{stats['requests']} answered by the cache (100%), 0 model calls" in printed
    assert _parquet(output) == first and first


def test_dry_run_counts_the_build_requests_with_the_model_tokenizer(first_build):
    requests, cached, to_generate, prompt_tokens, max_output, expected = _bill_line(first_build["bill"])
    assert (requests, cached, to_generate, expected) == ("8", "0", "8", "-")
    assert int(max_output.replace(",", "")) == 8 * 256
    # The tokens the model itself counted for the first round of requests, read back from the cache.
    engine = Engine(first_build["common"][2], cache=first_build["cache"], cache_only=True, progress=False)
    scenes = [
        Scene.from_row(row)
        for path in first_build["output"].glob("scenes/*.parquet")
        for row in pq.read_table(path).to_pylist()
    ]
    first_round = engine.generate([MCQWriter(questions_per_scene=1).request(scene, 0) for scene in scenes])
    assert int(prompt_tokens.replace(",", "")) == sum(response.prompt_tokens for response in first_round)

    code, after = _lgt_main(*first_build["common"], "--dry-run")
    requests, cached, to_generate, prompt_tokens, _, expected = _bill_line(after)
    assert (code, requests, cached, to_generate, prompt_tokens, expected) == (0, "8", "8", "0", "0", "0")


@pytest.mark.slow
def test_kill_9_mid_stage_then_rerun_gives_the_same_build_with_no_call_repeated(first_build, tmp_path):
    """Each batch the backend finishes is in the cache before the next one starts."""
    cache, output = tmp_path / "generations.sqlite", tmp_path / "lgt"
    command = [sys.executable, "-m", "lgt.cli", *map(str, first_build["common"][:-4])]
    command += ["--cache", str(cache), "--output", str(output), "-q"]
    victim = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while victim.poll() is None and time.monotonic() < deadline and len(_cached_keys(cache)) < 8:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL, "the build finished before it could be killed"
    kept = len(_cached_keys(cache))
    total = json.loads((first_build["output"] / "lgt_build.json").read_text())["generation"]["models"]["writer"]
    assert 8 <= kept < total["requests"] and not output.exists()

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    stats = json.loads((output / "lgt_build.json").read_text())["generation"]["models"]["writer"]
    assert stats["hits"] == kept and stats["misses"] == total["requests"] - kept, "no cached answer asked again"
    assert _generations(cache) == _generations(first_build["cache"]), "the same answers as an uninterrupted build"
    assert _parquet(output) == _parquet(first_build["output"])


def _cached_keys(cache: Path) -> set:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{cache}?mode=ro", uri=True)) as db:
            return {row[0] for row in db.execute("SELECT key FROM generations")}
    except sqlite3.Error:  # not created yet
        return set()
