"""A build in parts (`lgt build --shard I/N`), merged (`lgt merge`), is row for row the build one machine makes.

Work units are fixed buckets of image ids, so whatever a stage keeps even along a unit (letters, answer classes)
comes out the same in whichever part; the merge gathers the parts' files unchanged and redoes the card and audit.
"""

import json
import shutil

import pyarrow.parquet as pq
import pytest
from lgt import trace_audit
from lgt.audit import BUILD_INFO_KEY
from lgt.build import OBJECT_NAMES_KEY, build
from lgt.builder import Survey, split_of, unit_of
from lgt.cli import main
from lgt.generation import GenerationCache
from lgt.merge import MergeError, merge
from lgt.settings import shard_spec
from lgt.sources.builtin import CATEGORIES
from test_build_models import FIXTURE_TEACHER, STAGE1
from test_build_models import answered as answered  # a fixture
from test_llm_mcq import REJECTS

# Small units, so 60 images make several per split and three parts share them out.
UNIT = 10
SETTINGS = dict(source="scenes", num_images=60, configs=("mcq_stage2", "sft_stage1", "dpo_stage1", "rl"))


@pytest.fixture(scope="module")
def small_units():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("lgt.builder.SCENES_PER_UNIT", UNIT)
        yield


@pytest.fixture(scope="module")
def whole_and_parts(small_units, tmp_path_factory):
    """One build of the settings, three parts of the same build, and the parts merged."""
    root = tmp_path_factory.mktemp("shards")
    whole = build(output=str(root / "whole"), **SETTINGS)
    parts = [root / f"part{index}" for index in range(3)]
    for index, part in enumerate(parts):
        build(output=str(part), shard=(index, 3), **SETTINGS)
    merged = merge([str(part) for part in reversed(parts)], output=str(root / "merged"))  # any order
    return root, whole, parts, merged


def parquet_files(folder):
    return sorted(path.relative_to(folder).as_posix() for path in folder.glob("*/*.parquet"))


def assert_same_rows(a, b):
    """Every config of two builds: the same files, each with the same rows in the same order."""
    assert parquet_files(a) == parquet_files(b) and parquet_files(a)
    for name in parquet_files(a):
        assert pq.read_table(a / name).equals(pq.read_table(b / name)), name


def test_three_parts_merged_are_the_whole_build_row_for_row(whole_and_parts):
    root, whole, parts, merged = whole_and_parts
    assert_same_rows(root / "whole", root / "merged")
    assert merged["rows"] == whole["rows"] and merged["configs"] == whole["configs"]
    assert merged["num_bytes"] == whole["num_bytes"] and merged["arguments"] == whole["arguments"]
    for key in (BUILD_INFO_KEY, trace_audit.BUILD_INFO_KEY):  # the merge audits what the whole build does
        audits = [{k: v for k, v in info[key].items() if k != "seconds"} for info in (whole, merged)]
        assert audits[0] == audits[1]
    card = (root / "merged" / "README.md").read_text()
    assert card.split("\n---\n")[0] == (root / "whole" / "README.md").read_text().split("\n---\n")[0]
    # each part made a share of every config, none the whole, and no two parts the same file
    held = [set(parquet_files(part)) for part in parts]
    assert all(held) and set().union(*held) == set(parquet_files(root / "merged"))
    assert sum(map(len, held)) == len(parquet_files(root / "merged"))
    records = [json.loads((part / "lgt_build.json").read_text()) for part in parts]
    assert all(record["shard"][1] == 3 for record in records)
    assert all(record[OBJECT_NAMES_KEY] == sorted(CATEGORIES) for record in records)  # what the merge's audit masks
    assert OBJECT_NAMES_KEY not in merged


def test_units_are_buckets_of_image_ids_and_parts_share_them_out(whole_and_parts):
    root, whole, parts, _ = whole_and_parts
    survey = Survey(units=whole["units"], names=[], attributes=[])
    assert sum(survey.units.values()) >= 3 and survey.units["train"] > 1
    for index, part in enumerate(parts):
        owned = survey.owned((index, 3))
        for path in (part / "scenes").glob("*.parquet"):
            split, unit = path.name.split("-")[:2]
            assert int(unit) in owned[split]
            for image_id in pq.read_table(path, columns=["image_id"]).column("image_id").to_pylist():
                assert split_of(image_id, (0.8, 0.1, 0.1)) == split
                assert unit_of(image_id, survey.units[split]) == int(unit)


