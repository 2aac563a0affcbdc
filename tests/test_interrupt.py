"""kill -9, Ctrl-C and SIGTERM at many points of a real `lgt build` process (findings 1, 7, 11, 12).

Each run starts from a finished build at --output (seed 0) and builds a new one (seed 1) with two workers, paused at
one point by a wrapper that patches a single function. Afterwards --output holds the old or the new build, loadable
with `load_dataset`, no process of the build is left, and the next build cleans up whatever the killed one left.
"""

import os
import shutil
import signal
import subprocess
import sys
import time

import psutil
import pytest
from conftest import FOREGROUND_SIGNALS
from datasets import load_dataset
from lgt.build import build
from lgt.cli import main
from lgt.errors import InputError

# Runs `lgt build` with one function wrapped to pause (writing its pid to a marker file) at the point to hit.
WRAPPER = (
    FOREGROUND_SIGNALS
    + r"""
import os, sys, time
import lgt.build, lgt.builder, lgt.output
from lgt.sources.builtin import BuiltinSource

def pause():
    with open(os.environ["PAUSE_MARKER"], "a") as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(float(os.environ["PAUSE_S"]))

def before(function):
    def paused(*args, **kwargs):
        pause()
        return function(*args, **kwargs)
    return paused

def before_in_one(function):  # pauses in the first process to get there only
    def paused(*args, **kwargs):
        try:
            os.close(os.open(os.path.join(os.environ["TMPDIR"], "first"), os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return function(*args, **kwargs)
        pause()
        return function(*args, **kwargs)
    return paused

def after(function):
    def paused(*args, **kwargs):
        result = function(*args, **kwargs)
        pause()
        return result
    return paused

def rename_then_pause(rename):
    def paused(source, target):
        rename(source, target)
        if target.endswith("-previous"):
            pause()
    return paused

lgt.builder.SCENES_PER_UNIT = 2  # several shards per split, so --num-proc 2 starts two workers
point = os.environ["PAUSE_AT"]
if point == "worker":  # inside both workers, while they make rows
    BuiltinSource.scene = before(BuiltinSource.scene)
elif point == "one-worker":  # inside one worker; the other finishes its units and waits for work
    BuiltinSource.scene = before_in_one(BuiltinSource.scene)
elif point == "card":  # main process, staging complete, lock held
    lgt.build.write_card = before(lgt.build.write_card)
elif point == "swap":  # main process, just before the swap, signals deferred
    lgt.output._swap_into_place = before(lgt.output._swap_into_place)
elif point == "exchanged":  # right after the atomic exchange, the old build still in staging
    lgt.output._exchange = after(lgt.output._exchange)
elif point == "between-renames":  # the fallback swap, between its two renames
    lgt.output._exchange = lambda a, b: False
    os.rename = rename_then_pause(os.rename)
if __name__ == "__main__":
    if os.environ.get("START_METHOD"):  # the default start method of both pool libraries (Python 3.14: forkserver)
        import multiprocess, multiprocessing
        multiprocessing.set_start_method(os.environ["START_METHOD"], force=True)
        multiprocess.set_start_method(os.environ["START_METHOD"], force=True)
    from lgt.cli import main
    sys.exit(main(sys.argv[1:]))
"""
)


@pytest.fixture(scope="module")
def old_build(tmp_path_factory):
    output = tmp_path_factory.mktemp("old") / "out"
    build(source="scenes", num_images=6, seed=0, output=str(output))
    return output


def holds(output) -> str:
    """Which build --output holds: "old" (seed 0) or "new" (seed 1), after loading both configs."""
    assert len(load_dataset(str(output), "mcq_stage1", split="train")) > 0
    ids = {r["image_id"] for split in load_dataset(str(output), "scenes").values() for r in split}
    seeds = {image_id.split("-")[1] for image_id in ids}
    assert seeds in ({"0"}, {"1"}), ids
    return {"0": "old", "1": "new"}[seeds.pop()]


