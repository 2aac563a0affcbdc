"""``lgt push``: upload a built folder to a dataset repository on the Hub with ``huggingface_hub``.

The folder is checked first (a complete lgt build whose card lists files that exist), so nothing half-built is
published, and so is every file that would be sent: only regular files inside the folder go, never a symbolic link
(to ``/etc/passwd``, to the token file ...) or what a linked folder holds, whatever its name. The token comes from
``HF_TOKEN`` or ``hf auth login`` and is never printed.
"""

from __future__ import annotations

import glob
import json
import os
import stat

from datasets.utils import logging
from huggingface_hub import HfApi, get_token
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
    """Create the dataset repo if needed and upload ``folder``; return the repo URL. Re-running resumes."""
    files = check_build_folder(folder)
    try:
        with open(os.path.join(folder, BUILD_INFO_FILE), encoding="utf-8") as f:
            arguments = json.load(f).get("arguments", {})
    except json.JSONDecodeError as err:
        raise PushError(f"{folder}/{BUILD_INFO_FILE}: not valid JSON ({err}); run `lgt build` again") from None
    if arguments.get("images") == "path":
        raise PushError(
            f"{folder} was built with --images path: its rows point at image files on this machine, which nobody "
            "who downloads it has; rebuild with --images embed (the default) to publish it"
        )
    if "/" not in repo_id or repo_id.count("/") != 1:
        raise PushError(f"--repo-id {repo_id!r}: expected ORG/NAME")
    token = get_token()
    if not token:
        raise PushError("no Hugging Face token: run `hf auth login` or set HF_TOKEN")
    api = HfApi(token=token)
    url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    patterns = [glob.escape(name) for name in files]  # exactly these files: each name matches only itself
    logger.info(f"Uploading {len(patterns)} files to {url}")
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
            commit_message="Upload lgt build",
        )
    return str(url)
