"""Every config lgt builds, one ``Stage`` each, in the order they are made: the registry the rest of lgt reads.

    scenes ─► mcq_stage1 ─┬─► mcq_stage2 ─► traces_stage2 ─┬─► sft_stage2, dpo_stage2
                          │                                └─► sft_stage2_merged ◄─ traces_stage1
                          ├─► traces_stage1 ─► sft_stage1, dpo_stage1
                          └─► rl ◄─ mcq_stage2

One module per family (``scenes.py``, ``mcqs.py``, ``traces.py``, ``training.py``) declares its configs whole (see
``base.Stage``). The builder, ``lgt build``, the card, the explorer and the CLI read this registry and never name a
config themselves: adding a config is a stage in a module and a line in ``STAGES``.
"""

from __future__ import annotations

from .base import BOX_DOC, Context, Group, Stage
from .mcqs import MCQ_STAGE1, MCQ_STAGE2
from .scenes import SCENES
from .traces import TRACES_STAGE1, TRACES_STAGE2
from .training import DPO_STAGE1, DPO_STAGE2, RL, SFT_STAGE1, SFT_STAGE2, SFT_STAGE2_MERGED

STAGES: dict[str, Stage] = {
    stage.name: stage
    for stage in (
        SCENES,
        MCQ_STAGE1,
        MCQ_STAGE2,
        TRACES_STAGE1,
        TRACES_STAGE2,
        SFT_STAGE1,
        SFT_STAGE2,
        SFT_STAGE2_MERGED,
        DPO_STAGE1,
        DPO_STAGE2,
        RL,
    )
}
# The config ``load_dataset`` gets when it names none, and the one the card's preview shows.
DEFAULT_CONFIG = MCQ_STAGE1.name

__all__ = [
    "BOX_DOC",
    "DEFAULT_CONFIG",
    "STAGES",
    "Context",
    "Group",
    "Stage",
    "configs_of",
    "inputs",
    "needed",
    "root",
]


def configs_of(family: str | None = None) -> tuple[str, ...]:
    """Every config in build order, or those of one family (``mcq``, ``traces`` ...)."""
    return tuple(name for name, stage in STAGES.items() if family is None or stage.family == family)


def root() -> str:
    """The config read from the source: the one without parents."""
    return next(name for name, stage in STAGES.items() if not stage.parents)


def inputs(config: str) -> tuple[str, ...]:
    """Every config ``config`` reads: its parents, and the root where it looks scenes up."""
    stage = STAGES[config]
    scenes = root()
    return stage.parents + ((scenes,) if stage.looks_up_scenes and scenes not in stage.parents else ())


def needed(wanted: tuple[str, ...]) -> list[str]:
    """``wanted`` and every config they are made from, parents first."""
    found, pending = set(), list(wanted)
    while pending:
        config = pending.pop()
        if config not in found:
            found.add(config)
            pending.extend(inputs(config))
    return [config for config in STAGES if config in found]
