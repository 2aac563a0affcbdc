"""Storage: each image stored once per row group, files that load/stream/decode the same, --max-pixels, and one
decode or render per image per build."""

import hashlib
import io
import json
import os
import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import COCO_MINI
from datasets import load_dataset
from lgt.build import build
from lgt.builder import ArrowStreams, LGTBuilder
from lgt.images import FRAME_MIN_PIXELS, HEADER_START, MODEL_MAX_PIXELS, fit_pixels, image_size, model_frame
from lgt.sources.builtin import BuiltinSource
from PIL import Image


def _distinct_image_bytes(path) -> int:
    images = pq.read_table(path, columns=["image"]).column("image").combine_chunks().field("bytes").to_pylist()
    return sum(len(data) for data in {hashlib.sha1(data).digest(): data for data in images}.values())


def test_each_image_is_stored_once_per_row_group(builtin_build):
    output, _ = builtin_build
    files = sorted((output / "mcq_stage1").glob("*.parquet"))
    assert files
    for path in files:
        parquet = pq.ParquetFile(path)
        metadata = parquet.metadata
        for group in range(metadata.num_row_groups):
            columns = {metadata.row_group(group).column(i).path_in_schema: i for i in range(metadata.num_columns)}
            chunk = metadata.row_group(group).column(columns["image.bytes"])
            assert chunk.has_dictionary_page and "RLE_DICTIONARY" in chunk.encodings, chunk
            assert chunk.compression == "UNCOMPRESSED"  # as datasets stores media, so the Hub can deduplicate it
        assert path.stat().st_size <= 1.5 * _distinct_image_bytes(path), path.name
        # datasets' own parquet conventions are kept: features in the schema, content-defined chunking
        assert b"huggingface" in metadata.metadata
        assert json.loads(metadata.metadata[b"content_defined_chunking"])["min_chunk_size"] > 0
        # rows of one image are consecutive: each image id is one run
        ids = pq.read_table(path, columns=["image_id"]).column("image_id").to_pylist()
        runs = [image_id for i, image_id in enumerate(ids) if i == 0 or ids[i - 1] != image_id]
        assert len(runs) == len(set(runs))


def test_dictionary_encoded_files_load_stream_and_decode_the_same(builtin_build):
    output, _ = builtin_build
    loaded = load_dataset(str(output), "mcq_stage1", split="validation")
    streamed = list(load_dataset(str(output), "mcq_stage1", split="validation", streaming=True))
    scenes = {row["image_id"]: row["image"] for row in load_dataset(str(output), "scenes", split="validation")}
    assert len(streamed) == len(loaded) > 0
    for row, streamed_row in zip(loaded, streamed, strict=True):
        pixels = np.asarray(row["image"])
        assert np.array_equal(pixels, np.asarray(streamed_row["image"]))
        assert np.array_equal(pixels, np.asarray(scenes[row["image_id"]]))
        del row["image"], streamed_row["image"]
        assert row == streamed_row


def _png(size) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (10, 20, 30)).save(out, format="PNG")
    return out.getvalue()


def test_fit_pixels_stores_the_frame_the_model_sees():
    """Sides multiples of 28, the area within the budget, the aspect ratio kept as the processor keeps it; an image
    already in its frame is kept byte for byte."""
    assert fit_pixels(_png((504, 476)), 512 * 512) is None  # already the frame: the bytes are kept as they are
    data, suffix, width, height = fit_pixels(_png((512, 512)), 512 * 512)  # small enough, but not on the grid
    assert (width, height) == (504, 504) and Image.open(io.BytesIO(data)).size == (504, 504)
    data, suffix, width, height = fit_pixels(_png((1024, 768)), 512 * 512)
    assert suffix == ".png" and width * height <= 512 * 512 and abs(width / height - 1024 / 768) < 0.1
    assert width % 28 == height % 28 == 0 and Image.open(io.BytesIO(data)).size == (width, height)
    jpeg = io.BytesIO()
    Image.new("RGB", (3000, 1000)).save(jpeg, format="JPEG")
    data, suffix, width, height = fit_pixels(jpeg.getvalue(), 10_000)
    assert suffix == ".jpg" and Image.open(io.BytesIO(data)).format == "JPEG" and (width, height) == (168, 56)


