"""`lgt build --ray --shards N` on a local Ray cluster: the parts run as Ray tasks and are merged into the build one
machine makes, row for row, also when a part's process is killed mid-build and Ray runs it again.

Each build runs as a user runs it, the `lgt` console script in a process of its own, which starts a local cluster
and stops it on exit: a Ray driver's threads must not live on in the test process, whose later builds fork workers.
"""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

import pyarrow.parquet as pq
import pytest
from conftest import write_image
from lgt.build import build

pytest.importorskip("ray")

IMAGES = 800  # about 640 train images: three work units of train, one each of validation and test
SETTINGS = dict(configs=("mcq_stage1",), images="path")


def ray_build(source, output, shards, parts=None):
    """``lgt build --ray --shards N``: the exit status and what it printed on stderr."""
    lgt = shutil.which("lgt", path=os.path.dirname(sys.executable)) or shutil.which("lgt")
    command = [lgt, "build", "--ray", "--shards", str(shards), "--source", source, "--output", str(output)]
    command += ["--configs", "mcq_stage1", "--images", "path", *(["--parts", str(parts)] if parts else [])]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    return done.returncode, done.stderr


def built_info(output):
    with open(os.path.join(output, "lgt_build.json")) as f:
        return json.load(f)


def write_source(folder, count, bad_line=None):
    """A JSON Lines source of ``count`` scenes on one image file, boxes at random."""
    folder.mkdir(exist_ok=True)
    write_image(folder / "a.png", size=(320, 240))
    rng, lines = random.Random(0), []
    for i in range(count):
        objects = []
        for j in range(rng.randint(3, 6)):
            x, y, w, h = rng.uniform(0, 240), rng.uniform(0, 170), rng.uniform(20, 80), rng.uniform(20, 70)
            name = rng.choice(["cup", "book", "lamp", "chair", "plant"])
            box = [round(x, 1), round(y, 1), round(x + w, 1), round(y + h, 1)]
            objects.append({"id": j, "name": name, "bbox": box, "attributes": [rng.choice(["red", "blue", "green"])]})
        record = {"image_id": f"img-{i:05d}", "image": "a.png", "width": 320, "height": 240, "caption": f"scene {i}"}
        lines.append(json.dumps({**record, "objects": objects}) if i != bad_line else '{"image_id": 5')
    (folder / "scenes.jsonl").write_text("\n".join(lines) + "\n")
    return f"jsonl:{folder / 'scenes.jsonl'}"


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return write_source(tmp_path_factory.mktemp("source"), IMAGES)


@pytest.fixture(scope="module")
def whole(source, tmp_path_factory):
    output = tmp_path_factory.mktemp("whole") / "lgt"
    return output, build(source=source, output=str(output), **SETTINGS)


def assert_same_rows(a, b):
    files = sorted(path.relative_to(a).as_posix() for path in a.glob("*/*.parquet"))
    assert files == sorted(path.relative_to(b).as_posix() for path in b.glob("*/*.parquet")) and len(files) >= 5
    for name in files:
        assert pq.read_table(a / name).equals(pq.read_table(b / name)), name


def test_parts_as_ray_tasks_merge_into_the_whole_build(source, whole, tmp_path):
    code, err = ray_build(source, tmp_path / "lgt", 3)
    assert code == 0, err
    assert_same_rows(whole[0], tmp_path / "lgt")
    info = built_info(tmp_path / "lgt")
    assert info["rows"] == whole[1]["rows"] and info["parts"] == 3
    assert sorted(os.listdir(tmp_path / "lgt.parts")) == [f"part-0000{i}-of-00003" for i in range(3)]


def test_a_killed_part_is_run_again_and_the_result_is_the_same(source, whole, tmp_path):
    parts = tmp_path / "parts"
    killed = []

    def kill_part_one_mid_build():
        """SIGKILL the process building part 1 once its scenes are prepared (an Arrow file in its staging)."""
        lock = parts / ".part-00001-of-00003.lock"
        deadline = time.time() + 300
        while time.time() < deadline and not killed:
            staged = list(parts.glob(".part-00001-of-00003-building-*/cache/**/*.arrow"))
            if staged and lock.exists() and lock.read_text().strip():
                pid = int(lock.read_text())
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.01)

    killer = threading.Thread(target=kill_part_one_mid_build)
    killer.start()
    try:
        code, err = ray_build(source, tmp_path / "lgt", 3, parts=parts)
    finally:
        killer.join()
    assert killed, "part 1 finished before it could be killed"
    assert code == 0, err
    assert_same_rows(whole[0], tmp_path / "lgt")
    assert built_info(tmp_path / "lgt")["rows"] == whole[1]["rows"]
    assert not list(parts.glob(".part-*-building-*")), "the retried part cleans up what the killed one left"


def test_a_bad_record_fails_the_build_at_once_with_its_own_line(tmp_path):
    source = write_source(tmp_path / "bad", 20, bad_line=7)
    code, err = ray_build(source, tmp_path / "lgt", 2)
    assert code == 2, err
    errors = [line for line in err.splitlines() if line.startswith("lgt: error:")]
    assert len(errors) == 1 and "scenes.jsonl [record line 8]: malformed JSON" in errors[0], err
    assert "Traceback" not in err
    assert not (tmp_path / "lgt").exists()
