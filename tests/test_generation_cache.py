"""The generation cache and its keys: content addressing, several writers at once, export to and from datasets."""

import hashlib
import sqlite3
import subprocess
import sys
import textwrap
from dataclasses import replace

import pytest
from datasets import Dataset
from lgt.errors import GenerationError
from lgt.generation import GenerationCache, ImagePart, Message, Request, Response, Sampling, request_key


def _request(image=b"\x89PNG fake bytes one", text="How many cats?", **sampling) -> Request:
    return Request((Message("user", (ImagePart(image), text)),), Sampling(**sampling), template="t@1")


def _key(request, model="m", revision="r", settings=None):
    return request_key(request, model, revision, settings)


def test_key_covers_everything_that_changes_the_answer():
    base = _request(seed=1)
    assert _key(base) == _key(_request(seed=1)), "the same request must address the same answer"
    changed = [
        _request(image=b"\x89PNG fake bytes two", seed=1),
        _request(text="How many dogs?", seed=1),
        *(
            _request(seed=1, **{name: value})
            for name, value in {
                "n": 2,
                "temperature": 0.5,
                "top_p": 0.9,
                "top_k": 20,
                "max_tokens": 7,
                "stop": ("x",),
                "repetition_penalty": 1.1,
            }.items()
        ),
        _request(seed=2),
        replace(base, prefill="Wait,"),
        replace(base, banned_words=("description",)),
        replace(base, schema={"type": "object"}),
        replace(base, template="t@2"),
        Request((Message("system", base.messages[0].content),), base.sampling, template="t@1"),
    ]
    keys = {_key(request) for request in changed}
    assert len(keys) == len(changed) and _key(base) not in keys
    assert _key(base, model="other") != _key(base)
    assert _key(base, revision="r2") != _key(base)
    assert _key(base, settings={"max_pixels": 1024}) != _key(base)


def test_image_is_keyed_by_content_not_identity():
    data = bytes(range(256)) * 4
    one, two = ImagePart(data), ImagePart(bytes(bytearray(data)))
    assert one is not two and one.sha256 == two.sha256 == hashlib.sha256(data).hexdigest()
    assert _key(_request(image=data)) == _key(_request(image=bytes(bytearray(data))))


def test_put_and_get_round_trip(tmp_path):
    with GenerationCache(tmp_path / "c.sqlite") as cache:
        response = Response(("ünïcode \x00 text", "second"), ("stop", "length"), 12, 34)
        key = _key(_request())
        cache.put_many([(key, "m", "t@1", response)])
        assert cache.get_many([key, b"\x00" * 32]) == {key: response}
        # A key already present keeps its first answer: content addressing makes a second one redundant.
        cache.put_many([(key, "m", "t@1", Response(("other",), ("stop",), 1, 1))])
        assert cache.get_many([key])[key] == response and len(cache) == 1
        assert cache._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_export_and_import_through_a_dataset(tmp_path):
    source = GenerationCache(tmp_path / "a.sqlite")
    items = [
        (hashlib.sha256(str(i).encode()).digest(), "m", f"t@{i % 2}", Response((f"text {i}",), ("stop",), i, 2 * i))
        for i in range(50)
    ]
    source.put_many(items)
    exported = source.to_dataset()
    assert isinstance(exported, Dataset) and len(exported) == 50
    path = tmp_path / "exported"
    exported.save_to_disk(str(path))
    target = GenerationCache(tmp_path / "b.sqlite")
    assert target.import_dataset(Dataset.load_from_disk(str(path))) == 50
    assert target.get_many([key for key, *_ in items]) == {key: response for key, _, _, response in items}
    with pytest.raises(ValueError, match="columns"):
        target.import_dataset(Dataset.from_dict({"key": ["00"]}))


_WRITER = textwrap.dedent(
    """
    import hashlib, os, sys, time
    from lgt.generation import GenerationCache, Response
    path, start, stop, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    while not os.path.exists(go):
        time.sleep(0.01)
    cache = GenerationCache(path)
    for first in range(start, stop, 50):
        cache.put_many(
            (hashlib.sha256(str(i).encode()).digest(), "m", "t@1", Response((f"answer {i}" * 20,), ("stop",), i, i))
            for i in range(first, min(first + 50, stop))
        )
    """
)


def test_two_processes_writing_at_once_corrupt_nothing(tmp_path):
    path, go = tmp_path / "shared.sqlite", tmp_path / "go"
    GenerationCache(path).close()
    # Overlapping ranges: both processes write keys 2000-2999 while each also writes its own.
    writers = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(a), str(b), str(go)])
        for a, b in ((0, 3000), (2000, 5000))
    ]
    go.touch()
    assert [writer.wait(timeout=120) for writer in writers] == [0, 0]
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    cache = GenerationCache(path)
    keys = {hashlib.sha256(str(i).encode()).digest(): i for i in range(5000)}
    found = cache.get_many(keys)
    assert len(found) == len(cache) == 5000
    assert all(found[key].texts == (f"answer {i}" * 20,) and found[key].prompt_tokens == i for key, i in keys.items())


def test_a_cache_in_another_format_is_refused(tmp_path):
    GenerationCache(tmp_path / "c.sqlite").close()
    db = sqlite3.connect(tmp_path / "c.sqlite")
    db.execute("PRAGMA user_version=99")
    db.commit()
    db.close()
    with pytest.raises(GenerationError, match=r"c\.sqlite: a generation cache in format 99; this lgt reads format 1"):
        GenerationCache(tmp_path / "c.sqlite")