def test_the_frame_is_the_qwen2_vl_processors():
    """``model_frame`` is transformers' ``smart_resize`` of Qwen2-VL (and 2.5-VL), for any size and budget."""
    qwen2_vl = pytest.importorskip("transformers.models.qwen2_vl.image_processing_qwen2_vl")
    rng = random.Random(0)
    for _ in range(3000):
        width, height = rng.randint(1, 4000), rng.randint(1, 4000)
        if max(width, height) / min(width, height) > 150:
            continue
        budget = rng.choice([3136, 12_544, 160 * 120, 512 * 512, 1280 * 28 * 28])
        frame = qwen2_vl.smart_resize(height, width, 28, FRAME_MIN_PIXELS, budget)[::-1]
        assert model_frame(width, height, budget) == frame, (width, height, budget)


def test_the_header_read_finds_the_size_pil_finds(tmp_path):
    """`--images path` reads one header per image: PNG and JPEG headers are read without PIL, which must agree,
    also past a large EXIF segment and for progressive, grey and CMYK files; other formats go to PIL."""
    made = []
    for mode, fmt, options in [
        ("RGB", "PNG", {}),
        ("P", "PNG", {}),
        ("I;16", "PNG", {}),
        ("RGB", "JPEG", {"progressive": True}),
        ("L", "JPEG", {}),
        ("CMYK", "JPEG", {}),
        ("RGB", "JPEG", {"exif": b"Exif\x00\x00" + os.urandom(3 * HEADER_START)}),
        ("RGB", "GIF", {}),
        ("RGB", "WEBP", {}),
    ]:
        path = tmp_path / f"{len(made)}.{fmt.lower()}"
        Image.new("L" if mode == "I;16" else "RGB", (37, 21)).convert(mode).save(path, format=fmt, **options)
        made.append(path)
    coco = sorted((COCO_MINI / "images").rglob("*.jpg"))[:20] if (COCO_MINI / "images").is_dir() else []
    for path in made + coco:
        with Image.open(path) as image:
            assert image_size(str(path), "r") == image.size, path


def test_max_pixels_stores_the_model_frame_and_scales_boxes(small_coco, tmp_path):
    """COCO images of 320x240 in the frame of 160x120 pixels (140x112: sides multiples of 28): every box scales
    with its image, and the questions use the new boxes; by default, the recipes' frame of 512x512."""
    build(source=f"coco:{small_coco}", output=str(tmp_path / "full"), max_pixels=0)  # keep sizes
    info = build(source=f"coco:{small_coco}", output=str(tmp_path / "small"), max_pixels=160 * 120)
    assert info["arguments"]["max_pixels"] == 160 * 120
    before = {r["image_id"]: r for r in load_dataset(str(tmp_path / "full"), "scenes", split="train")}
    after = load_dataset(str(tmp_path / "small"), "scenes", split="train")
    assert len(after) == len(before) > 0
    for scene in after:
        original = before[scene["image_id"]]
        assert (original["width"], original["height"]) == (320, 240)
        assert (scene["width"], scene["height"]) == (140, 112) == scene["image"].size
        assert scene["image"].format == "JPEG"  # a JPEG source stays JPEG
        for box, original_box in zip(scene["objects"], original["objects"], strict=True):
            scale = [140 / 320, 112 / 240] * 2
            assert box["bbox"] == pytest.approx([v * s for v, s in zip(original_box["bbox"], scale, strict=True)])
    for mcq in load_dataset(str(tmp_path / "small"), "mcq_stage1", split="train"):
        assert mcq["image"].size == (140, 112)
        for ground in mcq["grounding"]:
            assert all(0 <= v <= 140 for v in ground["bbox"][::2]) and all(0 <= v <= 112 for v in ground["bbox"][1::2])
    default = build(source=f"coco:{small_coco}", output=str(tmp_path / "default"), configs=("scenes",))
    assert default["arguments"]["max_pixels"] == MODEL_MAX_PIXELS
    assert {r["image"].size for r in load_dataset(str(tmp_path / "default"), "scenes", split="train")} == {(308, 252)}
    with pytest.raises(ValueError, match="needs --images embed"):
        build(source=f"coco:{small_coco}", output=str(tmp_path / "x"), images="path", max_pixels=1000)
    kept = build(source=f"coco:{small_coco}", output=str(tmp_path / "path"), images="path", configs=("scenes",))
    assert kept["arguments"]["max_pixels"] == 0  # referenced files stay as they are


