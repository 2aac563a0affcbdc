"""``lgt push``: upload a built folder to a dataset repository on the Hub with ``huggingface_hub``.

The folder is checked first (a complete lgt build whose card lists files that exist), so nothing half-built is
published, and so is every file that would be sent: only regular files inside the folder go, never a symbolic link
(to ``/etc/passwd``, to the token file ...) or what a linked folder holds, whatever its name. The token comes from
``HF_TOKEN`` or ``hf auth login`` and is never printed.

A build made in parts is published part by part from wherever each was built (``push_part``: its parquet files,
already named as in the whole build), then ``lgt merge --repo-id`` commits the merged card last (``push_card``).
"""

from __future__ import annotations

import glob
import json
import os
import stat

from datasets.utils import logging
from huggingface_hub import CommitOperationAdd, HfApi, get_token
from huggingface_hub.repocard import RepoCard

from .build import BUILD_INFO_FILE
from .card import PREVIEW_FILE

logger = logging.get_logger(__name__)


class PushError(RuntimeError):
    pass


def check_build_folder(folder: str) -> list[str]:
    """Every file to upload, relative to ``folder`` (the card, ``lgt_build.json``, the preview, the card's data
    files); ``PushError`` if ``folder`` is not a complete lgt build or one of them is not a regular file inside it.

    The card's YAML must be readable and list, per config, ``data_files`` that match files inside ``folder``:
    a card pointing elsewhere (``../../``, an absolute path, a symlink out) is refused, not followed.
    """
    if not os.path.isdir(folder):
        raise PushError(f"{folder}: no such folder (run `lgt build` first)")
    for name in ("README.md", BUILD_INFO_FILE):
        if not os.path.lexists(os.path.join(folder, name)):
            raise PushError(f"{folder}: missing {name}; it is not a complete lgt build (run `lgt build` again)")
        _check_regular(folder, name)
    card = os.path.join(folder, "README.md")
    try:
        metadata = RepoCard.load(card).data.to_dict()
    except Exception as err:  # yaml's ParserError, ScannerError, ...; a card is ours to check, not to debug
        problem = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise PushError(f"{card}: the YAML header cannot be read ({type(err).__name__}: {problem})") from None
    configs = metadata.get("configs") or []
    if not isinstance(configs, list) or not configs:
        raise PushError(f"{card}: the card lists no configs")
    root = os.path.realpath(folder)
    files = set()
    for config in configs:
        name = config.get("config_name") if isinstance(config, dict) else None
        data_files = config.get("data_files") if isinstance(config, dict) else None
        if not isinstance(name, str) or not isinstance(data_files, list) or not data_files:
            raise PushError(f"{card}: config {name or config!r} has no data_files list")
        for data_file in data_files:
            split, pattern = _split_pattern(card, name, data_file)
            if os.path.isabs(pattern) or ".." in pattern.replace("\\", "/").split("/"):
                raise PushError(f"{card}: config {name!r} split {split!r} points outside the folder: {pattern}")
            matches = glob.glob(os.path.join(folder, pattern))
            if not matches:
                raise PushError(f"{folder}: config {name!r} split {split!r} has no files matching {pattern}")
            for path in matches:
                if os.path.commonpath([os.path.realpath(path), root]) != root:
                    raise PushError(f"{path}: config {name!r} split {split!r} lists a file outside the folder")
                files.add(os.path.relpath(path, folder))
    preview = [PREVIEW_FILE] if os.path.lexists(os.path.join(folder, PREVIEW_FILE)) else []
    upload = ["README.md", BUILD_INFO_FILE, *preview, *sorted(files)]
    for name in upload:
        _check_regular(folder, name)
    return upload


def _check_regular(folder: str, name: str) -> None:
    """``PushError`` unless ``name`` in ``folder`` is a regular file: a link's target would be uploaded instead.
    (The data files are also checked to lie inside the folder after links are resolved.)"""
    path = os.path.join(folder, name)
    mode = os.lstat(path).st_mode
    if stat.S_ISLNK(mode):
        raise PushError(
            f"{path}: a symbolic link (to {os.readlink(path)}); lgt push uploads only regular files inside the "
            "folder: put the file itself there, or build again"
        )
    if not stat.S_ISREG(mode):
        raise PushError(f"{path}: not a regular file; lgt push uploads only regular files inside the folder")


def _split_pattern(card: str, config: str, data_file) -> tuple[str, str]:
    """``(split, path pattern)`` of one ``data_files`` entry as lgt writes it: ``{split: ..., path: ...}``."""
    if not (isinstance(data_file, dict) and isinstance(data_file.get("path"), str)):
        raise PushError(f"{card}: config {config!r} has a data_files entry without a path: {data_file!r}")
    return str(data_file.get("split", "train")), data_file["path"]


