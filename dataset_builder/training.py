"""What the SFT, DPO and GRPO recipes share: the dataset arguments, loading the model and its processor with the
pixel cap, freezing the vision side, loading a mixture of configs and dropping over-long samples.

The recipes in ``recipes/`` are TRL example scripts plus these few steps; keeping the steps here (not copied into
each script) means the three trainers read a dataset, cap its images and count what they drop the same way, and the
steps are importable and tested like the rest of ``lgt``. Only the ``train`` extra needs to be installed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import datasets
from accelerate import PartialState
from datasets.utils.logging import get_logger
from transformers import AutoModelForImageTextToText, AutoProcessor
from trl import ModelConfig, ScriptArguments
from trl.data_utils import prepare_multimodal_messages

from .frames import warn_if_rescaled

logger = get_logger(__name__)

# Where vision-language models in transformers keep the vision encoder and the projector into the language model.
VISION_MODULES = ("visual", "vision_tower", "vision_model", "multi_modal_projector", "mm_projector", "connector")


@dataclass
class LGTScriptArguments(ScriptArguments):
    """TRL's script arguments, plus how an LGT recipe reads its data and what it freezes.

    ``dataset_name`` is a local folder or a Hub id; ``dataset_config`` one config, or ``dataset_mixture`` several
    with a weight each: the share of that config's rows used (a random subset below 1, repeats above), e.g.
    ``{sft_stage1: 1.0, sft_stage2: 0.5}``.
    """

    dataset_mixture: dict | str | None = field(
        default=None,
        metadata={
            "help": "Configs of `dataset_name` and their weights, e.g. '{\"sft_stage1\": 1.0}' (JSON on the CLI)."
        },
    )
    column_mapping: dict | str | None = field(
        default=None,
        metadata={"help": 'Renames applied to every config first, e.g. \'{"conversations": "messages"}\'.'},
    )
    max_pixels: int | None = field(
        default=512 * 512,
        metadata={"help": "Images are resized by the processor to at most this many pixels (None: its default)."},
    )
    freeze_vision: bool = field(
        default=True, metadata={"help": "Train the language model only: the vision tower and projector stay frozen."}
    )

    def __post_init__(self):
        if isinstance(self.dataset_mixture, str):
            self.dataset_mixture = json.loads(self.dataset_mixture)
        if isinstance(self.column_mapping, str):
            self.column_mapping = json.loads(self.column_mapping)
        if self.dataset_mixture is not None and self.dataset_config is not None:
            raise ValueError("give dataset_config (one config) or dataset_mixture (several), not both")
        for name, weight in (self.dataset_mixture or {}).items():
            if not isinstance(weight, int | float) or weight <= 0:
                raise ValueError(f"dataset_mixture weights must be positive numbers, not {name}: {weight!r}")


def load_model(model_args: ModelConfig, script_args: LGTScriptArguments):
    """The model to train, its vision tower and projector frozen when ``script_args.freeze_vision``."""
    model = AutoModelForImageTextToText.from_pretrained(
        model_args.model_name_or_path,
        revision=model_args.model_revision,
        attn_implementation=model_args.attn_implementation,
        dtype=model_args.dtype,
    )
    if script_args.freeze_vision:
        freeze_vision(model)
    return model


def load_processor(model_args: ModelConfig, script_args: LGTScriptArguments, **kwargs):
    """The model's processor, resizing images to at most ``script_args.max_pixels`` pixels."""
    return AutoProcessor.from_pretrained(
        model_args.model_name_or_path,
        revision=model_args.model_revision,
        max_pixels=script_args.max_pixels,
        **kwargs,
    )


def load_mixture(args: LGTScriptArguments, columns: tuple[str, ...], seed: int) -> datasets.Dataset:
    """The training rows: each config's ``args.dataset_train_split``, renamed, cut to ``columns`` and weighted."""
    mixture = args.dataset_mixture or {args.dataset_config: 1.0}
    parts = []
    with PartialState().main_process_first():  # one process downloads and prepares, the others read its cache
        for name, weight in mixture.items():
            part = datasets.load_dataset(args.dataset_name, name, split=args.dataset_train_split)
            mapping = {old: new for old, new in (args.column_mapping or {}).items() if old in part.column_names}
            part = part.rename_columns(mapping)
            missing = [column for column in columns if column not in part.column_names]
            if missing:
                raise ValueError(f"{args.dataset_name} {name or ''} has no column {missing} (set column_mapping)")
            part = part.select_columns(list(columns))
            rows = round(weight * len(part))
            if rows != len(part):
                order = part.shuffle(seed=seed)
                part = order.select([i % len(order) for i in range(rows)])
            logger.info(f"{args.dataset_name} {name or ''}: {rows} rows (weight {weight})")
            parts.append(part)
    return datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]


def sequence_length(processor, messages: list[dict], images: list) -> int:
    """Tokens the model sees for ``messages`` with ``images``, image tokens included, as TRL's collators build it."""
    messages = prepare_multimodal_messages(messages, images=images)
    encoded = processor.apply_chat_template([messages], tokenize=True, return_dict=True)
    return len(encoded["input_ids"][0])


def drop_overlong(
    dataset: datasets.Dataset, processor, max_length: int | None, parts: tuple[tuple[str, ...], ...], num_proc=None
):
    """``dataset`` without the rows where any of ``parts`` would exceed ``max_length`` tokens.

    A part is the message columns that go through the model together, e.g. ``(("prompt", "chosen"), ("prompt",
    "rejected"))`` for DPO. Truncating such a row would cut the answer off a trace or, worse, image tokens off the
    prompt ("image features and image tokens do not match"); a row is dropped instead and the drops are counted.
    """
    warn_if_rescaled(dataset, processor)  # every recipe passes here with its data and processor
    if max_length is None:
        return dataset

    def fits(row):
        return all(
            sequence_length(processor, [m for c in part for m in row[c]], row["images"]) <= max_length
            for part in parts
        )

    with PartialState().main_process_first():  # measured once, the other processes read the cached result
        kept = dataset.filter(fits, num_proc=num_proc, desc=f"Dropping samples over {max_length} tokens")
    dropped = len(dataset) - len(kept)
    logger.warning(f"dropped {dropped} of {len(dataset)} samples longer than max_length={max_length} tokens")
    if not len(kept):
        raise ValueError(f"every sample is longer than max_length={max_length} tokens: raise it or lower max_pixels")
    return kept


def freeze_vision(model) -> list[str]:
    """Freeze the vision encoder and projector of ``model``; return the frozen parameter names (never none)."""
    frozen = []
    for name, parameter in model.named_parameters():
        if set(name.split(".")) & set(VISION_MODULES):
            parameter.requires_grad_(False)
            frozen.append(name)
    if not frozen:
        raise ValueError(f"{type(model).__name__} has no vision module named one of {', '.join(VISION_MODULES)}")
    logger.info(f"froze {len(frozen)} vision tower and projector tensors")
    return frozen
