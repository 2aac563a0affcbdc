"""The engine with the transformers backend on tiny random models: real generation, cached, resumable, billed."""

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from lgt.generation import (  # noqa: E402
    CacheMissError,
    Engine,
    GenerationCache,
    ImagePart,
    Message,
    ModelSpec,
    Request,
    Sampling,
    dry_run_bill,
)
from lgt.generation.bill import format_bills  # noqa: E402
from PIL import Image  # noqa: E402
from tiny_models import build_all  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    return build_all(tmp_path_factory.mktemp("tiny-models"))


def _png(colour, size=(120, 90)) -> ImagePart:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return ImagePart(out.getvalue())


def _engine(models, name, tmp_path, **options):
    return Engine(f"transformers:{models / name}", cache=tmp_path / "cache.sqlite", progress=False, **options)


def _text(prompt, **sampling):
    return Request((Message.text("user", prompt),), Sampling(**{"max_tokens": 12, **sampling}))


def test_model_spec_strings():
    assert ModelSpec.parse("vllm:Qwen/Qwen2.5-VL-7B-Instruct") == ModelSpec("vllm", "Qwen/Qwen2.5-VL-7B-Instruct")
    spec = ModelSpec.parse("openai:Qwen/Qwen2.5-VL-7B-Instruct@http://127.0.0.1:8000/v1,http://127.0.0.1:8001/v1")
    assert spec.model == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert spec.urls == ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8001/v1")
    for bad in ("Qwen/Qwen2.5-VL-7B-Instruct", "tgi:model", "vllm:"):
        with pytest.raises(ValueError, match="BACKEND:MODEL"):
            ModelSpec.parse(bad)


def test_local_model_is_named_by_content_not_place(models, tmp_path):
    copy = tmp_path / "elsewhere" / "tiny-qwen2"
    shutil.copytree(models / "tiny-qwen2", copy)
    original, moved = ModelSpec.parse(f"transformers:{models / 'tiny-qwen2'}"), ModelSpec.parse(f"vllm:{copy}")
    assert moved.name == original.name == "tiny-qwen2"
    assert moved.revision() == original.revision()
    (copy / "generation_config.json").write_text("{}")
    assert moved.revision() != original.revision(), "a changed file is a new revision"


def test_text_and_image_requests_run_on_the_tiny_vlm(models, tmp_path):
    engine = _engine(models, "tiny-qwen2.5-vl", tmp_path, batch_size=3, max_pixels=56 * 56)
    red, blue = _png((200, 30, 30)), _png((30, 30, 200), size=(60, 120))
    requests = [
        Request((Message("user", (red, "How many dogs?")),), Sampling(n=2, max_tokens=10, seed=3)),
        Request((Message("user", (blue, "How many dogs?")),), Sampling(n=2, max_tokens=10, seed=3)),
        _text("How many dogs?", max_tokens=10, seed=3),
        _text("How many dogs?", max_tokens=10, temperature=0),
    ]
    responses = engine.generate(requests)
    assert [len(r.texts) for r in responses] == [2, 2, 1, 1]
    for request, response in zip(requests, responses, strict=True):
        assert set(response.finish_reasons) <= {"stop", "length"}
        assert 0 < response.output_tokens <= request.sampling.n * request.sampling.max_tokens
    # The image costs prompt tokens: the same text with an image is a longer prompt, and fewer under a lower cap.
    assert responses[0].prompt_tokens > responses[2].prompt_tokens
    capped = _engine(models, "tiny-qwen2.5-vl", tmp_path, max_pixels=28 * 28).generate(requests[:1])[0]
    assert capped.prompt_tokens < responses[0].prompt_tokens
    assert engine.stats.misses == 4 and engine.stats.hits == 0
    assert engine.stats.output_tokens == sum(r.output_tokens for r in responses)


def test_seeded_sampling_stop_prefill_and_banned_words(models, tmp_path):
    engine = _engine(models, "tiny-qwen2", tmp_path)
    plain = _text("Describe the picture.", seed=5, max_tokens=16)
    free = engine.generate([plain])[0].texts[0]
    assert len(free) > 6
    assert _engine(models, "tiny-qwen2", tmp_path / "other").generate([plain])[0].texts[0] == free, "seeded"
    stop = free[3:6]
    cut = engine.generate([replace(plain, sampling=replace(plain.sampling, stop=(stop,)))])[0]
    assert cut.texts[0] == free[: free.index(stop)] and cut.finish_reasons == ("stop",)
    prefilled = engine.generate([replace(plain, prefill="The answer is")])[0]
    assert prefilled.prompt_tokens > engine.generate([plain])[0].prompt_tokens
    banned_word = free.split()[0] if free.split() else free[:3]
    banned = engine.generate([replace(plain, banned_words=(banned_word,))])[0].texts[0]
    assert banned != free


