"""`lgt push` up to the upload call. The Hub cannot be reached here, so no test claims an upload happened:
these check what is sent (the file list), the refusals, and that the token never reaches the output."""

import os
from pathlib import Path

import pytest
from huggingface_hub import HfApi
from huggingface_hub.utils import filter_repo_objects
from lgt.build import build
from lgt.cli import main
from lgt.hub import PushError, check_build_folder

SECRET = "hf_" + "x" * 34


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    output = tmp_path_factory.mktemp("push") / "lgt"
    build(source="scenes", num_images=10, output=str(output))
    return output


def test_upload_list_is_the_card_and_every_shard(built):
    files = check_build_folder(str(built))
    shards = sorted(str(p.relative_to(built)) for p in built.rglob("*.parquet"))
    assert files == ["README.md", "lgt_build.json", "preview.png", *shards] and shards


def test_refuses_incomplete_folders(built, tmp_path):
    with pytest.raises(PushError, match="no such folder"):
        check_build_folder(str(tmp_path / "nothing"))
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "README.md").write_text((built / "README.md").read_text())
    with pytest.raises(PushError, match="lgt_build.json"):
        check_build_folder(str(tmp_path / "half"))
    (tmp_path / "half" / "lgt_build.json").write_text("{}")
    with pytest.raises(PushError, match="config 'scenes' split 'train' has no files"):
        check_build_folder(str(tmp_path / "half"))


def test_push_without_a_token_says_how_to_log_in(built, capsys):
    assert main(["push", str(built), "--repo-id", "org/lgt"]) == 2
    assert "no Hugging Face token: run `hf auth login` or set HF_TOKEN" in capsys.readouterr().err


def test_push_rejects_a_bad_repo_id(built, capsys):
    assert main(["push", str(built), "--repo-id", "just-a-name"]) == 2
    assert "expected ORG/NAME" in capsys.readouterr().err