def test_while_a_build_runs_only_the_scenes_arrow_files_hold_images(tmp_path, monkeypatch):
    """The scratch disk holds each image once: the Arrow files of the configs made from the scenes hold none (an
    image per row would be 8 copies of each for stage 1), and the images are put back as the parquet is written.
    Those Arrow files are compressed, so the scratch stays near the size of the output."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from lgt import build as build_module
    from lgt.builder import arrow_files, image_columns

    nulls, compressed = {}, {}
    write = build_module._arrow_to_parquet

    def counting_write(builder, config, *args):
        compressed[config] = builder.compressed
        for name, listed in image_columns(builder.info.features).items():
            for path, _ in (entry for paths in arrow_files(builder).values() for entry in paths):
                column = pa.ipc.open_stream(pa.memory_map(path)).read_all().column(name)
                column = pa.chunked_array([c.flatten() for c in column.chunks]) if listed else column
                found = nulls.setdefault(config, [0, 0])
                found[0], found[1] = found[0] + column.null_count, found[1] + len(column)
        return write(builder, config, *args)

    monkeypatch.setattr(build_module, "_arrow_to_parquet", counting_write)
    build(source="scenes", num_images=12, output=str(tmp_path / "lgt"))
    assert nulls["scenes"][0] == 0 and nulls["scenes"][1] == 12
    held = {config: found for config, found in nulls.items() if config != "scenes"}
    assert compressed.pop("scenes") is False  # its images are left as they are
    assert set(held) < set(compressed) and all(compressed.values())  # every other config's are
    assert len(held) == 8 and all(found[0] == found[1] > 0 for found in held.values())  # mcq, sft, dpo, rl: none
    for config in held:
        for path in (tmp_path / "lgt" / config).glob("*.parquet"):
            table = pq.read_table(path)
            images = (
                table.column("image") if "image" in table.column_names else pc.list_flatten(table.column("images"))
            )
            assert images.null_count == 0 and len(images) == table.num_rows


def test_each_scene_is_rendered_once_per_build_and_only_asked_configs_are_written(tmp_path, monkeypatch):
    rendered = []
    render = BuiltinSource.scene

    def counting_render(self, index):
        rendered.append(index)
        return render(self, index)

    monkeypatch.setattr(BuiltinSource, "scene", counting_render)
    info = build(source="scenes", num_images=12, output=str(tmp_path / "all"))
    assert sorted(rendered) == list(range(12)) and info["configs"][:2] == ["scenes", "mcq_stage1"]
    rendered.clear()
    info = build(source="scenes", num_images=12, output=str(tmp_path / "mcq"), configs=("mcq_stage1",))
    assert sorted(rendered) == list(range(12))  # the scenes are still made once, as the parent ...
    assert info["configs"] == ["mcq_stage1"]
    assert sorted(p.name for p in (tmp_path / "mcq").iterdir() if p.is_dir()) == ["mcq_stage1"]  # ... not written


def test_a_child_builder_alone_prepares_its_parent_in_the_same_cache(tmp_path):
    builder = LGTBuilder(config_name="mcq_stage1", source="scenes", num_images=6, cache_dir=str(tmp_path))
    builder.download_and_prepare()
    parent = LGTBuilder.with_settings("scenes", str(tmp_path), source="scenes", num_images=6)
    assert os.path.isfile(os.path.join(parent.cache_dir, "dataset_info.json"))  # prepared by the child
    mcqs = builder.as_dataset(split="train")
    scenes = {row["image_id"]: row for row in parent.as_dataset(split="train")}
    assert set(mcqs["image_id"]) <= set(scenes)


def test_pieces_of_an_arrow_stream_are_read_forward_and_exactly(tmp_path):
    """A file's pieces come in order and are read without going back to its start; a piece that starts before
    where a thread's stream stands reopens it. Every piece is exactly its rows, across batch edges."""
    path = str(tmp_path / "rows.arrow")
    table = pa.table({"n": list(range(100))})
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=7):
            writer.write_batch(batch)
    streams = ArrowStreams()
    pieces = [(0, 10), (10, 5), (20, 30), (50, 0), (95, 5), (3, 20), (60, 40)]  # (3, 20) goes back
    for first, length in pieces:
        rows = [n for batch in streams.slices(path, first, length) for n in batch.column("n").to_pylist()]
        assert rows == list(range(first, first + length))
    assert len(streams.opened) == 2
    streams.close()