def push(folder: str, repo_id: str, private: bool = False, revision: str | None = None) -> str:
    """Create the dataset repo if needed and upload ``folder``; return the repo URL. Re-running resumes.

    A part of a build (``lgt build --shard I/N``) uploads its parquet files only (``push_part``).
    """
    if (_build_info(folder) or {}).get("shard"):
        return push_part(folder, repo_id, private, revision)
    files = check_build_folder(folder)
    try:
        with open(os.path.join(folder, BUILD_INFO_FILE), encoding="utf-8") as f:
            arguments = json.load(f).get("arguments", {})
    except json.JSONDecodeError as err:
        raise PushError(f"{folder}/{BUILD_INFO_FILE}: not valid JSON ({err}); run `lgt build` again") from None
    _refuse_local_images(folder, arguments)
    api, url = _repo(repo_id, private)
    logger.info(f"Uploading {len(files)} files to {url}")
    _upload(api, repo_id, folder, files, private, revision, "Upload lgt build")
    return url


def _refuse_local_images(folder: str, arguments: dict) -> None:
    if arguments.get("images") == "path":
        raise PushError(
            f"{folder} was built with --images path: its rows point at image files on this machine, which nobody "
            "who downloads it has; rebuild with --images embed (the default) to publish it"
        )


def _upload(api: HfApi, repo_id: str, folder: str, names: list[str], private: bool, revision, message: str):
    """Upload exactly the files ``names`` of ``folder``, resumably; nothing else in the repo is touched."""
    patterns = [glob.escape(name) for name in names]  # each name matches only itself
    if hasattr(api, "upload_large_folder"):  # huggingface_hub < 2: the resumable uploader is a separate call
        api.upload_large_folder(
            repo_id=repo_id,
            folder_path=folder,
            repo_type="dataset",
            revision=revision,
            allow_patterns=patterns,
            private=private,
        )
    else:  # huggingface_hub >= 2: upload_folder itself resumes and commits large folders in parts
        api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            repo_type="dataset",
            revision=revision,
            allow_patterns=patterns,
            commit_message=message,
        )


# ---- a build made in parts (``lgt build --shard I/N``): each part's files, then the merged card, last ----


def _build_info(folder: str) -> dict | None:
    """``folder``'s build record, or None when it has none that can be read (``push`` then says what is wrong)."""
    try:
        with open(os.path.join(folder, BUILD_INFO_FILE), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


def _repo(repo_id: str, private: bool) -> tuple[HfApi, str]:
    """The API with the user's token, and the dataset repo's URL (created if needed)."""
    if "/" not in repo_id or repo_id.count("/") != 1:
        raise PushError(f"--repo-id {repo_id!r}: expected ORG/NAME")
    token = get_token()
    if not token:
        raise PushError("no Hugging Face token: run `hf auth login` or set HF_TOKEN")
    api = HfApi(token=token)
    return api, str(api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True))


def part_files(folder: str) -> list[str]:
    """The parquet files of a part of a build, by the names they have in the whole build; ``PushError`` for one that
    is a link or lies outside the folder (a part's files are its own, written by lgt)."""
    root = os.path.realpath(folder)
    files = []
    for path in sorted(glob.glob(os.path.join(glob.escape(folder), "*", "*-of-*.parquet"))):
        if os.path.islink(path) or not os.path.isfile(path) or not os.path.realpath(path).startswith(root + os.sep):
            raise PushError(f"{path}: not a regular file of the part; build the part again")
        files.append(os.path.relpath(path, folder))
    return files


def push_part(folder: str, repo_id: str, private: bool = False, revision: str | None = None) -> str:
    """Upload a part's parquet files under their final names, resumably, touching no other part's files: the parts
    of a build pushed from wherever each was built, then ``push_card`` once merged. Returns the repo URL."""
    info = _build_info(folder)
    if info is None or "shard" not in info:
        raise PushError(f"{folder}: not a part of a build (built with --shard I/N)")
    _refuse_local_images(folder, info["arguments"])
    files = part_files(folder)
    if not files:
        raise PushError(f"{folder}: the part holds no files (its build made no rows)")
    api, url = _repo(repo_id, private)
    index, count = info["shard"]
    logger.info(f"Uploading {len(files)} files of part {index}/{count} to {url}")
    _upload(api, repo_id, folder, files, private, revision, f"Upload lgt part {index}/{count}")
    return url


def push_card(folder: str, repo_id: str, private: bool = False, revision: str | None = None) -> str:
    """Commit a merged build's card, record and preview to the repo its parts were pushed to: the last commit, in
    one, once every data file the card lists is there (the repo's file list is read; nothing is downloaded)."""
    card_files = ("README.md", BUILD_INFO_FILE, PREVIEW_FILE)
    data_files = [name for name in check_build_folder(folder) if name not in card_files]
    api, url = _repo(repo_id, private)
    held = set(api.list_repo_files(repo_id, repo_type="dataset", revision=revision))
    missing = [name for name in data_files if name not in held]
    if missing:
        raise PushError(
            f"{repo_id} lacks {len(missing)} file(s) of the build, e.g. {missing[0]}: push every part first "
            f"(`lgt push PART --repo-id {repo_id}`)"
        )
    operations = [
        CommitOperationAdd(path_in_repo=name, path_or_fileobj=os.path.join(folder, name))
        for name in card_files
        if os.path.isfile(os.path.join(folder, name))
    ]
    api.create_commit(
        repo_id,
        operations,
        commit_message="lgt merge: the card of the merged build",
        repo_type="dataset",
        revision=revision,
    )
    return url
