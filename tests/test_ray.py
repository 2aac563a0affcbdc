"""`lgt build --ray --shards N` on a local Ray cluster: the parts run as Ray tasks and are merged into the build one
machine makes, row for row, also when a part's process is killed mid-build and Ray runs it again.

One `ray.init` for the module (a local cluster takes seconds to start on two busy cores).
"""

import json
import os
import random
import signal
import threading
import time

import pyarrow.parquet as pq
import pytest
from conftest import write_image
from lgt.build import build
from lgt.errors import InputError

ray = pytest.importorskip("ray")

IMAGES = 800  # about 640 train images: three work units of train, one each of validation and test
SETTINGS = dict(configs=("mcq_stage1",), images="path")


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


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


def test_parts_as_ray_tasks_merge_into_the_whole_build(cluster, source, whole, tmp_path):
    from lgt.cluster import ray_build

    info = ray_build(source=source, output=str(tmp_path / "lgt"), shards=3, **SETTINGS)
    assert_same_rows(whole[0], tmp_path / "lgt")
    assert info["rows"] == whole[1]["rows"] and info["parts"] == 3
    assert sorted(os.listdir(tmp_path / "lgt.parts")) == [f"part-0000{i}-of-00003" for i in range(3)]


def test_a_killed_part_is_run_again_and_the_result_is_the_same(cluster, source, whole, tmp_path):
    from lgt.cluster import ray_build

    parts = tmp_path / "parts"
    killed = []

    def kill_part_one_mid_build():
        """SIGKILL the process building part 1 once its scenes are prepared (an Arrow file in its staging)."""
        lock = parts / ".part-00001-of-00003.lock"
        deadline = time.time() + 120
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
        info = ray_build(source=source, output=str(tmp_path / "lgt"), shards=3, parts=str(parts), **SETTINGS)
    finally:
        killer.join()
    assert killed, "part 1 finished before it could be killed"
    assert_same_rows(whole[0], tmp_path / "lgt")
    assert info["rows"] == whole[1]["rows"]
    assert not list(parts.glob(".part-*-building-*")), "the retried part cleans up what the killed one left"


def test_a_bad_record_fails_the_build_at_once_with_its_own_line(cluster, tmp_path):
    from lgt.cluster import ray_build

    source = write_source(tmp_path / "bad", 20, bad_line=7)
    with pytest.raises(InputError, match=r"scenes.jsonl \[record line 8\]: malformed JSON"):
        ray_build(source=source, output=str(tmp_path / "lgt"), shards=2, **SETTINGS)
    assert not (tmp_path / "lgt").exists()
