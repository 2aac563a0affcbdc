"""What the SFT, DPO and GRPO recipes share: the arguments, checking and loading the model the way TRL's own scripts
do, the processor with its pixel cap, the training and evaluation rows, dropping over-long samples, freezing the
vision side, and stopping with one line on what a user can fix.

The recipes in ``recipes/`` are TRL example scripts plus these few steps; keeping the steps here (not copied into
each script) means the three trainers read a dataset, cap its images and count what they drop the same way, and the
steps are importable and tested like the rest of ``lgt``. Only the ``train`` extra needs to be installed.

Everything a recipe accepts is read or refused: the model is loaded by the trainer from ``model_init_kwargs``
(revision, ``trust_remote_code``, attention, dtype, the user's own kwargs) with TRL's ``get_quantization_config``;
configs are mixed with TRL's ``DatasetMixtureConfig`` (``datasets:``) and read by TRL's ``get_dataset``; evaluation
reads ``dataset_test_split`` (``validation``: every lgt build has one); streaming is refused, because every sample is
measured before training.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field, replace

import datasets
from accelerate import PartialState
from datasets.exceptions import DatasetsError
from datasets.utils.logging import get_logger
from huggingface_hub.utils import HFValidationError, validate_repo_id
from transformers import AutoConfig, AutoProcessor
from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
from transformers.utils import is_bitsandbytes_available
from trl import DatasetMixtureConfig, ModelConfig, ScriptArguments, get_dataset, get_quantization_config
from trl.data_utils import prepare_multimodal_messages
from trl.scripts.utils import DatasetConfig

from .errors import one_line
from .frames import warn_if_rescaled

logger = get_logger(__name__)

# Where vision-language models in transformers keep the vision encoder and the projector into the language model.
VISION_MODULES = ("visual", "vision_tower", "vision_model", "multi_modal_projector", "mm_projector", "connector")


class RecipeError(ValueError):
    """A setting or an input the recipe cannot use; the message is one line saying what to change."""


@dataclass
class LGTScriptArguments(ScriptArguments):
    """TRL's script arguments, plus how an LGT recipe reads its data and what it freezes.

    One config: ``dataset_name`` (a local ``lgt build`` folder or a Hub id) and ``dataset_config``. Several configs,
    of one dataset or of many: TRL's ``datasets:`` list in the YAML config (``path``, ``name``, ``split``,
    ``columns``, ``fraction``), read by ``trl.get_dataset``.
    """

    dataset_test_split: str = field(
        default="validation",
        metadata={"help": "Split evaluated on when eval_strategy is set (every lgt build has validation and test)."},
    )
    column_mapping: dict | str | None = field(
        default=None,
        metadata={"help": 'Renames applied to the loaded rows first, e.g. \'{"conversations": "messages"}\'.'},
    )
    max_pixels: int | None = field(
        default=None,
        metadata={
            "help": "Images are resized by the processor to at most this many pixels (Qwen2-VL-family processors' "
            "size.longest_edge; None: the processor's default)."
        },
    )
    freeze_vision: bool = field(
        default=True, metadata={"help": "Train the language model only: the vision tower and projector stay frozen."}
    )

    def __post_init__(self):
        if isinstance(self.column_mapping, str):
            try:
                self.column_mapping = json.loads(self.column_mapping)
            except json.JSONDecodeError as error:
                raise RecipeError(f"column_mapping is not JSON ({error}): {self.column_mapping!r}") from None
        mapping = self.column_mapping
        if mapping is not None and not (
            isinstance(mapping, dict) and all(isinstance(v, str) for pair in mapping.items() for v in pair)
        ):
            raise RecipeError(f"column_mapping must map column names to new names, e.g. {{old: new}}, not {mapping!r}")


def run(main, parser) -> None:
    """Parse the recipe's arguments (``--config`` YAML, then the command line) and run ``main`` on them.

    A setting or input the recipe cannot use stops it with one line on stderr and exit status 2, not a traceback:
    what the parser or TRL's configs refuse, and every ``RecipeError``. Anything else is a bug and keeps its
    traceback.
    """
    try:
        arguments = parser.parse_args_and_config()
    except (ValueError, OSError) as error:  # an unknown or invalid setting, an unreadable --config
        _stop(f"{error} (`--help` lists the settings)")
    try:
        main(*arguments)
    except RecipeError as error:
        _stop(str(error))


def _stop(message: str):
    print(f"{os.path.basename(sys.argv[0])}: error: {one_line(' '.join(message.split()))}", file=sys.stderr)
    sys.exit(2)


# ---- the model ----


def prepare_model(model_args: ModelConfig, training_args):
    """Check the model and set ``training_args.model_init_kwargs`` as TRL's scripts do; return the quantization
    config to pass the trainer, which loads the model (and DPO's reference) from these.

    One line instead of a loader's traceback for a model that is not there or has no vision, and for quantization
    that cannot run: 4/8-bit weights need bitsandbytes and are trained through adapters (``use_peft``, QLoRA).
    """
    path = model_args.model_name_or_path
    if not path:
        raise RecipeError("set model_name_or_path: a vision-language model's folder or Hub id")
    if not os.path.isdir(path):
        try:
            validate_repo_id(path)
        except HFValidationError:
            raise RecipeError(f"model {path!r}: no such folder, and not a Hub model id") from None
    try:
        config = AutoConfig.from_pretrained(
            path, revision=model_args.model_revision, trust_remote_code=training_args.trust_remote_code
        )
    except OSError as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RecipeError(f"model {path!r}: not a folder here, and not loadable from the Hub: {reason}") from error
    remote_classes = getattr(config, "auto_map", None) or {}  # a remote-code model names the classes it has
    if config.model_type not in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES and (
        "AutoModelForImageTextToText" not in remote_classes
    ):
        raise RecipeError(
            f"{path} is a {config.model_type} model without vision: the recipes need a vision-language model "
            "(one AutoModelForImageTextToText loads, e.g. Qwen/Qwen2.5-VL-7B-Instruct)"
        )
    model_init_kwargs = {
        "revision": model_args.model_revision,
        "trust_remote_code": training_args.trust_remote_code,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype,
    }
    training_args.model_init_kwargs = {**model_init_kwargs, **(training_args.model_init_kwargs or {})}
    if model_args.load_in_4bit or model_args.load_in_8bit:
        flag = "load_in_4bit" if model_args.load_in_4bit else "load_in_8bit"
        if not model_args.use_peft:  # what the config asks first, then whether this machine can do it
            raise RecipeError(f"{flag}: quantized weights cannot be trained, only adapters on them: set use_peft")
        if not is_bitsandbytes_available():
            raise RecipeError(f"{flag} quantizes with bitsandbytes, which is not installed: pip install bitsandbytes")
    return get_quantization_config(model_args)


def load_processor(model_args: ModelConfig, script_args: LGTScriptArguments, training_args, **kwargs):
    """The model's processor, resizing images to at most ``script_args.max_pixels`` pixels.

    The cap is the image processor's ``size["longest_edge"]`` where that is a pixel count (the Qwen2-VL family, whose
    image processors take ``max_pixels``); it is saved with the processor, so a checkpoint keeps it. Passing
    ``max_pixels`` to ``from_pretrained`` would also work but makes every processor call warn (deprecated).
    """
    processor = AutoProcessor.from_pretrained(
        model_args.model_name_or_path,
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
        **kwargs,
    )
    if script_args.max_pixels is not None:
        image_processor = processor.image_processor
        known = getattr(getattr(image_processor, "valid_kwargs", None), "__annotations__", {})
        if "max_pixels" not in known:
            raise RecipeError(
                f"max_pixels caps images by pixel count, which {type(image_processor).__name__} does not: "
                "set max_pixels to null and size images with the processor's own settings"
            )
        image_processor.size["longest_edge"] = script_args.max_pixels
    return processor


def freeze_vision(model) -> list[str]:
    """Freeze the vision encoder and projector of ``model``; return the frozen parameter names (never none)."""
    frozen = []
    for name, parameter in model.named_parameters():
        if set(name.split(".")) & set(VISION_MODULES):
            parameter.requires_grad_(False)
            frozen.append(name)
    if not frozen:
        raise RecipeError(
            f"{type(model).__name__} has no vision module named one of {', '.join(VISION_MODULES)}: "
            "set freeze_vision: false"
        )
    logger.info(f"froze {len(frozen)} vision tower and projector tensors")
    return frozen


# ---- the rows ----


def load_splits(
    script_args: LGTScriptArguments, mixture: DatasetMixtureConfig, evaluate: bool, columns: tuple[str, ...]
) -> tuple[datasets.Dataset, datasets.Dataset | None]:
    """The training rows and, when ``evaluate``, the evaluation rows, renamed by ``column_mapping`` and cut to
    ``columns``.

    The rows come from ``mixture.datasets`` (TRL's mixture, read by ``trl.get_dataset``: ``fraction`` is each
    dataset's share of the mixture, the first rows of each, none repeated) or else from one config of
    ``dataset_name``. Evaluation reads each dataset's ``dataset_test_split`` whole, or, with ``test_split_size``, a
    share held out of the mixture as ``get_dataset`` does.
    """
    if script_args.dataset_streaming or mixture.streaming:
        raise RecipeError(
            "streaming is not supported by the lgt recipes: every sample is measured first, to drop those over "
            "max_length; load without streaming (max_pixels keeps the images small)"
        )
    if mixture.datasets and script_args.dataset_name:
        logger.warning(f"`datasets` is given, so dataset_name {script_args.dataset_name!r} is not read")
    sources = mixture.datasets or [
        DatasetConfig(
            path=script_args.dataset_name, name=script_args.dataset_config, split=script_args.dataset_train_split
        )
    ]
    for source in sources:
        _check_source(source)
    with PartialState().main_process_first():  # one process downloads and prepares, the others read its cache
        loaded = _get_dataset(replace(mixture, datasets=sources))
        train = loaded["train"]
        evaluation = None
        if evaluate and mixture.test_split_size is not None:
            evaluation = loaded["test"]
        elif evaluate:
            held_out = [replace(source, split=script_args.dataset_test_split, fraction=None) for source in sources]
            evaluation = _get_dataset(DatasetMixtureConfig(datasets=held_out))["train"]
    train = _columns(train, script_args.column_mapping, columns, sources)
    held = "" if evaluation is None else f", {len(evaluation):,} evaluation rows"
    logger.info(f"{len(train):,} training rows{held}")
    return train, None if evaluation is None else _columns(evaluation, script_args.column_mapping, columns, sources)


def _check_source(source: DatasetConfig) -> None:
    """Stop before loading when no dataset is named, or a dataset of several configs is given none."""
    if not source.path:
        raise RecipeError("set dataset_name (a local `lgt build` folder or a Hub id), or list `datasets:`")
    if source.name is not None:
        return
    try:
        configs = datasets.get_dataset_config_names(source.path)
    except Exception:  # offline, or not a dataset: load_dataset says why, in one line below
        return
    if len(configs) > 1:
        raise RecipeError(f"{source.path} has configs {', '.join(configs)}: set dataset_config (or name) to one")


def _get_dataset(mixture: DatasetMixtureConfig) -> datasets.DatasetDict:
    """``trl.get_dataset``, with what ``load_dataset`` refuses (no such folder, config or split; datasets whose
    columns do not line up) in one line that names the datasets."""
    try:
        return get_dataset(mixture)
    except (ValueError, OSError, DatasetsError) as error:
        named = ", ".join(f"{s.path} {s.name or ''} ({s.split})".replace("  ", " ") for s in mixture.datasets)
        raise RecipeError(f"{named}: {error}") from error


def _columns(dataset: datasets.Dataset, mapping: dict | None, columns: tuple[str, ...], sources) -> datasets.Dataset:
    dataset = dataset.rename_columns({old: new for old, new in (mapping or {}).items() if old in dataset.column_names})
    missing = [column for column in columns if column not in dataset.column_names]
    if missing:
        named = ", ".join(f"{s.path} {s.name or ''}".strip() for s in sources)
        raise RecipeError(
            f"{named} has no column {', '.join(missing)} (its columns: {', '.join(dataset.column_names)}): "
            'rename with column_mapping, e.g. \'{"conversations": "messages"}\''
        )
    return dataset.select_columns(list(columns))


def sequence_length(processor, messages: list[dict], images: list) -> int:
    """Tokens the model sees for ``messages`` with ``images``, image tokens included, as TRL's collators build it."""
    messages = prepare_multimodal_messages(messages, images=images)
    encoded = processor.apply_chat_template([messages], tokenize=True, return_dict=True)
    return len(encoded["input_ids"][0])


def drop_overlong(
    dataset: datasets.Dataset | None,
    processor,
    max_length: int | None,
    parts: tuple[tuple[str, ...], ...],
    num_proc=None,
):
    """``dataset`` without the rows where any of ``parts`` would exceed ``max_length`` tokens (``None`` stays
    ``None``: no evaluation rows).

    A part is the message columns that go through the model together, e.g. ``(("prompt", "chosen"), ("prompt",
    "rejected"))`` for DPO. Truncating such a row would cut the answer off a trace or, worse, image tokens off the
    prompt ("image features and image tokens do not match"); a row is dropped instead and the drops are counted.
    """
    if dataset is None:
        return dataset
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
        raise RecipeError(f"every sample is longer than max_length={max_length} tokens: raise it or lower max_pixels")
    return kept