def group_processes(group: int) -> list:
    alive = []
    for process in psutil.process_iter(["status"]):
        try:
            if os.getpgid(process.pid) == group and process.info["status"] != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass
    return alive


def interrupted_build(tmp_path, old_build, point: str, signum: int, to_group: bool, pause_s: float = 60):
    """Start a build that pauses at ``point``, send ``signum`` once it is there; return (exit code, stderr)."""
    output, marker, scratch = tmp_path / "out", tmp_path / "paused", tmp_path / "tmp"
    shutil.copytree(old_build, output)
    scratch.mkdir()
    env = {
        **os.environ,
        "PAUSE_AT": point,
        "PAUSE_MARKER": str(marker),
        "PAUSE_S": str(pause_s),
        "TMPDIR": str(scratch),
    }
    wrapper = scratch / "wrapper.py"  # a file: what a forkserver imports before it forks workers
    wrapper.write_text(WRAPPER)
    command = [sys.executable, str(wrapper), "build", "--seed", "1", "--num-images", "8", "--num-proc", "2"]
    process = subprocess.Popen(
        [*command, "--output", str(output)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=env,
    )
    pauses = 2 if point == "worker" else 1  # both workers inside a scene
    deadline = time.time() + 120
    while not (marker.exists() and len(marker.read_text().split()) >= pauses):
        assert process.poll() is None, process.communicate()[1]
        assert time.time() < deadline, "the build never reached the pause point"
        time.sleep(0.05)
    if point == "one-worker":
        time.sleep(2)  # for the other worker to finish its units (built-in scenes: a fraction of that) and wait
    yield process
    os.killpg(process.pid, signum) if to_group else process.send_signal(signum)
    try:
        _, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise AssertionError(f"the build was still running 60 s after {signal.Signals(signum).name}") from None
    deadline = time.time() + 10
    while group_processes(process.pid) and time.time() < deadline:
        time.sleep(0.1)
    assert not group_processes(process.pid), "a process of the killed build is still running"
    assert not list(scratch.glob("lgt-build-*"))
    yield (
        process.returncode,
        [line for line in err.splitlines() if line.startswith(("lgt: error", "lgt: interrupted"))],
        err,
    )


def finish(run):
    next(run)
    return next(run)


OLD_KEPT = "{output} still holds the previous build"
NEW_IN_PLACE = "the new build was already complete and is in place at {output}"
CASES = [
    # point, signal, sent to the whole process group (as Ctrl-C in a terminal is), what --output holds, message
    ("worker", signal.SIGINT, True, "old", OLD_KEPT),
    ("worker", signal.SIGTERM, False, "old", OLD_KEPT),
    ("worker", signal.SIGKILL, False, "old", None),
    # as a terminal closing, `scancel` or `systemctl stop` do: every worker is sent it too, an idle one among them
    ("one-worker", signal.SIGTERM, True, "old", OLD_KEPT),
    ("one-worker", signal.SIGHUP, True, "old", OLD_KEPT),
    ("swap", signal.SIGINT, True, "new", NEW_IN_PLACE),
    ("exchanged", signal.SIGKILL, False, "new", None),
    ("between-renames", signal.SIGINT, True, "new", NEW_IN_PLACE),
]


@pytest.mark.parametrize(("point", "signum", "to_group", "expected", "message"), CASES)
def test_interrupted_build_leaves_the_old_or_the_new_build(
    tmp_path, old_build, point, signum, to_group, expected, message
):
    deferred = point in ("swap", "between-renames")  # signals wait for the swap: a short pause, then it goes on
    code, lines, err = finish(interrupted_build(tmp_path, old_build, point, signum, to_group, 3 if deferred else 60))
    output = tmp_path / "out"
    if signum == signal.SIGKILL:
        assert code == -signal.SIGKILL
    else:
        assert code == 128 + signum and "Traceback" not in err, err
        assert lines == ["lgt: interrupted; " + message.format(output=output)], err
    assert holds(output) == expected
    assert_next_build_cleans_up(tmp_path)


def test_a_build_stops_as_quietly_whatever_the_default_start_method(tmp_path, old_build, monkeypatch):
    """Python 3.14 starts pools by forkserver unless told otherwise: workers started so were not the build's (they
    did not ignore Ctrl-C), and Ctrl-C printed a traceback per worker."""
    monkeypatch.setenv("START_METHOD", "forkserver")
    code, lines, err = finish(interrupted_build(tmp_path, old_build, "worker", signal.SIGINT, True))
    assert code == 130 and "Traceback" not in err, err
    assert lines == ["lgt: interrupted; " + OLD_KEPT.format(output=tmp_path / "out")], err
    assert holds(tmp_path / "out") == "old"


def assert_next_build_cleans_up(tmp_path):
    build(source="scenes", num_images=4, seed=2, output=str(tmp_path / "out"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "paused", "tmp"]


def test_kill_between_the_renames_of_the_fallback_swap_is_repaired(tmp_path, old_build):
    """With no atomic exchange, a kill between the renames leaves the old build aside; the next build restores it."""
    code, _, _ = finish(interrupted_build(tmp_path, old_build, "between-renames", signal.SIGKILL, False))
    assert code == -signal.SIGKILL
    output = tmp_path / "out"
    assert not output.exists() and (tmp_path / ".out-previous").is_dir()
    with pytest.raises(InputError):  # any later build of this output, even one that fails, repairs it first
        build(source=f"jsonl:{tmp_path / 'missing.jsonl'}", output=str(output))
    assert holds(output) == "old"
    assert_next_build_cleans_up(tmp_path)


def test_a_second_build_of_the_same_output_is_refused_while_the_first_runs(tmp_path, old_build, capsys):
    """Finding 11: one build per output at a time; kill -9 of the holder frees the output for the next build."""
    run = interrupted_build(tmp_path, old_build, "card", signal.SIGKILL, False)
    process = next(run)
    output = tmp_path / "out"
    assert main(["build", "--num-images", "2", "--output", str(output)]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"lgt: error: {output}: another lgt build (pid {process.pid}) is writing it; wait for it to finish or "
        "choose another --output"
    )
    assert holds(output) == "old"
    code, _, _ = next(run)
    assert code == -signal.SIGKILL and holds(output) == "old"
    assert (tmp_path / ".out.lock").exists() and list(tmp_path.glob(".out-building-*"))  # what kill -9 leaves
    assert_next_build_cleans_up(tmp_path)


# A child forked during a build, held up before lgt's fork hook runs, then sent SIGTERM (as `Pool.terminate()` does
# to a pool it has just started): the signal must end it, not be spent on the build's handler it was born with.
FORK_RACE = r"""
import os, signal, sys, time
os.register_at_fork(after_in_child=lambda: time.sleep(0.5))  # registered first: runs before lgt's hook
from lgt import output

with output._stop_signals():
    pid = os.fork()
    if pid == 0:
        time.sleep(10)
        os._exit(0)
    os.kill(pid, signal.SIGTERM)
    started = time.monotonic()
    _, status = os.waitpid(pid, 0)
print(os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0, round(time.monotonic() - started, 1))
"""


def test_a_worker_sent_sigterm_as_it_starts_is_ended_by_it():
    """Finding: the first pass's pool, ended at once by a bad first line, waited for ever on a worker whose SIGTERM
    had arrived before the worker dropped the build's handlers ("Signal 15 ignored due to race condition")."""
    ran = subprocess.run([sys.executable, "-c", FORK_RACE], capture_output=True, text=True, timeout=60)
    signum, seconds = ran.stdout.split()
    assert int(signum) == signal.SIGTERM and float(seconds) < 5, ran.stderr
