"""`lgt push` up to the upload call. The Hub cannot be reached here, so no test claims an upload happened:
these check what is sent (the file list), the refusals, and that the token never reaches the output."""

import os

import pytest
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
    assert files == shards and shards


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
