"""Offline by construction: no test may reach the Hub (each probe would cost ~23 s of retries here)."""

import json
import os
import shutil
import tempfile

_HF_HOME = tempfile.mkdtemp(prefix="lgt-test-hf-home-")
os.environ.update(
    {
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": _HF_HOME,
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
)
os.environ.pop("HF_TOKEN", None)

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

# Prepended to the code of a child `lgt build` that a test stops with Ctrl-C or a hangup: the signal dispositions of
# a terminal's foreground job, whoever runs pytest. A job a script starts in the background (`pytest &`) or under
# nohup inherits SIGINT or SIGHUP ignored, which a build rightly leaves ignored: six such tests failed there.
FOREGROUND_SIGNALS = (
    "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "signal.signal(signal.SIGHUP, signal.SIG_DFL)"
)

# Real third-party data lives beside the repository, never in it.
SHARED_DATA = Path(os.environ.get("LGT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
COCO_MINI = SHARED_DATA / "coco_mini_ccby"


@pytest.fixture
def coco_root():
    if not (COCO_MINI / "annotations" / "instances_val2017.json").is_file():
        pytest.skip(f"shared COCO sample not found at {COCO_MINI}")
    return COCO_MINI


@pytest.fixture(scope="session")
def coco_build(tmp_path_factory):
    """One build of the real COCO sample, shared by the tests that only read it."""
    if not (COCO_MINI / "annotations" / "instances_val2017.json").is_file():
        pytest.skip(f"shared COCO sample not found at {COCO_MINI}")
    from lgt.build import build

    output = tmp_path_factory.mktemp("coco") / "lgt"
    info = build(source=f"coco:{COCO_MINI}", output=str(output))
    return output, info


@pytest.fixture(scope="session")
def builtin_build(tmp_path_factory):
    """One default-settings build of 300 built-in scenes (a shard per split), shared by the tests that only read it."""
    from lgt.build import build

    output = tmp_path_factory.mktemp("builtin") / "lgt"
    info = build(source="scenes", num_images=300, output=str(output))
    return output, info


def write_image(path: Path, size=(320, 240), mode="RGB", fmt=None, colour=(200, 60, 60)) -> Path:
    from PIL import Image

    image = Image.new("RGB", size, (235, 235, 225))
    for x in range(40, 120):
        for y in range(40, 100):
            image.putpixel((x, y), colour)
    if mode.startswith("I;16"):  # Pillow before 11 makes 16-bit grey only from grey
        image = image.convert("L")
    if mode != "RGB":
        image = image.convert(mode)
    image.save(path, format=fmt)
    return path


@pytest.fixture
def small_coco(tmp_path):
    """A COCO root with 12 images of our own making, 3 boxes and 5 captions each, to be broken by a test."""
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "images" / "val2017").mkdir(parents=True)
    images, annotations, captions = [], [], []
    for i in range(1, 13):
        write_image(root / "images" / "val2017" / f"{i:012d}.jpg")
        images.append({"id": i, "file_name": f"{i:012d}.jpg", "width": 320, "height": 240, "license": 1})
        for j, (cat, box) in enumerate([(1, [10, 20, 60, 50]), (2, [200, 30, 80, 60]), (2, [100, 150, 50, 40])]):
            annotations.append(
                {
                    "id": i * 10 + j,
                    "image_id": i,
                    "category_id": cat,
                    "bbox": box,
                    "iscrowd": 0,
                    "area": box[2] * box[3],
                }
            )
        captions += [{"id": i * 10 + k, "image_id": i, "caption": f"caption {k} of image {i}"} for k in range(5)]
    instances = {
        "images": images,
        "annotations": annotations,
        "licenses": [{"id": 1, "name": "CC BY", "url": "u"}],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "car"}],
    }
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(instances))
    (root / "annotations" / "captions_val2017.json").write_text(json.dumps({"annotations": captions}))
    return root


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.fixture
def asked(monkeypatch):
    """What `lgt build --dry-run` hands to `dry_run`: the settings the flags made (no model is loaded)."""
    from lgt import build as build_module

    seen = {}

    def dry_run(**settings):
        seen.update(settings)
        return {}

    monkeypatch.setattr(build_module, "dry_run", dry_run)
    return seen


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium driven by Playwright (whose own browser download is not needed)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    executable = next((shutil.which(name) for name in ("chromium", "chromium-browser") if shutil.which(name)), None)
    if executable is None:
        pytest.skip("no chromium on PATH (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def serve():
    """Misbehaving OpenAI-compatible servers in processes of their own (``openai_server.Running``), stopped after."""
    from openai_server import Running

    started = []

    def start(fault="none", **options):
        started.append(Running(fault, **options))
        return started[-1]

    yield start
    for server in started:
        server.stop()


# DOCCI's splits as the COCO sample's stand in for them in the DOCCI-format fixture.
DOCCI_SPLITS = {"train2017": "train", "val2017": "test"}


def write_docci(root: Path, count: int | None = None) -> Path:
    """DOCCI's release layout made from the COCO sample: ``docci_descriptions.jsonlines`` (``example_id``, ``split``,
    ``image_file``, ``description``, and a field lgt does not read) and ``images/``; the first ``count`` records,
    train and test in turn."""
    if not (COCO_MINI / "annotations" / "instances_val2017.json").is_file():
        pytest.skip(f"shared COCO sample not found at {COCO_MINI}")
    import itertools
    import shutil

    per_split = []
    for coco_split, split in DOCCI_SPLITS.items():
        annotations = COCO_MINI / "annotations"
        images = json.loads((annotations / f"instances_{coco_split}.json").read_text())["images"]
        captions: dict[int, list[str]] = {}
        for caption in json.loads((annotations / f"captions_{coco_split}.json").read_text())["annotations"]:
            captions.setdefault(caption["image_id"], []).append(caption["caption"].strip())
        per_split.append(
            [
                (
                    COCO_MINI / "images" / coco_split / image["file_name"],
                    {
                        "example_id": f"{split}_{n:05d}",
                        "split": split,
                        "image_file": f"{split}_{n:05d}.jpg",
                        "description": " ".join(captions[image["id"]]),
                        "cluster_id": f"coco-{image['id']}",
                    },
                )
                for n, image in enumerate(sorted(images, key=lambda image: image["id"]))
            ]
        )
    chosen = [pair for pair in itertools.chain(*itertools.zip_longest(*per_split)) if pair][:count]
    (root / "images").mkdir(parents=True)
    for image, record in chosen:
        shutil.copy(image, root / "images" / record["image_file"])
    with open(root / "docci_descriptions.jsonlines", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(record) + "\n" for _, record in chosen)
    return root
