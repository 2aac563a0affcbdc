"""``lgt push``: upload a built folder to a dataset repository on the Hub with ``huggingface_hub``.

The folder is checked first (a complete lgt build whose card lists files that exist), so nothing half-built is
published. The token comes from ``HF_TOKEN`` or ``hf auth login`` and is never printed.
"""

from __future__ import annotations

import glob
import json
import os

from datasets.utils import logging
from huggingface_hub import HfApi, get_token
from huggingface_hub.repocard import RepoCard

from .build import BUILD_INFO_FILE

logger = logging.get_logger(__name__)


class PushError(RuntimeError):
    pass


def check_build_folder(folder: str) -> list[str]:
    """The files to upload; ``PushError`` if ``folder`` is not a complete lgt build."""
    if not os.path.isdir(folder):
        raise PushError(f"{folder}: no such folder (run `lgt build` first)")
    for name in ("README.md", BUILD_INFO_FILE):
        if not os.path.isfile(os.path.join(folder, name)):
            raise PushError(f"{folder}: missing {name}; it is not a complete lgt build (run `lgt build` again)")
    configs = RepoCard.load(os.path.join(folder, "README.md")).data.to_dict().get("configs") or []
    if not configs:
        raise PushError(f"{folder}/README.md: the card lists no configs")
    files = []
    for config in configs:
        for data_file in config["data_files"]:
            matches = glob.glob(os.path.join(folder, data_file["path"]))
            if not matches:
                raise PushError(
                    f"{folder}: config {config['config_name']!r} split {data_file['split']!r} has no "
                    f"files matching {data_file['path']}"
                )
            files += matches
    return sorted(os.path.relpath(path, folder) for path in files)


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
    patterns = ["README.md", BUILD_INFO_FILE, "preview.png", *files]
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
