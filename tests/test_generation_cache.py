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


def _foreign(path, application_id=0, table="CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)"):
    db = sqlite3.connect(path)
    db.execute(table)
    db.execute(f"PRAGMA application_id={application_id}")
    db.commit()
    db.close()


@pytest.mark.parametrize(
    ("make", "problem", "code"),
    [
        (lambda path: _foreign(path), "an SQLite database of another program (application id 0, tables notes)", 2),
        (
            lambda path: _foreign(path, table="CREATE TABLE generations (key BLOB, other TEXT)"),
            "an SQLite database of another program (application id 0, tables generations)",
            2,
        ),
        (
            lambda path: _foreign(path, application_id=42),
            "an SQLite database of another program (application id 42",
            2,
        ),
        (lambda path: path.write_bytes(bytes(range(256)) * 16), "not an SQLite file", 2),
        (lambda path: path.mkdir(), "not a file (a folder or a device)", 2),
    ],
    ids=["foreign", "foreign-with-generations", "other-application", "random-bytes", "folder"],
)
def test_a_file_that_is_not_a_generation_cache_is_refused_untouched(tmp_path, make, problem, code):
    """Finding 5: another program's database was given a table, switched to WAL and stamped as ours (or broken for
    good when it had a `generations` table); random bytes or a folder were tracebacks that did not name the file."""
    path = tmp_path / "other.db"
    make(path)
    before = path.read_bytes() if path.is_file() else None
    for read_only in (False, True):
        with pytest.raises(GenerationError) as raised:
            GenerationCache(path, read_only=read_only)
        assert str(raised.value).startswith(f"generation cache {path}: {problem}") and raised.value.exit_code == code
    assert (path.read_bytes() if path.is_file() else None) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db"], "no journal or WAL file was made beside it"


def test_dev_null_an_empty_file_and_a_missing_file(tmp_path):
    with pytest.raises(GenerationError, match=r"^generation cache /dev/null: not a file \(a folder or a device\)"):
        GenerationCache("/dev/null")
    (tmp_path / "empty.sqlite").touch()
    with pytest.raises(GenerationError, match=r"empty\.sqlite: the file is empty: it holds no generations"):
        GenerationCache(tmp_path / "empty.sqlite", read_only=True)
    with GenerationCache(tmp_path / "empty.sqlite") as cache:  # an empty file may become a cache
        assert len(cache) == 0
    with pytest.raises(GenerationError, match=r"missing\.sqlite: no such file"):
        GenerationCache(tmp_path / "missing.sqlite", read_only=True)
    assert not (tmp_path / "missing.sqlite").exists()


def test_a_cut_short_cache_is_named_as_such(tmp_path):
    path = tmp_path / "c.sqlite"
    with GenerationCache(path) as cache:
        cache.put_many(
            (_key(_request(seed=i)), "m", "t@1", Response(("x" * 2000,), ("stop",), 1, 1)) for i in range(200)
        )
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(
        GenerationError, match=rf"c\.sqlite: cut short: its header counts {size:,} bytes, the file"
    ) as e:
        GenerationCache(path, read_only=True)
    assert e.value.exit_code == 1


def test_a_read_only_cache_reads_and_refuses_to_store(tmp_path):
    path = tmp_path / "c.sqlite"
    response = Response(("answer",), ("stop",), 3, 1)
    with GenerationCache(path) as cache:
        cache.put_many([(b"k" * 32, "m", "t@1", response)])
    with GenerationCache(path, read_only=True) as cache:
        assert cache.get_many([b"k" * 32]) == {b"k" * 32: response} and len(cache) == 1
        with pytest.raises(GenerationError, match="opened read-only"):
            cache.put_many([(b"j" * 32, "m", "t@1", response)])