def test_rebuild_is_all_hits_with_zero_backend_calls(models, tmp_path):
    requests = [_text(f"Question {i}?", seed=i) for i in range(6)]
    first = _engine(models, "tiny-qwen2", tmp_path, batch_size=4)
    answers = first.generate(requests + requests[:2])  # a repeated request is generated once
    assert first.stats.misses == 6 and first.stats.hits == 2
    again = _engine(models, "tiny-qwen2", tmp_path)
    assert again.generate(requests) == answers[:6]
    assert again.stats.hits == 6 and again.stats.misses == 0
    assert again._backend is None, "a warm rebuild must not even load the model"


def test_cache_only_miss_is_a_clear_error(models, tmp_path):
    warm = _engine(models, "tiny-qwen2", tmp_path)
    warm.generate([_text("cached")])
    cold = _engine(models, "tiny-qwen2", tmp_path, cache_only=True)
    assert cold.generate([_text("cached")])[0] == warm.generate([_text("cached")])[0]
    with pytest.raises(CacheMissError, match=r"2 of 3 requests to tiny-qwen2@\w+ are not in the generation cache"):
        cold.generate([_text("cached"), _text("new one"), _text("new two")])
    assert cold._backend is None


def test_a_setting_the_backend_does_not_take_is_a_clear_error(models, tmp_path):
    with pytest.raises(ValueError, match=r"transformers backend takes no setting 'batch_sise'; it takes batch_size"):
        _engine(models, "tiny-qwen2", tmp_path, batch_sise=4)


def test_bill_counts_prompt_tokens_with_the_model_tokenizer(models, tmp_path):
    engine = _engine(models, "tiny-qwen2.5-vl", tmp_path, max_pixels=56 * 56)
    requests = [
        Request((Message("user", (_png((9, 9, 9)), "Where is the cat?")),), Sampling(max_tokens=8, seed=1)),
        replace(_text("How many cats?", max_tokens=8, n=2), prefill="There are"),
    ]
    before = dry_run_bill(requests + requests[:1], engine)
    assert (before.requests, before.cached, before.to_generate) == (3, 0, 2)
    assert before.output_tokens_max == 8 + 2 * 8 and before.output_tokens_expected is None
    responses = engine.generate(requests)
    assert before.prompt_tokens == sum(r.prompt_tokens for r in responses), "the bill must count as the model does"
    after = dry_run_bill(requests, engine)
    assert (after.cached, after.to_generate, after.prompt_tokens) == (2, 0, 0)
    table = format_bills({"mcq_stage1": before, "verify": after}).splitlines()
    assert table[0].split()[:3] == ["stage", "requests", "cached"]
    assert table[1].split() == ["mcq_stage1", "3", "0", "2", f"{before.prompt_tokens:,}", "24", "-"]
    assert table[2].split() == ["verify", "2", "2", "0", "0", "0", "0"]


_RUN = textwrap.dedent(
    """
    import json, sys
    from lgt.generation import Engine, Message, Request, Sampling
    model, cache, log = sys.argv[1:4]
    engine = Engine(model, cache=cache, batch_size=1, progress=False)
    generate = engine.backend.generate

    def logged(requests):
        for batch in generate(requests):
            with open(log, "a") as f:
                f.writelines(requests[i].messages[0].joined_text + "\\n" for i, _ in batch)
            yield batch

    engine.backend.generate = logged
    requests = [
        Request((Message.text("user", f"Question number {i}?"),), Sampling(temperature=0, max_tokens=24))
        for i in range(30)
    ]
    print(json.dumps([r.texts for r in engine.generate(requests)]))
    """
)


def _run(models, cache, log, **kwargs):
    command = [sys.executable, "-c", _RUN, f"transformers:{models / 'tiny-qwen2'}", str(cache), str(log)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, stdout=subprocess.PIPE, env=env, text=True, **kwargs)


def _calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_kill_9_mid_stage_resumes_without_repeating_a_call(models, tmp_path):
    whole = _run(models, tmp_path / "whole.sqlite", tmp_path / "whole.log")
    expected = json.loads(whole.communicate(timeout=300)[0])
    assert len(expected) == 30 and len(_calls(tmp_path / "whole.log")) == 30

    cache, first_log, second_log = tmp_path / "killed.sqlite", tmp_path / "first.log", tmp_path / "second.log"
    victim = _run(models, cache, first_log)
    deadline = time.monotonic() + 300
    while len(_calls(first_log)) < 8 and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    first = _calls(first_log)
    assert 8 <= len(first) < 30
    with GenerationCache(cache) as kept:
        assert len(kept) >= len(first) - 1, "at most the batch in flight may be lost"

    resumed = _run(models, cache, second_log)
    assert json.loads(resumed.communicate(timeout=300)[0]) == expected
    second = _calls(second_log)
    assert len(set(first) & set(second)) <= 1, "only a batch that was in flight may be generated again"
    assert set(first) | set(second) == set(_calls(tmp_path / "whole.log"))
