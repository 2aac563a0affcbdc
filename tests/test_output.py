"""Where a build lands: environment errors are one line and leave the old build (finding 8); one build per output
(finding 11); a later build repairs and removes what a killed one left (findings 1 and 12)."""

import fcntl
import os
import resource
import shutil
import signal
import subprocess
import sys

import pytest
from datasets import load_dataset
from lgt.build import build
from lgt.cli import main
from lgt.errors import BuildError, InputError


@pytest.fixture(scope="module")
def old_build(tmp_path_factory):
    output = tmp_path_factory.mktemp("old") / "out"
    build(source="scenes", num_images=4, output=str(output), configs=("scenes",))
    return output


def copy(old_build, tmp_path):
    output = tmp_path / "out"
    shutil.copytree(old_build, output)
    return output, sorted(str(p.relative_to(output)) for p in output.rglob("*"))


def error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("lgt: error")]


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
def test_output_under_proc_is_one_line(capsys):
    assert main(["build", "--num-images", "2", "--output", "/proc/lgt-output"]) == 1
    assert error_lines(capsys) == [
        "lgt: error: cannot build /proc/lgt-output: No such file or directory (/proc/.lgt-output.lock); "
        "/proc/lgt-output was left as it was"
    ]


def test_output_under_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    assert main(["build", "--num-images", "2", "--output", str(tmp_path / "notes.txt" / "out")]) == 1
    (line,) = error_lines(capsys)
    assert line.startswith(f"lgt: error: cannot build {tmp_path}/notes.txt/out: File exists"), line


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_read_only_parent_is_one_line_and_keeps_the_old_build(old_build, tmp_path, capsys):
    output, before = copy(old_build, tmp_path)
    tmp_path.chmod(0o555)
    try:
        assert main(["build", "--num-images", "2", "--output", str(output)]) == 1
    finally:
        tmp_path.chmod(0o755)
    (line,) = error_lines(capsys)
    assert "Permission denied" in line and f"{output} was left as it was" in line
    assert sorted(str(p.relative_to(output)) for p in output.rglob("*")) == before


LGT = "import sys; from lgt.cli import main; sys.exit(main())"  # the `lgt` command of this interpreter


def _limit_file_size():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))


def test_a_full_disk_is_one_line_and_keeps_the_old_build(old_build, tmp_path):
    """A write that fails half-way (here: past a file-size limit, as on a full disk) inside datasets' workers."""
    output, before = copy(old_build, tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", LGT, "build", "--num-images", "60", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_limit_file_size,
    )
    lines = [line for line in result.stderr.splitlines() if line.startswith("lgt: error")]
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and "File too large" in lines[0] and f"{output} still holds the previous build" in lines[0]
    assert sorted(str(p.relative_to(output)) for p in output.rglob("*")) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_build_holding_the_output_is_named(old_build, tmp_path):
    output, before = copy(old_build, tmp_path)
    with open(tmp_path / ".out.lock", "w") as lock:  # what a running build holds
        fcntl.flock(lock, fcntl.LOCK_EX)
        lock.write("4242\n")
        lock.flush()
        with pytest.raises(BuildError, match="another lgt build \\(pid 4242\\) is writing it"):
            build(source="scenes", num_images=2, output=str(output))
    assert sorted(str(p.relative_to(output)) for p in output.rglob("*")) == before
    build(source="scenes", num_images=2, output=str(output))  # free again once the holder is gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_later_build_repairs_and_removes_what_a_killed_one_left(old_build, tmp_path):
    """The states kill -9 leaves: a build moved aside, staging folders of dead builds, a stale lock file."""
    shutil.copytree(old_build, tmp_path / ".out-previous")  # killed between the renames of the fallback swap
    (tmp_path / ".out-building-dead1" / "out").mkdir(parents=True)
    (tmp_path / ".out-building-dead1" / "cache" / "lgt-build-x").mkdir(parents=True)
    (tmp_path / ".out.lock").write_text("999999\n")
    with pytest.raises(InputError):  # even a build that then fails repairs first
        build(source=f"jsonl:{tmp_path / 'missing.jsonl'}", output=str(tmp_path / "out"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert len(load_dataset(str(tmp_path / "out"), "scenes", split="train")) > 0

    shutil.copytree(old_build, tmp_path / ".out-previous")  # killed after the swap, before removing the old build
    build(source="scenes", num_images=2, seed=5, output=str(tmp_path / "out"), configs=("scenes",))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert all(r["image_id"].startswith("scene-5-") for r in load_dataset(str(tmp_path / "out"), "scenes")["train"])
