"""``lgt build --ray [ADDRESS] --shards N``: the N parts of a build as Ray tasks, then ``lgt merge``.

Ray schedules, places and retries; lgt only says what each task is (``build(shard=(I, N))`` into a folder every node
can read) and what it needs: the GPUs its models' backend takes, from ``--engine-args``, and ``--num-proc`` CPUs. A
task whose process or node dies, or that fails for a reason outside the records (a full disk, a lost connection),
runs again, resuming from its part's generation cache (``RETRIES`` times); a bad record fails the build at once,
as it does on one machine. When every part is built, the driver merges their generation caches and the parts.

Parts and caches go where every node can read them: ``--parts DIR`` (default: ``<output>.parts`` beside the output)
and ``--cache FILE`` (default: ``<parts>/generations.sqlite``) must be on a shared filesystem on a real cluster.
Each part writes its own cache file (``builder.shard_cache``), never one file from several machines.
"""

from __future__ import annotations

import os
import time

from datasets.utils import logging

from .build import build
from .builder import shard_cache
from .errors import BuildError
from .generation import ModelSpec
from .generation.cache_merge import merge_caches
from .merge import merge, split_judge
from .settings import MODEL_ROLES, LGTConfig, check_names
from .stages import root

logger = logging.get_logger(__name__)

RETRIES = 3
# The GPUs one engine of a backend takes, from its settings (``--engine-args``): vLLM spreads a model over tensor x
# pipeline parallel GPUs. The others take none of the task's: an OpenAI-compatible server runs elsewhere, and the
# transformers backend runs on the CPU (Ray hides the GPUs a task did not ask for).
GPUS = {"vllm": lambda options: options.get("tensor_parallel_size", 1) * options.get("pipeline_parallel_size", 1)}
# What a part fails with that another try may not: an error in the environment, a lost worker or connection.
RETRIED = (OSError, RuntimeError)


def gpus_needed(settings: dict) -> int:
    """The GPUs a part of the build needs: the most any of its models' engines takes (they run one after another)."""
    options = settings.get("engine_args") or {}
    backends = {ModelSpec.parse(settings[role]).backend for role in MODEL_ROLES if settings.get(role)}
    return max((GPUS[backend](options) for backend in backends if backend in GPUS), default=0)


def part_folder(parts: str, index: int, count: int) -> str:
    return os.path.join(parts, f"part-{index:05d}-of-{count:05d}")


def _build_part(configs, output: str, num_proc: int | None, settings: dict) -> dict:
    """One Ray task: one part of the build, quietly (the driver reports each part as it finishes)."""
    import datasets

    datasets.disable_progress_bars()
    return build(configs=configs, output=output, num_proc=num_proc, **settings)


def ray_build(
    configs: tuple[str, ...] | None = None,
    output: str = "lgt",
    shards: int = 2,
    address: str | None = None,
    parts: str | None = None,
    num_proc: int | None = None,
    strict: bool = False,
    **settings,
) -> dict:
    """Build ``configs`` in ``shards`` parts as Ray tasks on the cluster at ``address`` (``None``: the one this
    process is connected to, else a new local one), then merge them into ``output``; return the merged build info.

    ``settings``: those of ``build`` (the judge's go to the merge: it labels a sample of the whole build).
    """
    try:
        import ray
    except ImportError:
        raise BuildError("--ray needs Ray: pip install 'lgt[ray]'") from None
    if type(shards) is not int or shards < 1:
        raise ValueError(f"--shards must be a whole number from 1 up, not {shards!r}")
    check_names(settings)
    settings, judge = split_judge(settings)
    LGTConfig(name=root(), shard=(0, shards), **settings)  # every setting checked before any task starts
    output = os.path.realpath(output)
    parts = os.path.realpath(parts or output + ".parts")
    cache = settings.get("generation_cache") or os.path.join(parts, "generations.sqlite")
    settings["generation_cache"] = cache  # each part writes its own file beside it (a cache-only part reads it)
    os.makedirs(parts, exist_ok=True)
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False)
    resources = {"num_gpus": gpus_needed(settings), "num_cpus": num_proc or 1}
    task = ray.remote(max_retries=RETRIES, retry_exceptions=list(RETRIED), **resources)(_build_part)
    folders = [part_folder(parts, index, shards) for index in range(shards)]
    started = time.time()
    pending = {
        task.remote(configs, folder, num_proc, {**settings, "shard": (index, shards)}): folder
        for index, folder in enumerate(folders)
    }
    logger.info(f"{shards} parts on Ray ({resources['num_gpus']} GPU(s) each) into {parts}")
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        folder = pending.pop(done[0])
        try:
            ray.get(done[0])
        except ray.exceptions.RayTaskError as error:  # the part's own error (a bad record ...), unwrapped
            raise error.cause or BuildError(str(error).splitlines()[0]) from None
        except ray.exceptions.RayError as error:  # its process or node lost more often than it is retried
            problem = str(error).strip().splitlines()[0]
            raise BuildError(f"{os.path.basename(folder)} failed {RETRIES + 1} times, the last: {problem}") from None
        logger.info(
            f"built {os.path.basename(folder)} ({shards - len(pending)}/{shards}, {time.time() - started:.0f} s)"
        )
    written = [shard_cache(cache, (index, shards)) for index in range(shards)]
    written = [path for path in written if os.path.isfile(path)]
    if written and not settings.get("cache_only"):
        merged = merge_caches(written, cache)
        logger.info(f"{merged.added:,} new generations merged into {cache}")
    if judge:
        judge["generation_cache"] = cache
    return merge(folders, output, strict=strict, **judge)