def test_a_staged_builder_makes_the_same_rows_in_compressed_files(tmp_path):
    """What ``lgt build`` prepares (``staged``: compressed Arrow files of 1,000-row batches) reads back as the rows an
    unstaged builder makes, for a config with referenced images and one made from it."""
    from conftest import write_image

    write_image(tmp_path / "img.png", size=(400, 300))
    rng = random.Random(0)
    with open(tmp_path / "scenes.jsonl", "w") as f:
        for n in range(60):
            boxes = [(rng.uniform(0, 300), rng.uniform(0, 200), rng.uniform(30, 99)) for _ in range(rng.randint(3, 8))]
            names = rng.sample(["cup", "dog", "cat", "car", "tree", "lamp", "book", "chair"], 4)
            objects = [{"name": rng.choice(names), "bbox": [x, y, x + side, y + side]} for x, y, side in boxes]
            f.write(json.dumps({"image_id": f"img-{n}", "image": "img.png", "caption": "Things.", "objects": objects}))
            f.write("\n")
    settings = {"source": f"jsonl:{tmp_path / 'scenes.jsonl'}", "images": "path"}
    rows, disk = {}, {}
    for staged in (False, True):
        cache = str(tmp_path / f"cache-{staged}")
        builder = LGTBuilder.with_settings("mcq_stage1", cache, staged=staged, **settings)
        builder.download_and_prepare(num_proc=2)
        parent = LGTBuilder.with_settings("scenes", cache, staged=staged, **settings)
        assert builder.compressed is parent.compressed is staged
        rows[staged] = [b.as_dataset(split="train").with_format("arrow")[:].to_pylist() for b in (parent, builder)]
        files = [os.path.join(b.cache_dir, name) for b in (parent, builder) for name in os.listdir(b.cache_dir)]
        disk[staged] = sum(os.path.getsize(path) for path in files if path.endswith(".arrow"))
    assert rows[True] == rows[False] and len(rows[True][1]) > 100
    assert disk[True] < disk[False] / 2


def test_parquet_bytes_depend_on_the_rows_not_on_how_the_scratch_batches_them(tmp_path):
    """Parquet pages follow the batches a file is written from: 500 rows with a list of images each, the images put
    back from the scenes' file as ``lgt build`` does, came out different written in batches of 37 and of 100. So the
    rows are handed over in batches cut the same way, however the Arrow files they come from are batched (100 rows in
    datasets' files, 1,000 in compressed ones)."""
    from functools import partial

    import datasets
    from lgt.build import _write_rows, parquet_writer
    from lgt.builder import SceneImages

    scenes = pa.table(
        {
            "image_id": [f"img-{i}" for i in range(100)],
            "image": [{"bytes": random.Random(i).randbytes(100_000), "path": f"{i}.png"} for i in range(100)],
        },
        schema=pa.schema([("image_id", pa.string()), ("image", datasets.Image().pa_type)]),
    )
    with pa.OSFile(str(tmp_path / "scenes.arrow"), "wb") as sink, pa.ipc.new_stream(sink, scenes.schema) as writer:
        writer.write_table(scenes)
    images = SceneImages({"train": [(str(tmp_path / "scenes.arrow"), 100)]})
    features = datasets.Features({"image_id": datasets.Value("string"), "images": datasets.List(datasets.Image())})
    rows = pa.Table.from_pylist(
        [{"image_id": f"img-{n // 5}", "images": [None]} for n in range(500)], schema=features.arrow_schema
    )
    written, columns = [], {"images": True}
    for batch_rows, compression in ((37, None), (100, None), (1000, "zstd")):
        arrow = str(tmp_path / f"{batch_rows}.arrow")
        options = pa.ipc.IpcWriteOptions(compression=compression)
        with pa.OSFile(arrow, "wb") as sink, pa.ipc.new_stream(sink, rows.schema, options=options) as writer:
            for batch in rows.to_batches(max_chunksize=batch_rows):
                writer.write_batch(batch)
        streams = ArrowStreams()
        parquet = tmp_path / f"{batch_rows}.parquet"
        with parquet_writer(features)(str(parquet)) as writer:
            _write_rows(writer, [(arrow, 0, 230), (arrow, 230, 270)], streams, partial(images.fill, columns=columns))
        streams.close()
        table = pq.read_table(parquet)
        assert table.column("image_id").equals(rows.column("image_id"))
        assert [image["bytes"] for image in table.column("images").combine_chunks().flatten().to_pylist()[::5]] == [
            image["bytes"] for image in scenes.column("image").to_pylist()
        ]
        written.append(parquet.read_bytes())
    assert all(data == written[0] for data in written)
