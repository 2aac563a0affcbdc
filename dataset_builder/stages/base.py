"""What a stage is: one config, declared whole in one place.

A ``Stage`` says which configs its rows are made from (``parents``), what its rows hold (``features``, and beside
them ``fields``: what the card says each column means), whether it needs each image's scene besides its parents'
rows (``looks_up_scenes``), which models it may call (``roles``), and how one image's rows are made: ``rows(group,
context)``. A stage that calls models also has ``generate`` (the whole stage in one engine call per step, in the
process that drives the build) and ``bill`` (what ``--dry-run`` prints). The builder (``builder.py``) only moves
rows: it reads the parents' rows of each image, hands them to the stage and writes what comes back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from datasets import Features, List, Value

from ..scene import Scene

BOX = List(Value("float32"), length=4)
BOX_DOC = "`[x0, y0, x1, y1]` in absolute pixels of the stored image (origin top left, x right, y down)"


class Group(NamedTuple):
    """One image's share of a config's input: its scene, its stored image, and its parents' rows in order.

    ``scene`` is the image's ``Scene`` where the stage needs it (read from the row when the parent is the scenes
    config, else looked up by image id); ``image`` the stored image (``{"bytes", "path"}``); ``rows`` the parents'
    rows of this image (empty for the scenes config, which reads the source, and for a config made from it: the
    scene is its row).
    """

    scene: Scene | None
    image: dict | None
    rows: list[dict]


@dataclass
class Context:
    """What ``rows`` may read besides the group: the settings, and what was made for it before the workers ran.

    ``prepared``: what ``Stage.prepare`` made once in the driving process (stage 1: the vocabulary of the scenes);
    ``generated``: the models' results for this unit (``Stage.generate``); ``state``: what is kept even along one
    unit's stream of rows (``Stage.shard_state``: answer letters and classes).
    """

    config: Any  # LGTConfig
    prepared: Any = None
    generated: Any = None
    state: Any = None


@dataclass(frozen=True)
class Stage:
    """One config and how its rows are made."""

    name: str
    description: str
    parents: tuple[str, ...]
    features: Features
    fields: Mapping[str, str]  # the card's words for each column (a test keeps them in step with ``features``)
    family: str  # how the card, the explorer and the audits read its rows: scenes, mcq, traces, sft, dpo, rl
    looks_up_scenes: bool = False  # needs each image's scene (caption, every box, the image) besides the parents'
    essential: bool = False  # every other config is made from it: a build in which it comes out empty is refused
    roles: tuple[str, ...] = ()  # the model settings (``LGTConfig`` fields) ``generate`` may call
    report_key: tuple[str, ...] = ()  # where ``lgt_build.json`` keeps what its models were asked and cost
    generates_from_images: bool = False  # ``generate`` reads the images (a VLM), not only captions and boxes
    trace_column: str | None = None  # the column holding a reasoning trace, for the card's trace statistics

    def rows(self, group: Group, context: Context) -> list[dict]:
        """One image's rows of this config."""
        raise NotImplementedError

    def prepare(self, inputs: dict[str, dict[str, list[tuple[str, int]]]], words: dict[str, list[str]]) -> Any:
        """What every worker reads, made once from the inputs' Arrow files (``{config: {split: [(path, rows)]}}``)
        and the whole source's ``words`` (``names`` and ``attributes`` of its objects; the inputs of a part of a
        build hold only its own images)."""
        return None

    def shard_state(self, config, shard: str) -> Any:
        """What a worker keeps along one work unit's stream of rows (``shard``: the unit's name, the same whichever
        process or machine makes it)."""
        return None

    def calls_models(self, config) -> bool:
        """Whether preparing this config calls a model with these settings."""
        return False

    def generate(self, groups: dict[str, list[Group]], engines: dict, config) -> tuple[dict[str, Any], dict]:
        """The models' results per slice (what ``Context.generated`` holds there) and the report of what they cost."""
        raise NotImplementedError

    def bill(self, groups: dict[str, list[Group]], engines: dict, config) -> dict:
        """What ``generate`` would ask of each model: ``{role: Bill}``; nothing is generated."""
        raise NotImplementedError
