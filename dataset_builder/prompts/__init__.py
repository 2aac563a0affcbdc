"""Prompt templates as versioned files: ``NAME.vN.txt`` beside this module, filled with ``string.Template``.

A prompt's id, ``NAME@N``, goes into every request's cache key and every row's ``generator``: editing a prompt
means adding the next version, so a build never mixes two wordings under one name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from string import Template

_FILE = re.compile(r"^(?P<name>[a-z0-9_]+)\.v(?P<version>\d+)\.txt$")


@dataclass(frozen=True)
class Prompt:
    name: str
    version: int
    text: str

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"

    def render(self, **values) -> str:
        """The prompt with its ``$placeholders`` filled; a placeholder left unfilled is an error."""
        return Template(self.text).substitute(values)


def load_prompt(name: str, version: int | None = None) -> Prompt:
    """The prompt ``name`` at ``version``, or its latest version."""
    versions = {}
    for entry in resources.files(__package__).iterdir():
        match = _FILE.match(entry.name)
        if match and match["name"] == name:
            versions[int(match["version"])] = entry
    if not versions:
        raise ValueError(f"no prompt named {name!r} in {__package__}")
    chosen = max(versions) if version is None else version
    if chosen not in versions:
        raise ValueError(f"prompt {name!r} has no version {chosen} (has {sorted(versions)})")
    return Prompt(name, chosen, versions[chosen].read_text(encoding="utf-8"))