def test_push_failure_is_one_line_and_never_shows_the_token(built, capsys, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # the Hub is unreachable: the call must fail cleanly
    code = main(["push", str(built), "--repo-id", "org/lgt"])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err.startswith("lgt: error: upload failed") and len(captured.err.strip().splitlines()) == 1
    assert SECRET not in captured.out + captured.err


def test_push_refuses_a_build_that_references_local_files(small_coco, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)  # with a token, only the refusal stops it before the upload
    output = tmp_path / "lgt"
    build(source=f"coco:{small_coco}", output=str(output), images="path", configs=("mcq_stage1",))
    capsys.readouterr()
    assert main(["push", str(output), "--repo-id", "org/lgt"]) == 2
    err = capsys.readouterr().err
    assert "built with --images path" in err and "rebuild with --images embed" in err
    assert len(err.strip().splitlines()) == 1


def copy_of(built, tmp_path):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(built, folder)
    return folder


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda card: card.replace("configs:", "configs: [", 1), "the YAML header cannot be read"),
        (lambda card: card.replace("  data_files:", "  no_files:", 1), "config 'scenes' has no data_files list"),
        (
            lambda card: card.replace("path: scenes/train-*.parquet", "path: ../../*/*", 1),
            "config 'scenes' split 'train' points outside the folder: ../../*/*",
        ),
        (
            lambda card: card.replace("path: scenes/train-*.parquet", "path: /etc/host*", 1),
            "points outside the folder: /etc/host*",
        ),
    ],
)
def test_a_bad_card_is_a_bad_folder_not_an_upload_failure(built, tmp_path, capsys, edit, problem):
    """Finding 13: a malformed card or data_files were reported as "upload failed (ParserError / KeyError)", and
    data_files pointing outside the folder passed the check and listed files outside it."""
    folder = copy_of(built, tmp_path)
    card = folder / "README.md"
    card.write_text(edit(card.read_text()))
    with pytest.raises(PushError, match=problem.replace("*", r"\*").replace("[", r"\[")):
        check_build_folder(str(folder))
    assert main(["push", str(folder), "--repo-id", "org/lgt"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("lgt: error: ") and problem in line and "upload failed" not in line


def test_a_symlink_out_of_the_folder_is_not_uploaded(built, tmp_path):
    folder = copy_of(built, tmp_path)
    shard = next((folder / "scenes").glob("train-*.parquet"))
    outside = tmp_path / "elsewhere.parquet"
    shard.rename(outside)
    shard.symlink_to(outside)
    with pytest.raises(PushError, match="lists a file outside the folder"):
        check_build_folder(str(folder))


class _FakeHub:
    """Stands in for ``HfApi`` (the Hub cannot be reached here): records every call, uploads nothing."""

    calls: list = []

    def __init__(self, token=None):
        self.token = token

    def create_repo(self, repo_id, **options):
        self.calls.append(("create_repo", repo_id, options))
        return f"https://huggingface.co/datasets/{repo_id}"

    def upload_large_folder(self, **options):
        self.calls.append(("upload_large_folder", options))


# ---- a build in parts: each part's files pushed from wherever it was built, the merged card committed last ----


class RecordingHub(HfApi):
    """``HfApi`` whose calls to the Hub are recorded instead of made (the Hub cannot be reached here): the list of
    operations huggingface_hub is asked to perform, and the files a repo would then hold."""

    operations: list = []
    held: set = set()

    def create_repo(self, repo_id, **kwargs):
        self.operations.append(("create_repo", repo_id))
        return f"https://huggingface.co/datasets/{repo_id}"

    def _upload(self, repo_id, folder_path, allow_patterns=None, **kwargs):
        """The files the uploader would send: those of the folder its ``allow_patterns`` match."""
        present = [p.relative_to(folder_path).as_posix() for p in Path(folder_path).rglob("*") if p.is_file()]
        files = sorted(filter_repo_objects(present, allow_patterns=allow_patterns))
        self.operations.append(("upload", files))
        self.held.update(files)

    if hasattr(HfApi, "upload_large_folder"):
        upload_large_folder = _upload
    else:
        upload_folder = _upload

    def list_repo_files(self, repo_id, **kwargs):
        return sorted(self.held)

    def create_commit(self, repo_id, operations, **kwargs):
        self.operations.append(("commit", sorted(op.path_in_repo for op in operations)))


@pytest.fixture
def hub(monkeypatch):
    monkeypatch.setattr("lgt.hub.HfApi", _FakeHub)
    monkeypatch.setattr("lgt.hub.get_token", lambda: SECRET)
    _FakeHub.calls = []
    return _FakeHub.calls


def test_a_push_sends_exactly_the_files_of_the_build(built, tmp_path, hub, capsys):
    folder = copy_of(built, tmp_path)
    (folder / "explorer").mkdir()
    (folder / "explorer" / "mcq_stage1.html").write_text("<html></html>")  # a page of `lgt show`: not sent
    assert main(["push", str(folder), "--repo-id", "org/lgt"]) == 0
    (_, repo_id, _), (call, options) = hub
    assert (repo_id, call, options["folder_path"]) == ("org/lgt", "upload_large_folder", str(folder))
    assert options["allow_patterns"] == check_build_folder(str(folder))
    assert SECRET not in capsys.readouterr().err


def _link_preview(folder, outside):
    (folder / "preview.png").unlink()
    (folder / "preview.png").symlink_to(outside)


def _link_build_info(folder, outside):
    outside.write_bytes((folder / "lgt_build.json").read_bytes())
    (folder / "lgt_build.json").unlink()
    (folder / "lgt_build.json").symlink_to(outside)


def _link_card(folder, outside):
    outside.write_bytes((folder / "README.md").read_bytes())
    (folder / "README.md").unlink()
    (folder / "README.md").symlink_to(outside)


def _link_config_folder(folder, outside):
    (folder / "scenes").rename(outside)
    (folder / "scenes").symlink_to(outside, target_is_directory=True)


def _fifo_preview(folder, outside):
    (folder / "preview.png").unlink()
    os.mkfifo(folder / "preview.png")


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (_link_preview, "preview.png: a symbolic link (to "),
        (_link_build_info, "lgt_build.json: a symbolic link (to "),
        (_link_card, "README.md: a symbolic link (to "),
        (_link_config_folder, "lists a file outside the folder"),
        (_fifo_preview, "preview.png: not a regular file"),
    ],
    ids=["preview", "build-info", "card", "config-folder", "fifo"],
)
def test_a_link_anywhere_in_what_would_be_sent_stops_the_push_before_any_upload(
    built, tmp_path, hub, capsys, edit, problem
):
    """Finding 1: only the card's data files were checked for links; a preview.png or lgt_build.json linked to
    /etc/passwd or the Hub token file passed, and its target's bytes would have been uploaded."""
    folder = copy_of(built, tmp_path)
    edit(folder, tmp_path / "outside")
    assert main(["push", str(folder), "--repo-id", "org/lgt"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"lgt: error: {folder}") and problem in line
    assert hub == [], "nothing may be created or uploaded"


@pytest.fixture
def recording_hub(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.setattr("lgt.hub.HfApi", RecordingHub)
    RecordingHub.operations, RecordingHub.held = [], set()
    return RecordingHub


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """Three parts of one small build (units of 10 images, so each part holds several)."""
    folder = tmp_path_factory.mktemp("parts")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("lgt.builder.SCENES_PER_UNIT", 10)
        for index in range(3):
            build(
                source="scenes",
                num_images=40,
                configs=("mcq_stage1",),
                output=str(folder / f"part{index}"),
                shard=(index, 3),
            )
    return [folder / f"part{index}" for index in range(3)]


def test_parts_push_disjoint_files_and_the_merge_commits_the_card_once_last(parts, recording_hub, tmp_path, capsys):
    for part in parts:
        assert main(["push", str(part), "--repo-id", "org/lgt"]) == 0
    uploads = [files for operation, files in recording_hub.operations if operation == "upload"]
    assert len(uploads) == 3 and all(uploads)
    for part, files in zip(parts, uploads, strict=True):  # a part sends its own parquet files, under their names
        assert files == sorted(p.relative_to(part).as_posix() for p in part.glob("*/*.parquet"))
    assert sum(map(len, uploads)) == len(set().union(*uploads))  # no file sent by two parts

    assert main(["merge", *map(str, parts), "--output", str(tmp_path / "lgt"), "--repo-id", "org/lgt"]) == 0
    assert recording_hub.operations[-1] == ("commit", ["README.md", "lgt_build.json", "preview.png"])
    assert [operation for operation, _ in recording_hub.operations].count("commit") == 1
    card = {"README.md", "lgt_build.json", "preview.png"}
    assert set().union(*uploads) == set(check_build_folder(str(tmp_path / "lgt"))) - card  # every file it lists
    assert 'load_dataset("org/lgt", "mcq_stage1")' in (tmp_path / "lgt" / "README.md").read_text()
    assert SECRET not in capsys.readouterr().out


def test_the_card_waits_for_every_part(parts, recording_hub, tmp_path, capsys):
    for part in parts[:2]:
        assert main(["push", str(part), "--repo-id", "org/lgt"]) == 0
    assert main(["merge", *map(str, parts), "--output", str(tmp_path / "lgt"), "--repo-id", "org/lgt"]) == 2
    (line,) = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert line.startswith("lgt: error: org/lgt lacks") and "push every part first" in line
    assert "commit" not in [operation for operation, _ in recording_hub.operations]
