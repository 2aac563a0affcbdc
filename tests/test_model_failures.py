"""The build contract on the model path (issue 17), through the real `lgt` command.

A teacher served by misbehaving OpenAI-compatible servers on 127.0.0.1 (tests/openai_server.py, each a process of its
own): every fault ends the build with one line and the right exit code, the previous build at --output untouched; a
rerun against a healthy server asks only for what is missing; Ctrl-C or SIGTERM end a build hung on its server within
seconds; a fleet finishes when one replica dies. Bad model names, URLs and --engine-args stop a build before any work,
cache files that are not lgt's are refused and left as they were, and a cache on read-only storage rebuilds with
--cache-only. Builds run in this process (`lgt.cli.main`) where only the outcome is checked, in a process of their own
where signals, kills or read-only mounts are involved.
"""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("openai")

from conftest import FOREGROUND_SIGNALS  # noqa: E402
from lgt.build import build  # noqa: E402
from lgt.cli import main  # noqa: E402
from lgt.generation import GenerationCache  # noqa: E402
from lgt.generation.backend import BACKENDS, backend_class, check_models  # noqa: E402
from test_openai_backend import FAULT_LINES  # noqa: E402

CONFIGS = "scenes,mcq_stage1,traces_stage1"
CLI = f"{FOREGROUND_SIGNALS}; import sys; from lgt.cli import main; sys.exit(main(sys.argv[1:]))"
QUICK = '{"concurrency": 1, "max_retries": 1, "timeout": 1.5}'


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A finished build (scripted traces, no model): what a failing build must leave in place."""
    output = tmp_path_factory.mktemp("previous") / "out"
    build(source="scenes", num_images=1, output=str(output), configs=tuple(CONFIGS.split(",")))
    return output


@pytest.fixture
def previous(built, tmp_path):
    output = tmp_path / "out"
    shutil.copytree(built, output)
    return output, _snapshot(output)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def _parquet(folder: Path) -> dict[str, bytes]:
    return {name: data for name, data in _snapshot(folder).items() if name.endswith(".parquet")}


def _arguments(output, cache, teacher: str, *more) -> list[str]:
    common = ["build", "--source", "scenes", "--num-images", "1", "--configs", CONFIGS, "--teacher", teacher]
    return [*common, "--cache", str(cache), "--output", str(output), "-q", *more]


def _lgt(capsys, *arguments) -> tuple[int, list[str]]:
    """`lgt ...` in this process: the exit code and the lines it wrote to stderr."""
    code = main(list(map(str, arguments)))
    return code, capsys.readouterr().err.strip().splitlines()


def _untouched(output: Path, before: dict) -> bool:
    return _snapshot(output) == before and not list(output.parent.glob(f".{output.name}-*"))


@pytest.mark.parametrize("fault", FAULT_LINES)
def test_a_server_fault_stops_the_build_with_one_line_and_the_previous_build_stays(
    serve, previous, tmp_path, capsys, fault
):
    """Findings 3 and 4: 400, 500, 429, truncated bodies, timeouts, HTML, JSON without choices ... were 60-150-line
    tracebacks; a server that ignores n, or a reply with no text, silently made a build of fewer traces."""
    output, before = previous
    server = serve(fault, after=2)
    teacher = f"openai:served@{server.url}"
    code, lines = _lgt(capsys, *_arguments(output, tmp_path / "c.sqlite", teacher, "--engine-args", QUICK))
    assert (code, len(lines)) == (FAULT_LINES[fault][0], 1), lines
    assert lines[0].startswith("lgt: error: the openai backend, model served: ") and server.url in lines[0]
    assert FAULT_LINES[fault][1].format(url=server.url) in lines[0]
    assert _untouched(output, before)
    with GenerationCache(tmp_path / "c.sqlite", read_only=True) as cache:
        assert len(cache) == 2, "the answers before the fault are cached, nothing else"


def _run(arguments) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CLI, *map(str, arguments)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_ends_a_build_hung_on_its_server_within_seconds(serve, previous, tmp_path, stop):
    """Finding 3: with the server hung, SIGTERM and then SIGINT were ignored for over a minute (HTTP threads blocked
    up to the 600 s timeout, retried 7 times); only kill -9 ended the build. Here the default timeout and retries."""
    output, before = previous
    server = serve("hang")
    build_process = _run(_arguments(output, tmp_path / "c.sqlite", f"openai:served@{server.url}"))
    deadline = time.monotonic() + 120
    while server.stats()["requests"] < 1 and build_process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert build_process.poll() is None, build_process.communicate()
    time.sleep(0.5)  # every request in flight, each thread blocked on its socket
    sent = time.monotonic()
    build_process.send_signal(stop)
    _, err = build_process.communicate(timeout=30)
    assert time.monotonic() - sent < 5, "a stop signal must not wait for the server"
    assert build_process.returncode == 128 + stop
    assert err.strip().splitlines() == [f"lgt: interrupted; {output} still holds the previous build"]
    assert _untouched(output, before)


def test_a_rerun_against_a_healthy_server_asks_only_for_what_is_missing(serve, previous, tmp_path):
    """Finding 2: a fault left the cache holding what was not an answer; here it holds exactly the answers before
    the fault, and the rerun sends the rest, counted by the server."""
    output, before = previous
    failing, healthy = serve("500", after=3), serve()
    cache = tmp_path / "c.sqlite"
    first = _run(_arguments(output, cache, f"openai:served@{failing.url}", "--engine-args", QUICK))
    _, err = first.communicate(timeout=300)
    assert first.returncode == 1 and len(err.strip().splitlines()) == 1 and _untouched(output, before)
    rerun = _run(_arguments(output, cache, f"openai:served@{healthy.url}"))
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    teacher = json.loads((output / "lgt_build.json").read_text())["trace_generation"]["traces_stage1"]["models"]
    assert teacher["teacher"]["hits"] == 3 and healthy.stats()["requests"] == teacher["teacher"]["misses"] > 0
    assert failing.stats() == {"requests": 5, "answered": 3}  # the fourth request and its one retry


def test_a_fleet_build_finishes_when_a_replica_dies(serve, previous, tmp_path, capsys):
    """Finding 6: one dead replica killed a fleet build, and the error did not name its URL."""
    output, before = previous
    dying, healthy = serve(die_after=2), serve()
    teacher = f"openai:served@{dying.url},{healthy.url}"
    fleet = '{"concurrency": 2, "max_retries": 1}'
    code, lines = _lgt(capsys, *_arguments(output, tmp_path / "c.sqlite", teacher, "--engine-args", fleet))
    assert code == 0 and _snapshot(output) != before
    (warning,) = [line for line in lines if "out of rotation" in line]
    assert warning.startswith(f"lgt: {dying.url} is out of rotation (connection failed:") and healthy.url in warning
    assert dying.process.wait(timeout=30) == 1


@pytest.mark.parametrize(
    ("model", "problem"),
    [
        ("transformers:/nonexistent/tiny-model", "there is no model folder at /nonexistent/tiny-model"),
        ("vllm:./models/missing", "there is no model folder at ./models/missing"),
        ("openai:served@127.0.0.1:8000/v1", "'127.0.0.1:8000/v1' is not a server URL such as http://"),
    ],
)
def test_a_bad_model_name_stops_the_build_before_any_work(previous, tmp_path, capsys, model, problem):
    """Finding 8: a missing local model path failed with "Repo id must be in the form..." after two configs were
    already prepared; a URL without a scheme was a traceback."""
    output, before = previous
    code, lines = _lgt(capsys, *_arguments(output, tmp_path / "c.sqlite", model))
    assert (code, len(lines)) == (2, 1) and problem in lines[0] and "Repo id" not in lines[0]
    assert _untouched(output, before) and not (tmp_path / "c.sqlite").exists()


# Per setting kind: a value it takes, and values of the wrong type (or out of bounds) it must refuse.
KIND_VALUES = {
    "whole": (4, ["4", 2.5, True, None]),
    "number": (2.5, ["2.5", True, float("nan"), None]),
    "text": ("auto", [4, True, ["auto"]]),
    "flag": (True, ["yes", 1, None]),
    "object": ({"image": 1}, [[1], "x", 3]),
}
SETTINGS = [(name, key) for name in BACKENDS for key in backend_class(name).SETTINGS]


@pytest.mark.parametrize(("backend", "key"), SETTINGS, ids=[f"{b}-{k}" for b, k in SETTINGS])
def test_every_engine_arg_of_every_backend_is_checked_by_type(backend, key, tmp_path):
    """Finding 8: wrong-type --engine-args values were tracebacks or lines that never named the key."""
    setting = backend_class(backend).SETTINGS[key]
    model = f"{backend}:served@http://127.0.0.1:9/v1" if backend == "openai" else f"{backend}:{tmp_path}"
    good, bad = KIND_VALUES[setting.kind]
    good = good if setting.at_most is None else min(good, setting.at_most)
    check_models({"teacher": model}, {key: good})
    for value in bad:
        with pytest.raises(ValueError) as raised:
            check_models({"teacher": model}, {key: value})
        message = str(raised.value)
        assert (
            message.startswith(f"--engine-args: {key!r} must be ") and f"the {backend} backend of --teacher" in message
        )
    if setting.at_least is not None:
        with pytest.raises(ValueError, match=rf"'{key}' must be .*from {setting.at_least:g} up"):
            check_models({"teacher": model}, {key: setting.at_least - 1})
    if backend != "vllm" or _importable("vllm"):  # without vLLM, its own engine arguments cannot be told
        with pytest.raises(ValueError, match=rf"the {backend} backend of --teacher takes no setting '{key}x'"):
            check_models({"teacher": model}, {f"{key}x": good})


def test_a_wrong_engine_arg_stops_the_build_before_any_work(previous, tmp_path, capsys):
    output, before = previous
    arguments = _arguments(output, tmp_path / "c.sqlite", "openai:served@http://127.0.0.1:9/v1")
    code, lines = _lgt(capsys, *arguments, "--engine-args", '{"timeout": "30"}')
    assert (code, lines) == (
        2,
        ["lgt: error: --engine-args: 'timeout' must be a number above 0, not '30' (the openai backend of --teacher)"],
    )
    assert _untouched(output, before)


@pytest.mark.parametrize("preset", [False, True])
def test_a_dry_run_with_a_hub_model_offline_says_how_to_give_it(tmp_path, capsys, preset):
    """Finding 8: --dry-run with a Hub model name or --preset paper while the Hub is unreachable was a traceback."""
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    models = ["--preset", "paper"] if preset else ["--writer", "vllm:Qwen/Qwen2.5-72B-Instruct"]
    code, lines = _lgt(capsys, "build", "--num-images", "1", *models, "--dry-run", "-q", "--cache", tmp_path / "c")
    assert (code, len(lines)) == (1, 1), lines
    assert "Qwen/Qwen2.5-72B-Instruct: not in the local Hugging Face cache" in lines[0]
    assert "hf download Qwen/Qwen2.5-72B-Instruct --exclude '*.safetensors'" in lines[0]


def test_a_dry_run_with_a_served_model_without_a_tokenizer_says_how_to_give_one(tmp_path, capsys):
    teacher = ["--writer", "openai:my-served-model@http://127.0.0.1:9/v1"]
    code, lines = _lgt(capsys, "build", "--num-images", "1", *teacher, "--dry-run", "-q", "--cache", tmp_path / "c")
    assert (code, len(lines)) == (1, 1), lines
    assert (
        "counts prompt tokens with the tokenizer of my-served-model (a served model: serve it under its Hub id"
        in (lines[0])
    )


def test_vllm_not_installed_says_how_to_install_it(previous, tmp_path, capsys):
    """Finding 8: a vllm model without vLLM installed was a traceback without "install .[vllm]"."""
    if _importable("vllm"):
        pytest.skip("vLLM is installed here")
    output, before = previous
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    code, lines = _lgt(capsys, *_arguments(output, tmp_path / "c.sqlite", f"vllm:{model}"))
    assert (code, lines) == (
        1,
        [
            f"lgt: error: the vllm backend, model {model}: vllm cannot be imported (No module named 'vllm'): "
            'pip install ".[vllm]"'
        ],
    )
    assert _untouched(output, before)


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _foreign_database(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE generations (id INTEGER PRIMARY KEY, note TEXT)")
        db.execute("INSERT INTO generations (note) VALUES ('not lgt')")
    db.close()


@pytest.mark.parametrize(
    ("make", "code", "problem"),
    [
        (_foreign_database, 2, "an SQLite database of another program (application id 0, tables generations)"),
        (lambda path: path.mkdir(), 2, "not a file (a folder or a device)"),
        (lambda path: path.write_bytes(os.urandom(4096)), 2, "not an SQLite file"),
    ],
    ids=["foreign-sqlite", "folder", "random-bytes"],
)
def test_a_cache_that_is_not_ours_is_refused_and_left_as_it_was(previous, tmp_path, capsys, make, code, problem):
    """Finding 5: another program's SQLite database was silently given a table, switched to WAL and stamped (or
    broken for good if it had a `generations` table); other files were tracebacks that did not name the file."""
    output, before = previous
    cache = tmp_path / "not-a-cache.sqlite"
    make(cache)
    was = _snapshot(tmp_path) if cache.is_dir() else {"": cache.read_bytes()}
    arguments = _arguments(output, cache, "openai:served@http://127.0.0.1:9/v1")
    found, lines = _lgt(capsys, *arguments)
    assert (found, len(lines)) == (code, 1) and lines[0].startswith(f"lgt: error: generation cache {cache}: {problem}")
    assert (_snapshot(tmp_path) if cache.is_dir() else {"": cache.read_bytes()}) == was
    assert not list(tmp_path.glob("not-a-cache.sqlite-*")), "no journal beside it: nothing was written"
    assert _untouched(output, before)


def _read_only_command(folder: Path, command: list[str]) -> list[str]:
    """``command`` run with ``folder`` read-only: as root (whom file modes do not stop) under a read-only bind mount
    in a mount namespace of its own, otherwise with the write bits of the folder and its files removed."""
    if os.geteuid() != 0:
        for path in [*folder.iterdir(), folder]:
            path.chmod(0o555 if path.is_dir() else 0o444)
        return command
    if not shutil.which("unshare") or subprocess.run(["unshare", "--mount", "true"]).returncode:
        pytest.skip("no mount namespace here to make a read-only folder for root")
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
    return ["unshare", "--mount", "sh", "-c", script, str(folder), *command]


def test_a_cache_on_read_only_storage_rebuilds_with_cache_only(serve, tmp_path):
    """Finding 5: a read-only cache could not be used even with --cache-only, so a published cache on read-only
    storage could not be rebuilt from."""
    server, published = serve(), tmp_path / "published"
    published.mkdir()
    cache = published / "generations.sqlite"
    first = _run(_arguments(tmp_path / "first", cache, f"openai:served@{server.url}"))
    assert first.wait(timeout=300) == 0
    arguments = _arguments(tmp_path / "again", cache, f"openai:served@{server.url}")
    rebuild = subprocess.run(
        _read_only_command(published, [sys.executable, "-c", CLI, *map(str, arguments), "--cache-only"]),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rebuild.returncode == 0, rebuild.stderr
    assert _parquet(tmp_path / "again") == _parquet(tmp_path / "first") != {}
    assert server.stats()["requests"] == server.stats()["answered"] > 0  # every call was the first build's
    writing = subprocess.run(
        _read_only_command(published, [sys.executable, "-c", CLI, *map(str, arguments)]),
        capture_output=True,
        text=True,
        timeout=300,
    )
    (line,) = writing.stderr.strip().splitlines()
    assert writing.returncode == 1 and line.startswith(f"lgt: error: generation cache {cache}: ")
    assert "pass --cache-only to build from it without writing" in line
