"""What wrote a row, as its ``generator`` column names it: written and read here only.

stage1/count@3                                         a stage-1 template and its version
stage2/chain@2                                         a stage-2 composition template and its version
stage1/llm@1:Qwen/Qwen2.5-72B-Instruct@<revision>      a model: the prompt version, then model and revision
                                                       (``+verify@...`` when a verifier kept the question)
"""

from __future__ import annotations

from typing import NamedTuple


class Generator(NamedTuple):
    stage: str  # "stage1" or "stage2"
    template: str  # the template's name, or "llm" for a model
    version: str  # everything after the template's "@": its version, or the prompt version and the model


def generator_id(stage: str, template: str, version: str | int) -> str:
    return f"{stage}/{template}@{version}"


def parse_generator(text: str) -> Generator:
    """The parts of a ``generator`` value; an unknown form reads as empty parts, which match no template."""
    stage, _, rest = text.partition("/")
    template, _, version = rest.partition("@")
    return Generator(stage, template, version)