def test_a_merge_refuses_parts_that_are_not_one_build(whole_and_parts, tmp_path, small_units):
    root, _, parts, _ = whole_and_parts
    with pytest.raises(MergeError, match=r"part\(s\) 1/3 missing"):
        merge([str(parts[0]), str(parts[2])], output=str(tmp_path / "out"))
    with pytest.raises(MergeError, match="are both part 0/3"):
        merge([str(parts[0]), str(parts[0]), str(parts[2])], output=str(tmp_path / "out"))
    with pytest.raises(MergeError, match="a whole build, not a part"):
        merge([str(root / "whole")], output=str(tmp_path / "out"))
    other = tmp_path / "other-seed"
    build(output=str(other), shard=(1, 3), **{**SETTINGS, "seed": 1})
    with pytest.raises(MergeError, match=r"different settings \(seed: 0 vs 1\)"):
        merge([str(parts[0]), str(other), str(parts[2])], output=str(tmp_path / "out"))
    changed = tmp_path / "other-code"
    shutil.copytree(parts[1], changed)
    record = json.loads((changed / "lgt_build.json").read_text())
    (changed / "lgt_build.json").write_text(json.dumps({**record, "lgt_code": "0" * 16}))
    with pytest.raises(MergeError, match="different lgt code"):
        merge([str(parts[0]), str(changed), str(parts[2])], output=str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_merge_from_the_command_line_is_one_line_on_refusal(whole_and_parts, tmp_path, capsys):
    _, _, parts, _ = whole_and_parts
    assert main(["merge", str(parts[0]), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "lgt: error: part(s) 1/3, 2/3 missing: the build has 3 parts, 1 given"


def test_shard_flag_reads_a_part_or_the_slurm_array_task(monkeypatch):
    assert shard_spec("2/5") == (2, 5)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "4")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "8")
    assert shard_spec("slurm") == (3, 8)
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID")
    with pytest.raises(ValueError, match="SLURM_ARRAY_TASK_ID"):
        shard_spec("slurm")
    with pytest.raises(ValueError, match="0 <= I < N"):
        build(output="never", shard=(3, 3))


# ---- the model path: generations read from the cache; each part writing its own cache; the caches merged ----


def test_model_written_parts_merge_into_the_whole_build_and_the_dry_run_bills_each_part(
    answered, tmp_path, monkeypatch, capsys
):
    """The fixture writer's cached answers (test_build_models): every image a unit of its own, three parts."""
    from lgt.build import dry_run
    from lgt.generation.bill import added_bills

    monkeypatch.setattr("lgt.builder.SCENES_PER_UNIT", 1)
    source, cache = answered
    settings = dict(
        source=source,
        configs=STAGE1,
        writer=FIXTURE_TEACHER,
        generation_cache=str(cache),
        cache_only=True,
        max_pixels=0,  # the sizes the cached answers were written for
    )
    whole = build(output=str(tmp_path / "whole"), **settings)
    parts = [str(tmp_path / f"part{index}") for index in range(3)]
    for index, part in enumerate(parts):
        build(output=part, shard=(index, 3), **settings)
    merged = merge(parts, output=str(tmp_path / "merged"))
    assert_same_rows(tmp_path / "whole", tmp_path / "merged")
    assert merged["generation"]["rejects"] == whole["generation"]["rejects"] == dict(REJECTS)
    for key in ("requests", "hits", "misses", "output_tokens"):
        assert merged["generation"]["models"]["writer"][key] == whole["generation"]["models"]["writer"][key]
    assert "| writer | `fixture-teacher` | 7 | 7 | 0 |" in (tmp_path / "merged" / "README.md").read_text()

    bills = [dry_run(shard=(index, 3), **settings)["mcq_stage1 writer"] for index in range(3)]
    assert added_bills(bills) == dry_run(**settings)["mcq_stage1 writer"]
    assert sorted(bill.requests for bill in bills) != [0, 0, 0]
    capsys.readouterr()
    flags = ["--source", source, "--configs", ",".join(STAGE1), "--writer", FIXTURE_TEACHER, "--cache", str(cache)]
    flags += ["--max-pixels", "0"]
    assert main(["build", "--dry-run", "--shards", "3", "--cache-only", *flags]) == 0
    printed = capsys.readouterr().out
    assert all(f"part {index}/3:" in printed for index in range(3)) and "all 3 parts:" in printed


def test_each_part_writes_its_own_cache_and_the_merged_cache_rebuilds_the_merged_parts(tmp_path, monkeypatch):
    """Tiny random models write for real: the teacher's answers replaced by a capable teacher's (test_build_traces_
    models), each part's reasoner writes into the part's own cache file; `lgt cache merge` joins them, and a
    `--cache-only` build from the merged cache is the merged parts, row for row, with no model call."""
    pytest.importorskip("torch")
    from datasets import Dataset
    from test_build_traces_models import CAPABLE
    from tiny_models import build_all

    tiny = build_all(tmp_path / "tiny")
    monkeypatch.setattr("lgt.builder.SCENES_PER_UNIT", 1)
    models = [
        "--teacher",
        f"transformers:{tiny / 'tiny-qwen2.5-vl'}",
        "--reasoner",
        f"transformers:{tiny / 'tiny-qwen2'}",
    ]
    flags = ["--num-images", "2", "--configs", "mcq_stage1,traces_stage1", "--traces-per-mcq", "1", *models]
    flags += ["--short-max-tokens", "8", "--expansion-max-tokens", "8", "-q"]
    assert main(["build", *flags, "--cache", str(tmp_path / "first.sqlite"), "--output", str(tmp_path / "first")]) == 0
    with GenerationCache(tmp_path / "first.sqlite") as first:  # the teacher's answers, as the parts find them
        rows = [
            {**row, "texts": [CAPABLE[0]], "finish_reasons": ["stop"]} if row["model"] == "tiny-qwen2.5-vl" else row
            for row in first.to_dataset().to_list()
        ]
    with GenerationCache(tmp_path / "capable.sqlite") as capable:  # closed: its file is whole, to be copied
        capable.import_dataset(Dataset.from_list(rows))
    units = sum(json.loads((tmp_path / "first" / "lgt_build.json").read_text())["units"].values())
    assert units == 2
    cache = tmp_path / "gen.sqlite"
    for index in range(2):
        shutil.copy(tmp_path / "capable.sqlite", tmp_path / f"gen-0000{index}-of-00002.sqlite")
        part = ["--shard", f"{index}/2", "--cache", str(cache), "--output", str(tmp_path / f"part{index}")]
        assert main(["build", *flags, *part]) == 0
    held = [cached(tmp_path / f"gen-0000{index}-of-00002.sqlite") for index in range(2)]
    base = cached(tmp_path / "capable.sqlite")
    assert not cache.exists() and all(count > base for count in held)  # each part wrote its own continuations

    parts = [str(tmp_path / f"part{index}") for index in range(2)]
    assert main(["merge", *parts, "--output", str(tmp_path / "merged"), "-q"]) == 0
    files = [str(tmp_path / f"gen-0000{index}-of-00002.sqlite") for index in range(2)]
    assert main(["cache", "merge", *files, "--output", str(tmp_path / "merged.sqlite")]) == 0
    assert cached(tmp_path / "merged.sqlite") == base + sum(count - base for count in held)
    again = ["--cache", str(tmp_path / "merged.sqlite"), "--cache-only", "--output", str(tmp_path / "again")]
    assert main(["build", *flags, *again]) == 0
    assert_same_rows(tmp_path / "merged", tmp_path / "again")
    rebuilt = json.loads((tmp_path / "again" / "lgt_build.json").read_text())["trace_generation"]["traces_stage1"]
    assert rebuilt["traces"] > 0 and all(s["misses"] == 0 for s in rebuilt["models"].values())


def cached(path) -> int:
    with GenerationCache(path) as cache:
        return len(cache)


def test_skipped_records_are_counted_once_by_the_parts_as_by_the_whole_build(tmp_path, monkeypatch):
    """A line that cannot be read is seen by every part (each reads every line) but counted by the first; a scene
    whose image is missing only by the part that builds it. Merged, the count and the report are the whole build's."""
    from conftest import write_image

    monkeypatch.setattr("lgt.builder.SCENES_PER_UNIT", 4)
    write_image(tmp_path / "a.png", size=(320, 240))
    objects = [{"name": name, "bbox": box} for name, box in (("cup", [10, 10, 90, 80]), ("lamp", [200, 30, 300, 200]))]
    lines = [
        json.dumps({"image_id": f"img-{i}", "image": "a.png", "caption": f"scene {i}", "objects": objects})
        for i in range(30)
    ]
    lines[7] = '{"image_id": 7'
    lines[12] = lines[12].replace("a.png", "missing.png")
    (tmp_path / "scenes.jsonl").write_text("\n".join(lines) + "\n")
    settings = dict(source=f"jsonl:{tmp_path / 'scenes.jsonl'}", configs=("mcq_stage1",), on_error="skip")
    whole = build(output=str(tmp_path / "whole"), **settings)
    parts = [str(tmp_path / f"part{index}") for index in range(3)]
    for index, part in enumerate(parts):
        build(output=part, shard=(index, 3), **settings)
    merged = merge(parts, output=str(tmp_path / "merged"))
    assert whole["rejects"] == merged["rejects"] == 2
    records = [json.loads(line)["record"] for line in (tmp_path / "merged.rejects.jsonl").read_text().splitlines()]
    assert sorted(records) == ["img-12", "line 8"]  # the image, by its id; the line, by its number
    assert_same_rows(tmp_path / "whole", tmp_path / "merged")


def test_a_ray_part_asks_for_the_gpus_its_models_backend_takes():
    from lgt.cluster import gpus_needed

    vllm = {"writer": "vllm:Qwen/Qwen2.5-72B-Instruct", "teacher": "vllm:Qwen/Qwen2.5-VL-7B-Instruct"}
    assert gpus_needed({**vllm, "engine_args": {"tensor_parallel_size": 4}}) == 4
    assert gpus_needed({**vllm, "engine_args": {"tensor_parallel_size": 2, "pipeline_parallel_size": 2}}) == 4
    assert gpus_needed(vllm) == 1
    assert gpus_needed({"writer": "openai:big@http://host:8000/v1", "engine_args": {"concurrency": 64}}) == 0
    assert gpus_needed({"teacher": "transformers:tiny"}) == gpus_needed({}) == 0
